package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
	"lp/heartbeat"
)

// lpdProc is one real lpd process of an end-to-end test.
type lpdProc struct {
	name    string
	config  string
	log     string
	api     string // host:port
	gossip  string
	server  bool
	pair    string
	svc     *service
	cmd     *exec.Cmd
	args    []string // more lpd arguments
	running bool
}

// e2eCluster is a cluster of real lpd processes on 127.0.0.1, each pair
// node with its own real svc process.
type e2eCluster struct {
	t     testing.TB
	dir   string
	procs map[string]*lpdProc
	order []string
}

// freePort returns a port that was free a moment ago (TCP and UDP).
func freePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			// A closed port can be handed out again by the kernel before
			// the lpd it was picked for binds it: never give one twice.
			if !handedOut.ports[port] {
				handedOut.ports[port] = true
				return port
			}
		}
	}
	t.Fatal("no free port")
	return 0
}

// logTailsOnFailure makes a failed test log the tail of every lpd's log.
func (c *e2eCluster) logTailsOnFailure() {
	c.t.Cleanup(func() {
		if !c.t.Failed() {
			return
		}
		for _, name := range c.order {
			data, _ := os.ReadFile(c.procs[name].log)
			if len(data) > 6000 {
				data = data[len(data)-6000:]
			}
			c.t.Logf("--- log of %s (tail) ---\n%s", name, data)
		}
	})
}

// handedOut is every port freePort has returned in this test binary.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// e2eSpec is one lpd of an end-to-end cluster.
type e2eSpec struct {
	name, pair, role string
	server           bool
}

// startE2E starts: witness w (server), pair-1 a1 active / b1 standby
// (servers), pair-2 a2 active / b2 standby (non-voters). args go to every
// lpd.
func startE2E(t *testing.T, args ...string) *e2eCluster {
	t.Helper()
	return startE2EWith(t, []e2eSpec{
		{"w", "", "witness", true},
		{"a1", "pair-1", "active", true},
		{"b1", "pair-1", "standby", true},
		{"a2", "pair-2", "active", false},
		{"b2", "pair-2", "standby", false},
	}, args...)
}

// startE2EWith starts the given lpds (three of them servers) and waits
// until every one is registered, alive and healthy. args go to every lpd.
func startE2EWith(t *testing.T, specs []e2eSpec, args ...string) *e2eCluster {
	t.Helper()
	requirePtrace(t)
	buildFixtures(t)
	c := &e2eCluster{t: t, dir: t.TempDir(), procs: map[string]*lpdProc{}}
	// Every node joins every other: a node restarted after a graceful
	// leave finds the cluster again whichever node it is.
	ports := make([][3]int, len(specs))
	var gossips []string
	for i := range specs {
		ports[i] = [3]int{freePort(t), freePort(t), freePort(t)}
		gossips = append(gossips, fmt.Sprintf("127.0.0.1:%d", ports[i][2]))
	}
	join := strings.Join(gossips, ", ")
	for i, s := range specs {
		p, b := c.newLPD(s.name, s.pair, s.role, s.server, ports[i], join, args...)
		// Failover has its own end-to-end test (e2e_roles_test.go): here
		// the roles stay put, so that each subtest knows who is active.
		b.WriteString("failover_after: 1h\n")
		if s.server {
			b.WriteString("bootstrap_expect: 3\n")
		}
		if s.pair != "" {
			c.withService(p, b)
		}
		c.startLPD(p, b.String())
	}
	c.logTailsOnFailure()
	c.waitFor(30*time.Second, fmt.Sprintf("%d nodes registered, alive and healthy", len(specs)), func() bool {
		st, err := c.client("w").Status(context.Background())
		if err != nil || st.Leader == "" {
			return false
		}
		ms, err := c.client("w").Members(context.Background())
		if err != nil {
			return false
		}
		ok := 0
		for _, m := range ms {
			if m.Status == "alive" && m.Health == "healthy" && m.Gossip == "alive" && m.RaftState != "none" {
				ok++
			}
		}
		return ok == len(specs)
	})
	return c
}

// newLPD adds node name to c with its loopback ports (fresh ones where
// ports is zero), not started yet, and returns it with the first lines of
// its lpd.yaml: node, data_dir, bind, ports, server, role and join (its own
// gossip address when join is empty). args go to its lpd.
func (c *e2eCluster) newLPD(name, pair, role string, server bool, ports [3]int, join string, args ...string) (*lpdProc, *strings.Builder) {
	c.t.Helper()
	if ports == [3]int{} {
		ports = [3]int{freePort(c.t), freePort(c.t), freePort(c.t)}
	}
	p := &lpdProc{name: name, server: server, pair: pair, args: args,
		api: fmt.Sprintf("127.0.0.1:%d", ports[0]), gossip: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		config: filepath.Join(c.dir, name+".yaml"), log: filepath.Join(c.dir, name+".log")}
	if join == "" {
		join = p.gossip
	}
	b := &strings.Builder{}
	fmt.Fprintf(b, "node: %s\ndata_dir: %s\nbind: 127.0.0.1\n", name, filepath.Join(c.dir, name+".data"))
	fmt.Fprintf(b, "ports: { api: %d, raft: %d, gossip: %d }\n", ports[0], ports[1], ports[2])
	fmt.Fprintf(b, "server: %t\nrole: %s\njoin: [%s]\n", server, role, join)
	c.procs[name] = p
	c.order = append(c.order, name)
	return p, b
}

// withService starts a patchable test service for p's pair node and adds
// its pair and target svc to the lpd.yaml being built.
func (c *e2eCluster) withService(p *lpdProc, b *strings.Builder) {
	c.t.Helper()
	p.svc = startService(c.t, c.dir, "svc-"+p.name)
	fmt.Fprintf(b, "pair: %s\ntargets:\n  svc: { pidfile: %s }\n", p.pair, p.svc.pidfile)
}

// startLPD writes p's lpd.yaml and starts its lpd.
func (c *e2eCluster) startLPD(p *lpdProc, yaml string) {
	c.t.Helper()
	if err := os.WriteFile(p.config, []byte(yaml), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.start(p.name)
}

// start runs the lpd of a node (again, after a kill: same config and data).
func (c *e2eCluster) start(name string) {
	c.t.Helper()
	p := c.procs[name]
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(built.lpd, append([]string{"--config", p.config}, p.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting lpd %s: %v", name, err)
	}
	p.cmd, p.running = cmd, true
	c.t.Cleanup(func() {
		if p.cmd == cmd {
			c.kill(name)
		}
	})
}

// waitAlive waits until the node is alive, healthy and in raft again as the
// witness sees it.
func (c *e2eCluster) waitAlive(name string) {
	c.t.Helper()
	c.waitFor(20*time.Second, name+" alive again", func() bool {
		ms, err := c.client("w").Members(context.Background())
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.Node == name {
				return m.Gossip == "alive" && m.Status == "alive" && m.Suffrage != "" && m.LastContact != "unknown"
			}
		}
		return false
	})
}

// kill sends SIGKILL to a node's lpd and reaps it.
func (c *e2eCluster) kill(name string) {
	p := c.procs[name]
	if !p.running {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.running = false
}

func (c *e2eCluster) client(name string) *api.Client {
	cl := api.NewClient(c.procs[name].api)
	cl.HTTP.Timeout = 3 * time.Second
	return cl
}

func (c *e2eCluster) waitFor(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	d = waitBudget(d)
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader returns the name of the raft leader, as a running node reports it.
func (c *e2eCluster) leader() string {
	c.t.Helper()
	var leader string
	c.waitFor(15*time.Second, "a leader", func() bool {
		for _, name := range c.order {
			if !c.procs[name].running {
				continue
			}
			st, err := c.client(name).Status(context.Background())
			if err == nil && st.Leader != "" && c.procs[st.Leader].running {
				leader = st.Leader
				return true
			}
		}
		return false
	})
	return leader
}

// ctl runs lpctl against a node's API and returns stdout, stderr and the
// exit status.
func (c *e2eCluster) ctl(node string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(built.ctl, append([]string{"--addr", "http://" + c.procs[node].api}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("running lpctl: %v", err)
	}
	return out.String(), errb.String(), code
}

// firstPrinted samples the targets of nodes every 10 ms, from the
// targets' own output, until the returned stop is called; stop returns
// when each node's target first printed value.
func (c *e2eCluster) firstPrinted(nodes []string, value int) (stop func() map[string]time.Time) {
	first := map[string]time.Time{}
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, n := range nodes {
				if _, ok := first[n]; !ok && c.procs[n].svc.value() == value {
					first[n] = time.Now()
				}
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() map[string]time.Time {
		close(done)
		<-sampled
		return first
	}
}

// writePlan writes a plan file next to copies of the patch modules
// (fix.so, and the C++ fixcxx.so).
func (c *e2eCluster) writePlan(name, body string) string {
	c.t.Helper()
	dir := filepath.Join(c.dir, "plans")
	os.MkdirAll(dir, 0o700)
	for file, src := range map[string]string{"fix.so": built.fix, "fixcxx.so": built.cxx} {
		mod, err := os.ReadFile(src)
		if err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), mod, 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *e2eCluster) plan(node, id string) api.PlanDetail {
	c.t.Helper()
	var d api.PlanDetail
	c.waitFor(10*time.Second, "plan "+id+" from "+node, func() bool {
		var err error
		d, err = c.client(node).Plan(context.Background(), id)
		return err == nil
	})
	return d
}

func (c *e2eCluster) planCount(node string) int {
	c.t.Helper()
	ps, err := c.client(node).Plans(context.Background())
	if err != nil {
		c.t.Fatalf("listing plans: %v", err)
	}
	return len(ps)
}

// services returns the pair nodes' services.
func (c *e2eCluster) services(nodes ...string) map[string]*service {
	m := map[string]*service{}
	for _, n := range nodes {
		m[n] = c.procs[n].svc
	}
	return m
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five lpd processes")
	}
	c := startE2E(t)
	all := []string{"a1", "b1", "a2", "b2"}

	t.Run("bad plan files change nothing", func(t *testing.T) {
		before := c.planCount("w")
		cases := []struct{ name, body, want string }{
			{"unknown-target.yaml", "name: x\npatch: fix.so\ntarget: nosuch\ntrial: 1s\n", "has no target nosuch"},
			{"missing-patch.yaml", "name: x\npatch: missing.so\ntarget: svc\ntrial: 1s\n", "no such file or directory"},
			{"bad-yaml.yaml", "name: [x\npatch: fix.so\n", "bad-yaml.yaml:"},
			{"no-pairs.yaml", "name: x\npatch: fix.so\ntarget: svc\npairs: [nosuch-pair]\ntrial: 1s\n", "pair nosuch-pair has no registered node"},
		}
		for _, tc := range cases {
			path := c.writePlan(tc.name, tc.body)
			out, errOut, code := c.ctl("b2", "plan", "submit", path)
			if code == 0 {
				t.Errorf("%s: exit 0 (stdout %q); want non-zero", tc.name, out)
			}
			if lines := strings.Count(strings.TrimRight(errOut, "\n"), "\n") + 1; lines != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%s: stderr %q; want one line containing %q", tc.name, errOut, tc.want)
			}
		}
		if after := c.planCount("w"); after != before {
			t.Errorf("plans after bad submissions = %d; want %d", after, before)
		}
	})

	var planID string
	t.Run("plan completes standby first", func(t *testing.T) {
		path := c.writePlan("plan.yaml", "name: fix-answer\npatch: fix.so\ntarget: svc\npairs: [pair-1, pair-2]\ntrial: 1s\nprogress_deadline: 2m\n")
		// Watch the targets' own output: when does each first print the
		// patched value?
		stop := c.firstPrinted(all, 1041)
		// Submitted to a non-voter: forwarded to the leader.
		out, errOut, code := c.ctl("a2", "plan", "submit", path, "--wait")
		firstPatched := stop()
		for _, order := range [][2]string{{"b1", "a1"}, {"a1", "b2"}, {"b2", "a2"}} {
			first, second := firstPatched[order[0]], firstPatched[order[1]]
			if first.IsZero() || second.IsZero() || !first.Before(second) {
				t.Errorf("targets' output: %s patched at %v, %s at %v; want %s strictly first",
					order[0], first.Format(time.StampMilli), order[1], second.Format(time.StampMilli), order[0])
			}
		}
		if code != 0 {
			t.Fatalf("plan submit --wait: exit %d; stderr %q; stdout %q", code, errOut, out)
		}
		planID = strings.SplitN(out, "\n", 2)[0]
		for name, s := range c.services(all...) {
			if got := s.value(); got != 1041 {
				t.Errorf("%s's service prints %d; want 1041 (patched)", name, got)
			}
		}
		d := c.plan("w", planID)
		checkRollout(t, d)
		// Show and list agree.
		out, _, code = c.ctl("w", "plan", "show", planID, "-o", "json")
		var shown api.PlanDetail
		if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Plan.State != fsm.PlanCompleted {
			t.Errorf("plan show -o json: exit %d, state %q; want 0, completed", code, shown.Plan.State)
		}
	})

	t.Run("a restarted target gets its node's patches", func(t *testing.T) {
		p := c.procs["b2"]
		old := p.svc
		old.cmd.Process.Kill()
		old.cmd.Wait()
		// Started for the whole test (c.t), not this subtest.
		p.svc = spawnService(c.t, c.dir, "svc-b2-again")
		// lpd watches the old pidfile: the restarted service writes it.
		if err := os.WriteFile(old.pidfile, []byte(fmt.Sprintf("%d\n", p.svc.pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		p.svc.pidfile = old.pidfile
		p.svc.waitValue(t, 1041, 10*time.Second)
	})

	t.Run("rollback restores every node", func(t *testing.T) {
		out, errOut, code := c.ctl("b1", "rollback", "--wait")
		if code != 0 {
			t.Fatalf("rollback --wait: exit %d; stderr %q; stdout %q", code, errOut, out)
		}
		for name, s := range c.services(all...) {
			if got := s.value(); got != 42 {
				t.Errorf("%s's service prints %d after rollback; want 42", name, got)
			}
		}
		d := c.plan("w", planID)
		var order []string
		for _, e := range d.History {
			if e.Kind == fsm.EventDesired && e.To == "svc=" {
				order = append(order, e.Node)
			}
		}
		if want := []string{"b1", "b2", "a1", "a2"}; !slices.Equal(order, want) {
			t.Errorf("rollback order = %v; want standbys first %v", order, want)
		}
		out, errOut, code = c.ctl("w", "rollback", planID)
		if code != 0 || !strings.Contains(out, "already rolled back") {
			t.Errorf("second rollback: exit %d, stdout %q, stderr %q; want 0 and 'already rolled back'", code, out, errOut)
		}
	})

	t.Run("node killed mid-plan rejoins and converges", func(t *testing.T) {
		path := c.writePlan("plan2.yaml", "name: again\npatch: fix.so\ntarget: svc\npairs: [pair-1, pair-2]\ntrial: 1500ms\nprogress_deadline: 2m\n")
		out, errOut, code := c.ctl("w", "plan", "submit", path)
		if code != 0 {
			t.Fatalf("plan submit: exit %d; stderr %q", code, errOut)
		}
		id := strings.TrimSpace(out)
		c.waitFor(20*time.Second, "pair-1 standby trial", func() bool {
			p := c.plan("w", id).Plan
			return p.Phase == fsm.PhaseStandbyTrial || p.State.Terminal()
		})
		c.kill("a2") // pair-2's active: the plan must wait for it
		time.Sleep(4 * time.Second)
		if p := c.plan("w", id).Plan; p.CurrentPair() != "pair-1" || p.State != fsm.PlanRunning {
			t.Errorf("with a2 down the plan is at %s/%s (%s); want it waiting in pair-1", p.CurrentPair(), p.Phase, p.State)
		}
		c.start("a2")
		d := c.waitPlanState("w", id, fsm.PlanCompleted, 40*time.Second)
		checkRollout(t, d)
		for _, s := range c.services(all...) {
			s.waitValue(t, 1041, 5*time.Second)
		}
	})

	t.Run("node down during rollback converges when back", func(t *testing.T) {
		// A node whose lpd is down cannot confirm its revert: the plan
		// stays rolling_back, names it as pending, and is rolled_back only
		// once it is back and runs its pre-plan patches.
		victim := "b2"
		c.kill(victim)
		out, errOut, code := c.ctl("w", "rollback", "-o", "json")
		var r api.ActionResponse
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Plan == "" {
			t.Fatalf("rollback with %s down: exit %d; stderr %q; stdout %q", victim, code, errOut, out)
		}
		id := r.Plan
		for _, other := range []string{"a1", "a2", "b1"} {
			c.procs[other].svc.waitValue(t, 42, 20*time.Second)
		}
		d := c.plan("w", id)
		if d.Plan.State != fsm.PlanRollingBack {
			t.Errorf("with %s down the plan is %s; want rolling_back until it confirms", victim, d.Plan.State)
		}
		pending := false
		for _, n := range d.Nodes {
			pending = pending || (n.Node == victim && n.Pending)
		}
		if !pending {
			t.Errorf("plan show does not name %s as pending: %+v", victim, d.Nodes)
		}
		if got := c.procs[victim].svc.value(); got != 1041 {
			t.Errorf("%s (lpd down) prints %d; want 1041 until it is back", victim, got)
		}
		c.start(victim)
		c.procs[victim].svc.waitValue(t, 42, 20*time.Second)
		c.waitPlanState("w", id, fsm.PlanRolledBack, 40*time.Second)
	})

	t.Run("leader killed: new leader, plan resumes", func(t *testing.T) {
		path := c.writePlan("plan3.yaml", "name: third\npatch: fix.so\ntarget: svc\npairs: [pair-2]\ntrial: 2s\nprogress_deadline: 2m\n")
		out, errOut, code := c.ctl("w", "plan", "submit", path)
		if code != 0 {
			t.Fatalf("plan submit: exit %d; stderr %q", code, errOut)
		}
		id := strings.TrimSpace(out)
		c.waitFor(20*time.Second, "pair-2 standby trial", func() bool {
			p := c.plan("a2", id).Plan
			return p.Phase == fsm.PhaseStandbyTrial || p.State.Terminal()
		})
		old := c.leader()
		c.kill(old)
		asker := "a2"
		newLeader := c.leader()
		if newLeader == old {
			t.Fatalf("leader is still %s after it was killed", old)
		}
		if _, err := c.client(asker).Status(context.Background()); err != nil {
			t.Errorf("status from %s after the leader died: %v", asker, err)
		}
		d := c.waitPlanState(asker, id, fsm.PlanCompleted, 40*time.Second)
		checkRollout(t, d)
		c.procs["a2"].svc.waitValue(t, 1041, 5*time.Second)
		c.procs["b2"].svc.waitValue(t, 1041, 5*time.Second)
		out, errOut, code = c.ctl(asker, "members")
		if code != 0 || !strings.Contains(out, newLeader) {
			t.Errorf("members: exit %d, stderr %q, stdout %q", code, errOut, out)
		}
		c.start(old)
		c.waitAlive(old)
	})

	t.Run("failing trial check rolls back automatically", func(t *testing.T) {
		// Start from a clean slate: the previous plan's patches go first.
		if out, errOut, code := c.ctl("w", "rollback", "--wait"); code != 0 {
			t.Fatalf("rollback --wait: exit %d; stderr %q; stdout %q", code, errOut, out)
		}
		path := c.writePlan("plan4.yaml", "name: doomed\npatch: fix.so\ntarget: svc\npairs: [pair-1]\ntrial: 5s\n"+
			"health:\n  - name: says-no\n    exec: echo degraded; exit 1\n    interval: 100ms\n    failures: 2\n")
		out, errOut, code := c.ctl("w", "plan", "submit", path, "--wait")
		if code != 2 || !strings.Contains(errOut, "health check says-no failed on b1") {
			t.Fatalf("plan submit --wait: exit %d, stderr %q; want 2 (rolled back) naming the check", code, errOut)
		}
		id := strings.SplitN(out, "\n", 2)[0]
		d := c.plan("w", id)
		standbyRan := false
		for _, e := range d.History {
			if e.Kind == fsm.EventDesired && e.Node == "a1" {
				t.Errorf("history: the active a1 got desired %s; want it never patched", e.To)
			}
			if e.Kind == fsm.EventObserved && e.Node == "b1" && strings.Contains(e.To, "fix-answer") {
				standbyRan = true
			}
		}
		if !standbyRan {
			t.Errorf("history: b1 never reported running the patch; want its trial to have started")
		}
		for _, s := range c.services("a1", "b1") {
			s.waitValue(t, 42, 5*time.Second)
		}
	})

	t.Run("SIGSTOP of the patched standby's lpd in its trial rolls back", func(t *testing.T) {
		// b2 is a non-voter, never the leader: the time measured is
		// detection plus one orchestrator step, with no election.
		path := c.writePlan("plan5.yaml", "name: stopped\npatch: fix.so\ntarget: svc\npairs: [pair-2]\ntrial: 1m\n")
		out, errOut, code := c.ctl("w", "plan", "submit", path)
		if code != 0 {
			t.Fatalf("plan submit: exit %d; stderr %q", code, errOut)
		}
		id := strings.TrimSpace(out)
		c.waitFor(20*time.Second, "pair-2 standby trial", func() bool {
			p := c.plan("w", id).Plan
			return p.Phase == fsm.PhaseStandbyTrial || p.State.Terminal()
		})
		c.signal("b2", syscall.SIGSTOP)
		stopped := time.Now()
		resumed := false
		defer func() {
			if !resumed {
				c.signal("b2", syscall.SIGCONT)
			}
		}()
		// Bound: memberlist's worst detection plus the suspect bound, on
		// the default timing, with room for a loaded machine; the time
		// itself is measured by BenchmarkLoadedHeartbeat.
		g := heartbeat.LANFast()
		_, worst := g.ExpectedDetection(5)
		bound := 10 * (worst + g.SuspectBound(5))
		var p fsm.Plan
		c.waitFor(bound, "plan "+id+" to fail", func() bool {
			p = c.plan("w", id).Plan
			return p.State != fsm.PlanRunning
		})
		t.Logf("SIGSTOP of b2 to plan %s: %v (%s)", p.State, time.Since(stopped), p.Reason)
		if !strings.Contains(p.Reason, "node b2 is") {
			t.Errorf("plan failed with %q; want it to name b2's loss", p.Reason)
		}
		c.signal("b2", syscall.SIGCONT)
		resumed = true
		c.waitPlanState("w", id, fsm.PlanRolledBack, 30*time.Second)
		c.waitAlive("b2")
		for _, s := range c.services("a2", "b2") {
			s.waitValue(t, 42, 20*time.Second)
		}
	})

	t.Run("SIGTERM leaves gracefully", func(t *testing.T) {
		victim := "b1"
		if c.leader() == victim {
			victim = "a1"
		}
		p := c.procs[victim]
		p.cmd.Process.Signal(syscall.SIGTERM)
		err := p.cmd.Wait()
		p.running = false
		if err != nil {
			t.Errorf("lpd %s after SIGTERM: %v; want exit 0", victim, err)
		}
		c.waitFor(10*time.Second, victim+" left and out of the raft configuration", func() bool {
			ms, err := c.client("w").Members(context.Background())
			if err != nil {
				return false
			}
			for _, m := range ms {
				if m.Node == victim {
					return m.Gossip == "left" && m.Suffrage == "" && m.Status == "left"
				}
			}
			return false
		})
		c.start(victim)
		c.waitFor(20*time.Second, victim+" back as a voter", func() bool {
			ms, err := c.client("w").Members(context.Background())
			if err != nil {
				return false
			}
			for _, m := range ms {
				if m.Node == victim {
					return m.Gossip == "alive" && m.Suffrage == "Voter" && m.Status == "alive"
				}
			}
			return false
		})
	})
}

func (c *e2eCluster) waitPlanState(node, id string, want fsm.PlanState, d time.Duration) api.PlanDetail {
	c.t.Helper()
	var pd api.PlanDetail
	c.waitFor(d, "plan "+id+" "+string(want), func() bool {
		var err error
		pd, err = c.client(node).Plan(context.Background(), id)
		if err == nil && pd.Plan.State.Terminal() && pd.Plan.State != want {
			c.t.Fatalf("plan %s is %s (%s); want %s", id, pd.Plan.State, pd.Plan.Reason, want)
		}
		return err == nil && pd.Plan.State == want
	})
	return pd
}

// checkRollout checks a plan's recorded history: in every pair, the standby
// got the patch (desired), converged (observed) and passed its trial before
// the active was given the patch.
func checkRollout(t *testing.T, d api.PlanDetail) {
	t.Helper()
	p := d.Plan
	for _, pair := range p.Spec.Pairs {
		var standby, active string
		for _, st := range p.Steps {
			if st.Pair == pair && st.Side == fsm.SideStandby {
				standby = st.Node
			}
			if st.Pair == pair && st.Side == fsm.SideActive {
				active = st.Node
			}
		}
		seq := func(match func(e fsm.Event) bool) uint64 {
			for _, e := range d.History {
				if match(e) {
					return e.Seq
				}
			}
			return 0
		}
		sbDesired := seq(func(e fsm.Event) bool {
			return e.Kind == fsm.EventDesired && e.Node == standby && strings.Contains(e.To, p.Spec.PatchID)
		})
		sbObserved := seq(func(e fsm.Event) bool {
			return e.Kind == fsm.EventObserved && e.Node == standby && strings.Contains(e.To, p.Spec.PatchID) && e.Seq > sbDesired
		})
		activeApply := seq(func(e fsm.Event) bool {
			return e.Kind == fsm.EventPlanPhase && e.To == pair+"/"+string(fsm.PhaseActiveApply)
		})
		acDesired := seq(func(e fsm.Event) bool {
			return e.Kind == fsm.EventDesired && e.Node == active && strings.Contains(e.To, p.Spec.PatchID)
		})
		if sbDesired == 0 || sbObserved == 0 || activeApply == 0 || acDesired == 0 {
			t.Errorf("pair %s: history misses a step: standby desired #%d, observed #%d, active_apply #%d, active desired #%d",
				pair, sbDesired, sbObserved, activeApply, acDesired)
			continue
		}
		if !(sbDesired < sbObserved && sbObserved < activeApply && activeApply < acDesired) {
			t.Errorf("pair %s: order standby desired #%d, standby observed #%d, active_apply #%d, active desired #%d; want increasing",
				pair, sbDesired, sbObserved, activeApply, acDesired)
		}
	}
}
