package module

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxSize is the largest module file Parse and Open accept.
const MaxSize = 64 << 20

// SectionName is the ELF section that holds the manifest.
const SectionName = ".lp_patch"

// Symbol is a function defined in the module. Value is its address relative
// to the module's load base (modules are linked at 0).
type Symbol struct {
	Name   string
	Value  uint64
	Size   uint64
	Global bool // STB_GLOBAL or STB_WEAK; false for a static function
	Dyn    bool // listed in .dynsym (else found only in .symtab)
}

// Module is a parsed, checked patch module. It is immutable once returned.
type Module struct {
	Path string // the name given to Parse, or the path given to Open
	Manifest
	SHA256 string // hex digest of Data
	Size   int
	Data   []byte // the raw file

	// Funcs holds every function defined in the module, from .dynsym and
	// .symtab. Every Replaces[i].New is in it.
	Funcs map[string]Symbol
	// Vars holds every data object defined in the module (each
	// Originals[i].Ptr is one, of 8 bytes).
	Vars map[string]Symbol

	Needed     []string             // DT_NEEDED libraries
	TLS        bool                 // PT_TLS segment, TLS symbols or TLS relocations
	Exceptions bool                 // C++ exception tables or __cxa_throw / __gxx_personality_v0
	CXX        bool                 // mangled C++ symbols or libstdc++ needed
	EHFrame    bool                 // .eh_frame present (unwind tables; normal for C too)
	TextRel    bool                 // DT_TEXTREL: built without -fPIC
	Relocs     map[elf.R_X86_64]int // dynamic relocations by type (.rela.dyn, .rela.plt)
	RELR       int                  // packed relative relocations (DT_RELR words), not in Relocs
	Init       bool                 // DT_INIT present
	InitArray  int                  // DT_INIT_ARRAY entries

	undefined map[string]bool        // names referenced, not defined
	nonFunc   map[string]elf.SymType // defined names that are not functions
	ambiguous map[string]bool        // static functions defined more than once
}

// InjectSupported reports whether the inject loader applies relocations of
// type t. It is the contract between this package's inspect report and the
// loader; the loader refuses every other type (use dlopen mode).
func InjectSupported(t elf.R_X86_64) bool {
	switch t {
	case elf.R_X86_64_NONE, elf.R_X86_64_RELATIVE, elf.R_X86_64_64,
		elf.R_X86_64_GLOB_DAT, elf.R_X86_64_JMP_SLOT:
		return true
	}
	return false
}

// Open reads and parses the module at path.
func Open(path string) (*Module, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening patch module: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading patch module %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse checks data as the patch module named name (a path or file name; its
// base name without ".so" is the default id). The module must be an ELF64
// x86-64 shared object (ET_DYN, not a PIE executable) with a valid .lp_patch
// manifest, and define every replacement function. Errors are *Error.
func Parse(data []byte, name string) (*Module, error) {
	fail := func(kind error, format string, args ...any) (*Module, error) {
		return nil, &Error{File: name, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxSize {
		return fail(ErrTooLarge, "module is %d bytes, limit %d", len(data), MaxSize)
	}
	if len(data) < 4 || !bytes.Equal(data[:4], []byte(elf.ELFMAG)) {
		return fail(ErrNotELF, "not an ELF file")
	}
	if len(data) < 64 {
		return fail(ErrMalformed, "truncated ELF file (%d bytes, header needs 64)", len(data))
	}
	switch elf.Class(data[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
	case elf.ELFCLASS32:
		return fail(ErrUnsupported, "32-bit ELF (ELFCLASS32), want ELF64 x86-64")
	default:
		return fail(ErrMalformed, "bad ELF class %d", data[elf.EI_CLASS])
	}
	if elf.Data(data[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return fail(ErrUnsupported, "big-endian or unknown ELF data encoding %d, want little-endian x86-64", data[elf.EI_DATA])
	}
	// Check machine and type from the raw header first: the most useful
	// message even when the rest of the file is damaged.
	if m := elf.Machine(binary.LittleEndian.Uint16(data[18:])); m != elf.EM_X86_64 {
		return fail(ErrUnsupported, "ELF for %v, want x86-64", m)
	}
	if t := elf.Type(binary.LittleEndian.Uint16(data[16:])); t != elf.ET_DYN {
		return fail(ErrUnsupported, "ELF type %v, want a shared object (ET_DYN; build with cc -shared -fPIC)", t)
	}
	m := &Module{Path: name, Size: len(data), Data: data}
	sum := sha256.Sum256(data)
	m.SHA256 = hex.EncodeToString(sum[:])
	if err := m.readELF(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = name
			return nil, e
		}
		return fail(ErrMalformed, "malformed ELF: %v", err)
	}
	return m, nil
}

// readELF fills m from m.Data. debug/elf is not hardened against hostile
// input, so a panic anywhere in it becomes an error (like cilium/ebpf's
// NewSafeELFFile).
func (m *Module) readELF() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("debug/elf: %v", r)
		}
	}()
	detail := func(kind error, format string, args ...any) error {
		return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}

	f, err := elf.NewFile(bytes.NewReader(m.Data))
	if err != nil {
		return err
	}
	if flags, _ := f.DynValue(elf.DT_FLAGS_1); len(flags) > 0 && flags[0]&uint64(elf.DF_1_PIE) != 0 {
		return detail(ErrUnsupported, "a PIE executable, want a shared object (build with cc -shared -fPIC)")
	}

	sec := f.Section(SectionName)
	if sec == nil {
		return detail(ErrNoManifest, "no %s section (build it with include/lp_patch.h)", SectionName)
	}
	if sec.Type == elf.SHT_NOBITS {
		return detail(ErrManifest, "%s section has no contents (SHT_NOBITS)", SectionName)
	}
	if sec.Size > MaxManifestSize {
		return detail(ErrManifest, "%s section is %d bytes, limit %d", SectionName, sec.Size, MaxManifestSize)
	}
	raw, err := sec.Data()
	if err != nil {
		return fmt.Errorf("reading %s: %w", SectionName, err)
	}
	man, err := ParseManifest(raw)
	if err != nil {
		return detail(ErrManifest, "%v", err)
	}
	if man.ID == "" {
		id := strings.TrimSuffix(filepath.Base(m.Path), ".so")
		if verr := ValidID(id); verr != nil {
			return detail(ErrManifest, "no id in %s and the file name is not a valid id (%v); add LP_PATCH_ID", SectionName, verr)
		}
		man.ID = id
		for _, d := range man.Depends {
			if d == id {
				return detail(ErrManifest, "patch %s depends on itself", id)
			}
		}
	}
	m.Manifest = man

	if err := m.readSymbols(f); err != nil {
		return err
	}
	if err := m.checkReplacements(f); err != nil {
		return err
	}
	if err := m.checkOriginals(); err != nil {
		return err
	}
	return m.readDynamic(f)
}

// readSymbols fills m.Funcs from .dynsym, then .symtab (static functions).
func (m *Module) readSymbols(f *elf.File) error {
	m.Funcs = map[string]Symbol{}
	m.Vars = map[string]Symbol{}
	m.undefined = map[string]bool{}
	m.nonFunc = map[string]elf.SymType{}
	m.ambiguous = map[string]bool{}
	add := func(syms []elf.Symbol, dyn bool) {
		for _, s := range syms {
			if s.Name == "" {
				continue
			}
			typ := elf.ST_TYPE(s.Info)
			if strings.HasPrefix(s.Name, "_Z") {
				m.CXX = true
			}
			if typ == elf.STT_TLS {
				m.TLS = true
			}
			if s.Section == elf.SHN_UNDEF {
				m.undefined[s.Name] = true
				switch s.Name {
				case "__cxa_throw", "__gxx_personality_v0", "__cxa_begin_catch":
					m.Exceptions = true
				}
				continue
			}
			if typ != elf.STT_FUNC {
				if typ != elf.STT_SECTION && typ != elf.STT_FILE {
					m.nonFunc[s.Name] = typ
				}
				if typ == elf.STT_OBJECT {
					if _, ok := m.Vars[s.Name]; !ok {
						bind := elf.ST_BIND(s.Info)
						m.Vars[s.Name] = Symbol{Name: s.Name, Value: s.Value, Size: s.Size,
							Global: bind == elf.STB_GLOBAL || bind == elf.STB_WEAK, Dyn: dyn}
					}
				}
				continue
			}
			bind := elf.ST_BIND(s.Info)
			sym := Symbol{Name: s.Name, Value: s.Value, Size: s.Size,
				Global: bind == elf.STB_GLOBAL || bind == elf.STB_WEAK, Dyn: dyn}
			old, ok := m.Funcs[s.Name]
			switch {
			case !ok:
				m.Funcs[s.Name] = sym
			case old.Value == sym.Value:
				// The same function in both tables.
			case old.Global && !sym.Global:
				// A static function shadowed by a global of the same name:
				// the global is what the name means at link time.
			case !old.Global && sym.Global:
				m.Funcs[s.Name] = sym
			default:
				m.ambiguous[s.Name] = true
			}
		}
	}
	dyn, err := f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("reading .dynsym: %w", err)
	}
	add(dyn, true)
	st, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("reading .symtab: %w", err)
	}
	add(st, false)
	return nil
}

// checkReplacements makes sure every NEW is a function the module defines,
// inside an executable section.
func (m *Module) checkReplacements(f *elf.File) error {
	for _, r := range m.Replaces {
		bad := func(format string, args ...any) error {
			return &Error{Kind: ErrUndefined, Detail: fmt.Sprintf("replace %s: ", quote(r.String())) + fmt.Sprintf(format, args...)}
		}
		sym, ok := m.Funcs[r.New]
		switch {
		case ok && m.ambiguous[r.New]:
			return bad("%s is defined more than once (static functions in several files); give it a unique name", r.New)
		case ok:
			if !m.inExecSection(f, sym.Value) {
				return bad("%s is not in an executable section", r.New)
			}
			continue
		}
		if t, isData := m.nonFunc[r.New]; isData {
			return bad("%s is not a function (%v)", r.New, t)
		}
		if mangled := m.mangledLike(r.New); mangled != "" {
			return bad("%s is not defined in the module (C++ symbol %s is: declare %s extern \"C\")", r.New, mangled, r.New)
		}
		if m.undefined[r.New] {
			return bad("%s is not defined in the module (it is only referenced)", r.New)
		}
		return bad("%s is not defined in the module", r.New)
	}
	return nil
}

// checkOriginals makes sure every PTR of an original entry is an 8-byte
// data object the module defines.
func (m *Module) checkOriginals() error {
	for _, o := range m.Originals {
		v, ok := m.Vars[o.Ptr]
		switch {
		case !ok && m.Funcs[o.Ptr].Name != "":
			return &Error{Kind: ErrUndefined, Detail: fmt.Sprintf("original %s: %s is a function; want a function-pointer variable", quote(o.String()), o.Ptr)}
		case !ok:
			return &Error{Kind: ErrUndefined, Detail: fmt.Sprintf("original %s: %s is not a variable defined in the module (declare it static, e.g. static int (*%s)(int);)", quote(o.String()), o.Ptr, o.Ptr)}
		case v.Size != 8:
			return &Error{Kind: ErrUndefined, Detail: fmt.Sprintf("original %s: %s is %d bytes; want a function pointer (8)", quote(o.String()), o.Ptr, v.Size)}
		}
	}
	return nil
}

func (m *Module) inExecSection(f *elf.File, addr uint64) bool {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_EXECINSTR != 0 && s.Flags&elf.SHF_ALLOC != 0 &&
			addr >= s.Addr && addr-s.Addr < s.Size {
			return true
		}
	}
	return false
}

// mangledLike finds a defined C++ function whose mangled name encodes the
// plain name (e.g. _ZL9helper_v2i for helper_v2).
func (m *Module) mangledLike(name string) string {
	needle := strconv.Itoa(len(name)) + name
	best := ""
	for n := range m.Funcs {
		if strings.HasPrefix(n, "_Z") && strings.Contains(n, needle) && (best == "" || n < best) {
			best = n
		}
	}
	return best
}

// readDynamic records what the loaders need to know: needed libraries, TLS,
// exception tables, relocation types, initialisers.
func (m *Module) readDynamic(f *elf.File) error {
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("reading DT_NEEDED: %w", err)
	}
	m.Needed = libs
	for _, l := range libs {
		if strings.HasPrefix(l, "libstdc++") || strings.HasPrefix(l, "libc++") {
			m.CXX = true
		}
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_TLS {
			m.TLS = true
		}
	}
	m.EHFrame = f.Section(".eh_frame") != nil
	if f.Section(".gcc_except_table") != nil {
		m.Exceptions = true
	}
	if v, _ := f.DynValue(elf.DT_TEXTREL); len(v) > 0 {
		m.TextRel = true
	}
	if v, _ := f.DynValue(elf.DT_FLAGS); len(v) > 0 && v[0]&uint64(elf.DF_TEXTREL) != 0 {
		m.TextRel = true
	}
	if v, _ := f.DynValue(elf.DT_INIT); len(v) > 0 {
		m.Init = true
	}
	if v, _ := f.DynValue(elf.DT_INIT_ARRAYSZ); len(v) > 0 {
		m.InitArray = int(min(v[0]/8, 1<<20))
	}

	// Dynamic relocations are the RELA sections linked to .dynsym (or, with
	// no symbols, to nothing), i.e. .rela.dyn and .rela.plt.
	m.Relocs = map[elf.R_X86_64]int{}
	dynsym := -1
	for i, s := range f.Sections {
		if s.Type == elf.SHT_DYNSYM {
			dynsym = i
		}
	}
	for _, s := range f.Sections {
		switch s.Type {
		case elf.SHT_RELA:
			if s.Flags&elf.SHF_ALLOC == 0 || (int(s.Link) != dynsym && s.Link != 0) {
				continue
			}
			data, err := s.Data()
			if err != nil {
				return fmt.Errorf("reading %s: %w", s.Name, err)
			}
			if len(data)%24 != 0 {
				return fmt.Errorf("%s: size %d is not a multiple of 24", s.Name, len(data))
			}
			for i := 0; i+24 <= len(data); i += 24 {
				info := binary.LittleEndian.Uint64(data[i+8:])
				t := elf.R_X86_64(uint32(info))
				m.Relocs[t]++
				switch t {
				case elf.R_X86_64_DTPMOD64, elf.R_X86_64_DTPOFF64, elf.R_X86_64_TPOFF64,
					elf.R_X86_64_TLSDESC:
					m.TLS = true
				}
			}
		case elf.SHT_REL:
			return fmt.Errorf("%s: REL relocations, x86-64 uses RELA", s.Name)
		case shtRELR:
			m.RELR += int(s.Size / 8)
		}
	}
	return nil
}

// shtRELR is SHT_RELR (packed relative relocations), not named by debug/elf.
const shtRELR elf.SectionType = 19
