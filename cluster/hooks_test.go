package cluster

import (
	"context"
	"testing"
	"time"
)

func TestParseProbe(t *testing.T) {
	cases := map[string]string{
		"active": "active", "standby\n": "standby", "  ACTIVE since 12:00": "active",
		"": "", "primary": "", "activex": "", "standby-ish": "",
	}
	for in, want := range cases {
		if got := parseProbe(in); got != want {
			t.Errorf("parseProbe(%q) = %q; want %q", in, got, want)
		}
	}
}

func FuzzParseProbe(f *testing.F) {
	for _, s := range []string{"active", "standby\n", "", "\xff\xfe", "Active  x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r := parseProbe(s); r != "" && r != "active" && r != "standby" {
			t.Errorf("parseProbe(%q) = %q; want active, standby or empty", s, r)
		}
	})
}

func TestRunHook(t *testing.T) {
	n := &Node{log: testLogger(t)}
	cases := []struct {
		name, command string
		timeout       time.Duration
		ok            bool
		out           string
	}{
		{"success, last line", "echo one; echo two", 5 * time.Second, true, "two"},
		{"environment", `echo "$LP_NODE $LP_OLD_ROLE->$LP_ROLE"`, 5 * time.Second, true, "n1 standby->active"},
		{"failure", "echo broke >&2; exit 3", 5 * time.Second, false, "exit status 3: broke"},
		{"background daemon does not hold the hook", "sleep 3 & echo started", 5 * time.Second, true, "started"},
		{"timeout kills it", "echo waiting; sleep 10", 300 * time.Millisecond, false, "killed after 300ms: waiting"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, out := runHook(context.Background(), n, "on_promote", c.command,
				[]string{"LP_NODE=n1", "LP_ROLE=active", "LP_OLD_ROLE=standby"}, c.timeout)
			if ok != c.ok || out != c.out {
				t.Errorf("runHook(%q) = %v, %q; want %v, %q", c.command, ok, out, c.ok, c.out)
			}
		})
	}
}
