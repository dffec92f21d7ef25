package patchsite

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// checkSite verifies what every Site must satisfy.
func checkSite(t *testing.T, s Site, addr uint64, code []byte, jumpLen int) {
	t.Helper()
	if s.FuncAddr != addr || s.FuncSize != uint64(len(code)) {
		t.Errorf("FuncAddr, FuncSize = %#x, %d; want %#x, %d", s.FuncAddr, s.FuncSize, addr, len(code))
	}
	off := int(s.Addr - s.FuncAddr)
	if off != 0 && !(off == 4 && bytes.HasPrefix(code, endbr64)) {
		t.Errorf("Addr = FuncAddr+%d; want +0, or +4 after endbr64", off)
	}
	if s.Len < jumpLen || off+s.Len > len(code) {
		t.Fatalf("Len = %d at +%d; want >= %d and inside %d bytes", s.Len, off, jumpLen, len(code))
	}
	if !bytes.Equal(s.Original, code[off:off+s.Len]) {
		t.Errorf("Original = % x; want % x", s.Original, code[off:off+s.Len])
	}
	// Whole instructions, and the last one is needed.
	n, last := 0, 0
	for n < s.Len {
		in, ok := decode(s.Original[n:])
		if !ok {
			t.Fatalf("Original % x does not decode at %d", s.Original, n)
		}
		last = in.Len
		n += in.Len
	}
	if n != s.Len || n-last >= jumpLen {
		t.Errorf("Original % x: instructions cover %d (last %d); want exactly Len %d, minimal for %d", s.Original, n, last, s.Len, jumpLen)
	}
}

func TestAnalyzeHandWritten(t *testing.T) {
	tests := []struct {
		fn        string
		jumpLen   int
		start     int // expected Addr - FuncAddr
		len       int
		patchable bool
		err       string // expected UnsafeError reason; "" = success
	}{
		{"tiny_ret", 5, 0, 0, false, "function is 1 bytes; a 5-byte jump does not fit"},
		{"four_bytes", 5, 0, 0, false, "function is 4 bytes; a 5-byte jump does not fit"},
		{"loop_back", 5, 0, 0, false, "JNE at loop_back+0x6 branches to loop_back+0x2, inside the bytes to overwrite"},
		{"loop_to_entry", 5, 0, 5, false, ""},
		{"loop_to_entry", 14, 0, 0, false, "function is 10 bytes; a 14-byte jump does not fit"},
		{"branch_to_end", 5, 0, 5, false, ""},
		{"call_first", 5, 0, 0, false, "the bytes to overwrite hold a call at call_first+0x0 (a return address could point inside them)"},
		{"syscall_first", 5, 0, 0, false, "the bytes to overwrite hold SYSCALL at syscall_first+0x0 (a thread could wait inside them)"},
		{"int3_first", 5, 0, 0, false, "the bytes to overwrite hold INT at int3_first+0x0 (a thread could wait inside them)"},
		{"int80_second", 5, 0, 0, false, "the bytes to overwrite hold INT at int80_second+0x2 (a thread could wait inside them)"},
		{"mov_then_syscall", 5, 0, 5, false, ""},
		{"endbr_loop", 5, 4, 5, false, ""},
		{"endbr_loop", 14, 4, 0, false, "function is 14 bytes; a 14-byte jump after its endbr64 does not fit"},
		{"endbr_loop_inside", 5, 4, 0, false, "JNE at endbr_loop_inside+0xa branches to endbr_loop_inside+0x6, inside the bytes to overwrite"},
		{"nop5_pad", 5, 0, 5, true, ""},
		{"short_pad", 5, 0, 7, false, ""},
		{"bad_entry", 5, 0, 0, false, "cannot decode the instruction at bad_entry+0x0 (06 b8 01 00 00 00 c3)"},
		{"bad_tail", 5, 0, 0, false, "cannot decode the instruction at bad_tail+0x7 (06 c3), so branches after it cannot be checked"},
		{"jrcxz_inside", 5, 0, 0, false, "JRCXZ at jrcxz_inside+0x8 branches to jrcxz_inside+0x2, inside the bytes to overwrite"},
		{"three_movs", 5, 0, 5, false, ""},
		{"three_movs", 14, 0, 15, false, ""},
	}
	funcs := compile(t, "sites.S", "")
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.fn, tt.jumpLen), func(t *testing.T) {
			f, ok := funcs[tt.fn]
			if !ok {
				t.Fatalf("no function %s in sites.S", tt.fn)
			}
			s, err := Analyze(tt.fn, f.addr, f.code, tt.jumpLen)
			if tt.err != "" {
				var ue *UnsafeError
				if !errors.As(err, &ue) {
					t.Fatalf("Analyze = %+v, %v; want *UnsafeError %q", s, err, tt.err)
				}
				if ue.Reason != tt.err || ue.Func != tt.fn || ue.Addr != f.addr+uint64(tt.start) {
					t.Errorf("UnsafeError{%s, %#x, %q}; want {%s, %#x, %q}", ue.Func, ue.Addr, ue.Reason, tt.fn, f.addr+uint64(tt.start), tt.err)
				}
				want := fmt.Sprintf("cannot patch %s at %#x: %s", tt.fn, f.addr+uint64(tt.start), tt.err)
				if err.Error() != want {
					t.Errorf("Error() = %q; want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Analyze: %v", err)
			}
			checkSite(t, s, f.addr, f.code, tt.jumpLen)
			if got := int(s.Addr - s.FuncAddr); got != tt.start || s.Len != tt.len || s.Patchable != tt.patchable {
				t.Errorf("start, Len, Patchable = %d, %d, %v; want %d, %d, %v", got, s.Len, s.Patchable, tt.start, tt.len, tt.patchable)
			}
		})
	}
}

func TestAnalyzeCompiled(t *testing.T) {
	nops := func(n int) []byte { return bytes.Repeat([]byte{0x90}, n) }
	tests := []struct {
		flags     string
		fn        string
		jumpLen   int
		start     int
		patchable bool
		original  []byte // exact Original when not nil
		err       string // substring of an UnsafeError; "" = success
	}{
		{"-O0", "add", 5, 0, false, nil, ""},
		{"-O0", "add", 14, 0, false, nil, ""},
		{"-O0", "sum", 5, 0, false, nil, ""},
		{"-O2", "classify", 5, 0, false, nil, ""},
		{"-O2", "sum", 5, 0, false, nil, ""},
		{"-O2", "inc", 5, 0, false, nil, "function is 4 bytes; a 5-byte jump does not fit"},
		{"-O2 -fcf-protection", "classify", 5, 4, false, nil, ""},
		{"-O2 -fcf-protection", "sum", 14, 4, false, nil, ""},
		{"-O2 -fcf-protection", "inc", 5, 4, false, nil, "after its endbr64 does not fit"},
		{"-O2 -fpatchable-function-entry=5", "classify", 5, 0, true, nops(5), ""},
		{"-O2 -fpatchable-function-entry=5", "inc", 5, 0, true, nops(5), ""},
		{"-O2 -fpatchable-function-entry=16", "classify", 5, 0, true, nops(5), ""},
		{"-O2 -fpatchable-function-entry=16", "classify", 14, 0, true, nops(14), ""},
		{"-O2 -fpatchable-function-entry=16", "inc", 14, 0, true, nops(14), ""},
		{"-O2 -fcf-protection -fpatchable-function-entry=16,0", "inc", 14, 4, true, nops(14), ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%d", tt.flags, tt.fn, tt.jumpLen), func(t *testing.T) {
			f, ok := compile(t, "funcs.c", tt.flags)[tt.fn]
			if !ok {
				t.Fatalf("no function %s", tt.fn)
			}
			s, err := Analyze(tt.fn, f.addr, f.code, tt.jumpLen)
			if tt.err != "" {
				var ue *UnsafeError
				if !errors.As(err, &ue) || !strings.Contains(ue.Reason, tt.err) {
					t.Fatalf("Analyze = %+v, %v; want *UnsafeError containing %q", s, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Analyze(% x): %v", f.code, err)
			}
			checkSite(t, s, f.addr, f.code, tt.jumpLen)
			if got := int(s.Addr - s.FuncAddr); got != tt.start || s.Patchable != tt.patchable {
				t.Errorf("start, Patchable = %d, %v; want %d, %v", got, s.Patchable, tt.start, tt.patchable)
			}
			if tt.original != nil && !bytes.Equal(s.Original, tt.original) {
				t.Errorf("Original = % x; want % x", s.Original, tt.original)
			}
		})
	}
}

func TestAnalyzeInvalid(t *testing.T) {
	tests := []struct {
		name    string
		fn      string
		addr    uint64
		code    []byte
		jumpLen int
	}{
		{"no name", "", 0x1000, []byte{0xc3}, 5},
		{"zero jump", "f", 0x1000, []byte{0xc3}, 0},
		{"huge jump", "f", 0x1000, []byte{0xc3}, MaxJumpLen + 1},
		{"wraps", "f", ^uint64(0), []byte{0x90, 0x90}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Analyze(tt.fn, tt.addr, tt.code, tt.jumpLen); !errors.Is(err, ErrInvalid) {
				t.Errorf("Analyze = %v; want ErrInvalid", err)
			}
		})
	}
	var ue *UnsafeError
	if _, err := Analyze("empty", 0x1000, nil, 5); !errors.As(err, &ue) {
		t.Errorf("Analyze(no bytes) = %v; want *UnsafeError", err)
	}
}

func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{0xc3}, uint64(0x1000), uint8(5))
	f.Add([]byte{0xf3, 0x0f, 0x1e, 0xfa, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3}, uint64(0x401000), uint8(5))
	f.Add([]byte{0x31, 0xc0, 0x01, 0xf8, 0xff, 0xcf, 0x75, 0xfa, 0xc3}, uint64(0x7fff0000), uint8(14))
	f.Add([]byte{0x0f, 0x1f, 0x44, 0, 0, 0xe8, 0, 0, 0, 0, 0xc3}, ^uint64(0)-3, uint8(5))
	f.Fuzz(func(t *testing.T, code []byte, addr uint64, jl uint8) {
		jumpLen := int(jl%(MaxJumpLen+1)) + 1
		if jumpLen > MaxJumpLen {
			jumpLen = MaxJumpLen
		}
		s, err := Analyze("f", addr, code, jumpLen)
		if err != nil {
			var ue *UnsafeError
			if !errors.As(err, &ue) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %T %v; want *UnsafeError or ErrInvalid", err, err)
			}
			return
		}
		checkSite(t, s, addr, code, jumpLen)
		// No relative branch lands strictly inside the region.
		for off := 0; off < len(code); {
			in, ok := decode(code[off:])
			if !ok {
				t.Fatalf("accepted a function that does not decode at %d", off)
			}
			for _, a := range in.Args {
				if r, isRel := a.(x86asm.Rel); isRel {
					tgt := addr + uint64(off+in.Len) + uint64(int64(r))
					if tgt > s.Addr && tgt < s.End() {
						t.Fatalf("accepted branch at +%d into the region (%#x)", off, tgt)
					}
				}
			}
			off += in.Len
		}
		if _, err := NewChecker([]Site{s}, ModeFunction); err != nil {
			t.Fatalf("NewChecker(Analyze result): %v", err)
		}
	})
}
