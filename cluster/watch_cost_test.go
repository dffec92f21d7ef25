package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
)

// TestWatchIdleCostRealLPD measures what `lpctl plan watch` (the real binary)
// asks of a real lpd while its plan does not change (a trial of an hour):
// through a proxy that counts requests, once as lpd answers (blocking
// queries) and once with the X-Lp-Index header stripped, which makes lpctl
// poll as it did before blocking queries (200 ms, members every second).
// It prints both rates, and fails when a blocking query came back without
// a change.
func TestWatchIdleCostRealLPD(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lpctl against a cluster for a while")
	}
	buildFixtures(t)
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	l := tc.leader()
	id := tc.submit("fix1", time.Hour, func(s *fsm.PlanSpec) { s.ProgressDeadline = 3 * time.Hour })
	// Idle: the standby's trial has started and nothing else moves.
	tc.waitFor(time.Minute, "the standby trial", func() bool {
		p := l.State().Plans[id]
		return p.State == fsm.PlanRunning && p.Phase == fsm.PhaseStandbyTrial
	})
	target, _ := url.Parse("http://" + l.APIAddr())
	var idle atomic.Int64    // blocking queries answered with no newer index
	var members atomic.Int64 // of the blocking run: requests for members
	measure := func(strip bool, window time.Duration) (int64, string) {
		var n atomic.Int64
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ErrorLog = log.New(io.Discard, "", 0) // the held queries end with the window
		proxy.ModifyResponse = func(r *http.Response) error {
			if strip {
				r.Header.Del(api.HeaderIndex)
				return nil
			}
			asked, _ := strconv.ParseUint(r.Request.URL.Query().Get("index"), 10, 64)
			got, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
			if asked > 0 && got <= asked {
				idle.Add(1)
			}
			return nil
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			if r.URL.Path == api.PathMembers {
				members.Add(1)
			}
			proxy.ServeHTTP(w, r)
		}))
		defer srv.Close()
		ctx, cancel := context.WithTimeout(t.Context(), window)
		defer cancel()
		cmd := exec.CommandContext(ctx, built.ctl, "--addr", srv.URL, "plan", "watch", id)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Run() // ends with the window
		return n.Load(), out.String()
	}
	window := 20 * time.Second
	before, _ := measure(true, window)
	members.Store(0)
	after, out := measure(false, window)
	if !strings.Contains(out, "standby_trial") {
		t.Fatalf("lpctl plan watch printed no progress:\n%s", out)
	}
	perMin := func(n int64) float64 { return float64(n) / window.Minutes() }
	line := fmt.Sprintf("lpctl plan watch of an idle plan, %v: polling (X-Lp-Index stripped) %d requests = %.0f/min; blocking queries %d requests (%d of them members) = %.1f/min in the window (the first answers, one per change, the held queries), then 2 per %v with no change",
		window, before, perMin(before), after, members.Load(), perMin(after), api.MaxQueryWait)
	t.Log(line)
	if os.Getenv("LP_PRINT_FIGURES") != "" {
		fmt.Println(line)
	}
	// Every request beyond the first of each resource was answered because
	// the state changed (a loaded machine has gossip noise: a suspicion
	// refuted moves the members index), never because lpctl asked again
	// with nothing new: the window is far shorter than the wait.
	if n := idle.Load(); n > 0 {
		t.Errorf("%d blocking queries of lpctl were answered with no newer index within the window; want none", n)
	}
	if after >= before {
		t.Errorf("plan watch made %d requests with blocking queries, %d polling; want fewer", after, before)
	}
}
