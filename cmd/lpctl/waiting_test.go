package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"lp/cluster/api"
	"lp/fsm"
)

// waitingPlan is a plan detail in state st that waits for why ("" for
// none), with one history event per state.
func waitingPlan(seq uint64, st fsm.PlanState, why string) api.PlanDetail {
	return api.PlanDetail{
		Plan: fsm.Plan{ID: "p000001", State: st, Spec: fsm.PlanSpec{Name: "fix", Target: "svc", Pairs: []string{"pair-1"}}},
		Nodes: []api.PlanNode{
			{Node: "a1", Pair: "pair-1", Side: "active", Status: "alive"},
			{Node: "b1", Pair: "pair-1", Side: "standby", Status: "dead"},
		},
		History: []fsm.Event{{Seq: seq, Kind: fsm.EventPlanState, Plan: "p000001", To: string(st)}},
		Waiting: why,
	}
}

// TestPlanShowWaiting: plan show prints why the plan waits on a line of
// its own, and -o json carries it; a plan that does not wait has no such
// line.
func TestPlanShowWaiting(t *testing.T) {
	addr := serve(t, &phasedLPD{details: []api.PlanDetail{waitingPlan(1, fsm.PlanPending, "node b1 is dead")}})
	out, errOut, code := run(t, "--addr", addr, "plan", "show", "p000001")
	if code != 0 {
		t.Fatalf("plan show: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "\nwaiting: node b1 is dead\nnodes:\n") {
		t.Errorf("plan show of a waiting plan:\n%s\nwant a line \"waiting: node b1 is dead\" before the nodes", out)
	}
	out, _, _ = run(t, "--addr", addr, "-o", "json", "plan", "show", "p000001")
	var d api.PlanDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Waiting != "node b1 is dead" {
		t.Errorf("plan show -o json: %v, waiting %q; want %q", err, d.Waiting, "node b1 is dead")
	}
	if !strings.Contains(out, `"waiting": "node b1 is dead"`) {
		t.Errorf("plan show -o json:\n%s\nwant the field waiting", out)
	}
	addr = serve(t, &phasedLPD{details: []api.PlanDetail{waitingPlan(1, fsm.PlanCompleted, "")}})
	if out, _, _ := run(t, "--addr", addr, "plan", "show", "p000001"); strings.Contains(out, "waiting") {
		t.Errorf("plan show of a completed plan:\n%s\nwant no waiting line", out)
	}
	if out, _, _ := run(t, "--addr", addr, "-o", "json", "plan", "show", "p000001"); strings.Contains(out, "waiting") {
		t.Errorf("plan show -o json of a completed plan:\n%s\nwant no waiting field (omitempty)", out)
	}
}

// TestWatchWaitingOncePerChange: piped, watch prints one line per change
// of the reason (not one per answer), and none when the plan stops
// waiting; the live view shows it under the plan's header.
func TestWatchWaitingOncePerChange(t *testing.T) {
	details := []api.PlanDetail{
		waitingPlan(1, fsm.PlanPending, "node b1 is suspect"),
		waitingPlan(1, fsm.PlanPending, "node b1 is suspect"),
		waitingPlan(1, fsm.PlanPending, "node b1 is dead"),
		waitingPlan(1, fsm.PlanPending, "node b1 is dead"),
		waitingPlan(1, fsm.PlanPending, "node b1 is dead"),
		waitingPlan(2, fsm.PlanRunning, ""),
		waitingPlan(2, fsm.PlanRunning, ""),
		waitingPlan(3, fsm.PlanCompleted, ""),
	}
	out, errOut, code := run(t, "--addr", serve(t, &phasedLPD{details: details}), "plan", "watch", "p000001")
	if code != 0 {
		t.Fatalf("watch: exit %d, stderr %q", code, errOut)
	}
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if _, why, ok := strings.Cut(l, " plan p000001 waiting: "); ok {
			got = append(got, why)
		}
	}
	if want := []string{"node b1 is suspect", "node b1 is dead"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("watch printed waiting lines %q; want %q (one per change)\n%s", got, want, out)
	}

	var live, errb strings.Builder
	a := &app{stdout: &live, stderr: &errb, tty: true}
	root := newRoot(a)
	root.SetArgs([]string{"--addr", serve(t, &phasedLPD{details: details[2:]}), "plan", "watch", "p000001"})
	if err := root.Execute(); err != nil {
		t.Fatalf("live watch: %v", err)
	}
	if !strings.Contains(live.String(), "\nwaiting: node b1 is dead\n") {
		t.Errorf("live view %q; want the line \"waiting: node b1 is dead\"", live.String())
	}
}

// TestRollbackWaitShowsWaiting: rollback --wait prints the reason once per
// change (submit --wait follows the plan as plan watch does, tested above).
func TestRollbackWaitShowsWaiting(t *testing.T) {
	done := waitingPlan(2, fsm.PlanRolledBack, "")
	done.Nodes[0].AtPreState = true
	details := []api.PlanDetail{
		waitingPlan(1, fsm.PlanRollingBack, "for b1 (dead, last seen 2026-12-02T09:00:00Z) to roll back"),
		waitingPlan(1, fsm.PlanRollingBack, "for b1 (dead, last seen 2026-12-02T09:00:00Z) to roll back"),
		done,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/rollback", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(api.ActionResponse{Plan: "p000001", State: "rolling_back", Message: "plan p000001 is rolling_back"})
	})
	mux.Handle("/", &phasedLPD{details: details})
	out, errOut, code := run(t, "--addr", serve(t, mux), "rollback", "--wait")
	if code != 0 {
		t.Fatalf("rollback --wait: exit %d, stderr %q", code, errOut)
	}
	if n := strings.Count(out, " plan p000001 waiting: for b1 (dead, last seen 2026-12-02T09:00:00Z) to roll back\n"); n != 1 {
		t.Errorf("rollback --wait printed the waiting line %d times; want once\n%s", n, out)
	}
}
