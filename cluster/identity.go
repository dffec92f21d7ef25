package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/heartbeat"
)

// checkIdentity runs when the node starts with empty raft stores. If a
// peer's raft configuration still holds this node as a voter and its FSM has
// the node registered, the node's state was lost (a deleted or replaced data dir): raft would let it answer
// the leader as the voter it was, with none of the entries it had
// acknowledged, and a later election could then lose committed entries.
// So the node refuses, unless Config.RejoinAsNew is set: then it leaves the
// cluster under its name (the leader removes a member that left from the
// raft configuration), waits until it is out, and joins again empty, to be
// added as a new member that catches up from the leader.
//
// With no peer reachable the node cannot tell and starts (a first start
// looks the same).
func (n *Node) checkIdentity() error {
	peer, err := n.voterPeer()
	if err != nil {
		n.log.Warn("cannot tell whether the cluster knows this node; starting", "err", err)
		return nil
	}
	if peer == "" {
		return nil
	}
	if !n.cfg.RejoinAsNew {
		return fmt.Errorf("%w: data dir %s holds no raft state, but %s still counts node %s as a raft voter "+
			"(restore the data dir from a backup, or start lpd once with --rejoin-as-new to leave the cluster as %s and join again empty)",
			ErrLostState, n.cfg.Node.DataDir, peer, n.name, n.name)
	}
	n.log.Warn("this node's raft state was lost; leaving the cluster to join again as a new member", "asked", peer)
	// The leader removes a member from raft when gossip says it left. A
	// leave that peers took for a failure (its intent came late) leaves the
	// member in raft: then join and leave again, until the deadline.
	deadline := time.Now().Add(n.rejoinTimeout())
	for attempt := 1; ; attempt++ {
		// Leave only once a peer sees this member alive: a leave of a
		// member the peers still hold dead changes nothing.
		for wait := time.Now().Add(n.rejoinTimeout() / 5); time.Now().Before(wait); time.Sleep(200 * time.Millisecond) {
			if _, row, err := n.peerView(); err == nil && row.Gossip == string(heartbeat.StateAlive) {
				break
			}
		}
		if err := n.ml.Leave(5 * time.Second); err != nil {
			return fmt.Errorf("rejoining as new: leaving gossip: %w", err)
		}
		for wait := time.Now().Add(n.rejoinTimeout() / 5); peer != "" && time.Now().Before(wait); {
			time.Sleep(200 * time.Millisecond)
			if p, _, err := n.peerView(); err == nil {
				peer = p
			}
		}
		if err := n.ml.Shutdown(); err != nil {
			return fmt.Errorf("rejoining as new: %w", err)
		}
		if err := n.startGossip(); err != nil {
			return fmt.Errorf("rejoining as new: %w", err)
		}
		if peer == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rejoining as new: %s still counts node %s as a voter after %d leaves in %v (is a raft leader up?)",
				peer, n.name, attempt, n.rejoinTimeout())
		}
		n.log.Warn("still a raft voter after leaving; leaving again", "asked", peer, "attempt", attempt)
	}
	n.log.Info("left the cluster under the old identity; joining again as a new member")
	return nil
}

// rejoinTimeout bounds the wait for the leader to remove the old identity.
func (n *Node) rejoinTimeout() time.Duration { return 10 * n.cfg.ApplyTimeout }

// voterPeer asks the alive peers in gossip for their raft configuration and
// returns the first that holds this node as a voter ("" when none does). It
// fails only when no peer answered at all.
func (n *Node) voterPeer() (string, error) {
	peer, _, err := n.peerView()
	return peer, err
}

// peerView asks the alive servers in gossip how they see this node: the
// first server that holds it as a raft voter ("" when none does) and the row
// of the last server that answered. Only servers are asked: they hold the
// raft configuration first-hand, and a large cluster has a handful of them
// (asking every member one after the other cost a fresh node ~10 s of its
// start in a 33-node cluster).
func (n *Node) peerView() (string, api.Member, error) {
	var asked, answered int
	var lastErr error
	var self api.Member
	for _, m := range n.ml.Members() {
		if m.Name == n.name || m.State != heartbeat.StateAlive || m.Meta.API == "" || !m.Meta.Server {
			continue
		}
		asked++
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		ms, err := n.internalClient(m.Meta.API).Members(ctx)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		answered++
		for _, row := range ms {
			if row.Node != n.name {
				continue
			}
			self = row
			// Registered: the node ran with this identity and its raft took
			// part (its agent registered through the leader). A voter that
			// is not registered yet was only just put into the configuration
			// (a bootstrap that counted it while it was still starting):
			// it never acknowledged anything and may start empty.
			if row.Suffrage == raft.Voter.String() && row.Status != "unregistered" {
				return m.Name, row, nil
			}
		}
	}
	if asked > 0 && answered == 0 {
		return "", self, fmt.Errorf("no peer answered (%d asked): %w", asked, lastErr)
	}
	return "", self, nil
}
