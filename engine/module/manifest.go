package module

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the manifest format.
const (
	MaxIDLen          = 64
	MaxSymbolLen      = 1024 // mangled C++ names get long; this is generous
	MinTargetLen      = 2    // hex characters of a build-id
	MaxTargetLen      = 128
	MaxDescriptionLen = 4096
	MaxManifestSize   = 1 << 20 // bytes of the .lp_patch section
	MaxEntries        = 4096    // non-empty strings in .lp_patch
)

// Manifest keys, as written in .lp_patch.
const (
	KeyID          = "id"
	KeyReplace     = "replace"
	KeyTarget      = "target"
	KeyDepends     = "depends"
	KeyDescription = "description"
	KeyOriginal    = "original"
)

// Replace redirects function Old of the target to function New of the module.
type Replace struct {
	Old string `json:"old"`
	New string `json:"new"`
}

func (r Replace) String() string { return r.Old + ":" + r.New }

// Original asks lp to store in the module's function-pointer variable Ptr
// the implementation Old had just before this patch.
type Original struct {
	Old string `json:"old"`
	Ptr string `json:"ptr"`
}

func (o Original) String() string { return o.Old + ":" + o.Ptr }

// Manifest is the parsed content of a .lp_patch section.
type Manifest struct {
	ID          string     `json:"id"` // empty when the module does not set one (Parse fills it in)
	Replaces    []Replace  `json:"replaces"`
	Target      string     `json:"target,omitempty"` // GNU build-id, lower-case hex
	Depends     []string   `json:"depends,omitempty"`
	Description string     `json:"description,omitempty"`
	Originals   []Original `json:"originals,omitempty"`
}

// ParseManifest parses the bytes of a .lp_patch section: NUL-terminated
// key=value strings, empty strings (padding) skipped. It rejects unknown keys,
// entries without '=', a last entry without its NUL, values that break the
// rules of DESIGN.md and keys given more often than allowed. Errors are
// *ManifestError (wrapping ErrManifest).
//
// An ID left empty is valid here; Parse defaults it to the file's base name.
func ParseManifest(section []byte) (Manifest, error) {
	var m Manifest
	if len(section) > MaxManifestSize {
		return m, &ManifestError{Index: -1, Reason: fmt.Sprintf("section is %d bytes, limit %d", len(section), MaxManifestSize)}
	}
	var (
		index   int
		seen    = map[string]int{}
		olds    = map[string]bool{}
		depends = map[string]bool{}
		origs   = map[string]bool{}
		ptrs    = map[string]bool{}
	)
	for rest := section; len(rest) > 0; {
		n := bytes.IndexByte(rest, 0)
		if n < 0 {
			return Manifest{}, &ManifestError{Index: index, Entry: string(rest), Reason: "not NUL-terminated (section truncated?)"}
		}
		entry := string(rest[:n])
		rest = rest[n+1:]
		if entry == "" {
			continue // padding between entries
		}
		if index >= MaxEntries {
			return Manifest{}, &ManifestError{Index: -1, Reason: fmt.Sprintf("more than %d entries", MaxEntries)}
		}
		bad := func(format string, args ...any) error {
			return &ManifestError{Index: index, Entry: entry, Reason: fmt.Sprintf(format, args...)}
		}
		key, value, ok := strings.Cut(entry, "=")
		if !ok {
			return Manifest{}, bad("want key=value")
		}
		seen[key]++
		switch key {
		case KeyID:
			if seen[key] > 1 {
				return Manifest{}, bad("id given more than once")
			}
			if err := ValidID(value); err != nil {
				return Manifest{}, bad("%v", err)
			}
			m.ID = value
		case KeyReplace:
			r, err := parseReplace(value)
			if err != nil {
				return Manifest{}, bad("%v", err)
			}
			if olds[r.Old] {
				return Manifest{}, bad("%s is replaced more than once", r.Old)
			}
			olds[r.Old] = true
			m.Replaces = append(m.Replaces, r)
		case KeyTarget:
			if seen[key] > 1 {
				return Manifest{}, bad("target given more than once")
			}
			t, err := parseBuildID(value)
			if err != nil {
				return Manifest{}, bad("%v", err)
			}
			m.Target = t
		case KeyDepends:
			if err := ValidID(value); err != nil {
				return Manifest{}, bad("%v", err)
			}
			if depends[value] {
				return Manifest{}, bad("depends on %s more than once", value)
			}
			depends[value] = true
			m.Depends = append(m.Depends, value)
		case KeyDescription:
			if seen[key] > 1 {
				return Manifest{}, bad("description given more than once")
			}
			if err := validDescription(value); err != nil {
				return Manifest{}, bad("%v", err)
			}
			m.Description = value
		case KeyOriginal:
			o, err := parseOriginal(value)
			if err != nil {
				return Manifest{}, bad("%v", err)
			}
			if origs[o.Old] {
				return Manifest{}, bad("original of %s given more than once", o.Old)
			}
			if ptrs[o.Ptr] {
				return Manifest{}, bad("%s receives more than one original", o.Ptr)
			}
			origs[o.Old], ptrs[o.Ptr] = true, true
			m.Originals = append(m.Originals, o)
		default:
			return Manifest{}, bad("unknown key %s (known: id, replace, target, depends, description, original)", quote(key))
		}
		index++
	}
	if len(m.Replaces) == 0 {
		return Manifest{}, &ManifestError{Index: -1, Reason: "no replace entry (add LP_REPLACE(old, new))"}
	}
	for _, o := range m.Originals {
		if !olds[o.Old] {
			return Manifest{}, &ManifestError{Index: -1, Reason: fmt.Sprintf("original=%s: the module does not replace %s (add LP_REPLACE(%s, ...))", o, o.Old, o.Old)}
		}
	}
	if m.ID != "" && depends[m.ID] {
		return Manifest{}, &ManifestError{Index: -1, Reason: fmt.Sprintf("patch %s depends on itself", m.ID)}
	}
	return m, nil
}

// ValidID reports whether s is a valid patch id: [A-Za-z0-9._-]{1,64}.
func ValidID(s string) error {
	if s == "" {
		return fmt.Errorf("empty id")
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("id is %d characters, limit %d", len(s), MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("id %s has %s at %d (allowed: A-Z a-z 0-9 . _ -)", quote(s), quote(string(c)), i)
		}
	}
	return nil
}

// validSymbol accepts C identifiers and what compilers and assemblers add to
// them: Itanium-mangled C++ names (alphanumerics and '_'), '.' (clones like
// foo.cold, foo.isra.0) and '$'.
func validSymbol(s string) error {
	if s == "" {
		return fmt.Errorf("empty symbol name")
	}
	if len(s) > MaxSymbolLen {
		return fmt.Errorf("symbol name is %d characters, limit %d", len(s), MaxSymbolLen)
	}
	if c := s[0]; c >= '0' && c <= '9' {
		return fmt.Errorf("symbol %s starts with a digit", quote(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != '$' {
			return fmt.Errorf("symbol %s has %s at %d", quote(s), quote(string(c)), i)
		}
	}
	return nil
}

func parseReplace(v string) (Replace, error) {
	oldName, newName, ok := strings.Cut(v, ":")
	if !ok {
		return Replace{}, fmt.Errorf("want OLD:NEW")
	}
	if err := validSymbol(oldName); err != nil {
		return Replace{}, fmt.Errorf("old: %w", err)
	}
	if err := validSymbol(newName); err != nil {
		return Replace{}, fmt.Errorf("new: %w", err)
	}
	if oldName == newName {
		// Binding rules make a module's definition of a name the target
		// already defines resolve to the target's copy, so the "replacement"
		// would be the original itself.
		return Replace{}, fmt.Errorf("%s replaces itself (give the new function another name)", oldName)
	}
	return Replace{Old: oldName, New: newName}, nil
}

func parseOriginal(v string) (Original, error) {
	oldName, ptr, ok := strings.Cut(v, ":")
	if !ok {
		return Original{}, fmt.Errorf("want OLD:PTR")
	}
	if err := validSymbol(oldName); err != nil {
		return Original{}, fmt.Errorf("old: %w", err)
	}
	if err := validSymbol(ptr); err != nil {
		return Original{}, fmt.Errorf("ptr: %w", err)
	}
	return Original{Old: oldName, Ptr: ptr}, nil
}

func parseBuildID(v string) (string, error) {
	if len(v) < MinTargetLen || len(v) > MaxTargetLen {
		return "", fmt.Errorf("build-id is %d hex characters, want %d..%d", len(v), MinTargetLen, MaxTargetLen)
	}
	if len(v)%2 != 0 {
		return "", fmt.Errorf("build-id has an odd number (%d) of hex characters", len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("build-id has non-hex %s at %d", quote(string(c)), i)
		}
	}
	return strings.ToLower(v), nil
}

func validDescription(v string) error {
	if len(v) > MaxDescriptionLen {
		return fmt.Errorf("description is %d bytes, limit %d", len(v), MaxDescriptionLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("description is not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			// Operators see it in one-line listings and terminals.
			return fmt.Errorf("description holds control character %U", r)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// quote quotes s for a one-line message, shortening long strings.
func quote(s string) string {
	const limit = 80
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
