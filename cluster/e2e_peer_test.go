package cluster

import (
	"net"
	"strings"
	"testing"
	"time"

	"lp/cluster/api"
)

// TestPeerHealthEndToEnd: the death of the active's lpd is not the death
// of its service. With a peer_health check on the standby that sees the
// active's service up, killing the active's lpd does not fail the pair
// over; once the service dies too, the standby is promoted.
func TestPeerHealthEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three lpd processes")
	}
	const failoverAfter = time.Second
	// a1's service is a port this test listens on; b1 checks it with TCP.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	peer := "peer_health:\n  - name: a1-service\n    tcp: " + svc.Addr().String() + "\n    interval: 200ms\n    timeout: 500ms\n    failures: 2\n    successes: 1\n"
	node := func(name, pair, role, more string) lpdSpec {
		y := "failover_after: " + failoverAfter.String() + "\n" + more
		if pair != "" {
			y += hookYAML
		}
		return lpdSpec{name: name, pair: pair, role: role, server: true, yaml: y}
	}
	c := startLPDs(t, []lpdSpec{node("w", "", "witness", ""), node("a1", "pair-1", "active", ""), node("b1", "pair-1", "standby", peer)})

	c.kill("a1") // kill -9 of a1's lpd; its service runs on
	killed := time.Now()
	m := c.waitMember("w", "b1", "judging a1's service up", 30*time.Second, func(m api.Member) bool { return m.Peer == "up" })
	t.Logf("b1's peer_health says a1's service is %s %v after a1's lpd was killed", m.Peer, time.Since(killed))
	// failover_after plus its grace, twice over: no promotion, no hook.
	hold := time.Now().Add(4 * failoverAfter)
	for time.Now().Before(hold) {
		if hs := c.hooks(); len(hs) != 0 {
			t.Fatalf("hooks ran %v; want none while a1's service is up", hs)
		}
		if m, ok := c.member("w", "b1"); ok && m.Role != "standby" {
			t.Fatalf("b1 is %s; want standby while a1's service is up", m.Role)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a, ok := c.member("w", "a1")
	if !ok || !strings.Contains(a.Failover, "says its service is up: no failover") {
		t.Errorf("members: a1's failover note %q; want it to say b1's peer_health sees its service up", a.Failover)
	}
	out, _, code := c.ctl("w", "members")
	if code != 0 || !strings.Contains(out, "b1: peer_health says its peer's service is up") {
		t.Errorf("lpctl members: exit %d, output %q; want the peer verdict", code, out)
	}

	// Now the service dies too: the standby is promoted.
	svc.Close()
	hs := c.waitHooks(1)
	if got := hs[0].String(); got != "b1 on_promote standby->active" {
		t.Errorf("first hook %q; want b1 on_promote standby->active", got)
	}
	b := c.waitMember("w", "b1", "active", 10*time.Second, func(m api.Member) bool { return m.Role == "active" })
	if b.Peer != "down" || b.PeerCheck != "a1-service" {
		t.Errorf("b1 peer %q (%s); want down (a1-service)", b.Peer, b.PeerCheck)
	}
}
