package cluster

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
)

// BenchmarkFailover measures, with real lpd processes on loopback, for
// clusters of 3 and 9 nodes and for lp's gossip timing (lan-fast) beside
// memberlist's default LAN configuration (lpd --gossip-timing
// memberlist-lan):
//
//   - detection: SIGSTOP of the active's lpd to the "member event ...
//     kind=dead" line in the log of the raft leader (at the end of the run);
//   - failover: the same SIGSTOP to the start of on_promote on the standby
//     (the hook writes its start time); failover_after is 500ms.
//
// Each run stops the current active of pair-1, measures, resumes it and
// waits until it is back as standby with its on_demote done. Runs per
// configuration: LP_BENCH_RUNS (default 5); LP_BENCH_DEBUG=1 logs the lpd
// log lines of a run whose failover took over 3s. The table is printed at
// the end; the medians are also benchmark metrics.
//
// Run: go test -run '^$' -bench Failover -benchtime 1x -timeout 30m ./cluster/
func BenchmarkFailover(b *testing.B) {
	runs := 5
	if v, err := strconv.Atoi(os.Getenv("LP_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	type row struct {
		nodes              int
		timing             string
		detect, failover   []time.Duration
		detectMed, detectP float64
		failMed, failP     float64
		victimLed          int // runs in which the stopped active was the raft leader
	}
	var rows []row
	for _, size := range []int{3, 9} {
		for _, timing := range []string{"lan-fast", "memberlist-lan"} {
			b.Run(fmt.Sprintf("nodes=%d/timing=%s", size, timing), func(b *testing.B) {
				c := startFailoverCluster(b, size, timing)
				r := row{nodes: size, timing: timing}
				for i := range runs {
					d, f, led := c.failoverRun(b, i)
					if led {
						r.victimLed++
					}
					r.detect = append(r.detect, d)
					r.failover = append(r.failover, f)
				}
				r.detectMed, r.detectP = quantiles(r.detect)
				r.failMed, r.failP = quantiles(r.failover)
				b.ReportMetric(r.detectMed, "detect-p50-ms")
				b.ReportMetric(r.failMed, "failover-p50-ms")
				rows = append(rows, r)
			})
		}
	}
	if len(rows) == 0 {
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nfailover benchmark: %d runs per row, failover_after 500ms, SIGSTOP of the active's lpd\n", runs)
	fmt.Fprintf(&sb, "%-6s %-15s %12s %12s %12s %12s %11s\n", "nodes", "gossip timing", "detect p50", "detect p99", "failover p50", "failover p99", "victim led")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-6d %-15s %10.0fms %10.0fms %10.0fms %10.0fms %7d/%-3d\n", r.nodes, r.timing, r.detectMed, r.detectP, r.failMed, r.failP, r.victimLed, runs)
	}
	sb.WriteString("(victim led: runs in which the stopped active was the raft leader, so failover waited for an election too)\n")
	fmt.Print(sb.String())
}

// quantiles returns the median and the p99 (nearest rank) in milliseconds.
func quantiles(ds []time.Duration) (p50, p99 float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return ms(rank(0.5)), ms(rank(0.99))
}

// startFailoverCluster starts size lpd processes: witness w and pairs
// pair-1.. (a active, b standby); 3 voters for 3 nodes, 5 for 9.
func startFailoverCluster(b *testing.B, size int, timing string) *e2eCluster {
	voters := 3
	if size >= 9 {
		voters = 5
	}
	y := "failover_after: 500ms\n" + hookYAML
	specs := []lpdSpec{{name: "w", role: "witness", server: true}}
	for i := 1; len(specs) < size; i++ {
		pair := fmt.Sprintf("pair-%d", i)
		specs = append(specs,
			lpdSpec{name: fmt.Sprintf("a%d", i), pair: pair, role: "active", server: len(specs) < voters, yaml: y},
			lpdSpec{name: fmt.Sprintf("b%d", i), pair: pair, role: "standby", server: len(specs)+1 < voters, yaml: y})
	}
	return startLPDs(b, specs, "--gossip-timing", timing, "--log-level", "debug")
}

// failoverRun stops the active of pair-1 and returns the detection and
// failover times and whether the active was the raft leader, then restores
// the pair.
func (c *e2eCluster) failoverRun(b *testing.B, i int) (detect, failover time.Duration, led bool) {
	b.Helper()
	victim, standby := "a1", "b1"
	if m, _ := c.member("w", "b1"); m.Role == "active" {
		victim, standby = "b1", "a1"
	}
	before := len(c.hooks())
	led = c.leader() == victim
	c.signal(victim, syscall.SIGSTOP)
	stopped := time.Now()
	var promoted time.Time
	c.waitFor(60*time.Second, standby+"'s on_promote", func() bool {
		for _, h := range c.hooks()[before:] {
			if h.node == standby && h.hook == "on_promote" {
				promoted = h.at
				return true
			}
		}
		return false
	})
	leader := c.leader()
	var dead time.Time
	c.waitFor(10*time.Second, "the dead event in "+leader+"'s log", func() bool {
		dead = c.logEvent(leader, victim, "dead", stopped)
		return !dead.IsZero()
	})
	c.signal(victim, syscall.SIGCONT)
	c.waitMember("w", victim, "back as standby, on_demote done", 60*time.Second, func(m api.Member) bool {
		return m.Gossip == "alive" && m.Status == "alive" && m.Role == "standby" && !m.HookPending
	})
	c.waitMember("w", standby, "active, on_promote reported", 10*time.Second, func(m api.Member) bool {
		return m.Role == "active" && !m.HookPending && m.Health == "healthy"
	})
	detect, failover = dead.Sub(stopped), promoted.Sub(stopped)
	if os.Getenv("LP_BENCH_DEBUG") != "" && failover > 3*time.Second {
		for _, name := range c.order {
			data, _ := os.ReadFile(c.procs[name].log)
			for _, l := range strings.Split(string(data), "\n") {
				if ts, _, ok := strings.Cut(strings.TrimPrefix(l, "time="), " "); ok {
					if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && at.After(stopped.Add(-100*time.Millisecond)) && at.Before(promoted.Add(100*time.Millisecond)) && !strings.Contains(l, "level=DEBUG") {
						b.Logf("%s: %s", name, l)
					}
				}
			}
		}
	}
	b.Logf("run %d: %s stopped (raft leader: %t); leader %s saw it dead after %v; %s's on_promote started after %v", i, victim, led, leader, detect, standby, failover)
	return detect, failover, led
}

// logEvent returns the time of the first "member event" line of kind for
// member in node's log stamped after since, zero when there is none.
func (c *e2eCluster) logEvent(node, member, kind string, since time.Time) time.Time {
	f, err := os.Open(c.procs[node].log)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	want := "member=" + member + " kind=" + kind
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, `msg="member event"`) || !strings.Contains(l, want) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && at.After(since) {
			return at
		}
	}
	return time.Time{}
}
