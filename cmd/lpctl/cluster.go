package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lp/cluster/api"
	"lp/fsm"
)

func rollbackCommand(a *app) *cobra.Command {
	var wait bool
	c := &cobra.Command{
		Use:   "rollback [ID]",
		Short: "Roll every node of a plan (default: the latest) back to its pre-plan patches",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl := a.client()
			var (
				r   api.ActionResponse
				err error
			)
			if len(args) == 1 {
				r, err = cl.PlanAction(ctx, args[0], "rollback")
			} else {
				r, err = cl.Rollback(ctx)
			}
			if err != nil {
				return err
			}
			if !wait {
				if a.output == "json" {
					return a.printJSON(r)
				}
				fmt.Fprintln(a.stdout, r.Message)
				return nil
			}
			if a.output != "json" {
				fmt.Fprintln(a.stdout, r.Message)
			}
			d, err := a.waitRolledBack(ctx, r.Plan)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(d)
			}
			fmt.Fprintf(a.stdout, "plan %s rolled back; every live node runs its pre-plan patches\n", r.Plan)
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait until every node is back on its pre-plan patches")
	return c
}

// waitRolledBack waits until the plan is rolled back and every live plan
// node runs its pre-plan stack; in text output it prints a line each time a
// node's progress changes.
func (a *app) waitRolledBack(ctx context.Context, id string) (api.PlanDetail, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := a.client()
	plans := follow(ctx, pollInterval, func(ctx context.Context, q api.QueryOptions) (api.PlanDetail, api.QueryMeta, error) {
		return c.PlanWait(ctx, id, q)
	})
	errs := 0
	seen := map[string]string{}
	lastWaiting := ""
	var d api.PlanDetail
	for {
		var u answer[api.PlanDetail]
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case u = <-plans:
		}
		if u.err != nil {
			if errs++; errs > 50 {
				return d, u.err
			}
			continue
		}
		errs, d = 0, u.v
		if a.output != "json" {
			for _, n := range d.Nodes {
				if line := rollbackProgress(n); seen[n.Node] != line {
					seen[n.Node] = line
					fmt.Fprintf(a.stdout, "%s %s\n", time.Now().Local().Format("15:04:05.000"), line)
				}
			}
			if d.Waiting != lastWaiting {
				if d.Waiting != "" {
					fmt.Fprintln(a.stdout, waitingLine(time.Now(), d))
				}
				lastWaiting = d.Waiting
			}
		}
		switch d.Plan.State {
		case fsm.PlanFailed:
			return d, &exitError{code: exitFailed, msg: fmt.Sprintf("plan %s failed while rolling back: %s", id, d.Plan.Reason)}
		case fsm.PlanRolledBack:
			done := true
			for _, n := range d.Nodes {
				if n.Status == string(fsm.StatusAlive) && !n.AtPreState {
					done = false
				}
			}
			if done {
				return d, nil
			}
		}
	}
}

// rollbackProgress says where one node is in a rollback.
func rollbackProgress(n api.PlanNode) string {
	head := fmt.Sprintf("%s (%s %s):", n.Node, n.Pair, n.Side)
	switch {
	case n.Status != string(fsm.StatusAlive):
		return fmt.Sprintf("%s %s; converges to its pre-plan patches [%s] when it is back", head, n.Status, ids(n.PreState))
	case n.AtPreState:
		return fmt.Sprintf("%s back on its pre-plan patches [%s]", head, ids(n.PreState))
	case n.Error != "":
		return fmt.Sprintf("%s runs [%s], want [%s]: %s", head, ids(n.Observed), ids(n.PreState), n.Error)
	}
	return fmt.Sprintf("%s runs [%s], reverting to [%s]", head, ids(n.Observed), ids(n.PreState))
}

func membersCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List cluster members: pair, role, raft state, gossip, health, last contact",
		Long: `List cluster members: pair, role, raft state, gossip state, health, the
leader's last contact and the failing health check with its last output line.
A role marked "(hook pending)" changed and its on_promote/on_demote has not
been reported yet; "(external)" roles come from the node's role_probe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := a.client().Members(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(ms)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tPAIR\tROLE\tRAFT\tGOSSIP\tHEALTH\tLAST CONTACT\tFAILING CHECK")
			for _, m := range ms {
				pair := m.Pair
				if pair == "" {
					pair = "-"
				}
				failing := "-"
				if m.FailingCheck != "" {
					failing = m.FailingCheck
					if m.CheckOutput != "" {
						failing += ": " + m.CheckOutput
					}
				}
				role := m.Role
				switch {
				case m.Roles == "external":
					role += " (external)"
				case m.HookPending:
					role += " (hook pending)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Node, pair, role, m.RaftState, m.Gossip, m.Health, m.LastContact, failing)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, m := range ms {
				if m.Peer != "" {
					line := fmt.Sprintf("%s: peer_health says its peer's service is %s", m.Node, m.Peer)
					if m.PeerCheck != "" {
						line += " (" + m.PeerCheck + ")"
					}
					fmt.Fprintln(a.stdout, line)
				}
				if m.Failover != "" {
					fmt.Fprintf(a.stdout, "%s: %s\n", m.Node, m.Failover)
				}
			}
			// Nodes that disagree on the heartbeat timing suspect and
			// declare each other dead at different speeds: say so.
			for _, m := range ms {
				if m.TimingMismatch {
					fmt.Fprintf(a.stdout, "warning: %s runs heartbeat timing %s, unlike the node asked; every node should have the same heartbeat: in lpd.yaml\n", m.Node, m.Timing)
				}
			}
			return nil
		},
	}
	cmd.AddCommand(membersRemoveCommand(a))
	return cmd
}

func membersRemoveCommand(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove NODE from the cluster for good: raft configuration and replicated state",
		Long: `Remove a node that is gone for good (a dead server that stays in the raft
configuration counts against the quorum). Its desired and observed patch
state is dropped with it. Refused for the raft leader, for the active of a
pair (promote its standby first), for a node in an unfinished plan, and for
a node still alive in gossip unless --force (a running lpd that is removed
joins again: stop it first). lp never removes a dead server by itself.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.client().RemoveMember(cmd.Context(), args[0], force)
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
	cmd.Flags().BoolVar(&force, "force", false, "remove the node even though it is alive in gossip")
	return cmd
}

func statusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this lpd's raft status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(s)
			}
			leader := s.Leader
			if leader == "" {
				leader = "(none)"
			}
			fmt.Fprintf(a.stdout, "node:       %s\nraft state: %s\nleader:     %s %s\nterm:       %d\nlast index: %d\ncommitted:  %d\napplied:    %d\nplans:      %d\n",
				s.Node, s.RaftState, leader, s.LeaderAPI, s.Term, s.LastIndex, s.CommitIndex, s.AppliedIndex, s.Plans)
			return nil
		},
	}
}

func promoteCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "promote NODE",
		Short: "Switch NODE's pair over: demote the active (on_demote), then promote NODE (on_promote)",
		Long: `Manual switchover of a pair with managed roles. When the active is alive it
is demoted first and NODE is promoted once the active's on_demote hook has
finished (or after the handover timeout); when the active is dead NODE is
promoted at once and the old active runs on_demote when it returns.
Refused for a witness, a node with external roles, a node that is not alive
and healthy, and while a plan is working on the pair.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.client().Promote(cmd.Context(), args[0])
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
