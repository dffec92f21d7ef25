package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Regs are a thread's general-purpose registers (struct user_regs_struct).
type Regs = unix.PtraceRegs

// Registers of a thread. The thread must be stopped (inside WithStopped, or
// between StopAll and ResumeAll).
func (p *Process) Registers(tid int) (Regs, error) {
	var r Regs
	err := p.do(func() error {
		var err error
		r, err = p.getRegs(tid)
		return err
	})
	return r, err
}

// SetRegisters writes a stopped thread's general registers.
func (p *Process) SetRegisters(tid int, r Regs) error {
	return p.do(func() error { return p.setRegs(tid, r) })
}

func (p *Process) getRegs(tid int) (Regs, error) {
	var r Regs
	if err := p.checkStopped(tid); err != nil {
		return r, err
	}
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return r, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	return r, nil
}

func (p *Process) setRegs(tid int, r Regs) error {
	if err := p.checkStopped(tid); err != nil {
		return err
	}
	p.threads[tid].regsOK = false
	if err := unix.PtraceSetRegs(tid, &r); err != nil {
		return fmt.Errorf("writing registers of thread %d: %w", tid, err)
	}
	return nil
}

// stoppedRegs is getRegs that answers from the registers read when the
// thread stopped, when they were (prefetch).
func (p *Process) stoppedRegs(tid int) (Regs, error) {
	if t := p.threads[tid]; t != nil && t.regsOK && t.state == stopped {
		return t.regs, nil
	}
	return p.getRegs(tid)
}

func (p *Process) checkStopped(tid int) error {
	t := p.threads[tid]
	switch {
	case t == nil:
		return fmt.Errorf("thread %d is not a thread of traced pid %d", tid, p.pid)
	case t.state != stopped:
		return fmt.Errorf("thread %d of pid %d is running; stop it first", tid, p.pid)
	}
	return nil
}

// save captures a stopped thread's registers and extended state. If the
// thread was stopped inside an interrupted system call that the kernel would
// restart, the saved state is rewritten to restart it ourselves (back up over
// the syscall instruction, syscall number in rax, orig_rax -1): the kernel's
// own restart logic runs when the thread leaves this stop, which is before we
// put the registers back, so without this the program would see -ERESTARTSYS
// as the result of its system call.
func (p *Process) save(tid int) (*saved, error) {
	s := &saved{tid: tid}
	if err := unix.PtraceGetRegs(tid, &s.regs); err != nil {
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	xs, err := getXState(tid)
	if err != nil {
		return nil, fmt.Errorf("reading extended registers of thread %d: %w", tid, err)
	}
	s.xstate = xs
	if int64(s.regs.Orig_rax) >= 0 {
		switch errno := -int64(s.regs.Rax); errno {
		case errRestartSys, errRestartNoIntr, errRestartNoHand:
			s.regs.Rax = s.regs.Orig_rax
			s.regs.Rip -= 2
		case errRestartBlock:
			s.regs.Rax = sysRestartSyscall
			s.regs.Rip -= 2
		}
		s.regs.Orig_rax = ^uint64(0)
	}
	return s, nil
}

func (p *Process) restore(s *saved) error {
	if t := p.threads[s.tid]; t != nil {
		t.regsOK = false
	}
	if err := unix.PtraceSetRegs(s.tid, &s.regs); err != nil {
		return fmt.Errorf("restoring registers of thread %d: %w", s.tid, err)
	}
	if err := setXState(s.tid, s.xstate); err != nil {
		return fmt.Errorf("restoring extended registers of thread %d: %w", s.tid, err)
	}
	return nil
}

// Kernel-internal errno values of interrupted system calls (include/linux/errno.h).
const (
	errRestartSys     = 512
	errRestartNoIntr  = 513
	errRestartNoHand  = 514
	errRestartBlock   = 516
	sysRestartSyscall = unix.SYS_RESTART_SYSCALL
)
