package fsm

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Role is a node's role in its pair.
type Role string

// Roles.
const (
	RoleActive  Role = "active"
	RoleStandby Role = "standby"
	RoleWitness Role = "witness" // a raft voter with no service and no pair
)

func (r Role) valid() bool {
	return r == RoleActive || r == RoleStandby || r == RoleWitness
}

// Status is a node's membership status as seen by the leader's memberlist.
type Status string

// Statuses.
const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect"
	StatusDead    Status = "dead"
	StatusLeft    Status = "left"
)

func (s Status) valid() bool {
	return s == StatusAlive || s == StatusSuspect || s == StatusDead || s == StatusLeft
}

// PlanState is the state of a plan. These are the only names a plan takes.
type PlanState string

// Plan states.
const (
	PlanPending     PlanState = "pending"
	PlanRunning     PlanState = "running"
	PlanPaused      PlanState = "paused"
	PlanCompleted   PlanState = "completed"
	PlanRollingBack PlanState = "rolling_back"
	PlanRolledBack  PlanState = "rolled_back"
	PlanAborted     PlanState = "aborted"
	PlanFailed      PlanState = "failed"
)

// PlanStates lists every plan state.
func PlanStates() []PlanState {
	return []PlanState{PlanPending, PlanRunning, PlanPaused, PlanCompleted,
		PlanRollingBack, PlanRolledBack, PlanAborted, PlanFailed}
}

// Terminal reports whether a plan in state p will not move on by itself:
// completed, rolled_back, aborted or failed. Only a rollback leaves
// completed, aborted or failed.
func (p PlanState) Terminal() bool {
	switch p {
	case PlanCompleted, PlanRolledBack, PlanAborted, PlanFailed:
		return true
	}
	return false
}

// Phase is the step of a running plan within its current pair.
type Phase string

// Phases, in the order a plan goes through them for each pair.
const (
	PhaseStandbyApply Phase = "standby_apply"
	PhaseStandbyTrial Phase = "standby_trial"
	PhaseActiveApply  Phase = "active_apply"
	PhaseActiveTrial  Phase = "active_trial"
)

// Phases lists the phases in order.
func Phases() []Phase {
	return []Phase{PhaseStandbyApply, PhaseStandbyTrial, PhaseActiveApply, PhaseActiveTrial}
}

func (p Phase) index() int { return slices.Index(Phases(), p) }

// Trial reports whether p is a trial phase.
func (p Phase) Trial() bool { return p == PhaseStandbyTrial || p == PhaseActiveTrial }

// Side returns the side of the pair a phase works on.
func (p Phase) Side() Side {
	if p == PhaseActiveApply || p == PhaseActiveTrial {
		return SideActive
	}
	return SideStandby
}

// Side is the side of a pair a plan node was on when its pair started.
type Side string

// Sides.
const (
	SideStandby Side = "standby"
	SideActive  Side = "active"
)

// OnFailure says what a plan does when a trial or an apply fails.
type OnFailure string

// OnFailure values.
const (
	OnFailureRollback OnFailure = "rollback" // the default
	OnFailurePause    OnFailure = "pause"
)

// FailoverPolicy says what happens when the active of a pair fails while its
// standby is in trial.
type FailoverPolicy string

// Failover policies.
const (
	FailoverRollbackFirst FailoverPolicy = "rollback-first" // the default
	FailoverKeepPatch     FailoverPolicy = "keep-patch"
)

// State is the whole replicated state. Field values are owned by the FSM;
// a *State from [FSM.State] is a private deep copy (blob data excepted).
type State struct {
	// Nodes by name.
	Nodes map[string]Node `json:"nodes"`
	// Blobs (patch modules) by lowercase hex sha256.
	Blobs map[string]Blob `json:"blobs"`
	// Plans by id.
	Plans map[string]Plan `json:"plans"`
	// PlanSeq is the sequence number of the last plan submitted; plan ids are
	// derived from it (see [PlanID]).
	PlanSeq uint64 `json:"plan_seq"`
	// Desired patch stacks: node -> target -> patches, oldest first. A node
	// or target without patches has no entry.
	Desired map[string]map[string][]PatchRef `json:"desired"`
	// Observed patch state, as reported by each node's agent:
	// node -> target -> observation.
	Observed map[string]map[string]Observed `json:"observed"`
	// History of every transition, oldest first; Seq increases by one.
	History []Event `json:"history"`
	// Index is the raft log index of the last command entry that changed
	// the state (refused commands and no-ops change nothing, not even
	// this). It travels in snapshots, so a replica restored from
	// one knows how far it is; agents compare it with the leader's before
	// they act (a read-index barrier).
	Index uint64 `json:"index"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{
		Nodes:    map[string]Node{},
		Blobs:    map[string]Blob{},
		Plans:    map[string]Plan{},
		Desired:  map[string]map[string][]PatchRef{},
		Observed: map[string]map[string]Observed{},
	}
}

// Node is a cluster member.
type Node struct {
	Name       string   `json:"name"`
	Pair       string   `json:"pair"` // "" for a witness
	Role       Role     `json:"role"`
	Server     bool     `json:"server"` // configured as a raft voter
	Voter      bool     `json:"voter"`  // currently a voter in the raft configuration
	APIAddr    string   `json:"api_addr"`
	RaftAddr   string   `json:"raft_addr"`
	GossipAddr string   `json:"gossip_addr"`
	Targets    []string `json:"targets"` // target names from the node's config, sorted
	Status     Status   `json:"status"`
	Healthy    bool     `json:"healthy"`
	// FailingCheck names the failing node-level check when not Healthy.
	FailingCheck string `json:"failing_check"`
	// CheckOutput is the last output line of the failing check.
	CheckOutput string `json:"check_output"`
	// LastSeen is the time of the last registration or status report.
	LastSeen time.Time `json:"last_seen"`
	// DownSince is when the node was last declared dead, left or turned
	// unhealthy (zero while it is none of these; a suspect node is not
	// down yet): the leader's failover clock.
	DownSince time.Time `json:"down_since,omitzero"`
	// NoExec: the node refuses plans' exec health checks (exec_checks: deny).
	NoExec bool `json:"no_exec,omitempty"`
	// SuspectSince is when the node last turned suspect (zero while it is
	// not suspect), and SuspectBound how long it may stay suspect before a
	// plan working on it treats it as lost; the leader sets the bound from
	// its gossip timing (see SetNodeStatus). A refuted suspicion that ends
	// within the bound fails nothing.
	SuspectSince time.Time     `json:"suspect_since,omitzero"`
	SuspectBound time.Duration `json:"suspect_bound,omitempty"`

	// Roles is who owns the node's role: RolesManaged (lp; "" reads as
	// managed) or RolesExternal (the node's role probe).
	Roles string `json:"roles,omitempty"`
	// FailoverAfter is how long the node may be dead or unhealthy while
	// active before the leader promotes its standby (managed roles).
	FailoverAfter time.Duration `json:"failover_after,omitempty"`
	// PeerChecks: the node has peer_health checks (from its config, on
	// every registration). Peer is what they say of its pair peer's
	// service while the peer's lpd is gone: PeerUp, PeerDown or "" (not
	// checking, or no verdict yet); PeerCheck and PeerOutput name the
	// failing check, PeerSince when Peer last changed.
	PeerChecks bool      `json:"peer_checks,omitempty"`
	Peer       string    `json:"peer,omitempty"`
	PeerCheck  string    `json:"peer_check,omitempty"`
	PeerOutput string    `json:"peer_output,omitempty"`
	PeerSince  time.Time `json:"peer_since,omitzero"`
	// RoleEpoch counts the node's role changes; PrevRole is the role it
	// had before the last one.
	RoleEpoch uint64 `json:"role_epoch,omitempty"`
	PrevRole  Role   `json:"prev_role,omitempty"`
	// HookEpoch is the last RoleEpoch whose hook (on_promote/on_demote)
	// the node's agent reported as run (or not to run): a role change
	// with RoleEpoch > HookEpoch still owes its hook.
	HookEpoch uint64 `json:"hook_epoch,omitempty"`
	// Handover names the node to promote once this demoted node's
	// on_demote has run (a manual switchover), at the latest at
	// HandoverDeadline. Cleared when any member of the pair is promoted.
	Handover         string    `json:"handover,omitempty"`
	HandoverDeadline time.Time `json:"handover_deadline,omitzero"`
}

// Who owns a node's role (Node.Roles).
const (
	RolesManaged  = "managed"
	RolesExternal = "external"
)

// External reports whether the node's role is reported by its role probe
// rather than managed by lp.
func (n Node) External() bool { return n.Roles == RolesExternal }

// Verdicts of peer_health checks (Node.Peer).
const (
	PeerUp   = "up"
	PeerDown = "down"
)

// Up reports whether the node is alive and healthy.
func (n Node) Up() bool { return n.Status == StatusAlive && n.Healthy }

// Down reports whether the node is dead, gone or unhealthy; a suspect node
// (neither up nor down) may still refute the suspicion.
func (n Node) Down() bool { return n.Status == StatusDead || n.Status == StatusLeft || !n.Healthy }

// Blob is a patch module, content-addressed by its sha256.
type Blob struct {
	SHA256  string `json:"sha256"`
	Size    int    `json:"size"`
	PatchID string `json:"patch_id"`
	// Data is only in snapshots written while module bytes travelled in
	// the raft log: FSM.TakeBlobData moves it to the node's module store.
	Data []byte `json:"data,omitempty"` // shared between copies: never write to it
	// Stored is when the module was stored (zero in snapshots written
	// before it was kept): a Prune keeps an unreferenced module for
	// Retention.BlobGrace after it.
	Stored time.Time `json:"stored,omitzero"`
	// Signatures are the ed25519 signatures of Data submitted with it, one
	// per signer (at most MaxBlobSignatures, oldest dropped first), each
	// SignatureSize bytes. Nodes with trusted_keys load the blob only when
	// a trusted key verifies one of them. Shared between copies like Data.
	Signatures [][]byte `json:"signatures,omitempty"`
}

// PatchRef is one entry of a desired patch stack.
type PatchRef struct {
	PatchID string `json:"patch_id"`
	SHA256  string `json:"sha256"`
	Plan    string `json:"plan"` // the plan that added it, "" if none
}

// Observed is what a node's agent last reported about one target.
type Observed struct {
	Pid int `json:"pid"` // 0 when no matching process runs
	// PidStart is the process's start time (clock ticks since boot, field
	// 22 of /proc/PID/stat): with Pid it names one process, so a process
	// replaced under the same pid is told apart.
	PidStart uint64   `json:"pid_start,omitempty"`
	Active   []string `json:"active"` // active patch ids the cluster knows, oldest first
	// Unmanaged are patches active in the process that no plan of the
	// cluster knows (applied by hand with lpctl patch apply): reported, and
	// left alone by the agent.
	Unmanaged []string  `json:"unmanaged,omitempty"`
	Error     string    `json:"error"` // the last reconcile error, "" if none
	At        time.Time `json:"at"`
	// Processes are, for a target with match: all, every matching process
	// by pid; Pid, PidStart, Active and Unmanaged above are then those of
	// the first process that does not run the desired stack (or has an
	// error), else of the first process: Active equals the desired stack
	// only when every process runs it. Empty for match: one.
	Processes []ObservedProcess `json:"processes,omitempty"`
}

// ObservedProcess is one process of a target with match: all.
type ObservedProcess struct {
	Pid       int      `json:"pid"`
	PidStart  uint64   `json:"pid_start,omitempty"`
	Active    []string `json:"active"`
	Unmanaged []string `json:"unmanaged,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// ProcessRef names one process: a pid and its start time.
type ProcessRef struct {
	Pid      int    `json:"pid"`
	PidStart uint64 `json:"pid_start,omitempty"`
}

// CheckSpec is a plan health check: exactly one of Exec, TCP, HTTP or
// Process. Its fields match config.Check, so a config.Check converts to a
// CheckSpec with a plain conversion.
type CheckSpec struct {
	Name      string        `json:"name"`
	Exec      string        `json:"exec"`
	TCP       string        `json:"tcp"`
	HTTP      string        `json:"http"`
	Process   string        `json:"process"`
	Interval  time.Duration `json:"interval"`
	Timeout   time.Duration `json:"timeout"`
	Failures  int           `json:"failures"`
	Successes int           `json:"successes"`
}

// PlanSpec is what a plan was asked to do. It never changes after submission.
type PlanSpec struct {
	Name        string `json:"name"`
	PatchSHA256 string `json:"patch_sha256"`
	PatchID     string `json:"patch_id"` // defaults to the blob's patch id
	Target      string `json:"target"`
	// Pairs in rollout order; an empty list in SubmitPlan means every pair,
	// sorted by name.
	Pairs               []string       `json:"pairs"`
	Trial               time.Duration  `json:"trial"`
	Health              []CheckSpec    `json:"health"`
	OnFailure           OnFailure      `json:"on_failure"`            // default rollback
	FailoverDuringTrial FailoverPolicy `json:"failover_during_trial"` // default rollback-first
	// ProgressDeadline bounds the whole plan from submission; 0 means none.
	ProgressDeadline time.Duration `json:"progress_deadline"`
	// MaxParallel is how many pairs are worked on at once after the first
	// pair, which is always alone (0 and 1: one at a time). Pairs worked
	// on together go through each phase together (a wave): every standby
	// of the wave is patched and tried before any of its actives.
	MaxParallel int `json:"max_parallel,omitempty"`
	// Mode, Consistency and ApplyTimeout are the engine options every node
	// applies and reverts the plan's patch with: Mode "inject" or "dlopen",
	// Consistency "function" or "entry", ApplyTimeout the activation
	// deadline. "" and 0 (and plans submitted before they existed) take
	// the engine's defaults: inject, function, 5s.
	Mode         string        `json:"mode,omitempty"`
	Consistency  string        `json:"consistency,omitempty"`
	ApplyTimeout time.Duration `json:"apply_timeout,omitempty"`
	SubmittedBy  string        `json:"submitted_by"`
	SubmittedAt  time.Time     `json:"submitted_at"` // set from the command time
	// SignedBy is the trusted key (base64 ed25519 public key) that
	// verified the module's signature at submission; "" when the leader had
	// no trusted_keys.
	SignedBy string `json:"signed_by,omitempty"`
}

// Plan is a submitted plan: its spec and its progress.
type Plan struct {
	ID    string    `json:"id"`
	Seq   uint64    `json:"seq"` // submission order; ID is PlanID(Seq)
	Spec  PlanSpec  `json:"spec"`
	State PlanState `json:"state"`
	// PairIndex indexes Spec.Pairs: the pair being worked on (or last
	// worked on). Phase is "" until the plan starts.
	PairIndex int   `json:"pair_index"`
	Phase     Phase `json:"phase"`
	// PhaseStarted and PhaseDeadline bound the current phase. A trial phase
	// ends no earlier than its deadline; an apply phase should end before it.
	PhaseStarted  time.Time `json:"phase_started"`
	PhaseDeadline time.Time `json:"phase_deadline"`
	// PlanDeadline is the submission time plus the progress deadline (moved
	// on by the time spent paused); zero when there is none.
	PlanDeadline time.Time `json:"plan_deadline"`
	// PausedAt is when the plan was last paused.
	PausedAt time.Time `json:"paused_at"`
	// RollbackStarted is when the plan last started rolling back, and
	// RollbackDeadline when that rollback fails if some node has not
	// returned to its pre-plan state by then: RollbackStarted plus the
	// plan's progress_deadline (zero: none).
	RollbackStarted  time.Time `json:"rollback_started,omitempty"`
	RollbackDeadline time.Time `json:"rollback_deadline,omitempty"`
	// PreState is, per plan node, the desired patch stack of the target
	// before the plan (nil: none).
	PreState map[string][]PatchRef `json:"pre_state"`
	// Reason says why the plan last paused, failed, aborted or rolled back.
	Reason string `json:"reason"`
	// Steps has one record per plan node, pair by pair, standby first.
	Steps   []NodeStep `json:"steps"`
	Updated time.Time  `json:"updated"`
}

// NodeStep records what a plan did to one node.
type NodeStep struct {
	Node string `json:"node"`
	Pair string `json:"pair"`
	// Side is the node's side when its pair started (at submission until then).
	Side         Side      `json:"side"`
	Applied      time.Time `json:"applied"`       // desired first set to the plan stack
	TrialStarted time.Time `json:"trial_started"` // observed matched; the trial (re)started
	TrialPassed  time.Time `json:"trial_passed"`  // the trial ended
	// TrialPid and TrialPidStart name the process the node's trial
	// watches: the node's observed target process when the trial started
	// (see Observed.PidStart). Another pid, or the same pid with another
	// start time, fails the trial.
	TrialPid      int    `json:"trial_pid,omitempty"`
	TrialPidStart uint64 `json:"trial_pid_start,omitempty"`
	// TrialProcesses are, for a target with match: all, every process the
	// trial watches: one of them gone, or replaced, fails the trial.
	TrialProcesses []ProcessRef `json:"trial_processes,omitempty"`
	RolledBack     time.Time    `json:"rolled_back"` // desired set back to the pre-state
	// ApplyPause is the longest time the engine kept the node's target
	// stopped applying the plan's patch (the agent's report when the patch
	// turned active); RevertPause the same for reverting it in the plan's
	// rollback. 0 until then.
	ApplyPause  time.Duration `json:"apply_pause,omitempty"`
	RevertPause time.Duration `json:"revert_pause,omitempty"`
}

// Event is one transition in the history.
type Event struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Plan  string    `json:"plan"`
	Node  string    `json:"node"`
	Pair  string    `json:"pair"`
	Kind  EventKind `json:"kind"`
	From  string    `json:"from"`
	To    string    `json:"to"`
	Cause string    `json:"cause"`
	// Pause is, in an observed event, the longest time the engine kept
	// the target stopped in the applies and reverts that led to it.
	Pause time.Duration `json:"pause,omitempty"`
}

// EventKind says what an event records.
type EventKind string

// Event kinds.
const (
	EventNodeRegistered EventKind = "node_registered" // To: role
	EventNodeUpdated    EventKind = "node_updated"    // addresses, targets, voter
	EventNodeStatus     EventKind = "node_status"
	EventNodeHealth     EventKind = "node_health" // From/To: "healthy" or "unhealthy: CHECK"
	EventRole           EventKind = "role"
	EventNodeRemoved    EventKind = "node_removed"
	EventBlobStored     EventKind = "blob_stored" // To: sha256, Cause: patch id
	EventPlanState      EventKind = "plan_state"
	EventPlanPhase      EventKind = "plan_phase"  // From/To: "PAIR/PHASE"
	EventDesired        EventKind = "desired"     // From/To: TARGET=id,id
	EventObserved       EventKind = "observed"    // From/To: TARGET=id,id
	EventHook           EventKind = "hook"        // From/To: roles; Cause: hook and result
	EventPruned         EventKind = "pruned"      // To: what a Prune deleted
	EventPeerHealth     EventKind = "peer_health" // Node: the checking node; From/To: up, down or unknown; Cause: check and output
)

// PlanID returns the id of the plan with sequence number seq: "p000001".
func PlanID(seq uint64) string { return fmt.Sprintf("p%06d", seq) }

// Clone returns a deep copy of s. Blob data is shared (it is immutable).
func (s *State) Clone() *State {
	c := &State{
		Nodes:    make(map[string]Node, len(s.Nodes)),
		Blobs:    maps.Clone(s.Blobs),
		Plans:    make(map[string]Plan, len(s.Plans)),
		PlanSeq:  s.PlanSeq,
		Desired:  make(map[string]map[string][]PatchRef, len(s.Desired)),
		Observed: make(map[string]map[string]Observed, len(s.Observed)),
		History:  slices.Clone(s.History),
		Index:    s.Index,
	}
	if c.Blobs == nil {
		c.Blobs = map[string]Blob{}
	}
	for k, n := range s.Nodes {
		c.Nodes[k] = n.clone()
	}
	for k, p := range s.Plans {
		c.Plans[k] = p.Clone()
	}
	for k, byTarget := range s.Desired {
		m := make(map[string][]PatchRef, len(byTarget))
		for t, stack := range byTarget {
			m[t] = slices.Clone(stack)
		}
		c.Desired[k] = m
	}
	for k, byTarget := range s.Observed {
		m := make(map[string]Observed, len(byTarget))
		for t, o := range byTarget {
			o.Active = slices.Clone(o.Active)
			o.Unmanaged = slices.Clone(o.Unmanaged)
			if o.Processes != nil {
				ps := make([]ObservedProcess, len(o.Processes))
				for i, q := range o.Processes {
					q.Active, q.Unmanaged = slices.Clone(q.Active), slices.Clone(q.Unmanaged)
					ps[i] = q
				}
				o.Processes = ps
			}
			m[t] = o
		}
		c.Observed[k] = m
	}
	return c
}

func (n Node) clone() Node {
	n.Targets = slices.Clone(n.Targets)
	return n
}

// Clone returns a deep copy of the plan (its slices and maps are its own).
func (p Plan) Clone() Plan {
	p.Spec.Pairs = slices.Clone(p.Spec.Pairs)
	p.Spec.Health = slices.Clone(p.Spec.Health)
	p.Steps = slices.Clone(p.Steps)
	for i := range p.Steps {
		p.Steps[i].TrialProcesses = slices.Clone(p.Steps[i].TrialProcesses)
	}
	if p.PreState != nil {
		pre := make(map[string][]PatchRef, len(p.PreState))
		for k, v := range p.PreState {
			pre[k] = slices.Clone(v)
		}
		p.PreState = pre
	}
	return p
}

// normalize replaces nil top-level maps by empty ones (a restored snapshot
// may carry null).
func (s *State) normalize() {
	if s.Nodes == nil {
		s.Nodes = map[string]Node{}
	}
	if s.Blobs == nil {
		s.Blobs = map[string]Blob{}
	}
	if s.Plans == nil {
		s.Plans = map[string]Plan{}
	}
	if s.Desired == nil {
		s.Desired = map[string]map[string][]PatchRef{}
	}
	if s.Observed == nil {
		s.Observed = map[string]map[string]Observed{}
	}
}
