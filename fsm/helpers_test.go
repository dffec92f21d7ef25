package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// t0 is the time of the first command in every test.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// harness applies commands to an FSM through encoded log entries, as raft
// would, and keeps the log so it can be replayed.
type harness struct {
	t   testing.TB
	f   *FSM
	now time.Time
	log []*raft.Log
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return &harness{t: t, f: New(), now: t0}
}

// entry encodes cmd at the harness time as the next log entry.
func (h *harness) entry(cmd Command) *raft.Log {
	h.t.Helper()
	data, err := Encode(h.now, cmd)
	if err != nil {
		h.t.Fatalf("Encode(%T) = %v; want no error", cmd, err)
	}
	return &raft.Log{Index: uint64(len(h.log) + 1), Type: raft.LogCommand, Data: data}
}

// applyLog applies one raw entry and returns its result.
func (h *harness) applyLog(l *raft.Log) *Result {
	h.t.Helper()
	h.log = append(h.log, l)
	held := h.f.Hold()
	res, ok := h.f.Apply(l).(*Result)
	if d := held.InPlace(); d != "" {
		h.t.Fatalf("Apply(%s): %s", l.Data, d)
	}
	if !ok || res == nil {
		h.t.Fatalf("Apply returned %T; want *Result", res)
	}
	if res.Code == CodeInternal {
		h.t.Fatalf("Apply(%s) = internal error %q", l.Data, res.Err)
	}
	return res
}

func (h *harness) apply(cmd Command) *Result {
	h.t.Helper()
	return h.applyLog(h.entry(cmd))
}

// ok applies cmd and fails the test if it is refused.
func (h *harness) ok(cmd Command) *Result {
	h.t.Helper()
	res := h.apply(cmd)
	if res.Err != "" {
		h.t.Fatalf("%s %+v refused: %s", cmd.CommandType(), cmd, res.Err)
	}
	return res
}

// refused applies cmd, which must be refused with an error matching want
// and a message containing msg, and must change nothing.
func (h *harness) refused(cmd Command, want error, msg string) *Result {
	h.t.Helper()
	before := h.snapshot()
	var l *raft.Log
	if _, err := Encode(h.now, cmd); err != nil {
		// Invalid whatever the state: Encode refuses it, and Apply must
		// refuse the same command written to the log by hand.
		if !errors.Is(err, want) || !strings.Contains(err.Error(), msg) {
			h.t.Fatalf("Encode(%s) = %v; want %v containing %q", cmd.CommandType(), err, want, msg)
		}
		body, err := json.Marshal(cmd)
		if err != nil {
			h.t.Fatal(err)
		}
		data, err := json.Marshal(envelope{V: CommandVersion, Type: cmd.CommandType(), Time: h.now, Cmd: body})
		if err != nil {
			h.t.Fatal(err)
		}
		l = &raft.Log{Index: uint64(len(h.log) + 1), Type: raft.LogCommand, Data: data}
	} else {
		l = h.entry(cmd)
	}
	res := h.applyLog(l)
	err := res.AsError()
	if err == nil {
		h.t.Fatalf("%s %+v accepted; want refusal matching %v", cmd.CommandType(), cmd, want)
	}
	if !errors.Is(err, want) {
		h.t.Fatalf("%s refused with %v (code %s); want %v", cmd.CommandType(), err, res.Code, want)
	}
	if !strings.Contains(res.Err, msg) {
		h.t.Fatalf("%s refused with %q; want it to contain %q", cmd.CommandType(), res.Err, msg)
	}
	if after := h.snapshot(); !bytes.Equal(before, after) {
		h.t.Fatalf("refused %s changed the state:\nbefore %s\nafter  %s", cmd.CommandType(), before, after)
	}
	return res
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

func (h *harness) state() *State { return h.f.State() }

func (h *harness) snapshot() []byte {
	h.t.Helper()
	return snapshotBytes(h.t, h.f)
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist() = %v", err)
	}
	snap.Release()
	if !sink.closed {
		t.Fatalf("Persist did not close the sink")
	}
	return sink.Bytes()
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// Cluster used by most tests: two pairs and a witness, each pair node
// carrying target "sipd", and two stored patch modules.
const target = "sipd"

var (
	blob1 = NewPutBlob("fix-1", []byte("\x7fELF patch module one"))
	blob2 = NewPutBlob("fix-2", []byte("\x7fELF patch module two"))
)

func node(name, pair string, role Role) *RegisterNode {
	return &RegisterNode{Name: name, Pair: pair, Role: role, Server: true, Voter: true,
		APIAddr: "127.0.0.1:7070", RaftAddr: "127.0.0.1:7071", GossipAddr: "127.0.0.1:7072",
		Targets: []string{target, "other"}, Healthy: true}
}

func witness(name string) *RegisterNode {
	return &RegisterNode{Name: name, Role: RoleWitness, Server: true, Voter: true, Healthy: true}
}

// newCluster returns a harness with nodes a1/b1 (pair sip-1), a2/b2
// (pair sip-2), witness w and both blobs stored.
func newCluster(t testing.TB) *harness {
	t.Helper()
	h := newHarness(t)
	h.ok(node("a1", "sip-1", RoleActive))
	h.ok(node("b1", "sip-1", RoleStandby))
	h.ok(node("a2", "sip-2", RoleActive))
	h.ok(node("b2", "sip-2", RoleStandby))
	h.ok(witness("w"))
	h.ok(blob1)
	h.ok(blob2)
	h.advance(time.Second)
	return h
}

const trial = 30 * time.Second

func spec(patch *PutBlob, pairs ...string) PlanSpec {
	return PlanSpec{Name: "fix", PatchSHA256: patch.SHA256, Target: target, Pairs: pairs,
		Trial: trial, ProgressDeadline: 10 * time.Minute, SubmittedBy: "test"}
}

// submit submits a plan and returns its id.
func (h *harness) submit(s PlanSpec) string {
	h.t.Helper()
	return h.ok(&SubmitPlan{Spec: s}).PlanID
}

// converge reports node's desired stack for target as observed.
func (h *harness) converge(nodeName string) {
	h.t.Helper()
	ids := PatchIDs(h.state().Desired[nodeName][target])
	h.ok(&ReportObserved{Node: nodeName, Target: target, Pid: 100, Active: ids})
}

// applyStep sets and converges the phase node of a plan in an apply phase.
func (h *harness) applyStep(id string) string {
	h.t.Helper()
	s := h.state()
	p := s.Plans[id]
	n := p.PhaseNode()
	stack, _ := s.PlanStack(id, n)
	h.ok(&SetDesired{Node: n, Target: target, Patches: stack, Plan: id, Cause: "apply"})
	h.converge(n)
	return n
}

// runPair takes a plan through all four phases of its next pair.
func (h *harness) runPair(id, pair string) {
	h.t.Helper()
	h.ok(&PlanPhase{Plan: id, Pair: pair, Phase: PhaseStandbyApply})
	h.applyStep(id)
	h.ok(&PlanPhase{Plan: id, Pair: pair, Phase: PhaseStandbyTrial})
	h.advance(trial)
	h.ok(&PlanPhase{Plan: id, Pair: pair, Phase: PhaseActiveApply})
	h.applyStep(id)
	h.ok(&PlanPhase{Plan: id, Pair: pair, Phase: PhaseActiveTrial})
	h.advance(trial)
}

// runPlan takes a plan to completed.
func (h *harness) runPlan(id string) {
	h.t.Helper()
	for _, pair := range h.state().Plans[id].Spec.Pairs {
		h.runPair(id, pair)
	}
	h.ok(&CompletePlan{Plan: id})
}

func equalState(t testing.TB, got, want *State) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		var g, w bytes.Buffer
		_ = WriteSnapshot(&g, got)
		_ = WriteSnapshot(&w, want)
		t.Fatalf("state differs:\ngot  %s\nwant %s", g.String(), w.String())
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// envelopeBytes builds a log entry by hand, bypassing Encode's checks.
func envelopeBytes(t testing.TB, typ CommandType, body []byte) []byte {
	t.Helper()
	data, err := json.Marshal(envelope{V: CommandVersion, Type: typ, Time: t0, Cmd: body})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func jsonIndent(dst *bytes.Buffer, src []byte) error { return json.Indent(dst, src, "", "  ") }
