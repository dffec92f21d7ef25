package fsm

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

// scenario runs a scripted story through h: a plan that completes over two
// pairs, a failover, a second plan rolled back after a failed trial check, a
// third plan aborted while pending.
func scenario(h *harness) {
	h.t.Helper()
	id := h.submit(spec(blob1))
	h.runPlan(id)
	h.advance(time.Minute)
	h.ok(&SetNodeStatus{Node: "a2", Status: StatusDead, Cause: "memberlist: a2 failed"})
	h.ok(&SetRole{Node: "b2", Role: RoleActive, Cause: "failover: a2 dead for 2s"})
	h.advance(time.Minute)
	h.ok(node("a2", "sip-2", RoleActive)) // comes back as standby
	id = h.submit(spec(blob2, "sip-2", "sip-1"))
	h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseStandbyApply, Deadline: h.now.Add(time.Minute)})
	h.applyStep(id)
	h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseStandbyTrial})
	h.advance(10 * time.Second)
	h.ok(&SetNodeHealth{Node: "a2", FailingCheck: "check-sip", CheckOutput: "503 Service Unavailable"})
	h.ok(&RollbackPlan{Plan: id, Reason: "plan check check-sip failed on a2"})
	h.ok(&ReportObserved{Node: "a2", Target: target, Pid: 100, Active: []string{"fix-1"}})
	h.ok(&FinishRollback{Plan: id})
	h.ok(&AbortPlan{Plan: h.submit(spec(blob2, "sip-1")), Reason: "operator"})
}

func TestGoldenSnapshot(t *testing.T) {
	h := newCluster(t)
	scenario(h)
	got := h.snapshot()
	var pretty bytes.Buffer
	if err := jsonIndent(&pretty, got); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "scenario.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update once): %v", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Fatalf("snapshot differs from %s (go test -update rewrites it if the change is intended):\ngot  %s", path, pretty.String())
	}
	// An old snapshot must keep restoring.
	f := New()
	if err := f.Restore(readCloser(want)); err != nil {
		t.Fatalf("Restore(golden) = %v", err)
	}
	equalState(t, f.State(), h.state())
}

func TestSameLogSameState(t *testing.T) {
	h := newCluster(t)
	scenario(h)
	for _, name := range []string{"replica-1", "replica-2"} {
		f := New()
		for _, l := range h.log {
			f.Apply(l)
		}
		if got, want := snapshotBytes(t, f), h.snapshot(); !bytes.Equal(got, want) {
			t.Fatalf("%s: state differs from the leader's after the same log", name)
		}
		equalState(t, f.State(), h.state())
	}
}

func TestSnapshotRestore(t *testing.T) {
	h := newCluster(t)
	scenario(h)
	snap := h.snapshot()

	// Restore into an FSM that has other state: it is replaced.
	other := newCluster(t)
	other.submit(spec(blob1))
	if err := other.f.Restore(readCloser(snap)); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	equalState(t, other.f.State(), h.state())
	if got := snapshotBytes(t, other.f); !bytes.Equal(got, snap) {
		t.Fatalf("snapshot of the restored FSM differs")
	}

	// The restored FSM goes on exactly like the original.
	next := []Command{&RollbackPlan{Plan: "p000001"}, &FinishRollback{Plan: "p000001"}}
	for _, c := range next {
		l := h.entry(c)
		h.applyLog(l)
		other.f.Apply(l)
	}
	equalState(t, other.f.State(), h.state())

	// Apply runs while a snapshot persists: the snapshot keeps its state.
	s, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	before := h.snapshot()
	h.ok(&SetNodeStatus{Node: "a1", Status: StatusDead})
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.Bytes(), before) {
		t.Fatalf("a snapshot changed after a later Apply")
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	h := newCluster(t)
	good := string(h.snapshot())
	tests := []struct {
		name, data string
		want       error
	}{
		{"version 2", strings.Replace(good, `"v":1`, `"v":2`, 1), ErrUnsupported},
		{"no state", `{"v":1}`, ErrInvalid},
		{"unknown plan state", `{"v":1,"state":{"plans":{"p1":{"state":"exploded"}}}}`, ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCluster(t)
			before := f.snapshot()
			err := f.f.Restore(readCloser([]byte(tc.data)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v; want %v", err, tc.want)
			}
			if !bytes.Equal(before, f.snapshot()) {
				t.Fatalf("a failed Restore changed the state")
			}
		})
	}
	for _, data := range []string{"", "{", `{"v":1,"state":{},"extra":1}`, good + "x"} {
		if err := New().Restore(readCloser([]byte(data))); err == nil {
			t.Errorf("Restore(%.20q) = nil; want an error", data)
		}
	}
	// A minimal snapshot restores to an empty, usable state.
	f := New()
	if err := f.Restore(readCloser([]byte(`{"v":1,"state":{}}`))); err != nil {
		t.Fatalf("Restore(empty state) = %v", err)
	}
	equalState(t, f.State(), NewState())
	data, _ := Encode(t0, node("a1", "sip-1", RoleActive))
	if res := f.Apply(&raft.Log{Index: 1, Data: data}).(*Result); res.Err != "" {
		t.Fatalf("Apply after restoring an empty state = %s", res.Err)
	}
}

func TestPersistCancelsOnError(t *testing.T) {
	h := newCluster(t)
	s, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &failingSink{}
	if err := s.Persist(sink); err == nil || !sink.cancelled || sink.closed {
		t.Fatalf("Persist to a failing sink = %v, cancelled %v, closed %v; want an error, cancelled, not closed", err, sink.cancelled, sink.closed)
	}
}

type failingSink struct{ memSink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// FuzzApply feeds arbitrary log entries to an FSM in the middle of a plan:
// Apply must never panic, never report an internal error, and change
// nothing when it refuses an entry.
func FuzzApply(f *testing.F) {
	for _, c := range sampleCommands() {
		data, err := Encode(t0.Add(time.Hour), c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"type":"plan_phase","time":"2026-03-01T13:00:00Z","cmd":{"plan":"p000001","pair":"sip-1","phase":"standby_trial"}}`))
	f.Add([]byte(`{"v":1,"type":"set_desired","time":"2026-03-01T13:00:00Z","cmd":{"node":"b1","target":"sipd","patches":null,"plan":"p000001"}}`))
	f.Add([]byte(`{"v":1,"type":"submit_plan","time":"9999-12-31T23:59:59Z","cmd":{"spec":{"patch_sha256":"","target":"sipd","trial":-1}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newCluster(t)
		id := h.submit(spec(blob1))
		h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
		h.applyStep(id)
		before := h.snapshot()
		res := h.applyLog(&raft.Log{Index: 1000, Data: data}) // fails on CodeInternal
		if res.Err != "" && !bytes.Equal(before, h.snapshot()) {
			t.Fatalf("refused entry %q changed the state", data)
		}
		// Whatever happened, the state still snapshots and restores.
		if err := New().Restore(readCloser(h.snapshot())); err != nil {
			t.Fatalf("Restore after %q = %v", data, err)
		}
	})
}

// FuzzRestore feeds arbitrary snapshots to Restore, then applies every
// sample command: nothing may panic or report an internal error.
func FuzzRestore(f *testing.F) {
	h := newCluster(f)
	scenario(h)
	f.Add(h.snapshot())
	f.Add([]byte(`{"v":1,"state":{"plans":{"p000001":{"id":"p000001","state":"running","phase":"active_trial","pair_index":7,"spec":{"pairs":[]}}}}}`))
	f.Add([]byte(`{"v":1,"state":{"desired":{"a1":null},"observed":{"a1":null},"nodes":{"a1":{"name":"a1","pair":"sip-1","role":"active"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := New()
		if err := fsm.Restore(readCloser(data)); err != nil {
			return
		}
		for i, c := range sampleCommands() {
			enc, err := Encode(t0.Add(time.Hour), c)
			if err != nil {
				t.Fatal(err)
			}
			if res := fsm.Apply(&raft.Log{Index: uint64(i + 1), Data: enc}).(*Result); res.Code == CodeInternal {
				t.Fatalf("after restoring %q, %s: %s", data, c.CommandType(), res.Err)
			}
		}
		s := fsm.State()
		for id := range s.Plans {
			s.PlanNodes(id)
			s.Converged(id)
			s.PlanHistory(id)
		}
	})
}
