// The patch of the cluster end-to-end tests: answer() returns base + 1000.
#include "lp_patch.h"

extern int base;

int answer_v2(void) {
	return base + 1000;
}

LP_PATCH_ID("fix-answer");
LP_REPLACE(answer, answer_v2);
LP_DESCRIPTION("answer says 1041");
