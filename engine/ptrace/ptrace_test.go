package ptrace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lp/internal/fixture"
)

var fixtures *fixture.Builder

func TestMain(m *testing.M) { os.Exit(fixture.Main(m, &fixtures)) }

// target starts the multi-threaded fixture and parses its address line.
func target(t *testing.T, args ...string) (*fixture.Target, map[string]uint64) {
	t.Helper()
	bin := fixtures.Build(t, "target", "-O2", "-pthread", "testdata/target.c")
	tg := fixture.Start(t, bin, args...)
	line, _ := tg.WaitPrefix(t, 0, 10*time.Second, "ready")
	addrs := map[string]uint64{}
	for _, k := range []string{"add", "sleep", "crash", "getpid", "tid"} {
		v, err := strconv.ParseUint(strings.TrimPrefix(fixture.Field(line, k), "0x"), 16, 64)
		if err != nil {
			t.Fatalf("parsing %s in %q: %v", k, line, err)
		}
		addrs[k] = v
	}
	return tg, addrs
}

func attach(t *testing.T, pid int) *Process {
	t.Helper()
	p, err := Attach(pid)
	if err != nil {
		t.Fatalf("Attach(%d): %v", pid, err)
	}
	t.Cleanup(func() { _ = p.Detach() })
	return p
}

// ticks waits for the target to print n more "tick" lines, showing it runs.
func ticks(t *testing.T, tg *fixture.Target, n int) uint64 {
	t.Helper()
	from := len(tg.Lines())
	var last uint64
	for i := 0; i < n; i++ {
		line, idx := tg.WaitPrefix(t, from, 5*time.Second, "tick ")
		from = idx + 1
		last, _ = strconv.ParseUint(strings.TrimPrefix(line, "tick "), 10, 64)
	}
	return last
}

// mappingPerms returns the permissions of the target mapping that covers
// [lo, hi) (the kernel may have merged ours with a neighbour).
func mappingPerms(t *testing.T, pid int, lo, hi uint64) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		var start, end uint64
		var perms string
		if _, err := fmt.Sscanf(line, "%x-%x %s", &start, &end, &perms); err == nil && start <= lo && hi <= end {
			return perms
		}
	}
	return ""
}

func schedState(t *testing.T, pid, tid int) byte {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0 // exited
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return s[i+2]
}

func TestAttachStopResumeDetach(t *testing.T) {
	tg, _ := target(t, "2", "2")
	before := ticks(t, tg, 2)
	p := attach(t, tg.Pid)

	tids, err := p.Threads()
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) != 5 {
		t.Fatalf("Threads() = %v; want 5 threads (main, 2 busy, 2 blocked)", tids)
	}
	for _, tid := range tids {
		// TracerPid names the tracing thread, one of ours.
		tr, _ := fixture.TracerPid(tid)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", os.Getpid(), tr)); tr == 0 || err != nil {
			t.Errorf("thread %d TracerPid = %d; want a thread of this process (%d)", tid, tr, os.Getpid())
		}
	}
	// Attached and idle, the target keeps running.
	ticks(t, tg, 2)

	err = p.WithStopped(context.Background(), func(s *Stopped) error {
		for _, tid := range s.Threads() {
			if st := schedState(t, tg.Pid, tid); st != 't' {
				t.Errorf("thread %d state %q while stopped; want 't'", tid, st)
			}
			if _, err := s.Regs(tid); err != nil {
				t.Errorf("Regs(%d): %v", tid, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WithStopped: %v", err)
	}
	if err := p.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	for _, tid := range tids {
		if tr, _ := fixture.TracerPid(tid); tr != 0 {
			t.Errorf("after Detach thread %d TracerPid = %d; want 0", tid, tr)
		}
	}
	after := ticks(t, tg, 3)
	if after <= before {
		t.Errorf("counter after detach = %d; want more than %d", after, before)
	}
	if _, err := p.Threads(); !errors.Is(err, ErrDetached) {
		t.Errorf("Threads after Detach: %v; want ErrDetached", err)
	}
}

func TestThreadsCreatedDuringAttachAreCaught(t *testing.T) {
	tg, _ := target(t, "1", "0", "spawn")
	ticks(t, tg, 2)
	p := attach(t, tg.Pid)
	for round := 0; round < 30; round++ {
		err := p.WithStopped(context.Background(), func(s *Stopped) error {
			known := s.Threads()
			live, err := listTasks(tg.Pid)
			if err != nil {
				return err
			}
			for _, tid := range live {
				st := schedState(t, tg.Pid, tid)
				if st == 0 || st == 'Z' || st == 'X' {
					continue // exited between the listing and the read
				}
				if !slices.Contains(known, tid) {
					t.Errorf("round %d: thread %d (state %q) runs untraced; known %v", round, tid, st, known)
				} else if st != 't' {
					t.Errorf("round %d: thread %d state %q; want stopped 't'", round, tid, st)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		time.Sleep(3 * time.Millisecond)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	live, _ := listTasks(tg.Pid)
	for _, tid := range live {
		if tr, _ := fixture.TracerPid(tid); tr != 0 {
			t.Errorf("after Detach thread %d TracerPid = %d; want 0", tid, tr)
		}
	}
	ticks(t, tg, 2)
}

func TestInjectedMmapGivesUsableMemory(t *testing.T) {
	tg, _ := target(t, "2", "1")
	p := attach(t, tg.Pid)
	ctx := context.Background()
	addr, err := p.Syscall(ctx, unix.SYS_MMAP, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if addr == 0 || addr%4096 != 0 {
		t.Fatalf("mmap = %#x; want a page address", addr)
	}
	want := []byte("written by lp through /proc/PID/mem")
	if err := p.WriteMem(addr+100, want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if err := p.ReadMem(addr+100, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("read back %q; want %q", got, want)
	}
	if perms := mappingPerms(t, tg.Pid, addr, addr+8192); perms != "rw-p" {
		t.Errorf("target mapping around %#x is %q; want rw-p", addr, perms)
	}
	if r, err := p.Syscall(ctx, unix.SYS_MPROTECT, addr, 8192, unix.PROT_READ); err != nil || r != 0 {
		t.Errorf("mprotect = %d, %v; want 0, nil", r, err)
	}
	if r, err := p.Syscall(ctx, unix.SYS_MUNMAP, addr, 8192); err != nil || r != 0 {
		t.Errorf("munmap = %d, %v; want 0, nil", r, err)
	}
	// A failing syscall reports its errno.
	if _, err := p.Syscall(ctx, unix.SYS_MUNMAP, 1, 4096); !errors.Is(err, unix.EINVAL) {
		t.Errorf("munmap(1) error = %v; want EINVAL", err)
	}
	ticks(t, tg, 2)
}

func TestCallTargetAndLibcFunctions(t *testing.T) {
	tg, addrs := target(t, "2", "2")
	p := attach(t, tg.Pid)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		got, err := p.Call(ctx, addrs["add"], uint64(i), 40)
		if err != nil {
			t.Fatalf("Call(target_add): %v", err)
		}
		if want := uint64(i + 40 + 1000); got != want {
			t.Fatalf("target_add(%d, 40) = %d; want %d", i, got, want)
		}
	}
	got, err := p.Call(ctx, addrs["getpid"])
	if err != nil {
		t.Fatalf("Call(getpid): %v", err)
	}
	if int(got) != tg.Pid {
		t.Fatalf("getpid() in target = %d; want %d", got, tg.Pid)
	}
	ticks(t, tg, 2)
}

func TestWriteReadOnlyCode(t *testing.T) {
	tg, addrs := target(t, "1", "0")
	p := attach(t, tg.Pid)
	orig := make([]byte, 8)
	if err := p.ReadMem(addrs["add"], orig); err != nil {
		t.Fatal(err)
	}
	junk := []byte{0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc}
	if err := p.WriteMem(addrs["add"], junk); err != nil {
		t.Fatalf("writing a read-only code page: %v", err)
	}
	got := make([]byte, 8)
	if err := p.ReadMem(addrs["add"], got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(junk) {
		t.Fatalf("code after write = %x; want %x", got, junk)
	}
	if err := p.WriteMem(addrs["add"], orig); err != nil {
		t.Fatal(err)
	}
	if r, err := p.Call(context.Background(), addrs["add"], 1, 2); err != nil || r != 1003 {
		t.Fatalf("target_add(1,2) after restoring code = %d, %v; want 1003", r, err)
	}
}

// The main thread is blocked in read(2) when we borrow it for an injected
// system call; its read must restart, not return -ERESTARTSYS.
func TestInterruptedSyscallRestarts(t *testing.T) {
	tg, _ := target(t, "1", "1", "readstdin")
	p := attach(t, tg.Pid)
	time.Sleep(20 * time.Millisecond) // let main block in read
	for i := 0; i < 3; i++ {
		pid, err := p.Syscall(context.Background(), unix.SYS_GETPID)
		if err != nil || int(pid) != tg.Pid {
			t.Fatalf("getpid in target = %d, %v; want %d", pid, err, tg.Pid)
		}
	}
	from := len(tg.Lines())
	if _, err := tg.Stdin.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	line, _ := tg.WaitPrefix(t, from, 5*time.Second, "read ")
	if line != "read 6" {
		t.Fatalf("target's read returned %q; want \"read 6\"", line)
	}
}

func TestSignalsReachTargetWhileAttached(t *testing.T) {
	tg, _ := target(t, "1", "1")
	p := attach(t, tg.Pid)
	if err := unix.Kill(tg.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	tg.WaitPrefix(t, 0, 5*time.Second, "usr1 1")
	// And while we hold the threads stopped, the signal waits for resume.
	err := p.WithStopped(context.Background(), func(*Stopped) error {
		return unix.Kill(tg.Pid, unix.SIGUSR1)
	})
	if err != nil {
		t.Fatal(err)
	}
	tg.WaitPrefix(t, 0, 5*time.Second, "usr1 2")
	if _, err := p.Threads(); err != nil {
		t.Fatal(err)
	}
}

func TestCallDeadlineRestoresThread(t *testing.T) {
	tg, addrs := target(t, "1", "1")
	p := attach(t, tg.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Call(ctx, addrs["sleep"], 3000)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Call(target_sleep(3000)) with 200ms deadline: %v; want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timed-out call took %v to give up", d)
	}
	ticks(t, tg, 3)
	if r, err := p.Call(context.Background(), addrs["add"], 5, 6); err != nil || r != 1011 {
		t.Fatalf("target_add(5,6) after an abandoned call = %d, %v; want 1011", r, err)
	}
}

func TestCallFaultLeavesTargetAlive(t *testing.T) {
	tg, addrs := target(t, "1", "0")
	p := attach(t, tg.Pid)
	_, err := p.Call(context.Background(), addrs["crash"], 1)
	if !errors.Is(err, ErrFault) {
		t.Fatalf("Call(target_crash): %v; want ErrFault", err)
	}
	ticks(t, tg, 3)
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	ticks(t, tg, 2)
}

func TestTargetKilledMidOperation(t *testing.T) {
	tg, addrs := target(t, "1", "1")
	p := attach(t, tg.Pid)
	go func() {
		time.Sleep(100 * time.Millisecond)
		tg.Kill()
	}()
	start := time.Now()
	_, err := p.Call(context.Background(), addrs["sleep"], 4000)
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Call while the target is killed: %v; want ErrExited", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to notice the exit", d)
	}
	if !strings.Contains(err.Error(), "killed by signal 9") {
		t.Errorf("error %q does not say how the target ended", err)
	}
	if err := p.Detach(); err != nil {
		t.Errorf("Detach after exit: %v", err)
	}
}

func TestAttachRefusals(t *testing.T) {
	// A pid that surely does not exist: above the kernel's pid_max limit.
	_, err := Attach(1 << 23)
	if !errors.Is(err, ErrNoProcess) {
		t.Errorf("Attach(nonexistent) = %v; want ErrNoProcess", err)
	}
	_, err = Attach(os.Getpid())
	if !errors.Is(err, ErrSelf) {
		t.Errorf("Attach(self) = %v; want ErrSelf", err)
	}
	for _, e := range []error{err} {
		if e != nil && strings.Contains(e.Error(), "\n") {
			t.Errorf("error %q is not one line", e)
		}
	}
	// An exited process (a reaped child) is not there to attach.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := Attach(cmd.Process.Pid); err == nil {
		t.Errorf("Attach(exited pid %d) succeeded", cmd.Process.Pid)
	}
}

// A panic in our own code on the ptrace goroutine must leave the target
// detached and running.
func TestPanicDetachesTarget(t *testing.T) {
	tg, _ := target(t, "2", "1")
	p := attach(t, tg.Pid)
	tids, _ := p.Threads()
	err := p.do(func() error {
		if err := p.stopAll(context.Background()); err != nil {
			return err
		}
		panic("simulated bug")
	})
	if err == nil || !strings.Contains(err.Error(), "simulated bug") {
		t.Fatalf("panicking request returned %v; want the panic as an error", err)
	}
	for _, tid := range tids {
		if tr, _ := fixture.TracerPid(tid); tr != 0 {
			t.Errorf("thread %d still traced by %d after panic", tid, tr)
		}
	}
	ticks(t, tg, 3)
}

func TestPanicDuringInjectionRestoresRegisters(t *testing.T) {
	tg, _ := target(t, "1", "1")
	p := attach(t, tg.Pid)
	err := p.do(func() error {
		t0 := p.pickThread(false)
		if err := p.stopOne(context.Background(), t0); err != nil {
			return err
		}
		s, err := p.save(t0.tid)
		if err != nil {
			return err
		}
		p.inflight = s
		bad := s.regs
		bad.Rip = 0xdead
		if err := unix.PtraceSetRegs(t0.tid, &bad); err != nil {
			return err
		}
		panic("bug with registers changed")
	})
	if err == nil {
		t.Fatal("want an error from the panicking request")
	}
	ticks(t, tg, 3)
}

// TestHelperAttachAndDie is not a test on its own: TestTracerCrash runs the
// test binary again with LP_HELPER_PID set, to attach, stop every thread,
// and die without detaching.
func TestHelperAttachAndDie(t *testing.T) {
	pid, _ := strconv.Atoi(os.Getenv("LP_HELPER_PID"))
	if pid == 0 {
		t.Skip("helper process only")
	}
	p, err := Attach(pid)
	if err != nil {
		fmt.Println("attach:", err)
		os.Exit(3)
	}
	if err := p.StopAll(context.Background()); err != nil {
		fmt.Println("stop:", err)
		os.Exit(3)
	}
	fmt.Println("stopped")
	unix.Kill(os.Getpid(), unix.SIGKILL)
}

// A tracer that dies (here: SIGKILL while it holds every thread stopped)
// leaves the target detached and running: no PTRACE_O_EXITKILL.
func TestTracerCrashLeavesTargetRunning(t *testing.T) {
	tg, _ := target(t, "2", "1")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAttachAndDie$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("LP_HELPER_PID=%d", tg.Pid))
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "stopped") {
		t.Fatalf("helper tracer did not get to stop the target: %v\n%s", err, out)
	}
	tids, _ := listTasks(tg.Pid)
	for _, tid := range tids {
		if tr, _ := fixture.TracerPid(tid); tr != 0 {
			t.Errorf("thread %d still traced by %d after the tracer died", tid, tr)
		}
	}
	ticks(t, tg, 3)
}

// An injected call borrows a thread asleep in a system call, never one busy
// in user space (which may hold a lock the called function needs).
func TestCallRunsOnSleepingThread(t *testing.T) {
	tg, addrs := target(t, "4", "1")
	ticks(t, tg, 2)
	// The spinning workers: threads seen running in user space at every
	// sample.
	busy := map[int]bool{}
	tids, _ := listTasks(tg.Pid)
	for _, tid := range tids {
		busy[tid] = true
	}
	for i := 0; i < 10; i++ {
		for _, tid := range tids {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", tg.Pid, tid))
			if !strings.HasPrefix(string(data), "running") {
				busy[tid] = false
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	p := attach(t, tg.Pid)
	for i := 0; i < 10; i++ {
		got, err := p.Call(context.Background(), addrs["tid"])
		if err != nil {
			t.Fatal(err)
		}
		if busy[int(got)] {
			t.Fatalf("call %d ran on thread %d, a worker spinning in user space", i, got)
		}
	}
}

// A window that ends by detaching stops the target once: the threads leave
// it detached and running, and nothing stops them again.
func TestWithStoppedReleaseDetaches(t *testing.T) {
	tg, _ := target(t, "2", "2")
	p := attach(t, tg.Pid)
	tids, err := p.Threads()
	if err != nil {
		t.Fatal(err)
	}
	// Not detaching: still attached, threads resumed.
	wt, err := p.WithStoppedRelease(context.Background(), func(s *Stopped) (bool, error) { return false, nil })
	if err != nil || wt.Total <= 0 || wt.Total < wt.Stop {
		t.Fatalf("WithStoppedRelease(false) = %+v, %v", wt, err)
	}
	if tr, _ := fixture.TracerPid(tg.Pid); tr == 0 {
		t.Fatalf("detached although the window said not to")
	}
	// An error never detaches.
	if _, err := p.WithStoppedRelease(context.Background(), func(s *Stopped) (bool, error) { return true, errors.New("no") }); err == nil {
		t.Fatal("the window's error was lost")
	}
	wt, err = p.WithStoppedRelease(context.Background(), func(s *Stopped) (bool, error) {
		for _, tid := range s.Threads() {
			if st := schedState(t, tg.Pid, tid); st != 't' {
				t.Errorf("thread %d state %q inside the window; want 't'", tid, st)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if tr, _ := fixture.TracerPid(tid); tr != 0 {
			t.Errorf("after the window thread %d TracerPid = %d; want 0", tid, tr)
		}
	}
	if err := p.Detach(); err != nil {
		t.Errorf("Detach after a detaching window: %v; want nil", err)
	}
	if _, err := p.Threads(); !errors.Is(err, ErrDetached) {
		t.Errorf("Threads after the window: %v; want ErrDetached", err)
	}
	if d := p.LongestStop(); d < wt.Total {
		t.Errorf("LongestStop = %v; want at least the last window's %v", d, wt.Total)
	}
	ticks(t, tg, 2)
}

// TestReadAvailBatchMatchesReadAvail: the batched read returns for every
// request what ReadAvail returns for it alone, also where process_vm_readv
// stops: at a PROT_NONE page (which /proc/PID/mem still reads) and at a
// hole in the address space.
func TestReadAvailBatchMatchesReadAvail(t *testing.T) {
	tg, _ := target(t, "2", "1")
	p := attach(t, tg.Pid)
	ctx := context.Background()
	// Pages: A rw, B PROT_NONE, C rw, D unmapped (a hole).
	addr, err := p.Syscall(ctx, unix.SYS_MMAP, 0, 4*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if _, err := p.Syscall(ctx, unix.SYS_MUNMAP, addr+3*4096, 4096); err != nil {
		t.Fatalf("munmap: %v", err)
	}
	fill := make([]byte, 3*4096)
	for i := range fill {
		fill[i] = byte(i*7 + 1)
	}
	if err := p.WriteMem(addr, fill); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Syscall(ctx, unix.SYS_MPROTECT, addr+4096, 4096, unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	a, b, c := addr, addr+4096, addr+2*4096
	spans := []struct {
		at   uint64
		size int
	}{
		{a, 100}, {a + 4000, 300}, {b + 10, 50}, {c + 4000, 300}, {c, 0}, {a + 8, 4000}, {c + 100, 200},
	}
	want := make([]ReadReq, len(spans))
	got := make([]ReadReq, len(spans))
	for i, sp := range spans {
		want[i] = ReadReq{Addr: sp.at, Buf: make([]byte, sp.size)}
		got[i] = ReadReq{Addr: sp.at, Buf: make([]byte, sp.size)}
	}
	err = p.WithStopped(ctx, func(s *Stopped) error {
		for i := range want {
			want[i].Got = s.ReadAvail(want[i].Addr, want[i].Buf)
		}
		s.ReadAvailBatch(got)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i].Got != want[i].Got || !slices.Equal(got[i].Buf[:got[i].Got], want[i].Buf[:want[i].Got]) {
			t.Errorf("request %d (%#x+%d): batch read %d bytes, ReadAvail %d (or the bytes differ)", i, spans[i].at, spans[i].size, got[i].Got, want[i].Got)
		}
	}
	// The plain cases read whole, the hole cuts the read at C's end.
	if got[0].Got != 100 || got[5].Got != 4000 || got[6].Got != 200 || got[3].Got != 96 {
		t.Errorf("batch read %d, %d, %d, %d bytes; want 100, 4000, 200, 96", got[0].Got, got[5].Got, got[6].Got, got[3].Got)
	}
	if !slices.Equal(got[5].Buf, fill[8:4008]) {
		t.Errorf("batch read wrong bytes at %#x", a+8)
	}
}

// TestStoppedRegsMatchThreads: inside a window, Regs (read as each thread
// stopped) equals what PTRACE_GETREGS reads now, and after SetRegs it is
// what was set.
func TestStoppedRegsMatchThreads(t *testing.T) {
	tg, _ := target(t, "3", "2")
	p := attach(t, tg.Pid)
	for range 3 {
		err := p.WithStopped(context.Background(), func(s *Stopped) error {
			for _, tid := range s.Threads() {
				r, err := s.Regs(tid)
				if err != nil {
					return err
				}
				var now Regs
				if err := unix.PtraceGetRegs(tid, &now); err != nil {
					return err
				}
				if r != now {
					t.Errorf("thread %d: Regs rip %#x rsp %#x; the thread has rip %#x rsp %#x", tid, r.Rip, r.Rsp, now.Rip, now.Rsp)
				}
				if !s.p.threads[tid].regsOK {
					t.Errorf("thread %d: registers not read as it stopped", tid)
				}
				r.R15 ^= 1
				if err := s.SetRegs(tid, r); err != nil {
					return err
				}
				if back, err := s.Regs(tid); err != nil || back != r {
					t.Errorf("thread %d: Regs after SetRegs r15 %#x, %v; want %#x", tid, back.R15, err, r.R15)
				}
				r.R15 ^= 1
				if err := s.SetRegs(tid, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ticks(t, tg, 2)
}

// TestWindowsRunRealTime: the tracer thread runs each stop-the-world window
// SCHED_FIFO, and is back to SCHED_OTHER at nice -20 between windows (a
// real-time thread outside windows could take a CPU from the machine).
func TestWindowsRunRealTime(t *testing.T) {
	tg, _ := target(t, "2", "1")
	p := attach(t, tg.Pid)
	type sched struct{ policy, nice int }
	now := func() sched {
		pol, _, e := unix.RawSyscall(unix.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
		if e != 0 {
			t.Fatalf("sched_getscheduler: %v", e)
		}
		// getpriority's raw value is 20 - nice.
		prio, _, e := unix.RawSyscall(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, 0, 0)
		if e != 0 {
			t.Fatalf("getpriority: %v", e)
		}
		return sched{int(pol), 20 - int(prio)}
	}
	var inside, between sched
	var rt bool
	for _, release := range []bool{true, false} { // WithStoppedRelease first: it says whether real-time is allowed
		if !release {
			if err := p.WithStopped(context.Background(), func(*Stopped) error { inside = now(); return nil }); err != nil {
				t.Fatal(err)
			}
		} else {
			wt, err := p.WithStoppedRelease(context.Background(), func(*Stopped) (bool, error) { inside = now(); return false, nil })
			if err != nil {
				t.Fatal(err)
			}
			rt = wt.RealTime
		}
		if err := p.do(func() error { between = now(); return nil }); err != nil {
			t.Fatal(err)
		}
		if !rt && release {
			t.Skipf("the tracer may not run real-time here (policy in the window %d)", inside.policy)
		}
		if inside.policy != schedFIFO {
			t.Errorf("release=%v: the tracer ran the window with policy %d; want SCHED_FIFO (%d)", release, inside.policy, schedFIFO)
		}
		if between != (sched{schedOther, tracerNice}) {
			t.Errorf("release=%v: between windows the tracer has policy %d nice %d; want SCHED_OTHER (0) nice %d", release, between.policy, between.nice, tracerNice)
		}
	}
	// A tracer thread already real-time (lpd raises its threads to
	// SCHED_RR) keeps its class: in the window and after it.
	if err := p.do(func() error { return setScheduler(schedRR, 1) }); err != nil {
		t.Fatal(err)
	}
	if err := p.WithStopped(context.Background(), func(*Stopped) error { inside = now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := p.do(func() error { between = now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside.policy != schedRR || between.policy != schedRR {
		t.Errorf("a SCHED_RR tracer ran the window with policy %d and has %d after it; want SCHED_RR (%d) both", inside.policy, between.policy, schedRR)
	}
}
