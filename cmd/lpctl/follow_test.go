package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
)

// idleLPD serves a plan in a long trial that never changes, as an lpd
// does: with blocking it answers a query for the current index only when
// the wait passes (or the client goes away); without, it answers at once
// with no index (an lpd before blocking queries). It counts the GETs.
type idleLPD struct {
	blocking bool
	mu       sync.Mutex
	gets     map[string]int
}

func (f *idleLPD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.gets[r.URL.Path]++
	f.mu.Unlock()
	if f.blocking {
		if q := r.URL.Query().Get("index"); q != "" {
			wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if q == "7" {
				select {
				case <-time.After(wait):
				case <-r.Context().Done():
					return
				}
			}
		}
		w.Header().Set(api.HeaderIndex, "7")
	}
	switch {
	case strings.HasPrefix(r.URL.Path, api.PathPlans+"/"):
		json.NewEncoder(w).Encode(trialPlan(1, time.Hour, fsm.PlanRunning))
	case r.URL.Path == api.PathMembers:
		json.NewEncoder(w).Encode([]api.Member{{Node: "b1", Status: "alive", Health: "healthy"}, {Node: "a1", Status: "alive", Health: "healthy"}})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// watchIdle runs plan watch (live view) for window against f and returns
// the GETs it made and its output.
func watchIdle(t *testing.T, f *idleLPD, window time.Duration) (int, string) {
	t.Helper()
	f.gets = map[string]int{}
	var out, errb strings.Builder
	a := &app{stdout: &out, stderr: &errb, tty: true, addr: serve(t, f)}
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	if err := a.watch(ctx, "p000001"); err != context.DeadlineExceeded {
		t.Fatalf("watch of an idle plan: %v; want it still watching at the end of the window", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.gets {
		n += c
	}
	return n, out.String()
}

// TestWatchIdleCost: plan watch of a plan that does not change makes two
// requests per resource (the plan, the members): the first answer and
// the blocking query that lpd holds, while its live view
// still counts the trial down; against an lpd without blocking queries it
// polls as before. The figures are printed (requests per minute).
func TestWatchIdleCost(t *testing.T) {
	window := 10 * time.Second
	if testing.Short() {
		window = 3 * time.Second
	}
	polls, _ := watchIdle(t, &idleLPD{}, window)
	blocked, out := watchIdle(t, &idleLPD{blocking: true}, window)
	perMin := func(n int) float64 { return float64(n) / window.Minutes() }
	t.Logf("plan watch of an idle plan for %v: %d requests (%.0f/min) polling an lpd without blocking queries; %d (%.0f/min in the window; then 2 per %v, one per resource) with blocking queries",
		window, polls, perMin(polls), blocked, perMin(blocked), queryWait)
	if blocked != 4 {
		t.Errorf("plan watch made %d requests to an idle lpd with blocking queries; want 4 (the plan and the members, each answered once and then held)", blocked)
	}
	left := map[string]bool{}
	for _, m := range regexp.MustCompile(`trial ([0-9m.]+s) left`).FindAllStringSubmatch(out, -1) {
		left[m[1]] = true
	}
	if len(left) < 2 {
		t.Errorf("live view showed the trial countdown as %v; want it ticking between answers", left)
	}
}
