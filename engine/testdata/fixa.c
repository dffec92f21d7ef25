// fixa replaces two functions: classify (hot) and parked (where a thread of
// "svc N park" sleeps for ever).
#include "lp_patch.h"

extern int limit;

int classify_a(int x) { return x > limit ? 1050 : 0; }
int parked_a(int x) { return x + 1; }

LP_PATCH_ID("fixa");
LP_REPLACE(classify, classify_a);
LP_REPLACE(parked, parked_a);
