package engine

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"lp/engine/module"
	"lp/engine/proc"
)

// loaded is a module placed in a target.
type loaded struct {
	base, size uint64
	handle     uint64            // dlopen mode
	funcs      map[string]uint64 // NEW name -> address in the target
	vars       map[string]uint64 // PTR name of each original -> address in the target
	initRan    bool
}

// bind fills the target addresses of the module's replacements and
// original pointers, for a module loaded with bias.
func (l *loaded) bind(m *module.Module, bias uint64) {
	for _, r := range m.Replaces {
		l.funcs[r.New] = bias + m.Funcs[r.New].Value
	}
	for _, o := range m.Originals {
		l.vars[o.Ptr] = bias + m.Vars[o.Ptr].Value
	}
}

// DT_RELR and DT_RELRSZ (packed relative relocations), not in debug/elf.
const (
	dtRELR   elf.DynTag = 36
	dtRELRSZ elf.DynTag = 35
)

// linkerSymbols are defined by the static linker in every object; a module's
// copy must never be bound to the target's.
var linkerSymbols = map[string]bool{
	"_init": true, "_fini": true, "_edata": true, "_end": true, "__bss_start": true,
	"_DYNAMIC": true, "_GLOBAL_OFFSET_TABLE_": true, "__dso_handle": true,
}

// image is a module laid out in memory, relocated for base, ready to write.
type image struct {
	f        *elf.File
	minVaddr uint64 // page-aligned lowest PT_LOAD address (0 for normal modules)
	data     []byte
	loads    []elf.ProgHeader
	relro    *elf.ProgHeader
}

func newImage(m *module.Module) (_ *image, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed ELF: %v", m.Path, r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(m.Data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	im := &image{f: f, minVaddr: ^uint64(0)}
	var end uint64
	for _, ph := range f.Progs {
		switch ph.Type {
		case elf.PT_LOAD:
			im.loads = append(im.loads, ph.ProgHeader)
			im.minVaddr = min(im.minVaddr, ph.Vaddr&^(pageSize-1))
			end = max(end, ph.Vaddr+ph.Memsz)
		case elf.PT_GNU_RELRO:
			h := ph.ProgHeader
			im.relro = &h
		case elf.PT_TLS:
			return nil, fmt.Errorf("%s: uses thread-local storage; load it with --mode dlopen", m.Path)
		}
	}
	if len(im.loads) == 0 {
		return nil, fmt.Errorf("%s: no loadable segments", m.Path)
	}
	size := (end - im.minVaddr + pageSize - 1) &^ (pageSize - 1)
	if size > 1<<30 {
		return nil, fmt.Errorf("%s: segments span %d bytes", m.Path, size)
	}
	im.data = make([]byte, size)
	for _, ph := range im.loads {
		if ph.Filesz > ph.Memsz || ph.Off+ph.Filesz > uint64(len(m.Data)) {
			return nil, fmt.Errorf("%s: segment at %#x overruns the file", m.Path, ph.Vaddr)
		}
		copy(im.data[ph.Vaddr-im.minVaddr:], m.Data[ph.Off:ph.Off+ph.Filesz])
	}
	return im, nil
}

func (im *image) bytesAt(vaddr, n uint64) ([]byte, error) {
	if vaddr < im.minVaddr || vaddr-im.minVaddr+n > uint64(len(im.data)) || vaddr-im.minVaddr+n < n {
		return nil, fmt.Errorf("address %#x+%d is outside the module's segments", vaddr, n)
	}
	return im.data[vaddr-im.minVaddr : vaddr-im.minVaddr+n], nil
}

func (im *image) dyn(tag elf.DynTag) (uint64, bool) {
	vals, err := im.f.DynValue(tag)
	if err != nil || len(vals) == 0 {
		return 0, false
	}
	return vals[0], true
}

// binder resolves the module's symbols in the target.
type binder struct {
	s     *session
	m     *module.Module
	base  uint64
	syms  []elf.Symbol
	cache map[string]uint64
}

// resolve gives the target address for dynamic symbol index idx (1-based).
func (b *binder) resolve(idx uint32) (uint64, error) {
	if idx == 0 {
		return 0, nil
	}
	if int(idx) > len(b.syms) {
		return 0, fmt.Errorf("relocation names symbol %d of %d", idx, len(b.syms))
	}
	sym := b.syms[idx-1]
	if v, ok := b.cache[sym.Name]; ok {
		return v, nil
	}
	v, err := b.bind(sym)
	if err != nil {
		return 0, err
	}
	b.cache[sym.Name] = v
	return v, nil
}

func (b *binder) bind(sym elf.Symbol) (uint64, error) {
	typ := elf.ST_TYPE(sym.Info)
	bind := elf.ST_BIND(sym.Info)
	if typ == elf.STT_TLS {
		return 0, fmt.Errorf("symbol %s is thread-local; load the module with --mode dlopen", sym.Name)
	}
	defined := sym.Section != elf.SHN_UNDEF
	if defined {
		own := b.base + sym.Value
		if bind == elf.STB_LOCAL || linkerSymbols[sym.Name] || b.isReplacement(sym.Name) {
			return own, nil
		}
		// PANNUS "omits duplicate symbols": a global the target defines too
		// is the target's, so the patch works on the live program's state.
		if t, err := b.s.space.LookupGlobal(sym.Name); err == nil {
			return b.targetAddr(t)
		}
		return own, nil
	}
	t, err := b.s.space.LookupGlobal(sym.Name)
	if err != nil {
		// A static of the target: patches may call or read those too.
		t, err = b.s.space.Lookup(sym.Name)
	}
	if err != nil {
		if bind == elf.STB_WEAK {
			return 0, nil
		}
		return 0, fmt.Errorf("undefined symbol %s: not found in pid %d", sym.Name, b.s.pid)
	}
	return b.targetAddr(t)
}

func (b *binder) isReplacement(name string) bool {
	for _, r := range b.m.Replaces {
		if r.New == name {
			return true
		}
	}
	for _, o := range b.m.Originals {
		if o.Ptr == name {
			return true // lp writes it: it must be the module's own
		}
	}
	return false
}

func (b *binder) targetAddr(t proc.Symbol) (uint64, error) {
	if t.TLS {
		return 0, fmt.Errorf("symbol %s is thread-local in the target; load the module with --mode dlopen", t.Name)
	}
	if t.IFunc {
		// The address is the resolver; the implementation is what it returns.
		v, err := b.s.call(t.Addr)
		if err != nil {
			return 0, fmt.Errorf("resolving ifunc %s in pid %d: %w", t.Name, b.s.pid, err)
		}
		return v, nil
	}
	return t.Addr, nil
}

// relocate applies the module's dynamic relocations to the image for base.
func (im *image) relocate(b *binder) error {
	type table struct{ addrTag, sizeTag elf.DynTag }
	for _, tb := range []table{{elf.DT_RELA, elf.DT_RELASZ}, {elf.DT_JMPREL, elf.DT_PLTRELSZ}} {
		addr, ok1 := im.dyn(tb.addrTag)
		size, ok2 := im.dyn(tb.sizeTag)
		if !ok1 || !ok2 || size == 0 {
			continue
		}
		if tb.addrTag == elf.DT_JMPREL {
			if kind, ok := im.dyn(elf.DT_PLTREL); ok && elf.DynTag(kind) != elf.DT_RELA {
				return errors.New("PLT relocations are not RELA")
			}
		}
		raw, err := im.bytesAt(addr, size)
		if err != nil {
			return fmt.Errorf("relocation table: %w", err)
		}
		raw = append([]byte(nil), raw...) // relocations may overwrite their own table
		for off := 0; off+24 <= len(raw); off += 24 {
			r := elf.Rela64{
				Off:    binary.LittleEndian.Uint64(raw[off:]),
				Info:   binary.LittleEndian.Uint64(raw[off+8:]),
				Addend: int64(binary.LittleEndian.Uint64(raw[off+16:])),
			}
			if err := im.apply(b, r); err != nil {
				return err
			}
		}
	}
	if addr, ok := im.dyn(dtRELR); ok {
		size, _ := im.dyn(dtRELRSZ)
		if err := im.applyRELR(b.base, addr, size); err != nil {
			return err
		}
	}
	return nil
}

func (im *image) apply(b *binder, r elf.Rela64) error {
	typ := elf.R_X86_64(elf.R_TYPE64(r.Info))
	sym := elf.R_SYM64(r.Info)
	var v uint64
	switch typ {
	case elf.R_X86_64_NONE:
		return nil
	case elf.R_X86_64_RELATIVE:
		v = b.base + uint64(r.Addend)
	case elf.R_X86_64_64:
		s, err := b.resolve(sym)
		if err != nil {
			return err
		}
		v = s + uint64(r.Addend)
	case elf.R_X86_64_GLOB_DAT, elf.R_X86_64_JMP_SLOT:
		s, err := b.resolve(sym)
		if err != nil {
			return err
		}
		v = s
	case elf.R_X86_64_IRELATIVE:
		res, err := b.s.call(b.base + uint64(r.Addend))
		if err != nil {
			return fmt.Errorf("running an ifunc resolver of the module: %w", err)
		}
		v = res
	case elf.R_X86_64_DTPMOD64, elf.R_X86_64_DTPOFF64, elf.R_X86_64_TPOFF64:
		return fmt.Errorf("relocation %v needs thread-local storage; load the module with --mode dlopen", typ)
	default:
		return fmt.Errorf("relocation %v is not supported by the inject loader; load the module with --mode dlopen", typ)
	}
	dst, err := im.bytesAt(r.Off, 8)
	if err != nil {
		return fmt.Errorf("relocation %v: %w", typ, err)
	}
	binary.LittleEndian.PutUint64(dst, v)
	return nil
}

// applyRELR decodes packed relative relocations (DT_RELR): an even word is an
// address to relocate; an odd word is a bitmap of the 63 words after the
// last address.
func (im *image) applyRELR(base, addr, size uint64) error {
	raw, err := im.bytesAt(addr, size)
	if err != nil {
		return fmt.Errorf("RELR table: %w", err)
	}
	raw = append([]byte(nil), raw...)
	var where uint64
	add := func(at uint64) error {
		dst, err := im.bytesAt(at, 8)
		if err != nil {
			return fmt.Errorf("RELR: %w", err)
		}
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(dst)+base)
		return nil
	}
	for off := 0; off+8 <= len(raw); off += 8 {
		w := binary.LittleEndian.Uint64(raw[off:])
		if w&1 == 0 {
			if err := add(w); err != nil {
				return err
			}
			where = w + 8
			continue
		}
		for i := uint64(0); i < 63; i++ {
			if w>>(i+1)&1 != 0 {
				if err := add(where + i*8); err != nil {
					return err
				}
			}
		}
		where += 63 * 8
	}
	return nil
}

// protections returns, page by page, the protection the segments ask for,
// with RELRO pages made read-only; runs of equal protection are merged.
func (im *image) protections() []protRun {
	pages := len(im.data) / pageSize
	prot := make([]int, pages)
	for _, ph := range im.loads {
		p := 0
		if ph.Flags&elf.PF_R != 0 {
			p |= unix.PROT_READ
		}
		if ph.Flags&elf.PF_W != 0 {
			p |= unix.PROT_WRITE
		}
		if ph.Flags&elf.PF_X != 0 {
			p |= unix.PROT_EXEC
		}
		first := (ph.Vaddr - im.minVaddr) / pageSize
		last := (ph.Vaddr + ph.Memsz - im.minVaddr + pageSize - 1) / pageSize
		for i := first; i < last && i < uint64(pages); i++ {
			prot[i] |= p
		}
	}
	if im.relro != nil {
		first := (im.relro.Vaddr - im.minVaddr + pageSize - 1) / pageSize
		last := (im.relro.Vaddr + im.relro.Memsz - im.minVaddr) / pageSize
		for i := first; i < last && i < uint64(pages); i++ {
			prot[i] &^= unix.PROT_WRITE
		}
	}
	var runs []protRun
	for i, p := range prot {
		if p&unix.PROT_WRITE != 0 && p&unix.PROT_EXEC != 0 {
			p &^= unix.PROT_WRITE // never RWX; a page shared by code and data stays code
		}
		if n := len(runs); n > 0 && runs[n-1].prot == p {
			runs[n-1].pages++
			continue
		}
		runs = append(runs, protRun{page: i, pages: 1, prot: p})
	}
	return runs
}

type protRun struct{ page, pages, prot int }

// loadInject maps the module into the target: RW memory near the replaced
// functions, relocated image written in one go, then per-segment
// protections (no RWX), then the initialisers.
func (s *session) loadInject(m *module.Module, near []uint64) (*loaded, error) {
	im, err := newImage(m)
	if err != nil {
		return nil, err
	}
	size := uint64(len(im.data))
	var base uint64
	if len(near) == 0 {
		// No hole wanted: let the kernel choose (top-down, near the libraries).
	} else if hole, err := s.space.FindHoleNearAll(near, size); err == nil {
		base, err = s.mmap(hole, size, unix.PROT_READ|unix.PROT_WRITE)
		if err != nil {
			s.logf("mapping near the replaced functions failed (%v); mapping anywhere (14-byte jumps)", err)
			base = 0
		}
	}
	if base == 0 {
		base, err = s.mmap(0, size, unix.PROT_READ|unix.PROT_WRITE)
		if err != nil {
			return nil, err
		}
	}
	s.undo(func() error { return s.munmap(base, size) })
	bias := base - im.minVaddr
	syms, err := im.f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("%s: reading dynamic symbols: %w", m.Path, err)
	}
	b := &binder{s: s, m: m, base: bias, syms: syms, cache: map[string]uint64{}}
	if err := im.relocate(b); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	if err := s.proc.WriteMem(base, im.data); err != nil {
		return nil, err
	}
	for _, run := range im.protections() {
		if err := s.mprotect(base+uint64(run.page)*pageSize, uint64(run.pages)*pageSize, run.prot); err != nil {
			return nil, err
		}
	}
	l := &loaded{base: base, size: size, funcs: map[string]uint64{}, vars: map[string]uint64{}}
	l.bind(m, bias)
	if err := s.runInit(im, bias, l); err != nil {
		return l, fmt.Errorf("%s: %w", m.Path, err)
	}
	return l, nil
}

// runInit calls DT_INIT, then each DT_INIT_ARRAY entry, in the target, with
// its other threads running.
func (s *session) runInit(im *image, bias uint64, l *loaded) error {
	var fns []uint64
	if a, ok := im.dyn(elf.DT_INIT); ok && a != 0 {
		fns = append(fns, bias+a)
	}
	if a, ok := im.dyn(elf.DT_INIT_ARRAY); ok {
		n, _ := im.dyn(elf.DT_INIT_ARRAYSZ)
		raw, err := im.bytesAt(a, n)
		if err != nil {
			return fmt.Errorf("init array: %w", err)
		}
		for off := 0; off+8 <= len(raw); off += 8 {
			if fn := binary.LittleEndian.Uint64(raw[off:]); fn != 0 && fn != ^uint64(0) {
				fns = append(fns, fn) // already relocated
			}
		}
	}
	for _, fn := range fns {
		l.initRan = true
		if _, err := s.call(fn); err != nil {
			return fmt.Errorf("running initialiser at %#x: %w", fn, err)
		}
	}
	return nil
}
