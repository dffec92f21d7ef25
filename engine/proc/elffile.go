package proc

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxNoteBytes bounds how much of one note segment or section is read when
// looking for a build-id; real ones are a few hundred bytes.
const maxNoteBytes = 1 << 20

const (
	// ntGNUBuildID is NT_GNU_BUILD_ID, the note type of a GNU build-id.
	ntGNUBuildID = 3
	// stbGNUUnique is STB_GNU_UNIQUE (STB_LOOS), a global binding that
	// debug/elf does not name.
	stbGNUUnique elf.SymBind = 10
)

// guard runs fn and turns a panic inside it (debug/elf on garbled input)
// into an error.
func guard(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed ELF (parser panicked: %v)", what, r)
		}
	}()
	return fn()
}

// newSafeFile parses an ELF file from r. It returns an error wrapping
// ErrNotELF when the magic is wrong, and never panics.
func newSafeFile(r io.ReaderAt) (*elf.File, error) {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: shorter than an ELF header", ErrNotELF)
		}
		return nil, fmt.Errorf("reading ELF magic: %w", err)
	}
	if string(magic[:]) != elf.ELFMAG {
		return nil, ErrNotELF
	}
	var f *elf.File
	err := guard("parsing ELF headers", func() error {
		var err error
		f, err = elf.NewFile(r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("parsing ELF headers: %w", err)
	}
	return f, nil
}

// BuildID returns the GNU build-id of f (NT_GNU_BUILD_ID) as lowercase hex,
// read from the PT_NOTE segments or, for files without program headers, the
// SHT_NOTE sections (.note.gnu.build-id). It returns "" and no error when f
// has no build-id, and an error when a note is malformed.
func BuildID(f *elf.File) (id string, err error) {
	err = guard("reading build-id", func() error {
		for _, p := range f.Progs {
			if p.Type != elf.PT_NOTE {
				continue
			}
			data, err := io.ReadAll(io.LimitReader(p.Open(), maxNoteBytes))
			if err != nil {
				return fmt.Errorf("reading PT_NOTE at offset %#x: %w", p.Off, err)
			}
			found, ok, err := findBuildID(data, f.ByteOrder, p.Align)
			if err != nil {
				return fmt.Errorf("PT_NOTE at offset %#x: %w", p.Off, err)
			}
			if ok {
				id = found
				return nil
			}
		}
		for _, s := range f.Sections {
			if s.Type != elf.SHT_NOTE {
				continue
			}
			data, err := io.ReadAll(io.LimitReader(s.Open(), maxNoteBytes))
			if err != nil {
				return fmt.Errorf("reading section %s: %w", s.Name, err)
			}
			found, ok, err := findBuildID(data, f.ByteOrder, s.Addralign)
			if err != nil {
				return fmt.Errorf("section %s: %w", s.Name, err)
			}
			if ok {
				id = found
				return nil
			}
		}
		return nil
	})
	return id, err
}

// FileBuildID opens the ELF file at path and returns its build-id ("" when
// it has none).
func FileBuildID(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading build-id: %w", err)
	}
	defer fh.Close()
	f, err := newSafeFile(fh)
	if err != nil {
		return "", fmt.Errorf("reading build-id of %s: %w", path, err)
	}
	id, err := BuildID(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// findBuildID walks the notes in data: each is namesz, descsz, type (4
// bytes each), then the name and the descriptor, each padded to the note
// alignment (4, or 8 for segments aligned to 8 such as .note.gnu.property).
func findBuildID(data []byte, order binary.ByteOrder, align uint64) (string, bool, error) {
	if align != 8 {
		align = 4
	}
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	size := uint64(len(data))
	for off := uint64(0); off < size; {
		if size-off < 12 {
			// Trailing padding after the last note.
			if allZero(data[off:]) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("truncated note header at %#x", off)
		}
		namesz := uint64(order.Uint32(data[off:]))
		descsz := uint64(order.Uint32(data[off+4:]))
		typ := order.Uint32(data[off+8:])
		off += 12
		if namesz > size-off {
			return "", false, fmt.Errorf("note name size %d overruns the note data", namesz)
		}
		name := data[off : off+namesz]
		off = pad(off + namesz)
		if off > size || descsz > size-off {
			return "", false, fmt.Errorf("note descriptor size %d overruns the note data", descsz)
		}
		desc := data[off : off+descsz]
		off = pad(off + descsz)
		if typ == ntGNUBuildID && bytes.Equal(name, []byte("GNU\x00")) && len(desc) > 0 {
			return hex.EncodeToString(desc), true, nil
		}
	}
	return "", false, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// rawSym is one defined symbol as stored in the file: value is the ELF
// st_value (a link-time virtual address, or an offset in the TLS block).
type rawSym struct {
	name    string // without version
	version string // "" when unversioned
	hidden  bool   // a non-default version (name@VER, not name@@VER)
	value   uint64
	size    uint64
	typ     elf.SymType
	bind    elf.SymBind
}

// rank orders definitions of one name inside one object: lower is
// preferred. GLOBAL (and GNU_UNIQUE) before WEAK before LOCAL; a default
// version before a hidden one.
func (r *rawSym) rank() int {
	var n int
	switch r.bind {
	case elf.STB_GLOBAL, stbGNUUnique:
		n = 0
	case elf.STB_WEAK:
		n = 2
	default:
		n = 4
	}
	if r.hidden {
		n++
	}
	return n
}

func (r *rawSym) global() bool {
	return r.bind == elf.STB_GLOBAL || r.bind == elf.STB_WEAK || r.bind == stbGNUUnique
}

func (r *rawSym) isFunc() bool { return r.typ == elf.STT_FUNC || r.typ == elf.STT_GNU_IFUNC }

// splitVersion splits "getpid@@GLIBC_2.2.5" into ("getpid", "GLIBC_2.2.5",
// hidden=false) and "fix@V1" into ("fix", "V1", hidden=true). A name
// without '@' is returned as is.
func splitVersion(s string) (name, version string, hidden bool) {
	name, version, ok := strings.Cut(s, "@")
	if !ok {
		return s, "", false
	}
	if strings.HasPrefix(version, "@") {
		return name, version[1:], false
	}
	return name, version, true
}

// readSymbols returns the defined symbols of f from .dynsym and .symtab.
// Undefined, absolute, common, section and file symbols are skipped. A
// symbol present in both tables appears twice; callers deduplicate by
// value. Without withDynamic only .symtab is read (a separate debug file
// has no usable .dynsym).
func readSymbols(f *elf.File, withDynamic bool) ([]rawSym, error) {
	var out []rawSym
	add := func(syms []elf.Symbol, dynamic bool) {
		for _, s := range syms {
			switch s.Section {
			case elf.SHN_UNDEF, elf.SHN_ABS, elf.SHN_COMMON:
				continue
			}
			typ := elf.ST_TYPE(s.Info)
			switch typ {
			case elf.STT_NOTYPE, elf.STT_OBJECT, elf.STT_FUNC, elf.STT_GNU_IFUNC, elf.STT_TLS:
			default:
				continue
			}
			if s.Name == "" {
				continue
			}
			r := rawSym{value: s.Value, size: s.Size, typ: typ, bind: elf.ST_BIND(s.Info)}
			if dynamic {
				// debug/elf already separated the version.
				r.name, r.version = s.Name, s.Version
				r.hidden = s.HasVersion && s.VersionIndex.IsHidden()
			} else {
				r.name, r.version, r.hidden = splitVersion(s.Name)
			}
			out = append(out, r)
		}
	}
	err := guard("reading symbols", func() error {
		dyn, err := f.DynamicSymbols()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return fmt.Errorf("reading .dynsym: %w", err)
		}
		if withDynamic {
			add(dyn, true)
		}
		st, err := f.Symbols()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return fmt.Errorf("reading .symtab: %w", err)
		}
		add(st, false)
		return nil
	})
	return out, err
}
