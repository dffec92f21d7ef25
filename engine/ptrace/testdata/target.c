// A multi-threaded target for the ptrace tests.
//
//   target NBUSY NBLOCKED [spawn] [readstdin]
//
// NBUSY threads spin incrementing a counter, NBLOCKED threads sleep in
// pause(). With "spawn", a thread keeps creating short-lived threads. With
// "readstdin", the main thread blocks reading stdin and prints what read()
// returned; otherwise it prints "tick N" every 2 ms. SIGUSR1 is counted and
// reported. The first line tells the addresses the tests call.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile unsigned long counter;
static volatile sig_atomic_t usr1;

__attribute__((noinline)) long target_add(long a, long b) { return a + b + 1000; }

__attribute__((noinline)) long target_sleep(long ms) {
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	return ms;
}

__attribute__((noinline)) long target_tid(void) { return syscall(SYS_gettid); }

__attribute__((noinline)) long target_crash(long x) {
	volatile long *p = (long *)16;
	return *p + x;
}

static void on_usr1(int sig) { (void)sig; usr1++; }

static void *busy(void *arg) {
	(void)arg;
	for (;;) __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *blocked(void *arg) {
	(void)arg;
	for (;;) pause();
	return NULL;
}

static void *shortlived(void *arg) {
	(void)arg;
	usleep(20000);
	return NULL;
}

static void *spawner(void *arg) {
	(void)arg;
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, shortlived, NULL) == 0) pthread_detach(t);
		usleep(1000);
	}
	return NULL;
}

int main(int argc, char **argv) {
	int nbusy = argc > 1 ? atoi(argv[1]) : 1;
	int nblocked = argc > 2 ? atoi(argv[2]) : 0;
	int spawn = 0, readstdin = 0;
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "spawn")) spawn = 1;
		if (!strcmp(argv[i], "readstdin")) readstdin = 1;
	}
	signal(SIGUSR1, on_usr1);
	pthread_t t;
	for (int i = 0; i < nbusy; i++) pthread_create(&t, NULL, busy, NULL);
	for (int i = 0; i < nblocked; i++) pthread_create(&t, NULL, blocked, NULL);
	if (spawn) pthread_create(&t, NULL, spawner, NULL);
	printf("ready pid=%d add=%p sleep=%p crash=%p getpid=%p tid=%p\n", getpid(), (void *)target_add,
	       (void *)target_sleep, (void *)target_crash, (void *)getpid, (void *)target_tid);
	fflush(stdout);
	if (readstdin) {
		for (;;) {
			char buf[64];
			ssize_t n = read(0, buf, sizeof buf);
			printf("read %zd\n", n);
			fflush(stdout);
			if (n <= 0) return 1;
		}
	}
	unsigned long last_usr1 = 0;
	for (;;) {
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
		if (usr1 != last_usr1) {
			last_usr1 = usr1;
			printf("usr1 %lu\n", last_usr1);
		}
		printf("tick %lu\n", counter);
		fflush(stdout);
	}
}
