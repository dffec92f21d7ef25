package decide

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// TestPlanStepParallel: with max_parallel N the first pair goes alone, then
// up to N pairs go through each phase together, every standby of a wave
// tried before any of its actives is patched.
func TestPlanStepParallel(t *testing.T) {
	for _, c := range []struct {
		pairs, max int
		waves      [][]string // pair numbers per wave
	}{
		{3, 2, [][]string{{"1"}, {"2", "3"}}},
		{5, 2, [][]string{{"1"}, {"2", "3"}, {"4", "5"}}},
		{4, 8, [][]string{{"1"}, {"2", "3", "4"}}},
		{3, 1, [][]string{{"1"}, {"2"}, {"3"}}},
	} {
		t.Run(fmt.Sprintf("pairs=%d,max=%d", c.pairs, c.max), func(t *testing.T) {
			s := newSim(t, c.pairs)
			start := s.now
			id := s.submit(func(sp *fsm.PlanSpec) { sp.MaxParallel = c.max })
			p := s.run(id, time.Hour, Trial{})
			if p.State != fsm.PlanCompleted {
				t.Fatalf("plan is %s (%s); want completed", p.State, p.Reason)
			}
			trials := time.Duration(2*len(c.waves)) * 10 * time.Second
			if took := s.now.Sub(start); took < trials || took > trials+time.Duration(len(c.waves))*2*time.Second {
				t.Errorf("plan took %v of simulated time; want %d waves' trials (%v) plus a few ticks", took, len(c.waves), trials)
			}
			checkStandbyFirst(t, s.f.State(), id)
			step := func(n string) fsm.NodeStep {
				st, ok := p.Step(n)
				if !ok {
					t.Fatalf("no step for %s", n)
				}
				return st
			}
			for w, wave := range c.waves {
				for _, i := range wave {
					b, a := step("b"+i), step("a"+i)
					for _, j := range wave {
						// Every standby of the wave passed its trial before
						// any active of the wave was patched, and they were
						// patched and tried together.
						if bj := step("b" + j); !bj.TrialPassed.After(time.Time{}) || bj.TrialPassed.After(a.Applied) {
							t.Errorf("wave %d: a%s patched at %v before b%s passed its trial (%v)", w+1, i, a.Applied, j, bj.TrialPassed)
						}
						if !step("b"+j).TrialStarted.Equal(b.TrialStarted) || !step("a"+j).TrialStarted.Equal(a.TrialStarted) {
							t.Errorf("wave %d: pairs %s and %s did not start their trials together", w+1, i, j)
						}
					}
					if w > 0 {
						for _, k := range c.waves[w-1] {
							if prev := step("a" + k); prev.TrialPassed.After(b.Applied) {
								t.Errorf("wave %d: b%s patched at %v before a%s of the previous wave passed (%v)", w+1, i, b.Applied, k, prev.TrialPassed)
							}
						}
					}
				}
			}
		})
	}
}

// TestPlanStepParallelFailure: a failure on any node of a wave rolls back
// every pair the plan patched; the wave's actives are never patched.
func TestPlanStepParallelFailure(t *testing.T) {
	for _, c := range []struct {
		name   string
		at     func(s *sim, p fsm.Plan) Trial
		reason string
	}{
		{"second standby of the wave dies", func(s *sim, p fsm.Plan) Trial {
			s.must(&fsm.SetNodeStatus{Node: "b3", Status: fsm.StatusDead, Cause: "test"})
			return Trial{}
		}, "b3 (dead"}, // the rollback ends failed: dead b3 cannot revert before the rollback deadline
		{"plan check fails on the second standby", func(s *sim, p fsm.Plan) Trial {
			return Trial{Failure: Report{Node: "b3", Plan: p.ID, Check: "check-sip", Output: "timeout"}, At: s.now}
		}, "health check check-sip failed on b3"},
		{"unpatched active of the wave dies", func(s *sim, p fsm.Plan) Trial {
			s.must(&fsm.SetNodeStatus{Node: "a3", Status: fsm.StatusDead, Cause: "test"})
			return Trial{}
		}, "node a3 is dead"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 3)
			id := s.submit(func(sp *fsm.PlanSpec) { sp.MaxParallel = 2 })
			var fail Trial
			for range 2000 {
				p := s.f.State().Plans[id]
				if p.State == fsm.PlanRunning && p.Phase == fsm.PhaseStandbyTrial && p.PairIndex == 1 {
					fail = c.at(s, p)
					break
				}
				s.run(id, 100*time.Millisecond, Trial{})
			}
			p := s.run(id, time.Hour, fail)
			if p.State != fsm.PlanRolledBack && p.State != fsm.PlanFailed || !strings.Contains(p.Reason, c.reason) {
				t.Fatalf("plan is %s (%q); want it rolled back (or failed) because %q", p.State, p.Reason, c.reason)
			}
			st := s.f.State()
			for _, n := range []string{"a1", "b1", "a2", "b2", "a3", "b3"} {
				if d := st.DesiredStack(n, "svc"); len(d) != 0 {
					t.Errorf("%s still has desired %v after the rollback", n, fsm.PatchIDs(d))
				}
			}
			for _, n := range []string{"a2", "a3"} {
				if step, _ := p.Step(n); !step.Applied.IsZero() {
					t.Errorf("%s was patched though its wave's standbys never passed their trial", n)
				}
			}
			if step, _ := p.Step("a1"); step.Applied.IsZero() {
				t.Errorf("a1 (the first pair, completed before the wave) was never patched; the test did not reach the wave")
			}
		})
	}
}

// TestPlanStepParallelNeedsEveryCheckResult: a wave's trial with checks
// passes only when every node of the wave reported its checks passed.
func TestPlanStepParallelNeedsEveryCheckResult(t *testing.T) {
	s := newSim(t, 3)
	id := s.submit(func(sp *fsm.PlanSpec) {
		sp.MaxParallel = 2
		sp.Health = []fsm.CheckSpec{{Name: "c", Exec: "true", Interval: time.Second, Timeout: time.Second, Failures: 3, Successes: 1}}
	})
	pass := Trial{}
	for range 4000 {
		p := s.f.State().Plans[id]
		if p.State != fsm.PlanRunning && p.State != fsm.PlanPending {
			t.Fatalf("plan is %s (%s) before the wave's trial", p.State, p.Reason)
		}
		if p.Phase == fsm.PhaseStandbyTrial && p.PairIndex == 1 {
			break
		}
		if p.Phase.Trial() {
			// Every node of the first pair reports its checks passed.
			for _, n := range p.PhaseNodes() {
				pass = pass.With(Report{Plan: id, Node: n, Passed: true}, p.PhaseDeadline)
			}
		}
		s.run(id, 100*time.Millisecond, pass)
	}
	p := s.f.State().Plans[id]
	// b2 reports; b3 never does.
	pass = Trial{Passes: map[string]time.Time{"b2": p.PhaseDeadline}}
	p = s.run(id, 5*time.Minute, pass)
	if p.State != fsm.PlanRolledBack || !strings.Contains(p.Reason, "b3 reported no passing result") {
		t.Fatalf("plan is %s (%q); want rolled_back because b3 reported no passing result", p.State, p.Reason)
	}
}

// TestWaveDesired: in a wave's apply phase WaveDesired gives every node of
// the phase that lacks the plan's stack its SetDesired, the first being
// what PlanStep issues, and NextSteps all of them; once the stacks are set
// it gives none.
func TestWaveDesired(t *testing.T) {
	s := newSim(t, 3)
	id := s.submit(func(sp *fsm.PlanSpec) { sp.MaxParallel = 2 })
	for range 1000 {
		s.agents()
		st := s.f.State()
		p := st.Plans[id]
		cmd, _ := PlanStep(st, p, s.now, Trial{})
		if sd, ok := cmd.(*fsm.SetDesired); ok && p.PairIndex == 1 {
			wave := WaveDesired(st, p)
			var nodes []string
			for _, c := range wave {
				nodes = append(nodes, c.(*fsm.SetDesired).Node)
			}
			if strings.Join(nodes, ",") != "b2,b3" || wave[0].(*fsm.SetDesired).Node != sd.Node {
				t.Fatalf("WaveDesired = %v; want b2,b3 with PlanStep's %s first", nodes, sd.Node)
			}
			var stepNodes []string
			for _, st := range NextSteps(st, s.now, nil) {
				stepNodes = append(stepNodes, st.Cmd.(*fsm.SetDesired).Node)
			}
			if strings.Join(stepNodes, ",") != "b2,b3" {
				t.Fatalf("NextSteps = %v; want the whole wave b2,b3", stepNodes)
			}
			for _, c := range wave {
				s.must(c)
			}
			if rest := WaveDesired(s.f.State(), s.f.State().Plans[id]); len(rest) != 0 {
				t.Fatalf("WaveDesired after every stack was set = %d commands; want none", len(rest))
			}
			if next, _ := PlanStep(s.f.State(), s.f.State().Plans[id], s.now, Trial{}); next != nil {
				t.Fatalf("PlanStep after the wave's stacks were set = %s; want to wait for the agents", next.CommandType())
			}
			return
		}
		if cmd == nil {
			s.now = s.now.Add(100 * time.Millisecond)
			continue
		}
		s.must(cmd)
	}
	t.Fatal("the plan never reached the second wave's apply phase")
}
