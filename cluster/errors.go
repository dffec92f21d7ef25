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
)
