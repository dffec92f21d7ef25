package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw requests that golang.org/x/sys/unix does not wrap with the arguments we
// need. Everything here must run on the ptrace goroutine.

const (
	seizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACESYSGOOD
	// Stop status for a syscall-stop with PTRACE_O_TRACESYSGOOD.
	sigTrapSysgood = unix.SIGTRAP | 0x80
	ntX86XState    = 0x202 // NT_X86_XSTATE
	xstateMax      = 16 << 10
)

func ptraceRaw(req, tid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func seize(tid int) error { return ptraceRaw(unix.PTRACE_SEIZE, tid, 0, seizeOptions) }

func cont(tid, sig int) error { return ptraceRaw(unix.PTRACE_CONT, tid, 0, uintptr(sig)) }

func listen(tid int) error { return ptraceRaw(unix.PTRACE_LISTEN, tid, 0, 0) }

func detach(tid, sig int) error { return ptraceRaw(unix.PTRACE_DETACH, tid, 0, uintptr(sig)) }

// getXState reads the thread's complete extended register state (x87, SSE,
// AVX, ...) as the kernel's XSAVE layout.
func getXState(tid int) ([]byte, error) {
	buf := make([]byte, xstateMax)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	if err := ptraceRaw(unix.PTRACE_GETREGSET, tid, ntX86XState, uintptr(unsafe.Pointer(&iov))); err != nil {
		return nil, err
	}
	return buf[:iov.Len], nil
}

func setXState(tid int, state []byte) error {
	if len(state) == 0 {
		return nil
	}
	iov := unix.Iovec{Base: &state[0]}
	iov.SetLen(len(state))
	return ptraceRaw(unix.PTRACE_SETREGSET, tid, ntX86XState, uintptr(unsafe.Pointer(&iov)))
}

// The tracer thread's scheduling inside a stop-the-world window.
const (
	schedOther = 0 // SCHED_OTHER
	schedFIFO  = 1 // SCHED_FIFO
	schedRR    = 2 // SCHED_RR
	// windowPriority is the real-time priority of the tracer thread
	// while the target is stopped: the lowest, enough to run before every
	// normal (SCHED_OTHER) thread of the machine, in whatever cgroup.
	windowPriority = 1
	// tracerNice is the tracer thread's nice value the rest of the time.
	tracerNice = -20
)

// setScheduler sets the calling thread's policy and real-time priority.
func setScheduler(policy int, prio int32) error {
	_, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, uintptr(policy), uintptr(unsafe.Pointer(&prio)))
	if e != 0 {
		return e
	}
	return nil
}
