package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// suffrage returns name's suffrage in the leader's raft configuration ("" =
// not in it).
func suffrage(l *Node, name string) string {
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return ""
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == name {
			return s.Suffrage.String()
		}
	}
	return ""
}

// TestDeadVoterLosesItsVote: a voter dead for DeadVoterTimeout is demoted
// (four voters: three remain), and becomes a voter again once it is back
// and registered.
func TestDeadVoterLosesItsVote(t *testing.T) {
	specs := []nodeSpec{{name: "w1", role: "witness", server: true}, {name: "w2", role: "witness", server: true},
		{name: "w3", role: "witness", server: true}, {name: "w4", role: "witness", server: true}}
	tc := startTestCluster(t, specs, func(c *Config) { c.DeadVoterTimeout = 3 * time.Second })
	tc.registered()
	l := tc.leader()
	victim := "w4"
	if l.Name() == victim {
		victim = "w3"
	}
	tc.waitFor(15*time.Second, victim+" a voter", func() bool { return suffrage(tc.leader(), victim) == raft.Voter.String() })
	cfg := tc.cfgs[victim]
	tc.nodes[victim].Kill()
	delete(tc.nodes, victim)
	// Failure detection, the FSM's dead status, then the timeout: each
	// bounded by the configured timings; generous for a loaded machine.
	tc.waitFor(60*time.Second, victim+" demoted", func() bool {
		for _, n := range tc.nodes {
			if n.IsLeader() {
				return suffrage(n, victim) == raft.Nonvoter.String()
			}
		}
		return false
	})
	tc.start(victim, cfg)
	tc.waitFor(60*time.Second, victim+" a voter again", func() bool {
		for _, n := range tc.nodes {
			if n.IsLeader() {
				return suffrage(n, victim) == raft.Voter.String()
			}
		}
		return false
	})
}
