package cluster

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"lp/cluster/api"
)

// Blocking queries, Consul's way. A GET of the status, the members, the
// plans or one plan may carry ?index=N (and optionally &wait=D): when the
// resource's index is already past N the answer comes at once; otherwise
// the request is held until the index moves past N or the wait (default
// and cap api.MaxQueryWait, plus up to 1/16 of it in jitter) passes, and then
// answers with the state at that moment. Every answer of these GETs
// carries the index in the X-Lp-Index header, blocking or not.
//
// The indexes:
//   - plans and a plan: the FSM index, the raft index of the last command
//     that changed the replicated state. It is the same on every server
//     that has applied that entry.
//   - members and status: the FSM index plus a counter local to this lpd
//     that counts gossip events (join, suspect, dead, left, metadata such
//     as health) and raft leader changes seen here. It never goes backwards
//     on one lpd, but differs between lpds: a client that moves to another
//     lpd (or sees the index go backwards, e.g. after a restart) starts
//     again from index 0, as Consul's clients do.
//
// Reads are answered by the lpd asked, from its replica (a follower does
// not forward GETs): a blocking query on a follower wakes when the
// follower applies the change.

// blockingQuery is the parsed ?index=&wait= of a GET.
type blockingQuery struct {
	index uint64
	wait  time.Duration // 0: answer at once
}

// parseQuery reads ?index= and ?wait=; a bad value is refused with one
// line (400) and false.
func parseQuery(w http.ResponseWriter, r *http.Request) (blockingQuery, bool) {
	var q blockingQuery
	v := r.URL.Query()
	if s, ok := v["index"]; ok {
		i, err := strconv.ParseUint(s[0], 10, 64)
		if err != nil || len(s) > 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad index %q: want one non-negative integer (the X-Lp-Index of a previous answer)", s[0]))
			return q, false
		}
		q.index = i
		q.wait = api.MaxQueryWait
	}
	if s, ok := v["wait"]; ok {
		d, err := time.ParseDuration(s[0])
		if err != nil || d < 0 || len(s) > 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad wait %q: want one duration such as 30s or 5m (at most %v)", s[0], api.MaxQueryWait))
			return q, false
		}
		if _, ok := v["index"]; !ok {
			writeError(w, http.StatusBadRequest, "wait needs index: ?index=N&wait=D (N from the X-Lp-Index of a previous answer)")
			return q, false
		}
		q.wait = min(d, api.MaxQueryWait)
	}
	return q, true
}

// blockOn holds a blocking query until index() moves past q.index, its
// wait passes, the client goes away or the node stops; it sets the
// X-Lp-Index header to the index the answer reflects (read before the
// answer's state, so that the state is at least that new).
func (n *Node) blockOn(w http.ResponseWriter, r *http.Request, q blockingQuery, index func() uint64) {
	var deadline <-chan time.Time
	if q.wait > 0 {
		wait := q.wait + rand.N(q.wait/16+1)
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		wake := n.changed.C()
		i := index()
		if i > q.index || deadline == nil {
			w.Header().Set(api.HeaderIndex, strconv.FormatUint(i, 10))
			return
		}
		select {
		case <-wake:
		case <-deadline:
			deadline = nil
		case <-r.Context().Done():
			deadline = nil
		case <-n.ctx.Done():
			deadline = nil
		}
	}
}

// plansIndex is the index of the plans: the FSM index.
func (n *Node) plansIndex() uint64 { return n.fsm.Index() }

// membersIndex is the index of members and status: the FSM index plus this
// lpd's count of gossip events and leader changes (see above).
func (n *Node) membersIndex() uint64 { return n.fsm.Index() + n.localIndex.Load() }

// bumpLocal records a change that raft does not carry (a gossip event, a
// leader change) and wakes the blocked queries.
func (n *Node) bumpLocal() {
	n.localIndex.Add(1)
	n.changed.Notify()
}
