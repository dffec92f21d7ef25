package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"lp/cluster/api"
)

// electingLPD answers /v1/status without a leader for the first calls, then
// with one; members are healthy from the start.
type electingLPD struct {
	mu      sync.Mutex
	calls   int
	noLeads int
}

func (e *electingLPD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch r.URL.Path {
	case api.PathStatus:
		e.calls++
		st := api.Status{Node: "w", RaftState: "Follower"}
		if e.calls > e.noLeads {
			st.Leader, st.LeaderAPI = "w", "127.0.0.1:1"
		}
		json.NewEncoder(w).Encode(st)
	case api.PathMembers:
		json.NewEncoder(w).Encode([]api.Member{
			{Node: "a", Status: "alive", Health: "healthy"},
			{Node: "b", Status: "alive", Health: "unhealthy"},
		})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestWaitLeader(t *testing.T) {
	e := &electingLPD{noLeads: 3}
	addr := serve(t, e)
	out, errOut, code := run(t, "--addr", addr, "wait", "--leader", "--timeout", "1m")
	if code != 0 || out != "ready: leader w\n" {
		t.Fatalf("wait --leader = %d, %q, %q; want 0 and the leader", code, out, errOut)
	}
	if e.calls <= e.noLeads {
		t.Errorf("wait returned after %d status calls; the leader appears at call %d", e.calls, e.noLeads+1)
	}
}

func TestWaitMembersTimesOut(t *testing.T) {
	addr := serve(t, &electingLPD{})
	// Only one member is healthy: waiting for two must give up with the
	// reason.
	_, errOut, code := run(t, "--addr", addr, "wait", "--leader", "--members", "2", "--timeout", "600ms")
	if code != 1 || !strings.Contains(errOut, "1 of 2 members alive and healthy") {
		t.Fatalf("wait --members 2 = %d, %q; want 1 and the count", code, errOut)
	}
	if _, _, code := run(t, "--addr", addr, "wait", "--members", "1"); code != 0 {
		t.Fatalf("wait --members 1 = %d; want 0", code)
	}
	if _, errOut, code := run(t, "--addr", addr, "wait"); code != 1 || !strings.Contains(errOut, "--leader") {
		t.Fatalf("wait without a condition = %d, %q; want 1 and a hint", code, errOut)
	}
}
