/* Every macro of lp_patch.h; reads a global of the target. */
#include "lp_patch.h"

extern int max_len; /* the target's; bound at load time */

static int helper_v2(int x) { return x * 2 + max_len; }

int classify_v2(const char *msg, int len)
{
	if (len > max_len)
		return -1;
	return helper_v2(msg[0]);
}

LP_PATCH_ID("fix-invite-overflow");
LP_REPLACE(classify, classify_v2);
LP_REPLACE(helper, helper_v2);
LP_TARGET_BUILD_ID("0123456789ABCDEFfedcba9876543210deadbeef");
LP_DEPENDS("base-1");
LP_DEPENDS("base-2");
LP_DESCRIPTION("bound the INVITE length check");
