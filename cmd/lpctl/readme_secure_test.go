package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeSecureWalkthrough runs the README's secure set-up blocks,
// pasted whole, in a copy of the tree, like TestReadmeClusterWalkthrough
// (same fixed ports; the tests of a package run one at a time). The
// refusals are `! cmd` lines, which bash -e does not check: their output
// is checked here.
func TestReadmeSecureWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lp and runs a three-node cluster")
	}
	if os.Geteuid() != 0 {
		t.Skip("the walk-through patches live processes: needs root")
	}
	for _, tool := range []string{"bash", "make", "cc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README walk-through needs %s: %v (.ci/run installs it)", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, string(readme), "## Secure set-up")
	if len(blocks) != 2 || !strings.Contains(blocks[1], "cluster-down") {
		t.Fatalf("README secure section has %d sh blocks; want the start and the plan ending in a teardown", len(blocks))
	}
	dir := t.TempDir()
	copyTree(t, root, dir)
	t.Cleanup(func() {
		cmd := exec.Command("make", "cluster-down")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("make cluster-down: %v\n%s", err, out)
		}
		stopPidfiles(t, dir)
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "run", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("--- %s (last 3000 bytes)\n%s", filepath.Base(l), tail(b, 3000))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The blocks share the environment the first one exports, as in one
	// terminal.
	env := []string{}
	for i, b := range blocks {
		out, err := os.CreateTemp(dir, "block-*.out")
		if err != nil {
			t.Fatal(err)
		}
		script := strings.Join(env, "\n") + "\n" + b
		cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "LP_ADDR=", "LP_CACERT=", "LP_CLIENT_CERT=", "LP_CLIENT_KEY=", "LP_TOKEN=")
		runErr := cmd.Run()
		out.Close()
		text, _ := os.ReadFile(out.Name())
		t.Logf("block %d:\n%s\n--- output:\n%s", i+1, b, text)
		if runErr != nil {
			t.Fatalf("README secure block %d failed: %v", i+1, runErr)
		}
		for _, line := range strings.Split(b, "\n") {
			if strings.HasPrefix(line, "export ") {
				env = append(env, line)
			}
		}
		if i == 1 {
			for _, want := range []string{"forbidden: reader:dash (cert) may not roll back", "certificate required"} {
				if !strings.Contains(string(text), want) {
					t.Errorf("block 2 output lacks %q", want)
				}
			}
		}
	}
}
