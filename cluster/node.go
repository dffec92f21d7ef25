package cluster

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"lp/config"
	"lp/fsm"
	"lp/heartbeat"
	"lp/internal/auth"
)

// Node is one running lpd: raft member, gossip member, API server, agent
// and, while it leads, orchestrator.
type Node struct {
	cfg  Config
	name string
	log  *slog.Logger

	fsm     *fsm.FSM
	changed *signal
	raft    *raft.Raft
	trans   raft.Transport
	closers []io.Closer // stores and transport, closed last

	// Opened by openRaft, used by runRaft.
	raftConf *raft.Config
	logs     raft.LogStore
	stable   raft.StableStore
	snaps    raft.SnapshotStore

	ml      *heartbeat.Membership
	checker *heartbeat.Checker // node-level health

	apiLn   net.Listener
	httpSrv *http.Server
	apiAddr string

	raftAddr string
	blobs    blobStore // module bytes, content-addressed (blobs.go)
	fetch    *fetcher  // fetching them from other nodes (fetch.go)

	trials *trialFailures // reported to this node while it leads

	metrics *metrics // GET /metrics; see metrics.go

	// tls is the node's TLS material (nil without tls: in lpd.yaml);
	// tokens the configured bearer tokens (see authz.go).
	tls    *auth.NodeTLS
	tokens *auth.Tokens
	// clientTransport carries this node's own calls to APIs (forwarding,
	// agent reports, status probes), with its node certificate.
	clientTransport *http.Transport
	users           userNames

	// trusted are the keys of trusted_keys (signatures.go); empty: modules
	// need no signature.
	trusted []ed25519.PublicKey

	// memberEvents is set by every gossip event, so that the leader
	// records a member's change in the FSM at once.
	memberEvents atomic.Bool
	// localIndex counts the changes of members and status that raft does
	// not carry (gossip events, leader changes): see membersIndex.
	localIndex atomic.Uint64

	metaMu   sync.Mutex
	meta     heartbeat.Meta
	metaKick chan struct{} // metaLoop publishes meta when kicked
	// commitKick: an entry was committed; commitLoop tells the followers
	// at once (see commitLoop).
	commitKick chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopping     atomic.Bool // set by stop: raft's logs are muted
	shutdownOnce sync.Once
	shutdownErr  error
}

// Start starts a node: raft, gossip, health checks, the API and the agent.
// On error everything started so far is stopped again.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if (cfg.Gossip == heartbeat.Timing{}) {
		cfg.Gossip = heartbeat.LANFast()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg: cfg, name: cfg.Node.Node, log: cfg.Logger.With("node", cfg.Node.Node),
		fsm: fsm.New(), changed: newSignal(), trials: newTrialFailures(), metaKick: make(chan struct{}, 1),
		commitKick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
	}
	n.blobs, n.fetch = blobStore{dir: filepath.Join(cfg.Node.DataDir, "patches")}, newFetcher()
	n.metrics = newMetrics(n)
	defer func() {
		if err != nil {
			n.stop()
		}
	}()
	if err := n.loadSecurity(); err != nil {
		return nil, err
	}
	if err := n.loadTrustedKeys(); err != nil {
		return nil, err
	}
	if !cfg.InmemStore {
		if err := os.MkdirAll(cfg.Node.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating data dir: %w", err)
		}
	}
	// The API listener first: its address goes into gossip metadata.
	n.apiLn, err = net.Listen("tcp", net.JoinHostPort(cfg.Node.Bind, strconv.Itoa(cfg.APIPort)))
	if err != nil {
		return nil, fmt.Errorf("listening for the api: %w", err)
	}
	n.apiAddr = n.apiLn.Addr().String()
	n.apiLn = n.apiListener(n.apiLn)
	fresh, err := n.openRaft()
	if err != nil {
		return nil, err
	}
	if err := n.startHealth(); err != nil {
		return nil, err
	}
	// The role is gossiped only once the replica says it (publishRole):
	// the config's role is only the node's first wish, and a node that
	// restarts with an empty replica must not announce a second active
	// to the members view while it catches up.
	n.meta = heartbeat.Meta{
		Pair: cfg.Node.Pair, Server: cfg.Node.Server,
		Health: n.healthSummary().State, Version: cfg.Version, API: n.apiAddr, Raft: n.raftAddr,
	}
	sum := n.healthSummary()
	n.meta.FailingCheck, n.meta.Output = sum.Failing, sum.Output
	if err := n.startGossip(); err != nil {
		return nil, err
	}
	// Raft runs only once the node knows that it is not an old voter
	// whose state was lost: until then its transport queues the leader's
	// requests unanswered, so a node with an empty log never counts
	// towards a commit under the identity of one that had it.
	if fresh && !cfg.InmemStore {
		if err := n.checkIdentity(); err != nil {
			return nil, err
		}
	}
	if err := n.runRaft(); err != nil {
		return nil, err
	}
	n.httpSrv = &http.Server{Handler: n.routes(), ReadHeaderTimeout: 5 * time.Second, ConnContext: n.connContext,
		ErrorLog: slog.NewLogLogger(n.log.With("part", "api").Handler(), slog.LevelWarn)}
	n.goRun(func() {
		if err := n.httpSrv.Serve(n.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server stopped", "err", err)
		}
	})
	n.goRun(n.gossipLoop)
	n.goRun(n.healthLoop)
	n.goRun(n.metaLoop)
	n.goRun(n.leaderLoop)
	n.goRun(n.agentLoop)
	n.goRun(n.moduleLoop)
	n.goRun(n.commitLoop)
	if cfg.Node.Server && cfg.Node.BootstrapExpect > 0 {
		n.goRun(n.bootstrapLoop)
	}
	n.log.Info("node started", "api", n.apiAddr, "raft", n.raftAddr, "gossip", n.ml.Addr())
	return n, nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// APIAddr returns the host:port the API listens on.
func (n *Node) APIAddr() string { return n.apiAddr }

// RaftAddr returns the raft transport's address.
func (n *Node) RaftAddr() string { return n.raftAddr }

// GossipAddr returns the gossip address.
func (n *Node) GossipAddr() string { return n.ml.Addr() }

// State returns a copy of the node's FSM replica.
func (n *Node) State() *fsm.State { return n.fsm.State() }

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

func (n *Node) startGossip() (err error) {
	n.ml, err = heartbeat.Start(heartbeat.Config{
		Name: n.name, BindAddr: n.cfg.Node.Bind, BindPort: n.cfg.GossipPort,
		Join: n.cfg.Node.Join, Meta: n.meta, SecretKey: n.cfg.Node.GossipKey,
		Timing: n.cfg.Gossip, Logger: n.log.With("part", "gossip"),
	})
	if err != nil {
		return fmt.Errorf("starting gossip: %w", err)
	}
	return nil
}

// storeRecovery is what an operator does about a damaged raft store.
const storeRecovery = "restore the data dir from a backup, or move it aside and start lpd once with --rejoin-as-new to rebuild this node from the cluster"

// openRaft opens raft's stores, checked, and its transport; fresh says that
// the stores hold no state yet. runRaft starts raft on them.
func (n *Node) openRaft() (fresh bool, err error) {
	c := n.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.name)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, DisableTime: true,
		Output: slogWriter{log: n.log.With("part", "raft"), mute: &n.stopping}})
	rc.Logger = hl

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if c.InmemStore {
		s := raft.NewInmemStore()
		logs, stable, snaps = s, s, raft.NewInmemSnapshotStore()
	} else {
		path := filepath.Join(c.Node.DataDir, "raft.db")
		// Checked before bolt maps it: bolt faults (SIGBUS) on a
		// truncated file and panics on a damaged page.
		if err := checkBoltFile(path); err != nil {
			return false, fmt.Errorf("%w (%s)", err, storeRecovery)
		}
		bs, err := raftboltdb.NewBoltStore(path)
		if err != nil {
			return false, fmt.Errorf("%w: opening %s: %v (%s)", ErrStoreDamaged, path, err, storeRecovery)
		}
		n.closers = append(n.closers, bs)
		sealed, err := newCRCLogStore(bs, bs)
		if err != nil {
			return false, fmt.Errorf("%s: %w (%s)", path, err, storeRecovery)
		}
		if err := checkLogs(sealed); err != nil {
			return false, fmt.Errorf("%s: %w (%s)", path, err, storeRecovery)
		}
		fs, err := raft.NewFileSnapshotStoreWithLogger(c.Node.DataDir, 2, hl)
		if err != nil {
			return false, fmt.Errorf("opening snapshot store: %w", err)
		}
		// The leader reads each new entry once for every follower it sends
		// it to: recent entries come from memory, not from bolt (a cache
		// keeps only what the store took, and drops all on a deletion).
		cached, err := raft.NewLogCache(logCacheEntries, sealed)
		if err != nil {
			return false, err
		}
		logs, stable, snaps = cached, bs, fs
	}
	fresh, err = raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return false, fmt.Errorf("%w: reading raft state: %v (%s)", ErrStoreDamaged, err, storeRecovery)
	}
	fresh = !fresh
	n.logs, n.stable, n.snaps = logs, stable, snaps
	if c.RaftTransport != nil {
		n.trans = c.RaftTransport
	} else if n.tls != nil {
		st, err := newTLSStream(net.JoinHostPort(c.Node.Bind, strconv.Itoa(c.RaftPort)), n.tls.RaftServer(), n.tls.NodeClient())
		if err != nil {
			return false, fmt.Errorf("listening for raft: %w", err)
		}
		t := raft.NewNetworkTransportWithLogger(st, 3, 5*time.Second, hl)
		n.trans = t
		n.closers = append([]io.Closer{t}, n.closers...)
	} else {
		t, err := raft.NewTCPTransportWithLogger(net.JoinHostPort(c.Node.Bind, strconv.Itoa(c.RaftPort)), nil, 3, 5*time.Second, hl)
		if err != nil {
			return false, fmt.Errorf("listening for raft: %w", err)
		}
		n.trans = t
		n.closers = append([]io.Closer{t}, n.closers...)
	}
	n.raftAddr = string(n.trans.LocalAddr())
	n.raftConf = rc
	return fresh, nil
}

func (n *Node) runRaft() error {
	r, err := raft.NewRaft(n.raftConf, &notifyingFSM{FSM: n.fsm, changed: n.changed, blobs: n.blobs, log: n.log}, n.logs, n.stable, n.snaps, n.trans)
	if err != nil {
		return fmt.Errorf("starting raft: %w (%s)", err, storeRecovery)
	}
	n.raft = r
	// Leader changes move the index of status and members (blocking.go).
	leaders := make(chan raft.Observation, 8)
	r.RegisterObserver(raft.NewObserver(leaders, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	n.goRun(func() {
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-leaders:
				n.bumpLocal()
			}
		}
	})
	return nil
}

// Shutdown leaves the cluster gracefully (a leader first hands leadership
// over, then the node tells gossip it leaves, so the leader removes it from
// the raft configuration instead of waiting for it) and stops everything.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		if n.raft != nil && n.raft.State() == raft.Leader && n.otherVoters() > 0 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer failed", "err", err)
			}
		}
		if n.ml != nil {
			timeout := 2 * time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = min(timeout, time.Until(d))
			}
			if err := n.ml.Leave(timeout); err != nil {
				n.log.Warn("gossip leave", "err", err)
			}
		}
		n.shutdownErr = n.stop()
	})
	return n.shutdownErr
}

// Kill stops the node without leaving: the others see it fail. For tests.
func (n *Node) Kill() error {
	var err error
	n.shutdownOnce.Do(func() { err = n.stop() })
	return err
}

// stop ends every goroutine and closes every resource, in reverse order of
// start.
func (n *Node) stop() error {
	n.stopping.Store(true)
	n.cancel()
	var errs []error
	if n.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errs = append(errs, n.httpSrv.Shutdown(ctx))
		cancel()
	} else if n.apiLn != nil {
		n.apiLn.Close()
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	if n.ml != nil {
		errs = append(errs, n.ml.Shutdown())
	}
	if n.checker != nil {
		n.checker.Stop()
	}
	n.wg.Wait()
	for _, c := range n.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (n *Node) otherVoters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	k := 0
	for _, s := range f.Configuration().Servers {
		if s.ID != raft.ServerID(n.name) && s.Suffrage == raft.Voter {
			k++
		}
	}
	return k
}

// logCacheEntries is how many recent raft entries are kept in memory for
// replication (raft.LogCache).
const logCacheEntries = 512

// apply commits one command through raft (this node must lead) and returns
// the FSM's result; a refused command is an error matching an fsm sentinel.
func (n *Node) apply(cmd fsm.Command) (*fsm.Result, error) {
	r := n.applyAll([]fsm.Command{cmd})[0]
	return r.res, r.err
}

type applied struct {
	res *fsm.Result
	err error
}

// applyAll commits commands through raft in order without waiting for one
// before sending the next, so that raft writes and replicates them
// together, and returns each one's result.
func (n *Node) applyAll(cmds []fsm.Command) []applied {
	out := make([]applied, len(cmds))
	futures := make([]raft.ApplyFuture, len(cmds))
	for i, cmd := range cmds {
		data, err := fsm.Encode(time.Now(), cmd)
		if err != nil {
			out[i].err = err
			continue
		}
		futures[i] = n.raft.Apply(data, n.cfg.ApplyTimeout)
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		if err := f.Error(); err != nil {
			out[i].err = fmt.Errorf("committing %s: %w", cmds[i].CommandType(), err)
			continue
		}
		out[i].res, out[i].err = fsm.ResultOf(f.Response())
	}
	select {
	case n.commitKick <- struct{}{}:
	default: // one is pending: it covers these entries too
	}
	return out
}

// commitLoop tells the followers about commits as they happen. A raft
// follower applies an entry only once it learns the leader's commit index,
// which hashicorp/raft sends with the next entry or, when the leader is
// idle, after CommitTimeout: a command that ends a burst (the desired stack
// that a node's agent acts on, a report a follower waits for) would wait
// that long on every follower. After each kick this appends a barrier
// entry, which raft replicates at once with the current commit index. One
// barrier is in flight at a time, and kicks that arrive meanwhile share the
// next: the cost is at most one small entry per commit, and less in a
// burst.
func (n *Node) commitLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.commitKick:
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		// The error is the next command's business (leadership lost,
		// shutdown): this entry only carries the commit index.
		_ = n.raft.Barrier(n.cfg.ApplyTimeout).Error()
	}
}

// leaderAPI returns the leader's name and API address.
func (n *Node) leaderAPI() (name, addr string) {
	_, id := n.raft.LeaderWithID()
	name = string(id)
	if name == "" {
		return "", ""
	}
	if name == n.name {
		return name, n.apiAddr
	}
	if m, ok := n.ml.Member(name); ok && m.Meta.API != "" {
		return name, m.Meta.API
	}
	n.fsm.View(func(s *fsm.State) { addr = s.Nodes[name].APIAddr })
	return name, addr
}

// --- bootstrap -----------------------------------------------------------

// bootstrapLoop forms the cluster once bootstrap_expect servers are alive
// in gossip: only the lowest-named of them bootstraps, with all of them as
// voters, and only when it has no raft state and no peer reports a cluster.
func (n *Node) bootstrapLoop() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.hasRaftConfig() {
			return
		}
		var servers []heartbeat.Member
		for _, m := range n.ml.Members() {
			if m.State == heartbeat.StateAlive && m.Meta.Server && m.Meta.Raft != "" {
				servers = append(servers, m)
			}
		}
		if len(servers) < n.cfg.Node.BootstrapExpect {
			continue
		}
		if servers[0].Name != n.name { // Members is sorted by name
			continue
		}
		if n.peerHasCluster(servers) {
			n.log.Info("not bootstrapping: a peer already belongs to a cluster")
			return
		}
		var conf raft.Configuration
		for _, m := range servers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft)})
		}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Error("bootstrap failed", "err", err)
			continue
		}
		n.log.Info("bootstrapped the cluster", "servers", len(servers))
		return
	}
}

func (n *Node) hasRaftConfig() bool {
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

func (n *Node) peerHasCluster(servers []heartbeat.Member) bool {
	for _, m := range servers {
		if m.Name == n.name || m.Meta.API == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 500*time.Millisecond)
		st, err := n.internalClient(m.Meta.API).Status(ctx)
		cancel()
		if err == nil && (st.LastIndex > 0 || st.Leader != "") {
			return true
		}
	}
	return false
}

// --- health and gossip ----------------------------------------------------

func (n *Node) startHealth() error {
	var specs []heartbeat.CheckSpec
	for _, c := range n.cfg.Node.Health {
		specs = append(specs, n.checkSpec(c.Name, c.Exec, c.TCP, c.HTTP, c.Process, c.Interval, c.Timeout, c.Failures, c.Successes))
	}
	cc := heartbeat.DefaultCheckerConfig()
	cc.Checks, cc.Logger = specs, n.log.With("part", "health")
	ch, err := heartbeat.StartChecker(cc)
	if err != nil {
		return fmt.Errorf("starting health checks: %w", err)
	}
	n.checker = ch
	return nil
}

// checkSpec builds a heartbeat check; a process check resolves the node's
// target of that name.
func (n *Node) checkSpec(name, exec, tcp, http, process string, interval, timeout time.Duration, failures, successes int) heartbeat.CheckSpec {
	s := heartbeat.CheckSpec{Name: name, Exec: exec, TCP: tcp, HTTP: http,
		Interval: interval, Timeout: timeout, Failures: failures, Successes: successes}
	if process != "" {
		t, ok := n.cfg.Node.Targets[process]
		switch {
		case !ok:
			s.Process = func() (int, error) { return 0, fmt.Errorf("node has no target %s", process) }
		case t.All():
			// Every matching process is pinned: one of them exiting fails the check.
			s.Processes = func() ([]int, error) { return findProcesses(n.cfg.ProcRoot, t) }
		default:
			s.Process = func() (int, error) { return findProcess(n.cfg.ProcRoot, t) }
		}
	}
	return s
}

func (n *Node) healthSummary() heartbeat.Summary { return n.checker.Status() }

// healthLoop publishes node health changes in gossip metadata.
func (n *Node) healthLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case sum, ok := <-n.checker.Changes():
			if !ok {
				return
			}
			n.metaMu.Lock()
			n.meta.Health, n.meta.FailingCheck, n.meta.Output = sum.State, sum.Failing, sum.Output
			n.metaMu.Unlock()
			n.kickMeta()
		}
	}
}

func (n *Node) kickMeta() {
	select {
	case n.metaKick <- struct{}{}:
	default: // a publication is pending already; it takes the newest meta
	}
}

// metaLoop publishes the node's metadata when it changed. One goroutine
// does it, so that a slow broadcast delays no caller and publications
// never overtake each other.
func (n *Node) metaLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.metaKick:
		}
		n.metaMu.Lock()
		meta := n.meta
		n.metaMu.Unlock()
		if err := n.ml.UpdateMeta(meta); err != nil && !errors.Is(err, heartbeat.ErrShutdown) {
			n.log.Debug("publishing metadata", "err", err)
		}
	}
}

// publishRole puts the node's role from its FSM replica into its gossip
// metadata (the config's role is only the initial one).
func (n *Node) publishRole(role fsm.Role) {
	n.metaMu.Lock()
	if role == "" || n.meta.Role == string(role) {
		n.metaMu.Unlock()
		return
	}
	n.meta.Role = string(role)
	n.metaMu.Unlock()
	n.kickMeta()
}

// gossipLoop wakes the leader's reconciler on every membership event.
func (n *Node) gossipLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev, ok := <-n.ml.Events():
			if !ok {
				return
			}
			n.log.Debug("member event", "member", ev.Node, "kind", ev.Kind.String())
			n.memberEvents.Store(true)
			n.bumpLocal()
		}
	}
}

// slogWriter turns hclog's lines ("[WARN]  raft: text") into slog records
// at the line's level, lowering raft's routine complaints (see raftLine).
// Once mute is set (the node is stopping) it drops them:
// raft's transport complains about its own shutdown, after the line that
// says why the node stops.
type slogWriter struct {
	log  *slog.Logger
	mute *atomic.Bool
}

func (w slogWriter) Write(p []byte) (int, error) {
	if w.mute != nil && w.mute.Load() {
		return len(p), nil
	}
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		level, text := raftLine(line)
		if text != "" {
			w.log.Log(context.Background(), level, text)
		}
	}
	return len(p), nil
}

// raftLine returns the level and the text of one hclog line.
func raftLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	for _, t := range []struct {
		prefix string
		level  slog.Level
	}{{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn}, {"[ERROR]", slog.LevelError}} {
		if rest, ok := strings.CutPrefix(line, t.prefix); ok {
			level, line = t.level, strings.TrimSpace(rest)
			break
		}
	}
	// Raft's WARN and ERROR lines that every healthy start, election or
	// clean shutdown produces (a fresh follower catching up, a leader that
	// stepped down) are logged at INFO, so that WARN and ERROR mean
	// something an operator should look at.
	routine := [...]string{
		"heartbeat timeout reached, starting election",
		"heartbeat timeout reached, not part of a stable configuration",
		"no known peers, aborting election",
		"failed to get previous log",
		"appendEntries rejected, sending older logs",
		"peer has newer term, stopping replication",
	}
	if level > slog.LevelInfo {
		for _, r := range routine {
			if strings.Contains(line, r) {
				return slog.LevelInfo, line
			}
		}
	}
	return level, line
}

// targetNames returns the node's target names, sorted.
func targetNames(n config.Node) []string {
	names := make([]string, 0, len(n.Targets))
	for k := range n.Targets {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
