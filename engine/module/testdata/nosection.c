/* A plain shared object without a manifest. */
int classify_v2(int x) { return x + 2; }
