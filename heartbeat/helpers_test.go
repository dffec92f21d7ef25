package heartbeat

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lp/config"
	"lp/internal/sched"
)

// The test binary doubles as a tiny memberlist node: with childEnv set it
// runs one member (name from childEnv, peers from childJoinEnv, timing
// "fast" or "default" from childTimingEnv), prints "READY host:port" and
// serves until its stdin closes.
const (
	childEnv       = "LP_HEARTBEAT_CHILD"
	childJoinEnv   = "LP_HEARTBEAT_CHILD_JOIN"
	childTimingEnv = "LP_HEARTBEAT_CHILD_TIMING"
)

func TestMain(m *testing.M) {
	// The members in this process (and in child members) gossip at lpd's
	// default priority, as they would in lpd, so that a busy machine
	// delays them no more than it delays lpd. Without the privilege this
	// changes nothing.
	_, _, stop, _ := sched.Raise(sched.Priority{Nice: config.DefaultNice}, nil)
	defer stop()
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(runChild(name))
	}
	os.Exit(m.Run())
}

func runChild(name string) int {
	cfg := Config{
		Name:     name,
		BindAddr: "127.0.0.1",
		Timing:   timingByName(os.Getenv(childTimingEnv)),
	}
	if j := os.Getenv(childJoinEnv); j != "" {
		cfg.Join = strings.Split(j, ",")
	}
	m, err := Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	go func() {
		for range m.Events() {
		}
	}()
	fmt.Printf("READY %s\n", m.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it or dies
	_ = m.Shutdown()
	return 0
}

func timingByName(s string) Timing {
	if s == "default" {
		return MemberlistDefaultLAN()
	}
	return testTiming()
}

// testTiming is LANFast with a quicker join retry.
func testTiming() Timing {
	t := LANFast()
	t.JoinRetryInterval = 200 * time.Millisecond
	return t
}

type child struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.WriteCloser
}

// startChild starts the test binary as a member that joins join.
func startChild(tb testing.TB, name, join, timing string) *child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+name, childJoinEnv+"="+join, childTimingEnv+"="+timing)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting child member: %v", err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	tb.Cleanup(func() {
		_ = c.cmd.Process.Kill() // SIGKILL works on a stopped process too
		_ = c.stdin.Close()
		_ = c.cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, "READY ")
		if !ok {
			tb.Fatalf("child said %q; want READY host:port", l)
		}
		c.addr = addr
	case <-time.After(30 * time.Second):
		tb.Fatal("child member did not report READY within 30s")
	}
	return c
}

func (c *child) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := syscall.Kill(c.cmd.Process.Pid, sig); err != nil {
		tb.Fatalf("kill(%d, %v): %v", c.cmd.Process.Pid, sig, err)
	}
}

// testLogger logs warnings and errors (everything with LP_TEST_VERBOSE=1)
// to t.Log until the test ends; memberlist may log after Shutdown returns.
func testLogger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	level := slog.LevelWarn
	if os.Getenv("LP_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// startMember starts an in-process member on 127.0.0.1 with a free port.
func startMember(tb testing.TB, name string, join []string, meta Meta) *Membership {
	tb.Helper()
	return startMemberTiming(tb, name, join, meta, testTiming())
}

func startMemberTiming(tb testing.TB, name string, join []string, meta Meta, timing Timing) *Membership {
	tb.Helper()
	cfg := Config{Name: name, BindAddr: "127.0.0.1", Join: join, Meta: meta, Timing: timing}
	if _, bench := tb.(*testing.B); !bench {
		// Benchmarks print their logs even when they pass; keep them to
		// the figures.
		cfg.Logger = testLogger(tb)
	}
	m, err := Start(cfg)
	if err != nil {
		tb.Fatalf("Start(%s): %v", name, err)
	}
	tb.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// watcher records every event of one member.
type watcher struct {
	mu  sync.Mutex
	evs []Event
}

func watch(m *Membership) *watcher {
	w := &watcher{}
	go func() {
		for e := range m.Events() {
			w.mu.Lock()
			w.evs = append(w.evs, e)
			w.mu.Unlock()
		}
	}()
	return w
}

// mark returns a position; waitFor(from) only looks at later events.
func (w *watcher) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.evs)
}

func (w *watcher) events(from int) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Event(nil), w.evs[from:]...)
}

// waitFor returns the first event at or after position from that matches,
// failing the test after timeout.
func (w *watcher) waitFor(tb testing.TB, from int, timeout time.Duration, what string, match func(Event) bool) (Event, int) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for i, e := range w.events(from) {
			if match(e) {
				return e, from + i
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no %s event within %v; got %s", what, timeout, describe(w.events(from)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func is(kind EventKind, node string) func(Event) bool {
	return func(e Event) bool { return e.Kind == kind && e.Node == node }
}

func describe(evs []Event) string {
	var b strings.Builder
	b.WriteString("[")
	for i, e := range evs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%s", e.Node, e.Kind)
	}
	b.WriteString("]")
	return b.String()
}

// waitMembers waits until m sees want (name -> state).
func waitMembers(tb testing.TB, m *Membership, timeout time.Duration, want map[string]MemberState) []Member {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := m.Members()
		ok := true
		for name, st := range want {
			found := false
			for _, mb := range got {
				if mb.Name == name && mb.State == st {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s sees %+v after %v; want states %v", m.LocalName(), got, timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
