package faults

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ciSchedules is the fixed set `go test ./faults` runs: each fault kind at
// least once across them, a few minutes in all.
var ciSchedules = []struct {
	seed  uint64
	kinds []string
}{
	{1, []string{kPartitionLeader, kKill9, kTargetCrash, kHealthFail}},
	{2, []string{kPartitionActive, kDiskFull, kStop, kLossy}},
	{3, []string{kDataLost, kOneWayIn, kOneWayOut, kDataCorrupt, kPartitionNode}},
}

func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five lpd processes per schedule")
	}
	requireRoot(t)
	for _, c := range ciSchedules {
		t.Run(fmt.Sprintf("seed-%d", c.seed), func(t *testing.T) {
			runSchedule(t, newSchedule(c.seed, c.kinds))
		})
	}
}

// TestFaultSeed replays one random schedule: LP_FAULT_SEED=N (what a
// failing schedule prints), LP_FAULT_KINDS=a,b to fix its kinds.
func TestFaultSeed(t *testing.T) {
	env := os.Getenv("LP_FAULT_SEED")
	if env == "" {
		t.Skip("set LP_FAULT_SEED=N to replay a schedule")
	}
	seed, err := strconv.ParseUint(env, 10, 64)
	if err != nil {
		t.Fatalf("LP_FAULT_SEED=%q: want a number", env)
	}
	var kinds []string
	if k := os.Getenv("LP_FAULT_KINDS"); k != "" {
		kinds = strings.Split(k, ",")
	}
	runSchedule(t, newSchedule(seed, kinds))
}

// TestSoak runs random schedules until LP_SOAK_DURATION is over (make soak
// DURATION=30m) and prints a summary table.
func TestSoak(t *testing.T) {
	env := os.Getenv("LP_SOAK_DURATION")
	if env == "" {
		t.Skip("set LP_SOAK_DURATION (make soak DURATION=30m)")
	}
	d, err := time.ParseDuration(env)
	if err != nil {
		t.Fatalf("LP_SOAK_DURATION=%q: %v", env, err)
	}
	requireRoot(t)
	first := uint64(time.Now().UnixNano() % 1_000_000)
	if s := os.Getenv("LP_SOAK_FIRST_SEED"); s != "" {
		first, _ = strconv.ParseUint(s, 10, 64)
	}
	start := time.Now()
	injected := map[string]int{}
	states := map[string]int{}
	var runs, violations int
	var failed []uint64
	for seed := first; time.Since(start) < d; seed++ {
		var res result
		ok := t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) { res = runSchedule(t, newSchedule(seed, nil)) })
		runs++
		for k, v := range res.injected {
			injected[k] += v
		}
		states[string(res.state)]++
		violations += len(res.violations)
		if !ok {
			failed = append(failed, seed)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nsoak: %v, %d schedules (seeds %d-%d)\n\n", time.Since(start).Round(time.Second), runs, first, first+uint64(runs)-1)
	b.WriteString("| fault | injected |\n|---|---|\n")
	total := 0
	for _, k := range allKinds {
		fmt.Fprintf(&b, "| %s | %d |\n", k, injected[k])
		total += injected[k]
	}
	fmt.Fprintf(&b, "| **all** | %d |\n\n", total)
	b.WriteString("| plans ended | count |\n|---|---|\n")
	var keys []string
	for k := range states {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %d |\n", k, states[k])
	}
	fmt.Fprintf(&b, "\n| schedules run | invariant violations | failing seeds |\n|---|---|---|\n| %d | %d | %v |\n", runs, violations, failed)
	t.Log(b.String())
	if out := os.Getenv("LP_SOAK_TABLE"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}
