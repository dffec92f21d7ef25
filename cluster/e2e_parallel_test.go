package cluster

import (
	"strings"
	"testing"
	"time"
)

// TestEndToEndMaxParallel: three pairs with max_parallel: 2, real lpds and
// real targets. From the targets' own output: pair-1 alone, standby first;
// then pair-2 and pair-3 together, both standbys before either active.
func TestEndToEndMaxParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts seven lpd processes")
	}
	c := startE2EWith(t, []e2eSpec{
		{"w", "", "witness", true},
		{"a1", "pair-1", "active", true},
		{"b1", "pair-1", "standby", true},
		{"a2", "pair-2", "active", false},
		{"b2", "pair-2", "standby", false},
		{"a3", "pair-3", "active", false},
		{"b3", "pair-3", "standby", false},
	})
	all := []string{"a1", "b1", "a2", "b2", "a3", "b3"}
	path := c.writePlan("plan.yaml", "name: fix-answer\npatch: fix.so\ntarget: svc\npairs: [pair-1, pair-2, pair-3]\ntrial: 2s\nmax_parallel: 2\nprogress_deadline: 3m\n")
	stop := c.firstPrinted(all, 1041)
	out, errOut, code := c.ctl("b3", "plan", "submit", path, "--wait")
	firstPatched := stop()
	if code != 0 {
		t.Fatalf("plan submit --wait: exit %d; stderr %q; stdout %q", code, errOut, out)
	}
	// Strictly before: the first pair alone, standby first; each standby of
	// the wave before each active of the wave, so b3 (third pair) is
	// patched before a2 (second pair): the two pairs went together.
	for _, order := range [][2]string{
		{"b1", "a1"}, {"a1", "b2"}, {"a1", "b3"},
		{"b2", "a2"}, {"b3", "a3"}, {"b2", "a3"}, {"b3", "a2"},
	} {
		first, second := firstPatched[order[0]], firstPatched[order[1]]
		if first.IsZero() || second.IsZero() || !first.Before(second) {
			t.Errorf("targets' output: %s patched at %v, %s at %v; want %s strictly first",
				order[0], first.Format(time.StampMilli), order[1], second.Format(time.StampMilli), order[0])
		}
	}
	id := strings.SplitN(out, "\n", 2)[0]
	d := c.plan("w", id)
	var phases []string
	for _, e := range d.History {
		if e.Kind == "plan_phase" {
			phases = append(phases, e.To)
		}
	}
	want := []string{"pair-1/standby_apply", "pair-1/standby_trial", "pair-1/active_apply", "pair-1/active_trial",
		"pair-2+pair-3/standby_apply", "pair-2+pair-3/standby_trial", "pair-2+pair-3/active_apply", "pair-2+pair-3/active_trial"}
	if strings.Join(phases, " ") != strings.Join(want, " ") {
		t.Errorf("phases = %v; want %v", phases, want)
	}
	for name, s := range c.services(all...) {
		if got := s.value(); got != 1041 {
			t.Errorf("%s's service prints %d; want 1041 (patched)", name, got)
		}
	}
}
