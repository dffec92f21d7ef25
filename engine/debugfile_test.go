package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lp/internal/fixture"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// strippedSvc builds svc, moves its symbols into a separate debug file
// (objcopy --only-keep-debug, strip, --add-gnu-debuglink) and returns the
// stripped binary, the debug file and the build-id.
func strippedSvc(t *testing.T) (bin, debug, buildID string) {
	t.Helper()
	for _, tool := range []string{"objcopy", "strip", "readelf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (binutils)", tool)
		}
	}
	dir := t.TempDir()
	built := fixtures.Build(t, "svc", "-O2", "-pthread", "-rdynamic", "-Wl,--build-id", "testdata/svc.c")
	bin = filepath.Join(dir, "svc")
	copyFile(t, built, bin)
	debug = filepath.Join(dir, "svc.debug")
	run(t, "objcopy", "--only-keep-debug", bin, debug)
	run(t, "strip", "--strip-all", bin)
	run(t, "objcopy", "--add-gnu-debuglink="+debug, bin)
	out, err := exec.Command("readelf", "-n", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Build ID: "); ok {
			buildID = v
		}
	}
	if buildID == "" {
		t.Fatalf("no build-id in %s", bin)
	}
	return bin, debug, buildID
}

func startSvc(t *testing.T, bin string) *fixture.Target {
	t.Helper()
	tg := fixture.Start(t, bin, "2")
	tg.WaitPrefix(t, 0, 10*time.Second, "v ")
	return tg
}

// scale is static: only .symtab has it, and a stripped binary has none.
func TestStrippedTargetDebugFile(t *testing.T) {
	bin, debug, buildID := strippedSvc(t)
	so := mod(t, "fixstatic.c")

	t.Run("debuglink next to the binary", func(t *testing.T) {
		tg := startSvc(t, bin)
		if _, err := Apply(context.Background(), tg.Pid, so, Options{DebugDir: t.TempDir()}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		expect(t, tg, "scale", 15)
	})

	// The debug file only under DIR/.build-id/xx/rest.debug.
	hidden := debug + ".away"
	if err := os.Rename(debug, hidden); err != nil {
		t.Fatal(err)
	}
	t.Run("build-id under --debug-dir", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, ".build-id", buildID[:2], buildID[2:]+".debug")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, hidden, p)
		tg := startSvc(t, bin)
		if _, err := Apply(context.Background(), tg.Pid, so, Options{DebugDir: dir}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		expect(t, tg, "scale", 15)
	})

	t.Run("no debug file", func(t *testing.T) {
		dir := t.TempDir()
		tg := startSvc(t, bin)
		_, err := Apply(context.Background(), tg.Pid, so, Options{DebugDir: dir})
		checkOneLine(t, "Apply", err)
		msg := err.Error()
		for _, want := range []string{"stripped", buildID, filepath.Join(dir, ".build-id", buildID[:2]), filepath.Base(debug)} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		expect(t, tg, "scale", 10)
		detached(t, tg.Pid)
	})
}
