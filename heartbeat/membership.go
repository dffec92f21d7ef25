package heartbeat

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberState is a member's state in this member's view.
type MemberState string

// Member states.
const (
	StateAlive   MemberState = "alive"
	StateSuspect MemberState = "suspect"
	StateDead    MemberState = "dead"
	StateLeft    MemberState = "left"
)

// Member is one row of the member table.
type Member struct {
	Name  string
	Addr  string // gossip address, host:port
	State MemberState
	Meta  Meta
	Since time.Time // when State was entered
}

// Config configures a Membership.
type Config struct {
	Name     string // unique member name (the node name)
	BindAddr string // IP address to bind gossip (UDP and TCP) to
	BindPort int    // 0 picks a free port (see Membership.Addr)
	// AdvertiseAddr/AdvertisePort: the address other members use; empty/0
	// advertise the bound address and port.
	AdvertiseAddr string
	AdvertisePort int
	Join          []string // host:port of any members; retried while alone
	Meta          Meta     // initial metadata
	SecretKey     []byte   // optional gossip encryption key: 16, 24 or 32 bytes
	Timing        Timing   // zero value means LANFast()
	// EventBuffer is how many events may wait for the reader of Events
	// before the oldest are dropped; 0 means 1024.
	EventBuffer int
	Logger      *slog.Logger // nil discards logs
}

// DefaultConfig returns the defaults of DESIGN.md: bind 127.0.0.1, gossip
// port 7072, LANFast timing. Name must still be set.
func DefaultConfig() Config {
	return Config{BindAddr: "127.0.0.1", BindPort: 7072, Timing: LANFast(), EventBuffer: 1024}
}

// Validate reports the first field outside its limits.
func (c Config) Validate() error {
	bad := func(field string, v any, limit string) error {
		return fmt.Errorf("%w: membership %s = %v; want %s", ErrInvalidConfig, field, v, limit)
	}
	switch {
	case c.Name == "":
		return bad("Name", `""`, "a unique node name")
	case net.ParseIP(c.BindAddr) == nil:
		return bad("BindAddr", strconv.Quote(c.BindAddr), "an IP address")
	case c.BindPort < 0 || c.BindPort > 65535:
		return bad("BindPort", c.BindPort, "0..65535")
	case c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil:
		return bad("AdvertiseAddr", strconv.Quote(c.AdvertiseAddr), "an IP address or empty")
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		return bad("AdvertisePort", c.AdvertisePort, "0..65535")
	case len(c.SecretKey) != 0 && len(c.SecretKey) != 16 && len(c.SecretKey) != 24 && len(c.SecretKey) != 32:
		return bad("SecretKey", fmt.Sprintf("%d bytes", len(c.SecretKey)), "16, 24 or 32 bytes")
	case c.EventBuffer < 1:
		return bad("EventBuffer", c.EventBuffer, ">= 1")
	}
	if err := c.Timing.Validate(); err != nil {
		return err
	}
	if _, err := EncodeMeta(c.Meta); err != nil {
		return fmt.Errorf("membership Meta: %w", err)
	}
	return nil
}

// leaveIntentTTL is how long a received leave intent turns the member's
// next departure into Left rather than Dead.
const leaveIntentTTL = 30 * time.Second

// msgLeaveIntent tags the user message "I am about to leave": the byte,
// then the member name. Its receiver answers with msgLeaveAck (the byte,
// then its own name) once the intent is recorded, so the leaver starts
// memberlist's leave broadcast (UDP, which could overtake an unprocessed TCP
// intent) only after every member knows.
const (
	msgLeaveIntent byte = 'L'
	msgLeaveAck    byte = 'K'
)

// Membership is this node's view of the gossip cluster.
type Membership struct {
	ml     *memberlist.Memberlist
	addr   string // the local member's gossip address, fixed at Start
	cfg    Config
	log    *slog.Logger
	events *eventQueue
	stop   chan struct{}
	wg     sync.WaitGroup

	life   sync.Mutex // serialises Leave, UpdateMeta, Join and Shutdown
	closed bool       // under life

	mu        sync.Mutex // guards the fields below
	members   map[string]*member
	leaving   map[string]time.Time // leave intents received
	localMeta []byte
	leftSelf  bool
	leaveAcks chan string // during Leave: names of members that recorded the intent
}

type member struct {
	Member
	suspectUntil time.Time // when an unrefuted suspicion must have ended
	warnedTiming string    // the other timing last warned about
}

// Start creates the memberlist member, tries to join cfg.Join once (and keeps
// retrying in the background while alone) and returns. A failed first join is
// not an error: peers may not be up yet.
func Start(cfg Config) (*Membership, error) {
	if cfg.Timing == (Timing{}) {
		cfg.Timing = LANFast()
	}
	if cfg.EventBuffer == 0 {
		cfg.EventBuffer = 1024
	}
	cfg.Meta.Timing = cfg.Timing.Fingerprint()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	meta, err := EncodeMeta(cfg.Meta)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Membership{
		cfg:       cfg,
		log:       logger.With("component", "heartbeat", "node", cfg.Name),
		events:    newEventQueue(cfg.EventBuffer),
		stop:      make(chan struct{}),
		members:   make(map[string]*member),
		leaving:   make(map[string]time.Time),
		localMeta: meta,
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	cfg.Timing.apply(mc)
	// memberlist compresses every packet (LZW) by default: on a LAN the
	// packets are small and bandwidth is not short, while the CPU is what a
	// loaded node lacks (a third of gossip's CPU went to compressing and
	// decompressing in the 101-node control-plane benchmark). Members that
	// still compress are understood either way.
	mc.EnableCompression = false
	mc.SecretKey = cfg.SecretKey
	d := &delegate{m: m}
	mc.Delegate = d
	mc.Events = d
	mc.Ping = d
	mc.Logger = log.New(&mlLogWriter{m: m}, "", 0)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("starting memberlist on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	m.ml = ml
	// Read once, before anything can update the local node: memberlist's
	// LocalNode returns its own record, which UpdateNode rewrites without a
	// lock a reader could take.
	m.addr = ml.LocalNode().Address()

	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.events.run(m.stop) }()
	go func() { defer m.wg.Done(); m.janitor() }()
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			m.log.Info("no peer reachable yet; retrying while alone", "peers", cfg.Join, "every", cfg.Timing.JoinRetryInterval, "err", err)
		}
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.retryJoin() }()
	}
	return m, nil
}

// Timing returns the timing this member runs with.
func (m *Membership) Timing() Timing { return m.cfg.Timing }

// checkTiming warns, once per member and value, when a member publishes a
// gossip timing other than ours: members that disagree on it suspect and
// declare each other dead at different speeds. Called with m.mu held.
func (m *Membership) checkTiming(e *member) {
	own := m.cfg.Timing.Fingerprint()
	if SameTiming(e.Meta.Timing, own) || e.warnedTiming == e.Meta.Timing {
		return
	}
	e.warnedTiming = e.Meta.Timing
	m.log.Warn("member gossips with another heartbeat timing; every node of a cluster should have the same (lpd.yaml heartbeat:)",
		"member", e.Name, "its_timing", e.Meta.Timing, "our_timing", own)
}

// LocalName returns this member's name.
func (m *Membership) LocalName() string { return m.cfg.Name }

// Addr returns the gossip address other members reach this one at
// (host:port, with the real port when BindPort was 0).
func (m *Membership) Addr() string { return m.addr }

// Events returns the membership changes, in the order this member saw them.
// The channel is closed by Shutdown. See the package comment for what happens
// when the reader falls behind.
func (m *Membership) Events() <-chan Event { return m.events.out }

// Dropped returns how many events were dropped because the reader of Events
// fell more than Config.EventBuffer events behind.
func (m *Membership) Dropped() uint64 { return m.events.droppedCount() }

// Members returns every member this one knows of, dead and left ones
// included, sorted by name.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, e := range m.members {
		out = append(out, e.Member)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Member returns one member by name.
func (m *Membership) Member(name string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.members[name]
	if !ok {
		return Member{}, false
	}
	return e.Member, true
}

// UpdateMeta publishes new metadata. It waits up to Timing.BroadcastTimeout
// for the update to be gossiped; on that timeout it returns an error, but the
// new metadata is in effect locally and reaches the others by later gossip.
// An unchanged Meta is not re-sent.
func (m *Membership) UpdateMeta(meta Meta) error {
	meta.Timing = m.cfg.Timing.Fingerprint()
	b, err := EncodeMeta(meta)
	if err != nil {
		return fmt.Errorf("updating meta of %s: %w", m.cfg.Name, err)
	}
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return ErrShutdown
	}
	m.mu.Lock()
	same := bytes.Equal(b, m.localMeta)
	m.localMeta = b
	m.mu.Unlock()
	if same {
		return nil
	}
	if err := m.ml.UpdateNode(m.cfg.Timing.BroadcastTimeout); err != nil {
		return fmt.Errorf("updating meta of %s: %w", m.cfg.Name, err)
	}
	return nil
}

// Join contacts the given members (host:port) and merges state with them. It
// returns how many were reached; an error only if none was.
func (m *Membership) Join(addrs []string) (int, error) {
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return 0, ErrShutdown
	}
	n, err := m.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("joining %v: %w", addrs, err)
	}
	return n, nil
}

// Leave tells every member that this one is leaving (so they report Left,
// not Dead), then leaves the gossip cluster. It waits at most timeout. The
// member keeps answering gossip until Shutdown.
func (m *Membership) Leave(timeout time.Duration) error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return ErrShutdown
	}
	deadline := time.Now().Add(timeout)
	m.mu.Lock()
	m.leftSelf = true
	m.mu.Unlock()

	// The intent goes over TCP to each member in parallel and each answers
	// once it has recorded it; half the budget is kept for memberlist's own
	// leave broadcast.
	msg := append([]byte{msgLeaveIntent}, m.cfg.Name...)
	waiting := map[string]bool{}
	acks := make(chan string, 64)
	m.mu.Lock()
	m.leaveAcks = acks
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.leaveAcks = nil
		m.mu.Unlock()
	}()
	for _, n := range m.ml.Members() {
		if n.Name == m.cfg.Name {
			continue
		}
		node := *n
		waiting[node.Name] = true
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := m.ml.SendReliable(&node, msg); err != nil {
				m.log.Warn("sending leave intent", "to", node.Name, "err", err)
			}
		}()
	}
	budget := time.NewTimer(timeout / 2)
	defer budget.Stop()
	for len(waiting) > 0 {
		select {
		case name := <-acks:
			delete(waiting, name)
		case <-budget.C:
			m.log.Warn("leave intent not acknowledged by every member in time", "timeout", timeout/2, "missing", len(waiting))
			waiting = nil
		}
	}

	remaining := time.Until(deadline)
	if remaining < time.Millisecond {
		remaining = time.Millisecond // 0 would mean "wait forever" to memberlist
	}
	if err := m.ml.Leave(remaining); err != nil {
		return fmt.Errorf("leaving as %s: %w", m.cfg.Name, err)
	}
	return nil
}

// Shutdown stops gossip without announcing a leave (the others declare this
// member Dead), ends every goroutine and closes Events. It is idempotent.
func (m *Membership) Shutdown() error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	close(m.stop)
	err := m.ml.Shutdown()
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("shutting down memberlist of %s: %w", m.cfg.Name, err)
	}
	return nil
}

// retryJoin re-joins cfg.Join while this member is alone.
func (m *Membership) retryJoin() {
	t := time.NewTicker(m.cfg.Timing.JoinRetryInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.mu.Lock()
		left := m.leftSelf
		m.mu.Unlock()
		if left || m.ml.NumMembers() > 1 {
			continue
		}
		if n, err := m.ml.Join(m.cfg.Join); err != nil {
			m.log.Debug("join retry failed", "peers", m.cfg.Join, "err", err)
		} else {
			m.log.Info("joined", "contacted", n)
		}
	}
}

// janitor ends suspicions that were refuted without one of memberlist's
// direct probes reaching us (by pinging the member once memberlist's longest
// suspicion has passed), and forgets stale leave intents.
func (m *Membership) janitor() {
	t := time.NewTicker(m.cfg.Timing.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.sweep(now)
		}
	}
}

func (m *Membership) sweep(now time.Time) {
	type target struct{ name, addr string }
	m.mu.Lock()
	var expired []target
	for name, e := range m.members {
		if e.State == StateSuspect && now.After(e.suspectUntil) {
			expired = append(expired, target{name, e.Addr})
		}
	}
	for name, at := range m.leaving {
		if now.Sub(at) > leaveIntentTTL {
			delete(m.leaving, name)
		}
	}
	m.mu.Unlock()
	if len(expired) == 0 {
		return
	}
	// memberlist is called without m.mu held: it calls our delegates with
	// its node lock held, so the opposite order could deadlock.
	live := make(map[string]bool)
	for _, n := range m.ml.Members() {
		live[n.Name] = true
	}
	for _, t := range expired {
		if !live[t.name] {
			continue // dead or left: NotifyLeave reports it
		}
		// memberlist's suspicion should have ended by now and the member
		// is still listed, so it probably refuted. A late timer on a loaded
		// machine could still declare it dead, so ask the member itself.
		answered := false
		if addr, err := net.ResolveUDPAddr("udp", t.addr); err == nil {
			_, err := m.ml.Ping(t.name, addr)
			answered = err == nil
		}
		m.mu.Lock()
		e := m.members[t.name]
		if e != nil && e.State == StateSuspect {
			if answered {
				m.setState(e, StateAlive, time.Now())
				m.emit(Alive, e, e.Since)
			} else {
				e.suspectUntil = time.Now().Add(m.cfg.Timing.ProbeInterval)
			}
		}
		m.mu.Unlock()
	}
}

// setState and emit are called with m.mu held.
func (m *Membership) setState(e *member, s MemberState, now time.Time) {
	e.State = s
	e.Since = now
}

func (m *Membership) emit(k EventKind, e *member, now time.Time) {
	m.log.Debug("member event", "event", k.String(), "member", e.Name, "addr", e.Addr)
	m.events.push(Event{Kind: k, Node: e.Name, Addr: e.Addr, Meta: e.Meta, At: now})
}

// suspect records that this member's own probe of name failed.
func (m *Membership) suspect(name string) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.members[name]
	if e == nil || e.State != StateAlive || name == m.cfg.Name {
		return
	}
	_, longest := m.cfg.Timing.suspicionBounds(len(m.members))
	m.setState(e, StateSuspect, now)
	e.suspectUntil = now.Add(longest + 2*m.cfg.Timing.ProbeInterval)
	m.emit(Suspect, e, now)
}

// answered records a direct ack from name.
func (m *Membership) answered(name string) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.members[name]; e != nil && e.State == StateSuspect {
		m.setState(e, StateAlive, now)
		m.emit(Alive, e, now)
	}
}

func (m *Membership) decode(n *memberlist.Node) Meta {
	meta, err := DecodeMeta(n.Meta)
	if err != nil {
		m.log.Warn("undecodable member metadata", "member", n.Name, "err", err)
	}
	return meta
}

// delegate receives memberlist's callbacks. memberlist calls NotifyJoin,
// NotifyLeave and NotifyUpdate with its node lock held and never
// concurrently; none of these methods call back into memberlist.
type delegate struct{ m *Membership }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate  = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.localMeta) > limit {
		return nil // cannot happen: EncodeMeta keeps it within MetaMaxSize
	}
	return bytes.Clone(d.m.localMeta)
}

// NotifyMsg handles lp's two user messages. The intent arrives over TCP
// (SendReliable), so this runs on that connection's own goroutine and may
// answer synchronously without holding up gossip.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 2 {
		return
	}
	m, name := d.m, string(b[1:])
	switch b[0] {
	case msgLeaveIntent:
		m.mu.Lock()
		m.leaving[name] = time.Now()
		m.mu.Unlock()
		for _, n := range m.ml.Members() {
			if n.Name == name {
				ack := append([]byte{msgLeaveAck}, m.cfg.Name...)
				if err := m.ml.SendReliable(n, ack); err != nil {
					m.log.Debug("acknowledging leave intent", "to", name, "err", err)
				}
				break
			}
		}
	case msgLeaveAck:
		m.mu.Lock()
		acks := m.leaveAcks
		m.mu.Unlock()
		if acks != nil {
			select {
			case acks <- name:
			default:
			}
		}
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) NotifyJoin(n *memberlist.Node) {
	m := d.m
	meta := m.decode(n)
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leaving, n.Name)
	e := m.members[n.Name]
	if e == nil {
		e = &member{Member: Member{Name: n.Name}}
		m.members[n.Name] = e
	}
	e.Addr = n.Address()
	e.Meta = meta
	m.checkTiming(e)
	m.setState(e, StateAlive, now)
	m.emit(Alive, e, now)
}

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	m := d.m
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.members[n.Name]
	if e == nil {
		e = &member{Member: Member{Name: n.Name, Addr: n.Address(), Meta: m.decode(n)}}
		m.members[n.Name] = e
	}
	kind, state := Dead, StateDead
	if at, ok := m.leaving[n.Name]; (ok && now.Sub(at) <= leaveIntentTTL) || (n.Name == m.cfg.Name && m.leftSelf) {
		kind, state = Left, StateLeft
	}
	delete(m.leaving, n.Name)
	m.setState(e, state, now)
	m.emit(kind, e, now)
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	m := d.m
	meta := m.decode(n)
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.members[n.Name]
	if e == nil {
		e = &member{Member: Member{Name: n.Name, State: StateAlive, Since: now}}
		m.members[n.Name] = e
	}
	e.Addr = n.Address()
	e.Meta = meta
	m.checkTiming(e)
	if e.State != StateAlive {
		// An update is an alive message with a newer incarnation: the
		// member is alive whatever we thought.
		m.setState(e, StateAlive, now)
		m.emit(Alive, e, now)
	}
	m.emit(Updated, e, now)
}

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	d.m.answered(other.Name)
}

// mlLogWriter receives memberlist's log lines ("[LEVEL] memberlist: text"),
// forwards them to slog and watches for the line memberlist writes when this
// member's probe of another fails, which is the only public trace of a
// suspicion this member raised.
type mlLogWriter struct{ m *Membership }

const (
	suspectPrefix = "memberlist: Suspect "
	suspectSuffix = " has failed, no acks received"
)

func (w *mlLogWriter) Write(p []byte) (int, error) {
	level, text := parseMemberlistLine(string(p))
	if len(text) > len(suspectPrefix)+len(suspectSuffix) &&
		text[:len(suspectPrefix)] == suspectPrefix && text[len(text)-len(suspectSuffix):] == suspectSuffix {
		w.m.suspect(text[len(suspectPrefix) : len(text)-len(suspectSuffix)])
	}
	w.m.log.Log(context.Background(), level, text, "from", "memberlist")
	return len(p), nil
}

// parseMemberlistLine splits "[WARN] memberlist: text\n" into a slog level
// and the text.
func parseMemberlistLine(s string) (slog.Level, string) {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	levels := []struct {
		tag   string
		level slog.Level
	}{
		{"[DEBUG] ", slog.LevelDebug},
		{"[INFO] ", slog.LevelInfo},
		{"[WARN] ", slog.LevelWarn},
		{"[ERR] ", slog.LevelError},
		{"[ERROR] ", slog.LevelError},
	}
	level := slog.LevelInfo
	for _, l := range levels {
		if len(s) >= len(l.tag) && s[:len(l.tag)] == l.tag {
			level, s = l.level, s[len(l.tag):]
			break
		}
	}
	// Lines memberlist writes at WARN or ERROR on every healthy start
	// (members probing each other before all have joined, a refuted
	// suspicion) and on a clean shutdown (a socket closed under a
	// reader). Membership changes that matter reach the log as events,
	// so these stay at INFO (DEBUG for the shutdown ones).
	routine := [...]struct {
		text  string
		level slog.Level
	}{
		{"Refuting a suspect message", slog.LevelInfo},
		{"Failed fallback TCP ping", slog.LevelInfo},
		{"but UDP probes failed, network may be misconfigured", slog.LevelInfo},
		{"use of closed network connection", slog.LevelDebug},
	}
	if level > slog.LevelInfo {
		for _, r := range routine {
			if strings.Contains(s, r.text) {
				return r.level, s
			}
		}
	}
	return level, s
}
