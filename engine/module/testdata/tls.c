/* Thread-local storage: inject mode cannot load it. */
#include "lp_patch.h"

__thread int calls;

int classify_v2(int x) { calls++; return x + calls; }

LP_REPLACE(classify, classify_v2);
