package decide

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lp/fsm"
)

// sim drives an FSM directly with a fake clock: the orchestrator's decisions
// (planStep) are applied as commands, and a simulated agent reports each
// node's desired stack as observed.
type sim struct {
	t   *testing.T
	f   *fsm.FSM
	now time.Time
	idx uint64
}

func newSim(t *testing.T, pairs int) *sim {
	s := &sim{t: t, f: fsm.New(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s.must(&fsm.RegisterNode{Name: "w", Role: fsm.RoleWitness, Server: true, Healthy: true})
	for i := 1; i <= pairs; i++ {
		pair := "pair-" + string(rune('0'+i))
		s.must(&fsm.RegisterNode{Name: "a" + string(rune('0'+i)), Pair: pair, Role: fsm.RoleActive, Targets: []string{"svc"}, Healthy: true})
		s.must(&fsm.RegisterNode{Name: "b" + string(rune('0'+i)), Pair: pair, Role: fsm.RoleStandby, Targets: []string{"svc"}, Healthy: true})
	}
	return s
}

func (s *sim) apply(cmd fsm.Command) (*fsm.Result, error) {
	s.t.Helper()
	data, err := fsm.Encode(s.now, cmd)
	if err != nil {
		return nil, err
	}
	s.idx++
	return fsm.ResultOf(s.f.Apply(&raft.Log{Index: s.idx, Term: 1, Type: raft.LogCommand, Data: data}))
}

func (s *sim) must(cmd fsm.Command) *fsm.Result {
	s.t.Helper()
	r, err := s.apply(cmd)
	if err != nil {
		s.t.Fatalf("%s: %v", cmd.CommandType(), err)
	}
	return r
}

func (s *sim) submit(mutate func(*fsm.PlanSpec)) string {
	s.t.Helper()
	b := fsm.NewPutBlob("fix1", []byte("module bytes"))
	s.must(b)
	spec := fsm.PlanSpec{Name: "p", PatchSHA256: b.SHA256, Target: "svc", Trial: 10 * time.Second, ProgressDeadline: 10 * time.Minute}
	if mutate != nil {
		mutate(&spec)
	}
	return s.must(&fsm.SubmitPlan{Spec: spec}).PlanID
}

// agents reports every live node's desired stack as observed (what a
// working agent does), except for the nodes in skip.
func (s *sim) agents(skip ...string) {
	st := s.f.State()
	for name, n := range st.Nodes {
		if n.Status != fsm.StatusAlive || slices.Contains(skip, name) || n.Pair == "" {
			continue
		}
		want := fsm.PatchIDs(st.DesiredStack(name, "svc"))
		obs, had := st.Observed[name]["svc"]
		if had && obs.Pid == 0 {
			continue // the target is gone: nothing to patch
		}
		if !had || !slices.Equal(obs.Active, want) {
			s.must(&fsm.ReportObserved{Node: name, Target: "svc", Pid: 100, PidStart: 1000, Active: want})
		}
	}
}

// run steps the orchestrator (and the agents) for up to d of simulated time,
// in ticks of 100ms, and returns the plan.
func (s *sim) run(id string, d time.Duration, fail Trial, skip ...string) fsm.Plan {
	s.t.Helper()
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.agents(skip...)
		for range 10 {
			p := s.f.State().Plans[id]
			cmd, _ := PlanStep(s.f.State(), p, s.now, fail)
			if cmd == nil {
				break
			}
			if _, err := s.apply(cmd); err != nil {
				s.t.Fatalf("the FSM refused the orchestrator's %s: %v", cmd.CommandType(), err)
			}
		}
		if p := s.f.State().Plans[id]; p.State.Terminal() || p.State == fsm.PlanPaused {
			return p
		}
		s.now = s.now.Add(100 * time.Millisecond)
	}
	return s.f.State().Plans[id]
}

func TestPlanStepCompletes(t *testing.T) {
	for _, pairs := range []int{1, 3} {
		s := newSim(t, pairs)
		start := s.now
		id := s.submit(nil)
		p := s.run(id, time.Hour, Trial{})
		if p.State != fsm.PlanCompleted {
			t.Fatalf("%d pairs: plan is %s (%s); want completed", pairs, p.State, p.Reason)
		}
		trials := time.Duration(2*pairs) * 10 * time.Second
		if took := s.now.Sub(start); took < trials || took > trials+time.Duration(pairs)*2*time.Second {
			t.Errorf("%d pairs: plan took %v of simulated time; want the trials (%v) plus a few ticks", pairs, took, trials)
		}
		checkStandbyFirst(t, s.f.State(), id)
		for _, st := range p.Steps {
			if st.TrialPassed.Sub(st.TrialStarted) < 10*time.Second {
				t.Errorf("%s: trial %v..%v is shorter than 10s", st.Node, st.TrialStarted, st.TrialPassed)
			}
		}
	}
}

func TestPlanStepFailures(t *testing.T) {
	cases := []struct {
		name string
		// at runs once the plan reaches the phase; it may change the state.
		phase  fsm.Phase
		at     func(s *sim, p fsm.Plan) Trial
		pause  bool
		want   fsm.PlanState
		reason string
		// the active was never given the patch
		activeUntouched bool
	}{
		{
			name: "standby dies in trial", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusDead, Cause: "test"})
				return Trial{}
			},
			want: fsm.PlanRollingBack, reason: "node b1 is dead", activeUntouched: true,
		},
		{
			name: "standby suspected in trial", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusSuspect, Cause: "test"})
				return Trial{}
			},
			want: fsm.PlanRollingBack, reason: "node b1 is suspect", activeUntouched: true,
		},
		{
			name: "standby suspected longer than its bound", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusSuspect, Cause: "test", SuspectBound: time.Second})
				return Trial{}
			},
			want: fsm.PlanRollingBack, reason: "node b1 is suspect in gossip for 1.1s (bound 1s)", activeUntouched: true,
		},
		{
			name: "standby unhealthy in trial", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.SetNodeHealth{Node: "b1", Healthy: false, FailingCheck: "sip-port", CheckOutput: "refused"})
				return Trial{}
			},
			want: fsm.PlanRolledBack, reason: "node b1 is unhealthy (sip-port: refused)", activeUntouched: true,
		},
		{
			name: "plan check fails in standby trial", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				return Trial{Failure: Report{Node: "b1", Plan: p.ID, Check: "check-sip", Output: "timeout"}, At: s.now}
			},
			want: fsm.PlanRolledBack, reason: "health check check-sip failed on b1", activeUntouched: true,
		},
		{
			name: "check failure of an earlier trial is ignored", phase: fsm.PhaseActiveTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				return Trial{Failure: Report{Node: "b1", Plan: p.ID, Check: "check-sip", Output: "old"}, At: p.PhaseStarted.Add(-time.Second)}
			},
			want: fsm.PlanCompleted,
		},
		{
			name: "active dies in its trial", phase: fsm.PhaseActiveTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusDead, Cause: "test"})
				return Trial{}
			},
			want: fsm.PlanRollingBack, reason: "node a1 is dead",
		},
		{
			name: "target exits on the patched standby", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.ReportObserved{Node: "b1", Target: "svc", Pid: 0})
				return Trial{}
			},
			want: fsm.PlanRolledBack, reason: "target svc on b1 exited during its trial (pid 100)", activeUntouched: true,
		},
		{
			name: "target replaced by a new pid on the standby in trial", phase: fsm.PhaseStandbyTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.ReportObserved{Node: "b1", Target: "svc", Pid: 200, PidStart: 1500, Active: []string{"fix1"}})
				return Trial{}
			},
			want: fsm.PlanRolledBack, reason: "target svc on b1 was replaced: pid 100 -> pid 200 during its trial", activeUntouched: true,
		},
		{
			name: "target replaced under the same pid on the active in trial", phase: fsm.PhaseActiveTrial,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.ReportObserved{Node: "a1", Target: "svc", Pid: 100, PidStart: 2000, Active: []string{"fix1"}})
				return Trial{}
			},
			want: fsm.PlanRolledBack, reason: "target svc on a1 was replaced: pid 100 (started at tick 1000) -> pid 100 (started at tick 2000)",
		},
		{
			name: "pause instead of rollback", phase: fsm.PhaseStandbyTrial, pause: true,
			at: func(s *sim, p fsm.Plan) Trial {
				s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusDead, Cause: "test"})
				return Trial{}
			},
			want: fsm.PlanPaused, reason: "node b1 is dead", activeUntouched: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 1)
			id := s.submit(func(sp *fsm.PlanSpec) {
				if c.pause {
					sp.OnFailure = fsm.OnFailurePause
				}
			})
			// Run until the phase is reached.
			for range 2000 {
				if p := s.f.State().Plans[id]; p.Phase == c.phase {
					break
				}
				s.run(id, 100*time.Millisecond, Trial{})
			}
			p := s.f.State().Plans[id]
			if p.Phase != c.phase {
				t.Fatalf("plan never reached %s (at %s, %s)", c.phase, p.Phase, p.State)
			}
			fail := c.at(s, p)
			// A dead node's agent reports nothing.
			var skip []string
			for name, n := range s.f.State().Nodes {
				if n.Status != fsm.StatusAlive {
					skip = append(skip, name)
				}
			}
			p = s.run(id, 5*time.Minute, fail, skip...)
			if p.State != c.want {
				t.Fatalf("plan is %s (%s); want %s", p.State, p.Reason, c.want)
			}
			if !strings.Contains(p.Reason, c.reason) {
				t.Errorf("reason %q; want it to contain %q", p.Reason, c.reason)
			}
			st := s.f.State()
			if c.activeUntouched {
				for _, e := range st.NodeHistory("a1") {
					if e.Kind == fsm.EventDesired {
						t.Errorf("history: the active got desired %s; want it untouched", e.To)
					}
				}
			}
			// A node down keeps the plan rolling_back (its target may
			// still run the patch), with every desired stack restored.
			if c.want == fsm.PlanRolledBack || c.want == fsm.PlanRollingBack {
				for _, n := range []string{"a1", "b1"} {
					if d := st.DesiredStack(n, "svc"); len(d) != 0 {
						t.Errorf("%s desired after rollback = %v; want none", n, fsm.PatchIDs(d))
					}
				}
			}
		})
	}
}

// TestPlanStepTrialNeedsCheckResults: a trial with checks passes only on
// the node's report that every check ran and none failed; without it the
// plan fails once the grace after the trial is over.
func TestPlanStepTrialNeedsCheckResults(t *testing.T) {
	s := newSim(t, 1)
	id := s.submit(func(sp *fsm.PlanSpec) {
		sp.Health = []fsm.CheckSpec{{Name: "never", Exec: "sleep 100", Interval: time.Second, Timeout: time.Second, Failures: 3, Successes: 1}}
	})
	for range 2000 {
		if p := s.f.State().Plans[id]; p.Phase == fsm.PhaseStandbyTrial {
			break
		}
		s.run(id, 100*time.Millisecond, Trial{})
	}
	p := s.f.State().Plans[id]
	// b1 says its checks passed (at the trial's end); a1 never does.
	pass := Trial{Passes: map[string]time.Time{"b1": p.PhaseDeadline}}
	p = s.run(id, 5*time.Minute, pass)
	if p.State != fsm.PlanRolledBack {
		t.Fatalf("plan is %s (%s); want rolled_back", p.State, p.Reason)
	}
	if want := "a1 reported no passing result of its trial checks"; !strings.Contains(p.Reason, want) {
		t.Errorf("reason %q; want it to contain %q", p.Reason, want)
	}
	sb, _ := p.Step("b1")
	if sb.TrialPassed.IsZero() {
		t.Errorf("b1's trial did not pass although b1 reported its checks passed")
	}
	ac, _ := p.Step("a1")
	if got := ac.TrialStarted.Add(time.Minute); s.now.After(got) {
		t.Errorf("a1's trial failed at %v; want within the grace (%v after the trial)", s.now, TrialResultGrace(p))
	}
}

// TestRefutedSuspicionIsNotAFailure: a node suspect for less than its
// SuspectBound, alive again afterwards, fails nothing; the plan completes.
func TestRefutedSuspicionIsNotAFailure(t *testing.T) {
	for _, phase := range []fsm.Phase{fsm.PhaseStandbyTrial, fsm.PhaseActiveTrial} {
		t.Run(string(phase), func(t *testing.T) {
			s := newSim(t, 1)
			id := s.submit(nil)
			for range 2000 {
				if p := s.f.State().Plans[id]; p.Phase == phase {
					break
				}
				s.run(id, 100*time.Millisecond, Trial{})
			}
			if p := s.f.State().Plans[id]; p.Phase != phase {
				t.Fatalf("plan never reached %s (at %s, %s)", phase, p.Phase, p.State)
			}
			// Both members are suspected for up to their bound, twice.
			for range 2 {
				for _, n := range []string{"a1", "b1"} {
					s.must(&fsm.SetNodeStatus{Node: n, Status: fsm.StatusSuspect, Cause: "test", SuspectBound: time.Second})
				}
				if p := s.run(id, time.Second, Trial{}, "a1", "b1"); p.State != fsm.PlanRunning {
					t.Fatalf("plan is %s (%s) within the suspect bound; want running", p.State, p.Reason)
				}
				for _, n := range []string{"a1", "b1"} {
					s.must(&fsm.SetNodeStatus{Node: n, Status: fsm.StatusAlive, Cause: "test"})
				}
				if n := s.f.State().Nodes["b1"]; !n.SuspectSince.IsZero() || n.SuspectBound != 0 {
					t.Fatalf("alive node keeps SuspectSince %v, SuspectBound %v; want both cleared", n.SuspectSince, n.SuspectBound)
				}
				s.run(id, 100*time.Millisecond, Trial{})
			}
			if p := s.run(id, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
				t.Fatalf("plan is %s (%s); want completed after refuted suspicions", p.State, p.Reason)
			}
		})
	}
}

func TestPlanStepWaits(t *testing.T) {
	t.Run("pending until the pair is healthy", func(t *testing.T) {
		s := newSim(t, 1)
		s.must(&fsm.SetNodeHealth{Node: "a1", Healthy: false, FailingCheck: "x"})
		id := s.submit(nil)
		p := s.run(id, 30*time.Second, Trial{})
		if p.State != fsm.PlanPending {
			t.Fatalf("plan is %s; want pending while a1 is unhealthy", p.State)
		}
		s.must(&fsm.SetNodeHealth{Node: "a1", Healthy: true})
		if p = s.run(id, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
			t.Fatalf("plan is %s (%s); want completed once healthy", p.State, p.Reason)
		}
	})
	t.Run("apply that never converges hits the progress deadline", func(t *testing.T) {
		s := newSim(t, 1)
		id := s.submit(func(sp *fsm.PlanSpec) { sp.ProgressDeadline = time.Minute; sp.Trial = time.Second })
		p := s.run(id, 5*time.Minute, Trial{}, "b1") // b1's agent never reports
		if p.State != fsm.PlanRolledBack || !strings.Contains(p.Reason, "progress deadline") {
			t.Fatalf("plan is %s (%q); want rolled_back on the progress deadline", p.State, p.Reason)
		}
	})
	t.Run("rollback restores the live nodes first and waits for a dead one", func(t *testing.T) {
		s := newSim(t, 2)
		id := s.submit(func(sp *fsm.PlanSpec) { sp.Trial = time.Second })
		if p := s.run(id, time.Hour, Trial{}); p.State != fsm.PlanCompleted {
			t.Fatalf("plan is %s; want completed", p.State)
		}
		s.must(&fsm.SetNodeStatus{Node: "a2", Status: fsm.StatusDead, Cause: "test"})
		s.must(&fsm.RollbackPlan{Plan: id, Reason: "operator", Staged: true})
		p := s.run(id, time.Minute, Trial{}, "a2")
		if p.State != fsm.PlanRollingBack {
			t.Fatalf("plan is %s; want rolling_back while a2 is down", p.State)
		}
		for _, n := range []string{"a1", "b1", "b2"} {
			if !s.f.State().NodeConverged(n, "svc") {
				t.Errorf("%s did not roll back while a2 was down", n)
			}
		}
		var order []string
		for _, e := range s.f.State().PlanHistory(id) {
			if e.Kind == fsm.EventDesired && e.To == "svc=" {
				order = append(order, e.Node)
			}
		}
		if want := []string{"b1", "b2", "a1", "a2"}; !slices.Equal(order, want) {
			t.Errorf("rollback order %v; want %v", order, want)
		}
	})
}

// TestRollbackWaitsForEveryNode: a plan is rolled_back only once every
// plan node runs its pre-plan stack; a node that is down keeps it
// rolling_back, past the rollback deadline it fails naming the node, and a
// new rollback finishes once the node is back.
func TestRollbackWaitsForEveryNode(t *testing.T) {
	s := newSim(t, 1)
	id := s.submit(nil)
	p := s.run(id, time.Hour, Trial{})
	if p.State != fsm.PlanCompleted {
		t.Fatalf("plan is %s (%s); want completed", p.State, p.Reason)
	}
	// b1's lpd dies: its target keeps running the patch.
	s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusDead, Cause: "test"})
	s.must(&fsm.RollbackPlan{Plan: id, Reason: "operator rollback", Staged: true})
	p = s.run(id, time.Minute, Trial{}, "b1")
	if p.State != fsm.PlanRollingBack {
		t.Fatalf("with b1 down, plan is %s (%s); want rolling_back", p.State, p.Reason)
	}
	if pend := RollbackPending(s.f.State(), p); len(pend) != 1 || pend[0].Name != "b1" {
		t.Errorf("pending = %v; want [b1]", pend)
	}
	if _, why := RollbackStep(s.f.State(), p, s.now); !strings.Contains(why, "b1 (dead, last seen") {
		t.Errorf("rollbackStep waits because %q; want it to name b1, dead, and when it was last seen", why)
	}
	// Past the rollback deadline (progress_deadline after it started).
	p = s.run(id, 15*time.Minute, Trial{}, "b1")
	if p.State != fsm.PlanFailed || !strings.Contains(p.Reason, "rollback deadline passed") || !strings.Contains(p.Reason, "b1 (dead") {
		t.Fatalf("plan is %s (%s); want failed naming b1", p.State, p.Reason)
	}
	// b1 returns; the operator retries the rollback.
	s.must(&fsm.SetNodeStatus{Node: "b1", Status: fsm.StatusAlive, Cause: "test"})
	s.must(&fsm.RollbackPlan{Plan: id, Reason: "operator retry", Staged: true})
	p = s.run(id, time.Minute, Trial{})
	if p.State != fsm.PlanRolledBack {
		t.Fatalf("after b1 returned and the retry, plan is %s (%s); want rolled_back", p.State, p.Reason)
	}
}

// checkStandbyFirst fails t for each way plan id broke standby-first.
func checkStandbyFirst(t *testing.T, s *fsm.State, id string) {
	t.Helper()
	for _, v := range StandbyFirstViolations(s, id) {
		t.Error(v)
	}
}

// TestReplacedMatchAll: with match: all the trial watches every process it
// started with: one gone or restarted under its pid fails it; a process
// that appeared since does not.
func TestReplacedMatchAll(t *testing.T) {
	p := fsm.Plan{Phase: fsm.PhaseStandbyTrial, Spec: fsm.PlanSpec{Pairs: []string{"sip-1"}},
		Steps: []fsm.NodeStep{{Node: "b1", Pair: "sip-1", Side: fsm.SideStandby}}}
	st := fsm.NodeStep{Node: p.PhaseNode(), TrialPid: 100, TrialPidStart: 7,
		TrialProcesses: []fsm.ProcessRef{{Pid: 100, PidStart: 7}, {Pid: 101, PidStart: 8}}}
	if st.Node == "" {
		t.Fatal("the plan has no phase node")
	}
	obs := func(procs ...fsm.ObservedProcess) fsm.Observed {
		return fsm.Observed{Pid: procs[0].Pid, PidStart: procs[0].PidStart, Processes: procs}
	}
	for _, tt := range []struct {
		name string
		obs  fsm.Observed
		want string
	}{
		{"both run", obs(fsm.ObservedProcess{Pid: 100, PidStart: 7}, fsm.ObservedProcess{Pid: 101, PidStart: 8}), ""},
		{"a new one besides", obs(fsm.ObservedProcess{Pid: 100, PidStart: 7}, fsm.ObservedProcess{Pid: 101, PidStart: 8}, fsm.ObservedProcess{Pid: 130, PidStart: 9}), ""},
		{"one gone", obs(fsm.ObservedProcess{Pid: 100, PidStart: 7}, fsm.ObservedProcess{Pid: 130, PidStart: 9}), "lost a process: pid 101 exited (now pids [100 130])"},
		{"one restarted under its pid", obs(fsm.ObservedProcess{Pid: 100, PidStart: 7}, fsm.ObservedProcess{Pid: 101, PidStart: 12}),
			"was replaced: pid 101 (started at tick 8) -> pid 101 (started at tick 12)"},
	} {
		if got := replaced(p, st, tt.obs); got != tt.want {
			t.Errorf("%s: replaced = %q; want %q", tt.name, got, tt.want)
		}
	}
}
