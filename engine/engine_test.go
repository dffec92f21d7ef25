package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lp/engine/proc"
	"lp/internal/fixture"
)

var fixtures *fixture.Builder

func TestMain(m *testing.M) { os.Exit(fixture.Main(m, &fixtures)) }

// svc starts the test service with n workers.
func svc(t testing.TB, args ...string) *fixture.Target {
	t.Helper()
	bin := fixtures.Build(t, "svc", "-O2", "-pthread", "-rdynamic", "testdata/svc.c")
	tg := fixture.Start(t, bin, args...)
	tg.WaitPrefix(t, 0, 10*time.Second, "ready")
	tg.WaitPrefix(t, 0, 10*time.Second, "v ")
	return tg
}

// mod builds a patch module from testdata.
func mod(t testing.TB, src string) string {
	t.Helper()
	name := strings.TrimSuffix(strings.TrimSuffix(src, ".c"), ".cc") + ".so"
	return fixtures.Build(t, name, "-shared", "-fPIC", "-O2", "-I../include", "testdata/"+src)
}

// state waits for the next "v" line and returns its fields.
func state(t testing.TB, tg *fixture.Target) map[string]int {
	t.Helper()
	line, _ := tg.WaitPrefix(t, len(tg.Lines()), 5*time.Second, "v ")
	m := map[string]int{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("bad field %q in %q", f, line)
		}
		m[k] = n
	}
	return m
}

// expect waits until the service reports key=want (allowing a few lines
// for the change to show).
func expect(t testing.TB, tg *fixture.Target, key string, want int) {
	t.Helper()
	var got int
	for i := 0; i < 5; i++ {
		got = state(t, tg)[key]
		if got == want {
			return
		}
	}
	t.Fatalf("service reports %s=%d; want %d", key, got, want)
}

func noBad(t testing.TB, tg *fixture.Target) {
	t.Helper()
	for _, l := range tg.Lines() {
		if strings.HasPrefix(l, "BAD") {
			t.Fatalf("service saw a result no version gives: %q", l)
		}
	}
}

func apply(t testing.TB, pid int, src string, opts Options) *ApplyResult {
	t.Helper()
	res, err := Apply(context.Background(), pid, mod(t, src), opts)
	if err != nil {
		t.Fatalf("Apply(%s): %v", src, err)
	}
	return res
}

func revert(t testing.TB, pid int, id string, cascade bool) *RevertResult {
	t.Helper()
	res, err := Revert(context.Background(), pid, id, cascade, Options{})
	if err != nil {
		t.Fatalf("Revert(%s): %v", id, err)
	}
	return res
}

func listState(t testing.TB, pid int) map[string]string {
	t.Helper()
	ps, err := List(pid)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	m := map[string]string{}
	for _, p := range ps {
		m[p.ID] = p.State
	}
	return m
}

// codeOf reads n bytes of the target's code at a symbol, as a fresh reader.
func codeOf(t testing.TB, pid int, addr uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(addr)); err != nil {
		t.Fatal(err)
	}
	return buf
}

func detached(t testing.TB, pid int) {
	t.Helper()
	if tr, _ := fixture.TracerPid(pid); tr != 0 {
		t.Fatalf("pid %d still traced by %d", pid, tr)
	}
}

func TestApplyRevertGlobalFunction(t *testing.T) {
	tg := svc(t, "4")
	expect(t, tg, "classify", 1)
	res := apply(t, tg.Pid, "fix1.c", Options{})
	if res.Already || res.Patch.State != StateActive || res.Patch.ID != "fix1" {
		t.Fatalf("Apply = %+v; want fix1 active", res.Patch)
	}
	if n := len(res.Patch.Funcs[0].Jump); n != 5 {
		t.Errorf("jump is %d bytes; want a 5-byte jmp rel32 (module mapped near)", n)
	}
	detached(t, tg.Pid)
	expect(t, tg, "classify", 2)
	// The patch counts its calls in the target's own global.
	c1 := state(t, tg)["calls"]
	time.Sleep(20 * time.Millisecond)
	if c2 := state(t, tg)["calls"]; c2 <= c1 {
		t.Errorf("calls = %d then %d; the patch does not update the live global", c1, c2)
	}
	if got := listState(t, tg.Pid); got["fix1"] != StateActive {
		t.Errorf("List = %v; want fix1 active", got)
	}
	names := map[string]bool{}
	var inWindow time.Duration
	for _, ph := range res.Phases {
		names[ph.Name] = true
		if strings.HasPrefix(ph.Name, "window.") {
			inWindow += ph.Duration
		}
	}
	for _, n := range []string{"inspect", "attach", "load", "window", "window.stop", "window.inside", "window.release", "record", "detach"} {
		if !names[n] {
			t.Errorf("phases %v lack %s", res.Phases, n)
		}
	}
	if res.Pause < inWindow {
		t.Errorf("pause %v is less than the window's phases (%v)", res.Pause, inWindow)
	}
	again := apply(t, tg.Pid, "fix1.c", Options{})
	if !again.Already || again.Pause != 0 || again.Phases != nil {
		t.Errorf("applying an active patch again: %+v; want Already, settled without stopping the target", again)
	}
	rv := revert(t, tg.Pid, "fix1", false)
	if len(rv.Reverted) != 1 || rv.Reverted[0] != "fix1" {
		t.Errorf("Revert = %+v; want [fix1]", rv)
	}
	expect(t, tg, "classify", 1)
	if got := listState(t, tg.Pid); got["fix1"] != StateReverted {
		t.Errorf("List = %v; want fix1 reverted", got)
	}
	if rv := revert(t, tg.Pid, "fix1", false); !rv.Already {
		t.Errorf("reverting a reverted patch: %+v; want Already", rv)
	}
	noBad(t, tg)
	detached(t, tg.Pid)
}

func TestApplyStaticFunction(t *testing.T) {
	tg := svc(t, "2")
	expect(t, tg, "scale", 10)
	apply(t, tg.Pid, "fixstatic.c", Options{})
	expect(t, tg, "scale", 15)
	revert(t, tg.Pid, "fixstatic", false)
	expect(t, tg, "scale", 10)
	noBad(t, tg)
}

func TestModuleGlobalBoundToTargetCopy(t *testing.T) {
	tg := svc(t, "1")
	apply(t, tg.Pid, "fixdup.c", Options{})
	// 1000 + limit: the target's limit (10), not the module's 99.
	expect(t, tg, "classify", 1010)
}

func TestInitialiserRunsInTarget(t *testing.T) {
	tg := svc(t, "1")
	apply(t, tg.Pid, "fixinit.c", Options{})
	expect(t, tg, "classify", 1100)
}

func TestStackingAndDependencies(t *testing.T) {
	tg := svc(t, "4")
	_, err := Apply(context.Background(), tg.Pid, mod(t, "fix2.c"), Options{})
	if !errors.Is(err, ErrDependency) {
		t.Fatalf("fix2 without fix1: %v; want ErrDependency", err)
	}
	expect(t, tg, "classify", 1)
	apply(t, tg.Pid, "fix1.c", Options{})
	expect(t, tg, "classify", 2)
	apply(t, tg.Pid, "fix2.c", Options{})
	expect(t, tg, "classify", 3)

	_, err = Revert(context.Background(), tg.Pid, "fix1", false, Options{})
	if !errors.Is(err, ErrDependency) || !strings.Contains(err.Error(), "fix2") {
		t.Fatalf("reverting fix1 under fix2: %v; want ErrDependency naming fix2", err)
	}
	expect(t, tg, "classify", 3)

	// Reverting the later patch restores the earlier jump.
	revert(t, tg.Pid, "fix2", false)
	expect(t, tg, "classify", 2)
	apply(t, tg.Pid, "fix2.c", Options{})
	expect(t, tg, "classify", 3)

	rv := revert(t, tg.Pid, "fix1", true)
	if strings.Join(rv.Reverted, ",") != "fix2,fix1" {
		t.Errorf("cascade reverted %v; want [fix2 fix1]", rv.Reverted)
	}
	expect(t, tg, "classify", 1)
	noBad(t, tg)
}

// Reverting the lower of two stacked patches keeps the upper one working,
// and reverting the upper one afterwards restores the original code.
func TestRevertUnderneathStack(t *testing.T) {
	tg := svc(t, "2")
	orig := codeOf(t, tg.Pid, mustSym(t, tg.Pid, "classify"), 16)
	apply(t, tg.Pid, "fixstatic.c", Options{})
	apply(t, tg.Pid, "fix1.c", Options{})
	apply(t, tg.Pid, "fixdup.c", Options{})
	expect(t, tg, "classify", 1010)
	revert(t, tg.Pid, "fix1", false)
	expect(t, tg, "classify", 1010)
	revert(t, tg.Pid, "fixdup", false)
	expect(t, tg, "classify", 1)
	if got := codeOf(t, tg.Pid, mustSym(t, tg.Pid, "classify"), 16); string(got) != string(orig) {
		t.Errorf("classify code after reverting both = %x; want the original %x", got, orig)
	}
	expect(t, tg, "scale", 15)
}

func TestPatchableEntryPad(t *testing.T) {
	tg := svc(t, "1")
	expect(t, tg, "padded", 2)
	res := apply(t, tg.Pid, "fixpadded.c", Options{})
	if f := res.Patch.Funcs[0]; f.Site != f.Addr || len(f.Prev) != 5 {
		t.Errorf("site %#x len %d; want the 5-byte pad at the entry %#x", f.Site, len(f.Prev), f.Addr)
	}
	expect(t, tg, "padded", 101)
	revert(t, tg.Pid, "fixpadded", false)
	expect(t, tg, "padded", 2)
}

func TestBranchIntoRegionRefused(t *testing.T) {
	tg := svc(t, "1")
	addr := mustSym(t, tg.Pid, "loopy")
	before := codeOf(t, tg.Pid, addr, 12)
	_, err := Apply(context.Background(), tg.Pid, mod(t, "fixloopy.c"), Options{})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("patching loopy: %v; want ErrUnsafe", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if got := codeOf(t, tg.Pid, addr, 12); string(got) != string(before) {
		t.Errorf("loopy changed to %x", got)
	}
	expect(t, tg, "loopy", 3)
	detached(t, tg.Pid)
}

func TestParkedThreadBlocksFunctionConsistency(t *testing.T) {
	tg := svc(t, "1", "park")
	time.Sleep(20 * time.Millisecond)
	_, err := Apply(context.Background(), tg.Pid, mod(t, "fixparked.c"), Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("patching parked with a thread inside: %v; want ErrBusy", err)
	}
	if !strings.Contains(err.Error(), "parked") || !strings.Contains(err.Error(), "thread ") {
		t.Errorf("error %q does not name the thread and the function", err)
	}
	// The retries ran under the given deadline, not the default one (the
	// wall clock of the whole Apply says nothing on a busy machine).
	var be *BusyError
	if !errors.As(err, &be) || be.Waited != 300*time.Millisecond || be.Attempts < 1 {
		t.Errorf("busy error %#v; want the 300ms deadline and at least one attempt", be)
	}
	if got := listState(t, tg.Pid); got["fixparked"] == StateActive {
		t.Errorf("List = %v after a refused apply", got)
	}
	detached(t, tg.Pid)
	state(t, tg)
	// Entry consistency only guards the overwritten bytes: it proceeds.
	res, err := Apply(context.Background(), tg.Pid, mod(t, "fixparked.c"), Options{Consistency: "entry"})
	if err != nil {
		t.Fatalf("entry consistency: %v", err)
	}
	if res.Patch.State != StateActive {
		t.Errorf("state %s; want active", res.Patch.State)
	}
}

func TestFarModuleUsesAbsoluteJump(t *testing.T) {
	tg := svc(t, "4")
	res := apply(t, tg.Pid, "fix1.c", Options{farLoad: true})
	if n := len(res.Patch.Funcs[0].Jump); n != 14 {
		t.Fatalf("jump is %d bytes; want the 14-byte absolute jump", n)
	}
	expect(t, tg, "classify", 2)
	revert(t, tg.Pid, "fix1", false)
	expect(t, tg, "classify", 1)
	noBad(t, tg)
}

func TestDlopenModeCxxModule(t *testing.T) {
	tg := svc(t, "2")
	so := fixtures.Build(t, "fixcxx.so", "-shared", "-fPIC", "-O2", "-I../include", "testdata/fixcxx.cc")
	_, err := Apply(context.Background(), tg.Pid, so, Options{})
	if err == nil || !strings.Contains(err.Error(), "dlopen") {
		t.Fatalf("C++ module in inject mode: %v; want an error asking for --mode dlopen", err)
	}
	res, err := Apply(context.Background(), tg.Pid, so, Options{Mode: ModeDlopen})
	if err != nil {
		t.Fatalf("dlopen mode: %v", err)
	}
	if res.Patch.Handle == 0 {
		t.Errorf("no dlopen handle recorded")
	}
	expect(t, tg, "classify", 4) // thrown and caught inside the patch
	revert(t, tg.Pid, "fixcxx", false)
	expect(t, tg, "classify", 1)
	noBad(t, tg)
}

func TestBadModulesChangeNothing(t *testing.T) {
	tg := svc(t, "2")
	classify := mustSym(t, tg.Pid, "classify")
	before := codeOf(t, tg.Pid, classify, 16)
	dir := t.TempDir()
	notELF := filepath.Join(dir, "notelf.so")
	os.WriteFile(notELF, []byte("this is not an ELF file at all, not even close"), 0o644)
	plain := fixtures.Build(t, "plain.so", "-shared", "-fPIC", "-O2", "testdata/fixplain.c")
	cases := []struct {
		name, path, want string
		is               error
	}{
		{"not ELF", notELF, "not an ELF file", nil},
		{"no manifest", plain, "no .lp_patch section", nil},
		{"missing file", filepath.Join(dir, "nope.so"), "no such file", nil},
		{"undefined symbol", mod(t, "fixmissing.c"), "no_such_global_in_target", nil},
		{"wrong build-id", mod(t, "fixbuildid.c"), "build-id", ErrBuildID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Apply(context.Background(), tg.Pid, c.path, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply = %v; want an error containing %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if got := codeOf(t, tg.Pid, classify, 16); string(got) != string(before) {
				t.Errorf("classify changed to %x", got)
			}
			if got := listState(t, tg.Pid); len(got) != 0 {
				t.Errorf("records after a refused apply: %v", got)
			}
			detached(t, tg.Pid)
		})
	}
	expect(t, tg, "classify", 1)
}

func TestTargetExitingMidApplyGivesError(t *testing.T) {
	so := mod(t, "fixinit.c")
	for i := 0; i < 12; i++ {
		tg := svc(t, "2")
		go func() {
			// Spread the kill over the phases of an apply: attach, load,
			// initialiser, window, detach.
			time.Sleep(time.Duration(i*i) * 300 * time.Microsecond)
			tg.Kill()
		}()
		done := make(chan error, 1)
		go func() {
			_, err := Apply(context.Background(), tg.Pid, so, Options{})
			done <- err
		}()
		select {
		case err := <-done:
			t.Logf("run %d: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: Apply hangs on a dying target", i)
		}
	}
}

func TestStressApplyRevert(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	if v := os.Getenv("LP_STRESS_CYCLES"); v != "" {
		cycles, _ = strconv.Atoi(v)
	}
	// On a saturated machine a cycle takes hundreds of times longer (every
	// ptrace stop waits for a CPU behind the 8 spinning workers and the
	// machine's other load): past the budget the test stops at the cycle
	// it reached, after at least minCycles, instead of running into the
	// package's timeout. The cycles run are logged.
	const minCycles = 50
	budget := 3 * time.Minute
	if v := os.Getenv("LP_STRESS_BUDGET"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			budget = d
		}
	}
	started := time.Now()
	tg := svc(t, "8")
	so := mod(t, "fix1.c")
	var pauses []time.Duration
	attempts, refused := 0, 0
	ran := 0
	for i := 0; i < cycles; i++ {
		if i >= minCycles && time.Since(started) > budget {
			t.Logf("stopping after %d of %d cycles: the %v budget is spent (a busy machine)", i, cycles, budget)
			break
		}
		ran = i + 1
		// Every tenth cycle with function consistency, the rest with entry
		// consistency (PANNUS): 8 threads spinning through classify make
		// "no thread anywhere in classify" a matter of retries.
		// A thread preempted inside classify (or inside its first bytes)
		// stays there while the machine is busy: give retries more room
		// than the default.
		opts := Options{Consistency: "entry", Timeout: 60 * time.Second}
		if i%10 == 0 {
			opts.Consistency = "function"
		}
		res, err := Apply(context.Background(), tg.Pid, so, opts)
		if err != nil && opts.Consistency == "function" && errors.Is(err, ErrBusy) {
			// A busy machine can keep a worker preempted inside
			// classify past any deadline: refusing is then right,
			// and the refusal must have changed nothing.
			if got := listState(t, tg.Pid); got["fix1"] == StateActive {
				t.Fatalf("cycle %d: fix1 active after a refused apply: %v", i, got)
			}
			detached(t, tg.Pid)
			refused++
			continue
		}
		if err != nil {
			t.Fatalf("cycle %d: Apply: %v", i, err)
		}
		pauses = append(pauses, res.Pause)
		attempts += res.Attempts
		if _, err := Revert(context.Background(), tg.Pid, "fix1", false, opts); err != nil {
			t.Fatalf("cycle %d: Revert: %v", i, err)
		}
	}
	st := state(t, tg)
	if st["classify"] != 1 {
		t.Errorf("after %d cycles classify=%d; want 1", cycles, st["classify"])
	}
	if st["bad"] != 0 {
		t.Errorf("workers saw %d impossible results", st["bad"])
	}
	noBad(t, tg)
	for _, l := range tg.Lines() {
		if v, ok := strings.CutPrefix(l, "v classify="); ok && !strings.HasPrefix(v, "1 ") && !strings.HasPrefix(v, "2 ") {
			t.Fatalf("service printed %q: neither old nor new result", l)
		}
	}
	if refused > 0 && refused == (ran+9)/10 {
		t.Errorf("every function-consistency apply was refused as busy (%d)", refused)
	}
	t.Logf("%d apply/revert cycles with 8 workers; median activation pause %v; %d activation attempts; %d function-consistency applies refused as busy", ran, median(pauses), attempts, refused)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func mustSym(t testing.TB, pid int, name string) uint64 {
	t.Helper()
	sp, err := proc.Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	sym, err := sp.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return sym.Addr
}
