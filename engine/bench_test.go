package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lp/internal/fixture"
)

// defaultPauseCycles is how many apply/revert cycles are measured per target
// size unless LP_BENCH_CYCLES says otherwise.
const defaultPauseCycles = 15

// pauseBenchConsistency is the consistency used unless
// LP_BENCH_CONSISTENCY says otherwise.
const pauseBenchConsistency = "function"

// dist is a sample of durations, sorted.
type dist []time.Duration

// Percentiles as testdata/floor.c takes them: sorted[n/2], sorted[n*99/100].
func (d dist) med() time.Duration { return d.at(len(d) / 2) }
func (d dist) p99() time.Duration { return d.at(len(d) * 99 / 100) }

func (d dist) at(i int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(i, len(d)-1)]
}

// pauseRow is the result for one target size.
type pauseRow struct {
	threads     int
	pinned      bool
	consistency string
	// Tracer-measured windows (ApplyResult.Pause, RevertResult.Pause) and
	// the whole apply (ApplyResult.Total).
	applyWin, revertWin, total dist
	attempts, maxAttempts      int
	// Seen by the target over the interval of each operation (attach to
	// detach and a little more): the longest time no thread read the clock
	// (stall) and the longest time one thread went without reading it
	// (gap). floorStall is over one floor.c run (seize, one cycle, and the
	// stop it detaches with); idle is over an interval as long as the
	// apply's, with no tracer.
	applyStall, revertStall, floorStall, idleStall dist
	applyGap, revertGap, idleGap                   dist
	// ptrace/testdata/floor.c on the same process: floor is one cycle per
	// apply/revert cycle, interleaved; batch is as many cycles back to back.
	floor              dist
	batchMed, batchP99 time.Duration
	// Per-phase durations of each Apply and Revert (ApplyResult.Phases).
	applyPhases, revertPhases map[string]dist
	phaseOrder                []string
}

// addPhases appends one operation's phases to m, remembering their order.
func (r *pauseRow) addPhases(m map[string]dist, ps []Phase) {
	for _, p := range ps {
		if _, ok := m[p.Name]; !ok && !slices.Contains(r.phaseOrder, p.Name) {
			r.phaseOrder = append(r.phaseOrder, p.Name)
		}
		m[p.Name] = append(m[p.Name], p.Duration)
	}
}

func (r pauseRow) ratio() float64 {
	if r.floor.med() <= 0 {
		return 0
	}
	return float64(r.applyWin.med()) / float64(r.floor.med())
}

// BenchmarkActivationPause measures the stop-the-world window of Apply and
// Revert on targets of 1, 8 and 64 threads in total, all spinning: each
// reads the clock and calls work(), the patched function, in a tight loop
// (testdata/clock.c, patched by testdata/benchfix.c). Per size it runs
// LP_BENCH_CYCLES (default 15) cycles of: Apply, Revert, one floor.c
// stop/resume cycle, an idle interval as long as the Apply; after each the
// target reports what it saw. Then floor.c runs as many cycles back to
// back. Consistency is "function" (the default of Apply) unless
// LP_BENCH_CONSISTENCY says otherwise. Every size runs twice: unpinned
// (the scheduler places the target, the tracer and floor.c on the CPUs as
// it likes) and pinned (the target on one CPU, this process, hence the
// engine's tracer and floor.c, on another); LP_BENCH_PIN=no or yes runs
// only one of them. It prints the tables at the end: tracer-measured
// windows against the floor, the phases, and what the target observed.
//
// The measurement runs once per size whatever b.N is; a later call with a
// larger b.N reports the same figures. ns/op is the median apply window.
func BenchmarkActivationPause(b *testing.B) {
	cycles := defaultPauseCycles
	if s := os.Getenv("LP_BENCH_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("LP_BENCH_CYCLES=%q: want a positive integer", s)
		}
		cycles = n
	}
	consistency := pauseBenchConsistency
	if s := os.Getenv("LP_BENCH_CONSISTENCY"); s != "" {
		consistency = s
	}
	pins := []bool{false, true}
	switch s := os.Getenv("LP_BENCH_PIN"); s {
	case "", "both":
	case "no":
		pins = []bool{false}
	case "yes":
		pins = []bool{true}
	default:
		b.Fatalf("LP_BENCH_PIN=%q: want both, no or yes", s)
	}
	var rows []pauseRow
	for _, pinned := range pins {
		for _, n := range []int{1, 8, 64} {
			var row *pauseRow
			name := fmt.Sprintf("pin=%s/threads=%d", yesNo(pinned), n)
			b.Run(name, func(b *testing.B) {
				if row == nil {
					r := measurePause(b, n, cycles, consistency, pinned)
					row = &r
					rows = append(rows, r)
				}
				us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
				b.ReportMetric(float64(row.applyWin.med()), "ns/op")
				b.ReportMetric(us(row.applyWin.med()), "window-median-us")
				b.ReportMetric(us(row.applyWin.p99()), "window-p99-us")
				b.ReportMetric(us(row.floor.med()), "floor-median-us")
				b.ReportMetric(row.ratio(), "ratio-median")
			})
		}
	}
	if len(rows) == 0 {
		return
	}
	us := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64)
	}
	mp := func(d dist) string { return us(d.med()) + "/" + us(d.p99()) }
	fmt.Printf("\nactivation pause: %d apply/revert cycles per size, consistency %s; µs, median/p99 (sorted[n/2], sorted[n*99/100])\n", cycles, rows[0].consistency)
	fmt.Printf("window: stop-the-world window timed on the tracer thread; floor: ptrace/testdata/floor.c (nice -20, like the engine's tracer)\n")
	fmt.Printf("on the same process, one cycle after each revert (floor) and %d cycles back to back at the end (batch)\n", cycles)
	fmt.Printf("%3s %7s %15s %15s %15s %15s %9s %10s %8s\n",
		"pin", "threads", "apply-window", "revert-window", "floor", "floor-batch", "win/floor", "total-med", "attempts")
	for _, r := range rows {
		fmt.Printf("%3s %7d %15s %15s %15s %15s %9.2f %10s %8s\n", yesNo(r.pinned), r.threads,
			mp(r.applyWin), mp(r.revertWin), mp(r.floor), us(r.batchMed)+"/"+us(r.batchP99),
			r.ratio(), us(r.total.med()), fmt.Sprintf("%d/%d", r.attempts, r.maxAttempts))
	}
	fmt.Printf("attempts: activation windows tried over all applies / most in one apply\n")
	for _, pinned := range pins {
		var rs []pauseRow
		for _, r := range rows {
			if r.pinned == pinned {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		fmt.Printf("\nper phase, pin=%s (ApplyResult.Phases, RevertResult.Phases), µs median/p99; window.* split the successful window\n", yesNo(pinned))
		fmt.Printf("%-15s", "phase")
		for _, r := range rs {
			fmt.Printf(" %15s %15s", fmt.Sprintf("apply@%d", r.threads), fmt.Sprintf("revert@%d", r.threads))
		}
		fmt.Println()
		for _, name := range rs[0].phaseOrder {
			fmt.Printf("%-15s", name)
			for _, r := range rs {
				a, v := r.applyPhases[name], r.revertPhases[name]
				slices.Sort(a)
				slices.Sort(v)
				cell := func(d dist) string {
					if len(d) == 0 {
						return "-"
					}
					return mp(d)
				}
				fmt.Printf(" %15s %15s", cell(a), cell(v))
			}
			fmt.Println()
		}
	}
	fmt.Printf("\nseen by the target, per interval (one Apply or Revert from attach to detach; one floor.c run; idle: as long as the Apply, no tracer)\n")
	fmt.Printf("stall: longest time no thread read the clock; gap: longest time one thread went without reading it\n")
	fmt.Printf("%3s %7s %15s %15s %15s %15s %11s %12s %15s %15s %15s\n",
		"pin", "threads", "stall-apply", "stall-revert", "stall-floor", "stall-idle", "apply/floor", "revert/floor", "gap-apply", "gap-revert", "gap-idle")
	for _, r := range rows {
		ratio := func(d dist) float64 {
			if r.floorStall.med() <= 0 {
				return 0
			}
			return float64(d.med()) / float64(r.floorStall.med())
		}
		fmt.Printf("%3s %7d %15s %15s %15s %15s %11.2f %12.2f %15s %15s %15s\n", yesNo(r.pinned), r.threads,
			mp(r.applyStall), mp(r.revertStall), mp(r.floorStall), mp(r.idleStall), ratio(r.applyStall), ratio(r.revertStall),
			mp(r.applyGap), mp(r.revertGap), mp(r.idleGap))
	}
	fmt.Printf("goal: stall-apply and stall-revert medians <= 1.5x stall-floor at every size, pinned and unpinned\n")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// clockTarget is a running testdata/clock.c.
type clockTarget struct {
	tg *fixture.Target
}

// interval ends the target's current measurement interval and starts the
// next; it returns what the target saw over the one that ended and the
// value of work(1).
func (c clockTarget) interval(b *testing.B) (gap, stall time.Duration, work int) {
	b.Helper()
	from := len(c.tg.Lines())
	if _, err := io.WriteString(c.tg.Stdin, "g\n"); err != nil {
		b.Fatalf("asking pid %d for a report: %v", c.tg.Pid, err)
	}
	line, _ := c.tg.WaitPrefix(b, from, 20*time.Second, "gap ")
	f := strings.Fields(line)
	if len(f) != 6 || f[2] != "stall" || f[4] != "work" {
		b.Fatalf("report %q: want \"gap N stall N work W\"", line)
	}
	var v [3]int64
	for i, s := range []string{f[1], f[3], f[5]} {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("report %q: %v", line, err)
		}
		v[i] = n
	}
	return time.Duration(v[0]), time.Duration(v[1]), int(v[2])
}

// measurePause runs the cycles on a fresh target of n threads. Each cycle:
// Apply, Revert, one floor.c stop/resume cycle, and an idle interval as
// long as the Apply; the target reports what it saw after each.
func measurePause(b *testing.B, n, cycles int, consistency string, pinned bool) pauseRow {
	b.Helper()
	bin := fixtures.Build(b, "clock", "-O2", "-pthread", "testdata/clock.c")
	so := mod(b, "benchfix.c")
	fl := newFloorRunner(b)

	tg := fixture.Start(b, bin, strconv.Itoa(n))
	b.Cleanup(func() { _ = tg.Stdin.Close() })
	tg.WaitPrefix(b, 0, 10*time.Second, "ready")
	if pinned {
		pin(b, tg.Pid)
	}
	c := clockTarget{tg: tg}
	c.interval(b) // start the first interval here

	const unpatched, patched = 4, 5
	check := func(cycle int, what string, got, want int) {
		if got != want {
			b.Fatalf("cycle %d, after %s: work(1) = %d; want %d", cycle, what, got, want)
		}
	}
	row := pauseRow{threads: n, pinned: pinned, consistency: consistency, applyPhases: map[string]dist{}, revertPhases: map[string]dist{}}
	ctx := context.Background()
	// A loaded machine keeps threads preempted inside work() (64 threads
	// pinned to one CPU take turns of milliseconds): function consistency
	// gets a long deadline, the benchmark measures the pause, not retries.
	opts := Options{Consistency: consistency, Timeout: time.Minute}
	for i := range cycles {
		start := time.Now()
		res, err := Apply(ctx, tg.Pid, so, opts)
		if err != nil {
			b.Fatalf("cycle %d: Apply: %v", i, err)
		}
		long := time.Since(start)
		gap, stall, w := c.interval(b)
		check(i, "Apply", w, patched)
		row.applyWin = append(row.applyWin, res.Pause)
		row.addPhases(row.applyPhases, res.Phases)
		row.total = append(row.total, res.Total)
		row.applyGap = append(row.applyGap, gap)
		row.applyStall = append(row.applyStall, stall)
		row.attempts += res.Attempts
		row.maxAttempts = max(row.maxAttempts, res.Attempts)

		rv, err := Revert(ctx, tg.Pid, "benchfix", false, opts)
		if err != nil {
			b.Fatalf("cycle %d: Revert: %v", i, err)
		}
		gap, stall, w = c.interval(b)
		check(i, "Revert", w, unpatched)
		row.revertWin = append(row.revertWin, rv.Pause)
		row.addPhases(row.revertPhases, rv.Phases)
		row.revertGap = append(row.revertGap, gap)
		row.revertStall = append(row.revertStall, stall)

		// One raw stop/resume cycle, interleaved so that the load of the
		// machine at the time weighs on the floor as on the engine.
		med, _ := fl.run(b, tg.Pid, n, 1)
		row.floor = append(row.floor, med)
		_, stall, _ = c.interval(b)
		row.floorStall = append(row.floorStall, stall)

		// The scheduler's share: an interval as long, nobody attached.
		time.Sleep(long)
		gap, stall, w = c.interval(b)
		check(i, "idle", w, unpatched)
		row.idleGap = append(row.idleGap, gap)
		row.idleStall = append(row.idleStall, stall)
	}
	for _, d := range []dist{row.applyWin, row.revertWin, row.total, row.floor,
		row.applyGap, row.revertGap, row.idleGap, row.applyStall, row.revertStall, row.floorStall, row.idleStall} {
		slices.Sort(d)
	}
	if tr, err := fixture.TracerPid(tg.Pid); err != nil || tr != 0 {
		b.Fatalf("after the cycles TracerPid of %d = %d (%v); want 0", tg.Pid, tr, err)
	}
	// The same number of cycles back to back, as floor.c is meant to run.
	row.batchMed, row.batchP99 = fl.run(b, tg.Pid, n, cycles)

	// The target survived every tracer and runs the original work().
	_, _, w := c.interval(b)
	check(cycles, "floor", w, unpatched)
	b.Logf("pin=%s threads=%d consistency=%s: apply window median %v p99 %v, revert window median %v, floor median %v p99 %v (batch median %v), ratio %.2f; stall apply median %v floor median %v idle median %v; total apply median %v; %d attempts for %d applies",
		yesNo(pinned), n, consistency, row.applyWin.med(), row.applyWin.p99(), row.revertWin.med(), row.floor.med(), row.floor.p99(), row.batchMed, row.ratio(),
		row.applyStall.med(), row.floorStall.med(), row.idleStall.med(), row.total.med(), row.attempts, cycles)
	return row
}

// floorRunner runs ptrace/testdata/floor.c at nice -20, the priority the
// engine gives its own tracer thread (ptrace.Process.loop), so both compete
// alike with the target's spinning threads for the two CPUs.
type floorRunner struct {
	argv []string
}

func newFloorRunner(b *testing.B) floorRunner {
	b.Helper()
	bin := fixtures.Build(b, "floor", "-O2", "ptrace/testdata/floor.c")
	nice, err := exec.LookPath("nice")
	if err != nil {
		b.Logf("no nice(1): floor.c runs at the default priority")
		return floorRunner{argv: []string{bin}}
	}
	return floorRunner{argv: []string{nice, "-n", "-20", bin}}
}

// run runs floor.c for cycles stop/resume cycles of pid and returns its
// median and p99; it must have stopped want threads.
func (f floorRunner) run(b *testing.B, pid, want, cycles int) (med, p99 time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append(slices.Clone(f.argv), strconv.Itoa(pid), strconv.Itoa(cycles))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output() // waits: nothing is left running
	if err != nil {
		b.Fatalf("%s: %v; stderr %q", strings.Join(argv, " "), err, stderr.String())
	}
	fs := strings.Fields(string(out))
	if len(fs) != 3 {
		b.Fatalf("floor printed %q; want \"median_ns p99_ns nthreads\"", out)
	}
	var v [3]int64
	for i, s := range fs {
		if v[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			b.Fatalf("floor printed %q: %v", out, err)
		}
	}
	if int(v[2]) != want {
		b.Fatalf("floor stopped %d threads; want %d", v[2], want)
	}
	return time.Duration(v[0]), time.Duration(v[1])
}

// pin puts every thread of the target pid on the first CPU this process may
// use and every thread of this process (the engine's tracer among them, and
// whatever it starts later, floor.c included) on the second, until b ends.
// Threads created later inherit the mask of their creator.
func pin(b *testing.B, pid int) {
	b.Helper()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		b.Fatalf("sched_getaffinity: %v", err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		b.Skipf("pinned: needs two CPUs, this process may use %d", all.Count())
	}
	setAll := func(pid int, set *unix.CPUSet) {
		tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			b.Fatalf("listing threads of pid %d: %v", pid, err)
		}
		for _, e := range tids {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			// ESRCH: the thread has exited meanwhile.
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				b.Fatalf("sched_setaffinity of thread %d of pid %d: %v", tid, pid, err)
			}
		}
	}
	var target, tracer unix.CPUSet
	target.Set(cpus[0])
	tracer.Set(cpus[1])
	setAll(os.Getpid(), &tracer)
	b.Cleanup(func() { setAll(os.Getpid(), &all) })
	setAll(pid, &target)
	b.Logf("pinned: target pid %d on CPU %d, tracer (pid %d) and floor.c on CPU %d", pid, cpus[0], os.Getpid(), cpus[1])
}
