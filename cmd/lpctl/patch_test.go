package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/engine"
	"lp/internal/fixture"
)

// lpctl runs the CLI in-process and returns exit status, stdout, stderr.
func lpctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := execute(args, &out, &errb)
	return code, out.String(), errb.String()
}

func patchFixtures(t *testing.T) (svc, fix1, fix2 string) {
	t.Helper()
	b := fixture.NewBuilder(t.TempDir())
	svc = b.Build(t, "svc", "-O2", "-pthread", "../../engine/testdata/svc.c")
	fix1 = b.Build(t, "fix1.so", "-shared", "-fPIC", "-O2", "-I../../include", "../../engine/testdata/fix1.c")
	fix2 = b.Build(t, "fix2.so", "-shared", "-fPIC", "-O2", "-I../../include", "../../engine/testdata/fix2.c")
	return svc, fix1, fix2
}

func lastV(t *testing.T, tg *fixture.Target) string {
	t.Helper()
	line, _ := tg.WaitPrefix(t, len(tg.Lines()), 5*time.Second, "v ")
	return line
}

func waitClassify(t *testing.T, tg *fixture.Target, want string) {
	t.Helper()
	var line string
	for i := 0; i < 5; i++ {
		if line = lastV(t, tg); strings.Contains(line, "classify="+want+" ") {
			return
		}
	}
	t.Fatalf("service says %q; want classify=%s", line, want)
}

func TestPatchVerbs(t *testing.T) {
	svc, fix1, fix2 := patchFixtures(t)
	tg := fixture.Start(t, svc, "2")
	tg.WaitPrefix(t, 0, 10*time.Second, "v ")
	pid := fmt.Sprint(tg.Pid)

	code, out, errs := lpctl("patch", "inspect", fix1)
	if code != 0 || !strings.Contains(out, "replace:") || !strings.Contains(out, "classify -> classify_v2") {
		t.Fatalf("patch inspect = %d %q %q", code, out, errs)
	}

	code, out, errs = lpctl("patch", "apply", "--pid", pid, fix2)
	if code == 0 || !strings.Contains(errs, "depends on fix1") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("apply fix2 before fix1 = %d %q %q; want one line about the dependency", code, out, errs)
	}
	code, out, errs = lpctl("patch", "apply", "--pid", pid, fix1)
	if code != 0 || !strings.HasPrefix(out, "applied fix1 to pid "+pid) {
		t.Fatalf("patch apply = %d %q %q", code, out, errs)
	}
	waitClassify(t, tg, "2")
	code, out, _ = lpctl("patch", "apply", "--pid", pid, fix1)
	if code != 0 || !strings.Contains(out, "already active") {
		t.Fatalf("second apply = %d %q; want exit 0 saying already active", code, out)
	}
	if code, out, errs = lpctl("patch", "apply", "--pid", pid, "--consistency", "entry", fix2); code != 0 {
		t.Fatalf("apply fix2 = %d %q %q", code, out, errs)
	}
	waitClassify(t, tg, "3")

	code, out, _ = lpctl("patch", "list", "--pid", pid, "-o", "json")
	var ps []engine.Patch
	if err := json.Unmarshal([]byte(out), &ps); code != 0 || err != nil {
		t.Fatalf("patch list -o json = %d %q (%v)", code, out, err)
	}
	if len(ps) != 2 || ps[0].ID != "fix1" || ps[1].ID != "fix2" || ps[1].State != "active" {
		t.Fatalf("patch list = %+v; want fix1 and fix2 active", ps)
	}

	code, _, errs = lpctl("patch", "revert", "--pid", pid, "fix1")
	if code == 0 || !strings.Contains(errs, "--cascade") {
		t.Fatalf("revert fix1 under fix2 = %d %q; want a refusal mentioning --cascade", code, errs)
	}
	code, out, errs = lpctl("patch", "revert", "--pid", pid, "--cascade", "fix1")
	if code != 0 || !strings.Contains(out, "reverted fix2, fix1") {
		t.Fatalf("revert --cascade = %d %q %q", code, out, errs)
	}
	waitClassify(t, tg, "1")
	code, out, _ = lpctl("patch", "list", "--pid", pid)
	if code != 0 || strings.Count(out, "reverted") != 2 {
		t.Fatalf("patch list = %d %q; want both reverted", code, out)
	}
}

func TestPatchVerbErrors(t *testing.T) {
	svc, fix1, _ := patchFixtures(t)
	tg := fixture.Start(t, svc, "1")
	tg.WaitPrefix(t, 0, 10*time.Second, "v ")
	junk := t.TempDir() + "/junk.so"
	os.WriteFile(junk, []byte("junk"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"patch", "apply", fix1}, `required flag(s) "pid" not set`},
		{[]string{"patch", "apply", "--pid", "99999999", fix1}, "no process with pid 99999999"},
		{[]string{"patch", "apply", "--pid", fmt.Sprint(tg.Pid), junk}, "not an ELF file"},
		{[]string{"patch", "apply", "--pid", fmt.Sprint(tg.Pid), "--mode", "bogus", fix1}, "want inject or dlopen"},
		{[]string{"patch", "revert", "--pid", fmt.Sprint(tg.Pid), "nope"}, "no patch nope"},
		{[]string{"patch", "inspect", svc}, "want a shared object"},
		{[]string{"patch", "list", "--pid", "99999999"}, "no process with pid 99999999"},
	}
	for _, c := range cases {
		code, _, errs := lpctl(c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("lpctl %s = %d, %q; want non-zero and one line containing %q", strings.Join(c.args, " "), code, errs, c.want)
		}
	}
	if line := lastV(t, tg); !strings.Contains(line, "classify=1 ") {
		t.Errorf("target changed by refused commands: %q", line)
	}
}

// Ctrl-C during an apply that is still retrying its window: lpctl exits
// with an error, and the target is left detached, unpatched and running.
func TestPatchApplyInterrupted(t *testing.T) {
	b := fixture.NewBuilder(t.TempDir())
	svc := b.Build(t, "svc", "-O2", "-pthread", "../../engine/testdata/svc.c")
	fix := b.Build(t, "fixparked.so", "-shared", "-fPIC", "-O2", "-I../../include", "../../engine/testdata/fixparked.c")
	bin := t.TempDir() + "/lpctl"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tg := fixture.Start(t, svc, "1", "park")
	tg.WaitPrefix(t, 0, 10*time.Second, "v ")
	cmd := exec.Command(bin, "patch", "apply", "--pid", fmt.Sprint(tg.Pid), "--timeout", "30s", fix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Interrupt once the module is loaded and lpctl retries its
	// activation (a thread is parked inside the function), however long
	// a busy machine takes to get there; within the apply's own timeout.
	loaded := func() bool {
		ps, _ := engine.List(tg.Pid)
		for _, p := range ps {
			if p.State == engine.StateLoaded {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); !loaded(); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("lpctl ended before the module was loaded: %v; stderr %q", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the module was not loaded within the apply's 30s timeout; stderr %q", stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("interrupted apply exited 0; stderr %q", stderr.String())
		}
	case <-time.After(30 * time.Second): // the apply's own timeout: it would have ended by then anyway
		cmd.Process.Kill()
		t.Fatal("lpctl did not stop after SIGINT")
	}
	if tr, _ := fixture.TracerPid(tg.Pid); tr != 0 {
		t.Errorf("target still traced by %d", tr)
	}
	ps, err := engine.List(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.State == engine.StateActive {
			t.Errorf("patch %s active after an interrupted apply", p.ID)
		}
	}
	lastV(t, tg)
}

func TestDemo(t *testing.T) {
	code, out, errs := lpctl("demo", "--examples", "../../examples")
	if code != 0 {
		t.Fatalf("lpctl demo = %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"applied fix-invite-overflow", "version=2", "reverted fix-invite-overflow", "sipd was never restarted"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestPatchInspectOriginal(t *testing.T) {
	b := fixture.NewBuilder(t.TempDir())
	so := b.Build(t, "fixwrap.so", "-shared", "-fPIC", "-O2", "-I../../include", "../../engine/testdata/fixwrap.c")
	code, out, errs := lpctl("patch", "inspect", so)
	if code != 0 || !strings.Contains(out, "original:") || !strings.Contains(out, "classify -> orig_classify") {
		t.Fatalf("patch inspect = %d %q %q; want the original entries", code, out, errs)
	}
	code, out, _ = lpctl("patch", "inspect", "-o", "json", so)
	if code != 0 || !strings.Contains(out, `"originals"`) || !strings.Contains(out, `"ptr": "orig_ripfn"`) {
		t.Fatalf("patch inspect -o json = %d %q", code, out)
	}
}
