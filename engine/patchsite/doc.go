// Package patchsite decides whether and how the entry of a function can be
// overwritten with a jump, and whether the threads of a stopped process are
// clear of what is about to be overwritten. It is pure analysis on bytes and
// addresses: it never touches a process.
//
// Analyze decodes the function (golang.org/x/arch/x86/x86asm, linear sweep
// over the bytes its symbol-table size covers) and picks the region that the
// jump overwrites: the first whole instructions covering the jump, after an
// endbr64 at entry (kept, so indirect calls under CET/IBT still land on it),
// or through a NOP pad left by -fpatchable-function-entry. It refuses, with
// an *UnsafeError, a function too small for the jump, a region holding call,
// syscall, sysenter or int (a thread could sit in the kernel or a callee with
// its return address inside the region), an instruction it cannot decode, and
// any relative branch of the function (jmp, jcc, loop, jrcxz, call, xbegin)
// that lands strictly inside the region.
//
// What cannot be checked statically: indirect branches (jump tables, computed
// gotos, function pointers into the middle of a function) and branches from
// other functions, such as the foo.cold part GCC splits off foo. Those rarely
// target the first bytes of a function but are not proven absent.
//
// CheckThreads runs inside the stop-the-world window of activation. A Checker
// built once (NewChecker) checks any number of thread snapshots without
// allocating. Stack words are scanned raw: any word that happens to hold an
// address inside a checked range counts as a return address. That is
// conservative (false positives, so a needless retry, are possible; no false
// negatives within the scanned part of the stack).
//
// # Concurrency
//
// Functions are pure. A *Checker is immutable after NewChecker and may be
// used from several goroutines.
package patchsite
