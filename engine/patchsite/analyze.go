package patchsite

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// ErrInvalid reports arguments that describe no function (empty name, bad
// jump length, an address range that wraps); it is a caller bug, not a
// property of the function.
var ErrInvalid = errors.New("invalid patch site arguments")

// MaxJumpLen bounds the jumpLen argument of Analyze.
const MaxJumpLen = 64

// endbr64 and endbr32: CET indirect-branch landing pads, which x86asm does
// not know.
var (
	endbr64 = []byte{0xf3, 0x0f, 0x1e, 0xfa}
	endbr32 = []byte{0xf3, 0x0f, 0x1e, 0xfb}
)

// Site is where and how a function's entry is overwritten.
type Site struct {
	Func     string
	FuncAddr uint64
	FuncSize uint64
	// Addr is where the jump is written: FuncAddr, or FuncAddr+4 after an
	// endbr64.
	Addr uint64
	// Len is how many bytes are overwritten: whole instructions covering the
	// jump. The bytes from Addr+jumpLen to Addr+Len are left as they are;
	// they are never executed while the jump is in place.
	Len int
	// Original holds the Len bytes at Addr before patching.
	Original []byte
	// Patchable is true when the region lies in a NOP pad at entry
	// (-fpatchable-function-entry).
	Patchable bool
}

// End returns the address just past the overwritten bytes.
func (s Site) End() uint64 { return s.Addr + uint64(s.Len) }

// UnsafeError says why a function's entry cannot be overwritten.
type UnsafeError struct {
	Func   string
	Addr   uint64
	Reason string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("cannot patch %s at %#x: %s", e.Func, e.Addr, e.Reason)
}

// insn is one decoded instruction, at offset off from the function start.
type insn struct {
	off, len int
	op       x86asm.Op
	target   int64 // offset of a relative branch target, if rel
	rel      bool
}

// decode decodes one instruction of code, never panicking. endbr64/endbr32
// are recognised here because x86asm does not know them (it returns a
// 1-byte "REP Op(0)"); any Op(0) result is treated as undecodable.
func decode(code []byte) (in x86asm.Inst, ok bool) {
	if bytes.HasPrefix(code, endbr64) || bytes.HasPrefix(code, endbr32) {
		return x86asm.Inst{Op: x86asm.NOP, Len: 4}, true
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	in, err := x86asm.Decode(code, 64)
	if err != nil || in.Op == 0 || in.Len <= 0 || in.Len > len(code) {
		return x86asm.Inst{}, false
	}
	return in, true
}

// Analyze decides where a jump of jumpLen bytes (JmpRel32Len or JmpAbsLen)
// goes into function name at funcAddr, whose complete code (symbol-table
// size) is code. It returns an *UnsafeError when the entry cannot be
// overwritten safely, and an error wrapping ErrInvalid for bad arguments.
//
// Pass the function's original bytes (from the ELF file, or the Original of
// the Site that patched it first when stacking).
func Analyze(name string, funcAddr uint64, code []byte, jumpLen int) (Site, error) {
	if name == "" {
		return Site{}, fmt.Errorf("%w: empty function name", ErrInvalid)
	}
	if jumpLen <= 0 || jumpLen > MaxJumpLen {
		return Site{}, fmt.Errorf("%w: jump length %d, want 1..%d", ErrInvalid, jumpLen, MaxJumpLen)
	}
	size := uint64(len(code))
	if funcAddr+size < funcAddr {
		return Site{}, fmt.Errorf("%w: %s at %#x with %d bytes wraps the address space", ErrInvalid, name, funcAddr, size)
	}
	unsafe := func(at uint64, format string, args ...any) (Site, error) {
		return Site{}, &UnsafeError{Func: name, Addr: at, Reason: fmt.Sprintf(format, args...)}
	}
	at := func(off int) string { return fmt.Sprintf("%s+%#x", name, off) }

	start := 0
	if bytes.HasPrefix(code, endbr64) {
		start = len(endbr64)
	}
	addr := funcAddr + uint64(start)
	if len(code)-start < jumpLen {
		if start > 0 {
			return unsafe(addr, "function is %d bytes; a %d-byte jump after its endbr64 does not fit", len(code), jumpLen)
		}
		return unsafe(addr, "function is %d bytes; a %d-byte jump does not fit", len(code), jumpLen)
	}

	// Linear sweep over the whole function.
	insns := make([]insn, 0, len(code)/3+1)
	badOff := -1
	for off := 0; off < len(code); {
		in, ok := decode(code[off:])
		if !ok {
			badOff = off
			break
		}
		i := insn{off: off, len: in.Len, op: in.Op}
		for _, a := range in.Args {
			if a == nil {
				break
			}
			if r, isRel := a.(x86asm.Rel); isRel {
				i.rel = true
				i.target = int64(off) + int64(in.Len) + int64(r)
			}
		}
		insns = append(insns, i)
		off += in.Len
	}
	badBytes := func(off int) string {
		return fmt.Sprintf("% x", code[off:min(off+8, len(code))])
	}

	// Skip the endbr64, then look for a NOP pad.
	first := 0
	for first < len(insns) && insns[first].off < start {
		first++
	}
	pad := 0
	for i := first; i < len(insns) && insns[i].op == x86asm.NOP; i++ {
		pad += insns[i].len
	}
	patchable := pad >= jumpLen

	// The region: the shortest run of whole instructions >= jumpLen.
	length, last := 0, first
	for ; length < jumpLen; last++ {
		if last >= len(insns) {
			if badOff >= 0 {
				return unsafe(addr, "cannot decode the instruction at %s (% s)", at(badOff), badBytes(badOff))
			}
			return unsafe(addr, "instructions run past the end of the function (%d bytes)", len(code))
		}
		in := insns[last]
		switch in.op {
		case x86asm.CALL, x86asm.LCALL:
			return unsafe(addr, "the bytes to overwrite hold a call at %s (a return address could point inside them)", at(in.off))
		case x86asm.SYSCALL, x86asm.SYSENTER, x86asm.INT, x86asm.INTO, x86asm.ICEBP:
			return unsafe(addr, "the bytes to overwrite hold %s at %s (a thread could wait inside them)", in.op, at(in.off))
		}
		length += in.len
	}
	if badOff >= 0 {
		return unsafe(addr, "cannot decode the instruction at %s (% s), so branches after it cannot be checked", at(badOff), badBytes(badOff))
	}

	// No relative branch anywhere in the function may land strictly inside
	// the region: it would land in the middle of the jump.
	lo, hi := int64(start), int64(start+length)
	for _, in := range insns {
		if in.rel && in.target > lo && in.target < hi {
			return unsafe(addr, "%s at %s branches to %s, inside the bytes to overwrite", in.op, at(in.off), at(int(in.target)))
		}
	}

	return Site{
		Func:      name,
		FuncAddr:  funcAddr,
		FuncSize:  size,
		Addr:      addr,
		Len:       length,
		Original:  bytes.Clone(code[start : start+length]),
		Patchable: patchable,
	}, nil
}
