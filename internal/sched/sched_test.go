package sched

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// threadsAt reports whether every thread of this process has policy and
// nice level (the threads that exit meanwhile aside).
func threadsAt(policy uint32, nice int32) bool {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue
		}
		if a.Policy != policy || (policy == unix.SCHED_NORMAL && a.Nice != nice) {
			return false
		}
	}
	return true
}

// TestRealTimeIsGuardedByABudget: a real-time process that uses more CPU
// than its budget falls back to its nice level, and returns to real time
// once it has stayed within budget.
func TestRealTimeIsGuardedByABudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) for a real-time priority")
	}
	p := Priority{RT: 1, Nice: -3, Budget: 0.2}
	if _, err := Apply(p); err != nil {
		t.Skipf("real time refused here: %v", err)
	}
	t.Cleanup(func() { _, _ = Apply(Priority{}) })
	changes := make(chan Priority, 16)
	stop := make(chan struct{})
	defer close(stop)
	go Keep(p, 100*time.Millisecond, stop, func(now Priority, why string) {
		t.Logf("now %s: %s", now, why)
		changes <- now
	})
	// Spin (a runaway lpd) until the guard drops the process to nice.
	var spin atomic.Bool
	spin.Store(true)
	go func() {
		for spin.Load() {
		}
	}()
	select {
	case got := <-changes:
		spin.Store(false)
		if got != p.Fallback() {
			t.Fatalf("over budget: priority %s; want %s", got, p.Fallback())
		}
	case <-time.After(30 * time.Second):
		spin.Store(false)
		t.Fatal("a process spinning at real time was not dropped to its nice level")
	}
	if !threadsAt(unix.SCHED_NORMAL, -3) {
		t.Error("after the drop, not every thread is at nice -3")
	}
	select {
	case got := <-changes:
		if got != p {
			t.Fatalf("within budget again: priority %s; want %s", got, p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an idle process was not raised to real time again")
	}
	// Keep applies what it announced in the same interval.
	deadline := time.Now().Add(5 * time.Second)
	for !threadsAt(unix.SCHED_RR, 0) {
		if time.Now().After(deadline) {
			t.Fatal("after the return, not every thread is SCHED_RR")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
