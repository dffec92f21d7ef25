package proc

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Symbol is a symbol defined by an object of the target.
type Symbol struct {
	Name    string // without version
	Version string // symbol version ("GLIBC_2.2.5"); "" when unversioned
	// Addr is the absolute address in the target (ELF value + bias). For a
	// TLS symbol it is the offset inside the object's TLS block instead.
	Addr   uint64
	Size   uint64
	Func   bool // STT_FUNC or STT_GNU_IFUNC
	IFunc  bool // STT_GNU_IFUNC: Addr is the resolver; call it for the implementation
	TLS    bool // STT_TLS: Addr is a TLS offset, not an address
	Global bool // GLOBAL, WEAK or GNU_UNIQUE binding (false: LOCAL)
	Weak   bool
	Object string // path of the defining object
}

// LookupError reports a failed symbol lookup.
type LookupError struct {
	Name     string
	Pid      int
	Object   string   // the object searched by LookupIn; "" for the whole space
	Searched int      // objects searched
	Addrs    []uint64 // the competing definitions, for ErrAmbiguousSymbol
	Err      error    // ErrSymbolNotFound or ErrAmbiguousSymbol
	// Missing lists the searched objects that are stripped and whose debug
	// file was not found: build-id and where lp looked.
	Missing []string
}

func (e *LookupError) Error() string {
	switch {
	case errors.Is(e.Err, ErrAmbiguousSymbol):
		as := make([]string, len(e.Addrs))
		for i, a := range e.Addrs {
			as[i] = fmt.Sprintf("%#x", a)
		}
		return fmt.Sprintf("symbol %q is ambiguous in %s of pid %d: %d definitions at %s (use an address)",
			e.Name, e.Object, e.Pid, len(e.Addrs), strings.Join(as, ", "))
	case e.Object != "":
		return fmt.Sprintf("symbol %q not found in %s of pid %d", e.Name, e.Object, e.Pid) + e.missing()
	default:
		return fmt.Sprintf("symbol %q not found in pid %d (searched %d objects)", e.Name, e.Pid, e.Searched) + e.missing()
	}
}

func (e *LookupError) missing() string {
	if len(e.Missing) == 0 {
		return ""
	}
	// The first searched (the executable before libraries) is the one
	// that matters most; the others are counted.
	more := ""
	if n := len(e.Missing) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more stripped objects without a debug file)", n)
	}
	return "; " + e.Missing[0] + more
}

func (e *LookupError) Unwrap() error { return e.Err }

// symtab indexes the defined symbols of one file.
type symtab struct {
	byName map[string][]rawSym
	funcs  []rawSym // functions with distinct values, sorted by value
	maxLen uint64   // largest function size, bounds the FuncAt scan
}

func newSymtab(raw []rawSym) *symtab {
	t := &symtab{byName: make(map[string][]rawSym)}
	for _, r := range raw {
		t.byName[r.name] = append(t.byName[r.name], r)
	}
	var funcs []rawSym
	for _, r := range raw {
		if r.isFunc() {
			funcs = append(funcs, r)
		}
	}
	// By value; among aliases at one value the preferred (global, then
	// sized) name first, then dedupe.
	sort.SliceStable(funcs, func(i, j int) bool {
		a, b := &funcs[i], &funcs[j]
		if a.value != b.value {
			return a.value < b.value
		}
		if a.rank() != b.rank() {
			return a.rank() < b.rank()
		}
		return a.size > b.size
	})
	for i, r := range funcs {
		if i > 0 && funcs[i-1].value == r.value {
			continue
		}
		t.funcs = append(t.funcs, r)
		t.maxLen = max(t.maxLen, r.size)
	}
	return t
}

// find returns the preferred definition of name (optionally "name@VER" or
// "name@@VER") in t. onlyGlobal drops LOCAL definitions. It returns the
// competing values when the best rank has several distinct definitions.
func (t *symtab) find(name string, onlyGlobal bool) (rawSym, []uint64, bool) {
	base, version, _ := splitVersion(name)
	wantVersion := strings.Contains(name, "@")
	var best []rawSym
	for _, r := range t.byName[base] {
		if onlyGlobal && !r.global() {
			continue
		}
		if wantVersion && r.version != version {
			continue
		}
		switch {
		case len(best) == 0 || r.rank() < best[0].rank():
			best = append(best[:0], r)
		case r.rank() == best[0].rank():
			if !hasValue(best, r.value) {
				best = append(best, r)
			} else if r.size > 0 {
				// Same symbol seen in the other table: keep a known size.
				for i := range best {
					if best[i].value == r.value && best[i].size == 0 {
						best[i] = r
					}
				}
			}
		}
	}
	switch len(best) {
	case 0:
		return rawSym{}, nil, false
	case 1:
		return best[0], nil, true
	}
	vals := make([]uint64, len(best))
	for i, r := range best {
		vals[i] = r.value
	}
	return rawSym{}, vals, true
}

func hasValue(rs []rawSym, v uint64) bool {
	for _, r := range rs {
		if r.value == v {
			return true
		}
	}
	return false
}

// funcAt returns the function whose [value, value+size) contains v (a
// zero-size function contains only its own value).
func (t *symtab) funcAt(v uint64) (rawSym, bool) {
	i := sort.Search(len(t.funcs), func(i int) bool { return t.funcs[i].value > v })
	for j := i - 1; j >= 0; j-- {
		r := t.funcs[j]
		if v-r.value > t.maxLen {
			break
		}
		if v == r.value || v-r.value < r.size {
			return r, true
		}
	}
	return rawSym{}, false
}

func (o *Object) symbol(r rawSym) Symbol {
	s := Symbol{
		Name:    r.name,
		Version: r.version,
		Addr:    r.value + o.Bias,
		Size:    r.size,
		Func:    r.isFunc(),
		IFunc:   r.typ == elf.STT_GNU_IFUNC,
		TLS:     r.typ == elf.STT_TLS,
		Global:  r.global(),
		Weak:    r.bind == elf.STB_WEAK,
		Object:  o.Path,
	}
	if s.TLS {
		s.Addr = r.value
	}
	return s
}

// Lookup finds the definition of name: the main executable first, then
// the other objects in map order; inside one object a GLOBAL definition
// before a WEAK one before a LOCAL one (static functions and variables
// count), and the default version before a hidden one. name may carry a
// version ("fix@V1", "getpid@@GLIBC_2.2.5") to select exactly that version.
// Symbol versions are stripped from the returned Name.
//
// The error is a *LookupError wrapping ErrSymbolNotFound, or
// ErrAmbiguousSymbol when the first object defining name has several
// equally preferred definitions (two static functions of that name in
// different source files), or an error reading an object's symbols.
func (s *Space) Lookup(name string) (Symbol, error) {
	return s.lookup(name, false)
}

// LookupGlobal is Lookup restricted to GLOBAL and WEAK definitions: what
// the dynamic linker would bind an undefined reference to (a patch module
// is bound to the target's copy of a symbol it also defines).
func (s *Space) LookupGlobal(name string) (Symbol, error) {
	return s.lookup(name, true)
}

func (s *Space) lookup(name string, onlyGlobal bool) (Symbol, error) {
	order := s.searchOrder()
	var missing []string
	for _, o := range order {
		sym, err := s.findIn(o, name, onlyGlobal)
		if le := (*LookupError)(nil); errors.As(err, &le) && errors.Is(err, ErrSymbolNotFound) {
			missing = append(missing, le.Missing...)
			continue
		}
		return sym, err
	}
	return Symbol{}, &LookupError{Name: name, Pid: s.Pid, Searched: len(order), Err: ErrSymbolNotFound, Missing: missing}
}

// LookupIn is Lookup inside one object of this space only.
func (s *Space) LookupIn(obj *Object, name string) (Symbol, error) {
	return s.findIn(obj, name, false)
}

func (s *Space) findIn(o *Object, name string, onlyGlobal bool) (Symbol, error) {
	t, err := o.symbols(s.debugDir())
	if err != nil {
		return Symbol{}, fmt.Errorf("looking up %q in pid %d: %w", name, s.Pid, err)
	}
	r, competing, ok := t.find(name, onlyGlobal)
	if !ok {
		le := &LookupError{Name: name, Pid: s.Pid, Object: o.Path, Searched: 1, Err: ErrSymbolNotFound}
		if o.syms.missing != "" {
			le.Missing = []string{o.syms.missing}
		}
		return Symbol{}, le
	}
	if competing != nil {
		addrs := make([]uint64, len(competing))
		for i, v := range competing {
			addrs[i] = v + o.Bias
		}
		return Symbol{}, &LookupError{Name: name, Pid: s.Pid, Object: o.Path, Searched: 1, Addrs: addrs, Err: ErrAmbiguousSymbol}
	}
	return o.symbol(r), nil
}

// FuncAt returns the function containing addr, for messages such as
// "thread 815 is inside classify+0x12". It reports false when addr is in
// no object, or in no sized function of its object (or its symbols cannot
// be read).
func (s *Space) FuncAt(addr uint64) (Symbol, bool) {
	o, ok := s.ObjectAt(addr)
	if !ok {
		return Symbol{}, false
	}
	t, err := o.symbols(s.debugDir())
	if err != nil {
		return Symbol{}, false
	}
	r, ok := t.funcAt(addr - o.Bias)
	if !ok {
		return Symbol{}, false
	}
	return o.symbol(r), true
}
