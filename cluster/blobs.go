package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// blobStore keeps patch modules as dir/SHA256.so.
type blobStore struct {
	dir string
}

// path writes data as the module with the given sha256 unless a file with
// the right content is already there, verifies the file's hash and returns
// its path. Data whose hash does not match is refused.
func (b blobStore) path(sum string, data []byte) (string, error) {
	p := filepath.Join(b.dir, sum+".so")
	if ok, err := fileHas(p, sum); err == nil && ok {
		return p, nil
	}
	if hexSum(data) != sum {
		return "", fmt.Errorf("module %s: %w (the replicated bytes hash to %s)", sum, ErrHashMismatch, hexSum(data))
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return "", fmt.Errorf("creating patch dir: %w", err)
	}
	tmp, err := os.CreateTemp(b.dir, sum+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("writing module %s: %w", sum, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing module %s: %w", sum, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing module %s: %w", sum, err)
	}
	// Verify what is on disk, not what we meant to write.
	ok, err := fileHas(p, sum)
	if err != nil {
		return "", fmt.Errorf("verifying module %s: %w", sum, err)
	}
	if !ok {
		return "", fmt.Errorf("module file %s: %w", p, ErrHashMismatch)
	}
	return p, nil
}

func fileHas(path, sum string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return hexSum(data) == sum, nil
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
			// A temporary file is only ever open inside path, on the
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
