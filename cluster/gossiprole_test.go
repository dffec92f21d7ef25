package cluster

import (
	"testing"
	"time"
)

// gossipedRole is the role node announces in its own gossip metadata.
func gossipedRole(n *Node) string {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.meta.Role
}

// TestRoleIsGossipedOnlyFromTheReplica: a node gossips no role until its
// replica states one (its config's role is only a wish: a node restarted
// with an empty replica must not show a second active in a pair), then the
// replica's.
func TestRoleIsGossipedOnlyFromTheReplica(t *testing.T) {
	lone := startTestCluster(t, []nodeSpec{{name: "a1", pair: "p1", role: "active"}}, nil)
	n := lone.nodes["a1"]
	// Several probe intervals of a node that has no replica of a cluster.
	for range 10 {
		if r := gossipedRole(n); r != "" {
			t.Fatalf("a1 with an empty replica gossips role %q; want none", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.Kill()

	tc := startTestCluster(t, []nodeSpec{
		{name: "w1", role: "witness", server: true},
		{name: "a1", pair: "p1", role: "active"},
		{name: "b1", pair: "p1", role: "standby"},
	}, nil)
	tc.registered()
	for name, want := range map[string]string{"a1": "active", "b1": "standby"} {
		tc.waitFor(10*time.Second, name+" gossips role "+want, func() bool { return gossipedRole(tc.nodes[name]) == want })
	}
}
