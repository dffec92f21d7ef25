package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lp/fsm"
)

// blobStore keeps patch modules content-addressed, as dir/SHA256.so. The
// replicated state holds only each module's sha256, size and signatures;
// the bytes are here, written by the node that took the submission before
// it committed the plan, and fetched by the others (fetch.go).
type blobStore struct {
	dir string
}

// errMissing: the store has no file for the module.
var errMissing = errors.New("module not in this node's store")

// path is where the module with the given sha256 lives.
func (b blobStore) path(sum string) string { return filepath.Join(b.dir, sum+".so") }

// has reports whether a file for the module is there (not whether it is
// intact: read checks that).
func (b blobStore) has(sum string) bool {
	_, err := os.Stat(b.path(sum))
	return err == nil
}

// read returns the path of the module with the given sha256 and the bytes
// of that file, read once: the caller verifies and loads these bytes, never
// the file again, so the file cannot change between check and load. A
// missing file is errMissing. A file whose bytes do not hash to sum was
// damaged or changed behind lpd's back: it is moved aside to
// SHA256.so.corrupt (kept for the operator to look at) and the error
// matches ErrHashMismatch and errMissing, so the caller fetches it again.
func (b blobStore) read(sum string) (string, []byte, error) {
	p := b.path(sum)
	got, err := readModuleFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, fmt.Errorf("%w: %s", errMissing, p)
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading module file %s: %w", p, err)
	}
	if h := hexSum(got); h != sum {
		aside := p + ".corrupt"
		if err := os.Rename(p, aside); err != nil {
			return "", nil, fmt.Errorf("refused: module file %s has sha256 %s (%w), and moving it aside failed: %v", p, h[:16], ErrHashMismatch, err)
		}
		return "", nil, fmt.Errorf("refused: module file %s was damaged or changed behind lpd's back (sha256 %s; %w); moved to %s, %w",
			p, h[:16], ErrHashMismatch, aside, errMissing)
	}
	return p, got, nil
}

// put stores data as the module sum (which it must hash to), whole or not
// at all, and durably: written under a temporary name, synced, renamed,
// and the directory synced. A file that is there already is kept.
func (b blobStore) put(sum string, data []byte) error {
	if h := hexSum(data); h != sum {
		return fmt.Errorf("module %s: %w (the bytes hash to %s)", sum, ErrHashMismatch, h)
	}
	p := b.path(sum)
	if _, _, err := b.read(sum); err == nil {
		return nil // intact already (a damaged file was moved aside)
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return fmt.Errorf("creating module dir: %w", err)
	}
	tmp, err := os.CreateTemp(b.dir, sum+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing module %s: %w", sum, err)
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing module %s: %w", sum, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing module %s: %w", sum, err)
	}
	if d, err := os.Open(b.dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("syncing module dir: %w", err)
		}
	}
	return nil
}

// readModuleFile reads a module file, no more than the FSM's cap and one
// byte (a longer file then fails its hash check).
func readModuleFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, fsm.MaxBlobSize+1))
}

func hexSum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// gc removes the module files whose sha256 keep does not report, and
// leftover temporary files, once they are older than grace (a module is
// written before the entry that references it commits). It returns how
// many module files it removed.
func (b blobStore) gc(keep func(sum string) bool, grace time.Duration) (int, error) {
	entries, err := os.ReadDir(b.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("listing module dir: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		name := e.Name()
		sum, isModule := strings.CutSuffix(name, ".so")
		tmp := strings.HasSuffix(name, ".tmp")
		if e.IsDir() || !isModule && !tmp || isModule && (len(sum) != sha256.Size*2 || keep(sum)) {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < grace {
			continue
		}
		if err := os.Remove(filepath.Join(b.dir, name)); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if isModule {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}
