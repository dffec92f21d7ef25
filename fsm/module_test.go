package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func moduleRef(patchID string, data []byte) *ModuleRef {
	sum := sha256.Sum256(data)
	return &ModuleRef{SHA256: hex.EncodeToString(sum[:]), Size: len(data), PatchID: patchID}
}

// TestSubmitWithModule: one SubmitPlan carries the module's reference and
// creates the plan; a refused one records neither.
func TestSubmitWithModule(t *testing.T) {
	h := newHarness(t)
	h.ok(node("a1", "sip-1", RoleActive))
	h.ok(node("b1", "sip-1", RoleStandby))
	h.ok(witness("w"))
	data := []byte("\x7fELF patch module three")
	m := moduleRef("fix-3", data)
	sp := PlanSpec{Name: "fix", PatchSHA256: m.SHA256, Target: target, Trial: trial}

	// Refused by the state (unknown pair): no module, no plan.
	bad := sp
	bad.Pairs = []string{"nosuch"}
	h.refused(&SubmitPlan{Spec: bad, Module: m}, ErrNotFound, "pair nosuch has no registered node")
	if _, ok := h.state().Blobs[m.SHA256]; ok {
		t.Fatalf("a refused submission stored its module")
	}
	// Invalid whatever the state.
	other := *m
	other.SHA256 = strings.Repeat("a", 64)
	h.refused(&SubmitPlan{Spec: sp, Module: &other}, ErrInvalid, "is not its module's")
	big := *m
	big.Size = MaxBlobSize + 1
	h.refused(&SubmitPlan{Spec: sp, Module: &big}, ErrTooLarge, "the limit is 16 MiB")
	short := *m
	short.Signature = []byte("short")
	h.refused(&SubmitPlan{Spec: sp, Module: &short}, ErrInvalid, "signature is 5 bytes")

	// Accepted: the module's reference and the plan, in one entry.
	before := len(h.log)
	res := h.ok(&SubmitPlan{Spec: sp, Module: m})
	if len(h.log) != before+1 {
		t.Fatalf("submission took %d entries; want 1", len(h.log)-before)
	}
	s := h.state()
	b, ok := s.Blobs[m.SHA256]
	if !ok || b.Size != len(data) || b.PatchID != "fix-3" || b.Data != nil || !b.Stored.Equal(h.now) {
		t.Fatalf("blob = %+v (stored %v); want fix-3, %d bytes, no data", b, ok, len(data))
	}
	p := s.Plans[res.PlanID]
	if p.Spec.PatchID != "fix-3" || p.State != PlanPending {
		t.Fatalf("plan = %+v; want pending with patch fix-3", p.Spec)
	}
	if len(h.log[len(h.log)-1].Data) > 2048 {
		t.Errorf("the submission entry is %d bytes; want a small one", len(h.log[len(h.log)-1].Data))
	}

	// The same module under another patch id or size conflicts.
	h.ok(&AbortPlan{Plan: res.PlanID, Reason: "test"})
	renamed := *m
	renamed.PatchID = "fix-4"
	h.refused(&SubmitPlan{Spec: sp, Module: &renamed}, ErrConflict, "stored as patch fix-3")
	resized := *m
	resized.Size++
	h.refused(&SubmitPlan{Spec: sp, Module: &resized}, ErrConflict, "stored with size")

	// Again, signed: the signature is added to the stored module.
	signed := *m
	signed.Signature = bytes.Repeat([]byte{7}, SignatureSize)
	h.ok(&SubmitPlan{Spec: sp, Module: &signed})
	if sigs := h.state().Blobs[m.SHA256].Signatures; len(sigs) != 1 || !bytes.Equal(sigs[0], signed.Signature) {
		t.Fatalf("signatures = %x; want the new one", sigs)
	}
}

// TestLegacyBlobDataRestores: a snapshot written while module bytes
// travelled in the raft log (blobs with data) still restores; TakeBlobData
// hands the bytes over once and leaves references only.
func TestLegacyBlobDataRestores(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "legacy-blob-data.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	if err := f.Restore(readCloser(old)); err != nil {
		t.Fatalf("Restore(legacy snapshot) = %v", err)
	}
	got := f.TakeBlobData()
	for _, b := range []*PutBlob{blob1, blob2} {
		if !bytes.Equal(got[b.SHA256], b.Data) {
			t.Errorf("TakeBlobData()[%s] = %q; want %q", b.PatchID, got[b.SHA256], b.Data)
		}
	}
	if len(got) != 2 {
		t.Errorf("TakeBlobData() returned %d modules; want 2", len(got))
	}
	if again := f.TakeBlobData(); again != nil {
		t.Errorf("second TakeBlobData() = %d modules; want none", len(again))
	}
	// What is left is today's state of the same story.
	h := newCluster(t)
	scenario(h)
	equalState(t, f.State(), h.state())
	if bytes.Contains(snapshotBytes(t, f), []byte(`"data"`)) {
		t.Errorf("a snapshot after TakeBlobData still carries module bytes")
	}
}
