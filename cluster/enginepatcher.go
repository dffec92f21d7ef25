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
func (e EnginePatcher) Apply(ctx context.Context, pid int, modulePath string, data []byte, opts PatchOptions) error {
	_, err := e.ApplyTimed(ctx, pid, modulePath, data, opts)
	return err
}

// options returns the node's engine options with what opts sets in place
// of them.
func (e EnginePatcher) options(opts PatchOptions) engine.Options {
	o := e.Options
	if opts.Mode != "" {
		o.Mode = opts.Mode
	}
	if opts.Consistency != "" {
		o.Consistency = opts.Consistency
	}
	if opts.Timeout > 0 {
		o.Timeout = opts.Timeout
	}
	return o
}

// ApplyTimed is Apply that also returns how long the target was stopped.
func (e EnginePatcher) ApplyTimed(ctx context.Context, pid int, modulePath string, data []byte, opts PatchOptions) (time.Duration, error) {
	o := e.options(opts)
	name := modulePath
	if o.Mode == engine.ModeDlopen {
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
	res, err := engine.ApplyModule(ctx, pid, m, o)
	if res == nil {
		return 0, err
	}
	if err == nil && !res.Already && o.Logf != nil {
		// The pause is the longest time the target was stopped, every
		// stop of the apply counted.
		o.Logf("applied %s to pid %d (mode %s, consistency %s, timeout %v): target paused %v (%d attempt(s)), total %v",
			res.Patch.ID, pid, or(o.Mode, engine.ModeInject), or(o.Consistency, "function"), or(o.Timeout, engine.DefaultTimeout),
			res.Pause.Round(time.Microsecond), res.Attempts, res.Total.Round(time.Millisecond))
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
func (e EnginePatcher) Revert(ctx context.Context, pid int, id string, opts PatchOptions) error {
	_, err := e.RevertTimed(ctx, pid, id, opts)
	return err
}

// RevertTimed is Revert that also returns how long the target was stopped.
func (e EnginePatcher) RevertTimed(ctx context.Context, pid int, id string, opts PatchOptions) (time.Duration, error) {
	o := e.options(opts)
	res, err := engine.Revert(ctx, pid, id, true, o)
	if res == nil {
		return 0, err
	}
	if err == nil && !res.Already && o.Logf != nil {
		o.Logf("reverted %s in pid %d: target paused %v", strings.Join(res.Reverted, ", "), pid, res.Pause.Round(time.Microsecond))
	}
	return res.Pause, err
}

// or returns v, or def when v is its type's zero value.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
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
