package cluster

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"lp/fsm"
)

// timedFake is the fake patcher with pauses, as the engine patcher reports
// them.
type timedFake struct{ *fakePatcher }

func (f timedFake) ApplyTimed(ctx context.Context, pid int, path string, data []byte, o PatchOptions) (time.Duration, error) {
	return 150 * time.Microsecond, f.Apply(ctx, pid, path, data, o)
}

func (f timedFake) RevertTimed(ctx context.Context, pid int, id string, o PatchOptions) (time.Duration, error) {
	return 200 * time.Microsecond, f.Revert(ctx, pid, id, o)
}

// scrape GETs a node's /metrics and parses it with the Prometheus text
// parser.
func scrape(t *testing.T, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + n.APIAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", n.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", n.Name(), resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s's metrics: %v", n.Name(), err)
	}
	return fams
}

// find returns the metric of family name whose labels include want.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f, ok := fams[name]
	if !ok {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// TestMetricsAfterAPlan runs a plan on three in-process nodes and scrapes
// each: the state metrics match the node's FSM replica, and each node's own
// metrics (engine pauses) are its own, though the nodes share a process.
// The plan may complete or, on a loaded machine, roll back (a member
// suspected): both end states are checked the same way.
func TestMetricsAfterAPlan(t *testing.T) {
	tc := startTestCluster(t, onePair, func(c *Config) { c.Patcher = timedFake{c.Patcher.(*fakePatcher)} })
	tc.leader()
	tc.registered()
	id := tc.submit("fix1", 300*time.Millisecond, nil)
	var end fsm.PlanState
	tc.waitFor(30*time.Second, "the plan to end", func() bool {
		p := tc.leader().State().Plans[id]
		end = p.State
		return end == fsm.PlanCompleted || end == fsm.PlanRolledBack
	})
	if end == fsm.PlanCompleted {
		if _, err := tc.leader().apply(&fsm.RollbackPlan{Plan: id, Reason: "operator rollback", Staged: true}); err != nil {
			t.Fatal(err)
		}
		tc.waitPlan(id, fsm.PlanRolledBack, 20*time.Second)
	}
	paused := 0
	for name, n := range tc.nodes {
		// The replica and the scrape agree once the replica has caught up
		// with the end of the plan; members may still flap on a busy
		// machine, so compare until both are read at a quiet moment.
		var diffs []string
		tc.waitFor(20*time.Second, name+"'s metrics to match its state", func() bool {
			fams := scrape(t, n)
			s := n.State()
			diffs = metricsDiff(fams, s, id)
			return len(diffs) == 0
		})
		fams := scrape(t, n)
		if fams["lp_trial_seconds"].GetType() != dto.MetricType_HISTOGRAM {
			t.Errorf("%s: lp_trial_seconds is %v; want a histogram", name, fams["lp_trial_seconds"].GetType())
		}
		if pause := fams["lp_engine_pause_seconds"]; pause != nil {
			if pause.GetType() != dto.MetricType_HISTOGRAM {
				t.Errorf("%s: lp_engine_pause_seconds is %v; want a histogram", name, pause.GetType())
			}
			for _, m := range pause.GetMetric() {
				if m := find(fams, "lp_engine_pause_seconds", map[string]string{"node": name, "target": "svc"}); m == nil {
					t.Errorf("%s: lp_engine_pause_seconds has a series of another node: %v", name, pause)
				}
				paused += int(m.GetHistogram().GetSampleCount())
			}
		}
	}
	// The standby was patched (150µs) and rolled back (200µs) at least.
	if paused < 2 {
		t.Errorf("lp_engine_pause_seconds counts %d pauses over the nodes; want at least the standby's apply and revert", paused)
	}
}

// metricsDiff lists where the scraped metrics disagree with state s.
func metricsDiff(fams map[string]*dto.MetricFamily, s *fsm.State, id string) []string {
	var diffs []string
	want := func(cond bool, format string, args ...any) {
		if !cond {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	for _, st := range fsm.PlanStates() {
		k := 0
		for _, p := range s.Plans {
			if p.State == st {
				k++
			}
		}
		m := find(fams, "lp_plans", map[string]string{"state": string(st)})
		want(m != nil && m.GetGauge().GetValue() == float64(k), "lp_plans{%s} = %v; want %d", st, m, k)
	}
	for _, nd := range s.Nodes {
		for _, r := range []fsm.Role{fsm.RoleActive, fsm.RoleStandby, fsm.RoleWitness} {
			v := 0.0
			if nd.Role == r {
				v = 1
			}
			m := find(fams, "lp_member_role", map[string]string{"node": nd.Name, "role": string(r)})
			want(m != nil && m.GetGauge().GetValue() == v, "lp_member_role{%s,%s} = %v; want %v", nd.Name, r, m, v)
		}
		h := 0.0
		if nd.Status == fsm.StatusAlive && nd.Healthy {
			h = 1
		}
		m := find(fams, "lp_member_healthy", map[string]string{"node": nd.Name})
		want(m != nil && m.GetGauge().GetValue() == h, "lp_member_healthy{%s} = %v; want %v", nd.Name, m, h)
	}
	trials := 0
	for _, st := range s.Plans[id].Steps {
		if !st.TrialStarted.IsZero() && !st.TrialPassed.IsZero() {
			trials++
		}
	}
	m := find(fams, "lp_trial_seconds", nil)
	want(m != nil && m.GetHistogram().GetSampleCount() == uint64(trials), "lp_trial_seconds count = %v; want %d", m, trials)
	rollbacks := 0.0
	if f := fams["lp_rollbacks_total"]; f != nil {
		for _, m := range f.GetMetric() {
			rollbacks += m.GetCounter().GetValue()
		}
	}
	want(rollbacks == 1, "lp_rollbacks_total sums to %v; want 1 (the plan rolled back once)", rollbacks)
	return diffs
}

func TestRollbackCause(t *testing.T) {
	for cause, want := range map[string]string{
		"operator rollback": "operator",
		"health check sip failed on b1 during its trial: refused":                                   "health",
		"node b1 is unhealthy (sip-port: refused)":                                                  "health",
		"node b1 is dead in gossip":                                                                 "member",
		"target sipd is not running on b1":                                                          "process",
		"patching sipd on b1 failed: refusing":                                                      "apply",
		"progress deadline passed at 2026-01-01T00:00:00Z":                                          "deadline",
		"failover in pair p1 while b1 runs untried patch x (failover_during_trial: rollback-first)": "failover",
		"something new": "other",
	} {
		if got := rollbackCause(cause); got != want {
			t.Errorf("rollbackCause(%q) = %q; want %q", cause, got, want)
		}
	}
}
