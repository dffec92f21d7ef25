package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/config"
	"lp/fsm"
	"lp/internal/auth"
)

// One path for a fact: every state change a node asks for, for an API
// caller or for its own agent, goes through Node.commit. On the leader the
// command is applied; on a follower it is sent once to the leader's
// POST /v1/internal/commit, as this node (its certificate, or local root on
// a plain lpd) on behalf of the identity that asked (api.HeaderIdentity;
// none for the node's own agent). The leader authorizes the command again
// as that identity (mayCommit) and applies it, stamped with its own clock.
// The answer carries the raft index, and the follower waits until it has
// applied that index, so the caller reads its own write on the node it
// asked.
//
// What only the leader can do stays a forwarded request (Node.write):
// promote and remove (raft configuration, waits on the leader's
// orchestrator), the read index and trial reports (leader memory).

// commit applies cmd on the leader, asked by id (the zero Identity: this
// node itself).
func (n *Node) commit(ctx context.Context, id auth.Identity, cmd fsm.Command) (*fsm.Result, error) {
	if n.raft.State() == raft.Leader {
		return n.apply(cmd)
	}
	name, addr := n.leaderAPI()
	if name == "" || addr == "" || name == n.name {
		return nil, ErrNoLeader
	}
	entry, err := fsm.Encode(time.Now(), cmd) // the leader stamps its own time
	if err != nil {
		return nil, err
	}
	c := n.internalClient(addr)
	c.Header = http.Header{api.HeaderForwarded: {n.name}}
	if id != (auth.Identity{}) {
		c.Header.Set(api.HeaderIdentity, id.String())
	}
	var resp api.CommitResponse
	if err := c.Do(ctx, http.MethodPost, api.PathCommit, api.CommitRequest{Entry: json.RawMessage(entry)}, &resp); err != nil {
		return nil, fmt.Errorf("committing %s through leader %s: %w", cmd.CommandType(), name, err)
	}
	n.awaitApplied(ctx, resp.Index)
	return &fsm.Result{Index: resp.Index, Type: cmd.CommandType(), Noop: resp.Noop, Message: resp.Message, PlanID: resp.PlanID}, nil
}

// awaitApplied waits, at most ApplyTimeout, until this node's FSM has
// applied index.
func (n *Node) awaitApplied(ctx context.Context, index uint64) {
	deadline := time.NewTimer(n.cfg.ApplyTimeout)
	defer deadline.Stop()
	for {
		wake := n.changed.C()
		if n.raft.AppliedIndex() >= index {
			return
		}
		select {
		case <-wake:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// handleCommit applies a command a follower sent (see commit): only on the
// leader, never forwarded again.
func (n *Node) handleCommit(w http.ResponseWriter, r *http.Request) {
	var req api.CommitRequest
	if !decodeBody(w, r, maxBody, &req) {
		return
	}
	if n.raft.State() != raft.Leader {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s is not the raft leader (sent by %s); retry", n.name, r.Header.Get(api.HeaderForwarded)))
		return
	}
	cmd, _, err := fsm.Decode(req.Entry)
	if err != nil {
		writeErr(w, err)
		return
	}
	id := identityOf(r)
	if err := mayCommit(id, cmd); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	res, err := n.apply(cmd)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.CommitResponse{Index: res.Index, Noop: res.Noop, Message: res.Message, PlanID: res.PlanID})
}

// mayCommit is the authorization of a command sent through a follower, for
// the identity it was asked by: the same as the endpoint the follower
// served (a node reports only for itself; plan writes need an operator);
// commands only the leader issues are refused.
func mayCommit(id auth.Identity, cmd fsm.Command) error {
	var node string
	switch c := cmd.(type) {
	case *fsm.RegisterNode:
		node = c.Name
	case *fsm.ReportObserved:
		node = c.Node
	case *fsm.ReportHook:
		node = c.Node
	case *fsm.SetPeerHealth:
		node = c.Node
	case *fsm.SetRole:
		if !c.Probed {
			return fmt.Errorf("forbidden: only the leader issues %s without a role probe", cmd.CommandType())
		}
		node = c.Node
	case *fsm.SubmitPlan, *fsm.RollbackPlan, *fsm.PausePlan, *fsm.ResumePlan, *fsm.AbortPlan:
		if !id.CanOperate() {
			return fmt.Errorf("forbidden: %s may not %s (needs role operator)", id, cmd.CommandType())
		}
		return nil
	default:
		return fmt.Errorf("forbidden: only the leader issues %s", cmd.CommandType())
	}
	if !id.SpeaksFor(node) {
		return fmt.Errorf("forbidden: %s may not speak for node %q", id, node)
	}
	return nil
}

// commitErr answers an error of commit: the leader's own answer as it
// was, anything else mapped like a local refusal.
func commitErr(w http.ResponseWriter, err error) {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status != 0 {
		writeError(w, ae.Status, ae.Msg)
		return
	}
	if errors.As(err, &ae) {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeErr(w, err)
}

// The commands of the node-to-node reports, built in one place for the
// handlers and the node's own agent.

func registerCommand(req api.RegisterRequest) *fsm.RegisterNode {
	return &fsm.RegisterNode{
		Name: req.Name, Pair: req.Pair, Role: fsm.Role(req.Role), Server: req.Server, Voter: req.Server,
		APIAddr: req.APIAddr, RaftAddr: req.RaftAddr, GossipAddr: req.GossipAddr, Targets: req.Targets, Healthy: req.Healthy,
		Roles: req.Roles, FailoverAfter: req.FailoverAfter, NoExec: req.ExecChecks == config.ExecDeny,
		PeerChecks: req.PeerChecks,
	}
}

func observedCommand(req api.ObservedRequest) *fsm.ReportObserved {
	return &fsm.ReportObserved{Node: req.Node, Target: req.Target, Pid: req.Pid, PidStart: req.PidStart,
		Active: req.Active, Unmanaged: req.Unmanaged, Error: req.Error, Pause: req.Pause, Processes: req.Processes}
}

func hookCommand(req api.HookReport) *fsm.ReportHook {
	return &fsm.ReportHook{Node: req.Node, Epoch: req.Epoch, Hook: req.Hook, OK: req.OK, Skipped: req.Skipped, Output: fsm.ClipLine(req.Output, 400)}
}

func roleCommand(req api.RoleReport) *fsm.SetRole {
	return &fsm.SetRole{Node: req.Node, Role: fsm.Role(req.Role), Probed: true, Cause: "role_probe: " + fsm.ClipLine(req.Output, 200)}
}

func peerHealthCommand(req api.PeerHealthReport) *fsm.SetPeerHealth {
	return &fsm.SetPeerHealth{Node: req.Node, Peer: req.Peer, Check: req.Check, Output: req.Output}
}

// isConflict reports whether a commit was refused as conflicting with the
// state, by this node's FSM or by the leader's.
func isConflict(err error) bool {
	var ae *api.Error
	return errors.Is(err, fsm.ErrConflict) || errors.As(err, &ae) && ae.Status == http.StatusConflict
}

// reportTrial hands a trial report to the leader, which keeps it in memory
// (it is not a command): at once when this node leads, else to the
// leader's API as this node.
func (n *Node) reportTrial(ctx context.Context, f api.TrialFailure) error {
	if n.raft.State() == raft.Leader {
		n.trials.add(f, time.Now())
		n.changed.Notify()
		return nil
	}
	name, addr := n.leaderAPI()
	if name == "" || addr == "" || name == n.name {
		return ErrNoLeader
	}
	return n.internalClient(addr).Do(ctx, http.MethodPost, api.PathTrialFail, f, nil)
}
