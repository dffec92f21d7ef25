package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"lp/cluster/api"
	"lp/config"
	"lp/fsm"
	"lp/internal/auth"
)

// hookMarker is the file under data_dir that holds the role epoch whose hook
// this node last started. It is written before the hook starts, so a hook
// runs at most once per role change even when lpd dies while it runs (the
// restarted agent then reports it as not run again); the FSM's HookEpoch
// records that the report reached the cluster.
const hookMarker = "hook-epoch"

// hookState is the agent's part that runs hooks and role probes. Hooks and
// probes run on goroutines of their own (a slow hook must not stop patch
// reconciliation); their results come back on channels the agent drains.
type hookState struct {
	busy     bool                // a hook runs
	results  chan api.HookReport // finished hooks
	pending  *api.HookReport     // to report, retried until it is accepted
	lastSent time.Time
	reported uint64 // the last epoch reported (the replica may lag behind)

	probeBusy    bool
	probeResults chan probeResult
	lastProbe    time.Time
	lastRoleSent time.Time
}

type probeResult struct {
	role string // active or standby; "" when the output is neither
	out  string
	err  error
}

func newHookState() hookState {
	return hookState{results: make(chan api.HookReport, 1), probeResults: make(chan probeResult, 1)}
}

// owedHook returns the hook a node owes for its last role change: on_promote
// when it became active, on_demote when it stopped being active, "" else.
// Only the last change counts: a node that missed several (its agent was
// down) runs the hook of where it is now, relative to where it was before.
func owedHook(self fsm.Node) string {
	switch {
	case self.Role == fsm.RoleActive && self.PrevRole != fsm.RoleActive:
		return "on_promote"
	case self.PrevRole == fsm.RoleActive && self.Role != fsm.RoleActive:
		return "on_demote"
	}
	return ""
}

// hooks runs the hook owed for this node's last role change, once, and
// reports it through the leader. Called from the agent goroutine.
func (a *agent) hooks(ctx context.Context, self fsm.Node) {
	n, h := a.n, &a.hook
	select {
	case r := <-h.results:
		h.busy, h.pending = false, &r
	default:
	}
	if h.pending != nil {
		if time.Since(h.lastSent) < 500*time.Millisecond {
			return
		}
		h.lastSent = time.Now()
		_, err := n.commit(ctx, auth.Identity{}, hookCommand(*h.pending))
		if err != nil && !isConflict(err) {
			n.log.Warn("reporting hook", "epoch", h.pending.Epoch, "err", err)
			return
		}
		h.reported, h.pending = h.pending.Epoch, nil
		return
	}
	if h.busy || self.External() || self.RoleEpoch <= self.HookEpoch || self.RoleEpoch <= h.reported {
		return
	}
	epoch := self.RoleEpoch
	hook := owedHook(self)
	report := api.HookReport{Node: n.name, Epoch: epoch, Hook: hook, OK: true}
	command := ""
	switch hook {
	case "on_promote":
		command = n.cfg.Node.OnPromote
	case "on_demote":
		command = n.cfg.Node.OnDemote
	}
	marker := filepath.Join(n.cfg.Node.DataDir, hookMarker)
	if started := readMarker(marker); started >= epoch {
		report.OK, report.Skipped = false, true
		report.Output = fmt.Sprintf("it was started before lpd restarted (%s says role change %d); not run again", hookMarker, started)
		n.log.Warn("hook already started before a restart; not run again", "hook", hook, "epoch", epoch)
		h.pending = &report
		return
	}
	if hook == "" || command == "" {
		if hook != "" {
			report.Output = "no " + hook + " configured"
		}
		h.pending = &report
		return
	}
	if err := writeMarker(marker, epoch); err != nil {
		// Running it matters more than the protection against running
		// it twice after a crash.
		n.log.Warn("recording hook start", "err", err)
	}
	h.busy = true
	env := []string{"LP_NODE=" + n.name, "LP_PAIR=" + self.Pair, "LP_ROLE=" + string(self.Role),
		"LP_OLD_ROLE=" + string(self.PrevRole), "LP_ROLE_EPOCH=" + strconv.FormatUint(epoch, 10)}
	n.log.Info("running hook", "hook", hook, "epoch", epoch, "role", self.Role, "old_role", self.PrevRole)
	n.goRun(func() {
		ok, out := runHook(n.ctx, n, hook, command, env, n.cfg.HookTimeout)
		n.metrics.hookRun(hook, ok)
		report.OK, report.Output = ok, out
		h.results <- report
		n.changed.Notify()
	})
}

// runHook runs command through sh -c with env added, logs its output line
// by line and returns its success and its last output line (or why it
// failed).
func runHook(ctx context.Context, n *Node, hook, command string, env []string, timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Output goes to a file, not a pipe: a hook that starts a daemon in
	// the background (which keeps the descriptor) must not hold us up.
	out, err := os.CreateTemp("", "lp-hook-*.out")
	if err != nil {
		return false, fmt.Sprintf("creating the hook's output file: %v", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err = cmd.Run()
	if _, serr := out.Seek(0, io.SeekStart); serr != nil {
		n.log.Warn("reading hook output", "err", serr)
	}
	last := ""
	sc := bufio.NewScanner(io.LimitReader(out, 1<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		n.log.Info("hook output", "hook", hook, "line", fsm.ClipLine(line, 400))
		if strings.TrimSpace(line) != "" {
			last = line
		}
	}
	last = fsm.ClipLine(last, 400)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("killed after %v", timeout)
		}
		n.log.Warn("hook failed", "hook", hook, "err", err, "took", took)
		if last != "" {
			return false, err.Error() + ": " + last
		}
		return false, err.Error()
	}
	n.log.Info("hook finished", "hook", hook, "took", took)
	return true, last
}

func readMarker(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// writeMarker writes the epoch durably (write to a temporary file, sync,
// rename).
func writeMarker(path string, epoch uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", epoch)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// probeRole runs role_probe on a node with external roles every
// RoleProbeInterval and reports a role that differs from the replica's.
// Called from the agent goroutine.
func (a *agent) probeRole(ctx context.Context, self fsm.Node) {
	n, h := a.n, &a.hook
	if n.cfg.Node.Roles != config.RolesExternal || n.cfg.Node.RoleProbe == "" || self.Pair == "" {
		return
	}
	select {
	case r := <-h.probeResults:
		h.probeBusy = false
		switch {
		case r.err != nil:
			n.log.Warn("role probe failed", "err", r.err, "output", r.out)
		case r.role == "":
			n.log.Warn("role probe printed neither active nor standby", "output", r.out)
		case fsm.Role(r.role) != self.Role && time.Since(h.lastRoleSent) >= 500*time.Millisecond:
			h.lastRoleSent = time.Now()
			rep := api.RoleReport{Node: n.name, Role: r.role, Output: r.out}
			if _, err := n.commit(ctx, auth.Identity{}, roleCommand(rep)); err != nil {
				n.log.Warn("reporting probed role", "role", r.role, "err", err)
			} else {
				n.log.Info("probed role reported", "role", r.role, "was", self.Role)
			}
		}
	default:
	}
	if h.probeBusy || time.Since(h.lastProbe) < n.cfg.RoleProbeInterval {
		return
	}
	h.probeBusy, h.lastProbe = true, time.Now()
	probe, timeout := n.cfg.Node.RoleProbe, n.cfg.RoleProbeInterval
	n.goRun(func() {
		h.probeResults <- runProbe(n.ctx, probe, timeout)
		n.changed.Notify()
	})
}

// runProbe runs the role probe; its first output word is the role.
func runProbe(ctx context.Context, probe string, timeout time.Duration) probeResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", probe)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 200 * time.Millisecond
	out, err := cmd.Output()
	text := fsm.ClipLine(strings.TrimSpace(string(out)), 200)
	if err != nil {
		return probeResult{out: text, err: fmt.Errorf("role_probe: %w", err)}
	}
	return probeResult{role: parseProbe(text), out: text}
}

// parseProbe returns "active" or "standby" when the probe's output says
// so (its first word, any case), "" otherwise.
func parseProbe(out string) string {
	f := strings.Fields(out)
	if len(f) == 0 {
		return ""
	}
	switch w := strings.ToLower(f[0]); w {
	case string(fsm.RoleActive), string(fsm.RoleStandby):
		return w
	}
	return ""
}
