package main

import (
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
)

var update = flag.Bool("update", false, "rewrite the golden files of CLI output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// staticLPD answers one fixed plan and member list.
type staticLPD struct{}

func (staticLPD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/plans/p000003":
		d := api.PlanDetail{
			Plan: fsm.Plan{
				ID: "p000003", State: fsm.PlanRollingBack, Phase: fsm.PhaseStandbyTrial, PairIndex: 1,
				Reason: "health check check-sip failed on sip-d during its trial: 503",
				Spec: fsm.PlanSpec{Name: "fix-invite-overflow", PatchID: "fix-invite-overflow", PatchSHA256: "125a4ee9",
					Target: "sipd", Pairs: []string{"sip-1", "sip-2"}, Trial: 30 * time.Second, OnFailure: fsm.OnFailureRollback,
					Mode: "dlopen", Consistency: "entry", ApplyTimeout: 2 * time.Second},
			},
			Nodes: []api.PlanNode{
				{Node: "sip-b", Pair: "sip-1", Side: "standby", Status: "alive", Observed: []string{"fix-invite-overflow"}, Pid: 812, ApplyPause: 612345 * time.Nanosecond, RevertPause: 498 * time.Microsecond},
				{Node: "sip-a", Pair: "sip-1", Side: "active", Status: "alive", Desired: []string{"fix-invite-overflow"}, Observed: []string{"fix-invite-overflow"}, Pid: 790, Converged: true, ApplyPause: 1204 * time.Microsecond},
				{Node: "sip-d", Pair: "sip-2", Side: "standby", Status: "dead", Observed: []string{"fix-invite-overflow"}, Pid: 901, Error: "pid 901: no such process"},
				{Node: "sip-c", Pair: "sip-2", Side: "active", Status: "alive", Pid: 878, Converged: false, Observed: []string{"fix-invite-overflow"},
					Processes: []fsm.ObservedProcess{{Pid: 877}, {Pid: 878, Active: []string{"fix-invite-overflow"}}}},
			},
		}
		json.NewEncoder(w).Encode(d)
	case "/v1/members":
		json.NewEncoder(w).Encode([]api.Member{
			{Node: "sip-a", Pair: "sip-1", Role: "active", RaftState: "leader", Gossip: "alive", Health: "healthy", LastContact: "0s"},
			{Node: "sip-b", Pair: "sip-1", Role: "standby", RaftState: "follower", Gossip: "alive", Health: "unhealthy", FailingCheck: "sip-port", CheckOutput: "connection refused", LastContact: "41ms"},
			{Node: "sip-c", Pair: "sip-2", Role: "active", Roles: "external", RaftState: "nonvoter", Gossip: "alive", Health: "healthy", LastContact: "12ms"},
			{Node: "sip-d", Pair: "sip-3", Role: "active", Roles: "managed", HookPending: true, RaftState: "nonvoter", Gossip: "alive", Health: "healthy", LastContact: "9ms"},
			{Node: "witness", Role: "witness", RaftState: "follower", Gossip: "dead", Health: "unknown", LastContact: "unknown"},
		})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: "plan p000009 does not exist"})
	}
}

func TestGoldenOutput(t *testing.T) {
	addr := serve(t, staticLPD{})
	cases := []struct {
		file string
		args []string
		code int
	}{
		{"plan-show.golden", []string{"plan", "show", "p000003"}, 0},
		{"members.golden", []string{"members"}, 0},
		{"plan-show-missing.golden", []string{"plan", "show", "p000009"}, 1},
	}
	for _, c := range cases {
		out, errOut, code := run(t, append([]string{"--addr", addr}, c.args...)...)
		if code != c.code {
			t.Errorf("lpctl %v: exit %d; want %d", c.args, code, c.code)
		}
		golden(t, c.file, out+errOut)
	}
}
