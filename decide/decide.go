package decide

import (
	"time"

	"lp/fsm"
)

// Kind says why a request is refused.
type Kind int

const (
	// NotFound: the request names something the state does not hold.
	NotFound Kind = iota + 1
	// Conflict: the request cannot be done in the current state.
	Conflict
)

// Refusal is a request a decider refuses, with a one-line reason for the
// operator.
type Refusal struct {
	Kind Kind
	Msg  string
}

func (r *Refusal) Error() string { return r.Msg }

// Report is one node's report about a plan's trial checks: a check that
// failed (Check, Output), or that every check ran and none failed (Passed).
type Report struct {
	Plan   string
	Node   string
	Check  string
	Output string
	Passed bool
}

// Trial is what the leader heard about one plan's trial checks: the latest
// failure, received at At, and each node's latest passing report. Agents
// repeat their reports, so a new leader, which starts with none, learns
// them again.
type Trial struct {
	Failure Report    // the latest failure (Passed false); zero: none
	At      time.Time // when the leader received Failure
	// Passes holds every node's latest passing report, as the leader
	// received it (the nodes of a wave of pairs report each;
	// max_parallel). Replaced, never written: a Trial is a value.
	Passes map[string]time.Time
}

// With returns t with report r, received at at, added.
func (t Trial) With(r Report, at time.Time) Trial {
	if !r.Passed {
		t.Failure, t.At = r, at
		return t
	}
	passes := make(map[string]time.Time, len(t.Passes)+1)
	for k, v := range t.Passes {
		passes[k] = v
	}
	passes[r.Node] = at
	t.Passes = passes
	return t
}

// PassedAt returns when node last reported its trial checks passed.
func (t Trial) PassedAt(node string) (time.Time, bool) {
	at, ok := t.Passes[node]
	return at, ok
}

// Wake returns the earliest time after now at which a decider's answer may
// change without any other change of s: the end of a running plan's trial,
// an active's failover_after (and its doubled wait, see failoverWait), or
// just past a suspect node's SuspectBound. The leader sleeps until then
// (or the next change) rather than up to a tick after it.
func Wake(s *fsm.State, now time.Time) (time.Time, bool) {
	var (
		next  time.Time
		found bool
	)
	consider := func(at time.Time) {
		if at.After(now) && (!found || at.Before(next)) {
			next, found = at, true
		}
	}
	for _, p := range s.Plans {
		if p.State == fsm.PlanRunning && p.Phase.Trial() {
			consider(p.PhaseDeadline)
		}
	}
	for _, nd := range s.Nodes {
		if nd.Role == fsm.RoleActive && !nd.External() && !nd.DownSince.IsZero() {
			fa := nd.FailoverAfter
			if fa <= 0 {
				fa = DefaultFailoverAfter
			}
			// Without peer checks, an active whose lpd is gone waits
			// failover_after twice (failoverWait): wake at both.
			consider(nd.DownSince.Add(fa))
			consider(nd.DownSince.Add(2 * fa))
		}
		if nd.Status == fsm.StatusSuspect {
			consider(nd.SuspectSince.Add(nd.SuspectBound + time.Millisecond))
		}
	}
	return next, found
}
