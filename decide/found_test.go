package decide

import (
	"slices"
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// Tests for the faults the verifier (verify_test.go) found, each replayed
// by hand from its schedule.

// submitModule submits a plan for a module of its own (patch id name).
func (s *sim) submitModule(name string, mutate func(*fsm.PlanSpec)) (string, error) {
	s.t.Helper()
	b := fsm.NewPutBlob(name, []byte("module "+name))
	s.must(b)
	spec := fsm.PlanSpec{Name: "p", PatchSHA256: b.SHA256, Target: "svc", Trial: 10 * time.Second, ProgressDeadline: 10 * time.Minute}
	if mutate != nil {
		mutate(&spec)
	}
	r, err := s.apply(&fsm.SubmitPlan{Spec: spec})
	if err != nil {
		return "", err
	}
	return r.PlanID, nil
}

// runAll steps every decider (plans and roles, as the leader does) and the
// agents for up to d of simulated time until stop says so.
func (s *sim) runAll(d time.Duration, stop func(st *fsm.State) bool, skip ...string) {
	s.t.Helper()
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.agents(skip...)
		for range 20 {
			st := s.f.State()
			steps := append(NextSteps(st, s.now, nil), RoleSteps(st, s.now)...)
			if len(steps) == 0 {
				break
			}
			if _, err := s.apply(steps[0].Cmd); err != nil {
				s.t.Fatalf("the FSM refused %s (%s): %v", steps[0].Cmd.CommandType(), steps[0].Why, err)
			}
		}
		if stop(s.f.State()) {
			return
		}
		s.now = s.now.Add(100 * time.Millisecond)
	}
}

// runTo steps plan id until it reaches phase ph (of pair index i).
func (s *sim) runTo(id string, i int, ph fsm.Phase) fsm.Plan {
	s.t.Helper()
	for range 10000 {
		p := s.f.State().Plans[id]
		if p.PairIndex == i && p.Phase == ph {
			return p
		}
		if p.State.Terminal() {
			s.t.Fatalf("plan %s is %s (%s) before %d/%s", id, p.State, p.Reason, i, ph)
		}
		s.run(id, 100*time.Millisecond, Trial{})
	}
	s.t.Fatalf("plan %s never reached %d/%s", id, i, ph)
	return fsm.Plan{}
}

// TestRollbackFailsWhileAliveNodeCannotRevert (verifier seed 4): a node
// that is alive but keeps failing to revert used to keep the plan
// rolling_back for ever (the wait returned before the deadline check).
func TestRollbackFailsWhileAliveNodeCannotRevert(t *testing.T) {
	s := newSim(t, 1)
	id := s.submit(nil)
	if p := s.run(id, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
		t.Fatalf("plan is %s (%s); want completed", p.State, p.Reason)
	}
	s.must(&fsm.RollbackPlan{Plan: id, Reason: "operator", Staged: true})
	// b1's agent fails every revert and says so.
	s.must(&fsm.ReportObserved{Node: "b1", Target: "svc", Pid: 100, PidStart: 1000, Active: []string{"fix1"}, Error: "reverting: injected failure"})
	p := s.run(id, 15*time.Minute, Trial{}, "b1")
	if p.State != fsm.PlanFailed || !strings.Contains(p.Reason, "rollback deadline passed") || !strings.Contains(p.Reason, "b1 (alive: reverting: injected failure)") {
		t.Fatalf("plan is %s (%q); want failed at the rollback deadline naming b1 and its error", p.State, p.Reason)
	}
	if !s.f.State().NodeConverged("a1", "svc") {
		t.Errorf("a1 did not revert; the standby side goes first, but the failure must come only at the deadline")
	}
}

// TestUntriedPatchBlocksPair (verifier seed 46): an aborted plan leaves
// its untried patch on b1; a new plan that patched a1 would have both
// members run untried code. The FSM refuses it at submission, naming the
// plan to roll back; once that is rolled back the new plan goes through.
func TestUntriedPatchBlocksPair(t *testing.T) {
	s := newSim(t, 2)
	p1, err := s.submitModule("fix1", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.runTo(p1, 0, fsm.PhaseStandbyTrial)
	s.must(&fsm.AbortPlan{Plan: p1, Reason: "operator"})
	_, err = s.submitModule("fix2", nil)
	if err == nil || !strings.Contains(err.Error(), "b1 runs patch fix1 of plan "+p1+", which never passed a trial in pair pair-1: roll back plan "+p1+" first") {
		t.Fatalf("submission = %v; want a refusal naming b1, fix1 and %s", err, p1)
	}
	// A plan on the other pair only is fine.
	p2, err := s.submitModule("fix2", func(sp *fsm.PlanSpec) { sp.Pairs = []string{"pair-2"} })
	if err != nil {
		t.Fatalf("plan on pair-2 only: %v", err)
	}
	s.must(&fsm.AbortPlan{Plan: p2, Reason: "operator"})
	s.must(&fsm.RollbackPlan{Plan: p1, Reason: "operator", Staged: true})
	if p := s.run(p1, time.Minute, Trial{}); p.State != fsm.PlanRolledBack {
		t.Fatalf("plan %s is %s (%s); want rolled_back", p1, p.State, p.Reason)
	}
	p3, err := s.submitModule("fix3", func(sp *fsm.PlanSpec) { sp.Pairs = []string{"pair-1"} })
	if err != nil {
		t.Fatalf("after the rollback: %v", err)
	}
	if p := s.run(p3, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
		t.Fatalf("plan %s is %s (%s); want completed", p3, p.State, p.Reason)
	}
}

// TestRollbackFirstPastLaterPlan (verifier seed 78): the active dies while
// b1 runs an aborted plan's untried patch (rollback-first) and a later
// plan on the same target waits, pending. The FSM refuses to roll back a
// plan while a later one is unfinished, so the deciders asked for that
// rollback every second for ever. The later plan changed nothing: it is
// aborted, the first one rolled back, b1 promoted on its pre-plan stack.
func TestRollbackFirstPastLaterPlan(t *testing.T) {
	s := newSim(t, 2)
	p1, err := s.submitModule("fix1", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.runTo(p1, 0, fsm.PhaseStandbyTrial)
	s.must(&fsm.AbortPlan{Plan: p1, Reason: "operator"})
	s.must(&fsm.SetNodeHealth{Node: "a2", FailingCheck: "port"})
	p2, err := s.submitModule("fix2", func(sp *fsm.PlanSpec) { sp.Pairs = []string{"pair-2"}; sp.ProgressDeadline = 0 })
	if err != nil {
		t.Fatal(err)
	}
	s.must(&fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusDead, Cause: "test"})
	s.runAll(time.Minute, func(st *fsm.State) bool { return st.Nodes["b1"].Role == fsm.RoleActive })
	st := s.f.State()
	if st.Nodes["b1"].Role != fsm.RoleActive {
		t.Fatalf("b1 is %s; want promoted", st.Nodes["b1"].Role)
	}
	if got := st.Plans[p2]; got.State != fsm.PlanAborted || !strings.Contains(got.Reason, "rollback-first") {
		t.Errorf("later plan %s is %s (%q); want aborted for the rollback-first failover", p2, got.State, got.Reason)
	}
	if got := st.Plans[p1]; got.State != fsm.PlanRolledBack {
		t.Errorf("plan %s is %s; want rolled_back", p1, got.State)
	}
	if got := fsm.PatchIDs(st.DesiredStack("b1", "svc")); len(got) != 0 || !st.NodeConverged("b1", "svc") {
		t.Errorf("b1 desires %v (converged %v); want its pre-plan stack, running", got, st.NodeConverged("b1", "svc"))
	}
}

// TestRollbackLeavesUntouchedNodes (verifier seed 100): a plan that never
// patched a node recorded its pre-plan stack at submission; rolling it
// back after an earlier plan was rolled back used to bring that earlier
// plan's patch back. A rollback restores only what the plan patched,
// staged (the deciders) or not (the FSM in one command).
func TestRollbackLeavesUntouchedNodes(t *testing.T) {
	for _, staged := range []bool{true, false} {
		name := "unstaged"
		if staged {
			name = "staged"
		}
		t.Run(name, func(t *testing.T) {
			s := newSim(t, 2)
			p1, err := s.submitModule("fix1", func(sp *fsm.PlanSpec) { sp.Trial = time.Second })
			if err != nil {
				t.Fatal(err)
			}
			if p := s.run(p1, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
				t.Fatalf("plan %s is %s (%s); want completed", p1, p.State, p.Reason)
			}
			// p2 waits on pair-2 (a2 unhealthy); its pre-plan stacks hold fix1.
			s.must(&fsm.SetNodeHealth{Node: "a2", FailingCheck: "port"})
			p2, err := s.submitModule("fix2", func(sp *fsm.PlanSpec) { sp.Pairs = []string{"pair-2"} })
			if err != nil {
				t.Fatal(err)
			}
			s.must(&fsm.AbortPlan{Plan: p2, Reason: "operator"})
			s.must(&fsm.RollbackPlan{Plan: p1, Reason: "operator", Staged: true})
			if p := s.run(p1, time.Minute, Trial{}); p.State != fsm.PlanRolledBack {
				t.Fatalf("plan %s is %s (%s); want rolled_back", p1, p.State, p.Reason)
			}
			s.must(&fsm.RollbackPlan{Plan: p2, Reason: "operator", Staged: staged})
			p := s.run(p2, time.Minute, Trial{})
			if p.State != fsm.PlanRolledBack {
				t.Fatalf("plan %s is %s (%s); want rolled_back", p2, p.State, p.Reason)
			}
			st := s.f.State()
			for _, n := range []string{"a1", "b1", "a2", "b2"} {
				if got := fsm.PatchIDs(st.DesiredStack(n, "svc")); slices.Contains(got, "fix1") {
					t.Errorf("%s desires %v after both rollbacks; fix1 was rolled back", n, got)
				}
			}
		})
	}
}
