package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func initDir(t *testing.T, o InitOptions) string {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if _, err := Init(o); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return o.Dir
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInitWritesCertificates(t *testing.T) {
	dir := initDir(t, InitOptions{Nodes: []string{"a", "b"}, SANs: []string{"10.1.2.3", "sip-a.example"},
		Clients: []Client{{"alice", RoleOperator}, {"dash", RoleReader}}})
	for _, name := range []string{"ca", "a", "b", "alice", "dash"} {
		fi, err := os.Stat(filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s-key.pem mode %v; want 0600", name, fi.Mode().Perm())
		}
	}
	a := readCert(t, filepath.Join(dir, "a.pem"))
	if a.Subject.CommonName != "a" || len(a.Subject.Organization) != 1 || a.Subject.Organization[0] != "node" {
		t.Errorf("a.pem subject %v; want CN=a O=node", a.Subject)
	}
	var ips []string
	for _, ip := range a.IPAddresses {
		ips = append(ips, ip.String())
	}
	if got := strings.Join(ips, ","); !strings.Contains(got, "127.0.0.1") || !strings.Contains(got, "10.1.2.3") {
		t.Errorf("a.pem IP SANs %s; want 127.0.0.1 and 10.1.2.3", got)
	}
	if got := strings.Join(a.DNSNames, ","); got != "localhost,sip-a.example" {
		t.Errorf("a.pem DNS SANs %s; want localhost,sip-a.example", got)
	}
	alice := readCert(t, filepath.Join(dir, "alice.pem"))
	if id, err := FromCert(alice); err != nil || id.String() != "operator:alice (cert)" {
		t.Errorf("FromCert(alice.pem) = %v, %v; want operator:alice (cert)", id, err)
	}
	if _, err := LoadNodeTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "a.pem"), filepath.Join(dir, "a-key.pem"), "a", time.Now()); err != nil {
		t.Errorf("LoadNodeTLS(a) = %v; want nil", err)
	}
	// A second init keeps the CA.
	before, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if _, err := Init(InitOptions{Dir: dir, Nodes: []string{"c"}}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second Init = %v; want a refusal naming --force", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(after) != string(before) {
		t.Error("second Init changed ca.pem")
	}
	if _, err := os.Stat(filepath.Join(dir, "c.pem")); err == nil {
		t.Error("refused Init wrote c.pem")
	}
}

func TestLoadNodeTLSRefusals(t *testing.T) {
	dir := initDir(t, InitOptions{Nodes: []string{"a", "b"}, Clients: []Client{{"dash", RoleReader}}})
	other := initDir(t, InitOptions{Nodes: []string{"a"}})
	old := initDir(t, InitOptions{Nodes: []string{"a"}, Now: time.Now().Add(-3 * 365 * 24 * time.Hour)})
	future := initDir(t, InitOptions{Nodes: []string{"a"}, Now: time.Now().Add(24 * time.Hour)})
	p := func(d, f string) string { return filepath.Join(d, f) }
	os.WriteFile(p(dir, "junk.pem"), []byte("not pem"), 0o600)
	tests := []struct {
		name               string
		ca, cert, key, who string
		want               string
	}{
		{"missing ca", p(dir, "nope.pem"), p(dir, "a.pem"), p(dir, "a-key.pem"), "a", "tls.ca: open"},
		{"ca not pem", p(dir, "junk.pem"), p(dir, "a.pem"), p(dir, "a-key.pem"), "a", "holds no PEM certificate"},
		{"ca not a CA", p(dir, "a.pem"), p(dir, "a.pem"), p(dir, "a-key.pem"), "a", "is not a CA"},
		{"missing key", p(dir, "ca.pem"), p(dir, "a.pem"), p(dir, "nope.pem"), "a", "tls.key: open"},
		{"key of another cert", p(dir, "ca.pem"), p(dir, "a.pem"), p(dir, "b-key.pem"), "a", "private key does not match public key"},
		{"other node's cert", p(dir, "ca.pem"), p(dir, "b.pem"), p(dir, "b-key.pem"), "a", `is the certificate of node "b", not of this node "a"`},
		{"reader cert", p(dir, "ca.pem"), p(dir, "dash.pem"), p(dir, "dash-key.pem"), "dash", "is a reader certificate"},
		{"another CA", p(dir, "ca.pem"), p(other, "a.pem"), p(other, "a-key.pem"), "a", "is not signed by tls.ca"},
		{"expired", p(old, "ca.pem"), p(old, "a.pem"), p(old, "a-key.pem"), "a", "expired on"},
		{"not yet valid", p(future, "ca.pem"), p(future, "a.pem"), p(future, "a-key.pem"), "a", "is not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadNodeTLS(tt.ca, tt.cert, tt.key, tt.who, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("LoadNodeTLS = %v; want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	ts, err := NewTokens([]Token{{"ci", RoleOperator, sum("s3cret")}, {"dash", RoleReader, sum("look")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		secret string
		want   string
	}{{"s3cret", "operator:ci (token)"}, {"look", "reader:dash (token)"}, {"s3cret ", ""}, {"", ""}, {"S3CRET", ""}} {
		id, ok := ts.Lookup(tt.secret)
		if got := map[bool]string{true: id.String(), false: ""}[ok]; got != tt.want {
			t.Errorf("Lookup(%q) = %q; want %q", tt.secret, got, tt.want)
		}
	}
	for _, h := range []struct {
		in, secret string
		ok         bool
	}{{"Bearer abc", "abc", true}, {"bearer  abc ", "abc", true}, {"Basic abc", "", false}, {"Bearer", "", false}, {"", "", false}} {
		s, ok := BearerSecret(h.in)
		if s != h.secret || ok != h.ok {
			t.Errorf("BearerSecret(%q) = %q, %v; want %q, %v", h.in, s, ok, h.secret, h.ok)
		}
	}
	if _, err := NewTokens([]Token{{"x", RoleNode, sum("a")}}); err == nil {
		t.Error("NewTokens accepted a node token")
	}
}

func TestParseIdentityRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		{Role: RoleOperator, Name: "alice", Via: ViaCert},
		{Role: RoleOperator, Name: "ci", Via: ViaToken},
		{Role: RoleNode, Name: "sip-a1", Via: ViaCert},
		{Role: RoleOperator, Name: "root", Via: "local uid 0", Local: true},
	} {
		got, err := ParseIdentity(id.String())
		if err != nil || got != id {
			t.Errorf("ParseIdentity(%q) = %+v, %v; want %+v", id.String(), got, err, id)
		}
	}
	for _, s := range []string{"", "operator:alice", "admin:x (cert)", "operator: (cert)", "operator:a b (cert)", "operator:a (local uid x)", "operator:a (magic)"} {
		if _, err := ParseIdentity(s); err == nil {
			t.Errorf("ParseIdentity(%q) = nil error; want a refusal", s)
		}
	}
}

func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{"operator:alice (cert)", "node:a (cert)", "operator:root (local uid 0)", "reader:x (token)", "a:b (c)", "(", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseIdentity(%q).String() = %q; want the input", s, id.String())
		}
		if id.Local && id.Role != RoleOperator {
			t.Fatalf("ParseIdentity(%q) is Local with role %s", s, id.Role)
		}
	})
}

func FuzzLoadCAPool(f *testing.F) {
	dir := f.TempDir()
	if _, err := Init(InitOptions{Dir: dir, Nodes: []string{"a"}}); err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"ca.pem", "a.pem", "a-key.pem"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCAPool(p); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("LoadCAPool error %q has more than one line", err)
		}
	})
}
