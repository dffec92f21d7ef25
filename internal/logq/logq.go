// Package logq decouples a process's log output from the goroutines that
// log. A log line written to a file or a pipe is one write(2); on a disk
// busy with synchronous writes, ext4 can hold that write for hundreds of
// milliseconds (measured: 259 ms worst of 2,500 appends beside two
// `dd oflag=dsync` loops). slog's handlers write under a mutex, so every
// goroutine that logs meanwhile waits too, among them memberlist's, which
// log while they hold its node lock: gossip stops, and healthy members are
// declared suspect and dead. lpd's log output therefore goes through a
// Writer: Write queues the line and returns; one goroutine writes the queue
// out in order.
package logq

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Writer is an io.Writer that never blocks on the writer below it. Lines
// queue in memory up to a bound; past it they are dropped and counted, and
// the count is written as one line once the output drains. Close writes out
// what is queued.
type Writer struct {
	w    io.Writer
	max  int
	done chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	size    int // bytes in queue
	dropped int // lines dropped since the last drain
	closed  bool
}

// New starts a Writer onto w that queues at most max bytes.
func New(w io.Writer, max int) *Writer {
	q := &Writer{w: w, max: max, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

// Write queues a copy of p and returns at once. A line that does not fit
// in the bound is dropped and counted. After Close, Write writes through.
func (q *Writer) Write(p []byte) (int, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return q.w.Write(p)
	}
	defer q.mu.Unlock()
	if q.size+len(p) > q.max {
		q.dropped++
		return len(p), nil
	}
	q.queue = append(q.queue, bytes.Clone(p))
	q.size += len(p)
	q.cond.Signal()
	return len(p), nil
}

func (q *Writer) run() {
	defer close(q.done)
	var buf bytes.Buffer
	for {
		q.mu.Lock()
		for len(q.queue) == 0 && q.dropped == 0 && !q.closed {
			q.cond.Wait()
		}
		batch, dropped, closed := q.queue, q.dropped, q.closed
		q.queue, q.size, q.dropped = nil, 0, 0
		q.mu.Unlock()

		buf.Reset()
		for _, b := range batch {
			buf.Write(b)
		}
		if dropped > 0 {
			// The dropped lines came after every queued one.
			fmt.Fprintf(&buf, "time=%s level=WARN msg=\"log lines dropped: the log output was blocked\" dropped=%d\n",
				time.Now().Format(time.RFC3339Nano), dropped)
		}
		if buf.Len() > 0 {
			q.w.Write(buf.Bytes()) // nowhere to report a failed log write
		}
		if closed && len(batch) == 0 && dropped == 0 {
			return
		}
	}
}

// Close writes out every queued line and stops the Writer; later writes go
// straight to the writer below.
func (q *Writer) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.done
		return nil
	}
	q.closed = true
	q.cond.Signal()
	q.mu.Unlock()
	<-q.done
	return nil
}
