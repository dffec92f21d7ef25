/* Replaces classify with a function the module only declares. */
#include "lp_patch.h"

extern int classify_v3(int x);

LP_REPLACE(classify, classify_v3);
