package heartbeat

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSuspectBound(t *testing.T) {
	lf := LANFast()
	for _, tc := range []struct {
		t    Timing
		n    int
		want time.Duration
	}{
		// M·S·max(1,log10 n)·P + 4·P
		{lf, 2, 2*3*100*time.Millisecond + 400*time.Millisecond},
		{lf, 9, time.Second},
		{lf, 100, 2*3*2*100*time.Millisecond + 400*time.Millisecond},
		{MemberlistDefaultLAN(), 5, 6*4*time.Second + 4*time.Second},
	} {
		if got := tc.t.SuspectBound(tc.n); got != tc.want {
			t.Errorf("%s: SuspectBound(%d) = %v; want %v", tc.t.Fingerprint(), tc.n, got, tc.want)
		}
		_, hi := tc.t.suspicionBounds(tc.n)
		if got := tc.t.SuspectBound(tc.n); got <= hi {
			t.Errorf("%s: SuspectBound(%d) = %v; want more than memberlist's longest suspicion %v", tc.t.Fingerprint(), tc.n, got, hi)
		}
	}
}

func TestFingerprint(t *testing.T) {
	if got, want := LANFast().Fingerprint(), "lan-fast 100ms/50ms/3/2"; got != want {
		t.Errorf("LANFast().Fingerprint() = %q; want %q", got, want)
	}
	if got, want := MemberlistDefaultLAN().Fingerprint(), "lan 1s/500ms/4/6"; got != want {
		t.Errorf("MemberlistDefaultLAN().Fingerprint() = %q; want %q", got, want)
	}
	c := Custom(100*time.Millisecond, 50*time.Millisecond, 3)
	if err := c.Validate(); err != nil {
		t.Fatalf("Custom(lan-fast figures).Validate() = %v", err)
	}
	if !SameTiming(c.Fingerprint(), LANFast().Fingerprint()) {
		t.Errorf("custom %q and %q: want the same timing", c.Fingerprint(), LANFast().Fingerprint())
	}
	if SameTiming(MemberlistDefaultLAN().Fingerprint(), LANFast().Fingerprint()) {
		t.Error("lan and lan-fast: want different timings")
	}
	if !SameTiming("", LANFast().Fingerprint()) {
		t.Error("an unknown timing (older member) must agree with everything")
	}
	if c := Custom(20*time.Millisecond, 10*time.Millisecond, 2); c.GossipInterval != 10*time.Millisecond || c.Validate() != nil {
		t.Errorf("Custom(20ms): gossip interval %v, Validate %v; want 10ms, nil", c.GossipInterval, c.Validate())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTimingMismatchIsReported: members publish their timing in their
// metadata, and a member whose peer runs another timing logs one warning.
func TestTimingMismatchIsReported(t *testing.T) {
	var logs syncBuffer
	fast := testTiming()
	a, err := Start(Config{Name: "a", BindAddr: "127.0.0.1", Timing: fast, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown() })
	slow := Custom(200*time.Millisecond, 100*time.Millisecond, 4)
	slow.JoinRetryInterval = fast.JoinRetryInterval
	startMemberTiming(t, "b", []string{a.Addr()}, Meta{Pair: "p"}, slow)
	ms := waitMembers(t, a, 20*time.Second, map[string]MemberState{"a": StateAlive, "b": StateAlive})
	for _, m := range ms {
		if m.Name == "b" && m.Meta.Timing != slow.Fingerprint() {
			t.Errorf("b's published timing = %q; want %q", m.Meta.Timing, slow.Fingerprint())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "another heartbeat timing") {
		if time.Now().After(deadline) {
			t.Fatalf("no timing warning in a's log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "another heartbeat timing"); n != 1 {
		t.Errorf("%d timing warnings; want 1 (once per member and value)", n)
	}
	if !strings.Contains(logs.String(), "its_timing=\"custom 200ms/100ms/4/2\"") {
		t.Errorf("warning does not name b's timing:\n%s", logs.String())
	}
}
