package decide

import (
	"strings"
	"time"

	"lp/fsm"
)

// Waiting says why plan p does not move now, for an operator: the reason
// PlanStep gives when it returns no command ("node b1 is dead", "for b1 to
// converge", "trial of b1 until T", ...; a leading "waiting " is dropped,
// as the reason is shown after "waiting: "). It is "" for a plan
// that is not pending, running or rolling back (terminal or paused: its
// state and reason say it all), and for one whose next step is due (the
// leader commits it at once). A trial before its deadline is reported as
// "trial of NODES until T": the plan waits for its trial to end, which is
// progress, not a hold-up; the text keeps the two apart.
func Waiting(s *fsm.State, p fsm.Plan, now time.Time, fail Trial) string {
	switch p.State {
	case fsm.PlanPending, fsm.PlanRunning, fsm.PlanRollingBack:
	default:
		return ""
	}
	if cmd, why := PlanStep(s, p, now, fail); cmd == nil {
		return strings.TrimPrefix(why, "waiting ")
	}
	return ""
}
