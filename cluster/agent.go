package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/config"
	"lp/fsm"
	"lp/heartbeat"
	"lp/internal/auth"
)

// agent reconciles this node's targets with its desired patch stacks. It
// runs on one goroutine (agentLoop); nothing here is shared.
type agent struct {
	n *Node // writes go through n.commit (or, trial reports, reportTrial)

	failed     map[string]failedAttempt // "target pid" -> the last failed attempt
	lastReport map[string]sentReport    // target -> the last observation sent
	lastReg    time.Time
	lastGC     time.Time

	trialKey     string // plan id and phase start of the trial running here
	trialChecker *heartbeat.Checker
	trialPlan    string
	lastTrialRep time.Time

	hook hookState // role hooks and the role probe (hooks.go)

	sync syncState // the read-index barrier (see current)
	peer peerState // peer_health checks (peer.go)
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
		n:      n,
		failed: map[string]failedAttempt{}, lastReport: map[string]sentReport{},
		hook: newHookState(),
	}
	defer a.stopTrial()
	defer a.stopPeerChecks()
	a.logRecords()
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

// logRecords logs what each target's own record says runs in it, before
// the agent knows anything of the cluster: the first thing an operator
// reads after a restart.
func (a *agent) logRecords() {
	n := a.n
	for _, name := range targetNames(n.cfg.Node) {
		pids, err := findProcesses(n.cfg.ProcRoot, n.cfg.Node.Targets[name])
		if err != nil {
			n.log.Info("target at start", "target", name, "err", err)
			continue
		}
		for _, pid := range pids {
			list, err := n.cfg.Patcher.List(pid)
			if err != nil {
				n.log.Warn("target at start: listing its patches", "target", name, "pid", pid, "err", err)
				continue
			}
			n.log.Info("target at start", "target", name, "pid", pid, "active", activeIDs(list))
		}
	}
}

// once runs one reconciliation: registration, every target, trial checks.
// Nothing is changed in a target before the barrier says the replica is
// current, and the first pass after each barrier only observes.
func (a *agent) once(ctx context.Context) {
	n := a.n
	if !a.current(ctx) {
		return
	}
	var (
		self       fsm.Node
		registered bool
	)
	n.fsm.View(func(s *fsm.State) { self, registered = s.Nodes[n.name] })
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
	act := a.sync.observed
	a.hooks(ctx, self)
	a.probeRole(ctx, self)
	a.peerHealth(ctx, self)
	n.publishRole(self.Role)
	allReported := true
	for _, name := range targetNames(n.cfg.Node) {
		if !a.reconcileTarget(ctx, name, act) {
			allReported = false
		}
	}
	if !act && allReported {
		// Every target's record is reported as it is: from now on the
		// agent may change them.
		a.sync.observed = true
		n.log.Info("targets reported as found; reconciling from now on")
		n.changed.Notify()
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
	// A module is written before the entry that references it commits:
	// files younger than the grace (or one apply timeout) stay.
	removed, err := n.blobs.gc(func(sum string) bool { return stored[sum] }, max(n.cfg.Retention.BlobGrace, n.cfg.ApplyTimeout))
	if err != nil {
		n.log.Warn("removing unused module files", "err", err)
	}
	if removed > 0 {
		n.log.Info("removed unused module files", "count", removed)
	}
}

// syncState is the agent's read-index barrier: the agent acts only on a
// replica it knows to be current. After a start, a leader change or a loss
// of contact with the leader (a rejoin), it asks the leader for its read
// index (the leader commits a barrier and confirms it still leads before it
// answers) and waits until its own FSM has applied at least that index.
type syncState struct {
	leader   string    // the leader the barrier went through
	index    uint64    // its read index
	asked    time.Time // when it answered; zero until it did
	lastAsk  time.Time
	passed   bool // the replica has applied index
	observed bool // every target was reported as found since passed
}

// current reports whether this node's replica is known to be current (see
// syncState), asking the leader when it must.
func (a *agent) current(ctx context.Context) bool {
	n := a.n
	leader, addr := n.leaderAPI()
	lost := n.raft.State() != raft.Leader && time.Since(n.raft.LastContact()) > 5*n.cfg.HeartbeatTimeout
	if leader == "" || addr == "" || lost {
		if a.sync.passed {
			n.log.Info("replica may be stale: targets are left alone until the leader confirms it", "leader", leader, "lost_contact", lost)
		}
		a.sync = syncState{}
		return false
	}
	if leader != a.sync.leader {
		if a.sync.passed {
			n.log.Info("leader changed: targets are left alone until the new leader confirms the replica", "leader", leader)
		}
		a.sync = syncState{leader: leader}
	}
	if a.sync.passed {
		return true
	}
	if a.sync.asked.IsZero() {
		if time.Since(a.sync.lastAsk) < n.cfg.AgentInterval {
			return false
		}
		a.sync.lastAsk = time.Now()
		idx, err := a.readIndex(ctx, leader, addr)
		if err != nil {
			n.log.Debug("asking the leader for its read index", "leader", leader, "err", err)
			return false
		}
		a.sync.index, a.sync.asked = idx, time.Now()
	}
	if got := n.fsm.Index(); got < a.sync.index {
		return false // the FSM wakes the agent as it applies
	}
	a.sync.passed = true
	n.log.Info("replica is current", "leader", leader, "read_index", a.sync.index)
	return true
}

// readIndex asks leader for its read index: on this node when it leads,
// else over the leader's node-to-node API.
func (a *agent) readIndex(ctx context.Context, leader, addr string) (uint64, error) {
	n := a.n
	if leader == n.name {
		return n.readIndex()
	}
	var resp api.ReadIndex
	if err := n.internalClient(addr).Do(ctx, http.MethodPost, api.PathReadIndex, api.ReadIndexRequest{Node: n.name}, &resp); err != nil {
		return 0, err
	}
	if resp.Leader != leader {
		return 0, fmt.Errorf("read index answered by %s, not by leader %s", resp.Leader, leader)
	}
	return resp.Index, nil
}

// readIndex returns the index a replica must have applied to hold every
// change this leader has made: it commits a barrier (so its own FSM holds
// every entry of earlier terms and a quorum still follows it), confirms it
// still leads, and returns its FSM's index.
func (n *Node) readIndex() (uint64, error) {
	if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		return 0, fmt.Errorf("committing a barrier: %w", err)
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("verifying leadership: %w", err)
	}
	return n.fsm.Index(), nil
}

func (a *agent) needsRegister(self fsm.Node) bool {
	n := a.n
	return self.APIAddr != n.apiAddr || self.RaftAddr != n.raftAddr || self.GossipAddr != n.ml.Addr() ||
		self.Server != n.cfg.Node.Server || !slices.Equal(self.Targets, targetNames(n.cfg.Node)) ||
		self.Roles != n.cfg.Node.Roles || self.FailoverAfter != n.cfg.Node.FailoverAfter ||
		self.NoExec != (n.cfg.Node.ExecChecks == config.ExecDeny) ||
		self.PeerChecks != (len(n.cfg.Node.PeerHealth) > 0)
}

func (a *agent) register(ctx context.Context) error {
	n := a.n
	req := api.RegisterRequest{
		Name: n.name, Pair: n.cfg.Node.Pair, Role: n.cfg.Node.Role, Server: n.cfg.Node.Server,
		APIAddr: n.apiAddr, RaftAddr: n.raftAddr, GossipAddr: n.ml.Addr(),
		Targets: targetNames(n.cfg.Node), Healthy: n.healthSummary().Healthy,
		Roles: n.cfg.Node.Roles, FailoverAfter: n.cfg.Node.FailoverAfter, ExecChecks: n.cfg.Node.ExecChecks,
		PeerChecks: len(n.cfg.Node.PeerHealth) > 0,
	}
	_, err := n.commit(ctx, auth.Identity{}, registerCommand(req))
	return err
}

// reconcileTarget makes one target's process run the desired stack (only
// observes it when act is false) and reports what it found. It returns
// whether the cluster has (or was sent) the report.
func (a *agent) reconcileTarget(ctx context.Context, target string, act bool) bool {
	n := a.n
	var (
		desired []fsm.PatchRef
		blobs   = map[string]fsm.Blob{}
		known   map[string]bool
		opts    map[string]PatchOptions
		prev    fsm.Observed
		hadPrev bool
	)
	n.fsm.View(func(s *fsm.State) {
		desired = s.DesiredStack(n.name, target)
		for _, r := range desired {
			blobs[r.SHA256] = s.Blobs[r.SHA256]
		}
		known = knownPatches(s, n.name, target)
		opts = patchOptions(s, n.name, target)
		prev, hadPrev = s.Observed[n.name][target]
	})
	obs := api.ObservedRequest{Node: n.name, Target: target}
	t := n.cfg.Node.Targets[target]
	pids, err := findProcesses(n.cfg.ProcRoot, t)
	switch {
	case errors.Is(err, ErrNoProcess):
		// Nothing to patch; a process started later is patched then. A
		// node that should run patches says why it does not: the report
		// (sent because it changed) lets a plan fail at once, naming the
		// node, instead of at its deadline.
		if len(desired) > 0 {
			obs.Error = err.Error()
		}
	case err != nil:
		obs.Error = err.Error()
	default:
		// Every process is brought to the desired stack (match: all has
		// several; one failing does not stop the others).
		var procs []fsm.ObservedProcess
		for _, pid := range pids {
			p := fsm.ObservedProcess{Pid: pid}
			start, err := processStart(n.cfg.ProcRoot, pid)
			if err != nil {
				p.Error = err.Error()
			} else {
				var pause time.Duration
				p.PidStart = start
				p.Active, p.Unmanaged, pause, p.Error = a.converge(ctx, target, pid, desired, blobs, known, opts, act)
				obs.Pause = max(obs.Pause, pause)
			}
			procs = append(procs, p)
		}
		a.forgetFailures(target, pids)
		first := representative(procs, fsm.PatchIDs(desired))
		obs.Pid, obs.PidStart, obs.Active, obs.Unmanaged, obs.Error = first.Pid, first.PidStart, first.Active, first.Unmanaged, first.Error
		if t.All() {
			obs.Processes = procs
		}
	}
	if hadPrev && prev.Pid == obs.Pid && prev.PidStart == obs.PidStart && slices.Equal(prev.Active, obs.Active) &&
		slices.Equal(prev.Unmanaged, obs.Unmanaged) && prev.Error == obs.Error && sameProcesses(prev.Processes, obs.Processes) {
		return true // the cluster knows
	}
	if r, ok := a.lastReport[target]; ok && time.Since(r.at) < time.Second && reportEqual(r.obs, obs) {
		return true // sent already; the replica has not caught up yet
	}
	if _, err := n.commit(ctx, auth.Identity{}, observedCommand(obs)); err != nil {
		n.log.Warn("reporting observed state", "target", target, "err", err)
		return false
	}
	a.lastReport[target] = sentReport{obs: obs, at: time.Now()}
	return true
}

// knownPatches returns the ids of the patches the cluster knows for target
// on node: those of every plan for target, and those of the node's desired
// stack. The agent never reverts any other patch: one applied by hand
// (lpctl patch apply) stays until an operator reverts it, or a plan with
// its id is rolled back.
func knownPatches(s *fsm.State, node, target string) map[string]bool {
	known := map[string]bool{}
	for _, p := range s.Plans {
		if p.Spec.Target == target {
			known[p.Spec.PatchID] = true
		}
	}
	for _, r := range s.DesiredStack(node, target) {
		known[r.PatchID] = true
	}
	return known
}

// patchOptions returns, by patch id, the engine options of the plan that
// brought each patch the cluster knows for target on node: the plan of its
// entry in the desired stack, else the newest plan for target with that
// patch (the one whose rollback reverts it).
func patchOptions(s *fsm.State, node, target string) map[string]PatchOptions {
	opts := map[string]PatchOptions{}
	seq := map[string]uint64{}
	for _, p := range s.Plans {
		if p.Spec.Target == target && p.Seq >= seq[p.Spec.PatchID] {
			seq[p.Spec.PatchID] = p.Seq
			opts[p.Spec.PatchID] = planOptions(p.Spec)
		}
	}
	for _, r := range s.DesiredStack(node, target) {
		if p, ok := s.Plans[r.Plan]; ok {
			opts[r.PatchID] = planOptions(p.Spec)
		}
	}
	return opts
}

func reportEqual(a, b api.ObservedRequest) bool {
	return a.Pid == b.Pid && a.PidStart == b.PidStart && slices.Equal(a.Active, b.Active) &&
		slices.Equal(a.Unmanaged, b.Unmanaged) && a.Error == b.Error && sameProcesses(a.Processes, b.Processes)
}

// sameProcesses reports whether two observations of a match: all target
// saw the same processes in the same states.
func sameProcesses(a, b []fsm.ObservedProcess) bool {
	return slices.EqualFunc(a, b, func(p, q fsm.ObservedProcess) bool {
		return p.Pid == q.Pid && p.PidStart == q.PidStart && slices.Equal(p.Active, q.Active) &&
			slices.Equal(p.Unmanaged, q.Unmanaged) && p.Error == q.Error
	})
}

// representative is the process a target's observation names (Pid,
// Active, Error): the first that does not run the desired stack or has an
// error, else the first. So the observed stack equals the desired one
// only when every process runs it, and a rollback is confirmed only when
// every process is back.
func representative(procs []fsm.ObservedProcess, want []string) fsm.ObservedProcess {
	for _, p := range procs {
		if p.Error != "" || !slices.Equal(p.Active, want) {
			return p
		}
	}
	return procs[0]
}

// forgetFailures drops the failed attempts of target's processes that are
// gone.
func (a *agent) forgetFailures(target string, pids []int) {
	for k := range a.failed {
		name, pid, ok := strings.Cut(k, " ")
		if ok && name == target && !slices.Contains(pids, atoi(pid)) {
			delete(a.failed, k)
		}
	}
}

func atoi(s string) int {
	v, _ := strconv.Atoi(s)
	return v
}

// converge reverts the known active patches that are not in the desired
// stack (newest first, with their dependents) and applies the missing ones
// in order; patches the cluster does not know (see knownPatches) are left
// as they are. With act false it only looks. It returns the known active
// patches afterwards, the unknown ones, the longest pause of its applies and
// reverts, and the error, if any. A failed
// attempt is not repeated for the same process and stack until
// RetryBackoff has passed.
func (a *agent) converge(ctx context.Context, target string, pid int, desired []fsm.PatchRef, blobs map[string]fsm.Blob, known map[string]bool, opts map[string]PatchOptions, act bool) (active, unmanaged []string, pause time.Duration, _ string) {
	n := a.n
	listed := func() error {
		list, err := n.cfg.Patcher.List(pid)
		if err != nil {
			return fmt.Errorf("listing patches in pid %d: %w", pid, err)
		}
		active, unmanaged = splitKnown(activeIDs(list), known)
		return nil
	}
	if err := listed(); err != nil {
		return nil, nil, 0, err.Error()
	}
	fkey := fmt.Sprintf("%s %d", target, pid)
	want := fsm.PatchIDs(desired)
	if slices.Equal(active, want) {
		delete(a.failed, fkey)
		return active, unmanaged, 0, ""
	}
	if !act {
		return active, unmanaged, 0, ""
	}
	key := fmt.Sprintf("%d %v", pid, want)
	if f, ok := a.failed[fkey]; ok && f.key == key && time.Since(f.at) < n.cfg.RetryBackoff {
		return active, unmanaged, 0, f.err
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
		d, err := a.revert(ctx, target, pid, active[i], opts[active[i]])
		pause = max(pause, d)
		if err != nil {
			opErr = fmt.Errorf("reverting %s in pid %d: %w", active[i], pid, err)
		}
	}
	for _, r := range desired[k:] {
		if opErr != nil {
			break
		}
		// One read of the file: its sha256 and signature are checked on
		// the bytes the engine then loads (no window to swap the file).
		path, data, err := n.module(ctx, blobs[r.SHA256])
		if err == nil {
			err = n.verifyLoad(path, data, blobs[r.SHA256].Signatures)
		}
		if err != nil {
			opErr = fmt.Errorf("applying %s to pid %d: %w", r.PatchID, pid, err)
			break
		}
		n.log.Info("applying patch", "target", target, "pid", pid, "patch", r.PatchID)
		d, err := a.apply(ctx, target, pid, path, data, opts[r.PatchID])
		pause = max(pause, d)
		if err != nil {
			opErr = fmt.Errorf("applying %s to pid %d: %w", r.PatchID, pid, err)
		}
	}
	if err := listed(); err != nil {
		return nil, nil, pause, err.Error()
	}
	if opErr != nil {
		n.metrics.applyErrors.Inc()
		n.log.Warn("reconcile failed", "target", target, "pid", pid, "err", opErr)
		a.failed[fkey] = failedAttempt{key: key, err: fsm.ClipLine(opErr.Error(), 400), at: time.Now()}
		return active, unmanaged, pause, a.failed[fkey].err
	}
	delete(a.failed, fkey)
	return active, unmanaged, pause, ""
}

// splitKnown splits ids, keeping their order, into those in known and the
// others.
func splitKnown(ids []string, known map[string]bool) (in, out []string) {
	for _, id := range ids {
		if known[id] {
			in = append(in, id)
		} else {
			out = append(out, id)
		}
	}
	return in, out
}

// apply applies one module through the Patcher and returns the pause when
// the Patcher measures it (recorded in the metrics too).
func (a *agent) apply(ctx context.Context, target string, pid int, path string, data []byte, opts PatchOptions) (time.Duration, error) {
	n := a.n
	tp, ok := n.cfg.Patcher.(timedPatcher)
	if !ok {
		return 0, n.cfg.Patcher.Apply(ctx, pid, path, data, opts)
	}
	d, err := tp.ApplyTimed(ctx, pid, path, data, opts)
	if d > 0 {
		n.metrics.observePause(n.name, target, d)
	}
	return d, err
}

// revert reverts one patch through the Patcher and returns the pause when
// the Patcher measures it (recorded in the metrics too).
func (a *agent) revert(ctx context.Context, target string, pid int, id string, opts PatchOptions) (time.Duration, error) {
	n := a.n
	tp, ok := n.cfg.Patcher.(timedPatcher)
	if !ok {
		return 0, n.cfg.Patcher.Revert(ctx, pid, id, opts)
	}
	d, err := tp.RevertTimed(ctx, pid, id, opts)
	if d > 0 {
		n.metrics.observePause(n.name, target, d)
	}
	return d, err
}

func mustList(p Patcher, pid int) []PatchStatus {
	l, _ := p.List(pid)
	return l
}

// runTrial runs a plan's health checks on this node while this node is in
// its trial, and reports a failing check to the leader (again every second
// while it fails, so that a new leader learns it too). Once the trial's
// time is over it reports either a check that never produced a result (a
// failure) or that every check ran and none is failing (a pass, again
// every second until the plan moves on).
func (a *agent) runTrial(ctx context.Context) {
	n := a.n
	var (
		p     fsm.Plan
		found bool
	)
	n.fsm.View(func(s *fsm.State) {
		for _, q := range s.Plans {
			if q.State == fsm.PlanRunning && q.Phase.Trial() && slices.Contains(q.PhaseNodes(), n.name) && len(q.Spec.Health) > 0 {
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
	if time.Since(a.lastTrialRep) < time.Second {
		return
	}
	sum := a.trialChecker.Status()
	if sum.State == heartbeat.HealthUnhealthy {
		a.report(ctx, api.TrialFailure{Node: n.name, Plan: p.ID, Check: sum.Failing, Output: sum.Output})
		return
	}
	if time.Now().Before(p.PhaseDeadline) {
		return
	}
	// The trial is over: it passes only if every check has run.
	for _, c := range sum.Checks {
		if c.Runs == 0 {
			a.report(ctx, api.TrialFailure{Node: n.name, Plan: p.ID, Check: c.Name,
				Output: "produced no result during the trial (a check that never ran counts as failing)"})
			return
		}
	}
	a.report(ctx, api.TrialFailure{Node: n.name, Plan: p.ID, Passed: true})
}

func (a *agent) report(ctx context.Context, f api.TrialFailure) {
	a.lastTrialRep = time.Now()
	if err := a.n.reportTrial(ctx, f); err != nil {
		a.n.log.Warn("reporting trial failure", "plan", f.Plan, "err", err)
	}
}

func (a *agent) stopTrial() {
	if a.trialChecker != nil {
		a.trialChecker.Stop()
	}
	a.trialKey, a.trialChecker, a.trialPlan = "", nil, ""
}
