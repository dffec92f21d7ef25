package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lp/fsm"
)

// inmemTransports returns one connected in-memory raft transport per name.
func inmemTransports(names []string) map[string]raft.Transport {
	ts := map[string]*raft.InmemTransport{}
	for _, n := range names {
		_, t := raft.NewInmemTransportWithTimeout("", 200*time.Millisecond)
		ts[n] = t
	}
	out := map[string]raft.Transport{}
	for a, ta := range ts {
		for b, tb := range ts {
			if a != b {
				ta.Connect(tb.LocalAddr(), tb)
			}
		}
		out[a] = ta
	}
	return out
}

// TestLeaderChangeResumesPlan kills the leader (no graceful leave) while a
// plan's standby is in trial; the new leader must resume the plan where it
// stood: the same trial (its absolute deadline is in the FSM), no repeated
// phase, each node patched once.
func TestLeaderChangeResumesPlan(t *testing.T) {
	specs := []nodeSpec{
		{name: "w1", role: "witness", server: true},
		{name: "w2", role: "witness", server: true},
		{name: "w3", role: "witness", server: true},
		{name: "x-active", pair: "p1", role: "active"},
		{name: "y-standby", pair: "p1", role: "standby"},
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	trans := inmemTransports(names)
	tc := startTestCluster(t, specs, func(c *Config) {
		c.RaftTransport = trans[c.Node.Node]
		c.InmemStore = true
	})
	tc.registered()
	id := tc.submit("fix1", 1500*time.Millisecond, nil)
	var before fsm.Plan
	tc.waitFor(20*time.Second, "standby trial", func() bool {
		before = tc.leader().State().Plans[id]
		return before.Phase == fsm.PhaseStandbyTrial
	})
	old := tc.leader()
	old.Kill()
	delete(tc.nodes, old.Name())
	after := tc.waitPlan(id, fsm.PlanCompleted, 30*time.Second)
	if nl := tc.leader(); nl.Name() == old.Name() {
		t.Fatalf("leader is still %s", old.Name())
	}
	sb, _ := before.Step("y-standby")
	sa, _ := after.Step("y-standby")
	if !sa.TrialStarted.Equal(sb.TrialStarted) {
		t.Errorf("standby trial started at %v before and %v after the leader change; want the same trial resumed", sb.TrialStarted, sa.TrialStarted)
	}
	if sa.TrialPassed.Sub(sa.TrialStarted) < 1500*time.Millisecond {
		t.Errorf("standby trial lasted %v; want at least 1.5s", sa.TrialPassed.Sub(sa.TrialStarted))
	}
	phases := map[string]int{}
	for _, e := range tc.leader().State().PlanHistory(id) {
		if e.Kind == fsm.EventPlanPhase {
			phases[e.To]++
		}
	}
	for ph, k := range phases {
		if k != 1 {
			t.Errorf("phase %s entered %d times; want once", ph, k)
		}
	}
	if len(phases) != 4 {
		t.Errorf("phases entered: %v; want the 4 phases of one pair", phases)
	}
	tc.patcher.mu.Lock()
	applied := fmt.Sprint(tc.patcher.applied)
	n := len(tc.patcher.applied)
	tc.patcher.mu.Unlock()
	if n != 2 {
		t.Errorf("patches applied: %s; want one per pair node", applied)
	}
	checkStandbyFirst(t, tc.leader().State(), id)
}

// TestPartitionedLeaderCannotMovePlan cuts the leader off from the other
// raft servers while a plan's standby is in trial: the majority elects a new
// leader that resumes the plan; the old leader, alone, commits nothing; when
// the partition heals the history holds each phase once.
func TestPartitionedLeaderCannotMovePlan(t *testing.T) {
	specs := []nodeSpec{
		{name: "w1", role: "witness", server: true},
		{name: "w2", role: "witness", server: true},
		{name: "w3", role: "witness", server: true},
		{name: "x-active", pair: "p1", role: "active"},
		{name: "y-standby", pair: "p1", role: "standby"},
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	trans := inmemTransports(names)
	tc := startTestCluster(t, specs, func(c *Config) {
		c.RaftTransport = trans[c.Node.Node]
		c.InmemStore = true
	})
	tc.registered()
	id := tc.submit("fix1", 1500*time.Millisecond, nil)
	tc.waitFor(20*time.Second, "standby trial", func() bool {
		return tc.leader().State().Plans[id].Phase == fsm.PhaseStandbyTrial
	})
	old := tc.leader()
	isolated := trans[old.Name()].(*raft.InmemTransport)
	isolated.DisconnectAll()
	for name, tr := range trans {
		if name != old.Name() {
			tr.(*raft.InmemTransport).Disconnect(isolated.LocalAddr())
		}
	}
	// A new leader among the others finishes the plan.
	var nl *Node
	tc.waitFor(10*time.Second, "a new leader", func() bool {
		for _, n := range tc.nodes {
			if n != old && n.IsLeader() {
				nl = n
				return true
			}
		}
		return false
	})
	tc.waitFor(30*time.Second, "plan completed by the new leader", func() bool {
		return nl.State().Plans[id].State == fsm.PlanCompleted
	})
	if old.IsLeader() {
		t.Errorf("the isolated node %s still claims leadership", old.Name())
	}
	if p := old.State().Plans[id]; p.State == fsm.PlanCompleted {
		t.Errorf("the isolated node's replica saw the plan complete without the majority")
	}
	// Heal: the old leader catches up to the same history.
	for name, tr := range trans {
		if name != old.Name() {
			tr.(*raft.InmemTransport).Connect(isolated.LocalAddr(), isolated)
			isolated.Connect(tr.LocalAddr(), tr)
		}
	}
	tc.waitFor(20*time.Second, "the old leader catches up", func() bool {
		return old.State().Plans[id].State == fsm.PlanCompleted
	})
	phases := map[string]int{}
	for _, e := range old.State().PlanHistory(id) {
		if e.Kind == fsm.EventPlanPhase {
			phases[e.To]++
		}
	}
	if len(phases) != 4 {
		t.Errorf("phases entered: %v; want 4", phases)
	}
	for ph, k := range phases {
		if k != 1 {
			t.Errorf("phase %s entered %d times; want once", ph, k)
		}
	}
	checkStandbyFirst(t, old.State(), id)
}
