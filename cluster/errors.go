package cluster

import "errors"

// Sentinel errors.
var (
	// ErrNoLeader: no raft leader is known (no quorum of servers is up).
	ErrNoLeader = errors.New("no raft leader (is a quorum of servers up?)")
	// ErrInvalidConfig: a Config field is out of range; the wrapping error
	// names it.
	ErrInvalidConfig = errors.New("invalid cluster configuration")
	// ErrNoProcess: no process matches a target.
	ErrNoProcess = errors.New("no matching process")
	// ErrHashMismatch: a patch module's bytes do not match their sha256.
	ErrHashMismatch = errors.New("patch module hash mismatch")
	// ErrStoreDamaged: the raft store in the data dir cannot be used; the
	// wrapping error names the file and the fault.
	ErrStoreDamaged = errors.New("raft store is damaged")
	// ErrLostState: the node starts with no raft state, but the cluster
	// still counts it as a voter: its data dir was lost or replaced.
	ErrLostState = errors.New("this node's raft state was lost")
)
