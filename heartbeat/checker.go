package heartbeat

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// CheckerConfig configures a Checker.
type CheckerConfig struct {
	Checks []CheckSpec // zero fields take CheckSpec defaults
	Flap   FlapConfig  // zero value means DefaultFlap()
	Logger *slog.Logger
}

// DefaultCheckerConfig returns a config without checks and with default flap
// damping.
func DefaultCheckerConfig() CheckerConfig { return CheckerConfig{Flap: DefaultFlap()} }

// Validate reports the first invalid check or flap field. Check names must be
// unique (after defaults).
func (c CheckerConfig) Validate() error {
	seen := make(map[string]bool)
	for i, s := range c.Checks {
		s = s.WithDefaults()
		if err := s.Validate(); err != nil {
			return fmt.Errorf("check %d: %w", i, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: check %d: name %q used twice; want unique names", ErrInvalidConfig, i, s.Name)
		}
		seen[s.Name] = true
	}
	flap := c.Flap
	if flap == (FlapConfig{}) {
		flap = DefaultFlap()
	}
	return flap.Validate()
}

// CheckStatus is the state of one check.
type CheckStatus struct {
	Name   string
	Kind   string // KindExec, KindTCP, KindHTTP or KindProcess
	State  string // after hysteresis and flap damping
	Damped bool   // held unhealthy by flap damping
	Output string // last output line of the last run
	LastOK bool   // result of the last run
	// Runs counts completed runs.
	Runs                 int
	ConsecutiveFailures  int
	ConsecutiveSuccesses int
	LastRun              time.Time
	Since                time.Time // when State was entered
}

// Summary is the health of the node (or of one plan's trial checks).
//
// State is HealthUnhealthy when a check is unhealthy (or damped), else
// HealthUnknown while any check is still unknown (not yet proven: not a
// failure, but not healthy either; lp does not start patching a node that is
// not healthy), else HealthHealthy. No checks at all is healthy.
type Summary struct {
	Healthy bool   // State == HealthHealthy
	State   string // HealthHealthy, HealthUnhealthy or HealthUnknown
	Failing string // name of the first unhealthy check, if any
	Output  string // its last output line (or why it is held)
	Damped  bool   // the node summary is held unhealthy by flap damping
	Checks  []CheckStatus
}

func (s Summary) clone() Summary {
	s.Checks = slices.Clone(s.Checks)
	return s
}

// Checker runs health checks. Create it with StartChecker; Stop it.
type Checker struct {
	specs   []CheckSpec
	flap    FlapConfig
	log     *slog.Logger
	results chan result
	resets  []chan struct{}
	changes chan Summary
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once

	mu     sync.Mutex
	status Summary
}

// StartChecker validates cfg and starts every check: each runs at once, then
// every Interval.
func StartChecker(cfg CheckerConfig) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Flap == (FlapConfig{}) {
		cfg.Flap = DefaultFlap()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{
		flap:    cfg.Flap,
		log:     logger.With("component", "health"),
		results: make(chan result),
		changes: make(chan Summary, 1),
		cancel:  cancel,
	}
	for _, s := range cfg.Checks {
		c.specs = append(c.specs, s.WithDefaults())
		c.resets = append(c.resets, make(chan struct{}, 1))
	}
	agg := newAggregator(c.specs, c.flap)
	c.status = agg.summary(time.Now())
	c.publish(c.status)

	c.wg.Add(1 + len(c.specs))
	go func() { defer c.wg.Done(); c.aggregate(ctx, agg) }()
	for i, s := range c.specs {
		go func() { defer c.wg.Done(); c.loop(ctx, i, newProber(s)) }()
	}
	return c, nil
}

// Status returns the current summary.
func (c *Checker) Status() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.clone()
}

// Changes returns summaries as they change (state, failing check, or a
// check's state or damping; not a changed output line alone). It holds the
// newest unread summary only: a slow reader skips intermediate ones. The
// first value is the initial summary. Closed by Stop.
func (c *Checker) Changes() <-chan Summary { return c.changes }

// Reset unpins the process of a process check, so that its next run pins
// the process the resolver names then (accepting a restart). Other kinds
// ignore it.
func (c *Checker) Reset(name string) error {
	for i, s := range c.specs {
		if s.Name == name {
			select {
			case c.resets[i] <- struct{}{}:
			default:
			}
			return nil
		}
	}
	return fmt.Errorf("resetting check %q: %w", name, ErrUnknownCheck)
}

// Stop ends every check (killing running exec checks' process groups),
// waits for their goroutines and closes Changes. It is idempotent.
func (c *Checker) Stop() {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
		close(c.changes)
	})
}

// publish offers s on changes, replacing an unread older summary. Only the
// aggregator (and StartChecker before it starts) sends.
func (c *Checker) publish(s Summary) {
	select {
	case c.changes <- s.clone():
		return
	default:
	}
	select {
	case <-c.changes:
	default:
	}
	select {
	case c.changes <- s.clone():
	default:
	}
}

func (c *Checker) loop(ctx context.Context, idx int, p *prober) {
	defer p.close()
	t := time.NewTicker(p.spec.Interval)
	defer t.Stop()
	for {
		select {
		case <-c.resets[idx]:
			if p.pins != nil {
				c.log.Info("process check unpinned", "check", p.spec.Name, "pids", p.pinnedPids())
				p.unpin()
			}
		default:
		}
		ok, out := p.run(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case c.results <- result{idx: idx, ok: ok, output: out, at: time.Now()}:
		case <-ctx.Done():
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (c *Checker) aggregate(ctx context.Context, agg *aggregator) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	last := c.status
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case r := <-c.results:
			now = r.at
			agg.observe(r)
		case now = <-timer.C:
		}
		s := agg.summary(now)
		c.mu.Lock()
		c.status = s
		c.mu.Unlock()
		if significant(last, s) {
			c.log.Info("health changed", "state", s.State, "failing", s.Failing, "output", s.Output, "damped", s.Damped)
			c.publish(s)
			last = s
		}
		timer.Stop()
		if at, ok := agg.nextRelease(); ok {
			timer.Reset(max(time.Until(at), time.Millisecond))
		}
	}
}

// significant reports whether b differs from a in what Changes publishes.
func significant(a, b Summary) bool {
	if a.State != b.State || a.Failing != b.Failing || a.Damped != b.Damped || len(a.Checks) != len(b.Checks) {
		return true
	}
	for i := range a.Checks {
		if a.Checks[i].State != b.Checks[i].State || a.Checks[i].Damped != b.Checks[i].Damped {
			return true
		}
	}
	return false
}

// aggregator turns results into a Summary: hysteresis and damping per
// check, damping of the node summary. Owned by the aggregate goroutine.
type aggregator struct {
	checks      []*checkState
	flap        FlapConfig
	node        Damper // over the summary of undamped check states
	lastFailing string
}

type checkState struct {
	hyst   Hysteresis
	damp   Damper
	status CheckStatus
}

func newAggregator(specs []CheckSpec, flap FlapConfig) *aggregator {
	a := &aggregator{flap: flap, node: Damper{Config: flap}}
	now := time.Now()
	for _, s := range specs {
		a.checks = append(a.checks, &checkState{
			hyst: Hysteresis{Failures: s.Failures, Successes: s.Successes},
			damp: Damper{Config: flap},
			status: CheckStatus{
				Name: s.Name, Kind: s.Kind(), State: HealthUnknown, Since: now,
			},
		})
	}
	return a
}

func (a *aggregator) observe(r result) {
	cs := a.checks[r.idx]
	cs.hyst.Observe(r.ok)
	st := &cs.status
	st.Output = r.output
	st.LastOK = r.ok
	st.LastRun = r.at
	st.Runs++
	st.ConsecutiveFailures, st.ConsecutiveSuccesses = cs.hyst.Counts()
}

// combine folds check states: any unhealthy wins, then any unknown.
func combine(states []string) string {
	out := HealthHealthy
	for _, s := range states {
		switch s {
		case HealthUnhealthy:
			return HealthUnhealthy
		case HealthUnknown:
			out = HealthUnknown
		}
	}
	return out
}

func (a *aggregator) summary(now time.Time) Summary {
	var s Summary
	raw := make([]string, 0, len(a.checks))
	eff := make([]string, 0, len(a.checks))
	for _, cs := range a.checks {
		in := cs.hyst.State()
		out, held := cs.damp.Observe(now, in)
		if out != cs.status.State {
			cs.status.Since = now
		}
		cs.status.State, cs.status.Damped = out, held
		raw = append(raw, in)
		eff = append(eff, out)
		s.Checks = append(s.Checks, cs.status)
		if out == HealthUnhealthy && s.Failing == "" {
			s.Failing = cs.status.Name
			s.Output = cs.status.Output
			if held && in != HealthUnhealthy {
				s.Output = fmt.Sprintf("flapping: held unhealthy until healthy for %v (last: %s)", a.flap.Hold, cs.status.Output)
			}
		}
	}
	if s.Failing != "" {
		a.lastFailing = s.Failing
	}
	s.State = combine(eff)
	// The node damper sees the undamped summary, so a single flapping check
	// trips and releases it together with the check's own damper instead
	// of adding a second hold after the first.
	if _, held := a.node.Observe(now, combine(raw)); held {
		s.Damped = true
		if s.State != HealthUnhealthy {
			s.State = HealthUnhealthy
			s.Failing = a.lastFailing
			s.Output = fmt.Sprintf("node health flapping: held unhealthy until healthy for %v", a.flap.Hold)
		}
	}
	s.Healthy = s.State == HealthHealthy
	return s
}

// nextRelease returns the earliest time a damper hold may end.
func (a *aggregator) nextRelease() (time.Time, bool) {
	var (
		at    time.Time
		found bool
	)
	consider := func(t time.Time, ok bool) {
		if ok && (!found || t.Before(at)) {
			at, found = t, true
		}
	}
	for _, cs := range a.checks {
		consider(cs.damp.ReleaseAt())
	}
	consider(a.node.ReleaseAt())
	return at, found
}
