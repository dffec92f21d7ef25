/*
 * lp_patch.h - declare the manifest of an lp patch module.
 *
 * A patch module is an ELF64 x86-64 shared object. lp reads what it does from
 * a section named ".lp_patch" holding NUL-terminated "key=value" strings (the
 * idea of the Linux kernel's .modinfo). The macros below each emit one such
 * string; use them at file scope, in C or C++, any number of times:
 *
 *   LP_PATCH_ID("fix-invite-overflow")  id, [A-Za-z0-9._-]{1,64}; optional,
 *                                       defaults to the file name without .so
 *   LP_REPLACE(old, new)                redirect function OLD of the target to
 *                                       function NEW of this module; 1 or more
 *   LP_TARGET_BUILD_ID("4f1c...")       GNU build-id (hex) of the executable or
 *                                       library that defines OLD; apply refuses
 *                                       a process whose build-id differs; 0-1
 *   LP_DEPENDS("other-patch")           a patch that must already be active; 0+
 *   LP_DESCRIPTION("text")              free text for operators; 0-1
 *   LP_ORIGINAL(old, ptr)               at load, store in this module's
 *                                       function-pointer variable PTR the
 *                                       implementation OLD had just before
 *                                       this patch (the patch below when
 *                                       stacked, else OLD's original code);
 *                                       OLD must be replaced too; 0+
 *
 * Example (fix.c):
 *
 *   #include "lp_patch.h"
 *
 *   extern int max_len;              // the target's global: bound to the live copy
 *
 *   int classify_v2(const char *msg, int len)
 *   {
 *       if (len > max_len)
 *           return -1;
 *       return msg[0] == 'I';
 *   }
 *
 *   LP_PATCH_ID("fix-invite-overflow");
 *   LP_REPLACE(classify, classify_v2);
 *   LP_DESCRIPTION("bound the INVITE length check");
 *
 * Build:   cc -shared -fPIC -O2 -o fix.so fix.c
 * Check:   lpctl patch inspect fix.so
 *
 * Wrapping the old function (log, check, then call it):
 *
 *   static int (*orig_classify)(const char *, int);
 *
 *   int classify_v2(const char *msg, int len)
 *   {
 *       if (len < 0)
 *           return -1;
 *       return orig_classify(msg, len);
 *   }
 *
 *   LP_REPLACE(classify, classify_v2);
 *   LP_ORIGINAL(classify, orig_classify);
 *
 * Notes
 * - OLD and NEW are symbol names, written as identifiers (not strings). NEW
 *   must be a function defined in this module; it may be static (it is found
 *   in .symtab then, so do not strip the module). LP_REPLACE keeps a pointer
 *   to NEW so that -O2, LTO and -Wl,--gc-sections cannot drop it.
 * - C++: the strings hold symbol names exactly as written, so declare NEW
 *   extern "C". To replace a C++ function of the target, write OLD as its
 *   mangled name, e.g. LP_REPLACE(_Z8classifyPKci, classify_v2). Modules that
 *   throw exceptions or use thread-local storage need `--mode dlopen`.
 * - The manifest is data only: nothing here runs code in the target.
 */
#ifndef LP_PATCH_H
#define LP_PATCH_H

#define LP__CAT2(a, b) a##b
#define LP__CAT(a, b) LP__CAT2(a, b)
#define LP__STR2(x) #x
#define LP__STR(x) LP__STR2(x)

#ifdef __COUNTER__
#define LP__COUNTER __COUNTER__
#else
#define LP__COUNTER __LINE__
#endif
#define LP__UNIQ(prefix) LP__CAT(prefix, LP__COUNTER)

/*
 * retain (GCC 11+, clang 13+) marks the section SHF_GNU_RETAIN so that
 * `ld --gc-sections` keeps it even though nothing refers to it.
 */
#if defined(__has_attribute)
#if __has_attribute(retain)
#define LP__RETAIN retain,
#endif
#endif
#ifndef LP__RETAIN
#define LP__RETAIN
#endif

/* One manifest entry: a NUL-terminated string placed in .lp_patch. */
#define LP__ENTRY(name, text)                                                  \
	__attribute__((section(".lp_patch"), LP__RETAIN used, aligned(1)))     \
	static const char name[] = text

/* C and C++ can both name a function pointer type this way. */
typedef void (*lp__fn_t)(void);

#define LP__REPLACE(uniq, old_fn, new_fn)                                      \
	LP__ENTRY(LP__CAT(lp__replace_, uniq),                                 \
		  "replace=" LP__STR(old_fn) ":" LP__STR(new_fn));             \
	__attribute__((LP__RETAIN used)) static const lp__fn_t                 \
		LP__CAT(lp__keep_, uniq) = (lp__fn_t)(new_fn)

/*
 * The address of PTR is kept in a retained variable: the compiler cannot
 * assume PTR keeps its initial value (lp writes it from outside).
 */
#define LP__ORIGINAL(uniq, old_fn, ptr)                                        \
	LP__ENTRY(LP__CAT(lp__original_, uniq),                                \
		  "original=" LP__STR(old_fn) ":" LP__STR(ptr));               \
	__attribute__((LP__RETAIN used)) static void *const                    \
		LP__CAT(lp__keepptr_, uniq) = (void *)&(ptr)

#define LP_PATCH_ID(id) LP__ENTRY(LP__UNIQ(lp__id_), "id=" id)
#define LP_REPLACE(old_fn, new_fn) LP__REPLACE(LP__COUNTER, old_fn, new_fn)
#define LP_TARGET_BUILD_ID(hex) LP__ENTRY(LP__UNIQ(lp__target_), "target=" hex)
#define LP_DEPENDS(id) LP__ENTRY(LP__UNIQ(lp__depends_), "depends=" id)
#define LP_DESCRIPTION(text) LP__ENTRY(LP__UNIQ(lp__description_), "description=" text)
#define LP_ORIGINAL(old_fn, ptr) LP__ORIGINAL(LP__COUNTER, old_fn, ptr)

#endif /* LP_PATCH_H */
