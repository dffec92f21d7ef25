package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"lp/engine/proc"
)

// The registry is lp's record of the patches applied to one process, kept in
// the process itself so that `lpctl patch list` and revert work from any lp
// process, after lpd restarts, or on a host where lpd never ran.
//
// It is one private anonymous mapping (named "[anon:lp:registry]" where the
// kernel supports naming) laid out as
//
//	0     magic "LPREG\x00v1"  (8 bytes)
//	8     active slot: 0 or 1  (8 bytes)
//	16    length of slot 0     (8 bytes)
//	24    length of slot 1     (8 bytes)
//	4096  slot 0: JSON of the records
//	4096+regSlotSize  slot 1
//
// A writer fills the inactive slot and then flips the active index with one
// aligned 8-byte write, so a reader (which does not stop the target) or a
// writer that dies part-way never sees a torn record.
const (
	regMagic    = "LPREG\x00v1"
	regHeader   = 4096
	regSlotSize = 512 << 10
	regSize     = regHeader + 2*regSlotSize
	regName     = "lp:registry"
)

// States of a patch in a process.
const (
	StateLoaded   = "loaded"
	StateActive   = "active"
	StateReverted = "reverted"
	StateFailed   = "failed"
	// Transitional states, written just before the stop-the-world window.
	// A reader resolves them by looking at the bytes at the patch sites.
	stateActivating = "activating"
	stateReverting  = "reverting"
)

// Func is one replaced function of a patch, as recorded in the target.
type Func struct {
	Name    string `json:"name"`     // OLD, the target's function
	Addr    uint64 `json:"addr"`     // OLD's entry
	Size    uint64 `json:"size"`     // OLD's size
	New     string `json:"new"`      // NEW, the module's function
	NewAddr uint64 `json:"new_addr"` // NEW's address in the target
	NewSize uint64 `json:"new_size"`
	Site    uint64 `json:"site"` // where the jump is written (after endbr64)
	// Prev holds the bytes at Site before this patch wrote its jump: the
	// function's original bytes, or the jump of the patch below in a stack.
	Prev []byte `json:"prev"`
	Jump []byte `json:"jump"` // the bytes this patch writes at Site
	// Pending is the journal of a revert of the patch below this one: its
	// Prev to be, written before the window and made Prev by whoever
	// settles the revert as done (dropped if it did not happen).
	Pending []byte `json:"pending,omitempty"`
	// Ptr is the address of the module's function-pointer variable that
	// receives the implementation below this patch (original=OLD:PTR), 0
	// if none; Tramp is the trampoline running OLD's original code, what
	// Ptr holds when no patch is below.
	Ptr   uint64 `json:"ptr,omitempty"`
	Tramp uint64 `json:"tramp,omitempty"`
}

// Patch is one patch applied to a process.
type Patch struct {
	ID          string    `json:"id"`
	SHA256      string    `json:"sha256"`
	Mode        string    `json:"mode"` // inject | dlopen
	Description string    `json:"description,omitempty"`
	State       string    `json:"state"`
	Depends     []string  `json:"depends,omitempty"`
	Funcs       []Func    `json:"funcs"`
	Base        uint64    `json:"base"`             // where the module is mapped
	Size        uint64    `json:"size"`             // bytes mapped for it (inject mode)
	Handle      uint64    `json:"handle,omitempty"` // dlopen handle (dlopen mode)
	Path        string    `json:"path,omitempty"`   // module path as loaded
	Error       string    `json:"error,omitempty"`  // why it failed
	LoadedAt    time.Time `json:"loaded_at"`
	AppliedAt   time.Time `json:"applied_at,omitzero"`
	RevertedAt  time.Time `json:"reverted_at,omitzero"`
	Seq         int       `json:"seq"` // order of loading in this process
}

type registryDoc struct {
	Pid     int     `json:"pid"`
	Patches []Patch `json:"patches"`
}

// memReader reads target memory; both a traced process and a plain
// /proc/PID/mem file do.
type memReader interface {
	ReadMem(addr uint64, buf []byte) error
}

type memFile struct{ f *os.File }

func (m memFile) ReadMem(addr uint64, buf []byte) error {
	_, err := m.f.ReadAt(buf, int64(addr))
	return err
}

func (m memFile) WriteMem(addr uint64, data []byte) error {
	_, err := m.f.WriteAt(data, int64(addr))
	return err
}

// findRegistry looks for the registry mapping: by its name where the kernel
// shows it, otherwise by the magic at the start of private anonymous
// read-write mappings of the registry's size.
func findRegistry(maps []proc.Mapping, mem memReader) (uint64, bool) {
	candidates := make([]proc.Mapping, 0, 4)
	for _, m := range maps {
		if m.Path == "[anon:"+regName+"]" {
			candidates = append([]proc.Mapping{m}, candidates...)
			continue
		}
		if m.Inode == 0 && m.Path == "" && m.Perms == "rw-p" && m.Size() >= regSize {
			candidates = append(candidates, m)
		}
	}
	magic := make([]byte, len(regMagic))
	for _, m := range candidates {
		if err := mem.ReadMem(m.Start, magic); err == nil && string(magic) == regMagic {
			return m.Start, true
		}
	}
	return 0, false
}

// readRegistry reads the records at addr.
func readRegistry(mem memReader, addr uint64) (*registryDoc, error) {
	hdr := make([]byte, 32)
	if err := mem.ReadMem(addr, hdr); err != nil {
		return nil, fmt.Errorf("reading lp registry header: %w", err)
	}
	if string(hdr[:8]) != regMagic {
		return nil, errors.New("lp registry header is damaged")
	}
	slot := binary.LittleEndian.Uint64(hdr[8:])
	if slot > 1 {
		return nil, fmt.Errorf("lp registry header names slot %d", slot)
	}
	n := binary.LittleEndian.Uint64(hdr[16+8*slot:])
	if n > regSlotSize {
		return nil, fmt.Errorf("lp registry slot %d claims %d bytes", slot, n)
	}
	doc := &registryDoc{}
	if n == 0 {
		return doc, nil
	}
	buf := make([]byte, n)
	if err := mem.ReadMem(addr+regHeader+slot*regSlotSize, buf); err != nil {
		return nil, fmt.Errorf("reading lp registry: %w", err)
	}
	if err := json.Unmarshal(buf, doc); err != nil {
		return nil, fmt.Errorf("lp registry is damaged: %w", err)
	}
	return doc, nil
}

// readRecords returns the patches recorded in process pid without attaching
// to it: reading /proc/PID/mem needs the same privilege as ptrace, but does
// not stop or disturb the target. Transitional states are resolved against
// the bytes at the patch sites.
func readRecords(pid int) ([]Patch, error) {
	if err := checkTarget(pid); err != nil {
		return nil, err
	}
	maps, err := proc.ReadMaps(pid) // its errors name the pid
	if err != nil {
		return nil, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, fmt.Errorf("opening memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	mem := memFile{f}
	addr, ok := findRegistry(maps, mem)
	if !ok {
		return nil, nil
	}
	doc, err := readRegistry(mem, addr)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	resolveTransitions(doc.Patches, mem)
	return doc.Patches, nil
}

// resolveTransitions settles "activating" and "reverting" records (left by
// an lp process that died inside an operation, or read while one runs) by
// what the memory says. An activation is one patch: it happened when all its
// jumps are in place. A revert, cascaded or not, is one window: it happened
// when no reverting patch has its jump at any of its sites any more; then the
// pending bytes of the patches above it become their Prev.
func resolveTransitions(ps []Patch, mem memReader) {
	jumpAt := func(f Func) bool {
		got := make([]byte, len(f.Jump))
		return mem.ReadMem(f.Site, got) == nil && bytes.Equal(got, f.Jump)
	}
	reverting, reverted := false, true
	for _, p := range ps {
		if p.State != stateReverting {
			continue
		}
		reverting = true
		for _, f := range p.Funcs {
			if jumpAt(f) {
				reverted = false
			}
		}
	}
	for i := range ps {
		p := &ps[i]
		for j := range p.Funcs {
			if f := &p.Funcs[j]; f.Pending != nil {
				if reverting && reverted {
					f.Prev = f.Pending
				}
				f.Pending = nil
			}
		}
		switch p.State {
		case stateActivating:
			jumped := len(p.Funcs) > 0
			for _, f := range p.Funcs {
				jumped = jumped && jumpAt(f)
			}
			p.State = StateLoaded
			if jumped {
				p.State = StateActive
			}
		case stateReverting:
			p.State = StateActive
			if reverted {
				p.State = StateReverted
			}
		}
	}
}

// registry is the writable view of a traced target's registry.
type registry struct {
	s    *session
	addr uint64
	doc  registryDoc
}

// openRegistry finds the registry of a traced target, creating its mapping
// when create is set and there is none.
func (s *session) openRegistry(create bool) (*registry, error) {
	r := &registry{s: s, doc: registryDoc{Pid: s.pid}}
	if addr, ok := findRegistry(s.space.Maps, s.mem); ok {
		doc, err := readRegistry(s.mem, addr)
		if err != nil {
			return nil, err
		}
		r.addr, r.doc = addr, *doc
		resolveTransitions(r.doc.Patches, s.mem)
		return r, nil
	}
	if !create {
		return r, nil
	}
	// Guard pages on both sides keep the kernel from merging the registry
	// with a neighbouring anonymous mapping, so it always starts a mapping.
	guarded, err := s.mmap(0, regSize+2*pageSize, unix.PROT_NONE)
	if err != nil {
		return nil, fmt.Errorf("mapping the lp registry: %w", err)
	}
	s.undo(func() error { return s.munmap(guarded, regSize+2*pageSize) })
	addr := guarded + pageSize
	if err := s.mprotect(addr, regSize, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		return nil, fmt.Errorf("mapping the lp registry: %w", err)
	}
	// Kernels without CONFIG_ANON_VMA_NAME refuse the name (EINVAL); the
	// registry is then found by its magic alone.
	_ = s.nameMapping(addr, regSize, regName)
	hdr := make([]byte, 32)
	copy(hdr, regMagic)
	if err := s.mem.WriteMem(addr, hdr); err != nil {
		return nil, err
	}
	r.addr = addr
	return r, nil
}

// save writes the records into the inactive slot and flips to it.
func (r *registry) save() error {
	if r.addr == 0 {
		return errors.New("no lp registry in the target")
	}
	data, err := json.Marshal(r.doc)
	if err != nil {
		return err
	}
	if len(data) > regSlotSize {
		return fmt.Errorf("lp registry would need %d bytes; it holds %d", len(data), regSlotSize)
	}
	// Through /proc/PID/mem, not ptrace: the last record of an operation
	// is written after the window has detached the target.
	mem := r.s.mem
	hdr := make([]byte, 32)
	if err := mem.ReadMem(r.addr, hdr); err != nil {
		return err
	}
	next := 1 - binary.LittleEndian.Uint64(hdr[8:])&1
	if err := mem.WriteMem(r.addr+regHeader+next*regSlotSize, data); err != nil {
		return err
	}
	var word [8]byte
	binary.LittleEndian.PutUint64(word[:], uint64(len(data)))
	if err := mem.WriteMem(r.addr+16+8*next, word[:]); err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(word[:], next)
	return mem.WriteMem(r.addr+8, word[:])
}

func (r *registry) find(id string) *Patch { return r.doc.find(id) }

func (r *registry) active() []*Patch { return r.doc.active() }

// find returns the newest record of id, or nil.
func (d *registryDoc) find(id string) *Patch {
	for i := len(d.Patches) - 1; i >= 0; i-- {
		if d.Patches[i].ID == id {
			return &d.Patches[i]
		}
	}
	return nil
}

// active returns the active patches, oldest first.
func (d *registryDoc) active() []*Patch {
	var ps []*Patch
	for i := range d.Patches {
		if d.Patches[i].State == StateActive {
			ps = append(ps, &d.Patches[i])
		}
	}
	return ps
}

// clone is a deep copy: a plan changes it without touching the original.
func (d registryDoc) clone() registryDoc {
	c := registryDoc{Pid: d.Pid, Patches: make([]Patch, len(d.Patches))}
	for i, p := range d.Patches {
		p.Depends = slices.Clone(p.Depends)
		p.Funcs = slices.Clone(p.Funcs)
		for j := range p.Funcs {
			f := &p.Funcs[j]
			f.Prev, f.Jump, f.Pending = slices.Clone(f.Prev), slices.Clone(f.Jump), slices.Clone(f.Pending)
		}
		c.Patches[i] = p
	}
	return c
}

// stackedAbove finds the function record of the active patch directly above
// p on the function whose jump site is site, and that patch's sequence
// number, or nil when p is on top.
func (d *registryDoc) stackedAbove(p *Patch, site uint64) (*Func, int) {
	var best *Func
	bestSeq := 0
	for _, q := range d.active() {
		if q.Seq <= p.Seq {
			continue
		}
		for i := range q.Funcs {
			if q.Funcs[i].Site == site && (best == nil || q.Seq < bestSeq) {
				best, bestSeq = &q.Funcs[i], q.Seq
			}
		}
	}
	return best, bestSeq
}

// stackedBelow finds the function record of the active patch directly below
// p on the function whose jump site is site, or nil when p is the lowest.
func (d *registryDoc) stackedBelow(p *Patch, site uint64) *Func {
	var best *Func
	bestSeq := 0
	for _, q := range d.active() {
		if q.Seq >= p.Seq {
			continue
		}
		for i := range q.Funcs {
			if q.Funcs[i].Site == site && (best == nil || q.Seq > bestSeq) {
				best, bestSeq = &q.Funcs[i], q.Seq
			}
		}
	}
	return best
}

// funcAt returns the function record at site of the patch numbered seq, or
// nil: the same record in a clone of the document.
func (d *registryDoc) funcAt(seq int, site uint64) *Func {
	for i := range d.Patches {
		if d.Patches[i].Seq != seq {
			continue
		}
		for j := range d.Patches[i].Funcs {
			if d.Patches[i].Funcs[j].Site == site {
				return &d.Patches[i].Funcs[j]
			}
		}
	}
	return nil
}

func (r *registry) nextSeq() int {
	n := 0
	for _, p := range r.doc.Patches {
		n = max(n, p.Seq)
	}
	return n + 1
}

// reusable returns the index of the newest record of the same module (id,
// contents, mode) that is loaded but not active, or -1.
func (r *registry) reusable(id, sha, mode string) int {
	for i := len(r.doc.Patches) - 1; i >= 0; i-- {
		p := r.doc.Patches[i]
		if p.ID != id {
			continue
		}
		if p.SHA256 == sha && p.Mode == mode && (p.State == StateReverted || p.State == StateLoaded) && len(p.Funcs) > 0 {
			return i
		}
		return -1
	}
	return -1
}

// asLoaded rebuilds the in-memory description of a recorded module.
func (p *Patch) asLoaded() *loaded {
	l := &loaded{base: p.Base, size: p.Size, handle: p.Handle, funcs: map[string]uint64{}, vars: map[string]uint64{}, initRan: true}
	for _, f := range p.Funcs {
		l.funcs[f.New] = f.NewAddr
	}
	return l
}

// maxInactive bounds how many reverted or failed records are kept; older
// ones are dropped from the record (their memory stays mapped).
const maxInactive = 64

// trim drops the oldest inactive records beyond maxInactive.
func (r *registry) trim() {
	inactive := 0
	for _, p := range r.doc.Patches {
		if p.State == StateReverted || p.State == StateFailed {
			inactive++
		}
	}
	kept := r.doc.Patches[:0]
	for _, p := range r.doc.Patches {
		if inactive > maxInactive && (p.State == StateReverted || p.State == StateFailed) {
			inactive--
			continue
		}
		kept = append(kept, p)
	}
	r.doc.Patches = kept
}
