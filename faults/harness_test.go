package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lp/cluster/api"
	"lp/config"
)

// built holds the programs built once per test binary.
var built struct {
	once               sync.Once
	dir                string
	err                error
	svc, fix, lpd, ctl string
}

func buildAll(t testing.TB) {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "lp-faults-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		built.svc = filepath.Join(dir, "svc")
		built.fix = filepath.Join(dir, "fix.so")
		built.lpd = filepath.Join(dir, "lpd")
		built.ctl = filepath.Join(dir, "lpctl")
		for _, s := range [][]string{
			{"cc", "-O2", "-o", built.svc, "testdata/svc.c"},
			{"cc", "-shared", "-fPIC", "-O2", "-I../include", "-o", built.fix, "testdata/fix.c"},
			{"go", "build", "-o", built.lpd, "lp/cmd/lpd"},
			{"go", "build", "-o", built.ctl, "lp/cmd/lpctl"},
		} {
			if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
				built.err = fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// requireRoot skips unless the test can make namespaces, attach to targets
// and mount a tmpfs.
func requireRoot(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("lp patches linux/amd64 processes only")
	}
	if os.Geteuid() != 0 {
		t.Skip("the fault suite needs root: network namespaces, tc, tmpfs and ptrace")
	}
	for _, tool := range []string{"ip", "tc", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the fault suite needs %s (iproute2, nftables; .ci/run installs them): %v", tool, err)
		}
	}
}

// insecureKey says whether lpd.yaml has the insecure key (where it exists,
// a non-loopback bind without tls needs it).
func insecureKey() bool {
	_, ok := reflect.TypeOf(config.Node{}).FieldByName("Insecure")
	return ok
}

// harnessSeq numbers the harnesses of one test binary, for unique names.
var harnessSeq atomic.Int64

// node is one lpd of the harness, in its own network namespace.
type node struct {
	name, pair, role string
	server           bool
	ip               string
	ns               string
	dataDir          string
	config           string
	log              string
	sick             string // the health check fails while this file exists
	tmpfs            bool   // dataDir is a small tmpfs of its own

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	running bool
	stopped bool // SIGSTOPped
	svc     *target
}

// target is a running svc of a pair node.
type target struct {
	cmd     *exec.Cmd
	pid     int
	out     string
	pidfile string
	done    chan struct{}
}

// harness is one cluster of real lpd processes in network namespaces.
type harness struct {
	t      testing.TB
	dir    string
	id     string // unique per harness: names of links and namespaces
	bridge string
	subnet string // "10.77.N"
	nodes  map[string]*node
	order  []string
	hist   *history
	trial  time.Duration
	dumped bool // dumpLogs ran
}

// The cluster of every schedule: a witness and two pairs. w, a1 and b1 are
// the raft voters; a2 and b2 are non-voters (they still get the whole log).
var topology = []struct {
	name, pair, role string
	server           bool
}{
	{"w", "", "witness", true},
	{"a1", "pair-1", "active", true},
	{"b1", "pair-1", "standby", true},
	{"a2", "pair-2", "active", false},
	{"b2", "pair-2", "standby", false},
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newHarness builds the network, writes the configs and starts every node
// and target; tmpfsNode gets its data dir on a small tmpfs. Everything is
// torn down in t.Cleanup, also when the test fails half-way.
func newHarness(t testing.TB, tmpfsNode string) *harness {
	t.Helper()
	requireRoot(t)
	buildAll(t)
	seq := harnessSeq.Add(1)
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%d/%d", os.Getpid(), seq, time.Now().UnixNano())))
	h := &harness{
		t: t, dir: t.TempDir(), id: fmt.Sprintf("%x", sum[:3]), nodes: map[string]*node{},
		trial: 2 * time.Second,
	}
	h.bridge = "lf" + h.id + "br"
	h.hist = newHistory(filepath.Join(h.dir, "history.jsonl"))
	t.Cleanup(h.teardown)
	if err := h.network(); err != nil {
		t.Skipf("cannot build network namespaces here (the namespace cases need them): %v", err)
	}
	hook := filepath.Join(h.dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$(date +%s.%N) $LP_NODE $LP_OLD_ROLE $LP_ROLE $LP_ROLE_EPOCH\" >> "+
		filepath.Join(h.dir, "hooks.log")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var join []string
	for i, s := range topology {
		if s.server {
			join = append(join, fmt.Sprintf("%s.%d:7072", h.subnet, 10+i))
		}
	}
	for i, s := range topology {
		n := &node{name: s.name, pair: s.pair, role: s.role, server: s.server,
			ip: fmt.Sprintf("%s.%d", h.subnet, 10+i), ns: "lf" + h.id + "-" + s.name,
			dataDir: filepath.Join(h.dir, s.name+".data"), config: filepath.Join(h.dir, s.name+".yaml"),
			log: filepath.Join(h.dir, s.name+".log"), sick: filepath.Join(h.dir, s.name+".sick")}
		if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if s.name == tmpfsNode {
			if err := run("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", n.dataDir); err != nil {
				t.Fatalf("mounting a tmpfs for %s: %v", s.name, err)
			}
			n.tmpfs = true
		}
		var b strings.Builder
		fmt.Fprintf(&b, "node: %s\ndata_dir: %s\nbind: %s\n", n.name, n.dataDir, n.ip)
		if insecureKey() {
			b.WriteString("insecure: true   # the namespaces' private bridge, never leaves the machine\n")
		}
		fmt.Fprintf(&b, "server: %t\nrole: %s\njoin: [%s]\n", s.server, s.role, strings.Join(join, ", "))
		if s.server {
			b.WriteString("bootstrap_expect: 3\n")
		}
		fmt.Fprintf(&b, "health:\n  - name: sick-flag\n    exec: test ! -e %s\n    interval: 200ms\n    timeout: 2s\n    failures: 2\n    successes: 1\n", n.sick)
		if s.pair != "" {
			n.svc = h.startTarget(n, 0)
			fmt.Fprintf(&b, "pair: %s\nroles: managed\nfailover_after: 2s\non_promote: %s\non_demote: %s\n", s.pair, hook, hook)
			fmt.Fprintf(&b, "targets:\n  svc: { pidfile: %s }\n", n.svc.pidfile)
		}
		if err := os.WriteFile(n.config, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		h.nodes[s.name] = n
		h.order = append(h.order, s.name)
	}
	for _, name := range h.order {
		h.startLPD(h.nodes[name])
	}
	// Generous: on a loaded machine five lpds take a while to agree.
	h.waitFor(3*time.Minute, "5 nodes alive and healthy with a leader", func() bool {
		for _, name := range h.order {
			n := h.nodes[name]
			select {
			case <-n.exited:
				log, _ := os.ReadFile(n.log)
				h.t.Fatalf("lpd %s exited at start: %s", name, bytes.TrimSpace(log))
			default:
			}
		}
		ms, err := h.client("w").Members(context.Background())
		if err != nil {
			return false
		}
		ok := 0
		for _, m := range ms {
			if m.Status == "alive" && m.Health == "healthy" && m.Gossip == "alive" && m.RaftState != "none" {
				ok++
			}
		}
		return ok == len(topology) && h.leader() != ""
	})
	return h
}

// network makes the bridge, and for every node a namespace with a veth
// pair whose inner end is eth0, and an nftables input chain (for
// partitions and loss).
func (h *harness) network() error {
	// A /24 of 10.77.0.0/16 that no interface here uses yet.
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return err
	}
	n0, _ := strconv.ParseUint(h.id[:2], 16, 8)
	for k := range 250 {
		cand := fmt.Sprintf("10.77.%d", (int(n0)+k)%250)
		if !bytes.Contains(out, []byte(" "+cand+".")) {
			h.subnet = cand
			break
		}
	}
	if h.subnet == "" {
		return errors.New("no free 10.77.N.0/24")
	}
	if err := run("ip", "link", "add", h.bridge, "type", "bridge"); err != nil {
		h.bridge = ""
		return err
	}
	for _, args := range [][]string{
		{"addr", "add", h.subnet + ".1/24", "dev", h.bridge},
		{"link", "set", h.bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	for i, s := range topology {
		ns := "lf" + h.id + "-" + s.name
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		h.nodes[s.name] = &node{name: s.name, ns: ns} // for teardown until newHarness fills it
		host, inner := fmt.Sprintf("lf%sh%d", h.id, i), fmt.Sprintf("lf%sn%d", h.id, i)
		for _, args := range [][]string{
			{"ip", "link", "add", host, "type", "veth", "peer", "name", inner},
			{"ip", "link", "set", inner, "netns", ns},
			{"ip", "link", "set", host, "master", h.bridge},
			{"ip", "link", "set", host, "up"},
			{"ip", "-n", ns, "link", "set", inner, "name", "eth0"},
			{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s.%d/24", h.subnet, 10+i), "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
		} {
			if err := run(args[0], args[1:]...); err != nil {
				return err
			}
		}
		// Partitions and loss are nftables rules in the node's input
		// chain: real drops, invisible to the sender.
		for _, rule := range [][]string{
			{"add", "table", "inet", "lpf"},
			{"add", "chain", "inet", "lpf", "in", "{ type filter hook input priority 0; policy accept; }"},
		} {
			if err := run("ip", append([]string{"netns", "exec", ns, "nft"}, rule...)...); err != nil {
				return fmt.Errorf("nftables (partitions need it): %w", err)
			}
		}
	}
	return nil
}

// teardown stops every process and removes mounts, namespaces and the
// bridge. It runs in t.Cleanup, also after a failure.
func (h *harness) teardown() {
	if h.t.Failed() && !h.dumped {
		h.dumpLogs()
	}
	for _, name := range h.order {
		n := h.nodes[name]
		h.killLPD(n)
		n.mu.Lock()
		if n.svc != nil {
			n.svc.cmd.Process.Kill()
			<-n.svc.done
		}
		n.mu.Unlock()
		if n.tmpfs {
			if err := run("umount", "-l", n.dataDir); err != nil {
				h.t.Logf("teardown: %v", err)
			}
		}
	}
	for i := range topology {
		run("ip", "link", "del", fmt.Sprintf("lf%sh%d", h.id, i)) // gone with its namespace, usually
	}
	for _, n := range h.nodes {
		if n.ns != "" {
			if err := run("ip", "netns", "del", n.ns); err != nil {
				h.t.Logf("teardown: %v", err)
			}
		}
	}
	if h.bridge != "" {
		if err := run("ip", "link", "del", h.bridge); err != nil {
			h.t.Logf("teardown: %v", err)
		}
	}
	h.hist.close()
}

// startTarget starts svc for n (k numbers restarts) and writes its pidfile.
func (h *harness) startTarget(n *node, k int) *target {
	h.t.Helper()
	tg := &target{out: filepath.Join(h.dir, fmt.Sprintf("svc-%s-%d.out", n.name, k)),
		pidfile: filepath.Join(h.dir, "svc-"+n.name+".pid"), done: make(chan struct{})}
	f, err := os.Create(tg.out)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	tg.cmd = exec.Command(built.svc)
	tg.cmd.Stdout = f
	if err := tg.cmd.Start(); err != nil {
		h.t.Fatalf("starting svc: %v", err)
	}
	tg.pid = tg.cmd.Process.Pid
	go func() { tg.cmd.Wait(); close(tg.done) }()
	if err := os.WriteFile(tg.pidfile, []byte(strconv.Itoa(tg.pid)+"\n"), 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.hist.add("target", n.name, fmt.Sprintf("started svc pid %d", tg.pid))
	return tg
}

// value is the number in the target's last complete line ("v N"), -1 when
// there is none yet.
func (tg *target) value() int {
	data, _ := os.ReadFile(tg.out)
	data = bytes.TrimRight(data, "\n")
	for len(data) > 0 {
		i := bytes.LastIndexByte(data, '\n')
		line := string(data[i+1:])
		if v, ok := strings.CutPrefix(line, "v "); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
		if i < 0 {
			break
		}
		data = data[:i]
	}
	return -1
}

func (tg *target) size() int64 {
	fi, err := os.Stat(tg.out)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (tg *target) alive() bool {
	select {
	case <-tg.done:
		return false
	default:
		return true
	}
}

// startLPD runs the node's lpd in its namespace (ip netns exec execs lpd,
// so the pid is lpd's).
func (h *harness) startLPD(n *node, args ...string) {
	h.t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.ns, built.lpd, "--config", n.config}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatalf("starting lpd %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.exited, n.running, n.stopped = cmd, done, true, false
	n.mu.Unlock()
	h.hist.add("lpd", n.name, fmt.Sprintf("started pid %d %s", cmd.Process.Pid, strings.Join(args, " ")))
}

// killLPD sends SIGKILL (after SIGCONT, for a stopped one) and reaps it.
func (h *harness) killLPD(n *node) {
	n.mu.Lock()
	cmd, done, running := n.cmd, n.exited, n.running
	n.running, n.stopped = false, false
	n.mu.Unlock()
	if !running || cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	h.hist.add("lpd", n.name, fmt.Sprintf("killed pid %d", cmd.Process.Pid))
}

func (h *harness) client(name string) *api.Client {
	c := api.NewClient(h.nodes[name].ip + ":7070")
	c.HTTP.Timeout = 3 * time.Second
	return c
}

// call makes one API call to a node and records the request and answer.
func (h *harness) call(node, what string, f func(context.Context, *api.Client) (any, error)) (any, error) {
	h.hist.add("call", node, what)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := f(ctx, h.client(node))
	if err != nil {
		h.hist.add("error", node, what+": "+err.Error())
		return nil, err
	}
	b, _ := json.Marshal(v)
	if len(b) > 400 {
		b = append(b[:400], "..."...)
	}
	h.hist.add("ok", node, what+": "+string(b))
	return v, nil
}

// running returns the names of the nodes whose lpd runs and is not stopped.
func (h *harness) running() []string {
	var out []string
	for _, name := range h.order {
		n := h.nodes[name]
		n.mu.Lock()
		if n.running && !n.stopped {
			out = append(out, name)
		}
		n.mu.Unlock()
	}
	return out
}

// leader returns the leader as a running node reports it ("" if none).
func (h *harness) leader() string {
	for _, name := range h.running() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := h.client(name).Status(ctx)
		cancel()
		if err == nil && st.Leader != "" {
			return st.Leader
		}
	}
	return ""
}

func (h *harness) waitFor(d time.Duration, what string, cond func() bool) {
	h.t.Helper()
	if !h.poll(d, cond) {
		h.t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// poll waits up to d for cond and says whether it held.
func (h *harness) poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// dumpLogs puts each lpd's log tail into the test log.
func (h *harness) dumpLogs() {
	h.dumped = true
	for _, name := range h.order {
		data, _ := os.ReadFile(h.nodes[name].log)
		if len(data) > 5000 {
			data = data[len(data)-5000:]
		}
		h.t.Logf("--- log of %s (tail) ---\n%s", name, data)
	}
	h.t.Logf("history: %s", h.hist.path)
}

// op is one entry of the history.
type op struct {
	T    time.Time `json:"t"`
	Kind string    `json:"kind"` // call ok error fault heal lpd target value fsm hook role note
	Node string    `json:"node,omitempty"`
	What string    `json:"what"`
}

// history is the append-only record of a schedule, in memory and as JSON
// lines in a file.
type history struct {
	mu   sync.Mutex
	path string
	f    *os.File
	ops  []op
}

func newHistory(path string) *history {
	f, _ := os.Create(path)
	return &history{path: path, f: f}
}

func (hi *history) add(kind, node, what string) {
	o := op{T: time.Now(), Kind: kind, Node: node, What: what}
	hi.mu.Lock()
	defer hi.mu.Unlock()
	hi.ops = append(hi.ops, o)
	if hi.f != nil {
		b, _ := json.Marshal(o)
		hi.f.Write(append(b, '\n'))
	}
}

func (hi *history) all() []op {
	hi.mu.Lock()
	defer hi.mu.Unlock()
	return append([]op(nil), hi.ops...)
}

func (hi *history) close() {
	hi.mu.Lock()
	defer hi.mu.Unlock()
	if hi.f != nil {
		hi.f.Close()
		hi.f = nil
	}
}
