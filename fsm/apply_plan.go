package fsm

import (
	"slices"
	"strings"
	"time"
)

func (c *SubmitPlan) apply(x *applyCtx) error {
	s := x.s
	spec := c.Spec
	spec.Pairs = slices.Clone(spec.Pairs)
	spec.Health = slices.Clone(spec.Health)
	blob, ok := s.Blobs[spec.PatchSHA256]
	if m := c.Module; m != nil {
		switch {
		case ok && blob.PatchID != m.PatchID:
			return refuse(ErrConflict, "module %s is stored as patch %s, not %s", m.SHA256, blob.PatchID, m.PatchID)
		case ok && blob.Size != m.Size:
			return refuse(ErrConflict, "module %s is stored with size %d, not %d", m.SHA256, blob.Size, m.Size)
		case !ok:
			blob = Blob{SHA256: m.SHA256, Size: m.Size, PatchID: m.PatchID}
		}
	} else if !ok {
		return refuse(ErrNotFound, "patch module %s is not stored (send the module before the plan)", spec.PatchSHA256)
	}
	if spec.PatchID == "" {
		spec.PatchID = blob.PatchID
	} else if spec.PatchID != blob.PatchID {
		return refuse(ErrInvalid, "plan names patch %s; the module is patch %s", spec.PatchID, blob.PatchID)
	}
	if spec.OnFailure == "" {
		spec.OnFailure = OnFailureRollback
	}
	if spec.FailoverDuringTrial == "" {
		spec.FailoverDuringTrial = FailoverRollbackFirst
	}
	if len(spec.Pairs) == 0 {
		spec.Pairs = s.Pairs()
	}
	if len(spec.Pairs) == 0 {
		return refuse(ErrConflict, "plan has no pairs: no pair node is registered")
	}
	var steps []NodeStep
	for _, pair := range spec.Pairs {
		members := s.pairMembers(pair)
		if len(members) == 0 {
			return refuse(ErrNotFound, "pair %s has no registered node (known pairs: %s)", pair, strings.Join(s.Pairs(), ", "))
		}
		active, standby := s.PairRoles(pair)
		if active == "" || standby == "" {
			missing := RoleActive
			if active != "" {
				missing = RoleStandby
			}
			return refuse(ErrConflict, "pair %s has no %s node registered; a plan needs an active and a standby in each pair", pair, missing)
		}
		for _, n := range members {
			if !slices.Contains(n.Targets, spec.Target) {
				return refuse(ErrConflict, "node %s has no target %s (its targets: %s)", n.Name, spec.Target, orNone(n.Targets))
			}
			for _, h := range spec.Health {
				if h.Process != "" && !slices.Contains(n.Targets, h.Process) {
					return refuse(ErrInvalid, "health check %s: process %s is not a target of node %s (its targets: %s)", h.Name, h.Process, n.Name, orNone(n.Targets))
				}
			}
		}
		steps = append(steps,
			NodeStep{Node: standby, Pair: pair, Side: SideStandby},
			NodeStep{Node: active, Pair: pair, Side: SideActive})
	}
	if p, ok := s.UnfinishedPlan(spec.Target); ok {
		return refuse(ErrConflict, "plan %s (%s) already works on target %s; wait for it, or abort or roll it back", p.ID, p.State, spec.Target)
	}
	for _, pair := range spec.Pairs {
		for _, n := range s.pairMembers(pair) {
			if ref, ok := s.UntriedPatch(pair, n.Name, spec.Target, ""); ok {
				return refuse(ErrConflict, "%s runs patch %s of plan %s, which never passed a trial in pair %s: roll back plan %s first",
					n.Name, ref.PatchID, ref.Plan, pair, ref.Plan)
			}
		}
	}
	if spec.ProgressDeadline > 0 {
		waves := 0
		for i := 0; i < len(spec.Pairs); i += (Plan{Spec: spec}).waveSize(i) {
			waves++
		}
		trials := time.Duration(2*waves) * spec.Trial
		if spec.ProgressDeadline < trials {
			unit := "pairs"
			if waves != len(spec.Pairs) {
				unit = "waves of pairs"
			}
			return refuse(ErrInvalid, "progress_deadline %v is shorter than the trials alone (%d %s x 2 x %v = %v)",
				spec.ProgressDeadline, waves, unit, spec.Trial, trials)
		}
	}
	// Every check passed: record the module, create the plan.
	if c.Module != nil {
		x.storeModule(*c.Module)
	}
	spec.SubmittedAt = x.at
	seq := s.PlanSeq + 1
	p := Plan{
		ID: PlanID(seq), Seq: seq, Spec: spec, State: PlanPending,
		PreState: map[string][]PatchRef{}, Steps: steps, Updated: x.at,
	}
	if spec.ProgressDeadline > 0 {
		p.PlanDeadline = x.at.Add(spec.ProgressDeadline)
	}
	for _, st := range steps {
		p.PreState[st.Node] = slices.Clone(s.Desired[st.Node][spec.Target])
	}
	s.PlanSeq = seq
	s.Plans[p.ID] = p
	cause := "submitted"
	if spec.SubmittedBy != "" {
		cause = "submitted by " + spec.SubmittedBy
	}
	x.record(Event{Plan: p.ID, Kind: EventPlanState, To: string(PlanPending), Cause: cause})
	x.res.PlanID = p.ID
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// plan returns the plan or a not-found refusal.
func (x *applyCtx) plan(id string) (Plan, error) {
	p, ok := x.s.Plans[id]
	if !ok {
		return Plan{}, refuse(ErrNotFound, "plan %s does not exist", id)
	}
	return p.Clone(), nil
}

// setState moves p to state to and records it; the caller stores p.
func (x *applyCtx) setState(p *Plan, to PlanState, cause string) {
	from := p.State
	p.State, p.Updated = to, x.at
	x.record(Event{Plan: p.ID, Pair: p.CurrentPair(), Kind: EventPlanState, From: string(from), To: string(to), Cause: cause})
}

func phaseString(pair string, ph Phase) string {
	if ph == "" {
		return ""
	}
	return pair + "/" + string(ph)
}

// next returns the phase after the current one: ok false when the plan is
// at the last pair's active trial.
func (p Plan) next() (pairIndex int, ph Phase, ok bool) {
	if p.State == PlanPending || p.Phase == "" {
		return 0, PhaseStandbyApply, len(p.Spec.Pairs) > 0
	}
	if i := p.Phase.index(); i < len(Phases())-1 {
		return p.PairIndex, Phases()[i+1], true
	}
	if i := p.PairIndex + p.waveSize(p.PairIndex); i < len(p.Spec.Pairs) {
		return i, PhaseStandbyApply, true
	}
	return 0, "", false
}

// checkLeave checks that the current phase of a running plan may end.
func (x *applyCtx) checkLeave(p *Plan) error {
	if p.State != PlanRunning {
		return nil
	}
	pair := p.CurrentPair()
	if p.Phase.Trial() {
		if x.at.Before(p.PhaseDeadline) {
			return refuse(ErrConflict, "plan %s: the %s of pair %s ends at %s, not before", p.ID, p.Phase, pair, p.PhaseDeadline.Format(time.RFC3339Nano))
		}
		return nil
	}
	for _, node := range p.PhaseNodes() {
		want := p.stack(node)
		desired := x.s.Desired[node][p.Spec.Target]
		if !equalStacks(desired, want) {
			return refuse(ErrConflict, "plan %s: node %s has not been given the plan's stack for %s yet (desired %s; want %s)",
				p.ID, node, p.Spec.Target, orNone(PatchIDs(desired)), orNone(PatchIDs(want)))
		}
		if !x.s.NodeConverged(node, p.Spec.Target) {
			return refuse(ErrConflict, "plan %s: node %s has not converged on %s (desired %s; observed %s)",
				p.ID, node, p.Spec.Target, orNone(PatchIDs(desired)), orNone(x.s.Observed[node][p.Spec.Target].Active))
		}
	}
	return nil
}

// checkPairReady checks that both members of a pair are alive and healthy.
func (x *applyCtx) checkPairReady(p *Plan, pair string) error {
	for _, st := range p.Steps {
		if st.Pair != pair {
			continue
		}
		n, ok := x.s.Nodes[st.Node]
		if !ok {
			return refuse(ErrNotFound, "plan %s: node %s of pair %s is not registered", p.ID, st.Node, pair)
		}
		if n.Status != StatusAlive {
			return refuse(ErrConflict, "plan %s: node %s of pair %s is %s; both members must be alive and healthy", p.ID, n.Name, pair, n.Status)
		}
		if !n.Healthy {
			return refuse(ErrConflict, "plan %s: node %s of pair %s is %s; both members must be alive and healthy", p.ID, n.Name, pair, n.health())
		}
	}
	return nil
}

func (c *PlanPhase) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	if p.State != PlanPending && p.State != PlanRunning {
		hint := ""
		if p.State == PlanPaused {
			hint = "; resume it first"
		}
		return refuse(ErrConflict, "plan %s is %s%s", p.ID, p.State, hint)
	}
	pairIndex := slices.Index(p.Spec.Pairs, c.Pair)
	if pairIndex < 0 {
		return refuse(ErrNotFound, "pair %s is not in plan %s (pairs: %s)", c.Pair, p.ID, strings.Join(p.Spec.Pairs, ", "))
	}
	if p.State == PlanRunning && pairIndex == p.PairIndex && c.Phase == p.Phase {
		x.noop("plan %s is already at %s", p.ID, p.PhaseString())
		return nil
	}
	prev := p.PhaseString()
	cur := prev
	if cur == "" {
		cur = "the start"
	}
	ni, nph, ok := p.next()
	if !ok {
		return refuse(ErrConflict, "plan %s is at %s, its last phase; complete it", p.ID, cur)
	}
	if ni != pairIndex || nph != c.Phase {
		return refuse(ErrConflict, "plan %s is at %s; its next phase is %s, not %s", p.ID, cur, phaseString(p.Spec.Pairs[ni], nph), phaseString(c.Pair, c.Phase))
	}
	if c.Phase.Trial() && !c.Deadline.IsZero() {
		return refuse(ErrInvalid, "plan %s: a trial's deadline is the command time plus the plan's trial; leave deadline zero", p.ID)
	}
	if !c.Deadline.IsZero() && c.Deadline.Before(x.at) {
		return refuse(ErrInvalid, "plan %s: deadline %s is before the command time", p.ID, c.Deadline.Format(time.RFC3339Nano))
	}
	if !p.PlanDeadline.IsZero() && x.at.After(p.PlanDeadline) {
		return refuse(ErrConflict, "plan %s passed its progress deadline at %s; roll it back or fail it", p.ID, p.PlanDeadline.Format(time.RFC3339Nano))
	}
	if err := x.checkLeave(&p); err != nil {
		return err
	}
	wave := p.WaveAt(pairIndex)
	switch c.Phase {
	case PhaseStandbyApply:
		for _, pair := range wave {
			// The sides of a pair are fixed when it starts, from the roles then.
			active, standby := x.s.PairRoles(pair)
			var planNodes []string
			for _, st := range p.Steps {
				if st.Pair == pair {
					planNodes = append(planNodes, st.Node)
				}
			}
			if active == "" || standby == "" || !slices.Contains(planNodes, active) || !slices.Contains(planNodes, standby) {
				return refuse(ErrConflict, "plan %s: pair %s does not have one active and one standby among %s", p.ID, pair, strings.Join(planNodes, ", "))
			}
			if err := x.checkPairReady(&p, pair); err != nil {
				return err
			}
			for i := range p.Steps {
				switch p.Steps[i].Node {
				case active:
					p.Steps[i].Side = SideActive
				case standby:
					p.Steps[i].Side = SideStandby
				}
			}
		}
	case PhaseActiveApply:
		for _, pair := range wave {
			if err := x.checkPairReady(&p, pair); err != nil {
				return err
			}
		}
	}
	// Every check passed: move on.
	if p.State == PlanRunning && p.Phase.Trial() {
		x.trialsPassed(&p)
	}
	if p.State == PlanPending {
		x.setState(&p, PlanRunning, c.Cause)
	}
	p.PairIndex, p.Phase = pairIndex, c.Phase
	p.PhaseStarted, p.Updated = x.at, x.at
	switch {
	case c.Phase.Trial():
		p.PhaseDeadline = x.at.Add(p.Spec.Trial)
		x.trialsStarted(&p)
	case !c.Deadline.IsZero():
		p.PhaseDeadline = c.Deadline
	default:
		p.PhaseDeadline = p.PlanDeadline
	}
	x.s.Plans[p.ID] = p
	x.record(Event{Plan: p.ID, Pair: c.Pair, Node: p.PhaseNode(), Kind: EventPlanPhase,
		From: prev, To: p.PhaseString(), Cause: c.Cause})
	return nil
}

// trialsStarted marks the trial of every node of the current phase
// started, with the process it watches.
func (x *applyCtx) trialsStarted(p *Plan) {
	for _, n := range p.PhaseNodes() {
		if i := p.step(n); i >= 0 {
			p.Steps[i].TrialStarted = x.at
			obs := x.s.Observed[n][p.Spec.Target]
			p.Steps[i].TrialPid, p.Steps[i].TrialPidStart = obs.Pid, obs.PidStart
			p.Steps[i].TrialProcesses = nil
			for _, q := range obs.Processes {
				p.Steps[i].TrialProcesses = append(p.Steps[i].TrialProcesses, ProcessRef{Pid: q.Pid, PidStart: q.PidStart})
			}
		}
	}
}

// trialsPassed marks the trial of every node of the current phase passed.
func (x *applyCtx) trialsPassed(p *Plan) {
	for _, n := range p.PhaseNodes() {
		if i := p.step(n); i >= 0 {
			p.Steps[i].TrialPassed = x.at
		}
	}
}

func (c *CompletePlan) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	if p.State == PlanCompleted {
		x.noop("plan %s is already completed", p.ID)
		return nil
	}
	if p.State != PlanRunning {
		return refuse(ErrConflict, "plan %s is %s; only a running plan completes", p.ID, p.State)
	}
	if _, _, more := p.next(); more || p.Phase != PhaseActiveTrial {
		return refuse(ErrConflict, "plan %s is at %s; it completes after the active trial of its last pair", p.ID, p.PhaseString())
	}
	if err := x.checkLeave(&p); err != nil {
		return err
	}
	x.trialsPassed(&p)
	x.setState(&p, PlanCompleted, c.Cause)
	x.s.Plans[p.ID] = p
	return nil
}

func (c *PausePlan) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	switch p.State {
	case PlanPaused:
		x.noop("plan %s is already paused", p.ID)
		return nil
	case PlanPending, PlanRunning:
	default:
		return refuse(ErrConflict, "plan %s is %s; only a pending or running plan pauses", p.ID, p.State)
	}
	p.PausedAt, p.Reason = x.at, clip(c.Reason, maxText)
	x.setState(&p, PlanPaused, c.Reason)
	x.s.Plans[p.ID] = p
	return nil
}

func (c *ResumePlan) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	switch p.State {
	case PlanRunning, PlanPending:
		x.noop("plan %s is %s, not paused", p.ID, p.State)
		return nil
	case PlanPaused:
	default:
		return refuse(ErrConflict, "plan %s is %s; only a paused plan resumes", p.ID, p.State)
	}
	paused := x.at.Sub(p.PausedAt)
	if paused < 0 {
		paused = 0
	}
	if !p.PlanDeadline.IsZero() {
		p.PlanDeadline = p.PlanDeadline.Add(paused)
	}
	to := PlanRunning
	switch {
	case p.Phase == "":
		to = PlanPending
	case p.Phase.Trial():
		// A trial interrupted by a pause starts again.
		p.PhaseStarted, p.PhaseDeadline = x.at, x.at.Add(p.Spec.Trial)
		x.trialsStarted(&p)
	case !p.PhaseDeadline.IsZero():
		p.PhaseDeadline = p.PhaseDeadline.Add(paused)
	}
	p.Reason = ""
	x.setState(&p, to, c.Cause)
	x.s.Plans[p.ID] = p
	return nil
}

func (c *AbortPlan) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	switch p.State {
	case PlanAborted:
		x.noop("plan %s is already aborted", p.ID)
		return nil
	case PlanPending, PlanRunning, PlanPaused:
	case PlanRollingBack:
		return refuse(ErrConflict, "plan %s is rolling back; let it finish (or fail it)", p.ID)
	default:
		return refuse(ErrConflict, "plan %s is %s; roll it back to undo it", p.ID, p.State)
	}
	p.Reason = clip(c.Reason, maxText)
	x.setState(&p, PlanAborted, c.Reason)
	x.s.Plans[p.ID] = p
	return nil
}

func (c *FailPlan) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	switch p.State {
	case PlanFailed:
		x.noop("plan %s has already failed", p.ID)
		return nil
	case PlanPending, PlanRunning, PlanPaused, PlanRollingBack:
	default:
		return refuse(ErrConflict, "plan %s is %s; only an unfinished plan can fail", p.ID, p.State)
	}
	p.Reason = clip(c.Reason, maxText)
	x.setState(&p, PlanFailed, c.Reason)
	x.s.Plans[p.ID] = p
	return nil
}

func (c *RollbackPlan) apply(x *applyCtx) error {
	s := x.s
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	switch p.State {
	case PlanRolledBack:
		x.noop("plan %s is already rolled back", p.ID)
		return nil
	case PlanRollingBack:
		x.noop("plan %s is already rolling back", p.ID)
		return nil
	}
	for _, q := range s.plansByID() {
		if q.Seq <= p.Seq || q.Spec.Target != p.Spec.Target || q.State == PlanRolledBack {
			continue
		}
		applied := slices.ContainsFunc(q.Steps, func(st NodeStep) bool { return !st.Applied.IsZero() })
		if !q.State.Terminal() || applied {
			return refuse(ErrConflict, "plan %s on target %s came after plan %s and is %s; roll it back first", q.ID, q.Spec.Target, p.ID, q.State)
		}
	}
	// Every check passed.
	p.Reason = clip(c.Reason, maxText)
	p.RollbackStarted, p.RollbackDeadline = x.at, time.Time{}
	if p.Spec.ProgressDeadline > 0 {
		p.RollbackDeadline = x.at.Add(p.Spec.ProgressDeadline)
	}
	x.setState(&p, PlanRollingBack, c.Reason)
	if !c.Staged {
		cause := "rollback"
		if c.Reason != "" {
			cause += ": " + c.Reason
		}
		for i, st := range p.Steps { // pair by pair, standby first
			if _, ok := s.Nodes[st.Node]; !ok || st.Applied.IsZero() {
				// Removed after the plan finished, or never patched by
				// it: nothing of the plan's to restore (its pre-plan
				// stack may be stale: an earlier plan may have rolled
				// back since).
				continue
			}
			x.setDesired(st.Node, p.Spec.Target, p.PreState[st.Node], p.ID, cause)
			p.Steps[i].RolledBack = x.at
		}
	}
	s.Plans[p.ID] = p
	return nil
}

func (c *FinishRollback) apply(x *applyCtx) error {
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	switch p.State {
	case PlanRolledBack:
		x.noop("plan %s is already rolled back", p.ID)
		return nil
	case PlanRollingBack:
	default:
		return refuse(ErrConflict, "plan %s is %s, not rolling back", p.ID, p.State)
	}
	for _, st := range p.Steps {
		if _, ok := x.s.Nodes[st.Node]; !ok || st.Applied.IsZero() {
			continue
		}
		desired := x.s.Desired[st.Node][p.Spec.Target]
		if !equalStacks(desired, p.PreState[st.Node]) {
			return refuse(ErrConflict, "plan %s: node %s still has %s desired for %s; its pre-plan stack is %s",
				p.ID, st.Node, orNone(PatchIDs(desired)), p.Spec.Target, orNone(PatchIDs(p.PreState[st.Node])))
		}
	}
	x.setState(&p, PlanRolledBack, c.Cause)
	x.s.Plans[p.ID] = p
	return nil
}

func (c *SetDesired) apply(x *applyCtx) error {
	s := x.s
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	for _, r := range c.Patches {
		b, ok := s.Blobs[r.SHA256]
		if !ok {
			return refuse(ErrNotFound, "patch %s (%s) is not stored", r.PatchID, r.SHA256)
		}
		if b.PatchID != r.PatchID {
			return refuse(ErrInvalid, "module %s is patch %s, not %s", r.SHA256, b.PatchID, r.PatchID)
		}
	}
	if c.Plan == "" {
		if p, ok := s.UnfinishedPlan(c.Target); ok && p.step(c.Node) >= 0 {
			return refuse(ErrConflict, "node %s target %s is part of plan %s (%s); change it through the plan", c.Node, c.Target, p.ID, p.State)
		}
		if !x.setDesired(c.Node, c.Target, c.Patches, "", c.Cause) {
			x.noop("node %s already has %s desired", c.Node, stackString(c.Target, c.Patches))
		}
		return nil
	}
	p, err := x.plan(c.Plan)
	if err != nil {
		return err
	}
	i := p.step(c.Node)
	if i < 0 {
		return refuse(ErrConflict, "node %s (pair %s) is not part of plan %s", c.Node, pairName(n.Pair), p.ID)
	}
	if c.Target != p.Spec.Target {
		return refuse(ErrConflict, "plan %s patches target %s, not %s", p.ID, p.Spec.Target, c.Target)
	}
	st := p.Steps[i]
	var want []PatchRef
	switch p.State {
	case PlanRunning:
		if p.Phase.Trial() || !p.InWave(st.Pair) || p.Phase.Side() != st.Side {
			return refuse(ErrConflict, "plan %s is at %s; node %s (%s of pair %s) is patched only in its %s_apply phase",
				p.ID, p.PhaseString(), c.Node, st.Side, st.Pair, st.Side)
		}
		want = p.stack(c.Node)
	case PlanRollingBack:
		want = p.PreState[c.Node]
	default:
		return refuse(ErrConflict, "plan %s is %s; it changes desired state only while running or rolling back", p.ID, p.State)
	}
	if !equalStacks(c.Patches, want) {
		return refuse(ErrConflict, "plan %s gives node %s %s, not %s", p.ID, c.Node, stackString(c.Target, want), stackString(c.Target, c.Patches))
	}
	changed := x.setDesired(c.Node, c.Target, want, p.ID, c.Cause)
	switch {
	case p.State == PlanRunning && st.Applied.IsZero():
		p.Steps[i].Applied = x.at
	case p.State == PlanRollingBack && st.RolledBack.IsZero():
		p.Steps[i].RolledBack = x.at
	default:
		if !changed {
			x.noop("node %s already has %s desired", c.Node, stackString(c.Target, want))
			return nil
		}
	}
	p.Updated = x.at
	s.Plans[p.ID] = p
	return nil
}

// setDesired stores a desired stack (deleting empty entries) and records the
// change; it reports whether anything changed.
func (x *applyCtx) setDesired(node, target string, stack []PatchRef, plan, cause string) bool {
	s := x.s
	old := s.Desired[node][target]
	if equalStacks(old, stack) {
		return false
	}
	if len(stack) == 0 {
		delete(s.Desired[node], target)
		if len(s.Desired[node]) == 0 {
			delete(s.Desired, node)
		}
	} else {
		if s.Desired[node] == nil {
			s.Desired[node] = map[string][]PatchRef{}
		}
		s.Desired[node][target] = slices.Clone(stack)
	}
	x.record(Event{Plan: plan, Node: node, Pair: s.Nodes[node].Pair, Kind: EventDesired,
		From: stackString(target, old), To: stackString(target, stack), Cause: cause})
	return true
}
