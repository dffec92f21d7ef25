package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	h := newCluster(t)
	scenario(h) // p000001 completed (blob1), p000002 rolled back, p000003 aborted (both blob2)
	h.advance(time.Hour)
	before := h.state()
	r := Retention{History: 5, Plans: 1, BlobGrace: time.Minute}
	if !before.NeedsPrune(r, h.now) {
		t.Fatalf("NeedsPrune = false; want true")
	}
	res := h.ok(&Prune{Retention: r, Cause: "retention"})
	if res.Noop {
		t.Fatalf("Prune = no-op (%s); want a change", res.Message)
	}
	s := h.state()
	if _, ok := s.Plans["p000003"]; !ok || len(s.Plans) != 1 {
		t.Errorf("plans after Prune = %v; want only p000003, the newest terminal plan", keys(s.Plans))
	}
	if _, ok := s.Blobs[blob1.SHA256]; !ok {
		t.Errorf("blob1 (in the desired stacks) was collected")
	}
	if _, ok := s.Blobs[blob2.SHA256]; ok {
		t.Errorf("blob2 (referenced by no desired stack and no unfinished plan) was kept")
	}
	if len(s.History) != 5 {
		t.Fatalf("len(History) = %d; want 5", len(s.History))
	}
	last := s.History[len(s.History)-1]
	if last.Kind != EventPruned || last.Seq != before.History[len(before.History)-1].Seq+1 {
		t.Errorf("last event = %+v; want a pruned event numbered after the last one before", last)
	}
	if s.NeedsPrune(r, h.now) {
		t.Errorf("NeedsPrune after Prune = true; want false")
	}
	if res := h.ok(&Prune{Retention: r}); !res.Noop {
		t.Errorf("second Prune changed the state; want a no-op")
	}
	// Numbering goes on after the dropped events.
	h.ok(&SetNodeStatus{Node: "a1", Status: StatusSuspect})
	s = h.state()
	if got, want := s.History[len(s.History)-1].Seq, last.Seq+1; got != want {
		t.Errorf("next event seq = %d; want %d", got, want)
	}
}

func TestPruneKeepsWhatIsNeeded(t *testing.T) {
	h := newCluster(t)
	id := h.submit(spec(blob1))
	h.runPlan(id) // completed: blob1 in desired
	h.advance(time.Hour)
	id2 := h.submit(spec(blob2, "sip-1")) // unfinished: blob2 referenced by it
	h.ok(&PlanPhase{Plan: id2, Pair: "sip-1", Phase: PhaseStandbyApply, Deadline: h.now.Add(time.Minute)})
	h.advance(time.Hour)
	fresh := NewPutBlob("fix-3", []byte("\x7fELF fresh module"))
	h.ok(fresh) // just stored, referenced by nothing yet
	r := Retention{Plans: 1, HistoryAge: time.Minute, BlobGrace: time.Minute}
	h.ok(&Prune{Retention: r})
	s := h.state()
	for _, b := range []*PutBlob{blob1, blob2, fresh} {
		if _, ok := s.Blobs[b.SHA256]; !ok {
			t.Errorf("module %s was collected; want it kept", b.PatchID)
		}
	}
	if len(s.Plans) != 2 {
		t.Errorf("plans = %v; want both (one terminal plan is within the count, the other is unfinished)", keys(s.Plans))
	}
	// Every event is older than a minute but the newest: it alone is kept.
	if len(s.History) != 1 {
		t.Errorf("len(History) = %d; want 1 (the newest is always kept)", len(s.History))
	}
	// Past its grace, the unreferenced module goes; the plan still runs.
	h.advance(time.Minute)
	h.ok(&Prune{Retention: r})
	s = h.state()
	if _, ok := s.Blobs[fresh.SHA256]; ok {
		t.Errorf("module fix-3 outlived its grace period")
	}
	if s.Plans[id2].State != PlanRunning {
		t.Errorf("plan %s is %s after Prune; want running", id2, s.Plans[id2].State)
	}
}

func TestPruneRefusesNegativeLimits(t *testing.T) {
	h := newCluster(t)
	h.refused(&Prune{Retention: Retention{History: -1}}, ErrInvalid, "negative")
}

// TestPruneBoundsState submits and rolls back many plans with a Prune after
// each: the state's size levels off.
func TestPruneBoundsState(t *testing.T) {
	h := newCluster(t)
	r := Retention{History: 200, Plans: 5, BlobGrace: time.Minute}
	var sizes []int
	for i := range 60 {
		b := NewPutBlob(fmt.Sprintf("fix-%d", i), []byte(fmt.Sprintf("\x7fELF module %d", i)))
		h.ok(b)
		id := h.submit(spec(b, "sip-1"))
		h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply, Deadline: h.now.Add(time.Minute)})
		h.applyStep(id)
		h.ok(&RollbackPlan{Plan: id, Reason: "test"})
		h.converge("b1")
		h.ok(&FinishRollback{Plan: id})
		h.advance(2 * time.Minute)
		h.ok(&Prune{Retention: r})
		if i%20 == 19 {
			sizes = append(sizes, len(h.snapshot()))
		}
	}
	s := h.state()
	if len(s.Plans) != 5 || len(s.History) > 200 || len(s.Blobs) > 2 {
		t.Errorf("after 60 plans: %d plans, %d events, %d modules; want 5, <= 200, <= 2", len(s.Plans), len(s.History), len(s.Blobs))
	}
	if sizes[2] > sizes[1]+sizes[1]/10 {
		t.Errorf("snapshot sizes after 20, 40, 60 plans = %v; want them level", sizes)
	}
}

// TestSnapshotStreamEqualsMarshal: the streamed snapshot is exactly what
// json.Marshal gives, so a State field added without a line in
// WriteSnapshot fails here.
func TestSnapshotStreamEqualsMarshal(t *testing.T) {
	h := newCluster(t)
	scenario(h)
	for name, s := range map[string]*State{"scenario": h.state(), "empty": NewState(), "zero": {}} {
		want, err := json.Marshal(snapshotFile{V: SnapshotVersion, State: s})
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := WriteSnapshot(&got, s); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: WriteSnapshot =\n%s\nwant (json.Marshal)\n%s", name, got.Bytes(), want)
		}
		back, err := ReadSnapshot(&got)
		if err != nil {
			t.Fatalf("%s: ReadSnapshot = %v", name, err)
		}
		c := s.Clone()
		c.normalize()
		equalState(t, back, c)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
