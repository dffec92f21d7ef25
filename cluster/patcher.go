package cluster

import (
	"context"
	"time"

	"lp/fsm"
)

// PatchStatus is one patch recorded inside a target process.
type PatchStatus struct {
	ID    string
	State string // loaded, active, reverted or failed
}

// Patcher is what the agent needs from the single-host engine. Calls for one
// pid are never concurrent.
type Patcher interface {
	// Apply loads and activates a module in process pid: data are the
	// module file's bytes, read from modulePath and verified by the caller.
	// Apply loads exactly these bytes and must not read modulePath again
	// (the file may have changed since); modulePath names the module in
	// messages. Applying a patch that is already active is not an error.
	Apply(ctx context.Context, pid int, modulePath string, data []byte, opts PatchOptions) error
	// List returns the patches recorded inside process pid, oldest first.
	List(pid int) ([]PatchStatus, error)
	// Revert deactivates patch id in pid, and the patches that depend on it
	// (newest first).
	Revert(ctx context.Context, pid int, id string, opts PatchOptions) error
}

// PatchOptions are the engine options of one apply or revert: those of the
// plan that brought the patch (its mode, consistency and apply_timeout).
// A zero field takes the Patcher's own default.
type PatchOptions struct {
	Mode        string        // "inject" or "dlopen"
	Consistency string        // "function" or "entry"
	Timeout     time.Duration // the activation deadline
}

// planOptions returns the engine options a plan asks for.
func planOptions(s fsm.PlanSpec) PatchOptions {
	return PatchOptions{Mode: s.Mode, Consistency: s.Consistency, Timeout: s.ApplyTimeout}
}

// activeIDs returns the ids of the active patches, oldest first.
func activeIDs(ps []PatchStatus) []string {
	var ids []string
	for _, p := range ps {
		if p.State == "active" {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// timedPatcher is a Patcher that also says how long each activation or
// revert kept the target's threads stopped (lp_engine_pause_seconds). The
// agent uses it when the Patcher has it.
type timedPatcher interface {
	ApplyTimed(ctx context.Context, pid int, modulePath string, data []byte, opts PatchOptions) (time.Duration, error)
	RevertTimed(ctx context.Context, pid int, id string, opts PatchOptions) (time.Duration, error)
}
