package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

func TestPutBlobSignatures(t *testing.T) {
	h := newHarness(t)
	sig := func(b byte) []byte { return bytes.Repeat([]byte{b}, SignatureSize) }
	data := []byte("module")
	put := func(s []byte) *PutBlob { b := NewPutBlob("fix", data); b.Signature = s; return b }
	blob := func() Blob { return h.state().Blobs[put(nil).SHA256] }

	h.refused(put(sig(1)[:10]), ErrInvalid, "signature is 10 bytes; want 64")
	h.ok(put(nil))
	if got := blob().Signatures; got != nil {
		t.Fatalf("unsigned blob has signatures %x", got)
	}
	// A copy taken now must not see later signatures.
	before := h.state()
	h.ok(put(sig(1)))
	if res := h.ok(put(sig(1))); !res.Noop {
		t.Errorf("the same signature again: not a no-op")
	}
	if res := h.ok(put(nil)); !res.Noop {
		t.Errorf("no signature again: not a no-op")
	}
	h.ok(put(sig(2)))
	if got := blob().Signatures; !slices.EqualFunc(got, [][]byte{sig(1), sig(2)}, bytes.Equal) {
		t.Errorf("signatures = %x; want 1s then 2s", got)
	}
	if got := before.Blobs[put(nil).SHA256].Signatures; got != nil {
		t.Errorf("an earlier copy of the state sees signatures %x", got)
	}
	for i := range MaxBlobSignatures + 2 {
		h.ok(put(sig(byte(10 + i))))
	}
	got := blob().Signatures
	if len(got) != MaxBlobSignatures || !bytes.Equal(got[len(got)-1], sig(byte(10+MaxBlobSignatures+1))) {
		t.Errorf("after many signers: %d signatures, last %x; want %d, the newest last", len(got), got[len(got)-1][:1], MaxBlobSignatures)
	}
	// Signatures survive a snapshot and restore.
	f2 := New()
	if err := f2.Restore(readCloser(h.snapshot())); err != nil {
		t.Fatal(err)
	}
	if r := f2.State().Blobs[put(nil).SHA256].Signatures; !slices.EqualFunc(r, got, bytes.Equal) {
		t.Errorf("restored signatures differ: %s", fmt.Sprint(len(r)))
	}
}
