package heartbeat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"lp/config"
)

// CheckSpec is one health check. Exactly one of Exec, TCP, HTTP and Process
// is set.
type CheckSpec struct {
	// Name identifies the check in summaries; empty derives one from the
	// kind and target ("tcp 127.0.0.1:5060").
	Name string
	// Exec runs through "sh -c"; exit status 0 is healthy. Its last line of
	// output (stdout and stderr) is kept.
	Exec string
	// TCP is a host:port; a completed connect is healthy.
	TCP string
	// HTTP is a URL; a GET answered 2xx is healthy. Proxies from the
	// environment are not used.
	HTTP string
	// Process resolves the target's pid. The first successful resolution
	// pins that process (pidfd); the check is healthy while that very
	// process runs. Once it has exited the check stays failed, even when
	// Process now resolves a new pid: a restart counts as a failure (see
	// Checker.Reset). It is called on the check's goroutine and must return
	// promptly (read a pidfile, scan /proc); the Timeout does not bound it.
	Process func() (int, error)
	// Processes is Process for a target of several processes (match: all):
	// the first successful resolution pins every process it returns, and
	// the check is healthy while each of them runs. At most one of
	// Process and Processes is set.
	Processes func() ([]int, error)

	// Zero fields take config.DefaultCheck's values (WithDefaults).
	Interval  time.Duration // between runs; 0 means 1s
	Timeout   time.Duration // per run, independent of Interval; 0 means 1s
	Failures  int           // consecutive failures before unhealthy; 0 means 3
	Successes int           // consecutive successes before healthy; 0 means 2
}

// Check kinds, as in CheckStatus.Kind.
const (
	KindExec    = "exec"
	KindTCP     = "tcp"
	KindHTTP    = "http"
	KindProcess = "process"
)

// Kind returns the check's kind, or "" when not exactly one is set.
func (s CheckSpec) Kind() string {
	var kinds []string
	if s.Exec != "" {
		kinds = append(kinds, KindExec)
	}
	if s.TCP != "" {
		kinds = append(kinds, KindTCP)
	}
	if s.HTTP != "" {
		kinds = append(kinds, KindHTTP)
	}
	if s.Process != nil {
		kinds = append(kinds, KindProcess)
	}
	if s.Processes != nil {
		kinds = append(kinds, KindProcess)
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// WithDefaults returns s with zero fields set to their defaults, which are
// lpd.yaml's (config.DefaultCheck: interval 1s, timeout 1s, failures 3,
// successes 2): one set of defaults for a check however it is configured.
func (s CheckSpec) WithDefaults() CheckSpec {
	d := config.DefaultCheck()
	if s.Interval == 0 {
		s.Interval = d.Interval
	}
	if s.Timeout == 0 {
		s.Timeout = d.Timeout
	}
	if s.Failures == 0 {
		s.Failures = d.Failures
	}
	if s.Successes == 0 {
		s.Successes = d.Successes
	}
	if s.Name == "" {
		switch s.Kind() {
		case KindExec:
			s.Name = "exec " + s.Exec
		case KindTCP:
			s.Name = "tcp " + s.TCP
		case KindHTTP:
			s.Name = "http " + s.HTTP
		case KindProcess:
			s.Name = "process"
		}
	}
	return s
}

// Validate reports the first field outside its limits (after WithDefaults).
func (s CheckSpec) Validate() error {
	bad := func(field string, v any, limit string) error {
		return fmt.Errorf("%w: check %q: %s = %v; want %s", ErrInvalidConfig, s.Name, field, v, limit)
	}
	if s.Kind() == "" {
		return fmt.Errorf("%w: check %q: want exactly one of exec, tcp, http, process", ErrInvalidConfig, s.Name)
	}
	switch {
	case s.Name == "":
		return bad("Name", `""`, "a name")
	case s.Interval <= 0:
		return bad("Interval", s.Interval, "> 0")
	case s.Timeout <= 0:
		return bad("Timeout", s.Timeout, "> 0")
	case s.Failures < 1:
		return bad("Failures", s.Failures, ">= 1")
	case s.Successes < 1:
		return bad("Successes", s.Successes, ">= 1")
	}
	if s.TCP != "" {
		if _, _, err := net.SplitHostPort(s.TCP); err != nil {
			return bad("TCP", s.TCP, "host:port")
		}
	}
	if s.HTTP != "" && !strings.HasPrefix(s.HTTP, "http://") && !strings.HasPrefix(s.HTTP, "https://") {
		return bad("HTTP", s.HTTP, "an http:// or https:// URL")
	}
	return nil
}

// maxOutput bounds an output line kept in a status.
const maxOutput = 256

// result is one run of one check.
type result struct {
	idx    int
	ok     bool
	output string
	at     time.Time
}

// prober runs one check; it is owned by that check's goroutine.
type prober struct {
	spec   CheckSpec
	client *http.Client // http checks
	pins   []*pinned    // process checks: the processes pinned
}

func newProber(s CheckSpec) *prober {
	p := &prober{spec: s}
	if s.HTTP != "" {
		p.client = &http.Client{Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
		}}
	}
	return p
}

func (p *prober) close() {
	p.unpin()
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
}

func (p *prober) run(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	switch {
	case p.spec.Exec != "":
		return runExec(ctx, p.spec.Exec, p.spec.Timeout)
	case p.spec.TCP != "":
		return runTCP(ctx, p.spec.TCP)
	case p.spec.HTTP != "":
		return p.runHTTP(ctx)
	default:
		return p.runProcess()
	}
}

// runExec runs cmdline through sh -c in its own process group; on timeout
// or cancellation the whole group is killed.
func runExec(ctx context.Context, cmdline string, timeout time.Duration) (bool, string) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that escaped the group could hold the output pipe open;
	// do not wait for it longer than this.
	cmd.WaitDelay = time.Second
	var out tailBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if cmd.Process != nil {
		// Kill what the command left running in its group. While the group
		// has members its id stays allocated (the kernel does not reuse a
		// pid that is still a process group id); with none left this is
		// ESRCH, unless a new process took that pid and made itself a
		// group leader in the microseconds since the reap.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	line := out.lastLine()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return false, clip(joinNonEmpty(fmt.Sprintf("timed out after %v", timeout), line))
	case ctx.Err() != nil:
		return false, "canceled"
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if line == "" {
				line = ee.ProcessState.String() // "exit status 1"
			}
			return false, clip(line)
		}
		return false, clip(err.Error())
	}
	return true, clip(line)
}

func runTCP(ctx context.Context, addr string) (bool, string) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, clip(err.Error())
	}
	_ = c.Close()
	return true, "connected to " + addr
}

func (p *prober) runHTTP(ctx context.Context) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.spec.HTTP, nil)
	if err != nil {
		return false, clip(err.Error())
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false, clip(err.Error())
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	msg := "HTTP " + resp.Status
	return resp.StatusCode >= 200 && resp.StatusCode < 300, clip(msg)
}

// pinned is the process a process check watches.
type pinned struct {
	pid    int
	fd     int
	exited bool
}

func (p *pinned) close() { _ = unix.Close(p.fd) }

// unpin closes the pidfds of the pinned processes.
func (p *prober) unpin() {
	for _, q := range p.pins {
		q.close()
	}
	p.pins = nil
}

// pinnedPids returns the pids of the pinned processes.
func (p *prober) pinnedPids() []int {
	pids := make([]int, len(p.pins))
	for i, q := range p.pins {
		pids[i] = q.pid
	}
	return pids
}

// resolve returns the pids the check's Process or Processes names.
func (p *prober) resolve() ([]int, error) {
	if p.spec.Processes != nil {
		return p.spec.Processes()
	}
	pid, err := p.spec.Process()
	if err != nil {
		return nil, err
	}
	return []int{pid}, nil
}

// runProcess pins the processes on the first successful resolution, then
// reports whether each is still running (its pidfd is not readable).
func (p *prober) runProcess() (bool, string) {
	if p.pins == nil {
		pins, err := pinProcesses(p.resolve)
		if err != nil {
			return false, clip(err.Error())
		}
		p.pins = pins
	}
	for _, q := range p.pins {
		if q.exited {
			continue
		}
		fds := []unix.PollFd{{Fd: int32(q.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, clip(fmt.Sprintf("polling pidfd of pid %d: %v", q.pid, err))
		}
		if n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			q.exited = true
		}
	}
	for _, q := range p.pins {
		if !q.exited {
			continue
		}
		msg := fmt.Sprintf("process %d exited", q.pid)
		if pids, err := p.resolve(); err == nil && len(pids) > 0 && !slices.Equal(pids, p.pinnedPids()) {
			if len(p.pins) == 1 && len(pids) == 1 {
				msg += fmt.Sprintf("; now pid %d (a restart counts as a failure)", pids[0])
			} else {
				msg += fmt.Sprintf("; now pids %v (a restart counts as a failure)", pids)
			}
		}
		return false, msg
	}
	if len(p.pins) == 1 {
		return true, fmt.Sprintf("process %d running", p.pins[0].pid)
	}
	return true, fmt.Sprintf("processes %v running", p.pinnedPids())
}

// pinProcesses resolves the pids and opens a pidfd on each. The pids are
// resolved again after the opens: if they still name the same pids, the
// pidfds refer to the processes the resolver means (a pid reused between
// resolve and open would have to be resolved again to the very same
// number).
func pinProcesses(resolve func() ([]int, error)) ([]*pinned, error) {
	pids, err := resolve()
	if err != nil {
		return nil, fmt.Errorf("resolving process: %w", err)
	}
	if len(pids) == 0 {
		return nil, errors.New("resolving process: no process")
	}
	var pins []*pinned
	fail := func(err error) ([]*pinned, error) {
		for _, q := range pins {
			q.close()
		}
		return nil, err
	}
	for _, pid := range pids {
		if pid <= 0 {
			return fail(fmt.Errorf("resolving process: got pid %d", pid))
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return fail(fmt.Errorf("opening pidfd of pid %d: %w", pid, err))
		}
		pins = append(pins, &pinned{pid: pid, fd: fd})
	}
	again, err := resolve()
	if err != nil || !slices.Equal(again, pids) {
		if err == nil && len(pids) == 1 && len(again) == 1 {
			return fail(fmt.Errorf("process %d changed while pinning it (now %d, %v)", pids[0], again[0], err))
		}
		return fail(fmt.Errorf("processes %v changed while pinning them (now %v, %v)", pids, again, err))
	}
	return pins, nil
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

const tailSize = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= tailSize {
		p = p[len(p)-tailSize:]
	}
	t.b = append(t.b, p...)
	if len(t.b) > tailSize {
		t.b = append(t.b[:0], t.b[len(t.b)-tailSize:]...)
	}
	return n, nil
}

// lastLine returns the last non-blank line.
func (t *tailBuffer) lastLine() string {
	lines := bytes.Split(t.b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(string(lines[i])); l != "" {
			return l
		}
	}
	return ""
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}

// clip bounds s to maxOutput bytes at a rune boundary and makes it valid
// UTF-8 on one line.
func clip(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\n", " "), "?")
	if len(s) <= maxOutput {
		return s
	}
	cut := maxOutput - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
