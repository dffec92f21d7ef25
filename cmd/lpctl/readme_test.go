package main

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlocks returns the ```sh blocks of the README's section that starts
// with heading, in order.
func readmeBlocks(t *testing.T, readme, heading string) []string {
	t.Helper()
	start := strings.Index(readme, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	section := readme[start+1:]
	if end := strings.Index(section[len(heading):], "\n## "); end >= 0 {
		section = section[:len(heading)+end]
	}
	var blocks []string
	for {
		i := strings.Index(section, "```sh\n")
		if i < 0 {
			return blocks
		}
		section = section[i+len("```sh\n"):]
		j := strings.Index(section, "```")
		if j < 0 {
			t.Fatalf("README section %q: unterminated ```sh block", heading)
		}
		blocks = append(blocks, section[:j])
		section = section[j+3:]
	}
}

// copyTree copies the source tree at src to dst, leaving out git's data,
// build outputs and run state.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	skip := map[string]bool{".git": true, "bin": true, "run": true}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && skip[rel] {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copying the tree: %v", err)
	}
}

// stopPidfiles kills every lpd or sipd named in dir/run/*.pid; the last
// guard when the README's own teardown did not run.
func stopPidfiles(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "run", "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if c := strings.TrimSpace(string(comm)); c != "lpd" && c != "sipd" {
			continue
		}
		t.Logf("stopping %s (pid %d) left by the walk-through", filepath.Base(f), pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestReadmeClusterWalkthrough runs the README's cluster blocks, pasted
// whole, in a copy of the tree: each block must succeed (bash -e), and
// everything they start is stopped at the end, also on failure. It uses the
// fixed ports of examples/nodes (7070-7272, 15060-15061).
func TestReadmeClusterWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lp and runs a three-node cluster")
	}
	if os.Geteuid() != 0 {
		t.Skip("the walk-through patches live processes: needs root")
	}
	for _, tool := range []string{"bash", "make", "cc", "nc"} {
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
	blocks := readmeBlocks(t, string(readme), "## A cluster of 1+1 pairs")
	if len(blocks) < 3 {
		t.Fatalf("README cluster section has %d sh blocks; want the start, the plan and the teardown", len(blocks))
	}
	if last := blocks[len(blocks)-1]; !strings.Contains(last, "cluster-down") {
		t.Fatalf("the last README cluster block does not tear down:\n%s", last)
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
		logs, _ := filepath.Glob(filepath.Join(dir, "run", "*.log"))
		// For review: what a healthy walk-through logs at WARN or ERROR
		// (not asserted: a loaded machine may make a real peer slow).
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
					t.Logf("%s: %s", filepath.Base(l), line)
				}
			}
		}
		if t.Failed() {
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("--- %s (last 3000 bytes)\n%s", filepath.Base(l), tail(b, 3000))
			}
		}
	})
	// Generous: the first block builds lp; the second runs a plan with two
	// trials. A block that hangs is a failure, not a hung test.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i, b := range blocks {
		// Output goes to a file, not a pipe: the block leaves daemons
		// running that hold its stdout.
		out, err := os.CreateTemp(dir, "block-*.out")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", b)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "LP_ADDR=")
		runErr := cmd.Run()
		out.Close()
		text, _ := os.ReadFile(out.Name())
		t.Logf("block %d:\n%s\n--- output:\n%s", i+1, b, text)
		if runErr != nil {
			t.Fatalf("README cluster block %d failed: %v", i+1, runErr)
		}
		if i == 1 && !bytes.Contains(text, []byte("version=2")) {
			t.Errorf("block 2 does not show the fix (version=2) in the services")
		}
	}
	// The teardown block stopped every process it started.
	files, _ := filepath.Glob(filepath.Join(dir, "run", "*.pid"))
	if len(files) != 0 {
		t.Errorf("after the teardown block, pidfiles remain: %v", files)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
