// fix-invite: reject INVITEs longer than the configured max_len.
//
//   cc -shared -fPIC -O2 -I../../include -o fix-invite.so fix-invite.c
//   lpctl patch apply --pid $(pidof sipd) fix-invite.so
#include <string.h>
#include "lp_patch.h"

extern int max_len; // bound to sipd's own max_len: the live configuration
extern int version;

int classify_invite_v2(const char *msg, int len) {
	if (len < 6 || len > max_len) return 0;
	return memcmp(msg, "INVITE", 6) == 0;
}

// Runs in sipd when the module is loaded, before the jump is written.
__attribute__((constructor)) static void announce(void) { version = 2; }

LP_PATCH_ID("fix-invite-overflow");
LP_REPLACE(classify_invite, classify_invite_v2);
LP_DESCRIPTION("reject INVITEs longer than max_len");
