package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// seedCorpus adds the testdata files and some hand-picked edge cases.
func seedCorpus(f *testing.F, file string, extra ...string) {
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, s := range extra {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"", "~", "[]", "{}", "---\n---\n", "a: &a [*a]", "a: &a\n  b: *a\n",
		"? [a]\n: b\n", "<<: {a: 1}\n", "!!binary AAAA", "\xff\xfe", "a: b\x00",
		"x: 0x7fffffffffffffffff", "health: [&c {tcp: 'h:1'}, *c, *c]",
	} {
		f.Add([]byte(s))
	}
}

// checkParseResult is what every fuzzed input must satisfy: an error is a
// one-line *Error starting with the file name, and a result is valid.
func checkParseResult(t *testing.T, valid func() error, err error) {
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %q is %T; want *Error", err, err)
		}
		s := err.Error()
		if !strings.HasPrefix(s, "f.yaml") || strings.ContainsAny(s, "\r\n") {
			t.Fatalf("error %q; want one line starting with the file name", s)
		}
		return
	}
	if err := valid(); err != nil {
		t.Fatalf("parsed value does not validate: %v", err)
	}
}

func FuzzParseNode(f *testing.F) {
	seedCorpus(f, "lpd.yaml", minimalNode,
		minimalNode+"health:\n  - {process: sipd, interval: 10ms}\n",
		"node: w\nrole: witness\nserver: true\nbootstrap_expect: 1\njoin: ['[::1]:1']\n",
		minimalNode+"bind: 192.0.2.7\ninsecure: true\nexec_checks: deny\ntokens:\n  - {name: ci, role: operator, sha256: "+sum64+"}\n",
		minimalNode+"tokens: [{name: a, role: reader, sha256: "+sum64+"}, {name: a}]\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNode(data, "f.yaml")
		checkParseResult(t, func() error { return n.Validate() }, err)
	})
}

func FuzzParsePlan(f *testing.F) {
	seedCorpus(f, "plan.yaml", minimalPlan, minimalPlan+"health: [{http: 'https://h/'}]\npairs: [a, b]\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlan(data, "f.yaml")
		checkParseResult(t, func() error { return p.Validate() }, err)
		if err != nil {
			return
		}
		// A valid plan survives the trip through JSON (the API and the raft
		// log) unchanged but for the local PatchPath.
		js, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var back Plan
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", js, err)
		}
		want := *p
		want.PatchPath = ""
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("JSON round trip = %+v; want %+v", back, want)
		}
	})
}
