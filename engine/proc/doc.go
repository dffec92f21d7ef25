// Package proc describes the address space of a running target process
// without stopping or tracing it: its memory mappings (/proc/PID/maps), the
// ELF objects mapped into it (main executable, shared libraries, the dynamic
// linker) with their load bias and GNU build-id, the symbols those objects
// define (from .dynsym and .symtab, static functions included) at their
// absolute addresses in the target, and free address ranges within rel32
// reach (±2 GiB) of given code addresses, where a patch module can be mapped
// so that a 5-byte jmp reaches it.
//
// Nothing here uses ptrace or writes to the target. The loader and the CLI
// build on it; engine/ptrace does the stopping, reading and writing.
//
// # Privileges
//
// Reading /proc/PID/maps needs the same rights as ptrace-reading the process
// (PTRACE_MODE_READ): the same uid, or CAP_SYS_PTRACE. Object files are opened
// through /proc/PID/map_files/START-END (needs CAP_SYS_ADMIN on most kernels),
// so a file that was deleted or replaced on disk after the target mapped it,
// or that lives in another mount namespace, still resolves to the bytes the
// target runs; without that right proc falls back to /proc/PID/root/PATH and
// checks that the inode is the one mapped.
//
// # What can go wrong in a target
//
// The address space changes while we read it: threads map and unmap memory,
// libraries are dlopen'd and dlclose'd, and the process may exit. A Space is a
// snapshot; Refresh takes a new one. Addresses from a stale Space may no
// longer be valid, so callers that act on them stop the target first (engine
// ptrace) and Refresh. A file that cannot be read, or an ELF file that is
// garbled, never panics: it is reported in Space.Problems and left out of
// symbol lookups. Symbols of an object are read lazily, on the first lookup
// that reaches it, from the same file that is mapped.
//
// # Security
//
// ELF files and /proc text are treated as untrusted input: parsers return
// errors instead of panicking (debug/elf is called under recover, as cilium's
// NewSafeELFFile does), and note sizes are bounded before they are read.
//
// # Concurrency
//
// ParseMaps, ReadMaps, BuildID, FileBuildID and FreeRange are safe for
// concurrent use. The methods Lookup, LookupGlobal, LookupIn, FuncAt,
// ObjectAt, FindHole and FindHoleNearAll of one Space may run concurrently
// with each other (lazy symbol loading is synchronised); Refresh replaces the
// exported fields and must not run concurrently with any other use of that
// Space.
package proc
