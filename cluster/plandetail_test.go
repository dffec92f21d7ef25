package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lp/fsm"
)

// TestPlanDetailHistoryIsThePlans: plan show lists the plan's own events
// and its nodes' observations until the next plan on the target, never
// those of a later plan.
func TestPlanDetailHistoryIsThePlans(t *testing.T) {
	f := fsm.New()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var idx uint64
	apply := func(c fsm.Command) *fsm.Result {
		t.Helper()
		at, idx = at.Add(time.Second), idx+1
		data, err := fsm.Encode(at, c)
		if err != nil {
			t.Fatal(err)
		}
		res, err := fsm.ResultOf(f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}))
		if err != nil {
			t.Fatalf("%s: %v", c.CommandType(), err)
		}
		return res
	}
	for _, n := range []*fsm.RegisterNode{
		{Name: "a1", Pair: "p1", Role: fsm.RoleActive, Targets: []string{"svc"}, Healthy: true},
		{Name: "b1", Pair: "p1", Role: fsm.RoleStandby, Targets: []string{"svc"}, Healthy: true},
	} {
		apply(n)
	}
	submit := func(id string) string {
		b := fsm.NewPutBlob(id, []byte(id))
		apply(b)
		return apply(&fsm.SubmitPlan{Spec: fsm.PlanSpec{Name: id, PatchSHA256: b.SHA256, Target: "svc"}}).PlanID
	}
	first := submit("fix-1")
	apply(&fsm.ReportObserved{Node: "b1", Target: "svc", Pid: 10})
	apply(&fsm.AbortPlan{Plan: first, Reason: "test"})
	second := submit("fix-2")
	apply(&fsm.ReportObserved{Node: "b1", Target: "svc", Pid: 11})

	s := f.State()
	for _, c := range []struct {
		id     string
		pid    string
		notPid string
	}{{first, "pid=10", "pid=11"}, {second, "pid=11", "pid=10"}} {
		d := planDetail(s, s.Plans[c.id], true)
		var seen bool
		for _, e := range d.History {
			if e.Plan != "" && e.Plan != c.id {
				t.Errorf("plan %s shows event %+v of another plan", c.id, e)
			}
			if e.Kind == fsm.EventObserved {
				seen = seen || strings.Contains(e.To, c.pid)
				if strings.Contains(e.To, c.notPid) {
					t.Errorf("plan %s shows observation %q of the other plan's time", c.id, e.To)
				}
			}
		}
		if !seen {
			t.Errorf("plan %s history %+v lacks its observation %s", c.id, d.History, c.pid)
		}
	}
}
