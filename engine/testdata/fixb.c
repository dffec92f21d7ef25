// fixb stacks on whatever classify is, without depending on it.
#include "lp_patch.h"

extern int limit;

int classify_b(int x) { return x > limit ? 1060 : 0; }

LP_PATCH_ID("fixb");
LP_REPLACE(classify, classify_b);
