package decide

import (
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// TestWaiting: a plan that cannot move says why, in the deciders' own
// words; once the hold-up clears the plan moves and says nothing; a plan in
// trial says so; terminal plans say nothing.
func TestWaiting(t *testing.T) {
	s := newSim(t, 1)
	s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusDead, Cause: "test"})
	id := s.submit(nil)
	waiting := func() string { return Waiting(s.f.State(), s.f.State().Plans[id], s.now, Trial{}) }
	if got := waiting(); got != "node b1 is dead" {
		t.Fatalf("pending plan with a dead standby: waiting %q; want %q", got, "node b1 is dead")
	}
	if p := s.run(id, time.Second, Trial{}); p.State != fsm.PlanPending {
		t.Fatalf("plan is %s; want it pending while b1 is dead", p.State)
	}
	s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusAlive, Cause: "test"})
	s.must(&fsm.SetNodeHealth{Node: "a1", Healthy: false, FailingCheck: "sip-port"})
	if got := waiting(); got != "node a1 is unhealthy" {
		t.Fatalf("pending plan with an unhealthy active: waiting %q; want %q", got, "node a1 is unhealthy")
	}
	s.must(&fsm.SetNodeHealth{Node: "a1", Healthy: true})
	if got := waiting(); got != "" {
		t.Fatalf("pending plan free to start: waiting %q; want none (its step is due)", got)
	}
	s.run(id, time.Second, Trial{})
	p := s.f.State().Plans[id]
	if p.Phase != fsm.PhaseStandbyTrial {
		t.Fatalf("plan in %s; want standby_trial", p.Phase)
	}
	if got, want := waiting(), "trial of b1 until "+stamp(p.PhaseDeadline); got != want {
		t.Errorf("plan in trial: waiting %q; want %q", got, want)
	}
	if p := s.run(id, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
		t.Fatalf("plan is %s (%s); want completed", p.State, p.Reason)
	}
	if got := waiting(); got != "" {
		t.Errorf("completed plan: waiting %q; want none", got)
	}
}

// TestWaitingRollback: a rollback that waits for a dead node names it.
func TestWaitingRollback(t *testing.T) {
	s := newSim(t, 1)
	id := s.submit(nil)
	s.run(id, time.Second, Trial{})
	s.must(&fsm.RollbackPlan{Plan: id, Reason: "test", Staged: true})
	s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusDead, Cause: "test"})
	s.run(id, time.Second, Trial{}, "b1")
	p := s.f.State().Plans[id]
	if p.State != fsm.PlanRollingBack {
		t.Fatalf("plan is %s; want rolling_back while b1 is dead", p.State)
	}
	if got := Waiting(s.f.State(), p, s.now, Trial{}); !strings.HasPrefix(got, "for b1 (dead, last seen ") || !strings.HasSuffix(got, ") to roll back") {
		t.Errorf("rollback waiting %q; want it to name b1 as dead", got)
	}
}
