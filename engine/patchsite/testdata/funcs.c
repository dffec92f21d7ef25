/* Compiler-generated entries: built with -O0, -O2, -fcf-protection and
   -fpatchable-function-entry by the tests. */
int add(int a, int b)
{
	return a + b;
}

int classify(int x)
{
	if (x < 0)
		return -1;
	if (x == 0)
		return 0;
	return x * 3 + 7;
}

int inc(int x)
{
	return x + 1;
}

long sum(const int *v, int n)
{
	long s = 0;
	for (int i = 0; i < n; i++)
		s += v[i] * 2 + (v[i] >> 3);
	return s;
}
