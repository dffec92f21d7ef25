package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lp/cluster/api"
	"lp/config"
	"lp/fsm"
	"lp/internal/auth"
	"lp/signing"
)

// Exit statuses of plan submit --wait and plan watch.
const (
	exitCompleted  = 0
	exitRolledBack = 2
	exitFailed     = 3
	exitStopped    = 4 // paused or aborted
)

// pollInterval is how often --wait and watch ask an lpd that does not
// answer blocking queries, and how often the live view is redrawn.
const pollInterval = 200 * time.Millisecond

// client is the API client of --addr with --ca, --cert, --key and --token.
// A TLS file that cannot be loaded is reported by the first request (the
// client then fails every request with that one line).
func (a *app) client() *api.Client {
	c := api.NewClient(a.addr)
	c.Token = a.token
	if strings.HasPrefix(c.Base, "https://") || a.ca != "" || a.cert != "" {
		conf, err := auth.ClientFiles(a.ca, a.cert, a.key)
		if err != nil {
			c.HTTP.Transport = failingTransport{err}
			return c
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = conf
		c.HTTP.Transport = t
	}
	return c
}

// failingTransport fails every request with err.
type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func planCommand(a *app) *cobra.Command {
	c := &cobra.Command{Use: "plan", Short: "Submit and follow cluster-wide patch plans"}
	c.AddCommand(planSubmitCommand(a), planListCommand(a), planShowCommand(a), planWatchCommand(a))
	for _, action := range []string{"pause", "resume", "abort"} {
		c.AddCommand(planActionCommand(a, action))
	}
	return c
}

func planSubmitCommand(a *app) *cobra.Command {
	var wait bool
	c := &cobra.Command{
		Use:   "submit FILE",
		Short: "Submit a plan file and its patch module; prints the plan id",
		Long: `Submit a plan file and the patch module it names; prints the plan id.

The plan file (YAML; every key in docs/config.md, "Plan file"):

  name: fix-invite-overflow     # required; [A-Za-z0-9._-]{1,64}
  patch: fix.so                 # required; path relative to this file; lpctl
                                # sends its bytes (and fix.so.sig if present)
  target: sipd                  # required; a name from the nodes' targets
  pairs: [sip-1, sip-2]         # default: every pair
  trial: 30s                    # each patched node is watched this long
  health:                       # checks run on each patched node in its trial:
    - exec: /usr/local/bin/check-sip   # one of exec, tcp, http, process
      interval: 1s
      failures: 3
  on_failure: rollback          # rollback (default) | pause
  failover_during_trial: rollback-first   # (default) | keep-patch
  progress_deadline: 10m        # the whole plan; must exceed trial

Pairs are patched one at a time, the standby first: standby apply, standby
trial, active apply, active trial. A node that dies, fails a health check,
loses its target process or fails to apply during the plan triggers
on_failure.

With --wait, follow the plan as "plan watch" does: on a terminal a live view
(phase, trial time left, each node's health and patches), else one line per
event and a progress line every few seconds of a trial. Exit 0 completed,
2 rolled back, 3 failed, 4 paused or aborted.`,
		Example: "  lpctl plan submit examples/plan.yaml --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := readSubmission(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			res, err := a.client().Submit(ctx, req)
			if err != nil {
				return err
			}
			if !wait {
				if a.output == "json" {
					return a.printJSON(res)
				}
				fmt.Fprintln(a.stdout, res.ID)
				return nil
			}
			if a.output != "json" {
				fmt.Fprintln(a.stdout, res.ID)
			}
			return a.watch(ctx, res.ID)
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "follow the plan; exit 0 completed, 2 rolled back, 3 failed, 4 paused or aborted")
	return c
}

// readSubmission reads and validates a plan file and reads its module.
func readSubmission(path string) (api.SubmitRequest, error) {
	plan, err := config.LoadPlan(path)
	if err != nil {
		return api.SubmitRequest{}, err
	}
	data, err := readPlanModule(plan.PatchPath)
	if err != nil {
		return api.SubmitRequest{}, fmt.Errorf("%s: patch: %w", path, err)
	}
	pj, err := json.Marshal(plan)
	if err != nil {
		return api.SubmitRequest{}, fmt.Errorf("encoding plan: %w", err)
	}
	sum := sha256.Sum256(data)
	req := api.SubmitRequest{Plan: pj, ModuleName: filepath.Base(plan.PatchPath), Module: data, SHA256: hex.EncodeToString(sum[:])}
	// MODULE.sig beside the module goes along; lpd decides whether it
	// needs one (trusted_keys).
	if req.Signature, err = readSignature(plan.PatchPath + signing.SigSuffix); err != nil {
		return api.SubmitRequest{}, fmt.Errorf("%s: patch: %w", path, err)
	}
	return req, nil
}

// readPlanModule reads a plan's patch module, refusing one over the cap before reading
// it (and one that grows past it while being read).
func readPlanModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	tooBig := func(size int64) error {
		return fmt.Errorf("%s is %d bytes; the limit is %d (16 MiB)", path, size, fsm.MaxBlobSize)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > fsm.MaxBlobSize {
		return nil, tooBig(fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, fsm.MaxBlobSize+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if len(data) > fsm.MaxBlobSize {
		return nil, tooBig(int64(len(data)))
	}
	return data, nil
}

// unwrapPath keeps "open X: no such file or directory" as one short line.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func planListCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List plans",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plans, err := a.client().Plans(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(plans)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tPATCH\tTARGET\tSTATE\tPHASE\tSUBMITTED\tWAITING")
			for _, d := range plans {
				p := d.Plan
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Spec.Name, p.Spec.PatchID, p.Spec.Target, p.State,
					phase(p), p.Spec.SubmittedAt.Local().Format(time.DateTime), cmp.Or(d.Waiting, "-"))
			}
			return tw.Flush()
		},
	}
}

// phase is the plan's pair and phase (where a rollback started, while it
// rolls back); "-" before it starts and once it has ended.
func phase(p fsm.Plan) string {
	if p.Phase == "" || p.State.Terminal() {
		return "-"
	}
	return p.PhaseString()
}

func planShowCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a plan: spec, state, nodes and history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.client().Plan(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(d)
			}
			printPlan(a.stdout, d)
			return nil
		},
	}
}

func printPlan(w io.Writer, d api.PlanDetail) {
	p := d.Plan
	fmt.Fprintf(w, "plan %s (%s)\n", p.ID, p.Spec.Name)
	fmt.Fprintf(w, "  patch:    %s (sha256 %s)\n", p.Spec.PatchID, p.Spec.PatchSHA256)
	if p.Spec.SignedBy != "" {
		fmt.Fprintf(w, "  signed:   by %s\n", p.Spec.SignedBy)
	}
	fmt.Fprintf(w, "  target:   %s\n  pairs:    %s\n  trial:    %v\n  on fail:  %s\n", p.Spec.Target, strings.Join(p.Spec.Pairs, ", "), p.Spec.Trial, p.Spec.OnFailure)
	if p.Spec.SubmittedBy != "" {
		fmt.Fprintf(w, "  by:       %s\n", p.Spec.SubmittedBy)
	}
	if e := engineOptions(p.Spec); e != "" {
		fmt.Fprintf(w, "  engine:   %s\n", e)
	}
	fmt.Fprintf(w, "  state:    %s\n  phase:    %s\n", p.State, phase(p))
	if p.Reason != "" {
		fmt.Fprintf(w, "  reason:   %s\n", p.Reason)
	}
	if d.Waiting != "" {
		fmt.Fprintf(w, "waiting: %s\n", d.Waiting)
	}
	fmt.Fprintln(w, "nodes:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tPAIR\tSIDE\tSTATUS\tDESIRED\tOBSERVED\tPID\tPAUSE\tCONVERGED\tERROR")
	for _, n := range d.Nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\n", n.Node, n.Pair, n.Side, n.Status, ids(n.Desired), ids(n.Observed), pids(n), pauses(n), n.Converged, dash(n.Error))
	}
	tw.Flush()
	if pending := pendingNodes(d); pending != "" {
		fmt.Fprintf(w, "pending rollback: %s\n", pending)
	}
	for _, n := range d.Nodes {
		if len(n.Unmanaged) > 0 {
			fmt.Fprintf(w, "unmanaged on %s: %s (applied by hand; lp leaves them alone)\n", n.Node, ids(n.Unmanaged))
		}
	}
	fmt.Fprintln(w, "history:")
	if len(d.History) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, e := range d.History {
		fmt.Fprintf(w, "  %s\n", eventLine(e))
	}
}

// pids renders a node's target process: its pid, or with match: all every
// matching pid, the ones not at the desired stack marked with *.
func pids(n api.PlanNode) string {
	if len(n.Processes) == 0 {
		return strconv.Itoa(n.Pid)
	}
	parts := make([]string, len(n.Processes))
	for i, p := range n.Processes {
		parts[i] = strconv.Itoa(p.Pid)
		if !slices.Equal(p.Active, n.Desired) || p.Error != "" {
			parts[i] += "*"
		}
	}
	return strings.Join(parts, ",")
}

// engineOptions renders the engine options a plan sets ("" when it sets
// none: the engine's defaults).
func engineOptions(s fsm.PlanSpec) string {
	var parts []string
	if s.Mode != "" {
		parts = append(parts, "mode "+s.Mode)
	}
	if s.Consistency != "" {
		parts = append(parts, "consistency "+s.Consistency)
	}
	if s.ApplyTimeout > 0 {
		parts = append(parts, "apply_timeout "+s.ApplyTimeout.String())
	}
	return strings.Join(parts, ", ")
}

// pauses renders how long a node's target was stopped applying the plan's
// patch, and reverting it when the plan rolled back ("-": not measured).
func pauses(n api.PlanNode) string {
	s := pauseString(n.ApplyPause)
	if n.RevertPause > 0 {
		s += " (revert " + pauseString(n.RevertPause) + ")"
	}
	return s
}

func pauseString(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// pendingNodes names the nodes a rolling-back (or failed) plan still waits
// for, and when each was last seen; "" when none.
func pendingNodes(d api.PlanDetail) string {
	var out []string
	for _, n := range d.Nodes {
		if n.Pending {
			out = append(out, fmt.Sprintf("%s (%s, last seen %s)", n.Node, n.Status, n.LastSeen.Local().Format("15:04:05")))
		}
	}
	return strings.Join(out, ", ")
}

func ids(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func eventLine(e fsm.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-12s", e.Time.Local().Format("15:04:05.000"), e.Kind)
	if e.Node != "" {
		fmt.Fprintf(&b, " %s", e.Node)
	} else if e.Pair != "" {
		fmt.Fprintf(&b, " %s", e.Pair)
	}
	switch {
	case e.From != "" && e.To != "":
		fmt.Fprintf(&b, " %s -> %s", e.From, e.To)
	case e.To != "":
		fmt.Fprintf(&b, " %s", e.To)
	}
	if e.Pause > 0 {
		fmt.Fprintf(&b, " paused %s", pauseString(e.Pause))
	}
	if e.Cause != "" {
		fmt.Fprintf(&b, " (%s)", e.Cause)
	}
	return b.String()
}

func planWatchCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a plan until it ends; exit 0 completed, 2 rolled back, 3 failed, 4 paused or aborted",
		Long: `Follow a plan until it stops moving. On a terminal: a live view redrawn in
place (state, phase, trial time left, each node's step, status, health,
observed patches and engine pause) under the plan's events. Otherwise (a pipe, a file, CI):
one line per event and a progress line at each phase change and every few
seconds of a trial. Why the plan waits, when it does not move ("waiting:
node b1 is dead"), is shown in the live view and printed on a line of its
own each time it changes. -o json prints the final plan.

Exit 0 completed, 2 rolled back, 3 failed, 4 paused or aborted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.watch(cmd.Context(), args[0])
		},
	}
}

// watch follows a plan until it stops moving and returns the exit status
// that says how it ended: on a terminal a live view, else event and
// progress lines (see watcher). The plan and the members are followed by
// blocking queries (nothing is asked while nothing changes); the view is
// redrawn locally every pollInterval for the trial countdown.
func (a *app) watch(ctx context.Context, id string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := a.client()
	w := a.newWatcher()
	plans := follow(ctx, pollInterval, func(ctx context.Context, q api.QueryOptions) (api.PlanDetail, api.QueryMeta, error) {
		return c.PlanWait(ctx, id, q)
	})
	var members <-chan answer[[]api.Member]
	if a.output != "json" {
		members = follow(ctx, membersEvery, c.MembersWait)
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var (
		d           api.PlanDetail
		have        bool
		haveMembers = members == nil // the first view shows health
		errs        int
		lastPending string
	)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-plans:
			if u.err != nil {
				// Ride out a leader election: a few failed tries are normal.
				if errs++; errs > 50 {
					return u.err
				}
				continue
			}
			errs, d, have = 0, u.v, true
		case u := <-members:
			if u.err == nil {
				w.setMembers(u.v)
			}
			haveMembers = true
		case <-tick.C:
		}
		if !have || !haveMembers {
			continue
		}
		if a.output != "json" {
			w.show(d)
			if p := pendingNodes(d); !w.live && p != lastPending {
				if p != "" {
					fmt.Fprintf(a.stdout, "pending rollback: %s\n", p)
				}
				lastPending = p
			}
		}
		if code, done := planExit(d.Plan.State); done {
			if a.output == "json" {
				if err := a.printJSON(d); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "plan %s %s\n", id, d.Plan.State)
			}
			if code == 0 {
				return nil
			}
			msg := fmt.Sprintf("plan %s %s", id, d.Plan.State)
			if d.Plan.Reason != "" {
				msg += ": " + d.Plan.Reason
			}
			return &exitError{code: code, msg: msg}
		}
	}
}

// planExit maps a plan state to the exit status of --wait and watch, and
// whether the plan has stopped moving.
func planExit(s fsm.PlanState) (int, bool) {
	switch s {
	case fsm.PlanCompleted:
		return exitCompleted, true
	case fsm.PlanRolledBack:
		return exitRolledBack, true
	case fsm.PlanFailed:
		return exitFailed, true
	case fsm.PlanPaused, fsm.PlanAborted:
		return exitStopped, true
	}
	return 0, false
}

func planActionCommand(a *app, action string) *cobra.Command {
	return &cobra.Command{
		Use:   action + " ID",
		Short: strings.ToUpper(action[:1]) + action[1:] + " a plan",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.client().PlanAction(cmd.Context(), args[0], action)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(r)
			}
			fmt.Fprintln(a.stdout, r.Message)
			return nil
		},
	}
}
