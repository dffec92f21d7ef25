package cluster

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"lp/fsm"
)

// signal wakes every goroutine waiting on the channel it handed out when
// Notify is called: a broadcast without a queue.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

// C returns a channel that is closed at the next Notify.
func (s *signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// Notify wakes the current waiters.
func (s *signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

// notifyingFSM is the FSM that raft drives: fsm.FSM plus a signal after
// every change, so that the agent and the orchestrator react at once instead
// of at their next tick.
type notifyingFSM struct {
	*fsm.FSM
	changed *signal
}

var _ raft.FSM = (*notifyingFSM)(nil)

func (f *notifyingFSM) Apply(l *raft.Log) any {
	r := f.FSM.Apply(l)
	f.changed.Notify()
	return r
}

func (f *notifyingFSM) Restore(rc io.ReadCloser) error {
	err := f.FSM.Restore(rc)
	f.changed.Notify()
	return err
}
