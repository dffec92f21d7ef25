// The original of jrcxzfn cannot be relocated (jrcxz has no rel32 form).
#include "lp_patch.h"

static int (*orig)(int);

int jrcxzfn_w(int x) { return orig(x) + 1; }

LP_PATCH_ID("fixjrcxz");
LP_REPLACE(jrcxzfn, jrcxzfn_w);
LP_ORIGINAL(jrcxzfn, orig);
