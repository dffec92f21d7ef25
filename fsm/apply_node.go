package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (c *RegisterNode) apply(x *applyCtx) error {
	s := x.s
	targets := slices.Clone(c.Targets)
	slices.Sort(targets)
	old, exists := s.Nodes[c.Name]
	if !exists {
		if c.Role != RoleWitness {
			others := s.pairMembers(c.Pair)
			if len(others) >= 2 {
				return refuse(ErrConflict, "pair %s already has two nodes (%s, %s); a pair is 1+1", c.Pair, others[0].Name, others[1].Name)
			}
			for _, o := range others {
				if c.Role == RoleActive && o.Role == RoleActive {
					return refuse(ErrConflict, "pair %s already has active node %s; register %s as standby", c.Pair, o.Name, c.Name)
				}
			}
		}
		n := Node{
			Name: c.Name, Pair: c.Pair, Role: c.Role, Server: c.Server, Voter: c.Voter,
			APIAddr: c.APIAddr, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr,
			Targets: targets, Status: StatusAlive, Healthy: c.Healthy, LastSeen: x.at,
			Roles: c.Roles, FailoverAfter: c.FailoverAfter, NoExec: c.NoExec, PeerChecks: c.PeerChecks,
		}
		x.trackDown(&n, Node{Status: StatusAlive, Healthy: true})
		s.Nodes[c.Name] = n
		x.record(Event{Node: c.Name, Pair: c.Pair, Kind: EventNodeRegistered, To: string(c.Role)})
		return nil
	}
	if old.Pair != c.Pair {
		return refuse(ErrConflict, "node %s is registered in pair %s; remove it before registering it in pair %s", c.Name, pairName(old.Pair), pairName(c.Pair))
	}
	// (A witness has no pair and a pair node has one, so the pair check
	// also refuses turning one into the other.)
	n := old.clone()
	n.Server, n.Voter = c.Server, c.Voter
	n.APIAddr, n.RaftAddr, n.GossipAddr = c.APIAddr, c.RaftAddr, c.GossipAddr
	n.Targets = targets
	n.Status, n.LastSeen = StatusAlive, x.at
	if c.Healthy != old.Healthy {
		n.Healthy, n.FailingCheck, n.CheckOutput = c.Healthy, "", ""
	}
	n.Roles, n.FailoverAfter = c.Roles, c.FailoverAfter
	n.NoExec = c.NoExec
	n.PeerChecks = c.PeerChecks
	if !n.PeerChecks {
		n.Peer, n.PeerCheck, n.PeerOutput = "", "", ""
	}
	x.trackDown(&n, old)
	s.Nodes[c.Name] = n
	if old.Roles != n.Roles || old.FailoverAfter != n.FailoverAfter {
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeUpdated,
			From: fmt.Sprintf("roles=%s failover_after=%v", rolesName(old.Roles), old.FailoverAfter),
			To:   fmt.Sprintf("roles=%s failover_after=%v", rolesName(n.Roles), n.FailoverAfter), Cause: "registration"})
	}
	if from, to := old.summary(), n.summary(); from != to {
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeUpdated, From: from, To: to, Cause: "registration"})
	}
	if old.Status != n.Status {
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeStatus, From: string(old.Status), To: string(n.Status), Cause: "registration"})
	}
	if old.Healthy != n.Healthy {
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeHealth, From: old.health(), To: n.health(), Cause: "registration"})
	}
	return nil
}

func rolesName(r string) string {
	if r == "" {
		return RolesManaged
	}
	return r
}

// trackDown keeps n.DownSince: set to the command time when n goes down
// (old is n before the command), cleared when it is no longer down; and
// n.SuspectSince likewise for suspect (SuspectBound is cleared with it).
func (x *applyCtx) trackDown(n *Node, old Node) {
	switch {
	case n.Status != StatusSuspect:
		n.SuspectSince, n.SuspectBound = time.Time{}, 0
	case old.Status != StatusSuspect || n.SuspectSince.IsZero():
		n.SuspectSince = x.at
	}
	switch {
	case !n.Down():
		n.DownSince = time.Time{}
	case !old.Down() || n.DownSince.IsZero():
		n.DownSince = x.at
	}
}

func pairName(p string) string {
	if p == "" {
		return "(none)"
	}
	return p
}

// summary describes what registration may change, for history events.
func (n Node) summary() string {
	return fmt.Sprintf("server=%t voter=%t api=%s raft=%s gossip=%s targets=%s",
		n.Server, n.Voter, n.APIAddr, n.RaftAddr, n.GossipAddr, strings.Join(n.Targets, ","))
}

func (n Node) health() string {
	if n.Healthy {
		return "healthy"
	}
	if n.FailingCheck == "" {
		return "unhealthy"
	}
	return "unhealthy: " + n.FailingCheck
}

func (c *SetNodeStatus) apply(x *applyCtx) error {
	n, ok := x.s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	old := n.Status
	if old == c.Status && c.Status != StatusAlive {
		x.noop("node %s is already %s", c.Node, c.Status)
		return nil
	}
	n.Status = c.Status
	if c.Status == StatusAlive {
		n.LastSeen = x.at
	}
	n.SuspectBound = c.SuspectBound
	x.trackDown(&n, x.s.Nodes[c.Node])
	x.s.Nodes[c.Node] = n
	if old != c.Status {
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeStatus, From: string(old), To: string(c.Status), Cause: c.Cause})
	}
	return nil
}

func (c *SetNodeHealth) apply(x *applyCtx) error {
	n, ok := x.s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	old := n
	n.Healthy = c.Healthy
	if c.Healthy {
		n.FailingCheck, n.CheckOutput = "", ""
	} else {
		n.FailingCheck, n.CheckOutput = clip(c.FailingCheck, 128), clip(c.CheckOutput, maxText)
	}
	if n.Healthy == old.Healthy && n.FailingCheck == old.FailingCheck && n.CheckOutput == old.CheckOutput {
		x.noop("node %s is already %s", c.Node, n.health())
		return nil
	}
	x.trackDown(&n, old)
	x.s.Nodes[c.Node] = n
	if old.health() != n.health() {
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeHealth, From: old.health(), To: n.health(), Cause: n.CheckOutput})
	}
	return nil
}

func (c *SetPeerHealth) apply(x *applyCtx) error {
	n, ok := x.s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	if c.Peer != "" && !n.PeerChecks {
		return refuse(ErrConflict, "node %s has no peer_health checks", c.Node)
	}
	check, out := "", ""
	if c.Peer == PeerDown {
		check, out = clip(c.Check, 128), clip(c.Output, maxText)
	}
	if n.Peer == c.Peer && n.PeerCheck == check && n.PeerOutput == out {
		x.noop("node %s already reports its peer %s", c.Node, peerName(c.Peer))
		return nil
	}
	old := n.Peer
	n.Peer, n.PeerCheck, n.PeerOutput = c.Peer, check, out
	if old != n.Peer {
		n.PeerSince = x.at
		cause := ""
		if check != "" {
			cause = check + ": " + out
		}
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventPeerHealth, From: peerName(old), To: peerName(n.Peer), Cause: cause})
	}
	x.s.Nodes[c.Node] = n
	return nil
}

func peerName(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

func (c *SetRole) apply(x *applyCtx) error {
	s := x.s
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	if n.Role == RoleWitness || n.Pair == "" {
		return refuse(ErrConflict, "node %s is a witness and has no pair; it cannot be %s", c.Node, c.Role)
	}
	if c.Probed && !n.External() {
		return refuse(ErrConflict, "node %s has managed roles; lp sets its role, not a probe", c.Node)
	}
	if !c.Probed && n.External() {
		return refuse(ErrConflict, "node %s has external roles (role_probe); lp does not set its role", c.Node)
	}
	if c.Handover != "" {
		h, ok := s.Nodes[c.Handover]
		if !ok || h.Pair != n.Pair || h.Name == n.Name {
			return refuse(ErrConflict, "handover from %s to %s: %s is not the other member of pair %s", c.Node, c.Handover, c.Handover, n.Pair)
		}
	}
	if n.Role == c.Role {
		x.noop("node %s is already %s", c.Node, c.Role)
		return nil
	}
	if c.Role == RoleActive && !c.Probed && (n.Status == StatusDead || n.Status == StatusLeft) {
		return refuse(ErrConflict, "node %s is %s; a dead or departed node cannot be promoted", c.Node, n.Status)
	}
	var demote []Node
	if c.Role == RoleActive && !c.Probed {
		for _, o := range s.pairMembers(n.Pair) {
			if o.Name != n.Name && o.Role == RoleActive {
				demote = append(demote, o)
			}
		}
	}
	// All checks are done: change state.
	for _, o := range demote {
		o.PrevRole, o.Role = o.Role, RoleStandby
		o.RoleEpoch++
		s.Nodes[o.Name] = o
		x.record(Event{Node: o.Name, Pair: o.Pair, Kind: EventRole, From: string(RoleActive), To: string(RoleStandby),
			Cause: fmt.Sprintf("%s promoted: %s", n.Name, c.Cause)})
	}
	if c.Role == RoleActive {
		for _, o := range s.pairMembers(n.Pair) {
			if o.Handover != "" {
				o.Handover, o.HandoverDeadline = "", time.Time{}
				s.Nodes[o.Name] = o
			}
		}
		n.Handover, n.HandoverDeadline = "", time.Time{}
	} else {
		n.Handover, n.HandoverDeadline = c.Handover, c.HandoverDeadline
	}
	from := n.Role
	n.PrevRole, n.Role = n.Role, c.Role
	n.RoleEpoch++
	s.Nodes[n.Name] = n
	x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventRole, From: string(from), To: string(c.Role), Cause: c.Cause})
	return nil
}

func (c *ReportHook) apply(x *applyCtx) error {
	n, ok := x.s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	if c.Epoch > n.RoleEpoch {
		return refuse(ErrConflict, "node %s: hook report for role change %d, but the node has had %d", c.Node, c.Epoch, n.RoleEpoch)
	}
	if c.Epoch <= n.HookEpoch {
		x.noop("node %s: the hook of role change %d is already reported", c.Node, c.Epoch)
		return nil
	}
	n.HookEpoch = c.Epoch
	x.s.Nodes[c.Node] = n
	var cause string
	switch {
	case c.Hook == "":
		cause = "no hook owed"
	case c.Skipped:
		cause = c.Hook + " not run: " + c.Output
	case c.OK:
		cause = c.Hook + " ok"
	default:
		cause = c.Hook + " failed: " + c.Output
	}
	if c.OK && c.Output != "" && !c.Skipped {
		cause += ": " + c.Output
	}
	x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventHook, From: string(n.PrevRole), To: string(n.Role),
		Cause: fmt.Sprintf("role change %d: %s", c.Epoch, clip(cause, maxText))})
	return nil
}

func (c *RemoveNode) apply(x *applyCtx) error {
	s := x.s
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	for _, p := range s.plansByID() {
		if p.State.Terminal() {
			continue
		}
		if p.step(c.Node) >= 0 {
			return refuse(ErrConflict, "node %s takes part in plan %s (%s); abort or roll back the plan first", c.Node, p.ID, p.State)
		}
	}
	delete(s.Nodes, c.Node)
	delete(s.Desired, c.Node)
	delete(s.Observed, c.Node)
	x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventNodeRemoved, From: string(n.Role), Cause: c.Cause})
	return nil
}

func (c *PutBlob) apply(x *applyCtx) error {
	if b, ok := x.s.Blobs[c.SHA256]; ok && b.PatchID != c.PatchID {
		return refuse(ErrConflict, "module %s is stored as patch %s, not %s", c.SHA256, b.PatchID, c.PatchID)
	}
	x.res.BlobData = c.Data
	if !x.storeModule(ModuleRef{SHA256: c.SHA256, Size: len(c.Data), PatchID: c.PatchID, Signature: c.Signature}) {
		x.noop("patch %s (%s) is already stored", c.PatchID, c.SHA256)
	}
	return nil
}

// storeModule records a module (its reference; the bytes are in the nodes'
// module stores), or a signature it does not have yet. The caller checked
// that a module stored already has m's patch id. It reports whether
// anything changed.
func (x *applyCtx) storeModule(m ModuleRef) bool {
	if b, ok := x.s.Blobs[m.SHA256]; ok {
		if len(m.Signature) == 0 || slices.ContainsFunc(b.Signatures, func(s []byte) bool { return bytes.Equal(s, m.Signature) }) {
			return false
		}
		// A new signer: copies share the old slice, so build a new one.
		sigs := append(slices.Clone(b.Signatures), bytes.Clone(m.Signature))
		if len(sigs) > MaxBlobSignatures {
			sigs = sigs[len(sigs)-MaxBlobSignatures:]
		}
		b.Signatures = sigs
		x.s.Blobs[m.SHA256] = b
		x.record(Event{Kind: EventBlobStored, To: m.SHA256, Cause: m.PatchID + " (signature added)"})
		return true
	}
	blob := Blob{SHA256: m.SHA256, Size: m.Size, PatchID: m.PatchID, Stored: x.at}
	if len(m.Signature) > 0 {
		blob.Signatures = [][]byte{bytes.Clone(m.Signature)}
	}
	x.s.Blobs[m.SHA256] = blob
	x.record(Event{Kind: EventBlobStored, To: m.SHA256, Cause: m.PatchID})
	return true
}

func (c *ReportObserved) apply(x *applyCtx) error {
	s := x.s
	n, ok := s.Nodes[c.Node]
	if !ok {
		return refuse(ErrNotFound, "node %s is not registered", c.Node)
	}
	obs := Observed{Pid: c.Pid, PidStart: c.PidStart, Error: clip(c.Error, maxText), At: x.at}
	if len(c.Active) > 0 {
		obs.Active = slices.Clone(c.Active)
	}
	if len(c.Unmanaged) > 0 {
		obs.Unmanaged = slices.Clone(c.Unmanaged)
	}
	for _, p := range c.Processes {
		q := ObservedProcess{Pid: p.Pid, PidStart: p.PidStart, Error: clip(p.Error, maxText)}
		if len(p.Active) > 0 {
			q.Active = slices.Clone(p.Active)
		}
		if len(p.Unmanaged) > 0 {
			q.Unmanaged = slices.Clone(p.Unmanaged)
		}
		obs.Processes = append(obs.Processes, q)
	}
	old, had := s.Observed[c.Node][c.Target]
	if s.Observed[c.Node] == nil {
		s.Observed[c.Node] = map[string]Observed{}
	}
	s.Observed[c.Node][c.Target] = obs
	if !had || old.Pid != obs.Pid || old.PidStart != obs.PidStart || !slices.Equal(old.Active, obs.Active) ||
		!slices.Equal(old.Unmanaged, obs.Unmanaged) || old.Error != obs.Error || !sameProcesses(old.Processes, obs.Processes) {
		from := ""
		if had {
			from = observedString(c.Target, old)
		}
		x.record(Event{Node: n.Name, Pair: n.Pair, Kind: EventObserved, From: from, To: observedString(c.Target, obs), Cause: obs.Error, Pause: max(c.Pause, 0)})
	}
	if c.Pause > 0 {
		x.stepPauses(c, old.Active, obs.Active)
	}
	return nil
}

// stepPauses records the pause of a report in the steps of the plans
// still under way on the target whose patch the report shows turned
// active (ApplyPause) or inactive (RevertPause) on the node.
func (x *applyCtx) stepPauses(c *ReportObserved, before, after []string) {
	for id, p := range x.s.Plans {
		if p.Spec.Target != c.Target || p.State.Terminal() {
			continue
		}
		i := p.step(c.Node)
		if i < 0 {
			continue
		}
		was, is := slices.Contains(before, p.Spec.PatchID), slices.Contains(after, p.Spec.PatchID)
		if was == is {
			continue
		}
		// A new copy: readers may hold the old one past View (the API
		// encodes plans after it returns), so no apply writes into it.
		p = p.Clone()
		if is {
			p.Steps[i].ApplyPause = c.Pause
		} else {
			p.Steps[i].RevertPause = c.Pause
		}
		x.s.Plans[id] = p
	}
}

func observedString(target string, o Observed) string {
	s := fmt.Sprintf("%s=%s pid=%d", target, strings.Join(o.Active, ","), o.Pid)
	if len(o.Unmanaged) > 0 {
		s += " unmanaged=" + strings.Join(o.Unmanaged, ",")
	}
	if len(o.Processes) > 0 {
		pids := make([]string, len(o.Processes))
		for i, p := range o.Processes {
			pids[i] = strconv.Itoa(p.Pid)
		}
		s += " pids=" + strings.Join(pids, ",")
	}
	return s
}

// sameProcesses reports whether two observations of a match: all target
// saw the same processes in the same states.
func sameProcesses(a, b []ObservedProcess) bool {
	return slices.EqualFunc(a, b, func(p, q ObservedProcess) bool {
		return p.Pid == q.Pid && p.PidStart == q.PidStart && slices.Equal(p.Active, q.Active) &&
			slices.Equal(p.Unmanaged, q.Unmanaged) && p.Error == q.Error
	})
}
