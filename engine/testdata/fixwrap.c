// fixwrap wraps classify and ripfn: it calls what was there before it.
#include "lp_patch.h"

static int (*orig_classify)(int);
static int (*orig_ripfn)(int);

int classify_w(int x) {
	int r = orig_classify(x);
	return r ? 1100 + r % 50 : 0;
}

int ripfn_w(int x) { return orig_ripfn(x) + 1000; }

LP_PATCH_ID("fixwrap");
LP_REPLACE(classify, classify_w);
LP_ORIGINAL(classify, orig_classify);
LP_REPLACE(ripfn, ripfn_w);
LP_ORIGINAL(ripfn, orig_ripfn);
