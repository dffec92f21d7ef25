package cluster

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
)

// TestEndToEndMatchAllAndPlanKeys runs real lpds whose target `multi`
// (match: all, by exe) has two processes on each node, and checks from the
// targets' own output: a failing trial rolls both of the standby's
// processes back (the active's never patched); a plan with mode: dlopen,
// consistency: entry and apply_timeout brings a C++ module (refused in
// inject mode) to all four, each node's engine logging those options; each
// node's apply pause is in the plan; and a process that starts matching
// later is patched too.
func TestEndToEndMatchAllAndPlanKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three lpd processes")
	}
	requirePtrace(t)
	buildFixtures(t)
	procDir := t.TempDir()
	svcs := map[string][]*service{}
	bins := map[string]string{}
	specs := []lpdSpec{{name: "w", role: "witness", server: true}}
	for _, n := range []struct{ name, role string }{{"a1", "active"}, {"b1", "standby"}} {
		// A copy of svc per node: its exe names this node's processes only.
		bin := filepath.Join(procDir, n.name, "svcm")
		if err := os.MkdirAll(filepath.Dir(bin), 0o700); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(built.svc)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o700); err != nil {
			t.Fatal(err)
		}
		bins[n.name] = bin
		for _, i := range []string{"1", "2"} {
			s := spawnServiceOf(t, bin, procDir, n.name+"-"+i)
			s.waitValue(t, 42, 5*time.Second)
			svcs[n.name] = append(svcs[n.name], s)
		}
		specs = append(specs, lpdSpec{name: n.name, pair: "pair-1", role: n.role, server: true,
			targets: "  multi: { exe: " + bin + ", match: all }\n"})
	}
	// memberlist's LAN timing: a loaded machine does not make a node
	// suspect, which would fail a trial for another reason.
	c := startLPDs(t, specs, "--gossip-timing", "memberlist-lan")
	var cxxPlan string // the plan of the second subtest
	changes := func(node string) [][]int {
		var out [][]int
		for _, s := range svcs[node] {
			out = append(out, s.changes())
		}
		return out
	}

	t.Run("a failing trial rolls every process back", func(t *testing.T) {
		id := c.submitPlanOn(t, "b1", "fail.yaml", "name: fail\npatch: fix.so\ntarget: multi\ntrial: 3s\nprogress_deadline: 2m\n"+
			"health:\n  - name: always-fails\n    exec: 'false'\n    interval: 500ms\n    failures: 1\n")
		pd := c.waitPlanState("b1", id, fsm.PlanRolledBack, 90*time.Second)
		if !strings.Contains(pd.Plan.Reason, "always-fails") {
			t.Errorf("reason %q; want the failing check always-fails", pd.Plan.Reason)
		}
		for _, s := range svcs["b1"] {
			s.waitValue(t, 42, 20*time.Second)
		}
		if got := changes("b1"); !slices.EqualFunc(got, [][]int{{42, 1041, 42}, {42, 1041, 42}}, slices.Equal) {
			t.Errorf("b1's two processes printed %v; want [42 1041 42] each (both patched, both reverted)", got)
		}
		if got := changes("a1"); !slices.EqualFunc(got, [][]int{{42}, {42}}, slices.Equal) {
			t.Errorf("a1's two processes printed %v; want [42] each (never patched)", got)
		}
	})

	t.Run("mode dlopen, consistency entry and apply_timeout reach every node's engine", func(t *testing.T) {
		path := c.writePlan("cxx.yaml", "name: cxx\npatch: fixcxx.so\ntarget: multi\ntrial: 1s\nprogress_deadline: 2m\n"+
			"mode: dlopen\nconsistency: entry\napply_timeout: 3s\n")
		out, errOut, code := c.ctl("b1", "plan", "submit", path, "--wait")
		if code != 0 {
			t.Fatalf("plan submit --wait: exit %d; stderr %q; stdout %q", code, errOut, out)
		}
		id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
		cxxPlan = id
		for _, node := range []string{"a1", "b1"} {
			for _, s := range svcs[node] {
				s.waitValue(t, 2042, 10*time.Second)
			}
			// One apply per process, each with the plan's options.
			if n := c.logCount(node, "(mode dlopen, consistency entry, timeout 3s)"); n != 2 {
				t.Errorf("%s's log has %d applies with the plan's engine options; want 2 (one per process)", node, n)
			}
		}
		for node, want := range map[string][][]int{"b1": {{42, 1041, 42, 2042}, {42, 1041, 42, 2042}}, "a1": {{42, 2042}, {42, 2042}}} {
			if got := changes(node); !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("%s's processes printed %v; want %v", node, got, want)
			}
		}
		jsonOut, errOut, code := c.ctl("w", "plan", "show", id, "-o", "json")
		if code != 0 {
			t.Fatalf("plan show -o json: exit %d; stderr %q", code, errOut)
		}
		var pd api.PlanDetail
		if err := json.Unmarshal([]byte(jsonOut), &pd); err != nil {
			t.Fatalf("plan show -o json: %v", err)
		}
		if s := pd.Plan.Spec; s.Mode != "dlopen" || s.Consistency != "entry" || s.ApplyTimeout != 3*time.Second {
			t.Errorf("plan spec engine options = %q %q %v; want dlopen entry 3s", s.Mode, s.Consistency, s.ApplyTimeout)
		}
		for _, n := range pd.Nodes {
			t.Logf("node %s: the engine's longest stop applying the C++ module to its %d processes: %v", n.Node, len(n.Processes), n.ApplyPause)
			if n.ApplyPause <= 0 {
				t.Errorf("node %s: apply_pause %v; want the engine's pause", n.Node, n.ApplyPause)
			}
			var pids []int
			for _, p := range n.Processes {
				pids = append(pids, p.Pid)
				if !slices.Equal(p.Active, []string{"fix-answer-cxx"}) {
					t.Errorf("node %s pid %d runs %v; want [fix-answer-cxx]", n.Node, p.Pid, p.Active)
				}
			}
			var want []int
			for _, s := range svcs[n.Node] {
				want = append(want, s.pid)
			}
			slices.Sort(want)
			if !slices.Equal(pids, want) {
				t.Errorf("node %s observed processes %v; want %v", n.Node, pids, want)
			}
		}
		text, _, _ := c.ctl("w", "plan", "show", id)
		if !strings.Contains(text, "engine:   mode dlopen, consistency entry, apply_timeout 3s") || !strings.Contains(text, "PAUSE") {
			t.Errorf("plan show:\n%s\nwant the engine line and a PAUSE column", text)
		}
	})

	t.Run("a process that starts matching later is patched", func(t *testing.T) {
		s := spawnServiceOf(t, bins["a1"], procDir, "a1-3")
		s.waitValue(t, 2042, 20*time.Second)
		c.waitFor(20*time.Second, "a1's third process observed", func() bool {
			pd, err := c.client("w").Plan(context.Background(), cxxPlan)
			if err != nil {
				return false
			}
			for _, n := range pd.Nodes {
				if n.Node == "a1" {
					return len(n.Processes) == 3 && n.Converged
				}
			}
			return false
		})
	})
}
