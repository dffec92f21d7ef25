package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxPEMFile bounds a certificate or key file: they are a few KiB.
const maxPEMFile = 1 << 20

// NodeTLS is a node's TLS material: the cluster's CA and the node's own
// certificate, checked by LoadNodeTLS.
type NodeTLS struct {
	Pool *x509.CertPool
	Cert tls.Certificate
	Leaf *x509.Certificate
}

// LoadNodeTLS loads and checks tls: {ca, cert, key} for node: the files
// load, the certificate is valid at now, signed by the CA, with
// Organization "node" and CommonName node. Every error is one line naming
// the file and what to do.
func LoadNodeTLS(caFile, certFile, keyFile, node string, now time.Time) (*NodeTLS, error) {
	pool, err := LoadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := readPEM(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert: %w", err)
	}
	keyPEM, err := readPEM(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s and tls.key %s: %v", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s: %v", certFile, err)
	}
	pair.Leaf = leaf
	if err := checkValidity(leaf, now); err != nil {
		return nil, fmt.Errorf("tls.cert %s: %w", certFile, err)
	}
	if err := verifyChain(pool, leaf, pair.Certificate[1:], now); err != nil {
		return nil, fmt.Errorf("tls.cert %s is not signed by tls.ca %s: %v", certFile, caFile, err)
	}
	id, err := FromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s: %v", certFile, err)
	}
	if id.Role != RoleNode {
		return nil, fmt.Errorf("tls.cert %s is a %s certificate (organization %q); a node needs a node certificate (lpctl tls init --nodes %s)", certFile, id.Role, id.Role, node)
	}
	if id.Name != node {
		return nil, fmt.Errorf("tls.cert %s is the certificate of node %q, not of this node %q", certFile, id.Name, node)
	}
	return &NodeTLS{Pool: pool, Cert: pair, Leaf: leaf}, nil
}

// LoadCAPool reads a PEM file of one or more CA certificates, each valid
// now.
func LoadCAPool(caFile string) (*x509.CertPool, error) {
	data, err := readPEM(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("tls.ca %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("tls.ca %s: certificate %q is not a CA", caFile, clip(c.Subject.CommonName))
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// parseCerts parses every CERTIFICATE block of data; anything else is an
// error.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q block; want CERTIFICATE", clip(b.Type))
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return certs, nil
}

func readPEM(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s is larger than %d bytes; not a PEM file", path, maxPEMFile)
	}
	return data, nil
}

func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("certificate of %s is not valid before %s (check the clock, or make a new one)", clip(c.Subject.CommonName), c.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("certificate of %s expired on %s; make a new one", clip(c.Subject.CommonName), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func verifyChain(pool *x509.CertPool, leaf *x509.Certificate, intermediates [][]byte, now time.Time) error {
	opts := x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		Intermediates: x509.NewCertPool()}
	for _, der := range intermediates {
		if c, err := x509.ParseCertificate(der); err == nil {
			opts.Intermediates.AddCert(c)
		}
	}
	_, err := leaf.Verify(opts)
	return err
}

// APIServer is the API's server configuration: TLS 1.3, the node's
// certificate, client certificates verified against the CA. Without
// tokens a client certificate is required in the handshake; with tokens a
// client may come without one and present a bearer token instead (each
// request is then authorized on its own).
func (t *NodeTLS) APIServer(tokens bool) *tls.Config {
	auth := tls.RequireAndVerifyClientCert
	if tokens {
		auth = tls.VerifyClientCertIfGiven
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{t.Cert},
		ClientCAs: t.Pool, ClientAuth: auth,
	}
}

// RaftServer is raft's server configuration: the peer must present a node
// certificate of the CA.
func (t *NodeTLS) RaftServer() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{t.Cert},
		ClientCAs: t.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error { return requireNodePeer(cs) },
	}
}

// NodeClient is the configuration a node dials other nodes with (raft,
// forwarding, agent reports, status probes): it presents the node's
// certificate and accepts only a node certificate of the CA. Peers are
// found by the addresses they advertise, so the host name is not checked:
// the CA and the node organization are what bind the peer.
func (t *NodeTLS) NodeClient() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{t.Cert},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: t.Pool, Intermediates: x509.NewCertPool(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return fmt.Errorf("peer certificate: %w", err)
			}
			id, err := FromCert(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			if id.Role != RoleNode {
				return fmt.Errorf("peer %s holds a %s certificate, not a node certificate", id.Name, id.Role)
			}
			return nil
		},
	}
}

// requireNodePeer refuses a verified peer whose certificate is not a node
// certificate.
func requireNodePeer(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return errors.New("peer presented no verified certificate")
	}
	id, err := FromCert(cs.PeerCertificates[0])
	if err != nil {
		return err
	}
	if id.Role != RoleNode {
		return fmt.Errorf("raft accepts only node certificates; %s holds a %s certificate", id.Name, id.Role)
	}
	return nil
}

// ClientFiles configures lpctl's TLS: the CA to trust (empty: the system's
// roots) and an optional client certificate.
func ClientFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS13}
	if caFile != "" {
		pool, err := LoadCAPool(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s and key %s: %v", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{pair}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both --cert and --key")
	}
	return c, nil
}
