package ptrace

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is.
var (
	// ErrExited: the target process exited (or was killed) while attached.
	ErrExited = errors.New("target process exited")
	// ErrDetached: the Process was already detached.
	ErrDetached = errors.New("process is detached")
	// ErrSelf: a request to attach to this process itself.
	ErrSelf = errors.New("cannot trace this process itself")
	// ErrNoProcess: no process with that pid.
	ErrNoProcess = errors.New("no such process")
	// ErrTimeout: a stop, system call or call did not complete by its deadline.
	ErrTimeout = errors.New("deadline exceeded")
	// ErrFault: an injected call crashed (SIGSEGV, SIGBUS, ...) in the target.
	ErrFault = errors.New("injected call faulted")
)

// ExitError says how the target ended while we were attached.
type ExitError struct {
	Pid    int
	Status string // "exit status 3" or "killed by signal 9"
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("process %d exited during the operation (%s)", e.Pid, e.Status)
}

func (e *ExitError) Is(target error) bool { return target == ErrExited }
