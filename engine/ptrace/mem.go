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

// ReadReq is one read of ReadAvailBatch: Buf from Addr on; Got is how many
// bytes were read, stopping at the first unreadable page.
type ReadReq struct {
	Addr uint64
	Buf  []byte
	Got  int
}

// iovMax is the most iovecs one process_vm_readv takes (UIO_MAXIOV).
const iovMax = 1024

// readAvailBatch reads every request as readAvail would, in one
// process_vm_readv per iovMax requests. That call stops at the first byte
// it cannot read: the request it stopped in is read again with readAvail
// (through /proc/PID/mem, which also reads what process_vm_readv may not,
// as ptrace peeks can), and the batch goes on after it.
func (p *Process) readAvailBatch(reqs []ReadReq) {
	for i := 0; i < len(reqs); {
		if p.noBatch {
			reqs[i].Got = p.readAvail(reqs[i].Addr, reqs[i].Buf)
			i++
			continue
		}
		j := min(len(reqs), i+iovMax)
		p.iovLocal, p.iovRemote = p.iovLocal[:0], p.iovRemote[:0]
		want := 0
		for k := i; k < j; k++ {
			r := &reqs[k]
			r.Got = 0
			if len(r.Buf) == 0 {
				continue
			}
			l := unix.Iovec{Base: &r.Buf[0]}
			l.SetLen(len(r.Buf))
			p.iovLocal = append(p.iovLocal, l)
			p.iovRemote = append(p.iovRemote, unix.RemoteIovec{Base: uintptr(r.Addr), Len: len(r.Buf)})
			want += len(r.Buf)
		}
		n := 0
		if len(p.iovLocal) > 0 {
			var err error
			n, err = unix.ProcessVMReadv(p.pid, p.iovLocal, p.iovRemote, 0)
			clear(p.iovLocal) // hold no caller's buffer past the call
			if err == unix.ENOSYS || err == unix.EPERM {
				p.noBatch = true
				continue
			}
			if err != nil || n < 0 {
				n = 0
			}
		}
		// The bytes read are a prefix of the requests, in order.
		k := i
		for ; k < j && n >= len(reqs[k].Buf); k++ {
			reqs[k].Got = len(reqs[k].Buf)
			n -= len(reqs[k].Buf)
		}
		if k == j {
			i = j
			continue
		}
		reqs[k].Got = p.readAvail(reqs[k].Addr, reqs[k].Buf)
		i = k + 1
	}
}
