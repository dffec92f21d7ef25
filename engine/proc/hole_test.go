package proc

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

func testHoleConfig() HoleConfig {
	return HoleConfig{MinAddr: 0x10000, MaxAddr: 0x7ffffffff000, Guard: 0x1000}
}

func mp(start, end uint64, path string) Mapping {
	return Mapping{Start: start, End: end, Perms: "r-xp", Dev: "00:00", Path: path}
}

func TestFreeRange(t *testing.T) {
	const stack = 0x7ffe00000000
	withHeap := testHoleConfig()
	withHeap.HeapReserve = 0x20000
	withStack := testHoleConfig()
	withStack.StackReserve = 0x100000
	tests := []struct {
		name  string
		maps  []Mapping
		cfg   HoleConfig
		sites []uint64
		size  uint64
		want  uint64 // 0: want ErrNoHole
	}{
		{"below the function, one guard page", []Mapping{mp(0x10000000, 0x10005000, "/x")}, testHoleConfig(),
			[]uint64{0x10001000}, 0x1000, 0x0fffe000},
		{"above when that is nearer", []Mapping{mp(0x10000000, 0x10005000, "/x")}, testHoleConfig(),
			[]uint64{0x10004f00}, 0x1000, 0x10006000},
		{"size rounded up; a one-page gap is skipped",
			[]Mapping{mp(0x10000000, 0x10001000, "/x"), mp(0x10004000, 0x10010000, "/y")}, testHoleConfig(),
			[]uint64{0x10000800}, 0x1800, 0x0fffd000},
		{"a gap that fits exactly, guards kept",
			[]Mapping{mp(0x10000000, 0x10001000, "/x"), mp(0x10005000, 0x10010000, "/y")}, testHoleConfig(),
			[]uint64{0x10000800}, 0x2000, 0x10002000},
		{"everything within reach mapped", []Mapping{mp(0x100000000, 0x300000000, "/big")}, testHoleConfig(),
			[]uint64{0x200000000}, 0x1000, 0},
		{"jmp reaches exactly -2^31 from site+5",
			[]Mapping{mp(0x100000000, 0x180000000, "/a"), mp(0x180000000, 0x200000000, "/b")}, testHoleConfig(),
			[]uint64{0x17fffdffb}, 0x1000, 0xffffe000},
		{"one byte further is out of reach",
			[]Mapping{mp(0x100000000, 0x180000000, "/a"), mp(0x180000000, 0x200000000, "/b")}, testHoleConfig(),
			[]uint64{0x17fffdffc}, 0x1000, 0},
		{"not below MinAddr", []Mapping{mp(0x11000, 0x30000, "/x")}, testHoleConfig(),
			[]uint64{0x11000}, 0x1000, 0x31000},
		{"not above MaxAddr", []Mapping{mp(0x7fffffe00000, 0x7ffffffff000, "/x")}, testHoleConfig(),
			[]uint64{0x7fffffe00000}, 0x1000, 0x7fffffdfe000},
		{"above the heap without a reserve",
			[]Mapping{mp(0x0fff0000, 0x10000000, "/x"), mp(0x10000000, 0x10001000, "[heap]")}, testHoleConfig(),
			[]uint64{0x10000f00}, 0x1000, 0x10002000},
		{"heap reserve pushes it below",
			[]Mapping{mp(0x0fff0000, 0x10000000, "/x"), mp(0x10000000, 0x10001000, "[heap]")}, withHeap,
			[]uint64{0x10000f00}, 0x1000, 0x0ffee000},
		{"below the stack without a reserve",
			[]Mapping{mp(stack, stack+0x21000, "[stack]"), mp(stack+0x21000, stack+0x30000, "[vvar]")}, testHoleConfig(),
			[]uint64{stack + 0x100}, 0x1000, stack - 0x2000},
		{"stack reserve pushes it above",
			[]Mapping{mp(stack, stack+0x21000, "[stack]"), mp(stack+0x21000, stack+0x30000, "[vvar]")}, withStack,
			[]uint64{stack + 0x100}, 0x1000, stack + 0x31000},
		{"two sites: centred between them",
			[]Mapping{mp(0x100000000, 0x100001000, "/a"), mp(0x160000000, 0x160001000, "/b")}, testHoleConfig(),
			[]uint64{0x100000000, 0x160000000}, 0x1000, 0x130000000},
		{"two sites 3.5 GiB apart: each byte within 2 GiB of both",
			[]Mapping{mp(0x100000000, 0x100001000, "/a"), mp(0x1e0000000, 0x1e0001000, "/b")}, testHoleConfig(),
			[]uint64{0x100000000, 0x1e0000000}, 0x1000, 0x170000000},
		{"two sites 4 GiB apart",
			[]Mapping{mp(0x100000000, 0x100001000, "/a"), mp(0x200000000, 0x200001000, "/b")}, testHoleConfig(),
			[]uint64{0x100000000, 0x200000000}, 0x1000, 0},
		{"unsorted maps", []Mapping{mp(0x10004000, 0x10010000, "/y"), mp(0x10000000, 0x10001000, "/x")}, testHoleConfig(),
			[]uint64{0x10000800}, 0x1800, 0x0fffd000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FreeRange(tt.maps, tt.cfg, tt.sites, tt.size)
			if tt.want == 0 {
				if !errors.Is(err, ErrNoHole) {
					t.Fatalf("FreeRange = %#x, %v; want ErrNoHole", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FreeRange = %#x, %v; want %#x", got, err, tt.want)
			}
			checkHole(t, tt.maps, tt.cfg, tt.sites, got, tt.size)
		})
	}
}

func TestFreeRangeBadInput(t *testing.T) {
	bad := testHoleConfig()
	bad.Guard = 0
	for _, tt := range []struct {
		name  string
		cfg   HoleConfig
		sites []uint64
		size  uint64
	}{
		{"no sites", testHoleConfig(), nil, 0x1000},
		{"zero size", testHoleConfig(), []uint64{0x10000000}, 0},
		{"no guard", bad, []uint64{0x10000000}, 0x1000},
		{"site in kernel space", testHoleConfig(), []uint64{0xffffffffff600000}, 0x1000},
		{"larger than the reach", testHoleConfig(), []uint64{0x10000000}, 1 << 32},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := FreeRange(nil, tt.cfg, tt.sites, tt.size); err == nil {
				t.Errorf("FreeRange = %#x, nil; want an error", h)
			}
		})
	}
}

func TestHoleConfigValidate(t *testing.T) {
	if err := DefaultHoleConfig().Validate(); err != nil {
		t.Errorf("DefaultHoleConfig().Validate() = %v; want nil", err)
	}
	for _, mod := range []func(*HoleConfig){
		func(c *HoleConfig) { c.MinAddr = 0 },
		func(c *HoleConfig) { c.MinAddr = 0x10001 },
		func(c *HoleConfig) { c.MaxAddr = c.MinAddr },
		func(c *HoleConfig) { c.MaxAddr = 1 << 60 },
		func(c *HoleConfig) { c.Guard = 0 },
		func(c *HoleConfig) { c.StackReserve = 100 },
	} {
		c := DefaultHoleConfig()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil; want an error", c)
		}
	}
}

// checkHole verifies the contract of a hole independently of FreeRange.
func checkHole(t *testing.T, maps []Mapping, cfg HoleConfig, sites []uint64, h, size uint64) {
	t.Helper()
	size = pageUp(size)
	if h%pageSize != 0 {
		t.Errorf("hole %#x is not page aligned", h)
	}
	if h < cfg.MinAddr || h+size > cfg.MaxAddr {
		t.Errorf("hole [%#x, %#x) outside [%#x, %#x)", h, h+size, cfg.MinAddr, cfg.MaxAddr)
	}
	for _, m := range maps {
		if h < m.End+cfg.Guard && m.Start < h+size+cfg.Guard {
			t.Errorf("hole [%#x, %#x) overlaps or touches %s (guard %#x)", h, h+size, m, cfg.Guard)
		}
	}
	for _, s := range sites {
		// jmp rel32 at s: displacement from s+5 to each end of the hole.
		for _, b := range []uint64{h, h + size - 1} {
			d := int64(b) - int64(s+5)
			if d < -(1<<31) || d > 1<<31-1 {
				t.Errorf("hole byte %#x is out of rel32 reach of site %#x (displacement %#x)", b, s, d)
			}
		}
	}
}

func TestFindHoleInRealTarget(t *testing.T) {
	for _, exe := range []string{"target-pie", "target-nopie"} {
		t.Run(exe, func(t *testing.T) {
			tg := startTarget(t, filepath.Join(fixtureDir(t), exe))
			s, err := Open(tg.pid)
			if err != nil {
				t.Fatal(err)
			}
			near := tg.addrs["secret_add"]
			const size = 3*pageSize + 1
			h, err := s.FindHole(near, size)
			if err != nil {
				t.Fatalf("FindHole(%#x): %v", near, err)
			}
			fresh, err := ReadMaps(tg.pid)
			if err != nil {
				t.Fatal(err)
			}
			checkHole(t, fresh, s.Hole, []uint64{near}, h, size)
			t.Logf("hole for %#x: %#x (%d MiB away)", near, h, absDiff(h, near)>>20)

			sites := []uint64{near, tg.addrs["lp_counter"]}
			h, err = s.FindHoleNearAll(sites, size)
			if err != nil {
				t.Fatalf("FindHoleNearAll(%#x): %v", sites, err)
			}
			checkHole(t, fresh, s.Hole, sites, h, size)

			// The executable and libc are far apart (more than 4 GiB in
			// every default layout): no hole reaches both.
			far := []uint64{near, tg.addrs["getpid"]}
			if absDiff(far[0], far[1]) > 1<<32 {
				if h, err := s.FindHoleNearAll(far, size); !errors.Is(err, ErrNoHole) {
					t.Errorf("FindHoleNearAll(%#x) = %#x, %v; want ErrNoHole", far, h, err)
				}
			}
		})
	}
}

// The kernel agrees that a hole is free: mapping it with
// MAP_FIXED_NOREPLACE in our own process succeeds.
func TestFindHoleKernelAgrees(t *testing.T) {
	s, err := Open(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	near := funcAddr(TestFindHoleKernelAgrees)
	const size = 4 * pageSize
	h, err := s.FindHole(near, size)
	if err != nil {
		t.Fatalf("FindHole(%#x): %v", near, err)
	}
	const mapFixedNoreplace = 0x100000
	addr, _, errno := syscall.Syscall6(syscall.SYS_MMAP, uintptr(h), size,
		syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|mapFixedNoreplace, ^uintptr(0), 0)
	if errno != 0 {
		t.Fatalf("mmap(%#x, MAP_FIXED_NOREPLACE): %v; want the hole to be free", h, errno)
	}
	t.Cleanup(func() { syscall.Syscall(syscall.SYS_MUNMAP, addr, size, 0) })
	if uint64(addr) != h {
		t.Fatalf("mmap placed at %#x; want %#x", addr, h)
	}
	checkHole(t, nil, s.Hole, []uint64{near}, h, size)
}

func funcAddr(fn any) uint64 { return uint64(reflect.ValueOf(fn).Pointer()) }

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
