package fsm

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// FSM is the replicated state machine. The zero value is not usable; use New.
type FSM struct {
	mu    sync.RWMutex // Apply and Restore write; State and View read
	state *State
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM with an empty state.
func New() *FSM { return &FSM{state: NewState()} }

// Apply applies one committed log entry and returns a *Result (never nil
// for a command entry). A refused command (Result.Err set) changed nothing.
// Entries of other log types are ignored.
func (f *FSM) Apply(l *raft.Log) any {
	res := &Result{Index: l.Index}
	if l.Type != raft.LogCommand {
		res.Noop, res.Message = true, fmt.Sprintf("log entry type %v is not a command", l.Type)
		return res
	}
	// Decoding and stateless checks (a blob's sha256) need no lock.
	cmd, at, err := Decode(l.Data)
	if err != nil {
		res.fail(err)
		var ce *CommandError
		if errors.As(err, &ce) {
			res.Type = ce.Type
		}
		return res
	}
	res.Type = cmd.CommandType()
	f.mu.Lock()
	defer f.mu.Unlock()
	applyCommand(f.state, cmd, at, res)
	if res.Err == "" && !res.Noop {
		f.state.Index = max(f.state.Index, l.Index)
	}
	return res
}

// applyCommand applies a decoded command to s, filling res.
func applyCommand(s *State, cmd Command, at time.Time, res *Result) {
	defer func() {
		// A bug must not crash every replica at the same log index (and
		// again on every restart). It is reported and the command refused;
		// the state may be partly changed, identically on every replica.
		if r := recover(); r != nil {
			res.Err = fmt.Sprintf("internal error applying %s at index %d: %v", cmd.CommandType(), res.Index, r)
			res.Code = CodeInternal
		}
	}()
	x := &applyCtx{s: s, at: at, res: res}
	if err := cmd.apply(x); err != nil {
		res.fail(err)
	}
}

func (r *Result) fail(err error) {
	r.Err = err.Error()
	r.Code = codeOf(err)
	r.Noop, r.Message, r.PlanID = false, "", ""
}

// applyCtx carries what a command's apply needs.
type applyCtx struct {
	s   *State
	at  time.Time
	res *Result
}

// record appends an event stamped with the command time.
func (x *applyCtx) record(e Event) {
	var seq uint64 = 1
	if n := len(x.s.History); n > 0 {
		seq = x.s.History[n-1].Seq + 1
	}
	e.Seq, e.Time = seq, x.at
	e.Cause = clip(e.Cause, maxText)
	x.s.History = append(x.s.History, e)
}

// noop marks the result as accepted with nothing to change.
func (x *applyCtx) noop(format string, args ...any) {
	x.res.Noop = true
	x.res.Message = fmt.Sprintf(format, args...)
}

// State returns a deep copy of the current state (blob data shared).
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone()
}

// Index returns the raft index of the last command entry that changed this
// FSM's state: a replica whose Index is at least the leader's holds every
// change the leader had made when it answered. See [State.Index].
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Index
}

// View calls fn with the current state under a read lock, without copying.
// fn must not modify s or anything reachable from it, and must not block:
// Apply waits for it. Values fn copies out of the maps (a Plan, a Node, an
// Observed, a desired stack) may be read after it returns: an apply never
// writes into such a value, it stores a new one (see [Held], which the
// tests check after every command).
func (f *FSM) View(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// Snapshot captures a deep copy of the state; Persist encodes it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{state: f.state.Clone()}, nil
}

// Restore replaces the state with a snapshot written by Persist. On error
// the state is left as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restoring fsm snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = s
	return nil
}

// TakeBlobData removes from the state the module bytes that snapshots
// written while modules travelled in the raft log carry, and returns them
// by sha256 (nil when there are none), for the node to write into its
// module store: the state keeps references only.
func (f *FSM) TakeBlobData() map[string][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out map[string][]byte
	for sum, b := range f.state.Blobs {
		if b.Data == nil {
			continue
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[sum] = b.Data
		b.Data = nil // copies hold their own map entries
		f.state.Blobs[sum] = b
	}
	return out
}

type fsmSnapshot struct{ state *State }

// Persist writes the snapshot to sink and closes it (cancels it on error).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.state); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persisting fsm snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("closing fsm snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the snapshot holds only memory.
func (s *fsmSnapshot) Release() {}

func validPlanState(p PlanState) bool {
	for _, s := range PlanStates() {
		if p == s {
			return true
		}
	}
	return false
}
