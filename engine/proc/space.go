package proc

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// pageSize is the x86-64 base page size; mappings and holes are multiples.
const pageSize = 4096

func pageDown(x uint64) uint64 { return x &^ (pageSize - 1) }

// pageUp rounds up, saturating at the last page below 2^64.
func pageUp(x uint64) uint64 {
	if x > ^uint64(0)-(pageSize-1) {
		return ^uint64(0) &^ (pageSize - 1)
	}
	return (x + pageSize - 1) &^ (pageSize - 1)
}

// Object is an ELF executable or shared object loaded in the target.
type Object struct {
	Path string // as printed in maps (see Mapping.Path)
	Main bool   // the main executable (/proc/PID/exe)
	// Deleted is true when the mapped file was unlinked or replaced on disk;
	// its symbols are still read from the mapped file.
	Deleted bool
	Base    uint64 // lowest address of the object (its first mapping)
	End     uint64 // end of its highest segment (.bss included), page aligned
	// Bias is added to an ELF virtual address of this object to get the
	// address in the target: 0 for a non-PIE executable. Computed modulo
	// 2^64, so it is also right for an object mapped below its link address.
	Bias    uint64
	BuildID string // GNU build-id, lowercase hex; "" if the object has none
	// Type is elf.ET_EXEC (non-PIE executable) or elf.ET_DYN (PIE
	// executable, shared object, dynamic linker).
	Type elf.Type
	// Maps are the file-backed mappings of this object, in address order.
	Maps []Mapping

	src   string // where to open the mapped file
	inode uint64 // the inode that must be found there
	syms  *lazySyms
}

// Contains reports whether addr lies in [Base, End).
func (o *Object) Contains(addr uint64) bool { return addr >= o.Base && addr < o.End }

// Space is a snapshot of a target's address space.
type Space struct {
	Pid     int
	Maps    []Mapping // every mapping, in address order
	Objects []*Object // ELF objects, in address order; at most one has Main
	// Problems lists objects that are mapped but could not be read (file
	// unreadable, garbled ELF, no segment matching the mappings); they are
	// left out of Objects and thus out of every lookup. An object whose
	// build-id note is malformed stays in Objects with BuildID "" and is
	// listed here too.
	Problems []error
	// DebugDir is where separate debug files are looked for, by build-id
	// (DebugDir/.build-id/xx/rest.debug) and by .gnu_debuglink
	// (DebugDir/<directory of the object>/NAME, besides the object's own
	// directory and its .debug/), when an object has no .symtab. Empty
	// means DefaultDebugDir. Set it before the first lookup.
	DebugDir string
	// Hole configures FindHole and FindHoleNearAll. Open sets it from
	// DefaultHoleConfig, raised to the system's vm.mmap_min_addr and to the
	// target's stack size limit.
	Hole HoleConfig

	mu    sync.Mutex           // guards cache
	cache map[fileID]*lazySyms // symbol tables by file, kept across Refresh
}

// fileID identifies a mapped file across refreshes.
type fileID struct {
	dev, path, buildID string
	inode              uint64
}

// lazySyms is the symbol table of one file, read on first use (from the
// src of whichever object that maps the file asks first).
type lazySyms struct {
	once sync.Once
	tab  *symtab
	err  error
	// missing says, for a stripped file whose debug file was not found,
	// its build-id and where lp looked ("" otherwise).
	missing string
}

// Open takes a snapshot of the address space of pid: its mappings, and the
// ELF objects among them with their bias and build-id. Symbol tables are
// read later, on first lookup.
func Open(pid int) (*Space, error) {
	s := &Space{Pid: pid, Hole: DefaultHoleConfig(), cache: make(map[fileID]*lazySyms)}
	if v, err := readUintFile("/proc/sys/vm/mmap_min_addr"); err == nil && pageUp(v) > s.Hole.MinAddr {
		s.Hole.MinAddr = pageUp(v)
	}
	if r, ok := stackReserve(pid); ok {
		s.Hole.StackReserve = r
	}
	if err := s.Refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Refresh re-reads the mappings and rebuilds Objects and Problems. Symbol
// tables already read are reused for files that are still mapped.
func (s *Space) Refresh() error {
	maps, err := ReadMaps(s.Pid)
	if err != nil {
		return err
	}
	exe := s.exeIdentity()
	var objs []*Object
	var problems []error
	for _, g := range groupObjects(maps) {
		o, err := s.loadObject(g, &problems)
		switch {
		case errors.Is(err, ErrNotELF), errors.Is(err, errNotCode):
			continue // a mapped data file, not code
		case err != nil:
			problems = append(problems, err)
			continue
		}
		objs = append(objs, o)
	}
	// Prefer the device+inode match; fall back to the path (overlayfs
	// reports a different st_dev through stat than in maps).
	main := -1
	for i, o := range objs {
		if exe.ok && o.Maps[0].Inode == exe.ino && o.Maps[0].Dev == exe.dev {
			main = i
			break
		}
	}
	if main < 0 {
		for i, o := range objs {
			if exe.path != "" && o.Path == exe.path {
				main = i
				break
			}
		}
	}
	if main >= 0 {
		objs[main].Main = true
	}
	s.Maps, s.Objects, s.Problems = maps, objs, problems
	s.pruneCache()
	return nil
}

// pruneCache forgets symbol tables of files no longer mapped, and failed
// reads so that they are retried.
func (s *Space) pruneCache() {
	used := make(map[*lazySyms]bool, len(s.Objects))
	for _, o := range s.Objects {
		used[o.syms] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := make(map[*lazySyms]*lazySyms)
	for id, ls := range s.cache {
		switch {
		case !used[ls]:
			delete(s.cache, id)
		case ls.err != nil:
			if fresh[ls] == nil {
				fresh[ls] = &lazySyms{}
			}
			s.cache[id] = fresh[ls]
		}
	}
	for _, o := range s.Objects {
		if f := fresh[o.syms]; f != nil {
			o.syms = f
		}
	}
}

// Main returns the main executable, or nil when it was not identified.
func (s *Space) Main() *Object {
	for _, o := range s.Objects {
		if o.Main {
			return o
		}
	}
	return nil
}

// ObjectAt returns the object whose [Base, End) contains addr.
func (s *Space) ObjectAt(addr uint64) (*Object, bool) {
	for _, o := range s.Objects {
		if o.Contains(addr) {
			return o, true
		}
	}
	return nil, false
}

// searchOrder is the main executable first, then the others in map order.
func (s *Space) searchOrder() []*Object {
	out := make([]*Object, 0, len(s.Objects))
	for _, o := range s.Objects {
		if o.Main {
			out = append(out, o)
		}
	}
	for _, o := range s.Objects {
		if !o.Main {
			out = append(out, o)
		}
	}
	return out
}

type exeID struct {
	ok   bool
	dev  string
	ino  uint64
	path string
}

func (s *Space) exeIdentity() exeID {
	var id exeID
	link := fmt.Sprintf("/proc/%d/exe", s.Pid)
	if p, err := os.Readlink(link); err == nil {
		id.path = strings.TrimSuffix(p, deletedSuffix)
	}
	if fi, err := os.Stat(link); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			id.ok, id.ino, id.dev = true, st.Ino, devString(st.Dev)
		}
	}
	return id
}

// devString formats a Linux dev_t as maps does ("fd:01").
func devString(dev uint64) string {
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	return fmt.Sprintf("%02x:%02x", major, minor)
}

// groupObjects splits the file-backed mappings into candidate objects. The
// dynamic linker reserves an object's whole span before mapping its
// segments, so one object's mappings are contiguous in the list apart from
// anonymous ones (.bss, heap). A new object starts when a different file
// appears, or when the same file appears again with a lower offset (mapped a
// second time).
func groupObjects(maps []Mapping) [][]Mapping {
	var groups [][]Mapping
	var cur []Mapping
	for _, m := range maps {
		if !m.IsFile() {
			continue
		}
		if len(cur) > 0 {
			last := cur[len(cur)-1]
			if last.Dev == m.Dev && last.Inode == m.Inode && last.Path == m.Path && m.Offset >= last.Offset {
				cur = append(cur, m)
				continue
			}
			groups = append(groups, cur)
		}
		cur = []Mapping{m}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// openMapped opens the file behind mapping m: through map_files (the exact
// mapped file, even if deleted or in another mount namespace), else through
// the target's root, checking the inode.
func openMapped(pid int, m Mapping) (*os.File, string, error) {
	mf := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End)
	if fh, err := os.Open(mf); err == nil {
		return fh, mf, nil
	}
	rp := fmt.Sprintf("/proc/%d/root%s", pid, m.Path)
	fh, err := openInode(rp, m.Inode)
	if err != nil {
		return nil, "", err
	}
	return fh, rp, nil
}

// openInode opens path and fails unless it is inode ino (0: any).
func openInode(path string, ino uint64) (*os.File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if ino != 0 {
		fi, err := fh.Stat()
		if err != nil {
			fh.Close()
			return nil, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino != ino {
			fh.Close()
			return nil, fmt.Errorf("%s is inode %d, not the mapped inode %d (file replaced on disk)", path, st.Ino, ino)
		}
	}
	return fh, nil
}

// loadObject reads the ELF headers of one candidate object and computes its
// bias, extent and build-id.
func (s *Space) loadObject(g []Mapping, problems *[]error) (*Object, error) {
	first := g[0]
	fh, src, err := openMapped(s.Pid, first)
	if err != nil {
		return nil, fmt.Errorf("opening %s mapped at %#x in pid %d: %w", first.Path, first.Start, s.Pid, err)
	}
	defer fh.Close()
	f, err := newSafeFile(fh)
	if err != nil {
		if errors.Is(err, ErrNotELF) {
			return nil, err
		}
		return nil, fmt.Errorf("%s in pid %d: %w", first.Path, s.Pid, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		// An ELF file mapped as data (a core file, an object file, another
		// architecture): not code of this process.
		return nil, fmt.Errorf("%w: %s is %v %v %v", errNotCode, first.Path, f.Class, f.Machine, f.Type)
	}
	var loads []*elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Memsz > 0 {
			loads = append(loads, p)
		}
	}
	if !mappedAsCode(g, loads) {
		return nil, fmt.Errorf("%w: %s at %#x", errNotCode, first.Path, first.Start)
	}
	bias, err := computeBias(g, loads)
	if err != nil {
		return nil, fmt.Errorf("%s in pid %d: %w", first.Path, s.Pid, err)
	}
	o := &Object{
		Path:    first.Path,
		Deleted: first.Deleted,
		Base:    first.Start,
		Bias:    bias,
		Type:    f.Type,
		Maps:    g,
		src:     src,
		inode:   first.Inode,
	}
	for _, m := range g {
		o.End = max(o.End, m.End)
	}
	for _, p := range loads {
		if end := bias + p.Vaddr + p.Memsz; end > o.Base {
			o.End = max(o.End, pageUp(end))
		}
	}
	if o.BuildID, err = BuildID(f); err != nil {
		// The object is still usable; only its build-id is unknown.
		*problems = append(*problems, fmt.Errorf("%s in pid %d: %w", o.Path, s.Pid, err))
	}
	id := fileID{dev: first.Dev, path: first.Path, buildID: o.BuildID, inode: first.Inode}
	s.mu.Lock()
	ls := s.cache[id]
	if ls == nil {
		ls = &lazySyms{}
		s.cache[id] = ls
	}
	s.mu.Unlock()
	o.syms = ls
	return o, nil
}

// mappedAsCode reports whether an ELF file's mappings look loaded: when the
// file has an executable segment, one of its mappings is executable.
func mappedAsCode(g []Mapping, loads []*elf.Prog) bool {
	hasX := false
	for _, p := range loads {
		hasX = hasX || p.Flags&elf.PF_X != 0
	}
	if !hasX {
		return true
	}
	for _, m := range g {
		if m.Executable() {
			return true
		}
	}
	return false
}

// computeBias finds the load bias of an object from its mappings and its
// PT_LOAD headers. The loaders (kernel and ld.so) map the segment with the
// lowest p_vaddr first, at pageDown(p_vaddr)+bias from file offset
// pageDown(p_offset), so that pairing is tried first; otherwise any mapping
// whose offset matches exactly one segment decides.
func computeBias(g []Mapping, loads []*elf.Prog) (uint64, error) {
	if len(loads) == 0 {
		return 0, fmt.Errorf("%w: no PT_LOAD segment", ErrNotLoaded)
	}
	lowest := loads[0]
	for _, p := range loads[1:] {
		if p.Vaddr < lowest.Vaddr {
			lowest = p
		}
	}
	if pageDown(lowest.Off) == g[0].Offset {
		return g[0].Start - pageDown(lowest.Vaddr), nil
	}
	for _, m := range g {
		var match *elf.Prog
		n := 0
		for _, p := range loads {
			if pageDown(p.Off) == m.Offset {
				match, n = p, n+1
			}
		}
		if n == 1 {
			return m.Start - pageDown(match.Vaddr), nil
		}
	}
	return 0, fmt.Errorf("%w: no mapping at %#x (offset %#x) matches a PT_LOAD segment", ErrNotLoaded, g[0].Start, g[0].Offset)
}

// symbols returns the object's symbol table, reading it on first use; a
// stripped object's .symtab is read from its separate debug file, found
// under debugDir.
func (o *Object) symbols(debugDir string) (*symtab, error) {
	ls := o.syms
	if ls == nil {
		return nil, fmt.Errorf("object %s has no symbol source", o.Path)
	}
	ls.once.Do(func() {
		fh, err := openInode(o.src, o.inode)
		if err != nil {
			ls.err = fmt.Errorf("reading symbols of %s: %w", o.Path, err)
			return
		}
		defer fh.Close()
		f, err := newSafeFile(fh)
		if err != nil {
			ls.err = fmt.Errorf("reading symbols of %s: %w", o.Path, err)
			return
		}
		raw, err := readSymbols(f, true)
		if err != nil {
			ls.err = fmt.Errorf("reading symbols of %s: %w", o.Path, err)
			return
		}
		if f.Section(".symtab") == nil {
			more, missing, err := debugSymbols(f, o.Path, o.BuildID, debugDir)
			if err != nil {
				ls.err = err
				return
			}
			raw = append(raw, more...)
			ls.missing = missing
		}
		ls.tab = newSymtab(raw)
	})
	return ls.tab, ls.err
}

func readUintFile(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var v uint64
	if _, err := fmt.Sscan(string(b), &v); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// sortMaps sorts mappings by start address (the kernel already does; kept
// for callers that build lists by hand).
func sortMaps(maps []Mapping) []Mapping {
	out := append([]Mapping(nil), maps...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}
