package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
	"unsafe"

	"lp/engine/patchsite"
	"lp/engine/proc"
	"lp/engine/ptrace"
)

// write is one change of the stop-the-world window: bytes at an address.
type write struct {
	addr uint64
	data []byte
	prev []byte // what is there now, to undo a partial window
}

// window is a prepared stop-the-world step: the sites threads must be clear
// of, and the writes to make once they are. Everything is computed before
// the target is stopped; inside, we only read registers and stacks, check
// and write.
type window struct {
	checker   *patchsite.Checker
	writes    []write
	stackScan int
	// stacks maps the stack mappings known before the window, so a thread's
	// stack is read only as far as its mapping goes.
	maps []proc.Mapping

	// detach lets the threads go detached after a successful window: the
	// window is the operation's last use of ptrace.
	detach bool
	// fault is Options.fault: asked "write N" before the window's Nth
	// write (tests).
	fault func(point string) error

	// Buffers reused across attempts and threads, allocated by prepare.
	threads  []patchsite.Thread
	reads    []ptrace.ReadReq
	words    []uint64
	capacity int
}

// windowStats reports what a successful window cost.
type windowStats struct {
	Pause    time.Duration // threads stopped, as measured by the tracer
	Attempts int
	Times    ptrace.WindowTimes // of the successful window
}

// run retries the window until it succeeds or the deadline passes. Between
// attempts the target runs: we never wait with threads stopped.
func (w *window) run(ctx context.Context, p *ptrace.Process, timeout time.Duration) (windowStats, error) {
	if tids, err := p.Threads(); err == nil {
		w.prepare(len(tids))
	}
	deadline := time.Now().Add(timeout)
	backoff := 500 * time.Microsecond
	var st windowStats
	for {
		st.Attempts++
		if w.fault != nil {
			if err := w.fault("window"); err != nil {
				return st, err
			}
		}
		var busy error
		times, err := p.WithStoppedRelease(ctx, func(s *ptrace.Stopped) (bool, error) {
			threads, err := w.snapshot(s)
			if err != nil {
				return false, err
			}
			if busy = w.checker.Check(threads); busy != nil {
				return false, nil
			}
			for i, wr := range w.writes {
				err := w.injected(i)
				if err == nil {
					err = s.WriteMem(wr.addr, wr.data)
				}
				if err != nil {
					// Put back what was written, newest first (writes
					// to one site follow each other): all or nothing.
					for j := i - 1; j >= 0; j-- {
						_ = s.WriteMem(w.writes[j].addr, w.writes[j].prev)
					}
					return false, err
				}
			}
			// Done: the threads are detached where they stand, so the
			// operation stops the target once.
			return w.detach, nil
		})
		pause := times.Total
		if err != nil {
			return st, err
		}
		if busy == nil {
			st.Pause, st.Times = pause, times
			return st, nil
		}
		// Retry soon (a thread inside a hot function is usually out of it
		// a moment later), but keep the target running at least 80% of
		// the time: wait four times the pause just inflicted, with jitter
		// so we do not fall into step with a periodic thread.
		wait := max(backoff, 4*pause)
		wait += time.Duration(rand.Int64N(int64(wait)/2 + 1))
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			return st, &BusyError{Err: busy, Attempts: st.Attempts, Waited: timeout}
		}
		time.Sleep(wait)
		backoff = min(backoff*5/4, 5*time.Millisecond)
	}
}

// injected asks the test hook about the ith write.
func (w *window) injected(i int) error {
	if w.fault == nil {
		return nil
	}
	return w.fault(fmt.Sprintf("write %d", i))
}

// snapshot reads every stopped thread's instruction pointer and the raw
// words of its stack from the stack pointer up, bounded by stackScan and by
// the end of the stack's mapping. It runs inside the window, so it does not
// allocate unless the target has more threads than prepare saw. The
// registers were read as each thread stopped (ptrace prefetches them); the
// stacks are read together, in one system call for all threads.
func (w *window) snapshot(s *ptrace.Stopped) ([]patchsite.Thread, error) {
	tids := s.Threads()
	words := w.stackScan / 8
	if len(tids) > w.capacity {
		w.prepare(len(tids))
	}
	w.threads = w.threads[:0]
	w.reads = w.reads[:0]
	for i, tid := range tids {
		regs, err := s.Regs(tid)
		if err != nil {
			return nil, err
		}
		stack := w.words[i*words : (i+1)*words]
		n := uint64(len(stack) * 8)
		if m, ok := findMapping(w.maps, regs.Rsp); ok {
			n = min(n, m.End-regs.Rsp)
		}
		// x86-64 is little-endian: the stack's bytes are its words.
		buf := unsafe.Slice((*byte)(unsafe.Pointer(&stack[0])), n)
		w.reads = append(w.reads, ptrace.ReadReq{Addr: regs.Rsp, Buf: buf})
		w.threads = append(w.threads, patchsite.Thread{Tid: tid, IP: regs.Rip, Stack: stack})
	}
	s.ReadAvailBatch(w.reads)
	for i := range w.threads {
		w.threads[i].Stack = w.threads[i].Stack[:w.reads[i].Got/8]
	}
	return w.threads, nil
}

// prepare allocates the snapshot buffers for n threads, with room for a few
// more created meanwhile: before the window, not inside it.
func (w *window) prepare(n int) {
	w.capacity = n + n/4 + 4
	w.words = make([]uint64, w.capacity*(w.stackScan/8))
	w.threads = make([]patchsite.Thread, 0, w.capacity)
	w.reads = make([]ptrace.ReadReq, 0, w.capacity)
}

func findMapping(maps []proc.Mapping, addr uint64) (proc.Mapping, bool) {
	lo, hi := 0, len(maps)
	for lo < hi {
		mid := (lo + hi) / 2
		switch m := maps[mid]; {
		case addr < m.Start:
			hi = mid
		case addr >= m.End:
			lo = mid + 1
		default:
			return m, true
		}
	}
	return proc.Mapping{}, false
}

// BusyError says activation or revert gave up because a thread stayed
// inside what was to be overwritten.
type BusyError struct {
	Err      error // a *patchsite.BusyError
	Attempts int
	Waited   time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%v (still so after %d attempts over %v; retry, or use --consistency entry)", e.Err, e.Attempts, e.Waited)
}

func (e *BusyError) Unwrap() error { return e.Err }

// ErrBusy matches a *BusyError with errors.Is.
var ErrBusy = errors.New("a thread is inside the code to be patched")

func (e *BusyError) Is(target error) bool { return target == ErrBusy }
