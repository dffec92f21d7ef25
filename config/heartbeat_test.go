package config

import (
	"testing"
	"time"
)

func TestParseHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want Heartbeat
	}{
		{"", Heartbeat{Timing: TimingLANFast}},
		{"heartbeat:\n  timing: lan\n", Heartbeat{Timing: TimingLAN}},
		{"heartbeat: {timing: lan-fast}\n", Heartbeat{Timing: TimingLANFast}},
		{"heartbeat:\n  timing: custom\n  probe_interval: 200ms\n  probe_timeout: 80ms\n  suspicion_mult: 5\n",
			Heartbeat{Timing: TimingCustom, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 80 * time.Millisecond, SuspicionMult: 5}},
		{"heartbeat:\n  timing: custom\n  probe_interval: 300ms\n",
			Heartbeat{Timing: TimingCustom, ProbeInterval: 300 * time.Millisecond}},
	} {
		n, err := ParseNode([]byte(minimalNode+tc.yaml), "/etc/lp/lpd.yaml")
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if n.Heartbeat != tc.want {
			t.Errorf("%q: heartbeat = %+v; want %+v", tc.yaml, n.Heartbeat, tc.want)
		}
	}
	h := Heartbeat{Timing: TimingCustom, ProbeInterval: 300 * time.Millisecond}.Effective()
	if want := (Heartbeat{Timing: TimingCustom, ProbeInterval: 300 * time.Millisecond, ProbeTimeout: 150 * time.Millisecond, SuspicionMult: 3}); h != want {
		t.Errorf("Effective() = %+v; want %+v", h, want)
	}
}
