package ptrace

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// redZone is the area below rsp that a leaf function may use without
	// moving rsp (System V AMD64 ABI); an injected frame goes below it.
	redZone = 128
	// defaultInjectTimeout bounds an injection when the context has none.
	defaultInjectTimeout = 5 * time.Second
)

// Syscall runs system call nr with up to six arguments in the target, on one
// thread, while the other threads keep running (or stay stopped, inside
// StopAll). It returns the raw result; a negative value in -4095..-1 is
// returned as an unix.Errno error. The thread's registers are restored
// afterwards. If the deadline passes, the thread is put back as it was.
func (p *Process) Syscall(ctx context.Context, nr uint64, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("syscall %d: %d arguments; at most 6", nr, len(args))
	}
	var ret uint64
	err := p.do(func() error {
		var err error
		ret, err = p.inject(ctx, func(r *Regs) error {
			gadget, err := p.syscallGadget()
			if err != nil {
				return err
			}
			r.Rip = gadget
			r.Rax = nr
			setArgs(r, args, true)
			return nil
		}, true)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("syscall %d in pid %d: %w", nr, p.pid, err)
	}
	if e := int64(ret); e < 0 && e > -4096 {
		return ret, unix.Errno(-e)
	}
	return ret, nil
}

// Call calls the function at fn in the target with up to six integer
// arguments and returns its rax. The call runs on one thread on a frame
// placed below the red zone, 16-byte aligned, with return address 0: the
// return faults at address 0, which tells us it finished. Every register,
// extended state included, is restored afterwards. A fault inside the
// function, or the deadline, abandons the call and restores the thread.
func (p *Process) Call(ctx context.Context, fn uint64, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("call %#x: %d arguments; at most 6", fn, len(args))
	}
	var ret uint64
	err := p.do(func() error {
		var err error
		ret, err = p.inject(ctx, func(r *Regs) error {
			sp := (r.Rsp - redZone - 256) &^ 15
			sp -= 8 // the return address: at entry rsp+8 is 16-aligned
			if err := p.writeMem(sp, make([]byte, 8)); err != nil {
				return err
			}
			r.Rsp = sp
			r.Rip = fn
			r.Rax = 0 // no vector registers used by a variadic callee
			setArgs(r, args, false)
			return nil
		}, false)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("calling %#x in pid %d: %w", fn, p.pid, err)
	}
	return ret, nil
}

func setArgs(r *Regs, args []uint64, syscall bool) {
	dst := []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.Rcx, &r.R8, &r.R9}
	if syscall {
		dst[3] = &r.R10
	}
	for i, a := range args {
		*dst[i] = a
	}
}

// inject runs one injected piece of code on a thread and restores it. It
// prefers a thread that is already stopped; otherwise it stops the main
// thread (or any) alone and resumes it afterwards.
func (p *Process) inject(ctx context.Context, setup func(*Regs) error, syscall bool) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultInjectTimeout)
		defer cancel()
	}
	t := p.pickThread(!syscall)
	if t == nil {
		return 0, &ExitError{Pid: p.pid, Status: "no threads left"}
	}
	wasRunning := t.state == running
	if err := p.stopOne(ctx, t); err != nil {
		return 0, err
	}
	if p.threads[t.tid] == nil {
		return 0, fmt.Errorf("thread %d exited before the injection", t.tid)
	}
	s, err := p.save(t.tid)
	if err != nil {
		if wasRunning {
			p.resume(t)
		}
		return 0, err
	}
	p.inflight = s
	ret, runErr := p.runInjected(ctx, t, s, setup, syscall)
	p.inflight = nil
	if p.exitErr != nil {
		return 0, p.exitErr
	}
	if err := p.restore(s); err != nil && runErr == nil {
		runErr = err
	}
	if wasRunning {
		p.resume(t)
	}
	return ret, runErr
}

func (p *Process) pickThread(forCall bool) *thread {
	var best *thread
	bestScore := -1
	for _, t := range p.sortedThreads() {
		if t.group {
			continue
		}
		score := 0
		if t.state == stopped {
			score = 8 // already stopped for us: no extra stop
		}
		if forCall {
			// A called function may take locks (malloc's, the dynamic
			// linker's). A thread interrupted in user space may hold one and
			// deadlock on it; a thread asleep in a system call is at a call
			// boundary and holds none of libc's.
			score += callSafety(p.pid, t.tid)
		}
		if t.tid == p.pid {
			score++ // the main thread, all else equal
		}
		if score > bestScore {
			best, bestScore = t, score
		}
	}
	return best
}

// callSafety ranks a thread for running an injected call by the system call
// it sleeps in (/proc/PID/task/TID/syscall): a quiet wait is best, a futex
// wait next, any other system call after, running in user space last.
func callSafety(pid, tid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 || f[0] == "running" || f[0] == "-1" {
		return 0
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	switch nr {
	case unix.SYS_READ, unix.SYS_POLL, unix.SYS_SELECT, unix.SYS_PAUSE, unix.SYS_NANOSLEEP,
		unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_RECVFROM, unix.SYS_RECVMSG, unix.SYS_WAIT4,
		unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_PPOLL,
		unix.SYS_PSELECT6, unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_SIGTIMEDWAIT:
		return 3
	case unix.SYS_FUTEX:
		return 2
	case unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_BRK, unix.SYS_MPROTECT, unix.SYS_MREMAP:
		return 0 // malloc may hold its arena lock around these
	}
	return 1
}

// runInjected sets the registers, lets the thread run and waits for the end
// of the injection: the syscall-exit stop of our system call, or the fault at
// return address 0 of our call. On any failure the thread is left stopped;
// the caller restores it.
func (p *Process) runInjected(ctx context.Context, t *thread, s *saved, setup func(*Regs) error, syscall bool) (uint64, error) {
	r := s.regs
	r.Orig_rax = ^uint64(0) // no syscall restart on the way out of this stop
	if err := setup(&r); err != nil {
		return 0, err
	}
	t.regsOK = false
	if err := unix.PtraceSetRegs(t.tid, &r); err != nil {
		return 0, fmt.Errorf("setting registers of thread %d: %w", t.tid, err)
	}
	step := func() error {
		t.state = running
		if syscall {
			return unix.PtraceSyscall(t.tid, 0)
		}
		return unix.PtraceCont(t.tid, 0)
	}
	entered := false
	for {
		if err := step(); err != nil {
			t.state = stopped
			return 0, fmt.Errorf("resuming thread %d: %w", t.tid, err)
		}
		ws, err := p.waitEvent(ctx, t)
		if err != nil {
			return 0, err
		}
		sig := ws.StopSignal()
		switch {
		case syscall && sig == sigTrapSysgood:
			if !entered {
				entered = true
				continue
			}
			var out Regs
			if err := unix.PtraceGetRegs(t.tid, &out); err != nil {
				return 0, fmt.Errorf("reading result registers of thread %d: %w", t.tid, err)
			}
			return out.Rax, nil
		case ws.TrapCause() > 0:
			// Our own PTRACE_INTERRUPT or a clone event (already handled):
			// keep going.
			continue
		case !syscall && sig == unix.SIGSEGV:
			var out Regs
			if err := unix.PtraceGetRegs(t.tid, &out); err != nil {
				return 0, fmt.Errorf("reading result registers of thread %d: %w", t.tid, err)
			}
			t.sigs = t.sigs[:len(t.sigs)-1] // ours, not the target's
			if out.Rip == 0 {
				return out.Rax, nil
			}
			return 0, fmt.Errorf("%w: SIGSEGV at %#x (call abandoned, thread restored)", ErrFault, out.Rip)
		case sig == unix.SIGBUS || sig == unix.SIGILL || sig == unix.SIGFPE || sig == unix.SIGABRT || sig == unix.SIGTRAP || sig == unix.SIGSEGV:
			t.sigs = t.sigs[:len(t.sigs)-1]
			var out Regs
			_ = unix.PtraceGetRegs(t.tid, &out)
			return 0, fmt.Errorf("%w: %v at %#x (abandoned, thread restored)", ErrFault, unix.SignalName(sig), out.Rip)
		default:
			// Another signal for the target: handle() queued it on t.sigs,
			// it is delivered once the thread is restored.
			continue
		}
	}
}

// waitEvent waits for the next stop of t, handling it with handle() (which
// queues any signal of the target's own on t.sigs). At the deadline it
// interrupts the thread and returns ErrTimeout with the thread stopped.
func (p *Process) waitEvent(ctx context.Context, t *thread) (unix.WaitStatus, error) {
	start := time.Now()
	lastPump := start
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	interrupted := false
	t.waited = true
	defer func() { t.waited = false }()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(t.tid, &ws, unix.WNOHANG|unix.WALL, nil)
		if err != nil && err != unix.EINTR {
			if err == unix.ECHILD {
				p.forget(t)
				if err := p.awaitExit(); err != nil {
					return ws, err
				}
				return ws, fmt.Errorf("thread %d vanished during the injection", t.tid)
			}
			return ws, fmt.Errorf("waiting for thread %d: %w", t.tid, err)
		}
		if wpid == t.tid {
			if p.handle(t, ws, false) {
				if interrupted {
					return ws, fmt.Errorf("injection on thread %d did not finish in %v: %w", t.tid, time.Since(start).Round(time.Millisecond), ErrTimeout)
				}
				return ws, nil
			}
			if p.exitErr != nil {
				return ws, p.exitErr
			}
			if p.threads[t.tid] == nil {
				if err := p.awaitExit(); err != nil {
					return ws, err
				}
				return ws, fmt.Errorf("thread %d exited during the injection", t.tid)
			}
			continue
		}
		if !interrupted && ctx.Err() != nil {
			_ = unix.PtraceInterrupt(t.tid)
			interrupted = true
		}
		// Other threads keep running while one runs our code: their
		// signals are forwarded and exits collected here too (an exiting
		// process reports its main thread only after the others).
		if time.Since(lastPump) > 5*time.Millisecond {
			p.pump()
			lastPump = time.Now()
			if p.exitErr != nil {
				return ws, p.exitErr
			}
		}
		// Sleep until SIGCHLD (some tracee changed state), a short timer
		// (signals coalesce) or the deadline.
		timer.Reset(time.Millisecond)
		select {
		case <-p.sigchld:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
}

// syscallGadget finds a `syscall` instruction (0f 05) in an executable
// mapping of the target. Jumping there with PTRACE_SYSCALL runs exactly one
// system call without writing any code into the target, which matters
// because other threads keep executing while we inject.
func (p *Process) syscallGadget() (uint64, error) {
	if p.gadget != 0 {
		return p.gadget, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", p.pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var regions [][2]uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.Contains(fields[1], "x") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if len(fields) >= 6 && fields[5] == "[vsyscall]" {
			continue // not readable through /proc/PID/mem
		}
		regions = append(regions, [2]uint64{start, end})
	}
	buf := make([]byte, 64<<10)
	for _, rg := range regions {
		for addr := rg[0]; addr < rg[1]; addr += uint64(len(buf)) - 1 {
			n := min(uint64(len(buf)), rg[1]-addr)
			if err := p.readMem(addr, buf[:n]); err != nil {
				break
			}
			if i := bytes.Index(buf[:n], []byte{0x0f, 0x05}); i >= 0 {
				p.gadget = addr + uint64(i)
				return p.gadget, nil
			}
		}
	}
	return 0, fmt.Errorf("no syscall instruction found in the executable mappings of pid %d", p.pid)
}

// awaitExit tells a thread that exited on its own from a whole process
// being killed: it collects the other threads' exits for a moment and
// returns the process's ExitError if the main thread's exit follows.
func (p *Process) awaitExit() error {
	deadline := time.Now().Add(300 * time.Millisecond)
	for p.exitErr == nil && time.Now().Before(deadline) {
		p.pump()
		if p.exitErr == nil {
			time.Sleep(time.Millisecond)
		}
	}
	return p.exitErr
}
