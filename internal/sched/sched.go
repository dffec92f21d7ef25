// Package sched raises the CPU priority of every thread of the calling
// process, so that a daemon's heartbeats keep their timing when the
// services on its machine saturate the CPUs.
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
	// this priority; 0 keeps the normal scheduler.
	RT int
}

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

// Validate reports a level out of range.
func (p Priority) Validate() error {
	if p.Nice < -20 || p.Nice > 19 {
		return fmt.Errorf("nice %d: want -20..19", p.Nice)
	}
	if p.RT < 0 || p.RT > 99 {
		return fmt.Errorf("rt priority %d: want 1..99, or 0 for none", p.RT)
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
// within one interval. Errors after the first Apply are passed to onErr
// (which may be nil).
func Keep(p Priority, interval time.Duration, stop <-chan struct{}, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if _, err := Apply(p); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// Raise applies p and keeps it on new threads (Keep, every second) until
// the returned stop is called. On error nothing is kept and stop does
// nothing.
func Raise(p Priority) (n int, stop func(), err error) {
	n, err = Apply(p)
	if err != nil {
		return n, func() {}, err
	}
	done := make(chan struct{})
	go Keep(p, time.Second, done, nil)
	return n, sync.OnceFunc(func() { close(done) }), nil
}
