package cluster

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lp/config"
	"lp/internal/sched"
)

// built holds the programs the tests build once per test binary.
var built struct {
	once sync.Once
	dir  string
	err  error
	svc  string // testdata/svc.c
	fix  string // testdata/fix.c, a patch module
	cxx  string // testdata/fixcxx.cc, a C++ patch module (mode dlopen only)
	lpd  string
	ctl  string
}

// buildFixtures compiles the C fixtures and the lpd and lpctl binaries into a
// directory that lives as long as the test binary.
func buildFixtures(t testing.TB) {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "lp-cluster-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		built.svc = filepath.Join(dir, "svc")
		built.fix = filepath.Join(dir, "fix.so")
		built.cxx = filepath.Join(dir, "fixcxx.so")
		built.lpd = filepath.Join(dir, "lpd")
		built.ctl = filepath.Join(dir, "lpctl")
		steps := [][]string{
			{"cc", "-O2", "-o", built.svc, "testdata/svc.c"},
			{"cc", "-shared", "-fPIC", "-O2", "-I../include", "-o", built.fix, "testdata/fix.c"},
			{"c++", "-shared", "-fPIC", "-O2", "-I../include", "-o", built.cxx, "testdata/fixcxx.cc"},
			{"go", "build", "-o", built.lpd, "lp/cmd/lpd"},
			{"go", "build", "-o", built.ctl, "lp/cmd/lpctl"},
		}
		for _, s := range steps {
			out, err := exec.Command(s[0], s[1:]...).CombinedOutput()
			if err != nil {
				built.err = &buildError{cmd: strings.Join(s, " "), out: string(out), err: err}
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
}

type buildError struct {
	cmd, out string
	err      error
}

func (e *buildError) Error() string { return e.cmd + ": " + e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	// In-process nodes gossip at lpd's default priority, as they would in
	// lpd (which raises itself: the lpd processes tests start do too).
	// Without the privilege this changes nothing.
	_, _, stop, _ := sched.Raise(sched.Priority{Nice: config.DefaultNice}, nil)
	code := m.Run()
	stop()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// service is a running testdata/svc process.
type service struct {
	cmd     *exec.Cmd
	pid     int
	out     string // its stdout file
	pidfile string
}

// startService starts svc with its output in dir/name.out and writes
// dir/name.pid; the test's cleanup kills it. It returns once svc prints.
func startService(t testing.TB, dir, name string) *service {
	t.Helper()
	s := spawnService(t, dir, name)
	s.waitValue(t, 42, 5*time.Second)
	return s
}

// spawnService is startService without waiting for the first output.
func spawnService(t testing.TB, dir, name string) *service {
	t.Helper()
	buildFixtures(t)
	return spawnServiceOf(t, built.svc, dir, name)
}

// spawnServiceOf is spawnService running the svc binary at bin (a copy of
// built.svc, so that a target can match it by exe).
func spawnServiceOf(t testing.TB, bin, dir, name string) *service {
	t.Helper()
	s := &service{out: filepath.Join(dir, name+".out"), pidfile: filepath.Join(dir, name+".pid")}
	f, err := os.Create(s.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.cmd = exec.Command(bin)
	s.cmd.Stdout = f
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting svc: %v", err)
	}
	s.pid = s.cmd.Process.Pid
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	if err := os.WriteFile(s.pidfile, []byte(strconv.Itoa(s.pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// value returns the number in the service's last complete output line.
func (s *service) value() int {
	data, _ := os.ReadFile(s.out)
	data = bytes.TrimRight(data, "\n")
	i := bytes.LastIndexByte(data, '\n')
	line := string(data[i+1:])
	if !strings.HasPrefix(line, "v ") {
		// a torn last line: take the one before
		data = data[:max(i, 0)]
		line = string(data[bytes.LastIndexByte(data, '\n')+1:])
	}
	v, _ := strconv.Atoi(strings.TrimPrefix(line, "v "))
	return v
}

// waitValue waits until the service prints want.
func (s *service) waitValue(t testing.TB, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(waitBudget(d))
	for {
		got := s.value()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service pid %d prints %d; want %d", s.pid, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lines counts the service's output lines (for checking it kept running).
func (s *service) lines() int {
	f, err := os.Open(s.out)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

func requirePtrace(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the engine patches linux/amd64 processes only")
	}
	if os.Geteuid() != 0 {
		t.Skip("attaching to sibling processes needs root (CAP_SYS_PTRACE)")
	}
}
