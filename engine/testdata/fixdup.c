// fixdup defines `limit` again (as a patch author copying code would); it
// must be bound to the target's copy, so classify sees limit = 10, not 99.
#include "lp_patch.h"

int limit = 99;

int classify_dup(int x) {
	(void)x;
	return 1000 + limit;
}

LP_PATCH_ID("fixdup");
LP_REPLACE(classify, classify_dup);
