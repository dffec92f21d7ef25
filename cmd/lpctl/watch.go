package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"lp/cluster/api"
	"lp/fsm"
)

// isTerminal reports whether w is a terminal: the live views redraw there
// and print plain lines everywhere else (pipes, files, CI logs).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// membersEvery is how often the views ask an lpd without blocking queries
// for member health, which costs lpd a round of questions to every node.
const membersEvery = time.Second

// watcher follows one plan and renders it: new history events as lines,
// plus either a live block redrawn in place (a terminal) or a progress
// line at phase changes and every few seconds of a trial (anything else),
// so that a log never goes silent during a trial.
type watcher struct {
	a    *app
	live bool
	now  func() time.Time

	lastSeq     uint64
	members     map[string]api.Member
	drawn       int // lines of the live block on screen
	lastPhase   string
	lastStatus  time.Time
	lastWaiting string
}

func (a *app) newWatcher() *watcher {
	return &watcher{a: a, live: a.tty || isTerminal(a.stdout), now: time.Now}
}

// setMembers keeps the latest member list for the health columns.
func (w *watcher) setMembers(ms []api.Member) {
	w.members = make(map[string]api.Member, len(ms))
	for _, m := range ms {
		w.members[m.Node] = m
	}
}

// show renders the plan (again: it is called at every change and every
// tick of the countdown).
func (w *watcher) show(d api.PlanDetail) {
	out := w.a.stdout
	w.clear()
	for _, e := range d.History {
		if e.Seq > w.lastSeq {
			fmt.Fprintln(out, eventLine(e))
			w.lastSeq = e.Seq
		}
	}
	if w.live {
		block := w.block(d)
		fmt.Fprint(out, block)
		w.drawn = strings.Count(block, "\n")
		return
	}
	if _, done := planExit(d.Plan.State); done {
		return
	}
	key := string(d.Plan.State) + " " + phase(d.Plan)
	interval := progressInterval(d.Plan.Spec.Trial)
	if key != w.lastPhase || (d.Plan.Phase.Trial() && w.now().Sub(w.lastStatus) >= interval) {
		fmt.Fprintln(out, w.progressLine(d))
		w.lastPhase, w.lastStatus = key, w.now()
	}
	if d.Waiting != w.lastWaiting {
		if d.Waiting != "" {
			fmt.Fprintln(out, waitingLine(w.now(), d))
		}
		w.lastWaiting = d.Waiting
	}
}

// waitingLine is the plain line that says why a plan waits (printed when
// the reason changes, never at every poll).
func waitingLine(now time.Time, d api.PlanDetail) string {
	return fmt.Sprintf("%s plan %s waiting: %s", now.Local().Format("15:04:05.000"), d.Plan.ID, d.Waiting)
}

// clear erases the live block before new lines are printed.
func (w *watcher) clear() {
	if w.live && w.drawn > 0 {
		fmt.Fprintf(w.a.stdout, "\x1b[%dA\x1b[J", w.drawn)
		w.drawn = 0
	}
}

// progressInterval is how often a plain progress line is printed during a
// trial: a fifth of the trial, between 1s and 5s.
func progressInterval(trial time.Duration) time.Duration {
	return min(max(trial/5, time.Second), 5*time.Second)
}

// trialLeft says how long the current trial still runs, or "".
func (w *watcher) trialLeft(p fsm.Plan) string {
	if !p.Phase.Trial() || p.PhaseDeadline.IsZero() || p.State != fsm.PlanRunning {
		return ""
	}
	left := max(p.PhaseDeadline.Sub(w.now()), 0)
	return fmt.Sprintf("trial %s left", left.Round(100*time.Millisecond))
}

// progressLine is the one-line form: state, phase, trial time left and
// each plan node's health, patches and engine pause (once it has one).
func (w *watcher) progressLine(d api.PlanDetail) string {
	p := d.Plan
	var b strings.Builder
	fmt.Fprintf(&b, "%s plan %s %s %s", w.now().Local().Format("15:04:05.000"), p.ID, p.State, phase(p))
	if t := w.trialLeft(p); t != "" {
		fmt.Fprintf(&b, ", %s", t)
	}
	b.WriteString(":")
	for _, n := range d.Nodes {
		fmt.Fprintf(&b, " %s=%s/%s[%s]", n.Node, n.Status, w.health(n.Node), ids(n.Observed))
		if n.ApplyPause > 0 || n.RevertPause > 0 {
			fmt.Fprintf(&b, "(pause %s)", pauses(n))
		}
	}
	return b.String()
}

func (w *watcher) health(node string) string {
	m, ok := w.members[node]
	switch {
	case !ok:
		return "unknown"
	case m.FailingCheck != "":
		return m.Health + " (" + m.FailingCheck + ")"
	}
	return m.Health
}

// block is the live view: the plan's state and phase, the trial countdown
// and one row per plan node (with its engine pause: how long the engine
// kept its target stopped to apply, and to revert, the plan's patch).
func (w *watcher) block(d api.PlanDetail) string {
	p := d.Plan
	var b strings.Builder
	fmt.Fprintf(&b, "\nplan %s (%s)  %s  %s", p.ID, p.Spec.Name, p.State, phase(p))
	if t := w.trialLeft(p); t != "" {
		fmt.Fprintf(&b, "  %s", t)
	}
	b.WriteString("\n")
	if d.Waiting != "" {
		fmt.Fprintf(&b, "waiting: %s\n", d.Waiting)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tPAIR\tSIDE\tSTEP\tSTATUS\tHEALTH\tOBSERVED\tPAUSE\tERROR")
	for _, n := range d.Nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.Pair, n.Side, step(p, n.Node), n.Status, w.health(n.Node), ids(n.Observed), pauses(n), dash(n.Error))
	}
	tw.Flush()
	return b.String()
}

// step says where a plan node is: waiting, applying, in trial, passed,
// rolled back.
func step(p fsm.Plan, node string) string {
	for _, s := range p.Steps {
		if s.Node != node {
			continue
		}
		switch {
		case !s.RolledBack.IsZero():
			return "rolled back"
		case !s.TrialPassed.IsZero():
			return "passed"
		case !s.TrialStarted.IsZero():
			return "in trial"
		case !s.Applied.IsZero():
			return "applying"
		}
		return "waiting"
	}
	return "-"
}
