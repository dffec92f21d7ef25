package heartbeat

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDetection measures, over LP_HB_BENCH_RUNS runs (default 5), the
// time from SIGSTOP of a member process to the Suspect and Dead events at an
// observer, for LANFast and memberlist's default LAN tuning, with 3 and 9
// members (the observer and n-2 others in this process, the victim a child
// process). It reports median and p99 (nearest rank) in milliseconds beside
// the formula's typical and worst values. Run:
//
//	go test -run '^$' -bench Detection -benchtime 1x ./heartbeat/
func BenchmarkDetection(b *testing.B) {
	runs := 5
	if v, err := strconv.Atoi(os.Getenv("LP_HB_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	timings := []struct {
		name, child string
		timing      Timing
	}{
		{"LANFast", "fast", testTiming()},
		{"MemberlistDefaultLAN", "default", MemberlistDefaultLAN()},
	}
	for _, tc := range timings {
		for _, n := range []int{3, 9} {
			b.Run(fmt.Sprintf("%s/n=%d", tc.name, n), func(b *testing.B) {
				var dead, suspect []time.Duration
				for i := 0; i < b.N; i++ {
					d, s := measureDetection(b, tc.timing, tc.child, n, runs)
					dead = append(dead, d...)
					suspect = append(suspect, s...)
				}
				typical, worst := tc.timing.ExpectedDetection(n)
				b.ReportMetric(ms(percentile(dead, 50)), "dead-median-ms")
				b.ReportMetric(ms(percentile(dead, 99)), "dead-p99-ms")
				b.ReportMetric(ms(percentile(suspect, 50)), "suspect-median-ms")
				b.ReportMetric(0, "ns/op") // wall time per op is meaningless here
				b.Logf("%-22s n=%d runs=%-3d dead median %7.0fms p99 %7.0fms | suspect median %7.0fms (%d of %d runs saw suspect) | formula typical %v worst %v",
					tc.name, n, len(dead), ms(percentile(dead, 50)), ms(percentile(dead, 99)),
					ms(percentile(suspect, 50)), len(suspect), len(dead), typical, worst)
			})
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile; 0 for no samples.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100
	return s[max(rank, 1)-1]
}

// measureDetection builds an n-member cluster and stops/continues its child
// member runs times, returning the SIGSTOP->Dead and SIGSTOP->Suspect times
// seen by the observer.
func measureDetection(b *testing.B, timing Timing, childTiming string, n, runs int) (dead, suspect []time.Duration) {
	b.Helper()
	b.StopTimer()
	obs := startMemberTiming(b, "observer", nil, Meta{}, timing)
	w := watch(obs)
	want := map[string]MemberState{"observer": StateAlive, "victim": StateAlive}
	for i := 0; i < n-2; i++ {
		name := fmt.Sprintf("m%d", i)
		startMemberTiming(b, name, []string{obs.Addr()}, Meta{}, timing)
		want[name] = StateAlive
	}
	c := startChild(b, "victim", obs.Addr(), childTiming)
	waitMembers(b, obs, time.Minute, want)
	settle := 3 * timing.ProbeInterval
	time.Sleep(settle)
	b.StartTimer()
	for r := 0; r < runs; r++ {
		from := w.mark()
		stopped := time.Now()
		c.signal(b, syscall.SIGSTOP)
		e, at := w.waitFor(b, from, 2*time.Minute, "victim dead", func(e Event) bool {
			return e.Node == "victim" && (e.Kind == Dead || e.Kind == Left)
		})
		dead = append(dead, e.At.Sub(stopped))
		for _, s := range w.events(from)[:at-from] {
			if s.Node == "victim" && s.Kind == Suspect {
				suspect = append(suspect, s.At.Sub(stopped))
				break
			}
		}
		c.signal(b, syscall.SIGCONT)
		w.waitFor(b, at+1, 2*time.Minute, "victim alive again", is(Alive, "victim"))
		waitMembers(b, obs, time.Minute, want)
		time.Sleep(settle)
	}
	b.StopTimer()
	return dead, suspect
}

// BenchmarkFalsePositivesUnderLoad runs an observer and four child members
// with LANFast while 2·GOMAXPROCS busy-looping shell processes load the CPUs,
// for LP_HB_SOAK (default 20s), and reports how many Suspect and Dead events
// the observer saw about members that were never stopped.
func BenchmarkFalsePositivesUnderLoad(b *testing.B) {
	soak := 20 * time.Second
	if v, err := time.ParseDuration(os.Getenv("LP_HB_SOAK")); err == nil && v > 0 {
		soak = v
	}
	for i := 0; i < b.N; i++ {
		obs := startMemberTiming(b, "observer", nil, Meta{}, testTiming())
		w := watch(obs)
		want := map[string]MemberState{"observer": StateAlive}
		for j := 0; j < 4; j++ {
			name := fmt.Sprintf("c%d", j)
			startChild(b, name, obs.Addr(), "fast")
			want[name] = StateAlive
		}
		waitMembers(b, obs, time.Minute, want)
		for j := 0; j < 2*runtime.GOMAXPROCS(0); j++ {
			burn := exec.Command("sh", "-c", "while :; do :; done")
			if err := burn.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = burn.Process.Kill(); _ = burn.Wait() })
		}
		from := w.mark()
		time.Sleep(soak)
		var sus, dead int
		for _, e := range w.events(from) {
			switch e.Kind {
			case Suspect:
				sus++
			case Dead:
				dead++
			}
		}
		b.ReportMetric(float64(sus), "false-suspect")
		b.ReportMetric(float64(dead), "false-dead")
		b.ReportMetric(0, "ns/op")
		b.Logf("LANFast, 5 members, %d CPU burners, %v: %d false suspect, %d false dead events at the observer (%s)",
			2*runtime.GOMAXPROCS(0), soak, sus, dead, describe(w.events(from)))
	}
}
