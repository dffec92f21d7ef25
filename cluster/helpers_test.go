package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lp/config"
	"lp/fsm"
	"lp/heartbeat"
)

// fakePatcher records patches per pid in memory: the engine's contract
// without ptrace, for tests of the control plane alone.
type fakePatcher struct {
	mu      sync.Mutex
	patches map[int][]PatchStatus
	failOn  map[string]bool // module base names whose apply fails
	applied []string        // "pid:id" in order of application
	opts    []string        // "apply|revert pid:id mode/consistency/timeout", in order
}

func newFakePatcher() *fakePatcher {
	return &fakePatcher{patches: map[int][]PatchStatus{}, failOn: map[string]bool{}}
}

func (f *fakePatcher) Apply(_ context.Context, pid int, _ string, data []byte, o PatchOptions) error {
	id := string(data) // fake modules hold their id
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts = append(f.opts, fmt.Sprintf("apply %d:%s %s/%s/%v", pid, id, o.Mode, o.Consistency, o.Timeout))
	if f.failOn[id] {
		return fmt.Errorf("fake failure applying %s", id)
	}
	for _, p := range f.patches[pid] {
		if p.ID == id && p.State == "active" {
			return nil
		}
	}
	f.patches[pid] = append(f.patches[pid], PatchStatus{ID: id, State: "active"})
	f.applied = append(f.applied, fmt.Sprintf("%d:%s", pid, id))
	return nil
}

func (f *fakePatcher) List(pid int) ([]PatchStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.patches[pid]), nil
}

func (f *fakePatcher) Revert(_ context.Context, pid int, id string, o PatchOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts = append(f.opts, fmt.Sprintf("revert %d:%s %s/%s/%v", pid, id, o.Mode, o.Consistency, o.Timeout))
	ps := f.patches[pid]
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].State == "active" {
			ps[i].State = "reverted"
			if ps[i].ID == id {
				return nil
			}
		}
	}
	return fmt.Errorf("patch %s is not active in pid %d", id, pid)
}

func (f *fakePatcher) active(pid int) []string {
	l, _ := f.List(pid)
	return activeIDs(l)
}

// testLogger sends logs to t.Log when -v is given, until the test ends
// (memberlist's timers may still log for a moment after Shutdown).
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// startSleeper starts a process that only waits, and writes its pidfile.
func startSleeper(t testing.TB, pidfile string) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sleep: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

type nodeSpec struct {
	name   string
	pair   string
	role   string
	server bool
}

// testCluster is a set of in-process nodes on loopback with real TCP raft,
// real gossip and a fake patcher.
type testCluster struct {
	t       testing.TB
	nodes   map[string]*Node
	cfgs    map[string]Config
	patcher *fakePatcher
	pids    map[string]int
}

func startTestCluster(t testing.TB, specs []nodeSpec, tune func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, nodes: map[string]*Node{}, cfgs: map[string]Config{}, patcher: newFakePatcher(), pids: map[string]int{}}
	servers := 0
	for _, s := range specs {
		if s.server {
			servers++
		}
	}
	var join []string
	dir := t.TempDir()
	for _, s := range specs {
		n := config.DefaultNode()
		n.Node, n.Pair, n.Role, n.Server = s.name, s.pair, s.role, s.server
		n.DataDir = filepath.Join(dir, s.name)
		n.Bind = "127.0.0.1"
		if s.server {
			n.BootstrapExpect = servers
		}
		n.Join = join
		if s.pair != "" {
			pidfile := filepath.Join(dir, s.name+".pid")
			tc.pids[s.name] = startSleeper(t, pidfile)
			n.Targets = map[string]config.Target{"svc": {PIDFile: pidfile}}
		}
		cfg := FromNode(&n)
		cfg.APIPort, cfg.RaftPort, cfg.GossipPort = 0, 0, 0
		cfg.Patcher = tc.patcher
		cfg.Logger = testLogger(t).With("n", s.name)
		cfg.RetryBackoff = 300 * time.Millisecond
		if raceEnabled {
			// The race detector slows raft's goroutines several times:
			// give its leader the same margin over its heartbeats as the
			// defaults give an uninstrumented lpd.
			cfg.HeartbeatTimeout *= 2
			cfg.ElectionTimeout *= 2
			cfg.LeaderLeaseTimeout *= 2
			// and the failure detector likewise (every member of the
			// test cluster agrees: the same custom timing).
			cfg.Gossip = heartbeat.Custom(300*time.Millisecond, 150*time.Millisecond, 3)
		}
		if tune != nil {
			tune(&cfg)
		}
		tc.start(s.name, cfg)
		if len(join) == 0 {
			join = []string{tc.nodes[s.name].GossipAddr()}
		}
	}
	return tc
}

func (tc *testCluster) start(name string, cfg Config) {
	tc.t.Helper()
	node, err := Start(cfg)
	if err != nil {
		tc.t.Fatalf("Start(%s): %v", name, err)
	}
	tc.nodes[name], tc.cfgs[name] = node, cfg
	tc.t.Cleanup(func() { node.Kill() })
}

// leader waits for a leader and returns it.
func (tc *testCluster) leader() *Node {
	tc.t.Helper()
	var l *Node
	tc.waitFor(10*time.Second, "a leader", func() bool {
		for _, n := range tc.nodes {
			if n.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (tc *testCluster) waitFor(d time.Duration, what string, cond func() bool) {
	tc.t.Helper()
	d = waitBudget(d)
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tc.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// registered waits until every node is registered, alive and healthy in
// every live node's replica.
func (tc *testCluster) registered() {
	tc.t.Helper()
	tc.registeredWithin(15 * time.Second)
}

// registeredWithin is registered with its own budget, for large clusters.
func (tc *testCluster) registeredWithin(d time.Duration) {
	tc.t.Helper()
	tc.waitFor(d, "every node registered", func() bool {
		// View, not State: a copy of every replica every 20 ms is a load
		// of its own in a large cluster (and holds off each FSM's Apply).
		for _, n := range tc.nodes {
			all := true
			n.fsm.View(func(s *fsm.State) {
				for name := range tc.nodes {
					nd, ok := s.Nodes[name]
					if !ok || nd.Status != fsm.StatusAlive || !nd.Healthy {
						all = false
						return
					}
				}
			})
			if !all {
				return false
			}
		}
		return true
	})
}
