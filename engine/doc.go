// Package engine live-patches running Linux x86-64 processes on one host.
//
// Apply loads a patch module (an ELF shared object built -shared -fPIC, with
// a manifest in its .lp_patch section, see package module) into a running
// process, binds it to the process's own symbols and globals, runs its
// initialisers there, and then, in one short stop-the-world window, writes a
// jump at the entry of each replaced function, after checking that no thread
// is inside the bytes being overwritten (or, in the default "function"
// consistency, anywhere in the replaced functions, its stack included).
// Revert writes the saved bytes back. The patches applied to a process are
// recorded inside that process (see registry.go), so List and Revert work
// from any lp process, after lpd restarts, or where lpd never ran.
//
// Sub-packages: ptrace (process control), proc (address space, symbols,
// holes), module (patch-module format), patchsite (entry-site analysis and
// thread checks).
//
// # Loading modes
//
// inject (default): lp maps the module itself with injected mmap, within
// ±2 GiB of the replaced functions when a hole exists so a 5-byte jmp rel32
// reaches (else a 14-byte absolute jump), applies its relocations (RELATIVE,
// 64, GLOB_DAT, JUMP_SLOT, IRELATIVE, RELR), resolves its undefined symbols
// against the target's executable and libraries (.dynsym and .symtab, so a
// patch can call the target's static functions), and binds a global the
// module defines that the target defines too to the target's copy (PANNUS
// "omits duplicate symbols"). Memory is mapped RW, written, then made R or
// RX per segment: never RWX. dlopen: the target calls its own dlopen, for
// modules with TLS or C++ exceptions.
//
// # Privileges
//
// Root or CAP_SYS_PTRACE over the target.
//
// # What can go wrong in a target
//
// Every step that changes the target records its undo; an error unwinds them
// newest first and detaches, leaving the target running unpatched. Two
// things are deliberately not undone: memory of a module whose initialisers
// ran (they may have registered callbacks into it) and memory of a reverted
// patch (a thread may still be running in it). Initialisers run with the
// other threads running, on one borrowed thread, under a deadline; one that
// does not return in time is abandoned with the thread's registers restored,
// but what it did stays. The stack scan is conservative: a stale word that
// happens to point into a replaced function refuses activation until the
// deadline (use --consistency entry, which only guards the overwritten
// bytes). Indirect branches into the first bytes of a function cannot be
// found by static analysis.
//
// # Concurrency
//
// One operation per target at a time: ptrace allows one tracer, so a second
// Apply on the same process fails to attach with a clear error. Functions of
// this package may be called from any goroutine.
package engine
