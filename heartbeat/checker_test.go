package heartbeat

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lp/config"
)

var noFlap = FlapConfig{Changes: -1}

func startChecker(t *testing.T, flap FlapConfig, specs ...CheckSpec) *Checker {
	t.Helper()
	c, err := StartChecker(CheckerConfig{Checks: specs, Flap: flap, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("StartChecker: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// waitChange reads Changes until a summary matches.
func waitChange(t *testing.T, c *Checker, timeout time.Duration, what string, match func(Summary) bool) Summary {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case s, ok := <-c.Changes():
			if !ok {
				t.Fatalf("Changes closed while waiting for %s", what)
			}
			if match(s) {
				return s
			}
		case <-deadline:
			t.Fatalf("no %s within %v; status %+v", what, timeout, c.Status())
		}
	}
}

// waitStatus polls Status until it matches.
func waitStatus(t *testing.T, c *Checker, timeout time.Duration, what string, match func(Summary) bool) Summary {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := c.Status()
		if match(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; status %+v", what, timeout, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func state(want string) func(Summary) bool {
	return func(s Summary) bool { return s.State == want }
}

// toggleFileCheck is an exec check healthy while path exists.
func toggleFileCheck(path string) string {
	return fmt.Sprintf(`if [ -f %q ]; then echo up; else echo "down: no %s" >&2; exit 1; fi`, path, filepath.Base(path))
}

func TestExecCheckHysteresis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ok")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const failures, successes = 3, 2
	c := startChecker(t, noFlap, CheckSpec{
		Name: "toggle", Exec: toggleFileCheck(path),
		Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Failures: failures, Successes: successes,
	})
	if s := c.Status(); s.State != HealthUnknown || s.Healthy || s.Checks[0].Kind != KindExec {
		t.Fatalf("initial status %s healthy=%v kind=%s; want unknown, false, exec", s.State, s.Healthy, s.Checks[0].Kind)
	}
	s := waitChange(t, c, 10*time.Second, "healthy", state(HealthHealthy))
	if got := s.Checks[0].ConsecutiveSuccesses; got != successes {
		t.Fatalf("healthy after %d successes; want %d", got, successes)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s = waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	if got := s.Checks[0].ConsecutiveFailures; got != failures {
		t.Fatalf("unhealthy after %d failures; want %d", got, failures)
	}
	if s.Failing != "toggle" || s.Output != "down: no ok" || s.Checks[0].Output != "down: no ok" {
		t.Fatalf("failing %q output %q; want toggle, %q", s.Failing, s.Output, "down: no ok")
	}

	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s = waitChange(t, c, 10*time.Second, "healthy again", state(HealthHealthy))
	if got := s.Checks[0].ConsecutiveSuccesses; got != successes || s.Failing != "" {
		t.Fatalf("healthy again after %d successes, failing %q; want %d, none", got, s.Failing, successes)
	}
	if out := c.Status().Checks[0].Output; out != "up" {
		t.Fatalf("output %q; want %q", out, "up")
	}
}

// gone reports whether pid no longer runs (absent or a zombie).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func waitGone(t *testing.T, pidfile string) {
	t.Helper()
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(pidfile)
		if err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", pidfile)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for !gone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // our own grandchild; do not leak it
			t.Fatalf("background process %d of the check still runs; want the group killed", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "bg.pid")
	c := startChecker(t, noFlap, CheckSpec{
		Name:     "hang",
		Exec:     fmt.Sprintf("echo started; sleep 60 & echo $! > %q; wait", pidfile),
		Interval: time.Hour, Timeout: time.Second, Failures: 1, Successes: 1,
	})
	s := waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	if !strings.HasPrefix(s.Output, "timed out after 1s") {
		t.Fatalf("output %q; want the timeout first", s.Output)
	}
	// The shell writes the pidfile after its line: on a machine so busy
	// that the shell did not get that far within the timeout, there is
	// neither a line nor a background process to look for.
	if b, err := os.ReadFile(pidfile); err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
		t.Logf("the check's shell was killed before it started its background process (busy machine); output %q", s.Output)
		return
	}
	if !strings.Contains(s.Output, "started") {
		t.Fatalf("output %q; want the timeout and the last line", s.Output)
	}
	waitGone(t, pidfile)
}

func TestStopKillsRunningExec(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "bg.pid")
	c := startChecker(t, noFlap, CheckSpec{
		Name: "long", Exec: fmt.Sprintf("sleep 60 & echo $! > %q; wait", pidfile),
		Interval: time.Hour, Timeout: time.Hour,
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidfile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("check command did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Stop()
	waitGone(t, pidfile)
	if _, ok := <-c.Changes(); ok {
		// Drain a pending summary; the channel must then be closed.
		if _, ok := <-c.Changes(); ok {
			t.Fatal("Changes still open after Stop; want closed")
		}
	}
	c.Stop() // idempotent
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	c := startChecker(t, noFlap, CheckSpec{
		TCP: addr, Interval: 20 * time.Millisecond, Timeout: time.Second, Failures: 2, Successes: 2,
	})
	s := waitChange(t, c, 10*time.Second, "healthy", state(HealthHealthy))
	if s.Checks[0].Name != "tcp "+addr || s.Checks[0].Kind != KindTCP {
		t.Fatalf("check %q kind %s; want derived name %q, tcp", s.Checks[0].Name, s.Checks[0].Kind, "tcp "+addr)
	}
	_ = ln.Close()
	s = waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	if !strings.Contains(s.Output, "refused") {
		t.Fatalf("output %q; want connection refused", s.Output)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	waitChange(t, c, 10*time.Second, "healthy again", state(HealthHealthy))
}

func TestHTTPCheck(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(srv.Close)
	c := startChecker(t, noFlap, CheckSpec{
		Name: "web", HTTP: srv.URL + "/health", Interval: 20 * time.Millisecond, Timeout: time.Second, Failures: 2, Successes: 1,
	})
	waitChange(t, c, 10*time.Second, "healthy", state(HealthHealthy))
	code.Store(http.StatusInternalServerError)
	s := waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	if s.Output != "HTTP 500 Internal Server Error" {
		t.Fatalf("output %q; want %q", s.Output, "HTTP 500 Internal Server Error")
	}
	code.Store(http.StatusNoContent)
	waitChange(t, c, 10*time.Second, "healthy on 204", state(HealthHealthy))
}

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestProcessCheckRestartCountsAsFailure(t *testing.T) {
	first := startSleep(t)
	var pid atomic.Int64
	pid.Store(int64(first.Process.Pid))
	c := startChecker(t, noFlap, CheckSpec{
		Name:     "sleeper",
		Process:  func() (int, error) { return int(pid.Load()), nil },
		Interval: 20 * time.Millisecond, Failures: 2, Successes: 1,
	})
	s := waitChange(t, c, 10*time.Second, "healthy", state(HealthHealthy))
	if want := fmt.Sprintf("process %d running", first.Process.Pid); s.Checks[0].Output != want {
		t.Fatalf("output %q; want %q", s.Checks[0].Output, want)
	}

	_ = first.Process.Kill()
	_ = first.Wait()
	second := startSleep(t) // the "restarted" service with a new pid
	pid.Store(int64(second.Process.Pid))
	s = waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	wantOut := fmt.Sprintf("process %d exited; now pid %d (a restart counts as a failure)", first.Process.Pid, second.Process.Pid)
	if s.Output != wantOut {
		t.Fatalf("output %q; want %q", s.Output, wantOut)
	}
	// It stays failed although a process of the new pid runs.
	runs := c.Status().Checks[0].Runs
	s = waitStatus(t, c, 10*time.Second, "five more runs", func(s Summary) bool { return s.Checks[0].Runs >= runs+5 })
	if s.State != HealthUnhealthy || s.Checks[0].LastOK {
		t.Fatalf("after restart: %s lastOK=%v; want unhealthy, false", s.State, s.Checks[0].LastOK)
	}

	// Reset accepts the new process.
	if err := c.Reset("sleeper"); err != nil {
		t.Fatal(err)
	}
	s = waitChange(t, c, 10*time.Second, "healthy after Reset", state(HealthHealthy))
	if want := fmt.Sprintf("process %d running", second.Process.Pid); s.Checks[0].Output != want {
		t.Fatalf("output %q; want %q", s.Checks[0].Output, want)
	}
	if err := c.Reset("nope"); !errors.Is(err, ErrUnknownCheck) {
		t.Fatalf("Reset(nope) = %v; want ErrUnknownCheck", err)
	}
}

// TestProcessesCheckWatchesEvery: a check of several processes (a target
// with match: all) is healthy while every process it pinned runs, and fails
// naming the one that exited.
func TestProcessesCheckWatchesEvery(t *testing.T) {
	a, b := startSleep(t), startSleep(t)
	pids := []int{a.Process.Pid, b.Process.Pid}
	slices.Sort(pids)
	var mu sync.Mutex
	c := startChecker(t, noFlap, CheckSpec{
		Name: "sleepers",
		Processes: func() ([]int, error) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(pids), nil
		},
		Interval: 20 * time.Millisecond, Failures: 2, Successes: 1,
	})
	s := waitChange(t, c, 10*time.Second, "healthy", state(HealthHealthy))
	if want := fmt.Sprintf("processes %v running", pids); s.Checks[0].Output != want {
		t.Fatalf("output %q; want %q", s.Checks[0].Output, want)
	}
	_ = b.Process.Kill()
	_ = b.Wait()
	mu.Lock()
	pids = slices.DeleteFunc(pids, func(p int) bool { return p == b.Process.Pid })
	mu.Unlock()
	s = waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	if want := fmt.Sprintf("process %d exited; now pids [%d]", b.Process.Pid, a.Process.Pid); !strings.HasPrefix(s.Output, want) {
		t.Fatalf("output %q; want prefix %q", s.Output, want)
	}
}

func TestProcessCheckUnresolved(t *testing.T) {
	c := startChecker(t, noFlap, CheckSpec{
		Name:     "missing",
		Process:  func() (int, error) { return 0, errors.New("no process named sipd") },
		Interval: 20 * time.Millisecond, Failures: 1, Successes: 1,
	})
	s := waitChange(t, c, 10*time.Second, "unhealthy", state(HealthUnhealthy))
	if s.Output != "resolving process: no process named sipd" {
		t.Fatalf("output %q; want the resolver's error", s.Output)
	}
}

func TestFlappingIsDamped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ok")
	set := func(up bool) {
		t.Helper()
		if up {
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	set(true)
	const hold = 700 * time.Millisecond
	c := startChecker(t, FlapConfig{Changes: 3, Window: time.Minute, Hold: hold}, CheckSpec{
		Name: "flappy", Exec: toggleFileCheck(path), Interval: 20 * time.Millisecond, Failures: 1, Successes: 1,
	})
	lastOK := func(want bool) func(Summary) bool {
		return func(s Summary) bool { return s.Checks[0].Runs > 0 && s.Checks[0].LastOK == want }
	}
	waitStatus(t, c, 10*time.Second, "healthy", state(HealthHealthy))
	// Three changes are tolerated.
	for _, up := range []bool{false, true, false} {
		set(up)
		waitStatus(t, c, 10*time.Second, fmt.Sprintf("result ok=%v", up), lastOK(up))
	}
	if s := c.Status(); s.Damped || s.Checks[0].Damped {
		t.Fatalf("damped after 3 changes; want not yet")
	}
	// The fourth holds the check unhealthy although it now succeeds.
	set(true)
	s := waitStatus(t, c, 10*time.Second, "result ok", lastOK(true))
	recovered := time.Now()
	if s.State != HealthUnhealthy || !s.Checks[0].Damped || !strings.Contains(s.Output, "flapping") {
		t.Fatalf("after 4 changes: %s damped=%v output %q; want unhealthy, damped, flapping", s.State, s.Checks[0].Damped, s.Output)
	}
	s = waitChange(t, c, 10*time.Second, "healthy after the hold", state(HealthHealthy))
	if s.Damped || s.Checks[0].Damped {
		t.Fatalf("healthy but damped=%v/%v; want released", s.Damped, s.Checks[0].Damped)
	}
	t.Logf("released %v after the recovery was seen (hold %v)", time.Since(recovered), hold)
}

func TestCheckerConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  CheckerConfig
		want string
	}{
		{"no kind", CheckerConfig{Checks: []CheckSpec{{Name: "x"}}}, "exactly one"},
		{"two kinds", CheckerConfig{Checks: []CheckSpec{{Name: "x", Exec: "true", TCP: "a:1"}}}, "exactly one"},
		{"bad tcp", CheckerConfig{Checks: []CheckSpec{{Exec: "", TCP: "nohostport"}}}, "TCP"},
		{"bad url", CheckerConfig{Checks: []CheckSpec{{HTTP: "ftp://x"}}}, "HTTP"},
		{"negative failures", CheckerConfig{Checks: []CheckSpec{{Exec: "true", Failures: -1}}}, "Failures"},
		{"duplicate", CheckerConfig{Checks: []CheckSpec{{Name: "a", Exec: "true"}, {Name: "a", TCP: "x:1"}}}, "twice"},
		{"bad flap", CheckerConfig{Flap: FlapConfig{Changes: 2}}, "Window"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v; want ErrInvalidConfig naming %q", tt.name, err, tt.want)
		}
	}
	if err := DefaultCheckerConfig().Validate(); err != nil {
		t.Errorf("DefaultCheckerConfig().Validate() = %v; want nil", err)
	}
	d := CheckSpec{Exec: "true"}.WithDefaults()
	if d.Interval != time.Second || d.Timeout != time.Second || d.Failures != 3 || d.Successes != 2 || d.Name != "exec true" {
		t.Errorf("WithDefaults() = %+v; want 1s, 1s, 3, 2, %q", d, "exec true")
	}
	// One set of defaults: lpd.yaml's, whatever the interval.
	want := config.DefaultCheck()
	d = CheckSpec{Exec: "true", Interval: 20 * time.Millisecond}.WithDefaults()
	if d.Timeout != want.Timeout || d.Failures != want.Failures || d.Successes != want.Successes {
		t.Errorf("WithDefaults() with a 20ms interval = %+v; want config.DefaultCheck's timeout, failures, successes %+v", d, want)
	}
}

func TestNoChecksIsHealthy(t *testing.T) {
	c := startChecker(t, FlapConfig{})
	if s := c.Status(); !s.Healthy || s.State != HealthHealthy {
		t.Fatalf("no checks: %s healthy=%v; want healthy", s.State, s.Healthy)
	}
	if s := <-c.Changes(); !s.Healthy {
		t.Fatalf("first published summary %s; want the initial healthy one", s.State)
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("ü", 300)
	got := clip(long)
	if len(got) > maxOutput || !strings.HasSuffix(got, ellipsis) || !strings.HasPrefix(long, strings.TrimSuffix(got, ellipsis)) {
		t.Fatalf("clip(600 bytes) = %d bytes %q; want <= %d, a prefix with %q", len(got), got, maxOutput, ellipsis)
	}
	if got := clip("a\nb\xff"); got != "a b?" {
		t.Fatalf("clip = %q; want %q", got, "a b?")
	}
	var tb tailBuffer
	_, _ = tb.Write([]byte(strings.Repeat("x", 10000) + "\nlast line\n\n  \n"))
	if got := tb.lastLine(); got != "last line" {
		t.Fatalf("lastLine() = %q; want %q", got, "last line")
	}
}
