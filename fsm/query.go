package fsm

import (
	"slices"
	"strings"
)

// Read helpers. None of them changes the state; slices they return are
// fresh copies unless said otherwise.

// Pairs returns the names of every pair that has a registered node, sorted.
func (s *State) Pairs() []string {
	var pairs []string
	for _, n := range s.Nodes {
		if n.Pair != "" && !slices.Contains(pairs, n.Pair) {
			pairs = append(pairs, n.Pair)
		}
	}
	slices.Sort(pairs)
	return pairs
}

// PairMembers returns the nodes of a pair, sorted by name.
func (s *State) PairMembers(pair string) []Node {
	members := s.pairMembers(pair)
	for i := range members {
		members[i] = members[i].clone()
	}
	return members
}

// PairRoles returns the active and the standby node of a pair ("" when the
// pair has none; the first by name if it has two).
func (s *State) PairRoles(pair string) (active, standby string) {
	for _, n := range s.pairMembers(pair) {
		switch {
		case n.Role == RoleActive && active == "":
			active = n.Name
		case n.Role == RoleStandby && standby == "":
			standby = n.Name
		}
	}
	return active, standby
}

// pairMembers returns the nodes of a pair sorted by name, sharing slices.
func (s *State) pairMembers(pair string) []Node {
	if pair == "" {
		return nil
	}
	var members []Node
	for _, n := range s.Nodes {
		if n.Pair == pair {
			members = append(members, n)
		}
	}
	slices.SortFunc(members, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return members
}

// plansByID returns every plan in submission order, sharing slices.
func (s *State) plansByID() []Plan {
	plans := make([]Plan, 0, len(s.Plans))
	for _, p := range s.Plans {
		plans = append(plans, p)
	}
	slices.SortFunc(plans, func(a, b Plan) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return plans
}

// PlanList returns every plan in submission order.
func (s *State) PlanList() []Plan {
	plans := s.plansByID()
	for i := range plans {
		plans[i] = plans[i].Clone()
	}
	return plans
}

// LatestPlan returns the most recently submitted plan.
func (s *State) LatestPlan() (Plan, bool) {
	plans := s.plansByID()
	if len(plans) == 0 {
		return Plan{}, false
	}
	return plans[len(plans)-1].Clone(), true
}

// UnfinishedPlan returns the plan on target that is pending, running,
// paused or rolling back; there is at most one.
func (s *State) UnfinishedPlan(target string) (Plan, bool) {
	for _, p := range s.plansByID() {
		if p.Spec.Target == target && !p.State.Terminal() {
			return p.Clone(), true
		}
	}
	return Plan{}, false
}

// step returns the index of node's step record, or -1.
func (p Plan) step(node string) int {
	for i, st := range p.Steps {
		if st.Node == node {
			return i
		}
	}
	return -1
}

// Step returns the step record of a plan node.
func (p Plan) Step(node string) (NodeStep, bool) {
	if i := p.step(node); i >= 0 {
		return p.Steps[i], true
	}
	return NodeStep{}, false
}

// CurrentPair returns the name of the pair the plan is working on (or last
// worked on), "" for a plan without pairs.
func (p Plan) CurrentPair() string {
	if p.PairIndex < 0 || p.PairIndex >= len(p.Spec.Pairs) {
		return ""
	}
	return p.Spec.Pairs[p.PairIndex]
}

// PhaseNode returns the node the current phase works on (the first of
// the wave's), "" before start.
func (p Plan) PhaseNode() string {
	if p.Phase == "" {
		return ""
	}
	return p.sideNode(p.CurrentPair(), p.Phase.Side())
}

// waveSize returns how many pairs are worked on together from pair index
// i: the first pair alone, then up to Spec.MaxParallel at a time.
func (p Plan) waveSize(i int) int {
	left := len(p.Spec.Pairs) - i
	if left <= 0 {
		return 0
	}
	if i == 0 || p.Spec.MaxParallel <= 1 {
		return 1
	}
	return min(p.Spec.MaxParallel, left)
}

// WaveAt returns the pairs worked on together from pair index i (i must
// start a wave: 0, then each wave's start plus its size).
func (p Plan) WaveAt(i int) []string {
	if i < 0 || i >= len(p.Spec.Pairs) {
		return nil
	}
	return p.Spec.Pairs[i : i+p.waveSize(i)]
}

// WavePairs returns the pairs the current phase works on: the current
// pair and those worked on with it; nil before start.
func (p Plan) WavePairs() []string {
	if p.Phase == "" {
		return nil
	}
	return p.WaveAt(p.PairIndex)
}

// InWave reports whether the current phase works on pair.
func (p Plan) InWave(pair string) bool { return slices.Contains(p.WavePairs(), pair) }

// PhaseNodes returns the nodes the current phase works on, one per pair
// of the wave, in rollout order; nil before start.
func (p Plan) PhaseNodes() []string {
	var out []string
	for _, pair := range p.WavePairs() {
		if n := p.sideNode(pair, p.Phase.Side()); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// PhaseString names the current phase: "PAIR/PHASE", or
// "PAIR+PAIR/PHASE" for a wave; "" before start.
func (p Plan) PhaseString() string {
	if p.Phase == "" {
		return ""
	}
	return strings.Join(p.WavePairs(), "+") + "/" + string(p.Phase)
}

func (p Plan) sideNode(pair string, side Side) string {
	for _, st := range p.Steps {
		if st.Pair == pair && st.Side == side {
			return st.Node
		}
	}
	return ""
}

// PlanNodes returns the plan's nodes pair by pair in rollout order: the
// standby and the active of each pair (as fixed when the pair started, or
// at submission for pairs not started yet). Nil for an unknown plan.
func (s *State) PlanNodes(id string) (standby, active []string) {
	p, ok := s.Plans[id]
	if !ok {
		return nil, nil
	}
	for _, pair := range p.Spec.Pairs {
		standby = append(standby, p.sideNode(pair, SideStandby))
		active = append(active, p.sideNode(pair, SideActive))
	}
	return standby, active
}

// PlanStack returns the desired stack a plan's apply step gives node: its
// pre-plan stack plus the plan's patch (unless already in it). False when
// the plan or the node in it is unknown.
func (s *State) PlanStack(planID, node string) ([]PatchRef, bool) {
	p, ok := s.Plans[planID]
	if !ok || p.step(node) < 0 {
		return nil, false
	}
	return p.stack(node), true
}

func (p Plan) stack(node string) []PatchRef {
	pre := p.PreState[node]
	for _, r := range pre {
		if r.PatchID == p.Spec.PatchID {
			return slices.Clone(pre)
		}
	}
	out := make([]PatchRef, 0, len(pre)+1)
	out = append(out, pre...)
	return append(out, PatchRef{PatchID: p.Spec.PatchID, SHA256: p.Spec.PatchSHA256, Plan: p.ID})
}

// PreStack returns node's pre-plan stack in a plan.
func (s *State) PreStack(planID, node string) ([]PatchRef, bool) {
	p, ok := s.Plans[planID]
	if !ok || p.step(node) < 0 {
		return nil, false
	}
	return slices.Clone(p.PreState[node]), true
}

// DesiredStack returns the desired stack of node and target (nil: none).
func (s *State) DesiredStack(node, target string) []PatchRef {
	return slices.Clone(s.Desired[node][target])
}

// PatchIDs returns the patch ids of a stack, in order.
func PatchIDs(stack []PatchRef) []string {
	var ids []string
	for _, r := range stack {
		ids = append(ids, r.PatchID)
	}
	return ids
}

// NodeConverged reports whether node's observed active patches for target
// equal its desired stack (same ids, same order). A node with nothing
// desired and nothing observed has converged.
func (s *State) NodeConverged(node, target string) bool {
	return slices.Equal(PatchIDs(s.Desired[node][target]), s.Observed[node][target].Active)
}

// Converged reports whether every node of the plan that is still
// registered has converged on its desired stack for the plan's target.
func (s *State) Converged(planID string) bool {
	p, ok := s.Plans[planID]
	if !ok {
		return false
	}
	for _, st := range p.Steps {
		if _, ok := s.Nodes[st.Node]; !ok {
			continue
		}
		if !s.NodeConverged(st.Node, p.Spec.Target) {
			return false
		}
	}
	return true
}

// PlanHistory returns the events of one plan, oldest first.
func (s *State) PlanHistory(id string) []Event {
	var out []Event
	for _, e := range s.History {
		if e.Plan == id {
			out = append(out, e)
		}
	}
	return out
}

// NodeHistory returns the events of one node, oldest first.
func (s *State) NodeHistory(node string) []Event {
	var out []Event
	for _, e := range s.History {
		if e.Node == node {
			out = append(out, e)
		}
	}
	return out
}

// HistorySince returns the events with Seq greater than seq.
func (s *State) HistorySince(seq uint64) []Event {
	i, _ := slices.BinarySearchFunc(s.History, seq+1, func(e Event, t uint64) int {
		switch {
		case e.Seq < t:
			return -1
		case e.Seq > t:
			return 1
		}
		return 0
	})
	return slices.Clone(s.History[i:])
}

func equalStacks(a, b []PatchRef) bool { return slices.Equal(a, b) }

func stackString(target string, stack []PatchRef) string {
	return target + "=" + strings.Join(PatchIDs(stack), ",")
}

// UntriedPatch returns a patch in node's desired stack for target that a
// plan other than except added and that never passed a trial in pair: no
// plan on target passed a trial on a member of pair with the patch in its
// plan stack. An aborted plan, a failed rollback or a keep-patch failover
// can leave one. A plan that patched the pair's other member then would
// have both members run untried code at once. Patches no plan added (Plan
// "") are the operator's own and not reported.
func (s *State) UntriedPatch(pair, node, target, except string) (PatchRef, bool) {
	for _, ref := range s.Desired[node][target] {
		if ref.Plan == "" || ref.Plan == except || s.triedInPair(pair, target, ref.PatchID) {
			continue
		}
		return ref, true
	}
	return PatchRef{}, false
}

// triedInPair reports whether patch id passed a trial on a member of pair:
// it was in the plan stack of a node of pair whose trial passed.
func (s *State) triedInPair(pair, target, id string) bool {
	for _, q := range s.Plans {
		if q.Spec.Target != target {
			continue
		}
		for _, st := range q.Steps {
			if st.Pair != pair || st.TrialPassed.IsZero() {
				continue
			}
			if q.Spec.PatchID == id || slices.ContainsFunc(q.PreState[st.Node], func(r PatchRef) bool { return r.PatchID == id }) {
				return true
			}
		}
	}
	return false
}
