package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lp/cluster/api"
)

// startServers starts three real lpd servers with no targets (witnesses)
// on 127.0.0.1: enough for a raft cluster with state on disk.
func startServers(t *testing.T) *e2eCluster {
	t.Helper()
	buildFixtures(t)
	c := &e2eCluster{t: t, dir: t.TempDir(), procs: map[string]*lpdProc{}}
	var join string
	for _, name := range []string{"s1", "s2", "s3"} {
		// memberlist's own LAN timing: a leave or a rejoin must not
		// depend on lan-fast probes surviving a loaded machine.
		p, b := c.newLPD(name, "", "witness", true, [3]int{}, join, "--gossip-timing", "memberlist-lan")
		if join == "" {
			join = p.gossip
		}
		b.WriteString("bootstrap_expect: 3\n")
		c.startLPD(p, b.String())
	}
	c.logTailsOnFailure()
	c.waitFor(30*time.Second, "3 voters", func() bool { return c.voters("s1") == 3 })
	// Every server registered in the FSM: only a registered voter that
	// comes back empty has lost state (a server still starting may).
	c.waitFor(30*time.Second, "3 registered servers", func() bool {
		ms, err := c.client("s1").Members(context.Background())
		if err != nil {
			return false
		}
		k := 0
		for _, m := range ms {
			if m.Status != "unregistered" && m.Server {
				k++
			}
		}
		return k == 3
	})
	// Some entries to keep: every node registers and reports health.
	c.waitFor(30*time.Second, "a raft log of a few entries", func() bool {
		st, err := c.client("s3").Status(context.Background())
		return err == nil && st.AppliedIndex >= 4
	})
	return c
}

// voters counts the voters that node reports, -1 when it does not answer.
func (c *e2eCluster) voters(node string) int {
	ms, err := c.client(node).Members(context.Background())
	if err != nil {
		return -1
	}
	k := 0
	for _, m := range ms {
		if m.Suffrage == "Voter" && m.Gossip == "alive" {
			k++
		}
	}
	return k
}

// runRefused runs the lpd of node in the foreground and wants it to exit
// non-zero within d, its last line a refusal naming want, and nothing that
// looks like a crash anywhere in its output.
func (c *e2eCluster) runRefused(t testing.TB, node string, d time.Duration, want string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	args = append(append([]string{"--config", c.procs[node].config}, c.procs[node].args...), args...)
	cmd := exec.CommandContext(ctx, built.lpd, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("lpd %s still ran after %v; want a refusal naming %q; output:\n%s", node, d, want, out)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("lpd %s: %v; want exit status 1; output:\n%s", node, err, out)
	}
	for _, bad := range []string{"goroutine ", "panic", "SIGBUS", "fatal error", "unexpected fault"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Fatalf("lpd %s output has %q; want a one-line refusal:\n%s", node, bad, out)
		}
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "lpd: ") || !strings.Contains(last, want) {
		t.Fatalf("lpd %s last line %q; want \"lpd: ...%s...\"", node, last, want)
	}
	t.Logf("lpd %s refused: %s", node, last)
}

// boltHWM reads the high-water mark and page size from a bolt file's first
// meta page.
func boltHWM(t *testing.T, path string) (hwm, pageSize int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeBoltMeta(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return int64(m.hwm), int64(m.pageSize)
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	os.RemoveAll(dst)
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
}

// TestStorageFaults damages a killed server's data dir the ways disks and
// operators do and restarts the real lpd: each ends in a one-line refusal
// or in a node that rejoined with the cluster's state, never a crash.
func TestStorageFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three lpd processes")
	}
	c := startServers(t)
	victim := "s3"
	if c.leader() == victim {
		victim = "s2"
	}
	data := filepath.Join(c.dir, victim+".data")
	db := filepath.Join(data, "raft.db")
	c.kill(victim)
	pristine := filepath.Join(c.dir, "pristine")
	copyDir(t, data, pristine)
	hwm, pageSize := boltHWM(t, db)
	t.Logf("%s: raft.db of %d pages of %d bytes in use", victim, hwm, pageSize)
	restore := func() { copyDir(t, pristine, data) }
	refuseWithin := 30 * time.Second

	t.Run("truncated raft.db", func(t *testing.T) {
		restore()
		if err := os.Truncate(db, hwm*pageSize/2); err != nil {
			t.Fatal(err)
		}
		c.runRefused(t, victim, refuseWithin, "is truncated")
	})
	t.Run("truncated to less than a page", func(t *testing.T) {
		restore()
		if err := os.Truncate(db, 100); err != nil {
			t.Fatal(err)
		}
		c.runRefused(t, victim, refuseWithin, "raft store is damaged")
	})
	t.Run("corrupt header pages", func(t *testing.T) {
		restore()
		junk := make([]byte, 2*pageSize)
		fillRandom(rand.New(rand.NewPCG(1, 2)), junk)
		overwrite(t, db, 0, junk)
		c.runRefused(t, victim, refuseWithin, "raft store is damaged")
	})
	t.Run("one bad meta page falls back to the other", func(t *testing.T) {
		restore()
		overwrite(t, db, pageSize+16, []byte{0, 0, 0, 0}) // meta 1's magic
		if err := checkBoltFile(db); err != nil {
			t.Errorf("checkBoltFile with one good meta page: %v; want nil (bolt uses the other)", err)
		}
	})
	t.Run("damaged tree page", func(t *testing.T) {
		restore()
		// A page of the log whose header names another page: what a
		// misdirected write leaves.
		id := findTreePage(t, db)
		var hdr [8]byte
		binary.LittleEndian.PutUint64(hdr[:], uint64(id+1000))
		overwrite(t, db, id*pageSize, hdr[:])
		c.runRefused(t, victim, refuseWithin, "raft store is damaged")
	})
	t.Run("random bytes in the middle", func(t *testing.T) {
		// 16 KB of noise in the middle of the pages in use, at a few
		// seeds: either lpd refuses, or the noise hit free pages only and
		// the node rejoins with the cluster's state.
		for seed := range uint64(4) {
			restore()
			r := rand.New(rand.NewPCG(seed, 13))
			junk := make([]byte, 16<<10)
			fillRandom(r, junk)
			off := hwm*pageSize/2 - 8<<10 + int64(r.IntN(int(pageSize)))
			overwrite(t, db, max(off, 2*pageSize), junk)
			if err := checkBoltFile(db); err != nil {
				c.runRefused(t, victim, refuseWithin, "raft store is damaged")
				continue
			}
			t.Logf("seed %d: noise at %d hit no page in use; lpd must start and agree with the cluster", seed, off)
			c.start(victim)
			c.waitAlive3(victim)
			c.kill(victim)
		}
	})
	t.Run("a changed byte inside a log entry", func(t *testing.T) {
		// A byte flipped inside an entry's data leaves bolt's structure
		// and the entry's encoding intact: only lp's checksum seal on
		// each entry sees it. s1's API address is in its registration
		// entry; change one digit of every copy (free pages hold old
		// copies too).
		restore()
		b, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		addr := []byte(c.procs["s1"].api)
		n := 0
		for i := 0; ; {
			j := bytes.Index(b[i:], addr)
			if j < 0 {
				break
			}
			at := i + j + len(addr) - 1
			b[at] = '0' + (b[at]-'0'+1)%10
			n++
			i = at + 1
		}
		if n == 0 {
			t.Fatalf("%s holds no copy of %s", db, addr)
		}
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkBoltFile(db); err != nil {
			t.Fatalf("checkBoltFile: %v; want the bolt structure intact", err)
		}
		c.runRefused(t, victim, refuseWithin, "fails its checksum")
	})
	t.Run("deleted data_dir refuses", func(t *testing.T) {
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		c.runRefused(t, victim, refuseWithin, "raft state was lost")
		if got := c.voters(c.leader()); got != 2 {
			// The refusing node never answered raft: it is still
			// counted but down.
			t.Logf("alive voters after the refusal: %d", got)
		}
	})
	t.Run("rejoin as new restores from the cluster", func(t *testing.T) {
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		p := c.procs[victim]
		p.args = append(p.args, "--rejoin-as-new")
		c.start(victim)
		p.args = p.args[:len(p.args)-1]
		c.waitAlive3(victim)
		log, _ := os.ReadFile(p.log)
		if !bytes.Contains(log, []byte("joining again as a new member")) {
			t.Errorf("log of %s does not say it rejoined as new", victim)
		}
		// Restarted plainly it keeps its new state.
		c.kill(victim)
		c.start(victim)
		c.waitAlive3(victim)
	})
	t.Run("damaged raft.db: move aside and rejoin as new", func(t *testing.T) {
		c.kill(victim)
		if err := os.Truncate(db, 100); err != nil {
			t.Fatal(err)
		}
		c.runRefused(t, victim, refuseWithin, "--rejoin-as-new")
		if err := os.Rename(data, data+".damaged"); err != nil {
			t.Fatal(err)
		}
		p := c.procs[victim]
		p.args = append(p.args, "--rejoin-as-new")
		c.start(victim)
		p.args = p.args[:len(p.args)-1]
		c.waitAlive3(victim)
	})
}

// waitAlive3 waits until node is an alive voter whose replica has caught up
// with the leader's: same raft commit as the leader's last index at the
// time of asking.
func (c *e2eCluster) waitAlive3(node string) {
	c.t.Helper()
	c.waitFor(60*time.Second, node+" an alive voter again, caught up", func() bool {
		leader := ""
		for _, n := range c.order {
			if !c.procs[n].running {
				continue
			}
			st, err := c.client(n).Status(context.Background())
			if err == nil && st.Leader != "" {
				leader = st.Leader
				break
			}
		}
		if leader == "" || c.voters(leader) != 3 {
			return false
		}
		ls, err1 := c.client(leader).Status(context.Background())
		ns, err2 := c.client(node).Status(context.Background())
		if err1 != nil || err2 != nil {
			return false
		}
		return ns.LastIndex >= ls.CommitIndex && ns.Leader == leader
	})
	c.waitFor(10*time.Second, "the same plans on "+node, func() bool {
		a, err1 := c.client(node).Plans(context.Background())
		b, err2 := c.client(c.leader()).Plans(context.Background())
		return err1 == nil && err2 == nil && slices.EqualFunc(a, b, func(x, y api.PlanDetail) bool { return x.Plan.ID == y.Plan.ID && x.Plan.State == y.Plan.State })
	})
}

// findTreePage returns the first page the raft log's bucket uses.
func findTreePage(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	c, err := checkBolt(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for id, owner := range c.seen {
		if owner == `bucket "logs"` {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		// A small log is stored inline in its parent page: there is no
		// page of its own to damage in this file.
		t.Skipf("%s: the logs bucket is inline (no page of its own): %v", path, c.seen)
	}
	return int64(slices.Min(ids))
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func fillRandom(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}
