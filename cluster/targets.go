package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"lp/config"
	"lp/fsm"
)

// findProcesses returns the pids, sorted, of the processes target t names:
// with match: all every process its exe or comm matches (ErrNoProcess when
// none does), else the one findProcess finds.
func findProcesses(procRoot string, t config.Target) ([]int, error) {
	if !t.All() || t.PIDFile != "" {
		pid, err := findProcess(procRoot, t)
		if err != nil {
			return nil, err
		}
		return []int{pid}, nil
	}
	pids, what, err := scanTarget(procRoot, t)
	if err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("%s: %w", what, ErrNoProcess)
	}
	return pids, nil
}

// scanTarget returns the pids of the running processes whose exe or comm
// is t's, and what t matches on ("comm sipd") for messages.
func scanTarget(procRoot string, t config.Target) ([]int, string, error) {
	pids, err := scanProcs(procRoot, func(dir string) bool {
		if t.Exe != "" {
			exe, err := os.Readlink(filepath.Join(dir, "exe"))
			return err == nil && exe == t.Exe
		}
		b, err := os.ReadFile(filepath.Join(dir, "comm"))
		return err == nil && strings.TrimRight(string(b), "\n") == t.Comm
	})
	what := "exe " + t.Exe
	if t.Exe == "" {
		what = "comm " + t.Comm
	}
	return pids, what, err
}

// findProcess returns the pid of the process that target t names, or
// ErrNoProcess. Only the three ways of config.Target are used: a pidfile, the
// executable path (readlink /proc/PID/exe) or the command name
// (/proc/PID/comm). With exe or comm, several matches are an error.
func findProcess(procRoot string, t config.Target) (int, error) {
	switch {
	case t.PIDFile != "":
		b, err := os.ReadFile(t.PIDFile)
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("pidfile %s: %w", t.PIDFile, ErrNoProcess)
		}
		if err != nil {
			return 0, fmt.Errorf("reading pidfile: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("pidfile %s does not hold a pid: %q", t.PIDFile, fsm.ClipLine(string(b), 32))
		}
		if !processRuns(procRoot, pid) {
			return 0, fmt.Errorf("pid %d of %s: %w", pid, t.PIDFile, ErrNoProcess)
		}
		return pid, nil
	case t.Exe != "", t.Comm != "":
		pids, what, err := scanTarget(procRoot, t)
		if err != nil {
			return 0, err
		}
		switch len(pids) {
		case 0:
			return 0, fmt.Errorf("%s: %w", what, ErrNoProcess)
		case 1:
			return pids[0], nil
		default:
			return 0, fmt.Errorf("%s: %d processes match (pids %v); use a pidfile, or match: all to patch every one", what, len(pids), pids)
		}
	}
	return 0, fmt.Errorf("target has no pidfile, exe or comm: %w", ErrNoProcess)
}

// processRuns reports whether pid exists and is not a zombie.
func processRuns(procRoot string, pid int) bool {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// stat: "pid (comm) S ..."; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// processStart returns the start time of pid (field 22 of /proc/PID/stat,
// clock ticks since boot): with the pid it names one process, since a pid
// that is reused belongs to a process started later.
func processStart(procRoot string, pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of pid %d: no comm", pid)
	}
	// After "(comm) " come fields 3, 4, ...: start time is field 22.
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("stat of pid %d: %d fields after comm, want 20", pid, len(f))
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat of pid %d: start time %q: %w", pid, f[19], err)
	}
	return v, nil
}

func scanProcs(procRoot string, match func(dir string) bool) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", procRoot, err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		// A process may exit while we look: a failed read is no match.
		if match(filepath.Join(procRoot, e.Name())) && processRuns(procRoot, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}
