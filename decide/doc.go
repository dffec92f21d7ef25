// Package decide holds the leader's deciders: pure functions from the
// replicated state (fsm.State), the clock and what agents reported to the
// leader, to the next fsm command and why.
//
//   - PlanStep (NextSteps for every plan): the next step of a plan that is
//     pending, running or rolling back: start, give a node its stack, start
//     or pass a trial, fail (roll back or pause), complete, finish a
//     rollback or fail it past the rollback deadline.
//   - PairRoleStep (RoleSteps for every pair): failover and switchover of
//     pairs with managed roles, rollback-first when a standby to promote
//     runs an untried patch.
//   - Promotion: what `lpctl promote NODE` commits, or a Refusal.
//   - Wake: the earliest time ahead at which a decision may change with
//     no other change of the state (a trial's end, a failover_after, a
//     suspicion's bound).
//
// The package imports fsm and the standard library only: no raft, HTTP,
// gossip or agent I/O (nomad keeps its scheduler apart from its server the
// same way). The cluster package runs the deciders on the leader and
// commits what they return; any leader decides the same from the same
// state, so a new leader continues where the old one stopped.
//
// Every function here is safe for concurrent use; none keeps state. The
// *fsm.State passed in is only read.
package decide
