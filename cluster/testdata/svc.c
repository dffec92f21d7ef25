// A stand-in for one node's service in the cluster end-to-end tests: it
// prints "v N" every 20 ms, where N is what answer() returns (42 unpatched,
// 1041 with fix.c applied), and at once whenever N changes: answer() is
// called every millisecond, so the output holds every change of its
// result (a revert and a re-apply of a patch show as two changes).
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
	int last = answer();
	printf("v %d\n", last);
	for (int tick = 1;; tick++) {
		usleep(1000);
		int v = answer();
		if (v != last || tick % 20 == 0) {
			printf("v %d\n", v);
			last = v;
		}
	}
}
