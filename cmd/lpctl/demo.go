package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"lp/engine"
)

// demoCommand runs the single-host demo: build the example service and its
// fix, start the service, patch it live, show the change, revert it.
func demoCommand(a *app) *cobra.Command {
	var examples string
	var cluster bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Patch a running demo service live, then revert it (needs cc and root)",
		Long: "Builds the demo service examples/sipd and its fix, then either patches one running\n" +
			"sipd and reverts it (default), or, with --cluster, starts a witness and a 1+1 pair of\n" +
			"lpd on 127.0.0.1 (TLS, a token, trusted_keys), shows the unsigned fix refused and runs\n" +
			"the signed fix as a plan: standby, trial, active, trial, then a cluster-wide rollback.\n" +
			"Everything it starts is stopped at the end.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := findExamples(examples)
			if err != nil {
				return err
			}
			return runDemo(a, dir, cluster)
		},
	}
	c.Flags().StringVar(&examples, "examples", "", "the examples directory (default: ./examples, or next to the lpctl binary)")
	c.Flags().BoolVar(&cluster, "cluster", false, "run the cluster demo (3 lpd on 127.0.0.1)")
	return c
}

func findExamples(flag string) (string, error) {
	var candidates []string
	if flag != "" {
		candidates = []string{flag}
	} else {
		candidates = []string{"examples"}
		if exe, err := os.Executable(); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "examples"))
		}
	}
	for _, d := range candidates {
		if _, err := os.Stat(filepath.Join(d, "sipd", "sipd.c")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("cannot find the examples directory (tried %s); run from the repository or pass --examples", strings.Join(candidates, ", "))
}

// demoService is the running example service with its output.
type demoService struct {
	cmd   *exec.Cmd
	lines chan string
}

func (d *demoService) next(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-d.lines:
		if !ok {
			return "", errors.New("sipd exited")
		}
		return l, nil
	case <-time.After(timeout):
		return "", errors.New("sipd printed nothing for " + timeout.String())
	}
}

func runDemo(a *app, examples string, cluster bool) error {
	say := func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }
	work, err := os.MkdirTemp("", "lp-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	sipd := filepath.Join(work, "sipd")
	fix := filepath.Join(work, "fix-invite.so")
	say("== building the demo service and its patch with cc")
	builds := [][]string{
		{"cc", "-O2", "-pthread", "-o", sipd, filepath.Join(examples, "sipd", "sipd.c")},
		{"cc", "-O2", "-shared", "-fPIC", "-I", filepath.Join(examples, "..", "include"), "-o", fix, filepath.Join(examples, "sipd", "fix-invite.c")},
	}
	for _, b := range builds {
		say("   %s", strings.Join(b, " "))
		if out, err := exec.Command(b[0], b[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", b[0], err, strings.TrimSpace(string(out)))
		}
	}
	if cluster {
		return runClusterDemo(a, work, sipd, fix)
	}

	cmd := exec.Command(sipd, "-t", "4")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting sipd: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	svc := &demoService{cmd: cmd, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			svc.lines <- sc.Text()
		}
		close(svc.lines)
	}()
	pid := cmd.Process.Pid
	show := func(n int) error {
		for i := 0; i < n; i++ {
			l, err := svc.next(5 * time.Second)
			if err != nil {
				return err
			}
			say("   %s", l)
		}
		return nil
	}

	say("== sipd runs (pid %d) with a bug: it accepts INVITEs longer than max_len (oversize_accepted grows)", pid)
	if err := show(2); err != nil {
		return err
	}
	say("== lpctl patch apply --pid %d fix-invite.so", pid)
	res, err := engine.Apply(context.Background(), pid, fix, engine.Options{})
	if err != nil {
		return err
	}
	say("   applied %s: %s; sipd was stopped for %v", res.Patch.ID, describeFuncs(res.Patch.Funcs), res.Pause.Round(time.Microsecond))
	say("== sipd keeps running, now version 2: oversize_accepted stops growing, rejected grows")
	if err := show(3); err != nil {
		return err
	}
	say("== lpctl patch list --pid %d", pid)
	ps, err := engine.List(pid)
	if err != nil {
		return err
	}
	for _, p := range ps {
		say("   %s %s (%s)", p.ID, p.State, p.Description)
	}
	say("== lpctl patch revert --pid %d %s", pid, res.Patch.ID)
	rv, err := engine.Revert(context.Background(), pid, res.Patch.ID, false, engine.Options{})
	if err != nil {
		return err
	}
	say("   reverted %s; sipd was stopped for %v", strings.Join(rv.Reverted, ", "), rv.Pause.Round(time.Microsecond))
	say("== the original code runs again (oversize_accepted grows; version stays 2: the patch's initialiser set it)")
	if err := show(2); err != nil {
		return err
	}
	say("== done: sipd was never restarted. The cluster walk-through is in README.md.")
	return nil
}
