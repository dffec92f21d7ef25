package proc

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDebugDir is where distributions install separate debug files.
const DefaultDebugDir = "/usr/lib/debug"

func (s *Space) debugDir() string {
	if s.DebugDir == "" {
		return DefaultDebugDir
	}
	return s.DebugDir
}

// debugSymbols reads the .symtab of the separate debug file of a stripped
// object (f, mapped from path, with buildID), looked for under debugDir as
// GDB does: DIR/.build-id/xx/rest.debug, then the .gnu_debuglink name in the
// object's directory, in its .debug/ and in DIR/<object's directory>/. A
// candidate must carry the same build-id (or, without one, the CRC the link
// names). When none is found it returns no symbols and a one-line note
// naming the build-id and the places looked in.
func debugSymbols(f *elf.File, path, buildID, debugDir string) ([]rawSym, string, error) {
	var cands []string
	if len(buildID) > 2 {
		cands = append(cands, filepath.Join(debugDir, ".build-id", buildID[:2], buildID[2:]+".debug"))
	}
	link, crc, hasLink := debugLink(f)
	if hasLink {
		dir := filepath.Dir(path)
		cands = append(cands, filepath.Join(dir, link), filepath.Join(dir, ".debug", link), filepath.Join(debugDir, dir, link))
	}
	for _, c := range cands {
		df, fh, ok := openDebugFile(c, buildID, crc, hasLink)
		if !ok {
			continue
		}
		raw, err := readSymbols(df, false)
		fh.Close()
		if err != nil {
			return nil, "", fmt.Errorf("reading symbols of %s from %s: %w", path, c, err)
		}
		return raw, "", nil
	}
	id := buildID
	if id == "" {
		id = "none"
	}
	looked := "no build-id and no .gnu_debuglink to look for"
	if len(cands) > 0 {
		looked = "looked in " + strings.Join(cands, ", ")
	}
	return nil, fmt.Sprintf("%s is stripped (build-id %s) and its debug file was not found: %s (install its debug symbols or give --debug-dir)", path, id, looked), nil
}

// debugLink returns the file name and CRC of a .gnu_debuglink section.
func debugLink(f *elf.File) (string, uint32, bool) {
	sec := f.Section(".gnu_debuglink")
	if sec == nil {
		return "", 0, false
	}
	var data []byte
	if guard("reading .gnu_debuglink", func() error {
		var err error
		data, err = sec.Data()
		return err
	}) != nil {
		return "", 0, false
	}
	n := bytes.IndexByte(data, 0)
	if n <= 0 || strings.Contains(string(data[:n]), "/") {
		return "", 0, false
	}
	off := (n + 4) &^ 3
	if off+4 > len(data) {
		return "", 0, false
	}
	return string(data[:n]), binary.LittleEndian.Uint32(data[off:]), true
}

// openDebugFile opens a candidate debug file if it belongs to the object:
// the same build-id, or, when the object has none, the CRC of its link.
// The caller closes the file.
func openDebugFile(path, buildID string, crc uint32, hasLink bool) (*elf.File, *os.File, bool) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, false
	}
	df, err := newSafeFile(fh)
	ok := false
	switch {
	case err != nil:
	case buildID != "":
		id, err := BuildID(df)
		ok = err == nil && id == buildID
	case hasLink:
		h := crc32.NewIEEE()
		if _, err := io.Copy(h, io.NewSectionReader(fh, 0, 1<<62)); err == nil {
			ok = h.Sum32() == crc
		}
	}
	if !ok {
		fh.Close()
		return nil, nil, false
	}
	return df, fh, true
}
