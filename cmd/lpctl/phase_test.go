package main

import (
	"testing"

	"lp/fsm"
)

func TestPhaseColumn(t *testing.T) {
	spec := fsm.PlanSpec{Pairs: []string{"sip-1", "sip-2"}}
	for _, c := range []struct {
		state fsm.PlanState
		phase fsm.Phase
		want  string
	}{
		{fsm.PlanPending, "", "-"},
		{fsm.PlanRunning, fsm.PhaseActiveTrial, "sip-2/active_trial"},
		{fsm.PlanRollingBack, fsm.PhaseStandbyTrial, "sip-2/standby_trial"},
		{fsm.PlanCompleted, fsm.PhaseActiveTrial, "-"},
		{fsm.PlanRolledBack, fsm.PhaseStandbyTrial, "-"},
		{fsm.PlanAborted, fsm.PhaseStandbyApply, "-"},
		{fsm.PlanFailed, fsm.PhaseActiveApply, "-"},
	} {
		p := fsm.Plan{State: c.state, Phase: c.phase, PairIndex: 1, Spec: spec}
		if got := phase(p); got != c.want {
			t.Errorf("phase(%s at %s) = %q; want %q", c.state, c.phase, got, c.want)
		}
	}
}
