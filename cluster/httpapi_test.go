package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"lp/cluster/api"
	"lp/config"
)

// post sends a raw body and returns the status and the decoded error.
func post(t *testing.T, base, path string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, errorOf(t, resp)
}

func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, errorOf(t, resp)
}

// errorOf returns the "error" of a non-2xx answer, checking that it is JSON
// and one line.
func errorOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 {
		return ""
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error == "" {
		t.Errorf("error body %q is not {\"error\": ...}", data)
	}
	if strings.Contains(eb.Error, "\n") {
		t.Errorf("error %q is more than one line", eb.Error)
	}
	return eb.Error
}

func submitBody(t *testing.T, plan string, module []byte, sum string) []byte {
	t.Helper()
	p, err := config.ParsePlan([]byte(plan), "plan.yaml")
	if err != nil {
		t.Fatalf("ParsePlan: %v", err)
	}
	pj, _ := json.Marshal(p)
	if sum == "" {
		h := sha256.Sum256(module)
		sum = hex.EncodeToString(h[:])
	}
	b, _ := json.Marshal(api.SubmitRequest{Plan: pj, ModuleName: "fix.so", Module: module, SHA256: sum})
	return b
}

func TestAPIErrors(t *testing.T) {
	buildFixtures(t)
	mod, err := os.ReadFile(built.fix)
	if err != nil {
		t.Fatal(err)
	}
	tc := startTestCluster(t, []nodeSpec{{name: "solo", role: "witness", server: true}}, nil)
	base := tc.leader().APIAddr()
	tc.registered()
	const goodPlan = "name: x\npatch: fix.so\ntarget: svc\ntrial: 1s\n"
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		status int
		want   string
	}{
		{"unknown plan", "GET", "/v1/plans/p000009", nil, 404, "plan p000009 does not exist"},
		{"unknown endpoint", "GET", "/v2/nothing", nil, 404, "no such endpoint"},
		{"body not json", "POST", "/v1/plans", []byte("{nope"), 400, "bad request body"},
		{"unknown key in a body", "POST", "/v1/internal/observed", []byte(`{"node":"solo","target":"svc","pidd":1}`), 400, `unknown field "pidd"`},
		{"trailing data in a body", "POST", "/v1/internal/observed", []byte(`{"node":"solo","target":"svc"} {}`), 400, "trailing data"},
		{"unknown key in a plan", "POST", "/v1/plans", []byte(`{"plan":{"name":"x","patch":"fix.so","target":"svc","max_paralel":2},"module":"AA==","sha256":"x"}`), 400, `unknown field "max_paralel"`},
		{"unknown key in a plan check", "POST", "/v1/plans", []byte(`{"plan":{"name":"x","patch":"fix.so","target":"svc","health":[{"tcp":"127.0.0.1:1","intervl":"1s"}]},"module":"AA==","sha256":"x"}`), 400, `unknown field "intervl"`},
		{"invalid plan", "POST", "/v1/plans", []byte(`{"plan":{"name":"x"},"module":"AA==","sha256":"x"}`), 400, "bad plan:"},
		{"hash mismatch", "POST", "/v1/plans", submitBody(t, goodPlan, mod, strings.Repeat("0", 64)), 400, "sha256"},
		{"not a module", "POST", "/v1/plans", submitBody(t, goodPlan, []byte("hello"), ""), 400, "fix.so"},
		{"no pairs", "POST", "/v1/plans", submitBody(t, goodPlan, mod, ""), 409, "plan has no pairs"},
		{"module too large", "POST", "/v1/plans", submitBody(t, goodPlan, make([]byte, 16<<20+1), ""), 413, "limit"},
		{"unknown action", "POST", "/v1/plans/p000001/explode", []byte("{}"), 404, "unknown plan action"},
		{"rollback without plans", "POST", "/v1/rollback", []byte("{}"), 404, "no plan to roll back"},
		{"promote unknown node", "POST", "/v1/nodes/ghost/promote", []byte("{}"), 404, "ghost"},
		{"promote a witness", "POST", "/v1/nodes/solo/promote", []byte("{}"), 409, "witness"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var status int
			var msg string
			if c.method == "GET" {
				status, msg = get(t, base, c.path)
			} else {
				status, msg = post(t, base, c.path, c.body)
			}
			if status != c.status || !strings.Contains(msg, c.want) {
				t.Errorf("%s %s = %d %q; want %d containing %q", c.method, c.path, status, msg, c.status, c.want)
			}
		})
	}
	if st := tc.leader().State(); len(st.Plans) != 0 || len(st.Blobs) != 0 {
		t.Errorf("after bad submissions: %d plans, %d blobs; want none", len(st.Plans), len(st.Blobs))
	}
	var st api.Status
	if err := api.NewClient(base).Do(t.Context(), "GET", api.PathStatus, nil, &st); err != nil || st.Leader != "solo" || st.RaftState != "Leader" {
		t.Errorf("status = %+v, %v; want solo leading", st, err)
	}
}

func TestAPINoLeader(t *testing.T) {
	// A server that never bootstraps: no leader, reads work, writes 503.
	tc := startTestCluster(t, []nodeSpec{{name: "lonely", role: "witness", server: true}}, func(c *Config) {
		c.Node.BootstrapExpect = 0
	})
	base := tc.nodes["lonely"].APIAddr()
	status, msg := post(t, base, "/v1/rollback", []byte("{}"))
	if status != http.StatusServiceUnavailable || msg != "no raft leader (is a quorum of servers up?)" {
		t.Errorf("POST /v1/rollback without a leader = %d %q; want 503 and the no-leader message", status, msg)
	}
	st, err := api.NewClient(base).Status(t.Context())
	if err != nil || st.Leader != "" {
		t.Errorf("status without a leader = %+v, %v; want it answered with no leader", st, err)
	}
}

func TestAPIForwardsToLeader(t *testing.T) {
	tc := startTestCluster(t, onePair, nil)
	tc.registered()
	l := tc.leader()
	for name, n := range tc.nodes {
		if n == l {
			continue
		}
		// A write on a follower reaches the leader: rollback of a missing
		// plan is refused by the leader's FSM, not by the follower.
		status, msg := post(t, n.APIAddr(), "/v1/plans/p000042/rollback", []byte("{}"))
		if status != http.StatusNotFound || !strings.Contains(msg, "plan p000042 does not exist") {
			t.Errorf("rollback via follower %s = %d %q; want 404 from the leader's FSM", name, status, msg)
		}
		// A request already forwarded once is not forwarded again.
		req, _ := http.NewRequest("POST", "http://"+n.APIAddr()+"/v1/rollback", strings.NewReader("{}"))
		req.Header.Set(api.HeaderForwarded, "someone")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if msg := errorOf(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(msg, "not the raft leader") {
			t.Errorf("twice-forwarded request = %d %q; want 503", resp.StatusCode, msg)
		}
		resp.Body.Close()
	}
	ms, err := api.NewClient(l.APIAddr()).Members(t.Context())
	if err != nil || len(ms) != 3 {
		t.Fatalf("members = %v, %v; want 3", ms, err)
	}
	for _, m := range ms {
		if m.Gossip != "alive" || m.Suffrage != "Voter" || m.Health != "healthy" || m.LastContact == "unknown" {
			t.Errorf("member %+v; want alive, voter, healthy, with a last contact", m)
		}
	}
}

func FuzzParseSubmit(f *testing.F) {
	f.Add([]byte(`{"plan":{"name":"x","patch":"fix.so","target":"svc","trial":"1s"},"module_name":"fix.so","module":"f0VMRg==","sha256":"ab"}`))
	f.Add([]byte(`{"plan":null}`))
	f.Add([]byte(`{"plan":{"name":"x","patch":"p","target":"t","pairs":["a","a"]},"module":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req api.SubmitRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		spec, status, err := parseSubmit(req)
		if err != nil {
			if status < 400 || status > 499 {
				t.Errorf("parseSubmit error %v with status %d; want 4xx", err, status)
			}
			return
		}
		if spec.PatchSHA256 != hexSum(req.Module) || spec.PatchID == "" {
			t.Errorf("accepted submission has spec sha %s, patch id %q; want the module's sha256 %s and an id", spec.PatchSHA256, spec.PatchID, hexSum(req.Module))
		}
	})
}
