package cluster

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// BenchmarkRetention submits and rolls back plans one after another on an
// in-process cluster (a witness and one pair on loopback: real TCP raft,
// real gossip, the fake patcher) with the leader pruning the state, and
// prints at 10, 100, 1,000, ... plans: the leader's snapshot size, its
// raft.db size and log entries, the process RSS and Go heap, and the
// leader's apply latency (median of 50 no-op commands). With bounded
// state the figures level off.
//
// Each plan: a new module, submit, wait for the standby's trial (patched
// there), roll back, wait for rolled_back. LP_BENCH_PLANS sets how many
// (default 100, about half a minute; 1000 takes about five).
//
// Run: LP_BENCH_PLANS=1000 go test -run '^$' -bench Retention -benchtime 1x ./cluster/
func BenchmarkRetention(b *testing.B) {
	total := 100
	if v := os.Getenv("LP_BENCH_PLANS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("LP_BENCH_PLANS=%q: want a positive number", v)
		}
		total = n
	}
	retention := fsm.Retention{History: 2000, HistoryAge: time.Hour, Plans: 50, BlobGrace: 5 * time.Second}
	tc := startTestCluster(b, []nodeSpec{
		{name: "w", role: "witness", server: true},
		{name: "a1", pair: "pair-1", role: "active", server: true},
		{name: "b1", pair: "pair-1", role: "standby", server: true},
	}, func(c *Config) {
		c.Retention = retention
		c.PruneInterval = 200 * time.Millisecond
	})
	tc.registered()
	fmt.Printf("retention: history %d events, %d terminal plans, modules %v after their last reference\n",
		retention.History, retention.Plans, retention.BlobGrace)
	fmt.Printf("%7s %12s %12s %12s %9s %9s %12s\n", "plans", "snapshot", "raft.db", "log-entries", "rss", "heap", "apply-p50")
	next := 10
	for i := 1; i <= total; i++ {
		id := tc.submit(fmt.Sprintf("fix-%d", i), time.Hour, func(s *fsm.PlanSpec) { s.ProgressDeadline = 0 })
		// A busy machine may fail a plan by itself (a node suspected in
		// gossip): then it rolls back on its own, which is as good here.
		tc.waitFor(time.Minute, "plan "+id+" in standby trial or ended", func() bool {
			p := tc.leader().State().Plans[id]
			return p.State == fsm.PlanRunning && p.Phase == fsm.PhaseStandbyTrial || p.State == fsm.PlanRollingBack || p.State.Terminal()
		})
		for tries := 0; ; tries++ {
			_, err := tc.leader().apply(&fsm.RollbackPlan{Plan: id, Reason: "benchmark"})
			if err == nil {
				break
			}
			if tries > 100 {
				b.Fatalf("rollback %s: %v", id, err)
			}
		}
		tc.waitFor(time.Minute, "plan "+id+" rolled back", func() bool {
			st := tc.leader().State().Plans[id].State
			return st == fsm.PlanRolledBack || st == fsm.PlanFailed
		})
		if i == next || i == total {
			printRetentionRow(b, tc, i)
			next *= 10
		}
	}
}

func printRetentionRow(b *testing.B, tc *testCluster, plans int) {
	b.Helper()
	l := tc.leader()
	// Let the leader prune what the last plans left.
	time.Sleep(2 * l.cfg.PruneInterval)
	var snap countWriter
	if err := fsm.WriteSnapshot(&snap, l.State()); err != nil {
		b.Fatal(err)
	}
	var dbSize int64
	if fi, err := os.Stat(filepath.Join(l.cfg.Node.DataDir, "raft.db")); err == nil {
		dbSize = fi.Size()
	}
	stats := l.raft.Stats()
	last, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
	snapIdx, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
	entries := last
	if snapIdx > 0 {
		entries = last - snapIdx + min(snapIdx, l.cfg.TrailingLogs) // raft keeps TrailingLogs behind a snapshot
	}
	var lat []time.Duration
	probe := &fsm.Prune{Retention: fsm.Retention{BlobGrace: 1000 * time.Hour}, Cause: "benchmark probe"}
	for tries := 0; len(lat) < 50; tries++ {
		start := time.Now()
		if _, err := l.apply(probe); err != nil {
			// A busy machine may move the leadership: measure on the new one.
			if tries > 500 {
				b.Fatalf("apply: %v", err)
			}
			l = tc.leader()
			continue
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("%7d %11.1fK %11.1fK %12d %8.1fM %8.1fM %10.2fms\n", plans,
		float64(snap.n)/1024, float64(dbSize)/1024, entries, float64(rssBytes())/(1<<20), float64(ms.HeapInuse)/(1<<20),
		float64(lat[len(lat)/2].Microseconds())/1000)
	b.ReportMetric(float64(snap.n), "snapshot-bytes")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "apply-p50-ms")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// rssBytes returns this process's resident set size (every in-process
// node together), 0 if unknown.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
