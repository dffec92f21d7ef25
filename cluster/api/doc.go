// Package api holds the wire types of lpd's HTTP JSON API and a client for
// it. The server side lives in package cluster; lpctl uses Client.
//
// Endpoints (reads are answered from the node's own FSM replica; writes are
// applied by the raft leader, a follower forwards them once):
//
//	GET  /v1/status                 Status: this node's raft view
//	GET  /v1/members                []Member: gossip + raft + FSM, with last contact
//	POST /v1/plans                  SubmitRequest -> SubmitResponse (201)
//	                                (403 when the lpd has trusted_keys and no
//	                                trusted key verifies SubmitRequest.Signature)
//	GET  /v1/plans                  []PlanDetail (without history)
//	GET  /v1/plans/{id}             PlanDetail: spec, progress, nodes, history, waiting
//	POST /v1/plans/{id}/rollback    ActionResponse (also pause, resume, abort)
//	POST /v1/rollback               ActionResponse: rolls back the latest plan
//	POST /v1/nodes/{name}/promote   ActionResponse: switchover, the node becomes active
//	                                (waits for the demoted active's on_demote; 504
//	                                when it is still waiting after the handover timeout)
//	POST /v1/internal/...           agent reports: register, observed, trial-failure,
//	                                hook (HookReport), role (RoleReport, external roles)
//
// Every response body is JSON. An error answer carries {"error": "one line"}
// and a non-2xx status: 400 bad request or plan, 404 unknown plan or node,
// 409 refused by the state (the FSM's reason, or a switchover rule), 413 too
// large, 503 no raft
// leader ("no raft leader (is a quorum of servers up?)"). Client turns it
// into an *Error; a transport failure reads "cannot reach lpd at ADDR: CAUSE".
//
// # Concurrency
//
// A Client is safe for concurrent use; the types here are plain values.
package api
