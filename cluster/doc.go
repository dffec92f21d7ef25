// Package cluster is the node runtime of lpd: it wires raft (hashicorp/raft
// over TCP, raft-boltdb/v2 storage and file snapshots under data_dir), gossip
// membership and health checks (package heartbeat), the replicated state
// machine (package fsm) and the single-host patcher (package engine, behind
// the Patcher interface) into one Node.
//
// A Node runs:
//
//   - raft: servers are voters, other nodes non-voters; with bootstrap_expect
//     the lowest-named server bootstraps once that many servers are in gossip
//     and no peer reports an existing cluster;
//   - the HTTP JSON API (api.go): reads are answered from the local FSM
//     replica, writes are applied on the leader or forwarded to it;
//   - the agent (agent.go): reconciles the node's desired patch stacks in its
//     FSM replica with the target processes through the Patcher, reports what
//     it observed through the leader and runs a plan's health checks during
//     its node's trial;
//   - on the leader only, the membership reconciler (raft voters and
//     non-voters, node status and health in the FSM from gossip) and the
//     orchestrator (orchestrator.go), which moves plans phase by phase. Its
//     decisions are a pure function of the FSM state, the clock and the trial
//     failures reported to it (planStep), and every side effect is a command
//     committed through raft first, so a new leader resumes where the old
//     one stopped.
//
// # Concurrency
//
// Every loop of a Node runs on its own goroutine and ends when the Node shuts
// down; Shutdown waits for them. The FSM is read through fsm.FSM.View and
// State. The Patcher is called only from the agent goroutine, one call at a
// time. The orchestrator and the membership reconciler run only while this
// node is the raft leader and are cancelled when it loses leadership.
package cluster
