package fsm

import (
	"encoding/json"
	"testing"
	"time"
)

func TestSubmitRefusesProcessCheckOfUnknownTarget(t *testing.T) {
	h := newCluster(t)
	sp := spec(blob1)
	sp.Health = []CheckSpec{{Name: "alive", Process: "nosuch"}}
	h.refused(&SubmitPlan{Spec: sp}, ErrInvalid, "process nosuch is not a target of node")
	sp.Health = []CheckSpec{{Name: "alive", Process: "other"}} // every node has "other"
	h.submit(sp)
}

// TestSubmitEngineOptions: a plan's engine options are kept as submitted
// (through a snapshot too), bad ones are refused, and a spec written
// before they existed decodes to the engine's defaults.
func TestSubmitEngineOptions(t *testing.T) {
	h := newCluster(t)
	sp := spec(blob1)
	sp.Mode, sp.Consistency, sp.ApplyTimeout = "dlopen", "entry", 750*time.Millisecond
	id := h.submit(sp)
	f := New()
	if err := f.Restore(readCloser(h.snapshot())); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	got := f.State().Plans[id].Spec
	if got.Mode != "dlopen" || got.Consistency != "entry" || got.ApplyTimeout != 750*time.Millisecond {
		t.Errorf("restored spec = mode %q consistency %q apply_timeout %v; want dlopen entry 750ms", got.Mode, got.Consistency, got.ApplyTimeout)
	}

	for _, tt := range []struct {
		edit func(*PlanSpec)
		want string
	}{
		{func(s *PlanSpec) { s.Mode = "preload" }, `mode "preload" is not inject or dlopen`},
		{func(s *PlanSpec) { s.Consistency = "all" }, `consistency "all" is not function or entry`},
		{func(s *PlanSpec) { s.ApplyTimeout = -time.Second }, "apply_timeout -1s is negative"},
	} {
		bad := spec(blob1)
		tt.edit(&bad)
		h.refused(&SubmitPlan{Spec: bad}, ErrInvalid, tt.want)
	}

	var old PlanSpec
	if err := json.Unmarshal([]byte(`{"name":"p","patch_sha256":"`+blob1.SHA256+`","target":"sipd","trial":1000000000}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Mode != "" || old.Consistency != "" || old.ApplyTimeout != 0 {
		t.Errorf("old spec = %q %q %v; want the defaults (unset)", old.Mode, old.Consistency, old.ApplyTimeout)
	}
}
