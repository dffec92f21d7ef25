package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lp/engine"
	"lp/engine/module"
)

// EnginePatcher is the Patcher of a real node: package engine, with the
// options every apply and revert of this node uses.
type EnginePatcher struct {
	Options engine.Options
}

var (
	_ Patcher      = EnginePatcher{}
	_ timedPatcher = EnginePatcher{}
)

// Apply implements Patcher. The inject loader maps the verified bytes
// themselves. The dlopen loader makes the target open a file by name, so it
// gets a private copy of the verified bytes: a new file in a new directory
// (mode 0700) beside the module, removed once the target has loaded it; a
// rewrite of the module file cannot reach it.
func (e EnginePatcher) Apply(ctx context.Context, pid int, modulePath string, data []byte) error {
	_, err := e.ApplyTimed(ctx, pid, modulePath, data)
	return err
}

// ApplyTimed is Apply that also returns how long the target was stopped.
func (e EnginePatcher) ApplyTimed(ctx context.Context, pid int, modulePath string, data []byte) (time.Duration, error) {
	name := modulePath
	if e.Options.Mode == engine.ModeDlopen {
		dir, err := os.MkdirTemp(filepath.Dir(modulePath), ".load-")
		if err != nil {
			return 0, fmt.Errorf("copying %s for dlopen: %w", modulePath, err)
		}
		defer os.RemoveAll(dir)
		name = filepath.Join(dir, filepath.Base(modulePath))
		if err := writeExclusive(name, data); err != nil {
			return 0, fmt.Errorf("copying %s for dlopen: %w", modulePath, err)
		}
	}
	m, err := module.Parse(data, name)
	if err != nil {
		return 0, err
	}
	res, err := engine.ApplyModule(ctx, pid, m, e.Options)
	if res == nil {
		return 0, err
	}
	if err == nil && !res.Already && e.Options.Logf != nil {
		// The pause is the longest time the target was stopped, every
		// stop of the apply counted.
		e.Options.Logf("applied %s to pid %d: target paused %v (%d attempt(s)), total %v",
			res.Patch.ID, pid, res.Pause.Round(time.Microsecond), res.Attempts, res.Total.Round(time.Millisecond))
	}
	return res.Pause, err
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
	_, err := e.RevertTimed(ctx, pid, id)
	return err
}

// RevertTimed is Revert that also returns how long the target was stopped.
func (e EnginePatcher) RevertTimed(ctx context.Context, pid int, id string) (time.Duration, error) {
	res, err := engine.Revert(ctx, pid, id, true, e.Options)
	if res == nil {
		return 0, err
	}
	if err == nil && !res.Already && e.Options.Logf != nil {
		e.Options.Logf("reverted %s in pid %d: target paused %v", strings.Join(res.Reverted, ", "), pid, res.Pause.Round(time.Microsecond))
	}
	return res.Pause, err
}

// writeExclusive creates path (it must not exist), mode 0600, holding data.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}
