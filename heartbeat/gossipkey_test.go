package heartbeat

import (
	"bytes"
	"testing"
	"time"
)

// TestGossipKeyHidesOutsiders: with a SecretKey, a member without the key
// (or with another key) is not seen, and does not see the cluster. The
// outsiders start joining before the member with the key does, so by the
// time that member is seen they have had at least as long to get in.
func TestGossipKeyHidesOutsiders(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	start := func(name string, k []byte, join []string) *Membership {
		t.Helper()
		m, err := Start(Config{Name: name, BindAddr: "127.0.0.1", Join: join, Meta: metaFor(name),
			Timing: testTiming(), SecretKey: k, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("Start(%s): %v", name, err)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		return m
	}
	n1 := start("n1", key, nil)
	plain := start("plain", nil, []string{n1.Addr()})
	other := start("other", bytes.Repeat([]byte{9}, 32), []string{n1.Addr()})
	n2 := start("n2", key, []string{n1.Addr()})
	waitMembers(t, n1, 10*time.Second, map[string]MemberState{"n1": StateAlive, "n2": StateAlive})
	waitMembers(t, n2, 10*time.Second, map[string]MemberState{"n1": StateAlive, "n2": StateAlive})
	for _, m := range []*Membership{n1, n2} {
		for _, mb := range m.Members() {
			if mb.Name == "plain" || mb.Name == "other" {
				t.Errorf("%s sees %s (%s); want members without the key unseen", m.LocalName(), mb.Name, mb.State)
			}
		}
	}
	for _, m := range []*Membership{plain, other} {
		if got := m.Members(); len(got) != 1 {
			t.Errorf("%s sees %d members; want only itself", m.LocalName(), len(got))
		}
	}
}
