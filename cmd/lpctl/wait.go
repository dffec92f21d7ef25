package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"lp/cluster/api"
	"lp/fsm"
	"lp/heartbeat"
)

// exitTimeout is the status of lpctl wait when its condition did not hold
// before --timeout.
const exitTimeout = 1

func waitCommand(a *app) *cobra.Command {
	var (
		leader  bool
		members int
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "wait --leader [--members N] [--timeout D]",
		Short: "Wait until the cluster is ready: a raft leader known to this lpd, N healthy members",
		Long: `Wait until the cluster is ready for writes, for scripts and walk-throughs:

  --leader     the lpd at --addr answers and knows a raft leader it can
               forward writes to
  --members N  and at least N members are registered, alive and healthy

Exit 0 once every condition holds, 1 with the last reason after --timeout.`,
		Example: "  lpctl wait --leader --members 3 --timeout 60s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !leader && members == 0 {
				return errors.New("wait: say what to wait for: --leader and/or --members N")
			}
			if timeout <= 0 {
				return fmt.Errorf("bad --timeout %v: want a positive duration", timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := a.waitReady(ctx, leader, members)
			if err != nil {
				return &exitError{code: exitTimeout, msg: fmt.Sprintf("not ready after %v: %v", timeout, err)}
			}
			if a.output == "json" {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "ready: leader %s\n", st.Leader)
			return nil
		},
	}
	c.Flags().BoolVar(&leader, "leader", false, "wait for a raft leader")
	c.Flags().IntVar(&members, "members", 0, "wait for at least N alive and healthy members")
	c.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	return c
}

// waitReady follows the status (and the members) in blocking queries until
// the conditions hold or ctx ends; the error then says which condition did
// not hold last.
func (a *app) waitReady(ctx context.Context, leader bool, members int) (api.Status, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl := a.client()
	statuses := follow(ctx, pollInterval, cl.StatusWait)
	var (
		memberLists <-chan answer[[]api.Member]
		st          api.Status
		ms          []api.Member
		haveSt      bool
		haveMs      = members == 0
		last        = errors.New("no answer yet")
	)
	if members > 0 {
		memberLists = follow(ctx, pollInterval, cl.MembersWait)
	}
	for {
		select {
		case <-ctx.Done():
			return st, last
		case u := <-statuses:
			if u.err != nil {
				last = u.err
				continue
			}
			st, haveSt = u.v, true
		case u := <-memberLists:
			if u.err != nil {
				last = u.err
				continue
			}
			ms, haveMs = u.v, true
		}
		if !haveSt || !haveMs {
			continue
		}
		if last = readiness(st, ms, leader, members); last == nil {
			return st, nil
		}
	}
}

// readiness says which condition does not hold, or nil.
func readiness(st api.Status, ms []api.Member, leader bool, members int) error {
	if leader && (st.Leader == "" || st.LeaderAPI == "") {
		return errors.New("no raft leader yet")
	}
	if members > 0 {
		ready := 0
		for _, m := range ms {
			if m.Status == string(fsm.StatusAlive) && m.Health == heartbeat.HealthHealthy {
				ready++
			}
		}
		if ready < members {
			return fmt.Errorf("%d of %d members alive and healthy", ready, members)
		}
	}
	return nil
}
