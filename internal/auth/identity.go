package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Roles. A role is what an identity may do: reader reads, operator reads
// and writes (submit, rollback, pause, resume, abort, promote), node calls
// the node-to-node endpoints and reads.
const (
	RoleReader   = "reader"
	RoleOperator = "operator"
	RoleNode     = "node"
)

// Where an identity comes from (Identity.Via).
const (
	ViaCert     = "cert"
	ViaToken    = "token"
	ViaInsecure = "insecure" // insecure: true on a non-loopback bind: nobody is checked
	// A plain loopback lpd names local callers "local uid N".
)

// ErrNoIdentity: the caller presented nothing lp can authenticate.
var ErrNoIdentity = errors.New("no identity")

// Identity is an authenticated caller.
type Identity struct {
	Role string // RoleReader, RoleOperator or RoleNode
	Name string // certificate CommonName, token name, or local user
	Via  string // ViaCert, ViaToken, ViaInsecure or "local uid N"
	// Local is a caller lp trusts as itself: root (or lpd's own user) on a
	// plain loopback lpd, or anyone on an insecure lpd. It may write and
	// speak for any node; its Role is RoleOperator.
	Local bool
}

// String is the audit form: "operator:alice (cert)".
func (id Identity) String() string {
	return id.Role + ":" + id.Name + " (" + id.Via + ")"
}

// CanRead reports whether id may read the cluster's state.
func (id Identity) CanRead() bool {
	switch id.Role {
	case RoleReader, RoleOperator, RoleNode:
		return true
	}
	return false
}

// CanOperate reports whether id may make operator writes.
func (id Identity) CanOperate() bool { return id.Role == RoleOperator }

// SpeaksFor reports whether id may make a node-to-node call on behalf of
// node: a node certificate whose CommonName is node, or a Local caller.
func (id Identity) SpeaksFor(node string) bool {
	return id.Local || id.Role == RoleNode && id.Name == node && node != ""
}

// IsNode reports whether id may call node-to-node endpoints at all.
func (id Identity) IsNode() bool { return id.Local || id.Role == RoleNode }

// FromCert maps a verified certificate to its identity: Organization
// "node", "operator" or "reader" is the role, CommonName the name.
func FromCert(c *x509.Certificate) (Identity, error) {
	if c == nil {
		return Identity{}, ErrNoIdentity
	}
	name := c.Subject.CommonName
	if !validName(name) {
		return Identity{}, fmt.Errorf("certificate CommonName %q is not a valid name", clip(name))
	}
	if len(c.Subject.Organization) != 1 {
		return Identity{}, fmt.Errorf("certificate of %s has %d organizations; want exactly one of node, operator, reader", name, len(c.Subject.Organization))
	}
	switch org := c.Subject.Organization[0]; org {
	case RoleNode, RoleOperator, RoleReader:
		return Identity{Role: org, Name: name, Via: ViaCert}, nil
	default:
		return Identity{}, fmt.Errorf("certificate of %s has organization %q, which is no lp role (want node, operator or reader)", name, clip(org))
	}
}

// ParseIdentity parses the audit form String writes. A follower forwards a
// write to the leader with the identity it authenticated in a header; the
// leader parses it only when the forwarding caller is itself a node (a
// node certificate, or a Local caller): no operator can assert one.
func ParseIdentity(s string) (Identity, error) {
	if len(s) > 200 {
		return Identity{}, fmt.Errorf("identity is %d bytes; at most 200", len(s))
	}
	head, via, ok := strings.Cut(s, " (")
	if !ok || !strings.HasSuffix(via, ")") {
		return Identity{}, fmt.Errorf("identity %q: want ROLE:NAME (VIA)", clip(s))
	}
	via = strings.TrimSuffix(via, ")")
	role, name, ok := strings.Cut(head, ":")
	if !ok {
		return Identity{}, fmt.Errorf("identity %q: want ROLE:NAME (VIA)", clip(s))
	}
	switch role {
	case RoleReader, RoleOperator, RoleNode:
	default:
		return Identity{}, fmt.Errorf("identity %q: unknown role %q", clip(s), clip(role))
	}
	if !validName(name) {
		return Identity{}, fmt.Errorf("identity %q: bad name", clip(s))
	}
	if !validVia(via) {
		return Identity{}, fmt.Errorf("identity %q: bad origin %q", clip(s), clip(via))
	}
	id := Identity{Role: role, Name: name, Via: via}
	// A forwarded Local identity stays Local: the forwarding node trusted
	// it as itself, and the leader trusts that node.
	id.Local = role == RoleOperator && (via == ViaInsecure || strings.HasPrefix(via, "local uid "))
	return id, nil
}

func validVia(v string) bool {
	switch v {
	case ViaCert, ViaToken, ViaInsecure:
		return true
	}
	uid, ok := strings.CutPrefix(v, "local uid ")
	if !ok || uid == "" || len(uid) > 10 {
		return false
	}
	for i := 0; i < len(uid); i++ {
		if uid[i] < '0' || uid[i] > '9' {
			return false
		}
	}
	return true
}

// validName matches lp's names, [A-Za-z0-9._-]{1,64}, plus '@' for people
// (alice@example.com).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == '@':
		default:
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
