package sched

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestApplyRaisesThreadsNotChildren raises this test process's threads and
// checks that every thread has the level and that a child process does not.
func TestApplyRaisesThreadsNotChildren(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) to lower the nice level")
	}
	p := Priority{Nice: -3}
	// The threads listed before Apply; a thread the runtime starts after
	// Apply listed them is raised by Keep, not by Apply.
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Apply(p)
	if err != nil {
		t.Fatalf("Apply(%s): %v", p, err)
	}
	t.Cleanup(func() { _, _ = Apply(Priority{}) })
	if n < 1 {
		t.Errorf("Apply set %d threads; want at least this one", n)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // exited meanwhile
		}
		if a.Nice != -3 || a.Policy != unix.SCHED_NORMAL || a.Flags&unix.SCHED_FLAG_RESET_ON_FORK == 0 {
			t.Errorf("thread %d: policy %d nice %d flags %#x; want normal, -3, reset on fork", tid, a.Policy, a.Nice, a.Flags)
		}
	}
	// A child (a health check, a hook) runs at the normal level.
	out, err := exec.Command("sh", "-c", "cut -d' ' -f19 /proc/self/stat").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "0" {
		t.Errorf("child's nice = %s; want 0 (reset on fork)", got)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Priority{{Nice: -21}, {Nice: 20}, {RT: -1}, {RT: 100}} {
		if p.Validate() == nil {
			t.Errorf("%+v: Validate() = nil; want an error", p)
		}
	}
	if _, err := Apply(Priority{RT: 100}); err == nil {
		t.Error("Apply(rt 100) = nil; want an error")
	}
}
