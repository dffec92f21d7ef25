// Package heartbeat owns the two things lp knows about liveness: gossip
// membership of the nodes (hashicorp/memberlist) and the local health checks
// of one node. It knows nothing of raft, plans or the FSM; package cluster
// consumes its events and summaries.
//
// # Membership
//
// [Start] joins a memberlist cluster and returns a [*Membership]. Every member
// carries a [Meta] (pair, role, server flag, health summary, failing check
// and its last output line, agent version, API and raft addresses), encoded
// by [EncodeMeta] within memberlist's 512-byte limit.
//
// Membership changes arrive on [Membership.Events] as [Event] values of kind
// [Alive], [Suspect], [Dead], [Left] and [Updated]. memberlist v0.5.4 exposes
// less than that through its public API, so two are derived:
//
//   - Dead versus Left: memberlist's EventDelegate reports both as a leave,
//     and the Node.State it hands over is never set (nodeState.State shadows
//     it). A member that leaves through [Membership.Leave] therefore first
//     tells every member over TCP that it is about to leave (the "leave
//     intent", as serf does); a member that disappears without that intent is
//     reported Dead. A member that misses the intent reports Dead, the safe
//     side for a rollback trigger.
//   - Suspect: memberlist keeps suspicion internal. A member reports Suspect
//     when its own probe of the node fails (memberlist logs "Suspect NAME has
//     failed, no acks received" right before it marks the node suspect; the
//     package reads memberlist's log through its own writer). Suspicion that a
//     member only learns by gossip is not visible, so Dead may come without a
//     Suspect before it. Alive is reported again when the suspect answers a
//     direct probe of memberlist's, or when memberlist's longest suspicion
//     timeout has passed, the node is still a live member (it refuted the
//     suspicion) and it answers a ping.
//
// The local member is part of the table and gets events too (Alive at start,
// Updated on [Membership.UpdateMeta], Left on [Membership.Leave]).
//
// # Health checks
//
// [StartChecker] runs a set of [CheckSpec] (exec, tcp, http or process), each
// on its own ticker with its own timeout. A [Hysteresis] turns results into
// states (unknown until the first transition, then healthy or unhealthy after
// Successes/Failures consecutive results) and a [Damper] holds a flapping
// check, or a flapping node summary, unhealthy until it has been stable for a
// hold time. [Checker.Status] returns the [Summary]; changes are published on
// [Checker.Changes].
//
// # Concurrency
//
// A Membership and a Checker are safe for concurrent use. memberlist calls
// the package's delegates on its own goroutines; they never block: events go
// to a bounded in-memory queue drained by one goroutine into the Events
// channel, and when the reader falls more than Config.EventBuffer events
// behind, the oldest are dropped (counted by [Membership.Dropped]); the
// member table ([Membership.Members]) is always current. Summaries on
// [Checker.Changes] are coalesced: a slow reader sees the newest one.
// Shutdown and Stop end every goroutine (and every child process of a
// check) the value started and close its channel.
package heartbeat
