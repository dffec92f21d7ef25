package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lp/engine/module"
	"lp/engine/patchsite"
	"lp/engine/proc"
)

// Loading modes.
const (
	ModeInject = "inject"
	ModeDlopen = "dlopen"
)

// Defaults of Options.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultStackScan = 64 << 10
)

// Sentinel errors, for errors.Is.
var (
	// ErrDependency: a patch's dependency is not active, or an active patch
	// depends on the one to revert.
	ErrDependency = errors.New("patch dependency")
	// ErrBuildID: the module is built for another binary.
	ErrBuildID = errors.New("build-id mismatch")
	// ErrNotFound: no patch with that id in the process.
	ErrNotFound = errors.New("no such patch")
	// ErrUnsafe: a replaced function's entry cannot be overwritten safely.
	ErrUnsafe = errors.New("function cannot be patched safely")
)

// Options control Apply and Revert.
type Options struct {
	Mode        string        // ModeInject (default) or ModeDlopen
	Consistency string        // "function" (default) or "entry"
	Timeout     time.Duration // activation deadline, retries included (default 5s)
	// DebugDir is where separate debug files of stripped targets are
	// found (by build-id and .gnu_debuglink); default /usr/lib/debug.
	DebugDir string
	// StackScan is how many bytes of each thread's stack, from its stack
	// pointer up, are searched for return addresses (default 64 KiB).
	StackScan int
	// Logf receives progress and non-fatal problems (may be nil).
	Logf func(format string, args ...any)

	// farLoad maps the module without looking for a hole near the replaced
	// functions (tests use it to exercise the 14-byte jump).
	farLoad bool
	// fault, when set, is asked at each named failure point of an
	// operation (tests); an error it returns is that step's failure.
	fault func(point string) error
}

func (o Options) withDefaults() (Options, patchsite.Mode, error) {
	if o.Mode == "" {
		o.Mode = ModeInject
	}
	if o.Mode != ModeInject && o.Mode != ModeDlopen {
		return o, 0, fmt.Errorf("mode %q: want inject or dlopen", o.Mode)
	}
	if o.Consistency == "" {
		o.Consistency = "function"
	}
	mode, err := patchsite.ParseMode(o.Consistency)
	if err != nil {
		return o, 0, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.StackScan <= 0 {
		o.StackScan = DefaultStackScan
	}
	o.StackScan = (o.StackScan + 7) &^ 7
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o, mode, nil
}

// ApplyResult reports an Apply.
type ApplyResult struct {
	Patch    Patch
	Already  bool          // the id was already active: nothing was done
	Pause    time.Duration // how long the target's threads were stopped to activate
	Attempts int           // activation windows tried
	Total    time.Duration // the whole apply, attach to detach
	// Phases is where the time went, in order: inspect (reading the
	// target, no tracing), attach, analyse, load, prepare, window (all
	// attempts; window.stop, window.inside, window.release split the
	// successful one), record, detach.
	Phases []Phase `json:"phases,omitempty"`
}

// List returns the patches recorded in process pid, oldest first. It reads
// the target's memory without stopping it.
func List(pid int) ([]Patch, error) {
	return readRecords(pid)
}

// Apply loads the patch module at path into process pid while it runs, then
// activates it in one short stop-the-world window. On any failure the target
// is left running unpatched.
func Apply(ctx context.Context, pid int, path string, opts Options) (*ApplyResult, error) {
	m, err := module.Open(path)
	if err != nil {
		return nil, err
	}
	return ApplyModule(ctx, pid, m, opts)
}

// target is a replaced function resolved in the target before attaching.
type target struct {
	repl module.Replace
	sym  proc.Symbol
	obj  *proc.Object
}

// ApplyModule is Apply for a parsed module (its Path must name the file for
// dlopen mode).
func ApplyModule(ctx context.Context, pid int, m *module.Module, opts Options) (*ApplyResult, error) {
	start := time.Now()
	opts, cmode, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Mode == ModeInject && m.Inspect().Mode == ModeDlopen {
		return nil, fmt.Errorf("%s: needs --mode dlopen (%s)", m.Path, strings.Join(m.Inspect().Hints, "; "))
	}
	// Everything that can be checked without touching the target is checked
	// first: bad input changes nothing.
	space, err := openSpace(pid, opts.DebugDir)
	if err != nil {
		return nil, err
	}
	// Already active: settled from the record, without stopping the target.
	if ps, err := readRecords(pid); err == nil {
		if p := (&registryDoc{Patches: ps}).find(m.ID); p != nil && p.State == StateActive {
			if p.SHA256 != m.SHA256 {
				return nil, alreadyDifferent(p, m, pid)
			}
			return &ApplyResult{Patch: *p, Already: true, Total: time.Since(start)}, nil
		}
	}
	targets, err := resolveTargets(space, m)
	if err != nil {
		return nil, err
	}
	inspected := time.Now()

	s, err := attachSession(pid, space, opts.Logf)
	if err != nil {
		return nil, err
	}
	s.phases = []Phase{{"inspect", inspected.Sub(start)}}
	s.last = inspected
	s.mark("attach")
	s.fault = opts.fault
	res, err := s.apply(ctx, m, targets, opts, cmode)
	if err != nil {
		s.unwind()
	} else {
		s.keep()
	}
	if derr := s.detach(); derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	s.mark("detach")
	// Every stop counts: failed attempts too, and a detach that had to
	// stop the target again.
	res.Pause = max(res.Pause, s.proc.LongestStop())
	res.Phases = s.phases
	res.Total = time.Since(start)
	return res, nil
}

func alreadyDifferent(p *Patch, m *module.Module, pid int) error {
	return fmt.Errorf("patch %s is already active in pid %d with different contents (sha256 %.12s, this module %.12s); revert it first", m.ID, pid, p.SHA256, m.SHA256)
}

// windowPhases splits the successful window into its phases.
func (s *session) windowPhases(st windowStats) {
	s.mark("window")
	s.phases = append(s.phases, Phase{"window.stop", st.Times.Stop}, Phase{"window.inside", st.Times.Inside}, Phase{"window.release", st.Times.Release})
}

func openSpace(pid int, debugDir string) (*proc.Space, error) {
	if err := checkTarget(pid); err != nil {
		return nil, err
	}
	// proc's errors name the pid already.
	space, err := proc.Open(pid)
	if err != nil {
		return nil, err
	}
	space.DebugDir = debugDir
	return space, nil
}

func resolveTargets(space *proc.Space, m *module.Module) ([]target, error) {
	var ts []target
	for _, r := range m.Replaces {
		sym, err := space.Lookup(r.Old)
		if err != nil {
			return nil, fmt.Errorf("%s: replace %s: %w", m.ID, r.Old, err)
		}
		if !sym.Func || sym.IFunc || sym.Size == 0 {
			return nil, fmt.Errorf("%s: replace %s: not a sized function in pid %d", m.ID, r.Old, space.Pid)
		}
		obj, ok := space.ObjectAt(sym.Addr)
		if !ok {
			return nil, fmt.Errorf("%s: replace %s: %#x is in no object of pid %d", m.ID, r.Old, sym.Addr, space.Pid)
		}
		if m.Target != "" && !strings.EqualFold(m.Target, obj.BuildID) {
			have := obj.BuildID
			if have == "" {
				have = "none"
			}
			return nil, fmt.Errorf("%s is built for build-id %s, but %s in pid %d has %s: %w", m.ID, m.Target, obj.Path, space.Pid, have, ErrBuildID)
		}
		ts = append(ts, target{repl: r, sym: sym, obj: obj})
	}
	return ts, nil
}

func (s *session) apply(ctx context.Context, m *module.Module, targets []target, opts Options, cmode patchsite.Mode) (*ApplyResult, error) {
	reg, err := s.openRegistry(false)
	if err != nil {
		return nil, err
	}
	if p := reg.find(m.ID); p != nil && p.State == StateActive {
		if p.SHA256 != m.SHA256 {
			return nil, alreadyDifferent(p, m, s.pid)
		}
		return &ApplyResult{Patch: *p, Already: true}, nil
	}
	for _, dep := range m.Depends {
		if p := reg.find(dep); p == nil || p.State != StateActive {
			return nil, fmt.Errorf("patch %s depends on %s, which is not active in pid %d: %w", m.ID, dep, s.pid, ErrDependency)
		}
	}
	// Original code of each function (under any earlier patch's jump), and
	// a first analysis for the short jump: refuse unsafe functions before
	// loading anything.
	originals := make([][]byte, len(targets))
	for i, t := range targets {
		code, err := s.originalCode(reg, t.sym)
		if err != nil {
			return nil, err
		}
		originals[i] = code
		site, err := patchsite.Analyze(t.sym.Name, t.sym.Addr, code, patchsite.JmpRel32Len)
		if err != nil {
			return nil, fmt.Errorf("refusing to patch %s in pid %d: %w", t.sym.Name, s.pid, unsafeError{err})
		}
		if originalPtr(m, t.repl.Old) != "" {
			// What relocation refuses, it refuses wherever the copy goes.
			if _, err := patchsite.Trampoline(site, code, t.sym.Addr); err != nil {
				return nil, fmt.Errorf("refusing original=%s:%s in pid %d: %w", t.repl.Old, originalPtr(m, t.repl.Old), s.pid, unsafeError{err})
			}
		}
	}
	if reg.addr == 0 {
		if reg, err = s.openRegistry(true); err != nil {
			return nil, err
		}
	}
	s.mark("analyse")

	var l *loaded
	near := make([]uint64, len(targets))
	for i, t := range targets {
		near[i] = t.sym.Addr
	}
	reused := -1
	if i := reg.reusable(m.ID, m.SHA256, opts.Mode); i >= 0 {
		// The same module was loaded here before and is not active: its
		// copy in memory is activated again instead of loading another.
		l, reused = reg.doc.Patches[i].asLoaded(), i
	} else if opts.Mode == ModeDlopen {
		l, err = s.loadDlopen(m)
	} else {
		if opts.farLoad {
			near = nil
		}
		l, err = s.loadInject(m, near)
	}
	if err == nil {
		err = ctx.Err() // cancelled while loading: unwind before activating
	}
	if err != nil {
		if l != nil && l.initRan {
			// Its initialisers ran: code of the module may be referenced
			// (atexit, callbacks), so its memory stays; record the failure.
			s.keep()
			s.recordFailed(reg, m, opts.Mode, l, err)
		}
		return nil, err
	}

	s.mark("load")
	patch := Patch{
		ID: m.ID, SHA256: m.SHA256, Mode: opts.Mode, Description: m.Description,
		State: StateLoaded, Depends: m.Depends, Base: l.base, Size: l.size,
		Handle: l.handle, Path: m.Path, LoadedAt: time.Now().UTC(), Seq: reg.nextSeq(),
	}
	var sites []patchsite.Site
	var origs []pendingOriginal
	for i, t := range targets {
		newAddr := l.funcs[t.repl.New]
		jl := patchsite.JumpLen(t.sym.Addr, newAddr)
		site, err := patchsite.Analyze(t.sym.Name, t.sym.Addr, originals[i], jl)
		if err == nil && patchsite.JumpLen(site.Addr, newAddr) > jl {
			site, err = patchsite.Analyze(t.sym.Name, t.sym.Addr, originals[i], patchsite.JmpAbsLen)
		}
		if err != nil {
			return nil, fmt.Errorf("refusing to patch %s in pid %d: %w", t.sym.Name, s.pid, unsafeError{err})
		}
		prev := make([]byte, site.Len)
		if err := s.proc.ReadMem(site.Addr, prev); err != nil {
			return nil, err
		}
		jump := patchsite.EncodeJump(site.Addr, newAddr)
		sites = append(sites, site)
		patch.Funcs = append(patch.Funcs, Func{
			Name: t.sym.Name, Addr: t.sym.Addr, Size: t.sym.Size,
			New: t.repl.New, NewAddr: newAddr, NewSize: m.Funcs[t.repl.New].Size,
			Site: site.Addr, Prev: prev, Jump: jump,
		})
		if ptr := originalPtr(m, t.repl.Old); ptr != "" {
			f := &patch.Funcs[len(patch.Funcs)-1]
			f.Ptr = l.vars[ptr]
			if reused >= 0 {
				f.Ptr, f.Tramp = reg.doc.Patches[reused].Funcs[i].Ptr, reg.doc.Patches[reused].Funcs[i].Tramp
			}
			origs = append(origs, pendingOriginal{f: len(patch.Funcs) - 1, site: site, code: originals[i]})
		}
	}
	if err := s.setOriginals(reg, &patch, origs); err != nil {
		return nil, err
	}

	checker, err := patchsite.NewChecker(sites, cmode)
	if err != nil {
		return nil, err
	}
	w := &window{checker: checker, stackScan: opts.StackScan, fault: opts.fault, detach: true}
	for _, f := range patch.Funcs {
		w.writes = append(w.writes, write{addr: f.Site, data: f.Jump, prev: f.Prev})
	}
	if err := s.space.Refresh(); err == nil {
		w.maps = s.space.Maps
	}

	// Record the intent, then the window, then the result: a reader that
	// finds "activating" settles it by the bytes at the sites.
	patch.State = stateActivating
	before := slices.Clone(reg.doc.Patches)
	if reused >= 0 {
		patch.LoadedAt = reg.doc.Patches[reused].LoadedAt
		reg.doc.Patches = slices.Delete(reg.doc.Patches, reused, reused+1)
	}
	reg.doc.Patches = append(reg.doc.Patches, patch)
	reg.trim()
	idx := len(reg.doc.Patches) - 1
	if err := reg.save(); err != nil {
		return nil, err
	}
	s.undo(func() error {
		reg.doc.Patches = before
		return reg.save()
	})
	s.mark("prepare")
	stats, err := w.run(ctx, s.proc, opts.Timeout)
	if err != nil {
		var be *BusyError
		if errors.As(err, &be) {
			return nil, fmt.Errorf("refusing to patch %s in pid %d: %w", funcNames(patch.Funcs), s.pid, err)
		}
		return nil, fmt.Errorf("activating %s in pid %d: %w", m.ID, s.pid, err)
	}
	s.windowPhases(stats)
	reg.doc.Patches[idx].State = StateActive
	reg.doc.Patches[idx].AppliedAt = time.Now().UTC()
	if err := reg.save(); err != nil {
		// The jumps are in place; the record says "activating", which a
		// reader resolves to active by the bytes. Not worth an unwind.
		s.logf("recording patch %s as active in pid %d: %v", m.ID, s.pid, err)
	}
	s.mark("record")
	return &ApplyResult{Patch: reg.doc.Patches[idx], Pause: stats.Pause, Attempts: stats.Attempts}, nil
}

// originalPtr is the PTR of the module's original=OLD:PTR entry for old, or "".
func originalPtr(m *module.Module, old string) string {
	for _, o := range m.Originals {
		if o.Old == old {
			return o.Ptr
		}
	}
	return ""
}

// pendingOriginal is a function of a patch being applied whose original
// its module asks for.
type pendingOriginal struct {
	f    int // index in Patch.Funcs
	site patchsite.Site
	code []byte // the function's original code
}

// setOriginals gives each pending original its trampoline (one page near
// the functions for all of them, unless a reused record has them already)
// and stores in its PTR the implementation below the patch: the replacement
// of the active patch on top of the function, else the trampoline. It runs
// before the window: the module is not reachable yet.
func (s *session) setOriginals(reg *registry, p *Patch, origs []pendingOriginal) error {
	var need []pendingOriginal
	var near []uint64
	for _, o := range origs {
		if p.Funcs[o.f].Tramp == 0 {
			need = append(need, o)
			near = append(near, o.site.Addr)
		}
	}
	if len(need) > 0 {
		if err := s.space.Refresh(); err != nil { // the module is mapped now
			return err
		}
		hole, err := s.space.FindHoleNearAll(near, pageSize)
		if err != nil {
			return fmt.Errorf("no room within ±2 GiB of %s for the trampoline of its original: %w", funcNames(p.Funcs), err)
		}
		page, err := s.mmap(hole, pageSize, unix.PROT_READ|unix.PROT_WRITE)
		if err != nil {
			return err
		}
		s.undo(func() error { return s.munmap(page, pageSize) })
		var code []byte
		for _, o := range need {
			at := page + uint64(len(code))
			t, err := patchsite.Trampoline(o.site, o.code, at)
			if err != nil {
				return fmt.Errorf("refusing original of %s in pid %d: %w", o.site.Func, s.pid, unsafeError{err})
			}
			if len(code)+len(t) > pageSize {
				return fmt.Errorf("trampolines of %s do not fit in a page", funcNames(p.Funcs))
			}
			p.Funcs[o.f].Tramp = at
			code = append(code, t...)
			for len(code)%16 != 0 {
				code = append(code, 0xcc) // int3 between trampolines
			}
		}
		if err := s.proc.WriteMem(page, code); err != nil {
			return err
		}
		_ = s.nameMapping(page, pageSize, "lp:trampolines")
		if err := s.mprotect(page, pageSize, unix.PROT_READ|unix.PROT_EXEC); err != nil {
			return err
		}
	}
	for _, o := range origs {
		f := &p.Funcs[o.f]
		below := f.Tramp
		if top := topOf(reg, f.Site); top != nil {
			below = top.NewAddr
		}
		var word [8]byte
		binary.LittleEndian.PutUint64(word[:], below)
		if err := s.proc.WriteMem(f.Ptr, word[:]); err != nil {
			return fmt.Errorf("storing the original of %s in pid %d: %w", f.Name, s.pid, err)
		}
	}
	return nil
}

// topOf is the function record of the newest active patch at site, or nil.
func topOf(reg *registry, site uint64) *Func {
	var top *Func
	for _, q := range reg.active() { // oldest first
		for i := range q.Funcs {
			if q.Funcs[i].Site == site {
				top = &q.Funcs[i]
			}
		}
	}
	return top
}

// unsafeError carries patchsite's reason and matches ErrUnsafe.
type unsafeError struct{ err error }

func (e unsafeError) Error() string        { return e.err.Error() }
func (e unsafeError) Unwrap() error        { return e.err }
func (e unsafeError) Is(target error) bool { return target == ErrUnsafe }

func funcNames(fs []Func) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// originalCode reads a function's code as it was before any patch: its
// current bytes with the lowest active patch's saved bytes put back.
func (s *session) originalCode(reg *registry, sym proc.Symbol) ([]byte, error) {
	if sym.Size > 1<<20 {
		return nil, fmt.Errorf("function %s is %d bytes; too large to analyse", sym.Name, sym.Size)
	}
	code := make([]byte, sym.Size)
	if err := s.proc.ReadMem(sym.Addr, code); err != nil {
		return nil, err
	}
	for _, p := range reg.active() { // oldest first
		for _, f := range p.Funcs {
			if f.Addr == sym.Addr && f.Site >= sym.Addr && f.Site+uint64(len(f.Prev)) <= sym.Addr+sym.Size {
				copy(code[f.Site-sym.Addr:], f.Prev)
				return code, nil
			}
		}
	}
	return code, nil
}

func (s *session) recordFailed(reg *registry, m *module.Module, mode string, l *loaded, cause error) {
	reg.doc.Patches = append(reg.doc.Patches, Patch{
		ID: m.ID, SHA256: m.SHA256, Mode: mode, Description: m.Description, State: StateFailed,
		Depends: m.Depends, Base: l.base, Size: l.size, Handle: l.handle, Path: m.Path,
		Error: cause.Error(), LoadedAt: time.Now().UTC(), Seq: reg.nextSeq(),
	})
	if err := reg.save(); err != nil {
		s.logf("recording failed patch %s in pid %d: %v", m.ID, s.pid, err)
	}
}

// RevertResult reports a Revert.
type RevertResult struct {
	Reverted []string      // ids reverted, in order (dependents first, newest first)
	Already  bool          // the patch was not active: nothing was done
	Pause    time.Duration // how long the target's threads were stopped
	Attempts int           // windows tried
	Total    time.Duration // the whole revert
	// Phases: inspect, attach, prepare, window (split as in ApplyResult),
	// record, detach.
	Phases []Phase `json:"phases,omitempty"`
}

// Revert puts back the bytes a patch replaced. With cascade, active patches
// that depend on it are reverted with it, in the same stop-the-world window:
// all of them or none. Without cascade, their presence refuses the revert.
// The module's memory stays mapped: a thread may still be running in it, and
// it costs no more than its pages. A revert that fails changes neither the
// target's code nor its record.
func Revert(ctx context.Context, pid int, id string, cascade bool, opts Options) (*RevertResult, error) {
	opts, cmode, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	space, err := openSpace(pid, opts.DebugDir)
	if err != nil {
		return nil, err
	}
	// What the record alone settles (no such patch, not active, needed
	// by others) is settled without stopping the target.
	if ps, err := readRecords(pid); err == nil {
		reg := &registry{doc: registryDoc{Patches: ps}}
		p := reg.find(id)
		if p == nil {
			return nil, fmt.Errorf("no patch %s in pid %d: %w", id, pid, ErrNotFound)
		}
		if p.State != StateActive {
			return &RevertResult{Already: true, Total: time.Since(start)}, nil
		}
		if _, err := revertOrder(reg, p, cascade); err != nil {
			return nil, err
		}
	}
	inspected := time.Now()
	s, err := attachSession(pid, space, opts.Logf)
	if err != nil {
		return nil, err
	}
	s.phases = []Phase{{"inspect", inspected.Sub(start)}}
	s.last = inspected
	s.mark("attach")
	s.fault = opts.fault
	res, err := s.revert(ctx, id, cascade, opts, cmode)
	if err != nil {
		s.unwind()
	} else {
		s.keep()
	}
	if derr := s.detach(); derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	s.mark("detach")
	res.Pause = max(res.Pause, s.proc.LongestStop())
	res.Phases = s.phases
	res.Total = time.Since(start)
	return res, nil
}

func (s *session) revert(ctx context.Context, id string, cascade bool, opts Options, cmode patchsite.Mode) (*RevertResult, error) {
	reg, err := s.openRegistry(false)
	if err != nil {
		return nil, err
	}
	p := reg.find(id)
	if p == nil {
		return nil, fmt.Errorf("no patch %s in pid %d: %w", id, s.pid, ErrNotFound)
	}
	if p.State != StateActive {
		return &RevertResult{Already: true}, nil
	}
	order, err := revertOrder(reg, p, cascade)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(order))
	for i, q := range order {
		ids[i] = q.ID
	}
	plan, err := planRevert(reg.doc, ids)
	if err != nil {
		return nil, err
	}
	checker, err := patchsite.NewChecker(plan.sites, cmode)
	if err != nil {
		return nil, err
	}
	w := &window{checker: checker, stackScan: opts.StackScan, writes: plan.writes, fault: opts.fault, detach: true}
	if err := s.space.Refresh(); err == nil {
		w.maps = s.space.Maps
	}

	// The journal: the intent record (states "reverting", the new bytes
	// of patches above as pending) goes in first; a reader that finds it
	// settles it by the bytes at the sites. On failure the record before
	// is put back, so nothing changed.
	before := reg.doc
	reg.doc = plan.intent
	if err := s.fail("revert-intent"); err != nil {
		reg.doc = before
		return nil, err
	}
	if err := reg.save(); err != nil {
		reg.doc = before
		return nil, fmt.Errorf("recording the revert of %s in pid %d: %w", strings.Join(ids, ", "), s.pid, err)
	}
	s.undo(func() error {
		reg.doc = before
		return reg.save()
	})
	s.mark("prepare")
	stats, err := w.run(ctx, s.proc, opts.Timeout)
	if err != nil {
		var be *BusyError
		if errors.As(err, &be) {
			return nil, fmt.Errorf("refusing to revert %s in pid %d: %w", strings.Join(ids, ", "), s.pid, err)
		}
		return nil, fmt.Errorf("reverting %s in pid %d: %w", strings.Join(ids, ", "), s.pid, err)
	}
	// The code is reverted: from here on nothing is undone.
	s.keep()
	s.windowPhases(stats)
	reg.doc = plan.final
	now := time.Now().UTC()
	for i := range reg.doc.Patches {
		if q := &reg.doc.Patches[i]; slices.Contains(ids, q.ID) && q.State == StateReverted {
			q.RevertedAt = now
		}
	}
	err = s.fail("revert-final")
	if err == nil {
		err = reg.save()
	}
	if err != nil {
		// The record still holds the intent, which a reader settles to
		// the same result by the bytes at the sites.
		s.logf("recording the revert of %s in pid %d: %v", strings.Join(ids, ", "), s.pid, err)
	}
	s.mark("record")
	return &RevertResult{Reverted: ids, Pause: stats.Pause, Attempts: stats.Attempts}, nil
}

// revertOrder is p and, transitively, the active patches depending on it,
// newest first.
func revertOrder(reg *registry, p *Patch, cascade bool) ([]*Patch, error) {
	set := map[string]*Patch{p.ID: p}
	for changed := true; changed; {
		changed = false
		for _, q := range reg.active() {
			if set[q.ID] != nil {
				continue
			}
			for _, d := range q.Depends {
				if set[d] != nil {
					set[q.ID] = q
					changed = true
					break
				}
			}
		}
	}
	if len(set) > 1 && !cascade {
		var deps []string
		for id := range set {
			if id != p.ID {
				deps = append(deps, id)
			}
		}
		sort.Strings(deps)
		return nil, fmt.Errorf("patch %s is needed by active %s; revert those first or use --cascade: %w", p.ID, strings.Join(deps, ", "), ErrDependency)
	}
	order := make([]*Patch, 0, len(set))
	for _, q := range set {
		order = append(order, q)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].Seq > order[j].Seq })
	return order, nil
}

// revertPlan is a revert computed before the target is stopped: the writes
// of the window, the sites threads must be clear of, and the two records,
// on copies: intent (written before the window) and final (after).
type revertPlan struct {
	writes []write
	sites  []patchsite.Site
	intent registryDoc
	final  registryDoc
}

// planRevert computes the revert of the active patches ids, given newest
// first. For each function of each: if the patch is the top of that
// function's stack, its saved bytes go back (the earlier patch's jump or
// the original code); if a later patch that stays sits on top, only that
// patch's saved bytes change to ours, so reverting it later restores what
// was there before us. Writes to one site follow in order; each one's prev
// is the jump it replaces, so undoing them newest first is exact.
func planRevert(doc registryDoc, ids []string) (*revertPlan, error) {
	final := doc.clone()
	intent := doc.clone()
	plan := &revertPlan{}
	for _, id := range ids {
		p := final.find(id)
		if p == nil || p.State != StateActive {
			return nil, fmt.Errorf("patch %s is not active: %w", id, ErrNotFound)
		}
		for i := range p.Funcs {
			f := &p.Funcs[i]
			if above, seq := final.stackedAbove(p, f.Site); above != nil {
				if above.Ptr != 0 {
					// Its original was us: it becomes what is below us.
					below := above.Tramp
					if b := final.stackedBelow(p, f.Site); b != nil {
						below = b.NewAddr
					}
					plan.writes = append(plan.writes, write{addr: above.Ptr, data: le64(below), prev: le64(f.NewAddr)})
				}
				above.Prev = slices.Clone(f.Prev)
				// The intent carries it as pending: applied by a reader
				// only if the window happened.
				if ia := intent.funcAt(seq, f.Site); ia != nil {
					ia.Pending = slices.Clone(f.Prev)
				}
				continue
			}
			plan.writes = append(plan.writes, write{addr: f.Site, data: f.Prev, prev: f.Jump})
			// The same rule as activation, on the same function: no
			// thread in the bytes being rewritten or (function mode)
			// anywhere in the replaced function. Threads running the
			// replacement are not waited for: the module stays mapped,
			// they finish the new version and their next call runs the
			// old one. A hot replacement would otherwise make revert,
			// the operator's way out, fail.
			plan.sites = append(plan.sites, patchsite.Site{Func: f.Name, FuncAddr: f.Addr, FuncSize: f.Size, Addr: f.Site, Len: len(f.Prev)})
		}
		p.State = StateReverted
		intent.find(id).State = stateReverting
	}
	plan.intent, plan.final = intent, final
	return plan, nil
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
