package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/engine"
	"lp/fsm"
)

// Plan timing of every schedule. The trial is short so that a schedule
// takes well under a minute; the progress deadline is what the invariant
// "every plan ends" is held to.
const (
	planTrial        = 2 * time.Second
	progressDeadline = 90 * time.Second
	patchID          = "fix-answer"
	unpatched        = 42
	patched          = 1041
)

// result is what one schedule did, for the soak's table.
type result struct {
	sched      schedule
	state      fsm.PlanState
	violations []string
	injected   map[string]int
	took       time.Duration
}

// runSchedule runs one schedule on a fresh cluster and checks the history.
func runSchedule(t testing.TB, s schedule) result {
	start := time.Now()
	res := result{sched: s, injected: map[string]int{}}
	h := newHarness(t, s.TmpfsNode)
	t.Logf("schedule %v", s)
	h.hist.add("note", "", "schedule "+s.String())
	var vmu sync.Mutex
	violate := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		vmu.Lock()
		res.violations = append(res.violations, msg)
		vmu.Unlock()
		h.hist.add("violation", "", msg)
	}
	smp := h.startSampler(violate)

	planID := h.submit()
	if planID == "" {
		// Nothing was acknowledged, so nothing can be lost: not a
		// violation, but the schedule tested nothing either.
		smp.stop()
		t.Logf("no node acknowledged the plan within the submission attempts; schedule skipped")
		res.state = "not-acknowledged"
		return h.finish(t, res, start)
	}
	submitted := time.Now()
	var rollbackAcked time.Time
	var wg sync.WaitGroup
	if s.RollbackAt > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(s.RollbackAt)
			for _, name := range h.running() {
				if h.ctl(name, "rollback", planID) {
					rollbackAcked = time.Now()
					return
				}
			}
		}()
	}
	for _, f := range s.Faults {
		time.Sleep(f.After)
		h.inject(f, violate)
		res.injected[f.Kind]++
	}
	wg.Wait()
	h.healAll()
	faultTime := time.Since(submitted)

	// Every plan ends within its deadline (counted from when the last
	// fault healed: a plan may wait for a node that is down).
	var final api.PlanDetail
	if !h.poll(progressDeadline+faultTime+30*time.Second, func() bool {
		d, err := h.planFromAny(planID)
		final = d
		return err == nil && d.Plan.State.Terminal()
	}) {
		violate("plan %s did not end within %v of submission: %s (%s)", planID, progressDeadline+faultTime+30*time.Second, final.Plan.State, final.Plan.Reason)
	}
	res.state = final.Plan.State
	h.converge(planID, violate)
	smp.stop()
	h.check(planID, rollbackAcked, violate)
	return h.finish(t, res, start)
}

func (h *harness) finish(t testing.TB, res result, start time.Time) result {
	res.took = time.Since(start)
	for _, o := range h.hist.all() {
		if o.Kind == "harness-error" {
			t.Errorf("harness: %s: %s", o.Node, o.What)
		}
	}
	if len(res.violations) > 0 {
		h.dumpLogs()
		for _, v := range res.violations {
			t.Errorf("invariant violated: %s", v)
		}
		t.Errorf("replay: LP_FAULT_SEED=%d go test -run TestFaultSeed -v ./faults  (%v)", res.sched.Seed, res.sched)
	}
	return res
}

// submit writes the plan and submits it through lpctl to a running node,
// retrying on other nodes; it returns the plan id ("" if never acked).
func (h *harness) submit() string {
	dir := filepath.Join(h.dir, "plan")
	os.MkdirAll(dir, 0o700)
	mod, _ := os.ReadFile(built.fix)
	os.WriteFile(filepath.Join(dir, "fix.so"), mod, 0o600)
	plan := filepath.Join(dir, "plan.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf("name: faults\npatch: fix.so\ntarget: svc\npairs: [pair-1, pair-2]\ntrial: %v\nprogress_deadline: %v\n",
		planTrial, progressDeadline)), 0o600)
	for range 6 {
		for _, name := range h.running() {
			out, ok := h.ctlOut(name, "plan", "submit", plan)
			if ok {
				return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
			}
		}
		time.Sleep(time.Second)
	}
	return ""
}

// ctl runs lpctl against a node, records it, and says whether it exited 0.
func (h *harness) ctl(node string, args ...string) bool {
	_, ok := h.ctlOut(node, args...)
	return ok
}

func (h *harness) ctlOut(node string, args ...string) (string, bool) {
	h.hist.add("call", node, "lpctl "+strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, built.ctl, append([]string{"--addr", "http://" + h.nodes[node].ip + ":7070"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		h.hist.add("error", node, fmt.Sprintf("lpctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String())))
		return out.String(), false
	}
	h.hist.add("ok", node, "lpctl "+strings.Join(args, " ")+": "+strings.TrimSpace(out.String()))
	return out.String(), true
}

// healAll ends every fault still in effect: the network, a stopped or
// dead lpd, a dead target, a sick flag, a full disk.
func (h *harness) healAll() {
	h.healNet()
	for _, name := range h.order {
		n := h.nodes[name]
		os.Remove(n.sick)
		os.Remove(filepath.Join(n.dataDir, "filler"))
		n.mu.Lock()
		stopped, running := n.stopped, n.running
		n.mu.Unlock()
		if stopped {
			n.cmd.Process.Signal(syscall.SIGCONT)
			n.mu.Lock()
			n.stopped = false
			n.mu.Unlock()
		}
		if !running {
			h.startLPD(n, "--rejoin-as-new")
		}
		n.mu.Lock()
		svc := n.svc
		n.mu.Unlock()
		if svc != nil && !svc.alive() {
			restarted := h.startTarget(n, int(time.Now().UnixNano()%1e6))
			n.mu.Lock()
			n.svc = restarted
			n.mu.Unlock()
		}
	}
}

func (h *harness) planFromAny(id string) (api.PlanDetail, error) {
	var lastErr error
	names := h.running()
	if l := h.leader(); l != "" {
		names = append([]string{l}, names...)
	}
	for _, name := range names {
		v, err := h.call(name, "GET plan "+id, func(ctx context.Context, c *api.Client) (any, error) { return c.Plan(ctx, id) })
		if err == nil {
			d := v.(api.PlanDetail)
			return d, nil
		}
		lastErr = err
	}
	return api.PlanDetail{}, fmt.Errorf("no node answered: %v", lastErr)
}

// converge waits until every node is back, alive and healthy, every pair
// node converged to its desired state, and every node's replica has the
// plan in the same terminal state.
func (h *harness) converge(id string, violate func(string, ...any)) {
	d := 2 * time.Minute
	var why string
	ok := h.poll(d, func() bool {
		l := h.leader()
		if l == "" {
			why = "no leader"
			return false
		}
		ms, err := h.client(l).Members(context.Background())
		if err != nil {
			why = "members: " + err.Error()
			return false
		}
		for _, m := range ms {
			if m.Status != "alive" || m.Health != "healthy" {
				why = fmt.Sprintf("%s is %s/%s", m.Node, m.Status, m.Health)
				return false
			}
		}
		if len(ms) != len(topology) {
			why = fmt.Sprintf("%d members", len(ms))
			return false
		}
		pd, err := h.client(l).Plan(context.Background(), id)
		if err != nil {
			why = err.Error()
			return false
		}
		for _, pn := range pd.Nodes {
			if !pn.Converged {
				why = pn.Node + " not converged: desired " + strings.Join(pn.Desired, ",") + " observed " + strings.Join(pn.Observed, ",")
				return false
			}
			want := unpatched
			if slices.Contains(pn.Desired, patchID) {
				want = patched
			}
			n := h.nodes[pn.Node]
			n.mu.Lock()
			got := n.svc.value()
			n.mu.Unlock()
			if got != want {
				why = fmt.Sprintf("%s's target prints %d; its desired state %v wants %d", pn.Node, got, pn.Desired, want)
				return false
			}
		}
		for _, name := range h.order {
			other, err := h.client(name).Plan(context.Background(), id)
			if err != nil || other.Plan.State != pd.Plan.State {
				why = fmt.Sprintf("%s's replica has the plan %s; the leader's %s (%v)", name, other.Plan.State, pd.Plan.State, err)
				return false
			}
		}
		return true
	})
	if !ok {
		violate("the cluster did not converge within %v after the faults healed: %s", d, why)
	}
}

// check tests the invariants over the recorded history and the end state.
func (h *harness) check(id string, rollbackAcked time.Time, violate func(string, ...any)) {
	l := h.leader()
	if l == "" {
		violate("no leader at the end")
		return
	}
	pd, err := h.client(l).Plan(context.Background(), id)
	if err != nil {
		violate("the acknowledged plan %s is not readable from the leader %s: %v", id, l, err)
		return
	}
	for _, e := range pd.History {
		h.hist.add("fsm", e.Node, fmt.Sprintf("#%d %s %s %s->%s %s", e.Seq, e.Kind, e.Pair, e.From, e.To, e.Cause))
	}
	p := pd.Plan
	// An acknowledged rollback is never lost.
	if !rollbackAcked.IsZero() && p.State != fsm.PlanRolledBack {
		violate("rollback acknowledged at %s, but the plan ended %s (%s)", rollbackAcked.Format(time.StampMilli), p.State, p.Reason)
	}
	// No node ends with a patch its plan rolled back; a completed plan
	// left every target patched. The targets' own output and the engine's
	// record inside each target both say so.
	for _, pn := range pd.Nodes {
		n := h.nodes[pn.Node]
		n.mu.Lock()
		svc := n.svc
		n.mu.Unlock()
		wantActive := p.State == fsm.PlanCompleted
		if p.State != fsm.PlanCompleted && p.State != fsm.PlanRolledBack {
			wantActive = slices.Contains(pn.Desired, patchID)
		}
		if p.State == fsm.PlanRolledBack && slices.Contains(pn.Desired, patchID) {
			violate("plan rolled back, but %s's desired state still holds %s", pn.Node, patchID)
		}
		ps, err := engine.List(svc.pid)
		if err != nil {
			violate("engine List(%d) on %s: %v", svc.pid, pn.Node, err)
			continue
		}
		active := false
		for _, x := range ps {
			if x.ID == patchID && x.State == "active" {
				active = true
			}
		}
		want := unpatched
		if wantActive {
			want = patched
		}
		if active != wantActive || svc.value() != want {
			violate("plan %s: %s's target pid %d has %s active=%t and prints %d; want active=%t, %d",
				p.State, pn.Node, svc.pid, patchID, active, svc.value(), wantActive, want)
		}
	}
	// The active is never patched before its standby passed a full trial
	// (the plan's steps, from the leader's clock), and the targets agree:
	// whenever both members of a pair print the patched value, one of them
	// had printed it for a trial already (sampling may see a change late:
	// a second of slack).
	h.checkPairsTried(p.Spec.Trial, violate)
	for _, pair := range p.Spec.Pairs {
		var sb, ac *fsm.NodeStep
		for i := range p.Steps {
			st := &p.Steps[i]
			if st.Pair == pair && st.Side == fsm.SideStandby {
				sb = st
			}
			if st.Pair == pair && st.Side == fsm.SideActive {
				ac = st
			}
		}
		if sb == nil || ac == nil {
			violate("pair %s: plan steps %+v lack a side", pair, p.Steps)
			continue
		}
		if !ac.Applied.IsZero() {
			if sb.TrialPassed.IsZero() || ac.Applied.Before(sb.TrialPassed) {
				violate("pair %s: active %s applied at %s, standby %s trial passed at %s", pair, ac.Node,
					ac.Applied.Format(time.StampMilli), sb.Node, sb.TrialPassed.Format(time.StampMilli))
			}
			if sb.TrialPassed.Sub(sb.TrialStarted) < p.Spec.Trial {
				violate("pair %s: standby %s's trial lasted %v; the plan's trial is %v", pair, sb.Node, sb.TrialPassed.Sub(sb.TrialStarted), p.Spec.Trial)
			}
		}
	}
	// A minority never promotes: no on_promote ran on a node while it was
	// cut off from the others (partition windows from the history).
	h.checkHooks(violate)
	// No target crashed (other than those the schedule killed) or stays
	// stopped or traced.
	for _, name := range h.order {
		n := h.nodes[name]
		if n.svc == nil {
			continue
		}
		n.mu.Lock()
		svc := n.svc
		n.mu.Unlock()
		if !svc.alive() {
			violate("%s's target pid %d is dead", name, svc.pid)
			continue
		}
		before := svc.size()
		if !h.poll(5*time.Second, func() bool { return svc.size() > before }) {
			violate("%s's target pid %d stopped printing", name, svc.pid)
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", svc.pid)); err == nil {
			for _, line := range strings.Split(string(st), "\n") {
				if v, ok := strings.CutPrefix(line, "TracerPid:"); ok && strings.TrimSpace(v) != "0" {
					violate("%s's target pid %d is still traced by %s", name, svc.pid, strings.TrimSpace(v))
				}
				if v, ok := strings.CutPrefix(line, "State:"); ok && strings.Contains(v, "stopped") {
					violate("%s's target pid %d is stopped: %s", name, svc.pid, strings.TrimSpace(v))
				}
			}
		}
	}
}

// checkPairsTried walks the targets' recorded values: a pair never has both
// members running the patch unless one ran it for a full trial first.
func (h *harness) checkPairsTried(trial time.Duration, violate func(string, ...any)) {
	const slack = time.Second
	pairOf := map[string]string{}
	for _, s := range topology {
		if s.pair != "" {
			pairOf[s.name] = s.pair
		}
	}
	since := map[string]time.Time{} // node -> patched since (zero: not patched)
	both := map[string]bool{}
	for _, o := range h.hist.all() {
		if o.Kind != "value" || pairOf[o.Node] == "" {
			continue
		}
		if o.What == strconv.Itoa(patched) {
			if since[o.Node].IsZero() {
				since[o.Node] = o.T
			}
		} else {
			since[o.Node] = time.Time{}
		}
		pair := pairOf[o.Node]
		var members []string
		for n, p := range pairOf {
			if p == pair {
				members = append(members, n)
			}
		}
		x, y := since[members[0]], since[members[1]]
		now := !x.IsZero() && !y.IsZero()
		if now && !both[pair] {
			first := x
			if y.Before(x) {
				first = y
			}
			if o.T.Sub(first) < trial-slack {
				violate("pair %s: both members print %d at %s, the first since %s only (trial %v)", pair, patched,
					o.T.Format(time.StampMilli), first.Format(time.StampMilli), trial)
			}
		}
		both[pair] = now
	}
}

// checkHooks reads the role hooks' log: no on_promote may start on a node
// while a partition cut it off from the others (that side has no quorum
// and cannot commit a promotion).
func (h *harness) checkHooks(violate func(string, ...any)) {
	data, _ := os.ReadFile(filepath.Join(h.dir, "hooks.log"))
	type window struct {
		node       string
		start, end time.Time
	}
	var cut []window
	open := map[string]time.Time{}
	for _, o := range h.hist.all() {
		switch {
		case o.Kind == "fault" && (o.What == kPartitionNode || o.What == kPartitionLeader || o.What == kPartitionActive || o.What == kOneWayIn):
			open[o.Node] = o.T
		case o.Kind == "heal" && !open[o.Node].IsZero():
			cut = append(cut, window{o.Node, open[o.Node], o.T})
			delete(open, o.Node)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, int64(sec*1e9))
		h.hist.add("hook", f[1], strings.Join(f[2:], " "))
		if f[3] != "active" {
			continue
		}
		for _, w := range cut {
			// The hook may have been committed just before the cut: allow
			// one second for it to start.
			if w.node == f[1] && at.After(w.start.Add(time.Second)) && at.Before(w.end) {
				violate("on_promote ran on %s at %s while it was cut off from the cluster (%s-%s)", f[1],
					at.Format(time.StampMilli), w.start.Format(time.StampMilli), w.end.Format(time.StampMilli))
			}
		}
	}
}

// sampler records, while the schedule runs, what each target prints and
// which roles each node's replica holds, and checks that no view ever has
// two actives in one pair.
type sampler struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func (s *sampler) stop() {
	close(s.done)
	s.wg.Wait()
}

func (h *harness) startSampler(violate func(string, ...any)) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		last := map[string]int{}
		for {
			for _, name := range h.order {
				n := h.nodes[name]
				n.mu.Lock()
				svc := n.svc
				n.mu.Unlock()
				if svc == nil {
					continue
				}
				if v := svc.value(); v != last[name] && v >= 0 {
					last[name] = v
					h.hist.add("value", name, strconv.Itoa(v))
				}
			}
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		last := map[string]string{}
		for {
			for _, name := range h.running() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				ms, err := h.client(name).Members(ctx)
				cancel()
				if err != nil {
					continue
				}
				actives := map[string][]string{}
				var view []string
				for _, m := range ms {
					// An unregistered row (the replica has not caught up
					// with the node yet) shows the role the node gossips,
					// not a role the FSM holds.
					if m.Pair == "" || m.Status == "unregistered" {
						continue
					}
					view = append(view, m.Node+"="+m.Role)
					if m.Role == "active" {
						actives[m.Pair] = append(actives[m.Pair], m.Node)
					}
				}
				if v := strings.Join(view, " "); v != last[name] {
					last[name] = v
					h.hist.add("role", name, v)
				}
				for pair, as := range actives {
					if len(as) > 1 {
						violate("%s's replica has %d actives in %s: %v", name, len(as), pair, as)
					}
				}
			}
			select {
			case <-s.done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return s
}
