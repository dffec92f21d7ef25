package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// A wrapper calls the original through a trampoline: classify's first
// instructions relocated, and ripfn's RIP-relative load adjusted.
func TestOriginalWrapper(t *testing.T) {
	tg := svc(t, "2")
	expect(t, tg, "rip", 11)
	res := apply(t, tg.Pid, "fixwrap.c", Options{Consistency: "entry"})
	for _, f := range res.Patch.Funcs {
		if f.Ptr == 0 || f.Tramp == 0 {
			t.Errorf("%s: ptr %#x tramp %#x; want both set", f.Name, f.Ptr, f.Tramp)
		}
	}
	expect(t, tg, "classify", 1101)
	expect(t, tg, "rip", 1011)
	revert(t, tg.Pid, "fixwrap", false)
	expect(t, tg, "classify", 1)
	expect(t, tg, "rip", 11)
	noBad(t, tg)
	detached(t, tg.Pid)
}

// Stacked wrappers each call the patch below; reverting a lower patch
// points the wrapper above it at what is then below.
func TestOriginalStacked(t *testing.T) {
	tg := svc(t, "2")
	entry := Options{Consistency: "entry"}
	apply(t, tg.Pid, "fix1.c", entry)
	expect(t, tg, "classify", 2)
	apply(t, tg.Pid, "fixwrap.c", entry)
	expect(t, tg, "classify", 1102) // fixwrap over fix1
	apply(t, tg.Pid, "fixwrap2.c", entry)
	expect(t, tg, "classify", 1162) // fixwrap2 over fixwrap over fix1

	// A failure at any write (the code of ripfn, fixwrap2's pointer)
	// undoes the others: nothing changes.
	before := recordJSON(t, tg.Pid)
	for _, point := range []string{"write 0", "write 1"} {
		fault, hit := failAt(point)
		if _, err := Revert(context.Background(), tg.Pid, "fixwrap", false, Options{Consistency: "entry", fault: fault}); err == nil || !*hit {
			t.Fatalf("%s: revert: %v (reached %v); want the injected failure", point, err, *hit)
		}
		expect(t, tg, "classify", 1162)
		expect(t, tg, "rip", 1011)
		if got := recordJSON(t, tg.Pid); got != before {
			t.Fatalf("%s: record changed", point)
		}
	}
	if _, err := Revert(context.Background(), tg.Pid, "fixwrap", false, entry); err != nil {
		t.Fatal(err)
	}
	expect(t, tg, "classify", 1172) // fixwrap2 over fix1
	expect(t, tg, "rip", 11)
	if _, err := Revert(context.Background(), tg.Pid, "fix1", false, entry); err != nil {
		t.Fatal(err)
	}
	expect(t, tg, "classify", 1171) // fixwrap2 over the original
	// Applying fixwrap again (its module is reused) puts it on top.
	apply(t, tg.Pid, "fixwrap.c", entry)
	expect(t, tg, "classify", 1100+1171%50)
	if _, err := Revert(context.Background(), tg.Pid, "fixwrap2", false, entry); err != nil {
		t.Fatal(err)
	}
	expect(t, tg, "classify", 1101) // fixwrap, now over the original
	revert(t, tg.Pid, "fixwrap", false)
	expect(t, tg, "classify", 1)
	noBad(t, tg)
}

// A function whose first instructions cannot run elsewhere is refused with
// the reason, and nothing changes.
func TestOriginalRelocationRefused(t *testing.T) {
	tg := svc(t, "1")
	addr := mustSym(t, tg.Pid, "jrcxzfn")
	before := codeOf(t, tg.Pid, addr, 8)
	_, err := Apply(context.Background(), tg.Pid, mod(t, "fixjrcxz.c"), Options{})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "JRCXZ") {
		t.Fatalf("Apply: %v; want ErrUnsafe naming jrcxz", err)
	}
	checkOneLine(t, "Apply", err)
	if got := codeOf(t, tg.Pid, addr, 8); string(got) != string(before) {
		t.Errorf("jrcxzfn changed to %x", got)
	}
	if got := listState(t, tg.Pid); len(got) != 0 {
		t.Errorf("records after a refused apply: %v", got)
	}
	expect(t, tg, "jrcxz", 4)
	detached(t, tg.Pid)
}
