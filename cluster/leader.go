package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/decide"
	"lp/fsm"
	"lp/heartbeat"
)

// leaderLoop starts the leader's work when this node gains leadership and
// cancels it when it loses it.
func (n *Node) leaderLoop() {
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stopLeading := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel, done = nil, nil
		}
	}
	defer stopLeading()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-n.raft.LeaderCh():
			stopLeading()
			if !isLeader {
				n.log.Info("lost leadership")
				continue
			}
			n.log.Info("gained leadership")
			ctx, c := context.WithCancel(n.ctx)
			cancel, done = c, make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				n.lead(ctx)
			}(done)
		}
	}
}

// lead runs while this node leads: a barrier first, so that the FSM holds
// every committed entry, then membership reconciliation and the
// orchestrator on every tick and every FSM or membership change.
func (n *Node) lead(ctx context.Context) {
	for {
		if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err == nil {
			break
		} else if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	n.trials.reset()
	t := time.NewTicker(n.cfg.LeaderInterval)
	defer t.Stop()
	lastMembers := time.Time{}
	lastPrune := time.Now() // not at once: a new leader has enough to do
	refused := map[string]time.Time{}
	for {
		wake := n.changed.C()
		if n.memberEvents.Swap(false) || time.Since(lastMembers) >= 250*time.Millisecond {
			n.reconcileMembers()
			lastMembers = time.Now()
		}
		n.orchestrate(ctx, refused)
		if time.Since(lastPrune) >= n.cfg.PruneInterval {
			n.prune()
			lastPrune = time.Now()
		}
		// Wake at the end of the earliest trial, when an active's
		// failover_after runs out, or a suspicion outlasts its bound,
		// rather than up to a tick after it.
		var (
			trialEnd <-chan time.Time
			timer    *time.Timer
			d        time.Time
			ok       bool
		)
		now := time.Now()
		n.fsm.View(func(s *fsm.State) { d, ok = decide.Wake(s, now) })
		// A deadline already past is the ticker's business: a step that
		// waits for something else after it must not spin this loop.
		if ok && time.Until(d) > 0 {
			timer = time.NewTimer(time.Until(d))
			trialEnd = timer.C
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-wake:
		case <-trialEnd:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// prune issues a Prune when the retention limits have something to drop.
func (n *Node) prune() {
	now := time.Now()
	var need bool
	n.fsm.View(func(s *fsm.State) { need = s.NeedsPrune(n.cfg.Retention, now) })
	if !need {
		return
	}
	res, err := n.apply(&fsm.Prune{Retention: n.cfg.Retention, Cause: "retention"})
	if err != nil {
		n.log.Warn("pruning the replicated state", "err", err)
		return
	}
	n.log.Debug("pruned the replicated state", "noop", res.Noop, "message", res.Message)
}

// reconcileMembers makes the raft configuration and the FSM's node status
// and health follow gossip: alive servers become voters and other nodes
// non-voters; nodes that left gracefully leave the raft configuration (dead
// ones stay: they may come back).
func (n *Node) reconcileMembers() {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	inRaft := map[string]raft.Server{}
	for _, s := range f.Configuration().Servers {
		inRaft[string(s.ID)] = s
	}
	members := n.ml.Members()
	var cmds []fsm.Command
	// known: nodes that registered over the authenticated API as servers
	// (with tls: a node certificate whose CommonName is the name). Only
	// they become voters; a gossip member that merely says server: true
	// stays a non-voter until it registers.
	known := map[string]bool{}
	now := time.Now()
	var deadVoters []string
	n.fsm.View(func(s *fsm.State) {
		for name, nd := range s.Nodes {
			known[name] = nd.Server
			if cur, ok := inRaft[name]; ok && cur.Suffrage == raft.Voter && name != n.name &&
				nd.Status == fsm.StatusDead && !nd.DownSince.IsZero() && now.Sub(nd.DownSince) > n.cfg.DeadVoterTimeout {
				deadVoters = append(deadVoters, name)
			}
		}
		for _, m := range members {
			if node, ok := s.Nodes[m.Name]; ok {
				if st := memberStatus(m.State); st != node.Status {
					c := &fsm.SetNodeStatus{Node: m.Name, Status: st, Cause: "gossip: " + string(m.State)}
					if st == fsm.StatusSuspect {
						c.SuspectBound = n.cfg.Gossip.SuspectBound(len(members))
					}
					cmds = append(cmds, c)
				}
				if m.State == heartbeat.StateAlive {
					healthy := m.Meta.Health == heartbeat.HealthHealthy
					failing, out := "", ""
					if !healthy {
						failing, out = m.Meta.FailingCheck, m.Meta.Output
						if failing == "" {
							failing = "health " + m.Meta.Health
						}
					}
					if healthy != node.Healthy || failing != node.FailingCheck || out != node.CheckOutput {
						cmds = append(cmds, &fsm.SetNodeHealth{Node: m.Name, Healthy: healthy, FailingCheck: failing, CheckOutput: out})
					}
				}
			}
		}
	})
	for _, m := range members {
		if m.Name == n.name || m.Meta.Raft == "" {
			continue
		}
		cur, ok := inRaft[m.Name]
		switch m.State {
		case heartbeat.StateAlive:
			wantVoter := m.Meta.Server && known[m.Name]
			if ok && string(cur.Address) == m.Meta.Raft {
				isVoter := cur.Suffrage == raft.Voter
				if isVoter == m.Meta.Server || !isVoter && !wantVoter {
					continue
				}
			}
			var err error
			if wantVoter || ok && cur.Suffrage == raft.Voter && m.Meta.Server {
				err = n.raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.Meta.Raft), 0, n.cfg.ApplyTimeout).Error()
			} else {
				err = n.raft.AddNonvoter(raft.ServerID(m.Name), raft.ServerAddress(m.Meta.Raft), 0, n.cfg.ApplyTimeout).Error()
			}
			if err != nil {
				n.log.Warn("adding raft member", "member", m.Name, "err", err)
			} else {
				n.log.Info("added raft member", "member", m.Name, "voter", m.Meta.Server)
			}
		case heartbeat.StateLeft:
			if !ok {
				continue
			}
			if err := n.raft.RemoveServer(raft.ServerID(m.Name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
				n.log.Warn("removing raft member", "member", m.Name, "err", err)
			} else {
				n.log.Info("removed raft member that left", "member", m.Name)
			}
		}
	}
	// A voter dead for DeadVoterTimeout loses its vote, so that it does
	// not count against the quorum for ever; it gets it back once alive
	// (and registered) again. Only while at least one other voter remains.
	alive := map[string]bool{}
	for _, m := range members {
		alive[m.Name] = m.State == heartbeat.StateAlive
	}
	for _, name := range deadVoters {
		if alive[name] {
			continue // back already: the FSM learns it below
		}
		if n.otherVoters() < 2 {
			break
		}
		if err := n.raft.DemoteVoter(raft.ServerID(name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
			n.log.Warn("demoting dead voter", "member", name, "err", err)
		} else {
			n.log.Warn("demoted a voter dead for longer than the dead voter timeout", "member", name, "timeout", n.cfg.DeadVoterTimeout)
		}
	}
	for _, c := range cmds {
		if _, err := n.apply(c); err != nil {
			n.log.Debug("membership command", "type", c.CommandType(), "err", err)
		}
	}
}

func memberStatus(s heartbeat.MemberState) fsm.Status {
	switch s {
	case heartbeat.StateAlive:
		return fsm.StatusAlive
	case heartbeat.StateSuspect:
		return fsm.StatusSuspect
	case heartbeat.StateLeft:
		return fsm.StatusLeft
	default:
		return fsm.StatusDead
	}
}

// orchestrate applies the next step of every unfinished plan, and the role
// changes pairs need (failover, switchover), until none has one (a bounded
// number of rounds per call). A step the FSM refused is not
// tried again for a second (refusals are log entries too); refused is the
// caller's memory of them, by plan and command type.
func (n *Node) orchestrate(ctx context.Context, refused map[string]time.Time) {
	for range 16 {
		if ctx.Err() != nil {
			return
		}
		var steps []decide.Step
		now := time.Now()
		trials := n.trials.snapshot()
		n.fsm.View(func(s *fsm.State) { steps = append(decide.NextSteps(s, now, trials), decide.RoleSteps(s, now)...) })
		var cmds []fsm.Command
		var batch []decide.Step
		for _, st := range steps {
			key := st.Plan + " " + string(st.Cmd.CommandType())
			if at, ok := refused[key]; ok && time.Since(at) < time.Second {
				continue
			}
			batch, cmds = append(batch, st), append(cmds, st.Cmd)
		}
		if len(batch) == 0 {
			return
		}
		// Every step was decided from the same state, as when they were
		// committed one after another: they go to raft together, in
		// order, and each is validated by the FSM as before.
		progressed := false
		for i, r := range n.applyAll(cmds) {
			st, key := batch[i], batch[i].Plan+" "+string(batch[i].Cmd.CommandType())
			if r.err != nil {
				refused[key] = time.Now()
				n.log.Warn("orchestrator step refused", "plan", st.Plan, "type", st.Cmd.CommandType(), "why", st.Why, "err", r.err)
				continue
			}
			delete(refused, key)
			n.log.Info("orchestrator step", "plan", st.Plan, "type", st.Cmd.CommandType(), "why", st.Why, "noop", r.res.Noop)
			if !r.res.Noop {
				progressed = true
			}
		}
		if !progressed {
			return
		}
	}
}

// trialFailures holds the reports about plan trial checks agents sent to
// this leader (decide.Trial, by plan id). They live in memory only: an
// agent repeats its report while the check fails, so a new leader learns it
// again.
type trialFailures struct {
	mu sync.Mutex
	m  map[string]decide.Trial
}

func newTrialFailures() *trialFailures { return &trialFailures{m: map[string]decide.Trial{}} }

func (t *trialFailures) add(f api.TrialFailure, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[f.Plan] = t.m[f.Plan].With(decide.Report{Plan: f.Plan, Node: f.Node, Check: f.Check, Output: f.Output, Passed: f.Passed}, at)
}

func (t *trialFailures) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.m)
}

func (t *trialFailures) snapshot() map[string]decide.Trial {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]decide.Trial, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}
