// A target that measures how long it is kept from running, for the
// activation-pause benchmark.
//
//   clock NTHREADS
//
// NTHREADS threads in total, the main thread included, each call work() and
// read CLOCK_MONOTONIC in a tight loop. Over an interval they track:
//
//   gap    the longest time between two consecutive clock reads of one
//          thread (the largest over all threads), open gaps included: what a
//          single thread saw, scheduler preemption included;
//   stall  the longest time in which no thread of the process read the
//          clock: the process as a whole made no progress (all threads
//          stopped, or none of them on a CPU).
//
// Each line on stdin ends the current interval and starts the next: the
// main thread, which polls stdin without blocking, prints
//
//   gap MAXNS stall MAXNS work W
//
// where W is work(1) as it is now (4 unpatched; the patch gives 5). The
// first line, before any request, is "ready threads=N". EOF on stdin exits.
//
// Protocol: an interval is numbered by `epoch` and starts at resets[epoch %
// 64], written by the main thread before it publishes the new epoch. Each
// thread keeps its largest gap of the current epoch in its own cache line as
// epoch<<40 | ns, so the collector ignores values of an older epoch, and
// clips every gap to the start of the interval it is counted in.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NS_BITS 40
#define NS_MASK ((UINT64_C(1) << NS_BITS) - 1)

// The function the benchmark patches: hot (every thread calls it every
// iteration), longer than the 14-byte jump, no branch or call in it.
__attribute__((noipa)) int work(int x) {
	volatile int v = x;
	v = v * 3 + 1;
	return v;
}

struct slot {
	_Atomic uint64_t best; // epoch<<40 | longest gap of that epoch
	_Atomic int64_t last;  // the thread's latest clock read
} __attribute__((aligned(64)));

static struct slot *slots;
static int nthreads;
static _Atomic uint32_t epoch;
static _Atomic int64_t resets[64];
static _Atomic int64_t glast;   // latest clock read published by any thread
static _Atomic uint64_t gstall; // epoch<<40 | longest process-wide gap
static _Atomic int started;
static volatile long sink;

struct local {
	uint32_t e;
	int64_t r, last, max;
};

static inline int64_t now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

// raise sets *p to e<<40|g unless it holds a newer epoch or a larger gap.
static void raise_to(_Atomic uint64_t *p, uint32_t e, int64_t g) {
	uint64_t v = (uint64_t)e << NS_BITS | ((uint64_t)g > NS_MASK ? NS_MASK : (uint64_t)g);
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
	for (;;) {
		uint32_t oe = (uint32_t)(old >> NS_BITS);
		if (oe > e || (oe == e && (old & NS_MASK) >= (v & NS_MASK))) return;
		if (atomic_compare_exchange_weak_explicit(p, &old, v, memory_order_relaxed, memory_order_relaxed)) return;
	}
}

static void enter(struct local *l) {
	l->e = atomic_load_explicit(&epoch, memory_order_acquire);
	l->r = atomic_load_explicit(&resets[l->e % 64], memory_order_relaxed);
	l->max = 0;
}

// tick is one clock read of one thread.
static inline void tick(struct slot *s, struct local *l) {
	int64_t t = now();
	if (atomic_load_explicit(&epoch, memory_order_acquire) != l->e) enter(l);
	int64_t g = t - (l->last > l->r ? l->last : l->r);
	l->last = t;
	atomic_store_explicit(&s->last, t, memory_order_relaxed);
	if (g > l->max) {
		l->max = g;
		raise_to(&s->best, l->e, g);
	}
	int64_t old = atomic_load_explicit(&glast, memory_order_relaxed);
	while (t > old) {
		if (atomic_compare_exchange_weak_explicit(&glast, &old, t, memory_order_relaxed, memory_order_relaxed)) {
			int64_t sg = t - (old > l->r ? old : l->r);
			if (sg > 0) raise_to(&gstall, l->e, sg);
			break;
		}
	}
}

static void *spin(void *arg) {
	struct slot *s = arg;
	struct local l = {0};
	enter(&l);
	l.last = now();
	atomic_fetch_add(&started, 1);
	for (int i = 0;; i++) {
		sink += work(i);
		tick(s, &l);
	}
	return NULL;
}

// report ends the current interval, prints it and starts the next.
static void report(struct local *l) {
	uint32_t e = atomic_load_explicit(&epoch, memory_order_relaxed);
	int64_t r = atomic_load_explicit(&resets[e % 64], memory_order_relaxed);
	int64_t t = now();
	int64_t gap = 0;
	for (int i = 0; i < nthreads; i++) {
		uint64_t v = atomic_load_explicit(&slots[i].best, memory_order_relaxed);
		int64_t m = (uint32_t)(v >> NS_BITS) == e ? (int64_t)(v & NS_MASK) : 0;
		int64_t last = atomic_load_explicit(&slots[i].last, memory_order_relaxed);
		int64_t open = t - (last > r ? last : r); // a thread that has not run since
		if (open > m) m = open;
		if (m > gap) gap = m;
	}
	uint64_t v = atomic_load_explicit(&gstall, memory_order_relaxed);
	int64_t stall = (uint32_t)(v >> NS_BITS) == e ? (int64_t)(v & NS_MASK) : 0;
	// The next interval starts before the print: once the reader has the
	// line, whatever stops a thread is counted in the new interval (the
	// print itself too, a few microseconds, in every interval alike).
	int64_t nr = now();
	atomic_store_explicit(&resets[(e + 1) % 64], nr, memory_order_relaxed);
	atomic_store_explicit(&epoch, e + 1, memory_order_release);
	enter(l);
	l->last = nr;
	printf("gap %lld stall %lld work %d\n", (long long)gap, (long long)stall, work(1));
	fflush(stdout);
}

int main(int argc, char **argv) {
	nthreads = argc > 1 ? atoi(argv[1]) : 1;
	if (nthreads < 1 || nthreads > 4096) {
		fprintf(stderr, "clock: NTHREADS must be 1..4096\n");
		return 2;
	}
	slots = aligned_alloc(64, sizeof(struct slot) * (size_t)nthreads);
	for (int i = 0; i < nthreads; i++) {
		atomic_init(&slots[i].best, 0);
		atomic_init(&slots[i].last, 0);
	}
	int64_t t0 = now();
	atomic_store(&resets[0], t0);
	atomic_store(&glast, t0);
	for (int i = 1; i < nthreads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, spin, &slots[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	while (atomic_load(&started) < nthreads - 1) sched_yield();
	if (fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK) != 0) {
		perror("fcntl");
		return 1;
	}
	struct local l = {0};
	enter(&l);
	l.last = now();
	printf("ready threads=%d\n", nthreads);
	fflush(stdout);
	char buf[256];
	for (int i = 0;; i++) {
		sink += work(i);
		tick(&slots[0], &l);
		if (i % 256 != 0) continue;
		ssize_t n = read(0, buf, sizeof buf);
		if (n == 0) return 0;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) continue;
			return 1;
		}
		for (ssize_t j = 0; j < n; j++)
			if (buf[j] == '\n') report(&l);
	}
}
