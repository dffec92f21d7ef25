package cluster

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is raft's stream layer over mutual TLS: the listener accepts
// only peers holding a node certificate of the cluster's CA, and the
// dialer presents this node's certificate and accepts only a node
// certificate (auth.NodeTLS.RaftServer and NodeClient). The handshake runs
// on the first read or write, on raft's connection goroutine, so a slow or
// hostile peer never stalls the accept loop.
type tlsStream struct {
	net.Listener // a tls.Listener
	client       *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

func newTLSStream(addr string, server, client *tls.Config) (*tlsStream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &tlsStream{Listener: tls.NewListener(ln, server), client: client}, nil
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), s.client)
}
