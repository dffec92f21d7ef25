// A C++ module that throws and catches; LP_NO_EXTERN_C leaves the
// replacement with C++ linkage (a mangled name) to test that error.
#include <stdexcept>
#include "lp_patch.h"

static int parse(int x)
{
	if (x < 0)
		throw std::invalid_argument("negative");
	return x * 2;
}

#ifndef LP_NO_EXTERN_C
extern "C"
#endif
int classify_v2(int x)
{
	try {
		return parse(x);
	} catch (const std::exception &) {
		return -1;
	}
}

LP_PATCH_ID("cxx-fix");
LP_REPLACE(_Z8classifyi, classify_v2);
LP_DESCRIPTION("C++ replacement with exceptions");
