// fixwrap2 wraps classify again: 60 more than a result of 1000 or more,
// else 1170 + the result.
#include "lp_patch.h"

static int (*below)(int);

int classify_w2(int x) {
	int r = below(x);
	if (!r)
		return 0;
	return r >= 1000 ? r + 60 : 1170 + r;
}

LP_PATCH_ID("fixwrap2");
LP_REPLACE(classify, classify_w2);
LP_ORIGINAL(classify, below);
