package ptrace

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/internal/fixture"
)

// defaultBenchCycles is the number of stop-all/resume-all cycles measured
// per target size unless LP_BENCH_CYCLES says otherwise.
const defaultBenchCycles = 300

// stopResumeSize is one target shape: the main thread (which ticks every
// 2 ms) plus busy spinning threads plus threads blocked in pause().
type stopResumeSize struct {
	busy, blocked int
}

func (s stopResumeSize) threads() int { return 1 + s.busy + s.blocked }

// stopResumeRow is the result for one size. Percentiles are taken the same
// way as testdata/floor.c does: sorted[n/2] and sorted[n*99/100].
type stopResumeRow struct {
	size               stopResumeSize
	engMed, engP99     time.Duration
	floorMed, floorP99 time.Duration
}

func (r stopResumeRow) ratio() float64 {
	if r.floorMed <= 0 {
		return 0
	}
	return float64(r.engMed) / float64(r.floorMed)
}

// BenchmarkStopResume measures one WithStopped cycle (stop every thread, run
// an empty function, resume every thread) against the floor: the same cycle
// done by a minimal C program (testdata/floor.c) on the same target process.
//
// Sizes, in threads in total: 1 (main only), 8 (main + 4 busy + 3 blocked),
// 64 (main + 32 busy + 31 blocked). The measurement runs once per size,
// whatever b.N is; later calls with a larger b.N report the same figures.
// ns/op is overridden with the engine's median cycle time.
func BenchmarkStopResume(b *testing.B) {
	cycles := benchCycles(b)
	sizes := []stopResumeSize{{0, 0}, {4, 3}, {32, 31}}
	var rows []stopResumeRow
	for _, sz := range sizes {
		var row *stopResumeRow
		b.Run(fmt.Sprintf("threads=%d", sz.threads()), func(b *testing.B) {
			if row == nil {
				r := measureStopResume(b, sz, cycles)
				row = &r
				rows = append(rows, r)
				b.Logf("threads=%d (busy=%d blocked=%d) cycles=%d engine median=%v p99=%v floor median=%v p99=%v ratio=%.2f",
					sz.threads(), sz.busy, sz.blocked, cycles, r.engMed, r.engP99, r.floorMed, r.floorP99, r.ratio())
			}
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(float64(row.engMed), "ns/op")
			b.ReportMetric(us(row.engMed), "engine-median-us")
			b.ReportMetric(us(row.engP99), "engine-p99-us")
			b.ReportMetric(us(row.floorMed), "floor-median-us")
			b.ReportMetric(us(row.floorP99), "floor-p99-us")
			b.ReportMetric(row.ratio(), "ratio-median")
		})
	}
	if len(rows) == 0 {
		return
	}
	fmt.Printf("\nstop-all/resume-all, %d cycles per size (engine: WithStopped with an empty function; floor: testdata/floor.c)\n", cycles)
	fmt.Printf("%7s %5s %7s  %12s %12s  %12s %12s  %6s\n",
		"threads", "busy", "blocked", "engine-med", "engine-p99", "floor-med", "floor-p99", "ratio")
	for _, r := range rows {
		fmt.Printf("%7d %5d %7d  %12v %12v  %12v %12v  %6.2f\n",
			r.size.threads(), r.size.busy, r.size.blocked,
			r.engMed, r.engP99, r.floorMed, r.floorP99, r.ratio())
	}
}

// benchCycles reads LP_BENCH_CYCLES (default defaultBenchCycles).
func benchCycles(b *testing.B) int {
	b.Helper()
	s := os.Getenv("LP_BENCH_CYCLES")
	if s == "" {
		return defaultBenchCycles
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("LP_BENCH_CYCLES=%q: want a positive integer", s)
	}
	return n
}

// measureStopResume starts a target of the given size, times cycles
// WithStopped calls through the engine, detaches, then runs the floor
// program against the same process for the same number of cycles.
func measureStopResume(b *testing.B, sz stopResumeSize, cycles int) stopResumeRow {
	b.Helper()
	// Same build arguments as target() in ptrace_test.go, so one build serves both.
	bin := fixtures.Build(b, "target", "-O2", "-pthread", "testdata/target.c")
	floor := fixtures.Build(b, "floor", "-O2", "testdata/floor.c")

	tg := fixture.Start(b, bin, strconv.Itoa(sz.busy), strconv.Itoa(sz.blocked))
	tg.WaitPrefix(b, 0, 10*time.Second, "ready")
	want := sz.threads()
	waitThreadCount(b, tg.Pid, want, 10*time.Second)

	p, err := Attach(tg.Pid)
	if err != nil {
		b.Fatalf("Attach(%d): %v", tg.Pid, err)
	}
	b.Cleanup(func() { _ = p.Detach() })
	tids, err := p.Threads()
	if err != nil {
		b.Fatalf("Threads: %v", err)
	}
	if len(tids) != want {
		b.Fatalf("attached to %d threads; want %d", len(tids), want)
	}

	ctx := context.Background()
	noop := func(*Stopped) error { return nil }
	eng := make([]time.Duration, cycles)
	for i := range eng {
		// The window as the ptrace thread measures it (first interrupt to
		// last resume), like floor.c's clock around its syscalls; the
		// hand-off to that thread is not part of the target's pause.
		d, err := p.WithStoppedTimed(ctx, noop)
		if err != nil {
			b.Fatalf("cycle %d: WithStopped: %v", i, err)
		}
		eng[i] = d
	}
	if err := p.Detach(); err != nil {
		b.Fatalf("Detach: %v", err)
	}
	for _, tid := range tids {
		if tr, err := fixture.TracerPid(tid); err != nil || tr != 0 {
			b.Fatalf("after Detach thread %d TracerPid = %d (%v); want 0", tid, tr, err)
		}
	}

	fctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(fctx, floor, strconv.Itoa(tg.Pid), strconv.Itoa(cycles))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("floor %d %d: %v; stderr %q", tg.Pid, cycles, err, stderr.String())
	}
	fMed, fP99, fThreads, err := parseFloor(string(out))
	if err != nil {
		b.Fatalf("floor output %q: %v", out, err)
	}
	if fThreads != want {
		b.Fatalf("floor measured %d threads; want %d", fThreads, want)
	}

	// The target must still be running after both tracers left.
	tg.WaitPrefix(b, len(tg.Lines()), 5*time.Second, "tick ")

	slices.Sort(eng)
	return stopResumeRow{
		size:     sz,
		engMed:   eng[len(eng)/2],
		engP99:   eng[len(eng)*99/100],
		floorMed: fMed,
		floorP99: fP99,
	}
}

// parseFloor parses floor.c's "median_ns p99_ns nthreads" line.
func parseFloor(out string) (med, p99 time.Duration, threads int, err error) {
	f := strings.Fields(out)
	if len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("got %d fields; want 3", len(f))
	}
	var v [3]int64
	for i, s := range f {
		if v[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("field %d: %w", i, err)
		}
	}
	return time.Duration(v[0]), time.Duration(v[1]), int(v[2]), nil
}

// waitThreadCount polls /proc/PID/task until it lists want threads.
func waitThreadCount(b *testing.B, pid, want int, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tids, err := listTasks(pid)
		if err != nil {
			b.Fatalf("listing threads of %d: %v", pid, err)
		}
		if len(tids) == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("pid %d has %d threads after %v; want %d", pid, len(tids), timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
