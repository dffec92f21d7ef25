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
// It prints both rates.
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
	measure := func(strip bool, window time.Duration) (int64, string) {
		var n atomic.Int64
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ErrorLog = log.New(io.Discard, "", 0) // the held queries end with the window
		if strip {
			proxy.ModifyResponse = func(r *http.Response) error { r.Header.Del(api.HeaderIndex); return nil }
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
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
	after, out := measure(false, window)
	if !strings.Contains(out, "standby_trial") {
		t.Fatalf("lpctl plan watch printed no progress:\n%s", out)
	}
	perMin := func(n int64) float64 { return float64(n) / window.Minutes() }
	line := fmt.Sprintf("lpctl plan watch of an idle plan, %v: polling (X-Lp-Index stripped) %d requests = %.0f/min; blocking queries %d requests = %.1f/min in the window (the first answers and the held queries), then 2 per %v",
		window, before, perMin(before), after, perMin(after), api.MaxQueryWait)
	t.Log(line)
	if os.Getenv("LP_PRINT_FIGURES") != "" {
		fmt.Println(line)
	}
	if after > 6 {
		t.Errorf("plan watch made %d requests to an idle lpd in %v with blocking queries; want the plan and the members once each, then held (<= 6 with a leader's noise)", after, window)
	}
}
