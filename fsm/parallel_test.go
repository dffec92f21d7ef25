package fsm

import (
	"testing"
	"time"
)

// TestWaves: with max_parallel 2 over three pairs, sip-1 goes alone, then
// sip-2 and sip-3 go through each phase together.
func TestWaves(t *testing.T) {
	h := newCluster(t)
	h.ok(node("a3", "sip-3", RoleActive))
	h.ok(node("b3", "sip-3", RoleStandby))
	sp := spec(blob1, "sip-1", "sip-2", "sip-3")
	sp.MaxParallel = 2
	id := h.submit(sp)
	h.runPair(id, "sip-1")

	h.refused(&PlanPhase{Plan: id, Pair: "sip-3", Phase: PhaseStandbyApply}, ErrConflict, "its next phase is sip-2/standby_apply")
	h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseStandbyApply})
	p := h.state().Plans[id]
	if got := p.PhaseString(); got != "sip-2+sip-3/standby_apply" {
		t.Errorf("PhaseString = %q; want sip-2+sip-3/standby_apply", got)
	}
	if got := p.PhaseNodes(); len(got) != 2 || got[0] != "b2" || got[1] != "b3" {
		t.Errorf("PhaseNodes = %v; want [b2 b3]", got)
	}
	stack, _ := h.state().PlanStack(id, "b3")
	h.refused(&SetDesired{Node: "a3", Target: target, Patches: stack, Plan: id}, ErrConflict, "patched only in its active_apply phase")
	for _, n := range []string{"b2", "b3"} {
		h.ok(&SetDesired{Node: n, Target: target, Patches: stack, Plan: id})
	}
	h.converge("b2")
	h.refused(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseStandbyTrial}, ErrConflict, "node b3 has not converged")
	h.converge("b3")
	h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseStandbyTrial})
	h.advance(trial)
	h.ok(&SetNodeStatus{Node: "a3", Status: StatusSuspect})
	h.refused(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseActiveApply}, ErrConflict, "node a3 of pair sip-3 is suspect")
	h.ok(&SetNodeStatus{Node: "a3", Status: StatusAlive})
	h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseActiveApply})
	for _, n := range []string{"a2", "a3"} {
		h.ok(&SetDesired{Node: n, Target: target, Patches: stack, Plan: id})
		h.converge(n)
	}
	h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseActiveTrial})
	h.advance(trial)
	h.ok(&CompletePlan{Plan: id})
	p = h.state().Plans[id]
	for _, n := range []string{"b2", "b3", "a2", "a3"} {
		st, _ := p.Step(n)
		if st.TrialPassed.Sub(st.TrialStarted) < trial {
			t.Errorf("%s: trial %v..%v shorter than %v", n, st.TrialStarted, st.TrialPassed, trial)
		}
	}
}

func TestWaveTrialsBoundTheDeadline(t *testing.T) {
	h := newCluster(t)
	h.ok(node("a3", "sip-3", RoleActive))
	h.ok(node("b3", "sip-3", RoleStandby))
	sp := spec(blob1, "sip-1", "sip-2", "sip-3")
	sp.Trial, sp.ProgressDeadline = time.Minute, 5*time.Minute // 3 pairs x 2 x 1m would not fit; 2 waves do
	h.refused(&SubmitPlan{Spec: sp}, ErrInvalid, "3 pairs x 2 x 1m0s")
	sp.MaxParallel = 2
	h.submit(sp)
	h.refused(&SubmitPlan{Spec: PlanSpec{PatchSHA256: blob1.SHA256, Target: target, MaxParallel: -1}}, ErrInvalid, "max_parallel -1 is negative")
}
