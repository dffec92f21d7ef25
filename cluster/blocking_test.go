package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
	"lp/heartbeat"
)

// getIndexed does a GET on base+path and returns the status, the X-Lp-Index
// header and the body.
func getIndexed(t *testing.T, ctx context.Context, base, path string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get(api.HeaderIndex), string(body)
}

type answer struct {
	m   api.QueryMeta
	err error
}

// follow runs blocking queries from index on, each from the index of the
// previous answer, and sends every answer until ctx ends or a query fails.
// An answer must come with a greater index than asked: the caller's context
// is far shorter than the 5-minute wait, so an answer means a change woke
// the query, not its wait.
func follow(ctx context.Context, index uint64, query func(context.Context, api.QueryOptions) (api.QueryMeta, error)) <-chan answer {
	ch := make(chan answer, 64)
	go func() {
		for {
			m, err := query(ctx, api.QueryOptions{Index: index, Wait: api.MaxQueryWait})
			if err == nil && m.Index <= index {
				err = fmt.Errorf("blocking query from index %d answered index %d before its wait: want a greater index", index, m.Index)
			}
			if err != nil && ctx.Err() != nil {
				return
			}
			select {
			case ch <- answer{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			index = m.Index
		}
	}()
	return ch
}

// reaches reads answers until one has an index of at least want.
func reaches(t *testing.T, ctx context.Context, name string, ch <-chan answer, want uint64) {
	t.Helper()
	for {
		select {
		case a := <-ch:
			if a.err != nil {
				t.Fatalf("%s: %v", name, a.err)
			}
			if a.m.Index >= want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s: no blocking query answered with index >= %d", name, want)
		}
	}
}

// TestBlockingQueries: a stale index answers at once, a current one blocks
// until a change (on the leader and through a follower, which answers from
// its replica), a wait that passes answers with the same index, members
// move on a gossip event, and bad values are one-line 400s.
func TestBlockingQueries(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	l := tc.leader()
	var others []*Node
	for _, n := range tc.nodes {
		if n != l {
			others = append(others, n)
		}
	}
	follower, victim := others[0], others[1]
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // < the 5m wait
	defer cancel()

	// Every answer carries the index.
	status, idx, _ := getIndexed(t, ctx, l.APIAddr(), api.PathPlans)
	if status != http.StatusOK || idx == "" {
		t.Fatalf("GET /v1/plans = %d, X-Lp-Index %q; want 200 and an index", status, idx)
	}
	for _, p := range []string{api.PathStatus, api.PathMembers} {
		if status, idx, _ := getIndexed(t, ctx, l.APIAddr(), p); status != http.StatusOK || idx == "" {
			t.Errorf("GET %s = %d, X-Lp-Index %q; want 200 and an index", p, status, idx)
		}
	}

	// A stale index answers at once (within ctx, far less than the wait).
	cl := api.NewClient(l.APIAddr())
	_, m, err := cl.PlansWait(ctx, api.QueryOptions{Index: 1, Wait: api.MaxQueryWait})
	if err != nil || m.Index <= 1 {
		t.Fatalf("stale blocking query: index %d, %v; want an answer with a greater index", m.Index, err)
	}

	// A current index blocks until a change: a plan submitted on the
	// leader wakes queries on the leader and on a follower.
	fcl := api.NewClient(follower.APIAddr())
	from := l.fsm.Index()
	ffrom := follower.fsm.Index()
	qctx, stop := context.WithCancel(ctx)
	onLeader := follow(qctx, from, func(ctx context.Context, q api.QueryOptions) (api.QueryMeta, error) {
		_, m, err := cl.PlansWait(ctx, q)
		return m, err
	})
	onFollower := follow(qctx, ffrom, func(ctx context.Context, q api.QueryOptions) (api.QueryMeta, error) {
		_, m, err := fcl.PlanWait(ctx, "p000001", q)
		var e *api.Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			err = nil // not there yet: the answer still carries the index
		}
		return m, err
	})
	id := tc.submit("fix1", time.Hour, func(s *fsm.PlanSpec) { s.ProgressDeadline = 3 * time.Hour })
	res := l.fsm.Index()
	reaches(t, ctx, "leader", onLeader, res)
	reaches(t, ctx, "follower", onFollower, res)
	stop()

	// A wait that passes with nothing new answers with the same index: the
	// plan is paused (nothing moves), then its index is asked for again.
	for {
		_, err := fcl.PlanAction(ctx, id, "pause") // forwarded to the leader
		var e *api.Error
		if err == nil || !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || ctx.Err() != nil {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(100 * time.Millisecond) // a leader election: retry
	}
	for {
		cur := follower.fsm.Index()
		_, m, err := fcl.PlanWait(ctx, id, api.QueryOptions{Index: cur, Wait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if m.Index == cur {
			break // the wait passed
		}
		if m.Index < cur {
			t.Fatalf("index went backwards: %d after %d", m.Index, cur)
		}
		// Something still changed (the agent's last report): again.
	}

	// Members move with gossip: a node stops; a blocking members
	// query on the leader answers once gossip says so.
	_, mm, err := cl.MembersWait(ctx, api.QueryOptions{})
	if err != nil || mm.Index == 0 {
		t.Fatalf("members: index %d, %v", mm.Index, err)
	}
	victim.Kill()
	index := mm.Index
	for {
		ms, m, err := cl.MembersWait(ctx, api.QueryOptions{Index: index, Wait: api.MaxQueryWait})
		if err != nil {
			t.Fatalf("members blocking query: %v", err)
		}
		if m.Index <= index {
			t.Fatalf("members blocking query from %d answered %d", index, m.Index)
		}
		index = m.Index
		gone := false
		for _, row := range ms {
			gone = gone || row.Node == victim.name && row.Gossip != string(heartbeat.StateAlive)
		}
		if gone {
			break
		}
	}

	// Bad values: one line, 400.
	for _, q := range []string{"?index=x", "?index=-1", "?index=1&wait=soon", "?index=1&wait=-1s", "?wait=1s", "?index=1&index=2"} {
		status, _, body := getIndexed(t, ctx, l.APIAddr(), api.PathPlans+q)
		if status != http.StatusBadRequest || strings.Count(strings.TrimSpace(body), "\n") > 2 {
			t.Errorf("GET /v1/plans%s = %d %q; want 400 with one line", q, status, body)
		}
	}
}
