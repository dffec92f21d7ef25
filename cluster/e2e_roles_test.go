package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/heartbeat"
)

// lpdSpec is one node of startLPDs.
type lpdSpec struct {
	name, pair, role string
	server           bool
	yaml             string // more lines of lpd.yaml
	targets          string // more lines under targets: (indented two spaces)
	service          bool   // the target is the patchable test service, not a sleeper
}

// startLPDs starts real lpd processes on 127.0.0.1, each pair node with a
// sleeping target process, and waits until the first node sees every node
// registered, alive, healthy and in raft. args go to every lpd.
func startLPDs(t testing.TB, specs []lpdSpec, args ...string) *e2eCluster {
	t.Helper()
	buildFixtures(t)
	c := &e2eCluster{t: t, dir: t.TempDir(), procs: map[string]*lpdProc{}}
	servers := 0
	for _, s := range specs {
		if s.server {
			servers++
		}
	}
	var join string
	for _, s := range specs {
		p, b := c.newLPD(s.name, s.pair, s.role, s.server, [3]int{}, join, args...)
		if join == "" {
			join = p.gossip
		}
		if s.server {
			fmt.Fprintf(b, "bootstrap_expect: %d\n", servers)
		}
		if s.pair != "" {
			if s.service {
				c.withService(p, b)
			} else {
				pidfile := filepath.Join(c.dir, s.name+".pid")
				startSleeper(t, pidfile)
				fmt.Fprintf(b, "pair: %s\ntargets:\n  svc: { pidfile: %s }\n", s.pair, pidfile)
			}
			b.WriteString(s.targets)
		}
		b.WriteString(strings.ReplaceAll(s.yaml, "DIR", c.dir))
		c.startLPD(p, b.String())
	}
	c.logTailsOnFailure()
	first := specs[0].name
	c.waitFor(60*time.Second, fmt.Sprintf("%d nodes registered, alive and healthy", len(specs)), func() bool {
		ms, err := c.client(first).Members(context.Background())
		if err != nil {
			return false
		}
		ok := 0
		for _, m := range ms {
			if m.Status == "alive" && m.Health == "healthy" && m.Gossip == "alive" && m.RaftState != "none" && m.Role != "" {
				ok++
			}
		}
		return ok == len(specs)
	})
	return c
}

// signal sends sig to a node's lpd.
func (c *e2eCluster) signal(name string, sig syscall.Signal) {
	c.t.Helper()
	if err := c.procs[name].cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signalling lpd %s: %v", name, err)
	}
}

// member returns one row of GET /v1/members asked from node from.
func (c *e2eCluster) member(from, name string) (api.Member, bool) {
	ms, err := c.client(from).Members(context.Background())
	if err != nil {
		return api.Member{}, false
	}
	for _, m := range ms {
		if m.Node == name {
			return m, true
		}
	}
	return api.Member{}, false
}

// waitMember waits until cond holds for node name as from reports it.
func (c *e2eCluster) waitMember(from, name, what string, d time.Duration, cond func(m api.Member) bool) api.Member {
	c.t.Helper()
	var got api.Member
	c.waitFor(d, name+" "+what+" (as "+from+" sees it)", func() bool {
		m, ok := c.member(from, name)
		got = m
		return ok && cond(m)
	})
	return got
}

// hookLine is one line the test hooks append: "NANOS NODE HOOK OLD->NEW".
type hookLine struct {
	at                   time.Time
	node, hook, from, to string
}

func (h hookLine) String() string { return fmt.Sprintf("%s %s %s->%s", h.node, h.hook, h.from, h.to) }

// hookYAML configures hooks that append a hookLine to DIR/hooks.log; the
// demote hook takes 300ms, so that a promotion that did not wait for it
// would be written first.
const hookYAML = `on_promote: echo "$(date +%s%N) $LP_NODE on_promote $LP_OLD_ROLE->$LP_ROLE" >> DIR/hooks.log
on_demote: sleep 0.3; echo "$(date +%s%N) $LP_NODE on_demote $LP_OLD_ROLE->$LP_ROLE" >> DIR/hooks.log
`

func (c *e2eCluster) hooks() []hookLine {
	data, _ := os.ReadFile(filepath.Join(c.dir, "hooks.log"))
	var out []hookLine
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		from, to, _ := strings.Cut(f[3], "->")
		out = append(out, hookLine{at: time.Unix(0, ns), node: f[1], hook: f[2], from: from, to: to})
	}
	return out
}

func (c *e2eCluster) waitHooks(n int) []hookLine {
	c.t.Helper()
	var hs []hookLine
	c.waitFor(15*time.Second, fmt.Sprintf("%d hook runs", n), func() bool {
		hs = c.hooks()
		return len(hs) >= n
	})
	return hs
}

// TestRolesEndToEnd runs three real lpd processes, witness w and pair-1
// (a1 active, b1 standby), all raft voters, with failover_after 1s, test
// hooks and a node-level exec check that fails while DIR/NODE.fail exists.
func TestRolesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three lpd processes")
	}
	check := `health:
  - name: flag
    exec: if [ -e DIR/%s.fail ]; then echo "flag file present"; exit 1; fi
    interval: 100ms
    failures: 2
    successes: 2
`
	// b1 also checks a TCP port the test opens and closes (on the standby:
	// its health does not cause a failover; each node's health changes
	// count towards its own flap damping).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().String()
	node := func(name, pair, role string) lpdSpec {
		y := fmt.Sprintf(check, name)
		if name == "b1" {
			y += "  - name: port\n    tcp: " + port + "\n    interval: 100ms\n    timeout: 100ms\n    failures: 2\n    successes: 2\n"
		}
		y += "failover_after: 1s\n"
		if pair != "" {
			y += hookYAML
		}
		return lpdSpec{name: name, pair: pair, role: role, server: true, yaml: y}
	}
	c := startLPDs(t, []lpdSpec{node("w", "", "witness"), node("a1", "pair-1", "active"), node("b1", "pair-1", "standby")})
	flag := func(name string, on bool) {
		path := filepath.Join(c.dir, name+".fail")
		if on {
			os.WriteFile(path, nil, 0o600)
		} else {
			os.Remove(path)
		}
	}
	timing := heartbeat.LANFast()
	_, worst := timing.ExpectedDetection(3)

	t.Run("failing exec check turns the node unhealthy and back", func(t *testing.T) {
		flag("w", true)
		m := c.waitMember("a1", "w", "unhealthy", 10*time.Second, func(m api.Member) bool { return m.Health == "unhealthy" })
		if m.FailingCheck != "flag" || m.CheckOutput != "flag file present" {
			t.Errorf("w failing check %q output %q; want flag, \"flag file present\"", m.FailingCheck, m.CheckOutput)
		}
		flag("w", false)
		c.waitMember("a1", "w", "healthy", 10*time.Second, func(m api.Member) bool { return m.Health == "healthy" && m.FailingCheck == "" })
		out, _, code := c.ctl("b1", "members")
		if code != 0 || !strings.Contains(out, "HEALTH") || !strings.Contains(out, "pair-1") {
			t.Errorf("lpctl members: exit %d, output %q", code, out)
		}
	})

	t.Run("failing tcp check turns the node unhealthy and back", func(t *testing.T) {
		ln.Close()
		m := c.waitMember("w", "b1", "unhealthy", 10*time.Second, func(m api.Member) bool { return m.Health == "unhealthy" })
		if m.FailingCheck != "port" || !strings.Contains(m.CheckOutput, "refused") {
			t.Errorf("b1 failing check %q output %q; want port, connection refused", m.FailingCheck, m.CheckOutput)
		}
		// The FSM (through the leader) has it too.
		c.waitFor(5*time.Second, "b1 unhealthy in the FSM", func() bool {
			m, _ := c.member("a1", "b1")
			return m.Status == "alive" && !m.DownSince.IsZero()
		})
		ln, err = net.Listen("tcp", port)
		if err != nil {
			t.Fatalf("listening on %s again: %v", port, err)
		}
		c.waitMember("a1", "b1", "healthy", 10*time.Second, func(m api.Member) bool { return m.Health == "healthy" && m.DownSince.IsZero() })
	})

	t.Run("SIGSTOPped standby is dead in time and alive after SIGCONT; quorum holds", func(t *testing.T) {
		c.signal("b1", syscall.SIGSTOP)
		stopped := time.Now()
		c.waitMember("w", "b1", "dead", 10*time.Second, func(m api.Member) bool { return m.Gossip == "dead" })
		took := time.Since(stopped)
		t.Logf("b1 declared dead %v after SIGSTOP (LANFast worst case by the formula: %v)", took, worst)
		if limit := 3 * worst; took > limit {
			t.Errorf("b1 declared dead after %v; want within %v", took, limit)
		}
		// w and a1 keep a quorum: a leader, and writes go through.
		st, err := c.client("w").Status(context.Background())
		if err != nil || st.Leader == "" || st.Leader == "b1" {
			c.waitFor(10*time.Second, "a leader among w and a1", func() bool {
				st, err = c.client("w").Status(context.Background())
				return err == nil && st.Leader != "" && st.Leader != "b1"
			})
		}
		// The FSM records b1 dead: a commit by the remaining majority.
		c.waitMember("w", "b1", "dead in the FSM", 10*time.Second, func(m api.Member) bool { return m.Status == "dead" })
		if m, _ := c.member("w", "a1"); m.Role != "active" {
			t.Errorf("a1 is %s while the standby is down; want active", m.Role)
		}
		c.signal("b1", syscall.SIGCONT)
		c.waitMember("w", "b1", "alive", 10*time.Second, func(m api.Member) bool { return m.Gossip == "alive" && m.Status == "alive" })
		if hs := c.hooks(); len(hs) != 0 {
			t.Errorf("hooks ran: %v; want none (the standby's loss is no failover)", hs)
		}
	})

	t.Run("failover: the standby is promoted, hooks run once each", func(t *testing.T) {
		c.signal("a1", syscall.SIGSTOP)
		stopped := time.Now()
		hs := c.waitHooks(1)
		t.Logf("on_promote started %v after SIGSTOP of the active", hs[0].at.Sub(stopped))
		if got := hs[0].String(); got != "b1 on_promote standby->active" {
			t.Errorf("first hook %q; want b1 on_promote standby->active", got)
		}
		c.waitMember("w", "b1", "active", 5*time.Second, func(m api.Member) bool { return m.Role == "active" && !m.HookPending })
		c.signal("a1", syscall.SIGCONT)
		hs = c.waitHooks(2)
		if got := hs[1].String(); got != "a1 on_demote active->standby" {
			t.Errorf("second hook %q; want a1 on_demote active->standby", got)
		}
		m := c.waitMember("w", "a1", "back as standby", 10*time.Second, func(m api.Member) bool {
			return m.Gossip == "alive" && m.Status == "alive" && !m.HookPending
		})
		if m.Role != "standby" {
			t.Errorf("a1 came back %s; want standby (no failback)", m.Role)
		}
		time.Sleep(time.Second)
		if hs := c.hooks(); len(hs) != 2 {
			t.Errorf("hooks %v; want exactly one on_promote and one on_demote", hs)
		}
	})

	t.Run("restarted lpd does not run its hook again", func(t *testing.T) {
		c.kill("a1")
		c.start("a1")
		c.waitMember("w", "a1", "alive again", 20*time.Second, func(m api.Member) bool {
			return m.Gossip == "alive" && m.Status == "alive" && m.LastContact != "unknown"
		})
		time.Sleep(time.Second)
		if hs := c.hooks(); len(hs) != 2 {
			t.Errorf("hooks after a1's restart: %v; want the same two", hs)
		}
	})

	t.Run("lpctl promote: demote hook then promote hook", func(t *testing.T) {
		if _, errOut, code := c.ctl("w", "promote", "w"); code == 0 || !strings.Contains(errOut, "witness") {
			t.Errorf("promote w: exit %d, stderr %q; want a refusal naming the witness", code, errOut)
		}
		if out, _, code := c.ctl("w", "promote", "b1"); code != 0 || !strings.Contains(out, "already active") {
			t.Errorf("promote b1 (active): exit %d, stdout %q; want 0, already active", code, out)
		}
		out, errOut, code := c.ctl("w", "promote", "a1")
		if code != 0 || !strings.Contains(out, "demoted first") {
			t.Fatalf("promote a1: exit %d, stdout %q, stderr %q; want 0 and b1 demoted first", code, out, errOut)
		}
		hs := c.waitHooks(4)
		if hs[2].String() != "b1 on_demote active->standby" || hs[3].String() != "a1 on_promote standby->active" {
			t.Errorf("switchover hooks %v, %v; want b1 on_demote, then a1 on_promote", hs[2], hs[3])
		}
		if !hs[2].at.Before(hs[3].at) {
			t.Errorf("on_demote finished at %v, on_promote started at %v; want demote first", hs[2].at, hs[3].at)
		}
	})

	t.Run("a minority never promotes", func(t *testing.T) {
		// a1 (active) and w stop: b1 is alone, sees the active dead, and
		// has no quorum: it must not promote itself.
		c.signal("w", syscall.SIGSTOP)
		c.signal("a1", syscall.SIGSTOP)
		c.waitMember("b1", "a1", "dead", 10*time.Second, func(m api.Member) bool { return m.Gossip == "dead" })
		time.Sleep(3 * time.Second) // well past failover_after
		m, _ := c.member("b1", "b1")
		hs := c.hooks()
		c.signal("w", syscall.SIGCONT)
		c.signal("a1", syscall.SIGCONT)
		if m.Role != "standby" {
			t.Errorf("isolated b1's replica says it is %s; want standby", m.Role)
		}
		if len(hs) != 4 {
			t.Errorf("hooks while b1 was alone: %v; want the 4 before only", hs)
		}
		c.leader()
		c.waitMember("w", "a1", "alive again", 20*time.Second, func(m api.Member) bool { return m.Gossip == "alive" && m.Status == "alive" })
	})

	t.Run("unhealthy active fails over", func(t *testing.T) {
		before := len(c.hooks())
		active, standby := "a1", "b1"
		if m, _ := c.member("w", "b1"); m.Role == "active" {
			active, standby = "b1", "a1"
		}
		flag(active, true)
		defer flag(active, false)
		c.waitMember("w", standby, "promoted", 15*time.Second, func(m api.Member) bool { return m.Role == "active" })
		hs := c.waitHooks(before + 2)
		got := map[string]bool{}
		for _, h := range hs[before:] {
			got[h.String()] = true
		}
		if !got[standby+" on_promote standby->active"] || !got[active+" on_demote active->standby"] {
			t.Errorf("hooks after the unhealthy failover: %v; want %s on_promote and %s on_demote", hs[before:], standby, active)
		}
	})

	t.Run("flapping health is damped", func(t *testing.T) {
		for i := range 6 {
			flag("w", i%2 == 0)
			time.Sleep(400 * time.Millisecond)
		}
		flag("w", false)
		time.Sleep(1500 * time.Millisecond) // far more than successes x interval
		m, _ := c.member("w", "w")
		if m.Health != "unhealthy" || !strings.Contains(m.CheckOutput, "flapping") {
			t.Errorf("w after flapping, stable for 1.5s: health %s, output %q; want held unhealthy (flapping)", m.Health, m.CheckOutput)
		}
	})
}
