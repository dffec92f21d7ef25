package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimalPlan is the smallest valid plan; cases append to it, so their
// first line is line 4.
const minimalPlan = `name: p
patch: fix.so
target: sipd
`

func designPlan(t *testing.T) *Plan {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return &Plan{
		Name:      "fix-invite-overflow",
		Patch:     "fix.so",
		PatchPath: filepath.Join(dir, "fix.so"),
		Target:    "sipd",
		Pairs:     []string{"sip-1", "sip-2"},
		Trial:     30 * time.Second,
		Health: []Check{{
			Name: "exec:/usr/local/bin/check-sip", Exec: "/usr/local/bin/check-sip",
			Interval: time.Second, Timeout: time.Second, Failures: 3, Successes: 2,
		}},
		OnFailure:           OnFailureRollback,
		FailoverDuringTrial: FailoverRollbackFirst,
		ProgressDeadline:    10 * time.Minute,
		MaxParallel:         1,
	}
}

func TestLoadPlanDesignExample(t *testing.T) {
	path := filepath.Join("testdata", "plan.yaml")
	p, err := LoadPlan(path)
	if err != nil {
		t.Fatalf("LoadPlan(%s) error: %v; want nil", path, err)
	}
	if want := designPlan(t); !reflect.DeepEqual(p, want) {
		t.Errorf("LoadPlan(%s) =\n%+v\nwant\n%+v", path, p, want)
	}
}

func TestPlanJSONRoundTrip(t *testing.T) {
	p := designPlan(t)
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("json.Marshal error: %v", err)
	}
	const want = `{"name":"fix-invite-overflow","patch":"fix.so","target":"sipd","pairs":["sip-1","sip-2"],` +
		`"trial":"30s","health":[{"name":"exec:/usr/local/bin/check-sip","exec":"/usr/local/bin/check-sip",` +
		`"interval":"1s","timeout":"1s","failures":3,"successes":2}],"on_failure":"rollback",` +
		`"failover_during_trial":"rollback-first","progress_deadline":"10m0s"}`
	if string(data) != want {
		t.Errorf("json.Marshal =\n%s\nwant\n%s", data, want)
	}
	var back Plan
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("json.Unmarshal error: %v", err)
	}
	p.PatchPath = "" // local to the machine that read the file; not sent
	if !reflect.DeepEqual(&back, p) {
		t.Errorf("round trip =\n%+v\nwant\n%+v", back, *p)
	}
	if err := back.Validate(); err != nil {
		t.Errorf("Validate after round trip: %v; want nil", err)
	}
}

func TestPlanJSONDefaults(t *testing.T) {
	var p Plan
	if err := json.Unmarshal([]byte(`{"name":"p","patch":"x.so","target":"t","health":[{"tcp":"127.0.0.1:1"}]}`), &p); err != nil {
		t.Fatalf("json.Unmarshal error: %v", err)
	}
	want := DefaultPlan()
	want.Name, want.Patch, want.Target = "p", "x.so", "t"
	c := DefaultCheck()
	c.TCP, c.Name = "127.0.0.1:1", "tcp:127.0.0.1:1"
	want.Health = []Check{c}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("json.Unmarshal =\n%+v\nwant\n%+v", p, want)
	}
}

func TestPlanJSONErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"duration a number", `{"trial":30}`, "decoding plan"},
		{"bad duration", `{"trial":"soon"}`, `trial: want a duration like "2s", got "soon"`},
		{"bad check duration", `{"health":[{"timeout":"x"}]}`, `timeout: want a duration`},
		{"not an object", `[1]`, "decoding plan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Plan
			err := json.Unmarshal([]byte(tt.json), &p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("json.Unmarshal(%s) error = %v; want it to contain %q", tt.json, err, tt.want)
			}
		})
	}
}

func TestParsePlanDefaults(t *testing.T) {
	p, err := ParsePlan([]byte(minimalPlan+"pairs: []\n"), "/srv/plans/p.yaml")
	if err != nil {
		t.Fatalf("ParsePlan error: %v; want nil", err)
	}
	want := DefaultPlan()
	want.Name, want.Patch, want.PatchPath, want.Target = "p", "fix.so", "/srv/plans/fix.so", "sipd"
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("ParsePlan =\n%+v\nwant\n%+v", *p, want)
	}

	p, err = ParsePlan([]byte("name: p\npatch: /opt/fix.so\ntarget: sipd\n"), "p.yaml")
	if err != nil {
		t.Fatalf("ParsePlan error: %v; want nil", err)
	}
	if p.PatchPath != "/opt/fix.so" {
		t.Errorf("PatchPath = %q; want %q", p.PatchPath, "/opt/fix.so")
	}
}

func TestParsePlanRelativeToWorkingDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePlan([]byte(minimalPlan), "plan.yaml")
	if err != nil {
		t.Fatalf("ParsePlan error: %v; want nil", err)
	}
	if want := filepath.Join(wd, "fix.so"); p.PatchPath != want {
		t.Errorf("PatchPath = %q; want %q", p.PatchPath, want)
	}
}

func TestParsePlanErrors(t *testing.T) {
	tests := []errorCase{
		{"empty", "\n\n", 1, "", ErrEmpty, "empty file"},
		{"unknown key", minimalPlan + "trail: 30s\n", 4, "", ErrUnknownKey, `unknown key "trail" (did you mean "trial"?)`},
		{"node key in a plan", minimalPlan + "role: active\n", 4, "", ErrUnknownKey, `unknown key "role"`},
		{"duplicate", minimalPlan + "target: other\n", 4, "", ErrDuplicateKey, `duplicate key "target" (first at line 3)`},
		{"trial integer", minimalPlan + "trial: 30\n", 4, "trial", ErrType, `want a duration like "2s" or "500ms", got 30`},
		{"pairs a string", minimalPlan + "pairs: sip-1\n", 4, "pairs", ErrType, `want a list of pair names, got "sip-1"`},
		{"health check unknown key", minimalPlan + "health:\n  - exec: x\n    retries: 3\n", 6, "health[0]", ErrUnknownKey, `unknown key "retries"`},
		{"name missing", "patch: fix.so\ntarget: sipd\n", 1, "name", ErrInvalid, "required"},
		{"name bad", "name: fix invite\n", 1, "name", ErrInvalid, "not a valid name"},
		{"patch missing", "name: p\ntarget: sipd\n", 1, "patch", ErrInvalid, "required"},
		{"target missing", "name: p\npatch: fix.so\n", 1, "target", ErrInvalid, "required"},
		{"target bad", "name: p\npatch: fix.so\ntarget: a/b\n", 3, "target", ErrInvalid, "not a valid target name"},
		{"pair bad", minimalPlan + "pairs: [sip-1, 'sip 2']\n", 4, "pairs[1]", ErrInvalid, `"sip 2" is not a valid pair name`},
		{"pair twice", minimalPlan + "pairs:\n  - sip-1\n  - sip-2\n  - sip-1\n", 7, "pairs[2]", ErrInvalid, `"sip-1" is also pairs[0]`},
		{"trial zero", minimalPlan + "trial: 0s\n", 4, "trial", ErrInvalid, "must be positive"},
		{"check none", minimalPlan + "health:\n  - interval: 1s\n", 5, "health[0]", ErrInvalid, "got none"},
		{"check process bad name", minimalPlan + "health:\n  - process: a b\n", 5, "health[0].process", ErrInvalid, "not a target name"},
		{"on_failure", minimalPlan + "on_failure: retry\n", 4, "on_failure", ErrInvalid, `want rollback or pause, got "retry"`},
		{"failover_during_trial", minimalPlan + "failover_during_trial: promote\n", 4, "failover_during_trial", ErrInvalid, `want rollback-first or keep-patch, got "promote"`},
		{"deadline below trial", minimalPlan + "trial: 5m\nprogress_deadline: 1m\n", 5, "progress_deadline", ErrInvalid, "1m0s must exceed trial (5m0s)"},
		{"deadline default below trial", minimalPlan + "trial: 1h\n", 4, "progress_deadline", ErrInvalid, "10m0s must exceed trial (1h0m0s)"},
		{"trial shorter than a check can fail", minimalPlan + "trial: 2s\nhealth:\n  - exec: 'false'\n    interval: 1s\n    failures: 3\n", 4, "trial", ErrInvalid,
			"2s is shorter than check exec:false needs to fail (failures 3 × interval 1s): make trial at least 3s"},
		{"mode", minimalPlan + "mode: preload\n", 4, "mode", ErrInvalid, `want inject or dlopen, got "preload"`},
		{"mode a list", minimalPlan + "mode: [inject]\n", 4, "mode", ErrType, "want inject or dlopen, got a list"},
		{"consistency", minimalPlan + "consistency: strict\n", 4, "consistency", ErrInvalid, `want function or entry, got "strict"`},
		{"apply_timeout a number", minimalPlan + "apply_timeout: 5\n", 4, "apply_timeout", ErrType, `want a duration like "2s" or "500ms", got 5`},
		{"apply_timeout negative", minimalPlan + "apply_timeout: -1s\n", 4, "apply_timeout", ErrInvalid, "-1s must be positive"},
		{"apply_timeout tiny", minimalPlan + "apply_timeout: 10us\n", 4, "apply_timeout", ErrInvalid, "want at least 1ms"},
		{"apply_timeout past the deadline", minimalPlan + "trial: 1s\nprogress_deadline: 2s\napply_timeout: 5s\n", 6, "apply_timeout", ErrInvalid,
			"5s must be shorter than progress_deadline (2s)"},
		{"trial shorter than a default check can fail", minimalPlan + "trial: 2s\nhealth:\n  - name: up\n    tcp: 127.0.0.1:1\n", 4, "trial", ErrInvalid,
			"check up needs to fail (failures 3 × interval 1s): make trial at least 3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePlan([]byte(tt.yaml), "plan.yaml")
			checkError(t, p, err, "plan.yaml", tt)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := LoadNode(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadNode(missing) error = %v; want os.ErrNotExist", err)
	}
	if _, err := LoadPlan(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPlan(missing) error = %v; want os.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNode(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("LoadNode(big) error = %v; want ErrTooLarge", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: p\npatch: x.so\ntarget: t\ntrial: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPlan(bad)
	if want := bad + ":4: trial: want a duration"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LoadPlan(bad) error = %v; want prefix %q", err, want)
	}
}

func TestPlanMaxParallel(t *testing.T) {
	base := "name: x\npatch: fix.so\ntarget: svc\n"
	p, err := ParsePlan([]byte(base+"max_parallel: 3\n"), "plan.yaml")
	if err != nil || p.MaxParallel != 3 {
		t.Fatalf("ParsePlan(max_parallel: 3) = %+v, %v; want 3", p, err)
	}
	data, _ := json.Marshal(p)
	var back Plan
	if err := json.Unmarshal(data, &back); err != nil || back.MaxParallel != 3 {
		t.Errorf("JSON round trip of max_parallel 3 = %d, %v (%s)", back.MaxParallel, err, data)
	}
	if p, err := ParsePlan([]byte(base), "plan.yaml"); err != nil || p.MaxParallel != 1 {
		t.Errorf("default max_parallel = %v, %v; want 1", p, err)
	}
	for _, bad := range []string{"max_parallel: 0\n", "max_parallel: -2\n", "max_parallel: two\n"} {
		if _, err := ParsePlan([]byte(base+bad), "plan.yaml"); err == nil || !strings.Contains(err.Error(), "max_parallel") {
			t.Errorf("ParsePlan(%q) = %v; want an error naming max_parallel", bad, err)
		}
	}
}

func TestPlanEngineOptions(t *testing.T) {
	base := "name: x\npatch: fix.so\ntarget: svc\n"
	p, err := ParsePlan([]byte(base+"mode: dlopen\nconsistency: entry\napply_timeout: 750ms\n"), "plan.yaml")
	if err != nil {
		t.Fatalf("ParsePlan error: %v; want nil", err)
	}
	if p.Mode != ModeDlopen || p.Consistency != ConsistencyEntry || p.ApplyTimeout != 750*time.Millisecond {
		t.Errorf("ParsePlan = mode %q consistency %q apply_timeout %v; want dlopen entry 750ms", p.Mode, p.Consistency, p.ApplyTimeout)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"mode":"dlopen","consistency":"entry","apply_timeout":"750ms"`; !strings.Contains(string(data), want) {
		t.Errorf("json.Marshal = %s; want it to contain %s", data, want)
	}
	var back Plan
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("json.Unmarshal(%s) error: %v", data, err)
	}
	p.PatchPath = ""
	if !reflect.DeepEqual(&back, p) {
		t.Errorf("round trip =\n%+v\nwant\n%+v", back, *p)
	}

	// Unset: the engine's defaults, and nothing in the JSON.
	p, err = ParsePlan([]byte(base), "plan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != "" || p.Consistency != "" || p.ApplyTimeout != 0 {
		t.Errorf("defaults = %q %q %v; want unset", p.Mode, p.Consistency, p.ApplyTimeout)
	}
	data, _ = json.Marshal(p)
	for _, k := range []string{"mode", "consistency", "apply_timeout"} {
		if strings.Contains(string(data), `"`+k+`"`) {
			t.Errorf("json.Marshal of defaults = %s; want no %s", data, k)
		}
	}

	for _, tt := range []struct{ json, want string }{
		{`{"name":"x","patch":"f.so","target":"t","mode":"preload"}`, "mode: want inject or dlopen"},
		{`{"name":"x","patch":"f.so","target":"t","consistency":"all"}`, "consistency: want function or entry"},
		{`{"name":"x","patch":"f.so","target":"t","apply_timeout":"later"}`, `apply_timeout: want a duration`},
		{`{"name":"x","patch":"f.so","target":"t","apply_timeout":5}`, "decoding plan"},
	} {
		var q Plan
		err := json.Unmarshal([]byte(tt.json), &q)
		if err == nil {
			err = q.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("decoding %s: error %v; want it to contain %q", tt.json, err, tt.want)
		}
	}
}
