package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/fsm"
)

// BenchmarkLoadedHeartbeat runs a cluster of five real lpd processes
// (witness w and pairs pair-1, pair-2, each with a patchable service) on
// loopback while the CPUs are oversubscribed 0, 2 and 6 times by busy-loop
// processes (`sh -c 'while :; do :; done'`, at the normal priority), with
// and without two loops of synchronous 1 MiB disk writes (dd oflag=dsync).
// For each load it:
//
//   - submits plans (pairs pair-1 and pair-2, trial 1s) one after the
//     other and rolls each completed one back again, for LP_HB_BENCH_SOAK
//     (default 20s); nothing is wrong with any node, so every suspect and
//     dead "member event" in any lpd's log and every plan that ends rolled
//     back is false. Rates per hour are extrapolated from the soak length;
//   - then stops the patched standby's lpd (SIGSTOP of b2, a non-voter)
//     during its trial and measures the time to the plan's failure (the
//     time of the plan's running -> rolling_back event in its history).
//
// LP_HB_BENCH_KEEP=DIR copies every lpd's log to DIR at the end.
//
// LP_HB_BENCH_LOADS (oversubscription factors, default 0,2,6) and
// LP_HB_BENCH_WRITERS (dsync writer counts, default 0,2) pick the rows.
//
// lpd runs with its default priority (lpd.yaml priority: rr 1 with a CPU budget, nice -10 as fallback), or with
// LP_HB_PRIORITY (lpd --priority: normal, nice:N or rr:N) to compare.
//
// Run: go test -run '^$' -bench LoadedHeartbeat -benchtime 1x -timeout 30m ./cluster/
func BenchmarkLoadedHeartbeat(b *testing.B) {
	soak := 20 * time.Second
	if v, err := time.ParseDuration(os.Getenv("LP_HB_BENCH_SOAK")); err == nil && v > 0 {
		soak = v
	}
	args := []string{"--log-level", "debug"}
	prio := os.Getenv("LP_HB_PRIORITY")
	if prio != "" {
		args = append(args, "--priority", prio)
	} else {
		prio = "default (rr 1, fallback nice -10)"
	}
	requirePtrace(b)
	specs := []lpdSpec{
		{name: "w", role: "witness", server: true},
		{name: "a1", pair: "pair-1", role: "active", server: true, service: true, yaml: "failover_after: 1h\n"},
		{name: "b1", pair: "pair-1", role: "standby", server: true, service: true, yaml: "failover_after: 1h\n"},
		{name: "a2", pair: "pair-2", role: "active", service: true, yaml: "failover_after: 1h\n"},
		{name: "b2", pair: "pair-2", role: "standby", service: true, yaml: "failover_after: 1h\n"},
	}
	c := startLPDs(b, specs, args...)
	if keep := os.Getenv("LP_HB_BENCH_KEEP"); keep != "" {
		// Registered after startLPDs' cleanups, so it runs before them:
		// the lpds have stopped writing only once those ran, which is
		// good enough for reading what happened.
		b.Cleanup(func() {
			for _, name := range c.order {
				if data, err := os.ReadFile(c.procs[name].log); err == nil {
					_ = os.WriteFile(filepath.Join(keep, name+".log"), data, 0o644)
				}
			}
		})
	}
	c.writePlan("fix.yaml", "name: hb\npatch: fix.so\ntarget: svc\npairs: [pair-1, pair-2]\ntrial: 1s\nprogress_deadline: 5m\n")
	stopPlan := c.writePlan("stop.yaml", "name: hb-stop\npatch: fix.so\ntarget: svc\npairs: [pair-2]\ntrial: 1m\nprogress_deadline: 5m\n")
	type row struct {
		burners, writers             int
		plans, completed, rolledBack int
		refused                      int // submissions refused (no raft leader)
		suspects, deads              int
		soak, stopToFail             time.Duration
		failReason                   string
	}
	var rows []row
	cpus := runtime.NumCPU()
	for _, writers := range benchInts(b, "LP_HB_BENCH_WRITERS", []int{0, 2}) {
		for _, mult := range benchInts(b, "LP_HB_BENCH_LOADS", []int{0, 2, 6}) {
			r := row{burners: mult * cpus, writers: writers}
			b.Run(fmt.Sprintf("burners=%d/dsync-writers=%d", r.burners, r.writers), func(b *testing.B) {
				stopLoad := startLoad(b, c.dir, r.burners, r.writers)
				defer stopLoad()
				time.Sleep(time.Second) // let the load start
				start := time.Now()
				for time.Since(start) < soak {
					out, errOut, code := c.ctl("w", "plan", "submit", filepath.Join(c.dir, "plans", "fix.yaml"), "--wait")
					switch code {
					case 0:
						r.plans++
						r.completed++
					case 2:
						r.plans++
						r.rolledBack++
						b.Logf("false rollback: %s", strings.TrimSpace(errOut))
					default:
						// A cluster without a leader refuses plans: worth a
						// column, not the end of the run.
						r.refused++
						b.Logf("plan submit --wait: exit %d; stderr %q; stdout %q", code, strings.TrimSpace(errOut), strings.TrimSpace(out))
						time.Sleep(time.Second)
						continue
					}
					if out, errOut, code := c.ctl("w", "rollback", "--wait"); code != 0 && !strings.Contains(out+errOut, "already rolled back") {
						b.Logf("rollback --wait: exit %d; stderr %q; stdout %q", code, strings.TrimSpace(errOut), strings.TrimSpace(out))
					}
				}
				r.soak = time.Since(start)
				for _, name := range c.order {
					s, d := c.countMemberEvents(name, start, start.Add(r.soak))
					r.suspects += s
					r.deads += d
				}
				// A false failure before the trial spoils the measurement:
				// try again, three times at most.
				for range 3 {
					var ok bool
					if r.stopToFail, r.failReason, ok = c.stopStandbyInTrial(b, stopPlan); ok {
						break
					}
				}
				rows = append(rows, r)
			})
		}
	}
	if len(rows) == 0 {
		return
	}
	perHour := func(n int, d time.Duration) float64 { return float64(n) * float64(time.Hour) / float64(d) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nloaded heartbeat benchmark: 5 lpd on %d CPUs, lan-fast timing, lpd priority %s, soak %v per row\n", cpus, prio, soak)
	fmt.Fprintf(&sb, "| %-8s | %-5s | %5s | %9s | %7s | %16s | %16s | %16s | %10s |\n", "burners", "dsync", "plans", "completed", "refused", "false suspects", "false deads", "false rollbacks", "stop->fail")
	fmt.Fprintf(&sb, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 10), strings.Repeat("-", 7), strings.Repeat("-", 7), strings.Repeat("-", 11), strings.Repeat("-", 9), strings.Repeat("-", 18), strings.Repeat("-", 18), strings.Repeat("-", 18), strings.Repeat("-", 12))
	for _, r := range rows {
		stop := "-"
		if r.stopToFail > 0 {
			stop = fmt.Sprintf("%.0fms", ms(r.stopToFail))
		}
		fmt.Fprintf(&sb, "| %-8s | %-5d | %5d | %9d | %7d | %4d (%6.0f/h) | %4d (%6.0f/h) | %4d (%6.0f/h) | %10s |\n",
			fmt.Sprintf("%d (%dx)", r.burners, r.burners/cpus), r.writers, r.plans, r.completed, r.refused,
			r.suspects, perHour(r.suspects, r.soak), r.deads, perHour(r.deads, r.soak),
			r.rolledBack, perHour(r.rolledBack, r.soak), stop)
	}
	sb.WriteString("(suspects and deads: member events in every lpd's log; refused: submissions refused, no raft leader;\n")
	sb.WriteString(" /h: extrapolated from the soak length; stop->fail: SIGSTOP of the patched standby's lpd in its trial\n")
	sb.WriteString(" to the plan's rollback, one run per row, - when every try failed before the trial)\n")
	fmt.Print(sb.String())
}

// startLoad starts burners busy loops and writers loops of synchronous
// disk writes in dir, each in its own process group, and returns the
// function that kills them.
func startLoad(b *testing.B, dir string, burners, writers int) func() {
	b.Helper()
	var cmds []*exec.Cmd
	start := func(script string) {
		cmd := exec.Command("sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatalf("starting load %q: %v", script, err)
		}
		cmds = append(cmds, cmd)
	}
	for range burners {
		start("while :; do :; done")
	}
	for i := range writers {
		f := filepath.Join(dir, fmt.Sprintf("dsync-%d", i))
		start(fmt.Sprintf("while :; do dd if=/dev/zero of=%s bs=1M count=8 oflag=dsync 2>/dev/null; done", f))
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for _, cmd := range cmds {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}
	b.Cleanup(stop)
	return stop
}

// countMemberEvents counts node's "member event" log lines of kind suspect
// and dead stamped in [from, to).
func (c *e2eCluster) countMemberEvents(node string, from, to time.Time) (suspects, deads int) {
	f, err := os.Open(c.procs[node].log)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, `msg="member event"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || at.Before(from) || !at.Before(to) {
			continue
		}
		switch {
		case strings.Contains(l, " kind=suspect"):
			suspects++
		case strings.Contains(l, " kind=dead"):
			deads++
		}
	}
	return suspects, deads
}

// stopStandbyInTrial submits plan (pair-2 only, a long trial), stops b2's
// lpd once its trial runs and returns the time to the plan's failure and
// its reason; then resumes b2 and waits until the plan is rolled back and
// b2 is alive again.
func (c *e2eCluster) stopStandbyInTrial(b *testing.B, plan string) (time.Duration, string, bool) {
	b.Helper()
	out, errOut, code := c.ctl("w", "plan", "submit", plan)
	if code != 0 {
		b.Logf("plan submit: exit %d; stderr %q", code, errOut)
		time.Sleep(time.Second)
		return 0, "", false
	}
	id := strings.TrimSpace(out)
	var early fsm.Plan
	c.waitFor(2*time.Minute, "pair-2 standby trial", func() bool {
		p := c.plan("w", id).Plan
		if p.State.Terminal() {
			early = p
			return true
		}
		return p.Phase == fsm.PhaseStandbyTrial
	})
	if early.State.Terminal() {
		b.Logf("plan %s ended %s (%s) before its trial", id, early.State, early.Reason)
		c.ctl("w", "rollback", "--wait")
		return 0, "", false
	}
	c.signal("b2", syscall.SIGSTOP)
	stopped := time.Now()
	var (
		p      fsm.Plan
		failed time.Time
	)
	deadline := stopped.Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d, err := c.client("w").Plan(ctx, id)
		cancel()
		if err == nil && d.Plan.State != fsm.PlanRunning {
			p = d.Plan
			// The commit time of the failure, by the leader's clock (the
			// same machine's), not when this poll saw it.
			failed = time.Now()
			for _, e := range d.History {
				if e.Kind == fsm.EventPlanState && e.From == string(fsm.PlanRunning) {
					failed = e.Time
					break
				}
			}
			break
		}
		if time.Now().After(deadline) {
			c.signal("b2", syscall.SIGCONT)
			b.Fatalf("plan %s still running a minute after b2's lpd was stopped", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := failed.Sub(stopped)
	c.signal("b2", syscall.SIGCONT)
	c.waitPlanState("w", id, fsm.PlanRolledBack, 2*time.Minute)
	c.waitFor(2*time.Minute, "b2 alive and healthy again", func() bool {
		m, ok := c.member("w", "b2")
		return ok && m.Gossip == "alive" && m.Status == "alive" && m.Health == "healthy"
	})
	return took, p.Reason, true
}

// benchInts reads a comma-separated list of non-negative integers from the
// environment variable env, or returns def when it is unset.
func benchInts(b *testing.B, env string, def []int) []int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want comma-separated non-negative integers", env, v)
		}
		out = append(out, n)
	}
	return out
}
