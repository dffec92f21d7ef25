package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Retention bounds the replicated state. It travels in the Prune command
// (the leader's configuration at the time it issued it), so every replica
// prunes the same things at the same log index. A zero limit means none.
type Retention struct {
	// History is how many events are kept, the newest.
	History int `json:"history"`
	// HistoryAge drops events older than this (by the command time). The
	// newest event is always kept, so event sequence numbers never restart.
	HistoryAge time.Duration `json:"history_age"`
	// Plans is how many terminal plans (completed, rolled_back, aborted,
	// failed) are kept, the newest by submission; older ones are deleted.
	// Unfinished plans are never pruned.
	Plans int `json:"plans"`
	// BlobGrace keeps a module that nothing references for this long after
	// it was stored, so that a module sent just before its plan is not
	// collected between the two entries.
	BlobGrace time.Duration `json:"blob_grace"`
}

func (r Retention) validate() error {
	if r.History < 0 || r.Plans < 0 || r.HistoryAge < 0 || r.BlobGrace < 0 {
		return refuse(ErrInvalid, "retention %+v has a negative limit", r)
	}
	return nil
}

// Prune drops what Retention says is no longer kept: events beyond the
// count or older than the age, terminal plans beyond the count, and patch
// modules that no desired stack and no plan that may still need them
// references (see [State.BlobReferenced]). A Prune with nothing to drop is
// a no-op. It records one event when it deletes plans or modules.
type Prune struct {
	Retention Retention `json:"retention"`
	Cause     string    `json:"cause"`
}

// CommandType implements Command.
func (*Prune) CommandType() CommandType { return TypePrune }

func (c *Prune) validate() error { return c.Retention.validate() }

func (c *Prune) apply(x *applyCtx) error {
	s := x.s
	plans := s.prunablePlans(c.Retention)
	for _, id := range plans {
		delete(s.Plans, id)
	}
	blobs := s.collectableBlobs(c.Retention, x.at)
	for _, sum := range blobs {
		delete(s.Blobs, sum)
	}
	if len(plans) > 0 || len(blobs) > 0 {
		x.record(Event{Kind: EventPruned, To: fmt.Sprintf("%d plans, %d modules", len(plans), len(blobs)), Cause: c.Cause})
	}
	events := s.prunableEvents(c.Retention, x.at)
	if len(plans) == 0 && len(blobs) == 0 && events == 0 {
		x.noop("nothing to prune")
		return nil
	}
	if events > 0 {
		// A new slice, so that the dropped events' memory is freed and
		// clones taken before (snapshots) keep theirs.
		s.History = slices.Clone(s.History[events:])
	}
	return nil
}

// NeedsPrune reports whether a Prune with retention r at time now would
// change anything. The leader asks before it issues one.
func (s *State) NeedsPrune(r Retention, now time.Time) bool {
	return s.prunableEvents(r, now) > 0 || len(s.prunablePlans(r)) > 0 || len(s.collectableBlobs(r, now)) > 0
}

// prunableEvents returns how many of the oldest events r drops at time now.
func (s *State) prunableEvents(r Retention, now time.Time) int {
	n := len(s.History)
	if n <= 1 {
		return 0
	}
	drop := 0
	if r.History > 0 && n > r.History {
		drop = n - r.History
	}
	if r.HistoryAge > 0 {
		cutoff := now.Add(-r.HistoryAge)
		i, _ := slices.BinarySearchFunc(s.History, cutoff, func(e Event, t time.Time) int {
			if e.Time.Before(t) {
				return -1
			}
			return 1
		})
		// History times never decrease (commands carry the leader's
		// clock, which a new leader may set back a little: then this
		// drops a little less, never a newer event).
		drop = max(drop, i)
	}
	return min(drop, n-1)
}

// prunablePlans returns the ids of the terminal plans beyond r.Plans,
// oldest first.
func (s *State) prunablePlans(r Retention) []string {
	if r.Plans <= 0 {
		return nil
	}
	var terminal []Plan
	for _, p := range s.Plans {
		if p.State.Terminal() {
			terminal = append(terminal, p)
		}
	}
	if len(terminal) <= r.Plans {
		return nil
	}
	slices.SortFunc(terminal, func(a, b Plan) int { return cmp.Compare(a.Seq, b.Seq) })
	var ids []string
	for _, p := range terminal[:len(terminal)-r.Plans] {
		ids = append(ids, p.ID)
	}
	return ids
}

// collectableBlobs returns the stored modules nothing references, older
// than r.BlobGrace, sorted. Plans pruned in the same command no longer
// reference anything.
func (s *State) collectableBlobs(r Retention, now time.Time) []string {
	var out []string
	for sum, b := range s.Blobs {
		if now.Sub(b.Stored) < r.BlobGrace || s.BlobReferenced(sum) {
			continue
		}
		out = append(out, sum)
	}
	slices.Sort(out)
	return out
}

// BlobReferenced reports whether a module is still needed: by a desired
// stack, by an unfinished plan (its module or its pre-plan stacks), or by
// the pre-plan stacks of a kept plan that may still be rolled back.
func (s *State) BlobReferenced(sum string) bool {
	for _, byTarget := range s.Desired {
		for _, stack := range byTarget {
			if slices.ContainsFunc(stack, func(r PatchRef) bool { return r.SHA256 == sum }) {
				return true
			}
		}
	}
	for _, p := range s.Plans {
		if p.State == PlanRolledBack {
			continue
		}
		if !p.State.Terminal() && p.Spec.PatchSHA256 == sum {
			return true
		}
		for _, stack := range p.PreState {
			if slices.ContainsFunc(stack, func(r PatchRef) bool { return r.SHA256 == sum }) {
				return true
			}
		}
	}
	return false
}
