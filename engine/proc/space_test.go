package proc

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestLookupInRealTargets(t *testing.T) {
	dir := fixtureDir(t)
	for _, tc := range []struct {
		exe string
		typ elf.Type
		pie bool
	}{
		{exe: "target-pie", typ: elf.ET_DYN, pie: true},
		{exe: "target-nopie", typ: elf.ET_EXEC},
	} {
		t.Run(tc.exe, func(t *testing.T) {
			exe := filepath.Join(dir, tc.exe)
			tg := startTarget(t, exe)
			s, err := Open(tg.pid)
			if err != nil {
				t.Fatalf("Open(%d): %v", tg.pid, err)
			}
			for _, p := range s.Problems {
				t.Logf("problem: %v", p)
			}
			main := s.Main()
			if main == nil {
				t.Fatalf("no main executable among %d objects", len(s.Objects))
			}
			if main.Path != exe || main.Type != tc.typ {
				t.Errorf("main = %s %v; want %s %v", main.Path, main.Type, exe, tc.typ)
			}
			if !tc.pie && main.Bias != 0 {
				t.Errorf("non-PIE bias = %#x; want 0", main.Bias)
			}
			if tc.pie && (main.Bias == 0 || main.Bias != main.Base) {
				// The PIE is linked at 0, so its bias is where it starts.
				t.Errorf("PIE bias = %#x, base %#x; want bias == base != 0", main.Bias, main.Base)
			}

			want := map[string]struct {
				addr           uint64
				fn, global     bool
				objectContains string
			}{
				"secret_add":          {tg.addrs["secret_add"], true, false, tc.exe},
				"lp_counter":          {tg.addrs["lp_counter"], false, true, tc.exe},
				"lp_static_state":     {tg.addrs["lp_static_state"], false, false, tc.exe},
				"getpid":              {tg.addrs["getpid"], true, true, "libc"},
				"getpid@@GLIBC_2.2.5": {tg.addrs["getpid"], true, true, "libc"},
				"fix_version":         {tg.addrs["fix_version"], true, true, "libfix.so"},
				"fix_version@LPFIX_1": {tg.addrs["fix_version_v1"], true, true, "libfix.so"},
			}
			for name, w := range want {
				sym, err := s.Lookup(name)
				if err != nil {
					t.Errorf("Lookup(%q): %v", name, err)
					continue
				}
				if sym.Addr != w.addr {
					t.Errorf("Lookup(%q).Addr = %#x; want %#x (printed by the target)", name, sym.Addr, w.addr)
				}
				if sym.Func != w.fn || sym.Global != w.global {
					t.Errorf("Lookup(%q) func=%v global=%v; want func=%v global=%v", name, sym.Func, sym.Global, w.fn, w.global)
				}
				if !strings.Contains(sym.Object, w.objectContains) {
					t.Errorf("Lookup(%q).Object = %q; want it to contain %q", name, sym.Object, w.objectContains)
				}
				if strings.Contains(sym.Name, "@") {
					t.Errorf("Lookup(%q).Name = %q; want the version stripped", name, sym.Name)
				}
				if sym.Size == 0 {
					t.Errorf("Lookup(%q).Size = 0; want the symbol's size", name)
				}
			}
			if sym, _ := s.Lookup("fix_version"); sym.Version != "LPFIX_2" {
				t.Errorf("Lookup(fix_version).Version = %q; want LPFIX_2 (the default)", sym.Version)
			}
			if sym, _ := s.Lookup("getpid"); sym.Version != "GLIBC_2.2.5" {
				t.Errorf("Lookup(getpid).Version = %q; want GLIBC_2.2.5", sym.Version)
			}

			if sym, err := s.Lookup("lp_tls"); err != nil || !sym.TLS || sym.Addr >= pageSize {
				t.Errorf("Lookup(lp_tls) = %+v, %v; want a TLS symbol with a small TLS offset", sym, err)
			}
			// glibc's strlen is an indirect function: Addr is its resolver.
			if sym, err := s.Lookup("strlen"); err != nil || !sym.IFunc || !sym.Func || !strings.Contains(sym.Object, "libc") {
				t.Errorf("Lookup(strlen) = %+v, %v; want an IFUNC in libc", sym, err)
			}

			// Static function: in .symtab only, LOCAL; LookupGlobal must not
			// see it, Lookup must, with its size.
			if _, err := s.LookupGlobal("secret_add"); !errors.Is(err, ErrSymbolNotFound) {
				t.Errorf("LookupGlobal(secret_add) error = %v; want ErrSymbolNotFound", err)
			}
			if sym, err := s.LookupGlobal("lp_counter"); err != nil || sym.Addr != tg.addrs["lp_counter"] {
				t.Errorf("LookupGlobal(lp_counter) = %#x, %v; want %#x", sym.Addr, err, tg.addrs["lp_counter"])
			}

			_, err = s.Lookup("lp_no_such_symbol")
			var le *LookupError
			if !errors.Is(err, ErrSymbolNotFound) || !errors.As(err, &le) {
				t.Fatalf("Lookup(missing) error = %v; want a *LookupError wrapping ErrSymbolNotFound", err)
			}
			re := regexp.MustCompile(`^symbol "lp_no_such_symbol" not found in pid \d+ \(searched \d+ objects\)$`)
			if !re.MatchString(err.Error()) || le.Searched != len(s.Objects) || le.Pid != tg.pid {
				t.Errorf("error %q (searched %d); want %s with %d objects", err, le.Searched, re, len(s.Objects))
			}

			// FuncAt and ObjectAt.
			add := tg.addrs["secret_add"]
			if fn, ok := s.FuncAt(add + 3); !ok || fn.Name != "secret_add" || fn.Addr != add {
				t.Errorf("FuncAt(secret_add+3) = %q %#x %v; want secret_add %#x", fn.Name, fn.Addr, ok, add)
			}
			if fn, ok := s.FuncAt(tg.addrs["getpid"] + 1); !ok || fn.Addr != tg.addrs["getpid"] {
				t.Errorf("FuncAt(getpid+1) = %q %#x %v; want %#x", fn.Name, fn.Addr, ok, tg.addrs["getpid"])
			}
			if _, ok := s.FuncAt(8); ok {
				t.Errorf("FuncAt(8) found a function; want none")
			}
			if o, ok := s.ObjectAt(tg.addrs["lp_counter"]); !ok || !o.Main {
				t.Errorf("ObjectAt(lp_counter) = %v, %v; want the main executable", o, ok)
			}
			libfix, ok := s.ObjectAt(tg.addrs["fix_version"])
			if !ok || filepath.Base(libfix.Path) != "libfix.so" {
				t.Fatalf("ObjectAt(fix_version) = %v, %v; want libfix.so", libfix, ok)
			}
			if sym, err := s.LookupIn(libfix, "fix_v1"); err != nil || sym.Addr != tg.addrs["fix_version_v1"] {
				t.Errorf("LookupIn(libfix, fix_v1) = %#x, %v; want %#x", sym.Addr, err, tg.addrs["fix_version_v1"])
			}
			if _, err := s.LookupIn(libfix, "secret_add"); !errors.Is(err, ErrSymbolNotFound) {
				t.Errorf("LookupIn(libfix, secret_add) error = %v; want ErrSymbolNotFound", err)
			}

			// Build-ids: the object's, the file's, readelf's.
			fileID, err := FileBuildID(exe)
			if err != nil {
				t.Fatalf("FileBuildID(%s): %v", exe, err)
			}
			if main.BuildID != fileID || len(fileID) != 40 {
				t.Errorf("main build-id %q, file build-id %q; want equal, 40 hex digits", main.BuildID, fileID)
			}
			if tc.pie && main.BuildID != knownBuildID {
				t.Errorf("PIE build-id = %q; want %q (given to the linker)", main.BuildID, knownBuildID)
			}
			if re, err := readelfBuildID(exe); err != nil {
				t.Logf("readelf not usable, skipping its comparison: %v", err)
			} else if re != main.BuildID {
				t.Errorf("build-id %q; want %q (readelf -n)", main.BuildID, re)
			}
			if libfix.BuildID == "" {
				t.Errorf("libfix.so build-id is empty; want gcc's default build-id")
			}
		})
	}
}

func readelfBuildID(path string) (string, error) {
	out, err := exec.Command("readelf", "-n", path).Output()
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`Build ID: ([0-9a-f]+)`).FindSubmatch(out)
	if m == nil {
		return "", errors.New("no Build ID line in readelf -n output")
	}
	return string(m[1]), nil
}

// A target whose executable was deleted after start still resolves, through
// /proc/PID/map_files.
func TestDeletedExecutable(t *testing.T) {
	src := filepath.Join(fixtureDir(t), "target-pie")
	exe := filepath.Join(t.TempDir(), "doomed target")
	copyFile(t, src, exe)
	tg := startTarget(t, exe)
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	s, err := Open(tg.pid)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	main := s.Main()
	if main == nil || !main.Deleted || main.Path != exe {
		t.Fatalf("main = %+v; want %q marked deleted", main, exe)
	}
	sym, err := s.Lookup("secret_add")
	if err != nil || sym.Addr != tg.addrs["secret_add"] {
		t.Errorf("Lookup(secret_add) = %#x, %v; want %#x", sym.Addr, err, tg.addrs["secret_add"])
	}
	if main.BuildID != knownBuildID {
		t.Errorf("build-id = %q; want %q", main.BuildID, knownBuildID)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshKeepsSymbols(t *testing.T) {
	tg := startTarget(t, filepath.Join(fixtureDir(t), "target-pie"))
	s, err := Open(tg.pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup("secret_add"); err != nil {
		t.Fatal(err)
	}
	before := s.Main().syms
	if err := s.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if s.Main() == nil || s.Main().syms != before {
		t.Errorf("after Refresh the main symbol table was not reused")
	}
	if sym, err := s.Lookup("secret_add"); err != nil || sym.Addr != tg.addrs["secret_add"] {
		t.Errorf("Lookup after Refresh = %#x, %v; want %#x", sym.Addr, err, tg.addrs["secret_add"])
	}
}

func TestOpenMissingProcess(t *testing.T) {
	// Pids above pid_max (at most 2^22) never exist.
	_, err := Open(1 << 23)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "pid 8388608") {
		t.Errorf("Open(missing) = %v; want a not-exist error naming the pid", err)
	}
}

// Our own test binary (a Go executable): the main executable is found and
// contains our own code.
func TestOpenSelf(t *testing.T) {
	// Files mapped as data (an ELF library read with mmap, a text file) are
	// not objects and not problems.
	lib := filepath.Join(fixtureDir(t), "libfix.so")
	text := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(text, []byte("not an ELF file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{lib, text} {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := syscall.Mmap(int(fh.Fd()), 0, pageSize, syscall.PROT_READ, syscall.MAP_PRIVATE)
		fh.Close()
		if err != nil {
			t.Fatalf("mmap %s: %v", p, err)
		}
		t.Cleanup(func() { syscall.Munmap(data) })
	}
	s, err := Open(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	main := s.Main()
	if main == nil {
		t.Fatalf("no main executable in our own space (%d objects, problems %v)", len(s.Objects), s.Problems)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if main.Path != exe {
		t.Errorf("main path = %q; want %q", main.Path, exe)
	}
	for _, o := range s.Objects {
		if o.Path == lib || o.Path == text {
			t.Errorf("data mapping of %s reported as an object", o.Path)
		}
	}
	if len(s.Problems) != 0 {
		t.Errorf("Problems = %v; want none", s.Problems)
	}
	fn := funcAddr(TestOpenSelf)
	if o, ok := s.ObjectAt(fn); !ok || o != main {
		t.Errorf("ObjectAt(TestOpenSelf=%#x) = %v, %v; want the main executable", fn, o, ok)
	}
	// go test strips its binaries, so there is no .symtab to look in; the
	// build-id is there.
	want, err := FileBuildID(exe)
	if err != nil || main.BuildID != want {
		t.Errorf("main build-id = %q; want %q (%v)", main.BuildID, want, err)
	}
}

// Lookups from several goroutines share the lazily read symbol tables
// (run under -race).
func TestConcurrentLookups(t *testing.T) {
	tg := startTarget(t, filepath.Join(fixtureDir(t), "target-nopie"))
	s, err := Open(tg.pid)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"secret_add", "getpid", "fix_version", "lp_counter"}
	errs := make(chan error, 4*len(names))
	for i := 0; i < 4; i++ {
		for _, n := range names {
			go func() {
				sym, err := s.Lookup(n)
				if err == nil && sym.Addr != tg.addrs[n] {
					err = fmt.Errorf("Lookup(%q) = %#x; want %#x", n, sym.Addr, tg.addrs[n])
				}
				if _, ok := s.FuncAt(tg.addrs["secret_add"]); !ok && err == nil {
					err = errors.New("FuncAt(secret_add) found nothing")
				}
				errs <- err
			}()
		}
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
