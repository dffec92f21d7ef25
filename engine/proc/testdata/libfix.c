/*
 * A library with a versioned symbol: fix_version@LPFIX_1 (old, hidden) and
 * fix_version@@LPFIX_2 (default). Lookups must strip the version, prefer the
 * default, and select the old one when asked for "fix_version@LPFIX_1".
 */
int fix_v1(void) { return 1; }
int fix_v2(void) { return 2; }
__asm__(".symver fix_v1, fix_version@LPFIX_1");
__asm__(".symver fix_v2, fix_version@@LPFIX_2");
