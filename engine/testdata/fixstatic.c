// fixstatic replaces the target's static scale(); calls the target's
// static scale would be found the same way.
#include "lp_patch.h"

int scale_v2(int x) { return x * 3; }

LP_PATCH_ID("fixstatic");
LP_REPLACE(scale, scale_v2);
