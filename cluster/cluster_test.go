package cluster

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/decide"
	"lp/fsm"
	"lp/internal/auth"
)

// submit stores a fake module (its bytes are its id) and submits a plan on
// the leader.
func (tc *testCluster) submit(patchID string, trial time.Duration, mutate func(*fsm.PlanSpec)) string {
	tc.t.Helper()
	l := tc.leader()
	spec := fsm.PlanSpec{Name: "plan-" + patchID, PatchID: patchID, Target: "svc", Trial: trial, ProgressDeadline: time.Minute}
	if mutate != nil {
		mutate(&spec)
	}
	res, err := l.submit(tc.t.Context(), auth.Identity{}, spec, []byte(patchID), nil)
	if err != nil {
		tc.t.Fatalf("SubmitPlan: %v", err)
	}
	return res.PlanID
}

func (tc *testCluster) waitPlan(id string, want fsm.PlanState, d time.Duration) fsm.Plan {
	tc.t.Helper()
	var p fsm.Plan
	tc.waitFor(d, "plan "+id+" "+string(want), func() bool {
		for _, n := range tc.nodes {
			if n.IsLeader() {
				n.fsm.View(func(s *fsm.State) { p = s.Plans[id].Clone() })
				return p.State == want
			}
		}
		return false
	})
	return p
}

var onePair = []nodeSpec{
	{name: "a-witness", role: "witness", server: true},
	{name: "b-active", pair: "p1", role: "active", server: true},
	{name: "c-standby", pair: "p1", role: "standby", server: true},
}

func TestPlanCompletesStandbyFirst(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.leader()
	tc.registered()
	id := tc.submit("fix1", 300*time.Millisecond, nil)
	tc.waitPlan(id, fsm.PlanCompleted, 20*time.Second)

	if got := tc.patcher.active(tc.pids["b-active"]); !slices.Equal(got, []string{"fix1"}) {
		t.Errorf("active node patches = %v; want [fix1]", got)
	}
	if got := tc.patcher.active(tc.pids["c-standby"]); !slices.Equal(got, []string{"fix1"}) {
		t.Errorf("standby node patches = %v; want [fix1]", got)
	}
	checkStandbyFirst(t, tc.leader().State(), id)
}

// checkStandbyFirst fails t for each way plan id broke standby-first.
func checkStandbyFirst(t *testing.T, s *fsm.State, id string) {
	t.Helper()
	for _, v := range decide.StandbyFirstViolations(s, id) {
		t.Error(v)
	}
}

func TestOperatorRollbackStandbyFirst(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	id := tc.submit("fix1", 200*time.Millisecond, nil)
	tc.waitPlan(id, fsm.PlanCompleted, 20*time.Second)
	l := tc.leader()
	res, err := l.apply(&fsm.RollbackPlan{Plan: id, Reason: "test", Staged: true})
	if err != nil || res.Noop {
		t.Fatalf("RollbackPlan = %+v, %v; want applied", res, err)
	}
	tc.waitPlan(id, fsm.PlanRolledBack, 20*time.Second)
	for _, n := range []string{"b-active", "c-standby"} {
		if got := tc.patcher.active(tc.pids[n]); len(got) != 0 {
			t.Errorf("%s patches after rollback = %v; want none", n, got)
		}
	}
	// The standby's desired state went back before the active's.
	var order []string
	for _, e := range tc.leader().State().PlanHistory(id) {
		if e.Kind == fsm.EventDesired && e.To == "svc=" {
			order = append(order, e.Node)
		}
	}
	if want := []string{"c-standby", "b-active"}; !slices.Equal(order, want) {
		t.Errorf("rollback order = %v; want %v", order, want)
	}
	// Rolling back again is a no-op that says so.
	res, err = tc.leader().apply(&fsm.RollbackPlan{Plan: id, Reason: "again", Staged: true})
	if err != nil || !res.Noop {
		t.Errorf("second RollbackPlan = %+v, %v; want a no-op", res, err)
	}
}

func TestFailuresRollBack(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(tc *testCluster)
		mutate func(*fsm.PlanSpec)
		reason string
	}{
		{
			name:   "apply error",
			setup:  func(tc *testCluster) { tc.patcher.mu.Lock(); tc.patcher.failOn["bad1"] = true; tc.patcher.mu.Unlock() },
			reason: "patching svc on c-standby failed",
		},
		{
			name: "trial health check",
			mutate: func(s *fsm.PlanSpec) {
				s.Health = []fsm.CheckSpec{{Name: "always-fails", Exec: "echo broken; exit 1", Interval: 50 * time.Millisecond, Timeout: time.Second, Failures: 1, Successes: 1}}
			},
			reason: "health check always-fails failed on c-standby",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := startTestCluster(t, onePair, nil)
			tc.registered()
			if c.setup != nil {
				c.setup(tc)
			}
			id := tc.submit("bad1", 3*time.Second, c.mutate)
			p := tc.waitPlan(id, fsm.PlanRolledBack, 20*time.Second)
			if !strings.Contains(p.Reason, c.reason) {
				t.Errorf("plan reason = %q; want it to contain %q", p.Reason, c.reason)
			}
			if got := tc.patcher.active(tc.pids["b-active"]); len(got) != 0 {
				t.Errorf("active node patches = %v; want none (never patched)", got)
			}
			if got := tc.patcher.active(tc.pids["c-standby"]); len(got) != 0 {
				t.Errorf("standby patches = %v; want none after rollback", got)
			}
			for _, e := range tc.leader().State().PlanHistory(id) {
				if e.Kind == fsm.EventDesired && e.Node == "b-active" {
					t.Errorf("history: the active got desired %s; want it untouched", e.To)
				}
			}
		})
	}
}

func TestPauseOnFailure(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	tc.patcher.mu.Lock()
	tc.patcher.failOn["bad2"] = true
	tc.patcher.mu.Unlock()
	id := tc.submit("bad2", time.Second, func(s *fsm.PlanSpec) { s.OnFailure = fsm.OnFailurePause })
	p := tc.waitPlan(id, fsm.PlanPaused, 20*time.Second)
	if !strings.Contains(p.Reason, "fake failure") {
		t.Errorf("paused plan reason = %q; want the apply error", p.Reason)
	}
}

func TestPauseResumeAbort(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	id := tc.submit("fix1", 2*time.Second, nil)
	tc.waitFor(10*time.Second, "standby trial", func() bool {
		return tc.leader().State().Plans[id].Phase == fsm.PhaseStandbyTrial
	})
	l := tc.leader()
	if _, err := l.apply(&fsm.PausePlan{Plan: id, Reason: "operator"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // longer than the trial: a paused plan must not move
	if p := tc.leader().State().Plans[id]; p.State != fsm.PlanPaused || p.Phase != fsm.PhaseStandbyTrial {
		t.Fatalf("paused plan is %s at %s; want paused at standby_trial", p.State, p.Phase)
	}
	if got := tc.patcher.active(tc.pids["b-active"]); len(got) != 0 {
		t.Errorf("active patched while paused: %v", got)
	}
	if _, err := tc.leader().apply(&fsm.ResumePlan{Plan: id, Cause: "operator"}); err != nil {
		t.Fatal(err)
	}
	tc.waitFor(10*time.Second, "active apply after resume", func() bool {
		return tc.leader().State().Plans[id].Phase == fsm.PhaseActiveTrial
	})
	if _, err := tc.leader().apply(&fsm.AbortPlan{Plan: id, Reason: "operator"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if p := tc.leader().State().Plans[id]; p.State != fsm.PlanAborted {
		t.Fatalf("plan is %s; want aborted", p.State)
	}
	// Aborting leaves patches as they are; rollback undoes them.
	if _, err := tc.leader().apply(&fsm.RollbackPlan{Plan: id, Reason: "undo", Staged: true}); err != nil {
		t.Fatal(err)
	}
	tc.waitPlan(id, fsm.PlanRolledBack, 10*time.Second)
	tc.waitFor(5*time.Second, "patches reverted", func() bool {
		return len(tc.patcher.active(tc.pids["b-active"])) == 0 && len(tc.patcher.active(tc.pids["c-standby"])) == 0
	})
}

func TestLateProcessGetsPatches(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	id := tc.submit("fix1", 100*time.Millisecond, nil)
	tc.waitPlan(id, fsm.PlanCompleted, 20*time.Second)
	// The standby's service restarts: a new process, a new pid in the
	// pidfile. The agent patches it without any command.
	pidfile := tc.cfgs["c-standby"].Node.Targets["svc"].PIDFile
	newPid := startSleeper(t, pidfile)
	tc.waitFor(10*time.Second, "the new process patched", func() bool {
		return slices.Equal(tc.patcher.active(newPid), []string{"fix1"})
	})
	tc.waitFor(10*time.Second, "the new pid observed", func() bool {
		o := tc.leader().State().Observed["c-standby"]["svc"]
		return o.Pid == newPid && slices.Equal(o.Active, []string{"fix1"})
	})
}

// TestPlanEngineOptionsReachThePatcher: a plan's mode, consistency and
// apply_timeout go with every apply of its patch on every node, and with
// the reverts of its rollback.
func TestPlanEngineOptionsReachThePatcher(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	id := tc.submit("fix1", 200*time.Millisecond, func(s *fsm.PlanSpec) {
		s.Mode, s.Consistency, s.ApplyTimeout = "dlopen", "entry", 750*time.Millisecond
	})
	tc.waitPlan(id, fsm.PlanCompleted, 20*time.Second)
	if _, err := tc.leader().apply(&fsm.RollbackPlan{Plan: id, Reason: "test", Staged: true}); err != nil {
		t.Fatal(err)
	}
	tc.waitPlan(id, fsm.PlanRolledBack, 20*time.Second)
	tc.patcher.mu.Lock()
	got := slices.Clone(tc.patcher.opts)
	tc.patcher.mu.Unlock()
	want := map[string]bool{}
	for _, n := range []string{"b-active", "c-standby"} {
		pid := tc.pids[n]
		want[fmt.Sprintf("apply %d:fix1 dlopen/entry/750ms", pid)] = true
		want[fmt.Sprintf("revert %d:fix1 dlopen/entry/750ms", pid)] = true
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("patcher call %q; want only %v", g, want)
		}
		delete(want, g)
	}
	if len(want) > 0 {
		t.Errorf("patcher calls %q; missing %v", got, want)
	}
}

// TestMissingTargetFailsFast: a plan whose node has no process for the
// target fails at that node's apply, naming it, instead of waiting for the
// progress deadline.
func TestMissingTargetFailsFast(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	if err := syscall.Kill(tc.pids["c-standby"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.waitFor(10*time.Second, "c-standby's target reported gone", func() bool {
		obs, ok := tc.leader().State().Observed["c-standby"]["svc"]
		return ok && obs.Pid == 0
	})
	id := tc.submit("fix1", 200*time.Millisecond, func(s *fsm.PlanSpec) { s.ProgressDeadline = 5 * time.Minute })
	p := tc.waitPlan(id, fsm.PlanRolledBack, 20*time.Second)
	if !strings.Contains(p.Reason, "target svc is not running on c-standby") {
		t.Errorf("reason %q; want it to name the missing target and the node", p.Reason)
	}
}
