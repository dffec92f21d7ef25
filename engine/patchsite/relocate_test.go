package patchsite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestRelocate(t *testing.T) {
	const from, to = 0x400000, 0x500000
	cases := []struct {
		name string
		code []byte
		want []byte
	}{
		{"plain", []byte{0x55, 0x48, 0x89, 0xe5}, []byte{0x55, 0x48, 0x89, 0xe5}},
		// mov eax, [rip+0x10]: reads from+6+0x10; at to the displacement
		// is from+0x16-(to+6).
		{"rip mov", []byte{0x8b, 0x05, 0x10, 0, 0, 0}, append([]byte{0x8b, 0x05}, le32(from+0x16-(to+6))...)},
		// cmp dword [rip+0x20], 5: an immediate after the displacement.
		{"rip cmp imm", []byte{0x83, 0x3d, 0x20, 0, 0, 0, 0x05}, append(append([]byte{0x83, 0x3d}, le32(from+7+0x20-(to+7))...), 0x05)},
		// jne +0x30 (short) becomes jne rel32.
		{"jcc rel8", []byte{0x75, 0x30}, append([]byte{0x0f, 0x85}, le32(from+2+0x30-(to+6))...)},
		// call rel32.
		{"call", []byte{0xe8, 0x00, 0x01, 0, 0}, append([]byte{0xe8}, le32(from+5+0x100-(to+5))...)},
	}
	for _, c := range cases {
		got, err := Relocate("f", from, c.code, to)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s: got % x; want % x", c.name, got, c.want)
		}
		// What it decodes to reads or branches to the same place.
		if in, err := x86asm.Decode(got, 64); c.name != "plain" && (err != nil || in.Len != len(got)) {
			t.Errorf("%s: result % x does not decode as one instruction: %v", c.name, got, err)
		}
	}
}

func le32(v int64) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(int32(v))) }

func TestRelocateRefuses(t *testing.T) {
	cases := []struct {
		name, want string
		code       []byte
	}{
		{"jrcxz", "not handled", []byte{0xe3, 0x10}},
		{"loop", "not handled", []byte{0xe2, 0x10}},
		{"into itself", "branches into the copied bytes", []byte{0x90, 0x75, 0xfd, 0x90}},
		{"far rip", "beyond ±2 GiB", []byte{0x8b, 0x05, 0x10, 0, 0, 0}},
	}
	for _, c := range cases {
		to := uint64(0x500000)
		if c.name == "far rip" {
			to = 0x7f0000000000
		}
		_, err := Relocate("f", 0x400000, c.code, to)
		var ue *UnsafeError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an UnsafeError saying %q", c.name, err, c.want)
		}
	}
}

func TestTrampoline(t *testing.T) {
	code := append(append([]byte{}, endbr64...), 0x8b, 0x05, 0x10, 0, 0, 0, 0x01, 0xf8, 0xc3)
	s := Site{Func: "f", FuncAddr: 0x400000, FuncSize: uint64(len(code)), Addr: 0x400004, Len: 6}
	got, err := Trampoline(s, code, 0x500000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, endbr64) {
		t.Errorf("trampoline % x does not start with endbr64", got)
	}
	jmp := got[4+6:]
	if len(jmp) != JmpRel32Len || jmp[0] != 0xe9 {
		t.Fatalf("trampoline % x does not end with a jmp rel32", got)
	}
	back := 0x500000 + uint64(4+6+5) + uint64(int64(int32(binary.LittleEndian.Uint32(jmp[1:]))))
	if back != s.End() {
		t.Errorf("jumps back to %#x; want %#x", back, s.End())
	}
}
