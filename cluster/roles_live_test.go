package cluster

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/config"
	"lp/fsm"
)

// TestExternalRoles: nodes with roles: external report what their
// role_probe prints; lp never promotes them nor runs their hooks, and plans
// follow the probed roles (standby first).
func TestExternalRoles(t *testing.T) {
	dir := t.TempDir()
	roleFile := func(node string) string { return filepath.Join(dir, node+".role") }
	setRole := func(node, role string) {
		if err := os.WriteFile(roleFile(node), []byte(role+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setRole("b-active", "active")
	setRole("c-standby", "standby")
	hookLog := filepath.Join(dir, "hooks.log")
	tc := startTestCluster(t, onePair, func(c *Config) {
		c.RoleProbeInterval = 100 * time.Millisecond
		if c.Node.Pair == "" {
			return
		}
		c.Node.Roles = config.RolesExternal
		c.Node.RoleProbe = "cat " + roleFile(c.Node.Node)
		c.Node.FailoverAfter = 200 * time.Millisecond
		c.Node.OnPromote = "echo promote >> " + hookLog
		c.Node.OnDemote = "echo demote >> " + hookLog
	})
	tc.registered()
	roles := func() (string, string) {
		s := tc.leader().State()
		return string(s.Nodes["b-active"].Role), string(s.Nodes["c-standby"].Role)
	}
	// The service swaps roles by itself: lp follows the probes.
	setRole("b-active", "standby")
	setRole("c-standby", "active")
	tc.waitFor(10*time.Second, "probed roles swapped in the FSM", func() bool {
		b, c := roles()
		return b == "standby" && c == "active"
	})
	// A plan patches the probed standby first.
	id := tc.submit("fix1", 200*time.Millisecond, nil)
	tc.waitPlan(id, fsm.PlanCompleted, 20*time.Second)
	tc.patcher.mu.Lock()
	applied := slices.Clone(tc.patcher.applied)
	tc.patcher.mu.Unlock()
	wantFirst := []string{"b-active", "c-standby"}
	for i, node := range wantFirst {
		if len(applied) <= i || applied[i] != itoaPid(tc.pids[node])+":fix1" {
			t.Fatalf("patches applied %v; want %s (probed standby) then %s", applied, wantFirst[0], wantFirst[1])
		}
	}
	// The probed active dies: lp promotes nobody.
	tc.nodes["c-standby"].Kill()
	delete(tc.nodes, "c-standby")
	time.Sleep(2 * time.Second)
	if b, c := roles(); b != "standby" || c != "active" {
		t.Errorf("after the external active died: roles b=%s c=%s; want unchanged (lp does not promote external roles)", b, c)
	}
	if data, err := os.ReadFile(hookLog); err == nil {
		t.Errorf("hooks ran for external roles: %q; want none", data)
	}
}

func itoaPid(pid int) string { return strconv.Itoa(pid) }

// TestHookNotRerunAfterCrash: lpd dies while on_promote runs; the restarted
// node reports the hook as not run again instead of running it twice.
func TestHookNotRerunAfterCrash(t *testing.T) {
	hookLog := filepath.Join(t.TempDir(), "hooks.log")
	tc := startTestCluster(t, onePair, func(c *Config) {
		c.Node.OnPromote = "echo start >> " + hookLog + "; sleep 5; echo end >> " + hookLog
	})
	tc.registered()
	if _, err := tc.leader().apply(&fsm.SetRole{Node: "c-standby", Role: fsm.RoleActive, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	tc.waitFor(10*time.Second, "on_promote started", func() bool {
		data, _ := os.ReadFile(hookLog)
		return string(data) == "start\n"
	})
	victim := tc.nodes["c-standby"]
	victim.Kill()
	// Back on the same addresses, as a restarted lpd would be.
	cfg := tc.cfgs["c-standby"]
	cfg.APIPort, cfg.RaftPort, cfg.GossipPort = portOf(t, victim.APIAddr()), portOf(t, victim.RaftAddr()), portOf(t, victim.GossipAddr())
	tc.start("c-standby", cfg)
	var ev fsm.Event
	tc.waitFor(20*time.Second, "the hook reported after the restart", func() bool {
		s := tc.leader().State()
		n := s.Nodes["c-standby"]
		if n.HookEpoch < n.RoleEpoch {
			return false
		}
		for _, e := range s.NodeHistory("c-standby") {
			if e.Kind == fsm.EventHook {
				ev = e
			}
		}
		return true
	})
	if !strings.Contains(ev.Cause, "on_promote not run") {
		t.Errorf("hook event %q; want on_promote reported as not run again", ev.Cause)
	}
	time.Sleep(500 * time.Millisecond)
	if data, _ := os.ReadFile(hookLog); string(data) != "start\n" {
		t.Errorf("hook log %q; want one start and no second run", data)
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFailoverDuringTrialLive is TestFailoverDuringTrial on a running
// cluster (real raft and gossip, fake patcher): the active is killed while
// its standby tries a patch.
func TestFailoverDuringTrialLive(t *testing.T) {
	for _, policy := range []fsm.FailoverPolicy{fsm.FailoverRollbackFirst, fsm.FailoverKeepPatch} {
		t.Run(string(policy), func(t *testing.T) {
			tc := startTestCluster(t, onePair, func(c *Config) { c.Node.FailoverAfter = 300 * time.Millisecond })
			tc.registered()
			id := tc.submit("fix1", 20*time.Second, func(sp *fsm.PlanSpec) { sp.FailoverDuringTrial = policy })
			tc.waitFor(20*time.Second, "standby trial", func() bool {
				return tc.leader().State().Plans[id].Phase == fsm.PhaseStandbyTrial
			})
			tc.nodes["b-active"].Kill()
			delete(tc.nodes, "b-active")
			var st *fsm.State
			tc.waitFor(20*time.Second, "c-standby promoted", func() bool {
				st = tc.leader().State()
				return st.Nodes["c-standby"].Role == fsm.RoleActive
			})
			var promoted, rolledBack, observedPre uint64
			for _, e := range st.NodeHistory("c-standby") {
				switch {
				case e.Kind == fsm.EventRole && e.To == "active":
					promoted = e.Seq
				case e.Kind == fsm.EventDesired && e.To == "svc=" && rolledBack == 0:
					rolledBack = e.Seq
				case e.Kind == fsm.EventObserved && strings.HasPrefix(e.To, "svc= ") && rolledBack != 0 && observedPre == 0:
					observedPre = e.Seq
				}
			}
			active := tc.patcher.active(tc.pids["c-standby"])
			switch policy {
			case fsm.FailoverRollbackFirst:
				if rolledBack == 0 || observedPre == 0 || !(rolledBack < observedPre && observedPre < promoted) {
					t.Errorf("history: rolled back #%d, observed unpatched #%d, promoted #%d; want that order", rolledBack, observedPre, promoted)
				}
				if len(active) != 0 {
					t.Errorf("promoted c-standby runs %v; want no patch", active)
				}
			case fsm.FailoverKeepPatch:
				if rolledBack != 0 {
					t.Errorf("history: c-standby rolled back (#%d); want it promoted with its patch", rolledBack)
				}
				if !slices.Equal(active, []string{"fix1"}) {
					t.Errorf("promoted c-standby runs %v; want [fix1]", active)
				}
			}
		})
	}
}

// TestFailingHooksDoNotBlock: a switchover whose hooks fail still
// completes; the failures are in the history.
func TestFailingHooksDoNotBlock(t *testing.T) {
	tc := startTestCluster(t, onePair, func(c *Config) {
		c.Node.OnPromote = "echo promote-broke; exit 3"
		c.Node.OnDemote = "echo demote-broke; exit 4"
	})
	tc.registered()
	r, err := api.NewClient(tc.leader().APIAddr()).Promote(context.Background(), "c-standby")
	if err != nil {
		t.Fatalf("promote c-standby: %v", err)
	}
	if !strings.Contains(r.Message, "demoted first and its on_demote finished") {
		t.Errorf("promote answer %q; want the demotion first, its hook finished", r.Message)
	}
	tc.waitFor(10*time.Second, "both hooks reported", func() bool {
		s := tc.leader().State()
		for _, n := range []string{"b-active", "c-standby"} {
			if s.Nodes[n].HookEpoch < s.Nodes[n].RoleEpoch {
				return false
			}
		}
		return true
	})
	s := tc.leader().State()
	want := map[string]string{"b-active": "on_demote failed: exit status 4: demote-broke", "c-standby": "on_promote failed: exit status 3: promote-broke"}
	for node, w := range want {
		found := false
		for _, e := range s.NodeHistory(node) {
			if e.Kind == fsm.EventHook && strings.Contains(e.Cause, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("history of %s has no hook event %q", node, w)
		}
	}
	if s.Nodes["c-standby"].Role != fsm.RoleActive || s.Nodes["b-active"].Role != fsm.RoleStandby {
		t.Errorf("roles c-standby=%s b-active=%s; want the switchover done", s.Nodes["c-standby"].Role, s.Nodes["b-active"].Role)
	}
}
