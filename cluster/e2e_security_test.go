package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/internal/auth"
)

// secCluster is three real lpd processes (witness w, pair-1 a1 active and
// b1 standby, all voters) with tls and tokens.
type secCluster struct {
	*e2eCluster
	pki, otherPKI string
}

const (
	ciToken     = "ci-secret-0123456789"
	readerToken = "dash-secret-0123456789"
)

func sum256(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func startSecure(t *testing.T) *secCluster {
	t.Helper()
	requirePtrace(t)
	buildFixtures(t)
	c := &secCluster{e2eCluster: &e2eCluster{t: t, dir: t.TempDir(), procs: map[string]*lpdProc{}}}
	c.pki, c.otherPKI = filepath.Join(c.dir, "pki"), filepath.Join(c.dir, "other-pki")
	if _, err := auth.Init(auth.InitOptions{Dir: c.pki, Nodes: []string{"w", "a1", "b1"},
		Clients: []auth.Client{{Name: "alice", Role: auth.RoleOperator}, {Name: "dash", Role: auth.RoleReader}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Init(auth.InitOptions{Dir: c.otherPKI, Nodes: []string{"a1"},
		Clients: []auth.Client{{Name: "alice", Role: auth.RoleOperator}}}); err != nil {
		t.Fatal(err)
	}
	var join string
	for _, s := range []struct{ name, pair, role string }{{"w", "", "witness"}, {"a1", "pair-1", "active"}, {"b1", "pair-1", "standby"}} {
		p, b := c.newLPD(s.name, s.pair, s.role, true, [3]int{}, join)
		if join == "" {
			join = p.gossip
		}
		b.WriteString("bootstrap_expect: 3\nfailover_after: 1h\n")
		fmt.Fprintf(b, "tls: { ca: %s, cert: %s, key: %s }\n", filepath.Join(c.pki, "ca.pem"),
			filepath.Join(c.pki, s.name+".pem"), filepath.Join(c.pki, s.name+"-key.pem"))
		fmt.Fprintf(b, "tokens:\n  - { name: ci, role: operator, sha256: %s }\n  - { name: dash-token, role: reader, sha256: %s }\n", sum256(ciToken), sum256(readerToken))
		if s.name == "b1" {
			b.WriteString("exec_checks: deny\n")
		}
		if s.pair != "" {
			c.withService(p, b)
		}
		c.startLPD(p, b.String())
	}
	c.logTailsOnFailure()
	c.waitFor(45*time.Second, "3 nodes registered, alive, healthy and voters over tls", func() bool {
		ms, err := c.as("w", "alice").Members(context.Background())
		if err != nil {
			return false
		}
		ok := 0
		for _, m := range ms {
			if m.Status == "alive" && m.Health == "healthy" && m.Gossip == "alive" && m.Suffrage == "Voter" {
				ok++
			}
		}
		return ok == 3
	})
	return c
}

// tlsConf is a client configuration trusting the cluster's CA with the
// certificate of who from pki ("" = no certificate).
func (c *secCluster) tlsConf(pki, who string) *tls.Config {
	c.t.Helper()
	cert, key := "", ""
	if who != "" {
		cert, key = filepath.Join(pki, who+".pem"), filepath.Join(pki, who+"-key.pem")
	}
	conf, err := auth.ClientFiles(filepath.Join(c.pki, "ca.pem"), cert, key)
	if err != nil {
		c.t.Fatal(err)
	}
	return conf
}

// as is an API client of node's lpd holding who's certificate.
func (c *secCluster) as(node, who string) *api.Client {
	cl := api.NewClient("https://" + c.procs[node].api)
	cl.HTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tlsConf(c.pki, who)}}
	return cl
}

// raw posts body to path on node's API with conf (and token, when set)
// and returns the status and body.
func (c *secCluster) raw(node string, conf *tls.Config, token, method, path, body string) (int, string) {
	c.t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	req, _ := http.NewRequest(method, "https://"+c.procs[node].api+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// ctlTLS runs lpctl against node with extra flags.
func (c *secCluster) ctlTLS(node string, flags []string, args ...string) (string, string, int) {
	c.t.Helper()
	all := append([]string{"--addr", "https://" + c.procs[node].api, "--ca", filepath.Join(c.pki, "ca.pem")}, flags...)
	cmd := exec.Command(built.ctl, append(all, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("running lpctl: %v", err)
	}
	return out.String(), errb.String(), code
}

func (c *secCluster) certFlags(pki, who string) []string {
	return []string{"--cert", filepath.Join(pki, who+".pem"), "--key", filepath.Join(pki, who+"-key.pem")}
}

// fingerprint is the part of the state a refused request must not change:
// every plan's state and nodes' desired and observed stacks, every node's
// role, the number of history events of every plan.
func (c *secCluster) fingerprint() string {
	c.t.Helper()
	cl := c.as("w", "alice")
	ps, err := cl.Plans(context.Background())
	if err != nil {
		c.t.Fatalf("plans: %v", err)
	}
	var b strings.Builder
	for _, p := range ps {
		d, err := cl.Plan(context.Background(), p.Plan.ID)
		if err != nil {
			c.t.Fatalf("plan: %v", err)
		}
		fmt.Fprintf(&b, "%s %s;", d.Plan.ID, d.Plan.State)
		for _, n := range d.Nodes {
			fmt.Fprintf(&b, " %s %v %v;", n.Node, n.Desired, n.Observed)
		}
		for _, e := range d.History {
			if e.Kind != "observed" {
				fmt.Fprintf(&b, " %s/%s", e.Kind, e.Cause)
			}
		}
	}
	ms, err := cl.Members(context.Background())
	if err != nil {
		c.t.Fatalf("members: %v", err)
	}
	for _, m := range ms {
		fmt.Fprintf(&b, " %s=%s", m.Node, m.Role)
	}
	return b.String()
}

func TestSecurityEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three lpd processes")
	}
	c := startSecure(t)
	leader := c.leader2()
	follower := "a1"
	if leader == "a1" {
		follower = "b1"
	}
	alice := c.certFlags(c.pki, "alice")

	var planID string
	t.Run("an operator certificate submits through a follower; the history names it", func(t *testing.T) {
		path := c.writePlan("plan.yaml", "name: fix-answer\npatch: fix.so\ntarget: svc\ntrial: 1s\nprogress_deadline: 2m\n")
		out, errOut, code := c.ctlTLS(follower, alice, "plan", "submit", path, "--wait", "-o", "json")
		if code != 0 {
			t.Fatalf("plan submit: exit %d, stderr %q; want 0", code, errOut)
		}
		i := strings.Index(out, `"id": "`)
		if i < 0 {
			t.Fatalf("plan submit output %q has no id", out)
		}
		planID = strings.SplitN(out[i+7:], `"`, 2)[0]
		show, errOut, code := c.ctlTLS(leader, alice, "plan", "show", planID)
		if code != 0 || !strings.Contains(show, "operator:alice (cert)") {
			t.Errorf("plan show: exit %d, stderr %q, stdout %q; want the identity operator:alice (cert)", code, errOut, show)
		}
	})
	if planID == "" {
		t.FailNow()
	}

	t.Run("refused callers change nothing", func(t *testing.T) {
		before := c.fingerprint()
		plan := c.writePlan("plan2.yaml", "name: again\npatch: fix.so\ntarget: svc\ntrial: 1s\n")
		for _, tc := range []struct {
			name  string
			flags []string
			args  []string
			want  string
		}{
			{"no certificate and no token", nil, []string{"plan", "submit", plan}, "unauthorized: no identity"},
			{"certificate of another CA", c.certFlags(c.otherPKI, "alice"), []string{"plan", "submit", plan}, "certificate"},
			{"reader certificate writes", c.certFlags(c.pki, "dash"), []string{"plan", "submit", plan}, "forbidden: reader:dash (cert) may not submit a plan"},
			{"reader certificate rolls back", c.certFlags(c.pki, "dash"), []string{"rollback", planID}, "forbidden: reader:dash (cert)"},
			{"reader token promotes", []string{"--token", readerToken}, []string{"promote", "b1"}, "forbidden: reader:dash-token (token)"},
			{"wrong token", []string{"--token", "not-" + ciToken}, []string{"plan", "submit", plan}, "unauthorized: the bearer token matches no configured token"},
			{"node certificate writes as an operator", c.certFlags(c.pki, "b1"), []string{"plan", "pause", planID}, "forbidden: node:b1 (cert) may not act on a plan"},
		} {
			for _, node := range []string{leader, follower} {
				_, errOut, code := c.ctlTLS(node, tc.flags, tc.args...)
				if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
					t.Errorf("%s via %s: exit %d, stderr %q; want non-zero and one line containing %q", tc.name, node, code, errOut, tc.want)
				}
			}
		}
		// b1 has exec_checks: deny: a plan with an exec check is refused
		// at submit, naming it.
		execPlan := c.writePlan("exec.yaml", "name: with-exec\npatch: fix.so\ntarget: svc\ntrial: 3s\nhealth:\n  - exec: /bin/true\n")
		if _, errOut, code := c.ctlTLS(follower, alice, "plan", "submit", execPlan); code == 0 || !strings.Contains(errOut, "node b1 refuses them (exec_checks: deny)") {
			t.Errorf("plan with an exec check: exit %d, stderr %q; want refused naming b1", code, errOut)
		}
		// A reader may read.
		if _, errOut, code := c.ctlTLS(follower, c.certFlags(c.pki, "dash"), "members"); code != 0 {
			t.Errorf("members as reader: exit %d, stderr %q; want 0", code, errOut)
		}
		// Node-to-node endpoints: only the node itself.
		b1 := c.tlsConf(c.pki, "b1")
		aliceConf := c.tlsConf(c.pki, "alice")
		for _, tc := range []struct {
			name, path, body string
			conf             *tls.Config
			token            string
			status           int
		}{
			{"b1 reports observed patches of a1", api.PathObserved, `{"node":"a1","target":"svc","pid":1,"active":[]}`, b1, "", http.StatusForbidden},
			{"b1 reports a trial failure of a1", api.PathTrialFail, `{"node":"a1","plan":"` + planID + `","check":"x","output":"forged"}`, b1, "", http.StatusForbidden},
			{"b1 registers as a1", api.PathRegister, `{"name":"a1","pair":"pair-1","role":"active","server":true}`, b1, "", http.StatusForbidden},
			{"b1 reports a role of a1", api.PathRole, `{"node":"a1","role":"standby"}`, b1, "", http.StatusForbidden},
			{"an operator reports observed patches", api.PathObserved, `{"node":"a1","target":"svc","pid":1,"active":[]}`, aliceConf, "", http.StatusForbidden},
			{"an operator token reports a trial failure", api.PathTrialFail, `{"node":"a1","plan":"` + planID + `","check":"x"}`, c.tlsConf(c.pki, ""), ciToken, http.StatusForbidden},
			{"an operator forges a forwarded identity", api.PathObserved, `{"node":"a1","target":"svc","pid":1,"active":[]}`, aliceConf, "", http.StatusForbidden},
			{"promote with a malformed body", api.PathNodes + "/b1/promote", `{"force":`, aliceConf, "", http.StatusBadRequest},
			{"promote with unknown parameters", api.PathNodes + "/b1/promote", `{"force":true}`, aliceConf, "", http.StatusBadRequest},
		} {
			for _, node := range []string{leader, follower} {
				status, body := c.raw(node, tc.conf, tc.token, http.MethodPost, tc.path, tc.body)
				if status != tc.status || !strings.HasPrefix(body, "{") || strings.Count(strings.TrimSpace(body), "\n") > 2 {
					t.Errorf("%s via %s: %d %q; want %d with a one-line JSON error", tc.name, node, status, body, tc.status)
				}
			}
		}
		// An operator cannot assert another identity through the
		// forwarding header.
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tlsConf(c.pki, "dash")}}
		req, _ := http.NewRequest(http.MethodPost, "https://"+c.procs[leader].api+api.PathPlans+"/"+planID+"/pause", nil)
		req.Header.Set(api.HeaderIdentity, "operator:alice (cert)")
		if resp, err := cl.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("reader with a forged %s: %v %v; want 403", api.HeaderIdentity, resp, err)
		} else {
			resp.Body.Close()
		}
		// Raft accepts only node certificates.
		conn, err := tls.Dial("tcp", raftAddrOf(t, c, leader), c.tlsConf(c.pki, "alice"))
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("raft with an operator certificate: %v; want the handshake refused", err)
		}
		if after := c.fingerprint(); after != before {
			t.Errorf("state changed by refused requests:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("a token rolls back; the history names it", func(t *testing.T) {
		_, errOut, code := c.ctlTLS(follower, []string{"--token", ciToken}, "rollback", planID, "--wait")
		if code != 0 {
			t.Fatalf("rollback with token: exit %d, stderr %q; want 0", code, errOut)
		}
		show, _, _ := c.ctlTLS(leader, alice, "plan", "show", planID)
		if !strings.Contains(show, "rollback by operator:ci (token)") {
			t.Errorf("plan show after a token rollback:\n%s\nwant rollback by operator:ci (token)", show)
		}
	})
}

// leader2 is the leader as the witness reports it over tls.
func (c *secCluster) leader2() string {
	c.t.Helper()
	var leader string
	c.waitFor(20*time.Second, "a leader", func() bool {
		st, err := c.as("w", "alice").Status(context.Background())
		leader = st.Leader
		return err == nil && leader != ""
	})
	return leader
}

func raftAddrOf(t *testing.T, c *secCluster, node string) string {
	t.Helper()
	ms, err := c.as("w", "alice").Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Node == node {
			return m.RaftAddr
		}
	}
	t.Fatalf("no member %s", node)
	return ""
}

// TestSecurityLocalUsers: on a plain loopback lpd, a local user other than
// root reads but cannot write, unless with a token.
func TestSecurityLocalUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an lpd process")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run lpctl as another user")
	}
	buildFixtures(t)
	// A directory the unprivileged user can reach, with lpctl in it.
	pub, err := os.MkdirTemp("", "lp-sec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	os.Chmod(pub, 0o755)
	ctl := filepath.Join(pub, "lpctl")
	data, err := os.ReadFile(built.ctl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctl, data, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &e2eCluster{t: t, dir: t.TempDir(), procs: map[string]*lpdProc{}}
	apiPort, raftPort, gossipPort := freePort(t), freePort(t), freePort(t)
	p := &lpdProc{name: "w", server: true, api: fmt.Sprintf("127.0.0.1:%d", apiPort), config: filepath.Join(c.dir, "w.yaml"), log: filepath.Join(c.dir, "w.log")}
	cfg := fmt.Sprintf("node: w\nrole: witness\nserver: true\nbootstrap_expect: 1\ndata_dir: %s\nbind: 127.0.0.1\nports: { api: %d, raft: %d, gossip: %d }\ntokens:\n  - { name: ci, role: operator, sha256: %s }\n",
		filepath.Join(c.dir, "data"), apiPort, raftPort, gossipPort, sum256(ciToken))
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.procs["w"], c.order = p, []string{"w"}
	c.start("w")
	c.waitFor(30*time.Second, "w registered", func() bool {
		ms, err := c.client("w").Members(context.Background())
		return err == nil && len(ms) == 1 && ms[0].Status == "alive"
	})
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
	run := func(cred *syscall.SysProcAttr, name string, args ...string) (string, int) {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = cred
		cmd.Dir = pub
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("running %s: %v", name, err)
		}
		return string(out), code
	}
	addr := "http://" + p.api
	plans := func() int { return c.planCount("w") }
	before := plans()
	planFile := filepath.Join(pub, "p.yaml")
	os.WriteFile(planFile, []byte("name: x\npatch: p.so\ntarget: svc\ntrial: 1s\n"), 0o644)
	os.WriteFile(filepath.Join(pub, "p.so"), []byte("not elf"), 0o644)

	if out, code := run(nobody, ctl, "--addr", addr, "members"); code != 0 {
		t.Errorf("members as nobody: exit %d, %q; want 0 (reads are open to local users)", code, out)
	}
	for _, args := range [][]string{{"plan", "submit", planFile}, {"plan", "pause", "nosuch"}, {"rollback"}, {"promote", "w"}} {
		out, code := run(nobody, ctl, append([]string{"--addr", addr}, args...)...)
		if code == 0 || !strings.Contains(out, "forbidden: reader:") || !strings.Contains(out, "(local uid 65534)") {
			t.Errorf("lpctl %v as nobody: exit %d, %q; want refused as a local reader", args, code, out)
		}
	}
	// The same user with an operator token is let through (to the
	// next refusal: there is no such plan).
	if out, code := run(nobody, ctl, "--addr", addr, "--token", ciToken, "plan", "pause", "nosuch"); code == 0 || !strings.Contains(out, "does not exist") {
		t.Errorf("pause as nobody with a token: exit %d, %q; want the plan's absence, not a refusal", code, out)
	}
	// Root may write.
	if out, errOut, code := c.ctl("w", "plan", "pause", "nosuch"); code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("pause as root: exit %d, %q %q; want the plan's absence, not a refusal", code, out, errOut)
	}
	// Raw node-to-node calls as nobody.
	if _, err := exec.LookPath("curl"); err == nil {
		for _, path := range []string{api.PathTrialFail, api.PathObserved, api.PathRegister} {
			out, _ := run(nobody, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", `{"node":"w","name":"w","plan":"x"}`, addr+path)
			if out != "403" {
				t.Errorf("POST %s as nobody: %s; want 403", path, out)
			}
		}
	} else {
		t.Log("curl not found: raw node-to-node calls as nobody not tried")
	}
	if after := plans(); after != before {
		t.Errorf("plans after refused writes = %d; want %d", after, before)
	}
}
