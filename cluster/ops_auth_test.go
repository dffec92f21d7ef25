package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lp/config"
	"lp/internal/auth"
)

const (
	opsReaderToken   = "ops-reader-0123456789"
	opsOperatorToken = "ops-operator-0123456789"
)

// issueOddCert writes NAME.pem and NAME-key.pem into pki: a client
// certificate signed by the cluster's CA whose organization is org (which
// need not be an lp role).
func issueOddCert(t *testing.T, pki, name, org string) {
	t.Helper()
	read := func(f string) []byte {
		data, err := os.ReadFile(filepath.Join(pki, f))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		if b == nil {
			t.Fatalf("%s: no PEM block", f)
		}
		return b.Bytes
	}
	ca, err := x509.ParseCertificate(read("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(read("ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{org}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pki, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(pki, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

// TestOpsEndpointsNeedAReader: GET /metrics and GET /ui/ are under the
// API's authentication. On a TLS lpd: no identity is 401, a bad token 401,
// a certificate of the cluster's CA with no lp role 403, a reader (by
// certificate or token) and an operator are served. On a plain loopback
// lpd every local user is a reader: uid 65534 is served, is refused with a
// bad token (401), and may not act through the dashboard (403).
func TestOpsEndpointsNeedAReader(t *testing.T) {
	pki := t.TempDir()
	if _, err := auth.Init(auth.InitOptions{Dir: pki, Nodes: []string{"solo"},
		Clients: []auth.Client{{Name: "dash", Role: auth.RoleReader}, {Name: "alice", Role: auth.RoleOperator}}}); err != nil {
		t.Fatal(err)
	}
	issueOddCert(t, pki, "mallory", "auditor")
	tokens := []config.Token{{Name: "dash-token", Role: "reader", SHA256: sum256(opsReaderToken)},
		{Name: "ci", Role: "operator", SHA256: sum256(opsOperatorToken)}}
	tc := startTestCluster(t, []nodeSpec{{name: "solo", role: "witness", server: true}}, func(c *Config) {
		c.Node.TLS = config.TLS{CA: filepath.Join(pki, "ca.pem"), Cert: filepath.Join(pki, "solo.pem"), Key: filepath.Join(pki, "solo-key.pem")}
		c.Node.Tokens = tokens
	})
	base := "https://" + tc.leader().APIAddr()
	conf := func(who string) *tls.Config {
		cert, key := "", ""
		if who != "" {
			cert, key = filepath.Join(pki, who+".pem"), filepath.Join(pki, who+"-key.pem")
		}
		c, err := auth.ClientFiles(filepath.Join(pki, "ca.pem"), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	get := func(path, who, token string) (int, string) {
		t.Helper()
		cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf(who)}}
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("GET %s as %q: %v", path, who, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/metrics", "/ui/", "/ui/app.js"} {
		for _, c := range []struct {
			who, token string
			status     int
			want       string
		}{
			{"", "", 401, "unauthorized: no identity"},
			{"", "wrong-secret-0123456789", 401, "unauthorized: the bearer token matches no configured token"},
			{"mallory", "", 403, "forbidden: certificate of mallory has organization"},
			{"dash", "", 200, ""},
			{"", opsReaderToken, 200, ""},
			{"alice", "", 200, ""},
			{"", opsOperatorToken, 200, ""},
		} {
			status, body := get(path, c.who, c.token)
			if status != c.status || !strings.Contains(body, c.want) {
				t.Errorf("GET %s (cert %q, token %q) = %d %.200q; want %d %q", path, c.who, c.token, status, body, c.status, c.want)
			}
			if status == 200 && path == "/metrics" && !strings.Contains(body, "lp_plans{") {
				t.Errorf("GET /metrics as %q/%q: no lp_plans in %.200q", c.who, c.token, body)
			}
		}
	}

	// Plain loopback, uid 65534.
	if os.Geteuid() != 0 {
		t.Skip("needs root to make requests as uid 65534")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (.ci/run installs it) to make requests as uid 65534")
	}
	plain := startTestCluster(t, []nodeSpec{{name: "plain", role: "witness", server: true}}, func(c *Config) {
		c.Node.Tokens = tokens
	})
	pbase := "http://" + plain.leader().APIAddr()
	plain.registered()
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
	curl := func(method, path, token string) (int, string) {
		t.Helper()
		args := []string{"-s", "-X", method, "-w", "\n%{http_code}", pbase + path}
		if token != "" {
			args = append(args, "-H", "Authorization: Bearer "+token)
		}
		if method == http.MethodPost {
			args = append(args, "-d", "{}")
		}
		cmd := exec.Command("curl", args...)
		cmd.SysProcAttr = nobody
		cmd.Dir = "/"
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %v as uid 65534: %v", args, err)
		}
		s := strings.TrimRight(string(out), "\n")
		i := strings.LastIndex(s, "\n")
		if i < 0 {
			return 0, s
		}
		code := 0
		for _, ch := range s[i+1:] {
			code = code*10 + int(ch-'0')
		}
		return code, s[:i]
	}
	for _, path := range []string{"/metrics", "/ui/"} {
		if status, body := curl(http.MethodGet, path, ""); status != 200 {
			t.Errorf("GET %s as uid 65534 = %d %.200q; want 200 (a local user reads)", path, status, body)
		}
		if status, body := curl(http.MethodGet, path, "wrong-secret-0123456789"); status != 401 || !strings.Contains(body, "matches no configured token") {
			t.Errorf("GET %s as uid 65534 with a bad token = %d %.200q; want 401", path, status, body)
		}
	}
	// The dashboard's actions are API writes: a local reader may not.
	if status, body := curl(http.MethodPost, "/v1/plans/p000001/pause", ""); status != 403 || !strings.Contains(body, "(local uid 65534)") {
		t.Errorf("dashboard pause as uid 65534 = %d %.200q; want 403 naming the local user", status, body)
	}
}
