package cluster

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
)

// changes returns the successive values the service printed, each change
// once: [42 1041] for a service patched once and never touched again.
func (s *service) changes() []int {
	f, err := os.Open(s.out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "v "))
		if err != nil || !strings.HasPrefix(sc.Text(), "v ") {
			continue // a torn last line
		}
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}

// logCount counts the lines of a node's lpd log that contain s.
func (c *e2eCluster) logCount(name, s string) int {
	data, _ := os.ReadFile(c.procs[name].log)
	return strings.Count(string(data), s)
}

// agentActing is what an agent logs once its replica is confirmed current
// and every target's record is reported: from then on it may change them.
const agentActing = "targets reported as found; reconciling from now on"

// restartLPD stops a node's lpd with sig (SIGTERM: a graceful leave;
// SIGKILL: a crash), starts it again, and waits until its agent acts again
// and the witness sees it alive.
func (c *e2eCluster) restartLPD(sig syscall.Signal, names ...string) {
	c.t.Helper()
	before := map[string]int{}
	for _, name := range names {
		before[name] = c.logCount(name, agentActing)
		c.signal(name, sig)
	}
	for _, name := range names {
		p := c.procs[name]
		p.cmd.Wait()
		p.running = false
	}
	for _, name := range names {
		c.start(name)
	}
	for _, name := range names {
		c.waitFor(60*time.Second, name+"'s agent acting again", func() bool {
			return c.logCount(name, agentActing) > before[name]
		})
		c.waitAlive(name)
	}
}

// fillLog commits n raft entries that change nothing a test looks at:
// observations of a target no node has, reported for the witness.
func (c *e2eCluster) fillLog(t *testing.T, n int) {
	t.Helper()
	// Sixteen at a time (raft commits them in batches); a busy machine
	// may see an election now and then: that request is sent again.
	const workers = 16
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := w; i < n && err == nil; i += workers {
				obs := api.ObservedRequest{Node: "w", Target: "filler", Error: "filler " + strconv.Itoa(i)}
				deadline := time.Now().Add(30 * time.Second)
				for {
					err = c.client("w").Do(context.Background(), http.MethodPost, api.PathObserved, obs, nil)
					if err == nil || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatalf("filling the log: %v", err)
		}
	}
}

// holdChanges checks, for as long as the agents take for several
// reconciliations, that no service's output changes from want.
func (c *e2eCluster) holdChanges(t *testing.T, what string, want map[string][]int) {
	t.Helper()
	// An agent acts within one AgentInterval (200ms by default) of
	// reporting: ten of them, and the reports round-tripping through the
	// leader, is where a wrong revert would show.
	deadline := time.Now().Add(3 * time.Second)
	for {
		for name, w := range want {
			if got := c.procs[name].svc.changes(); !slices.Equal(got, w) {
				t.Fatalf("%s: %s's service printed %v; want %v (no revert, no re-apply)", what, name, got, w)
			}
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRestartNeverTouchesTargets restarts lpd processes in every way with
// patches active, and checks the targets' own output: no target ever sees
// its patch reverted or applied again.
func TestRestartNeverTouchesTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five lpd processes")
	}
	// memberlist's LAN timing: a loaded machine does not make a node
	// suspect (that would roll the plan back); restarts do not need speed.
	c := startE2E(t, "--gossip-timing", "memberlist-lan")
	all := []string{"a1", "b1", "a2", "b2"}
	// A long log before the plan: a node that replays it, or receives it
	// after losing its data_dir, spends a while with a replica that knows
	// its registration but not yet its patches.
	c.fillLog(t, 1500)
	path := c.writePlan("plan.yaml", "name: fix-answer\npatch: fix.so\ntarget: svc\ntrial: 1s\nprogress_deadline: 2m\n")
	out, errOut, code := c.ctl("w", "plan", "submit", path, "--wait")
	if code != 0 {
		t.Fatalf("plan submit --wait: exit %d; stderr %q; stdout %q", code, errOut, out)
	}
	want := map[string][]int{}
	for _, n := range all {
		want[n] = []int{42, 1041}
	}
	c.holdChanges(t, "after the plan", want)
	reverts := func() int {
		k := 0
		for _, n := range all {
			k += c.logCount(n, `msg="reverting patch"`) + c.logCount(n, `msg="applying patch"`)
		}
		return k
	}
	ops := reverts()

	for _, name := range []string{"w", "a1", "b1", "a2", "b2"} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			what := "restart of " + name + " (" + sig.String() + ")"
			c.restartLPD(sig, name)
			c.holdChanges(t, what, want)
		}
	}
	c.restartLPD(syscall.SIGKILL, "w", "a1", "b1")
	c.holdChanges(t, "kill -9 of the three servers at once", want)
	c.restartLPD(syscall.SIGTERM, "w", "a1", "b1")
	c.holdChanges(t, "SIGTERM of the three servers at once", want)

	// A node whose data_dir was lost: a non-voter starts empty; a voter
	// must be started once with --rejoin-as-new (lpd refuses otherwise).
	for _, wipe := range []struct{ name, flag string }{{"a2", ""}, {"a1", "--rejoin-as-new"}} {
		t.Run("data_dir of "+wipe.name+" lost: its patches stay", func(t *testing.T) {
			p := c.procs[wipe.name]
			c.kill(wipe.name)
			if err := os.RemoveAll(filepath.Join(c.dir, wipe.name+".data")); err != nil {
				t.Fatal(err)
			}
			before := c.logCount(wipe.name, agentActing)
			args := p.args
			if wipe.flag != "" {
				p.args = append(slices.Clone(args), wipe.flag)
			}
			c.start(wipe.name)
			p.args = args
			c.waitFor(90*time.Second, wipe.name+"'s agent acting again", func() bool { return c.logCount(wipe.name, agentActing) > before })
			c.waitAlive(wipe.name)
			c.holdChanges(t, "restart of "+wipe.name+" without its data_dir", want)
			st, err := c.client(wipe.name).Status(context.Background())
			if err != nil || st.Plans != 1 {
				t.Errorf("%s after losing its data_dir: status %+v, %v; want the cluster's one plan", wipe.name, st, err)
			}
		})
	}
	if got := reverts(); got != ops {
		t.Errorf("agents logged %d patch operations during the restarts; want none", got-ops)
	}
}
