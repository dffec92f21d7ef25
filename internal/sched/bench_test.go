package sched

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkWakeupLatency measures what a priority buys a thread that wakes
// every millisecond (as gossip's probe, ack and timer goroutines do) on the
// machine as it is: the oversleep of a 1 ms sleep, median, 99th and 99.9th
// percentile and worst, for 10 s per priority (LP_WAKEUP_SECONDS changes
// it). Run it beside the load to compare, e.g. CPU burners:
//
//	for i in 1 2 3 4; do sh -c 'while :; do :; done' & done
//	go test -run '^$' -bench WakeupLatency -benchtime 1x ./internal/sched
func BenchmarkWakeupLatency(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (CAP_SYS_NICE)")
	}
	secs := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("LP_WAKEUP_SECONDS") + "s"); err == nil && d > 0 {
		secs = d
	}
	for _, p := range []Priority{{}, {Nice: -10}, {RT: 1, Nice: -10}} {
		b.Run(p.String(), func(b *testing.B) {
			// Every thread, as lpd does: Go's timers fire on whichever
			// thread runs the scheduler.
			if _, err := Apply(p); err != nil {
				b.Skipf("%s refused: %v", p, err)
			}
			defer Apply(Priority{})
			var over []time.Duration
			for start := time.Now(); time.Since(start) < secs; {
				t := time.Now()
				time.Sleep(time.Millisecond)
				over = append(over, time.Since(t)-time.Millisecond)
			}
			slices.Sort(over)
			q := func(f float64) float64 { return float64(over[int(f*float64(len(over)-1))]) / 1e6 }
			late := 0
			for _, d := range over {
				if d > 50*time.Millisecond {
					late++
				}
			}
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(0.999), "p99.9-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(float64(late), "over-50ms")
			fmt.Printf("%-10s wakeups %6d  p50 %6.2f ms  p99 %7.2f ms  p99.9 %7.2f ms  max %7.2f ms  over 50 ms %d\n",
				p, len(over), q(0.5), q(0.99), q(0.999), q(1), late)
		})
	}
}
