package heartbeat

import (
	"sync"
	"time"
)

// EventKind says what happened to a member.
type EventKind int

// Event kinds.
const (
	// Alive: the member joined, rejoined after Dead/Left, or refuted a
	// suspicion.
	Alive EventKind = iota + 1
	// Suspect: this member's own probe of the node failed; memberlist now
	// suspects it and declares it dead unless it refutes in time.
	Suspect
	// Dead: the member was declared failed (it did not announce a leave).
	Dead
	// Left: the member left gracefully through Membership.Leave.
	Left
	// Updated: the member published new metadata.
	Updated
)

func (k EventKind) String() string {
	switch k {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	case Updated:
		return "updated"
	}
	return "unknown"
}

// Event is one membership change seen by this member.
type Event struct {
	Kind EventKind
	Node string    // member name
	Addr string    // gossip address, host:port
	Meta Meta      // the member's metadata as last known
	At   time.Time // when this member saw the change
}

// eventQueue decouples memberlist's delegate goroutines from the reader of
// Events: push never blocks; past max queued events the oldest is dropped.
type eventQueue struct {
	mu      sync.Mutex
	buf     []queued
	seq     uint64
	max     int
	dropped uint64
	signal  chan struct{} // capacity 1: "buf is not empty"
	out     chan Event
}

type queued struct {
	seq uint64
	ev  Event
}

func newEventQueue(max int) *eventQueue {
	return &eventQueue{max: max, signal: make(chan struct{}, 1), out: make(chan Event)}
}

func (q *eventQueue) push(e Event) {
	q.mu.Lock()
	if len(q.buf) >= q.max {
		copy(q.buf, q.buf[1:])
		q.buf = q.buf[:len(q.buf)-1]
		q.dropped++
	}
	q.seq++
	q.buf = append(q.buf, queued{seq: q.seq, ev: e})
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *eventQueue) droppedCount() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// run delivers queued events to out until stop is closed, then closes out.
func (q *eventQueue) run(stop <-chan struct{}) {
	defer close(q.out)
	for {
		q.mu.Lock()
		var (
			head queued
			ok   bool
		)
		if len(q.buf) > 0 {
			head, ok = q.buf[0], true
		}
		q.mu.Unlock()
		if !ok {
			select {
			case <-q.signal:
				continue
			case <-stop:
				return
			}
		}
		select {
		case q.out <- head.ev:
			q.mu.Lock()
			// The head may have been dropped while we were blocked; only
			// remove it if it is still the event we delivered.
			if len(q.buf) > 0 && q.buf[0].seq == head.seq {
				q.buf = q.buf[1:]
			}
			q.mu.Unlock()
		case <-q.signal:
			// More events arrived (maybe the head was dropped): look again.
		case <-stop:
			return
		}
	}
}
