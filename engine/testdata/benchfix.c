// benchfix: the patch of the activation-pause benchmark. work(1) gives 5
// instead of 4; the same shape as the original, so the patched threads run
// at the same speed.
#include "lp_patch.h"

int work_v2(int x) {
	volatile int v = x;
	v = v * 3 + 2;
	return v;
}

LP_PATCH_ID("benchfix");
LP_REPLACE(work, work_v2);
LP_DESCRIPTION("work(1) gives 5");
