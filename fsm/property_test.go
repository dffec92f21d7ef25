package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPlanInvariants applies random command sequences — most of them
// plausible (the next phase, the plan stack, an observation that matches),
// many of them not — and checks the invariants of the plan state machine
// after every command and over every history: whatever it is sent, the FSM
// refuses what would break them. The deciders that send the FSM its
// commands in a cluster are verified with it in package decide
// (TestDeciders drives the real deciders and this FSM through random
// schedules). LP_FSM_SEQUENCES=N runs N sequences (default 300; 2000 is
// the long run).
func TestPlanInvariants(t *testing.T) {
	sequences, steps := 300, 60
	if testing.Short() {
		sequences = 100
	}
	if v := os.Getenv("LP_FSM_SEQUENCES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("LP_FSM_SEQUENCES=%q: want a positive number", v)
		}
		sequences = n
	}
	stats := map[string]int{}
	for seed := uint64(1); seed <= uint64(sequences); seed++ {
		runSequence(t, seed, steps, stats)
		if t.Failed() {
			return
		}
	}
	t.Logf("outcomes over %d sequences: %v", sequences, stats)
	// The generator must reach the interesting states, or the invariants
	// were checked over nothing.
	for _, k := range []string{"rolled_back", "aborted", "failed", "paused", "refused", "standby_trial", "active_apply", "staged"} {
		if stats[k] == 0 {
			t.Errorf("no sequence reached %s; the generator is too weak", k)
		}
	}
}

func runSequence(t *testing.T, seed uint64, steps int, stats map[string]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x1f5))
	h := newCluster(t)
	g := &generator{rng: rng, h: h}
	before := h.f.State()
	for i := 0; i < steps; i++ {
		if rng.IntN(4) == 0 {
			h.advance([]time.Duration{time.Second, 10 * time.Second, trial, 2 * trial, 5 * time.Minute}[rng.IntN(5)])
		}
		cmd := g.next(before)
		res := h.apply(cmd)
		after := h.f.State()
		where := fmt.Sprintf("seed %d step %d %s %+v", seed, i, cmd.CommandType(), cmd)
		if err := checkStep(before, after, cmd, res, h.now); err != nil {
			t.Fatalf("%s: %v (result %+v)", where, err, res)
		}
		if res.Err != "" {
			stats["refused"]++
		}
		if rb, ok := cmd.(*RollbackPlan); ok && rb.Staged && res.Err == "" && !res.Noop {
			stats["staged"]++
		}
		before = after
	}
	s := h.f.State()
	if err := checkHistory(s); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	for _, p := range s.Plans {
		stats[string(p.State)]++
		for _, e := range s.PlanHistory(p.ID) {
			for _, ph := range []string{"standby_trial", "active_apply"} {
				if strings.HasSuffix(e.To, "/"+ph) {
					stats[ph]++
				}
			}
		}
	}
	// Snapshot -> Restore gives the same state; the same log gives the
	// same state.
	snap := h.snapshot()
	restored := New()
	if err := restored.Restore(readCloser(snap)); err != nil {
		t.Fatalf("seed %d: Restore = %v", seed, err)
	}
	equalState(t, restored.State(), s)
	replay := New()
	for _, l := range h.log {
		replay.Apply(l)
	}
	if got := snapshotBytes(t, replay); !bytes.Equal(got, snap) {
		t.Fatalf("seed %d: replaying the log gave a different state", seed)
	}
}

// checkStep checks the invariants that must hold after every command.
func checkStep(before, after *State, cmd Command, res *Result, now time.Time) error {
	if res.Code == CodeInternal {
		return fmt.Errorf("internal error: %s", res.Err)
	}
	if (res.Err != "" || res.Noop) && !reflect.DeepEqual(before, after) {
		return fmt.Errorf("a refused or no-op command changed the state")
	}
	// History is append-only, Seq increases by one, new events carry the
	// command time.
	if len(after.History) < len(before.History) || !reflect.DeepEqual(before.History, after.History[:len(before.History)]) {
		return fmt.Errorf("history was rewritten")
	}
	for i, e := range after.History {
		if e.Seq != uint64(i+1) {
			return fmt.Errorf("event %d has seq %d; want %d", i, e.Seq, i+1)
		}
		if i >= len(before.History) && !e.Time.Equal(now) {
			return fmt.Errorf("new event %+v has time %v; want the command time %v", e, e.Time, now)
		}
	}
	unfinished := map[string]string{}
	for id, p := range after.Plans {
		if !slices.Contains(PlanStates(), p.State) {
			return fmt.Errorf("plan %s has state %q", id, p.State)
		}
		if p.Phase != "" && !slices.Contains(Phases(), p.Phase) {
			return fmt.Errorf("plan %s has phase %q", id, p.Phase)
		}
		if p.State == PlanPending && p.Phase != "" || p.State == PlanRunning && p.Phase == "" {
			return fmt.Errorf("plan %s is %s in phase %q", id, p.State, p.Phase)
		}
		if !p.State.Terminal() {
			if other, ok := unfinished[p.Spec.Target]; ok {
				return fmt.Errorf("plans %s and %s are both unfinished on target %s", other, id, p.Spec.Target)
			}
			unfinished[p.Spec.Target] = id
		}
		// The active of a pair is patched only after its standby passed a
		// whole trial.
		for _, pair := range p.Spec.Pairs {
			sb, ac := p.sideStep(pair, SideStandby), p.sideStep(pair, SideActive)
			if ac.Applied.IsZero() {
				continue
			}
			if sb.TrialPassed.IsZero() || ac.Applied.Before(sb.TrialPassed) || sb.TrialPassed.Before(sb.TrialStarted.Add(p.Spec.Trial)) {
				return fmt.Errorf("plan %s: active %s applied at %v; standby %s trial %v..%v", id, ac.Node, ac.Applied, sb.Node, sb.TrialStarted, sb.TrialPassed)
			}
		}
	}
	for _, pair := range after.Pairs() {
		actives := 0
		for _, n := range after.pairMembers(pair) {
			if n.Role == RoleActive {
				actives++
			}
		}
		if actives > 1 {
			return fmt.Errorf("pair %s has %d active nodes", pair, actives)
		}
	}
	for _, e := range after.History[len(before.History):] {
		p := after.Plans[e.Plan]
		switch {
		case e.Kind == EventDesired && e.Plan != "" && p.State == PlanRunning:
			// A plan changes a node's desired state only in that node's
			// apply phase.
			st, _ := p.Step(e.Node)
			if p.CurrentPair() != st.Pair || p.Phase != Phase(string(st.Side)+"_apply") {
				return fmt.Errorf("plan %s changed %s's desired state at %s/%s", p.ID, e.Node, p.CurrentPair(), p.Phase)
			}
		case e.Kind == EventPlanState && e.To == string(PlanRolledBack):
			// A rolled-back plan leaves every node it patched on its
			// pre-state.
			for _, st := range p.Steps {
				if _, ok := after.Nodes[st.Node]; ok && !st.Applied.IsZero() && !equalStacks(after.Desired[st.Node][p.Spec.Target], p.PreState[st.Node]) {
					return fmt.Errorf("plan %s rolled back but %s desires %v; pre-state %v", p.ID, st.Node,
						PatchIDs(after.Desired[st.Node][p.Spec.Target]), PatchIDs(p.PreState[st.Node]))
				}
			}
		}
	}
	return nil
}

func (p Plan) sideStep(pair string, side Side) NodeStep {
	for _, st := range p.Steps {
		if st.Pair == pair && st.Side == side {
			return st
		}
	}
	return NodeStep{}
}

// checkHistory checks phase order over a whole history: each pair goes
// standby_apply, standby_trial (for at least the trial), active_apply,
// active_trial, and a pair starts only after the previous one's active trial.
func checkHistory(s *State) error {
	for id, p := range s.Plans {
		var last Event
		for _, e := range s.PlanHistory(id) {
			if e.Kind != EventPlanPhase {
				continue
			}
			pair, ph, _ := strings.Cut(e.To, "/")
			lastPair, lastPh, _ := strings.Cut(last.To, "/")
			var ok bool
			switch Phase(ph) {
			case PhaseStandbyApply:
				i := slices.Index(p.Spec.Pairs, pair)
				ok = last.To == "" && i == 0 || i > 0 && lastPair == p.Spec.Pairs[i-1] && lastPh == string(PhaseActiveTrial)
			case PhaseStandbyTrial:
				ok = lastPair == pair && lastPh == string(PhaseStandbyApply)
			case PhaseActiveApply:
				ok = lastPair == pair && lastPh == string(PhaseStandbyTrial) && !e.Time.Before(last.Time.Add(p.Spec.Trial))
			case PhaseActiveTrial:
				ok = lastPair == pair && lastPh == string(PhaseActiveApply)
			}
			if !ok || e.From != last.To {
				return fmt.Errorf("plan %s: phase event %+v follows %+v", id, e, last)
			}
			last = e
		}
	}
	return nil
}

// generator produces random commands, most of them sensible.
type generator struct {
	rng *rand.Rand
	h   *harness
}

func (g *generator) pick(n int) int { return g.rng.IntN(n) }

func (g *generator) nodeName() string {
	return []string{"a1", "b1", "a2", "b2", "w", "c3"}[g.pick(6)]
}

func (g *generator) planID(s *State) string {
	if len(s.Plans) == 0 || g.pick(10) == 0 {
		return PlanID(uint64(g.pick(3) + 1))
	}
	return PlanID(uint64(g.pick(int(s.PlanSeq)) + 1))
}

func (g *generator) blob() *PutBlob {
	return []*PutBlob{blob1, blob2, blob1, blob2, NewPutBlob("stray", []byte("never stored"))}[g.pick(5)]
}

// next returns a command for state s (which it does not modify).
func (g *generator) next(s *State) Command {
	switch r := g.pick(100); {
	case r < 40:
		if c := g.plausible(s); c != nil {
			return c
		}
		return g.submit()
	case r < 47:
		return g.submit()
	case r < 57:
		id := g.planID(s)
		switch g.pick(7) {
		case 0:
			return &PausePlan{Plan: id, Reason: "random"}
		case 1:
			return &ResumePlan{Plan: id}
		case 2:
			return &AbortPlan{Plan: id, Reason: "random"}
		case 3:
			return &RollbackPlan{Plan: id, Reason: "random", Staged: g.pick(2) == 0}
		case 4:
			return &FinishRollback{Plan: id}
		case 5:
			return &FailPlan{Plan: id, Reason: "random"}
		default:
			return &CompletePlan{Plan: id}
		}
	case r < 63:
		return &PlanPhase{Plan: g.planID(s), Pair: []string{"sip-1", "sip-2"}[g.pick(2)], Phase: Phases()[g.pick(4)]}
	case r < 70:
		c := &SetDesired{Node: g.nodeName(), Target: target, Cause: "random"}
		if g.pick(2) == 0 {
			c.Plan = g.planID(s)
		}
		switch g.pick(3) {
		case 0:
			c.Patches, _ = s.PlanStack(c.Plan, c.Node)
		case 1:
			c.Patches, _ = s.PreStack(c.Plan, c.Node)
		default:
			for _, b := range []*PutBlob{blob1, blob2} {
				if g.pick(2) == 0 {
					c.Patches = append(c.Patches, PatchRef{PatchID: b.PatchID, SHA256: b.SHA256})
				}
			}
		}
		return c
	case r < 78:
		n := g.nodeName()
		active := PatchIDs(s.Desired[n][target])
		if g.pick(4) == 0 {
			active = []string{"fix-2"}
		}
		return &ReportObserved{Node: n, Target: target, Pid: g.pick(3), Active: active}
	case r < 85:
		return &SetNodeStatus{Node: g.nodeName(), Status: []Status{StatusAlive, StatusAlive, StatusSuspect, StatusDead, StatusLeft}[g.pick(5)]}
	case r < 91:
		if g.pick(2) == 0 {
			return &SetNodeHealth{Node: g.nodeName(), Healthy: true}
		}
		return &SetNodeHealth{Node: g.nodeName(), FailingCheck: "sip-port", CheckOutput: "refused"}
	case r < 95:
		return &SetRole{Node: g.nodeName(), Role: []Role{RoleActive, RoleStandby}[g.pick(2)], Cause: "random"}
	case r < 98:
		n := g.nodeName()
		if n == "w" {
			return witness(n)
		}
		pair := map[string]string{"a1": "sip-1", "b1": "sip-1", "a2": "sip-2", "b2": "sip-2", "c3": "sip-3"}[n]
		return node(n, pair, []Role{RoleActive, RoleStandby}[g.pick(2)])
	default:
		return &RemoveNode{Node: g.nodeName()}
	}
}

// plausible returns a command the FSM may well accept for the latest
// plan: its next phase, a node's plan or pre-plan stack, the observation
// that the node runs what it desires, a node back alive and healthy. No
// decisions: which one is random.
func (g *generator) plausible(s *State) Command {
	ps := s.plansByID()
	if len(ps) == 0 {
		return nil
	}
	p := ps[len(ps)-1]
	st := p.Steps[g.pick(len(p.Steps))]
	switch g.pick(8) {
	case 0, 6, 7:
		i, ph, ok := p.next()
		if !ok {
			return &CompletePlan{Plan: p.ID}
		}
		return &PlanPhase{Plan: p.ID, Pair: p.Spec.Pairs[i], Phase: ph}
	case 1:
		want, _ := s.PlanStack(p.ID, st.Node)
		if p.State == PlanRollingBack {
			want = p.PreState[st.Node]
		}
		return &SetDesired{Node: st.Node, Target: target, Patches: want, Plan: p.ID, Cause: "plausible"}
	case 2:
		return &ReportObserved{Node: st.Node, Target: target, Pid: 1, Active: PatchIDs(s.Desired[st.Node][target])}
	case 3:
		return &SetNodeStatus{Node: st.Node, Status: StatusAlive}
	case 4:
		return &SetNodeHealth{Node: st.Node, Healthy: true}
	default:
		return &FinishRollback{Plan: p.ID}
	}
}

func (g *generator) submit() Command {
	sp := spec(g.blob())
	sp.Pairs = [][]string{nil, {"sip-1"}, {"sip-2", "sip-1"}, {"sip-3"}}[g.pick(4)]
	sp.Trial = []time.Duration{0, 10 * time.Second, trial}[g.pick(3)]
	sp.ProgressDeadline = []time.Duration{0, time.Minute, 10 * time.Minute, time.Hour}[g.pick(4)]
	if g.pick(3) == 0 {
		sp.OnFailure = OnFailurePause
	}
	return &SubmitPlan{Spec: sp}
}

func readCloser(b []byte) *nopCloser { return &nopCloser{bytes.NewReader(b)} }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
