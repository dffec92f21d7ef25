package ptrace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Process is one traced target. Create it with Attach; end it with Detach.
type Process struct {
	pid  int
	reqs chan func()
	done chan struct{} // closed when the ptrace goroutine has ended

	// Owned by the ptrace goroutine.
	mem      *os.File
	threads  map[int]*thread
	exitErr  error // set once the whole process is gone
	detached bool
	sigchld  chan os.Signal
	gadget   uint64 // address of a `syscall` instruction in the target
	// born is the thread the last clone event handled created (nil if
	// none): a stop in progress must wait for it too.
	born *thread
	// inflight holds the registers of a thread that runs an injection, so a
	// panic can put them back before detaching.
	inflight *saved
	// longest is the longest all-threads stop so far (LongestStop).
	longest time.Duration
	// prefetch is set while a stop-the-world window stops the threads:
	// each thread's registers are read as soon as it reports its stop,
	// while others are still stopping, instead of after the last one.
	prefetch bool
	// Scratch of readAvailBatch, kept across windows.
	iovLocal  []unix.Iovec
	iovRemote []unix.RemoteIovec
	// noBatch is set once process_vm_readv proved unusable here.
	noBatch bool
	// noRT is set once the tracer thread could not become real-time
	// (no CAP_SYS_NICE, or a cgroup without real-time time): windows then
	// run at tracerNice only.
	noRT bool
}

type threadState int

const (
	running threadState = iota
	stopped
)

type thread struct {
	tid   int
	state threadState
	// sigs are signals that arrived while we held the thread stopped; they
	// are delivered when it is resumed, so the target loses none.
	sigs []int
	// group is set while the thread sits in a job-control group-stop (the
	// whole process was stopped with SIGSTOP by someone else); it is then
	// resumed with PTRACE_LISTEN so it stays stopped as its owner wants.
	group bool
	// waited is set while a stop or an injection waits for this thread's
	// next stop; the pump then leaves its wait statuses alone.
	waited bool
	// statFd is /proc/PID/task/TID/stat, opened on first use (0: not yet).
	statFd int
	// regs holds the registers read at the thread's current stop when
	// regsOK: a thread in ptrace-stop cannot change them, only we can
	// (setRegs and resuming clear regsOK).
	regs   Regs
	regsOK bool
}

// saved is a thread's register state before an injection.
type saved struct {
	tid    int
	regs   unix.PtraceRegs
	xstate []byte
}

// Attach seizes every thread of process pid, including threads created while
// attaching, and returns with all of them running. On error nothing stays
// attached.
func Attach(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("attaching to pid %d: %w", pid, ErrNoProcess)
	}
	if tgid, err := tgidOf(pid); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("attaching to pid %d: %w", pid, ErrNoProcess)
		}
		return nil, fmt.Errorf("attaching to pid %d: %w", pid, err)
	} else if tgid == os.Getpid() {
		return nil, fmt.Errorf("attaching to pid %d: it is lp's own process: %w", pid, ErrSelf)
	} else if tgid != pid {
		return nil, fmt.Errorf("attaching to pid %d: it is thread of process %d; give the process id", pid, tgid)
	}
	p := &Process{
		pid:     pid,
		reqs:    make(chan func()),
		done:    make(chan struct{}),
		threads: make(map[int]*thread),
		sigchld: make(chan os.Signal, 1),
	}
	errc := make(chan error, 1)
	go p.loop(errc)
	if err := <-errc; err != nil {
		<-p.done
		return nil, err
	}
	return p, nil
}

// Pid is the target's process id.
func (p *Process) Pid() int { return p.pid }

// loop is the ptrace goroutine.
func (p *Process) loop(started chan<- error) {
	runtime.LockOSThread()
	// Never unlocked: if this goroutine ends abnormally the OS thread exits
	// with it, and the kernel then detaches every tracee it still holds.
	defer close(p.done)
	// The stop-the-world window is as long as this thread's slowest step:
	// if it is preempted by the very threads it just resumed, the rest of
	// the target waits stopped. Outside windows it runs at the highest nice
	// priority we are allowed (root: -20); inside, real-time (see
	// Process.urgent). The thread only ever blocks or briefly spins, so it
	// takes nothing from the target otherwise.
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), tracerNice)
	signal.Notify(p.sigchld, unix.SIGCHLD)
	defer signal.Stop(p.sigchld)

	if err := p.safely(p.attachAll); err != nil {
		p.emergencyDetach()
		started <- err
		return
	}
	started <- nil

	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !p.detached && p.exitErr == nil {
		select {
		case fn := <-p.reqs:
			fn()
		case <-p.sigchld:
			p.pumpSafely()
		case <-tick.C:
			p.pumpSafely()
		}
	}
	p.finish()
}

// do runs fn on the ptrace goroutine and returns its error.
func (p *Process) do(fn func() error) error {
	errc := make(chan error, 1)
	req := func() { errc <- p.safely(fn) }
	select {
	case p.reqs <- req:
		return <-errc
	case <-p.done:
		// The goroutine has ended; its fields are ours to read.
		if p.exitErr != nil {
			return p.exitErr
		}
		return fmt.Errorf("process %d: %w", p.pid, ErrDetached)
	}
}

// safely runs fn, turning a panic into an error after putting back the
// registers of an in-flight injection and detaching from every thread.
func (p *Process) safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			stack := make([]byte, 4096)
			stack = stack[:runtime.Stack(stack, false)]
			p.emergencyDetach()
			err = fmt.Errorf("internal error while tracing pid %d (target detached and left running): %v\n%s", p.pid, r, stack)
		}
	}()
	if p.detached {
		return fmt.Errorf("process %d: %w", p.pid, ErrDetached)
	}
	if p.exitErr != nil {
		return p.exitErr
	}
	return fn()
}

func (p *Process) pumpSafely() {
	_ = p.safely(func() error { p.pump(); return nil })
}

// attachAll seizes the threads listed in /proc/PID/task until a listing finds
// no thread it has not seized: a thread created by an already seized thread
// is attached by the kernel (PTRACE_O_TRACECLONE) and reported to the pump; a
// thread created by one not yet seized shows up in the next listing.
func (p *Process) attachAll() error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", p.pid), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("attaching to pid %d: opening its memory: %w", p.pid, err)
	}
	p.mem = f
	for round := 0; ; round++ {
		tids, err := listTasks(p.pid)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return &ExitError{Pid: p.pid, Status: "gone while attaching"}
			}
			return fmt.Errorf("attaching to pid %d: %w", p.pid, err)
		}
		added := 0
		for _, tid := range tids {
			if _, ok := p.threads[tid]; ok {
				continue
			}
			if err := seize(tid); err != nil {
				if err == unix.ESRCH {
					// The thread exited between the listing and the
					// seize: not an error (delve does the same).
					continue
				}
				if err == unix.EPERM {
					return fmt.Errorf("attaching to thread %d of pid %d: %w (%s)", tid, p.pid, err, permHint(p.pid))
				}
				return fmt.Errorf("attaching to thread %d of pid %d: %w", tid, p.pid, err)
			}
			p.threads[tid] = &thread{tid: tid}
			added++
		}
		if len(p.threads) == 0 {
			return &ExitError{Pid: p.pid, Status: "gone while attaching"}
		}
		if added == 0 {
			break
		}
		if round > 1000 {
			return fmt.Errorf("attaching to pid %d: its thread list did not settle", p.pid)
		}
	}
	p.pump()
	return nil
}

func permHint(pid int) string {
	if tracer := tracerOf(pid); tracer > 0 {
		return fmt.Sprintf("already traced by pid %d", tracer)
	}
	return "need root or CAP_SYS_PTRACE"
}

// pump handles whatever happened to threads since the last look: signals
// are forwarded, new threads let run, exited threads collected. Collecting
// matters even while we wait for one particular thread: when the process is
// killed, its main thread's exit is reported only after every other traced
// thread's exit has been collected.
func (p *Process) pump() {
	for _, t := range p.sortedThreads() {
		if t.waited {
			continue
		}
		if t.state == stopped {
			// A stopped thread reports nothing more unless it is killed.
			var ws unix.WaitStatus
			if wpid, err := unix.Wait4(t.tid, &ws, unix.WNOHANG|unix.WALL, nil); err == nil && wpid == t.tid && (ws.Exited() || ws.Signaled()) {
				p.handle(t, ws, false)
			} else if err == unix.ECHILD {
				p.forget(t)
			}
			continue
		}
		for p.exitErr == nil {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(t.tid, &ws, unix.WNOHANG|unix.WALL, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || wpid == 0 {
				break
			}
			p.handle(t, ws, true)
			if p.threads[t.tid] == nil || t.state != running {
				break
			}
		}
	}
}

// handle applies one wait status of thread t. When keepRunning is set (the
// pump) a stopped thread is resumed at once, delivering its signal; otherwise
// it is left stopped with the signal queued. It reports whether t is now
// stopped.
func (p *Process) handle(t *thread, ws unix.WaitStatus, keepRunning bool) bool {
	switch {
	case ws.Exited() || ws.Signaled():
		p.forget(t)
		if t.tid == p.pid {
			status := fmt.Sprintf("exit status %d", ws.ExitStatus())
			if ws.Signaled() {
				status = fmt.Sprintf("killed by signal %d", int(ws.Signal()))
			}
			p.exitErr = &ExitError{Pid: p.pid, Status: status}
		}
		return false
	case !ws.Stopped():
		return false
	}
	t.state = stopped
	t.regsOK = false
	sig := ws.StopSignal()
	// TrapCause is -1 for a stop by any signal but SIGTRAP.
	switch event := ws.TrapCause(); {
	case sig == unix.SIGTRAP && event == unix.PTRACE_EVENT_CLONE:
		if msg, err := unix.PtraceGetEventMsg(t.tid); err == nil {
			if _, ok := p.threads[int(msg)]; !ok {
				// The new thread reports its own initial stop.
				nt := &thread{tid: int(msg)}
				p.threads[nt.tid] = nt
				p.born = nt
			}
		}
	case event == unix.PTRACE_EVENT_STOP:
		// PTRACE_INTERRUPT, a new thread's first stop (SIGTRAP), or a
		// job-control group-stop (the stop signal).
		t.group = sig == unix.SIGSTOP || sig == unix.SIGTSTP || sig == unix.SIGTTIN || sig == unix.SIGTTOU
	case event > 0 || sig == sigTrapSysgood:
		// Other events carry no signal to deliver.
	default:
		// Signal-delivery-stop: the signal is the target's own.
		t.sigs = append(t.sigs, int(sig))
	}
	if keepRunning {
		p.resume(t)
		return false
	}
	return true
}

// resume lets a stopped thread run, delivering the first signal it holds;
// further held signals stop it again right away and the pump delivers them.
func (p *Process) resume(t *thread) {
	var err error
	switch {
	case t.group:
		t.group = false
		err = listen(t.tid)
	case len(t.sigs) > 0:
		sig := t.sigs[0]
		t.sigs = t.sigs[1:]
		err = cont(t.tid, sig)
		if err == nil && len(t.sigs) > 0 {
			// Re-raise the rest so none is lost; the kernel delivers them as
			// ordinary pending signals.
			for _, s := range t.sigs {
				_ = unix.Tgkill(p.pid, t.tid, unix.Signal(s))
			}
			t.sigs = nil
		}
	default:
		err = cont(t.tid, 0)
	}
	// ESRCH: the thread died while stopped (killed with the process); the
	// pump collects its exit.
	_ = err
	t.state = running
	t.regsOK = false
}

func (p *Process) sortedThreads() []*thread {
	ts := make([]*thread, 0, len(p.threads))
	for _, t := range p.threads {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].tid < ts[j].tid })
	return ts
}

// Threads returns the ids of the threads currently known, sorted.
func (p *Process) Threads() ([]int, error) {
	var tids []int
	err := p.do(func() error {
		p.pump()
		for _, t := range p.sortedThreads() {
			tids = append(tids, t.tid)
		}
		return nil
	})
	return tids, err
}

// Detach stops every thread, detaches it (delivering any signal held for it)
// and ends the ptrace goroutine. The target keeps running. Detach is
// idempotent; after the target exited it only releases our resources.
func (p *Process) Detach() error {
	err := p.do(func() error {
		p.detachAll()
		return nil
	})
	<-p.done
	if errors.Is(err, ErrDetached) || errors.Is(err, ErrExited) {
		return nil
	}
	return err
}

// detachAll runs on the ptrace goroutine. PTRACE_DETACH needs a stopped
// tracee, so the threads are stopped first; a thread that will not stop (in
// an uninterruptible sleep) is retried until it does.
func (p *Process) detachAll() {
	deadline := time.Now().Add(30 * time.Second)
	for len(p.threads) > 0 && p.exitErr == nil && time.Now().Before(deadline) {
		restore, _ := p.urgent()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.stopAll(ctx)
		cancel()
		p.detachStopped()
		p.longest = max(p.longest, time.Since(start))
		restore()
	}
	p.finish()
}

// detachStopped detaches every stopped thread, delivering the signals held
// for it; threads still running stay attached. The bookkeeping (closing
// each thread's stat file) waits until every thread is let go: the target
// is stopped until the last detach.
func (p *Process) detachStopped() {
	var gone []*thread
	for _, t := range p.threads {
		if t.state != stopped {
			continue
		}
		sig := 0
		if len(t.sigs) > 0 {
			sig = t.sigs[0]
		}
		if err := detach(t.tid, sig); err != nil && err != unix.ESRCH {
			continue
		}
		for _, s := range t.sigs[min(1, len(t.sigs)):] {
			_ = unix.Tgkill(p.pid, t.tid, unix.Signal(s))
		}
		gone = append(gone, t)
	}
	for _, t := range gone {
		p.forget(t)
	}
}

// emergencyDetach is the unwinding of last resort (a panic, a failed attach):
// put back the registers of an in-flight injection, then detach every thread
// we can, stopped or not.
func (p *Process) emergencyDetach() {
	if p.detached {
		return
	}
	if s := p.inflight; s != nil && p.exitErr == nil {
		p.inflight = nil
		if t := p.threads[s.tid]; t != nil {
			if t.state == running {
				_ = unix.PtraceInterrupt(t.tid)
				_ = p.waitStopped(context.Background(), []*thread{t}, 2*time.Second)
			}
			_ = unix.PtraceSetRegs(s.tid, &s.regs)
			_ = setXState(s.tid, s.xstate)
		}
	}
	if p.exitErr == nil {
		func() {
			defer func() { _ = recover() }()
			p.detachAll()
		}()
	}
	p.finish()
}

// forget drops a thread that exited or was detached.
func (p *Process) forget(t *thread) {
	if t.statFd > 0 {
		unix.Close(t.statFd)
		t.statFd = 0
	}
	delete(p.threads, t.tid)
}

func (p *Process) finish() {
	if p.detached {
		return
	}
	for _, t := range p.threads {
		p.forget(t)
	}
	if p.mem != nil {
		p.mem.Close()
		p.mem = nil
	}
	p.threads = map[int]*thread{}
	p.detached = true
}

func listTasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// statusField reads one numeric field of /proc/PID/status.
func statusField(pid int, field string) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func tgidOf(pid int) (int, error) { return statusField(pid, "Tgid") }

func tracerOf(pid int) int {
	n, _ := statusField(pid, "TracerPid")
	return n
}
