package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/fsm"
)

// TestRemoveMember: a dead server is removed from raft and the FSM through
// a follower's API; the leader, a live node without --force and the active
// of a pair are refused with one line, and nothing changes.
func TestRemoveMember(t *testing.T) {
	tc := startTestCluster(t, []nodeSpec{
		{name: "w", role: "witness", server: true},
		{name: "w2", role: "witness", server: true},
		{name: "a1", pair: "pair-1", role: "active", server: true},
		{name: "b1", pair: "pair-1", role: "standby", server: true},
	}, nil)
	tc.registered()
	l := tc.leader()
	var follower *Node
	for _, n := range tc.nodes {
		if n != l && n.Name() != "w2" {
			follower = n
			break
		}
	}
	cl := api.NewClient(follower.APIAddr())
	refused := func(node string, force bool, want string) {
		t.Helper()
		_, err := cl.RemoveMember(t.Context(), node, force)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Msg, want) || strings.Contains(ae.Msg, "\n") {
			t.Fatalf("RemoveMember(%s, force=%v) = %v; want a one-line 409 containing %q", node, force, err, want)
		}
	}
	refused(l.Name(), true, "is the raft leader")
	if w2 := tc.nodes["w2"]; w2 != l {
		refused("w2", false, "alive in gossip")
	}
	if l.Name() != "a1" {
		refused("a1", true, "promote b1 first")
	}
	if got := len(l.State().Nodes); got != 4 {
		t.Fatalf("after refusals: %d nodes registered; want 4", got)
	}

	// A follower answers a body over the limit like the leader: one line,
	// 413, whether the size is announced or not.
	big := bytes.Repeat([]byte(" "), maxBody+1)
	for _, announced := range []bool{true, false} {
		var body io.Reader = bytes.NewReader(big)
		if !announced {
			body = io.MultiReader(bytes.NewReader(big)) // no Content-Length: chunked
		}
		resp, err := http.Post("http://"+follower.APIAddr()+api.PathObserved, "application/json", body)
		if err != nil {
			t.Fatalf("POST an oversize body to a follower (announced %v): %v", announced, err)
		}
		status, msg := resp.StatusCode, errorOf(t, resp)
		resp.Body.Close()
		if status != http.StatusRequestEntityTooLarge || msg != fmt.Sprintf("request body is larger than %d bytes", maxBody) {
			t.Errorf("oversize body to a follower (announced %v) = %d %q; want 413 and the leader's line", announced, status, msg)
		}
	}

	// Stop w2 for good (if it leads, another server takes over).
	tc.nodes["w2"].Kill()
	delete(tc.nodes, "w2")
	l = tc.leader()
	tc.waitFor(30*time.Second, "w2 dead in the FSM", func() bool {
		return l.State().Nodes["w2"].Status == fsm.StatusDead
	})
	for _, n := range tc.nodes {
		if n != l {
			cl = api.NewClient(n.APIAddr())
			break
		}
	}
	ms, err := cl.Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Node == "w2" && m.Health == "healthy" {
			t.Errorf("members shows dead w2 as %+v; want its health unknown", m)
		}
	}
	r, err := cl.RemoveMember(t.Context(), "w2", false)
	if err != nil {
		t.Fatalf("RemoveMember(w2) = %v", err)
	}
	if !strings.Contains(r.Message, "w2 removed") {
		t.Errorf("message = %q; want it to say w2 was removed", r.Message)
	}
	tc.waitFor(10*time.Second, "w2 gone from every replica and the raft configuration", func() bool {
		for _, n := range tc.nodes {
			if _, ok := n.State().Nodes["w2"]; ok {
				return false
			}
		}
		f := tc.leader().raft.GetConfiguration()
		if f.Error() != nil {
			return false
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID("w2") {
				return false
			}
		}
		return true
	})
	if _, err := cl.RemoveMember(t.Context(), "w2", false); err == nil || !strings.Contains(err.Error(), "neither registered") {
		t.Errorf("removing w2 again = %v; want not found", err)
	}
}
