// Package module reads lp patch modules: ELF64 x86-64 shared objects whose
// manifest lives in a section named .lp_patch (see include/lp_patch.h and
// DESIGN.md "Patch modules").
//
// It owns the manifest format (ParseManifest), the checks that make a file a
// usable patch module (Parse, Open) and the report behind
// `lpctl patch inspect` (Module.Inspect). It does not load anything into a
// process; the loaders use the parsed Module.
//
// # Security
//
// Modules arrive from operators and over the cluster, so every byte is
// untrusted: parsing never panics (debug/elf is guarded by recover), sizes are
// bounded, and every error is one line naming the file and what is wrong, e.g.
// "fix.so: no .lp_patch section (build it with include/lp_patch.h)".
// Parsing only reads the file; it never runs code from it.
//
// # Concurrency
//
// A *Module is immutable after Parse returns and may be shared between
// goroutines. Callers must not modify its Data, Funcs or slices.
package module
