package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"lp/cluster/api"
	"lp/internal/auth"
	"lp/signing"
)

// runClusterDemo starts a witness and one 1+1 pair of lpd on 127.0.0.1, each
// pair member with its own sipd, over mutual TLS with certificates from
// lpctl tls init and an operator token, trusting a key made by lpctl patch
// keygen; shows the unsigned fix refused at submit; submits the fix signed
// with that key as a plan (standby, trial, active, trial) with an operator
// certificate, shows both services, rolls the plan back cluster-wide with
// the token and stops everything it started.
func runClusterDemo(a *app, work, sipd, fix string) error {
	say := func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }
	lpd, err := findLpd()
	if err != nil {
		return err
	}
	ports, err := freePorts(11)
	if err != nil {
		return err
	}
	type member struct {
		name, pair, role       string
		api, raft, gossip, sip int
		svc                    *exec.Cmd
		out                    string
	}
	nodes := []*member{
		{name: "witness", role: "witness"},
		{name: "sip-a", pair: "sip-1", role: "active"},
		{name: "sip-b", pair: "sip-1", role: "standby"},
	}
	for i, n := range nodes {
		n.api, n.raft, n.gossip = ports[3*i], ports[3*i+1], ports[3*i+2]
	}
	nodes[1].sip, nodes[2].sip = ports[9], ports[10]

	var started []*exec.Cmd
	defer func() {
		// lpd leaves gracefully on SIGTERM; the services are just killed.
		for _, c := range started {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range started {
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = c.Process.Kill()
				<-done
			}
		}
	}()

	for _, n := range nodes {
		if n.pair == "" {
			continue
		}
		n.out = filepath.Join(work, n.name+"-sipd.out")
		out, err := os.Create(n.out)
		if err != nil {
			return err
		}
		n.svc = exec.Command(sipd, "-t", "2", "-p", fmt.Sprint(n.sip), "-f", filepath.Join(work, n.name+".pid"))
		n.svc.Stdout = out
		if err := n.svc.Start(); err != nil {
			out.Close()
			return fmt.Errorf("starting sipd: %w", err)
		}
		out.Close()
		started = append(started, n.svc)
	}
	// Security: a CA, a certificate per node and one for the operator,
	// and a token for tools (docs/security.md).
	pki := filepath.Join(work, "pki")
	say("== lpctl tls init --dir %s --nodes witness,sip-a,sip-b --client demo:operator", pki)
	if _, err := auth.Init(auth.InitOptions{Dir: pki, Nodes: []string{"witness", "sip-a", "sip-b"},
		Clients: []auth.Client{{Name: "demo", Role: auth.RoleOperator}}}); err != nil {
		return fmt.Errorf("tls init: %w", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	token := hex.EncodeToString(secret)
	tokenSum := sha256.Sum256([]byte(token))
	// Signed patches: a key, the fix signed with it, and the key trusted by
	// every node (trusted_keys): lpd then loads nothing else.
	key := filepath.Join(work, "ci.key")
	say("== lpctl patch keygen ci.key; lpctl patch sign fix-invite.so --key ci.key")
	if code := execute([]string{"patch", "keygen", key}, a.stdout, a.stderr); code != 0 {
		return &exitError{code: code, msg: "the demo could not make a signing key"}
	}
	if code := execute([]string{"patch", "sign", fix, "--key", key}, a.stdout, a.stderr); code != 0 {
		return &exitError{code: code, msg: "the demo could not sign its fix"}
	}
	pub, err := os.ReadFile(key + signing.PubSuffix)
	if err != nil {
		return err
	}
	say("== starting 3 lpd on 127.0.0.1 with tls and trusted_keys: witness, sip-a (active) and sip-b (standby), each pair member with its own sipd")
	var join []string
	for _, n := range nodes {
		join = append(join, fmt.Sprintf("127.0.0.1:%d", n.gossip))
	}
	for _, n := range nodes {
		var b strings.Builder
		fmt.Fprintf(&b, "node: %s\ndata_dir: %s\nbind: 127.0.0.1\nports: { api: %d, raft: %d, gossip: %d }\n",
			n.name, filepath.Join(work, "data", n.name), n.api, n.raft, n.gossip)
		fmt.Fprintf(&b, "server: true\nbootstrap_expect: 3\njoin: [%s]\nrole: %s\n", strings.Join(join, ", "), n.role)
		fmt.Fprintf(&b, "tls: { ca: %s, cert: %s, key: %s }\n", filepath.Join(pki, "ca.pem"),
			filepath.Join(pki, n.name+".pem"), filepath.Join(pki, n.name+"-key.pem"))
		fmt.Fprintf(&b, "tokens:\n  - { name: demo-ci, role: operator, sha256: %s }\n", hex.EncodeToString(tokenSum[:]))
		fmt.Fprintf(&b, "trusted_keys: [%s]\n", strings.TrimSpace(string(pub)))
		if n.pair != "" {
			fmt.Fprintf(&b, "pair: %s\ntargets:\n  sipd: { pidfile: %s }\n", n.pair, filepath.Join(work, n.name+".pid"))
			fmt.Fprintf(&b, "health:\n  - name: sip-port\n    tcp: 127.0.0.1:%d\n    interval: 500ms\n", n.sip)
		}
		cfg := filepath.Join(work, n.name+".yaml")
		if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
			return err
		}
		logf, err := os.Create(filepath.Join(work, n.name+".log"))
		if err != nil {
			return err
		}
		c := exec.Command(lpd, "--config", cfg)
		c.Stderr = logf
		if err := c.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("starting lpd: %w", err)
		}
		logf.Close()
		started = append(started, c)
	}
	addr := fmt.Sprintf("https://127.0.0.1:%d", nodes[0].api)
	op := &app{addr: addr, ca: filepath.Join(pki, "ca.pem"), cert: filepath.Join(pki, "demo.pem"), key: filepath.Join(pki, "demo-key.pem")}
	if err := waitCluster(op.client(), 3, 30*time.Second); err != nil {
		return fmt.Errorf("%w (lpd logs are in %s)", err, work)
	}
	run := func(flags []string, shown string, args ...string) int {
		say("== lpctl %s%s", shown, strings.Join(args, " "))
		all := append([]string{"--addr", addr, "--ca", op.ca}, flags...)
		return execute(append(all, args...), a.stdout, a.stderr)
	}
	certFlags := []string{"--cert", op.cert, "--key", op.key}
	sub := func(args ...string) int { return run(certFlags, "--cert demo.pem ", args...) }
	time.Sleep(1100 * time.Millisecond) // a status line from each sipd
	sub("members")
	say("== without a certificate or token, lpd refuses (401):")
	if code := run(nil, "", "rollback"); code == 0 {
		return errors.New("lpd accepted a write without a certificate")
	}

	plan := filepath.Join(work, "plan.yaml")
	planText := fmt.Sprintf("name: fix-invite-overflow\npatch: %s\ntarget: sipd\ntrial: 3s\nhealth:\n  - process: sipd\n    interval: 500ms\n    failures: 2\n", fix)
	if err := os.WriteFile(plan, []byte(planText), 0o644); err != nil {
		return err
	}
	// The same fix without its signature: refused at submit.
	unsigned := filepath.Join(work, "unsigned", filepath.Base(fix))
	if err := os.MkdirAll(filepath.Dir(unsigned), 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile(fix)
	if err != nil {
		return err
	}
	if err := os.WriteFile(unsigned, data, 0o644); err != nil {
		return err
	}
	unsignedPlan := filepath.Join(work, "unsigned", "plan.yaml")
	if err := os.WriteFile(unsignedPlan, []byte(strings.Replace(planText, fix, unsigned, 1)), 0o644); err != nil {
		return err
	}
	say("== the fix without its .sig is refused at submit (403), nothing changes:")
	if code := sub("plan", "submit", unsignedPlan); code == 0 {
		return errors.New("lpd accepted an unsigned module although trusted_keys is set")
	}
	showServices := func() {
		for _, n := range nodes[1:] {
			say("   %s: %s", n.name, lastLine(n.out))
		}
	}
	say("== both services run the buggy version 1")
	showServices()
	if code := sub("plan", "submit", plan, "--wait"); code != 0 {
		return &exitError{code: code, msg: "the demo plan did not complete"}
	}
	time.Sleep(1100 * time.Millisecond)
	say("== both services run the fix (version 2), patched standby first, neither restarted")
	showServices()
	if code := run([]string{"--token", token}, "--token $TOKEN ", "rollback", "--wait"); code != 0 {
		return &exitError{code: code, msg: "the demo rollback did not finish"}
	}
	say("== every node is back on its pre-plan code (oversize_accepted grows again)")
	time.Sleep(1100 * time.Millisecond)
	showServices()
	say("== done; stopping the 3 lpd and both services")
	return nil
}

func findLpd() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "lpd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("lpd"); err == nil {
		return p, nil
	}
	return "", errors.New("cannot find lpd next to lpctl or in PATH (run make build)")
}

// freePorts finds n distinct free TCP ports on 127.0.0.1 that are also
// free for UDP (memberlist uses both).
func freePorts(n int) ([]int, error) {
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			u.Close()
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// waitCluster waits until addr's lpd sees a leader and want members
// registered, alive and healthy.
func waitCluster(c *api.Client, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err1 := c.Status(ctx)
		ms, err2 := c.Members(ctx)
		cancel()
		ready := 0
		for _, m := range ms {
			// Registered in the FSM (status), alive and healthy.
			if m.Status == "alive" && m.Health == "healthy" {
				ready++
			}
		}
		if err1 == nil && err2 == nil && st.Leader != "" && ready >= want {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the demo cluster did not form within %v", timeout)
}

func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no output)"
	}
	defer f.Close()
	last := "(no output yet)"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		last = sc.Text()
	}
	return last
}
