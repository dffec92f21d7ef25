package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lp/config"
)

func TestFindProcess(t *testing.T) {
	dir := t.TempDir()
	// A process with a unique executable path and comm: a copy of sleep.
	sleepPath, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	data, err := os.ReadFile(sleepPath)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "lpfindme")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid

	pidfile := filepath.Join(dir, "ok.pid")
	os.WriteFile(pidfile, []byte(strconv.Itoa(pid)+"\n"), 0o600)
	garbage := filepath.Join(dir, "garbage.pid")
	os.WriteFile(garbage, []byte("not a pid"), 0o600)
	// A pid that surely does not run: a reaped child's.
	gone := exec.Command("true")
	gone.Run()
	stale := filepath.Join(dir, "stale.pid")
	os.WriteFile(stale, []byte(strconv.Itoa(gone.Process.Pid)), 0o600)

	cases := []struct {
		name    string
		target  config.Target
		want    int
		noProc  bool
		errWant string
	}{
		{"pidfile", config.Target{PIDFile: pidfile}, pid, false, ""},
		{"exe", config.Target{Exe: exe}, pid, false, ""},
		{"comm", config.Target{Comm: "lpfindme"}, pid, false, ""},
		{"missing pidfile", config.Target{PIDFile: filepath.Join(dir, "none.pid")}, 0, true, ""},
		{"stale pidfile", config.Target{PIDFile: stale}, 0, true, ""},
		{"garbage pidfile", config.Target{PIDFile: garbage}, 0, false, "does not hold a pid"},
		{"no such exe", config.Target{Exe: filepath.Join(dir, "nothing")}, 0, true, ""},
		{"no such comm", config.Target{Comm: "lp-no-such"}, 0, true, ""},
	}
	for _, c := range cases {
		got, err := findProcess("/proc", c.target)
		switch {
		case c.noProc:
			if !errors.Is(err, ErrNoProcess) {
				t.Errorf("%s: findProcess = %d, %v; want ErrNoProcess", c.name, got, err)
			}
		case c.errWant != "":
			if err == nil || !strings.Contains(err.Error(), c.errWant) || errors.Is(err, ErrNoProcess) {
				t.Errorf("%s: findProcess = %d, %v; want an error containing %q", c.name, got, err, c.errWant)
			}
		default:
			if err != nil || got != c.want {
				t.Errorf("%s: findProcess = %d, %v; want %d", c.name, got, err, c.want)
			}
		}
	}
	// Two processes with the same comm: refused, not guessed.
	cmd2 := exec.Command(exe, "300")
	if err := cmd2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd2.Process.Kill(); cmd2.Wait() })
	if got, err := findProcess("/proc", config.Target{Comm: "lpfindme"}); err == nil || !strings.Contains(err.Error(), "2 processes match") {
		t.Errorf("two matches: findProcess = %d, %v; want a refusal", got, err)
	}
	// match: all takes both, sorted, by comm and by exe; one still refuses.
	want := []int{pid, cmd2.Process.Pid}
	slices.Sort(want)
	for _, tg := range []config.Target{{Comm: "lpfindme", Match: config.MatchAll}, {Exe: exe, Match: config.MatchAll}} {
		if got, err := findProcesses("/proc", tg); err != nil || !slices.Equal(got, want) {
			t.Errorf("findProcesses(%+v) = %v, %v; want %v", tg, got, err, want)
		}
	}
	if got, err := findProcesses("/proc", config.Target{Comm: "lpfindme", Match: config.MatchOne}); err == nil {
		t.Errorf("findProcesses(match one, two running) = %v; want a refusal", got)
	}
	if got, err := findProcesses("/proc", config.Target{Comm: "lp-no-such", Match: config.MatchAll}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("findProcesses(match all, none running) = %v, %v; want ErrNoProcess", got, err)
	}
	if got, err := findProcesses("/proc", config.Target{PIDFile: pidfile}); err != nil || !slices.Equal(got, []int{pid}) {
		t.Errorf("findProcesses(pidfile) = %v, %v; want [%d]", got, err, pid)
	}
}

func TestBlobStore(t *testing.T) {
	b := blobStore{dir: filepath.Join(t.TempDir(), "patches")}
	data := []byte("module bytes")
	sum := hexSum(data)
	if _, _, err := b.read(sum); !errors.Is(err, errMissing) {
		t.Fatalf("read before put = %v; want errMissing", err)
	}
	if err := b.put(sum, data); err != nil {
		t.Fatalf("put: %v", err)
	}
	p, got, err := b.read(sum)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if onDisk, _ := os.ReadFile(p); string(onDisk) != string(data) || string(got) != string(data) || p != b.path(sum) {
		t.Errorf("stored %q at %s, returned %q; want %q", onDisk, p, got, data)
	}
	if err := b.put(sum, data); err != nil {
		t.Errorf("second put = %v; want nil", err)
	}
	// A file changed behind lpd's back is refused, named, moved aside for
	// the operator (never loaded), and reported missing, so that the node
	// fetches it again.
	os.WriteFile(p, []byte("tampered"), 0o600)
	_, got, err = b.read(sum)
	if !errors.Is(err, ErrHashMismatch) || !errors.Is(err, errMissing) || got != nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("read of a tampered file = %q, %v; want ErrHashMismatch and errMissing naming %s", got, err, p)
	}
	if aside, _ := os.ReadFile(p + ".corrupt"); string(aside) != "tampered" {
		t.Errorf("the tampered file was not kept aside: %q", aside)
	}
	if b.has(sum) {
		t.Errorf("the store still has the tampered module")
	}
	// Put again after a tampering: the good bytes are back.
	os.WriteFile(p, []byte("tampered again"), 0o600)
	if err := b.put(sum, data); err != nil {
		t.Fatal(err)
	}
	if _, got, err := b.read(sum); err != nil || string(got) != string(data) {
		t.Errorf("read after put over a tampered file = %q, %v; want the module", got, err)
	}
	// Bytes that do not match their hash are refused and not written.
	os.Remove(p)
	if err := b.put(sum, []byte("other bytes")); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("mismatching bytes: err = %v; want ErrHashMismatch", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused module was written to %s", p)
	}
}
