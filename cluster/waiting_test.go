package cluster

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
)

// TestPlanWaitingNamesTheDeadNode: a plan submitted while its pair's
// standby is dead stays pending and says so, on the leader and on a
// follower, through the API (plan and plan list) and through the real
// lpctl (plan show, plan watch); once the standby is back the reason
// clears and the plan completes.
func TestPlanWaitingNamesTheDeadNode(t *testing.T) {
	buildFixtures(t)
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	const victim = "c-standby"
	old := tc.nodes[victim]
	cfg := tc.cfgs[victim]
	// Back on the same addresses later, as a restarted lpd would be.
	cfg.APIPort, cfg.RaftPort, cfg.GossipPort = portOf(t, old.APIAddr()), portOf(t, old.RaftAddr()), portOf(t, old.GossipAddr())
	old.Kill()
	delete(tc.nodes, victim)
	tc.waitFor(time.Minute, victim+" dead in the replicated state", func() bool {
		for _, n := range tc.nodes {
			if n.IsLeader() {
				return n.State().Nodes[victim].Status == fsm.StatusDead
			}
		}
		return false
	})
	id := tc.submit("fix1", 300*time.Millisecond, nil)
	const why = "node " + victim + " is dead"

	ctx := t.Context()
	for name, n := range tc.nodes {
		role := "follower"
		if n.IsLeader() {
			role = "leader"
		}
		cl := api.NewClient(n.APIAddr())
		var d api.PlanDetail
		var list []api.PlanDetail
		tc.waitFor(30*time.Second, "plan "+id+" waiting on "+name, func() bool {
			var err error
			if d, err = cl.Plan(ctx, id); err != nil || d.Waiting != why {
				return false
			}
			list, err = cl.Plans(ctx)
			return err == nil && len(list) == 1 && list[0].Waiting == why
		})
		if d.Plan.State != fsm.PlanPending {
			t.Errorf("%s (%s): plan %s is %s; want pending while %s is dead", name, role, id, d.Plan.State, victim)
		}
	}

	// lpctl, the real binary, against the active's lpd.
	addr := "http://" + tc.nodes["b-active"].APIAddr()
	ctl := func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, built.ctl, append([]string{"--addr", addr}, args...)...)
	}
	out, err := ctl(ctx, "plan", "show", id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nwaiting: "+why+"\n") {
		t.Errorf("lpctl plan show %s: %v\n%s\nwant the line \"waiting: %s\"", id, err, out, why)
	}
	out, err = ctl(ctx, "plan", "list").CombinedOutput()
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err != nil || len(lines) != 2 ||
		!strings.HasSuffix(lines[0], "WAITING") || !strings.HasPrefix(lines[1], id+" ") || !strings.HasSuffix(lines[1], "  "+why) {
		t.Errorf("lpctl plan list: %v\n%s\nwant plan %s with %q in the last column, WAITING", err, out, id, why)
	}
	wctx, cancel := context.WithTimeout(ctx, waitBudget(2*time.Minute))
	defer cancel()
	watch := ctl(wctx, "plan", "watch", id)
	var watched lockedBuffer
	watch.Stdout, watch.Stderr = &watched, &watched
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	// The watch has seen the plan wait before the standby returns.
	line := " plan " + id + " waiting: " + why + "\n"
	tc.waitFor(30*time.Second, "plan watch printing why the plan waits", func() bool {
		select {
		case err := <-done:
			t.Fatalf("plan watch ended early: %v\n%s", err, watched.String())
		default:
		}
		return strings.Contains(watched.String(), line)
	})

	tc.start(victim, cfg)
	p := tc.waitPlan(id, fsm.PlanCompleted, time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("plan watch of the completed plan: %v\n%s", err, watched.String())
	}
	s := watched.String()
	t.Logf("lpctl plan watch %s:\n%s", id, s)
	if n := strings.Count(s, line); n != 1 {
		t.Errorf("plan watch printed %q %d times; want once (per change, not per answer)\n%s", line, n, s)
	}
	if !strings.HasSuffix(s, "plan "+id+" completed\n") {
		t.Errorf("plan watch output ends %q; want the plan completed", s)
	}
	d, err := api.NewClient(addr).Plan(ctx, id)
	if err != nil || d.Waiting != "" {
		t.Errorf("completed plan %s (%s): waiting %q, %v; want none", id, p.State, d.Waiting, err)
	}
	checkStandbyFirst(t, tc.leader().State(), id)
}

// lockedBuffer is a bytes.Buffer a child process's output is copied into
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
