package cluster

import (
	"context"

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
	_, err := engine.Apply(ctx, pid, modulePath, e.Options)
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
	_, err := engine.Revert(ctx, pid, id, true, e.Options)
	return err
}
