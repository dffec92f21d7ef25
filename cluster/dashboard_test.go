package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"lp/fsm"
)

// chromium returns the path of a Chromium the test can drive (.ci/run
// installs Debian's chromium).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium found: apt-get install -y chromium (.ci/run does)")
	return ""
}

// TestDashboard drives the page at /ui/ in a real headless Chromium: it
// shows the pair and a plan moving through its phases, and pausing a plan
// through its confirmation dialog pauses it in the cluster.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a browser")
	}
	bin := chromium(t)
	tc := startTestCluster(t, onePair, func(c *Config) { c.Patcher = pausingPatcher{c.Patcher.(*fakePatcher)} })
	l := tc.leader()
	tc.registered()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(cancel)

	url := "http://" + l.APIAddr() + "/ui/"
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.WaitVisible(`tr[data-node="b-active"]`)); err != nil {
		t.Fatalf("the page at %s shows no member b-active: %v", url, err)
	}
	// A mark that a reload would lose: the updates below must arrive in
	// this page, through its blocking queries.
	eval(t, ctx, `(window.lpMark = "first load")`)
	text := func() string { return eval(t, ctx, "document.body.innerText") }
	for _, want := range []string{"p1", "b-active", "c-standby", "a-witness", "active", "standby", "healthy"} {
		if !strings.Contains(text(), want) {
			t.Errorf("the page does not show %q:\n%s", want, text())
		}
	}

	// A plan, followed on the page through its phases to its end.
	id := tc.submit("fix1", 2*time.Second, nil)
	seen := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	var state string
	for time.Now().Before(deadline) {
		phase := eval(t, ctx, `(document.querySelector("#plan-phase") || {}).textContent || ""`)
		state = eval(t, ctx, `(document.querySelector("#plan-state") || {}).textContent || ""`)
		seen[phase] = true
		if state == string(fsm.PlanCompleted) || state == string(fsm.PlanRolledBack) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := tc.leader().State().Plans[id].State; state != string(want) {
		t.Fatalf("the page shows plan %s %q; the cluster has %q", id, state, want)
	}
	if !seen["p1/standby_trial"] {
		t.Errorf("the page never showed the standby trial; phases seen: %v", seen)
	}
	if state == string(fsm.PlanCompleted) && !seen["p1/active_trial"] {
		t.Errorf("the page never showed the active trial; phases seen: %v", seen)
	}
	if mark := eval(t, ctx, `window.lpMark || "reloaded"`); mark != "first load" {
		t.Errorf("the page was reloaded (mark %q): updates must arrive in place", mark)
	}
	blocking := eval(t, ctx, `performance.getEntriesByType("resource").filter(e => /\/v1\/plans.*[?&]index=[1-9]/.test(e.name)).length + ""`)
	if blocking == "0" {
		t.Errorf("the page followed the plan without a blocking query (no GET of a plan with ?index=)")
	}
	if state == string(fsm.PlanCompleted) {
		// Each node reported its (fake) engine pause with its observation:
		// the page shows it in the node's row.
		for _, node := range []string{"b-active", "c-standby"} {
			row := eval(t, ctx, `(document.querySelector('tr[data-plan-node="`+node+`"] td.pause') || {}).textContent || ""`)
			if row != "apply 1.23ms" {
				t.Errorf("engine pause of %s on the page = %q; want \"apply 1.23ms\"", node, row)
			}
		}
	}
	shot(t, ctx, "dashboard-plan.png")

	// Roll the first plan back from the page if it completed, so that a
	// second may start; then pause the second through the dialog.
	if state == string(fsm.PlanCompleted) {
		clickConfirm(t, ctx, "rollback")
		tc.waitPlan(id, fsm.PlanRolledBack, 30*time.Second)
	}
	id2 := tc.submit("fix2", 30*time.Second, func(s *fsm.PlanSpec) { s.ProgressDeadline = 5 * time.Minute })
	if _, err := chromedp.Run(ctx, chromedp.WaitVisible(`button[data-action="pause"]`)); err != nil {
		t.Fatal(err)
	}
	clickConfirm(t, ctx, "pause")
	tc.waitFor(30*time.Second, "the plan paused from the page", func() bool {
		st := tc.leader().State().Plans[id2].State
		return st == fsm.PlanPaused || st == fsm.PlanRolledBack // a busy machine may fail the trial first
	})
	if st := tc.leader().State().Plans[id2].State; st == fsm.PlanPaused {
		if _, err := chromedp.Run(ctx, chromedp.WaitVisible(`button[data-action="resume"]`)); err != nil {
			t.Fatalf("the page does not offer resume for the paused plan: %v", err)
		}
	} else {
		t.Logf("plan %s rolled back before the pause landed (busy machine)", id2)
	}
	shot(t, ctx, "dashboard-paused.png")
}

// clickConfirm clicks the action button, then Confirm in the dialog.
func clickConfirm(t *testing.T, ctx context.Context, action string) {
	t.Helper()
	sel := `button[data-action="` + action + `"]`
	for _, a := range []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(sel), chromedp.Click(sel),
		chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok")} {
		if _, err := chromedp.Run(ctx, a); err != nil {
			t.Fatalf("%s through the dialog: %v", action, err)
		}
	}
}

// shot saves a screenshot in the test's artifact directory (go test
// -artifacts keeps it), and copies it to LP_DASHBOARD_PNG when set.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (lower is JPEG)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	if dst := os.Getenv("LP_DASHBOARD_PNG"); dst != "" && name == "dashboard-plan.png" {
		os.WriteFile(dst, png, 0o644)
	}
}

// eval evaluates a JavaScript expression that yields a string.
func eval(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

// pausingPatcher is the fake patcher that also reports an engine pause,
// as EnginePatcher does, so that the page has one to show.
type pausingPatcher struct{ *fakePatcher }

func (p pausingPatcher) ApplyTimed(ctx context.Context, pid int, path string, data []byte, o PatchOptions) (time.Duration, error) {
	return 1234 * time.Microsecond, p.Apply(ctx, pid, path, data, o)
}

func (p pausingPatcher) RevertTimed(ctx context.Context, pid int, id string, o PatchOptions) (time.Duration, error) {
	return 567 * time.Microsecond, p.Revert(ctx, pid, id, o)
}
