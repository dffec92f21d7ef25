package cluster

import (
	"io"
	"log/slog"
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
// of at their next tick. It also moves module bytes that the log or a
// snapshot carries from before modules left the log (legacy PutBlob
// entries, blobs with data) into the node's module store: the state keeps
// references only.
type notifyingFSM struct {
	*fsm.FSM
	changed *signal
	blobs   blobStore
	log     *slog.Logger
}

var _ raft.FSM = (*notifyingFSM)(nil)

func (f *notifyingFSM) Apply(l *raft.Log) any {
	r := f.FSM.Apply(l)
	if res, ok := r.(*fsm.Result); ok && res.BlobData != nil {
		f.storeLegacy(map[string][]byte{hexSum(res.BlobData): res.BlobData})
		res.BlobData = nil
	}
	f.changed.Notify()
	return r
}

func (f *notifyingFSM) Restore(rc io.ReadCloser) error {
	err := f.FSM.Restore(rc)
	if err == nil {
		f.storeLegacy(f.FSM.TakeBlobData())
	}
	f.changed.Notify()
	return err
}

// storeLegacy writes module bytes from the log or a snapshot into the
// store. A module that cannot be written is fetched from another node
// later, like any module this node lacks.
func (f *notifyingFSM) storeLegacy(mods map[string][]byte) {
	for sum, data := range mods {
		if err := f.blobs.put(sum, data); err != nil {
			f.log.Warn("storing a module from the raft log", "sha256", sum, "err", err)
		}
	}
}
