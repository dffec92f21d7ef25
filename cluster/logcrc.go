package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/hashicorp/raft"
)

// raft-boltdb keeps no checksum of its own: bytes flipped inside a log
// entry's data that still decode would be applied as if written so, and
// this replica would silently diverge from the others. crcLogStore seals
// every entry it stores with a CRC-32C over everything raft reads back
// (index, term, type, data, extensions, appended-at), kept in the entry's
// Extensions (raft leaves them to middleware such as this), and checks and
// strips the seal on every read: a damaged entry is an ErrStoreDamaged
// error, at start (checkLogs reads every entry) or whenever raft reads it.
// The seal is local to this node's disk: entries sent to followers carry
// the original Extensions, and each follower seals what it stores.
//
// An entry without a seal is one an older lpd wrote; it is accepted unless
// the store was created sealed (the stable-store key logSealedKey), where
// a missing seal means the seal itself was damaged.
//
// It also keeps raft able to heal a follower whose disk filled up at the
// wrong moment. A follower that receives entries conflicting with its log
// deletes its log's suffix (DeleteRange), then stores the new entries
// (StoreLogs) and only then moves its last index. When that StoreLogs
// fails (a full disk), raft keeps the old last index while the entries
// are gone, and every later append asks for an entry that is not found:
// the replica stops for good (seen in the fault suite: disk-full on a
// deposed leader). So the entries a suffix deletion removes stay readable
// from memory (limbo) until StoreLogs writes those indexes again: raft then
// finds the old entry, sees its other term, and truncates and appends
// again once the disk has room.
type crcLogStore struct {
	raft.LogStore
	sealedOnly bool // every entry must carry a seal

	mu    sync.Mutex
	limbo map[uint64]raft.Log // sealed entries of the last suffix deletion not yet rewritten
}

// logSeal starts the Extensions of a sealed entry: the magic, the CRC of
// the entry (4 bytes, little endian), then the entry's own Extensions.
var logSeal = []byte("lpc1")

// logSealedKey, in the stable store, says that the store was created by an
// lpd that seals every entry.
var logSealedKey = []byte("lp_log_sealed")

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// newCRCLogStore wraps logs. A store with no log entries yet is marked as
// sealed from the start in stable.
func newCRCLogStore(logs raft.LogStore, stable raft.StableStore) (*crcLogStore, error) {
	s := &crcLogStore{LogStore: logs}
	if v, err := stable.GetUint64(logSealedKey); err == nil && v == 1 {
		s.sealedOnly = true
		return s, nil
	}
	last, err := logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("%w: raft log: last index: %v", ErrStoreDamaged, err)
	}
	if last == 0 {
		if err := stable.SetUint64(logSealedKey, 1); err != nil {
			return nil, fmt.Errorf("marking the raft log as sealed: %w", err)
		}
		s.sealedOnly = true
	}
	return s, nil
}

// logCRC is the checksum of everything in l that raft reads back, with ext
// as its Extensions.
func logCRC(l *raft.Log, ext []byte) uint32 {
	var hdr [8 + 8 + 1 + 8 + 8]byte
	binary.LittleEndian.PutUint64(hdr[0:], l.Index)
	binary.LittleEndian.PutUint64(hdr[8:], l.Term)
	hdr[16] = byte(l.Type)
	binary.LittleEndian.PutUint64(hdr[17:], uint64(len(l.Data)))
	binary.LittleEndian.PutUint64(hdr[25:], uint64(l.AppendedAt.UnixNano()))
	h := crc32.Update(0, crc32c, hdr[:])
	h = crc32.Update(h, crc32c, l.Data)
	return crc32.Update(h, crc32c, ext)
}

// seal returns a copy of l whose Extensions carry its checksum.
func seal(l *raft.Log) *raft.Log {
	c := *l
	ext := make([]byte, 0, len(logSeal)+4+len(l.Extensions))
	ext = append(ext, logSeal...)
	ext = binary.LittleEndian.AppendUint32(ext, logCRC(l, l.Extensions))
	c.Extensions = append(ext, l.Extensions...)
	return &c
}

// StoreLogs seals every entry and stores them; ls are not changed.
func (s *crcLogStore) StoreLogs(ls []*raft.Log) error {
	sealed := make([]*raft.Log, len(ls))
	for i, l := range ls {
		sealed[i] = seal(l)
	}
	if err := s.LogStore.StoreLogs(sealed); err != nil {
		return err
	}
	s.mu.Lock()
	for _, l := range ls {
		delete(s.limbo, l.Index)
	}
	s.mu.Unlock()
	return nil
}

// StoreLog seals l and stores it; l itself is not changed.
func (s *crcLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// DeleteRange deletes entries min..max. A deletion of the log's suffix
// (raft resolving a conflict) keeps the deleted entries readable until
// their indexes are written again; a deletion of the log's head (raft
// compacting after a snapshot) keeps nothing.
func (s *crcLogStore) DeleteRange(min, max uint64) error {
	last, err := s.LogStore.LastIndex()
	if err != nil || max < last {
		return s.LogStore.DeleteRange(min, max)
	}
	// From disk, or from the limbo of an earlier deletion whose indexes
	// were not all rewritten yet.
	s.mu.Lock()
	prev := s.limbo
	s.mu.Unlock()
	kept := make(map[uint64]raft.Log, max-min+1)
	for i := min; i <= max && i-min < 1<<16; i++ {
		var l raft.Log
		if s.LogStore.GetLog(i, &l) == nil {
			kept[i] = l
		} else if p, ok := prev[i]; ok {
			kept[i] = p
		}
	}
	if err := s.LogStore.DeleteRange(min, max); err != nil {
		return err
	}
	s.mu.Lock()
	s.limbo = kept
	s.mu.Unlock()
	return nil
}

// GetLog reads entry index, checks its seal and gives it back as it was
// stored, its own Extensions restored.
func (s *crcLogStore) GetLog(index uint64, l *raft.Log) error {
	if err := s.LogStore.GetLog(index, l); err != nil {
		if !errors.Is(err, raft.ErrLogNotFound) {
			return err
		}
		s.mu.Lock()
		kept, ok := s.limbo[index]
		s.mu.Unlock()
		if !ok {
			return err
		}
		*l = kept
	}
	ext := l.Extensions
	if !bytes.HasPrefix(ext, logSeal) || len(ext) < len(logSeal)+4 {
		if s.sealedOnly {
			return fmt.Errorf("%w: raft log entry %d has no checksum seal", ErrStoreDamaged, index)
		}
		return nil // written by an lpd that did not seal entries
	}
	want := binary.LittleEndian.Uint32(ext[len(logSeal):])
	own := ext[len(logSeal)+4:]
	if len(own) == 0 {
		own = nil
	}
	if got := logCRC(l, own); got != want {
		return fmt.Errorf("%w: raft log entry %d fails its checksum (crc32c %08x, sealed %08x)", ErrStoreDamaged, index, got, want)
	}
	l.Extensions = own
	return nil
}
