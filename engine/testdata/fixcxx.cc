// fixcxx throws and catches a C++ exception inside the replacement: needs
// --mode dlopen (unwind tables registered by the dynamic linker).
#include <stdexcept>
#include "lp_patch.h"

extern "C" int limit;

extern "C" int classify_cxx(int x) {
	try {
		if (x > limit) throw std::runtime_error("big");
		return 0;
	} catch (const std::exception &) {
		return 4;
	}
}

LP_PATCH_ID("fixcxx");
LP_REPLACE(classify, classify_cxx);
