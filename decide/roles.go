package decide

import (
	"fmt"
	"slices"
	"time"

	"lp/fsm"
)

// DefaultFailoverAfter applies to a node registered without failover_after.
const DefaultFailoverAfter = 2 * time.Second

// RoleSteps returns the role command each pair with managed roles needs
// now (a failover, or the next step of a switchover), none while every pair
// has its active or must wait. Like NextSteps it is a pure function of the
// state and the clock: the failover clock is each node's DownSince in the
// FSM, so a new leader continues counting where the old one stopped.
func RoleSteps(s *fsm.State, now time.Time) []Step {
	var out []Step
	for _, pair := range s.Pairs() {
		if cmd, why := PairRoleStep(s, pair, now); cmd != nil {
			out = append(out, Step{Plan: "pair " + pair, Cmd: cmd, Why: why})
		}
	}
	return out
}

// PairRoleStep decides the next role command of one pair, nil to wait (the
// string then says why, for tests and logs).
//
//   - active down (dead, left or unhealthy in the FSM; suspect is not
//     down) for its failover_after — and, when its lpd is gone (dead or
//     left), judged down by the standby's peer_health checks, or without
//     such checks down for failover_after twice (see failoverWait) —,
//     standby alive and healthy: promote the standby — after
//     rolling it back first when it runs a plan's untried patch and the plan
//     says failover_during_trial: rollback-first (the default);
//   - no active: a switchover's demoted node has run its on_demote (or is
//     dead, or the handover deadline passed): promote the handover target
//     (or, when that one is not up, the demoted node again); without a
//     handover, promote a standby that is alive and healthy.
//
// A pair with a member whose roles are external is never touched.
func PairRoleStep(s *fsm.State, pair string, now time.Time) (fsm.Command, string) {
	ms := s.PairMembers(pair)
	if len(ms) != 2 {
		return nil, fmt.Sprintf("pair %s has %d members", pair, len(ms))
	}
	for _, m := range ms {
		if m.External() {
			return nil, fmt.Sprintf("pair %s has external roles", pair)
		}
	}
	var act, sb []fsm.Node
	for _, m := range ms {
		switch m.Role {
		case fsm.RoleActive:
			act = append(act, m)
		case fsm.RoleStandby:
			sb = append(sb, m)
		}
	}
	switch {
	case len(act) == 1 && len(sb) == 1:
		a, b := act[0], sb[0]
		if !a.Down() {
			if a.Status != fsm.StatusAlive {
				return nil, fmt.Sprintf("active %s is %s, not yet dead", a.Name, a.Status)
			}
			return nil, ""
		}
		since := a.DownSince
		if since.IsZero() || since.After(now) {
			since = now
		}
		fa := a.FailoverAfter
		if fa <= 0 {
			fa = DefaultFailoverAfter
		}
		down := now.Sub(since)
		wait, how := failoverWait(a, b, fa)
		if down < wait {
			return nil, fmt.Sprintf("active %s is %s for %v; failover after %v%s", a.Name, downState(a), down.Round(time.Millisecond), wait, how)
		}
		if a.Status != fsm.StatusAlive && b.PeerChecks {
			// Its lpd is gone: its service is judged by b's peer checks.
			switch b.Peer {
			case fsm.PeerUp:
				return nil, fmt.Sprintf("active %s's lpd is %s but peer_health on %s says its service is up: no failover", a.Name, a.Status, b.Name)
			case fsm.PeerDown:
				how = fmt.Sprintf(", and peer_health on %s says its service is down (%s: %s)", b.Name, b.PeerCheck, fsm.ClipLine(b.PeerOutput, 200))
			default:
				return nil, fmt.Sprintf("active %s's lpd is %s; waiting for peer_health on %s to judge its service", a.Name, a.Status, b.Name)
			}
		}
		if !b.Up() {
			return nil, fmt.Sprintf("active %s is %s but standby %s is %s: no failover", a.Name, downState(a), b.Name, downState(b))
		}
		if cmd, why := rollbackFirst(s, b, pair); cmd != nil || why != "" {
			return cmd, why
		}
		return &fsm.SetRole{Node: b.Name, Role: fsm.RoleActive,
			Cause: fmt.Sprintf("failover: active %s %s for %v (failover_after %v%s)", a.Name, downState(a), down.Round(time.Millisecond), fa, how)}, "failover to " + b.Name
	case len(act) == 0 && len(sb) == 2:
		for _, x := range sb {
			if x.Handover == "" {
				continue
			}
			y, ok := s.Nodes[x.Handover]
			hookDone := x.HookEpoch >= x.RoleEpoch
			if !hookDone && x.Status == fsm.StatusAlive && !now.After(x.HandoverDeadline) {
				return nil, fmt.Sprintf("switchover: waiting for %s's on_demote (until %s)", x.Name, stamp(x.HandoverDeadline))
			}
			why := x.Name + "'s on_demote finished"
			switch {
			case !hookDone && x.Status != fsm.StatusAlive:
				why = x.Name + " is " + string(x.Status)
			case !hookDone:
				why = x.Name + "'s on_demote did not finish by " + stamp(x.HandoverDeadline)
			}
			if ok && y.Up() {
				if cmd, w := rollbackFirst(s, y, pair); cmd != nil || w != "" {
					return cmd, w
				}
				return &fsm.SetRole{Node: y.Name, Role: fsm.RoleActive, Cause: "switchover by operator: " + why}, "switchover to " + y.Name
			}
			if x.Up() {
				return &fsm.SetRole{Node: x.Name, Role: fsm.RoleActive,
					Cause: fmt.Sprintf("switchover to %s abandoned (%s is not alive and healthy): %s active again", x.Handover, x.Handover, x.Name)}, "switchover abandoned"
			}
			return nil, fmt.Sprintf("switchover: neither %s nor %s is alive and healthy", x.Name, x.Handover)
		}
		// No active and no switchover: the service of the pair is down;
		// promote a standby that is up, the one active last first.
		slices.SortStableFunc(sb, func(p, q fsm.Node) int {
			pa, qa := p.PrevRole == fsm.RoleActive, q.PrevRole == fsm.RoleActive
			switch {
			case pa && !qa:
				return -1
			case qa && !pa:
				return 1
			}
			return 0
		})
		for _, x := range sb {
			if x.Up() {
				if cmd, why := rollbackFirst(s, x, pair); cmd != nil || why != "" {
					return cmd, why
				}
				return &fsm.SetRole{Node: x.Name, Role: fsm.RoleActive, Cause: "pair " + pair + " had no active"}, "promote " + x.Name
			}
		}
		return nil, "pair " + pair + " has no active and no standby alive and healthy"
	}
	return nil, fmt.Sprintf("pair %s has %d active and %d standby nodes", pair, len(act), len(sb))
}

// failoverWait is how long active a must be down before its standby b is
// promoted, and what to add to the reasons given. lpd's death is not the
// service's death: an active whose lpd lives is judged by its own health
// reports (failover_after); one whose lpd is gone (dead or left) is judged
// by b's peer_health checks when b has some (failover_after, then their
// verdict), else only after failover_after plus a grace of failover_after
// again, since nothing then tells whether its service still serves.
func failoverWait(a, b fsm.Node, fa time.Duration) (time.Duration, string) {
	if a.Status == fsm.StatusAlive || b.PeerChecks {
		return fa, ""
	}
	return 2 * fa, fmt.Sprintf(" (its lpd is gone and %s has no peer_health: failover_after %v + grace %v)", b.Name, fa, fa)
}

// downState says how a node is down.
func downState(n fsm.Node) string {
	if n.Status != fsm.StatusAlive {
		return string(n.Status)
	}
	if !n.Healthy {
		if n.FailingCheck != "" {
			return "unhealthy (" + n.FailingCheck + ")"
		}
		return "unhealthy"
	}
	return "up"
}

// rollbackFirst returns what must happen before node b of pair is
// promoted: when a plan has given b a patch that has not passed its trial
// and the plan's failover_during_trial is rollback-first, the plan is
// rolled back (a command) and the promotion waits (a reason) until b's
// desired state is its pre-plan stack and b runs it. With keep-patch, or a
// tried patch, nothing (nil, "").
//
// This is what keeps the two members of a pair from both running untried
// code: a plan patches the active only after the standby passed its trial
// (the FSM enforces it), so an untried patch is only ever on one member,
// and that member is promoted with it only under keep-patch, where the
// other member is down and unpatched.
func rollbackFirst(s *fsm.State, b fsm.Node, pair string) (fsm.Command, string) {
	for _, p := range s.PlanList() {
		if p.State == fsm.PlanPending || p.State == fsm.PlanRolledBack {
			continue
		}
		st, ok := p.Step(b.Name)
		if !ok || st.Applied.IsZero() || !st.TrialPassed.IsZero() {
			continue
		}
		pre := p.PreState[b.Name]
		target := p.Spec.Target
		atPre := slices.Equal(s.DesiredStack(b.Name, target), pre)
		if atPre && s.NodeConverged(b.Name, target) {
			continue
		}
		if p.Spec.FailoverDuringTrial == fsm.FailoverKeepPatch {
			continue
		}
		if p.State != fsm.PlanRollingBack && !atPre {
			if cmd, why := laterPlanFirst(s, p, pair, b.Name); cmd != nil || why != "" {
				return cmd, why
			}
			return &fsm.RollbackPlan{Plan: p.ID, Staged: true,
					Reason: fmt.Sprintf("failover in pair %s while %s runs untried patch %s (failover_during_trial: rollback-first)", pair, b.Name, p.Spec.PatchID)},
				"rollback-first: roll back plan " + p.ID
		}
		return nil, fmt.Sprintf("rollback-first: waiting for %s to roll back plan %s before promoting it", b.Name, p.ID)
	}
	return nil, ""
}

// laterPlanFirst returns what must happen before plan p can be rolled
// back for a failover in pair (the FSM refuses to roll back a plan while a
// later plan on its target is unfinished or has changed desired state and
// is not rolled back): the latest such plan is aborted when it has changed
// nothing yet (it never started its work: nothing is lost), or rolled back
// (staged) when it has; the failover waits for its rollback to finish.
// Nothing (nil, "") when no later plan is in the way.
func laterPlanFirst(s *fsm.State, p fsm.Plan, pair, node string) (fsm.Command, string) {
	list := s.PlanList()
	for i := len(list) - 1; i >= 0; i-- {
		q := list[i]
		if q.Seq <= p.Seq || q.Spec.Target != p.Spec.Target || q.State == fsm.PlanRolledBack {
			continue
		}
		applied := slices.ContainsFunc(q.Steps, func(st fsm.NodeStep) bool { return !st.Applied.IsZero() })
		why := fmt.Sprintf("failover in pair %s: %s runs untried patch %s of plan %s, which must be rolled back first (failover_during_trial: rollback-first), and plan %s came after it",
			pair, node, p.Spec.PatchID, p.ID, q.ID)
		switch {
		case !applied && !q.State.Terminal():
			return &fsm.AbortPlan{Plan: q.ID, Reason: why}, "rollback-first: abort plan " + q.ID + ", which changed nothing yet"
		case !applied:
			continue // terminal and changed nothing: not in the way
		case q.State == fsm.PlanRollingBack:
			return nil, fmt.Sprintf("rollback-first: waiting for plan %s to roll back before plan %s", q.ID, p.ID)
		}
		return &fsm.RollbackPlan{Plan: q.ID, Staged: true, Reason: why}, "rollback-first: roll back plan " + q.ID + " before plan " + p.ID
	}
	return nil, ""
}

// Promotion decides what `lpctl promote NODE` commits:
//
//   - refused when NODE is not registered, is a witness, has external
//     roles, is not alive and healthy, a switchover of its pair is under
//     way, or a plan is working on its pair (pause or finish it first);
//   - a no-op when NODE is already active;
//   - when the active peer is alive: its demotion, with NODE as handover
//     target until now+timeout (the leader promotes NODE once the peer's
//     on_demote has run; see PairRoleStep);
//   - when the peer is dead, gone or already standby: NODE's promotion at
//     once (a dead peer runs its on_demote when it returns).
func Promotion(s *fsm.State, name string, now time.Time, timeout time.Duration) (fsm.Command, string, error) {
	n, ok := s.Nodes[name]
	if !ok {
		return nil, "", &Refusal{NotFound, fmt.Sprintf("node %s is not registered", name)}
	}
	if n.Pair == "" || n.Role == fsm.RoleWitness {
		return nil, "", &Refusal{Conflict, fmt.Sprintf("%s is a witness; only a standby of a pair can be promoted", name)}
	}
	var peer *fsm.Node
	for _, m := range s.PairMembers(n.Pair) {
		if m.External() {
			return nil, "", &Refusal{Conflict, fmt.Sprintf("pair %s has external roles (role_probe): switch roles in the service itself", n.Pair)}
		}
		if m.Handover != "" {
			return nil, "", &Refusal{Conflict, fmt.Sprintf("a switchover of pair %s to %s is under way", n.Pair, m.Handover)}
		}
		if m.Name != name {
			peer = &m
		}
	}
	if n.Role == fsm.RoleActive {
		return nil, fmt.Sprintf("%s is already active", name), nil
	}
	if !n.Up() {
		return nil, "", &Refusal{Conflict, fmt.Sprintf("%s is %s; only an alive, healthy standby can be promoted", name, downState(n))}
	}
	for _, p := range s.PlanList() {
		switch p.State {
		case fsm.PlanRunning, fsm.PlanPaused, fsm.PlanRollingBack:
			if p.Phase != "" && p.InWave(n.Pair) {
				return nil, "", &Refusal{Conflict, fmt.Sprintf("plan %s is %s in pair %s (%s); let it finish, or abort or roll it back first", p.ID, p.State, n.Pair, p.Phase)}
			}
		}
	}
	if peer != nil && peer.Role == fsm.RoleActive && peer.Status == fsm.StatusAlive {
		return &fsm.SetRole{Node: peer.Name, Role: fsm.RoleStandby, Handover: name, HandoverDeadline: now.Add(timeout),
			Cause: fmt.Sprintf("switchover by operator to %s: demote first", name)}, "", nil
	}
	why := "promoted by operator"
	if peer != nil && peer.Role == fsm.RoleActive {
		why += fmt.Sprintf(" (active %s is %s: its on_demote runs when it returns)", peer.Name, peer.Status)
	}
	return &fsm.SetRole{Node: name, Role: fsm.RoleActive, Cause: why}, "", nil
}
