// A stand-in for one node's service in the cluster end-to-end tests: it
// prints "v N" every 20 ms, where N is what answer() returns (42 unpatched,
// 1041 with fix.c applied).
#include <stdio.h>
#include <unistd.h>

int base = 41; // a global the patch reads: it must see this live copy

__attribute__((noipa)) int answer(void) {
	volatile int v = base;
	v = v + 1;
	return v;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		printf("v %d\n", answer());
		usleep(20000);
	}
}
