package patchsite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestEncodeJump(t *testing.T) {
	const from = 0x7f0000001000
	tests := []struct {
		name     string
		from, to uint64
		want     []byte // nil: only check the length and the decoded target
		wantLen  int
	}{
		{"next instruction", from, from + 5, []byte{0xe9, 0, 0, 0, 0}, 5},
		{"forward", 0x1000, 0x2000, []byte{0xe9, 0xfb, 0x0f, 0, 0}, 5},
		{"to itself", 0x1000, 0x1000, []byte{0xe9, 0xfb, 0xff, 0xff, 0xff}, 5},
		{"max forward", from, from + 5 + math.MaxInt32, []byte{0xe9, 0xff, 0xff, 0xff, 0x7f}, 5},
		{"one past max forward", from, from + 5 + math.MaxInt32 + 1, nil, 14},
		{"max backward", from, from + 5 - 1<<31, []byte{0xe9, 0, 0, 0, 0x80}, 5},
		{"one past max backward", from, from + 5 - 1<<31 - 1, nil, 14},
		{"library to executable", 0x7f1234567000, 0x555555554000, nil, 14},
		{"absolute bytes", 0x7f1234567000, 0x0000555555554abc,
			[]byte{0xff, 0x25, 0, 0, 0, 0, 0xbc, 0x4a, 0x55, 0x55, 0x55, 0x55, 0, 0}, 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := EncodeJump(tt.from, tt.to)
			if len(b) != tt.wantLen || JumpLen(tt.from, tt.to) != tt.wantLen || Reachable(tt.from, tt.to) != (tt.wantLen == JmpRel32Len) {
				t.Fatalf("EncodeJump(%#x, %#x) = % x (JumpLen %d, Reachable %v); want %d bytes",
					tt.from, tt.to, b, JumpLen(tt.from, tt.to), Reachable(tt.from, tt.to), tt.wantLen)
			}
			if tt.want != nil && !bytes.Equal(b, tt.want) {
				t.Errorf("EncodeJump(%#x, %#x) = % x; want % x", tt.from, tt.to, b, tt.want)
			}
			if got := decodeJumpTarget(t, tt.from, b); got != tt.to {
				t.Errorf("decoded target %#x; want %#x", got, tt.to)
			}
		})
	}
}

// decodeJumpTarget decodes a jump as the CPU would and returns its target.
func decodeJumpTarget(t *testing.T, from uint64, b []byte) uint64 {
	t.Helper()
	in, err := x86asm.Decode(b, 64)
	if err != nil || in.Op != x86asm.JMP {
		t.Fatalf("decode % x: %v %v; want JMP", b, in, err)
	}
	switch a := in.Args[0].(type) {
	case x86asm.Rel:
		return from + uint64(in.Len) + uint64(int64(a))
	case x86asm.Mem:
		if a.Base != x86asm.RIP || a.Disp != 0 || in.Len != 6 || len(b) != JmpAbsLen {
			t.Fatalf("decode % x: %v; want jmp [rip+0] followed by 8 bytes", b, in)
		}
		return binary.LittleEndian.Uint64(b[6:])
	}
	t.Fatalf("decode % x: %v: unexpected operand", b, in)
	return 0
}

func ExampleEncodeJump() {
	fmt.Printf("% x\n", EncodeJump(0x401000, 0x402000))
	fmt.Printf("% x\n", EncodeJump(0x7f0000000000, 0x401000))
	// Output:
	// e9 fb 0f 00 00
	// ff 25 00 00 00 00 00 10 40 00 00 00 00 00
}
