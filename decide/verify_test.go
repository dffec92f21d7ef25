package decide

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lp/fsm"
)

// The verifier, in the spirit of hashicorp/raft's fuzzy/: it drives the
// real deciders (NextSteps, RoleSteps, Promotion) and the real FSM through
// random schedules of faults — lpds dying and returning (suspect, then
// dead), health flips, target processes exiting or being replaced, agents
// that fail to apply, trial checks that fail, operator promotions,
// rollbacks, pauses and aborts, leader changes (the new leader knows only
// the FSM: the trial reports it held are gone, and nothing is decided while
// no leader is elected), clock jumps — and checks the plan invariants after
// every step (see world.check). Then the faults stop and every plan must
// end: the final checks (world.settle).
//
// A failing schedule prints its seed; LP_DECIDE_SEED=N replays it alone
// (with its whole log: LP_DECIDE_LOG=1). LP_DECIDE_SCHEDULES=N runs N
// schedules (default 100, the short mode; 2000 is the long run), and
// FuzzDeciders lets go test -fuzz pick seeds.

const svc = "svc"

func TestDeciders(t *testing.T) {
	if s := os.Getenv("LP_DECIDE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LP_DECIDE_SEED=%q: %v", s, err)
		}
		w := runSchedule(seed)
		if os.Getenv("LP_DECIDE_LOG") != "" {
			t.Logf("schedule %d:\n%s", seed, strings.Join(w.log, "\n"))
		}
		if w.err != nil {
			t.Fatalf("%s", w.failure())
		}
		t.Logf("seed %d: %v", seed, w.stats)
		return
	}
	n := 100
	if s := os.Getenv("LP_DECIDE_SCHEDULES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("LP_DECIDE_SCHEDULES=%q: want a positive number", s)
		}
		n = v
	}
	start := time.Now()
	stats := map[string]int{}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		w := runSchedule(seed)
		if w.err != nil {
			t.Fatalf("%s", w.failure())
		}
		for k, v := range w.stats {
			stats[k] += v
		}
	}
	t.Logf("%d schedules in %v: %v", n, time.Since(start).Round(time.Millisecond), stats)
	// The schedules must reach the interesting ends, or the invariants
	// were checked over nothing.
	for _, k := range []string{"plan completed", "plan rolled_back", "plan failed", "plan aborted",
		"failover", "switchover", "rollback-first", "operator rollback", "leader change", "clock jump",
		"wave", "trial check failed"} {
		if stats[k] == 0 {
			t.Errorf("no schedule reached %q; the generator is too weak", k)
		}
	}
}

func FuzzDeciders(f *testing.F) {
	for seed := uint64(1); seed <= 8; seed++ {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		if w := runSchedule(seed); w.err != nil {
			t.Fatalf("%s", w.failure())
		}
	})
}

// simNode is what really happens on one node, as opposed to what the FSM
// knows of it.
type simNode struct {
	name, pair string
	lpdUp      bool      // its lpd runs (gossip: alive)
	deadAt     time.Time // with !lpdUp: when gossip turns suspect into dead
	bound      time.Duration
	healthy    bool     // its node health checks pass
	targetUp   bool     // the target process runs
	pid        int      // and its pid (a new one for each start)
	running    []string // patch ids active in the target
	flaky      bool     // its agent fails every apply and revert
	checkFail  bool     // the plan's trial checks fail here
	peerChecks bool
}

type world struct {
	seed   uint64
	rng    *rand.Rand
	f      *fsm.FSM
	idx    uint64
	now    time.Time
	nodes  map[string]*simNode
	names  []string // pair members, sorted
	pairs  []string
	trials map[string]Trial // the leader's memory of trial reports
	// leaderless: until then no leader is elected: nothing is committed
	// (no decisions, no reports).
	leaderless time.Time
	plans      []string        // every plan submitted, in order
	acked      map[string]bool // plans whose rollback was acknowledged
	modules    int
	faulty     bool // faults still happen
	step       int
	log        []string
	stats      map[string]int
	err        error
	errStep    int
}

func (w *world) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf("%5d %s ", w.step, w.now.Format("15:04:05.000"))+fmt.Sprintf(format, args...))
}

func (w *world) failure() string {
	tail := w.log
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	return fmt.Sprintf("schedule seed %d failed at step %d: %v\nlast events:\n%s\nreplay: LP_DECIDE_SEED=%d LP_DECIDE_LOG=1 go test -run 'TestDeciders$' -v ./decide",
		w.seed, w.errStep, w.err, strings.Join(tail, "\n"), w.seed)
}

func (w *world) fail(format string, args ...any) {
	if w.err == nil {
		w.err, w.errStep = fmt.Errorf(format, args...), w.step
	}
}

func (w *world) pick(n int) int { return w.rng.IntN(n) }

func (w *world) chance(p float64) bool { return w.rng.Float64() < p }

// apply commits one command at w.now, as raft would, and checks that it
// changed no value a reader may hold (fsm.Held).
func (w *world) apply(cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(w.now, cmd)
	if err != nil {
		return nil, err
	}
	held := w.f.Hold()
	w.idx++
	r, err := fsm.ResultOf(w.f.Apply(&raft.Log{Index: w.idx, Term: 1, Type: raft.LogCommand, Data: data}))
	if d := held.InPlace(); d != "" {
		w.fail("applying %s %+v: %s", cmd.CommandType(), cmd, d)
	}
	return r, err
}

// must commits a command of the harness itself, which the FSM must take.
func (w *world) must(cmd fsm.Command) *fsm.Result {
	r, err := w.apply(cmd)
	if err != nil {
		w.fail("the FSM refused the harness's %s %+v: %v", cmd.CommandType(), cmd, err)
		return &fsm.Result{}
	}
	return r
}

// live returns the FSM's own state, not a copy: the verifier runs on one
// goroutine, so no Apply runs while it reads, and each Apply's changes
// show through the same pointer (copying the state at every read made a
// schedule ten times slower). Nothing here writes to it.
func (w *world) live() *fsm.State {
	var st *fsm.State
	w.f.View(func(s *fsm.State) { st = s })
	return st
}

func (w *world) leader() bool { return !w.now.Before(w.leaderless) }

func newWorld(seed uint64) *world {
	w := &world{
		seed: seed, rng: rand.New(rand.NewPCG(seed, 0xdec1de)), f: fsm.New(),
		now:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		nodes: map[string]*simNode{}, trials: map[string]Trial{}, acked: map[string]bool{},
		faulty: true, stats: map[string]int{},
	}
	w.must(&fsm.RegisterNode{Name: "w", Role: fsm.RoleWitness, Server: true, Healthy: true})
	for i := 1; i <= 1+w.pick(4); i++ {
		pair := fmt.Sprintf("pair-%d", i)
		w.pairs = append(w.pairs, pair)
		for _, m := range []struct {
			name string
			role fsm.Role
		}{{fmt.Sprintf("a%d", i), fsm.RoleActive}, {fmt.Sprintf("b%d", i), fsm.RoleStandby}} {
			n := &simNode{name: m.name, pair: pair, lpdUp: true, healthy: true, targetUp: true, pid: 100 + w.pick(1000), peerChecks: w.chance(0.3)}
			w.nodes[m.name] = n
			w.names = append(w.names, m.name)
			fa := []time.Duration{0, time.Second, 5 * time.Second}[w.pick(3)]
			w.must(&fsm.RegisterNode{Name: m.name, Pair: pair, Role: m.role, Targets: []string{svc}, Healthy: true,
				FailoverAfter: fa, PeerChecks: n.peerChecks})
			w.must(&fsm.ReportObserved{Node: m.name, Target: svc, Pid: n.pid, PidStart: uint64(n.pid) * 10})
		}
	}
	slices.Sort(w.names)
	return w
}

// runSchedule runs one random schedule: faults for a while, then calm
// until every plan has ended.
func runSchedule(seed uint64) *world {
	w := newWorld(seed)
	faultSteps := 100 + w.pick(300)
	for w.step = 1; w.step <= faultSteps && w.err == nil; w.step++ {
		w.tick()
		w.fault()
		w.round()
	}
	if w.err == nil {
		w.settle()
	}
	return w
}

// tick moves the clock: mostly a short tick, sometimes to the deciders'
// next wake time, sometimes a jump.
func (w *world) tick() {
	switch r := w.pick(100); {
	case r < 3 && w.faulty:
		d := time.Duration(1+w.pick(20)) * time.Minute
		w.now = w.now.Add(d)
		w.logf("clock jumps %v", d)
		w.stats["clock jump"]++
	case r < 15:
		if at, ok := Wake(w.live(), w.now); ok {
			w.now = at
			return
		}
		fallthrough
	default:
		w.now = w.now.Add([]time.Duration{100 * time.Millisecond, 250 * time.Millisecond, time.Second, 3 * time.Second}[w.pick(4)])
	}
}

// round is one step of the world after the clock moved: gossip reaches the
// leader, agents act on their targets and report, the leader decides until
// nothing more is to do; then the invariants are checked.
func (w *world) round() {
	if w.leader() {
		w.gossip()
		w.agents()
		w.decide()
	}
	w.check()
}

func (w *world) node(name string) *simNode { return w.nodes[name] }

// fault injects one random fault or operator action (or nothing).
func (w *world) fault() {
	if w.pick(100) >= 35 {
		return
	}
	st := w.live()
	n := w.nodes[w.names[w.pick(len(w.names))]]
	switch r := w.pick(100); {
	case r < 14:
		w.submit(st)
	case r < 26:
		if n.lpdUp {
			n.lpdUp = false
			n.bound = time.Duration(1+w.pick(4)) * time.Second
			n.deadAt = w.now.Add(time.Duration(w.pick(6000)) * time.Millisecond)
			w.logf("lpd of %s dies (dead in gossip at +%v, suspect bound %v)", n.name, n.deadAt.Sub(w.now), n.bound)
		} else {
			n.lpdUp = true
			w.logf("lpd of %s returns", n.name)
		}
	case r < 36:
		n.healthy = !n.healthy
		w.logf("%s health: %v", n.name, n.healthy)
	case r < 42:
		if n.targetUp {
			n.targetUp, n.running = false, nil
			w.logf("target on %s exits", n.name)
		} else {
			w.startTarget(n)
		}
	case r < 46:
		if n.targetUp {
			w.startTarget(n)
		}
	case r < 52:
		n.flaky = !n.flaky
		w.logf("agent of %s flaky: %v", n.name, n.flaky)
	case r < 58:
		n.checkFail = !n.checkFail
		w.logf("trial checks on %s fail: %v", n.name, n.checkFail)
	case r < 68:
		w.promote(st, n.name)
	case r < 78:
		w.operatorRollback(st)
	case r < 84:
		w.operatorPauseResume(st)
	case r < 87:
		if p, ok := w.unfinished(st); ok && w.leader() {
			if res, err := w.apply(&fsm.AbortPlan{Plan: p.ID, Reason: "operator"}); err == nil && !res.Noop {
				w.logf("operator aborts %s", p.ID)
			}
		}
	case r < 94:
		w.leaderless = w.now.Add(time.Duration(w.pick(5000)) * time.Millisecond)
		w.trials = map[string]Trial{}
		w.logf("leader change: none until +%v; the new leader starts from the FSM", w.leaderless.Sub(w.now))
		w.stats["leader change"]++
	default:
		// a quiet step
	}
}

// startTarget (re)starts the target on n: a new process, no patches.
func (w *world) startTarget(n *simNode) {
	n.targetUp, n.running = true, nil
	n.pid += 1 + w.pick(50)
	w.logf("target on %s starts as pid %d", n.name, n.pid)
}

func (w *world) unfinished(st *fsm.State) (fsm.Plan, bool) {
	for _, id := range slices.Backward(w.plans) {
		if p := st.Plans[id]; !p.State.Terminal() {
			return p, true
		}
	}
	return fsm.Plan{}, false
}

// submit stores a new module (each plan its own, so a patch id names its
// plan) and submits a random plan for it.
func (w *world) submit(st *fsm.State) {
	if !w.leader() {
		return
	}
	if _, ok := w.unfinished(st); ok {
		return
	}
	w.modules++
	b := fsm.NewPutBlob(fmt.Sprintf("fix-%d", w.modules), []byte(fmt.Sprintf("module %d", w.modules)))
	w.must(b)
	spec := fsm.PlanSpec{
		Name: "p", PatchSHA256: b.SHA256, Target: svc,
		Trial:               []time.Duration{time.Second, 10 * time.Second, 30 * time.Second}[w.pick(3)],
		ProgressDeadline:    []time.Duration{0, 2 * time.Minute, 10 * time.Minute}[w.pick(3)],
		MaxParallel:         []int{0, 1, 2, 3}[w.pick(4)],
		OnFailure:           []fsm.OnFailure{fsm.OnFailureRollback, fsm.OnFailureRollback, fsm.OnFailurePause}[w.pick(3)],
		FailoverDuringTrial: []fsm.FailoverPolicy{fsm.FailoverRollbackFirst, fsm.FailoverKeepPatch}[w.pick(2)],
	}
	if w.chance(0.5) {
		spec.Health = []fsm.CheckSpec{{Name: "check-svc", Process: svc, Interval: time.Second, Timeout: time.Second, Failures: 1, Successes: 1}}
	}
	if w.chance(0.3) {
		ps := slices.Clone(w.pairs)
		w.rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		spec.Pairs = ps[:1+w.pick(len(ps))]
	}
	res, err := w.apply(&fsm.SubmitPlan{Spec: spec})
	if err != nil {
		w.logf("submission refused: %v", err)
		return
	}
	w.plans = append(w.plans, res.PlanID)
	w.logf("submit %s: fix-%d pairs %v trial %v deadline %v max_parallel %d on_failure %s failover %s checks %d",
		res.PlanID, w.modules, spec.Pairs, spec.Trial, spec.ProgressDeadline, spec.MaxParallel, spec.OnFailure, spec.FailoverDuringTrial, len(spec.Health))
}

func (w *world) promote(st *fsm.State, name string) {
	if !w.leader() {
		return
	}
	cmd, _, err := Promotion(st, name, w.now, time.Duration(1+w.pick(10))*time.Second)
	if err != nil || cmd == nil {
		return
	}
	if _, err := w.apply(cmd); err != nil {
		w.fail("the FSM refused promotion's %s %+v: %v", cmd.CommandType(), cmd, err)
		return
	}
	w.logf("operator promotes %s: %s %+v", name, cmd.CommandType(), cmd)
	w.stats["switchover"]++
}

func (w *world) operatorRollback(st *fsm.State) {
	if !w.leader() || len(w.plans) == 0 {
		return
	}
	id := w.plans[len(w.plans)-1]
	if w.chance(0.2) {
		id = w.plans[w.pick(len(w.plans))]
	}
	was := st.Plans[id].State
	res, err := w.apply(&fsm.RollbackPlan{Plan: id, Reason: "operator", Staged: true})
	if err != nil || res.Noop {
		return
	}
	w.acked[id] = true
	w.logf("operator rolls back %s (was %s)", id, was)
	w.stats["operator rollback"]++
}

func (w *world) operatorPauseResume(st *fsm.State) {
	p, ok := w.unfinished(st)
	if !ok || !w.leader() {
		return
	}
	var cmd fsm.Command = &fsm.PausePlan{Plan: p.ID, Reason: "operator"}
	if p.State == fsm.PlanPaused {
		cmd = &fsm.ResumePlan{Plan: p.ID, Cause: "operator"}
	}
	if res, err := w.apply(cmd); err == nil && !res.Noop {
		w.logf("operator: %s %s", cmd.CommandType(), p.ID)
	}
}

// gossip is the leader's membership reconciler: the FSM follows what
// gossip says of each lpd (alive; suspect, then dead) and each node's
// health; peer_health reports follow the peer's service.
func (w *world) gossip() {
	st := w.live()
	for _, name := range w.names {
		n, fn := w.nodes[name], st.Nodes[name]
		want := fsm.StatusAlive
		if !n.lpdUp {
			want = fsm.StatusSuspect
			if !w.now.Before(n.deadAt) {
				want = fsm.StatusDead
			}
		}
		if fn.Status != want {
			c := &fsm.SetNodeStatus{Node: name, Status: want, Cause: "gossip"}
			if want == fsm.StatusSuspect {
				c.SuspectBound = n.bound
			}
			w.must(c)
		}
		if n.lpdUp && fn.Healthy != n.healthy {
			c := &fsm.SetNodeHealth{Node: name, Healthy: n.healthy}
			if !n.healthy {
				c.FailingCheck, c.CheckOutput = "port", "refused"
			}
			w.must(c)
		}
	}
	st = w.live()
	for _, name := range w.names {
		n, fn := w.nodes[name], st.Nodes[name]
		if !n.peerChecks || !n.lpdUp {
			continue
		}
		var peer *simNode
		for _, m := range st.PairMembers(n.pair) {
			if m.Name != name {
				peer = w.nodes[m.Name]
			}
		}
		verdict := ""
		if peer != nil && !peer.lpdUp {
			verdict = fsm.PeerUp
			if !peer.targetUp || !peer.healthy {
				verdict = fsm.PeerDown
			}
		}
		if fn.Peer != verdict {
			w.must(&fsm.SetPeerHealth{Node: name, Peer: verdict, Check: "peer-svc", Output: "refused"})
		}
	}
}

// agents: each live agent makes its target run its desired stack (a flaky
// one fails and says so), reports what runs, runs the hook its role change
// owes, and runs the trial checks of a plan trying a patch on it.
func (w *world) agents() {
	st := w.live()
	for _, name := range w.names {
		n, fn := w.nodes[name], st.Nodes[name]
		if !n.lpdUp {
			continue
		}
		if fn.HookEpoch < fn.RoleEpoch {
			hook := "on_demote"
			if fn.Role == fsm.RoleActive {
				hook = "on_promote"
			}
			w.must(&fsm.ReportHook{Node: name, Epoch: fn.RoleEpoch, Hook: hook, OK: true})
		}
		obs, had := st.Observed[name][svc]
		if !n.targetUp {
			if !had || obs.Pid != 0 {
				w.must(&fsm.ReportObserved{Node: name, Target: svc})
			}
			continue
		}
		want := fsm.PatchIDs(st.DesiredStack(name, svc))
		errText := ""
		var pause time.Duration
		if !slices.Equal(n.running, want) {
			if n.flaky {
				errText = "applying: injected failure"
			} else {
				w.logf("%s runs %v (was %v)", name, want, n.running)
				n.running = slices.Clone(want)
				pause = time.Duration(100+w.pick(900)) * time.Microsecond // as the engine reports it
			}
		}
		if !had || obs.Pid != n.pid || !slices.Equal(obs.Active, n.running) || obs.Error != errText {
			w.must(&fsm.ReportObserved{Node: name, Target: svc, Pid: n.pid, PidStart: uint64(n.pid) * 10, Active: slices.Clone(n.running), Error: errText, Pause: pause})
		}
	}
	st = w.live()
	for _, p := range st.PlanList() {
		if p.State != fsm.PlanRunning || !p.Phase.Trial() || len(p.Spec.Health) == 0 {
			continue
		}
		for _, name := range p.PhaseNodes() {
			n := w.nodes[name]
			if !n.lpdUp {
				continue
			}
			switch {
			case n.checkFail:
				w.trials[p.ID] = w.trials[p.ID].With(Report{Plan: p.ID, Node: name, Check: "check-svc", Output: "refused"}, w.now)
				w.stats["trial check failed"]++
			case !w.now.Before(p.PhaseDeadline):
				if at, ok := w.trials[p.ID].PassedAt(name); !ok || at.Before(p.PhaseDeadline) {
					w.trials[p.ID] = w.trials[p.ID].With(Report{Plan: p.ID, Node: name, Passed: true}, w.now)
				}
			}
		}
	}
}

// decide runs the deciders as the leader does, one command at a time
// (each decided on the state the previous one left), until they have
// nothing more to do. The FSM must accept every command they return.
func (w *world) decide() {
	for range 64 {
		st := w.live()
		steps := append(NextSteps(st, w.now, w.trials), RoleSteps(st, w.now)...)
		if len(steps) == 0 {
			return
		}
		s := steps[0]
		res, err := w.apply(s.Cmd)
		if err != nil {
			w.fail("the FSM refused the deciders' %s for %s (%s): %v", s.Cmd.CommandType(), s.Plan, s.Why, err)
			return
		}
		w.logf("decide %s: %s (%s)", s.Plan, s.Cmd.CommandType(), s.Why)
		w.count(st, s, res)
		if res.Noop {
			w.fail("the deciders' %s for %s (%s) is a no-op: they would repeat it for ever: %s", s.Cmd.CommandType(), s.Plan, s.Why, res.Message)
			return
		}
	}
	w.fail("the deciders still had steps after 64 rounds")
}

func (w *world) count(before *fsm.State, s Step, res *fsm.Result) {
	switch c := s.Cmd.(type) {
	case *fsm.RollbackPlan:
		w.acked[c.Plan] = true
		if strings.HasPrefix(s.Why, "rollback-first") {
			w.stats["rollback-first"]++
		}
	case *fsm.SetRole:
		if strings.HasPrefix(s.Why, "failover") {
			w.stats["failover"]++
		}
	case *fsm.PlanPhase:
		if p := before.Plans[c.Plan]; len(p.WaveAt(slices.Index(p.Spec.Pairs, c.Pair))) > 1 {
			w.stats["wave"]++
		}
	}
}

// settle stops the faults: every lpd and target up, healthy, agents and
// checks working, a leader; the operator resumes or rolls back a paused
// plan. Every plan must then end within a bound that follows from its
// spec, and the cluster must converge.
func (w *world) settle() {
	w.faulty = false
	w.logf("faults stop")
	for _, name := range w.names {
		n := w.nodes[name]
		n.lpdUp, n.healthy, n.flaky, n.checkFail = true, true, false, false
		if !n.targetUp {
			w.startTarget(n)
		}
	}
	w.leaderless = w.now
	start := w.now
	// A plan's bound: its progress deadline (a running plan fails there),
	// then a rollback (bounded by the progress deadline again); without a
	// deadline, two trials and a check grace per wave, then a rollback.
	limit := start.Add(time.Minute)
	for _, id := range w.plans {
		p := w.live().Plans[id]
		if p.State.Terminal() {
			continue
		}
		waves := len(p.Spec.Pairs)
		d := time.Duration(waves)*2*(p.Spec.Trial+TrialResultGrace(p)+10*time.Second) + 2*p.Spec.ProgressDeadline
		if limit.Before(start.Add(d + time.Minute)) {
			limit = start.Add(d + time.Minute)
		}
	}
	for w.step++; w.err == nil; w.step++ {
		st := w.live()
		p, open := w.unfinished(st)
		if !open {
			break
		}
		if w.now.After(limit) {
			_, why := PlanStep(st, p, w.now, w.trials[p.ID])
			w.fail("plan %s is still %s (phase %q, reason %q, deciders: %q) %v after the faults stopped", p.ID, p.State, p.Phase, p.Reason, why, w.now.Sub(start))
			return
		}
		if p.State == fsm.PlanPaused {
			var cmd fsm.Command = &fsm.ResumePlan{Plan: p.ID, Cause: "operator"}
			if w.chance(0.5) {
				cmd = &fsm.RollbackPlan{Plan: p.ID, Reason: "operator", Staged: true}
				w.acked[p.ID] = true
			}
			w.must(cmd)
			w.logf("operator: %s %s", cmd.CommandType(), p.ID)
		}
		w.now = w.now.Add(250 * time.Millisecond)
		w.round()
	}
	// A few more rounds: agents converge, pairs get their active.
	for range 40 {
		w.now = w.now.Add(250 * time.Millisecond)
		w.round()
	}
	if w.err != nil {
		return
	}
	st := w.live()
	for _, id := range w.plans {
		p := st.Plans[id]
		w.stats["plan "+string(p.State)]++
		if w.acked[id] && p.State != fsm.PlanRolledBack && p.State != fsm.PlanFailed {
			w.fail("plan %s's rollback was acknowledged, but it ended %s", id, p.State)
		}
	}
	for _, pair := range w.pairs {
		if a, b := st.PairRoles(pair); a == "" || b == "" {
			w.fail("pair %s has active %q and standby %q once the faults stopped", pair, a, b)
		}
	}
	for _, name := range w.names {
		if want := fsm.PatchIDs(st.DesiredStack(name, svc)); !slices.Equal(w.nodes[name].running, want) {
			w.fail("%s runs %v; its desired stack is %v", name, w.nodes[name].running, want)
		}
	}
}

// check verifies the invariants after a step.
func (w *world) check() {
	if w.err != nil {
		return
	}
	st := w.live()
	// tried: the patches that passed a trial in each pair (on either
	// member: the plan stack of a node whose trial passed). A node runs
	// untried code when it runs a patch its pair never tried.
	tried := map[string]map[string]bool{}
	for _, p := range st.PlanList() {
		for _, s := range p.Steps {
			if s.TrialPassed.IsZero() {
				continue
			}
			if tried[s.Pair] == nil {
				tried[s.Pair] = map[string]bool{}
			}
			for _, id := range append(fsm.PatchIDs(p.PreState[s.Node]), p.Spec.PatchID) {
				tried[s.Pair][id] = true
			}
		}
	}
	untried := func(node string) []string {
		var out []string
		n := w.nodes[node]
		for _, id := range n.running {
			if !tried[n.pair][id] {
				out = append(out, id)
			}
		}
		return out
	}
	for _, pair := range w.pairs {
		ms := st.PairMembers(pair)
		actives := 0
		for _, m := range ms {
			if m.Role == fsm.RoleActive {
				actives++
			}
		}
		if actives > 1 {
			w.fail("pair %s has %d active nodes", pair, actives)
		}
		if len(ms) == 2 {
			if u0, u1 := untried(ms[0].Name), untried(ms[1].Name); len(u0) > 0 && len(u1) > 0 {
				w.fail("pair %s: both members run untried patches: %s %v, %s %v", pair, ms[0].Name, u0, ms[1].Name, u1)
			}
		}
	}
	rolledBack := map[string]string{} // patch id -> plan
	for _, p := range st.PlanList() {
		if p.State == fsm.PlanRolledBack {
			rolledBack[p.Spec.PatchID] = p.ID
		}
		if w.acked[p.ID] && p.State != fsm.PlanRollingBack && p.State != fsm.PlanRolledBack && p.State != fsm.PlanFailed {
			w.fail("plan %s's rollback was acknowledged, but it is %s", p.ID, p.State)
		}
		w.checkPlan(st, p)
	}
	for _, name := range w.names {
		for _, id := range fsm.PatchIDs(st.DesiredStack(name, svc)) {
			if plan, ok := rolledBack[id]; ok {
				w.fail("%s desires %s of plan %s, which is rolled back", name, id, plan)
			}
		}
	}
}

// checkPlan: standby first with a whole trial, max_parallel, deadlines.
func (w *world) checkPlan(st *fsm.State, p fsm.Plan) {
	side := func(pair string, sd fsm.Side) fsm.NodeStep {
		for _, s := range p.Steps {
			if s.Pair == pair && s.Side == sd {
				return s
			}
		}
		return fsm.NodeStep{}
	}
	inFlight := 0
	for i, pair := range p.Spec.Pairs {
		sb, ac := side(pair, fsm.SideStandby), side(pair, fsm.SideActive)
		if !ac.Applied.IsZero() && (sb.TrialPassed.IsZero() || ac.Applied.Before(sb.TrialPassed) || sb.TrialPassed.Before(sb.TrialStarted.Add(p.Spec.Trial))) {
			w.fail("plan %s: active %s patched at %v; standby %s trial %v..%v (trial %v)", p.ID, ac.Node, ac.Applied, sb.Node, sb.TrialStarted, sb.TrialPassed, p.Spec.Trial)
		}
		// The patch really runs on the active side only after the
		// standby's trial passed.
		if slices.Contains(w.nodes[ac.Node].running, p.Spec.PatchID) && sb.TrialPassed.IsZero() {
			w.fail("plan %s: %s runs %s before %s passed its trial", p.ID, ac.Node, p.Spec.PatchID, sb.Node)
		}
		started := !sb.Applied.IsZero() || !ac.Applied.IsZero()
		if started && ac.TrialPassed.IsZero() {
			inFlight++
			if i > 0 {
				first := p.Spec.Pairs[0]
				if side(first, fsm.SideActive).TrialPassed.IsZero() {
					w.fail("plan %s: pair %s started before the first pair %s passed", p.ID, pair, first)
				}
			}
		}
	}
	if limit := max(1, p.Spec.MaxParallel); (p.State == fsm.PlanRunning || p.State == fsm.PlanPaused) && inFlight > limit {
		w.fail("plan %s: %d pairs in flight; max_parallel %d", p.ID, inFlight, p.Spec.MaxParallel)
	}
	if !w.leader() {
		return // deadlines are the leader's to enforce
	}
	switch p.State {
	case fsm.PlanPending, fsm.PlanRunning:
		if !p.PlanDeadline.IsZero() && w.now.After(p.PlanDeadline) {
			w.fail("plan %s is %s past its progress deadline %v", p.ID, p.State, p.PlanDeadline)
		}
	case fsm.PlanRollingBack:
		if !p.RollbackDeadline.IsZero() && w.now.After(p.RollbackDeadline) {
			w.fail("plan %s is rolling back past its rollback deadline %v", p.ID, p.RollbackDeadline)
		}
	}
}
