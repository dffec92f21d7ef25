package decide

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"lp/fsm"
)

// Step is one command the leader should commit, and why.
type Step struct {
	Plan string // the plan it moves, or "pair NAME" for a role step
	Cmd  fsm.Command
	Why  string
}

// NextSteps returns, for every plan that is pending, running or rolling
// back, the next command that moves it on (none while it must wait). It is a
// pure function of the state, the clock and the trial failures reported to
// the leader, so that any leader decides the same from the same state.
//
// A running plan's apply phase gives every node of the phase that lacks the
// plan's stack its SetDesired at once (WaveDesired): none depends on
// another, and the leader commits them in one round.
func NextSteps(s *fsm.State, now time.Time, trials map[string]Trial) []Step {
	var out []Step
	for _, p := range s.PlanList() {
		cmd, why := PlanStep(s, p, now, trials[p.ID])
		if cmd == nil {
			continue
		}
		if _, ok := cmd.(*fsm.SetDesired); ok && p.State == fsm.PlanRunning {
			for _, c := range WaveDesired(s, p) {
				out = append(out, Step{Plan: p.ID, Cmd: c, Why: "apply on " + c.(*fsm.SetDesired).Node})
			}
			continue
		}
		out = append(out, Step{Plan: p.ID, Cmd: cmd, Why: why})
	}
	return out
}

// PlanStep decides the next command for one plan, nil to wait.
func PlanStep(s *fsm.State, p fsm.Plan, now time.Time, fail Trial) (fsm.Command, string) {
	switch p.State {
	case fsm.PlanPending:
		if deadlinePassed(p, now) {
			return failure(p, fmt.Sprintf("progress deadline passed at %s before the plan could start", stamp(p.PlanDeadline)))
		}
		pair := p.Spec.Pairs[0]
		if why := pairNotReady(s, p, pair); why != "" {
			return nil, why
		}
		return &fsm.PlanPhase{Plan: p.ID, Pair: pair, Phase: fsm.PhaseStandbyApply, Cause: "start: both members of " + pair + " alive and healthy"}, "start"
	case fsm.PlanRunning:
		if reason := runningFailure(s, p, now, fail); reason != "" {
			return failure(p, reason)
		}
		return runningStep(s, p, now, fail)
	case fsm.PlanRollingBack:
		return RollbackStep(s, p, now)
	}
	return nil, ""
}

// failure is what a plan does on a failure: roll back (staged: the
// orchestrator restores standby sides first) or pause.
func failure(p fsm.Plan, reason string) (fsm.Command, string) {
	if p.Spec.OnFailure == fsm.OnFailurePause {
		return &fsm.PausePlan{Plan: p.ID, Reason: reason}, "failure: " + reason
	}
	return &fsm.RollbackPlan{Plan: p.ID, Reason: reason, Staged: true}, "failure: " + reason
}

func deadlinePassed(p fsm.Plan, now time.Time) bool {
	return !p.PlanDeadline.IsZero() && now.After(p.PlanDeadline)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// pairNotReady says why a pair may not start (or its active be patched):
// both members must be alive and healthy, and the pair must have its
// active and its standby (no failover or switchover under way).
func pairNotReady(s *fsm.State, p fsm.Plan, pair string) string {
	if a, b := s.PairRoles(pair); a == "" || b == "" {
		return fmt.Sprintf("pair %s has no active and standby (a failover or switchover is under way)", pair)
	}
	for _, m := range s.PairMembers(pair) {
		if m.Handover != "" {
			return fmt.Sprintf("a switchover of pair %s is under way", pair)
		}
	}
	for _, st := range p.Steps {
		if st.Pair != pair {
			continue
		}
		n, ok := s.Nodes[st.Node]
		switch {
		case !ok:
			return fmt.Sprintf("node %s is not registered", st.Node)
		case n.Status != fsm.StatusAlive:
			return fmt.Sprintf("node %s is %s", n.Name, n.Status)
		case !n.Healthy:
			return fmt.Sprintf("node %s is unhealthy", n.Name)
		}
	}
	// The FSM refuses such a plan at submission; this holds for plans
	// submitted before that rule.
	for _, m := range s.PairMembers(pair) {
		if ref, ok := s.UntriedPatch(pair, m.Name, p.Spec.Target, p.ID); ok {
			return fmt.Sprintf("%s runs patch %s of plan %s, which never passed a trial in pair %s: abort this plan, roll back plan %s, and submit again", m.Name, ref.PatchID, ref.Plan, pair, ref.Plan)
		}
	}
	return ""
}

// runningFailure returns why a running plan has failed, "" if it has not.
// Failures: the progress deadline; an apply phase past its deadline; a plan
// health check failing on the node in trial; a node of the current pair
// dead, gone or suspect for longer than its bound (see lost); a node the plan patched that is unhealthy, whose
// target exited or whose agent reports an error since it was patched.
func runningFailure(s *fsm.State, p fsm.Plan, now time.Time, fail Trial) string {
	if deadlinePassed(p, now) {
		return fmt.Sprintf("progress deadline passed at %s", stamp(p.PlanDeadline))
	}
	if !p.Phase.Trial() && !p.PhaseDeadline.IsZero() && now.After(p.PhaseDeadline) {
		return fmt.Sprintf("%s of %s did not finish by %s", p.Phase, strings.Join(p.PhaseNodes(), ", "), stamp(p.PhaseDeadline))
	}
	if f := fail.Failure; f.Plan == p.ID && !f.Passed && p.Phase.Trial() && slices.Contains(p.PhaseNodes(), f.Node) && !fail.At.Before(p.PhaseStarted) {
		return fmt.Sprintf("health check %s failed on %s during its trial: %s", f.Check, f.Node, fsm.ClipLine(f.Output, 200))
	}
	target := p.Spec.Target
	for _, st := range p.Steps {
		current := p.InWave(st.Pair)
		patched := !st.Applied.IsZero()
		if !current && !patched {
			continue
		}
		if keepPatchFailover(p, st) {
			continue
		}
		n, ok := s.Nodes[st.Node]
		if !ok {
			return fmt.Sprintf("node %s was removed", st.Node)
		}
		if why := lost(n, now); why != "" {
			return why
		}
		if !patched {
			continue
		}
		if !n.Healthy {
			return fmt.Sprintf("node %s is unhealthy (%s: %s)", n.Name, n.FailingCheck, fsm.ClipLine(n.CheckOutput, 200))
		}
		obs, ok := s.Observed[n.Name][target]
		if !ok || obs.At.Before(st.Applied) {
			continue // no report since it was patched
		}
		if obs.Pid == 0 {
			if p.Phase.Trial() && st.Node == p.PhaseNode() && st.TrialPid != 0 {
				return fmt.Sprintf("target %s on %s exited during its trial (pid %d)", target, n.Name, st.TrialPid)
			}
			return fmt.Sprintf("target %s is not running on %s", target, n.Name)
		}
		if why := replaced(p, st, obs); why != "" {
			return fmt.Sprintf("target %s on %s %s during its trial", target, n.Name, why)
		}
		if obs.Error != "" && !s.NodeConverged(n.Name, target) {
			return fmt.Sprintf("patching %s on %s failed: %s", target, n.Name, fsm.ClipLine(obs.Error, 200))
		}
	}
	return ""
}

// TrialResultGrace is how long after a trial's end the orchestrator waits
// for the node's report that its trial checks passed: twice the slowest
// check's interval plus timeout, at least 5s.
func TrialResultGrace(p fsm.Plan) time.Duration {
	g := 5 * time.Second
	for _, c := range p.Spec.Health {
		g = max(g, 2*(c.Interval+c.Timeout))
	}
	return g
}

// replaced says how the process a node's trial watches was replaced ("" if
// it was not): the trial watches the process it patched (the pid and start
// time recorded when the trial started), not the target's name, so a
// process restarted by a supervisor, however fast, fails the trial.
func replaced(p fsm.Plan, st fsm.NodeStep, obs fsm.Observed) string {
	if !p.Phase.Trial() || st.Node != p.PhaseNode() || st.TrialPid == 0 || obs.Pid == 0 {
		return ""
	}
	if len(st.TrialProcesses) > 0 {
		// match: all: every process the trial started with must still run.
		now := make(map[int]uint64, len(obs.Processes))
		for _, q := range obs.Processes {
			now[q.Pid] = q.PidStart
		}
		for _, q := range st.TrialProcesses {
			start, ok := now[q.Pid]
			switch {
			case !ok:
				return fmt.Sprintf("lost a process: pid %d exited (now pids %v)", q.Pid, observedPids(obs))
			case q.PidStart != 0 && start != 0 && start != q.PidStart:
				return fmt.Sprintf("was replaced: pid %d (started at tick %d) -> pid %d (started at tick %d)", q.Pid, q.PidStart, q.Pid, start)
			}
		}
		return ""
	}
	switch {
	case obs.Pid != st.TrialPid:
		return fmt.Sprintf("was replaced: pid %d -> pid %d", st.TrialPid, obs.Pid)
	case st.TrialPidStart != 0 && obs.PidStart != 0 && obs.PidStart != st.TrialPidStart:
		return fmt.Sprintf("was replaced: pid %d (started at tick %d) -> pid %d (started at tick %d)",
			st.TrialPid, st.TrialPidStart, obs.Pid, obs.PidStart)
	}
	return ""
}

// observedPids returns the pids of a match: all observation.
func observedPids(obs fsm.Observed) []int {
	pids := make([]int, len(obs.Processes))
	for i, q := range obs.Processes {
		pids[i] = q.Pid
	}
	return pids
}

// lost says why node n counts as lost for a plan ("" if it does not): dead,
// left, or suspect for longer than its SuspectBound. A shorter suspicion is
// not a failure: memberlist refutes false suspicions of a slow but live
// node, and a real loss turns into dead within the bound.
func lost(n fsm.Node, now time.Time) string {
	switch n.Status {
	case fsm.StatusAlive:
		return ""
	case fsm.StatusSuspect:
		d := now.Sub(n.SuspectSince)
		if d <= n.SuspectBound {
			return ""
		}
		return fmt.Sprintf("node %s is suspect in gossip for %v (bound %v)", n.Name, d.Round(time.Millisecond), n.SuspectBound)
	}
	return fmt.Sprintf("node %s is %s in gossip", n.Name, n.Status)
}

// keepPatchFailover reports whether the loss of plan node st does not fail
// the plan: with failover_during_trial: keep-patch, the unpatched active of
// the pair whose standby is being patched or tried may fail; the leader
// promotes the patched standby (see PairRoleStep) and the plan waits for
// the old active to return before it patches it.
func keepPatchFailover(p fsm.Plan, st fsm.NodeStep) bool {
	return p.Spec.FailoverDuringTrial == fsm.FailoverKeepPatch && p.InWave(st.Pair) &&
		p.Phase.Side() == fsm.SideStandby && st.Side == fsm.SideActive && st.Applied.IsZero()
}

// runningStep moves a running plan that has not failed. The current phase
// works on one pair, or on a wave of pairs together (max_parallel): every
// node of the phase is given the plan's stack, and the plan moves on once
// all of them run it, or once their common trial has passed.
func runningStep(s *fsm.State, p fsm.Plan, now time.Time, fail Trial) (fsm.Command, string) {
	nodes, pair, target := p.PhaseNodes(), p.CurrentPair(), p.Spec.Target
	who := strings.Join(nodes, " and ")
	if !p.Phase.Trial() {
		if cmds := WaveDesired(s, p); len(cmds) > 0 {
			return cmds[0], "apply on " + cmds[0].(*fsm.SetDesired).Node
		}
		for _, node := range nodes {
			if !s.NodeConverged(node, target) {
				return nil, "waiting for " + node + " to converge"
			}
		}
		trial := fsm.PhaseStandbyTrial
		if p.Phase == fsm.PhaseActiveApply {
			trial = fsm.PhaseActiveTrial
		}
		verb := " runs patch "
		if len(nodes) > 1 {
			verb = " run patch "
		}
		return &fsm.PlanPhase{Plan: p.ID, Pair: pair, Phase: trial, Cause: who + verb + p.Spec.PatchID}, "trial of " + who
	}
	if now.Before(p.PhaseDeadline) {
		return nil, "trial of " + who + " until " + stamp(p.PhaseDeadline)
	}
	if len(p.Spec.Health) > 0 {
		for _, node := range nodes {
			if at, ok := fail.PassedAt(node); ok && !at.Before(p.PhaseDeadline) {
				continue
			}
			// A trial with checks passes only when the node says every
			// check ran and none failed: a check that never produced a
			// result counts as failing.
			if by := p.PhaseDeadline.Add(TrialResultGrace(p)); now.After(by) {
				return failure(p, fmt.Sprintf("%s reported no passing result of its trial checks by %s (a check that never produced a result counts as failing)", node, stamp(by)))
			}
			return nil, "waiting for " + node + "'s trial check results"
		}
	}
	cause := fmt.Sprintf("%s passed the %v trial", who, p.Spec.Trial)
	if len(nodes) == 1 {
		cause = fmt.Sprintf("%s passed its %v trial", who, p.Spec.Trial)
	}
	if p.Phase == fsm.PhaseStandbyTrial {
		if why := waveNotReady(s, p, p.WavePairs()); why != "" {
			return nil, why
		}
		what := "patch the active of " + pair
		if len(nodes) > 1 {
			what = "patch the actives of " + strings.Join(p.WavePairs(), ", ")
		}
		return &fsm.PlanPhase{Plan: p.ID, Pair: pair, Phase: fsm.PhaseActiveApply, Cause: cause}, what
	}
	i := p.PairIndex + len(p.WavePairs())
	if i >= len(p.Spec.Pairs) {
		return &fsm.CompletePlan{Plan: p.ID, Cause: cause}, "complete"
	}
	wave := p.WaveAt(i)
	if why := waveNotReady(s, p, wave); why != "" {
		return nil, why
	}
	return &fsm.PlanPhase{Plan: p.ID, Pair: wave[0], Phase: fsm.PhaseStandbyApply, Cause: cause}, "start pair " + strings.Join(wave, ", ")
}

// WaveDesired returns, for a running plan in an apply phase, a SetDesired
// for every node of the phase whose desired stack is not the plan's yet, in
// phase order (nil otherwise). runningStep issues the first; NextSteps all.
func WaveDesired(s *fsm.State, p fsm.Plan) []fsm.Command {
	if p.State != fsm.PlanRunning || p.Phase.Trial() {
		return nil
	}
	var out []fsm.Command
	for _, node := range p.PhaseNodes() {
		want, _ := s.PlanStack(p.ID, node)
		if !slices.Equal(s.DesiredStack(node, p.Spec.Target), want) {
			out = append(out, &fsm.SetDesired{Node: node, Target: p.Spec.Target, Patches: want, Plan: p.ID,
				Cause: fmt.Sprintf("%s: patch %s", p.Phase, p.Spec.PatchID)})
		}
	}
	return out
}

// waveNotReady is pairNotReady for each pair of a wave: the first reason.
func waveNotReady(s *fsm.State, p fsm.Plan, wave []string) string {
	for _, pair := range wave {
		if why := pairNotReady(s, p, pair); why != "" {
			return why
		}
	}
	return ""
}

// RollbackStep restores the pre-plan stacks of the nodes the plan patched:
// every standby-side node first (and waits until the live ones run it),
// then the active side. The plan is rolled back only when every such node
// still registered runs its pre-plan stack (observed, not only desired): a node whose lpd is down
// keeps the plan rolling_back until it returns and reverts. Past the
// rollback deadline, the plan fails, naming the nodes that did not revert,
// whether they are down or alive and failing to revert; `lpctl rollback
// ID` tries again.
func RollbackStep(s *fsm.State, p fsm.Plan, now time.Time) (fsm.Command, string) {
	target := p.Spec.Target
	for _, side := range []fsm.Side{fsm.SideStandby, fsm.SideActive} {
		for _, st := range p.Steps {
			if st.Side != side || st.Applied.IsZero() {
				continue
			}
			if _, ok := s.Nodes[st.Node]; !ok {
				continue
			}
			pre := p.PreState[st.Node]
			if !slices.Equal(s.DesiredStack(st.Node, target), pre) {
				return &fsm.SetDesired{Node: st.Node, Target: target, Patches: pre, Plan: p.ID,
					Cause: "rollback: " + p.Reason}, "roll back " + st.Node
			}
		}
		for _, st := range p.Steps {
			if st.Side != side || st.Applied.IsZero() {
				continue
			}
			n, ok := s.Nodes[st.Node]
			if ok && n.Status == fsm.StatusAlive && !s.NodeConverged(st.Node, target) {
				if cmd, why := rollbackDeadline(s, p, now); cmd != nil {
					return cmd, why
				}
				return nil, "waiting for " + st.Node + " to roll back"
			}
		}
	}
	if len(RollbackPending(s, p)) == 0 {
		return &fsm.FinishRollback{Plan: p.ID, Cause: "every plan node runs its pre-plan patches"}, "finish rollback"
	}
	if cmd, why := rollbackDeadline(s, p, now); cmd != nil {
		return cmd, why
	}
	return nil, "waiting for " + strings.Join(pendingNames(s, p), ", ") + " to roll back"
}

// rollbackDeadline fails rolling-back plan p, naming the nodes that did
// not return to their pre-plan stack, once its rollback deadline passed
// (nil before).
func rollbackDeadline(s *fsm.State, p fsm.Plan, now time.Time) (fsm.Command, string) {
	if p.RollbackDeadline.IsZero() || !now.After(p.RollbackDeadline) {
		return nil, ""
	}
	return &fsm.FailPlan{Plan: p.ID, Reason: fmt.Sprintf("rollback deadline passed at %s: %s did not return to the pre-plan patches (lpctl rollback %s retries)",
		stamp(p.RollbackDeadline), strings.Join(pendingNames(s, p), ", "), p.ID)}, "rollback deadline"
}

// pendingNames describes RollbackPending's nodes for an operator.
func pendingNames(s *fsm.State, p fsm.Plan) []string {
	var names []string
	for _, n := range RollbackPending(s, p) {
		what := fmt.Sprintf("%s (%s, last seen %s)", n.Name, n.Status, stamp(LastSeen(n)))
		if n.Status == fsm.StatusAlive {
			what = fmt.Sprintf("%s (alive", n.Name)
			if obs, ok := s.Observed[n.Name][p.Spec.Target]; ok && obs.Error != "" {
				what += ": " + fsm.ClipLine(obs.Error, 200)
			}
			what += ")"
		}
		names = append(names, what)
	}
	return names
}

// LastSeen is when node n was last known alive: when it went down if it
// is down, else its last registration or return.
func LastSeen(n fsm.Node) time.Time {
	if n.Status != fsm.StatusAlive && !n.DownSince.IsZero() {
		return n.DownSince
	}
	return n.LastSeen
}

// RollbackPending returns the plan nodes still registered that the plan
// patched and that do not run their pre-plan stack (desired and observed),
// in plan order. A node the plan never patched is not its to restore.
func RollbackPending(s *fsm.State, p fsm.Plan) []fsm.Node {
	var out []fsm.Node
	for _, st := range p.Steps {
		n, ok := s.Nodes[st.Node]
		if !ok || st.Applied.IsZero() {
			continue
		}
		pre := p.PreState[st.Node]
		if !slices.Equal(s.DesiredStack(st.Node, p.Spec.Target), pre) || !s.NodeConverged(st.Node, p.Spec.Target) {
			out = append(out, n)
		}
	}
	return out
}
