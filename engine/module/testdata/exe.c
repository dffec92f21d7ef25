/* An executable carrying a manifest: not a patch module. */
#include "lp_patch.h"

int classify_v2(int x) { return x + 2; }

LP_REPLACE(classify, classify_v2);

int main(void) { return classify_v2(0); }
