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
//     its node's trial. It changes a target only on a replica the leader
//     confirmed current: after a start, a leader change or a loss of
//     contact it asks the leader for its read index (POST
//     /v1/internal/read-index: a raft barrier and VerifyLeader, then the
//     leader's fsm.State.Index) and waits until its FSM has applied it;
//     then it first only reports what each target's record says runs.
//     Patches no plan knows (applied by hand) are reported as unmanaged and
//     never reverted. See docs/agent.md;
//   - on the leader only, the membership reconciler (raft voters and
//     non-voters, node status and health in the FSM from gossip) and the
//     orchestrator (leader.go), which moves plans phase by phase. Its
//     decisions are a pure function of the FSM state, the clock and the trial
//     failures reported to it (package decide: decide.PlanStep), and every
//     side effect is a command
//     committed through raft first, so a new leader resumes where the old
//     one stopped.
//
// # Failures during a plan
//
// A running plan fails (and, with on_failure: rollback, is rolled back
// standby side first; with pause, paused) when: its progress deadline or an
// apply phase's deadline passes; a plan health check fails on the node in
// trial (the agent there runs the checks and reports to the leader); a node
// of the pair being worked on is dead or gone in the leader's gossip view,
// or suspect there for longer than the bound the leader recorded with the
// suspicion (heartbeat.Timing.SuspectBound: memberlist refutes a false
// suspicion well within it, so a busy but live node fails nothing); a node the plan patched turns unhealthy, loses its target
// process or reports a patching error. A pair starts, and its active is
// patched, only while both members are alive and healthy.
//
// # Roles and failover
//
// Roles live in the FSM. With roles: managed (the default) the leader owns
// them: beside the orchestrator it runs the pure decision
// decide.PairRoleStep on every tick. When a pair's active has been dead, gone or
// unhealthy in the FSM (a suspect node is not down yet) for its
// failover_after — counted from the FSM's DownSince, so a new leader goes
// on counting — and the standby is alive and healthy, the leader commits
// one SetRole that promotes the standby and demotes the active. Only the
// raft leader of a majority can commit it: a node cut off from the leader
// never promotes itself, and its agent, whose replica is then stale, acts
// on nothing.
//
// Every role change bumps the node's RoleEpoch in the FSM. The agent of the
// node sees its change in its replica and runs the hook it owes
// (on_promote on becoming active, on_demote on leaving active) through
// sh -c with LP_NODE, LP_PAIR, LP_ROLE, LP_OLD_ROLE and LP_ROLE_EPOCH in the
// environment, logs its output, and reports the result (ReportHook), which
// sets HookEpoch and records a history event; a failing hook is reported,
// it blocks nothing. A hook runs at most once per role change: the agent
// writes the epoch to data_dir/hook-epoch before it starts the hook, so
// after a crash mid-hook it reports the hook as not run again rather than
// running it twice. A node that was down when its role changed (the old
// active) runs the owed hook when it is back and caught up: it rejoins as
// standby and runs on_demote; there is no automatic failback.
//
// Manual switchover (lpctl promote NODE, see decide.Promotion): with the
// active alive, the leader demotes it and records NODE as its Handover
// target; decide.PairRoleStep promotes NODE once the demoted node has reported its
// on_demote (or is dead, or the handover timeout passed), so the hooks run
// demote first, then promote. With the active dead NODE is promoted at
// once.
//
// failover_during_trial: when the standby to be promoted runs a plan's
// patch that has not passed its trial, rollback-first (the default) rolls
// the plan back and promotes only once the standby runs its pre-plan stack
// again; keep-patch promotes it with the patch (the plan then waits for the
// old active to return before patching it). Both members of a pair never
// run untried code together: the FSM lets a plan patch the active only
// after the standby passed its trial, so an untried patch is on one member
// at most, and a pair starts, or its active is patched, only while both
// members are alive and healthy and the pair has its active and its
// standby (no failover or switchover under way).
//
// With roles: external the node's agent runs role_probe every
// RoleProbeInterval and reports a changed role (SetRole with Probed); the
// leader never promotes such a pair and no hooks run; plans follow the
// probed roles.
//
// # Concurrency
//
// Every loop of a Node runs on its own goroutine and ends when the Node shuts
// down; Shutdown waits for them. The FSM is read through fsm.FSM.View and
// State. The Patcher is called only from the agent goroutine, one call at a
// time. The orchestrator and the membership reconciler run only while this
// node is the raft leader and are cancelled when it loses leadership.
package cluster
