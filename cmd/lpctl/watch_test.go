package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
)

// phasedLPD serves a plan that moves one step per GET through details, and
// healthy members.
type phasedLPD struct {
	mu      sync.Mutex
	details []api.PlanDetail
}

func (f *phasedLPD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, api.PathPlans+"/"):
		d := f.details[0]
		if len(f.details) > 1 {
			f.details = f.details[1:]
		}
		json.NewEncoder(w).Encode(d)
	case r.URL.Path == api.PathMembers:
		json.NewEncoder(w).Encode([]api.Member{
			{Node: "b1", Status: "alive", Health: "healthy"},
			{Node: "a1", Status: "alive", Health: "unhealthy", FailingCheck: "sip-port"},
		})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// trialPlan returns a plan detail in its standby trial that ends in left.
func trialPlan(seq uint64, left time.Duration, state fsm.PlanState) api.PlanDetail {
	now := time.Now()
	return api.PlanDetail{
		Plan: fsm.Plan{ID: "p000001", State: state, Phase: fsm.PhaseStandbyTrial,
			Spec:          fsm.PlanSpec{Name: "fix", Pairs: []string{"pair-1"}, Trial: 5 * time.Second},
			PhaseStarted:  now.Add(left - 5*time.Second),
			PhaseDeadline: now.Add(left),
			Steps: []fsm.NodeStep{{Node: "b1", Pair: "pair-1", Side: fsm.SideStandby, Applied: now, TrialStarted: now},
				{Node: "a1", Pair: "pair-1", Side: fsm.SideActive}}},
		Nodes: []api.PlanNode{
			{Node: "b1", Pair: "pair-1", Side: "standby", Status: "alive", Observed: []string{"fix"}, ApplyPause: 612 * time.Microsecond},
			{Node: "a1", Pair: "pair-1", Side: "active", Status: "alive"},
		},
		History: []fsm.Event{{Seq: seq, Kind: fsm.EventPlanState, Plan: "p000001", To: string(state)}},
	}
}

// TestWatchPlainNeverSilentInTrial: piped, watch prints the events and, during
// a trial, progress lines with the time left and each node's health.
func TestWatchPlainNeverSilentInTrial(t *testing.T) {
	var details []api.PlanDetail
	// Enough polls (pollInterval each) to span more than one progress
	// interval of a 5s trial.
	polls := int(2*progressInterval(5*time.Second)/pollInterval) + 2
	for i := range polls {
		details = append(details, trialPlan(1, 5*time.Second-time.Duration(i)*pollInterval, fsm.PlanRunning))
	}
	done := trialPlan(2, 0, fsm.PlanCompleted)
	details = append(details, done)
	out, errOut, code := run(t, "--addr", serve(t, &phasedLPD{details: details}), "plan", "watch", "p000001")
	if code != 0 {
		t.Fatalf("watch: exit %d, stderr %q; want 0", code, errOut)
	}
	progress := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "plan p000001 running pair-1/standby_trial, trial ") {
			progress++
			for _, want := range []string{" left:", "b1=alive/healthy[fix](pause 612µs)", "a1=alive/unhealthy (sip-port)[-]"} {
				if !strings.Contains(l, want) {
					t.Errorf("progress line %q; want it to contain %q", l, want)
				}
			}
		}
	}
	if progress < 2 {
		t.Errorf("watch printed %d progress lines during the trial; want at least 2 (no silence)\n%s", progress, out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("watch to a pipe printed terminal escapes:\n%q", out)
	}
	if !strings.HasSuffix(out, "plan p000001 completed\n") {
		t.Errorf("watch output ends %q; want the final state", out)
	}
}

// TestWatchLiveView: on a terminal the block is redrawn in place with the
// countdown and the node rows.
func TestWatchLiveView(t *testing.T) {
	details := []api.PlanDetail{trialPlan(1, 4*time.Second, fsm.PlanRunning), trialPlan(1, 3*time.Second, fsm.PlanRunning), trialPlan(2, 0, fsm.PlanRolledBack)}
	var out, errb strings.Builder
	a := &app{stdout: &out, stderr: &errb, tty: true}
	root := newRoot(a)
	root.SetArgs([]string{"--addr", serve(t, &phasedLPD{details: details}), "plan", "watch", "p000001"})
	err := root.Execute()
	if ee, ok := err.(*exitError); !ok || ee.code != exitRolledBack {
		t.Fatalf("watch of a rolled back plan: %v; want exit %d", err, exitRolledBack)
	}
	s := out.String()
	for _, want := range []string{"\x1b[", "STEP", "in trial", "waiting", "pair-1/standby_trial  trial ", "s left", "healthy", "PAUSE", "612µs", "unhealthy (sip-port)", "plan p000001 rolled_back\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("live view %q; want it to contain %q", s, want)
		}
	}
}

func TestRollbackWaitShowsEachNode(t *testing.T) {
	f := &fakeLPD{
		states: []fsm.PlanState{fsm.PlanRollingBack, fsm.PlanRolledBack},
		nodes: []api.PlanNode{
			{Node: "a1", Pair: "pair-1", Side: "active", Status: "alive", AtPreState: true},
			{Node: "b1", Pair: "pair-1", Side: "standby", Status: "dead", Observed: []string{"fix"}},
		},
		action: api.ActionResponse{Plan: "p000001", State: "rolling_back", Message: "plan p000001 is rolling_back"},
	}
	out, errOut, code := run(t, "--addr", serve(t, f), "rollback", "--wait")
	if code != 0 {
		t.Fatalf("rollback --wait: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"a1 (pair-1 active): back on its pre-plan patches [-]", "b1 (pair-1 standby): dead; converges to its pre-plan patches [-] when it is back"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("rollback --wait printed %q; want %q once", out, want)
		}
	}
}

func TestSubmitHelpDescribesThePlanFile(t *testing.T) {
	out, _, code := run(t, "plan", "submit", "--help")
	if code != 0 {
		t.Fatalf("plan submit --help: exit %d", code)
	}
	for _, want := range []string{"name:", "patch:", "target:", "pairs:", "trial:", "health:", "on_failure:", "failover_during_trial:", "progress_deadline:", "docs/config.md"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan submit --help does not mention %q", want)
		}
	}
}
