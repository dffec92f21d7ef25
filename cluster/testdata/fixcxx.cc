// A C++ patch for the cluster tests: answer() throws and catches an
// exception inside the replacement and returns 2042. It loads only in mode
// dlopen (the target's dynamic linker registers its unwind tables and loads
// libstdc++); inject mode refuses it.
#include <stdexcept>
#include "lp_patch.h"

extern "C" int answer_cxx(void) {
	try {
		throw std::runtime_error("2042");
	} catch (const std::exception &) {
		return 2042;
	}
}

LP_PATCH_ID("fix-answer-cxx");
LP_REPLACE(answer, answer_cxx);
LP_DESCRIPTION("answer says 2042, by way of a C++ exception");
