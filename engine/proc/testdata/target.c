/*
 * Target for engine/proc tests. It prints, on one line, the addresses of
 * symbols as the dynamic linker and the compiler see them, then blocks on
 * stdin until it is closed or the test kills it. Library addresses come from
 * dlsym/dlvsym on the library's own handle, so that a canonical PLT entry in
 * a non-PIE executable cannot stand in for the library's function.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int fix_version(void); /* libfix.so, default version LPFIX_2 */

int lp_counter = 42;              /* global: .symtab (and .dynsym with -rdynamic) */
static int lp_static_state = 7;   /* local object: .symtab only */
__thread int lp_tls = 5;          /* STT_TLS: an offset, not an address */

/* A static function: only in .symtab, with its size. */
__attribute__((noinline, used)) static int secret_add(int a, int b)
{
	lp_static_state += a;
	return a + b + lp_counter + lp_static_state + lp_tls;
}

int main(void)
{
	int (*volatile fp)(int, int) = secret_add;
	void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
	void *libfix = dlopen("libfix.so", RTLD_LAZY | RTLD_NOLOAD);
	if (libc == NULL || libfix == NULL) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	printf("secret_add=%p lp_counter=%p lp_static_state=%p getpid=%p fix_version=%p fix_version_v1=%p sum=%d\n",
	       (void *)fp, (void *)&lp_counter, (void *)&lp_static_state,
	       dlsym(libc, "getpid"), dlsym(libfix, "fix_version"),
	       dlvsym(libfix, "fix_version", "LPFIX_1"), fp(1, 2) + fix_version());
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof buf) > 0)
		;
	return 0;
}
