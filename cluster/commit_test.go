package cluster

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/fsm"
	"lp/internal/auth"
)

// TestAgentNeedsNoOwnAPI: with the API servers of every follower pair
// node closed, their agents still register, report and take part in a plan
// to its end: they commit through the leader, never through their own API.
func TestAgentNeedsNoOwnAPI(t *testing.T) {
	tc := startTestCluster(t, threeServers, nil)
	tc.registered()
	l := tc.leader()
	for _, name := range []string{"a1", "b1"} {
		if n := tc.nodes[name]; n != l {
			n.httpSrv.Close()
		}
	}
	id := tc.submit("fix-own", 0, nil)
	p := tc.waitPlan(id, fsm.PlanCompleted, time.Minute)
	for _, st := range p.Steps {
		if got := tc.patcher.active(tc.pids[st.Node]); len(got) != 1 || got[0] != "fix-own" {
			t.Errorf("%s runs %v; want [fix-own]", st.Node, got)
		}
	}
}

// TestCommitThroughFollower: a follower's commit is applied by the leader
// and is in the follower's own replica when commit returns; the leader
// refuses a command sent to it once it no longer leads, and one the caller
// may not issue.
func TestCommitThroughFollower(t *testing.T) {
	tc := startTestCluster(t, threeServers, nil)
	tc.registered()
	l := tc.leader()
	var f *Node
	for _, n := range tc.nodes {
		if n != l && n.Name() != "w" {
			f = n
			break
		}
	}
	// A target the node's agent does not report, so that nothing but this
	// commit writes it.
	res, err := f.commit(t.Context(), auth.Identity{}, &fsm.ReportObserved{Node: f.Name(), Target: "test-only", Pid: 4242, Error: "test report"})
	if err != nil {
		t.Fatalf("commit through follower %s: %v", f.Name(), err)
	}
	if got := f.State().Observed[f.Name()]["test-only"]; got.Pid != 4242 || res.Index == 0 || f.raft.AppliedIndex() < res.Index {
		t.Errorf("follower's replica after commit: %+v (applied %d, commit index %d); want the report", got, f.raft.AppliedIndex(), res.Index)
	}
	// Refused by the leader's FSM: the same refusal on the follower.
	_, err = f.commit(t.Context(), auth.Identity{}, &fsm.ReportObserved{Node: "ghost", Target: "svc"})
	if !isNotFound(err) || !strings.Contains(err.Error(), "node ghost is not registered") {
		t.Errorf("commit of a report for an unknown node = %v; want the leader's 404", err)
	}
	// A follower does not take commits.
	if status, msg := post(t, f.APIAddr(), "/v1/internal/commit", []byte(`{"entry":{}}`)); status != http.StatusServiceUnavailable || !strings.Contains(msg, "is not the raft leader") {
		t.Errorf("POST commit to a follower = %d %q; want 503", status, msg)
	}
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not registered")
}

// TestMayCommit: what a follower may send for whom.
func TestMayCommit(t *testing.T) {
	op := auth.Identity{Role: auth.RoleOperator, Name: "alice", Via: "cert"}
	reader := auth.Identity{Role: auth.RoleReader, Name: "bob", Via: "token"}
	b1 := auth.Identity{Role: auth.RoleNode, Name: "b1", Via: "cert"}
	local := auth.Identity{Role: auth.RoleOperator, Name: "root", Via: "local uid 0", Local: true}
	for _, c := range []struct {
		id  auth.Identity
		cmd fsm.Command
		ok  bool
	}{
		{b1, &fsm.ReportObserved{Node: "b1"}, true},
		{b1, &fsm.ReportObserved{Node: "a1"}, false},
		{b1, &fsm.RegisterNode{Name: "b1"}, true},
		{b1, &fsm.RegisterNode{Name: "w"}, false},
		{b1, &fsm.ReportHook{Node: "b1"}, true},
		{b1, &fsm.SetPeerHealth{Node: "a1"}, false},
		{b1, &fsm.SetRole{Node: "b1", Probed: true}, true},
		{b1, &fsm.SetRole{Node: "b1", Role: fsm.RoleActive}, false}, // a promotion is the leader's
		{b1, &fsm.RollbackPlan{Plan: "p000001"}, false},
		{op, &fsm.RollbackPlan{Plan: "p000001"}, true},
		{op, &fsm.SubmitPlan{}, true},
		{op, &fsm.ReportObserved{Node: "b1"}, false},
		{reader, &fsm.AbortPlan{Plan: "p000001"}, false},
		{local, &fsm.ReportObserved{Node: "b1"}, true},
		{local, &fsm.PlanPhase{Plan: "p000001"}, false}, // orchestrator steps are the leader's
		{local, &fsm.Prune{}, false},
	} {
		err := mayCommit(c.id, c.cmd)
		if (err == nil) != c.ok {
			t.Errorf("mayCommit(%s, %s %+v) = %v; want ok %v", c.id, c.cmd.CommandType(), c.cmd, err, c.ok)
		}
	}
}

// TestFollowersLearnCommitsAtOnce: with a commit timeout of an hour (an
// idle raft leader would tell its followers about the last commit only
// that much later: heartbeats carry no commit index), a command the leader
// commits reaches every follower's replica anyway, because the leader
// follows each commit with a barrier entry (commitLoop).
func TestFollowersLearnCommitsAtOnce(t *testing.T) {
	tc := startTestCluster(t, threeServers, func(c *Config) { c.CommitTimeout = time.Hour })
	tc.registered()
	l := tc.leader()
	for range 5 {
		// A prune with no limits changes nothing: nothing reacts to it
		// with a later entry that would carry its commit along.
		res, err := l.apply(&fsm.Prune{Cause: "test"})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if res.Index == 0 {
			t.Fatal("no raft index in the result")
		}
		for name, n := range tc.nodes {
			tc.waitFor(10*time.Second, name+" applying index "+strconv.FormatUint(res.Index, 10), func() bool { return n.raft.AppliedIndex() >= res.Index })
		}
	}
}
