package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The kinds of fault a schedule injects.
const (
	kPartitionNode   = "partition-node"   // one node from the rest, both ways
	kPartitionLeader = "partition-leader" // the raft leader from the rest
	kPartitionActive = "partition-active" // pair-1's active from the rest
	kOneWayIn        = "oneway-in"        // a node hears nobody; the others hear it
	kOneWayOut       = "oneway-out"       // nobody hears a node; it hears them
	kLossy           = "lossy-link"       // 25% loss in and a slow, queueing link out on one node
	kKill9           = "kill9"            // kill -9 an lpd, restart it later
	kStop            = "sigstop"          // SIGSTOP an lpd, SIGCONT later
	kTargetCrash     = "target-crash"     // kill -9 a target; its supervisor restarts it
	kHealthFail      = "health-fail"      // a node's health check fails
	kDiskFull        = "disk-full"        // the tmpfs under one node's data dir fills up
	kDataLost        = "datadir-lost"     // lpd restarted with its data dir empty
	kDataCorrupt     = "datadir-corrupt"  // lpd restarted with raft.db truncated
)

var allKinds = []string{kPartitionNode, kPartitionLeader, kPartitionActive, kOneWayIn, kOneWayOut, kLossy,
	kKill9, kStop, kTargetCrash, kHealthFail, kDiskFull, kDataLost, kDataCorrupt}

// fault is one step of a schedule.
type fault struct {
	Kind  string
	Node  string        // the victim; resolved when applied for leader and active
	After time.Duration // wait before injecting
	For   time.Duration // how long it lasts
}

// schedule is what a seed picks: where the disk is small, the faults in
// order, and whether an operator asks for a rollback and when.
type schedule struct {
	Seed       uint64
	TmpfsNode  string
	Faults     []fault
	RollbackAt time.Duration // after submission; 0: no rollback
}

func (s schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (tmpfs under %s):", s.Seed, s.TmpfsNode)
	for _, f := range s.Faults {
		fmt.Fprintf(&b, " +%v %s(%s) for %v;", f.After, f.Kind, f.Node, f.For)
	}
	if s.RollbackAt > 0 {
		fmt.Fprintf(&b, " rollback at +%v", s.RollbackAt)
	}
	return b.String()
}

// newSchedule derives a schedule from seed; kinds, when given, replace the
// random choice of fault kinds (the fixed CI set).
func newSchedule(seed uint64, kinds []string) schedule {
	r := rand.New(rand.NewPCG(seed, 0x1a57))
	pairNodes := []string{"a1", "b1", "a2", "b2"}
	names := []string{"w", "a1", "b1", "a2", "b2"}
	s := schedule{Seed: seed, TmpfsNode: pairNodes[r.IntN(len(pairNodes))]}
	if kinds == nil {
		for range 1 + r.IntN(3) {
			kinds = append(kinds, allKinds[r.IntN(len(allKinds))])
		}
	}
	for _, k := range kinds {
		f := fault{Kind: k, After: time.Duration(r.IntN(5000)) * time.Millisecond,
			For: time.Duration(1000+r.IntN(5000)) * time.Millisecond}
		switch k {
		case kPartitionLeader:
			f.Node = "leader"
		case kPartitionActive:
			f.Node = "active"
		case kTargetCrash, kHealthFail:
			f.Node = pairNodes[r.IntN(len(pairNodes))]
		case kDiskFull:
			f.Node = s.TmpfsNode
		default:
			f.Node = names[r.IntN(len(names))]
		}
		s.Faults = append(s.Faults, f)
	}
	if r.IntN(4) == 0 {
		s.RollbackAt = time.Duration(2000+r.IntN(10000)) * time.Millisecond
	}
	return s
}

// resolve names the victim of f now.
func (h *harness) resolve(f fault) string {
	switch f.Node {
	case "leader":
		return h.leader()
	case "active":
		for _, name := range h.running() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			ms, err := h.client(name).Members(ctx)
			cancel()
			if err != nil {
				continue
			}
			for _, m := range ms {
				if m.Pair == "pair-1" && m.Role == "active" {
					return m.Node
				}
			}
		}
		return ""
	}
	return f.Node
}

// inject applies f, waits f.For and heals it; it returns what happened.
func (h *harness) inject(f fault, violate func(string, ...any)) {
	victim := h.resolve(f)
	if victim == "" {
		h.hist.add("note", "", "no victim for "+f.Kind+" (no leader or active known); skipped")
		return
	}
	n := h.nodes[victim]
	h.hist.add("fault", victim, f.Kind)
	others := slices.DeleteFunc(slices.Clone(h.order), func(s string) bool { return s == victim })
	switch f.Kind {
	case kPartitionNode, kPartitionLeader, kPartitionActive:
		h.dropFrom(victim, others...)
		for _, o := range others {
			h.dropFrom(o, victim)
		}
		time.Sleep(f.For)
		h.healNet()
	case kOneWayIn:
		h.dropFrom(victim, others...)
		time.Sleep(f.For)
		h.healNet()
	case kOneWayOut:
		for _, o := range others {
			h.dropFrom(o, victim)
		}
		time.Sleep(f.For)
		h.healNet()
	case kLossy:
		// This kernel has no netem: loss is an nftables rule, delay the
		// queue of a slow token bucket.
		h.nft(victim, "add", "rule", "inet", "lpf", "in", "numgen", "random", "mod", "100", "<", "25", "drop")
		h.tc(victim, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "2mbit", "burst", "8kb", "latency", "150ms")
		time.Sleep(f.For)
		h.healNet()
	case kKill9:
		h.killLPD(n)
		time.Sleep(f.For)
		h.startLPD(n)
	case kStop:
		n.mu.Lock()
		if n.running {
			n.cmd.Process.Signal(syscall.SIGSTOP)
			n.stopped = true
		}
		n.mu.Unlock()
		time.Sleep(f.For)
		n.mu.Lock()
		if n.running {
			n.cmd.Process.Signal(syscall.SIGCONT)
			n.stopped = false
		}
		n.mu.Unlock()
	case kTargetCrash:
		n.mu.Lock()
		svc := n.svc
		n.mu.Unlock()
		svc.cmd.Process.Kill()
		<-svc.done
		time.Sleep(f.For)
		restarted := h.startTarget(n, int(time.Now().UnixNano()%1e6))
		n.mu.Lock()
		n.svc = restarted
		n.mu.Unlock()
	case kHealthFail:
		os.WriteFile(n.sick, []byte("sick\n"), 0o600)
		time.Sleep(f.For)
		os.Remove(n.sick)
	case kDiskFull:
		filler := filepath.Join(n.dataDir, "filler")
		fillDisk(filler)
		time.Sleep(f.For)
		os.Remove(filler)
	case kDataLost, kDataCorrupt:
		h.restartDamaged(n, f, violate)
	}
	h.hist.add("heal", victim, f.Kind)
}

// restartDamaged kills the node's lpd, empties or damages its data dir and
// starts lpd again: a voter must refuse with one line (a non-voter may
// start and catch up); then the operator's recovery, --rejoin-as-new on a
// moved-aside data dir, must bring it back.
func (h *harness) restartDamaged(n *node, f fault, violate func(string, ...any)) {
	h.killLPD(n)
	want := "raft state was lost"
	if f.Kind == kDataLost {
		emptyDir(n.dataDir)
	} else {
		db := filepath.Join(n.dataDir, "raft.db")
		fi, err := os.Stat(db)
		if err != nil {
			h.hist.add("note", n.name, "no raft.db to damage: "+err.Error())
			h.startLPD(n)
			return
		}
		os.Truncate(db, fi.Size()/2)
		want = "raft store is damaged"
	}
	before, _ := os.ReadFile(n.log)
	h.startLPD(n)
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	select {
	case <-exited:
		n.mu.Lock()
		n.running = false
		code := n.cmd.ProcessState.ExitCode()
		n.mu.Unlock()
		all, _ := os.ReadFile(n.log)
		out := string(all[len(before):])
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		last := lines[len(lines)-1]
		h.hist.add("lpd", n.name, fmt.Sprintf("exited %d: %s", code, last))
		for _, bad := range []string{"goroutine ", "panic", "SIGBUS", "fatal error"} {
			if strings.Contains(out, bad) {
				violate("%s: lpd with a %s data dir crashed (%q in its output)", n.name, f.Kind, bad)
			}
		}
		if code != 1 || !strings.HasPrefix(last, "lpd: ") || !strings.Contains(last, want) {
			violate("%s: lpd with a %s data dir ended with status %d and last line %q; want 1 and a refusal naming %q", n.name, f.Kind, code, last, want)
		}
	case <-time.After(20 * time.Second):
		if n.server && f.Kind == kDataCorrupt {
			violate("%s: lpd started on a truncated raft.db", n.name)
		}
		if n.server && f.Kind == kDataLost {
			// Allowed only when no peer could be asked; the log says so.
			log, _ := os.ReadFile(n.log)
			if !strings.Contains(string(log[len(before):]), "cannot tell whether the cluster knows this node") {
				violate("%s: a voter started with an empty data dir while the cluster knew it", n.name)
			}
		}
		h.hist.add("lpd", n.name, "started with a "+f.Kind+" data dir (non-voter: catches up)")
		time.Sleep(f.For)
		return
	}
	time.Sleep(f.For)
	emptyDir(n.dataDir) // the operator moves it aside
	h.startLPD(n, "--rejoin-as-new")
}

// dropFrom makes node at drop every packet from the nodes from, in its
// input chain: real packet loss, invisible to the sender.
func (h *harness) dropFrom(at string, from ...string) {
	for _, f := range from {
		h.nft(at, "add", "rule", "inet", "lpf", "in", "ip", "saddr", h.nodes[f].ip, "drop")
	}
}

// healNet removes every partition and loss rule and the slow link.
func (h *harness) healNet() {
	for _, name := range h.order {
		h.nft(name, "flush", "chain", "inet", "lpf", "in")
		run("ip", "netns", "exec", h.nodes[name].ns, "tc", "qdisc", "del", "dev", "eth0", "root")
	}
}

func (h *harness) nft(node string, args ...string) {
	if err := run("ip", append([]string{"netns", "exec", h.nodes[node].ns, "nft"}, args...)...); err != nil {
		h.hist.add("harness-error", node, err.Error())
	}
}

func (h *harness) tc(node string, args ...string) {
	if err := run("ip", append([]string{"netns", "exec", h.nodes[node].ns, "tc"}, args...)...); err != nil {
		h.hist.add("harness-error", node, err.Error())
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return
			}
			return
		}
	}
}

// emptyDir removes what dir holds, keeping dir (it may be a mount point).
func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
