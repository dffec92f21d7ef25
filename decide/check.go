package decide

import (
	"fmt"
	"strings"

	"lp/fsm"
)

// StandbyFirstViolations checks plan id in s against the rule the whole
// rollout is built on: no active node gets the plan's patch before its
// standby passed its trial. It reads the plan's history (a desired-state
// change of an active before its pair's active phase began) and its steps
// (an active applied before its standby's trial passed), and returns one
// line per violation; none when the plan kept the rule. The tests of the
// deciders and of live clusters both use it.
func StandbyFirstViolations(s *fsm.State, id string) []string {
	var out []string
	p := s.Plans[id]
	trialPassed := map[string]bool{}
	for _, e := range s.PlanHistory(id) {
		if pairs, ph, _ := strings.Cut(e.To, "/"); e.Kind == fsm.EventPlanPhase && e.From != "" && ph == string(fsm.PhaseActiveApply) {
			for _, pair := range strings.Split(pairs, "+") { // a wave (max_parallel) names its pairs with +
				trialPassed[pair] = true
			}
		}
		if e.Kind == fsm.EventDesired {
			st, _ := p.Step(e.Node)
			if st.Side == fsm.SideActive && !trialPassed[st.Pair] && p.State != fsm.PlanRollingBack {
				out = append(out, fmt.Sprintf("history: active %s got %s before its standby passed its trial", e.Node, e.To))
			}
		}
	}
	for _, pair := range p.Spec.Pairs {
		var sb, ac fsm.NodeStep
		for _, st := range p.Steps {
			if st.Pair == pair && st.Side == fsm.SideStandby {
				sb = st
			}
			if st.Pair == pair && st.Side == fsm.SideActive {
				ac = st
			}
		}
		if !ac.Applied.IsZero() && (sb.TrialPassed.IsZero() || !sb.TrialPassed.Before(ac.Applied) && !sb.TrialPassed.Equal(ac.Applied)) {
			out = append(out, fmt.Sprintf("pair %s: active applied at %v; standby trial passed at %v; want standby first", pair, ac.Applied, sb.TrialPassed))
		}
	}
	return out
}
