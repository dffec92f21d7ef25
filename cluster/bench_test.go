package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"lp/fsm"
)

// BenchmarkControlPlane measures, for in-process clusters of 3 and 9 nodes
// on loopback (real TCP raft, real gossip, a fake patcher so that only the
// control plane is timed):
//
//   - raft apply latency, leader Apply to FSM result, over 300 commands
//     (p50, p99);
//   - the overhead of a plan beyond its trial times: submission to completed
//     minus 2 x pairs x trial, the median over 3 plans.
//
// Run: go test -run '^$' -bench ControlPlane -benchtime 1x ./cluster/
// The figures are reported as metrics on the benchmark line, whatever b.N.
func BenchmarkControlPlane(b *testing.B) {
	for _, size := range []int{3, 9} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			specs := []nodeSpec{{name: "w", role: "witness", server: true}}
			voters := 3
			if size >= 9 {
				voters = 5
			}
			for i := 1; len(specs) < size; i++ {
				specs = append(specs,
					nodeSpec{name: fmt.Sprintf("a%d", i), pair: fmt.Sprintf("pair-%d", i), role: "active", server: len(specs) < voters},
					nodeSpec{name: fmt.Sprintf("b%d", i), pair: fmt.Sprintf("pair-%d", i), role: "standby", server: len(specs)+1 < voters})
			}
			tc := startBenchCluster(b, specs)
			l := tc.leader()

			// Raft apply latency.
			var lat []time.Duration
			for i := range 300 {
				cmd := &fsm.ReportObserved{Node: "a1", Target: "svc", Pid: tc.pids["a1"], Active: nil, Error: fmt.Sprint(i % 2)}
				start := time.Now()
				if _, err := l.apply(cmd); err != nil {
					b.Fatalf("apply: %v", err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			// Let the agent correct the observation we just faked.
			time.Sleep(500 * time.Millisecond)

			// Plan overhead.
			const trial = 300 * time.Millisecond
			pairs := (size - 1) / 2
			var over []time.Duration
			for i := range 3 {
				start := time.Now()
				id := tc.submit(fmt.Sprintf("fix%d", i), trial, nil)
				tc.waitPlan(id, fsm.PlanCompleted, time.Minute)
				over = append(over, time.Since(start)-time.Duration(2*pairs)*trial)
			}
			slices.Sort(over)
			b.ReportMetric(ms(lat[len(lat)/2]), "apply-p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "apply-p99-ms")
			b.ReportMetric(ms(over[len(over)/2]), "plan-overhead-ms")
			b.ReportMetric(float64(pairs), "pairs")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startBenchCluster is startTestCluster for a benchmark.
func startBenchCluster(b *testing.B, specs []nodeSpec) *testCluster {
	b.Helper()
	tc := startTestCluster(b, specs, nil)
	tc.registered()
	return tc
}
