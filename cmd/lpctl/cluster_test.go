package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"lp/cluster/api"
	"lp/fsm"
)

// run executes lpctl in-process and returns stdout, stderr and the status.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(args, &out, &errb)
	return out.String(), errb.String(), code
}

// fakeLPD is an API server whose plan moves through the given states, one
// per GET.
type fakeLPD struct {
	mu       sync.Mutex
	states   []fsm.PlanState
	nodes    []api.PlanNode
	requests []string
	action   api.ActionResponse
}

func (f *fakeLPD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/plans/"):
		st := f.states[0]
		if len(f.states) > 1 {
			f.states = f.states[1:]
		}
		json.NewEncoder(w).Encode(api.PlanDetail{
			Plan:    fsm.Plan{ID: "p000001", State: st, Reason: "because"},
			Nodes:   f.nodes,
			History: []fsm.Event{{Seq: 1, Kind: fsm.EventPlanState, Plan: "p000001", To: string(st)}},
		})
	case r.Method == "POST" && (r.URL.Path == "/v1/rollback" || strings.HasSuffix(r.URL.Path, "/rollback")):
		json.NewEncoder(w).Encode(f.action)
	case r.Method == "GET" && r.URL.Path == "/v1/members":
		json.NewEncoder(w).Encode([]api.Member{{Node: "a1", Pair: "pair-1", Role: "active", RaftState: "leader", Gossip: "alive", Health: "unhealthy", FailingCheck: "sip", CheckOutput: "refused", LastContact: "0s"}})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: "no such endpoint"})
	}
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	for _, args := range [][]string{{"status"}, {"members"}, {"plan", "list"}, {"rollback"}} {
		_, errOut, code := run(t, append([]string{"--addr", addr}, args...)...)
		want := "lpctl: cannot reach lpd at " + addr + ": connection refused\n"
		if code != 1 || errOut != want {
			t.Errorf("lpctl %v: exit %d, stderr %q; want 1, %q", args, code, errOut, want)
		}
	}
	t.Setenv("LP_ADDR", addr)
	if _, errOut, _ := run(t, "status"); !strings.Contains(errOut, addr) {
		t.Errorf("with LP_ADDR=%s: stderr %q; want the address from the environment", addr, errOut)
	}
}

func TestWatchExitCodes(t *testing.T) {
	cases := []struct {
		states []fsm.PlanState
		code   int
	}{
		{[]fsm.PlanState{fsm.PlanPending, fsm.PlanRunning, fsm.PlanCompleted}, 0},
		{[]fsm.PlanState{fsm.PlanRunning, fsm.PlanRollingBack, fsm.PlanRolledBack}, 2},
		{[]fsm.PlanState{fsm.PlanRunning, fsm.PlanFailed}, 3},
		{[]fsm.PlanState{fsm.PlanRunning, fsm.PlanPaused}, 4},
		{[]fsm.PlanState{fsm.PlanAborted}, 4},
	}
	for _, c := range cases {
		f := &fakeLPD{states: c.states}
		addr := serve(t, f)
		out, errOut, code := run(t, "--addr", addr, "plan", "watch", "p000001")
		last := c.states[len(c.states)-1]
		if code != c.code {
			t.Errorf("watch ending %s: exit %d (stderr %q); want %d", last, code, errOut, c.code)
		}
		if !strings.Contains(out, "plan p000001 "+string(last)) {
			t.Errorf("watch ending %s: stdout %q; want the final state", last, out)
		}
		if c.code != 0 && strings.Count(errOut, "\n") != 1 {
			t.Errorf("watch ending %s: stderr %q; want one line", last, errOut)
		}
		// -o json prints the final plan as JSON.
		f = &fakeLPD{states: c.states}
		out, _, code = run(t, "--addr", serve(t, f), "-o", "json", "plan", "watch", "p000001")
		var d api.PlanDetail
		if err := json.Unmarshal([]byte(out), &d); err != nil || d.Plan.State != last || code != c.code {
			t.Errorf("watch -o json ending %s: exit %d, %v, state %q", last, code, err, d.Plan.State)
		}
	}
}

func TestRollbackWait(t *testing.T) {
	f := &fakeLPD{
		states: []fsm.PlanState{fsm.PlanRollingBack, fsm.PlanRolledBack, fsm.PlanRolledBack},
		nodes:  []api.PlanNode{{Node: "a1", Status: "alive", AtPreState: true}, {Node: "b1", Status: "dead"}},
		action: api.ActionResponse{Plan: "p000001", State: "rolling_back", Message: "plan p000001 is rolling_back"},
	}
	out, errOut, code := run(t, "--addr", serve(t, f), "rollback", "--wait")
	if code != 0 || !strings.Contains(out, "rolled back") {
		t.Errorf("rollback --wait: exit %d, stdout %q, stderr %q; want 0", code, out, errOut)
	}
	// Already rolled back: says so, exit 0.
	f = &fakeLPD{states: []fsm.PlanState{fsm.PlanRolledBack},
		action: api.ActionResponse{Plan: "p000001", State: "rolled_back", Noop: true, Message: "plan p000001 is already rolled back"}}
	out, _, code = run(t, "--addr", serve(t, f), "rollback", "p000001")
	if code != 0 || out != "plan p000001 is already rolled back\n" {
		t.Errorf("rollback of a rolled-back plan: exit %d, stdout %q", code, out)
	}
	// Rollback that fails: exit 3.
	f = &fakeLPD{states: []fsm.PlanState{fsm.PlanFailed}, action: api.ActionResponse{Plan: "p000001"}}
	_, errOut, code = run(t, "--addr", serve(t, f), "rollback", "--wait")
	if code != 3 || !strings.Contains(errOut, "failed while rolling back") {
		t.Errorf("failed rollback: exit %d, stderr %q; want 3", code, errOut)
	}
}

func TestMembers(t *testing.T) {
	addr := serve(t, &fakeLPD{})
	out, _, code := run(t, "--addr", addr, "members")
	if code != 0 || !strings.Contains(out, "a1") || !strings.Contains(out, "sip: refused") || !strings.Contains(out, "LAST CONTACT") {
		t.Errorf("members: exit %d, stdout %q", code, out)
	}
	out, _, code = run(t, "--addr", addr, "members", "-o", "json")
	var ms []api.Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil || code != 0 || len(ms) != 1 || ms[0].RaftState != "leader" {
		t.Errorf("members -o json: exit %d, %v, %+v", code, err, ms)
	}
	if _, errOut, code := run(t, "--addr", addr, "-o", "yaml", "members"); code == 0 || !strings.Contains(errOut, "bad --output") {
		t.Errorf("-o yaml: exit %d, stderr %q; want an error", code, errOut)
	}
}

func TestSubmitBadFilesSendNothing(t *testing.T) {
	f := &fakeLPD{}
	addr := serve(t, f)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fix.so"), []byte("\x7fELF"), 0o600)
	// A 200 MiB module, sparse: refused from its size, never read.
	if f, err := os.Create(filepath.Join(dir, "huge.so")); err == nil {
		f.Truncate(200 << 20)
		f.Close()
	}
	cases := []struct{ name, body, want string }{
		{"missing.yaml", "name: x\npatch: nothere.so\ntarget: svc\n", "nothere.so: no such file or directory"},
		{"bad.yaml", "name: [x\n", "bad.yaml:"},
		{"unknown-key.yaml", "name: x\npatch: fix.so\ntarget: svc\nprots: 1\n", "unknown key"},
		{"huge.yaml", "name: x\npatch: huge.so\ntarget: svc\n", "huge.so is 209715200 bytes; the limit is 16777216 (16 MiB)"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name)
		os.WriteFile(path, []byte(c.body), 0o600)
		_, errOut, code := run(t, "--addr", addr, "plan", "submit", path)
		if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("submit %s: exit %d, stderr %q; want non-zero, one line containing %q", c.name, code, errOut, c.want)
		}
	}
	if _, errOut, code := run(t, "--addr", addr, "plan", "submit", filepath.Join(dir, "nofile.yaml")); code == 0 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("submit of a missing plan file: exit %d, stderr %q", code, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 0 {
		t.Errorf("requests sent for bad files: %v; want none", f.requests)
	}
}
