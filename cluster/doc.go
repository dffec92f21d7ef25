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
//   - the HTTP JSON API (httpapi.go; wire types and client in package
//     cluster/api): reads are answered from the local FSM
//     replica, writes are applied on the leader or forwarded to it;
//   - the agent (agent.go): reconciles the node's desired patch stacks in its
//     FSM replica with the target processes through the Patcher, reports what
//     it observed through the leader and runs a plan's health checks during
//     its node's trial. It acts only while a raft leader is known (its
//     reports go through the leader); a restarted node converges from the
//     patches recorded inside its targets and its replica's desired state;
//   - on the leader only, the membership reconciler (raft voters and
//     non-voters, node status and health in the FSM from gossip) and the
//     orchestrator (orchestrator.go), which moves plans phase by phase. Its
//     decisions are a pure function of the FSM state, the clock and the trial
//     failures reported to it (planStep), and every side effect is a command
//     committed through raft first, so a new leader resumes where the old
//     one stopped.
//
// # Failures during a plan
//
// A running plan fails (and, with on_failure: rollback, is rolled back
// standby side first; with pause, paused) when: its progress deadline or an
// apply phase's deadline passes; a plan health check fails on the node in
// trial (the agent there runs the checks and reports to the leader); a node
// of the pair being worked on is suspect, dead or gone in the leader's
// gossip view; a node the plan patched turns unhealthy, loses its target
// process or reports a patching error. A pair starts, and its active is
// patched, only while both members are alive and healthy.
//
// # Roles and failover (later work)
//
// Roles live in the FSM (fsm.SetRole; lpctl promote sets them by hand).
// Managed failover belongs beside reconcileMembers on the leader: promote the
// standby when the active has been dead or unhealthy for failover_after,
// after rolling the standby back first if it is in a plan's trial
// (failover_during_trial); on_promote/on_demote hooks run in the agent when
// it sees its node's role change in its replica. Until then
// failover_during_trial is not consulted: an active lost during its
// standby's trial fails the plan, which is the rollback-first outcome.
//
// # Concurrency
//
// Every loop of a Node runs on its own goroutine and ends when the Node shuts
// down; Shutdown waits for them. The FSM is read through fsm.FSM.View and
// State. The Patcher is called only from the agent goroutine, one call at a
// time. The orchestrator and the membership reconciler run only while this
// node is the raft leader and are cancelled when it loses leadership.
package cluster
