package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"lp/cluster/api"
	"lp/config"
	"lp/decide"
	"lp/engine/module"
	"lp/fsm"
	"lp/heartbeat"
	"lp/internal/auth"
)

// maxSubmitBody bounds POST /v1/plans: a module at the FSM's cap, base64
// encoded, plus the plan.
const maxSubmitBody = fsm.MaxBlobSize*4/3 + 1<<20

// maxBody bounds every other request body.
const maxBody = 1 << 20

// routes is the API: every route names who may call it (see authz.go).
func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	read := func(h http.HandlerFunc) http.HandlerFunc { return n.handler(needRead, "read", h) }
	operate := func(what string, h http.HandlerFunc) http.HandlerFunc {
		return n.handler(needOperate, what, n.write(h))
	}
	node := func(what string, h http.HandlerFunc) http.HandlerFunc {
		return n.handler(needNode, what, n.write(h))
	}
	// Writes that are one command: served on any node, committed through
	// the leader (commit.go).
	operateHere := func(what string, h http.HandlerFunc) http.HandlerFunc { return n.handler(needOperate, what, h) }
	nodeHere := func(what string, h http.HandlerFunc) http.HandlerFunc { return n.handler(needNode, what, h) }
	mux.HandleFunc("GET "+api.PathStatus, read(n.handleStatus))
	mux.HandleFunc("GET "+api.PathMembers, read(n.handleMembers))
	mux.HandleFunc("GET "+api.PathPlans, read(n.handlePlans))
	mux.HandleFunc("GET "+api.PathPlans+"/{id}", read(n.handlePlan))
	mux.HandleFunc("POST "+api.PathPlans, operateHere("submit a plan", n.handleSubmit))
	mux.HandleFunc("POST "+api.PathPlans+"/{id}/{action}", operateHere("act on a plan", n.handlePlanAction))
	mux.HandleFunc("POST "+api.PathRollback, operate("roll back", n.handleRollbackLatest))
	mux.HandleFunc("POST "+api.PathNodes+"/{name}/promote", operate("promote a node", n.handlePromote))
	mux.HandleFunc("POST "+api.PathRegister, nodeHere("register a node", n.handleRegister))
	mux.HandleFunc("POST "+api.PathObserved, nodeHere("report observed patches", n.handleObserved))
	mux.HandleFunc("POST "+api.PathTrialFail, node("report a trial failure", n.handleTrialFailure))
	mux.HandleFunc("POST "+api.PathHook, nodeHere("report a hook", n.handleHook))
	mux.HandleFunc("POST "+api.PathRole, nodeHere("report a role", n.handleRole))
	mux.HandleFunc("POST "+api.PathReadIndex, node("ask for the read index", n.handleReadIndex))
	mux.HandleFunc("POST "+api.PathPeerHealth, nodeHere("report peer health", n.handlePeerHealth))
	mux.HandleFunc("GET "+api.PathModules+"/{sha256}", n.handler(needNode, "fetch a module", n.handleModule))
	mux.HandleFunc("POST "+api.PathCommit, n.handler(needNodeCaller, "commit a command", n.handleCommit))
	mux.HandleFunc("POST "+api.PathNodes+"/{name}/remove", operate("remove a member", n.handleRemoveMember))
	n.routeOps(mux, read)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: fsm.ClipLine(msg, 1000)})
}

// writeErr maps an error to a status: fsm refusals by their sentinel, raft
// leadership trouble to 503.
func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, fsm.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, fsm.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, fsm.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, fsm.ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNoLeader), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
		status = http.StatusServiceUnavailable
	}
	var ce *fsm.CommandError
	if errors.As(err, &ce) {
		writeError(w, status, ce.Msg)
		return
	}
	writeError(w, status, err.Error())
}

// write wraps a handler that changes state: on a follower the request is
// forwarded to the leader's API (once: a forwarded request that reaches a
// node that is no longer the leader is refused with 503).
func (n *Node) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.raft.State() == raft.Leader {
			h(w, r)
			return
		}
		if by := r.Header.Get(api.HeaderForwarded); by != "" {
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s is not the raft leader (forwarded by %s); retry", n.name, by))
			return
		}
		name, addr := n.leaderAPI()
		if name == "" || addr == "" {
			writeErr(w, ErrNoLeader)
			return
		}
		// A body over the limit is refused here with the leader's answer,
		// not half sent and cut off (a raw connection error).
		limit := bodyLimit(r)
		if r.ContentLength > limit {
			writeTooLarge(w, limit)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		target := &url.URL{Scheme: n.scheme(), Host: addr}
		id := identityOf(r)
		proxy := &httputil.ReverseProxy{
			Transport: n.clientTransport, // this node's certificate
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Header.Set(api.HeaderForwarded, n.name)
				pr.Out.Header.Set(api.HeaderIdentity, id.String())
				pr.Out.Header.Del("Authorization") // the leader trusts this node, not the token
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					writeTooLarge(w, mbe.Limit)
					return
				}
				writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("forwarding to leader %s at %s: %v", name, addr, err))
			},
		}
		proxy.ServeHTTP(w, r)
	}
}

// emptyBody accepts the body of an action that takes no parameters: none,
// or an empty JSON object. Anything else is a 400: a client that sends
// parameters this lpd does not know must not get an action it did not ask
// for.
func emptyBody(w http.ResponseWriter, r *http.Request) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", maxBody))
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v struct{}
	if err := dec.Decode(&v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: want none or {}: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad request body: want none or {}: trailing data")
		return false
	}
	return true
}

// decodeBody decodes a JSON request body into v: one value, no unknown
// fields (like the YAML parser), at most limit bytes (413 beyond).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON value")
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				err = terr
			}
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeTooLarge(w, mbe.Limit)
			return false
		}
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

// writeTooLarge is the one answer to a body over its limit, from the
// leader and from a follower alike.
func writeTooLarge(w http.ResponseWriter, limit int64) {
	writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
}

// bodyLimit is the largest body a write endpoint accepts.
func bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && r.URL.Path == api.PathPlans {
		return maxSubmitBody
	}
	return maxBody
}

// --- reads ------------------------------------------------------------

func (n *Node) status() api.Status {
	stats := n.raft.Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(stats[k], 10, 64); return v }
	leader, leaderAPI := n.leaderAPI()
	st := api.Status{
		Node: n.name, Leader: leader, LeaderAPI: leaderAPI, RaftState: n.raft.State().String(),
		Term: u("term"), LastIndex: u("last_log_index"), CommitIndex: u("commit_index"), AppliedIndex: u("applied_index"),
		LastContact: stats["last_contact"],
	}
	if n.raft.State() == raft.Leader {
		st.LastContact = "0s"
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == n.name {
				st.Voter = s.Suffrage == raft.Voter
			}
		}
	}
	n.fsm.View(func(s *fsm.State) { st.Plans = len(s.Plans) })
	return st
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	q, ok := parseQuery(w, r)
	if !ok {
		return
	}
	n.blockOn(w, r, q, n.membersIndex)
	writeJSON(w, http.StatusOK, n.status())
}

// handleMembers merges the FSM's nodes, this node's gossip view and the raft
// configuration; last contact is each node's own view of the leader, asked
// from its API (briefly; "unknown" when it does not answer).
func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	q, ok := parseQuery(w, r)
	if !ok {
		return
	}
	n.blockOn(w, r, q, n.membersIndex)
	rows := map[string]*api.Member{}
	n.fsm.View(func(s *fsm.State) {
		for _, nd := range s.Nodes {
			health := heartbeat.HealthHealthy
			if !nd.Healthy {
				health = heartbeat.HealthUnhealthy
			}
			rows[nd.Name] = &api.Member{
				Node: nd.Name, Pair: nd.Pair, Role: string(nd.Role), Server: nd.Server, Status: string(nd.Status),
				Health: health, FailingCheck: nd.FailingCheck, CheckOutput: nd.CheckOutput, LastSeen: nd.LastSeen,
				APIAddr: nd.APIAddr, RaftAddr: nd.RaftAddr, Targets: slices.Clone(nd.Targets), Gossip: "unknown",
				RoleEpoch: nd.RoleEpoch, HookPending: nd.HookEpoch < nd.RoleEpoch && !nd.External(), DownSince: nd.DownSince,
				Peer: nd.Peer, PeerCheck: nd.PeerCheck,
			}
			if nd.Pair != "" {
				rows[nd.Name].Roles = rolesOf(nd)
			}
		}
		// Why a down active's standby is not promoted (yet).
		now := time.Now()
		for _, pair := range s.Pairs() {
			if cmd, why := decide.PairRoleStep(s, pair, now); cmd == nil && why != "" {
				if act, _ := s.PairRoles(pair); act != "" && rows[act] != nil && s.Nodes[act].Down() {
					rows[act].Failover = why
				}
			}
		}
	})
	for _, m := range n.ml.Members() {
		row, ok := rows[m.Name]
		if !ok {
			row = &api.Member{Node: m.Name, Pair: m.Meta.Pair, Role: m.Meta.Role, Server: m.Meta.Server,
				APIAddr: m.Meta.API, RaftAddr: m.Meta.Raft, Status: "unregistered"}
			rows[m.Name] = row
		}
		row.Gossip = string(m.State)
		row.Timing = m.Meta.Timing
		if m.Name == n.name {
			row.Timing = n.ml.Timing().Fingerprint()
		}
		row.TimingMismatch = !heartbeat.SameTiming(row.Timing, n.ml.Timing().Fingerprint())
		if m.State == heartbeat.StateAlive {
			row.Health, row.FailingCheck, row.CheckOutput = m.Meta.Health, m.Meta.FailingCheck, m.Meta.Output
			if row.Health == heartbeat.HealthHealthy {
				row.FailingCheck, row.CheckOutput = "", ""
			}
		}
	}
	for _, row := range rows {
		// A node dead or gone in gossip (or dead in the FSM, and not seen
		// alive by this node's gossip: unknown here, or only suspect yet,
		// as the leader's verdict can arrive first) reports nothing: its
		// last health is not its health.
		dead := row.Gossip == string(heartbeat.StateDead) || row.Gossip == string(heartbeat.StateLeft) ||
			row.Gossip != string(heartbeat.StateAlive) && (row.Status == string(fsm.StatusDead) || row.Status == string(fsm.StatusLeft))
		if dead {
			row.Health, row.FailingCheck, row.CheckOutput = heartbeat.HealthUnknown, "", ""
		}
	}
	leader, _ := n.leaderAPI()
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if row, ok := rows[string(s.ID)]; ok {
				row.Suffrage = s.Suffrage.String()
			}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 400*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, row := range rows {
		switch {
		case row.Node == leader:
			row.RaftState = "leader"
		case row.Suffrage == raft.Voter.String():
			row.RaftState = "follower"
		case row.Suffrage == raft.Nonvoter.String():
			row.RaftState = "nonvoter"
		default:
			row.RaftState = "none"
		}
		if row.Node == n.name {
			row.LastContact = n.status().LastContact
			continue
		}
		row.LastContact = "unknown"
		if row.Gossip != string(heartbeat.StateAlive) || row.APIAddr == "" {
			continue
		}
		wg.Add(1)
		go func(row *api.Member) {
			defer wg.Done()
			st, err := n.internalClient(row.APIAddr).Status(ctx)
			if err == nil {
				mu.Lock()
				row.LastContact = st.LastContact
				mu.Unlock()
			}
		}(row)
	}
	wg.Wait()
	out := make([]api.Member, 0, len(rows))
	for _, row := range rows {
		out = append(out, *row)
	}
	slices.SortFunc(out, func(a, b api.Member) int {
		if a.Node < b.Node {
			return -1
		}
		if a.Node > b.Node {
			return 1
		}
		return 0
	})
	writeJSON(w, http.StatusOK, out)
}

// planDetail builds the API view of a plan.
func planDetail(s *fsm.State, p fsm.Plan, history bool) api.PlanDetail {
	d := api.PlanDetail{Plan: p}
	target := p.Spec.Target
	for _, st := range p.Steps {
		nd, registered := s.Nodes[st.Node]
		obs := s.Observed[st.Node][target]
		desired := fsm.PatchIDs(s.DesiredStack(st.Node, target))
		pre := fsm.PatchIDs(p.PreState[st.Node])
		d.Nodes = append(d.Nodes, api.PlanNode{
			Node: st.Node, Pair: st.Pair, Side: string(st.Side), Status: string(nd.Status),
			Desired: desired, PreState: pre, Observed: slices.Clone(obs.Active), Pid: obs.Pid, Error: obs.Error,
			Converged:  s.NodeConverged(st.Node, target),
			AtPreState: slices.Equal(desired, pre) && slices.Equal(obs.Active, pre),
			LastSeen:   decide.LastSeen(nd), Unmanaged: slices.Clone(obs.Unmanaged),
			ApplyPause: st.ApplyPause, RevertPause: st.RevertPause, Processes: slices.Clone(obs.Processes),
		})
		last := &d.Nodes[len(d.Nodes)-1]
		last.Pending = registered && !st.Applied.IsZero() && !last.AtPreState && (p.State == fsm.PlanRollingBack || p.State == fsm.PlanFailed && !p.RollbackStarted.IsZero())
	}
	if history {
		d.History = s.PlanHistory(p.ID)
		// Observed changes of the plan's nodes on its target belong to its
		// story too: from its submission until the next plan on the
		// target is submitted (they are that plan's story then).
		var from, until uint64
		if len(d.History) > 0 {
			from = d.History[0].Seq
		}
		if next, ok := nextPlanOnTarget(s, p); ok {
			if h := s.PlanHistory(next.ID); len(h) > 0 {
				until = h[0].Seq
			}
		}
		var extra []fsm.Event
		for _, e := range s.History {
			if e.Plan != "" || e.Kind != fsm.EventObserved || e.Seq < from || until > 0 && e.Seq >= until ||
				!strings.HasPrefix(e.To, target+"=") && !strings.HasPrefix(e.From, target+"=") {
				continue
			}
			if _, ok := p.Step(e.Node); ok {
				extra = append(extra, e)
			}
		}
		d.History = append(d.History, extra...)
		slices.SortFunc(d.History, func(a, b fsm.Event) int {
			switch {
			case a.Seq < b.Seq:
				return -1
			case a.Seq > b.Seq:
				return 1
			}
			return 0
		})
	}
	return d
}

// waitTrials returns the trial reports that decide.Waiting weighs: on the
// leader, the ones agents sent it (the leader decides with them); on a
// follower none (the zero decide.Trial), as agents report to the leader
// only. A follower may therefore say "waiting for b1's trial check
// results", or still show a trial whose check failed, until the leader's
// step reaches its replica, which moves the plans' index. Waiting changes
// otherwise only with the replicated state (a node's status or health, a
// phase: the index moves too) or with time at a trial's end, when the
// leader commits the next phase; blocking queries need nothing more.
func (n *Node) waitTrials() map[string]decide.Trial {
	if !n.IsLeader() {
		return nil
	}
	return n.trials.snapshot()
}

// nextPlanOnTarget returns the first plan submitted after p on p's target.
func nextPlanOnTarget(s *fsm.State, p fsm.Plan) (fsm.Plan, bool) {
	var (
		next  fsm.Plan
		found bool
	)
	for _, q := range s.Plans {
		if q.Seq > p.Seq && q.Spec.Target == p.Spec.Target && (!found || q.Seq < next.Seq) {
			next, found = q, true
		}
	}
	return next, found
}

func (n *Node) handlePlans(w http.ResponseWriter, r *http.Request) {
	q, ok := parseQuery(w, r)
	if !ok {
		return
	}
	n.blockOn(w, r, q, n.plansIndex)
	var out []api.PlanDetail
	now, trials := time.Now(), n.waitTrials()
	n.fsm.View(func(s *fsm.State) {
		for _, p := range s.PlanList() {
			d := planDetail(s, p, false)
			d.Waiting = decide.Waiting(s, p, now, trials[p.ID])
			out = append(out, d)
		}
	})
	if out == nil {
		out = []api.PlanDetail{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handlePlan(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q, ok := parseQuery(w, r)
	if !ok {
		return
	}
	n.blockOn(w, r, q, n.plansIndex)
	var d api.PlanDetail
	now, trials := time.Now(), n.waitTrials()
	n.fsm.View(func(s *fsm.State) {
		var p fsm.Plan
		if p, ok = s.Plans[id]; ok {
			d = planDetail(s, p, true)
			d.Waiting = decide.Waiting(s, p, now, trials[p.ID])
		}
	})
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("plan %s does not exist", id))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// --- writes (leader) ----------------------------------------------------

func (n *Node) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req api.SubmitRequest
	if !decodeBody(w, r, maxSubmitBody, &req) {
		return
	}
	req.SubmittedBy = identityOf(r).String() // never what the client says
	// Signatures first: with trusted_keys, nothing parses an unsigned
	// module's bytes.
	signedBy, status, err := n.checkSubmitSignature(req)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	spec, status, err := parseSubmit(req)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	if node := n.execRefuser(spec); node != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("plan %s has exec health checks and node %s refuses them (exec_checks: deny); use tcp, http or process checks", spec.Name, node))
		return
	}
	spec.SignedBy = signedBy
	res, err := n.submit(r.Context(), identityOf(r), spec, req.Module, req.Signature)
	if err != nil {
		commitErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.SubmitResponse{ID: res.PlanID, PatchID: spec.PatchID})
}

// submit takes a submission on this node (leader or follower): the
// module's bytes go into its store, durably, before one raft entry carries
// the plan with the module's sha256, size and signature (the other nodes
// fetch the bytes by hash, fetch.go). The FSM validates the plan against
// the state when it applies the entry: a refused submission records
// nothing, and its file, which nothing references, is collected later.
func (n *Node) submit(ctx context.Context, id auth.Identity, spec fsm.PlanSpec, module, sig []byte) (*fsm.Result, error) {
	sum := hexSum(module)
	if err := n.blobs.put(sum, module); err != nil {
		return nil, fmt.Errorf("storing the module on %s: %w", n.name, err)
	}
	spec.PatchSHA256 = sum
	return n.commit(ctx, id, &fsm.SubmitPlan{Spec: spec, Module: &fsm.ModuleRef{SHA256: sum, Size: len(module), PatchID: spec.PatchID, Signature: sig}})
}

// execRefuser names a node of the plan's pairs whose exec_checks is deny,
// when the plan has an exec check ("" otherwise).
func (n *Node) execRefuser(spec fsm.PlanSpec) string {
	hasExec := false
	for _, c := range spec.Health {
		hasExec = hasExec || c.Exec != ""
	}
	if !hasExec {
		return ""
	}
	var refuser string
	n.fsm.View(func(s *fsm.State) {
		names := make([]string, 0, len(s.Nodes))
		for name := range s.Nodes {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			nd := s.Nodes[name]
			if nd.NoExec && nd.Pair != "" && (len(spec.Pairs) == 0 || slices.Contains(spec.Pairs, nd.Pair)) {
				refuser = name
				return
			}
		}
	})
	return refuser
}

// parseSubmit checks a submission without touching state: the plan is
// valid, the module's bytes match their sha256 and are a patch module.
func parseSubmit(req api.SubmitRequest) (fsm.PlanSpec, int, error) {
	if len(req.Plan) == 0 {
		return fsm.PlanSpec{}, http.StatusBadRequest, errors.New("the request has no plan")
	}
	var plan config.Plan
	dec := json.NewDecoder(bytes.NewReader(req.Plan))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&plan); err != nil {
		return fsm.PlanSpec{}, http.StatusBadRequest, fmt.Errorf("bad plan: %w", err)
	}
	if err := plan.Validate(); err != nil {
		return fsm.PlanSpec{}, http.StatusBadRequest, fmt.Errorf("bad plan: %w", err)
	}
	if len(req.Module) == 0 {
		return fsm.PlanSpec{}, http.StatusBadRequest, errors.New("the request has no patch module")
	}
	if len(req.Module) > fsm.MaxBlobSize {
		return fsm.PlanSpec{}, http.StatusRequestEntityTooLarge,
			fmt.Errorf("patch module is %d bytes; the limit is %d (16 MiB)", len(req.Module), fsm.MaxBlobSize)
	}
	sum := sha256.Sum256(req.Module)
	if got := hex.EncodeToString(sum[:]); got != req.SHA256 {
		return fsm.PlanSpec{}, http.StatusBadRequest, fmt.Errorf("patch module sha256 is %s, the request says %q", got, req.SHA256)
	}
	name := submittedModuleName(req)
	mod, err := module.Parse(req.Module, name)
	if err != nil {
		return fsm.PlanSpec{}, http.StatusBadRequest, err
	}
	spec := fsm.PlanSpec{
		Name: plan.Name, PatchSHA256: req.SHA256, PatchID: mod.ID, Target: plan.Target,
		Pairs: plan.Pairs, Trial: plan.Trial, OnFailure: fsm.OnFailure(plan.OnFailure),
		FailoverDuringTrial: fsm.FailoverPolicy(plan.FailoverDuringTrial),
		ProgressDeadline:    plan.ProgressDeadline, SubmittedBy: req.SubmittedBy, MaxParallel: plan.MaxParallel,
		Mode: plan.Mode, Consistency: plan.Consistency, ApplyTimeout: plan.ApplyTimeout,
	}
	for _, c := range plan.Health {
		spec.Health = append(spec.Health, fsm.CheckSpec(c))
	}
	return spec, 0, nil
}

func (n *Node) handlePlanAction(w http.ResponseWriter, r *http.Request) {
	if !emptyBody(w, r) {
		return
	}
	n.planAction(w, r, r.PathValue("id"), r.PathValue("action"))
}

func (n *Node) handleRollbackLatest(w http.ResponseWriter, r *http.Request) {
	if !emptyBody(w, r) {
		return
	}
	var (
		p  fsm.Plan
		ok bool
	)
	n.fsm.View(func(s *fsm.State) { p, ok = s.LatestPlan() })
	if !ok {
		writeError(w, http.StatusNotFound, "there is no plan to roll back")
		return
	}
	n.planAction(w, r, p.ID, "rollback")
}

// planAction applies an operator's action on a plan, recording the
// authenticated identity in the history.
func (n *Node) planAction(w http.ResponseWriter, r *http.Request, id, action string) {
	by := identityOf(r).String()
	var cmd fsm.Command
	switch action {
	case "rollback":
		cmd = &fsm.RollbackPlan{Plan: id, Reason: "rollback by " + by, Staged: true}
	case "pause":
		cmd = &fsm.PausePlan{Plan: id, Reason: "paused by " + by}
	case "resume":
		cmd = &fsm.ResumePlan{Plan: id, Cause: "resumed by " + by}
	case "abort":
		cmd = &fsm.AbortPlan{Plan: id, Reason: "aborted by " + by}
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown plan action %q (want rollback, pause, resume or abort)", action))
		return
	}
	res, err := n.commit(r.Context(), identityOf(r), cmd)
	if err != nil {
		commitErr(w, err)
		return
	}
	resp := api.ActionResponse{Plan: id, Noop: res.Noop, Message: res.Message}
	n.fsm.View(func(s *fsm.State) { resp.State = string(s.Plans[id].State) })
	if resp.Message == "" {
		resp.Message = fmt.Sprintf("plan %s is %s", id, resp.State)
	}
	writeJSON(w, http.StatusOK, resp)
}

func rolesOf(nd fsm.Node) string {
	if nd.External() {
		return fsm.RolesExternal
	}
	return fsm.RolesManaged
}

// handlePromote is a manual switchover (see promotion): a direct promotion,
// or the demotion of the active with a handover that the leader completes
// once the demoted node's on_demote has run; the answer waits for the
// promotion (HandoverTimeout and a little more).
func (n *Node) handlePromote(w http.ResponseWriter, r *http.Request) {
	if !emptyBody(w, r) {
		return
	}
	name := r.PathValue("name")
	var (
		cmd  fsm.Command
		noop string
		err  error
	)
	now := time.Now()
	n.fsm.View(func(s *fsm.State) { cmd, noop, err = decide.Promotion(s, name, now, n.cfg.HandoverTimeout) })
	if sr, ok := cmd.(*fsm.SetRole); ok {
		sr.Cause += " (by " + identityOf(r).String() + ")"
	}
	var rf *decide.Refusal
	if errors.As(err, &rf) {
		writeError(w, refusalStatus(rf), rf.Msg)
		return
	}
	if cmd == nil {
		writeJSON(w, http.StatusOK, api.ActionResponse{Node: name, State: string(fsm.RoleActive), Noop: true, Message: noop})
		return
	}
	if _, err := n.apply(cmd); err != nil {
		writeErr(w, err)
		return
	}
	n.changed.Notify()
	sr := cmd.(*fsm.SetRole)
	if sr.Node == name {
		writeJSON(w, http.StatusOK, api.ActionResponse{Node: name, State: string(fsm.RoleActive), Message: name + " is now active: " + sr.Cause})
		return
	}
	// Wait for the leader's role step to finish the handover.
	deadline := time.NewTimer(n.cfg.HandoverTimeout + 2*time.Second)
	defer deadline.Stop()
	for {
		wake := n.changed.C()
		var (
			role    fsm.Role
			pending bool
			peer    fsm.Node
		)
		n.fsm.View(func(s *fsm.State) {
			role = s.Nodes[name].Role
			peer = s.Nodes[sr.Node]
			pending = peer.Handover == name
		})
		if role == fsm.RoleActive {
			msg := fmt.Sprintf("%s is now active; %s was demoted first", name, sr.Node)
			if peer.HookEpoch >= peer.RoleEpoch {
				msg += " and its on_demote finished"
			} else {
				msg += " (its on_demote did not finish in time)"
			}
			writeJSON(w, http.StatusOK, api.ActionResponse{Node: name, State: string(fsm.RoleActive), Message: msg})
			return
		}
		if !pending {
			writeError(w, http.StatusConflict, fmt.Sprintf("switchover to %s did not complete: %s is %s, %s is %s", name, name, role, sr.Node, peer.Role))
			return
		}
		select {
		case <-wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("switchover to %s is still waiting for %s's on_demote", name, sr.Node))
			return
		case <-r.Context().Done():
			return
		}
	}
}

// handleRemoveMember removes a node for good: from the FSM (its desired and
// observed state go with it) and from the raft configuration. Refused for
// the leader itself, for a node still alive or suspect in gossip unless
// force is set (a running lpd that is removed joins again), for the active
// of a pair whose standby is registered (promote the standby first), and,
// by the FSM, for a node in an unfinished plan.
func (n *Node) handleRemoveMember(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force") == "true"
	if name == n.name {
		writeError(w, http.StatusConflict, fmt.Sprintf("refusing to remove %s: it is the raft leader (stop its lpd, wait for a new leader, then retry)", name))
		return
	}
	var (
		nd         fsm.Node
		registered bool
		standby    string
	)
	n.fsm.View(func(s *fsm.State) {
		nd, registered = s.Nodes[name]
		if registered && nd.Pair != "" {
			_, standby = s.PairRoles(nd.Pair)
		}
	})
	inRaft := false
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			if string(sv.ID) == name {
				inRaft = true
			}
		}
	}
	if !registered && !inRaft {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %s is neither registered nor in the raft configuration", name))
		return
	}
	if !force {
		for _, m := range n.ml.Members() {
			if m.Name == name && (m.State == heartbeat.StateAlive || m.State == heartbeat.StateSuspect) {
				writeError(w, http.StatusConflict, fmt.Sprintf("refusing to remove %s: it is %s in gossip (stop its lpd first, or use --force)", name, m.State))
				return
			}
		}
	}
	if registered && nd.Role == fsm.RoleActive && !nd.External() && standby != "" && standby != name {
		writeError(w, http.StatusConflict, fmt.Sprintf("refusing to remove %s: it is the active of pair %s (promote %s first: lpctl promote %s)", name, nd.Pair, standby, standby))
		return
	}
	cause := "removed by " + identityOf(r).String()
	if force {
		cause += " (forced)"
	}
	if registered {
		if _, err := n.apply(&fsm.RemoveNode{Node: name, Cause: cause}); err != nil {
			writeErr(w, err)
			return
		}
	}
	if inRaft {
		if err := n.raft.RemoveServer(raft.ServerID(name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
			writeErr(w, fmt.Errorf("removing %s from the raft configuration: %w", name, err))
			return
		}
	}
	n.log.Info("removed member", "member", name, "forced", force, "registered", registered, "raft", inRaft)
	msg := fmt.Sprintf("%s removed from the cluster", name)
	switch {
	case !registered:
		msg = fmt.Sprintf("%s removed from the raft configuration (it was not registered)", name)
	case !inRaft:
		msg = fmt.Sprintf("%s removed (it was not in the raft configuration)", name)
	}
	writeJSON(w, http.StatusOK, api.ActionResponse{Node: name, State: "removed", Message: msg})
}

func (n *Node) handleHook(w http.ResponseWriter, r *http.Request) {
	var req api.HookReport
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Node) {
		return
	}
	res, err := n.commit(r.Context(), identityOf(r), hookCommand(req))
	if err != nil {
		commitErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ActionResponse{Node: req.Node, Noop: res.Noop, Message: res.Message})
}

func (n *Node) handleRole(w http.ResponseWriter, r *http.Request) {
	var req api.RoleReport
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Node) {
		return
	}
	res, err := n.commit(r.Context(), identityOf(r), roleCommand(req))
	if err != nil {
		commitErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ActionResponse{Node: req.Node, State: req.Role, Noop: res.Noop, Message: res.Message})
}

func (n *Node) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req api.RegisterRequest
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Name) {
		return
	}
	_, err := n.commit(r.Context(), identityOf(r), registerCommand(req))
	if err != nil {
		commitErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (n *Node) handlePeerHealth(w http.ResponseWriter, r *http.Request) {
	var req api.PeerHealthReport
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Node) {
		return
	}
	if _, err := n.commit(r.Context(), identityOf(r), peerHealthCommand(req)); err != nil {
		commitErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleReadIndex answers an agent's read-index barrier (see
// Node.readIndex); n.write has forwarded it here if this node leads.
func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	var req api.ReadIndexRequest
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Node) {
		return
	}
	idx, err := n.readIndex()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ReadIndex{Leader: n.name, Index: idx})
}

func (n *Node) handleObserved(w http.ResponseWriter, r *http.Request) {
	var req api.ObservedRequest
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Node) {
		return
	}
	_, err := n.commit(r.Context(), identityOf(r), observedCommand(req))
	if err != nil {
		commitErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (n *Node) handleTrialFailure(w http.ResponseWriter, r *http.Request) {
	var req api.TrialFailure
	if !decodeBody(w, r, maxBody, &req) || !speaksFor(w, r, req.Node) {
		return
	}
	if req.Plan == "" || req.Node == "" {
		writeError(w, http.StatusBadRequest, "a trial failure names a plan and a node")
		return
	}
	n.trials.add(req, time.Now())
	n.changed.Notify()
	writeJSON(w, http.StatusOK, struct{}{})
}

// refusalStatus is the HTTP status of a decider's refusal.
func refusalStatus(r *decide.Refusal) int {
	if r.Kind == decide.NotFound {
		return http.StatusNotFound
	}
	return http.StatusConflict
}
