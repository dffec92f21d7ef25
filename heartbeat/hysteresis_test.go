package heartbeat

import (
	"strings"
	"testing"
	"time"
)

func TestHysteresis(t *testing.T) {
	const (
		H = HealthHealthy
		U = HealthUnhealthy
		X = HealthUnknown
	)
	tests := []struct {
		name                string
		failures, successes int
		results             string // o = success, x = failure
		want                []string
	}{
		{"unknown until successes", 3, 2, "oo", []string{X, H}},
		{"unknown until failures", 3, 2, "xxx", []string{X, X, U}},
		{"one success from unknown", 3, 1, "o", []string{H}},
		{"isolated failures keep healthy", 3, 2, "ooxxoxxo", []string{X, H, H, H, H, H, H, H}},
		{"failures reset by success", 2, 2, "ooxoxox", []string{X, H, H, H, H, H, H}},
		{"healthy to unhealthy after failures", 3, 2, "ooxxx", []string{X, H, H, H, U}},
		{"unhealthy to healthy after successes", 1, 3, "oooxooo", []string{X, X, H, U, U, U, H}},
		{"success interrupting recovery", 1, 2, "ooxoxoo", []string{X, H, U, U, U, U, H}},
		{"zero thresholds count as one", 0, 0, "xo", []string{U, H}},
		{"long failure run stays unhealthy", 2, 2, "xxxxxx", []string{X, U, U, U, U, U}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Hysteresis{Failures: tt.failures, Successes: tt.successes}
			if got := h.State(); got != X {
				t.Fatalf("initial State() = %q; want %q", got, X)
			}
			prev := X
			for i, r := range tt.results {
				got, changed := h.Observe(r == 'o')
				if got != tt.want[i] {
					t.Fatalf("after %q: state %q; want %q", tt.results[:i+1], got, tt.want[i])
				}
				if changed != (got != prev) {
					t.Fatalf("after %q: changed = %v; want %v", tt.results[:i+1], changed, got != prev)
				}
				prev = got
			}
		})
	}
}

func TestHysteresisCounts(t *testing.T) {
	h := Hysteresis{Failures: 3, Successes: 2}
	for _, ok := range []bool{true, true, false, false} {
		h.Observe(ok)
	}
	if f, s := h.Counts(); f != 2 || s != 0 {
		t.Fatalf("Counts() = %d, %d; want 2, 0", f, s)
	}
}

func TestDamper(t *testing.T) {
	const (
		H = HealthHealthy
		U = HealthUnhealthy
		X = HealthUnknown
	)
	cfg := FlapConfig{Changes: 3, Window: 60 * time.Second, Hold: 10 * time.Second}
	type step struct {
		at       int // seconds
		in       string
		want     string
		wantHeld bool
	}
	tests := []struct {
		name  string
		cfg   FlapConfig
		steps []step
	}{
		{"stable passes through", cfg, []step{
			{0, X, X, false}, {1, H, H, false}, {100, H, H, false},
		}},
		{"three changes are tolerated", cfg, []step{
			{0, H, H, false}, {1, U, U, false}, {2, H, H, false}, {3, U, U, false},
			{4, U, U, false},
		}},
		{"fourth change holds until stable for hold", cfg, []step{
			{0, H, H, false}, {1, U, U, false}, {2, H, H, false}, {3, U, U, false},
			{4, H, U, true}, {10, H, U, true}, {13, H, U, true}, {14, H, H, false},
			{15, U, U, false}, // a new failure after release is one change, not a hold
			{16, H, H, false},
		}},
		{"failure during hold restarts the hold", cfg, []step{
			{0, H, H, false}, {1, U, U, false}, {2, H, H, false}, {3, U, U, false},
			{4, H, U, true}, {8, U, U, true}, {9, H, U, true}, {18, H, U, true}, {19, H, H, false},
		}},
		{"changes outside the window do not count", cfg, []step{
			{0, H, H, false}, {1, U, U, false}, {2, H, H, false},
			{100, U, U, false}, {101, H, H, false}, {102, U, U, false},
		}},
		{"unknown transitions are not counted", cfg, []step{
			{0, X, X, false}, {1, H, H, false}, {2, X, X, false}, {3, H, H, false},
			{4, X, X, false}, {5, U, U, false}, {6, H, H, false},
		}},
		{"disabled", FlapConfig{Changes: -1}, []step{
			{0, H, H, false}, {1, U, U, false}, {2, H, H, false}, {3, U, U, false},
			{4, H, H, false}, {5, U, U, false},
		}},
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Damper{Config: tt.cfg}
			for _, s := range tt.steps {
				got, held := d.Observe(base.Add(time.Duration(s.at)*time.Second), s.in)
				if got != s.want || held != s.wantHeld {
					t.Fatalf("t=%ds in=%s: got %s held=%v; want %s held=%v", s.at, s.in, got, held, s.want, s.wantHeld)
				}
			}
		})
	}
}

func TestDamperReleaseAt(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := Damper{Config: FlapConfig{Changes: 1, Window: time.Minute, Hold: 5 * time.Second}}
	if _, ok := d.ReleaseAt(); ok {
		t.Fatal("ReleaseAt() ok before any hold; want false")
	}
	d.Observe(base, HealthHealthy)
	d.Observe(base.Add(time.Second), HealthUnhealthy)
	if _, ok := d.ReleaseAt(); ok {
		t.Fatal("ReleaseAt() ok while unhealthy and not held; want false")
	}
	d.Observe(base.Add(2*time.Second), HealthHealthy)
	at, ok := d.ReleaseAt()
	if want := base.Add(7 * time.Second); !ok || !at.Equal(want) {
		t.Fatalf("ReleaseAt() = %v, %v; want %v, true", at, ok, want)
	}
}

func TestSummaryCombines(t *testing.T) {
	specs := []CheckSpec{
		{Name: "a", TCP: "127.0.0.1:1", Failures: 1, Successes: 1},
		{Name: "b", TCP: "127.0.0.1:1", Failures: 1, Successes: 1},
	}
	flap := FlapConfig{Changes: 3, Window: time.Minute, Hold: 10 * time.Second}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAggregator(specs, flap)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

	if s := a.summary(at(0)); s.State != HealthUnknown || s.Healthy {
		t.Fatalf("initial summary %s healthy=%v; want unknown, false", s.State, s.Healthy)
	}
	a.observe(result{idx: 0, ok: true, output: "fine", at: at(1)})
	if s := a.summary(at(1)); s.State != HealthUnknown {
		t.Fatalf("one healthy, one unknown: %s; want unknown", s.State)
	}
	a.observe(result{idx: 1, ok: false, output: "refused", at: at(2)})
	s := a.summary(at(2))
	if s.State != HealthUnhealthy || s.Failing != "b" || s.Output != "refused" {
		t.Fatalf("summary %s failing %q output %q; want unhealthy, b, refused", s.State, s.Failing, s.Output)
	}
	a.observe(result{idx: 1, ok: true, output: "ok", at: at(3)})
	if s := a.summary(at(3)); !s.Healthy || s.Failing != "" {
		t.Fatalf("summary %s failing %q; want healthy, no failing check", s.State, s.Failing)
	}

	// Two checks failing alternately: neither flaps by itself more than
	// three times (two changes each), but the node summary does and is held.
	sec := 4
	for idx := 0; idx < 2; idx++ {
		a.observe(result{idx: idx, ok: false, output: "down", at: at(sec)})
		a.summary(at(sec))
		sec++
		a.observe(result{idx: idx, ok: true, output: "up", at: at(sec)})
		a.summary(at(sec))
		sec++
	}
	s = a.summary(at(sec))
	if s.State != HealthUnhealthy || !s.Damped || s.Failing == "" || !strings.Contains(s.Output, "flapping") {
		t.Fatalf("after alternating flaps: %s damped=%v failing=%q output=%q; want unhealthy, damped, a failing check, flapping output",
			s.State, s.Damped, s.Failing, s.Output)
	}
	for _, c := range s.Checks {
		if c.Damped {
			t.Fatalf("check %s damped; want only the node summary damped", c.Name)
		}
	}
	if s := a.summary(at(sec + 11)); !s.Healthy || s.Damped {
		t.Fatalf("after hold: %s damped=%v; want healthy, not damped", s.State, s.Damped)
	}
}
