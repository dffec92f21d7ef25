// Package fsm owns the replicated state machine of an lp cluster: the nodes
// and their pair roles, patch module blobs, patch plans (an immutable spec
// plus progress), the desired and observed patch state of every node and
// target, and an append-only history of every transition.
//
// # Determinism
//
// [FSM] implements raft.FSM. Apply is pure: a command in, a state change
// (or a refusal) out. It reads no clock, draws no random numbers and does no
// I/O; the time of a command travels inside the command (see [Encode]). The
// same log applied to two FSMs gives byte-identical snapshots.
//
// Every command is validated against the current state before anything is
// changed: a refused command changes nothing, not even the history.
//
// Apply returns a *[Result] for every command log entry, refused or not;
// [ResultOf] turns an ApplyFuture's Response into a *Result and an error
// that matches the sentinel errors with errors.Is. Apply never panics on
// bad input; an internal bug is reported as a Result with [CodeInternal]
// rather than crashing every replica at the same log index.
//
// # Safety rules the FSM enforces
//
// The orchestrator (package cluster) drives plans, but the FSM refuses a
// command that would break the rules of a 1+1 rollout, so that a buggy or
// stale leader cannot:
//
//   - a plan moves pair by pair, standby_apply -> standby_trial ->
//     active_apply -> active_trial, and leaves a trial only once its trial
//     time has elapsed;
//   - a node's desired state changes for a plan only in that node's apply
//     phase (so the active of a pair is never patched before its standby
//     passed its trial), and only to the plan's stack ([State.PlanStack]);
//   - a pair is started or its active patched only while both members are
//     alive and healthy;
//   - a plan is rolled_back only when every plan node's desired state equals
//     its pre-plan state (the orchestrator also waits until each registered
//     node observed it; past Plan.RollbackDeadline it fails the plan).
//   - a pair has at most one active under managed roles: promoting a node
//     demotes its peer in the same command; a dead or departed node is
//     never promoted; only a role probe (SetRole.Probed) sets the role of a
//     node with external roles, and never that of a managed one;
//   - every role change bumps the node's RoleEpoch; ReportHook settles the
//     hook of one epoch once (HookEpoch), so a hook is owed exactly when
//     RoleEpoch > HookEpoch.
//
// # Concurrency
//
// raft calls Apply, Snapshot and Restore from its single FSM goroutine.
// Readers on other goroutines use [FSM.State] (a deep copy) or [FSM.View]
// (a read lock around a callback). Blob data is content-addressed and never
// modified after it is stored, so copies share it: callers must not write to
// [Blob.Data]. A snapshot taken by Snapshot is a deep copy; Persist may run
// concurrently with later Apply calls.
package fsm
