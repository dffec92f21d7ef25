package cluster

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// BenchmarkControlPlane measures, for in-process clusters on loopback (real
// TCP raft, real gossip, a fake patcher so that only the control plane is
// timed; a witness and pairs, 3 voters, 5 from 9 nodes):
//
//   - raft apply latency, leader Apply to FSM result, over 300 commands
//     (p50, p99);
//   - the overhead of a plan beyond its trial times, one pair at a time
//     (max_parallel 1) and with max_parallel 4: submission to completed
//     minus 2 x waves x trial, the median over 3 plans.
//
// LP_BENCH_NODES lists the cluster sizes (default "3,9"; the issue's
// figures: LP_BENCH_NODES=3,9,33,101).
//
// Run: go test -run '^$' -bench ControlPlane -benchtime 1x ./cluster/
// The figures are reported as metrics on the benchmark line, whatever b.N.
func BenchmarkControlPlane(b *testing.B) {
	sizes := []int{3, 9}
	if v := os.Getenv("LP_BENCH_NODES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 3 || n%2 == 0 {
				b.Fatalf("LP_BENCH_NODES=%q: want odd sizes of 3 or more (a witness and pairs)", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, size := range sizes {
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
			b.ReportMetric(ms(lat[len(lat)/2]), "apply-p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "apply-p99-ms")

			// Plan overhead, serial and in waves.
			const trial = 300 * time.Millisecond
			pairs := (size - 1) / 2
			for _, mp := range []int{1, 4} {
				waves := 1 + (pairs-1+mp-1)/mp
				var over []time.Duration
				for i := range 3 {
					start := time.Now()
					id := tc.submit(fmt.Sprintf("fix-mp%d-%d", mp, i), trial, func(s *fsm.PlanSpec) {
						s.MaxParallel = mp
						s.ProgressDeadline = 10 * time.Minute
					})
					tc.waitPlan(id, fsm.PlanCompleted, 10*time.Minute)
					over = append(over, time.Since(start)-time.Duration(2*waves)*trial)
				}
				slices.Sort(over)
				b.ReportMetric(ms(over[len(over)/2]), fmt.Sprintf("overhead-mp%d-ms", mp))
				fmt.Printf("control plane: %3d nodes (%d pairs), max_parallel %d: %d waves, plan overhead beyond trials %v (median of 3)\n",
					size, pairs, mp, waves, over[len(over)/2].Round(time.Millisecond))
			}
			b.ReportMetric(float64(pairs), "pairs")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startBenchCluster is startTestCluster for a benchmark.
func startBenchCluster(b *testing.B, specs []nodeSpec) *testCluster {
	b.Helper()
	start := time.Now()
	tc := startTestCluster(b, specs, nil)
	// Each node joins gossip, then raft (one configuration change each)
	// and registers: the time grows with the cluster.
	tc.registeredWithin(15*time.Second + time.Duration(len(specs))*time.Second)
	fmt.Printf("control plane: %3d nodes started and registered in %v\n", len(specs), time.Since(start).Round(time.Millisecond))
	return tc
}
