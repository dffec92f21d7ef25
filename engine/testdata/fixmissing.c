// fixmissing refers to a symbol the target does not have.
#include "lp_patch.h"

extern int no_such_global_in_target;

int classify_m(int x) { return x + no_such_global_in_target; }

LP_PATCH_ID("fixmissing");
LP_REPLACE(classify, classify_m);
