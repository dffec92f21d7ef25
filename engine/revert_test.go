package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// records returns the target's records as a fresh reader sees them.
func records(t testing.TB, pid int) map[string]Patch {
	t.Helper()
	ps, err := List(pid)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	m := map[string]Patch{}
	for _, p := range ps {
		m[p.ID] = p
	}
	return m
}

func recordJSON(t testing.TB, pid int) string {
	t.Helper()
	ps, err := List(pid)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	b, _ := json.Marshal(ps)
	return string(b)
}

// funcRec is the record of function name in patch p.
func funcRec(t testing.TB, p Patch, name string) Func {
	t.Helper()
	for _, f := range p.Funcs {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("patch %s has no function %s", p.ID, name)
	return Func{}
}

// The repro: a refused revert of a patch under another must leave
// the upper patch's record alone, so that reverting the upper one later
// goes back to the lower patch's code, not to the original.
func TestRefusedRevertUnderStackChangesNothing(t *testing.T) {
	tg := svc(t, "2", "park")
	expect(t, tg, "classify", 1)
	a := apply(t, tg.Pid, "fixa.c", Options{Consistency: "entry"})
	expect(t, tg, "classify", 1050)
	apply(t, tg.Pid, "fixb.c", Options{Consistency: "entry"})
	expect(t, tg, "classify", 1060)
	before := recordJSON(t, tg.Pid)

	_, err := Revert(context.Background(), tg.Pid, "fixa", false, Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("reverting fixa with a thread asleep in parked: %v; want ErrBusy", err)
	}
	if after := recordJSON(t, tg.Pid); after != before {
		t.Fatalf("a refused revert changed the record:\nbefore %s\nafter  %s", before, after)
	}
	detached(t, tg.Pid)

	revert(t, tg.Pid, "fixb", false)
	expect(t, tg, "classify", 1050)
	ac := funcRec(t, a.Patch, "classify")
	if got := codeOf(t, tg.Pid, ac.Site, len(ac.Jump)); !bytes.Equal(got, ac.Jump) {
		t.Errorf("classify's site holds %x; want fixa's jump %x", got, ac.Jump)
	}
	recs := records(t, tg.Pid)
	if recs["fixa"].State != StateActive || recs["fixb"].State != StateReverted {
		t.Errorf("states fixa=%s fixb=%s; want active, reverted", recs["fixa"].State, recs["fixb"].State)
	}
	noBad(t, tg)
}

// failAt is a fault hook that fails the step named point once.
func failAt(point string) (func(string) error, *bool) {
	hit := new(bool)
	return func(p string) error {
		if p == point && !*hit {
			*hit = true
			return fmt.Errorf("injected failure at %s", p)
		}
		return nil
	}, hit
}

// Every failure point of a revert, with the patch alone on its functions
// and under another, leaves the code and the record as they were.
func TestFailedRevertChangesNothing(t *testing.T) {
	for _, stacked := range []bool{false, true} {
		t.Run(fmt.Sprintf("stacked=%v", stacked), func(t *testing.T) {
			points := []string{"revert-intent", "window", "write 0", "write 1"}
			if stacked {
				// Under fixb only parked is rewritten: one write.
				points = points[:3]
			}
			tg := svc(t, "2")
			apply(t, tg.Pid, "fixa.c", Options{Consistency: "entry"})
			want := 1050
			if stacked {
				apply(t, tg.Pid, "fixb.c", Options{Consistency: "entry"})
				want = 1060
			}
			expect(t, tg, "classify", want)
			classify := mustSym(t, tg.Pid, "classify")
			parked := mustSym(t, tg.Pid, "parked")
			code := func() string {
				return fmt.Sprintf("%x %x", codeOf(t, tg.Pid, classify, 24), codeOf(t, tg.Pid, parked, 24))
			}
			beforeCode, beforeRec := code(), recordJSON(t, tg.Pid)
			for _, point := range points {
				fault, hit := failAt(point)
				_, err := Revert(context.Background(), tg.Pid, "fixa", false, Options{Consistency: "entry", fault: fault})
				if !*hit {
					t.Fatalf("%s: not reached (revert: %v)", point, err)
				}
				if err == nil {
					t.Fatalf("%s: revert succeeded; want the injected failure", point)
				}
				if got := code(); got != beforeCode {
					t.Errorf("%s: code changed:\nbefore %s\nafter  %s", point, beforeCode, got)
				}
				if got := recordJSON(t, tg.Pid); got != beforeRec {
					t.Errorf("%s: record changed:\nbefore %s\nafter  %s", point, beforeRec, got)
				}
				detached(t, tg.Pid)
				expect(t, tg, "classify", want)
			}
			revert(t, tg.Pid, "fixa", false)
			if stacked {
				expect(t, tg, "classify", 1060)
				revert(t, tg.Pid, "fixb", false)
			}
			expect(t, tg, "classify", 1)
			noBad(t, tg)
		})
	}
}

// When the record cannot be written after the window, the intent left in
// the target settles to the revert that happened, stacked patches' saved
// bytes included.
func TestRevertFinalRecordFailure(t *testing.T) {
	tg := svc(t, "2")
	a := apply(t, tg.Pid, "fixa.c", Options{Consistency: "entry"})
	apply(t, tg.Pid, "fixb.c", Options{Consistency: "entry"})
	expect(t, tg, "classify", 1060)
	fault, hit := failAt("revert-final")
	res, err := Revert(context.Background(), tg.Pid, "fixa", false, Options{Consistency: "entry", fault: fault})
	if err != nil || !*hit {
		t.Fatalf("revert with a failing final record: %v (hook reached %v); want success", err, *hit)
	}
	if len(res.Reverted) != 1 {
		t.Errorf("Reverted = %v", res.Reverted)
	}
	recs := records(t, tg.Pid)
	if recs["fixa"].State != StateReverted || recs["fixb"].State != StateActive {
		t.Fatalf("states fixa=%s fixb=%s; want reverted, active", recs["fixa"].State, recs["fixb"].State)
	}
	orig := funcRec(t, a.Patch, "classify").Prev
	if got := funcRec(t, recs["fixb"], "classify").Prev; !bytes.Equal(got, orig) {
		t.Errorf("fixb's saved bytes %x; want classify's original %x", got, orig)
	}
	revert(t, tg.Pid, "fixb", false)
	expect(t, tg, "classify", 1)
	noBad(t, tg)
}

// A cascade revert is one window: a failure in it leaves every patch of the
// cascade active, and success reverts them all.
func TestCascadeRevertAllOrNothing(t *testing.T) {
	tg := svc(t, "2")
	apply(t, tg.Pid, "fix1.c", Options{Consistency: "entry"})
	apply(t, tg.Pid, "fix2.c", Options{Consistency: "entry"})
	expect(t, tg, "classify", 3)
	classify := mustSym(t, tg.Pid, "classify")
	beforeCode, beforeRec := codeOf(t, tg.Pid, classify, 24), recordJSON(t, tg.Pid)
	for _, point := range []string{"revert-intent", "window", "write 0", "write 1"} {
		fault, hit := failAt(point)
		_, err := Revert(context.Background(), tg.Pid, "fix1", true, Options{Consistency: "entry", fault: fault})
		if err == nil || !*hit {
			t.Fatalf("%s: cascade revert: %v (hook reached %v); want the injected failure", point, err, *hit)
		}
		if got := codeOf(t, tg.Pid, classify, 24); !bytes.Equal(got, beforeCode) {
			t.Errorf("%s: classify changed to %x; was %x", point, got, beforeCode)
		}
		if got := recordJSON(t, tg.Pid); got != beforeRec {
			t.Errorf("%s: record changed:\nbefore %s\nafter  %s", point, beforeRec, got)
		}
		expect(t, tg, "classify", 3)
	}
	res, err := Revert(context.Background(), tg.Pid, "fix1", true, Options{Consistency: "entry"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 {
		t.Errorf("cascade took %d windows; want one", res.Attempts)
	}
	expect(t, tg, "classify", 1)
	if recs := records(t, tg.Pid); recs["fix1"].State != StateReverted || recs["fix2"].State != StateReverted {
		t.Errorf("states fix1=%s fix2=%s; want both reverted", recs["fix1"].State, recs["fix2"].State)
	}
	noBad(t, tg)
}
