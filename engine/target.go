package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"lp/engine/ptrace"
)

// More sentinel errors, for errors.Is.
var (
	// ErrKernelThread: the pid is a kernel thread, which has no user code
	// to patch.
	ErrKernelThread = errors.New("kernel thread")
	// ErrPermission: the caller may not trace the target.
	ErrPermission = errors.New("not permitted")
)

// pfKthread is PF_KTHREAD of a task's flags (/proc/PID/stat field 9).
const pfKthread = 0x00200000

// noProcessError says there is no process with that pid; it matches
// ptrace.ErrNoProcess.
type noProcessError struct{ pid int }

func (e noProcessError) Error() string        { return fmt.Sprintf("no process with pid %d", e.pid) }
func (e noProcessError) Is(target error) bool { return target == ptrace.ErrNoProcess }

// targetError is a complete sentence that matches a sentinel without
// repeating its words.
type targetError struct {
	msg string
	is  error
}

func (e targetError) Error() string        { return e.msg }
func (e targetError) Is(target error) bool { return target == e.is }

// checkTarget says, in one line, why pid cannot be patched by this process,
// or returns nil: no such process, a kernel thread, a process that has
// exited, or not permitted to trace it.
func checkTarget(pid int) error {
	if pid <= 0 {
		return noProcessError{pid}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return noProcessError{pid}
	}
	if err != nil {
		return fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
	}
	comm, state, flags, ok := parseStat(stat)
	if !ok {
		return fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	if flags&pfKthread != 0 {
		return targetError{fmt.Sprintf("pid %d (%s) is a kernel thread; lp patches user processes only", pid, comm), ErrKernelThread}
	}
	if state == 'Z' || state == 'X' {
		return fmt.Errorf("pid %d (%s) has exited: %w", pid, comm, ptrace.ErrExited)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if errors.Is(err, fs.ErrPermission) {
		return permissionError(pid, comm)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return noProcessError{pid}
	}
	if err != nil {
		return fmt.Errorf("opening the memory of pid %d (%s): %w", pid, comm, err)
	}
	f.Close()
	return nil
}

func permissionError(pid int, comm string) error {
	who := "this user"
	if os.Geteuid() == 0 {
		who = "root here (a security module or a user namespace denies it)"
	}
	return targetError{fmt.Sprintf("%s may not trace pid %d (%s): lp needs root or CAP_SYS_PTRACE", who, pid, comm), ErrPermission}
}

// parseStat extracts the command name, the state letter and the flags of a
// /proc/PID/stat line. The name is in parentheses and may itself hold
// spaces and parentheses: it ends at the last ')'.
func parseStat(b []byte) (comm string, state byte, flags uint64, ok bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	comm = string(b[open+1 : end])
	// After ") ": state ppid pgrp session tty_nr tpgid flags ...
	f := bytes.Fields(b[end+1:])
	if len(f) < 7 || len(f[0]) != 1 {
		return "", 0, 0, false
	}
	flags, err := strconv.ParseUint(string(f[6]), 10, 64)
	if err != nil {
		return "", 0, 0, false
	}
	return comm, f[0][0], flags, true
}
