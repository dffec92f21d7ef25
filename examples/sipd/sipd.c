// sipd: a toy SIP front end for the lp demo.
//
//   sipd [-p PORT] [-f PIDFILE] [-t THREADS]
//
// Worker threads classify a stream of generated SIP requests; the main
// thread prints one status line a second:
//
//   sipd pid=812 version=1 handled=1234567 invites=... rejected=... oversize_accepted=...
//
// The bug lp fixes live: classify_invite() accepts INVITEs longer than
// max_len (oversize_accepted keeps growing). fix-invite.c replaces it with a
// version that rejects them, reading the live max_len.
//
// With -p, sipd listens on 127.0.0.1:PORT (a TCP health check target) and
// answers each connection with its status line.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int max_len = 512;                  // the configured limit, read by the fix
int version = 1;                    // the fix sets it to 2 in its initialiser
static unsigned long handled, invites, rejected, oversize_accepted;

// classify_invite returns 1 for an INVITE to accept, 0 to reject. Bug: it
// never checks len against max_len.
__attribute__((noipa)) int classify_invite(const char *msg, int len) {
	volatile int n = len;
	if (n < 6) return 0;
	return memcmp(msg, "INVITE", 6) == 0;
}

static void *worker(void *arg) {
	unsigned seed = (unsigned)(unsigned long)arg;
	char msg[2048];
	memset(msg, 'x', sizeof msg);
	for (;;) {
		int len = 64 + (int)(rand_r(&seed) % 1024);
		int invite = rand_r(&seed) % 4 != 0;
		memcpy(msg, invite ? "INVITE" : "OPTION", 6);
		int ok = classify_invite(msg, len);
		__atomic_add_fetch(&handled, 1, __ATOMIC_RELAXED);
		if (invite) __atomic_add_fetch(&invites, 1, __ATOMIC_RELAXED);
		if (invite && !ok) __atomic_add_fetch(&rejected, 1, __ATOMIC_RELAXED);
		if (ok && len > max_len) __atomic_add_fetch(&oversize_accepted, 1, __ATOMIC_RELAXED);
		if ((handled & 0xff) == 0) usleep(100);
	}
	return NULL;
}

static void status(char *buf, size_t n) {
	snprintf(buf, n, "sipd pid=%d version=%d handled=%lu invites=%lu rejected=%lu oversize_accepted=%lu\n",
	         getpid(), version, handled, invites, rejected, oversize_accepted);
}

static void *listener(void *arg) {
	int port = (int)(long)arg;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
		perror("sipd: listen");
		exit(1);
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) continue;
		char buf[256];
		status(buf, sizeof buf);
		if (write(c, buf, strlen(buf)) < 0) { /* peer gone */ }
		close(c);
	}
	return NULL;
}

int main(int argc, char **argv) {
	int port = 0, threads = 4, opt;
	const char *pidfile = NULL;
	while ((opt = getopt(argc, argv, "p:f:t:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'f': pidfile = optarg; break;
		case 't': threads = atoi(optarg); break;
		default: fprintf(stderr, "usage: sipd [-p PORT] [-f PIDFILE] [-t THREADS]\n"); return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (long i = 0; i < threads; i++) pthread_create(&t, NULL, worker, (void *)(i + 1));
	if (port) pthread_create(&t, NULL, listener, (void *)(long)port);
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (!f) { perror("sipd: pidfile"); return 1; }
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}
	for (;;) {
		char buf[256];
		status(buf, sizeof buf);
		fputs(buf, stdout);
		sleep(1);
	}
}
