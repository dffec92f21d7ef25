package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps: a virtual memory area.
type Mapping struct {
	Start, End uint64 // [Start, End), page aligned
	Offset     uint64 // file offset of Start (0 for anonymous memory)
	Perms      string // "r-xp": read, write, execute, p(rivate) or s(hared)
	Dev        string // "fd:01": major:minor of the file's device, in hex
	Inode      uint64 // 0 for anonymous memory
	// Path is the file's path as the kernel prints it (a newline in a file
	// name appears as the four characters `\012`), a pseudo-name such as
	// "[heap]", "[stack]", "[vdso]", "[anon:lp:fix-1]", or "" for anonymous
	// memory. The kernel's " (deleted)" suffix is removed and reported in
	// Deleted instead.
	Path string
	// Deleted is true when the kernel marks the file as deleted (it was
	// unlinked or replaced after being mapped). A file whose real name ends
	// in " (deleted)" is indistinguishable in maps and is reported the same.
	Deleted bool
}

// Size is End - Start.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// Contains reports whether addr lies in [Start, End).
func (m Mapping) Contains(addr uint64) bool { return addr >= m.Start && addr < m.End }

// Readable, Writable, Executable and Shared decode Perms.
func (m Mapping) Readable() bool   { return len(m.Perms) == 4 && m.Perms[0] == 'r' }
func (m Mapping) Writable() bool   { return len(m.Perms) == 4 && m.Perms[1] == 'w' }
func (m Mapping) Executable() bool { return len(m.Perms) == 4 && m.Perms[2] == 'x' }
func (m Mapping) Shared() bool     { return len(m.Perms) == 4 && m.Perms[3] == 's' }

// IsFile reports whether the mapping is backed by a file (including memfd
// and deleted files), as opposed to anonymous memory or a pseudo-mapping.
func (m Mapping) IsFile() bool { return m.Inode != 0 && strings.HasPrefix(m.Path, "/") }

// String formats the mapping like a maps line (without padding).
func (m Mapping) String() string {
	s := fmt.Sprintf("%x-%x %s %08x %s %d", m.Start, m.End, m.Perms, m.Offset, m.Dev, m.Inode)
	if m.Path != "" {
		s += " " + m.Path
	}
	if m.Deleted {
		s += " (deleted)"
	}
	return s
}

// maxMapsLine bounds one maps line: PATH_MAX plus escapes and the fixed
// columns fit easily; anything longer is not something the kernel wrote.
const maxMapsLine = 64 << 10

const deletedSuffix = " (deleted)"

// ParseMaps parses the text of /proc/PID/maps. Empty lines are skipped; any
// other line that does not parse fails the whole parse with an error wrapping
// ErrBadMaps that names the line number.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMapsLine)
	sc.Split(splitLines)
	var out []Mapping
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, fmt.Errorf("maps line %d %q: %w", n, clip(line, 120), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading maps: %w", err)
	}
	return out, nil
}

// ReadMaps reads and parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("reading maps of pid %d: %w", pid, err)
	}
	defer f.Close()
	maps, err := ParseMaps(f)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	return maps, nil
}

// parseMapsLine parses
//
//	55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234     /usr/bin/x y
//
// The first five columns are separated by single spaces (we accept runs);
// the path starts after the padding and runs to the end of the line, so it
// may contain spaces.
func parseMapsLine(line string) (Mapping, error) {
	var m Mapping
	rest := line
	var f [5]string
	for i := range f {
		rest = strings.TrimLeft(rest, " \t")
		j := strings.IndexAny(rest, " \t")
		if j < 0 {
			j = len(rest)
		}
		f[i], rest = rest[:j], rest[j:]
		if f[i] == "" {
			return m, fmt.Errorf("%w: %d columns; want at least 5", ErrBadMaps, i)
		}
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return m, fmt.Errorf("%w: address range %q has no '-'", ErrBadMaps, f[0])
	}
	var err error
	if m.Start, err = parseHex(lo); err != nil {
		return m, fmt.Errorf("%w: start address: %w", ErrBadMaps, err)
	}
	if m.End, err = parseHex(hi); err != nil {
		return m, fmt.Errorf("%w: end address: %w", ErrBadMaps, err)
	}
	if m.End <= m.Start {
		return m, fmt.Errorf("%w: end %#x is not above start %#x", ErrBadMaps, m.End, m.Start)
	}
	if !validPerms(f[1]) {
		return m, fmt.Errorf("%w: permissions %q", ErrBadMaps, f[1])
	}
	m.Perms = f[1]
	if m.Offset, err = parseHex(f[2]); err != nil {
		return m, fmt.Errorf("%w: offset: %w", ErrBadMaps, err)
	}
	maj, min, ok := strings.Cut(f[3], ":")
	if !ok {
		return m, fmt.Errorf("%w: device %q has no ':'", ErrBadMaps, f[3])
	}
	if _, err := parseHex(maj); err != nil {
		return m, fmt.Errorf("%w: device major: %w", ErrBadMaps, err)
	}
	if _, err := parseHex(min); err != nil {
		return m, fmt.Errorf("%w: device minor: %w", ErrBadMaps, err)
	}
	m.Dev = f[3]
	if m.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return m, fmt.Errorf("%w: inode: %w", ErrBadMaps, err)
	}
	// Only the padding before the path is dropped; spaces inside or at the
	// end of a file name are kept.
	m.Path = strings.TrimLeft(rest, " \t")
	if strings.HasPrefix(m.Path, "/") && strings.HasSuffix(m.Path, deletedSuffix) {
		m.Path = strings.TrimSuffix(m.Path, deletedSuffix)
		m.Deleted = true
	}
	return m, nil
}

// splitLines is bufio.ScanLines without dropping a trailing '\r': the
// kernel escapes only '\n' in file names, so "\r" may end a path.
func splitLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func parseHex(s string) (uint64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("bad hex number %q", s)
	}
	return strconv.ParseUint(s, 16, 64)
}

func validPerms(p string) bool {
	if len(p) != 4 {
		return false
	}
	return (p[0] == 'r' || p[0] == '-') &&
		(p[1] == 'w' || p[1] == '-') &&
		(p[2] == 'x' || p[2] == '-') &&
		(p[3] == 'p' || p[3] == 's')
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
