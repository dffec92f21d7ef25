package proc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// rel32Reach is 2^31: a jmp rel32 at site reaches targets t with
// -2^31 <= t-(site+5) < 2^31.
const rel32Reach = 1 << 31

// HoleConfig says where FindHole may place memory.
type HoleConfig struct {
	// MinAddr is the lowest usable address; keeps clear of the NULL
	// region (vm.mmap_min_addr). Default 64 KiB.
	MinAddr uint64
	// MaxAddr is the end of the usable range (exclusive). Default
	// 0x7ffffffff000, the top of the 47-bit user address space.
	MaxAddr uint64
	// Guard is kept free between a hole and every mapping. Default one
	// page; at least one page.
	Guard uint64
	// StackReserve is kept free below [stack] so that the main thread's
	// stack can still grow (its size limit plus the kernel's 1 MiB stack
	// guard gap). Default 8 MiB + 1 MiB.
	StackReserve uint64
	// HeapReserve is kept free above [heap] so that brk can still grow.
	// Default 64 MiB.
	HeapReserve uint64
}

// DefaultHoleConfig returns the defaults documented on HoleConfig.
func DefaultHoleConfig() HoleConfig {
	return HoleConfig{
		MinAddr:      64 << 10,
		MaxAddr:      0x7ffffffff000,
		Guard:        pageSize,
		StackReserve: 9 << 20,
		HeapReserve:  64 << 20,
	}
}

// Validate checks the limits: addresses and sizes page aligned, MinAddr at
// least one page and below MaxAddr, MaxAddr at most 2^56 (5-level paging),
// Guard at least one page.
func (c HoleConfig) Validate() error {
	for _, f := range []struct {
		name string
		v    uint64
	}{{"MinAddr", c.MinAddr}, {"MaxAddr", c.MaxAddr}, {"Guard", c.Guard}, {"StackReserve", c.StackReserve}, {"HeapReserve", c.HeapReserve}} {
		if f.v%pageSize != 0 {
			return fmt.Errorf("hole config: %s %#x is not a multiple of the page size %#x", f.name, f.v, pageSize)
		}
	}
	switch {
	case c.MinAddr < pageSize:
		return fmt.Errorf("hole config: MinAddr %#x is below one page %#x", c.MinAddr, pageSize)
	case c.MaxAddr > 1<<56:
		return fmt.Errorf("hole config: MaxAddr %#x is above the user address space limit %#x", c.MaxAddr, uint64(1)<<56)
	case c.MinAddr >= c.MaxAddr:
		return fmt.Errorf("hole config: MinAddr %#x is not below MaxAddr %#x", c.MinAddr, c.MaxAddr)
	case c.Guard < pageSize:
		return fmt.Errorf("hole config: Guard %#x is below one page %#x", c.Guard, pageSize)
	}
	return nil
}

// FindHole returns the start of a free, page-aligned range of size bytes
// (rounded up to whole pages) every byte of which a jmp rel32 at near
// reaches, and that lies at least s.Hole.Guard away from every mapping.
// Among such ranges the one closest to near wins. The error wraps ErrNoHole
// when there is none.
func (s *Space) FindHole(near, size uint64) (uint64, error) {
	return s.FindHoleNearAll([]uint64{near}, size)
}

// FindHoleNearAll is FindHole for several sites (the entries of every
// function a module replaces): every site reaches every byte of the range.
func (s *Space) FindHoleNearAll(sites []uint64, size uint64) (uint64, error) {
	h, err := FreeRange(s.Maps, s.Hole, sites, size)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", s.Pid, err)
	}
	return h, nil
}

// FreeRange is the computation behind FindHole on an explicit list of
// mappings. A range [h, h+size) qualifies when, for every site s and every
// byte b of it, s+5-2^31 <= b < s+2^31 (a jmp rel32 at s reaches b, and b is
// within 2 GiB of s in both directions); it lies in [cfg.MinAddr,
// cfg.MaxAddr); and it keeps cfg.Guard from every mapping, cfg.StackReserve
// below [stack] and cfg.HeapReserve above [heap]. The qualifying range
// whose farthest byte is nearest to the sites wins (lower address on ties).
func FreeRange(maps []Mapping, cfg HoleConfig, sites []uint64, size uint64) (uint64, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if len(sites) == 0 {
		return 0, errors.New("finding a hole: no sites given")
	}
	if size == 0 {
		return 0, errors.New("finding a hole: size is zero")
	}
	if size > rel32Reach {
		return 0, fmt.Errorf("finding a hole of %#x bytes: %w (larger than 2 GiB)", size, ErrNoHole)
	}
	size = pageUp(size)
	minS, maxS := sites[0], sites[0]
	for _, s := range sites {
		if s >= 1<<62 {
			return 0, fmt.Errorf("finding a hole near %#x: %w (site outside the user address space)", s, ErrNoHole)
		}
		minS, maxS = min(minS, s), max(maxS, s)
	}
	// Window of allowed bytes [lo, hi).
	lo := cfg.MinAddr
	if maxS+5 > rel32Reach {
		lo = max(lo, maxS+5-rel32Reach)
	}
	hi := min(cfg.MaxAddr, minS+rel32Reach)
	lo, hi = pageUp(lo), pageDown(hi)
	noHole := fmt.Errorf("finding %#x bytes within reach of %s: %w", size, siteList(sites), ErrNoHole)
	if hi <= lo || hi-lo < size {
		return 0, noHole
	}

	blocked := blockedRanges(maps, cfg)
	best, bestCost, found := uint64(0), uint64(0), false
	try := func(a, b uint64) { // free gap [a, b)
		a, b = max(a, lo), min(b, hi)
		if b <= a || b-a < size {
			return
		}
		last := b - size // last possible start, page aligned
		// cost is convex in h, minimal when the range is centred on the
		// sites; try the page-aligned points either side of that centre.
		centre := minS/2 + maxS/2 + (minS & maxS & 1)
		var ideal uint64
		if centre > size/2 {
			ideal = centre - size/2
		}
		for _, h := range []uint64{pageDown(ideal), pageUp(ideal)} {
			h = min(max(h, a), last)
			c := holeCost(h, size, minS, maxS)
			if !found || c < bestCost || (c == bestCost && h < best) {
				best, bestCost, found = h, c, true
			}
		}
	}
	prevEnd := uint64(0)
	for _, r := range blocked {
		if r[0] > prevEnd {
			try(prevEnd, r[0])
		}
		prevEnd = max(prevEnd, r[1])
	}
	try(prevEnd, ^uint64(0)&^(pageSize-1))
	if !found {
		return 0, noHole
	}
	return best, nil
}

// holeCost is the distance from the sites to the farthest byte of [h, h+size).
func holeCost(h, size, minS, maxS uint64) uint64 {
	dist := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return b - a
	}
	end := h + size - 1
	return max(dist(h, minS), dist(h, maxS), dist(end, minS), dist(end, maxS))
}

// blockedRanges returns the merged, sorted ranges that a hole may not
// touch: every mapping widened by the guard, the stack reserve and the heap
// reserve.
func blockedRanges(maps []Mapping, cfg HoleConfig) [][2]uint64 {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	add := func(a, b uint64) uint64 {
		if a > ^uint64(0)-b {
			return ^uint64(0)
		}
		return a + b
	}
	var rs [][2]uint64
	for _, m := range sortMaps(maps) {
		lo, hi := sub(pageDown(m.Start), cfg.Guard), add(pageUp(m.End), cfg.Guard)
		switch {
		case m.Path == "[stack]" || strings.HasPrefix(m.Path, "[stack:"):
			lo = sub(lo, cfg.StackReserve)
		case m.Path == "[heap]":
			hi = add(hi, cfg.HeapReserve)
		}
		rs = append(rs, [2]uint64{lo, hi})
	}
	// Widened ranges may now overlap or be out of order; merge.
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j][0] < rs[j-1][0]; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	var out [][2]uint64
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

func siteList(sites []uint64) string {
	var b strings.Builder
	for i, s := range sites {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 4 {
			fmt.Fprintf(&b, "... (%d sites)", len(sites))
			break
		}
		fmt.Fprintf(&b, "%#x", s)
	}
	return b.String()
}

// stackReserve reads the target's soft stack size limit from
// /proc/PID/limits and returns it plus the kernel's 1 MiB stack guard gap,
// page aligned and capped at 1 GiB ("unlimited" gives the cap).
func stackReserve(pid int) (uint64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	const gap, limit = 1 << 20, 1 << 30
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max stack size")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		if fields[0] == "unlimited" {
			return limit + gap, true
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, false
		}
		return pageUp(min(v, limit)) + gap, true
	}
	return 0, false
}
