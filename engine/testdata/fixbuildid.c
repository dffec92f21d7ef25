#include "lp_patch.h"

int classify_b(int x) { return x > 0 ? 2 : 0; }

LP_PATCH_ID("fixbuildid");
LP_TARGET_BUILD_ID("00112233445566778899aabbccddeeff00112233");
LP_REPLACE(classify, classify_b);
