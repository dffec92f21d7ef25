package config

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// What a plan does when a trial fails (Plan.OnFailure).
const (
	OnFailureRollback = "rollback" // every patched node goes back to the pre-plan state
	OnFailurePause    = "pause"    // the plan stops and waits for an operator
)

// What a plan does when the active fails while its standby is in trial
// (Plan.FailoverDuringTrial).
const (
	FailoverRollbackFirst = "rollback-first" // roll the standby back, then promote it
	FailoverKeepPatch     = "keep-patch"     // promote the standby with the patch
)

// Plan is a plan file, lpctl plan submit plan.yaml: which patch to roll out
// to which target across which pairs, and how to judge it.
type Plan struct {
	Name                string        // name: [A-Za-z0-9._-]{1,64}
	Patch               string        // patch: the path as written in the file
	PatchPath           string        // Patch made absolute against the plan file's directory; not in JSON
	Target              string        // target: a key of the nodes' targets
	Pairs               []string      // pairs: empty = every pair
	Trial               time.Duration // trial: how long each patched node is watched; default 30s
	Health              []Check       // health: run on each patched node during its trial
	OnFailure           string        // on_failure: OnFailureRollback (default) or OnFailurePause
	FailoverDuringTrial string        // failover_during_trial: FailoverRollbackFirst (default) or FailoverKeepPatch
	ProgressDeadline    time.Duration // progress_deadline: default 10m; must exceed Trial
	MaxParallel         int           // max_parallel: pairs worked on at once after the first; default 1
	// Engine options on every node; "" and 0 take the engine's defaults
	// (inject, function, 5s).
	Mode         string        // mode: ModeInject or ModeDlopen
	Consistency  string        // consistency: ConsistencyFunction or ConsistencyEntry
	ApplyTimeout time.Duration // apply_timeout: the engine's activation deadline on each node
}

// Engine load modes (Plan.Mode), as the engine names them.
const (
	ModeInject = "inject" // lp maps the module itself (C modules)
	ModeDlopen = "dlopen" // the target's own dynamic loader opens the module (C++ modules)
)

// Activation consistency (Plan.Consistency), as the engine names it.
const (
	ConsistencyFunction = "function" // no thread may be inside a replaced function
	ConsistencyEntry    = "entry"    // new calls go to the replacement; running ones finish
)

// DefaultPlan returns a Plan with every default filled; Name, Patch and
// Target have no default.
func DefaultPlan() Plan {
	return Plan{
		Trial:               30 * time.Second,
		OnFailure:           OnFailureRollback,
		FailoverDuringTrial: FailoverRollbackFirst,
		ProgressDeadline:    10 * time.Minute,
		MaxParallel:         1,
	}
}

// Validate checks every rule of the plan and returns the first broken one as
// an *Error naming the field and the limit. A process check is only checked
// to name a valid target: the nodes' targets are not known here.
func (p *Plan) Validate() error {
	if p.Name == "" {
		return invalid("name", "required; "+idRule)
	}
	if !validID(p.Name) {
		return invalid("name", fmt.Sprintf("%q is not a valid name; %s", p.Name, idRule))
	}
	if p.Patch == "" {
		return invalid("patch", "required: want the path of the patch module (.so)")
	}
	if p.Target == "" {
		return invalid("target", "required: want a name from the nodes' targets")
	}
	if !validID(p.Target) {
		return invalid("target", fmt.Sprintf("%q is not a valid target name; %s", p.Target, idRule))
	}
	seen := make(map[string]int, len(p.Pairs))
	for i, pair := range p.Pairs {
		f := "pairs[" + strconv.Itoa(i) + "]"
		if !validID(pair) {
			return invalid(f, fmt.Sprintf("%q is not a valid pair name; %s", pair, idRule))
		}
		if j, dup := seen[pair]; dup {
			return invalid(f, fmt.Sprintf("%q is also pairs[%d]; list each pair once", pair, j))
		}
		seen[pair] = i
	}
	if p.Trial <= 0 {
		return invalid("trial", fmt.Sprintf("%v must be positive", p.Trial))
	}
	if err := validateChecks("health", p.Health, nil); err != nil {
		return err
	}
	// A check must be able to fail within the trial: it turns unhealthy
	// only after failures consecutive runs, interval apart.
	for i, c := range p.Health {
		d := DefaultCheck()
		interval, failures := c.Interval, c.Failures
		if interval <= 0 {
			interval = d.Interval
		}
		if failures <= 0 {
			failures = d.Failures
		}
		if need := time.Duration(failures) * interval; p.Trial < need {
			return invalidNear("trial", "health["+strconv.Itoa(i)+"]", fmt.Sprintf("%v is shorter than check %s needs to fail (failures %d × interval %v): make trial at least %v",
				p.Trial, c.effectiveName(), failures, interval, need))
		}
	}
	switch p.OnFailure {
	case OnFailureRollback, OnFailurePause:
	default:
		return invalid("on_failure", fmt.Sprintf("want rollback or pause, got %q", p.OnFailure))
	}
	switch p.FailoverDuringTrial {
	case FailoverRollbackFirst, FailoverKeepPatch:
	default:
		return invalid("failover_during_trial", fmt.Sprintf("want rollback-first or keep-patch, got %q", p.FailoverDuringTrial))
	}
	if p.MaxParallel < 1 {
		return invalid("max_parallel", fmt.Sprintf("want 1 or more, got %d", p.MaxParallel))
	}
	switch p.Mode {
	case "", ModeInject, ModeDlopen:
	default:
		return invalid("mode", fmt.Sprintf("want inject or dlopen, got %q", p.Mode))
	}
	switch p.Consistency {
	case "", ConsistencyFunction, ConsistencyEntry:
	default:
		return invalid("consistency", fmt.Sprintf("want function or entry, got %q", p.Consistency))
	}
	if p.ApplyTimeout < 0 {
		return invalid("apply_timeout", fmt.Sprintf("%v must be positive", p.ApplyTimeout))
	}
	if p.ApplyTimeout > 0 && p.ApplyTimeout < time.Millisecond {
		return invalid("apply_timeout", fmt.Sprintf("%v is too short to stop a process; want at least 1ms", p.ApplyTimeout))
	}
	if p.ApplyTimeout >= p.ProgressDeadline {
		return invalidNear("apply_timeout", "progress_deadline", fmt.Sprintf("%v must be shorter than progress_deadline (%v)", p.ApplyTimeout, p.ProgressDeadline))
	}
	if p.ProgressDeadline <= p.Trial {
		return invalidNear("progress_deadline", "trial", fmt.Sprintf("%v must exceed trial (%v)", p.ProgressDeadline, p.Trial))
	}
	return nil
}

// planJSON is the JSON form of Plan: durations as Go duration strings.
type planJSON struct {
	Name                string   `json:"name"`
	Patch               string   `json:"patch"`
	Target              string   `json:"target"`
	Pairs               []string `json:"pairs,omitempty"`
	Trial               string   `json:"trial"`
	Health              []Check  `json:"health,omitempty"`
	OnFailure           string   `json:"on_failure"`
	FailoverDuringTrial string   `json:"failover_during_trial"`
	ProgressDeadline    string   `json:"progress_deadline"`
	MaxParallel         int      `json:"max_parallel,omitempty"`
	Mode                string   `json:"mode,omitempty"`
	Consistency         string   `json:"consistency,omitempty"`
	ApplyTimeout        string   `json:"apply_timeout,omitempty"`
}

// MarshalJSON writes the plan with snake_case keys matching the YAML and
// durations as strings ("30s"). PatchPath is left out.
func (p Plan) MarshalJSON() ([]byte, error) {
	return json.Marshal(planJSON{
		Name:                p.Name,
		Patch:               p.Patch,
		Target:              p.Target,
		Pairs:               p.Pairs,
		Trial:               p.Trial.String(),
		Health:              p.Health,
		OnFailure:           p.OnFailure,
		FailoverDuringTrial: p.FailoverDuringTrial,
		ProgressDeadline:    p.ProgressDeadline.String(),
		MaxParallel:         omitOne(p.MaxParallel),
		Mode:                p.Mode,
		Consistency:         p.Consistency,
		ApplyTimeout:        omitZero(p.ApplyTimeout),
	})
}

// omitOne leaves the default max_parallel (1) out of the JSON.
func omitOne(n int) int {
	if n == 1 {
		return 0
	}
	return n
}

// omitZero leaves an unset duration out of the JSON.
func omitZero(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// UnmarshalJSON reads what MarshalJSON writes. Omitted fields take their
// defaults, as in a file. It does not validate.
func (p *Plan) UnmarshalJSON(data []byte) error {
	d := DefaultPlan()
	j := planJSON{OnFailure: d.OnFailure, FailoverDuringTrial: d.FailoverDuringTrial, MaxParallel: d.MaxParallel}
	if err := strictJSON(data, &j); err != nil {
		return fmt.Errorf("decoding plan: %w", err)
	}
	out := Plan{
		Name:                j.Name,
		Patch:               j.Patch,
		Target:              j.Target,
		Pairs:               j.Pairs,
		Health:              j.Health,
		OnFailure:           j.OnFailure,
		FailoverDuringTrial: j.FailoverDuringTrial,
		MaxParallel:         j.MaxParallel,
		Mode:                j.Mode,
		Consistency:         j.Consistency,
	}
	var err error
	if out.Trial, err = jsonDuration("trial", j.Trial, d.Trial); err != nil {
		return err
	}
	if out.ProgressDeadline, err = jsonDuration("progress_deadline", j.ProgressDeadline, d.ProgressDeadline); err != nil {
		return err
	}
	if out.ApplyTimeout, err = jsonDuration("apply_timeout", j.ApplyTimeout, 0); err != nil {
		return err
	}
	*p = out
	return nil
}
