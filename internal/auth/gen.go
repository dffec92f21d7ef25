package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Validity of what InitCA makes. Certificates outlive a maintenance
// window by far; the CA outlives them.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
	// backdate covers clocks a little behind the one that made the files.
	backdate = 5 * time.Minute
)

// ErrExists: tls init would overwrite a CA.
var ErrExists = errors.New("already exists")

// Client is a client certificate to issue.
type Client struct {
	Name string
	Role string // RoleOperator or RoleReader
}

// InitOptions is lpctl tls init.
type InitOptions struct {
	Dir     string
	Nodes   []string
	SANs    []string // extra host names or IPs of node certificates
	Clients []Client
	// Force replaces an existing CA (every certificate it signed stops
	// being trusted by nodes given the new ca.pem).
	Force bool
	Now   time.Time
}

// ParseClient parses NAME:ROLE of --client.
func ParseClient(s string) (Client, error) {
	name, role, ok := strings.Cut(s, ":")
	if !ok {
		return Client{}, fmt.Errorf("--client %q: want NAME:ROLE, ROLE operator or reader", clip(s))
	}
	if !validName(name) {
		return Client{}, fmt.Errorf("--client %q: name: want 1-64 characters from A-Z a-z 0-9 . _ - @", clip(s))
	}
	if role != RoleOperator && role != RoleReader {
		return Client{}, fmt.Errorf("--client %q: role %q: want operator or reader", clip(s), clip(role))
	}
	return Client{Name: name, Role: role}, nil
}

// Init writes ca.pem, ca-key.pem and NAME.pem, NAME-key.pem for every node
// and client into o.Dir, and returns the files written. An existing CA is
// kept unless o.Force: then nothing is written.
func Init(o InitOptions) ([]string, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if len(o.Nodes) == 0 && len(o.Clients) == 0 {
		return nil, errors.New("nothing to make: give --nodes and/or --client")
	}
	seen := map[string]bool{"ca": true}
	for _, n := range o.Nodes {
		if !validName(n) || strings.Contains(n, "@") {
			return nil, fmt.Errorf("--nodes: %q is not a valid node name", clip(n))
		}
		if seen[n] {
			return nil, fmt.Errorf("%q is named twice (or is \"ca\"): every node and client needs its own file", n)
		}
		seen[n] = true
	}
	for _, c := range o.Clients {
		if seen[c.Name] {
			return nil, fmt.Errorf("%q is named twice (or is \"ca\"): every node and client needs its own file", c.Name)
		}
		seen[c.Name] = true
	}
	var ips []net.IP
	dns := []string{"localhost"}
	ips = append(ips, net.ParseIP("127.0.0.1"), net.ParseIP("::1"))
	for _, s := range o.SANs {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else if s != "" && !strings.ContainsAny(s, " /:") {
			dns = append(dns, s)
		} else {
			return nil, fmt.Errorf("--san %q: want a host name or an IP address", clip(s))
		}
	}
	caPath := filepath.Join(o.Dir, "ca.pem")
	caKeyPath := filepath.Join(o.Dir, "ca-key.pem")
	if !o.Force {
		for _, p := range []string{caPath, caKeyPath} {
			if _, err := os.Stat(p); err == nil {
				return nil, fmt.Errorf("%s %w: keeping it (give --force to replace the CA; every certificate it signed stops working)", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "lp cluster CA", Organization: []string{"lp"}},
		NotBefore: o.Now.Add(-backdate), NotAfter: o.Now.Add(CAValidity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	var written []string
	write := func(name string, der []byte, key *ecdsa.PrivateKey) error {
		cp := filepath.Join(o.Dir, name+".pem")
		kp := filepath.Join(o.Dir, name+"-key.pem")
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writeFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			return err
		}
		if err := writeFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return err
		}
		written = append(written, cp, kp)
		return nil
	}
	issue := func(name, org string, server bool) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: name, Organization: []string{org}},
			NotBefore: o.Now.Add(-backdate), NotAfter: o.Now.Add(CertValidity),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if server {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
			tmpl.DNSNames = slices.Clone(dns)
			tmpl.IPAddresses = slices.Clone(ips)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		return write(name, der, key)
	}
	if err := write("ca", caDER, caKey); err != nil {
		return written, err
	}
	for _, n := range o.Nodes {
		if err := issue(n, RoleNode, true); err != nil {
			return written, err
		}
	}
	for _, c := range o.Clients {
		if err := issue(c.Name, c.Role, false); err != nil {
			return written, err
		}
	}
	return written, nil
}

// writeFile writes data to a new file beside path and renames it over
// path, so that a key is never readable with a wider mode, even briefly.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}
