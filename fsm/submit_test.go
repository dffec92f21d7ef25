package fsm

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSubmitRefusesProcessCheckOfUnknownTarget(t *testing.T) {
	h := newCluster(t)
	sp := spec(blob1)
	sp.Health = []CheckSpec{{Name: "alive", Process: "nosuch"}}
	h.refused(&SubmitPlan{Spec: sp}, ErrInvalid, "process nosuch is not a target of node")
	sp.Health = []CheckSpec{{Name: "alive", Process: "other"}} // every node has "other"
	h.submit(sp)
}

// TestSubmitEngineOptions: a plan's engine options are kept as submitted
// (through a snapshot too), bad ones are refused, and a spec written
// before they existed decodes to the engine's defaults.
func TestSubmitEngineOptions(t *testing.T) {
	h := newCluster(t)
	sp := spec(blob1)
	sp.Mode, sp.Consistency, sp.ApplyTimeout = "dlopen", "entry", 750*time.Millisecond
	id := h.submit(sp)
	f := New()
	if err := f.Restore(readCloser(h.snapshot())); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	got := f.State().Plans[id].Spec
	if got.Mode != "dlopen" || got.Consistency != "entry" || got.ApplyTimeout != 750*time.Millisecond {
		t.Errorf("restored spec = mode %q consistency %q apply_timeout %v; want dlopen entry 750ms", got.Mode, got.Consistency, got.ApplyTimeout)
	}

	for _, tt := range []struct {
		edit func(*PlanSpec)
		want string
	}{
		{func(s *PlanSpec) { s.Mode = "preload" }, `mode "preload" is not inject or dlopen`},
		{func(s *PlanSpec) { s.Consistency = "all" }, `consistency "all" is not function or entry`},
		{func(s *PlanSpec) { s.ApplyTimeout = -time.Second }, "apply_timeout -1s is negative"},
	} {
		bad := spec(blob1)
		tt.edit(&bad)
		h.refused(&SubmitPlan{Spec: bad}, ErrInvalid, tt.want)
	}

	var old PlanSpec
	if err := json.Unmarshal([]byte(`{"name":"p","patch_sha256":"`+blob1.SHA256+`","target":"sipd","trial":1000000000}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Mode != "" || old.Consistency != "" || old.ApplyTimeout != 0 {
		t.Errorf("old spec = %q %q %v; want the defaults (unset)", old.Mode, old.Consistency, old.ApplyTimeout)
	}
}

// TestObservedPause: the pause a node reports with the observation that
// shows the plan's patch turned active goes into the observed event and the
// node's plan step; the pause of the report that shows it reverted, into
// RevertPause.
func TestObservedPause(t *testing.T) {
	h := newCluster(t)
	id := h.submit(spec(blob1, "sip-1"))
	h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
	stack, _ := h.state().PlanStack(id, "b1")
	h.ok(&SetDesired{Node: "b1", Target: target, Patches: stack, Plan: id, Cause: "apply"})
	h.ok(&ReportObserved{Node: "b1", Target: target, Pid: 100, Active: PatchIDs(stack), Pause: 612 * time.Microsecond})
	s := h.state()
	st, _ := s.Plans[id].Step("b1")
	if st.ApplyPause != 612*time.Microsecond || st.RevertPause != 0 {
		t.Errorf("b1 step pauses = apply %v revert %v; want 612µs and 0", st.ApplyPause, st.RevertPause)
	}
	if e := s.History[len(s.History)-1]; e.Kind != EventObserved || e.Node != "b1" || e.Pause != 612*time.Microsecond {
		t.Errorf("last event = %+v; want b1's observed event with pause 612µs", e)
	}
	// A report with the same stack changes nothing, whatever it says.
	h.ok(&ReportObserved{Node: "b1", Target: target, Pid: 100, Active: PatchIDs(stack), Pause: time.Second})
	if st, _ := h.state().Plans[id].Step("b1"); st.ApplyPause != 612*time.Microsecond {
		t.Errorf("ApplyPause after a report with no change = %v; want 612µs", st.ApplyPause)
	}
	h.ok(&RollbackPlan{Plan: id, Reason: "test"})
	h.ok(&ReportObserved{Node: "b1", Target: target, Pid: 100, Pause: 498 * time.Microsecond})
	if st, _ := h.state().Plans[id].Step("b1"); st.ApplyPause != 612*time.Microsecond || st.RevertPause != 498*time.Microsecond {
		t.Errorf("b1 step pauses after the rollback's revert = apply %v revert %v; want 612µs and 498µs", st.ApplyPause, st.RevertPause)
	}
}

// TestObservedProcesses: a match: all observation keeps every process, a
// change in any of them is an observed event, the trial records every
// process it watches, and a malformed list is refused.
func TestObservedProcesses(t *testing.T) {
	h := newCluster(t)
	id := h.submit(spec(blob1, "sip-1"))
	h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
	stack, _ := h.state().PlanStack(id, "b1")
	h.ok(&SetDesired{Node: "b1", Target: target, Patches: stack, Plan: id, Cause: "apply"})
	ids := PatchIDs(stack)
	procs := []ObservedProcess{{Pid: 100, PidStart: 7, Active: ids}, {Pid: 101, PidStart: 8}}
	h.ok(&ReportObserved{Node: "b1", Target: target, Pid: 101, PidStart: 8, Processes: procs})
	if h.state().NodeConverged("b1", target) {
		t.Errorf("b1 converged with one of two processes unpatched; want not")
	}
	n := len(h.state().History)
	procs[1].Active = ids
	h.ok(&ReportObserved{Node: "b1", Target: target, Pid: 100, PidStart: 7, Active: ids, Processes: procs})
	s := h.state()
	if e := s.History[len(s.History)-1]; len(s.History) != n+1 || e.Kind != EventObserved || !strings.HasSuffix(e.To, " pids=100,101") {
		t.Errorf("history after the second process turned patched: last %+v (%d new); want one observed event naming pids=100,101", e, len(s.History)-n)
	}
	if !s.NodeConverged("b1", target) {
		t.Errorf("b1 not converged with both processes patched")
	}
	h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyTrial})
	st, _ := h.state().Plans[id].Step("b1")
	if want := []ProcessRef{{100, 7}, {101, 8}}; !slices.Equal(st.TrialProcesses, want) {
		t.Errorf("TrialProcesses = %v; want %v", st.TrialProcesses, want)
	}
	h.refused(&ReportObserved{Node: "b1", Target: target, Pid: 100, Processes: []ObservedProcess{{Pid: 101}, {Pid: 100}}}, ErrInvalid, "not sorted by pid")
	h.refused(&ReportObserved{Node: "b1", Target: target, Pid: 100, Processes: []ObservedProcess{{Pid: 0}}}, ErrInvalid, "not positive")
}
