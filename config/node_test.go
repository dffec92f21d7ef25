package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sum64 is a well-formed token sha256.
const sum64 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"

// testPub is an ed25519 public key (seed 32 bytes of 1) as trusted_keys holds it.
const testPub = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

// minimalNode is the smallest valid active node; cases append to it, so
// their first line is line 5.
const minimalNode = `node: a1
pair: p1
role: active
targets: {sipd: {comm: sipd}}
`

// TestRaftAndRetentionKeys: keys set are taken, keys left out keep their
// default.
func TestRaftAndRetentionKeys(t *testing.T) {
	n, err := ParseNode([]byte(minimalNode+"raft:\n  heartbeat_timeout: 2s\n  election_timeout: 3s\n  trailing_logs: 0\nretention: {history: 0, plans: 7}\n"), "lpd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantRaft := DefaultRaft()
	wantRaft.HeartbeatTimeout, wantRaft.ElectionTimeout, wantRaft.TrailingLogs = 2*time.Second, 3*time.Second, 0
	if n.Raft != wantRaft {
		t.Errorf("raft = %+v; want %+v", n.Raft, wantRaft)
	}
	wantRet := Retention{History: 0, HistoryAge: DefaultRetention().HistoryAge, Plans: 7}
	if n.Retention != wantRet {
		t.Errorf("retention = %+v; want %+v", n.Retention, wantRet)
	}
}

func TestLoadNodeDesignExample(t *testing.T) {
	path := filepath.Join("testdata", "lpd.yaml")
	n, err := LoadNode(path)
	if err != nil {
		t.Fatalf("LoadNode(%s) error: %v; want nil", path, err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	want := &Node{
		Node:            "sip-a1",
		DataDir:         "/var/lib/lp",
		Bind:            "127.0.0.1",
		Ports:           Ports{API: 7070, Raft: 7071, Gossip: 7072},
		Server:          true,
		BootstrapExpect: 3,
		Join:            []string{"127.0.0.1:7072"},
		Pair:            "sip-1",
		Role:            RoleActive,
		Roles:           RolesManaged,
		FailoverAfter:   2 * time.Second,
		OnPromote:       "/usr/local/bin/sip-promote",
		OnDemote:        "/usr/local/bin/sip-demote",
		RoleProbe:       "/usr/local/bin/sip-role",
		Targets:         map[string]Target{"sipd": {PIDFile: "/run/sipd.pid"}},
		Health: []Check{{
			Name: "sip-port", TCP: "127.0.0.1:5060",
			Interval: time.Second, Timeout: 500 * time.Millisecond, Failures: 3, Successes: 2,
		}},
		TLS: TLS{
			CA:   filepath.Join(dir, "ca.pem"),
			Cert: filepath.Join(dir, "node.pem"),
			Key:  filepath.Join(dir, "node-key.pem"),
		},
		GossipKey:   key,
		TrustedKeys: []string{"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="},
		ExecChecks:  ExecAllow,
		DebugDir:    DefaultDebugDir,
		Heartbeat:   Heartbeat{Timing: TimingLANFast},
		Raft:        DefaultRaft(),
		Retention:   DefaultRetention(),
		Priority:    Priority{Nice: DefaultNice, RT: DefaultRT},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("LoadNode(%s) =\n%+v\nwant\n%+v", path, n, want)
	}
	if got := n.Unsupported(); len(got) != 0 {
		t.Errorf("Unsupported() = %q; want none", got)
	}
}

func TestParseNodeDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func() Node
	}{
		{
			name: "active node gets every default",
			yaml: minimalNode,
			want: func() Node {
				n := DefaultNode()
				n.Node, n.Pair, n.Role = "a1", "p1", RoleActive
				n.Targets = map[string]Target{"sipd": {Comm: "sipd"}}
				return n
			},
		},
		{
			name: "witness needs no pair and no targets",
			yaml: "node: w\nrole: witness\nserver: true\nbootstrap_expect: 3\n",
			want: func() Node {
				n := DefaultNode()
				n.Node, n.Role, n.Server, n.BootstrapExpect = "w", RoleWitness, true, 3
				return n
			},
		},
		{
			name: "null values keep defaults",
			yaml: minimalNode + "ports:\nfailover_after: ~\nhealth:\n",
			want: func() Node {
				n := DefaultNode()
				n.Node, n.Pair, n.Role = "a1", "p1", RoleActive
				n.Targets = map[string]Target{"sipd": {Comm: "sipd"}}
				return n
			},
		},
		{
			name: "check defaults and derived names",
			yaml: minimalNode + `health:
  - tcp: 127.0.0.1:5060
  - process: sipd
    interval: 250ms
  - http: http://127.0.0.1:8080/health
  - exec: /bin/true
`,
			want: func() Node {
				n := DefaultNode()
				n.Node, n.Pair, n.Role = "a1", "p1", RoleActive
				n.Targets = map[string]Target{"sipd": {Comm: "sipd"}}
				c := DefaultCheck()
				c1, c2, c3, c4 := c, c, c, c
				c1.TCP, c1.Name = "127.0.0.1:5060", "tcp:127.0.0.1:5060"
				c2.Process, c2.Name, c2.Interval = "sipd", "process:sipd", 250*time.Millisecond
				c3.HTTP, c3.Name = "http://127.0.0.1:8080/health", "http:http://127.0.0.1:8080/health"
				c4.Exec, c4.Name = "/bin/true", "exec:/bin/true"
				n.Health = []Check{c1, c2, c3, c4}
				return n
			},
		},
		{
			name: "partial ports, anchors and aliases",
			yaml: minimalNode + "ports: {api: 8080}\nbind: &ip 10.0.0.1\ninsecure: true\njoin: [127.0.0.1:7072]\nhealth:\n  - process: &t sipd\n  - {name: again, process: *t}\n",
			want: func() Node {
				n := DefaultNode()
				n.Node, n.Pair, n.Role = "a1", "p1", RoleActive
				n.Targets = map[string]Target{"sipd": {Comm: "sipd"}}
				n.Ports.API = 8080
				n.Bind, n.Insecure = "10.0.0.1", true
				n.Join = []string{"127.0.0.1:7072"}
				c1, c2 := DefaultCheck(), DefaultCheck()
				c1.Process, c1.Name = "sipd", "process:sipd"
				c2.Process, c2.Name = "sipd", "again"
				n.Health = []Check{c1, c2}
				return n
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNode([]byte(tt.yaml), "/etc/lp/lpd.yaml")
			if err != nil {
				t.Fatalf("ParseNode error: %v; want nil", err)
			}
			if want := tt.want(); !reflect.DeepEqual(*got, want) {
				t.Errorf("ParseNode =\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestParseNodeRelativePaths(t *testing.T) {
	y := minimalNode + "data_dir: data\ntargets: {sipd: {pidfile: run/sipd.pid}, other: {exe: /usr/sbin/x}}\n"
	y = strings.Replace(y, "targets: {sipd: {comm: sipd}}\n", "", 1)
	n, err := ParseNode([]byte(y), "/etc/lp/lpd.yaml")
	if err != nil {
		t.Fatalf("ParseNode error: %v; want nil", err)
	}
	if n.DataDir != "/etc/lp/data" {
		t.Errorf("DataDir = %q; want %q", n.DataDir, "/etc/lp/data")
	}
	if got := n.Targets["sipd"].PIDFile; got != "/etc/lp/run/sipd.pid" {
		t.Errorf("targets.sipd.pidfile = %q; want %q", got, "/etc/lp/run/sipd.pid")
	}
	if got := n.Targets["other"].Exe; got != "/usr/sbin/x" {
		t.Errorf("targets.other.exe = %q; want %q", got, "/usr/sbin/x")
	}
	if got := n.Unsupported(); len(got) != 0 {
		t.Errorf("Unsupported() = %q; want none", got)
	}
}

// errorCase is an input that must be refused at Line, naming Field, of
// kind Err, with Msg in the message.
type errorCase struct {
	name  string
	yaml  string
	line  int
	field string
	err   error
	msg   string
}

func TestParseNodeErrors(t *testing.T) {
	tests := []errorCase{
		// File-level problems.
		{"empty file", "", 1, "", ErrEmpty, "empty file"},
		{"only comments", "# nothing\n", 1, "", ErrEmpty, "empty file"},
		{"null document", "~\n", 1, "", ErrEmpty, "empty file"},
		{"not a mapping", "- a\n- b\n", 1, "", ErrType, "want a mapping of settings, got a list"},
		{"syntax", "node: a1\npair: p1\n  role: x\n", 3, "", ErrSyntax, "mapping values are not allowed"},
		{"tab indentation", "node: a1\nports:\n\tapi: 1\n", 3, "", ErrSyntax, "cannot start any token"},
		{"two documents", minimalNode + "---\nnode: b\n", 5, "", ErrSyntax, "more than one YAML document"},
		{"unknown key with suggestion", minimalNode + "prots: {api: 1}\n", 5, "", ErrUnknownKey, `unknown key "prots" (did you mean "ports"?)`},
		{"unknown key without suggestion", minimalNode + "colour: blue\n", 5, "", ErrUnknownKey, `unknown key "colour"`},
		{"unknown nested key", minimalNode + "ports:\n  api: 1\n  grpc: 2\n", 7, "ports", ErrUnknownKey, `unknown key "grpc"`},
		{"unknown check key", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    intervall: 1s\n", 7, "health[0]", ErrUnknownKey, `(did you mean "interval"?)`},
		{"unknown target key", "node: a1\npair: p1\nrole: active\n\ntargets: {x: {pid: 1}}\n", 5, "targets.x", ErrUnknownKey, `unknown key "pid" (did you mean "pidfile"?)`},
		{"duplicate key", minimalNode + "bind: 10.0.0.1\nbind: 10.0.0.2\n", 6, "", ErrDuplicateKey, `duplicate key "bind" (first at line 5)`},
		{"duplicate top key", "node: a1\nnode: a2\npair: p1\nrole: active\n", 2, "", ErrDuplicateKey, `duplicate key "node"`},
		{"duplicate target", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd: {comm: a}\n  sipd: {comm: b}\n", 6, "targets", ErrDuplicateKey, `duplicate key "sipd"`},
		{"merge key", "node: a1\npair: p1\nrole: active\ntargets: {sipd: {comm: sipd}}\nbase: &b {api: 1}\n", 5, "", ErrUnknownKey, `unknown key "base"`},
		{"merge key refused", "node: a1\npair: p1\nrole: active\ntargets: {sipd: {comm: sipd}}\nports:\n  <<: {api: 1}\n", 6, "ports", ErrUnknownKey, "merge keys"},
		{"mapping as key", minimalNode + "? {a: 1}\n: x\n", 5, "", ErrType, "want a key name, got a mapping"},

		// Wrong types.
		{"port not an integer", minimalNode + "ports:\n  api: abc\n", 6, "ports.api", ErrType, `want an integer 1-65535, got "abc"`},
		{"port quoted", minimalNode + "ports: {raft: \"7071\"}\n", 5, "ports.raft", ErrType, `want an integer 1-65535, got "7071"`},
		{"port hex", minimalNode + "ports: {raft: 0x1F}\n", 5, "ports.raft", ErrType, "got 0x1F"},
		{"port float", minimalNode + "ports: {raft: 7071.5}\n", 5, "ports.raft", ErrType, "got 7071.5"},
		{"ports a list", minimalNode + "ports: [1, 2]\n", 5, "ports", ErrType, "want a mapping, got a list"},
		{"server not bool", minimalNode + "server: yes\n", 5, "server", ErrType, `want true or false, got "yes"`},
		{"duration integer", minimalNode + "failover_after: 2\n", 5, "failover_after", ErrType, `want a duration like "2s" or "500ms", got 2`},
		{"duration garbage", minimalNode + "failover_after: soon\n", 5, "failover_after", ErrType, `got "soon"`},
		{"string a mapping", minimalNode + "pair2: x\n", 5, "", ErrUnknownKey, `did you mean "pair"?`},
		{"name a list", "node: [a]\n", 1, "node", ErrType, "want a node name, got a list"},
		{"name a bool", "node: true\n", 1, "node", ErrType, "want a node name, got true"},
		{"join a string", minimalNode + "join: 127.0.0.1:7072\n", 5, "join", ErrType, `want a list like [host:port], got "127.0.0.1:7072"`},
		{"join element a list", minimalNode + "join:\n  - [a]\n", 6, "join[0]", ErrType, "want host:port, got a list"},
		{"join element null", minimalNode + "join:\n  - ~\n", 6, "join[0]", ErrType, "want host:port, got ~"},
		{"health a mapping", minimalNode + "health: {tcp: x}\n", 5, "health", ErrType, "want a list of checks, got a mapping"},
		{"check a string", minimalNode + "health:\n  - tcp\n", 6, "health[0]", ErrType, `want a check`},
		{"failures not integer", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    failures: many\n", 7, "health[0].failures", ErrType, `want an integer >= 1, got "many"`},
		{"custom tag", "node: a1\nrole: active\ntargets: {sipd: {comm: sipd}}\n\npair: !foo p1\n", 5, "pair", ErrType, `"!foo"`},
		{"binary tag", "node: a1\nrole: active\ntargets: {sipd: {comm: sipd}}\n\npair: !!binary cDE=\n", 5, "pair", ErrType, `want a pair name`},
		{"bootstrap_expect zero", "node: w\nrole: witness\nserver: true\nbootstrap_expect: 0\n", 4, "bootstrap_expect", ErrInvalid, "0 below minimum 1"},
		{"gossip key not base64", minimalNode + "gossip_key: BASE64-32-BYTES\n", 5, "gossip_key", ErrInvalid, "want base64 of a 16, 24 or 32 byte key"},

		// Rules (Validate), placed at the right line.
		{"heartbeat unknown timing", minimalNode + "heartbeat:\n  timing: wan\n", 6, "heartbeat.timing", ErrInvalid, `want lan-fast, lan or custom, got "wan"`},
		{"heartbeat key without custom", minimalNode + "heartbeat:\n  timing: lan\n  probe_interval: 1s\n", 7, "heartbeat.probe_interval", ErrInvalid, "only with timing: custom (timing is lan)"},
		{"heartbeat key with default timing", minimalNode + "heartbeat:\n  suspicion_mult: 4\n", 6, "heartbeat.suspicion_mult", ErrInvalid, "only with timing: custom (timing is lan-fast)"},
		{"heartbeat custom default timeout", minimalNode + "heartbeat:\n  timing: custom\n  probe_interval: 10ms\n  probe_timeout: 20ms\n", 8, "heartbeat.probe_timeout", ErrInvalid, "20ms: want more than 0 and less than probe_interval (10ms)"},
		{"heartbeat timeout above interval", minimalNode + "heartbeat:\n  timing: custom\n  probe_interval: 200ms\n  probe_timeout: 200ms\n  suspicion_mult: 4\n", 8, "heartbeat.probe_timeout", ErrInvalid, "want more than 0 and less than probe_interval (200ms)"},
		{"heartbeat interval too short", minimalNode + "heartbeat:\n  timing: custom\n  probe_interval: 1ms\n  probe_timeout: 1ms\n  suspicion_mult: 4\n", 7, "heartbeat.probe_interval", ErrInvalid, "1ms out of range 10ms-1m0s"},
		{"heartbeat mult zero", minimalNode + "heartbeat:\n  timing: custom\n  probe_interval: 1s\n  probe_timeout: 500ms\n  suspicion_mult: 0\n", 9, "heartbeat.suspicion_mult", ErrInvalid, "0 out of range 1-100"},
		{"heartbeat mult type", minimalNode + "heartbeat:\n  timing: custom\n  suspicion_mult: lots\n", 7, "heartbeat.suspicion_mult", ErrType, `want an integer 1-100, got "lots"`},
		{"heartbeat unknown key", minimalNode + "heartbeat:\n  probe_intervall: 1s\n", 6, "heartbeat", ErrUnknownKey, `(did you mean "probe_interval"?)`},
		{"raft election below heartbeat", minimalNode + "raft:\n  heartbeat_timeout: 2s\n", 5, "raft.election_timeout", ErrInvalid, "600ms is less than heartbeat_timeout 2s"},
		{"raft lease above heartbeat", minimalNode + "raft:\n  leader_lease_timeout: 1s\n", 6, "raft.leader_lease_timeout", ErrInvalid, "1s is more than heartbeat_timeout 600ms"},
		{"raft timeout too short", minimalNode + "raft:\n  heartbeat_timeout: 1ms\n", 6, "raft.heartbeat_timeout", ErrInvalid, "1ms out of range 5ms-5m0s"},
		{"raft threshold too small", minimalNode + "raft: {snapshot_threshold: 3}\n", 5, "raft.snapshot_threshold", ErrInvalid, "3 out of range 16-16777216"},
		{"raft unknown key", minimalNode + "raft:\n  heartbeat: 1s\n", 6, "raft", ErrUnknownKey, `did you mean "heartbeat_timeout"?`},
		{"retention negative", minimalNode + "retention:\n  plans: -1\n", 6, "retention.plans", ErrInvalid, "-1 is negative (0: no limit)"},
		{"retention age type", minimalNode + "retention:\n  history_age: 30d\n", 6, "retention.history_age", ErrType, `want a duration like "2s" or "500ms", got "30d"`},
		{"port out of range", minimalNode + "ports:\n  api: 70000\n", 6, "ports.api", ErrInvalid, "70000 out of range 1-65535"},
		{"port zero", minimalNode + "ports: {gossip: 0}\n", 5, "ports.gossip", ErrInvalid, "0 out of range 1-65535"},
		{"ports not distinct", minimalNode + "ports:\n  api: 7071\n", 5, "ports.raft", ErrInvalid, "7071 is also ports.api"},
		{"node missing", "pair: p1\nrole: active\n", 1, "node", ErrInvalid, "required"},
		{"node bad charset", "node: sip a1\n", 1, "node", ErrInvalid, `"sip a1" is not a valid name; want 1-64 characters`},
		{"node too long", "node: " + strings.Repeat("a", 65) + "\n", 1, "node", ErrInvalid, "want 1-64"},
		{"data_dir empty", minimalNode + "data_dir: ''\n", 5, "data_dir", ErrInvalid, "required"},
		{"bind not ip", minimalNode + "bind: localhost\n", 5, "bind", ErrInvalid, `want an IP address, got "localhost"`},
		{"bind unspecified", minimalNode + "bind: 0.0.0.0\n", 5, "bind", ErrInvalid, "not an address peers can reach"},
		{"join no port", minimalNode + "join:\n  - 127.0.0.1:7072\n  - 127.0.0.1\n", 7, "join[1]", ErrInvalid, `want host:port, got "127.0.0.1"`},
		{"join bad port", minimalNode + "join: [\"h:99999\"]\n", 5, "join[0]", ErrInvalid, "out of range"},
		{"bootstrap on non-server", minimalNode + "server: false\nbootstrap_expect: 3\n", 6, "bootstrap_expect", ErrInvalid, "only servers bootstrap"},
		{"role missing", "node: a1\npair: p1\n", 1, "role", ErrInvalid, "required"},
		{"role unknown", "node: a1\npair: p1\nrole: leader\n", 3, "role", ErrInvalid, `want active, standby or witness, got "leader"`},
		{"active without pair", "node: a1\nrole: active\ntargets: {sipd: {comm: sipd}}\n", 2, "pair", ErrInvalid, "required for role active"},
		{"standby without pair", "node: a1\n\nrole: standby\n", 3, "pair", ErrInvalid, "required for role standby"},
		{"pair bad charset", "node: a1\npair: p/1\nrole: active\n", 2, "pair", ErrInvalid, "not a valid name"},
		{"witness with pair", "node: w\nrole: witness\nserver: true\npair: p1\n", 4, "pair", ErrInvalid, "a witness belongs to no pair"},
		{"witness not server", "node: w\nrole: witness\n", 2, "server", ErrInvalid, "want server: true"},
		{"witness with targets", "node: w\nrole: witness\nserver: true\ntargets: {x: {comm: x}}\n", 4, "targets", ErrInvalid, "a witness runs no service"},
		{"roles unknown", minimalNode + "roles: auto\n", 5, "roles", ErrInvalid, `want managed or external, got "auto"`},
		{"external without probe", minimalNode + "roles: external\n", 5, "role_probe", ErrInvalid, "required when roles is external"},

		// Security keys.
		{"non-loopback bind without tls", minimalNode + "bind: 192.0.2.7\n", 5, "bind", ErrInvalid, "192.0.2.7 is not a loopback address and tls is not set"},
		{"insecure not bool", minimalNode + "insecure: maybe\n", 5, "insecure", ErrType, `want true or false, got "maybe"`},
		{"exec_checks unknown", minimalNode + "exec_checks: sometimes\n", 5, "exec_checks", ErrInvalid, `want allow or deny, got "sometimes"`},
		{"debug_dir relative", minimalNode + "debug_dir: debug\n", 5, "debug_dir", ErrInvalid, `want an absolute directory, got "debug"`},
		{"debug_dir not a string", minimalNode + "debug_dir: [a]\n", 5, "debug_dir", ErrType, "want a directory"},
		{"tokens a mapping", minimalNode + "tokens: {name: ci}\n", 5, "tokens", ErrType, "want a list of {name, role, sha256}"},
		{"token unknown key", minimalNode + "tokens:\n  - {name: ci, role: operator, secret: x}\n", 6, "tokens[0]", ErrUnknownKey, `unknown key "secret"`},
		{"token bad sha256", minimalNode + "tokens:\n  - {name: ci, role: operator, sha256: hunter2}\n", 6, "tokens[0].sha256", ErrInvalid, "want the 64 hex digits of the secret's sha256 (printf %s SECRET | sha256sum), got 7 characters"},
		{"token unknown role", minimalNode + "tokens:\n  - {name: ci, role: admin, sha256: " + sum64 + "}\n", 6, "tokens[0].role", ErrInvalid, `want reader or operator, got "admin"`},
		{"token node role", minimalNode + "tokens:\n  - {name: ci, role: node, sha256: " + sum64 + "}\n", 6, "tokens[0].role", ErrInvalid, "node identities come only from node certificates"},
		{"token without name", minimalNode + "tokens:\n  - {role: reader, sha256: " + sum64 + "}\n", 6, "tokens[0].name", ErrInvalid, "not a valid name"},
		{"token name twice", minimalNode + "tokens:\n  - {name: ci, role: reader, sha256: " + sum64 + "}\n  - {name: ci, role: reader, sha256: " + strings.Repeat("b", 64) + "}\n", 7, "tokens[1].name", ErrInvalid, "also tokens[0]"},
		{"token secret twice", minimalNode + "tokens:\n  - {name: a, role: reader, sha256: " + sum64 + "}\n  - {name: b, role: reader, sha256: " + strings.ToUpper(sum64) + "}\n", 7, "tokens[1].sha256", ErrInvalid, "the same secret as tokens[0]"},
		{"failover_after zero", minimalNode + "failover_after: 0s\n", 5, "failover_after", ErrInvalid, "must be positive"},
		{"failover_after negative", minimalNode + "failover_after: -1s\n", 5, "failover_after", ErrInvalid, "must be positive"},
		{"active without targets", "node: a1\npair: p1\nrole: active\n", 3, "targets", ErrInvalid, "required for role active"},
		{"target two ways", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd: {comm: sipd, exe: /usr/sbin/sipd}\n", 5, "targets.sipd", ErrInvalid, "want exactly one of pidfile, exe, comm; got 2"},
		{"target no way", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd:\n", 5, "targets.sipd", ErrInvalid, "got 0"},
		{"target bad name", "node: a1\npair: p1\nrole: active\ntargets:\n  sip d: {comm: x}\n", 5, "targets.sip d", ErrInvalid, "not a valid target name"},
		{"target match unknown", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd: {comm: sipd, match: many}\n", 5, "targets.sipd.match", ErrInvalid, `want one or all, got "many"`},
		{"target match all with pidfile", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd:\n    pidfile: /run/sipd.pid\n    match: all\n", 7, "targets.sipd.match", ErrInvalid, "all needs exe or comm: a pidfile names one process"},
		{"target match a list", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd: {comm: sipd, match: [all]}\n", 5, "targets.sipd.match", ErrType, "want one or all, got a list"},
		{"target exe relative", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd:\n    exe: sbin/sipd\n", 6, "targets.sipd.exe", ErrInvalid, "want an absolute path"},
		{"target comm too long", "node: a1\npair: p1\nrole: active\ntargets:\n  sipd:\n    comm: a-very-long-process-name\n", 6, "targets.sipd.comm", ErrInvalid, "at most 15"},
		{"check none", minimalNode + "health:\n  - name: x\n", 6, "health[0]", ErrInvalid, "want exactly one of exec, tcp, http, process; got none"},
		{"check two", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    exec: /bin/true\n", 6, "health[0]", ErrInvalid, "got exec and tcp"},
		{"check tcp bad", minimalNode + "health:\n  - tcp: localhost\n", 6, "health[0].tcp", ErrInvalid, `want host:port, got "localhost"`},
		{"check http bad", minimalNode + "health:\n  - http: ftp://x/\n", 6, "health[0].http", ErrInvalid, "want an http:// or https:// URL"},
		{"check process unknown", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n  - process: sipx\n", 7, "health[1].process", ErrInvalid, `"sipx" is not a key of targets (have: sipd)`},
		{"witness process check", "node: w\nrole: witness\nserver: true\nhealth:\n  - process: sipd\n", 5, "health[0].process", ErrInvalid, "(have: none)"},
		{"check interval too small", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    interval: 1ms\n", 7, "health[0].interval", ErrInvalid, "1ms below minimum 10ms"},
		{"check timeout zero", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    timeout: 0s\n", 7, "health[0].timeout", ErrInvalid, "must be positive"},
		{"check failures zero", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    failures: 0\n", 7, "health[0].failures", ErrInvalid, "0 below minimum 1"},
		{"check successes negative", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n    successes: -2\n", 7, "health[0].successes", ErrInvalid, "-2 below minimum 1"},
		{"check names collide", minimalNode + "health:\n  - tcp: 127.0.0.1:1\n  - tcp: 127.0.0.1:1\n", 7, "health[1].name", ErrInvalid, `"tcp:127.0.0.1:1" is also the name of health[0]`},
		{"explicit names collide", minimalNode + "health:\n  - {name: a, tcp: 127.0.0.1:1}\n  - name: a\n    exec: /bin/true\n", 7, "health[1].name", ErrInvalid, `"a" is also the name of health[0]`},
		{"check name control char", minimalNode + "health:\n  - {name: \"a\\tb\", exec: x}\n", 6, "health[0].name", ErrInvalid, "printable"},
		{"tls partial", minimalNode + "tls:\n  ca: ca.pem\n", 5, "tls.cert", ErrInvalid, "want all of ca, cert, key"},
		{"gossip key wrong size", minimalNode + "gossip_key: AAECAwQFBgcICQ==\n", 5, "gossip_key", ErrInvalid, "got 10 bytes"},
		{"trusted key empty", minimalNode + "trusted_keys: ['']\n", 5, "trusted_keys[0]", ErrInvalid, "empty string"},
		{"trusted key not base64", minimalNode + "trusted_keys: [" + testPub + ", 'not a key!']\n", 5, "trusted_keys[1]", ErrInvalid, `"not a key!" is not an ed25519 public key: ed25519 public key is not base64`},
		{"trusted key wrong size", minimalNode + "trusted_keys:\n  - AAECAwQFBgcICQ==\n", 6, "trusted_keys[0]", ErrInvalid, "decodes to 10 bytes; want 32 (want the one line of a KEY.pub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNode([]byte(tt.yaml), "lpd.yaml")
			checkError(t, n, err, "lpd.yaml", tt)
		})
	}
}

// checkError asserts that err is an *Error matching tt, rendered on one
// line as "FILE:LINE: FIELD: ...".
func checkError[T any](t *testing.T, got *T, err error, file string, tt errorCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("got %+v, nil error; want error %q", *got, tt.msg)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is %T; want *Error", err, err)
	}
	if e.Line != tt.line {
		t.Errorf("error %q: line %d; want %d", err, e.Line, tt.line)
	}
	if e.Field != tt.field {
		t.Errorf("error %q: field %q; want %q", err, e.Field, tt.field)
	}
	if !errors.Is(err, tt.err) {
		t.Errorf("error %q: errors.Is(%v) false; want true", err, tt.err)
	}
	s := err.Error()
	if !strings.Contains(s, tt.msg) {
		t.Errorf("error %q; want it to contain %q", s, tt.msg)
	}
	prefix := file + ":" + strconv.Itoa(tt.line) + ": "
	if tt.field != "" {
		prefix += tt.field + ": "
	}
	if !strings.HasPrefix(s, prefix) {
		t.Errorf("error %q; want prefix %q", s, prefix)
	}
	if strings.ContainsAny(s, "\r\n") {
		t.Errorf("error %q spans lines; want one line", s)
	}
}

func TestParseNodeSecurityKeys(t *testing.T) {
	y := minimalNode + "bind: 192.0.2.7\ninsecure: true\nexec_checks: deny\ntokens:\n  - {name: ci, role: operator, sha256: " + strings.ToUpper(sum64) + "}\n  - {name: dash, role: reader, sha256: " + strings.Repeat("0", 64) + "}\n"
	n, err := ParseNode([]byte(y), "/etc/lp/lpd.yaml")
	if err != nil {
		t.Fatalf("ParseNode error: %v; want nil", err)
	}
	want := []Token{{Name: "ci", Role: TokenOperator, SHA256: sum64}, {Name: "dash", Role: TokenReader, SHA256: strings.Repeat("0", 64)}}
	if !reflect.DeepEqual(n.Tokens, want) || !n.Insecure || n.ExecChecks != ExecDeny {
		t.Errorf("ParseNode = tokens %+v, insecure %v, exec_checks %q; want %+v, true, deny", n.Tokens, n.Insecure, n.ExecChecks, want)
	}
	// A loopback bind needs no tls; a non-loopback one with tls needs no insecure.
	for _, y := range []string{minimalNode + "bind: ::1\n", minimalNode + "bind: 127.0.0.2\n",
		minimalNode + "bind: 192.0.2.7\ntls: {ca: ca.pem, cert: a1.pem, key: a1-key.pem}\n"} {
		if _, err := ParseNode([]byte(y), "/etc/lp/lpd.yaml"); err != nil {
			t.Errorf("ParseNode(%q) error: %v; want nil", y, err)
		}
	}
}

func TestTargetMatch(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want Target
		all  bool
	}{
		{"sipd: {comm: sipd}", Target{Comm: "sipd"}, false},
		{"sipd: {comm: sipd, match: one}", Target{Comm: "sipd", Match: MatchOne}, false},
		{"sipd: {comm: sipd, match: all}", Target{Comm: "sipd", Match: MatchAll}, true},
		{"sipd: {exe: /usr/sbin/sipd, match: all}", Target{Exe: "/usr/sbin/sipd", Match: MatchAll}, true},
		{"sipd: {pidfile: /run/sipd.pid, match: one}", Target{PIDFile: "/run/sipd.pid", Match: MatchOne}, false},
	} {
		n, err := ParseNode([]byte("node: a1\npair: p1\nrole: active\ntargets:\n  "+tt.yaml+"\n"), "/etc/lpd.yaml")
		if err != nil {
			t.Errorf("ParseNode(%s): %v; want nil", tt.yaml, err)
			continue
		}
		if got := n.Targets["sipd"]; got != tt.want || got.All() != tt.all {
			t.Errorf("ParseNode(%s) target = %+v (all %v); want %+v (all %v)", tt.yaml, got, got.All(), tt.want, tt.all)
		}
	}
}
