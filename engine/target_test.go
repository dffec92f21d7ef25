package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"lp/engine/ptrace"
)

// repeated returns a run of three words that occurs twice in s, or "".
func repeated(s string) string {
	w := strings.Fields(strings.NewReplacer(":", " ", ";", " ", ",", " ").Replace(s))
	seen := map[string]bool{}
	for i := 0; i+3 <= len(w); i++ {
		k := strings.Join(w[i:i+3], " ")
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}

func checkOneLine(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") {
		t.Errorf("%s: error is not one line: %q", what, msg)
	} else if r := repeated(msg); r != "" {
		t.Errorf("%s: %q says %q twice", what, msg, r)
	}
}

func TestKernelThreadRefused(t *testing.T) {
	// pid 2 is kthreadd on Linux, outside a pid namespace.
	if b, err := os.ReadFile("/proc/2/stat"); err != nil || !strings.Contains(string(b), "(kthreadd)") {
		t.Skip("pid 2 is not kthreadd here (pid namespace?)")
	}
	so := mod(t, "fix1.c")
	_, err := Apply(context.Background(), 2, so, Options{})
	checkOneLine(t, "Apply", err)
	if !errors.Is(err, ErrKernelThread) || !strings.Contains(err.Error(), "kernel thread") {
		t.Errorf("Apply on pid 2: %v; want ErrKernelThread saying so", err)
	}
	_, err = Revert(context.Background(), 2, "fix1", false, Options{})
	checkOneLine(t, "Revert", err)
	if !errors.Is(err, ErrKernelThread) {
		t.Errorf("Revert on pid 2: %v; want ErrKernelThread", err)
	}
	_, err = List(2)
	checkOneLine(t, "List", err)
	if !errors.Is(err, ErrKernelThread) {
		t.Errorf("List on pid 2: %v; want ErrKernelThread", err)
	}
}

func TestNoSuchProcess(t *testing.T) {
	for _, pid := range []int{-1, 0, 1 << 30} {
		_, err := Apply(context.Background(), pid, mod(t, "fix1.c"), Options{})
		checkOneLine(t, "Apply", err)
		if !errors.Is(err, ptrace.ErrNoProcess) {
			t.Errorf("Apply on pid %d: %v; want ErrNoProcess", pid, err)
		}
		_, err = List(pid)
		checkOneLine(t, "List", err)
	}
}

// A caller without the right to trace the target is told what it needs.
// The test binary runs itself as nobody against a process of root's.
func TestPermissionDenied(t *testing.T) {
	if pid := os.Getenv("LP_TEST_UNPRIVILEGED_PID"); pid != "" {
		n, _ := strconv.Atoi(pid)
		_, err := List(n)
		checkOneLine(t, "List", err)
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "root or CAP_SYS_PTRACE") {
			t.Errorf("List: %v; want ErrPermission naming root or CAP_SYS_PTRACE", err)
		}
		_, err = Revert(context.Background(), n, "x", false, Options{})
		checkOneLine(t, "Revert", err)
		if !errors.Is(err, ErrPermission) {
			t.Errorf("Revert: %v; want ErrPermission", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as another user")
	}
	tg := svc(t, "1")
	// t.TempDir's parent is private to root: nobody could not reach it.
	dir, err := os.MkdirTemp("", "lp-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "engine.test")
	copyFile(t, os.Args[0], self)
	cmd := exec.Command(self, "-test.run", "^TestPermissionDenied$", "-test.v")
	cmd.Env = append(os.Environ(), "LP_TEST_UNPRIVILEGED_PID="+strconv.Itoa(tg.Pid))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPermissionDenied") {
		t.Fatalf("unprivileged helper: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
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
