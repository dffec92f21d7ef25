package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/hashicorp/raft"
)

// The raft store (raft.db) is a bolt file that bolt maps into memory: a
// file shorter than its own meta page says makes bolt fault (SIGBUS) the
// first time it touches a page past the end, and a damaged tree page makes
// it panic or read garbage wherever that page is reached, long after start.
// checkBoltFile reads the file with plain reads before bolt maps it and
// refuses what bolt would trip over: bad meta pages, a file shorter than
// its high-water mark, tree pages that are out of bounds, mislabelled,
// referenced twice or whose elements overrun them, and pages that are
// neither reachable nor free. It knows bolt's version-2 file format (the
// format of go.etcd.io/bbolt, which raft-boltdb uses).

const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16 // id u64, flags u16, count u16, overflow u32
	boltElem       = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltMetaSize   = 64 // magic .. checksum
	boltBucketHdr  = 16 // root pgid u64, sequence u64

	boltBranch   = 0x01
	boltLeaf     = 0x02
	boltMeta     = 0x04
	boltFreelist = 0x10

	boltBucketLeaf = 0x01
	boltNoFreelist = ^uint64(0)
)

// boltMetaPage is the decoded meta page of a bolt file.
type boltMetaPage struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // high-water mark: pages in use are below it
	txid     uint64
}

func decodeBoltMeta(b []byte) (boltMetaPage, error) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMetaPage{}, errors.New("short meta page")
	}
	if binary.LittleEndian.Uint16(b[8:])&boltMeta == 0 {
		return boltMetaPage{}, fmt.Errorf("page flags %#x are not a meta page's", binary.LittleEndian.Uint16(b[8:]))
	}
	m := b[boltPageHeader:]
	if binary.LittleEndian.Uint32(m[0:]) != boltMagic {
		return boltMetaPage{}, errors.New("bad magic")
	}
	if v := binary.LittleEndian.Uint32(m[4:]); v != boltVersion {
		return boltMetaPage{}, fmt.Errorf("version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != binary.LittleEndian.Uint64(m[56:]) {
		return boltMetaPage{}, errors.New("checksum mismatch")
	}
	return boltMetaPage{
		pageSize: binary.LittleEndian.Uint32(m[8:]),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		hwm:      binary.LittleEndian.Uint64(m[40:]),
		txid:     binary.LittleEndian.Uint64(m[48:]),
	}, nil
}

// boltChecker walks one bolt file.
type boltChecker struct {
	f        io.ReaderAt
	size     int64
	pageSize int64
	hwm      uint64
	seen     map[uint64]string // page -> what uses it
}

// checkBoltFile checks the bolt file at path; a missing file is fine (a
// fresh data dir). The error names the path, the page and what is wrong.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := checkBolt(f, fi.Size()); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrStoreDamaged, path, err)
	}
	return nil
}

// checkBolt checks a bolt file of size bytes and returns the walk's record
// of which page is used by what.
func checkBolt(f io.ReaderAt, size int64) (*boltChecker, error) {
	if size == 0 {
		return nil, nil // bolt initialises an empty file
	}
	// Meta page 0 says the page size; meta page 1 follows one page later.
	// Bolt uses the valid meta of the higher transaction, so do we.
	first := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(first, 0); err != nil {
		return nil, fmt.Errorf("reading meta page 0: file is %d bytes", size)
	}
	var metas []boltMetaPage
	var errs []error
	m0, err0 := decodeBoltMeta(first)
	pageSize := int64(os.Getpagesize())
	if err0 == nil {
		metas = append(metas, m0)
		pageSize = int64(m0.pageSize)
	} else {
		errs = append(errs, fmt.Errorf("meta page 0: %v", err0))
	}
	if pageSize < 512 || pageSize > 1<<20 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("meta page 0: page size %d", pageSize)
	}
	second := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(second, pageSize); err != nil {
		errs = append(errs, fmt.Errorf("meta page 1: cannot be read: file is %d bytes", size))
	} else if m1, err1 := decodeBoltMeta(second); err1 != nil {
		errs = append(errs, fmt.Errorf("meta page 1: %v", err1))
	} else if m1.pageSize != uint32(pageSize) {
		errs = append(errs, fmt.Errorf("meta page 1: page size %d, meta page 0 says %d", m1.pageSize, pageSize))
	} else {
		metas = append(metas, m1)
	}
	if len(metas) == 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	if m.hwm < 4 || m.hwm > uint64(1)<<40 {
		return nil, fmt.Errorf("meta page: high-water mark %d pages is impossible", m.hwm)
	}
	if need := int64(m.hwm) * pageSize; size < need {
		return nil, fmt.Errorf("file is truncated: %d bytes, but its meta page uses %d pages of %d bytes (%d bytes)", size, m.hwm, pageSize, need)
	}
	c := &boltChecker{f: f, size: size, pageSize: pageSize, hwm: m.hwm, seen: map[uint64]string{0: "meta", 1: "meta"}}
	if err := c.tree(m.root, "root bucket", 0); err != nil {
		return nil, err
	}
	if m.freelist != boltNoFreelist {
		if err := c.freelist(m.freelist); err != nil {
			return nil, err
		}
		for id := uint64(2); id < m.hwm; id++ {
			if _, ok := c.seen[id]; !ok {
				return nil, fmt.Errorf("page %d is neither reachable nor free", id)
			}
		}
	}
	return c, nil
}

// page reads page id with its overflow pages, checking its header.
func (c *boltChecker) page(id uint64, owner string, want uint16) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("%s: page %d is out of bounds (high-water mark %d)", owner, id, c.hwm)
	}
	hdr := make([]byte, boltPageHeader)
	if _, err := c.f.ReadAt(hdr, int64(id)*c.pageSize); err != nil {
		return nil, fmt.Errorf("%s: page %d: %v", owner, id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, fmt.Errorf("%s: page %d says it is page %d", owner, id, got)
	}
	flags := binary.LittleEndian.Uint16(hdr[8:])
	if flags&want == 0 {
		return nil, fmt.Errorf("%s: page %d has flags %#x, want %#x", owner, id, flags, want)
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= c.hwm {
		return nil, fmt.Errorf("%s: page %d overflows %d pages past the high-water mark %d", owner, id, overflow, c.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if prev, ok := c.seen[i]; ok {
			return nil, fmt.Errorf("%s: page %d is used twice (also by %s)", owner, i, prev)
		}
		c.seen[i] = owner
	}
	buf := make([]byte, int64(overflow+1)*c.pageSize)
	if _, err := c.f.ReadAt(buf, int64(id)*c.pageSize); err != nil {
		return nil, fmt.Errorf("%s: page %d: %v", owner, id, err)
	}
	return buf, nil
}

// tree checks the branch or leaf page id and everything below it.
func (c *boltChecker) tree(id uint64, owner string, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%s: tree deeper than 64 at page %d", owner, id)
	}
	p, err := c.page(id, owner, boltBranch|boltLeaf)
	if err != nil {
		return err
	}
	return c.node(p, id, owner, depth)
}

// node checks the elements of one branch or leaf page p (id 0: inline).
func (c *boltChecker) node(p []byte, id uint64, owner string, depth int) error {
	flags := binary.LittleEndian.Uint16(p[8:])
	count := int(binary.LittleEndian.Uint16(p[10:]))
	if boltPageHeader+count*boltElem > len(p) {
		return fmt.Errorf("%s: page %d: %d elements overrun the page", owner, id, count)
	}
	for i := range count {
		e := boltPageHeader + i*boltElem
		if flags&boltBranch != 0 {
			pos := int(binary.LittleEndian.Uint32(p[e:]))
			ksize := int(binary.LittleEndian.Uint32(p[e+4:]))
			if e+pos+ksize > len(p) {
				return fmt.Errorf("%s: branch page %d: element %d overruns the page", owner, id, i)
			}
			if err := c.tree(binary.LittleEndian.Uint64(p[e+8:]), owner, depth+1); err != nil {
				return err
			}
			continue
		}
		lflags := binary.LittleEndian.Uint32(p[e:])
		pos := int(binary.LittleEndian.Uint32(p[e+4:]))
		ksize := int(binary.LittleEndian.Uint32(p[e+8:]))
		vsize := int(binary.LittleEndian.Uint32(p[e+12:]))
		start := e + pos
		if pos < 0 || ksize < 0 || vsize < 0 || start+ksize+vsize > len(p) || start+ksize+vsize < start {
			return fmt.Errorf("%s: leaf page %d: element %d overruns the page", owner, id, i)
		}
		if lflags&boltBucketLeaf == 0 {
			continue
		}
		name := fmt.Sprintf("bucket %q", p[start:start+ksize])
		v := p[start+ksize : start+ksize+vsize]
		if len(v) < boltBucketHdr {
			return fmt.Errorf("%s: leaf page %d: bucket header of %d bytes", name, id, len(v))
		}
		if root := binary.LittleEndian.Uint64(v); root != 0 {
			if err := c.tree(root, name, depth+1); err != nil {
				return err
			}
			continue
		}
		inline := v[boltBucketHdr:]
		if len(inline) < boltPageHeader || binary.LittleEndian.Uint16(inline[8:])&boltLeaf == 0 {
			return fmt.Errorf("%s: inline page in leaf page %d is not a leaf", name, id)
		}
		if err := c.node(inline, 0, name, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (c *boltChecker) freelist(id uint64) error {
	p, err := c.page(id, "freelist", boltFreelist)
	if err != nil {
		return err
	}
	n, at := uint64(binary.LittleEndian.Uint16(p[10:])), boltPageHeader
	if n == 0xFFFF { // the count does not fit: it is the first element
		n, at = binary.LittleEndian.Uint64(p[at:]), at+8
	}
	if uint64(at)+n*8 > uint64(len(p)) {
		return fmt.Errorf("freelist: page %d: %d ids overrun the page", id, n)
	}
	// A free id may lie at or past this meta's high-water mark: when the
	// newer meta page is bad, bolt falls back to the older one, whose
	// freelist can name pages a later transaction grew the file by. What
	// must hold is that the page is inside the file (bolt writes it there
	// when it reuses it).
	filePages := uint64(c.size / c.pageSize)
	for i := range n {
		free := binary.LittleEndian.Uint64(p[uint64(at)+i*8:])
		if free < 2 || free >= filePages {
			return fmt.Errorf("freelist: page %d lists page %d, past the end of the file (%d pages)", id, free, filePages)
		}
		if prev, ok := c.seen[free]; ok {
			return fmt.Errorf("freelist: page %d lists page %d as free, but %s uses it", id, free, prev)
		}
		c.seen[free] = "free"
	}
	return nil
}

// checkLogs reads every entry of the raft log once, so that an entry that
// no longer decodes is a refusal at start instead of a failure on the day
// raft needs it. A fault while reading (a page bolt cannot map) is turned
// into an error too.
func checkLogs(logs raft.LogStore) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading the raft log: %v", ErrStoreDamaged, r)
		}
	}()
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("%w: raft log: first index: %v", ErrStoreDamaged, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: raft log: last index: %v", ErrStoreDamaged, err)
	}
	if last == 0 || last < first {
		return nil // an empty log
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, ErrStoreDamaged) {
				return err // says which entry already
			}
			return fmt.Errorf("%w: raft log entry %d of %d-%d: %v", ErrStoreDamaged, i, first, last, err)
		}
		if l.Index != i {
			return fmt.Errorf("%w: raft log entry %d says it is entry %d", ErrStoreDamaged, i, l.Index)
		}
	}
	return nil
}
