package cluster

import (
	"github.com/prometheus/client_golang/prometheus"

	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"lp/config"
	"lp/fsm"
	"lp/heartbeat"
)

// Config configures a Node. FromNode fills it from an lpd.yaml; the rest are
// tunables with defaults (Default).
type Config struct {
	Node config.Node // identity, addresses, targets and node-level health

	// Ports to listen on, all on Node.Bind. 0 picks a free port (tests);
	// FromNode copies Node.Ports.
	APIPort, RaftPort, GossipPort int

	Patcher Patcher      // required: the single-host engine
	Logger  *slog.Logger // nil discards logs
	Version string       // agent version, in gossip metadata

	Gossip heartbeat.Timing // zero: heartbeat.LANFast()

	// Metrics, when set, is gathered with the node's own registry at GET
	// /metrics: lpd passes the process-wide sink that raft's and
	// memberlist's go-metrics report to.
	Metrics prometheus.Gatherer

	// Raft timeouts, tuned for a LAN (loopback in tests).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// Raft log compaction: a snapshot after SnapshotThreshold entries,
	// keeping TrailingLogs entries behind it.
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// ApplyTimeout bounds one raft apply.
	ApplyTimeout time.Duration
	// AgentInterval is how often the agent reconciles (it also runs at once
	// when the FSM changes).
	AgentInterval time.Duration
	// LeaderInterval is how often the leader re-evaluates plans and
	// membership.
	LeaderInterval time.Duration
	// RetryBackoff is how long the agent waits before retrying a failed
	// apply or revert of the same stack in the same process.
	RetryBackoff time.Duration

	// HookTimeout bounds one run of on_promote or on_demote (the hook is
	// killed after it and reported failed).
	HookTimeout time.Duration
	// HandoverTimeout is how long a manual switchover waits for the
	// demoted node's on_demote before it promotes the other node anyway.
	HandoverTimeout time.Duration
	// RoleProbeInterval is how often a node with external roles runs its
	// role_probe; the probe's timeout is the same.
	RoleProbeInterval time.Duration

	// Retention bounds the replicated state (history, terminal plans,
	// unreferenced modules); the leader issues a Prune with it at most
	// every PruneInterval when there is something to drop, and each
	// agent removes module files the state no longer holds as often.
	Retention     fsm.Retention
	PruneInterval time.Duration
	// DeadVoterTimeout is how long a voter may stay dead (gossip) before
	// the leader takes its vote away; it becomes a voter again once alive.
	DeadVoterTimeout time.Duration

	// RejoinAsNew lets a node that starts with no raft state, but that the
	// cluster still counts as a voter (its data dir was lost), leave the
	// cluster under its name and join again as a new member. Without it
	// such a node refuses to start (ErrLostState).
	RejoinAsNew bool

	// ProcRoot is where processes are looked up; "/proc" by default.
	ProcRoot string

	// RaftTransport, when set, replaces the TCP transport (in-memory tests).
	// InmemStore keeps raft's log, stable and snapshot stores in memory.
	RaftTransport raft.Transport
	InmemStore    bool
}

// Default returns a Config with every tunable at its default and an empty
// Node.
func Default() Config {
	return Config{
		Version:            "lp-dev",
		Gossip:             heartbeat.LANFast(),
		HeartbeatTimeout:   600 * time.Millisecond,
		ElectionTimeout:    600 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		SnapshotThreshold:  4096,
		TrailingLogs:       4096,
		ApplyTimeout:       5 * time.Second,
		AgentInterval:      200 * time.Millisecond,
		LeaderInterval:     100 * time.Millisecond,
		RetryBackoff:       2 * time.Second,
		HookTimeout:        30 * time.Second,
		HandoverTimeout:    10 * time.Second,
		RoleProbeInterval:  time.Second,
		Retention:          DefaultRetention(),
		PruneInterval:      time.Minute,
		DeadVoterTimeout:   10 * time.Minute,
		ProcRoot:           "/proc",
	}
}

// DefaultRetention keeps the last 10,000 events (none older than 30
// days), the last 100 finished plans, and an unreferenced module 10 minutes
// after it was stored.
func DefaultRetention() fsm.Retention {
	return fsm.Retention{History: 10000, HistoryAge: 30 * 24 * time.Hour, Plans: 100, BlobGrace: 10 * time.Minute}
}

// FromNode returns the default Config for the node config n.
func FromNode(n *config.Node) Config {
	c := Default()
	c.Node = *n
	c.APIPort, c.RaftPort, c.GossipPort = n.Ports.API, n.Ports.Raft, n.Ports.Gossip
	c.Gossip = GossipTiming(n.Heartbeat)
	// A config.Node built without DefaultNode (zero sections) keeps the
	// defaults.
	if r := n.Raft; r != (config.Raft{}) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout =
			r.HeartbeatTimeout, r.ElectionTimeout, r.LeaderLeaseTimeout, r.CommitTimeout
		c.SnapshotThreshold, c.TrailingLogs = uint64(r.SnapshotThreshold), uint64(r.TrailingLogs)
	}
	if r := n.Retention; r != (config.Retention{}) {
		c.Retention.History, c.Retention.HistoryAge, c.Retention.Plans = r.History, r.HistoryAge, r.Plans
	}
	return c
}

// GossipTiming returns the failure-detector timing of lpd.yaml's heartbeat:
// section (lan-fast when the timing is empty).
func GossipTiming(h config.Heartbeat) heartbeat.Timing {
	switch h.Timing {
	case config.TimingLAN:
		return heartbeat.MemberlistDefaultLAN()
	case config.TimingCustom:
		e := h.Effective()
		return heartbeat.Custom(e.ProbeInterval, e.ProbeTimeout, e.SuspicionMult)
	}
	return heartbeat.LANFast()
}

// Validate names the first field out of range.
func (c Config) Validate() error {
	bad := func(field, msg string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(msg, args...))
	}
	if c.Node.Node == "" {
		return bad("Node.Node", "the node needs a name")
	}
	if c.Node.DataDir == "" && !c.InmemStore {
		return bad("Node.DataDir", "a data dir is needed unless InmemStore is set")
	}
	if net.ParseIP(c.Node.Bind) == nil {
		return bad("Node.Bind", "want an IP address, got %q", c.Node.Bind)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"APIPort", c.APIPort}, {"RaftPort", c.RaftPort}, {"GossipPort", c.GossipPort}} {
		if p.v < 0 || p.v > 65535 {
			return bad(p.name, "want 0-65535, got %d", p.v)
		}
	}
	if c.Patcher == nil {
		return bad("Patcher", "required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"HeartbeatTimeout", c.HeartbeatTimeout, 5 * time.Millisecond},
		{"ElectionTimeout", c.ElectionTimeout, 5 * time.Millisecond},
		{"LeaderLeaseTimeout", c.LeaderLeaseTimeout, 5 * time.Millisecond},
		{"CommitTimeout", c.CommitTimeout, time.Millisecond},
		{"ApplyTimeout", c.ApplyTimeout, 10 * time.Millisecond},
		{"AgentInterval", c.AgentInterval, 10 * time.Millisecond},
		{"LeaderInterval", c.LeaderInterval, 10 * time.Millisecond},
		{"RetryBackoff", c.RetryBackoff, 0},
		{"HookTimeout", c.HookTimeout, 10 * time.Millisecond},
		{"HandoverTimeout", c.HandoverTimeout, 10 * time.Millisecond},
		{"RoleProbeInterval", c.RoleProbeInterval, 10 * time.Millisecond},
		{"PruneInterval", c.PruneInterval, 10 * time.Millisecond},
		{"Retention.HistoryAge", c.Retention.HistoryAge, 0},
		{"Retention.BlobGrace", c.Retention.BlobGrace, 0},
		{"DeadVoterTimeout", c.DeadVoterTimeout, 10 * time.Millisecond},
	} {
		if d.v < d.min {
			return bad(d.name, "want at least %v, got %v", d.min, d.v)
		}
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return bad("ElectionTimeout", "%v is less than HeartbeatTimeout %v", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.SnapshotThreshold < 1 {
		return bad("SnapshotThreshold", "want at least 1, got %d", c.SnapshotThreshold)
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return bad("LeaderLeaseTimeout", "%v exceeds HeartbeatTimeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.Retention.History < 0 {
		return bad("Retention.History", "want 0 (no limit) or more, got %d", c.Retention.History)
	}
	if c.Retention.Plans < 0 {
		return bad("Retention.Plans", "want 0 (no limit) or more, got %d", c.Retention.Plans)
	}
	if c.ProcRoot == "" {
		return bad("ProcRoot", "required")
	}
	return nil
}
