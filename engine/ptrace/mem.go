package ptrace

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// ReadMem reads len(buf) bytes of target memory at addr. Threads may be
// running; the read is not atomic with respect to them.
func (p *Process) ReadMem(addr uint64, buf []byte) error {
	return p.do(func() error { return p.readMem(addr, buf) })
}

// WriteMem writes data into target memory at addr, read-only code pages
// included: /proc/PID/mem writes with the kernel's FOLL_FORCE, which
// process_vm_writev does not (delve's threads_linux.go notes the same). A
// private file mapping gets a private copy of the page, as a breakpoint
// would.
func (p *Process) WriteMem(addr uint64, data []byte) error {
	return p.do(func() error { return p.writeMem(addr, data) })
}

func (p *Process) readMem(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	n, err := p.mem.ReadAt(buf, int64(addr))
	if err != nil && !(err == io.EOF && n == len(buf)) {
		return fmt.Errorf("reading %d bytes at %#x in pid %d: %w", len(buf), addr, p.pid, err)
	}
	return nil
}

func (p *Process) writeMem(addr uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if _, err := p.mem.WriteAt(data, int64(addr)); err != nil {
		return fmt.Errorf("writing %d bytes at %#x in pid %d: %w", len(data), addr, p.pid, err)
	}
	return nil
}

// readAvail reads as much of buf as is mapped from addr on, stopping at the
// first unreadable page, and returns how many bytes it read.
func (p *Process) readAvail(addr uint64, buf []byte) int {
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(int(p.mem.Fd()), buf[n:], int64(addr)+int64(n))
		if m <= 0 || err != nil {
			break
		}
		n += m
	}
	return n
}
