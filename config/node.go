package config

import (
	"crypto/ed25519"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"lp/signing"
)

// Roles of a node (Node.Role).
const (
	RoleActive  = "active"
	RoleStandby = "standby"
	RoleWitness = "witness" // a raft voter with no service, for quorum
)

// Who decides the active/standby role of each pair (Node.Roles).
const (
	RolesManaged  = "managed"  // lp promotes and demotes, running on_promote/on_demote
	RolesExternal = "external" // role_probe on the node reports the role
)

// Default ports.
const (
	DefaultAPIPort    = 7070
	DefaultRaftPort   = 7071
	DefaultGossipPort = 7072
)

// maxTargetComm is the longest comm the kernel keeps (TASK_COMM_LEN - 1): a
// longer comm target could never match a process.
const maxTargetComm = 15

// Node is the node config, lpd --config lpd.yaml.
type Node struct {
	Node            string            // node name, [A-Za-z0-9._-]{1,64}
	DataDir         string            // data_dir; default /var/lib/lp
	Bind            string            // bind: IP address for every listener; default 127.0.0.1
	Ports           Ports             // ports
	Server          bool              // server: raft voter; false = non-voter
	BootstrapExpect int               // bootstrap_expect: servers only; 0 = join an existing cluster
	Join            []string          // join: gossip peers, host:port
	Pair            string            // pair: the pair this node belongs to; empty on a witness
	Role            string            // role: initial role, RoleActive, RoleStandby or RoleWitness
	Roles           string            // roles: RolesManaged (default) or RolesExternal
	FailoverAfter   time.Duration     // failover_after: default 2s
	OnPromote       string            // on_promote: run when this node becomes active
	OnDemote        string            // on_demote: run when this node stops being active
	RoleProbe       string            // role_probe: prints active|standby; needed by external roles
	Targets         map[string]Target // targets: processes lp may patch, by name
	Health          []Check           // health: node-level checks, always running
	PeerHealth      []Check           // peer_health: checks this node runs against its pair peer's service while the peer's lpd is gone
	TLS             TLS               // tls: the API and raft over mutual TLS; all of ca, cert, key or none
	GossipKey       []byte            // gossip_key: decoded from base64; 16, 24 or 32 bytes, or none
	TrustedKeys     []string          // trusted_keys: base64 ed25519 public keys; set: modules must be signed by one
	Heartbeat       Heartbeat         // heartbeat: gossip timing; default timing lan-fast
	Raft            Raft              // raft: raft timeouts and log compaction; default DefaultRaft
	Retention       Retention         // retention: history and finished plans kept; default DefaultRetention
	Priority        Priority          // priority: CPU priority of lpd's threads; default rr 1, falling back to nice -10
	Insecure        bool              // insecure: allow a non-loopback bind without tls (lpd warns at every start)
	Tokens          []Token           // tokens: bearer tokens for tools that cannot hold a certificate
	ExecChecks      string            // exec_checks: ExecAllow (default) or ExecDeny: may plans run exec checks here
	DebugDir        string            // debug_dir: where separate debug files of stripped targets are found
}

// Token is one bearer token of lpd.yaml's tokens: a client presenting
// "Authorization: Bearer SECRET" where sha256(SECRET) = SHA256 is Name with
// Role.
type Token struct {
	Name   string // name: who holds it; in the audit as ROLE:NAME (token)
	Role   string // role: TokenReader or TokenOperator
	SHA256 string // sha256: hex of the secret's sha256, 64 characters, lower case after parsing
}

// Roles a token may carry. Node identities come only from node
// certificates: a token never speaks for a node.
const (
	TokenReader   = "reader"
	TokenOperator = "operator"
)

// Values of exec_checks.
const (
	ExecAllow = "allow" // plans' exec health checks run on this node (as lpd's user, root)
	ExecDeny  = "deny"  // this node refuses plans with exec health checks
)

// Ports are the TCP/UDP ports a node listens on, all on Node.Bind.
type Ports struct {
	API    int // api: HTTP API; default 7070
	Raft   int // raft: raft transport; default 7071
	Gossip int // gossip: memberlist, TCP and UDP; default 7072
}

// Target says how to find the process to patch: exactly one of PIDFile, Exe
// or Comm, and whether exactly one process must match or every matching one
// is patched.
type Target struct {
	PIDFile string // pidfile: file holding the pid
	Exe     string // exe: absolute path, compared with /proc/PID/exe
	Comm    string // comm: process name as in /proc/PID/comm (at most 15 bytes)
	Match   string // match: MatchOne ("" reads as one) or MatchAll (exe or comm only)
}

// How many processes a target names (Target.Match).
const (
	MatchOne = "one" // exactly one process must match (the default)
	MatchAll = "all" // every matching process is patched
)

// All reports whether every matching process of the target is patched.
func (t Target) All() bool { return t.Match == MatchAll }

// TLS holds certificate paths; all three or none.
type TLS struct {
	CA   string // ca
	Cert string // cert
	Key  string // key
}

// DefaultNode returns a Node with every default filled. Node, Role and (for
// active and standby nodes) Pair and Targets have no default.
func DefaultNode() Node {
	return Node{
		DataDir:       "/var/lib/lp",
		Bind:          "127.0.0.1",
		Ports:         Ports{API: DefaultAPIPort, Raft: DefaultRaftPort, Gossip: DefaultGossipPort},
		Roles:         RolesManaged,
		FailoverAfter: 2 * time.Second,
		ExecChecks:    ExecAllow,
		DebugDir:      DefaultDebugDir,
		Heartbeat:     Heartbeat{Timing: TimingLANFast},
		Raft:          DefaultRaft(),
		Retention:     DefaultRetention(),
		Priority:      Priority{Nice: DefaultNice, RT: DefaultRT},
	}
}

// DefaultDebugDir is the default debug_dir, where distributions install
// separate debug files.
const DefaultDebugDir = "/usr/lib/debug"

// Unsupported lists the keys that are set in n but that lpd does not
// implement yet, so that lpd can warn instead of silently ignoring them.
// Every key is implemented now; lpd keeps the warning for the next one.
func (n *Node) Unsupported() []string {
	return nil
}

// Validate checks every rule of the node config and returns the first
// broken one as an *Error naming the field and the limit.
func (n *Node) Validate() error {
	if n.Node == "" {
		return invalid("node", "required; "+idRule)
	}
	if !validID(n.Node) {
		return invalid("node", fmt.Sprintf("%q is not a valid name; %s", n.Node, idRule))
	}
	if n.DataDir == "" {
		return invalid("data_dir", "required")
	}
	if err := n.validateNetwork(); err != nil {
		return err
	}
	if err := n.validateRole(); err != nil {
		return err
	}
	if n.FailoverAfter <= 0 {
		return invalid("failover_after", fmt.Sprintf("%v must be positive", n.FailoverAfter))
	}
	if err := n.validateTargets(); err != nil {
		return err
	}
	if err := n.Heartbeat.validate(); err != nil {
		return err
	}
	if err := n.Raft.validate(); err != nil {
		return err
	}
	if err := n.Retention.validate(); err != nil {
		return err
	}
	if err := n.Priority.validate(); err != nil {
		return err
	}
	targets := n.Targets
	if targets == nil {
		targets = map[string]Target{} // process checks need a target even when there are none
	}
	if err := validateChecks("health", n.Health, targets); err != nil {
		return err
	}
	if len(n.PeerHealth) > 0 && n.Pair == "" {
		return invalid("peer_health", "only a pair member has a peer to check; remove it from a witness")
	}
	if err := validateChecks("peer_health", n.PeerHealth, targets); err != nil {
		return err
	}
	for i, c := range n.PeerHealth {
		if c.Process != "" {
			return invalid("peer_health["+strconv.Itoa(i)+"].process", "a process check watches a local target; check the peer's service with exec, tcp or http")
		}
	}
	if t := n.TLS; t != (TLS{}) && (t.CA == "" || t.Cert == "" || t.Key == "") {
		var missing string
		switch {
		case t.CA == "":
			missing = "ca"
		case t.Cert == "":
			missing = "cert"
		default:
			missing = "key"
		}
		return invalidNear("tls."+missing, "tls", "required when tls is set: want all of ca, cert, key")
	}
	switch len(n.GossipKey) {
	case 0, 16, 24, 32:
	default:
		return invalid("gossip_key", fmt.Sprintf("want base64 of a 16, 24 or 32 byte key, got %d bytes", len(n.GossipKey)))
	}
	if err := n.validateSecurity(); err != nil {
		return err
	}
	for i, k := range n.TrustedKeys {
		field := "trusted_keys[" + strconv.Itoa(i) + "]"
		if k == "" {
			return invalid(field, "want a public key, got an empty string")
		}
		if _, err := signing.ParsePublicKey([]byte(k)); err != nil {
			return invalid(field, fmt.Sprintf("%s is not an ed25519 public key: %s (want the one line of a KEY.pub written by lpctl patch keygen)",
				quoteClip(k), strings.TrimPrefix(err.Error(), signing.ErrBadKey.Error()+": ")))
		}
	}
	return nil
}

// TrustedPublicKeys returns the keys of trusted_keys. Validate has checked
// them; an entry that does not parse is an error here too (never skipped).
func (n *Node) TrustedPublicKeys() ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, k := range n.TrustedKeys {
		pub, err := signing.ParsePublicKey([]byte(k))
		if err != nil {
			return nil, invalid("trusted_keys["+strconv.Itoa(i)+"]", err.Error())
		}
		keys = append(keys, pub)
	}
	return keys, nil
}

// quoteClip quotes s for an error message, cut to 60 bytes.
func quoteClip(s string) string {
	if len(s) > 60 {
		return strconv.Quote(s[:60]) + "..."
	}
	return strconv.Quote(s)
}

func (n *Node) validateNetwork() error {
	if n.Bind == "" {
		return invalid("bind", "required: want this node's IP address")
	}
	ip := net.ParseIP(n.Bind)
	if ip == nil {
		return invalid("bind", fmt.Sprintf("want an IP address, got %q", n.Bind))
	}
	if ip.IsUnspecified() {
		// raft and memberlist advertise the bind address to peers.
		return invalid("bind", fmt.Sprintf("%s is not an address peers can reach; give this node's own IP", n.Bind))
	}
	ports := []struct {
		field string
		port  int
	}{{"ports.api", n.Ports.API}, {"ports.raft", n.Ports.Raft}, {"ports.gossip", n.Ports.Gossip}}
	for i, p := range ports {
		if p.port < 1 || p.port > 65535 {
			return invalidNear(p.field, "ports", fmt.Sprintf("%d out of range 1-65535", p.port))
		}
		for _, q := range ports[:i] {
			if q.port == p.port {
				return invalidNear(p.field, "ports", fmt.Sprintf("%d is also %s; each port must differ", p.port, q.field))
			}
		}
	}
	for i, j := range n.Join {
		if err := checkHostPort(j); err != nil {
			return invalid("join["+strconv.Itoa(i)+"]", fmt.Sprintf("want host:port, got %q: %v", j, err))
		}
	}
	return nil
}

// validateSecurity checks tokens, exec_checks and that a node reachable
// from other hosts is not left open: a non-loopback bind needs tls, or
// insecure: true said out loud.
func (n *Node) validateSecurity() error {
	if ip := net.ParseIP(n.Bind); ip != nil && !ip.IsLoopback() && n.TLS == (TLS{}) && !n.Insecure {
		return invalidNear("bind", "tls", fmt.Sprintf("%s is not a loopback address and tls is not set: anyone who reaches it could patch this host; set tls (lpctl tls init), or insecure: true to run open anyway", n.Bind))
	}
	if !filepath.IsAbs(n.DebugDir) {
		return invalid("debug_dir", fmt.Sprintf("want an absolute directory, got %q", n.DebugDir))
	}
	switch n.ExecChecks {
	case ExecAllow, ExecDeny:
	default:
		return invalid("exec_checks", fmt.Sprintf("want allow or deny, got %q", n.ExecChecks))
	}
	names := map[string]int{}
	sums := map[string]int{}
	for i, t := range n.Tokens {
		f := "tokens[" + strconv.Itoa(i) + "]"
		if !validID(t.Name) {
			return invalid(f+".name", fmt.Sprintf("%q is not a valid name; %s", t.Name, idRule))
		}
		if j, ok := names[t.Name]; ok {
			return invalid(f+".name", fmt.Sprintf("%q is also tokens[%d]; each token needs its own name", t.Name, j))
		}
		names[t.Name] = i
		switch t.Role {
		case TokenReader, TokenOperator:
		default:
			return invalid(f+".role", fmt.Sprintf("want reader or operator, got %q (node identities come only from node certificates)", t.Role))
		}
		if !validSHA256(t.SHA256) {
			// Not echoed: a secret pasted here by mistake stays out of logs.
			return invalid(f+".sha256", fmt.Sprintf("want the 64 hex digits of the secret's sha256 (printf %%s SECRET | sha256sum), got %d characters", len(t.SHA256)))
		}
		if j, ok := sums[strings.ToLower(t.SHA256)]; ok {
			return invalid(f+".sha256", fmt.Sprintf("the same secret as tokens[%d]; each token needs its own secret", j))
		}
		sums[strings.ToLower(t.SHA256)] = i
	}
	return nil
}

// validSHA256 reports whether s is 64 hex digits.
func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (n *Node) validateRole() error {
	if n.BootstrapExpect < 0 {
		return invalid("bootstrap_expect", fmt.Sprintf("%d below minimum 1", n.BootstrapExpect))
	}
	if n.BootstrapExpect > 0 && !n.Server {
		return invalidNear("bootstrap_expect", "server", "only servers bootstrap; set server: true or remove bootstrap_expect")
	}
	switch n.Role {
	case "":
		return invalid("role", "required: want active, standby or witness")
	case RoleWitness:
		if n.Pair != "" {
			return invalid("pair", "a witness belongs to no pair; remove pair or change role")
		}
		if !n.Server {
			return invalidNear("server", "role", "a witness is a raft voter: want server: true")
		}
		if len(n.Targets) > 0 {
			return invalidNear("targets", "role", "a witness runs no service: remove targets or change role")
		}
	case RoleActive, RoleStandby:
		if n.Pair == "" {
			return invalidNear("pair", "role", fmt.Sprintf("required for role %s", n.Role))
		}
		if !validID(n.Pair) {
			return invalid("pair", fmt.Sprintf("%q is not a valid name; %s", n.Pair, idRule))
		}
	default:
		return invalid("role", fmt.Sprintf("want active, standby or witness, got %q", n.Role))
	}
	switch n.Roles {
	case RolesManaged:
	case RolesExternal:
		if n.Role != RoleWitness && n.RoleProbe == "" {
			return invalidNear("role_probe", "roles", "required when roles is external")
		}
	default:
		return invalid("roles", fmt.Sprintf("want managed or external, got %q", n.Roles))
	}
	return nil
}

func (n *Node) validateTargets() error {
	if n.Role != RoleWitness && len(n.Targets) == 0 {
		return invalidNear("targets", "role", fmt.Sprintf("required for role %s: name at least one process to patch", n.Role))
	}
	names := make([]string, 0, len(n.Targets))
	for name := range n.Targets {
		names = append(names, name)
	}
	sort.Strings(names) // the first error must not depend on map order
	for _, name := range names {
		f := "targets." + name
		if !validID(name) {
			return invalidNear(f, "targets", fmt.Sprintf("%q is not a valid target name; %s", name, idRule))
		}
		t := n.Targets[name]
		set := 0
		for _, v := range []string{t.PIDFile, t.Exe, t.Comm} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			return invalid(f, fmt.Sprintf("want exactly one of pidfile, exe, comm; got %d", set))
		}
		if t.Exe != "" && !filepath.IsAbs(t.Exe) {
			return invalid(f+".exe", fmt.Sprintf("want an absolute path, got %q", t.Exe))
		}
		if len(t.Comm) > maxTargetComm {
			return invalid(f+".comm", fmt.Sprintf("%q is %d bytes; the kernel keeps at most %d", t.Comm, len(t.Comm), maxTargetComm))
		}
		switch t.Match {
		case "", MatchOne:
		case MatchAll:
			if t.PIDFile != "" {
				return invalid(f+".match", "all needs exe or comm: a pidfile names one process")
			}
		default:
			return invalid(f+".match", fmt.Sprintf("want one or all, got %q", t.Match))
		}
	}
	return nil
}

// idRule describes the names validID accepts, for error messages.
const idRule = "want 1-64 characters from A-Z a-z 0-9 . _ -"

// validID reports whether s matches [A-Za-z0-9._-]{1,64}, the charset of
// node, pair, target, plan and patch names.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
