package module

import "errors"

// Sentinel errors; every error returned by Parse and Open wraps one of them
// (test with errors.Is). The messages name the file and the problem.
var (
	// ErrNotELF: the file does not start with the ELF magic.
	ErrNotELF = errors.New("not an ELF file")
	// ErrMalformed: the ELF structure is truncated or inconsistent.
	ErrMalformed = errors.New("malformed ELF")
	// ErrUnsupported: a valid ELF file that is not an x86-64 ELF64 shared object.
	ErrUnsupported = errors.New("unsupported ELF file")
	// ErrNoManifest: the module has no .lp_patch section.
	ErrNoManifest = errors.New("no .lp_patch section")
	// ErrManifest: the .lp_patch section is malformed.
	ErrManifest = errors.New("bad .lp_patch manifest")
	// ErrUndefined: a replacement function is not defined in the module.
	ErrUndefined = errors.New("replacement function not defined in the module")
	// ErrTooLarge: the file exceeds MaxSize.
	ErrTooLarge = errors.New("module too large")
)

// Error is the error of Parse and Open: File is the name given to Parse (or
// the path given to Open), Kind one of the sentinels above, Detail the one
// line shown to the operator.
type Error struct {
	File   string
	Kind   error
	Detail string
}

func (e *Error) Error() string { return e.File + ": " + e.Detail }

// Unwrap returns the sentinel, so errors.Is(err, ErrNoManifest) works.
func (e *Error) Unwrap() error { return e.Kind }

// ManifestError describes one bad entry of a .lp_patch section. Index is the
// 0-based number of the entry among the non-empty strings, -1 when the
// problem is not tied to one entry (for example a missing replace).
type ManifestError struct {
	Index  int
	Entry  string
	Reason string
}

func (e *ManifestError) Error() string {
	if e.Index < 0 {
		return ".lp_patch: " + e.Reason
	}
	return ".lp_patch entry " + quote(e.Entry) + ": " + e.Reason
}

// Unwrap returns ErrManifest.
func (e *ManifestError) Unwrap() error { return ErrManifest }
