package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"lp/cluster/api"
	"lp/fsm"
	"lp/heartbeat"
)

// Module bytes travel outside the raft log. The node that takes a
// submission writes the module into its store (blobs.go) before it commits
// the plan, whose entry carries only the module's sha256, size and
// signature. Every other node fetches the bytes by sha256 over the
// authenticated node-to-node API (GET /v1/internal/modules/SHA256): from
// the leader first, then from every other live node in random order (a
// node that does not have it answers 404, a busy one 503), checks size,
// sha256 and, with trusted_keys, a signature, and keeps them in its own
// store. Every node keeps every module the state references (so the bytes
// are as durable as the log), fetching in the background as soon as the
// state names one (moduleLoop) and at once when it must load one it lacks;
// a missing or damaged file is fetched again. Files the state no longer
// references are removed (agent.gcBlobs).

// maxModuleServes bounds the fetches a node serves at once; more are
// answered 503 and the fetching node tries another node.
const maxModuleServes = 4

// moduleFetchTimeout bounds one fetch of one module from one node.
const moduleFetchTimeout = 2 * time.Minute

// fetcher is a node's module fetching state.
type fetcher struct {
	mu      sync.Mutex // one fetch at a time
	serving chan struct{}

	failMu sync.Mutex
	failed map[string]time.Time // sha256 -> when its last fetch failed
}

func newFetcher() *fetcher {
	return &fetcher{serving: make(chan struct{}, maxModuleServes), failed: map[string]time.Time{}}
}

// module returns the path and bytes of a module the state references,
// fetching it first when this node's store lacks it (or its file is
// damaged).
func (n *Node) module(ctx context.Context, b fsm.Blob) (string, []byte, error) {
	p, data, err := n.blobs.read(b.SHA256)
	if !errors.Is(err, errMissing) {
		return p, data, err
	}
	if errors.Is(err, ErrHashMismatch) {
		n.log.Warn("module file damaged; fetching it again", "patch", b.PatchID, "err", err)
	}
	if err := n.fetchModule(ctx, b); err != nil {
		return "", nil, err
	}
	return n.blobs.read(b.SHA256)
}

// fetchModule fetches a module into this node's store from a node that has
// it (see the top of this file).
func (n *Node) fetchModule(ctx context.Context, b fsm.Blob) error {
	n.fetch.mu.Lock()
	defer n.fetch.mu.Unlock()
	if n.blobs.has(b.SHA256) {
		return nil // fetched meanwhile
	}
	var tried []string
	for _, src := range n.moduleSources() {
		data, err := n.fetchFrom(ctx, src.addr, b)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", src.name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		// With trusted_keys, a module this node would refuse to load
		// is not kept (the same check again at load, agent.go).
		err = n.verifyLoad(n.blobs.path(b.SHA256), data, b.Signatures)
		if err == nil {
			err = n.blobs.put(b.SHA256, data)
		}
		if err != nil {
			n.fetch.failMu.Lock()
			n.fetch.failed[b.SHA256] = time.Now()
			n.fetch.failMu.Unlock()
			return err
		}
		n.log.Info("fetched module", "patch", b.PatchID, "sha256", b.SHA256[:16], "bytes", len(data), "from", src.name)
		n.fetch.failMu.Lock()
		delete(n.fetch.failed, b.SHA256)
		n.fetch.failMu.Unlock()
		return nil
	}
	n.fetch.failMu.Lock()
	n.fetch.failed[b.SHA256] = time.Now()
	n.fetch.failMu.Unlock()
	if len(tried) == 0 {
		return fmt.Errorf("module %s (%s): %w, and no other node is reachable to fetch it from", b.PatchID, b.SHA256[:16], errMissing)
	}
	return fmt.Errorf("module %s (%s): %w; fetching it failed: %s", b.PatchID, b.SHA256[:16], errMissing, fsm.ClipLine(strings.Join(tried, "; "), 600))
}

type moduleSource struct{ name, addr string }

// moduleSources lists the nodes to fetch from: the leader, then every
// other live node with an API, in random order.
func (n *Node) moduleSources() []moduleSource {
	var out []moduleSource
	leader, addr := n.leaderAPI()
	if leader != "" && leader != n.name && addr != "" {
		out = append(out, moduleSource{leader, addr})
	}
	var rest []moduleSource
	for _, m := range n.ml.Members() {
		if m.Name != n.name && m.Name != leader && m.State == heartbeat.StateAlive && m.Meta.API != "" {
			rest = append(rest, moduleSource{m.Name, m.Meta.API})
		}
	}
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	return append(out, rest...)
}

// fetchFrom asks one node for a module's bytes and checks their size and
// sha256.
func (n *Node) fetchFrom(ctx context.Context, addr string, b fsm.Blob) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, moduleFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.scheme()+"://"+addr+api.PathModules+"/"+b.SHA256, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: n.clientTransport}).Do(req)
	if err != nil {
		return nil, errors.New(reasonOf(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(b.Size)+1))
	if err != nil {
		return nil, errors.New(reasonOf(err))
	}
	if len(data) != b.Size {
		return nil, fmt.Errorf("sent %d bytes; the module has %d", len(data), b.Size)
	}
	if h := hexSum(data); h != b.SHA256 {
		return nil, fmt.Errorf("sent bytes with sha256 %s (%w)", h[:16], ErrHashMismatch)
	}
	return data, nil
}

func reasonOf(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Msg
	}
	return err.Error()
}

// handleModule serves a module's bytes from this node's store to another
// node (node identity only): 404 when this node does not have it (or its
// file is damaged), 503 when it serves maxModuleServes fetches already.
func (n *Node) handleModule(w http.ResponseWriter, r *http.Request) {
	sum := r.PathValue("sha256")
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a module's sha256 (64 lowercase hex digits)", fsm.ClipLine(sum, 80)))
		return
	}
	select {
	case n.fetch.serving <- struct{}{}:
		defer func() { <-n.fetch.serving }()
	default:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s serves %d module fetches already; try another node", n.name, maxModuleServes))
		return
	}
	_, data, err := n.blobs.read(sum)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errMissing) {
			status = http.StatusNotFound
		}
		writeError(w, status, fmt.Sprintf("%s has no intact copy of module %s", n.name, sum[:16]))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// moduleLoop keeps this node's store holding every module the state
// references: it checks each file's sha256 once (a file damaged while lpd
// was down is moved aside), fetches a module as soon as the state names
// one, and again after a file went missing; a failed fetch is retried
// after RetryBackoff. A file damaged later is caught when it is read to
// be loaded, and fetched again then.
func (n *Node) moduleLoop() {
	t := time.NewTicker(max(n.cfg.AgentInterval, time.Second))
	defer t.Stop()
	verified := map[string]bool{}
	for {
		wake := n.changed.C()
		n.fetchMissing(verified)
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}

func (n *Node) fetchMissing(verified map[string]bool) {
	var want []fsm.Blob
	n.fsm.View(func(s *fsm.State) {
		for _, b := range s.Blobs {
			want = append(want, b)
		}
	})
	slices.SortFunc(want, func(a, b fsm.Blob) int { return strings.Compare(a.SHA256, b.SHA256) })
	for _, b := range want {
		if n.ctx.Err() != nil {
			return
		}
		if !verified[b.SHA256] && n.blobs.has(b.SHA256) {
			if _, _, err := n.blobs.read(b.SHA256); err != nil {
				n.log.Warn("checking module file", "patch", b.PatchID, "err", err)
			} else {
				verified[b.SHA256] = true
			}
		}
		if n.blobs.has(b.SHA256) {
			continue
		}
		delete(verified, b.SHA256)
		n.fetch.failMu.Lock()
		last, failed := n.fetch.failed[b.SHA256]
		n.fetch.failMu.Unlock()
		if failed && time.Since(last) < n.cfg.RetryBackoff {
			continue
		}
		if err := n.fetchModule(n.ctx, b); err != nil && n.ctx.Err() == nil {
			n.log.Warn("fetching module", "patch", b.PatchID, "err", err)
		} else if err == nil {
			verified[b.SHA256] = true // fetched bytes are checked
		}
	}
	for sum := range verified {
		if !slices.ContainsFunc(want, func(b fsm.Blob) bool { return b.SHA256 == sum }) {
			delete(verified, sum)
		}
	}
}
