package heartbeat

import (
	"fmt"
	"time"
)

// Hysteresis turns a stream of check results into a health state. It starts
// HealthUnknown; Failures consecutive failures make it HealthUnhealthy and
// Successes consecutive successes make it HealthHealthy (from unknown too).
// A result that does not reach the threshold keeps the current state. It is a
// pure state machine: not safe for concurrent use, no clock.
type Hysteresis struct {
	Failures  int // consecutive failures before unhealthy; < 1 counts as 1
	Successes int // consecutive successes before healthy; < 1 counts as 1

	state     string
	fails     int
	successes int
}

// State returns the current state.
func (h *Hysteresis) State() string {
	if h.state == "" {
		return HealthUnknown
	}
	return h.state
}

// Counts returns the current runs of consecutive failures and successes (one
// of them is 0).
func (h *Hysteresis) Counts() (failures, successes int) { return h.fails, h.successes }

// Observe feeds one result and returns the state after it and whether it
// changed.
func (h *Hysteresis) Observe(ok bool) (state string, changed bool) {
	before := h.State()
	if ok {
		h.successes++
		h.fails = 0
		if before != HealthHealthy && h.successes >= max(h.Successes, 1) {
			h.state = HealthHealthy
		}
	} else {
		h.fails++
		h.successes = 0
		if before != HealthUnhealthy && h.fails >= max(h.Failures, 1) {
			h.state = HealthUnhealthy
		}
	}
	return h.State(), h.State() != before
}

// FlapConfig configures flap damping: more than Changes transitions between
// healthy and unhealthy within Window hold the subject unhealthy until it has
// been healthy, without interruption, for Hold.
type FlapConfig struct {
	Changes int // K; a negative value disables damping
	Window  time.Duration
	Hold    time.Duration
}

// DefaultFlap: more than 3 changes within 60 s hold unhealthy until healthy
// for 10 s.
func DefaultFlap() FlapConfig {
	return FlapConfig{Changes: 3, Window: 60 * time.Second, Hold: 10 * time.Second}
}

// Validate reports the first field outside its limits.
func (f FlapConfig) Validate() error {
	if f.Changes < 0 {
		return nil // disabled; Window and Hold are not used
	}
	switch {
	case f.Changes < 1:
		return fmt.Errorf("%w: flap Changes = %d; want >= 1 (or < 0 to disable)", ErrInvalidConfig, f.Changes)
	case f.Window <= 0:
		return fmt.Errorf("%w: flap Window = %v; want > 0", ErrInvalidConfig, f.Window)
	case f.Hold <= 0:
		return fmt.Errorf("%w: flap Hold = %v; want > 0", ErrInvalidConfig, f.Hold)
	}
	return nil
}

// Damper applies flap damping to a state stream. Transitions from or to
// HealthUnknown are not counted. A pure state machine: the caller passes the
// clock; not safe for concurrent use.
type Damper struct {
	Config FlapConfig

	last         string      // last input state
	changes      []time.Time // times of counted transitions within Window
	held         bool
	healthySince time.Time // when the input last became healthy
}

// Observe feeds the current input state at time now and returns the output
// state (HealthUnhealthy while held, the input otherwise) and whether the
// damper holds. Call it again with an unchanged input to let a hold expire.
func (d *Damper) Observe(now time.Time, in string) (out string, held bool) {
	if d.Config.Changes < 0 {
		d.last = in
		return in, false
	}
	if in != d.last {
		if (d.last == HealthHealthy || d.last == HealthUnhealthy) && (in == HealthHealthy || in == HealthUnhealthy) {
			d.changes = append(d.changes, now)
		}
		if in == HealthHealthy {
			d.healthySince = now
		}
		d.last = in
	}
	cut := 0
	for cut < len(d.changes) && now.Sub(d.changes[cut]) > d.Config.Window {
		cut++
	}
	d.changes = d.changes[cut:]
	if !d.held && len(d.changes) > d.Config.Changes {
		d.held = true
	}
	if d.held && in == HealthHealthy && now.Sub(d.healthySince) >= d.Config.Hold {
		d.held = false
		d.changes = nil
	}
	if d.held {
		return HealthUnhealthy, true
	}
	return in, false
}

// ReleaseAt returns when a current hold ends if the input stays healthy.
func (d *Damper) ReleaseAt() (time.Time, bool) {
	if !d.held || d.last != HealthHealthy {
		return time.Time{}, false
	}
	return d.healthySince.Add(d.Config.Hold), true
}

// RecentChanges returns how many counted transitions are within the window
// as of the last Observe.
func (d *Damper) RecentChanges() int { return len(d.changes) }
