// fix2 stacks on fix1: classify returns 3 (and depends on fix1).
#include "lp_patch.h"

int classify_v3(int x) { return x > 5 ? 3 : 0; }

LP_PATCH_ID("fix2");
LP_DEPENDS("fix1");
LP_REPLACE(classify, classify_v3);
