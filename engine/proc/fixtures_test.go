package proc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// knownBuildID is what the PIE fixture is linked with (--build-id=0x...).
const knownBuildID = "1b0a9c3d5e7f2468ace013579bdf2468ace01357"

// fixtureSet holds the C fixtures, built once per test binary.
type fixtureSet struct {
	once sync.Once
	dir  string
	err  error
}

// The fixtures are shared by every test of this binary (built once, removed
// by TestMain), the way delve's BuildFixture caches its builds.
var fixtures fixtureSet

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtures.dir != "" {
		os.RemoveAll(fixtures.dir)
	}
	os.Exit(code)
}

// fixtureDir builds testdata/*.c into a temporary directory:
//
//	libfix.so     versioned shared library
//	target-pie    PIE target, build-id knownBuildID
//	target-nopie  non-PIE target (-fno-pie -no-pie), sha1 build-id
func fixtureDir(tb testing.TB) string {
	tb.Helper()
	fixtures.once.Do(func() {
		dir, err := os.MkdirTemp("", "lp-proc-fixtures-")
		if err != nil {
			fixtures.err = err
			return
		}
		fixtures.dir = dir
		td, err := filepath.Abs("testdata")
		if err != nil {
			fixtures.err = err
			return
		}
		builds := [][]string{
			{"-shared", "-fPIC", "-O2", "-Wl,--version-script=" + filepath.Join(td, "libfix.map"),
				"-Wl,-soname,libfix.so", "-o", filepath.Join(dir, "libfix.so"), filepath.Join(td, "libfix.c")},
			{"-O2", "-fPIE", "-pie", "-Wl,--build-id=0x" + knownBuildID, "-o", filepath.Join(dir, "target-pie"),
				filepath.Join(td, "target.c"), "-L" + dir, "-lfix", "-Wl,-rpath," + dir},
			{"-O2", "-fno-pie", "-no-pie", "-Wl,--build-id=sha1", "-o", filepath.Join(dir, "target-nopie"),
				filepath.Join(td, "target.c"), "-L" + dir, "-lfix", "-Wl,-rpath," + dir},
		}
		for _, args := range builds {
			out, err := exec.Command("cc", args...).CombinedOutput()
			if err != nil {
				fixtures.err = fmt.Errorf("cc %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if fixtures.err != nil {
		tb.Fatalf("building C fixtures: %v", fixtures.err)
	}
	return fixtures.dir
}

// target is a running fixture process and the addresses it printed.
type target struct {
	pid   int
	addrs map[string]uint64
}

// startTarget runs exe, reads the line of addresses it prints, and kills it
// when the test ends.
func startTarget(t *testing.T, exe string) target {
	t.Helper()
	cmd := exec.Command(exe)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed nothing within 30s (stderr %q)", exe, stderr.String())
	}
	tg := target{pid: cmd.Process.Pid, addrs: make(map[string]uint64)}
	for _, kv := range strings.Fields(line) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(v, "0x") {
			continue
		}
		a, err := strconv.ParseUint(v[2:], 16, 64)
		if err != nil {
			t.Fatalf("target printed %q: %v", kv, err)
		}
		tg.addrs[k] = a
	}
	for _, k := range []string{"secret_add", "lp_counter", "lp_static_state", "getpid", "fix_version", "fix_version_v1"} {
		if tg.addrs[k] == 0 {
			t.Fatalf("target line %q lacks %s (stderr %q)", line, k, stderr.String())
		}
	}
	return tg
}
