package decide

import (
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// TestPairRoleStep: the leader's role decisions from the FSM state and the
// clock.
func TestPairRoleStep(t *testing.T) {
	type setup func(s *sim)
	dead := func(node string) setup {
		return func(s *sim) { s.must(&fsm.SetNodeStatus{Node: node, Status: fsm.StatusDead, Cause: "test"}) }
	}
	unhealthy := func(node string) setup {
		return func(s *sim) { s.must(&fsm.SetNodeHealth{Node: node, FailingCheck: "port", CheckOutput: "refused"}) }
	}
	wait := func(d time.Duration) setup { return func(s *sim) { s.now = s.now.Add(d) } }
	peerChecks := func(s *sim) {
		s.must(&fsm.RegisterNode{Name: "b1", Pair: "pair-1", Role: fsm.RoleStandby, Targets: []string{"svc"}, Healthy: true, PeerChecks: true})
	}
	peer := func(v string) setup {
		return func(s *sim) { s.must(&fsm.SetPeerHealth{Node: "b1", Peer: v, Check: "peer-svc", Output: "refused"}) }
	}
	cases := []struct {
		name     string
		setup    []setup
		wantNode string // promoted (or demoted for a switchover) node; "" for none
		wantRole fsm.Role
		why      string // part of the reason when there is no command
	}{
		{name: "active up", setup: nil},
		{name: "active dead, not yet failover_after", setup: []setup{dead("a1"), wait(1900 * time.Millisecond)}, why: "failover after 4s"},
		{name: "active's lpd dead for failover_after, no peer checks: the grace", setup: []setup{dead("a1"), wait(2 * time.Second)},
			why: "its lpd is gone and b1 has no peer_health: failover_after 2s + grace 2s"},
		{name: "active's lpd dead for failover_after plus grace", setup: []setup{dead("a1"), wait(4 * time.Second)}, wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "lpd dead, peer checks say the service is up: no failover", setup: []setup{peerChecks, peer(fsm.PeerUp), dead("a1"), wait(time.Minute)},
			why: "peer_health on b1 says its service is up: no failover"},
		{name: "lpd dead, no peer verdict yet: wait", setup: []setup{peerChecks, dead("a1"), wait(time.Minute)}, why: "waiting for peer_health on b1"},
		{name: "lpd dead, peer checks say the service is down", setup: []setup{peerChecks, peer(fsm.PeerDown), dead("a1"), wait(2 * time.Second)},
			wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "lpd alive: its own health decides, whatever the peer checks", setup: []setup{peerChecks, peer(fsm.PeerUp), unhealthy("a1"), wait(2 * time.Second)},
			wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "active suspect is not down", setup: []setup{func(s *sim) {
			s.must(&fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusSuspect})
		}, wait(time.Minute)}, why: "not yet dead"},
		{name: "active unhealthy for failover_after", setup: []setup{unhealthy("a1"), wait(3 * time.Second)}, wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "unhealthy then dead counts from the first", setup: []setup{unhealthy("a1"), wait(1500 * time.Millisecond), dead("a1"), wait(2600 * time.Millisecond)},
			wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "recovered active resets the clock", setup: []setup{dead("a1"), wait(1500 * time.Millisecond),
			func(s *sim) { s.must(&fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusAlive}) }, dead("a1"), wait(1500 * time.Millisecond)},
			why: "failover after"},
		{name: "standby unhealthy: no failover", setup: []setup{unhealthy("b1"), dead("a1"), wait(5 * time.Second)}, why: "no failover"},
		{name: "standby dead: no failover", setup: []setup{dead("b1"), dead("a1"), wait(5 * time.Second)}, why: "no failover"},
		{name: "failover_after of the active applies", setup: []setup{func(s *sim) {
			s.must(&fsm.RegisterNode{Name: "a1", Pair: "pair-1", Role: fsm.RoleActive, Targets: []string{"svc"}, Healthy: true, FailoverAfter: 300 * time.Millisecond})
		}, dead("a1"), wait(600 * time.Millisecond)}, wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "external roles are never touched", setup: []setup{func(s *sim) {
			s.must(&fsm.RegisterNode{Name: "a1", Pair: "pair-1", Role: fsm.RoleActive, Targets: []string{"svc"}, Healthy: true, Roles: fsm.RolesExternal})
			s.must(&fsm.RegisterNode{Name: "b1", Pair: "pair-1", Role: fsm.RoleStandby, Targets: []string{"svc"}, Healthy: true, Roles: fsm.RolesExternal})
		}, dead("a1"), wait(time.Minute)}, why: "external roles"},
		{name: "switchover waits for on_demote", setup: []setup{switchover}, why: "waiting for a1's on_demote"},
		{name: "switchover after on_demote", setup: []setup{switchover, func(s *sim) {
			s.must(&fsm.ReportHook{Node: "a1", Epoch: 1, Hook: "on_demote", OK: true})
		}}, wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "switchover after its deadline", setup: []setup{switchover, wait(11 * time.Second)}, wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "switchover when the demoted node dies", setup: []setup{switchover, dead("a1")}, wantNode: "b1", wantRole: fsm.RoleActive},
		{name: "switchover target lost: the demoted node is active again", setup: []setup{switchover, dead("b1"), func(s *sim) {
			s.must(&fsm.ReportHook{Node: "a1", Epoch: 1, Hook: "on_demote", OK: true})
		}}, wantNode: "a1", wantRole: fsm.RoleActive},
		{name: "no active: the last active is promoted", setup: []setup{func(s *sim) {
			s.must(&fsm.SetRole{Node: "a1", Role: fsm.RoleStandby, Cause: "test"})
		}}, wantNode: "a1", wantRole: fsm.RoleActive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 1)
			for _, f := range c.setup {
				f(s)
			}
			cmd, why := PairRoleStep(s.f.State(), "pair-1", s.now)
			if c.wantNode == "" {
				if cmd != nil {
					t.Fatalf("pairRoleStep = %s %+v; want nothing", cmd.CommandType(), cmd)
				}
				if !strings.Contains(why, c.why) {
					t.Errorf("reason %q; want it to contain %q", why, c.why)
				}
				return
			}
			sr, ok := cmd.(*fsm.SetRole)
			if !ok || sr.Node != c.wantNode || sr.Role != c.wantRole {
				t.Fatalf("pairRoleStep = %#v (%s); want SetRole %s %s", cmd, why, c.wantNode, c.wantRole)
			}
			if _, err := s.apply(cmd); err != nil {
				t.Errorf("the FSM refused %+v: %v", sr, err)
			}
		})
	}
}

// switchover demotes a1 with b1 as handover target, 10s deadline.
func switchover(s *sim) {
	cmd, _, err := Promotion(s.f.State(), "b1", s.now, 10*time.Second)
	if err != nil {
		s.t.Fatalf("Promotion(b1): %v", err)
	}
	s.must(cmd)
}

func TestPromotionRules(t *testing.T) {
	cases := []struct {
		name  string
		setup func(s *sim)
		node  string
		kind  Kind   // refusal kind, 0 when accepted
		want  string // "demote a1" / "promote b1" / "noop" / refusal text
	}{
		{name: "standby with live active: demote first", node: "b1", want: "demote a1"},
		{name: "standby with dead active: promote at once", node: "b1", want: "promote b1",
			setup: func(s *sim) { s.must(&fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusDead}) }},
		{name: "already active", node: "a1", want: "noop"},
		{name: "unknown", node: "zz", kind: NotFound, want: "not registered"},
		{name: "witness", node: "w", kind: Conflict, want: "witness"},
		{name: "unhealthy standby", node: "b1", kind: Conflict, want: "only an alive, healthy standby",
			setup: func(s *sim) { s.must(&fsm.SetNodeHealth{Node: "b1", FailingCheck: "x"}) }},
		{name: "switchover under way", node: "b1", kind: Conflict, want: "under way", setup: switchover},
		{name: "plan in the pair", node: "b1", kind: Conflict, want: "let it finish",
			setup: func(s *sim) {
				id := s.submit(nil)
				s.run(id, time.Second, Trial{})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 1)
			if c.setup != nil {
				c.setup(s)
			}
			cmd, noop, err := Promotion(s.f.State(), c.node, s.now, 10*time.Second)
			if c.kind != 0 {
				rf, ok := err.(*Refusal)
				if !ok || rf.Kind != c.kind || !strings.Contains(rf.Msg, c.want) {
					t.Fatalf("Promotion(%s) = %v, %q, %v; want refusal %d containing %q", c.node, cmd, noop, err, c.kind, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Promotion(%s): %v", c.node, err)
			}
			got := "noop"
			if sr, ok := cmd.(*fsm.SetRole); ok {
				got = "promote " + sr.Node
				if sr.Role == fsm.RoleStandby {
					got = "demote " + sr.Node
				}
			}
			if got != c.want {
				t.Errorf("Promotion(%s) = %s; want %s", c.node, got, c.want)
			}
		})
	}
}

// runRoles steps the orchestrator, the role decisions and the agents for up
// to d of simulated time (ticks of 100ms) until stop says so.
func (s *sim) runRoles(id string, d time.Duration, stop func(st *fsm.State) bool, skip ...string) {
	s.t.Helper()
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.agents(skip...)
		for range 10 {
			st := s.f.State()
			var cmd fsm.Command
			if p, ok := st.Plans[id]; ok {
				cmd, _ = PlanStep(st, p, s.now, Trial{})
			}
			if cmd == nil {
				cmd, _ = PairRoleStep(st, "pair-1", s.now)
			}
			if cmd == nil {
				break
			}
			if _, err := s.apply(cmd); err != nil {
				s.t.Fatalf("the FSM refused %s: %v", cmd.CommandType(), err)
			}
		}
		if stop(s.f.State()) {
			return
		}
		s.now = s.now.Add(100 * time.Millisecond)
	}
}

// TestFailoverDuringTrial: the active dies while its standby tries a patch.
// rollback-first: the standby runs its pre-plan stack again before it is
// promoted; keep-patch: it is promoted with the patch and the plan goes on
// once the old active is back.
func TestFailoverDuringTrial(t *testing.T) {
	cases := []struct {
		policy fsm.FailoverPolicy
		lose   fsm.Command // how the active is lost
		pause  bool        // on_failure: pause
	}{
		// A dead active fails the plan at once (it rolls back), the
		// failover waits for the standby's rollback.
		{fsm.FailoverRollbackFirst, &fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusDead, Cause: "test"}, false},
		// An unhealthy, unpatched active does not fail the plan: the
		// failover itself rolls the plan back first.
		{fsm.FailoverRollbackFirst, &fsm.SetNodeHealth{Node: "a1", FailingCheck: "port"}, false},
		{fsm.FailoverKeepPatch, &fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusDead, Cause: "test"}, false},
		// on_failure: pause stops the plan for an operator, but the
		// failover still rolls the standby back first.
		{fsm.FailoverRollbackFirst, &fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusDead, Cause: "test"}, true},
	}
	for _, c := range cases {
		policy := c.policy
		name := string(policy) + " " + string(c.lose.CommandType())
		if c.pause {
			name += " on_failure pause"
		}
		t.Run(name, func(t *testing.T) {
			s := newSim(t, 1)
			id := s.submit(func(sp *fsm.PlanSpec) {
				sp.FailoverDuringTrial = policy
				if c.pause {
					sp.OnFailure = fsm.OnFailurePause
				}
			})
			s.runRoles(id, time.Hour, func(st *fsm.State) bool { return st.Plans[id].Phase == fsm.PhaseStandbyTrial })
			s.must(c.lose)
			s.runRoles(id, time.Minute, func(st *fsm.State) bool { return st.Nodes["b1"].Role == fsm.RoleActive }, "a1")
			st := s.f.State()
			if st.Nodes["b1"].Role != fsm.RoleActive {
				t.Fatalf("b1 is %s after a minute with a1 dead; want active", st.Nodes["b1"].Role)
			}
			var promoted, rolledBack, observedPre uint64
			for _, e := range st.History {
				switch {
				case e.Kind == fsm.EventRole && e.Node == "b1" && e.To == "active":
					promoted = e.Seq
				case e.Kind == fsm.EventDesired && e.Node == "b1" && e.To == "svc=" && rolledBack == 0:
					rolledBack = e.Seq
				case e.Kind == fsm.EventObserved && e.Node == "b1" && strings.HasPrefix(e.To, "svc= ") && rolledBack != 0 && observedPre == 0:
					observedPre = e.Seq
				}
			}
			p := st.Plans[id]
			switch policy {
			case fsm.FailoverRollbackFirst:
				if rolledBack == 0 || observedPre == 0 || !(rolledBack < observedPre && observedPre < promoted) {
					t.Errorf("history: b1 rolled back #%d, observed unpatched #%d, promoted #%d; want that order", rolledBack, observedPre, promoted)
				}
				if p.State != fsm.PlanRolledBack && p.State != fsm.PlanRollingBack {
					t.Errorf("plan is %s; want rolled back", p.State)
				}
				t.Logf("plan %s: %s", p.State, p.Reason)
			case fsm.FailoverKeepPatch:
				if rolledBack != 0 {
					t.Errorf("history: b1 rolled back (#%d); want it promoted with the patch", rolledBack)
				}
				if got := fsm.PatchIDs(st.DesiredStack("b1", "svc")); len(got) != 1 {
					t.Errorf("b1 desired %v; want the plan's patch", got)
				}
				if p.State != fsm.PlanRunning {
					t.Errorf("plan is %s (%s); want still running, waiting for a1", p.State, p.Reason)
				}
				// a1 returns (as standby): the plan patches it and completes.
				s.must(&fsm.SetNodeStatus{Node: "a1", Status: fsm.StatusAlive, Cause: "test"})
				if p := s.f.State().Plans[id]; p.Phase != fsm.PhaseStandbyTrial {
					t.Errorf("plan phase %s with a1 just back; want still standby_trial", p.Phase)
				}
				s.runRoles(id, time.Hour, func(st *fsm.State) bool { return st.Plans[id].State.Terminal() })
				st = s.f.State()
				if p := st.Plans[id]; p.State != fsm.PlanCompleted {
					t.Errorf("plan is %s (%s); want completed once a1 is back", p.State, p.Reason)
				}
				if st.Nodes["a1"].Role != fsm.RoleStandby || st.Nodes["b1"].Role != fsm.RoleActive {
					t.Errorf("roles a1=%s b1=%s; want no failback", st.Nodes["a1"].Role, st.Nodes["b1"].Role)
				}
			}
		})
	}
}
