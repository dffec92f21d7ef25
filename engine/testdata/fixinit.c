// fixinit has an initialiser that runs in the target before activation.
#include "lp_patch.h"

extern int limit;
static int base;

__attribute__((constructor)) static void setup(void) { base = 100; }

int classify_init(int x) { return x > limit ? 1000 + base : 0; }

LP_PATCH_ID("fixinit");
LP_REPLACE(classify, classify_init);
