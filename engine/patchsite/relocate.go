package patchsite

import (
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/arch/x86/x86asm"
)

// Trampoline builds, for code placed at to, the "original" of a patched
// function: the bytes before the site (an endbr64) as they are, the site's
// instructions relocated, then a jump back to the first instruction after
// the site. Calling it runs the function as it was before any patch.
// code is the function's original code from its entry (at least up to the
// site's end). An instruction that cannot run elsewhere is refused with an
// *UnsafeError saying which and why.
func Trampoline(s Site, code []byte, to uint64) ([]byte, error) {
	pre := int(s.Addr - s.FuncAddr)
	if pre < 0 || pre+s.Len > len(code) {
		return nil, fmt.Errorf("%w: site %s %#x+%d outside the %d bytes given", ErrInvalid, s.Func, s.Addr, s.Len, len(code))
	}
	// A branch from the rest of the function to the site's first byte
	// lands on the jump: through the trampoline, the original would run
	// the patch again.
	for off := 0; off < len(code); {
		in, ok := decode(code[off:])
		if !ok {
			break
		}
		if rel, _ := relArg(in); rel != nil && (off < pre || off >= pre+s.Len) {
			t := s.FuncAddr + uint64(off+in.Len) + uint64(int64(*rel))
			if t >= s.Addr && t < s.End() {
				return nil, &UnsafeError{Func: s.Func, Addr: s.Addr, Reason: fmt.Sprintf(
					"cannot relocate its first instructions: %v at %s+%#x branches to %s+%#x, into the copied bytes (the original would run the patch)",
					in.Op, s.Func, off, s.Func, t-s.FuncAddr)}
			}
		}
		off += in.Len
	}
	out := append([]byte(nil), code[:pre]...)
	body, err := Relocate(s.Func, s.Addr, code[pre:pre+s.Len], to+uint64(pre))
	if err != nil {
		return nil, err
	}
	out = append(out, body...)
	return append(out, EncodeJump(to+uint64(len(out)), s.End())...), nil
}

// Relocate re-encodes the whole instructions in code, which run at from,
// to run at to: RIP-relative memory operands get their displacement
// adjusted, relative jumps and calls are re-encoded with 32-bit
// displacements. It refuses (an *UnsafeError) a displacement that no longer
// fits, a branch that lands inside code itself, and a relative branch it
// does not handle (loop, jrcxz, xbegin).
func Relocate(name string, from uint64, code []byte, to uint64) ([]byte, error) {
	var out []byte
	for off := 0; off < len(code); {
		at := from + uint64(off)
		unsafe := func(format string, args ...any) error {
			return &UnsafeError{Func: name, Addr: at, Reason: "cannot relocate its first instructions: " + fmt.Sprintf(format, args...)}
		}
		in, ok := decode(code[off:])
		if !ok {
			return nil, unsafe("undecodable instruction at %s+%#x", name, off)
		}
		raw := code[off : off+in.Len]
		next := at + uint64(in.Len)
		here := to + uint64(len(out))
		switch rel, mem := relArg(in); {
		case rel != nil:
			target := next + uint64(int64(*rel))
			if target >= from && target < from+uint64(len(code)) {
				return nil, unsafe("%v at %s+%#x branches into the copied bytes", in.Op, name, off)
			}
			enc, err := encodeBranch(raw, in, here, target)
			if err != nil {
				return nil, unsafe("%v at %s+%#x: %v", in.Op, name, off, err)
			}
			out = append(out, enc...)
		case mem != nil:
			k, err := dispOffset(raw, in)
			if err != nil {
				return nil, unsafe("%v at %s+%#x: %v", in.Op, name, off, err)
			}
			target := next + uint64(mem.Disp)
			d := int64(target - (here + uint64(in.Len)))
			if d < math.MinInt32 || d > math.MaxInt32 {
				return nil, unsafe("%v at %s+%#x reads %#x, beyond ±2 GiB of the trampoline at %#x", in.Op, name, off, target, here)
			}
			b := append([]byte(nil), raw...)
			binary.LittleEndian.PutUint32(b[k:], uint32(int32(d)))
			out = append(out, b...)
		default:
			out = append(out, raw...)
		}
		off += in.Len
	}
	return out, nil
}

// relArg returns the instruction's relative branch displacement or its
// RIP-relative memory operand, if any.
func relArg(in x86asm.Inst) (*x86asm.Rel, *x86asm.Mem) {
	for _, a := range in.Args {
		switch v := a.(type) {
		case x86asm.Rel:
			return &v, nil
		case x86asm.Mem:
			if v.Base == x86asm.RIP {
				return nil, &v
			}
		}
	}
	return nil, nil
}

// encodeBranch re-encodes a relative jmp, jcc or call at here to target,
// with a 32-bit displacement. Prefixed forms and other relative branches
// are refused.
func encodeBranch(raw []byte, in x86asm.Inst, here, target uint64) ([]byte, error) {
	var op []byte
	switch {
	case in.Op == x86asm.JMP && (raw[0] == 0xeb || raw[0] == 0xe9):
		op = []byte{0xe9}
	case in.Op == x86asm.CALL && raw[0] == 0xe8:
		op = []byte{0xe8}
	case raw[0]&0xf0 == 0x70:
		op = []byte{0x0f, 0x80 | raw[0]&0x0f}
	case len(raw) > 1 && raw[0] == 0x0f && raw[1]&0xf0 == 0x80:
		op = []byte{0x0f, raw[1]}
	default:
		return nil, fmt.Errorf("this relative branch form is not handled (%x)", raw)
	}
	end := here + uint64(len(op)) + 4
	d := int64(target - end)
	if d < math.MinInt32 || d > math.MaxInt32 {
		return nil, fmt.Errorf("its target %#x is beyond ±2 GiB of the trampoline at %#x", target, here)
	}
	return binary.LittleEndian.AppendUint32(op, uint32(int32(d))), nil
}

// dispOffset finds where the 32-bit displacement of a RIP-relative operand
// sits in raw: the offset whose change shows up, and only there, when the
// instruction is decoded again.
func dispOffset(raw []byte, in x86asm.Inst) (int, error) {
	_, mem := relArg(in)
	want := uint32(int32(mem.Disp))
	for k := len(raw) - 4; k >= 1; k-- {
		if binary.LittleEndian.Uint32(raw[k:]) != want {
			continue
		}
		b := append([]byte(nil), raw...)
		binary.LittleEndian.PutUint32(b[k:], want+0x01010101)
		again, ok := decode(b)
		if !ok || again.Len != in.Len || again.Op != in.Op {
			continue
		}
		if _, m := relArg(again); m != nil && uint32(int32(m.Disp)) == want+0x01010101 && sameExceptDisp(in, again) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("cannot locate the displacement of % x", raw)
}

func sameExceptDisp(a, b x86asm.Inst) bool {
	for i := range a.Args {
		if a.Args[i] == nil {
			break
		}
		if _, ok := a.Args[i].(x86asm.Mem); ok {
			continue
		}
		if a.Args[i] != b.Args[i] {
			return false
		}
	}
	return true
}
