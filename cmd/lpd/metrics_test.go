package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// TestMetricsOfARealLPD starts a real lpd (a one-server cluster) and scrapes
// GET /metrics with the Prometheus text parser: lp's metrics and raft's and
// memberlist's (through the go-metrics prometheus sink) are there.
func TestMetricsOfARealLPD(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs lpd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lpd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building lpd: %v\n%s", err, out)
	}
	p := freePorts(t, 3)
	cfg := filepath.Join(dir, "lpd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("node: w1\ndata_dir: data\nbind: 127.0.0.1\nports: { api: %d, raft: %d, gossip: %d }\nserver: true\nbootstrap_expect: 1\nrole: witness\n", p[0], p[1], p[2])), 0o600)
	logf, err := os.Create(filepath.Join(dir, "lpd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("lpd log:\n%s", b)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", p[0])
	want := []string{"lp_plans", "lp_member_healthy", "lp_member_role", "lp_trial_seconds", "go_goroutines"}
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		fams, err := scrapeURL(url)
		missing = nil
		if err != nil {
			missing = []string{err.Error()}
		} else {
			for _, name := range want {
				if fams[name] == nil {
					missing = append(missing, name)
				}
			}
			raft, memberlist := false, false
			for name := range fams {
				raft = raft || strings.HasPrefix(name, "raft_")
				memberlist = memberlist || strings.HasPrefix(name, "memberlist_")
			}
			if !raft {
				missing = append(missing, "raft_*")
			}
			if !memberlist {
				missing = append(missing, "memberlist_*")
			}
			if m := fams["lp_member_role"]; m != nil && len(missing) == 0 {
				if !hasSeries(m, "w1", "witness", 1) {
					missing = append(missing, `lp_member_role{node="w1",role="witness"} 1`)
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics after 60s lacks %v", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func scrapeURL(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET %s: Content-Type %q; want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func hasSeries(f *dto.MetricFamily, node, role string, v float64) bool {
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if got["node"] == node && got["role"] == role && m.GetGauge().GetValue() == v {
			return true
		}
	}
	return false
}
