#include "lp_patch.h"

int padded_v2(int x) { return x + 100; }

LP_PATCH_ID("fixpadded");
LP_REPLACE(padded, padded_v2);
