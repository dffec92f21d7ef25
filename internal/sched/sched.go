// Package sched raises the CPU priority of every thread of the calling
// process, so that a daemon's heartbeats keep their timing when the
// services on its machine saturate the CPUs.
//
// A real-time class (SCHED_RR) keeps wake-up latency in milliseconds on a
// saturated machine where a nice level does not (measured: a thread waking
// every millisecond beside load average 30 saw 126 ms worst at nice -10 and
// 15 ms at rr 10), but a runaway real-time daemon could take almost every
// CPU. Raise therefore guards a real-time priority with a CPU budget: when
// the process uses more than its budget of CPU in one interval it falls
// back to its nice level, and goes back to real time only after
// guardCooldown intervals within budget.
//
// Linux schedules threads, not processes: the priority is set on each
// thread of /proc/self/task with sched_setattr(2), and Keep re-applies it to
// threads the Go runtime starts later. SCHED_FLAG_RESET_ON_FORK is set with
// it, so processes the daemon starts (health checks, hooks) run at the
// normal priority: only the daemon's own threads are raised.
package sched

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Priority is a scheduling class and level for every thread.
type Priority struct {
	// Nice is the nice level (-20..19) under the normal scheduler
	// (SCHED_OTHER); 0 changes nothing. Ignored when RT is set.
	Nice int
	// RT, 1..99, puts the threads in the real-time class SCHED_RR at
	// this priority; 0 keeps the normal scheduler. With RT, Nice is the
	// fallback: the level used when real time is refused or the CPU
	// budget is exceeded.
	RT int
	// Budget is the CPU time per second of wall time (1.0 = one whole CPU)
	// the process may use at real-time priority before Raise drops it to
	// Nice; 0 means DefaultBudget. Ignored without RT.
	Budget float64
}

// DefaultBudget is the CPU share a real-time lpd may use: half a CPU. lpd
// uses a few percent while it gossips, commits and patches; a process that
// spins uses a whole CPU per thread.
const DefaultBudget = 0.5

// guardCooldown is how many intervals within budget bring a demoted
// process back to real time.
const guardCooldown = 10

// IsZero reports whether p changes nothing.
func (p Priority) IsZero() bool { return p.Nice == 0 && p.RT == 0 }

// String is "nice -10", "rr 10" or "normal".
func (p Priority) String() string {
	switch {
	case p.RT > 0:
		return "rr " + strconv.Itoa(p.RT)
	case p.Nice != 0:
		return "nice " + strconv.Itoa(p.Nice)
	}
	return "normal"
}

// Fallback is the priority without its real-time class: its nice level.
func (p Priority) Fallback() Priority { return Priority{Nice: p.Nice} }

func (p Priority) budget() float64 {
	if p.Budget > 0 {
		return p.Budget
	}
	return DefaultBudget
}

// Validate reports a level out of range.
func (p Priority) Validate() error {
	if p.Nice < -20 || p.Nice > 19 {
		return fmt.Errorf("nice %d: want -20..19", p.Nice)
	}
	if p.RT < 0 || p.RT > 99 {
		return fmt.Errorf("rt priority %d: want 1..99, or 0 for none", p.RT)
	}
	if p.Budget < 0 {
		return fmt.Errorf("cpu budget %v: want a positive share of a CPU", p.Budget)
	}
	return nil
}

func (p Priority) attr() *unix.SchedAttr {
	a := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	if p.RT > 0 {
		a.Policy = unix.SCHED_RR
		a.Priority = uint32(p.RT)
	} else {
		a.Policy = unix.SCHED_NORMAL
		a.Nice = int32(p.Nice)
	}
	return a
}

// Apply sets p on every thread of this process and returns how many it set.
// A thread that exits meanwhile is skipped; the first other error (EPERM
// without CAP_SYS_NICE or RLIMIT_RTPRIO/RLIMIT_NICE) is returned.
func Apply(p Priority) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("listing threads: %w", err)
	}
	a := p.attr()
	n := 0
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cur, err := unix.SchedGetAttr(tid, 0); err == nil && same(cur, a) {
			n++
			continue
		}
		if err := unix.SchedSetAttr(tid, a, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue
			}
			return n, fmt.Errorf("sched_setattr(%d, %s): %w", tid, p, err)
		}
		n++
	}
	return n, nil
}

func same(cur, want *unix.SchedAttr) bool {
	return cur.Policy == want.Policy && cur.Priority == want.Priority && cur.Nice == want.Nice &&
		cur.Flags&unix.SCHED_FLAG_RESET_ON_FORK != 0
}

// Keep applies p every interval until stop is closed: a thread created
// after Apply starts at the normal priority (reset on fork) and is raised
// within one interval. With a real-time p, Keep also guards its CPU budget:
// a process over budget in one interval gets p.Fallback() until it has
// stayed within budget for guardCooldown intervals. onChange (may be nil)
// hears of each switch and of errors after the first Apply.
func Keep(p Priority, interval time.Duration, stop <-chan struct{}, onChange func(now Priority, why string)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	cur := p
	lastCPU, lastAt := cpuTime(), time.Now()
	within := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if p.RT > 0 {
			used, at := cpuTime(), time.Now()
			share := used.Seconds() - lastCPU.Seconds()
			if wall := at.Sub(lastAt).Seconds(); wall > 0 {
				share /= wall
			}
			lastCPU, lastAt = used, at
			switch {
			case share > p.budget():
				within = 0
				if cur.RT > 0 {
					cur = p.Fallback()
					if onChange != nil {
						onChange(cur, fmt.Sprintf("used %.2f CPU, over the real-time budget of %.2f", share, p.budget()))
					}
				}
			case cur.RT == 0:
				if within++; within >= guardCooldown {
					cur = p
					if onChange != nil {
						onChange(cur, fmt.Sprintf("within the real-time budget of %.2f CPU for %d intervals", p.budget(), guardCooldown))
					}
				}
			}
		}
		if _, err := Apply(cur); err != nil && onChange != nil {
			onChange(cur, err.Error())
		}
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Raise applies p and keeps it on new threads (Keep, every second) until
// the returned stop is called; onChange (may be nil) hears of later
// switches. A real-time p that is refused (no CAP_SYS_NICE, or a cgroup
// without real-time bandwidth) falls back to p.Fallback(): then got is the
// fallback and err says why real time was refused. On any other error
// got is the zero Priority, nothing is kept and stop does nothing.
func Raise(p Priority, onChange func(now Priority, why string)) (got Priority, n int, stop func(), err error) {
	got = p
	n, err = Apply(p)
	var rtErr error
	if err != nil && p.RT > 0 && !p.Fallback().IsZero() {
		rtErr = err
		got, p = p.Fallback(), p.Fallback()
		n, err = Apply(p)
	}
	if err != nil {
		return Priority{}, n, func() {}, err
	}
	done := make(chan struct{})
	go Keep(p, time.Second, done, onChange)
	return got, n, sync.OnceFunc(func() { close(done) }), rtErr
}
