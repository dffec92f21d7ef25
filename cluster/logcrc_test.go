package cluster

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openBolt(t *testing.T, path string) *raftboltdb.BoltStore {
	t.Helper()
	bs, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

func TestCRCLogStoreRoundTrip(t *testing.T) {
	bs := openBolt(t, filepath.Join(t.TempDir(), "raft.db"))
	s, err := newCRCLogStore(bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 6, 0, 0, 123456789, time.UTC)
	in := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf"), AppendedAt: at},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte(`{"type":"submit_plan"}`), Extensions: []byte("mw"), AppendedAt: at},
		{Index: 3, Term: 2, Type: raft.LogNoop},
	}
	if err := s.StoreLogs(in[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(in[2]); err != nil {
		t.Fatal(err)
	}
	if in[1].Extensions == nil || string(in[1].Extensions) != "mw" {
		t.Fatalf("StoreLogs changed the caller's entry: Extensions %q", in[1].Extensions)
	}
	for _, want := range in {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		if got.Term != want.Term || got.Type != want.Type || string(got.Data) != string(want.Data) || string(got.Extensions) != string(want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Errorf("GetLog(%d) = %+v; want %+v", want.Index, got, *want)
		}
	}
	if err := checkLogs(s); err != nil {
		t.Errorf("checkLogs of a sound store: %v", err)
	}
}

func TestCRCLogStoreRefusesDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	bs := openBolt(t, path)
	s, err := newCRCLogStore(bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte(`{"name":"fix-1041"}`)},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte(`{"name":"fix-1042"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	// What a flipped byte on disk looks like to raft-boltdb: the entry
	// still decodes, with other data.
	var raw raft.Log
	if err := bs.GetLog(2, &raw); err != nil {
		t.Fatal(err)
	}
	raw.Data = []byte(`{"name":"fix-1043"}`)
	if err := bs.StoreLog(&raw); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := s.GetLog(2, &l); !errors.Is(err, ErrStoreDamaged) {
		t.Fatalf("GetLog of a damaged entry: %v; want ErrStoreDamaged", err)
	}
	if err := checkLogs(s); !errors.Is(err, ErrStoreDamaged) {
		t.Fatalf("checkLogs of a damaged store: %v; want ErrStoreDamaged", err)
	}
	// A damaged seal is not taken for an older lpd's unsealed entry.
	raw.Extensions = []byte("xpc1")
	if err := bs.StoreLog(&raw); err != nil {
		t.Fatal(err)
	}
	s2, err := newCRCLogStore(bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.GetLog(2, &l); !errors.Is(err, ErrStoreDamaged) {
		t.Fatalf("GetLog of an entry with a damaged seal: %v; want ErrStoreDamaged", err)
	}
}

// TestCRCLogStoreAcceptsOlderStores: a store an older lpd wrote (entries
// without seals) opens and reads; what is stored from then on is sealed.
func TestCRCLogStoreAcceptsOlderStores(t *testing.T) {
	bs := openBolt(t, filepath.Join(t.TempDir(), "raft.db"))
	if err := bs.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	s, err := newCRCLogStore(bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	if s.sealedOnly {
		t.Fatal("a store with unsealed entries is marked sealed-only")
	}
	if err := s.StoreLog(&raft.Log{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if err := checkLogs(s); err != nil {
		t.Fatalf("checkLogs of a mixed store: %v", err)
	}
	var raw raft.Log
	if err := bs.GetLog(2, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Extensions) == 0 {
		t.Fatal("an entry stored through the wrapper has no seal on disk")
	}
}

// TestSuffixDeletionStaysReadableUntilRewritten: raft deletes a follower's
// conflicting suffix, then stores the leader's entries; when that store
// fails (a full disk) the deleted entries must stay readable, or raft,
// which keeps its old last index, finds its log broken for good.
func TestSuffixDeletionStaysReadableUntilRewritten(t *testing.T) {
	bs := openBolt(t, filepath.Join(t.TempDir(), "raft.db"))
	s, err := newCRCLogStore(bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	var ls []*raft.Log
	for i := uint64(1); i <= 5; i++ {
		ls = append(ls, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := s.StoreLogs(ls); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(3, 5); err != nil { // the suffix: a conflict
		t.Fatal(err)
	}
	var l raft.Log
	if err := bs.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 4 still on disk after DeleteRange: %v", err)
	}
	// The store of the leader's entries failed: raft reads on.
	if err := s.GetLog(4, &l); err != nil || l.Term != 1 || l.Data[0] != 4 {
		t.Fatalf("GetLog(4) after a suffix deletion = %+v, %v; want the deleted entry", l, err)
	}
	// The leader's entry 3 is written: 3 reads the new one, 4 and 5 stay.
	if err := s.StoreLog(&raft.Log{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{33}}); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(3, &l); err != nil || l.Term != 2 {
		t.Fatalf("GetLog(3) = %+v, %v; want the rewritten entry of term 2", l, err)
	}
	if err := s.GetLog(5, &l); err != nil || l.Term != 1 {
		t.Fatalf("GetLog(5) = %+v, %v; want the deleted entry until rewritten", l, err)
	}
	// A head deletion (compaction) keeps nothing.
	if err := s.DeleteRange(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(1) after compaction: %v; want ErrLogNotFound", err)
	}
}

// TestLimboSurvivesARepeatedFailure: a second conflict over entries that
// are only in limbo keeps them readable too.
func TestLimboSurvivesARepeatedFailure(t *testing.T) {
	bs := openBolt(t, filepath.Join(t.TempDir(), "raft.db"))
	s, err := newCRCLogStore(bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteRange(3, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(&raft.Log{Index: 3, Term: 2, Type: raft.LogCommand}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(4, 5); err != nil { // 4 and 5 are only in limbo now
		t.Fatal(err)
	}
	var l raft.Log
	if err := s.GetLog(5, &l); err != nil || l.Term != 1 {
		t.Fatalf("GetLog(5) = %+v, %v; want the entry kept through both deletions", l, err)
	}
}
