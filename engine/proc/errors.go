package proc

import "errors"

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrSymbolNotFound: no object of the space defines the symbol.
	ErrSymbolNotFound = errors.New("symbol not found")
	// ErrAmbiguousSymbol: one object defines several different symbols of
	// that name with the same preference (for example two static functions
	// of the same name in different source files).
	ErrAmbiguousSymbol = errors.New("ambiguous symbol")
	// ErrNoHole: no free range of the requested size exists within reach.
	ErrNoHole = errors.New("no free address range within reach")
	// ErrNotELF: the file is not an ELF file (bad magic).
	ErrNotELF = errors.New("not an ELF file")
	// ErrBadMaps: a line of /proc/PID/maps could not be parsed.
	ErrBadMaps = errors.New("malformed maps line")
	// ErrNotLoaded: an ELF file is mapped, but not as a loaded object
	// (no PT_LOAD segment matches its mappings).
	ErrNotLoaded = errors.New("ELF file is not mapped as a loaded object")

	// errNotCode: an ELF file mapped as data (read, not executed; a tool
	// reading a library with mmap, a core file, another architecture).
	// Such mappings are not objects and not problems.
	errNotCode = errors.New("ELF file mapped as data")
)
