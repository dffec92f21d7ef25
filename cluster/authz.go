package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"lp/cluster/api"
	"lp/internal/auth"
)

// Who may call what. Every route of the API names one of these (handler);
// nothing is reachable without it.
//
//   - needRead: GETs; any identity (reader, operator, node; on a plain
//     loopback lpd every local user).
//   - needOperate: the operator writes (submit, plan actions, rollback,
//     promote).
//   - needNode: the node-to-node endpoints (/v1/internal/*); the handler
//     also checks that the caller speaks for the node named in the request
//     (speaksFor).
//
// How a caller is identified (identify):
//   - with tls: a verified client certificate (Organization = role,
//     CommonName = name), else a bearer token; nothing else.
//   - without tls, insecure: true: everyone is Local (no checks at all).
//   - without tls on loopback: a bearer token, else the uid owning the
//     peer socket (/proc/net/tcp): root or lpd's own user is Local (may
//     write and speak for any node: local lpds run as root), anyone else
//     a reader.
//
// Forwarding: a follower sends a write to the leader over its own node
// certificate (or, plain, as local root) with the identity it
// authenticated in api.HeaderIdentity, as one command (commit.go,
// authorized again by mayCommit) or, for what only the leader can do, as
// the forwarded request (Node.write); the leader honours that header only
// from a caller that is itself a node, and authorizes the request again as
// that identity.
type need int

const (
	needRead need = iota
	needOperate
	needNode
	// needNodeCaller: the connection must be a node's; the request acts
	// for the identity it forwards (see commit.go), which the handler
	// authorizes itself.
	needNodeCaller
)

type ctxKey int

const (
	identityKey ctxKey = iota // auth.Identity of the request
	peerUIDKey                // peerUID of a plain loopback connection
)

// peerUID is the owner of a plain loopback connection's other end.
type peerUID struct {
	uid uint32
	err error
}

// loadSecurity loads and checks the node's TLS material and tokens: what
// cannot be used is a refusal to start, never a warning.
func (n *Node) loadSecurity() error {
	c := n.cfg.Node
	if c.TLS.CA != "" || c.TLS.Cert != "" || c.TLS.Key != "" {
		t, err := auth.LoadNodeTLS(c.TLS.CA, c.TLS.Cert, c.TLS.Key, n.name, time.Now())
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		n.tls = t
	}
	var toks []auth.Token
	for _, t := range c.Tokens {
		toks = append(toks, auth.Token{Name: t.Name, Role: t.Role, SHA256: t.SHA256})
	}
	ts, err := auth.NewTokens(toks)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	n.tokens = ts
	n.clientTransport = http.DefaultTransport.(*http.Transport).Clone()
	n.clientTransport.MaxIdleConnsPerHost = 8
	if n.tls != nil {
		n.clientTransport.TLSClientConfig = n.tls.NodeClient()
	}
	return nil
}

// apiListener wraps the API listener in TLS when the node has it.
func (n *Node) apiListener(ln net.Listener) net.Listener {
	if n.tls == nil {
		return ln
	}
	return tls.NewListener(ln, n.tls.APIServer(n.tokens.Len() > 0))
}

// scheme is the API's URL scheme, the same on every node of a cluster.
func (n *Node) scheme() string {
	if n.tls != nil {
		return "https"
	}
	return "http"
}

// internalClient is a client for another node's (or this node's) API that
// authenticates as this node.
func (n *Node) internalClient(addr string) *api.Client {
	c := api.NewClient(n.scheme() + "://" + addr)
	c.HTTP = &http.Client{Timeout: 5 * time.Second, Transport: n.clientTransport}
	return c
}

// connContext records, for a plain loopback lpd, which uid owns the peer
// of each new connection (once per connection, while it is open).
func (n *Node) connContext(ctx context.Context, c net.Conn) context.Context {
	if n.tls != nil || n.cfg.Node.Insecure {
		return ctx
	}
	server, err1 := netip.ParseAddrPort(c.LocalAddr().String())
	peer, err2 := netip.ParseAddrPort(c.RemoteAddr().String())
	if err1 != nil || err2 != nil {
		return context.WithValue(ctx, peerUIDKey, peerUID{err: fmt.Errorf("bad address %v %v", err1, err2)})
	}
	uid, err := auth.LoopbackPeerUID("/proc", server, peer) // this netns, whatever ProcRoot says
	return context.WithValue(ctx, peerUIDKey, peerUID{uid: uid, err: err})
}

// identify authenticates a request. A status other than 0 is the refusal.
func (n *Node) identify(r *http.Request) (auth.Identity, int, string) {
	id, status, msg := n.caller(r)
	if status != 0 {
		return id, status, msg
	}
	if h := r.Header.Get(api.HeaderIdentity); h != "" && id.IsNode() {
		fwd, err := auth.ParseIdentity(h)
		if err != nil {
			return auth.Identity{}, http.StatusBadRequest, "bad forwarded identity: " + err.Error()
		}
		if n.tls != nil {
			fwd.Local = false // plain-mode trust does not travel into a TLS cluster
		}
		return fwd, 0, ""
	}
	return id, 0, ""
}

// caller is the identity of the connection or token itself.
func (n *Node) caller(r *http.Request) (auth.Identity, int, string) {
	if n.tls != nil {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
			id, err := auth.FromCert(r.TLS.PeerCertificates[0])
			if err != nil {
				return auth.Identity{}, http.StatusForbidden, "forbidden: " + err.Error()
			}
			return id, 0, ""
		}
		if id, status, msg, ok := n.bearer(r); ok {
			return id, status, msg
		}
		return auth.Identity{}, http.StatusUnauthorized, "unauthorized: no identity; present a client certificate signed by the cluster's CA (--cert, --key) or a bearer token (--token)"
	}
	if n.cfg.Node.Insecure {
		return auth.Identity{Role: auth.RoleOperator, Name: "anonymous", Via: auth.ViaInsecure, Local: true}, 0, ""
	}
	if id, status, msg, ok := n.bearer(r); ok {
		return id, status, msg
	}
	pu, ok := r.Context().Value(peerUIDKey).(peerUID)
	if !ok || pu.err != nil {
		// Unknown local user: reads only.
		return auth.Identity{Role: auth.RoleReader, Name: "unknown", Via: "local"}, 0, ""
	}
	via := "local uid " + strconv.FormatUint(uint64(pu.uid), 10)
	name := n.users.name(pu.uid)
	if pu.uid == 0 || int(pu.uid) == os.Geteuid() {
		return auth.Identity{Role: auth.RoleOperator, Name: name, Via: via, Local: true}, 0, ""
	}
	return auth.Identity{Role: auth.RoleReader, Name: name, Via: via}, 0, ""
}

// bearer checks an Authorization header; ok is false when there is none.
func (n *Node) bearer(r *http.Request) (auth.Identity, int, string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Identity{}, 0, "", false
	}
	secret, ok := auth.BearerSecret(h)
	if !ok {
		return auth.Identity{}, http.StatusUnauthorized, "unauthorized: want Authorization: Bearer TOKEN", true
	}
	id, ok := n.tokens.Lookup(secret)
	if !ok {
		return auth.Identity{}, http.StatusUnauthorized, "unauthorized: the bearer token matches no configured token", true
	}
	return id, 0, "", true
}

// handler authenticates and authorizes a request before h runs, with the
// identity in its context (identityOf).
func (n *Node) handler(nd need, what string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, status, msg := n.identify(r)
		if status != 0 {
			writeError(w, status, msg)
			return
		}
		var ok bool
		var want string
		switch nd {
		case needRead:
			ok, want = id.CanRead() || id.Local, "reader, operator or node"
		case needOperate:
			ok, want = id.CanOperate(), "operator"
		case needNode:
			ok, want = id.IsNode(), "node"
		case needNodeCaller:
			caller, _, _ := n.caller(r)
			ok, want = caller.IsNode(), "node"
			if !ok {
				id = caller
			}
		}
		if !ok {
			writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: %s may not %s (needs role %s)", id, what, want))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey, id)))
	}
}

// identityOf is the identity handler put in the request's context.
func identityOf(r *http.Request) auth.Identity {
	id, _ := r.Context().Value(identityKey).(auth.Identity)
	return id
}

// speaksFor refuses (403) a node-to-node request whose caller is not the
// node the request names.
func speaksFor(w http.ResponseWriter, r *http.Request, node string) bool {
	id := identityOf(r)
	if id.SpeaksFor(node) {
		return true
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: %s may not speak for node %q", id, node))
	return false
}

// userNames caches uid -> user name for the audit.
type userNames struct {
	mu sync.Mutex
	m  map[uint32]string
}

func (u *userNames) name(uid uint32) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s, ok := u.m[uid]; ok {
		return s
	}
	s := "uid" + strconv.FormatUint(uint64(uid), 10)
	if us, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil && validUserName(us.Username) {
		s = us.Username
	}
	if u.m == nil {
		u.m = map[uint32]string{}
	}
	u.m[uid] = s
	return s
}

func validUserName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
