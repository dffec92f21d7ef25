package patchsite

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"
)

// Two sites: classify patched at its first byte, parse after an endbr64.
var testSites = []Site{
	{Func: "classify", FuncAddr: 0x1000, FuncSize: 0x40, Addr: 0x1000, Len: 5},
	{Func: "parse", FuncAddr: 0x2000, FuncSize: 0x30, Addr: 0x2004, Len: 7},
}

func TestCheckThreads(t *testing.T) {
	busyIP := func(addr uint64, fn string) *BusyError { return &BusyError{Tid: 815, Addr: addr, Func: fn} }
	busyStack := func(addr uint64, fn string) *BusyError {
		return &BusyError{Tid: 815, Addr: addr, Func: fn, InStack: true}
	}
	tests := []struct {
		mode  Mode
		ip    uint64
		stack []uint64
		want  *BusyError
	}{
		// entry: only the overwritten bytes, IP exactly at Addr is fine
		{ModeEntry, 0x1000, nil, nil},
		{ModeEntry, 0x1001, nil, busyIP(0x1001, "classify")},
		{ModeEntry, 0x1004, nil, busyIP(0x1004, "classify")},
		{ModeEntry, 0x1005, nil, nil},
		{ModeEntry, 0x1020, nil, nil},
		{ModeEntry, 0x2000, nil, nil},
		{ModeEntry, 0x2002, nil, nil}, // inside the kept endbr64
		{ModeEntry, 0x2004, nil, nil},
		{ModeEntry, 0x2005, nil, busyIP(0x2005, "parse")},
		{ModeEntry, 0x200a, nil, busyIP(0x200a, "parse")},
		{ModeEntry, 0x200b, nil, nil},
		{ModeEntry, 0x9000, []uint64{0x1000, 0x1005, 0x1020, 0x2004, 0x200b}, nil},
		{ModeEntry, 0x9000, []uint64{7, 0x1003}, busyStack(0x1003, "classify")},
		{ModeEntry, 0x9000, []uint64{0x2005}, busyStack(0x2005, "parse")},
		// function: anywhere in the function but its entry
		{ModeFunction, 0x0fff, nil, nil},
		{ModeFunction, 0x1000, nil, nil},
		{ModeFunction, 0x1001, nil, busyIP(0x1001, "classify")},
		{ModeFunction, 0x1020, nil, busyIP(0x1020, "classify")},
		{ModeFunction, 0x103f, nil, busyIP(0x103f, "classify")},
		{ModeFunction, 0x1040, nil, nil},
		{ModeFunction, 0x2000, nil, nil},
		{ModeFunction, 0x2001, nil, busyIP(0x2001, "parse")},
		{ModeFunction, 0x2004, nil, nil}, // past the endbr64, about to run the jump
		{ModeFunction, 0x2005, nil, busyIP(0x2005, "parse")},
		{ModeFunction, 0x202f, nil, busyIP(0x202f, "parse")},
		{ModeFunction, 0x2030, nil, nil},
		{ModeFunction, 0x9000, []uint64{0, 0x1000, 0x1040, 0x2000, 0x2030, ^uint64(0)}, nil},
		{ModeFunction, 0x9000, []uint64{0x1001}, busyStack(0x1001, "classify")},
		{ModeFunction, 0x9000, []uint64{0x5, 0x1030}, busyStack(0x1030, "classify")},
		{ModeFunction, 0x9000, []uint64{0x2004}, busyStack(0x2004, "parse")},
		{ModeFunction, 0x9000, []uint64{0x202f}, busyStack(0x202f, "parse")},
		// the IP is reported before the stack
		{ModeFunction, 0x2010, []uint64{0x1010}, busyIP(0x2010, "parse")},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/ip=%#x/stack=%#x", tt.mode, tt.ip, tt.stack), func(t *testing.T) {
			err := CheckThreads(testSites, []Thread{{Tid: 815, IP: tt.ip, Stack: tt.stack}}, tt.mode)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckThreads = %v; want nil", err)
				}
				return
			}
			var be *BusyError
			if !errors.As(err, &be) {
				t.Fatalf("CheckThreads = %v; want *BusyError", err)
			}
			if *be != *tt.want {
				t.Errorf("CheckThreads = %+v; want %+v", *be, *tt.want)
			}
		})
	}
}

func TestBusyErrorMessage(t *testing.T) {
	tests := []struct {
		err  *BusyError
		want string
	}{
		{&BusyError{Tid: 815, Addr: 0x5555555551a9, Func: "classify"}, "thread 815 is inside classify at 0x5555555551a9"},
		{&BusyError{Tid: 815, Addr: 0x5555555551b0, Func: "classify", InStack: true},
			"thread 815 has a return address into classify (0x5555555551b0) on its stack"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q; want %q", got, tt.want)
		}
	}
}

func TestCheckThreadsOrderAndAliases(t *testing.T) {
	// An alias (weak symbol) of classify replaced in the same patch.
	sites := append([]Site{{Func: "__classify", FuncAddr: 0x1000, FuncSize: 0x40, Addr: 0x1000, Len: 5}}, testSites...)
	threads := []Thread{
		{Tid: 1, IP: 0x1000, Stack: []uint64{0x7ffd0000, 0x1040}},
		{Tid: 2, IP: 0x3000, Stack: []uint64{0x7ffd0008, 0x2010}},
		{Tid: 3, IP: 0x1010},
	}
	err := CheckThreads(sites, threads, ModeFunction)
	var be *BusyError
	if !errors.As(err, &be) || be.Tid != 2 || be.Func != "parse" || !be.InStack {
		t.Fatalf("CheckThreads = %v; want thread 2 with parse on its stack", err)
	}
	err = CheckThreads(sites, threads[2:], ModeFunction)
	if !errors.As(err, &be) || be.Tid != 3 || (be.Func != "classify" && be.Func != "__classify") {
		t.Fatalf("CheckThreads = %v; want thread 3 inside classify", err)
	}
	if err := CheckThreads(nil, threads, ModeFunction); err != nil {
		t.Errorf("CheckThreads(no sites) = %v; want nil", err)
	}
}

func TestNewCheckerInvalid(t *testing.T) {
	tests := []struct {
		name string
		site Site
		mode Mode
	}{
		{"zero length", Site{Func: "f", FuncAddr: 0x1000, FuncSize: 0x10, Addr: 0x1000}, ModeEntry},
		{"region past the end", Site{Func: "f", FuncAddr: 0x1000, FuncSize: 4, Addr: 0x1000, Len: 5}, ModeEntry},
		{"region before the function", Site{Func: "f", FuncAddr: 0x1000, FuncSize: 0x10, Addr: 0xfff, Len: 5}, ModeFunction},
		{"function wraps", Site{Func: "f", FuncAddr: ^uint64(0) - 1, FuncSize: 0x10, Addr: ^uint64(0) - 1, Len: 5}, ModeFunction},
		{"bad mode", testSites[0], Mode(7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewChecker([]Site{tt.site}, tt.mode); !errors.Is(err, ErrInvalid) {
				t.Errorf("NewChecker = %v; want ErrInvalid", err)
			}
		})
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	c, err := NewChecker(testSites, ModeFunction)
	if err != nil {
		t.Fatal(err)
	}
	threads := benchThreads(8, 512)
	if n := testing.AllocsPerRun(20, func() {
		if err := c.Check(threads); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Check allocated %v times per run; want 0", n)
	}
}

func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Mode
		ok   bool
	}{{"function", ModeFunction, true}, {"entry", ModeEntry, true}, {"", 0, false}, {"Entry", 0, false}, {"kpatch", 0, false}} {
		got, err := ParseMode(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			var m Mode
			b, _ := got.MarshalText()
			if err := m.UnmarshalText(b); err != nil || m != got || string(b) != tt.in {
				t.Errorf("text round trip of %v = %q, %v, %v", got, b, m, err)
			}
		}
	}
}

// benchThreads makes n threads whose stacks hold plausible non-code words
// (stack and heap pointers, small integers) that never hit testSites.
func benchThreads(n, words int) []Thread {
	r := rand.New(rand.NewSource(1))
	threads := make([]Thread, n)
	for i := range threads {
		st := make([]uint64, words)
		for j := range st {
			switch r.Intn(3) {
			case 0:
				st[j] = 0x7ffd00000000 + uint64(r.Intn(1<<20))*8
			case 1:
				st[j] = 0x555555600000 + uint64(r.Intn(1<<20))
			default:
				st[j] = uint64(r.Intn(4096))
			}
		}
		threads[i] = Thread{Tid: 1000 + i, IP: 0x7f0000001000, Stack: st}
	}
	return threads
}

// BenchmarkCheck prints the cost of one check at the scale of the activation
// benchmark (64 threads, 8 KiB of stack each, 10 sites).
func BenchmarkCheck(b *testing.B) {
	sites := make([]Site, 0, 10)
	for i := range 10 {
		a := uint64(0x555555554000 + i*0x1000)
		sites = append(sites, Site{Func: fmt.Sprintf("f%d", i), FuncAddr: a, FuncSize: 0x200, Addr: a, Len: 5})
	}
	for _, threads := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			c, err := NewChecker(sites, ModeFunction)
			if err != nil {
				b.Fatal(err)
			}
			th := benchThreads(threads, 1024)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Check(th); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
