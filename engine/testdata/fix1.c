// fix1: classify returns 2 for "big"; counts its calls in the target's own
// global (bound to the live copy).
#include "lp_patch.h"

extern int limit;
extern int calls;

int classify_v2(int x) {
	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	return x > limit ? 2 : 0;
}

LP_PATCH_ID("fix1");
LP_REPLACE(classify, classify_v2);
LP_DESCRIPTION("classify says 2");
