/* No LP_PATCH_ID: the id defaults to the file name. */
#include "lp_patch.h"

int classify_v2(int x) { return x + 2; }

LP_REPLACE(classify, classify_v2);
