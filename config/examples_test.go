package config

import (
	"path/filepath"
	"testing"
)

// The shipped examples must stay valid as the config format evolves.
func TestExamplesLoad(t *testing.T) {
	nodes, err := filepath.Glob("../examples/nodes/*.yaml")
	if err != nil || len(nodes) == 0 {
		t.Fatalf("no example node configs (%v)", err)
	}
	for _, p := range nodes {
		if _, err := LoadNode(p); err != nil {
			t.Errorf("LoadNode(%s): %v", p, err)
		}
	}
	p, err := LoadPlan("../examples/plan.yaml")
	if err != nil {
		t.Fatalf("LoadPlan: %v", err)
	}
	if p.Target != "sipd" || filepath.Base(p.PatchPath) != "fix-invite.so" {
		t.Errorf("plan = %+v; want target sipd and patch fix-invite.so", p)
	}
}
