/* Names a data object as the replacement. */
#include "lp_patch.h"

int table[16] = {1};
int classify_v2(int x) { return table[x & 15]; }

LP_REPLACE(helper, classify_v2);
__attribute__((section(".lp_patch"), used, aligned(1)))
static const char bad_entry[] = "replace=classify:table";
