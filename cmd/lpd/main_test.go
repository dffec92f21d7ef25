package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lp/internal/auth"
)

func TestRunRefusesBadInvocations(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "lpd.yaml")
	os.WriteFile(bad, []byte("node: x\nprots: {api: 1}\n"), 0o600)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: lpd --config"},
		{[]string{"--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"--config", bad, "extra"}, 2, "unknown command"},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"--config", bad}, 1, "unknown key"},
		{[]string{"--config", bad, "--log-level", "loud"}, 2, "bad --log-level"},
		{[]string{"--config", bad, "--gossip-timing", "slow"}, 2, "bad --gossip-timing"},
	}
	for _, c := range cases {
		var errb bytes.Buffer
		code := run(c.args, io.Discard, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("lpd %v: exit %d, stderr %q; want %d containing %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

// TestRunRefusesOpenOrBadSecurity: lpd fails closed before it listens: a
// non-loopback bind without tls, and tls files it cannot use, are one line
// and exit 1.
func TestRunRefusesOpenOrBadSecurity(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.Init(auth.InitOptions{Dir: dir, Nodes: []string{"a1", "b1"}}); err != nil {
		t.Fatal(err)
	}
	base := "node: a1\npair: p1\nrole: active\ntargets: {sipd: {comm: sipd}}\ndata_dir: " + filepath.Join(dir, "data") + "\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"0.0.0.0", base + "bind: 0.0.0.0\n", "not an address peers can reach"},
		{"non-loopback without tls", base + "bind: 192.0.2.7\n", "192.0.2.7 is not a loopback address and tls is not set"},
		{"missing cert", base + "tls: {ca: ca.pem, cert: nope.pem, key: a1-key.pem}\n", "tls.cert: open"},
		{"another node's cert", base + "tls: {ca: ca.pem, cert: b1.pem, key: b1-key.pem}\n", `is the certificate of node "b1", not of this node "a1"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, "lpd.yaml")
			if err := os.WriteFile(p, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var errb bytes.Buffer
			code := run([]string{"--config", p}, io.Discard, &errb)
			if code != 1 || !strings.Contains(errb.String(), c.want) || strings.Count(errb.String(), "\n") != 1 {
				t.Errorf("lpd: exit %d, stderr %q; want 1 and one line containing %q", code, errb.String(), c.want)
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("lpd --help: exit %d, stderr %q; want 0", code, errb.String())
	}
	for _, want := range []string{"--config", "--log-level", "--gossip-timing", "SIGTERM"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lpd --help printed %q; want it to mention %s", out.String(), want)
		}
	}
}
