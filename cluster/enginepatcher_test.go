package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lp/engine"
)

func TestEnginePatcher(t *testing.T) {
	requirePtrace(t)
	s := startService(t, t.TempDir(), "svc")
	var p EnginePatcher
	ctx := context.Background()
	data, err := os.ReadFile(built.fix)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, s.pid, built.fix, data, PatchOptions{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	s.waitValue(t, 1041, 5*time.Second)
	l, err := p.List(s.pid)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got := activeIDs(l); !slices.Equal(got, []string{"fix-answer"}) {
		t.Errorf("active after Apply = %v; want [fix-answer]", got)
	}
	// Applying again is not an error.
	if err := p.Apply(ctx, s.pid, built.fix, data, PatchOptions{}); err != nil {
		t.Errorf("second Apply: %v; want nil", err)
	}
	if err := p.Revert(ctx, s.pid, "fix-answer", PatchOptions{}); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	s.waitValue(t, 42, 5*time.Second)
	l, _ = p.List(s.pid)
	if got := activeIDs(l); len(got) != 0 {
		t.Errorf("active after Revert = %v; want none", got)
	}
}

// TestEnginePatcherLoadsTheGivenBytes: Apply loads the bytes it is handed,
// never the file at modulePath again (the agent verified those bytes; the
// file may have been rewritten since). In dlopen mode the target opens a
// private copy, removed afterwards.
func TestEnginePatcherLoadsTheGivenBytes(t *testing.T) {
	requirePtrace(t)
	s := startService(t, t.TempDir(), "svc")
	data, err := os.ReadFile(built.fix)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "fix.so")
	if err := os.WriteFile(path, []byte("rewritten behind the agent's back"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := (EnginePatcher{}).Apply(ctx, s.pid, path, data, PatchOptions{}); err != nil {
		t.Fatalf("inject Apply with a rewritten file: %v; want the given bytes loaded", err)
	}
	s.waitValue(t, 1041, 5*time.Second)
	if err := (EnginePatcher{}).Revert(ctx, s.pid, "fix-answer", PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitValue(t, 42, 5*time.Second)

	// svc is not linked with -rdynamic, so the dynamic linker cannot bind
	// the module's reference to svc's global: dlopen fails, naming the
	// file it opened, which must be the private copy.
	err = EnginePatcher{Options: engine.Options{Mode: engine.ModeDlopen}}.Apply(ctx, s.pid, path, data, PatchOptions{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ".load-")) {
		t.Errorf("dlopen Apply = %v; want dlopen of a private copy under %s/.load-*", err, dir)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%s holds %d entries after a dlopen apply; want only fix.so (the private copy removed)", dir, len(entries))
	}
	if v := s.value(); v != 42 {
		t.Errorf("service prints %d after a failed dlopen apply; want 42", v)
	}
}

// TestEnginePatcherPlanOptions: the options of an apply (a plan's mode,
// consistency and apply_timeout) override the node's. A C++ module is
// refused in the node's default inject mode and loads with mode dlopen.
func TestEnginePatcherPlanOptions(t *testing.T) {
	requirePtrace(t)
	s := startService(t, t.TempDir(), "svc")
	data, err := os.ReadFile(built.cxx)
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	p := EnginePatcher{Options: engine.Options{Logf: func(f string, args ...any) { logged = append(logged, fmt.Sprintf(f, args...)) }}}
	ctx := context.Background()
	if err := p.Apply(ctx, s.pid, built.cxx, data, PatchOptions{}); err == nil || !strings.Contains(err.Error(), "dlopen") {
		t.Fatalf("Apply of a C++ module in inject mode = %v; want a refusal asking for dlopen", err)
	}
	opts := PatchOptions{Mode: engine.ModeDlopen, Consistency: "entry", Timeout: 3 * time.Second}
	d, err := p.ApplyTimed(ctx, s.pid, built.cxx, data, opts)
	if err != nil {
		t.Fatalf("Apply with mode dlopen: %v", err)
	}
	s.waitValue(t, 2042, 5*time.Second)
	if d <= 0 {
		t.Errorf("pause = %v; want the time the target was stopped", d)
	}
	if want := "(mode dlopen, consistency entry, timeout 3s)"; len(logged) == 0 || !strings.Contains(logged[len(logged)-1], want) {
		t.Errorf("logged %q; want the last line to contain %q", logged, want)
	}
	if _, err := p.RevertTimed(ctx, s.pid, "fix-answer-cxx", opts); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	s.waitValue(t, 42, 5*time.Second)
}
