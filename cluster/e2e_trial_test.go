package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// submitPlan submits a plan file through lpctl on node w and returns its id.
func (c *e2eCluster) submitPlan(t *testing.T, name, body string) string {
	t.Helper()
	return c.submitPlanOn(t, "w", name, body)
}

// submitPlanOn submits a plan file through lpctl on node and returns its id.
func (c *e2eCluster) submitPlanOn(t *testing.T, node, name, body string) string {
	t.Helper()
	out, errOut, code := c.ctl(node, "plan", "submit", c.writePlan(name, body))
	if code != 0 {
		t.Fatalf("plan submit %s: exit %d; stderr %q", name, code, errOut)
	}
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}

// waitPhase waits until plan id is running at phase.
func (c *e2eCluster) waitPhase(id string, phase fsm.Phase, d time.Duration) {
	c.t.Helper()
	c.waitFor(d, "plan "+id+" at "+string(phase), func() bool {
		pd, err := c.client("w").Plan(context.Background(), id)
		if err == nil && pd.Plan.State.Terminal() {
			c.t.Fatalf("plan %s is %s (%s) before reaching %s", id, pd.Plan.State, pd.Plan.Reason, phase)
		}
		return err == nil && pd.Plan.State == fsm.PlanRunning && pd.Plan.Phase == phase
	})
}

// TestTrialEndToEnd checks the trial rules on real lpd processes and real
// targets, from the targets' own output: a trial too short for its checks
// is refused, a check that never produced a result fails the trial, and a
// patched target killed and restarted at once during its trial rolls the
// plan back.
func TestTrialEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five lpd processes")
	}
	// memberlist's LAN timing: a loaded machine does not make a node
	// suspect, which would fail a trial for another reason than the one
	// each subtest checks.
	c := startE2E(t, "--gossip-timing", "memberlist-lan")

	t.Run("a trial shorter than a check can fail is refused", func(t *testing.T) {
		before := c.planCount("w")
		path := c.writePlan("short.yaml", "name: short\npatch: fix.so\ntarget: svc\npairs: [pair-1]\ntrial: 2s\n"+
			"health:\n  - name: always-fails\n    exec: 'false'\n    interval: 1s\n    failures: 3\n")
		out, errOut, code := c.ctl("w", "plan", "submit", path)
		if code == 0 {
			t.Fatalf("plan submit: exit 0 (stdout %q); want a refusal", out)
		}
		want := "check always-fails needs to fail (failures 3 × interval 1s): make trial at least 3s"
		if lines := strings.Count(strings.TrimRight(errOut, "\n"), "\n") + 1; lines != 1 || !strings.Contains(errOut, want) {
			t.Errorf("stderr %q; want one line containing %q", errOut, want)
		}
		if after := c.planCount("w"); after != before {
			t.Errorf("plans after the refusal = %d; want %d", after, before)
		}
	})

	t.Run("a check that never produced a result fails the trial", func(t *testing.T) {
		// The check's first run outlasts the trial: it never produces a
		// result, which must count as failing, not as passing.
		id := c.submitPlan(t, "never.yaml", "name: never\npatch: fix.so\ntarget: svc\npairs: [pair-1]\ntrial: 2s\nprogress_deadline: 2m\n"+
			"health:\n  - name: never-answers\n    exec: 'sleep 60'\n    timeout: 50s\n    interval: 1s\n    failures: 1\n")
		pd := c.waitPlanState("w", id, fsm.PlanRolledBack, 60*time.Second)
		if !strings.Contains(pd.Plan.Reason, "never-answers") || !strings.Contains(pd.Plan.Reason, "b1") {
			t.Errorf("reason %q; want it to name the check never-answers and node b1", pd.Plan.Reason)
		}
		c.procs["b1"].svc.waitValue(t, 42, 10*time.Second)
		if got := c.procs["b1"].svc.changes(); !slices.Equal(got, []int{42, 1041, 42}) {
			t.Errorf("b1's service printed %v; want [42 1041 42] (patched once, reverted once)", got)
		}
		if got := c.procs["a1"].svc.changes(); !slices.Equal(got, []int{42}) {
			t.Errorf("a1's service printed %v; want [42] (never patched)", got)
		}
	})

	t.Run("a target killed and restarted at once during its trial rolls the plan back", func(t *testing.T) {
		id := c.submitPlan(t, "crash.yaml", "name: crash\npatch: fix.so\ntarget: svc\npairs: [pair-2]\ntrial: 30s\nprogress_deadline: 5m\n")
		c.waitPhase(id, fsm.PhaseStandbyTrial, 60*time.Second)
		p := c.procs["b2"]
		old := p.svc
		oldPid := old.pid
		if got := old.value(); got != 1041 {
			t.Fatalf("b2's service prints %d in its trial; want 1041", got)
		}
		// kill -9 and restart as a fast supervisor would: the new
		// process (started just before, so that the switch takes well
		// under 50ms even on a busy machine) takes over the pidfile at
		// once.
		next := spawnService(c.t, c.dir, "svc-b2-restarted")
		start := time.Now()
		old.cmd.Process.Kill()
		if err := os.WriteFile(old.pidfile, []byte(fmt.Sprintf("%d\n", next.pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		old.cmd.Wait()
		next.pidfile, p.svc = old.pidfile, next
		t.Logf("b2's target killed (pid %d) and replaced (pid %d) in %v", oldPid, next.pid, took)
		pd := c.waitPlanState("w", id, fsm.PlanRolledBack, 60*time.Second)
		if !strings.Contains(pd.Plan.Reason, "b2") || !strings.Contains(pd.Plan.Reason, fmt.Sprintf("pid %d", oldPid)) ||
			!strings.Contains(pd.Plan.Reason, "during its trial") {
			t.Errorf("reason %q; want it to name b2, the old pid %d and the trial", pd.Plan.Reason, oldPid)
		}
		if got := c.procs["a2"].svc.changes(); !slices.Equal(got, []int{42}) {
			t.Errorf("a2's service printed %v; want [42] (never patched)", got)
		}
		p.svc.waitValue(t, 42, 20*time.Second)
	})
}
