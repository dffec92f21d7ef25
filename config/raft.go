package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Raft is the raft timing and log compaction of a node (raft:). Every
// server of a cluster should have the same timeouts. The defaults suit a
// LAN; a WAN or a heavily loaded host wants longer timeouts.
type Raft struct {
	HeartbeatTimeout   time.Duration // heartbeat_timeout: a follower without contact this long starts an election
	ElectionTimeout    time.Duration // election_timeout: a candidate without a result this long starts again; >= heartbeat_timeout
	LeaderLeaseTimeout time.Duration // leader_lease_timeout: a leader without a quorum's contact this long steps down; <= heartbeat_timeout
	CommitTimeout      time.Duration // commit_timeout: longest wait before an idle leader sends the commit index
	SnapshotThreshold  int           // snapshot_threshold: log entries since the last snapshot that trigger one
	TrailingLogs       int           // trailing_logs: log entries kept after a snapshot, for followers that lag
}

// DefaultRaft returns the raft: defaults.
func DefaultRaft() Raft {
	return Raft{
		HeartbeatTimeout:   600 * time.Millisecond,
		ElectionTimeout:    600 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		SnapshotThreshold:  4096,
		TrailingLogs:       4096,
	}
}

// Bounds of raft:. Raft itself refuses timeouts below 5ms (commit 1ms); an
// upper bound catches "10" meant as seconds but written as minutes or hours.
const (
	minRaftTimeout       = 5 * time.Millisecond
	maxRaftTimeout       = 5 * time.Minute
	minCommitTimeout     = time.Millisecond
	minSnapshotThreshold = 16
	maxLogCount          = 1 << 24
)

func raftFields(r *Raft) []field {
	return []field{
		{"heartbeat_timeout", duration(&r.HeartbeatTimeout)},
		{"election_timeout", duration(&r.ElectionTimeout)},
		{"leader_lease_timeout", duration(&r.LeaderLeaseTimeout)},
		{"commit_timeout", duration(&r.CommitTimeout)},
		{"snapshot_threshold", integer(&r.SnapshotThreshold, "an integer 16-16777216")},
		{"trailing_logs", integer(&r.TrailingLogs, "an integer 0-16777216")},
	}
}

func (r *Raft) validate() error {
	for _, d := range []struct {
		field    string
		v, lo, h time.Duration
	}{
		{"raft.heartbeat_timeout", r.HeartbeatTimeout, minRaftTimeout, maxRaftTimeout},
		{"raft.election_timeout", r.ElectionTimeout, minRaftTimeout, maxRaftTimeout},
		{"raft.leader_lease_timeout", r.LeaderLeaseTimeout, minRaftTimeout, maxRaftTimeout},
		{"raft.commit_timeout", r.CommitTimeout, minCommitTimeout, maxRaftTimeout},
	} {
		if d.v < d.lo || d.v > d.h {
			return invalid(d.field, fmt.Sprintf("%v out of range %v-%v", d.v, d.lo, d.h))
		}
	}
	switch {
	case r.ElectionTimeout < r.HeartbeatTimeout:
		return invalidNear("raft.election_timeout", "raft", fmt.Sprintf("%v is less than heartbeat_timeout %v", r.ElectionTimeout, r.HeartbeatTimeout))
	case r.LeaderLeaseTimeout > r.HeartbeatTimeout:
		return invalidNear("raft.leader_lease_timeout", "raft", fmt.Sprintf("%v is more than heartbeat_timeout %v", r.LeaderLeaseTimeout, r.HeartbeatTimeout))
	case r.SnapshotThreshold < minSnapshotThreshold || r.SnapshotThreshold > maxLogCount:
		return invalid("raft.snapshot_threshold", fmt.Sprintf("%d out of range %d-%d", r.SnapshotThreshold, minSnapshotThreshold, maxLogCount))
	case r.TrailingLogs < 0 || r.TrailingLogs > maxLogCount:
		return invalid("raft.trailing_logs", fmt.Sprintf("%d out of range 0-%d", r.TrailingLogs, maxLogCount))
	}
	return nil
}

// Retention bounds the replicated state (retention:): the leader prunes
// history events and finished plans beyond these limits, and modules that
// nothing references any more go with them.
type Retention struct {
	History    int           // history: events kept, the newest; 0 = no count limit
	HistoryAge time.Duration // history_age: events older than this are dropped; 0 = no age limit
	Plans      int           // plans: finished plans kept, the newest; 0 = no limit
}

// DefaultRetention returns the retention: defaults.
func DefaultRetention() Retention {
	return Retention{History: 10000, HistoryAge: 30 * 24 * time.Hour, Plans: 100}
}

func retentionFields(r *Retention) []field {
	return []field{
		{"history", integer(&r.History, "an integer >= 0")},
		{"history_age", duration(&r.HistoryAge)},
		{"plans", integer(&r.Plans, "an integer >= 0")},
	}
}

func (r *Retention) validate() error {
	switch {
	case r.History < 0:
		return invalid("retention.history", fmt.Sprintf("%d is negative (0: no count limit)", r.History))
	case r.HistoryAge < 0:
		return invalid("retention.history_age", fmt.Sprintf("%v is negative (0: no age limit)", r.HistoryAge))
	case r.Plans < 0:
		return invalid("retention.plans", fmt.Sprintf("%d is negative (0: no limit)", r.Plans))
	}
	return nil
}

// section returns the decoder of a section with the given fields.
func section(fields []field) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, v *yaml.Node) error {
		return d.mapping(path, v, fields)
	}
}
