package cluster

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/fsm"
	"lp/signing"
)

// startSignedE2E starts a witness w and a pair (a1 active, b1 standby) of
// real lpd processes, each with trusted_keys[node]. w and a1 are the raft
// servers; b1 is a non-voter, so it never leads: its agent's checks are its
// own, whatever the leader accepted.
func startSignedE2E(t *testing.T, trusted map[string]string) *e2eCluster {
	t.Helper()
	requirePtrace(t)
	buildFixtures(t)
	c := &e2eCluster{t: t, dir: t.TempDir(), procs: map[string]*lpdProc{}}
	var join string
	for _, s := range []struct {
		name, pair, role string
		server           bool
	}{
		{"w", "", "witness", true},
		{"a1", "pair-1", "active", true},
		{"b1", "pair-1", "standby", false},
	} {
		p, b := c.newLPD(s.name, s.pair, s.role, s.server, [3]int{}, join)
		if join == "" {
			join = p.gossip
		}
		b.WriteString("failover_after: 1h\n")
		if s.server {
			b.WriteString("bootstrap_expect: 2\n")
		}
		if s.pair != "" {
			c.withService(p, b)
		}
		c.writeConfig(s.name, b.String(), trusted[s.name])
		c.start(s.name)
	}
	c.logTailsOnFailure()
	c.waitFor(30*time.Second, "3 nodes registered, alive and healthy", func() bool {
		ms, err := c.client("w").Members(context.Background())
		if err != nil {
			return false
		}
		ok := 0
		for _, m := range ms {
			if m.Status == "alive" && m.Health == "healthy" && m.Gossip == "alive" && m.RaftState != "none" {
				ok++
			}
		}
		return ok == 3
	})
	return c
}

// writeConfig writes a node's lpd.yaml: base plus trusted_keys when key is
// set.
func (c *e2eCluster) writeConfig(name, base, key string) {
	c.t.Helper()
	if key != "" {
		base += "trusted_keys: [" + key + "]\n"
	}
	if err := os.WriteFile(c.procs[name].config, []byte(base), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// neverChanges samples a service's own output until stop is called and
// reports whether it ever printed another value than want.
func neverChanges(s *service, want int) (stop func() (int, bool)) {
	done := make(chan struct{})
	var (
		wg   sync.WaitGroup
		seen = want
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v := s.value(); v != want && seen == want {
				seen = v
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() (int, bool) {
		close(done)
		wg.Wait()
		return seen, seen == want
	}
}

func TestEndToEndSignedPatches(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three lpd processes")
	}
	requirePtrace(t)
	buildFixtures(t)
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	pubs := map[string]string{}
	for _, k := range []string{keyA, keyB} {
		// The operator's path: lpctl writes the keys.
		cmd := execCtl(t, "patch", "keygen", k)
		if cmd.code != 0 {
			t.Fatalf("lpctl patch keygen: %s", cmd.stderr)
		}
		pub, err := os.ReadFile(k + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		pubs[k] = strings.TrimSpace(string(pub))
	}
	c := startSignedE2E(t, map[string]string{"w": pubs[keyA], "a1": pubs[keyA], "b1": pubs[keyA]})
	body := "name: signed\npatch: fix.so\ntarget: svc\npairs: [pair-1]\ntrial: 2s\nprogress_deadline: 2m\n"
	path := c.writePlan("plan.yaml", body)
	mod := filepath.Join(filepath.Dir(path), "fix.so")
	data, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	sum := hexSum(data)

	t.Run("unsigned and wrongly signed modules are refused at submit", func(t *testing.T) {
		privB := readKey(t, keyB)
		sigB, _ := signing.Sign(privB, data)
		cases := []struct {
			name string
			sig  string // the content of fix.so.sig; "" none
			want string
		}{
			{"unsigned", "", "fix.so: not signed (trusted_keys is set; sign it with lpctl patch sign)"},
			{"signed by an untrusted key", signing.FormatSignature(sigB) + "\n", "fix.so: signature does not verify with any trusted key"},
			{"signature of other bytes", signWith(t, keyA, append(data[:len(data):len(data)], 0)), "fix.so: signature does not verify with any trusted key"},
			{"not a signature", "garbage\n", "fix.so.sig: bad signature"},
		}
		for _, tc := range cases {
			os.Remove(mod + ".sig")
			if tc.sig != "" {
				if err := os.WriteFile(mod+".sig", []byte(tc.sig), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Through a follower too: forwarded, the leader decides.
			for _, via := range []string{"b1", c.leader()} {
				out, errOut, code := c.ctl(via, "plan", "submit", path)
				if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
					t.Errorf("%s via %s: exit %d, stderr %q, stdout %q; want non-zero and one line containing %q", tc.name, via, code, errOut, out, tc.want)
				}
			}
		}
		if n := c.planCount("w"); n != 0 {
			t.Errorf("plans after refused submissions = %d; want 0", n)
		}
		for _, n := range []string{"a1", "b1"} {
			if _, err := os.Stat(filepath.Join(c.dir, n+".data", "patches", sum+".so")); err == nil {
				t.Errorf("%s wrote the refused module to its data dir", n)
			}
			if v := c.procs[n].svc.value(); v != 42 {
				t.Errorf("%s's service prints %d; want 42 (never patched)", n, v)
			}
		}
	})

	var signedID string
	t.Run("a module signed by a trusted key completes", func(t *testing.T) {
		os.Remove(mod + ".sig")
		if r := execCtl(t, "patch", "sign", mod, "--key", keyA); r.code != 0 {
			t.Fatalf("lpctl patch sign: %s", r.stderr)
		}
		out, errOut, code := c.ctl("b1", "plan", "submit", path, "--wait")
		if code != 0 {
			t.Fatalf("plan submit --wait: exit %d, stderr %q, stdout %q", code, errOut, out)
		}
		signedID = strings.SplitN(out, "\n", 2)[0]
		for _, n := range []string{"a1", "b1"} {
			c.procs[n].svc.waitValue(t, 1041, 5*time.Second)
		}
		out, _, _ = c.ctl("w", "plan", "show", signedID)
		if !strings.Contains(out, "signed:   by "+pubs[keyA]) {
			t.Errorf("plan show does not say who signed:\n%s", out)
		}
		if out, errOut, code := c.ctl("w", "rollback", "--wait"); code != 0 {
			t.Fatalf("rollback --wait: exit %d, stderr %q, stdout %q", code, errOut, out)
		}
		for _, n := range []string{"a1", "b1"} {
			c.procs[n].svc.waitValue(t, 42, 5*time.Second)
		}
	})

	t.Run("a module file rewritten in a node's data dir is never loaded: moved aside and fetched again", func(t *testing.T) {
		file := filepath.Join(c.dir, "a1.data", "patches", sum+".so")
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("a1 has no module file from the last plan: %v", err)
		}
		tampered := append(data[:len(data):len(data)], []byte("evil")...)
		var d api.PlanDetail
		for attempt := 0; ; attempt++ {
			out, errOut, code := c.ctl("w", "plan", "submit", path)
			if code != 0 {
				t.Fatalf("plan submit: exit %d, stderr %q", code, errOut)
			}
			id := strings.TrimSpace(out)
			// Behind a1's back, while the standby b1 is patched and tried:
			// a1 gets the patch only after b1's 2s trial.
			if err := os.WriteFile(file, tampered, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, e := range c.plan("w", id).History {
				if e.Kind == fsm.EventDesired && e.Node == "a1" {
					t.Fatalf("a1 was given the patch before the file was rewritten; the test cannot tell what it loaded")
				}
			}
			c.waitFor(60*time.Second, "plan "+id+" finished", func() bool {
				d = c.plan("w", id)
				return d.Plan.State.Terminal()
			})
			if d.Plan.State == fsm.PlanCompleted || attempt == 2 {
				break
			}
			// On a loaded machine gossip may suspect a node and roll the
			// plan back: then again.
			t.Logf("plan %s is %s (%s); submitting it again", id, d.Plan.State, d.Plan.Reason)
		}
		if d.Plan.State != fsm.PlanCompleted {
			t.Fatalf("plan %s is %s (%s); want completed with the module fetched again", d.Plan.ID, d.Plan.State, d.Plan.Reason)
		}
		c.procs["a1"].svc.waitValue(t, 1041, 5*time.Second)
		if got, _ := os.ReadFile(file); string(got) != string(data) {
			t.Errorf("a1's module file holds %d bytes; want the module, fetched again", len(got))
		}
		if aside, _ := os.ReadFile(file + ".corrupt"); string(aside) != string(tampered) {
			t.Errorf("the rewritten file was not kept aside for the operator as %s.corrupt", filepath.Base(file))
		}
		if log, _ := os.ReadFile(c.procs["a1"].log); !strings.Contains(string(log), "was damaged or changed behind lpd's back (sha256 ") ||
			!strings.Contains(string(log), file) || !strings.Contains(string(log), "fetched module") {
			t.Errorf("a1's log does not name the file %s, the reason and the fetch", file)
		}
		if out, errOut, code := c.ctl("w", "rollback", "--wait"); code != 0 {
			t.Fatalf("rollback --wait: exit %d, stderr %q, stdout %q", code, errOut, out)
		}
		for _, n := range []string{"a1", "b1"} {
			c.procs[n].svc.waitValue(t, 42, 10*time.Second)
		}
	})

	t.Run("an agent with other trusted keys refuses what the leader accepted", func(t *testing.T) {
		// b1 (never leader) now trusts only key B; the leader trusts A.
		c.kill("b1")
		base, _ := os.ReadFile(c.procs["b1"].config)
		cfg := strings.Replace(string(base), "trusted_keys: ["+pubs[keyA]+"]", "trusted_keys: ["+pubs[keyB]+"]", 1)
		if err := os.WriteFile(c.procs["b1"].config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c.start("b1")
		c.waitAlive("b1")
		watchB, watchA := neverChanges(c.procs["b1"].svc, 42), neverChanges(c.procs["a1"].svc, 42)
		out, errOut, code := c.ctl("w", "plan", "submit", path, "--wait")
		if code != 2 {
			t.Errorf("plan submit --wait: exit %d, stderr %q, stdout %q; want 2 (rolled back)", code, errOut, out)
		}
		refused := func(d api.PlanDetail) bool {
			return strings.Contains(d.Plan.Reason, "signature does not verify with any trusted key of this node") && strings.Contains(d.Plan.Reason, "on b1 failed")
		}
		d := c.againUntil(c.plan("w", strings.SplitN(out, "\n", 2)[0]), path, refused)
		if v, ok := watchB(); !ok {
			t.Errorf("b1's service printed %d; want 42 throughout", v)
		}
		if v, ok := watchA(); !ok {
			t.Errorf("a1's service printed %d; want 42 throughout", v)
		}
		if !refused(d) {
			t.Errorf("plan reason %q; want b1's signature refusal", d.Plan.Reason)
		}
	})
}

// againUntil resubmits the plan at path (up to twice) while the rolled-back
// plan d was rolled back for another reason than the one done checks: on a
// loaded machine gossip may suspect a node first. It returns the last plan.
func (c *e2eCluster) againUntil(d api.PlanDetail, path string, done func(api.PlanDetail) bool) api.PlanDetail {
	c.t.Helper()
	for range 2 {
		if done(d) {
			break
		}
		c.t.Logf("plan %s rolled back for another reason (%s); submitting it again", d.Plan.ID, d.Plan.Reason)
		out, errOut, code := c.ctl("w", "plan", "submit", path)
		if code != 0 {
			c.t.Fatalf("plan submit: exit %d, stderr %q", code, errOut)
		}
		d = c.waitPlanState("w", strings.TrimSpace(out), fsm.PlanRolledBack, 60*time.Second)
	}
	return d
}

type ctlResult struct {
	stdout, stderr string
	code           int
}

// execCtl runs lpctl's local verbs (no lpd).
func execCtl(t *testing.T, args ...string) ctlResult {
	t.Helper()
	c := &e2eCluster{t: t, procs: map[string]*lpdProc{"": {}}}
	out, errOut, code := c.ctl("", args...)
	return ctlResult{out, errOut, code}
}

func readKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signing.ParsePrivateKey(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signWith returns the .sig text of data signed with the key at path.
func signWith(t *testing.T, path string, data []byte) string {
	t.Helper()
	sig, err := signing.Sign(readKey(t, path), data)
	if err != nil {
		t.Fatal(err)
	}
	return signing.FormatSignature(sig) + "\n"
}
