package cluster

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
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
	if err := p.Apply(ctx, s.pid, built.fix, data); err != nil {
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
	if err := p.Apply(ctx, s.pid, built.fix, data); err != nil {
		t.Errorf("second Apply: %v; want nil", err)
	}
	if err := p.Revert(ctx, s.pid, "fix-answer"); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	s.waitValue(t, 42, 5*time.Second)
	l, _ = p.List(s.pid)
	if got := activeIDs(l); len(got) != 0 {
		t.Errorf("active after Revert = %v; want none", got)
	}
}
