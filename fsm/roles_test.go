package fsm

import (
	"testing"
	"time"
)

// TestRoleEpochsAndHooks: every role change bumps the node's epoch; a hook
// report settles one epoch once; a report from the future is refused.
func TestRoleEpochsAndHooks(t *testing.T) {
	h := newCluster(t)
	h.ok(&SetRole{Node: "b1", Role: RoleActive, Cause: "failover"})
	s := h.state()
	a, b := s.Nodes["a1"], s.Nodes["b1"]
	if a.RoleEpoch != 1 || a.PrevRole != RoleActive || a.Role != RoleStandby {
		t.Errorf("a1 epoch %d prev %s role %s; want 1, active, standby", a.RoleEpoch, a.PrevRole, a.Role)
	}
	if b.RoleEpoch != 1 || b.PrevRole != RoleStandby || b.Role != RoleActive {
		t.Errorf("b1 epoch %d prev %s role %s; want 1, standby, active", b.RoleEpoch, b.PrevRole, b.Role)
	}
	h.refused(&ReportHook{Node: "b1", Epoch: 2, Hook: "on_promote", OK: true}, ErrConflict, "has had 1")
	h.ok(&ReportHook{Node: "b1", Epoch: 1, Hook: "on_promote", OK: true, Output: "took over"})
	if r := h.ok(&ReportHook{Node: "b1", Epoch: 1, Hook: "on_promote", OK: true}); !r.Noop {
		t.Errorf("second report of epoch 1: noop %v; want true", r.Noop)
	}
	s = h.state()
	if s.Nodes["b1"].HookEpoch != 1 {
		t.Errorf("b1 hook epoch %d; want 1", s.Nodes["b1"].HookEpoch)
	}
	last := s.History[len(s.History)-1]
	if last.Kind != EventHook || last.Node != "b1" || last.Cause != "role change 1: on_promote ok: took over" {
		t.Errorf("last event %+v; want the hook of b1", last)
	}
	h.ok(&ReportHook{Node: "a1", Epoch: 1, Hook: "on_demote", Output: "exit status 3"})
	if c := h.state().History[len(h.state().History)-1].Cause; c != "role change 1: on_demote failed: exit status 3" {
		t.Errorf("failed hook event cause %q", c)
	}
	h.refused(&ReportHook{Node: "a1", Epoch: 2, Hook: "on_reboot"}, ErrInvalid, "not on_promote")
}

func TestHandoverAndProbedRoles(t *testing.T) {
	h := newCluster(t)
	h.refused(&SetRole{Node: "a1", Role: RoleStandby, Handover: "b2"}, ErrConflict, "not the other member")
	h.refused(&SetRole{Node: "a1", Role: RoleActive, Handover: "b1"}, ErrInvalid, "goes with a demotion")
	dl := h.now.Add(10 * time.Second)
	h.ok(&SetRole{Node: "a1", Role: RoleStandby, Handover: "b1", HandoverDeadline: dl, Cause: "switchover"})
	if n := h.state().Nodes["a1"]; n.Handover != "b1" || !n.HandoverDeadline.Equal(dl) {
		t.Fatalf("a1 handover %q until %v; want b1 until %v", n.Handover, n.HandoverDeadline, dl)
	}
	h.ok(&SetRole{Node: "b1", Role: RoleActive, Cause: "switchover"})
	if n := h.state().Nodes["a1"]; n.Handover != "" || n.RoleEpoch != 1 {
		t.Errorf("after the promotion a1 handover %q epoch %d; want none and 1 (no second change)", n.Handover, n.RoleEpoch)
	}

	// External roles: only probes set them, one node at a time.
	ext := node("x1", "ext", RoleActive)
	ext.Roles = RolesExternal
	h.ok(ext)
	ext2 := node("x2", "ext", RoleStandby)
	ext2.Roles = RolesExternal
	h.ok(ext2)
	h.refused(&SetRole{Node: "x2", Role: RoleActive}, ErrConflict, "external roles")
	h.refused(&SetRole{Node: "b1", Role: RoleStandby, Probed: true}, ErrConflict, "managed roles")
	h.ok(&SetRole{Node: "x2", Role: RoleActive, Probed: true, Cause: "role_probe"})
	if s := h.state(); s.Nodes["x1"].Role != RoleActive || s.Nodes["x2"].Role != RoleActive {
		t.Errorf("probed roles x1=%s x2=%s; want both active as probed", s.Nodes["x1"].Role, s.Nodes["x2"].Role)
	}
}

func TestDownSince(t *testing.T) {
	h := newCluster(t)
	if d := h.state().Nodes["a1"].DownSince; !d.IsZero() {
		t.Fatalf("a healthy node's DownSince = %v; want zero", d)
	}
	h.advance(time.Second)
	h.ok(&SetNodeStatus{Node: "a1", Status: StatusSuspect})
	if d := h.state().Nodes["a1"].DownSince; !d.IsZero() {
		t.Fatalf("a suspect node's DownSince = %v; want zero (not down yet)", d)
	}
	h.ok(&SetNodeStatus{Node: "a1", Status: StatusAlive})
	h.advance(time.Second)
	down := h.now
	h.ok(&SetNodeHealth{Node: "a1", FailingCheck: "x"})
	h.advance(time.Second)
	h.ok(&SetNodeStatus{Node: "a1", Status: StatusDead})
	if d := h.state().Nodes["a1"].DownSince; !d.Equal(down) {
		t.Errorf("DownSince after unhealthy then dead = %v; want the first, %v", d, down)
	}
	h.ok(&SetNodeStatus{Node: "a1", Status: StatusAlive})
	if d := h.state().Nodes["a1"].DownSince; !d.Equal(down) {
		t.Errorf("alive but unhealthy: DownSince = %v; want %v", d, down)
	}
	h.ok(&SetNodeHealth{Node: "a1", Healthy: true})
	if d := h.state().Nodes["a1"].DownSince; !d.IsZero() {
		t.Errorf("alive and healthy again: DownSince = %v; want zero", d)
	}
}

// TestPeerHealth: only a node with peer_health checks reports its peer's
// service; a change of verdict is in the history, a repeat is a no-op.
func TestPeerHealth(t *testing.T) {
	h := newCluster(t)
	h.refused(&SetPeerHealth{Node: "b1", Peer: PeerDown, Check: "peer-sip"}, ErrConflict, "has no peer_health checks")
	h.refused(&SetPeerHealth{Node: "b1", Peer: "maybe"}, ErrInvalid, "want")
	reg := node("b1", "sip-1", RoleStandby)
	reg.PeerChecks = true
	h.ok(reg)
	h.ok(&SetPeerHealth{Node: "b1", Peer: PeerDown, Check: "peer-sip", Output: "connection refused"})
	b := h.state().Nodes["b1"]
	if b.Peer != PeerDown || b.PeerCheck != "peer-sip" || b.PeerOutput != "connection refused" || b.PeerSince.IsZero() {
		t.Errorf("b1 peer %q check %q output %q since %v; want down, peer-sip, connection refused, set", b.Peer, b.PeerCheck, b.PeerOutput, b.PeerSince)
	}
	last := h.state().History[len(h.state().History)-1]
	if last.Kind != EventPeerHealth || last.From != "unknown" || last.To != "down" || last.Cause != "peer-sip: connection refused" {
		t.Errorf("last event %+v; want peer_health unknown -> down", last)
	}
	if r := h.ok(&SetPeerHealth{Node: "b1", Peer: PeerDown, Check: "peer-sip", Output: "connection refused"}); !r.Noop {
		t.Errorf("repeated verdict: noop %v; want true", r.Noop)
	}
	h.ok(&SetPeerHealth{Node: "b1"})
	if b := h.state().Nodes["b1"]; b.Peer != "" || b.PeerCheck != "" {
		t.Errorf("b1 peer %q check %q after reset; want none", b.Peer, b.PeerCheck)
	}
}
