package patchsite

import (
	"fmt"
	"sort"
)

// Mode is the consistency rule of activation (`--consistency`).
type Mode int

const (
	// ModeFunction (the default): no thread is anywhere inside a replaced
	// function, nor has a return address into one (the kpatch/libcare rule).
	ModeFunction Mode = iota
	// ModeEntry (PANNUS): only the overwritten bytes must be clear.
	ModeEntry
)

// ParseMode parses "function" or "entry".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "function":
		return ModeFunction, nil
	case "entry":
		return ModeEntry, nil
	}
	return 0, fmt.Errorf("unknown consistency mode %q (want function or entry)", s)
}

func (m Mode) String() string {
	switch m {
	case ModeFunction:
		return "function"
	case ModeEntry:
		return "entry"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) {
	if m != ModeFunction && m != ModeEntry {
		return nil, fmt.Errorf("unknown consistency mode %d", int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Thread is a snapshot of one stopped thread.
type Thread struct {
	Tid int
	IP  uint64
	// Stack holds raw 8-byte words read from the stack pointer upward, over a
	// bounded range chosen by the caller.
	Stack []uint64
}

// BusyError names the thread that blocks activation. Addr is its instruction
// pointer, or the stack word pointing into Func when InStack.
type BusyError struct {
	Tid     int
	Addr    uint64
	Func    string
	InStack bool
}

func (e *BusyError) Error() string {
	if e.InStack {
		return fmt.Sprintf("thread %d has a return address into %s (%#x) on its stack", e.Tid, e.Func, e.Addr)
	}
	return fmt.Sprintf("thread %d is inside %s at %#x", e.Tid, e.Func, e.Addr)
}

// span is a half-open address range [lo, hi) that no instruction pointer (or
// stack word) may fall in, except exactly at skip when hasSkip.
type span struct {
	lo, hi  uint64
	skip    uint64
	hasSkip bool
	fn      string
}

func (s *span) has(a uint64) bool {
	return a >= s.lo && a < s.hi && !(s.hasSkip && a == s.skip)
}

// Checker checks thread snapshots against a set of sites under one mode.
type Checker struct {
	ip    []span // sorted by lo
	stack []span // sorted by lo, disjoint (merged)
	// lo and hi bound every span: the fast path for the many stack words
	// that are not code addresses at all.
	lo, hi uint64
}

// NewChecker precomputes the ranges that CheckThreads tests. Sites must come
// from Analyze (Addr..Addr+Len inside FuncAddr..FuncAddr+FuncSize).
func NewChecker(sites []Site, mode Mode) (*Checker, error) {
	if mode != ModeFunction && mode != ModeEntry {
		return nil, fmt.Errorf("%w: consistency mode %d", ErrInvalid, int(mode))
	}
	c := &Checker{lo: ^uint64(0)}
	for _, s := range sites {
		end := s.FuncAddr + s.FuncSize
		if s.Len <= 0 || end < s.FuncAddr || s.Addr < s.FuncAddr || s.End() > end || s.End() < s.Addr {
			return nil, fmt.Errorf("%w: site %s: region %#x+%d outside function %#x+%d", ErrInvalid, s.Func, s.Addr, s.Len, s.FuncAddr, s.FuncSize)
		}
		var ip, st span
		switch mode {
		case ModeEntry:
			// Strictly inside the overwritten bytes: at Addr the thread
			// simply runs the jump.
			ip = span{lo: s.Addr + 1, hi: s.End(), fn: s.Func}
			st = ip
		case ModeFunction:
			// Anywhere in the function, except about to run its first
			// instruction (FuncAddr) or the jump (Addr, after an endbr64).
			ip = span{lo: s.FuncAddr + 1, hi: end, fn: s.Func}
			if s.Addr != s.FuncAddr {
				ip.skip, ip.hasSkip = s.Addr, true
			}
			// A return address never equals a function's first byte.
			st = span{lo: s.FuncAddr + 1, hi: end, fn: s.Func}
		}
		if ip.lo < ip.hi {
			c.ip = append(c.ip, ip)
			c.lo, c.hi = min(c.lo, ip.lo), max(c.hi, ip.hi)
		}
		if st.lo < st.hi {
			c.stack = append(c.stack, st)
		}
	}
	sort.Slice(c.ip, func(i, j int) bool { return c.ip[i].lo < c.ip[j].lo })
	sort.Slice(c.stack, func(i, j int) bool { return c.stack[i].lo < c.stack[j].lo })
	// Merge overlapping stack spans (aliases of one function) so a binary
	// search finds the one span that can hold a word.
	merged := c.stack[:0]
	for _, s := range c.stack {
		if n := len(merged); n > 0 && s.lo < merged[n-1].hi {
			merged[n-1].hi = max(merged[n-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	c.stack = merged
	return c, nil
}

// Check returns a *BusyError for the first thread (in the order given) whose
// instruction pointer or stack blocks activation, or nil. It does not
// allocate unless it returns an error.
func (c *Checker) Check(threads []Thread) error {
	if len(c.ip) == 0 {
		return nil
	}
	// One unsigned compare tells whether a word is in [lo, hi): words
	// below lo wrap around to huge values.
	width := c.hi - c.lo
	for i := range threads {
		t := &threads[i]
		if t.IP-c.lo < width {
			// IP spans may overlap (aliases); there are few, scan them.
			for j := range c.ip {
				if c.ip[j].has(t.IP) {
					return &BusyError{Tid: t.Tid, Addr: t.IP, Func: c.ip[j].fn}
				}
			}
		}
		for _, w := range t.Stack {
			if w-c.lo >= width {
				continue
			}
			if fn, ok := c.stackHit(w); ok {
				return &BusyError{Tid: t.Tid, Addr: w, Func: fn, InStack: true}
			}
		}
	}
	return nil
}

// stackHit finds the stack span holding w by binary search.
func (c *Checker) stackHit(w uint64) (string, bool) {
	lo, hi := 0, len(c.stack)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c.stack[m].lo <= w {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return "", false
	}
	s := &c.stack[lo-1]
	if w < s.hi {
		return s.fn, true
	}
	return "", false
}

// CheckThreads is NewChecker(sites, mode).Check(threads). Build a Checker
// once when checking repeatedly (retries with backoff).
func CheckThreads(sites []Site, threads []Thread, mode Mode) error {
	c, err := NewChecker(sites, mode)
	if err != nil {
		return err
	}
	return c.Check(threads)
}
