/* A misspelt key must be refused, not ignored. */
#include "lp_patch.h"

int classify_v2(int x) { return x + 2; }

LP_REPLACE(classify, classify_v2);
__attribute__((section(".lp_patch"), used, aligned(1)))
static const char typo_entry[] = "replce=helper:classify_v2";
