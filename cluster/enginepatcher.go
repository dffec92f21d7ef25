package cluster

import (
	"context"
	"strings"
	"time"

	"lp/engine"
)

// EnginePatcher is the Patcher of a real node: package engine, with the
// options every apply and revert of this node uses.
type EnginePatcher struct {
	Options engine.Options
}

var _ Patcher = EnginePatcher{}

// Apply implements Patcher.
func (e EnginePatcher) Apply(ctx context.Context, pid int, modulePath string) error {
	res, err := engine.Apply(ctx, pid, modulePath, e.Options)
	if err == nil && !res.Already && e.Options.Logf != nil {
		// The pause is the longest time the target was stopped, every
		// stop of the apply counted.
		e.Options.Logf("applied %s to pid %d: target paused %v (%d attempt(s)), total %v",
			res.Patch.ID, pid, res.Pause.Round(time.Microsecond), res.Attempts, res.Total.Round(time.Millisecond))
	}
	return err
}

// List implements Patcher.
func (e EnginePatcher) List(pid int) ([]PatchStatus, error) {
	ps, err := engine.List(pid)
	if err != nil {
		return nil, err
	}
	out := make([]PatchStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, PatchStatus{ID: p.ID, State: p.State})
	}
	return out, nil
}

// Revert implements Patcher: dependents are reverted first (cascade).
func (e EnginePatcher) Revert(ctx context.Context, pid int, id string) error {
	res, err := engine.Revert(ctx, pid, id, true, e.Options)
	if err == nil && !res.Already && e.Options.Logf != nil {
		e.Options.Logf("reverted %s in pid %d: target paused %v", strings.Join(res.Reverted, ", "), pid, res.Pause.Round(time.Microsecond))
	}
	return err
}
