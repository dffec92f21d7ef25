package patchsite

import (
	"encoding/binary"
	"math"
)

// Jump encodings.
const (
	// JmpRel32Len is the size of "jmp rel32" (e9 + 4-byte displacement).
	JmpRel32Len = 5
	// JmpAbsLen is the size of "jmp [rip+0]; .quad addr" (ff 25 00000000 + 8 bytes).
	JmpAbsLen = 14
)

// Reachable reports whether a 5-byte "jmp rel32" written at from reaches to:
// the displacement to - (from+5) fits in a signed 32-bit integer (x86-64
// address arithmetic is modulo 2^64, as here).
func Reachable(from, to uint64) bool {
	d := int64(to - (from + JmpRel32Len))
	return d >= math.MinInt32 && d <= math.MaxInt32
}

// JumpLen is the size of the jump EncodeJump(from, to) returns.
func JumpLen(from, to uint64) int {
	if Reachable(from, to) {
		return JmpRel32Len
	}
	return JmpAbsLen
}

// EncodeJump returns the bytes of a jump at from to to: "e9 rel32" when
// Reachable(from, to), else "ff 25 00 00 00 00" followed by to (8 bytes,
// little-endian), which reads its target from right after itself and so
// touches no register.
func EncodeJump(from, to uint64) []byte {
	if Reachable(from, to) {
		b := make([]byte, JmpRel32Len)
		b[0] = 0xe9
		binary.LittleEndian.PutUint32(b[1:], uint32(to-(from+JmpRel32Len)))
		return b
	}
	b := make([]byte, JmpAbsLen)
	b[0], b[1] = 0xff, 0x25 // jmp qword ptr [rip+0]
	binary.LittleEndian.PutUint64(b[6:], to)
	return b
}
