package cluster

import (
	"context"
	"time"

	"lp/cluster/api"
	"lp/fsm"
	"lp/heartbeat"
	"lp/internal/auth"
)

// peerState is the agent's peer_health runner: the checks run against the
// pair peer's service only while the peer's lpd is gone from gossip.
type peerState struct {
	checker *heartbeat.Checker
	sent    api.PeerHealthReport
	sentAt  time.Time
}

// peerHealth runs this node's peer_health checks while its pair peer's lpd
// is dead or gone in gossip, and reports their verdict ("up", "down", or
// "" while not checking or without a verdict yet) to the leader, which
// decides a failover on it (see decide.PairRoleStep).
func (a *agent) peerHealth(ctx context.Context, self fsm.Node) {
	n := a.n
	if len(n.cfg.Node.PeerHealth) == 0 || self.Pair == "" {
		return
	}
	var peer string
	n.fsm.View(func(s *fsm.State) {
		for _, m := range s.PairMembers(self.Pair) {
			if m.Name != n.name {
				peer = m.Name
			}
		}
	})
	gone := false
	if peer != "" {
		m, ok := n.ml.Member(peer)
		gone = !ok || m.State == heartbeat.StateDead || m.State == heartbeat.StateLeft
	}
	rep := api.PeerHealthReport{Node: n.name}
	if !gone {
		a.stopPeerChecks()
	} else {
		if a.peer.checker == nil {
			var specs []heartbeat.CheckSpec
			for _, c := range n.cfg.Node.PeerHealth {
				specs = append(specs, n.checkSpec(c.Name, c.Exec, c.TCP, c.HTTP, "", c.Interval, c.Timeout, c.Failures, c.Successes))
			}
			cc := heartbeat.DefaultCheckerConfig()
			cc.Checks, cc.Logger = specs, n.log.With("part", "peer_health", "peer", peer)
			cc.Flap.Changes = -1 // a verdict is wanted now, not damped
			ch, err := heartbeat.StartChecker(cc)
			if err != nil {
				n.log.Error("starting peer_health checks", "peer", peer, "err", err)
				return
			}
			n.log.Info("peer's lpd is gone: checking its service", "peer", peer)
			a.peer.checker = ch
		}
		switch sum := a.peer.checker.Status(); sum.State {
		case heartbeat.HealthHealthy:
			rep.Peer = fsm.PeerUp
		case heartbeat.HealthUnhealthy:
			rep.Peer, rep.Check, rep.Output = fsm.PeerDown, sum.Failing, sum.Output
		}
	}
	if self.Peer == rep.Peer && self.PeerCheck == rep.Check && (rep.Peer != fsm.PeerDown || self.PeerOutput == fsm.ClipLine(rep.Output, 1024)) {
		return // the cluster knows
	}
	if rep == a.peer.sent && time.Since(a.peer.sentAt) < time.Second {
		return // sent already; the replica has not caught up yet
	}
	if _, err := n.commit(ctx, auth.Identity{}, peerHealthCommand(rep)); err != nil {
		n.log.Warn("reporting peer health", "peer", peer, "err", err)
		return
	}
	a.peer.sent, a.peer.sentAt = rep, time.Now()
}

func (a *agent) stopPeerChecks() {
	if a.peer.checker != nil {
		a.peer.checker.Stop()
		a.peer.checker = nil
	}
}
