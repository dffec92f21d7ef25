/* The second static fix (see dup1.c). */
__attribute__((used, noinline)) static int fix(int x) { return x * 7; }

int use_fix(int x) { return fix(x); }
