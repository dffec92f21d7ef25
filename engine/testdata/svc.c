// A multi-threaded service for the engine tests.
//
//   svc NWORKERS [park]
//
// Workers call classify() and scale() in a loop and check that each result
// is one that some version of the function can give; anything else is
// printed as "BAD". The main thread prints, every 2 ms, what the current
// versions return:
//
//   v classify=C scale=S limit=L calls=N loopy=Y padded=P bad=B rip=R jrcxz=J
//
// With "park", one more thread sits inside parked() for ever.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int limit = 10;       // a global that patches read (and must see live)
int calls;            // a global that patches write
volatile long bad;

// classify: version 1 returns 0/1; patches return 0/2, 3, 4 or limit+1000.
// Real functions are longer than the 14-byte jump; volatile keeps these so.
__attribute__((noipa)) int classify(int x) {
	volatile int v = x;
	int r = v > limit;
	return r;
}

// A static function: only in .symtab.
static __attribute__((noipa)) int scale(int x) {
	volatile int v = x;
	v = v * 2;
	return v;
}

// A loop whose back-edge lands inside the first five bytes: not patchable.
int loopy(int n);
__asm__(".text\n.globl loopy\n.type loopy,@function\nloopy:\n"
        "  xor %eax,%eax\n"
        "1: add $1,%eax\n"
        "  cmp %edi,%eax\n"
        "  jl 1b\n"
        "  ret\n"
        ".size loopy, .-loopy\n");

// Starts with a RIP-relative load: a trampoline must adjust it.
int ripfn(int x);
__asm__(".text\n.globl ripfn\n.type ripfn,@function\nripfn:\n"
        "  mov limit(%rip),%eax\n"
        "  add %edi,%eax\n"
        "  ret\n"
        ".size ripfn, .-ripfn\n");

// Starts with jrcxz, which has no 32-bit form: its original cannot be
// relocated.
int jrcxzfn(int x);
__asm__(".text\n.globl jrcxzfn\n.type jrcxzfn,@function\njrcxzfn:\n"
        "  xor %ecx,%ecx\n"
        "  jrcxz 1f\n"
        "  ud2\n"
        "1: lea 3(%rdi),%eax\n"
        "  ret\n"
        ".size jrcxzfn, .-jrcxzfn\n");

// Too short for a jump on its own (lea; ret), but compiled with a 5-byte
// NOP pad at entry (-fpatchable-function-entry), which lp patches through.
__attribute__((noipa, patchable_function_entry(5, 0))) int padded(int x) { return x + 1; }

__attribute__((noipa)) int parked(int x) {
	volatile int y = x * 3;
	y += 7;
	y ^= 0x55;
	for (;;) pause();
	return y;
}

static int classify_ok(int x, int r) {
	switch (r) {
	case 0: case 1: case 2: case 3: case 4: return 1;
	default: return r >= 1000 && r < 1200;
	}
	(void)x;
}

static int scale_ok(int x, int r) { return r == x * 2 || r == x * 3; }

static void *worker(void *arg) {
	long i = (long)arg;
	for (;;) {
		int x = (int)(i++ % 40);
		int c = classify(x);
		if (!classify_ok(x, c)) {
			bad++;
			printf("BAD classify(%d)=%d\n", x, c);
			fflush(stdout);
		}
		int s = scale(x);
		if (!scale_ok(x, s)) {
			bad++;
			printf("BAD scale(%d)=%d\n", x, s);
			fflush(stdout);
		}
	}
	return NULL;
}

static void *park(void *arg) {
	(void)arg;
	parked(1);
	return NULL;
}

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1;
	pthread_t t;
	for (long i = 0; i < n; i++) pthread_create(&t, NULL, worker, (void *)(i * 7));
	if (argc > 2 && !strcmp(argv[2], "park")) pthread_create(&t, NULL, park, NULL);
	printf("ready pid=%d\n", getpid());
	fflush(stdout);
	for (;;) {
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
		printf("v classify=%d scale=%d limit=%d calls=%d loopy=%d padded=%d bad=%ld rip=%d jrcxz=%d\n", classify(20),
		       scale(5), limit, calls, loopy(3), padded(1), bad, ripfn(1), jrcxzfn(1));
		fflush(stdout);
	}
}
