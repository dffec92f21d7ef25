package api

import (
	"encoding/json"
	"time"

	"lp/fsm"
)

// Paths of the API.
const (
	PathStatus     = "/v1/status"
	PathMembers    = "/v1/members"
	PathPlans      = "/v1/plans"
	PathRollback   = "/v1/rollback"
	PathNodes      = "/v1/nodes"
	PathRegister   = "/v1/internal/register"
	PathObserved   = "/v1/internal/observed"
	PathTrialFail  = "/v1/internal/trial-failure"
	PathHook       = "/v1/internal/hook"
	PathRole       = "/v1/internal/role"
	PathReadIndex  = "/v1/internal/read-index"
	PathPeerHealth = "/v1/internal/peer-health"
	PathModules    = "/v1/internal/modules" // GET PathModules/SHA256: a module's bytes, node to node
	PathCommit     = "/v1/internal/commit"  // a command a follower sends to the leader

	// HeaderForwarded marks a request a follower forwarded to the leader,
	// so that it is never forwarded twice.
	HeaderForwarded = "X-Lp-Forwarded-By"
	// HeaderIndex is the index of the state an answer of GET status,
	// members, plans or a plan reflects: pass it back as ?index= to wait
	// for the next change (a blocking query).
	HeaderIndex = "X-Lp-Index"
	// HeaderIdentity carries the identity a follower authenticated
	// ("operator:alice (cert)") to the leader; the leader honours it only
	// from a caller that is itself a node.
	HeaderIdentity = "X-Lp-Identity"
)

// CommitRequest is POST /v1/internal/commit: one command, encoded as a
// raft entry (the leader re-stamps its time).
type CommitRequest struct {
	Entry json.RawMessage `json:"entry"`
}

// CommitResponse is the leader's answer to a CommitRequest: the raft
// index the command was applied at and the FSM's result.
type CommitResponse struct {
	Index   uint64 `json:"index"`
	Noop    bool   `json:"noop,omitempty"`
	Message string `json:"message,omitempty"`
	PlanID  string `json:"plan_id,omitempty"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// Status is GET /v1/status.
type Status struct {
	Node         string `json:"node"`
	Leader       string `json:"leader"`     // leader's node name, "" if none
	LeaderAPI    string `json:"leader_api"` // leader's API address, "" if unknown
	RaftState    string `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	Voter        bool   `json:"voter"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Plans        int    `json:"plans"`
	// LastContact is how long ago this node last heard from the leader
	// ("0s" on the leader, "never" before any contact).
	LastContact string `json:"last_contact"`
}

// Member is one row of GET /v1/members.
type Member struct {
	Node         string    `json:"node"`
	Pair         string    `json:"pair"`
	Role         string    `json:"role"`
	Server       bool      `json:"server"`
	RaftState    string    `json:"raft_state"` // leader, follower, nonvoter, none
	Suffrage     string    `json:"suffrage"`   // Voter, Nonvoter, "" when not in the raft configuration
	Gossip       string    `json:"gossip"`     // alive, suspect, dead, left, unknown
	Status       string    `json:"status"`     // the FSM's status of the node
	Health       string    `json:"health"`     // healthy, unhealthy, unknown
	FailingCheck string    `json:"failing_check,omitempty"`
	CheckOutput  string    `json:"check_output,omitempty"`
	LastContact  string    `json:"last_contact"` // leader's last contact with the node's raft ("0s" for itself)
	LastSeen     time.Time `json:"last_seen"`
	APIAddr      string    `json:"api_addr"`
	RaftAddr     string    `json:"raft_addr"`
	Targets      []string  `json:"targets"`
	// Roles is managed or external; RoleEpoch counts the node's role
	// changes and HookPending says that the hook of the last one has not
	// been reported yet.
	Roles       string `json:"roles,omitempty"`
	RoleEpoch   uint64 `json:"role_epoch,omitempty"`
	HookPending bool   `json:"hook_pending,omitempty"`
	// DownSince is when the FSM last saw the node stop being alive and
	// healthy (omitted while it is both).
	DownSince time.Time `json:"down_since,omitzero"`
	// Peer is what this node's peer_health checks say of its pair peer's
	// service (up, down; "" when not checking), PeerCheck the failing one.
	Peer      string `json:"peer,omitempty"`
	PeerCheck string `json:"peer_check,omitempty"`
	// Failover says, on an active that is down, why its standby is not
	// promoted yet (or not at all).
	Failover string `json:"failover,omitempty"`
	// Timing is the gossip timing the node publishes (name and figures,
	// "lan-fast 100ms/50ms/3/2"; empty when unknown), and TimingMismatch
	// says it differs from the timing of the node that answered.
	Timing         string `json:"timing,omitempty"`
	TimingMismatch bool   `json:"timing_mismatch,omitempty"`
}

// SubmitRequest is the body of POST /v1/plans: the plan (config.Plan JSON)
// and the patch module's bytes (base64 in JSON) with their sha256.
type SubmitRequest struct {
	Plan        json.RawMessage `json:"plan"`
	ModuleName  string          `json:"module_name"` // base name of the module file; the default patch id
	Module      []byte          `json:"module"`
	SHA256      string          `json:"sha256"`
	SubmittedBy string          `json:"submitted_by,omitempty"`
	// Signature is the module's ed25519 signature (the decoded MODULE.sig,
	// base64 in JSON), required by an lpd with trusted_keys.
	Signature []byte `json:"signature,omitempty"`
}

// SubmitResponse answers POST /v1/plans.
type SubmitResponse struct {
	ID      string `json:"id"`
	PatchID string `json:"patch_id"`
}

// PlanNode is the state of one plan node in GET /v1/plans/{id}.
type PlanNode struct {
	Node      string   `json:"node"`
	Pair      string   `json:"pair"`
	Side      string   `json:"side"`
	Status    string   `json:"status"`
	Desired   []string `json:"desired"`
	PreState  []string `json:"pre_state"`
	Observed  []string `json:"observed"`
	Pid       int      `json:"pid"`
	Error     string   `json:"error,omitempty"`
	Converged bool     `json:"converged"`
	// AtPreState: desired and observed both equal the pre-plan stack.
	AtPreState bool `json:"at_pre_state"`
	// Pending: the plan is rolling back (or failed while it did) and this
	// node does not run its pre-plan stack yet. LastSeen is when the node
	// was last known alive.
	Pending  bool      `json:"pending,omitempty"`
	LastSeen time.Time `json:"last_seen"`
	// Unmanaged are patches active in the target that no plan knows.
	Unmanaged []string `json:"unmanaged,omitempty"`
	// ApplyPause is the longest time the engine kept the node's target
	// stopped applying the plan's patch, RevertPause reverting it in a
	// rollback (nanoseconds; 0: not measured yet).
	ApplyPause  time.Duration `json:"apply_pause,omitempty"`
	RevertPause time.Duration `json:"revert_pause,omitempty"`
	// Processes: for a target with match: all, each matching process and
	// the patches it runs (Pid and Observed are then the first process
	// not at the desired stack, else the first).
	Processes []fsm.ObservedProcess `json:"processes,omitempty"`
}

// PlanDetail is GET /v1/plans/{id}.
type PlanDetail struct {
	Plan    fsm.Plan    `json:"plan"`
	Nodes   []PlanNode  `json:"nodes"`
	History []fsm.Event `json:"history"`
	// Waiting says why a pending, running or rolling_back plan does not
	// move now ("node b1 is dead", "waiting for b1 to converge", "trial of
	// b1 until T", ...); empty when its next step is due and for paused
	// and terminal plans. Computed when the plan is read, by the lpd asked.
	Waiting string `json:"waiting,omitempty"`
}

// ActionResponse answers pause, resume, abort, rollback and promote.
type ActionResponse struct {
	Plan    string `json:"plan,omitempty"`
	Node    string `json:"node,omitempty"`
	State   string `json:"state,omitempty"`
	Noop    bool   `json:"noop"`
	Message string `json:"message"`
}

// RegisterRequest is sent by a node's agent to the leader: the node as its
// config describes it.
type RegisterRequest struct {
	Name       string   `json:"name"`
	Pair       string   `json:"pair"`
	Role       string   `json:"role"`
	Server     bool     `json:"server"`
	APIAddr    string   `json:"api_addr"`
	RaftAddr   string   `json:"raft_addr"`
	GossipAddr string   `json:"gossip_addr"`
	Targets    []string `json:"targets"`
	Healthy    bool     `json:"healthy"`
	// Roles is managed or external; FailoverAfter the node's
	// failover_after.
	Roles         string        `json:"roles"`
	FailoverAfter time.Duration `json:"failover_after"`
	// ExecChecks is the node's exec_checks: allow or deny.
	ExecChecks string `json:"exec_checks,omitempty"`
	// PeerChecks: the node has peer_health checks.
	PeerChecks bool `json:"peer_checks,omitempty"`
}

// PeerHealthReport is a node's report of what its peer_health checks say
// of its pair peer's service: "up", "down", or "" when not checking.
type PeerHealthReport struct {
	Node   string `json:"node"`
	Peer   string `json:"peer"`
	Check  string `json:"check,omitempty"`
	Output string `json:"output,omitempty"`
}

// HookReport is an agent's report that it ran (or skipped) the hook owed
// for its node's role change number Epoch.
type HookReport struct {
	Node    string `json:"node"`
	Epoch   uint64 `json:"epoch"`
	Hook    string `json:"hook"` // on_promote, on_demote or "" when none is owed
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Output  string `json:"output"`
}

// RoleReport is the role a node's role_probe printed (external roles).
type RoleReport struct {
	Node   string `json:"node"`
	Role   string `json:"role"`
	Output string `json:"output"`
}

// ObservedRequest is an agent's report of one target.
type ObservedRequest struct {
	Node     string `json:"node"`
	Target   string `json:"target"`
	Pid      int    `json:"pid"`
	PidStart uint64 `json:"pid_start,omitempty"` // field 22 of /proc/PID/stat
	// Active are the patches the cluster knows, Unmanaged those it does
	// not (applied by hand), both oldest first.
	Active    []string `json:"active"`
	Unmanaged []string `json:"unmanaged,omitempty"`
	Error     string   `json:"error"`
	// Pause is the longest time the engine kept the target stopped in the
	// applies and reverts this report follows (0: none since the last
	// report).
	Pause time.Duration `json:"pause,omitempty"`
	// Processes: for a target with match: all, every matching process
	// (sorted by pid); the fields above are then the first process that
	// does not run the desired stack, or the first one.
	Processes []fsm.ObservedProcess `json:"processes,omitempty"`
}

// TrialFailure is an agent's report that a plan health check failed on its
// node during the node's trial — or, with Passed, that the trial is over on
// the node's clock, every check ran and none is failing: a trial with
// checks passes only on such a report.
type TrialFailure struct {
	Node   string `json:"node"`
	Plan   string `json:"plan"`
	Check  string `json:"check"`
	Output string `json:"output"`
	Passed bool   `json:"passed,omitempty"`
}

// ReadIndexRequest asks the leader for its read index (POST
// /v1/internal/read-index); Node is the asking node.
type ReadIndexRequest struct {
	Node string `json:"node"`
}

// ReadIndex is the leader's answer: a replica that has applied Index
// (fsm.State.Index) holds every change the leader had made when it
// answered.
type ReadIndex struct {
	Leader string `json:"leader"`
	Index  uint64 `json:"index"`
}
