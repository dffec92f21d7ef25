package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"--config", bad}, 1, "unknown key"},
		{[]string{"--config", bad, "--log-level", "loud"}, 2, "bad --log-level"},
		{[]string{"--config", bad, "--gossip-timing", "slow"}, 2, "bad --gossip-timing"},
	}
	for _, c := range cases {
		var errb bytes.Buffer
		code := run(c.args, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("lpd %v: exit %d, stderr %q; want %d containing %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}
