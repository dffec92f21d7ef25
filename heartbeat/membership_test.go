package heartbeat

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// metaFor is the metadata member name publishes in these tests (Timing is
// set by the Membership itself).
func metaFor(name string) Meta {
	return Meta{Pair: "pair-" + name, Role: "standby", Health: HealthHealthy, Version: "test", API: "127.0.0.1:1", Raft: "127.0.0.1:2",
		Timing: testTiming().Fingerprint()}
}

// threeMembers starts n1, then n2 and n3 joining it, and waits until all see
// all three alive.
func threeMembers(t *testing.T) (ms []*Membership, ws []*watcher) {
	t.Helper()
	n1 := startMember(t, "n1", nil, metaFor("n1"))
	ws = append(ws, watch(n1))
	ms = append(ms, n1)
	for _, name := range []string{"n2", "n3"} {
		m := startMember(t, name, []string{n1.Addr()}, metaFor(name))
		ws = append(ws, watch(m))
		ms = append(ms, m)
	}
	all := map[string]MemberState{"n1": StateAlive, "n2": StateAlive, "n3": StateAlive}
	for _, m := range ms {
		waitMembers(t, m, 10*time.Second, all)
	}
	return ms, ws
}

func TestMembersJoinAndSeeEachOther(t *testing.T) {
	ms, ws := threeMembers(t)
	for i, m := range ms {
		got := m.Members()
		if len(got) != 3 {
			t.Fatalf("%s: %d members; want 3", m.LocalName(), len(got))
		}
		for _, mb := range got {
			if want := metaFor(mb.Name); mb.Meta != want {
				t.Errorf("%s sees %s meta %+v; want %+v", m.LocalName(), mb.Name, mb.Meta, want)
			}
			if mb.Name == "n2" && mb.Addr != ms[1].Addr() {
				t.Errorf("%s sees n2 at %s; want %s", m.LocalName(), mb.Addr, ms[1].Addr())
			}
		}
		for _, other := range []string{"n1", "n2", "n3"} {
			ws[i].waitFor(t, 0, 5*time.Second, other+" alive at "+m.LocalName(), is(Alive, other))
		}
	}
	if _, port, _ := net.SplitHostPort(ms[0].Addr()); port == "0" {
		t.Fatalf("Addr() = %s; want the real port", ms[0].Addr())
	}
}

func TestShutdownWithoutLeaveIsDead(t *testing.T) {
	ms, ws := threeMembers(t)
	from := []int{ws[0].mark(), ws[1].mark()}
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		e, _ := ws[i].waitFor(t, from[i], 10*time.Second, "n3 dead at "+ms[i].LocalName(), func(e Event) bool {
			return e.Node == "n3" && (e.Kind == Dead || e.Kind == Left)
		})
		if e.Kind != Dead {
			t.Fatalf("%s: n3 %s; want dead", ms[i].LocalName(), e.Kind)
		}
		if mb, _ := ms[i].Member("n3"); mb.State != StateDead {
			t.Fatalf("%s: Member(n3).State = %s; want dead", ms[i].LocalName(), mb.State)
		}
	}
}

func TestLeaveIsLeft(t *testing.T) {
	ms, ws := threeMembers(t)
	from := []int{ws[0].mark(), ws[1].mark(), ws[2].mark()}
	// Leave gives the leave intents half its timeout, each a TCP send
	// bounded by TCPTimeout: leave room for several on a busy machine (it
	// returns as soon as they are delivered).
	if err := ms[2].Leave(10 * testTiming().TCPTimeout); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for i := 0; i < 3; i++ {
		e, _ := ws[i].waitFor(t, from[i], 10*time.Second, "n3 left at "+ms[i].LocalName(), func(e Event) bool {
			return e.Node == "n3" && (e.Kind == Dead || e.Kind == Left)
		})
		if e.Kind != Left {
			t.Fatalf("%s: n3 %s; want left", ms[i].LocalName(), e.Kind)
		}
	}
	if mb, _ := ms[0].Member("n3"); mb.State != StateLeft {
		t.Fatalf("n1: Member(n3).State = %s; want left", mb.State)
	}
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := ms[2].Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Shutdown: %v; want ErrShutdown", err)
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	ms, ws := threeMembers(t)
	from := []int{ws[0].mark(), ws[1].mark(), ws[2].mark()}
	want := metaFor("n2")
	want.Role = "active"
	want.Health = HealthUnhealthy
	want.FailingCheck = "sip-port"
	want.Output = "dial tcp 127.0.0.1:5060: connection refused"
	if err := ms[1].UpdateMeta(want); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	for i := range ms {
		e, _ := ws[i].waitFor(t, from[i], 10*time.Second, "n2 updated at "+ms[i].LocalName(), is(Updated, "n2"))
		if e.Meta != want {
			t.Fatalf("%s: Updated meta %+v; want %+v", ms[i].LocalName(), e.Meta, want)
		}
		if mb, _ := ms[i].Member("n2"); mb.Meta != want {
			t.Fatalf("%s: Member(n2).Meta = %+v; want %+v", ms[i].LocalName(), mb.Meta, want)
		}
	}
}

func TestMetaTooBigIsAnError(t *testing.T) {
	big := Meta{Pair: strings.Repeat("p", MetaMaxSize)}
	if _, err := Start(Config{Name: "big", BindAddr: "127.0.0.1", Meta: big}); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Start with %d-byte pair: %v; want ErrMetaTooLarge", len(big.Pair), err)
	}
	m := startMember(t, "n1", nil, metaFor("n1"))
	if err := m.UpdateMeta(big); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta with %d-byte pair: %v; want ErrMetaTooLarge", len(big.Pair), err)
	}
	if mb, _ := m.Member("n1"); mb.Meta != metaFor("n1") {
		t.Fatalf("meta after failed update %+v; want the old %+v", mb.Meta, metaFor("n1"))
	}
}

func TestJoinRetriedWhileAlone(t *testing.T) {
	// Find a port, free it, let n2 try to join it before anyone listens,
	// then start n1 there: n2's retry must find it.
	probe := startMember(t, "probe", nil, Meta{})
	addr := probe.Addr()
	if err := probe.Shutdown(); err != nil {
		t.Fatal(err)
	}
	n2 := startMember(t, "n2", []string{addr}, metaFor("n2"))
	_, portStr, _ := net.SplitHostPort(addr)
	var port int
	for _, c := range portStr {
		port = port*10 + int(c-'0')
	}
	n1, err := Start(Config{Name: "n1", BindAddr: "127.0.0.1", BindPort: port, Meta: metaFor("n1"), Timing: testTiming(), Logger: testLogger(t)})
	if err != nil {
		t.Skipf("port %d taken again before the test could reuse it: %v", port, err)
	}
	t.Cleanup(func() { _ = n1.Shutdown() })
	waitMembers(t, n2, 10*time.Second, map[string]MemberState{"n1": StateAlive, "n2": StateAlive})
}

// TestSuspicionPlumbing drives the suspect path by the log line memberlist
// writes when a probe fails, on a member that is in fact alive: Suspect must
// be reported, then Alive (by a direct ack or when the suspicion expires).
func TestSuspicionPlumbing(t *testing.T) {
	ms, ws := threeMembers(t)
	from := ws[0].mark()
	w := &mlLogWriter{m: ms[0]}
	if _, err := w.Write([]byte("[INFO] memberlist: Suspect n2 has failed, no acks received\n")); err != nil {
		t.Fatal(err)
	}
	if mb, _ := ms[0].Member("n2"); mb.State != StateSuspect {
		t.Fatalf("Member(n2).State = %s right after the suspect line; want suspect", mb.State)
	}
	_, at := ws[0].waitFor(t, from, time.Second, "n2 suspect", is(Suspect, "n2"))
	ws[0].waitFor(t, at+1, 5*time.Second, "n2 alive again", is(Alive, "n2"))

	// Lines about unknown or local members change nothing. (Real gossip
	// may still suspect n2 or n3 on a loaded machine: only what the lines
	// could have done is checked.)
	from = ws[0].mark()
	for _, line := range []string{
		"[INFO] memberlist: Suspect nobody has failed, no acks received",
		"[INFO] memberlist: Suspect n1 has failed, no acks received",
		"[INFO] memberlist: Suspect  has failed, no acks received",
	} {
		_, _ = w.Write([]byte(line))
	}
	if mb, ok := ms[0].Member("n1"); !ok || mb.State != StateAlive {
		t.Fatalf("after irrelevant lines, the local member n1 is %s (known %v); want alive", mb.State, ok)
	}
	for _, name := range []string{"nobody", ""} {
		if mb, ok := ms[0].Member(name); ok {
			t.Fatalf("after irrelevant lines, unknown member %q is listed as %s", name, mb.State)
		}
	}
	for _, e := range ws[0].events(from) {
		if e.Kind == Suspect && (e.Node == "n1" || e.Node == "nobody" || e.Node == "") {
			t.Fatalf("an irrelevant line raised %s", describe([]Event{e}))
		}
	}
}

// TestStoppedChildSuspectDeadAlive stops a real member process with SIGSTOP:
// the others must report it Suspect, then Dead, and Alive again after
// SIGCONT.
func TestStoppedChildSuspectDeadAlive(t *testing.T) {
	n1 := startMember(t, "n1", nil, metaFor("n1"))
	w := watch(n1)
	n2 := startMember(t, "n2", []string{n1.Addr()}, metaFor("n2"))
	c := startChild(t, "victim", n1.Addr(), "fast")
	all := map[string]MemberState{"n1": StateAlive, "n2": StateAlive, "victim": StateAlive}
	waitMembers(t, n1, 10*time.Second, all)
	waitMembers(t, n2, 10*time.Second, all)

	from := w.mark()
	stopped := time.Now()
	c.signal(t, syscall.SIGSTOP)
	sus, at := w.waitFor(t, from, 5*time.Second, "victim suspect", func(e Event) bool {
		return e.Node == "victim" && e.Kind != Updated
	})
	if sus.Kind != Suspect {
		t.Fatalf("first event about the stopped victim: %s; want suspect (events %s)", sus.Kind, describe(w.events(from)))
	}
	dead, at := w.waitFor(t, at+1, 5*time.Second, "victim dead", func(e Event) bool {
		return e.Node == "victim" && e.Kind != Updated
	})
	if dead.Kind != Dead {
		t.Fatalf("event after suspect: %s; want dead (events %s)", dead.Kind, describe(w.events(from)))
	}
	t.Logf("SIGSTOP -> suspect %v, dead %v (LANFast typical/worst for n=3: %v)",
		sus.At.Sub(stopped), dead.At.Sub(stopped), fmtPair(LANFast().ExpectedDetection(3)))

	c.signal(t, syscall.SIGCONT)
	w.waitFor(t, at+1, 10*time.Second, "victim alive after SIGCONT", is(Alive, "victim"))
	waitMembers(t, n2, 10*time.Second, all)
}

func fmtPair(a, b time.Duration) string { return a.String() + "/" + b.String() }
