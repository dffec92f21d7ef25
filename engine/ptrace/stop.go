package ptrace

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// defaultStopTimeout bounds a stop of all threads when the caller's context
// has no deadline.
const defaultStopTimeout = 2 * time.Second

// Stopped gives access to a target whose threads are all stopped. It is only
// valid inside the function passed to WithStopped, which runs on the ptrace
// goroutine: keep that function short, it is the target's pause.
type Stopped struct {
	p *Process
}

// Threads lists the stopped threads, sorted.
func (s *Stopped) Threads() []int {
	ts := s.p.sortedThreads()
	tids := make([]int, len(ts))
	for i, t := range ts {
		tids[i] = t.tid
	}
	return tids
}

// Regs reads a stopped thread's general registers. Within a window they
// were read as the thread reported its stop, while the others were still
// stopping: a thread in ptrace-stop cannot change them.
func (s *Stopped) Regs(tid int) (Regs, error) { return s.p.stoppedRegs(tid) }

// SetRegs writes a stopped thread's general registers.
func (s *Stopped) SetRegs(tid int, r Regs) error { return s.p.setRegs(tid, r) }

// ReadMem reads target memory into buf.
func (s *Stopped) ReadMem(addr uint64, buf []byte) error { return s.p.readMem(addr, buf) }

// ReadAvail reads as much of buf as is mapped from addr on and returns the
// count: a stack read stops cleanly at the end of its mapping.
func (s *Stopped) ReadAvail(addr uint64, buf []byte) int { return s.p.readAvail(addr, buf) }

// ReadAvailBatch is ReadAvail for every request, reading all of them in as
// few system calls as it can (process_vm_readv); each request's Got is set
// to the count read from Addr on.
func (s *Stopped) ReadAvailBatch(reqs []ReadReq) { s.p.readAvailBatch(reqs) }

// WriteMem writes target memory, read-only code pages included.
func (s *Stopped) WriteMem(addr uint64, data []byte) error { return s.p.writeMem(addr, data) }

// WithStopped stops every thread, runs fn, and resumes every thread, all on
// the ptrace goroutine without a round trip in between: the smallest pause
// the kernel allows. The threads are resumed whatever fn returns, and even if
// it panics.
func (p *Process) WithStopped(ctx context.Context, fn func(*Stopped) error) error {
	_, err := p.WithStoppedTimed(ctx, fn)
	return err
}

// WithStoppedTimed is WithStopped that also returns how long the window
// lasted, measured on the ptrace thread from the first interrupt to the
// last resume: the pause the target's threads saw, within a few
// microseconds (a thread stops a little after its interrupt and runs a
// little after its resume).
func (p *Process) WithStoppedTimed(ctx context.Context, fn func(*Stopped) error) (time.Duration, error) {
	var window time.Duration
	err := p.do(func() error {
		restore, _ := p.urgent()
		defer restore()
		start := time.Now()
		if err := p.stopAllPrefetch(ctx); err != nil {
			return err
		}
		defer func() {
			p.resumeAll()
			window = time.Since(start)
			p.longest = max(p.longest, window)
		}()
		return fn(&Stopped{p: p})
	})
	return window, err
}

// WindowTimes splits a stop-the-world window into its phases, measured on
// the ptrace thread.
type WindowTimes struct {
	Stop    time.Duration // first interrupt until every thread is stopped
	Inside  time.Duration // the function run with every thread stopped
	Release time.Duration // resuming (or detaching) every thread
	Total   time.Duration // the pause: first interrupt to last release
	// RealTime says whether the tracer thread ran the window real-time
	// (SCHED_FIFO); false where lp may not (see Process.urgent).
	RealTime bool
}

// urgent makes the tracer thread real-time (SCHED_FIFO, the lowest
// priority) for a stop-the-world window, and returns what puts its
// scheduling back as it was. Nice alone does not keep the window short: a
// nice -20 thread is still preempted by the target's threads it has just
// resumed whenever the target runs in another cgroup or autogroup (a
// systemd service; a process in its own session), since those compete as
// groups; each preemption leaves the rest of the target stopped for a time
// slice. Measured on a 2-CPU machine, 64 threads of which 32 spin:
// releasing them took ~5 ms at nice -20 and ~0.35 ms real-time (see
// docs/pause.md). A real-time thread outranks every normal thread of the
// machine, in any group; in the window it only blocks (in wait4) or runs
// bounded work, and the kernel's real-time throttling bounds it in any
// case. A thread already real-time (lpd raises its threads to SCHED_RR,
// see internal/sched) is left as it is. Where lp may not (no
// CAP_SYS_NICE, a cgroup without real-time time), windows run at the
// thread's nice level, tracerNice unless lpd changed it.
func (p *Process) urgent() (restore func(), realTime bool) {
	nothing := func() {}
	if p.noRT {
		return nothing, false
	}
	policy, _, e := unix.RawSyscall(unix.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
	if e != 0 {
		return nothing, false
	}
	if policy == schedFIFO || policy == schedRR {
		return nothing, true
	}
	// getpriority's raw value is 20 - nice.
	raw, _, e := unix.RawSyscall(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, 0, 0)
	if e != 0 {
		return nothing, false
	}
	if err := setScheduler(schedFIFO, windowPriority); err != nil {
		p.noRT = true
		return nothing, false
	}
	return func() {
		_ = setScheduler(int(policy), 0)
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 20-int(raw))
	}, true
}

// WithStoppedRelease is WithStoppedTimed whose function decides how the
// threads are let go: when it returns detach=true and no error, each
// stopped thread is detached right there instead of resumed, so an
// operation whose last step is this window stops the target once, not
// again to detach. The Process is then detached (later calls report
// ErrDetached) and every window's length counts in LongestStop.
func (p *Process) WithStoppedRelease(ctx context.Context, fn func(*Stopped) (detach bool, err error)) (WindowTimes, error) {
	var wt WindowTimes
	err := p.do(func() error {
		var restore func()
		restore, wt.RealTime = p.urgent()
		defer restore()
		start := time.Now()
		if err := p.stopAllPrefetch(ctx); err != nil {
			return err
		}
		stopped := time.Now()
		wt.Stop = stopped.Sub(start)
		detach := false
		defer func() {
			inside := time.Now()
			wt.Inside = inside.Sub(stopped)
			if detach {
				p.detachStopped()
				if len(p.threads) > 0 && p.exitErr == nil {
					// A thread could not be detached while stopped
					// (should not happen): the slow path stops again.
					p.detachAll()
				}
				p.finish()
			} else {
				p.resumeAll()
			}
			end := time.Now()
			wt.Release = end.Sub(inside)
			wt.Total = end.Sub(start)
			p.longest = max(p.longest, wt.Total)
		}()
		d, err := fn(&Stopped{p: p})
		detach = d && err == nil
		return err
	})
	return wt, err
}

// LongestStop is the longest time every thread of the target was stopped
// together so far: stop-the-world windows and the stop that detaching
// needs, each counted. Valid after Detach too.
func (p *Process) LongestStop() time.Duration {
	var d time.Duration
	if err := p.do(func() error { d = p.longest; return nil }); err != nil {
		// The ptrace goroutine has ended; its fields are ours to read.
		<-p.done
		d = p.longest
	}
	return d
}

// StopAll stops every thread and leaves them stopped until ResumeAll. Prefer
// WithStopped, which cannot forget to resume.
func (p *Process) StopAll(ctx context.Context) error {
	return p.do(func() error { return p.stopAll(ctx) })
}

// ResumeAll resumes every thread stopped by StopAll.
func (p *Process) ResumeAll() error {
	return p.do(func() error { p.resumeAll(); return nil })
}

// stopAllPrefetch is stopAll that reads each thread's registers as soon
// as it has stopped (Stopped.Regs answers from them).
func (p *Process) stopAllPrefetch(ctx context.Context) error {
	p.prefetch = true
	defer func() { p.prefetch = false }()
	return p.stopAll(ctx)
}

// stopAll interrupts every running thread and waits until each is in a
// ptrace-stop. New threads that appear while stopping are stopped too. If
// the deadline passes first, the threads already stopped are resumed.
func (p *Process) stopAll(ctx context.Context) error {
	timeout := defaultStopTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	var pending []*thread
	for _, t := range p.threads {
		if t.state == running {
			// ESRCH: the thread is exiting; waitStopped collects it.
			_ = unix.PtraceInterrupt(t.tid)
			pending = append(pending, t)
		}
	}
	if err := p.waitStopped(ctx, pending, timeout); err != nil {
		p.resumeAll()
		return err
	}
	return nil
}

// waitStopped waits until each pending thread reports a stop or exit. It
// polls (WNOHANG) briefly, then blocks in wait4 on one pending thread at a
// time, unless that thread is in uninterruptible sleep: a blocking wait4
// cannot be interrupted (the Go runtime restarts system calls after
// signals), so such a thread is polled until the deadline.
func (p *Process) waitStopped(ctx context.Context, pending []*thread, timeout time.Duration) error {
	start := time.Now()
	lastPump := start
	var timer *time.Timer
	// all is every thread marked waited here, unmarked on return.
	var all []*thread
	wait := func(t *thread) {
		if !t.waited {
			t.waited = true
			all = append(all, t)
		}
	}
	defer func() {
		for _, t := range all {
			t.waited = false
		}
	}()
	for _, t := range pending {
		wait(t)
	}
	// collect applies a status; a clone event adds the new thread, which
	// reports its own first stop, to the threads waited for.
	collect := func(t *thread, ws unix.WaitStatus) {
		p.born = nil
		p.handle(t, ws, false)
		if p.prefetch && t.state == stopped && p.threads[t.tid] == t {
			t.regsOK = unix.PtraceGetRegs(t.tid, &t.regs) == nil
		}
		if p.born != nil {
			wait(p.born)
		}
	}
	outstanding := func() []*thread {
		var out []*thread
		for _, t := range all {
			if p.threads[t.tid] == t && t.state == running {
				out = append(out, t)
			}
		}
		return out
	}
	for {
		left := outstanding()
		if p.exitErr != nil {
			return p.exitErr
		}
		if len(left) == 0 {
			return nil
		}
		elapsed := time.Since(start)
		if elapsed > timeout || ctx.Err() != nil {
			return fmt.Errorf("stopping thread %d of pid %d: not stopped after %v: %w", left[0].tid, p.pid, elapsed.Round(time.Millisecond), ErrTimeout)
		}
		// Visit the threads in order, as a plain C tracer would: collect
		// a status that is there; otherwise block in wait4 until the
		// thread stops, so the kernel wakes us the moment it does, with no
		// signal or scheduler hop in between. A blocking wait4 cannot be
		// cut short, so it is only used on a thread the kernel shows
		// running or asleep: one in uninterruptible sleep (no signal ends
		// it) or dying is left for the next round, and the deadline
		// holds. Never the main thread while others live: a dying process
		// reports its main thread's exit only after every other thread's
		// was collected, which that wait would hold back.
		progress := false
		for _, t := range left {
			if p.threads[t.tid] != t || t.state != running {
				continue
			}
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(t.tid, &ws, unix.WNOHANG|unix.WALL, nil)
			switch {
			case err == unix.ECHILD:
				p.forget(t) // gone and already collected
				progress = true
				continue
			case err == nil && wpid == t.tid:
				collect(t, ws)
				progress = true
				continue
			}
			if t.tid == p.pid && len(p.threads) > 1 {
				continue
			}
			if st := p.taskState(t); st == 'R' || st == 'S' {
				if wpid, err := unix.Wait4(t.tid, &ws, unix.WALL, nil); err == nil && wpid == t.tid {
					collect(t, ws)
					progress = true
				}
			}
			if p.exitErr != nil {
				return p.exitErr
			}
		}
		if progress {
			continue
		}
		if time.Since(lastPump) > 10*time.Millisecond {
			p.pump() // collects exits that hold back the main thread's
			lastPump = time.Now()
		}
		if timer == nil {
			timer = time.NewTimer(time.Millisecond)
			defer timer.Stop()
		} else {
			timer.Reset(time.Millisecond)
		}
		select {
		case <-p.sigchld:
		case <-timer.C:
		}
	}
}

// resumeAll resumes every stopped thread.
func (p *Process) resumeAll() {
	for _, t := range p.threads {
		if t.state == stopped {
			p.resume(t)
		}
	}
}

// stopOne stops a single running thread (used for injections, which need
// one thread while the others keep running).
func (p *Process) stopOne(ctx context.Context, t *thread) error {
	if t.state == stopped {
		return nil
	}
	timeout := defaultStopTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	_ = unix.PtraceInterrupt(t.tid)
	return p.waitStopped(ctx, []*thread{t}, timeout)
}

// taskState reads the one-letter scheduler state of a thread ("R", "S",
// "D", "t", ...), or 0 when it is gone. The stat file stays open per
// thread: a pread is a fraction of an open.
func (p *Process) taskState(t *thread) byte {
	if t.statFd <= 0 {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/task/%d/stat", p.pid, t.tid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0
		}
		t.statFd = fd
	}
	var buf [512]byte
	n, err := unix.Pread(t.statFd, buf[:], 0)
	if err != nil || n <= 0 {
		return 0
	}
	s := buf[:n]
	for i := len(s) - 1; i > 0; i-- {
		if s[i] == ')' && i+2 < len(s) {
			return s[i+2]
		}
	}
	return 0
}
