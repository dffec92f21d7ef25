#include "lp_patch.h"

int loopy_v2(int n) { return n; }

LP_PATCH_ID("fixloopy");
LP_REPLACE(loopy, loopy_v2);
