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

	"lp/fsm"
)

// blobStore keeps patch modules as dir/SHA256.so.
type blobStore struct {
	dir string
}

// load returns the path of the module with the given sha256 and the bytes
// of that file, read once: the caller verifies and loads these bytes, never
// the file again, so the file cannot change between check and load. A
// missing file is first written from data, the replicated bytes (which must
// match sum). A file that is there with other bytes was changed behind
// lpd's back (lpd writes it whole, under a temporary name renamed): it is
// refused with ErrHashMismatch and left for the operator to look at, never
// silently replaced.
func (b blobStore) load(sum string, data []byte) (string, []byte, error) {
	p := filepath.Join(b.dir, sum+".so")
	got, err := readModuleFile(p)
	if errors.Is(err, os.ErrNotExist) {
		if err := b.write(p, sum, data); err != nil {
			return "", nil, err
		}
		got, err = readModuleFile(p)
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading module file %s: %w", p, err)
	}
	if h := hexSum(got); h != sum {
		return "", nil, fmt.Errorf("refused: module file changed on disk behind lpd's back (%w: sha256 %s): %s (remove it and lpd writes it again from the replicated copy)",
			ErrHashMismatch, h[:16], p)
	}
	return p, got, nil
}

// write stores data as path, whole or not at all.
func (b blobStore) write(p, sum string, data []byte) error {
	if hexSum(data) != sum {
		return fmt.Errorf("module %s: %w (the replicated bytes hash to %s)", sum, ErrHashMismatch, hexSum(data))
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return fmt.Errorf("creating patch dir: %w", err)
	}
	tmp, err := os.CreateTemp(b.dir, sum+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing module %s: %w", sum, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing module %s: %w", sum, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing module %s: %w", sum, err)
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
// leftover temporary files. It returns how many files it removed.
func (b blobStore) gc(keep func(sum string) bool) (int, error) {
	entries, err := os.ReadDir(b.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("listing patch dir: %w", err)
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
		if tmp {
			// A temporary file is only ever open inside write, on the
			// agent's goroutine, which is also the one calling gc.
			if err := os.Remove(filepath.Join(b.dir, name)); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := os.Remove(filepath.Join(b.dir, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
