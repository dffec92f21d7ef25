package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lp/config"
	"lp/fsm"
)

func TestBlobStoreGC(t *testing.T) {
	dir := t.TempDir()
	b := blobStore{dir: dir}
	keep := fsm.NewPutBlob("keep", []byte("keep"))
	drop := fsm.NewPutBlob("drop", []byte("drop"))
	for _, p := range []*fsm.PutBlob{keep, drop} {
		if err := b.put(p.SHA256, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(dir, "notes.txt") // not ours: left alone
	tmp := filepath.Join(dir, drop.SHA256+".123.tmp")
	for _, f := range []string{other, tmp} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Within the grace nothing goes: a module is written before the entry
	// that references it commits.
	if n, err := b.gc(func(sum string) bool { return sum == keep.SHA256 }, time.Hour); err != nil || n != 0 {
		t.Fatalf("gc within the grace = %d, %v; want 0, nil", n, err)
	}
	n, err := b.gc(func(sum string) bool { return sum == keep.SHA256 }, 0)
	if err != nil || n != 1 {
		t.Fatalf("gc = %d, %v; want 1, nil", n, err)
	}
	for f, want := range map[string]bool{
		filepath.Join(dir, keep.SHA256+".so"): true, filepath.Join(dir, drop.SHA256+".so"): false, other: true, tmp: false,
	} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("%s exists = %v; want %v", filepath.Base(f), err == nil, want)
		}
	}
	if n, err := (blobStore{dir: filepath.Join(dir, "none")}).gc(func(string) bool { return false }, 0); n != 0 || err != nil {
		t.Errorf("gc of a missing dir = %d, %v; want 0, nil", n, err)
	}
}

func TestConfigValidatesRetention(t *testing.T) {
	c := Default()
	c.Node.Node, c.Node.Bind, c.InmemStore, c.Patcher = "n", "127.0.0.1", true, newFakePatcher()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(default) = %v", err)
	}
	c.Retention.Plans = -1
	if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Retention.Plans") {
		t.Errorf("Validate(Retention.Plans -1) = %v; want it named", err)
	}
}

// TestPruneCollectsModules: a rolled back plan's module is collected from
// the replicated state by the leader's Prune, then its file from the data
// dir of the node that applied it; terminal plans beyond the count go.
func TestPruneCollectsModules(t *testing.T) {
	tc := startTestCluster(t, []nodeSpec{
		{name: "w", role: "witness", server: true},
		{name: "a1", pair: "pair-1", role: "active", server: true},
		{name: "b1", pair: "pair-1", role: "standby", server: true},
	}, func(c *Config) {
		c.Retention = fsm.Retention{History: 1000, Plans: 1, BlobGrace: time.Second}
		c.PruneInterval = 50 * time.Millisecond
	})
	tc.registered()
	var sums []string
	for _, name := range []string{"fix-a", "fix-b"} {
		id := tc.submit(name, time.Hour, func(s *fsm.PlanSpec) { s.ProgressDeadline = 0 })
		sums = append(sums, tc.leader().State().Plans[id].Spec.PatchSHA256)
		tc.waitFor(time.Minute, "plan "+id+" in standby trial", func() bool {
			return tc.leader().State().Plans[id].Phase == fsm.PhaseStandbyTrial
		})
		file := filepath.Join(tc.cfgs["b1"].Node.DataDir, "patches", sums[len(sums)-1]+".so")
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("module file on the patched standby: %v", err)
		}
		if _, err := tc.leader().apply(&fsm.RollbackPlan{Plan: id, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		tc.waitPlan(id, fsm.PlanRolledBack, time.Minute)
	}
	tc.waitFor(time.Minute, "modules and their files collected, one plan kept", func() bool {
		for _, name := range []string{"w", "a1", "b1"} {
			s := tc.nodes[name].State()
			if len(s.Blobs) != 0 || len(s.Plans) != 1 {
				return false
			}
		}
		for _, sum := range sums {
			if _, err := os.Stat(filepath.Join(tc.cfgs["b1"].Node.DataDir, "patches", sum+".so")); err == nil {
				return false
			}
		}
		return true
	})
	if _, ok := tc.leader().State().Plans["p000002"]; !ok {
		t.Errorf("the newest plan was pruned; want it kept")
	}
}

// TestFromNodeRaftAndRetention: lpd.yaml's raft: and retention: reach the
// node's Config; a config.Node without them keeps the defaults.
func TestFromNodeRaftAndRetention(t *testing.T) {
	n := config.DefaultNode()
	n.Raft.HeartbeatTimeout, n.Raft.ElectionTimeout, n.Raft.SnapshotThreshold = 2*time.Second, 3*time.Second, 100
	n.Retention.Plans = 7
	c := FromNode(&n)
	if c.HeartbeatTimeout != 2*time.Second || c.ElectionTimeout != 3*time.Second || c.SnapshotThreshold != 100 ||
		c.LeaderLeaseTimeout != n.Raft.LeaderLeaseTimeout || c.TrailingLogs != uint64(n.Raft.TrailingLogs) {
		t.Errorf("FromNode raft = %v %v %v %v %v", c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.SnapshotThreshold, c.TrailingLogs)
	}
	if c.Retention.Plans != 7 || c.Retention.History != n.Retention.History || c.Retention.BlobGrace != DefaultRetention().BlobGrace {
		t.Errorf("FromNode retention = %+v", c.Retention)
	}
	d, def := FromNode(&config.Node{}), Default()
	if d.HeartbeatTimeout != def.HeartbeatTimeout || d.SnapshotThreshold != def.SnapshotThreshold || d.Retention != def.Retention {
		t.Errorf("FromNode(zero node) = %v %v %+v; want the defaults", d.HeartbeatTimeout, d.SnapshotThreshold, d.Retention)
	}
	// config's defaults are cluster's defaults.
	dn := config.DefaultNode()
	if x := FromNode(&dn); x.HeartbeatTimeout != def.HeartbeatTimeout || x.ElectionTimeout != def.ElectionTimeout ||
		x.LeaderLeaseTimeout != def.LeaderLeaseTimeout || x.CommitTimeout != def.CommitTimeout ||
		x.SnapshotThreshold != def.SnapshotThreshold || x.TrailingLogs != def.TrailingLogs || x.Retention != def.Retention {
		t.Errorf("FromNode(DefaultNode) differs from Default")
	}
}
