/* With dup2.c: two static functions named fix in one module. */
#include "lp_patch.h"

static int fix(int x) { return x + 1; }

LP_REPLACE(classify, fix);
