package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/config"
	"lp/fsm"
	"lp/heartbeat"
)

// agent reconciles this node's targets with its desired patch stacks. It
// runs on one goroutine (agentLoop); nothing here is shared.
type agent struct {
	n      *Node
	client *api.Client // this node's own API: writes are forwarded to the leader

	failed     map[string]failedAttempt // target -> the last failed attempt
	lastReport map[string]sentReport    // target -> the last observation sent
	lastReg    time.Time
	lastGC     time.Time

	trialKey     string // plan id and phase start of the trial running here
	trialChecker *heartbeat.Checker
	trialPlan    string
	lastTrialRep time.Time

	hook hookState // role hooks and the role probe (hooks.go)
}

type failedAttempt struct {
	key string // pid and desired stack the attempt was for
	err string
	at  time.Time
}

type sentReport struct {
	obs api.ObservedRequest
	at  time.Time
}

func (n *Node) agentLoop() {
	a := &agent{
		n: n, client: n.internalClient(n.apiAddr),
		failed: map[string]failedAttempt{}, lastReport: map[string]sentReport{},
		hook: newHookState(),
	}
	defer a.stopTrial()
	t := time.NewTicker(n.cfg.AgentInterval)
	defer t.Stop()
	for {
		wake := n.changed.C()
		a.once(n.ctx)
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}

// once runs one reconciliation: registration, every target, trial checks.
func (a *agent) once(ctx context.Context) {
	n := a.n
	var (
		self       fsm.Node
		registered bool
		hasLeader  bool
	)
	n.fsm.View(func(s *fsm.State) { self, registered = s.Nodes[n.name] })
	hasLeader = func() bool { name, _ := n.leaderAPI(); return name != "" }()
	if !hasLeader || !n.caughtUp() {
		// Nothing to report to, or a replica that may be stale (just
		// restarted, or cut off): the targets are left as they are.
		return
	}
	if !registered || a.needsRegister(self) {
		if time.Since(a.lastReg) < time.Second {
			return
		}
		a.lastReg = time.Now()
		if err := a.register(ctx); err != nil {
			n.log.Warn("registering", "err", err)
		}
		return
	}
	a.hooks(ctx, self)
	a.probeRole(ctx, self)
	n.publishRole(self.Role)
	for _, name := range targetNames(n.cfg.Node) {
		a.reconcileTarget(ctx, name)
	}
	a.runTrial(ctx)
	a.gcBlobs()
}

// gcBlobs removes the module files of modules the replicated state no
// longer holds (a Prune collected them), at most every PruneInterval.
func (a *agent) gcBlobs() {
	n := a.n
	if time.Since(a.lastGC) < n.cfg.PruneInterval {
		return
	}
	a.lastGC = time.Now()
	var stored map[string]bool
	n.fsm.View(func(s *fsm.State) {
		stored = make(map[string]bool, len(s.Blobs))
		for sum := range s.Blobs {
			stored[sum] = true
		}
	})
	removed, err := n.blobs.gc(func(sum string) bool { return stored[sum] })
	if err != nil {
		n.log.Warn("removing unused module files", "err", err)
	}
	if removed > 0 {
		n.log.Info("removed unused module files", "count", removed)
	}
}

// caughtUp reports whether this node's replica is fit to act on: the leader
// itself, or a follower in recent contact with the leader that has applied
// everything it knows to be committed.
func (n *Node) caughtUp() bool {
	if n.raft.State() == raft.Leader {
		return true
	}
	if time.Since(n.raft.LastContact()) > 5*n.cfg.HeartbeatTimeout {
		return false
	}
	return n.raft.AppliedIndex() >= n.raft.CommitIndex()
}

func (a *agent) needsRegister(self fsm.Node) bool {
	n := a.n
	return self.APIAddr != n.apiAddr || self.RaftAddr != n.raftAddr || self.GossipAddr != n.ml.Addr() ||
		self.Server != n.cfg.Node.Server || !slices.Equal(self.Targets, targetNames(n.cfg.Node)) ||
		self.Roles != n.cfg.Node.Roles || self.FailoverAfter != n.cfg.Node.FailoverAfter ||
		self.NoExec != (n.cfg.Node.ExecChecks == config.ExecDeny)
}

func (a *agent) register(ctx context.Context) error {
	n := a.n
	req := api.RegisterRequest{
		Name: n.name, Pair: n.cfg.Node.Pair, Role: n.cfg.Node.Role, Server: n.cfg.Node.Server,
		APIAddr: n.apiAddr, RaftAddr: n.raftAddr, GossipAddr: n.ml.Addr(),
		Targets: targetNames(n.cfg.Node), Healthy: n.healthSummary().Healthy,
		Roles: n.cfg.Node.Roles, FailoverAfter: n.cfg.Node.FailoverAfter, ExecChecks: n.cfg.Node.ExecChecks,
	}
	return a.client.Do(ctx, http.MethodPost, api.PathRegister, req, nil)
}

// reconcileTarget makes one target's process run the desired stack and
// reports what it found.
func (a *agent) reconcileTarget(ctx context.Context, target string) {
	n := a.n
	var (
		desired []fsm.PatchRef
		blobs   = map[string]fsm.Blob{}
		prev    fsm.Observed
		hadPrev bool
	)
	n.fsm.View(func(s *fsm.State) {
		desired = s.DesiredStack(n.name, target)
		for _, r := range desired {
			blobs[r.SHA256] = s.Blobs[r.SHA256]
		}
		prev, hadPrev = s.Observed[n.name][target]
	})
	obs := api.ObservedRequest{Node: n.name, Target: target}
	pid, err := findProcess(n.cfg.ProcRoot, n.cfg.Node.Targets[target])
	switch {
	case errors.Is(err, ErrNoProcess):
		// Nothing to patch; a process started later is patched then.
	case err != nil:
		obs.Error = err.Error()
	default:
		obs.Pid = pid
		obs.Active, obs.Error = a.converge(ctx, target, pid, desired, blobs)
	}
	if hadPrev && prev.Pid == obs.Pid && slices.Equal(prev.Active, obs.Active) && prev.Error == obs.Error {
		return // the cluster knows
	}
	if r, ok := a.lastReport[target]; ok && time.Since(r.at) < time.Second && reportEqual(r.obs, obs) {
		return // sent already; the replica has not caught up yet
	}
	if err := a.client.Do(ctx, http.MethodPost, api.PathObserved, obs, nil); err != nil {
		n.log.Warn("reporting observed state", "target", target, "err", err)
		return
	}
	a.lastReport[target] = sentReport{obs: obs, at: time.Now()}
}

func reportEqual(a, b api.ObservedRequest) bool {
	return a.Pid == b.Pid && slices.Equal(a.Active, b.Active) && a.Error == b.Error
}

// converge reverts the active patches that are not in the desired stack
// (newest first, with their dependents) and applies the missing ones in
// order. It returns the active patches afterwards and the error, if any.
// A failed attempt is not repeated for the same process and stack until
// RetryBackoff has passed.
func (a *agent) converge(ctx context.Context, target string, pid int, desired []fsm.PatchRef, blobs map[string]fsm.Blob) ([]string, string) {
	n := a.n
	list, err := n.cfg.Patcher.List(pid)
	if err != nil {
		return nil, fmt.Sprintf("listing patches in pid %d: %v", pid, err)
	}
	active := activeIDs(list)
	want := fsm.PatchIDs(desired)
	if slices.Equal(active, want) {
		delete(a.failed, target)
		return active, ""
	}
	key := fmt.Sprintf("%d %v", pid, want)
	if f, ok := a.failed[target]; ok && f.key == key && time.Since(f.at) < n.cfg.RetryBackoff {
		return active, f.err
	}
	k := 0
	for k < len(active) && k < len(want) && active[k] == want[k] {
		k++
	}
	var opErr error
	for i := len(active) - 1; i >= k && opErr == nil; i-- {
		if !slices.Contains(activeIDs(mustList(n.cfg.Patcher, pid)), active[i]) {
			continue // reverted with a dependency already
		}
		n.log.Info("reverting patch", "target", target, "pid", pid, "patch", active[i])
		if err := a.revert(ctx, target, pid, active[i]); err != nil {
			opErr = fmt.Errorf("reverting %s in pid %d: %w", active[i], pid, err)
		}
	}
	for _, r := range desired[k:] {
		if opErr != nil {
			break
		}
		// One read of the file: its sha256 and signature are checked on
		// the bytes the engine then loads (no window to swap the file).
		path, data, err := n.blobs.load(r.SHA256, blobs[r.SHA256].Data)
		if err == nil {
			err = n.verifyLoad(path, data, blobs[r.SHA256].Signatures)
		}
		if err != nil {
			opErr = fmt.Errorf("applying %s to pid %d: %w", r.PatchID, pid, err)
			break
		}
		n.log.Info("applying patch", "target", target, "pid", pid, "patch", r.PatchID)
		if err := a.apply(ctx, target, pid, path, data); err != nil {
			opErr = fmt.Errorf("applying %s to pid %d: %w", r.PatchID, pid, err)
		}
	}
	list, err = n.cfg.Patcher.List(pid)
	if err != nil {
		return nil, fmt.Sprintf("listing patches in pid %d: %v", pid, err)
	}
	active = activeIDs(list)
	if opErr != nil {
		n.metrics.applyErrors.Inc()
		n.log.Warn("reconcile failed", "target", target, "pid", pid, "err", opErr)
		a.failed[target] = failedAttempt{key: key, err: clipText(opErr.Error(), 400), at: time.Now()}
		return active, a.failed[target].err
	}
	delete(a.failed, target)
	return active, ""
}

// apply applies one module through the Patcher, recording the pause when
// the Patcher measures it.
func (a *agent) apply(ctx context.Context, target string, pid int, path string, data []byte) error {
	n := a.n
	tp, ok := n.cfg.Patcher.(timedPatcher)
	if !ok {
		return n.cfg.Patcher.Apply(ctx, pid, path, data)
	}
	d, err := tp.ApplyTimed(ctx, pid, path, data)
	if d > 0 {
		n.metrics.observePause(n.name, target, d)
	}
	return err
}

// revert reverts one patch through the Patcher, recording the pause when
// the Patcher measures it.
func (a *agent) revert(ctx context.Context, target string, pid int, id string) error {
	n := a.n
	tp, ok := n.cfg.Patcher.(timedPatcher)
	if !ok {
		return n.cfg.Patcher.Revert(ctx, pid, id)
	}
	d, err := tp.RevertTimed(ctx, pid, id)
	if d > 0 {
		n.metrics.observePause(n.name, target, d)
	}
	return err
}

func mustList(p Patcher, pid int) []PatchStatus {
	l, _ := p.List(pid)
	return l
}

// runTrial runs a plan's health checks on this node while this node is in
// its trial, and reports a failing check to the leader (again every second
// while it fails, so that a new leader learns it too).
func (a *agent) runTrial(ctx context.Context) {
	n := a.n
	var (
		p     fsm.Plan
		found bool
	)
	n.fsm.View(func(s *fsm.State) {
		for _, q := range s.Plans {
			if q.State == fsm.PlanRunning && q.Phase.Trial() && q.PhaseNode() == n.name && len(q.Spec.Health) > 0 {
				p, found = q, true
				return
			}
		}
	})
	if !found {
		a.stopTrial()
		return
	}
	key := p.ID + " " + p.PhaseStarted.String()
	if key != a.trialKey {
		a.stopTrial()
		var specs []heartbeat.CheckSpec
		if n.cfg.Node.ExecChecks == config.ExecDeny {
			for _, c := range p.Spec.Health {
				if c.Exec != "" {
					// Never run: the trial fails (and the plan rolls back) instead.
					if time.Since(a.lastTrialRep) < time.Second {
						return
					}
					a.report(ctx, api.TrialFailure{Node: n.name, Plan: p.ID, Check: c.Name,
						Output: "exec checks are denied on " + n.name + " (exec_checks: deny)"})
					return
				}
			}
		}
		for _, c := range p.Spec.Health {
			specs = append(specs, n.checkSpec(c.Name, c.Exec, c.TCP, c.HTTP, c.Process, c.Interval, c.Timeout, c.Failures, c.Successes))
		}
		cc := heartbeat.DefaultCheckerConfig()
		cc.Checks, cc.Logger = specs, n.log.With("part", "trial", "plan", p.ID)
		cc.Flap.Changes = -1 // a trial is short: no damping
		ch, err := heartbeat.StartChecker(cc)
		if err != nil {
			n.log.Error("starting trial checks", "plan", p.ID, "err", err)
			a.report(ctx, api.TrialFailure{Node: n.name, Plan: p.ID, Check: "(checks)", Output: err.Error()})
			return
		}
		a.trialKey, a.trialChecker, a.trialPlan = key, ch, p.ID
	}
	if sum := a.trialChecker.Status(); sum.State == heartbeat.HealthUnhealthy && time.Since(a.lastTrialRep) >= time.Second {
		a.report(ctx, api.TrialFailure{Node: n.name, Plan: p.ID, Check: sum.Failing, Output: sum.Output})
	}
}

func (a *agent) report(ctx context.Context, f api.TrialFailure) {
	a.lastTrialRep = time.Now()
	if err := a.client.Do(ctx, http.MethodPost, api.PathTrialFail, f, nil); err != nil {
		a.n.log.Warn("reporting trial failure", "plan", f.Plan, "err", err)
	}
}

func (a *agent) stopTrial() {
	if a.trialChecker != nil {
		a.trialChecker.Stop()
	}
	a.trialKey, a.trialChecker, a.trialPlan = "", nil, ""
}
