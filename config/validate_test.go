package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// validNode is a node built in code, as lpd's tests or a wizard would.
func validNode() Node {
	n := DefaultNode()
	n.Node, n.Pair, n.Role = "a1", "p1", RoleStandby
	n.Targets = map[string]Target{"sipd": {Exe: "/usr/sbin/sipd"}}
	return n
}

func TestValidateInCode(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Node)
		field  string // "" = valid
		msg    string
	}{
		{"valid", func(*Node) {}, "", ""},
		{"valid external with probe", func(n *Node) { n.Roles, n.RoleProbe = RolesExternal, "/bin/probe" }, "", ""},
		{"valid ipv6 bind and join", func(n *Node) { n.Bind, n.Join = "::1", []string{"[::1]:7072", "peer.example:7072"} }, "", ""},
		{"valid gossip key 16", func(n *Node) { n.GossipKey = make([]byte, 16) }, "", ""},
		{"valid check without name", func(n *Node) {
			c := DefaultCheck()
			c.Process = "sipd"
			n.Health = []Check{c}
		}, "", ""},
		{"zero node", func(n *Node) { *n = Node{} }, "node", "node: required; want 1-64 characters from A-Z a-z 0-9 . _ -"},
		{"port range", func(n *Node) { n.Ports.API = 70000 }, "ports.api", "ports.api: 70000 out of range 1-65535"},
		{"port negative", func(n *Node) { n.Ports.Raft = -1 }, "ports.raft", "ports.raft: -1 out of range 1-65535"},
		{"ports equal", func(n *Node) { n.Ports.Gossip = n.Ports.API }, "ports.gossip", "ports.gossip: 7070 is also ports.api; each port must differ"},
		{"bootstrap negative", func(n *Node) { n.Server, n.BootstrapExpect = true, -1 }, "bootstrap_expect", "bootstrap_expect: -1 below minimum 1"},
		{"gossip key size", func(n *Node) { n.GossipKey = make([]byte, 31) }, "gossip_key", "gossip_key: want base64 of a 16, 24 or 32 byte key, got 31 bytes"},
		{"check zero interval", func(n *Node) {
			n.Health = []Check{{TCP: "127.0.0.1:1", Timeout: time.Second, Failures: 1, Successes: 1}}
		}, "health[0].interval", "health[0].interval: 0s below minimum 10ms"},
		{"tls missing key", func(n *Node) { n.TLS = TLS{CA: "a", Cert: "b"} }, "tls.key", "tls.key: required when tls is set: want all of ca, cert, key"},
		{"target empty name", func(n *Node) { n.Targets[""] = Target{Comm: "x"} }, "targets.", `targets.: "" is not a valid target name; want 1-64 characters from A-Z a-z 0-9 . _ -`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validNode()
			tt.modify(&n)
			err := n.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate() = %v (%T); want *Error", err, err)
			}
			if e.Field != tt.field || e.File != "" || e.Line != 0 || !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate() = %+v; want field %q, no file or line, ErrInvalid", *e, tt.field)
			}
			if err.Error() != tt.msg {
				t.Errorf("Validate() = %q; want %q", err.Error(), tt.msg)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Node)
		want   []string
	}{
		{"none", func(*Node) {}, nil},
		{"tls is supported", func(n *Node) { n.TLS.CA = "ca.pem" }, nil},
		{"trusted_keys is supported", func(n *Node) { n.TrustedKeys = []string{testPub} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validNode()
			tt.modify(&n)
			if got := n.Unsupported(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Unsupported() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestPlanValidateInCode(t *testing.T) {
	p := DefaultPlan()
	if err := p.Validate(); err == nil || err.Error() != "name: required; want 1-64 characters from A-Z a-z 0-9 . _ -" {
		t.Errorf("DefaultPlan().Validate() = %v; want name required", err)
	}
	p.Name, p.Patch, p.Target = "p", "fix.so", "sipd"
	if err := p.Validate(); err != nil {
		t.Errorf("Validate() = %v; want nil", err)
	}
	p.ProgressDeadline = p.Trial
	if err := p.Validate(); err == nil || err.Error() != "progress_deadline: 30s must exceed trial (30s)" {
		t.Errorf("Validate() = %v; want progress_deadline must exceed trial", err)
	}
}

func TestCheckDerivedName(t *testing.T) {
	// Two-byte runes everywhere, so that any cut may fall inside one.
	long := strings.Repeat("é", 100)
	tests := []struct {
		check Check
		want  string
	}{
		{Check{Exec: "/bin/true"}, "exec:/bin/true"},
		{Check{TCP: "127.0.0.1:5060"}, "tcp:127.0.0.1:5060"},
		{Check{HTTP: "http://h/x"}, "http:http://h/x"},
		{Check{Process: "sipd"}, "process:sipd"},
		{Check{}, ""},
		{Check{Exec: "a", TCP: "b"}, ""},
	}
	for _, tt := range tests {
		if got := tt.check.DerivedName(); got != tt.want {
			t.Errorf("%+v.DerivedName() = %q; want %q", tt.check, got, tt.want)
		}
	}
	c := Check{Exec: long}
	name := c.DerivedName()
	if len(name) > maxCheckNameLen || !printable(name) {
		t.Errorf("DerivedName() of a long command = %q (%d bytes); want at most %d printable bytes", name, len(name), maxCheckNameLen)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"node", "data_dir", "bind", "ports", "server", "pair", "role", "roles", "targets", "health"}
	tests := []struct{ key, want string }{
		{"prots", "ports"},
		{"Ports", "ports"},
		{"servr", "server"},
		{"healht", "health"},
		{"datadir", "data_dir"},
		{"target", "targets"},
		{"rol", "role"},
		{"xyz", ""},
		{"colour", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.key, keys); got != tt.want {
			t.Errorf("suggest(%q) = %q; want %q", tt.key, got, tt.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "lpd.yaml", Line: 12, Field: "ports.api", Msg: `want an integer 1-65535, got "abc"`}, `lpd.yaml:12: ports.api: want an integer 1-65535, got "abc"`},
		{Error{File: "lpd.yaml", Line: 7, Msg: `unknown key "prots"`}, `lpd.yaml:7: unknown key "prots"`},
		{Error{File: "lpd.yaml", Msg: "file is 9 bytes"}, "lpd.yaml: file is 9 bytes"},
		{Error{Field: "node", Msg: "required"}, "node: required"},
		{Error{File: "f", Line: 1, Msg: "a\nb\r\nc"}, "f:1: a b  c"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q; want %q", got, tt.want)
		}
	}
}
