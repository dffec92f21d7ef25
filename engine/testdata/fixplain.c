// A shared object with no lp manifest.
int classify_plain(int x) { return x; }
