#include "lp_patch.h"

int parked_v2(int x) { return x; }

LP_PATCH_ID("fixparked");
LP_REPLACE(parked, parked_v2);
