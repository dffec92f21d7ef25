package cluster

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/fsm"
	"lp/heartbeat"
)

// BenchmarkControlPlane measures, for in-process clusters on loopback (real
// TCP raft, real gossip, a fake patcher so that only the control plane is
// timed; a witness and pairs, 3 voters, 5 from 9 nodes):
//
//   - raft apply latency, leader Apply to FSM result, over 300 commands
//     (p50, p99);
//   - the overhead of a plan beyond its trial times, one pair at a time
//     (max_parallel 1) and in waves (max_parallel 4 and 16): submission to
//     completed minus 2 x waves x trial, the median over 3 plans.
//
// LP_BENCH_NODES lists the cluster sizes (default "3,9,33,101": about 12
// minutes), LP_BENCH_PARALLEL the max_parallel values (default "1,4,16").
//
// Run: go test -run '^$' -bench ControlPlane -benchtime 1x -timeout 50m ./cluster/
// (docs/scale.md has the figures and what differs from a real cluster).
// The figures are reported as metrics on the benchmark line, whatever b.N.
func BenchmarkControlPlane(b *testing.B) {
	sizes := []int{3, 9, 33, 101}
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
	parallels := []int{1, 4, 16}
	if v := os.Getenv("LP_BENCH_PARALLEL"); v != "" {
		parallels = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("LP_BENCH_PARALLEL=%q: want max_parallel values of 1 or more", v)
			}
			parallels = append(parallels, n)
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
			tc := startBenchCluster(b, specs, size > 33)
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
			for _, mp := range parallels {
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
					if testing.Verbose() {
						printPlanGaps(tc.leader(), id, start)
					}
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

// printPlanGaps prints where a plan's time went: the time between each of
// its history events and the one before (the first from the submission),
// summed by the pair of event kinds, largest first.
func printPlanGaps(l *Node, id string, submitted time.Time) {
	var hist []fsm.Event
	l.fsm.View(func(s *fsm.State) {
		// the plan's events and the nodes' observations during it
		for _, e := range s.History {
			if e.Plan == id || e.Kind == fsm.EventObserved && !e.Time.Before(submitted) {
				hist = append(hist, e)
			}
		}
	})
	sum := map[string]time.Duration{}
	count := map[string]int{}
	prev, prevKind := submitted, "submit"
	for _, e := range hist {
		k := prevKind + " -> " + string(e.Kind)
		if e.Kind == fsm.EventPlanPhase || e.Kind == fsm.EventPlanState {
			k += "(" + e.To[strings.LastIndex(e.To, "/")+1:] + ")"
		}
		sum[k] += e.Time.Sub(prev)
		count[k]++
		prev, prevKind = e.Time, k[strings.LastIndex(k, " ")+1:]
	}
	keys := slices.Collect(maps.Keys(sum))
	slices.SortFunc(keys, func(a, b string) int { return int(sum[b] - sum[a]) })
	fmt.Printf("  %s: %d events over %v\n", id, len(hist), prev.Sub(submitted).Round(time.Millisecond))
	for _, k := range keys {
		fmt.Printf("    %-60s %4d x, %8v total, %8v mean\n", k, count[k], sum[k].Round(time.Millisecond), (sum[k] / time.Duration(count[k])).Round(100*time.Microsecond))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startBenchCluster is startTestCluster for a benchmark. relaxed: the
// failure detectors get memberlist's LAN timing (1 s probes) and raft three
// times its default timeouts. Past 33 nodes the one test process, which
// runs every node on this machine's CPUs, pauses long enough now and then
// (a garbage collection over every node's heap, a burst of commits woken
// in every node at once) for lpd's 50 ms probe timeout and 600 ms raft
// heartbeat timeout to take the pause for failures: at 101 nodes a burst
// of 300 commits had every member suspect the others and the leader step
// down. The detectors' timing decides how soon a failure is seen, not how
// long a commit or a plan step takes, which is what is measured.
func startBenchCluster(b *testing.B, specs []nodeSpec, relaxed bool) *testCluster {
	b.Helper()
	start := time.Now()
	// In-process nodes share this machine's one disk, where a real
	// cluster has a disk per node: every non-voter's fsync of every entry
	// would queue in one journal with the voters' (and commit latency
	// grow with the node count for that reason alone). Non-voters keep
	// their raft store in memory-backed files (tmpfs, when /dev/shm is
	// one); voters, whose fsyncs a commit waits for, keep theirs on disk.
	shm := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() && os.Getenv("LP_BENCH_SHM") != "0" {
		d, err := os.MkdirTemp("/dev/shm", "lp-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		shm = d
	}
	tc := startTestCluster(b, specs, func(c *Config) {
		if shm != "" && !c.Node.Server {
			c.Node.DataDir = filepath.Join(shm, c.Node.Node)
		}
		if relaxed {
			c.Gossip = heartbeat.MemberlistDefaultLAN()
			c.HeartbeatTimeout *= 3
			c.ElectionTimeout *= 3
			c.LeaderLeaseTimeout *= 3
		}
	})
	// Each node joins gossip, then raft (one configuration change each)
	// and registers: the time grows with the cluster.
	tc.registeredWithin(15*time.Second + time.Duration(len(specs))*time.Second)
	timing := "lpd's default failure detection"
	if relaxed {
		timing = "relaxed failure detection (gossip lan, raft timeouts x3)"
	}
	fmt.Printf("control plane: %3d nodes started and registered in %v (%s)\n", len(specs), time.Since(start).Round(time.Millisecond), timing)
	return tc
}
