package engine

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"lp/engine/proc"
	"lp/engine/ptrace"
)

const pageSize = 4096

// session is one engine operation on one attached target. Every step that
// changes the target pushes its undo; on failure unwind runs them newest
// first with a fresh context, so a caller's cancellation cannot interrupt
// the repair.
type session struct {
	pid  int
	proc *ptrace.Process
	// mem is /proc/PID/mem, for the registry: it stays usable after the
	// window has detached the threads.
	mem   memFile
	start time.Time
	// phases are the steps' durations so far (Phase).
	phases []Phase
	last   time.Time
	space  *proc.Space
	undos  []func() error
	logf   func(format string, args ...any)
	// callTimeout bounds each injected function call (initialisers, dlopen).
	callTimeout time.Duration
	// fault is Options.fault (tests).
	fault func(point string) error
}

// fail asks the test hook whether the step named point fails.
func (s *session) fail(point string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(point)
}

func attachSession(pid int, space *proc.Space, logf func(string, ...any)) (*session, error) {
	p, err := ptrace.Attach(pid)
	if err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
	if err != nil {
		_ = p.Detach()
		return nil, fmt.Errorf("opening the memory of pid %d: %w", pid, err)
	}
	return &session{pid: pid, proc: p, mem: memFile{f}, space: space, logf: logf, callTimeout: 5 * time.Second}, nil
}

// Phase is how long one step of an operation took.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// mark ends the current phase, named name, and starts the next.
func (s *session) mark(name string) {
	now := time.Now()
	if s.last.IsZero() {
		s.last = now
	}
	s.phases = append(s.phases, Phase{Name: name, Duration: now.Sub(s.last)})
	s.last = now
}

func (s *session) undo(fn func() error) { s.undos = append(s.undos, fn) }

// unwind reverts every recorded step, newest first.
func (s *session) unwind() {
	for i := len(s.undos) - 1; i >= 0; i-- {
		if err := s.undos[i](); err != nil {
			s.logf("undo step %d in pid %d: %v", i, s.pid, err)
		}
	}
	s.undos = nil
}

// keep forgets the undo steps: what was done stays.
func (s *session) keep() { s.undos = nil }

// detach lets the target go (if the window has not already) and closes
// the session's memory file.
func (s *session) detach() error {
	err := s.proc.Detach()
	s.mem.f.Close()
	return err
}

func (s *session) syscall(nr uint64, args ...uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.callTimeout)
	defer cancel()
	return s.proc.Syscall(ctx, nr, args...)
}

// mmap maps anonymous private memory in the target, at hint exactly when
// hint is not 0 (MAP_FIXED_NOREPLACE never replaces an existing mapping).
func (s *session) mmap(hint, size uint64, prot int) (uint64, error) {
	flags := uint64(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS)
	if hint != 0 {
		flags |= unix.MAP_FIXED_NOREPLACE
	}
	addr, err := s.syscall(unix.SYS_MMAP, hint, size, uint64(prot), flags, ^uint64(0), 0)
	if err != nil {
		return 0, fmt.Errorf("mmap of %d bytes in pid %d: %w", size, s.pid, err)
	}
	if hint != 0 && addr != hint {
		// A kernel older than 4.17 takes the flag as a hint only.
		_, _ = s.syscall(unix.SYS_MUNMAP, addr, size)
		return 0, fmt.Errorf("mmap at %#x in pid %d: got %#x", hint, s.pid, addr)
	}
	return addr, nil
}

func (s *session) munmap(addr, size uint64) error {
	_, err := s.syscall(unix.SYS_MUNMAP, addr, size)
	return err
}

func (s *session) mprotect(addr, size uint64, prot int) error {
	if _, err := s.syscall(unix.SYS_MPROTECT, addr, size, uint64(prot)); err != nil {
		return fmt.Errorf("mprotect %#x+%#x in pid %d: %w", addr, size, s.pid, err)
	}
	return nil
}

// nameMapping names an anonymous mapping (shown as [anon:NAME] in maps) so
// operators can see lp's memory. The name string is staged in the first page
// of the mapping, which must be writable; the kernel copies it.
func (s *session) nameMapping(addr, size uint64, name string) error {
	const prSetVMA, prSetVMAAnonName = 0x53564d41, 0
	scratch := addr + pageSize - 128
	if err := s.proc.WriteMem(scratch, append([]byte(name), 0)); err != nil {
		return err
	}
	defer s.proc.WriteMem(scratch, make([]byte, len(name)+1))
	_, err := s.syscall(unix.SYS_PRCTL, prSetVMA, prSetVMAAnonName, addr, size, scratch)
	return err
}

// call runs a function of the target under the session's call deadline.
func (s *session) call(fn uint64, args ...uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.callTimeout)
	defer cancel()
	return s.proc.Call(ctx, fn, args...)
}
