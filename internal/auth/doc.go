// Package auth holds lp's identities and the TLS plumbing: who a caller is
// (a certificate of lp's CA, a bearer token, or on a plain loopback lpd the
// local user owning the connection), what each role may do, the TLS
// configurations of the API, raft and clients, and the certificate
// authority `lpctl tls init` writes.
//
// # Security
//
// Identities come from one CA. A node certificate has Organization "node"
// and CommonName = the node name; a client certificate has Organization
// "operator" or "reader" and CommonName = who. Raft and the node-to-node
// endpoints accept only node certificates. Tokens are compared by their
// sha256 in constant time. Nothing here trusts a name a caller writes in a
// request, except the forwarded identity a node certificate asserts (see
// ParseIdentity).
//
// Everything here is safe for concurrent use once built.
package auth
