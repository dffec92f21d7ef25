package fsm

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// commandCase is one command applied to a fresh cluster after setup.
type commandCase struct {
	name  string
	setup func(h *harness) // optional
	cmd   func(h *harness) Command
	// For a refusal: the sentinel error and a part of the message.
	err error
	msg string
	// For success: whether it is a no-op, and a check of the state after.
	noop  bool
	check func(t *testing.T, h *harness, res *Result)
}

func runCases(t *testing.T, cases []commandCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newCluster(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			cmd := tc.cmd(h)
			if tc.err != nil {
				h.refused(cmd, tc.err, tc.msg)
				return
			}
			before := len(h.state().History)
			res := h.ok(cmd)
			if res.Noop != tc.noop {
				t.Fatalf("Noop = %v (message %q); want %v", res.Noop, res.Message, tc.noop)
			}
			if tc.noop && len(h.state().History) != before {
				t.Fatalf("no-op added %d events; want 0", len(h.state().History)-before)
			}
			if tc.check != nil {
				tc.check(t, h, res)
			}
		})
	}
}

func cmd(c Command) func(*harness) Command { return func(*harness) Command { return c } }

// lastEvent returns the last history event.
func lastEvent(h *harness) Event {
	hist := h.state().History
	return hist[len(hist)-1]
}

func TestNodeCommands(t *testing.T) {
	runCases(t, []commandCase{
		{name: "register new standby", cmd: cmd(node("c3", "sip-3", RoleStandby)),
			check: func(t *testing.T, h *harness, _ *Result) {
				n := h.state().Nodes["c3"]
				if n.Role != RoleStandby || n.Status != StatusAlive || !n.Healthy || !n.LastSeen.Equal(h.now) {
					t.Fatalf("node = %+v; want standby, alive, healthy, last seen %v", n, h.now)
				}
				if got, want := n.Targets, []string{"other", target}; !slices.Equal(got, want) {
					t.Fatalf("targets = %v; want %v (sorted)", got, want)
				}
				if e := lastEvent(h); e.Kind != EventNodeRegistered || e.Node != "c3" || e.To != "standby" {
					t.Fatalf("event = %+v; want node_registered c3 -> standby", e)
				}
			}},
		{name: "re-register keeps the cluster's role", setup: func(h *harness) {
			h.ok(&SetRole{Node: "b1", Role: RoleActive, Cause: "failover"})
		}, cmd: cmd(node("a1", "sip-1", RoleActive)),
			check: func(t *testing.T, h *harness, _ *Result) {
				if got := h.state().Nodes["a1"].Role; got != RoleStandby {
					t.Fatalf("a1 role = %s; want standby (no automatic failback)", got)
				}
			}},
		{name: "re-register updates addresses and marks alive", setup: func(h *harness) {
			h.ok(&SetNodeStatus{Node: "b1", Status: StatusDead})
		}, cmd: func(*harness) Command {
			c := node("b1", "sip-1", RoleStandby)
			c.APIAddr = "127.0.0.1:9999"
			return c
		}, check: func(t *testing.T, h *harness, _ *Result) {
			n := h.state().Nodes["b1"]
			if n.APIAddr != "127.0.0.1:9999" || n.Status != StatusAlive {
				t.Fatalf("node = %+v; want api 127.0.0.1:9999, alive", n)
			}
			var kinds []EventKind
			for _, e := range h.state().NodeHistory("b1")[1:] {
				kinds = append(kinds, e.Kind)
			}
			if want := []EventKind{EventNodeStatus, EventNodeUpdated, EventNodeStatus}; !slices.Equal(kinds, want) {
				t.Fatalf("b1 events = %v; want %v", kinds, want)
			}
		}},
		{name: "register witness with pair", cmd: cmd(&RegisterNode{Name: "w2", Pair: "sip-1", Role: RoleWitness}),
			err: ErrInvalid, msg: "a witness has no pair"},
		{name: "register standby without pair", cmd: cmd(&RegisterNode{Name: "x", Role: RoleStandby}),
			err: ErrInvalid, msg: "needs a pair"},
		{name: "register bad name", cmd: cmd(node("a b", "sip-1", RoleStandby)),
			err: ErrInvalid, msg: "not a valid name"},
		{name: "register bad role", cmd: cmd(node("x", "sip-1", "leader")),
			err: ErrInvalid, msg: "not one of active, standby, witness"},
		{name: "register duplicate target", cmd: func(*harness) Command {
			c := node("x", "sip-9", RoleStandby)
			c.Targets = []string{"a", "a"}
			return c
		}, err: ErrInvalid, msg: "listed twice"},
		{name: "register third node in a pair", cmd: cmd(node("c1", "sip-1", RoleStandby)),
			err: ErrConflict, msg: "already has two nodes"},
		{name: "register second active", setup: func(h *harness) {
			h.ok(&RemoveNode{Node: "b1"})
		}, cmd: cmd(node("c1", "sip-1", RoleActive)), err: ErrConflict, msg: "already has active node a1"},
		{name: "register moves pair", cmd: cmd(node("a1", "sip-2", RoleActive)),
			err: ErrConflict, msg: "remove it before registering it in pair sip-2"},
		{name: "register witness as pair node", cmd: cmd(node("w", "sip-3", RoleStandby)),
			err: ErrConflict, msg: "registered in pair (none)"},

		{name: "status dead", cmd: cmd(&SetNodeStatus{Node: "a1", Status: StatusDead, Cause: "memberlist"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				e := lastEvent(h)
				if h.state().Nodes["a1"].Status != StatusDead || e.From != "alive" || e.To != "dead" || e.Cause != "memberlist" {
					t.Fatalf("event = %+v; want node_status alive -> dead (memberlist)", e)
				}
			}},
		{name: "status unchanged", setup: func(h *harness) {
			h.ok(&SetNodeStatus{Node: "a1", Status: StatusSuspect})
		}, cmd: cmd(&SetNodeStatus{Node: "a1", Status: StatusSuspect}), noop: true},
		{name: "status alive again refreshes last seen", cmd: func(h *harness) Command {
			h.advance(time.Minute)
			return &SetNodeStatus{Node: "a1", Status: StatusAlive}
		}, check: func(t *testing.T, h *harness, _ *Result) {
			if got := h.state().Nodes["a1"].LastSeen; !got.Equal(h.now) {
				t.Fatalf("last seen = %v; want %v", got, h.now)
			}
		}},
		{name: "status unknown node", cmd: cmd(&SetNodeStatus{Node: "zz", Status: StatusDead}), err: ErrNotFound, msg: "zz is not registered"},
		{name: "status bad value", cmd: cmd(&SetNodeStatus{Node: "a1", Status: "gone"}), err: ErrInvalid, msg: "not one of alive"},

		{name: "health fails", cmd: cmd(&SetNodeHealth{Node: "b1", FailingCheck: "sip-port", CheckOutput: "connection refused"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				n := h.state().Nodes["b1"]
				e := lastEvent(h)
				if n.Healthy || n.FailingCheck != "sip-port" || e.To != "unhealthy: sip-port" || e.Cause != "connection refused" {
					t.Fatalf("node %+v, event %+v; want unhealthy: sip-port", n, e)
				}
			}},
		{name: "health recovers clears the check", setup: func(h *harness) {
			h.ok(&SetNodeHealth{Node: "b1", FailingCheck: "sip-port", CheckOutput: "x"})
		}, cmd: cmd(&SetNodeHealth{Node: "b1", Healthy: true, FailingCheck: "ignored"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if n := h.state().Nodes["b1"]; !n.Healthy || n.FailingCheck != "" || n.CheckOutput != "" {
					t.Fatalf("node = %+v; want healthy with no failing check", n)
				}
			}},
		{name: "health unchanged", cmd: cmd(&SetNodeHealth{Node: "b1", Healthy: true}), noop: true},
		{name: "health output is clipped", cmd: cmd(&SetNodeHealth{Node: "b1", FailingCheck: "c", CheckOutput: strings.Repeat("é", 2000)}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if got := h.state().Nodes["b1"].CheckOutput; len(got) != maxText || !strings.HasSuffix(got, "é") {
					t.Fatalf("output is %d bytes; want %d ending in a whole rune", len(got), maxText)
				}
			}},
		{name: "health unknown node", cmd: cmd(&SetNodeHealth{Node: "zz"}), err: ErrNotFound, msg: "not registered"},

		{name: "promote standby demotes active", cmd: cmd(&SetRole{Node: "b1", Role: RoleActive, Cause: "a1 dead"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				s := h.state()
				if s.Nodes["b1"].Role != RoleActive || s.Nodes["a1"].Role != RoleStandby {
					t.Fatalf("roles b1=%s a1=%s; want b1 active, a1 standby", s.Nodes["b1"].Role, s.Nodes["a1"].Role)
				}
				hist := s.History[len(s.History)-2:]
				if hist[0].Node != "a1" || hist[0].To != "standby" || hist[1].Node != "b1" || hist[1].To != "active" {
					t.Fatalf("events = %+v; want a1 -> standby then b1 -> active", hist)
				}
			}},
		{name: "promote active is a no-op", cmd: cmd(&SetRole{Node: "a1", Role: RoleActive}), noop: true},
		{name: "demote active alone", cmd: cmd(&SetRole{Node: "a1", Role: RoleStandby}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if a, _ := h.state().PairRoles("sip-1"); a != "" {
					t.Fatalf("active = %q; want none", a)
				}
			}},
		{name: "promote dead node", setup: func(h *harness) {
			h.ok(&SetNodeStatus{Node: "b1", Status: StatusDead})
		}, cmd: cmd(&SetRole{Node: "b1", Role: RoleActive}), err: ErrConflict, msg: "cannot be promoted"},
		{name: "promote departed node", setup: func(h *harness) {
			h.ok(&SetNodeStatus{Node: "b1", Status: StatusLeft})
		}, cmd: cmd(&SetRole{Node: "b1", Role: RoleActive}), err: ErrConflict, msg: "b1 is left"},
		{name: "promote witness", cmd: cmd(&SetRole{Node: "w", Role: RoleActive}), err: ErrConflict, msg: "witness and has no pair"},
		{name: "set role witness", cmd: cmd(&SetRole{Node: "a1", Role: RoleWitness}), err: ErrInvalid, msg: "cannot be set"},
		{name: "promote unknown", cmd: cmd(&SetRole{Node: "zz", Role: RoleActive}), err: ErrNotFound, msg: "not registered"},

		{name: "remove node", setup: func(h *harness) {
			h.ok(&SetDesired{Node: "b2", Target: target, Patches: stackOf(blob1)})
			h.ok(&ReportObserved{Node: "b2", Target: target, Pid: 7, Active: []string{"fix-1"}})
		}, cmd: cmd(&RemoveNode{Node: "b2", Cause: "decommissioned"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				s := h.state()
				_, n := s.Nodes["b2"]
				_, d := s.Desired["b2"]
				_, o := s.Observed["b2"]
				if n || d || o {
					t.Fatalf("after removal node %v desired %v observed %v; want none", n, d, o)
				}
			}},
		{name: "remove node in a running plan", setup: func(h *harness) {
			h.submit(spec(blob1))
		}, cmd: cmd(&RemoveNode{Node: "b2"}), err: ErrConflict, msg: "takes part in plan p000001 (pending)"},
		{name: "remove node of a finished plan", setup: func(h *harness) {
			id := h.submit(spec(blob1))
			h.ok(&AbortPlan{Plan: id})
		}, cmd: cmd(&RemoveNode{Node: "b2"})},
		{name: "remove unknown", cmd: cmd(&RemoveNode{Node: "zz"}), err: ErrNotFound, msg: "not registered"},
	})
}

func stackOf(blobs ...*PutBlob) []PatchRef {
	var s []PatchRef
	for _, b := range blobs {
		s = append(s, PatchRef{PatchID: b.PatchID, SHA256: b.SHA256})
	}
	return s
}

func TestPatchCommands(t *testing.T) {
	big := make([]byte, MaxBlobSize+1)
	tooBig := &PutBlob{SHA256: strings.Repeat("0", 64), PatchID: "big", Data: big}
	runCases(t, []commandCase{
		{name: "put blob (legacy: the bytes go to the result, the state keeps the reference)", cmd: cmd(NewPutBlob("fix-3", []byte("three"))),
			check: func(t *testing.T, h *harness, r *Result) {
				b := NewPutBlob("fix-3", []byte("three"))
				got := h.state().Blobs[b.SHA256]
				if got.PatchID != "fix-3" || got.Size != 5 || got.Data != nil {
					t.Fatalf("blob = %+v; want fix-3, 5 bytes, no data", got)
				}
				if string(r.BlobData) != "three" {
					t.Fatalf("result BlobData = %q; want the module bytes", r.BlobData)
				}
			}},
		{name: "put blob again", cmd: cmd(blob1), noop: true},
		{name: "put blob again as another patch", cmd: cmd(&PutBlob{SHA256: blob1.SHA256, PatchID: "other", Data: blob1.Data}),
			err: ErrConflict, msg: "stored as patch fix-1"},
		{name: "put blob with wrong sha", cmd: cmd(&PutBlob{SHA256: blob2.SHA256, PatchID: "fix-1", Data: blob1.Data}),
			err: ErrInvalid, msg: "corrupted upload"},
		{name: "put blob bad sha", cmd: cmd(&PutBlob{SHA256: "ABC", PatchID: "x", Data: nil}),
			err: ErrInvalid, msg: "not 64 lowercase hex digits"},

		{name: "set desired without plan", cmd: cmd(&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob1, blob2), Cause: "manual"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if got := PatchIDs(h.state().Desired["a1"][target]); !slices.Equal(got, []string{"fix-1", "fix-2"}) {
					t.Fatalf("desired = %v; want [fix-1 fix-2]", got)
				}
				if e := lastEvent(h); e.Kind != EventDesired || e.From != "sipd=" || e.To != "sipd=fix-1,fix-2" {
					t.Fatalf("event = %+v; want desired sipd= -> sipd=fix-1,fix-2", e)
				}
			}},
		{name: "set desired empty removes the entry", setup: func(h *harness) {
			h.ok(&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob1)})
		}, cmd: cmd(&SetDesired{Node: "a1", Target: target, Patches: []PatchRef{}}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if _, ok := h.state().Desired["a1"]; ok {
					t.Fatalf("desired still has an entry for a1; want none")
				}
			}},
		{name: "set desired unchanged", cmd: cmd(&SetDesired{Node: "a1", Target: target}), noop: true},
		{name: "set desired unknown blob", cmd: cmd(&SetDesired{Node: "a1", Target: target,
			Patches: []PatchRef{{PatchID: "nope", SHA256: strings.Repeat("a", 64)}}}), err: ErrNotFound, msg: "not stored"},
		{name: "set desired wrong patch id", cmd: cmd(&SetDesired{Node: "a1", Target: target,
			Patches: []PatchRef{{PatchID: "fix-2", SHA256: blob1.SHA256}}}), err: ErrInvalid, msg: "is patch fix-1"},
		{name: "set desired duplicate patch", cmd: cmd(&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob1, blob1)}),
			err: ErrInvalid, msg: "appears twice"},
		{name: "set desired unknown node", cmd: cmd(&SetDesired{Node: "zz", Target: target}), err: ErrNotFound, msg: "not registered"},
		{name: "set desired on a node of an unfinished plan", setup: func(h *harness) { h.submit(spec(blob1)) },
			cmd: cmd(&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob2)}), err: ErrConflict, msg: "change it through the plan"},
		{name: "set desired on another target during a plan", setup: func(h *harness) { h.submit(spec(blob1)) },
			cmd: cmd(&SetDesired{Node: "a1", Target: "other", Patches: stackOf(blob2)})},

		{name: "report observed", cmd: cmd(&ReportObserved{Node: "a1", Target: target, Pid: 42, Active: []string{"fix-1"}}),
			check: func(t *testing.T, h *harness, _ *Result) {
				o := h.state().Observed["a1"][target]
				if o.Pid != 42 || !slices.Equal(o.Active, []string{"fix-1"}) || !o.At.Equal(h.now) {
					t.Fatalf("observed = %+v; want pid 42 [fix-1] at %v", o, h.now)
				}
				if e := lastEvent(h); e.Kind != EventObserved || e.To != "sipd=fix-1 pid=42" {
					t.Fatalf("event = %+v; want observed sipd=fix-1 pid=42", e)
				}
			}},
		{name: "report observed unchanged adds no event", setup: func(h *harness) {
			h.ok(&ReportObserved{Node: "a1", Target: target, Pid: 42})
		}, cmd: cmd(&ReportObserved{Node: "a1", Target: target, Pid: 42}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if n := len(h.state().NodeHistory("a1")); n != 2 {
					t.Fatalf("a1 has %d events; want 2 (registration, first report)", n)
				}
				if at := h.state().Observed["a1"][target].At; !at.Equal(h.now) {
					t.Fatalf("observed at %v; want %v", at, h.now)
				}
			}},
		{name: "report observed negative pid", cmd: cmd(&ReportObserved{Node: "a1", Target: target, Pid: -1}), err: ErrInvalid, msg: "negative"},
		{name: "report observed unknown node", cmd: cmd(&ReportObserved{Node: "zz", Target: target}), err: ErrNotFound, msg: "not registered"},
	})
	t.Run("put blob too large", func(t *testing.T) {
		// Encode refuses it before it reaches the log; a hand-made entry is
		// refused by Apply.
		_, err := Encode(t0, tooBig)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "patch module is 16777217 bytes; the limit is 16 MiB") {
			t.Fatalf("Encode(too large) = %v; want ErrTooLarge with the size and limit", err)
		}
		body, _ := jsonMarshal(tooBig)
		h := newCluster(t)
		res := h.applyLog(&raft.Log{Index: 1, Data: envelopeBytes(t, TypePutBlob, body)})
		if res.Code != CodeTooLarge || res.Err != "patch module is 16777217 bytes; the limit is 16 MiB" {
			t.Fatalf("Apply(too large) = %+v; want too_large with the size and limit", res)
		}
	})
}

func TestSubmitPlan(t *testing.T) {
	runCases(t, []commandCase{
		{name: "submit", cmd: cmd(&SubmitPlan{Spec: spec(blob1, "sip-2", "sip-1")}),
			check: func(t *testing.T, h *harness, res *Result) {
				s := h.state()
				p := s.Plans[res.PlanID]
				if res.PlanID != "p000001" || p.State != PlanPending || p.Spec.PatchID != "fix-1" {
					t.Fatalf("plan %s = %+v; want p000001 pending with patch fix-1", res.PlanID, p)
				}
				if p.Spec.OnFailure != OnFailureRollback || p.Spec.FailoverDuringTrial != FailoverRollbackFirst {
					t.Fatalf("defaults = %s, %s; want rollback, rollback-first", p.Spec.OnFailure, p.Spec.FailoverDuringTrial)
				}
				if !p.Spec.SubmittedAt.Equal(h.now) || !p.PlanDeadline.Equal(h.now.Add(10*time.Minute)) {
					t.Fatalf("submitted %v deadline %v; want %v and +10m", p.Spec.SubmittedAt, p.PlanDeadline, h.now)
				}
				standby, active := s.PlanNodes(p.ID)
				if !slices.Equal(standby, []string{"b2", "b1"}) || !slices.Equal(active, []string{"a2", "a1"}) {
					t.Fatalf("PlanNodes = %v, %v; want [b2 b1], [a2 a1]", standby, active)
				}
				if e := lastEvent(h); e.Plan != p.ID || e.Kind != EventPlanState || e.To != "pending" || e.Cause != "submitted by test" {
					t.Fatalf("event = %+v; want plan_state -> pending", e)
				}
			}},
		{name: "default pairs are every pair", cmd: cmd(&SubmitPlan{Spec: spec(blob1)}),
			check: func(t *testing.T, h *harness, res *Result) {
				if got := h.state().Plans[res.PlanID].Spec.Pairs; !slices.Equal(got, []string{"sip-1", "sip-2"}) {
					t.Fatalf("pairs = %v; want [sip-1 sip-2]", got)
				}
			}},
		{name: "pre-state records desired stacks", setup: func(h *harness) {
			h.ok(&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob2)})
		}, cmd: cmd(&SubmitPlan{Spec: spec(blob1)}),
			check: func(t *testing.T, h *harness, res *Result) {
				s := h.state()
				if pre, _ := s.PreStack(res.PlanID, "a1"); !slices.Equal(PatchIDs(pre), []string{"fix-2"}) {
					t.Fatalf("a1 pre-state = %v; want [fix-2]", PatchIDs(pre))
				}
				if pre, _ := s.PreStack(res.PlanID, "b1"); pre != nil {
					t.Fatalf("b1 pre-state = %v; want nil", pre)
				}
				if st, _ := s.PlanStack(res.PlanID, "a1"); !slices.Equal(PatchIDs(st), []string{"fix-2", "fix-1"}) {
					t.Fatalf("a1 plan stack = %v; want [fix-2 fix-1]", PatchIDs(st))
				}
			}},
		{name: "unknown blob", cmd: cmd(&SubmitPlan{Spec: spec(NewPutBlob("x", []byte("not stored")))}),
			err: ErrNotFound, msg: "is not stored"},
		{name: "patch id mismatch", cmd: func(*harness) Command {
			s := spec(blob1)
			s.PatchID = "fix-2"
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "the module is patch fix-1"},
		{name: "unknown pair", cmd: cmd(&SubmitPlan{Spec: spec(blob1, "sip-9")}), err: ErrNotFound, msg: "pair sip-9 has no registered node (known pairs: sip-1, sip-2)"},
		{name: "duplicate pair", cmd: cmd(&SubmitPlan{Spec: spec(blob1, "sip-1", "sip-1")}), err: ErrInvalid, msg: "listed twice"},
		{name: "no pairs at all", setup: func(h *harness) {
			for _, n := range []string{"a1", "b1", "a2", "b2"} {
				h.ok(&RemoveNode{Node: n})
			}
		}, cmd: cmd(&SubmitPlan{Spec: spec(blob1)}), err: ErrConflict, msg: "plan has no pairs"},
		{name: "pair without standby", setup: func(h *harness) { h.ok(&RemoveNode{Node: "b2"}) },
			cmd: cmd(&SubmitPlan{Spec: spec(blob1)}), err: ErrConflict, msg: "pair sip-2 has no standby node registered"},
		{name: "pair without active", setup: func(h *harness) { h.ok(&SetRole{Node: "a1", Role: RoleStandby}) },
			cmd: cmd(&SubmitPlan{Spec: spec(blob1)}), err: ErrConflict, msg: "pair sip-1 has no active node registered"},
		{name: "node without the target", setup: func(h *harness) {
			c := node("b2", "sip-2", RoleStandby)
			c.Targets = []string{"other"}
			h.ok(c)
		}, cmd: cmd(&SubmitPlan{Spec: spec(blob1)}), err: ErrConflict, msg: "node b2 has no target sipd (its targets: other)"},
		{name: "another plan on the target", setup: func(h *harness) { h.submit(spec(blob2, "sip-2")) },
			cmd: cmd(&SubmitPlan{Spec: spec(blob1, "sip-1")}), err: ErrConflict, msg: "plan p000001 (pending) already works on target sipd"},
		{name: "a finished plan on the target does not block", setup: func(h *harness) {
			h.ok(&AbortPlan{Plan: h.submit(spec(blob2))})
		}, cmd: cmd(&SubmitPlan{Spec: spec(blob1)}),
			check: func(t *testing.T, h *harness, res *Result) {
				if res.PlanID != "p000002" {
					t.Fatalf("plan id = %s; want p000002", res.PlanID)
				}
			}},
		{name: "deadline shorter than trials", cmd: func(*harness) Command {
			s := spec(blob1)
			s.ProgressDeadline = time.Minute
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "shorter than the trials alone (2 pairs x 2 x 30s = 2m0s)"},
		{name: "bad on_failure", cmd: func(*harness) Command {
			s := spec(blob1)
			s.OnFailure = "explode"
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "on_failure"},
		{name: "bad failover policy", cmd: func(*harness) Command {
			s := spec(blob1)
			s.FailoverDuringTrial = "pray"
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "failover_during_trial"},
		{name: "health check with two kinds", cmd: func(*harness) Command {
			s := spec(blob1)
			s.Health = []CheckSpec{{Name: "c", Exec: "true", TCP: "127.0.0.1:1"}}
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "want exactly one"},
		{name: "submitted_at set by caller", cmd: func(*harness) Command {
			s := spec(blob1)
			s.SubmittedAt = t0
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "submitted_at"},
		{name: "negative trial", cmd: func(*harness) Command {
			s := spec(blob1)
			s.Trial = -time.Second
			return &SubmitPlan{Spec: s}
		}, err: ErrInvalid, msg: "trial -1s is negative"},
	})
}

// planAt returns a setup that submits a plan over both pairs and runs it to
// the given point, described by a function.
func planSetup(steps func(h *harness, id string)) func(h *harness) {
	return func(h *harness) {
		id := h.submit(spec(blob1))
		if steps != nil {
			steps(h, id)
		}
	}
}

const id1 = "p000001"

func TestPlanPhase(t *testing.T) {
	phase := func(pair string, ph Phase) func(*harness) Command {
		return cmd(&PlanPhase{Plan: id1, Pair: pair, Phase: ph, Cause: "test"})
	}
	standbyApplied := func(h *harness, id string) {
		h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
		h.applyStep(id)
	}
	inStandbyTrial := func(h *harness, id string) {
		standbyApplied(h, id)
		h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyTrial})
	}
	runCases(t, []commandCase{
		{name: "start", setup: planSetup(nil), cmd: phase("sip-1", PhaseStandbyApply),
			check: func(t *testing.T, h *harness, _ *Result) {
				p := h.state().Plans[id1]
				if p.State != PlanRunning || p.Phase != PhaseStandbyApply || p.CurrentPair() != "sip-1" || p.PhaseNode() != "b1" {
					t.Fatalf("plan = %s %s/%s node %s; want running sip-1/standby_apply on b1", p.State, p.CurrentPair(), p.Phase, p.PhaseNode())
				}
				if !p.PhaseDeadline.Equal(p.PlanDeadline) {
					t.Fatalf("phase deadline %v; want the plan deadline %v", p.PhaseDeadline, p.PlanDeadline)
				}
				hist := h.state().PlanHistory(id1)
				if n := len(hist); n != 3 || hist[1].To != "running" || hist[2].To != "sip-1/standby_apply" || hist[2].From != "" {
					t.Fatalf("history = %+v; want pending, running, sip-1/standby_apply", hist)
				}
			}},
		{name: "start with an apply deadline", setup: planSetup(nil), cmd: func(h *harness) Command {
			return &PlanPhase{Plan: id1, Pair: "sip-1", Phase: PhaseStandbyApply, Deadline: h.now.Add(time.Minute)}
		}, check: func(t *testing.T, h *harness, _ *Result) {
			if got := h.state().Plans[id1].PhaseDeadline; !got.Equal(h.now.Add(time.Minute)) {
				t.Fatalf("phase deadline = %v; want %v", got, h.now.Add(time.Minute))
			}
		}},
		{name: "start again is a no-op", setup: planSetup(func(h *harness, id string) {
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
		}), cmd: phase("sip-1", PhaseStandbyApply), noop: true},
		{name: "start the second pair first", setup: planSetup(nil), cmd: phase("sip-2", PhaseStandbyApply),
			err: ErrConflict, msg: "its next phase is sip-1/standby_apply, not sip-2/standby_apply"},
		{name: "start with the active", setup: planSetup(nil), cmd: phase("sip-1", PhaseActiveApply),
			err: ErrConflict, msg: "its next phase is sip-1/standby_apply"},
		{name: "start with an unhealthy standby", setup: planSetup(func(h *harness, _ string) {
			h.ok(&SetNodeHealth{Node: "b1", FailingCheck: "sip-port"})
		}), cmd: phase("sip-1", PhaseStandbyApply), err: ErrConflict, msg: "b1 of pair sip-1 is unhealthy: sip-port"},
		{name: "start with a suspect active", setup: planSetup(func(h *harness, _ string) {
			h.ok(&SetNodeStatus{Node: "a1", Status: StatusSuspect})
		}), cmd: phase("sip-1", PhaseStandbyApply), err: ErrConflict, msg: "a1 of pair sip-1 is suspect"},
		{name: "start a pair whose roles changed takes the new sides", setup: planSetup(func(h *harness, _ string) {
			h.ok(&SetRole{Node: "b1", Role: RoleActive})
		}), cmd: phase("sip-1", PhaseStandbyApply),
			check: func(t *testing.T, h *harness, _ *Result) {
				if p := h.state().Plans[id1]; p.PhaseNode() != "a1" {
					t.Fatalf("standby of sip-1 = %s; want a1 (demoted before the pair started)", p.PhaseNode())
				}
			}},
		{name: "trial before the standby converged", setup: planSetup(func(h *harness, id string) {
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
			stack, _ := h.state().PlanStack(id, "b1")
			h.ok(&SetDesired{Node: "b1", Target: target, Patches: stack, Plan: id})
		}), cmd: phase("sip-1", PhaseStandbyTrial), err: ErrConflict, msg: "b1 has not converged on sipd (desired fix-1; observed none)"},
		{name: "trial before the standby was given the patch", setup: planSetup(func(h *harness, id string) {
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
		}), cmd: phase("sip-1", PhaseStandbyTrial), err: ErrConflict, msg: "b1 has not been given the plan's stack"},
		{name: "standby trial", setup: planSetup(standbyApplied), cmd: phase("sip-1", PhaseStandbyTrial),
			check: func(t *testing.T, h *harness, _ *Result) {
				p := h.state().Plans[id1]
				st, _ := p.Step("b1")
				if !p.PhaseDeadline.Equal(h.now.Add(trial)) || !st.TrialStarted.Equal(h.now) {
					t.Fatalf("deadline %v, trial started %v; want %v, %v", p.PhaseDeadline, st.TrialStarted, h.now.Add(trial), h.now)
				}
			}},
		{name: "trial with a deadline", setup: planSetup(standbyApplied), cmd: func(h *harness) Command {
			return &PlanPhase{Plan: id1, Pair: "sip-1", Phase: PhaseStandbyTrial, Deadline: h.now.Add(time.Hour)}
		}, err: ErrInvalid, msg: "leave deadline zero"},
		{name: "active before the standby trial ended", setup: planSetup(func(h *harness, id string) {
			inStandbyTrial(h, id)
			h.advance(trial - time.Nanosecond)
		}), cmd: phase("sip-1", PhaseActiveApply), err: ErrConflict, msg: "the standby_trial of pair sip-1 ends at"},
		{name: "active after the standby trial", setup: planSetup(func(h *harness, id string) {
			inStandbyTrial(h, id)
			h.advance(trial)
		}), cmd: phase("sip-1", PhaseActiveApply),
			check: func(t *testing.T, h *harness, _ *Result) {
				p := h.state().Plans[id1]
				st, _ := p.Step("b1")
				if p.PhaseNode() != "a1" || !st.TrialPassed.Equal(h.now) {
					t.Fatalf("phase node %s, b1 trial passed %v; want a1, %v", p.PhaseNode(), st.TrialPassed, h.now)
				}
			}},
		{name: "active while the standby is dead", setup: planSetup(func(h *harness, id string) {
			inStandbyTrial(h, id)
			h.advance(trial)
			h.ok(&SetNodeStatus{Node: "b1", Status: StatusDead})
		}), cmd: phase("sip-1", PhaseActiveApply), err: ErrConflict, msg: "b1 of pair sip-1 is dead"},
		{name: "skip the standby trial", setup: planSetup(standbyApplied), cmd: phase("sip-1", PhaseActiveApply),
			err: ErrConflict, msg: "its next phase is sip-1/standby_trial"},
		{name: "go back", setup: planSetup(inStandbyTrial), cmd: phase("sip-1", PhaseStandbyApply),
			err: ErrConflict, msg: "is at sip-1/standby_trial"},
		{name: "next pair", setup: planSetup(func(h *harness, id string) { h.runPair(id, "sip-1") }),
			cmd: phase("sip-2", PhaseStandbyApply)},
		{name: "past the plan deadline", setup: planSetup(func(h *harness, id string) {
			standbyApplied(h, id)
			h.advance(11 * time.Minute)
		}), cmd: phase("sip-1", PhaseStandbyTrial), err: ErrConflict, msg: "passed its progress deadline"},
		{name: "paused plan", setup: planSetup(func(h *harness, id string) { h.ok(&PausePlan{Plan: id}) }),
			cmd: phase("sip-1", PhaseStandbyApply), err: ErrConflict, msg: "paused; resume it first"},
		{name: "unknown plan", cmd: cmd(&PlanPhase{Plan: "p000009", Pair: "sip-1", Phase: PhaseStandbyApply}),
			err: ErrNotFound, msg: "plan p000009 does not exist"},
		{name: "pair not in the plan", setup: func(h *harness) { h.submit(spec(blob1, "sip-2")) },
			cmd: phase("sip-1", PhaseStandbyApply), err: ErrNotFound, msg: "pair sip-1 is not in plan"},
		{name: "bad phase", setup: planSetup(nil), cmd: phase("sip-1", "standby_party"), err: ErrInvalid, msg: "not one of"},
		{name: "past the last phase", setup: planSetup(func(h *harness, id string) {
			h.runPair(id, "sip-1")
			h.runPair(id, "sip-2")
		}), cmd: phase("sip-2", PhaseStandbyApply), err: ErrConflict, msg: "its last phase; complete it"},

		{name: "complete", setup: planSetup(func(h *harness, id string) {
			h.runPair(id, "sip-1")
			h.runPair(id, "sip-2")
		}), cmd: cmd(&CompletePlan{Plan: id1}),
			check: func(t *testing.T, h *harness, _ *Result) {
				s := h.state()
				if p := s.Plans[id1]; p.State != PlanCompleted {
					t.Fatalf("state = %s; want completed", p.State)
				}
				for _, n := range []string{"a1", "b1", "a2", "b2"} {
					if got := PatchIDs(s.Desired[n][target]); !slices.Equal(got, []string{"fix-1"}) {
						t.Fatalf("%s desired = %v; want [fix-1]", n, got)
					}
				}
				if !s.Converged(id1) {
					t.Fatalf("Converged = false; want true")
				}
			}},
		{name: "complete twice", setup: planSetup(func(h *harness, id string) { h.runPlan(id) }),
			cmd: cmd(&CompletePlan{Plan: id1}), noop: true},
		{name: "complete before the last trial ended", setup: planSetup(func(h *harness, id string) {
			h.runPair(id, "sip-1")
			h.runPair(id, "sip-2")
			h.advance(-time.Second)
		}), cmd: cmd(&CompletePlan{Plan: id1}), err: ErrConflict, msg: "active_trial of pair sip-2 ends at"},
		{name: "complete too early", setup: planSetup(func(h *harness, id string) { h.runPair(id, "sip-1") }),
			cmd: cmd(&CompletePlan{Plan: id1}), err: ErrConflict, msg: "completes after the active trial of its last pair"},
		{name: "complete a pending plan", setup: planSetup(nil),
			cmd: cmd(&CompletePlan{Plan: id1}), err: ErrConflict, msg: "only a running plan completes"},
	})
}

func TestPlanDesired(t *testing.T) {
	setStack := func(nodeName string) func(h *harness) Command {
		return func(h *harness) Command {
			stack, _ := h.state().PlanStack(id1, nodeName)
			return &SetDesired{Node: nodeName, Target: target, Patches: stack, Plan: id1, Cause: "apply"}
		}
	}
	started := func(h *harness, id string) { h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply}) }
	runCases(t, []commandCase{
		{name: "standby in its apply phase", setup: planSetup(started), cmd: setStack("b1"),
			check: func(t *testing.T, h *harness, _ *Result) {
				s := h.state()
				st, _ := s.Plans[id1].Step("b1")
				if got := s.Desired["b1"][target]; len(got) != 1 || got[0].Plan != id1 || !st.Applied.Equal(h.now) {
					t.Fatalf("desired %+v applied %v; want [fix-1 by %s] at %v", got, st.Applied, id1, h.now)
				}
				if e := lastEvent(h); e.Plan != id1 || e.Node != "b1" || e.Pair != "sip-1" || e.To != "sipd=fix-1" {
					t.Fatalf("event = %+v; want desired b1 sipd=fix-1 for %s", e, id1)
				}
			}},
		{name: "standby again is a no-op", setup: planSetup(func(h *harness, id string) {
			started(h, id)
			h.applyStep(id)
		}), cmd: setStack("b1"), noop: true},
		{name: "active in the standby's apply phase", setup: planSetup(started), cmd: setStack("a1"),
			err: ErrConflict, msg: "node a1 (active of pair sip-1) is patched only in its active_apply phase"},
		{name: "active in the standby's trial", setup: planSetup(func(h *harness, id string) {
			started(h, id)
			h.applyStep(id)
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyTrial})
			h.advance(time.Hour)
		}), cmd: setStack("a1"), err: ErrConflict, msg: "is at sip-1/standby_trial"},
		{name: "next pair's standby", setup: planSetup(started), cmd: setStack("b2"),
			err: ErrConflict, msg: "standby of pair sip-2"},
		{name: "a stack other than the plan's", setup: planSetup(started),
			cmd: cmd(&SetDesired{Node: "b1", Target: target, Patches: stackOf(blob2), Plan: id1}),
			err: ErrConflict, msg: "gives node b1 sipd=fix-1, not sipd=fix-2"},
		{name: "pending plan", setup: planSetup(nil), cmd: setStack("b1"),
			err: ErrConflict, msg: "is pending; it changes desired state only while running or rolling back"},
		{name: "node not in the plan", setup: func(h *harness) { h.submit(spec(blob1, "sip-2")) },
			cmd: cmd(&SetDesired{Node: "b1", Target: target, Plan: id1}), err: ErrConflict, msg: "not part of plan"},
		{name: "other target", setup: planSetup(started),
			cmd: cmd(&SetDesired{Node: "b1", Target: "other", Patches: stackOf(blob1), Plan: id1}), err: ErrConflict, msg: "patches target sipd, not other"},
	})
}

func TestPlanLifecycle(t *testing.T) {
	runCases(t, []commandCase{
		{name: "pause running", setup: planSetup(func(h *harness, id string) {
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
		}), cmd: cmd(&PausePlan{Plan: id1, Reason: "health check failed on b1"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				p := h.state().Plans[id1]
				if p.State != PlanPaused || p.Reason != "health check failed on b1" || !p.PausedAt.Equal(h.now) {
					t.Fatalf("plan = %s %q %v; want paused with the reason at %v", p.State, p.Reason, p.PausedAt, h.now)
				}
			}},
		{name: "pause paused", setup: planSetup(func(h *harness, id string) { h.ok(&PausePlan{Plan: id}) }),
			cmd: cmd(&PausePlan{Plan: id1}), noop: true},
		{name: "pause completed", setup: planSetup(func(h *harness, id string) { h.runPlan(id) }),
			cmd: cmd(&PausePlan{Plan: id1}), err: ErrConflict, msg: "only a pending or running plan pauses"},
		{name: "resume pending", setup: planSetup(func(h *harness, id string) {
			h.ok(&PausePlan{Plan: id})
			h.advance(time.Minute)
		}), cmd: cmd(&ResumePlan{Plan: id1}),
			check: func(t *testing.T, h *harness, _ *Result) {
				p := h.state().Plans[id1]
				if p.State != PlanPending || !p.PlanDeadline.Equal(p.Spec.SubmittedAt.Add(11*time.Minute)) {
					t.Fatalf("plan %s deadline %v; want pending, deadline moved on by the pause", p.State, p.PlanDeadline)
				}
			}},
		{name: "resume in a trial restarts it", setup: planSetup(func(h *harness, id string) {
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
			h.applyStep(id)
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyTrial})
			h.advance(20 * time.Second)
			h.ok(&PausePlan{Plan: id})
			h.advance(time.Hour)
		}), cmd: cmd(&ResumePlan{Plan: id1}),
			check: func(t *testing.T, h *harness, _ *Result) {
				p := h.state().Plans[id1]
				if p.State != PlanRunning || !p.PhaseDeadline.Equal(h.now.Add(trial)) {
					t.Fatalf("plan %s phase deadline %v; want running, %v", p.State, p.PhaseDeadline, h.now.Add(trial))
				}
				h.advance(trial - time.Second)
				h.refused(&PlanPhase{Plan: id1, Pair: "sip-1", Phase: PhaseActiveApply}, ErrConflict, "ends at")
				h.advance(time.Second)
				h.ok(&PlanPhase{Plan: id1, Pair: "sip-1", Phase: PhaseActiveApply})
			}},
		{name: "resume running", setup: planSetup(nil), cmd: cmd(&ResumePlan{Plan: id1}), noop: true},
		{name: "resume aborted", setup: planSetup(func(h *harness, id string) { h.ok(&AbortPlan{Plan: id}) }),
			cmd: cmd(&ResumePlan{Plan: id1}), err: ErrConflict, msg: "only a paused plan resumes"},
		{name: "abort leaves desired state", setup: planSetup(func(h *harness, id string) {
			h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
			h.applyStep(id)
		}), cmd: cmd(&AbortPlan{Plan: id1, Reason: "operator"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				s := h.state()
				if s.Plans[id1].State != PlanAborted || len(s.Desired["b1"][target]) != 1 {
					t.Fatalf("plan %s, b1 desired %v; want aborted with fix-1 still desired", s.Plans[id1].State, s.Desired["b1"])
				}
			}},
		{name: "abort twice", setup: planSetup(func(h *harness, id string) { h.ok(&AbortPlan{Plan: id}) }),
			cmd: cmd(&AbortPlan{Plan: id1}), noop: true},
		{name: "abort completed", setup: planSetup(func(h *harness, id string) { h.runPlan(id) }),
			cmd: cmd(&AbortPlan{Plan: id1}), err: ErrConflict, msg: "roll it back to undo it"},
		{name: "abort rolling back", setup: planSetup(func(h *harness, id string) { h.ok(&RollbackPlan{Plan: id}) }),
			cmd: cmd(&AbortPlan{Plan: id1}), err: ErrConflict, msg: "rolling back; let it finish"},
		{name: "fail rolling back", setup: planSetup(func(h *harness, id string) { h.ok(&RollbackPlan{Plan: id, Staged: true}) }),
			cmd: cmd(&FailPlan{Plan: id1, Reason: "b1 never converged"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if p := h.state().Plans[id1]; p.State != PlanFailed || p.Reason != "b1 never converged" {
					t.Fatalf("plan = %s %q; want failed with the reason", p.State, p.Reason)
				}
			}},
		{name: "fail twice", setup: planSetup(func(h *harness, id string) { h.ok(&FailPlan{Plan: id}) }),
			cmd: cmd(&FailPlan{Plan: id1}), noop: true},
		{name: "fail completed", setup: planSetup(func(h *harness, id string) { h.runPlan(id) }),
			cmd: cmd(&FailPlan{Plan: id1}), err: ErrConflict, msg: "only an unfinished plan can fail"},
		{name: "fail unknown", cmd: cmd(&FailPlan{Plan: "p000042"}), err: ErrNotFound, msg: "does not exist"},
	})
}

func TestRollback(t *testing.T) {
	midway := func(h *harness, id string) {
		h.ok(&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob2), Cause: "earlier"})
		h.converge("a1")
		id = h.submit(spec(blob1))
		h.runPair(id, "sip-1")
		h.ok(&PlanPhase{Plan: id, Pair: "sip-2", Phase: PhaseStandbyApply})
		h.applyStep(id)
	}
	second := "p000001"
	runCases(t, []commandCase{
		{name: "rollback sets every node back at once", setup: func(h *harness) { midway(h, "") },
			cmd: cmd(&RollbackPlan{Plan: second, Reason: "health check sip-port failed on b2"}),
			check: func(t *testing.T, h *harness, _ *Result) {
				s := h.state()
				p := s.Plans[second]
				if p.State != PlanRollingBack || p.Reason != "health check sip-port failed on b2" {
					t.Fatalf("plan = %s %q; want rolling_back with the reason", p.State, p.Reason)
				}
				if got := PatchIDs(s.Desired["a1"][target]); !slices.Equal(got, []string{"fix-2"}) {
					t.Fatalf("a1 desired = %v; want its pre-state [fix-2]", got)
				}
				for _, n := range []string{"b1", "b2", "a2"} {
					if got := s.Desired[n][target]; got != nil {
						t.Fatalf("%s desired = %v; want none", n, got)
					}
				}
				// Standby side first, pair by pair.
				var order []string
				for _, e := range s.PlanHistory(second) {
					if e.Kind == EventDesired && strings.HasPrefix(e.Cause, "rollback") {
						order = append(order, e.Node)
					}
				}
				if want := []string{"b1", "a1", "b2"}; !slices.Equal(order, want) {
					t.Fatalf("rollback order = %v; want %v", order, want)
				}
				h.ok(&FinishRollback{Plan: second})
				if got := h.state().Plans[second].State; got != PlanRolledBack {
					t.Fatalf("after FinishRollback state = %s; want rolled_back", got)
				}
				res := h.ok(&RollbackPlan{Plan: second})
				if !res.Noop || res.Message != "plan p000001 is already rolled back" {
					t.Fatalf("second rollback = %+v; want no-op saying already rolled back", res)
				}
			}},
		{name: "staged rollback goes node by node", setup: func(h *harness) { midway(h, "") },
			cmd: cmd(&RollbackPlan{Plan: second, Staged: true}),
			check: func(t *testing.T, h *harness, _ *Result) {
				if got := PatchIDs(h.state().Desired["b1"][target]); !slices.Equal(got, []string{"fix-1"}) {
					t.Fatalf("b1 desired = %v; want unchanged [fix-1] until the orchestrator sets it", got)
				}
				h.refused(&FinishRollback{Plan: second}, ErrConflict, "node b1 still has fix-1 desired for sipd; its pre-plan stack is none")
				h.refused(&SetDesired{Node: "b1", Target: target, Patches: stackOf(blob1), Plan: second}, ErrConflict, "gives node b1 sipd=, not sipd=fix-1")
				for _, n := range []string{"b1", "a1", "b2"} {
					pre, _ := h.state().PreStack(second, n)
					h.ok(&SetDesired{Node: n, Target: target, Patches: pre, Plan: second, Cause: "rollback"})
				}
				h.ok(&FinishRollback{Plan: second})
			}},
		{name: "rollback rolling back", setup: planSetup(func(h *harness, id string) { h.ok(&RollbackPlan{Plan: id}) }),
			cmd: cmd(&RollbackPlan{Plan: id1}), noop: true},
		{name: "rollback completed", setup: planSetup(func(h *harness, id string) { h.runPlan(id) }),
			cmd: cmd(&RollbackPlan{Plan: id1})},
		{name: "rollback blocked by a later plan", setup: func(h *harness) {
			h.runPlan(h.submit(spec(blob1)))
			id2 := h.submit(spec(blob2))
			h.ok(&PlanPhase{Plan: id2, Pair: "sip-1", Phase: PhaseStandbyApply})
			h.applyStep(id2)
			h.ok(&AbortPlan{Plan: id2})
		}, cmd: cmd(&RollbackPlan{Plan: id1}), err: ErrConflict, msg: "plan p000002 on target sipd came after plan p000001 and is aborted; roll it back first"},
		{name: "rollback not blocked by a later plan that changed nothing", setup: func(h *harness) {
			h.runPlan(h.submit(spec(blob1)))
			h.ok(&AbortPlan{Plan: h.submit(spec(blob2))})
		}, cmd: cmd(&RollbackPlan{Plan: id1})},
		{name: "finish a running plan", setup: planSetup(nil), cmd: cmd(&FinishRollback{Plan: id1}),
			err: ErrConflict, msg: "is pending, not rolling back"},
		{name: "finish twice", setup: planSetup(func(h *harness, id string) {
			h.ok(&RollbackPlan{Plan: id})
			h.ok(&FinishRollback{Plan: id})
		}), cmd: cmd(&FinishRollback{Plan: id1}), noop: true},
		{name: "rollback unknown", cmd: cmd(&RollbackPlan{Plan: "p000003"}), err: ErrNotFound, msg: "does not exist"},
	})
}

func TestResultOf(t *testing.T) {
	tests := []struct {
		resp any
		want error
	}{
		{&Result{}, nil},
		{&Result{Err: "x", Code: CodeConflict}, ErrConflict},
		{&Result{Err: "x", Code: "martian"}, ErrInternal},
		{nil, ErrNoResult},
		{errors.New("raft"), ErrNoResult},
	}
	for _, tc := range tests {
		_, err := ResultOf(tc.resp)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("ResultOf(%#v) = %v; want %v", tc.resp, err, tc.want)
		}
	}
}

func TestDecodeRefusals(t *testing.T) {
	good, err := Encode(t0, &SetNodeStatus{Node: "a1", Status: StatusDead})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		want error
		msg  string
	}{
		{"not json", "hello", ErrInvalid, "decoding command"},
		{"version 2", strings.Replace(string(good), `"v":1`, `"v":2`, 1), ErrUnsupported, "command version 2 is not supported"},
		{"unknown type", strings.Replace(string(good), "set_node_status", "launch_missiles", 1), ErrUnsupported, `unknown command type "launch_missiles"`},
		{"no time", strings.Replace(string(good), `"time":"2026-03-01T12:00:00Z"`, `"time":"0001-01-01T00:00:00Z"`, 1), ErrInvalid, "has no time"},
		{"no body", `{"v":1,"type":"set_node_status","time":"2026-03-01T12:00:00Z"}`, ErrInvalid, "has no body"},
		{"unknown field", strings.Replace(string(good), `"cause"`, `"colour":1,"cause"`, 1), ErrInvalid, "unknown field"},
		{"trailing data", string(good) + "{}", ErrInvalid, "trailing data"},
		{"invalid body", strings.Replace(string(good), `"dead"`, `"zombie"`, 1), ErrInvalid, "not one of alive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newCluster(t)
			before := h.snapshot()
			res := h.applyLog(&raft.Log{Index: 99, Data: []byte(tc.data)})
			if !errors.Is(res.AsError(), tc.want) || !strings.Contains(res.Err, tc.msg) {
				t.Fatalf("Apply(%s) = %q (%s); want %v containing %q", tc.data, res.Err, res.Code, tc.want, tc.msg)
			}
			if res.Index != 99 {
				t.Fatalf("Result.Index = %d; want 99", res.Index)
			}
			if !bytes.Equal(before, h.snapshot()) {
				t.Fatalf("a refused entry changed the state")
			}
		})
	}
	t.Run("non-command entries are ignored", func(t *testing.T) {
		h := newCluster(t)
		before := h.snapshot()
		res := h.applyLog(&raft.Log{Index: 5, Type: raft.LogConfiguration, Data: []byte("x")})
		if !res.Noop || res.Err != "" || !bytes.Equal(before, h.snapshot()) {
			t.Fatalf("Apply(configuration) = %+v; want a no-op", res)
		}
	})
	t.Run("encode refuses", func(t *testing.T) {
		if _, err := Encode(time.Time{}, &RemoveNode{Node: "a"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Encode(zero time) = %v; want ErrInvalid", err)
		}
		if _, err := Encode(t0, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Encode(nil) = %v; want ErrInvalid", err)
		}
		if _, err := Encode(t0, &RemoveNode{Node: ""}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Encode(no node) = %v; want ErrInvalid", err)
		}
	})
}

func TestDecodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	for _, c := range sampleCommands() {
		data, err := Encode(at, c)
		if err != nil {
			t.Fatalf("Encode(%T) = %v", c, err)
		}
		got, gotAt, err := Decode(data)
		if err != nil {
			t.Fatalf("Decode(Encode(%T)) = %v", c, err)
		}
		if !gotAt.Equal(at) || gotAt.Location() != time.UTC {
			t.Errorf("%s time = %v; want %v in UTC", c.CommandType(), gotAt, at)
		}
		again, _ := Encode(at, got)
		if !bytes.Equal(again, data) {
			t.Errorf("%s does not round-trip:\ngot  %s\nwant %s", c.CommandType(), again, data)
		}
	}
}

// sampleCommands returns one valid command of every type.
func sampleCommands() []Command {
	return []Command{
		node("a1", "sip-1", RoleActive),
		&SetNodeStatus{Node: "a1", Status: StatusSuspect, Cause: "memberlist"},
		&SetNodeHealth{Node: "a1", FailingCheck: "sip-port", CheckOutput: "refused"},
		&SetRole{Node: "b1", Role: RoleActive, Cause: "manual"},
		&RemoveNode{Node: "b2"},
		blob1,
		&SubmitPlan{Spec: PlanSpec{Name: "fix", PatchSHA256: blob1.SHA256, Target: target, Pairs: []string{"sip-1"},
			Trial: time.Second, Health: []CheckSpec{{Name: "sip", TCP: "127.0.0.1:5060", Interval: time.Second, Failures: 3}}}},
		&PlanPhase{Plan: id1, Pair: "sip-1", Phase: PhaseStandbyApply},
		&CompletePlan{Plan: id1},
		&PausePlan{Plan: id1, Reason: "r"},
		&ResumePlan{Plan: id1},
		&AbortPlan{Plan: id1},
		&RollbackPlan{Plan: id1, Staged: true},
		&FinishRollback{Plan: id1},
		&FailPlan{Plan: id1},
		&SetDesired{Node: "a1", Target: target, Patches: stackOf(blob1), Plan: id1},
		&ReportObserved{Node: "a1", Target: target, Pid: 12, Active: []string{"fix-1"}},
		&ReportHook{Node: "b1", Epoch: 1, Hook: "on_promote", OK: true},
		&Prune{Retention: Retention{History: 10, Plans: 1, BlobGrace: time.Minute}, Cause: "retention"},
		&SetPeerHealth{Node: "b1", Peer: PeerUp},
	}
}

func TestEveryCommandTypeDecodes(t *testing.T) {
	seen := map[CommandType]bool{}
	for _, c := range sampleCommands() {
		seen[c.CommandType()] = true
		if newCommand(c.CommandType()) == nil {
			t.Errorf("newCommand(%s) = nil; want a command", c.CommandType())
		}
	}
	if len(seen) != 20 {
		t.Errorf("sample commands cover %d types; want 20", len(seen))
	}
}

func TestQueries(t *testing.T) {
	h := newCluster(t)
	id := h.submit(spec(blob1))
	h.ok(&PlanPhase{Plan: id, Pair: "sip-1", Phase: PhaseStandbyApply})
	h.applyStep(id)
	s := h.state()
	if got := s.Pairs(); !slices.Equal(got, []string{"sip-1", "sip-2"}) {
		t.Errorf("Pairs() = %v; want [sip-1 sip-2]", got)
	}
	if a, sb := s.PairRoles("sip-2"); a != "a2" || sb != "b2" {
		t.Errorf("PairRoles(sip-2) = %s, %s; want a2, b2", a, sb)
	}
	if p, ok := s.UnfinishedPlan(target); !ok || p.ID != id {
		t.Errorf("UnfinishedPlan(sipd) = %s, %v; want %s", p.ID, ok, id)
	}
	if _, ok := s.UnfinishedPlan("other"); ok {
		t.Errorf("UnfinishedPlan(other) found a plan; want none")
	}
	if p, ok := s.LatestPlan(); !ok || p.ID != id {
		t.Errorf("LatestPlan() = %s, %v; want %s", p.ID, ok, id)
	}
	if !s.NodeConverged("b1", target) || !s.NodeConverged("b1", "other") {
		t.Errorf("NodeConverged(b1) = false; want true")
	}
	h.ok(&ReportObserved{Node: "a1", Target: target, Pid: 9, Active: []string{"stray"}})
	if h.state().Converged(id) {
		t.Errorf("Converged = true with a stray patch on a1; want false")
	}
	hist := h.state().History
	since := h.state().HistorySince(hist[len(hist)-3].Seq)
	if len(since) != 2 || since[1].Seq != hist[len(hist)-1].Seq {
		t.Errorf("HistorySince = %d events; want the last 2", len(since))
	}
	for _, e := range h.state().PlanHistory(id) {
		if e.Plan != id {
			t.Errorf("PlanHistory returned an event of plan %q", e.Plan)
		}
	}
}

func TestStateIsACopy(t *testing.T) {
	h := newCluster(t)
	id := h.submit(spec(blob1))
	s := h.state()
	p := s.Plans[id]
	p.Spec.Pairs[0] = "mutated"
	p.Steps[0].Node = "mutated"
	s.Nodes["a1"] = Node{}
	n := s.Nodes["b1"]
	n.Targets[0] = "mutated"
	s.History[0].Kind = "mutated"
	fresh := h.state()
	if fresh.Plans[id].Spec.Pairs[0] != "sip-1" || fresh.Plans[id].Steps[0].Node != "b1" ||
		fresh.Nodes["a1"].Name != "a1" || fresh.Nodes["b1"].Targets[0] != "other" || fresh.History[0].Kind == "mutated" {
		t.Fatalf("changing a State() copy changed the FSM")
	}
	var viewed int
	h.f.View(func(s *State) { viewed = len(s.Plans) })
	if viewed != 1 {
		t.Fatalf("View saw %d plans; want 1", viewed)
	}
}
