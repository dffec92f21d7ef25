package cluster

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lp/fsm"
)

var threeServers = []nodeSpec{
	{name: "w", role: "witness", server: true},
	{name: "a1", pair: "pair-1", role: "active", server: true},
	{name: "b1", pair: "pair-1", role: "standby", server: true},
}

// moduleFile is the path of a module in a node's store.
func (tc *testCluster) moduleFile(node, sum string) string {
	return filepath.Join(tc.cfgs[node].Node.DataDir, "patches", sum+".so")
}

// waitModuleFile waits until node's store holds the module, intact.
func (tc *testCluster) waitModuleFile(node, sum string, want []byte) {
	tc.t.Helper()
	tc.waitFor(time.Minute, "module "+sum[:16]+" in "+node+"'s store", func() bool {
		got, err := os.ReadFile(tc.moduleFile(node, sum))
		return err == nil && bytes.Equal(got, want)
	})
}

// largestEntry returns the size of the largest raft log entry node holds
// and that of its submit_plan entries.
func largestEntry(t *testing.T, n *Node) (largest, submit int) {
	t.Helper()
	first, err := n.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := n.logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			t.Fatalf("reading log entry %d: %v", i, err)
		}
		largest = max(largest, len(l.Data))
		if bytes.Contains(l.Data, []byte(`"type":"submit_plan"`)) {
			submit = max(submit, len(l.Data))
		}
	}
	return largest, submit
}

// TestSubmitThroughFollowerKeepsModuleOutOfLog: a 1 MiB module submitted
// through a follower's API becomes one small raft entry; every node then
// holds the bytes in its store, fetched by sha256.
func TestSubmitThroughFollowerKeepsModuleOutOfLog(t *testing.T) {
	buildFixtures(t)
	mod, err := os.ReadFile(built.fix)
	if err != nil {
		t.Fatal(err)
	}
	// A real module padded to 1 MiB (bytes past its sections are ignored).
	mod = append(mod, make([]byte, 1<<20-len(mod))...)
	tc := startTestCluster(t, threeServers, nil)
	tc.registered()
	l := tc.leader()
	var follower *Node
	for _, n := range tc.nodes {
		if n != l {
			follower = n
			break
		}
	}
	status, msg := post(t, follower.APIAddr(), "/v1/plans", submitBody(t, "name: big\npatch: fix.so\ntarget: svc\ntrial: 1m\n", mod, ""))
	if status != http.StatusCreated {
		t.Fatalf("submit through follower %s = %d %q; want 201", follower.Name(), status, msg)
	}
	sum := hexSum(mod)
	s := tc.leader().State()
	if b := s.Blobs[sum]; b.Size != len(mod) || b.Data != nil || len(s.Plans) != 1 {
		t.Fatalf("state after submit: blob %+v, %d plans; want the module's reference and one plan", b, len(s.Plans))
	}
	for name := range tc.nodes {
		tc.waitModuleFile(name, sum, mod)
	}
	for name, n := range tc.nodes {
		largest, submit := largestEntry(t, n)
		if submit == 0 || submit >= 64<<10 || largest >= 64<<10 {
			t.Errorf("%s: submit entry %d bytes, largest entry %d bytes; want one submit entry, all < 64 KiB", name, submit, largest)
		}
		t.Logf("%s: submit entry %d bytes, largest entry %d bytes", name, submit, largest)
	}
}

// TestModuleFetchedByLateJoinerAndAgain: a node that joins after the plan
// fetches the module by sha256; a node whose file went missing fetches it
// again; a damaged file is moved aside and fetched again when it must be
// loaded.
func TestModuleFetchedByLateJoinerAndAgain(t *testing.T) {
	tc := startTestCluster(t, threeServers, nil)
	tc.registered()
	id := tc.submit("fix-late", 0, nil)
	tc.waitPlan(id, fsm.PlanCompleted, time.Minute)
	sum := tc.leader().State().Plans[id].Spec.PatchSHA256
	want := []byte("fix-late")
	for _, name := range []string{"w", "a1", "b1"} {
		tc.waitModuleFile(name, sum, want)
	}

	// A node that joins later (a non-voter of another pair).
	cfg := tc.cfgs["a1"]
	cfg.Node.Node, cfg.Node.Pair, cfg.Node.Server, cfg.Node.BootstrapExpect = "late", "pair-2", false, 0
	cfg.Node.DataDir = filepath.Join(t.TempDir(), "late")
	cfg.Node.Join = []string{tc.nodes["w"].GossipAddr()}
	cfg.Logger = testLogger(t).With("n", "late")
	tc.start("late", cfg)
	tc.waitModuleFile("late", sum, want)

	// Missing: fetched again.
	if err := os.Remove(tc.moduleFile("b1", sum)); err != nil {
		t.Fatal(err)
	}
	tc.waitModuleFile("b1", sum, want)

	// Damaged: moved aside and fetched again when it is read to be loaded.
	b1 := tc.nodes["b1"]
	if err := os.WriteFile(tc.moduleFile("b1", sum), []byte("fix-LATE"), 0o600); err != nil {
		t.Fatal(err)
	}
	blob := b1.State().Blobs[sum]
	path, data, err := b1.module(t.Context(), blob)
	if err != nil || !bytes.Equal(data, want) || path != tc.moduleFile("b1", sum) {
		t.Fatalf("module() over a damaged file = %s %q, %v; want the module fetched again", path, data, err)
	}
	if aside, _ := os.ReadFile(tc.moduleFile("b1", sum) + ".corrupt"); string(aside) != "fix-LATE" {
		t.Errorf("the damaged file was not kept aside: %q", aside)
	}
}

// TestFetchRefusesWrongBytes: bytes that do not hash to the module's
// sha256, or have another size, are refused and not stored; a node
// without the module answers 404, a malformed sha256 400.
func TestFetchRefusesWrongBytes(t *testing.T) {
	tc := startTestCluster(t, []nodeSpec{{name: "solo", role: "witness", server: true}}, nil)
	tc.registered()
	n := tc.nodes["solo"]
	good := []byte("the real module")
	blob := fsm.Blob{SHA256: hexSum(good), Size: len(good), PatchID: "fix"}
	for name, body := range map[string][]byte{
		"same size, other bytes": []byte("the fake module"),
		"longer":                 append(bytes.Clone(good), '!'),
		"shorter":                good[:5],
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
		_, err := n.fetchFrom(t.Context(), strings.TrimPrefix(srv.URL, "http://"), blob)
		srv.Close()
		if err == nil {
			t.Errorf("%s: fetch accepted bytes %q", name, body)
		}
		if name == "same size, other bytes" && !errors.Is(err, ErrHashMismatch) {
			t.Errorf("%s: err = %v; want ErrHashMismatch", name, err)
		}
	}
	if n.blobs.has(blob.SHA256) {
		t.Errorf("refused bytes were stored")
	}
	if status, msg := get(t, n.APIAddr(), "/v1/internal/modules/"+blob.SHA256); status != http.StatusNotFound || !strings.Contains(msg, "no intact copy") {
		t.Errorf("GET of a module solo lacks = %d %q; want 404", status, msg)
	}
	if status, _ := get(t, n.APIAddr(), "/v1/internal/modules/..%2Fraft.db"); status != http.StatusBadRequest {
		t.Errorf("GET of a malformed sha256 = %d; want 400", status)
	}
	if err := n.blobs.put(blob.SHA256, good); err != nil {
		t.Fatal(err)
	}
	data, err := n.fetchFrom(t.Context(), n.APIAddr(), blob)
	if err != nil || !bytes.Equal(data, good) {
		t.Errorf("fetch from a node that has it = %q, %v; want the module", data, err)
	}
}

// TestLegacyPutBlobGoesToStore: a log or snapshot written while module
// bytes travelled in the raft log still loads; the bytes go to the
// node's store and the state keeps the reference.
func TestLegacyPutBlobGoesToStore(t *testing.T) {
	dir := t.TempDir()
	f := &notifyingFSM{FSM: fsm.New(), changed: newSignal(), blobs: blobStore{dir: dir}, log: testLogger(t)}
	old := fsm.NewPutBlob("fix-old", []byte("old module bytes"))
	data, err := fsm.Encode(time.Now(), old)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := fsm.ResultOf(f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})); err != nil || res.BlobData != nil {
		t.Fatalf("Apply(legacy put_blob) = %+v, %v; want applied, the bytes handed over", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, old.SHA256+".so")); !bytes.Equal(got, old.Data) {
		t.Errorf("store holds %q; want the legacy entry's bytes", got)
	}
	if b := f.State().Blobs[old.SHA256]; b.Data != nil || b.Size != len(old.Data) {
		t.Errorf("state blob = %+v; want a reference without bytes", b)
	}

	// A snapshot with blob data (fsm/testdata, written before).
	snap, err := os.Open(filepath.Join("..", "fsm", "testdata", "legacy-blob-data.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	f2 := &notifyingFSM{FSM: fsm.New(), changed: newSignal(), blobs: blobStore{dir: dir2}, log: testLogger(t)}
	if err := f2.Restore(snap); err != nil {
		t.Fatalf("Restore(legacy snapshot) = %v", err)
	}
	s := f2.State()
	if len(s.Blobs) != 2 {
		t.Fatalf("restored %d blobs; want 2", len(s.Blobs))
	}
	for sum, b := range s.Blobs {
		if b.Data != nil {
			t.Errorf("blob %s kept its bytes in the state", b.PatchID)
		}
		if _, got, err := (blobStore{dir: dir2}).read(sum); err != nil || len(got) != b.Size {
			t.Errorf("store copy of %s: %d bytes, %v; want %d", b.PatchID, len(got), err, b.Size)
		}
	}
}
