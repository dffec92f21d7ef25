package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// CommandVersion is the version of the command envelope this package writes
// and the only one it applies.
const CommandVersion = 1

// MaxBlobSize caps a patch module. The bytes travel outside the raft log
// (SubmitPlan carries a ModuleRef); only legacy PutBlob entries carry them.
const MaxBlobSize = 16 << 20

// maxText caps free text (causes, reasons, check output, errors) kept in the
// state; longer text is cut at a rune boundary.
const maxText = 1024

// CommandType names a command in the envelope.
type CommandType string

// Command types.
const (
	TypeRegisterNode   CommandType = "register_node"
	TypeSetNodeStatus  CommandType = "set_node_status"
	TypeSetNodeHealth  CommandType = "set_node_health"
	TypeSetRole        CommandType = "set_role"
	TypeRemoveNode     CommandType = "remove_node"
	TypePutBlob        CommandType = "put_blob"
	TypeSubmitPlan     CommandType = "submit_plan"
	TypePlanPhase      CommandType = "plan_phase"
	TypeCompletePlan   CommandType = "complete_plan"
	TypePausePlan      CommandType = "pause_plan"
	TypeResumePlan     CommandType = "resume_plan"
	TypeAbortPlan      CommandType = "abort_plan"
	TypeRollbackPlan   CommandType = "rollback_plan"
	TypeFinishRollback CommandType = "finish_rollback"
	TypeFailPlan       CommandType = "fail_plan"
	TypeSetDesired     CommandType = "set_desired"
	TypeReportObserved CommandType = "report_observed"
	TypeReportHook     CommandType = "report_hook"
	TypePrune          CommandType = "prune"
	TypeSetPeerHealth  CommandType = "set_peer_health"
)

// Command is one state change. The set is closed: every implementation is
// in this package, and [Encode] is the only way to put one in the log.
type Command interface {
	// CommandType returns the command's type.
	CommandType() CommandType
	// validate checks what can be checked without the state.
	validate() error
	// apply checks the command against the state and, only if it is
	// allowed, changes the state.
	apply(x *applyCtx) error
}

// newCommand returns a pointer to a zero command of type t, or nil.
func newCommand(t CommandType) Command {
	switch t {
	case TypeRegisterNode:
		return &RegisterNode{}
	case TypeSetNodeStatus:
		return &SetNodeStatus{}
	case TypeSetNodeHealth:
		return &SetNodeHealth{}
	case TypeSetRole:
		return &SetRole{}
	case TypeRemoveNode:
		return &RemoveNode{}
	case TypePutBlob:
		return &PutBlob{}
	case TypeSubmitPlan:
		return &SubmitPlan{}
	case TypePlanPhase:
		return &PlanPhase{}
	case TypeCompletePlan:
		return &CompletePlan{}
	case TypePausePlan:
		return &PausePlan{}
	case TypeResumePlan:
		return &ResumePlan{}
	case TypeAbortPlan:
		return &AbortPlan{}
	case TypeRollbackPlan:
		return &RollbackPlan{}
	case TypeFinishRollback:
		return &FinishRollback{}
	case TypeFailPlan:
		return &FailPlan{}
	case TypeSetDesired:
		return &SetDesired{}
	case TypeReportObserved:
		return &ReportObserved{}
	case TypeReportHook:
		return &ReportHook{}
	case TypePrune:
		return &Prune{}
	case TypeSetPeerHealth:
		return &SetPeerHealth{}
	}
	return nil
}

// envelope is the wire form of a command:
// {"v":1,"type":"set_role","time":"2026-01-02T03:04:05.123456789Z","cmd":{...}}.
type envelope struct {
	V    int             `json:"v"`
	Type CommandType     `json:"type"`
	Time time.Time       `json:"time"`
	Cmd  json.RawMessage `json:"cmd"`
}

// Encode returns the log entry for cmd issued at time at (the leader's
// clock: the FSM never reads one). It refuses a command that is invalid
// whatever the state, so callers learn about it without a raft round trip.
func Encode(at time.Time, cmd Command) ([]byte, error) {
	if cmd == nil {
		return nil, fmt.Errorf("encoding command: %w: nil command", ErrInvalid)
	}
	if at.IsZero() {
		return nil, fmt.Errorf("encoding %s: %w: zero time", cmd.CommandType(), ErrInvalid)
	}
	if err := cmd.validate(); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", cmd.CommandType(), err)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", cmd.CommandType(), err)
	}
	data, err := json.Marshal(envelope{V: CommandVersion, Type: cmd.CommandType(), Time: at.UTC(), Cmd: body})
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", cmd.CommandType(), err)
	}
	return data, nil
}

// Decode parses a log entry written by Encode: the command (a pointer to
// one of this package's command structs), its time (UTC) and, for a bad
// entry, an error matching ErrUnsupported (unknown version or type) or
// ErrInvalid. Unknown fields are refused: a command this version does not
// fully understand must not be half applied.
func Decode(data []byte) (Command, time.Time, error) {
	var env envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return nil, time.Time{}, &CommandError{Msg: "decoding command: " + err.Error(), Err: ErrInvalid}
	}
	if env.V != CommandVersion {
		return nil, time.Time{}, &CommandError{Type: env.Type,
			Msg: fmt.Sprintf("command version %d is not supported (this node applies version %d; upgrade it)", env.V, CommandVersion),
			Err: ErrUnsupported}
	}
	cmd := newCommand(env.Type)
	if cmd == nil {
		return nil, time.Time{}, &CommandError{Type: env.Type,
			Msg: fmt.Sprintf("unknown command type %q (upgrade this node)", clip(string(env.Type), 64)),
			Err: ErrUnsupported}
	}
	if env.Time.IsZero() {
		return nil, time.Time{}, &CommandError{Type: env.Type, Msg: fmt.Sprintf("%s: command has no time", env.Type), Err: ErrInvalid}
	}
	if len(env.Cmd) == 0 {
		return nil, time.Time{}, &CommandError{Type: env.Type, Msg: fmt.Sprintf("%s: command has no body", env.Type), Err: ErrInvalid}
	}
	if err := strictUnmarshal(env.Cmd, cmd); err != nil {
		return nil, time.Time{}, &CommandError{Type: env.Type, Msg: fmt.Sprintf("decoding %s: %v", env.Type, err), Err: ErrInvalid}
	}
	if err := cmd.validate(); err != nil {
		return nil, time.Time{}, &CommandError{Type: env.Type, Msg: err.Error(), Err: kindOf(err)}
	}
	return cmd, env.Time.UTC(), nil
}

func kindOf(err error) error {
	var ce *CommandError
	if errors.As(err, &ce) && ce.Err != nil {
		return ce.Err
	}
	return ErrInvalid
}

// strictUnmarshal decodes exactly one JSON value with no unknown fields.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// validName reports whether s is a name of nodes, pairs, targets and patch
// ids: [A-Za-z0-9._-]{1,64}.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkName(what, s string) error {
	if !validName(s) {
		return refuse(ErrInvalid, "%s %q is not a valid name (want [A-Za-z0-9._-], 1 to 64 characters)", what, clip(s, 80))
	}
	return nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ClipLine is s cut to its first line and to at most n bytes (at a rune
// boundary), with "…" when it was cut: a command's output or an error
// quoted inside a one-line reason.
func ClipLine(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) <= n {
		return s
	}
	return clip(s, n) + "…"
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ---- nodes ----

// RegisterNode adds a node or updates one (upsert). Role is the node's
// initial role from its config: it is used only when the node is new; an
// existing node keeps the role the cluster gave it (no automatic failback),
// and cannot move to another pair without RemoveNode first. Registration
// marks the node alive.
type RegisterNode struct {
	Name       string   `json:"name"`
	Pair       string   `json:"pair"`
	Role       Role     `json:"role"`
	Server     bool     `json:"server"`
	Voter      bool     `json:"voter"`
	APIAddr    string   `json:"api_addr"`
	RaftAddr   string   `json:"raft_addr"`
	GossipAddr string   `json:"gossip_addr"`
	Targets    []string `json:"targets"`
	Healthy    bool     `json:"healthy"`
	// Roles and FailoverAfter come from the node's config and follow it on
	// every registration ("" and 0: managed, no failover delay set).
	Roles         string        `json:"roles,omitempty"`
	FailoverAfter time.Duration `json:"failover_after,omitempty"`
	// NoExec: the node's exec_checks is deny; plans with exec health
	// checks are refused for it.
	NoExec bool `json:"no_exec,omitempty"`
	// PeerChecks: the node's config has peer_health checks.
	PeerChecks bool `json:"peer_checks,omitempty"`
}

// SetPeerHealth records what a node's peer_health checks say of its pair
// peer's service: PeerUp, PeerDown, or "" (not checking: the peer's lpd is
// alive, or no result yet).
type SetPeerHealth struct {
	Node   string `json:"node"`
	Peer   string `json:"peer"` // PeerUp, PeerDown or ""
	Check  string `json:"check"`
	Output string `json:"output"`
}

// SetNodeStatus records a membership status change.
type SetNodeStatus struct {
	Node   string `json:"node"`
	Status Status `json:"status"`
	Cause  string `json:"cause"`
	// SuspectBound, with Status suspect, is how long the node may stay
	// suspect before a plan working on it fails (Node.SuspectBound); 0
	// fails it at once.
	SuspectBound time.Duration `json:"suspect_bound,omitempty"`
}

// SetNodeHealth records a node-level health change.
type SetNodeHealth struct {
	Node         string `json:"node"`
	Healthy      bool   `json:"healthy"`
	FailingCheck string `json:"failing_check"`
	CheckOutput  string `json:"check_output"`
}

// SetRole sets the role of a pair member. Promoting a node to active makes
// the other member of its pair standby in the same command; promotion is
// refused for a node without a pair and for a dead or departed node.
// Every role change bumps the node's RoleEpoch.
//
// Probed records a role reported by the role probe of a node with external
// roles: it changes that node only (lp observes, it does not decide) and is
// refused for a managed node; a SetRole without Probed is refused for an
// external node. Handover (with HandoverDeadline), on a demotion, names the
// standby to promote once the demoted node's on_demote hook has run.
type SetRole struct {
	Node             string    `json:"node"`
	Role             Role      `json:"role"` // active or standby
	Cause            string    `json:"cause"`
	Probed           bool      `json:"probed,omitempty"`
	Handover         string    `json:"handover,omitempty"`
	HandoverDeadline time.Time `json:"handover_deadline,omitzero"`
}

// ReportHook records that a node's agent ran (or, with Skipped, decided not
// to run) the hook owed for its role change number Epoch. OK is the hook's
// success; Output its last output line. A report for an epoch that is not
// newer than the node's HookEpoch is a no-op; one for a future epoch is
// refused.
type ReportHook struct {
	Node    string `json:"node"`
	Epoch   uint64 `json:"epoch"`
	Hook    string `json:"hook"` // on_promote, on_demote or "" when none is owed
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Output  string `json:"output"`
}

// RemoveNode deletes a node and its desired and observed state. It is
// refused while the node takes part in a plan that is not finished.
type RemoveNode struct {
	Node  string `json:"node"`
	Cause string `json:"cause"`
}

// ---- patches ----

// PutBlob is the legacy form of storing a patch module, with its bytes in
// the raft log. Nothing writes it any more (a submission is one SubmitPlan
// with a ModuleRef); it is kept so that logs and snapshots written before
// still apply. SHA256 must be the lowercase hex sha256 of Data; Data is at
// most MaxBlobSize bytes. Signature, when set, is an ed25519 signature of
// Data (SignatureSize bytes; the FSM checks its size, the API and the
// agents check it against their trusted keys). Storing a blob again is a
// no-op, except that a signature it does not have yet is added to it. The
// state keeps the reference only: Data goes to Result.BlobData, for the
// node to write into its module store.
type PutBlob struct {
	SHA256    string `json:"sha256"`
	PatchID   string `json:"patch_id"`
	Data      []byte `json:"data"`
	Signature []byte `json:"signature,omitempty"`
}

// SignatureSize is the size of a blob signature (ed25519).
const SignatureSize = 64

// MaxBlobSignatures bounds the signatures kept with one blob.
const MaxBlobSignatures = 8

// NewPutBlob returns the PutBlob command for a patch module.
func NewPutBlob(patchID string, data []byte) *PutBlob {
	sum := sha256.Sum256(data)
	return &PutBlob{SHA256: hex.EncodeToString(sum[:]), PatchID: patchID, Data: data}
}

// SetDesired sets the desired patch stack of one node and target (nil or
// empty: no patches). With Plan set it is a plan step, allowed only
//   - while the plan is running and in the apply phase of the node's side,
//     with Patches equal to State.PlanStack(plan, node), or
//   - while the plan is rolling_back, with Patches equal to the node's
//     pre-plan stack.
//
// Without Plan it is refused while a plan that is not finished covers the
// node and target.
type SetDesired struct {
	Node    string     `json:"node"`
	Target  string     `json:"target"`
	Patches []PatchRef `json:"patches"`
	Plan    string     `json:"plan"`
	Cause   string     `json:"cause"`
}

// ReportObserved records what a node's agent found in one target.
type ReportObserved struct {
	Node      string   `json:"node"`
	Target    string   `json:"target"`
	Pid       int      `json:"pid"`
	PidStart  uint64   `json:"pid_start,omitempty"`
	Active    []string `json:"active"`
	Unmanaged []string `json:"unmanaged,omitempty"`
	Error     string   `json:"error"`
	// Pause is the longest time the engine kept the target stopped in the
	// applies and reverts that led to this report (0: none). It goes into
	// the observed event and the plan steps of the patches that changed.
	Pause time.Duration `json:"pause,omitempty"`
	// Processes: every matching process of a target with match: all, by
	// pid (see Observed.Processes); at most MaxProcesses.
	Processes []ObservedProcess `json:"processes,omitempty"`
}

// MaxProcesses bounds the processes of one observation.
const MaxProcesses = 1024

// ---- plans ----

// SubmitPlan creates a plan in state pending; Result.PlanID is its id. With
// Module set it also records the module (sha256, size, patch id and
// signature; the bytes travel outside the log), all in one entry: either
// both or nothing. Without Module the blob must be stored already (a
// legacy PutBlob). Spec is validated against the state: every pair must
// have one active and one standby node registered, each carrying the target,
// and no other unfinished plan may use the target. Empty OnFailure and
// FailoverDuringTrial take their defaults, empty Pairs means every pair and
// an empty PatchID the blob's. SubmittedAt must be zero: the FSM sets it to
// the command time.
type SubmitPlan struct {
	Spec   PlanSpec   `json:"spec"`
	Module *ModuleRef `json:"module,omitempty"`
}

// ModuleRef is what the replicated state knows of a patch module: its
// content address, size, patch id and signature. The bytes live in each
// node's module store, fetched by sha256 from a node that has them.
type ModuleRef struct {
	SHA256  string `json:"sha256"`
	Size    int    `json:"size"`
	PatchID string `json:"patch_id"`
	// Signature, when set, is an ed25519 signature of the bytes
	// (SignatureSize bytes); a module stored already gains it as another
	// signer's.
	Signature []byte `json:"signature,omitempty"`
}

func (m *ModuleRef) validate() error {
	if err := checkName("patch id", m.PatchID); err != nil {
		return err
	}
	if !validSHA256(m.SHA256) {
		return refuse(ErrInvalid, "patch %s: sha256 %q is not 64 lowercase hex digits", m.PatchID, clip(m.SHA256, 80))
	}
	if m.Size <= 0 {
		return refuse(ErrInvalid, "patch %s: size %d; want at least 1 byte", m.PatchID, m.Size)
	}
	if m.Size > MaxBlobSize {
		return refuse(ErrTooLarge, "patch module is %d bytes; the limit is 16 MiB", m.Size)
	}
	if n := len(m.Signature); n != 0 && n != SignatureSize {
		return refuse(ErrInvalid, "patch %s: signature is %d bytes; want %d (ed25519)", m.PatchID, n, SignatureSize)
	}
	return nil
}

// PlanPhase moves a plan to the next phase: Pair and Phase name the phase
// the plan enters, which must be the one after the current one (or the
// current one, a no-op, so a new leader may repeat an intent). The first
// PlanPhase of a pending plan starts it. Leaving an apply phase requires
// the node to have converged; leaving a trial requires its deadline to have
// passed. Deadline bounds an apply phase (zero: the plan deadline); a trial
// phase's deadline is the command time plus the plan's trial.
type PlanPhase struct {
	Plan     string    `json:"plan"`
	Pair     string    `json:"pair"`
	Phase    Phase     `json:"phase"`
	Deadline time.Time `json:"deadline"`
	Cause    string    `json:"cause"`
}

// CompletePlan ends a plan whose last pair's active trial has passed.
type CompletePlan struct {
	Plan  string `json:"plan"`
	Cause string `json:"cause"`
}

// PausePlan pauses a pending or running plan (a paused plan is a no-op).
type PausePlan struct {
	Plan   string `json:"plan"`
	Reason string `json:"reason"`
}

// ResumePlan resumes a paused plan in the phase it paused in; a trial phase
// starts its trial again, and the deadlines move on by the time spent
// paused. Resuming a running plan is a no-op.
type ResumePlan struct {
	Plan  string `json:"plan"`
	Cause string `json:"cause"`
}

// AbortPlan stops a pending, running or paused plan where it is, leaving
// every node's desired state as it is (roll it back to undo).
type AbortPlan struct {
	Plan   string `json:"plan"`
	Reason string `json:"reason"`
}

// RollbackPlan moves a plan to rolling_back. Unless Staged, it sets the
// desired state of every plan node the plan patched (NodeStep.Applied) back
// to its pre-plan stack in the same command (a node it never patched is
// left alone: its pre-plan stack may be stale);
// when Staged the orchestrator does it node by node with SetDesired (standby
// side first). Rolling back a rolled_back plan, or one already rolling back,
// is a no-op that says so. Refused while a later plan on the same target
// has changed desired state and is not rolled back.
type RollbackPlan struct {
	Plan   string `json:"plan"`
	Reason string `json:"reason"`
	Staged bool   `json:"staged"`
}

// FinishRollback moves a rolling_back plan to rolled_back; refused unless
// the desired state of every plan node the plan patched equals its
// pre-plan stack.
type FinishRollback struct {
	Plan  string `json:"plan"`
	Cause string `json:"cause"`
}

// FailPlan marks a plan that is not finished as failed (e.g. a rollback
// that could not finish).
type FailPlan struct {
	Plan   string `json:"plan"`
	Reason string `json:"reason"`
}

// CommandType implementations.

func (*RegisterNode) CommandType() CommandType   { return TypeRegisterNode }
func (*SetNodeStatus) CommandType() CommandType  { return TypeSetNodeStatus }
func (*SetNodeHealth) CommandType() CommandType  { return TypeSetNodeHealth }
func (*SetRole) CommandType() CommandType        { return TypeSetRole }
func (*RemoveNode) CommandType() CommandType     { return TypeRemoveNode }
func (*PutBlob) CommandType() CommandType        { return TypePutBlob }
func (*SetDesired) CommandType() CommandType     { return TypeSetDesired }
func (*ReportObserved) CommandType() CommandType { return TypeReportObserved }
func (*ReportHook) CommandType() CommandType     { return TypeReportHook }
func (*SubmitPlan) CommandType() CommandType     { return TypeSubmitPlan }
func (*PlanPhase) CommandType() CommandType      { return TypePlanPhase }
func (*CompletePlan) CommandType() CommandType   { return TypeCompletePlan }
func (*PausePlan) CommandType() CommandType      { return TypePausePlan }
func (*ResumePlan) CommandType() CommandType     { return TypeResumePlan }
func (*AbortPlan) CommandType() CommandType      { return TypeAbortPlan }
func (*RollbackPlan) CommandType() CommandType   { return TypeRollbackPlan }
func (*FinishRollback) CommandType() CommandType { return TypeFinishRollback }
func (*FailPlan) CommandType() CommandType       { return TypeFailPlan }
func (*SetPeerHealth) CommandType() CommandType  { return TypeSetPeerHealth }

// Stateless validation.

func (c *RegisterNode) validate() error {
	if err := checkName("node", c.Name); err != nil {
		return err
	}
	if !c.Role.valid() {
		return refuse(ErrInvalid, "node %s: role %q is not one of active, standby, witness", c.Name, clip(string(c.Role), 32))
	}
	if c.Role == RoleWitness && c.Pair != "" {
		return refuse(ErrInvalid, "node %s: a witness has no pair (got pair %q)", c.Name, clip(c.Pair, 80))
	}
	if c.Role != RoleWitness {
		if c.Pair == "" {
			return refuse(ErrInvalid, "node %s: role %s needs a pair", c.Name, c.Role)
		}
		if err := checkName("pair", c.Pair); err != nil {
			return err
		}
	}
	switch c.Roles {
	case "", RolesManaged, RolesExternal:
	default:
		return refuse(ErrInvalid, "node %s: roles %q is not managed or external", c.Name, clip(c.Roles, 32))
	}
	if c.FailoverAfter < 0 {
		return refuse(ErrInvalid, "node %s: failover_after %v is negative", c.Name, c.FailoverAfter)
	}
	for i, t := range c.Targets {
		if err := checkName("target", t); err != nil {
			return err
		}
		for _, u := range c.Targets[:i] {
			if u == t {
				return refuse(ErrInvalid, "node %s: target %s is listed twice", c.Name, t)
			}
		}
	}
	for _, a := range []string{c.APIAddr, c.RaftAddr, c.GossipAddr} {
		if len(a) > 256 {
			return refuse(ErrInvalid, "node %s: address %q is longer than 256 bytes", c.Name, clip(a, 40))
		}
	}
	return nil
}

func (c *SetNodeStatus) validate() error {
	if err := checkName("node", c.Node); err != nil {
		return err
	}
	if !c.Status.valid() {
		return refuse(ErrInvalid, "node %s: status %q is not one of alive, suspect, dead, left", c.Node, clip(string(c.Status), 32))
	}
	if c.SuspectBound < 0 || (c.SuspectBound != 0 && c.Status != StatusSuspect) {
		return refuse(ErrInvalid, "node %s: suspect bound %v: want >= 0, and only with status suspect", c.Node, c.SuspectBound)
	}
	return nil
}

func (c *SetNodeHealth) validate() error { return checkName("node", c.Node) }

func (c *SetPeerHealth) validate() error {
	switch c.Peer {
	case "", PeerUp, PeerDown:
	default:
		return refuse(ErrInvalid, "peer health %q: want %q, %q or empty", c.Peer, PeerUp, PeerDown)
	}
	return checkName("node", c.Node)
}

func (c *SetRole) validate() error {
	if err := checkName("node", c.Node); err != nil {
		return err
	}
	if c.Role != RoleActive && c.Role != RoleStandby {
		return refuse(ErrInvalid, "node %s: role %q cannot be set (want active or standby)", c.Node, clip(string(c.Role), 32))
	}
	if c.Handover != "" {
		if err := checkName("handover node", c.Handover); err != nil {
			return err
		}
		if c.Role != RoleStandby || c.Probed {
			return refuse(ErrInvalid, "node %s: a handover goes with a demotion to standby", c.Node)
		}
	}
	return nil
}

func (c *ReportHook) validate() error {
	if err := checkName("node", c.Node); err != nil {
		return err
	}
	switch c.Hook {
	case "", "on_promote", "on_demote":
	default:
		return refuse(ErrInvalid, "node %s: hook %q is not on_promote or on_demote", c.Node, clip(c.Hook, 32))
	}
	return nil
}

func (c *RemoveNode) validate() error { return checkName("node", c.Node) }

func (c *PutBlob) validate() error {
	if len(c.Data) > MaxBlobSize {
		return refuse(ErrTooLarge, "patch module is %d bytes; the limit is 16 MiB", len(c.Data))
	}
	if err := checkName("patch id", c.PatchID); err != nil {
		return err
	}
	if !validSHA256(c.SHA256) {
		return refuse(ErrInvalid, "patch %s: sha256 %q is not 64 lowercase hex digits", c.PatchID, clip(c.SHA256, 80))
	}
	sum := sha256.Sum256(c.Data)
	if got := hex.EncodeToString(sum[:]); got != c.SHA256 {
		return refuse(ErrInvalid, "patch %s: data has sha256 %s; the command says %s (corrupted upload?)", c.PatchID, got, c.SHA256)
	}
	if n := len(c.Signature); n != 0 && n != SignatureSize {
		return refuse(ErrInvalid, "patch %s: signature is %d bytes; want %d (ed25519)", c.PatchID, n, SignatureSize)
	}
	return nil
}

func (c *SetDesired) validate() error {
	if err := checkName("node", c.Node); err != nil {
		return err
	}
	if err := checkName("target", c.Target); err != nil {
		return err
	}
	if c.Plan != "" {
		if err := checkName("plan", c.Plan); err != nil {
			return err
		}
	}
	for i, p := range c.Patches {
		if err := checkName("patch id", p.PatchID); err != nil {
			return err
		}
		if !validSHA256(p.SHA256) {
			return refuse(ErrInvalid, "patch %s: sha256 %q is not 64 lowercase hex digits", p.PatchID, clip(p.SHA256, 80))
		}
		if p.Plan != "" {
			if err := checkName("plan", p.Plan); err != nil {
				return err
			}
		}
		for _, q := range c.Patches[:i] {
			if q.PatchID == p.PatchID {
				return refuse(ErrInvalid, "node %s target %s: patch %s appears twice in the stack", c.Node, c.Target, p.PatchID)
			}
		}
	}
	return nil
}

func (c *ReportObserved) validate() error {
	if err := checkName("node", c.Node); err != nil {
		return err
	}
	if err := checkName("target", c.Target); err != nil {
		return err
	}
	if c.Pid < 0 {
		return refuse(ErrInvalid, "node %s target %s: pid %d is negative", c.Node, c.Target, c.Pid)
	}
	for _, id := range c.Active {
		if err := checkName("patch id", id); err != nil {
			return err
		}
	}
	if len(c.Processes) > MaxProcesses {
		return refuse(ErrInvalid, "node %s target %s: %d processes; at most %d", c.Node, c.Target, len(c.Processes), MaxProcesses)
	}
	for i, p := range c.Processes {
		if p.Pid <= 0 {
			return refuse(ErrInvalid, "node %s target %s: process pid %d is not positive", c.Node, c.Target, p.Pid)
		}
		if i > 0 && p.Pid <= c.Processes[i-1].Pid {
			return refuse(ErrInvalid, "node %s target %s: processes are not sorted by pid", c.Node, c.Target)
		}
		for _, id := range p.Active {
			if err := checkName("patch id", id); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *SubmitPlan) validate() error {
	s := &c.Spec
	if c.Module != nil {
		if err := c.Module.validate(); err != nil {
			return err
		}
		if c.Module.SHA256 != s.PatchSHA256 {
			return refuse(ErrInvalid, "plan patch sha256 %s is not its module's %s", clip(s.PatchSHA256, 80), c.Module.SHA256)
		}
	}
	if len(s.Name) > 128 {
		return refuse(ErrInvalid, "plan name %q is longer than 128 bytes", clip(s.Name, 40))
	}
	if !validSHA256(s.PatchSHA256) {
		return refuse(ErrInvalid, "plan patch sha256 %q is not 64 lowercase hex digits", clip(s.PatchSHA256, 80))
	}
	if s.PatchID != "" {
		if err := checkName("patch id", s.PatchID); err != nil {
			return err
		}
	}
	if err := checkName("target", s.Target); err != nil {
		return err
	}
	for i, p := range s.Pairs {
		if err := checkName("pair", p); err != nil {
			return err
		}
		for _, q := range s.Pairs[:i] {
			if p == q {
				return refuse(ErrInvalid, "pair %s is listed twice", p)
			}
		}
	}
	if s.Trial < 0 {
		return refuse(ErrInvalid, "trial %v is negative", s.Trial)
	}
	if s.ProgressDeadline < 0 {
		return refuse(ErrInvalid, "progress_deadline %v is negative", s.ProgressDeadline)
	}
	if s.MaxParallel < 0 {
		return refuse(ErrInvalid, "max_parallel %d is negative", s.MaxParallel)
	}
	switch s.OnFailure {
	case "", OnFailureRollback, OnFailurePause:
	default:
		return refuse(ErrInvalid, "on_failure %q is not rollback or pause", clip(string(s.OnFailure), 32))
	}
	switch s.FailoverDuringTrial {
	case "", FailoverRollbackFirst, FailoverKeepPatch:
	default:
		return refuse(ErrInvalid, "failover_during_trial %q is not rollback-first or keep-patch", clip(string(s.FailoverDuringTrial), 32))
	}
	switch s.Mode {
	case "", "inject", "dlopen":
	default:
		return refuse(ErrInvalid, "mode %q is not inject or dlopen", clip(s.Mode, 32))
	}
	switch s.Consistency {
	case "", "function", "entry":
	default:
		return refuse(ErrInvalid, "consistency %q is not function or entry", clip(s.Consistency, 32))
	}
	if s.ApplyTimeout < 0 {
		return refuse(ErrInvalid, "apply_timeout %v is negative", s.ApplyTimeout)
	}
	if !s.SubmittedAt.IsZero() {
		return refuse(ErrInvalid, "submitted_at is set from the command time; leave it zero")
	}
	if len(s.SubmittedBy) > 256 {
		return refuse(ErrInvalid, "submitted_by is longer than 256 bytes")
	}
	for i, h := range s.Health {
		kinds := 0
		for _, k := range []string{h.Exec, h.TCP, h.HTTP, h.Process} {
			if k != "" {
				kinds++
			}
		}
		if kinds != 1 {
			return refuse(ErrInvalid, "health check %d (%s) has %d of exec, tcp, http, process; want exactly one", i+1, clip(h.Name, 64), kinds)
		}
		if h.Interval < 0 || h.Timeout < 0 || h.Failures < 0 || h.Successes < 0 {
			return refuse(ErrInvalid, "health check %d (%s) has a negative interval, timeout, failures or successes", i+1, clip(h.Name, 64))
		}
	}
	return nil
}

func checkPlanRef(id string) error { return checkName("plan", id) }

func (c *PlanPhase) validate() error {
	if err := checkPlanRef(c.Plan); err != nil {
		return err
	}
	if err := checkName("pair", c.Pair); err != nil {
		return err
	}
	if c.Phase.index() < 0 {
		return refuse(ErrInvalid, "phase %q is not one of standby_apply, standby_trial, active_apply, active_trial", clip(string(c.Phase), 32))
	}
	return nil
}

func (c *CompletePlan) validate() error   { return checkPlanRef(c.Plan) }
func (c *PausePlan) validate() error      { return checkPlanRef(c.Plan) }
func (c *ResumePlan) validate() error     { return checkPlanRef(c.Plan) }
func (c *AbortPlan) validate() error      { return checkPlanRef(c.Plan) }
func (c *RollbackPlan) validate() error   { return checkPlanRef(c.Plan) }
func (c *FinishRollback) validate() error { return checkPlanRef(c.Plan) }
func (c *FailPlan) validate() error       { return checkPlanRef(c.Plan) }
