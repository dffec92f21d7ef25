package cluster

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"lp/config"
	"lp/fsm"
	"lp/internal/auth"
)

// BenchmarkTLSCost measures what mutual TLS costs the control plane, plain
// and TLS in the same run, on an in-process cluster of 3 nodes (witness and
// one pair, all voters; real raft over TCP or TLS, the API over HTTP or
// HTTPS, a fake patcher):
//
//   - raft apply latency, leader Apply to FSM result, over 300 commands
//     (p50, p99);
//   - a plan's overhead beyond its trials (submission to completed minus 2
//     x trial; every agent report goes through the API and raft), the
//     median over 5 plans.
//
// Run: go test -run '^$' -bench TLSCost -benchtime 1x ./cluster/
func BenchmarkTLSCost(b *testing.B) {
	pki := b.TempDir()
	names := []string{"w", "a1", "b1"}
	if _, err := auth.Init(auth.InitOptions{Dir: pki, Nodes: names}); err != nil {
		b.Fatal(err)
	}
	specs := []nodeSpec{{name: "w", role: "witness", server: true},
		{name: "a1", pair: "pair-1", role: "active", server: true},
		{name: "b1", pair: "pair-1", role: "standby", server: true}}
	type figures struct{ p50, p99, over time.Duration }
	got := map[string]figures{}
	for _, mode := range []string{"plain", "tls"} {
		b.Run("mode="+mode, func(b *testing.B) {
			tune := func(c *Config) {
				if mode == "tls" {
					c.Node.TLS = config.TLS{CA: filepath.Join(pki, "ca.pem"),
						Cert: filepath.Join(pki, c.Node.Node+".pem"), Key: filepath.Join(pki, c.Node.Node+"-key.pem")}
				}
			}
			tc := startTestCluster(b, specs, tune)
			tc.registered()
			l := tc.leader()
			var lat []time.Duration
			for i := range 300 {
				cmd := &fsm.ReportObserved{Node: "a1", Target: "svc", Pid: tc.pids["a1"], Error: fmt.Sprint(i % 2)}
				start := time.Now()
				if _, err := l.apply(cmd); err != nil {
					b.Fatalf("apply: %v", err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			// The agent corrects the observation faked above.
			tc.waitFor(10*time.Second, "a1's observation corrected", func() bool {
				return l.State().Observed["a1"]["svc"].Error == ""
			})
			const trial = 300 * time.Millisecond
			var over []time.Duration
			for i := range 5 {
				start := time.Now()
				id := tc.submit(fmt.Sprintf("fix-%s-%d", mode, i), trial, nil)
				tc.waitPlan(id, fsm.PlanCompleted, time.Minute)
				over = append(over, time.Since(start)-2*trial)
			}
			slices.Sort(over)
			f := figures{lat[len(lat)/2], lat[len(lat)*99/100], over[len(over)/2]}
			got[mode] = f
			b.ReportMetric(ms(f.p50), "apply-p50-ms")
			b.ReportMetric(ms(f.p99), "apply-p99-ms")
			b.ReportMetric(ms(f.over), "plan-overhead-ms")
		})
	}
	p, t := got["plain"], got["tls"]
	if p.p50 > 0 && p.over > 0 {
		fmt.Printf("TLS cost, 3 nodes, medians of one run:\n%-18s %10s %10s %8s\n%-18s %10.2f %10.2f %7.2fx\n%-18s %10.2f %10.2f %7.2fx\n%-18s %10.1f %10.1f %7.2fx",
			"median (ms)", "plain", "tls", "tls/plain",
			"raft apply p50", ms(p.p50), ms(t.p50), float64(t.p50)/float64(p.p50),
			"raft apply p99", ms(p.p99), ms(t.p99), float64(t.p99)/float64(p.p99),
			"plan overhead", ms(p.over), ms(t.over), float64(t.over)/float64(p.over))
		fmt.Println()
	}
}
