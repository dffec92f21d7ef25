/* Hand-written entries with known bytes for patchsite tests. Each function
   has an ELF size (.size) so the tests read exactly its bytes. */
	.intel_syntax noprefix
	.text

#define FUNC(name) .globl name; .type name, @function; name:
#define END(name) .size name, .-name

/* ret only: too small for any jump */
FUNC(tiny_ret)
	ret
END(tiny_ret)

/* 4 bytes: too small for 5 */
FUNC(four_bytes)
	lea eax, [rdi+1]
	ret
END(four_bytes)

/* the loop's back-edge lands at +2, inside the first 5 bytes */
FUNC(loop_back)
	xor eax, eax
1:	add eax, edi
	dec edi
	jnz 1b
	ret
END(loop_back)

/* the back-edge lands exactly at the entry: allowed */
FUNC(loop_to_entry)
	add eax, 1
	add eax, edi
	dec edi
	jnz loop_to_entry
	ret
END(loop_to_entry)

/* a branch lands exactly at the end of the region: allowed */
FUNC(branch_to_end)
	mov eax, 1
1:	add eax, edi
	dec edi
	jnz 1b
	ret
END(branch_to_end)

/* starts with a call */
FUNC(call_first)
	call helper
	add eax, 1
	ret
END(call_first)

FUNC(helper)
	mov eax, 42
	ret
END(helper)

/* syscall, int3, int 0x80 inside the first bytes */
FUNC(syscall_first)
	syscall
	nop
	nop
	nop
	ret
END(syscall_first)

FUNC(int3_first)
	int3
	nop
	nop
	nop
	nop
	ret
END(int3_first)

FUNC(int80_second)
	xor eax, eax
	int 0x80
	nop
	ret
END(int80_second)

/* the syscall comes after the 5-byte mov: not in the region */
FUNC(mov_then_syscall)
	mov eax, 39
	syscall
	ret
END(mov_then_syscall)

/* endbr64, then a loop back to the first instruction after it */
FUNC(endbr_loop)
	endbr64
1:	add eax, 1
	add eax, edi
	dec edi
	jnz 1b
	ret
END(endbr_loop)

/* endbr64 and a loop landing inside the region after it */
FUNC(endbr_loop_inside)
	endbr64
	xor eax, eax
1:	add eax, edi
	dec edi
	jnz 1b
	ret
END(endbr_loop_inside)

/* a 5-byte NOP pad (one multi-byte nop), as patchable entries can be */
FUNC(nop5_pad)
	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
	mov eax, edi
	ret
END(nop5_pad)

/* a 2-byte pad is too short to patch through: the region extends past it */
FUNC(short_pad)
	nop
	nop
	mov eax, edi
	add eax, 1
	ret
END(short_pad)

/* undecodable byte (0x06, push es, is invalid in 64-bit mode) at entry */
FUNC(bad_entry)
	.byte 0x06
	mov eax, 1
	ret
END(bad_entry)

/* good region, then an undecodable byte: later branches cannot be checked */
FUNC(bad_tail)
	mov eax, 1
	add eax, edi
	.byte 0x06
	ret
END(bad_tail)

/* a jrcxz (never taken in practice) into the region, far from the entry */
FUNC(jrcxz_inside)
9:	mov eax, 1
	add eax, edi
	ret
	jrcxz 9b+2
	ret
END(jrcxz_inside)

/* long region for the 14-byte jump: 3 x 5-byte movs */
FUNC(three_movs)
	mov eax, 1
	mov ecx, 2
	mov edx, 3
	add eax, ecx
	add eax, edx
	ret
END(three_movs)
