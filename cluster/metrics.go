package cluster

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lp/fsm"
)

// dashboard is the operator's web page at /ui/: plain HTML, CSS and
// JavaScript over the API, no build step.
//
//go:embed ui
var dashboard embed.FS

// metrics are one node's Prometheus metrics, in a registry of its own (two
// nodes in one process never share one). What this node does (engine
// pauses, hook runs, apply errors) is counted as it happens; what the
// cluster is (plans, members, rollbacks, trials) is read from this node's
// FSM replica at each scrape, so every node answers the same.
type metrics struct {
	reg         *prometheus.Registry
	pause       *prometheus.HistogramVec
	hookRuns    *prometheus.CounterVec
	applyErrors prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		pause: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lp_engine_pause_seconds",
			Help: "How long the engine kept a target's threads stopped to activate or revert a patch on this node.",
			// 10µs to ~80ms: a healthy pause is well under a millisecond.
			Buckets: prometheus.ExponentialBuckets(1e-5, 2, 14),
		}, []string{"node", "target"}),
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lp_hook_runs_total",
			Help: "on_promote and on_demote runs on this node, by hook and result (ok, failed).",
		}, []string{"hook", "result"}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lp_agent_apply_errors_total",
			Help: "Failed attempts of this node's agent to bring a target to its desired patches.",
		}),
	}
	m.reg.MustRegister(m.pause, m.hookRuns, m.applyErrors, stateCollector{n},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observePause(node, target string, d time.Duration) {
	m.pause.WithLabelValues(node, target).Observe(d.Seconds())
}

func (m *metrics) hookRun(hook string, ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.hookRuns.WithLabelValues(hook, result).Inc()
}

// handler serves the node's registry, and extra (raft's and memberlist's
// go-metrics, which are process-wide) when set.
func (m *metrics) handler(extra prometheus.Gatherer) http.Handler {
	var g prometheus.Gatherer = m.reg
	if extra != nil {
		g = prometheus.Gatherers{m.reg, extra}
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// stateCollector reads the cluster's state from the node's FSM at scrape.
type stateCollector struct{ n *Node }

var _ prometheus.Collector = stateCollector{}

// descs are built per call: descriptors are cheap and this keeps the
// package free of globals.
func (stateCollector) descs() (plans, rollbacks, healthy, role, trial *prometheus.Desc) {
	return prometheus.NewDesc("lp_plans", "Plans by state.", []string{"state"}, nil),
		prometheus.NewDesc("lp_rollbacks_total", "Plans that went to rolling_back, by cause (operator, health, member, process, apply, deadline, failover, other), from the replicated history.", []string{"cause"}, nil),
		prometheus.NewDesc("lp_member_healthy", "1 when the member is alive and its node-level health checks pass, else 0.", []string{"node"}, nil),
		prometheus.NewDesc("lp_member_role", "1 for the member's current role (active, standby, witness).", []string{"node", "role"}, nil),
		prometheus.NewDesc("lp_trial_seconds", "How long finished trials ran, start to pass, over the plans in the FSM.", nil, nil)
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	a, b, d, e, f := c.descs()
	for _, x := range []*prometheus.Desc{a, b, d, e, f} {
		ch <- x
	}
}

// trialBuckets are the upper bounds of lp_trial_seconds.
func trialBuckets() []float64 { return []float64{1, 5, 10, 30, 60, 120, 300, 600, 1800} }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	plansD, rollbacksD, healthyD, roleD, trialD := c.descs()
	c.n.fsm.View(func(s *fsm.State) {
		byState := map[fsm.PlanState]int{}
		for _, st := range fsm.PlanStates() {
			byState[st] = 0
		}
		trialCount, trialSum := uint64(0), 0.0
		bounds := trialBuckets()
		buckets := make(map[float64]uint64, len(bounds))
		for _, p := range s.Plans {
			byState[p.State]++
			for _, st := range p.Steps {
				if st.TrialStarted.IsZero() || st.TrialPassed.IsZero() || st.TrialPassed.Before(st.TrialStarted) {
					continue
				}
				d := st.TrialPassed.Sub(st.TrialStarted).Seconds()
				trialCount++
				trialSum += d
				for _, b := range bounds {
					if d <= b {
						buckets[b]++
					}
				}
			}
		}
		for st, k := range byState {
			ch <- prometheus.MustNewConstMetric(plansD, prometheus.GaugeValue, float64(k), string(st))
		}
		ch <- prometheus.MustNewConstHistogram(trialD, trialCount, trialSum, buckets)
		causes := map[string]int{}
		for _, e := range s.History {
			if e.Kind == fsm.EventPlanState && e.To == string(fsm.PlanRollingBack) {
				causes[rollbackCause(e.Cause)]++
			}
		}
		for cause, k := range causes {
			ch <- prometheus.MustNewConstMetric(rollbacksD, prometheus.CounterValue, float64(k), cause)
		}
		for _, nd := range s.Nodes {
			h := 0.0
			if nd.Status == fsm.StatusAlive && nd.Healthy {
				h = 1
			}
			ch <- prometheus.MustNewConstMetric(healthyD, prometheus.GaugeValue, h, nd.Name)
			for _, r := range []fsm.Role{fsm.RoleActive, fsm.RoleStandby, fsm.RoleWitness} {
				v := 0.0
				if nd.Role == r {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(roleD, prometheus.GaugeValue, v, nd.Name, string(r))
			}
		}
	})
}

// rollbackCause sorts a rollback's free-text cause into a label of few
// values.
func rollbackCause(cause string) string {
	c := strings.ToLower(cause)
	for _, k := range []struct{ match, label string }{
		{"operator", "operator"},
		{"health check", "health"},
		{"is unhealthy", "health"},
		{"in gossip", "member"},
		{"was removed", "member"},
		{"is not running", "process"},
		{"patching", "apply"},
		{"deadline", "deadline"},
		{"did not finish", "deadline"},
		{"failover", "failover"},
	} {
		if strings.Contains(c, k.match) {
			return k.label
		}
	}
	return "other"
}

// routeOps adds the operator's endpoints, GET /metrics and the dashboard at
// GET /ui/, each wrapped by read: the API's authentication for the reader
// role (the dashboard's actions call the API and need the operator role).
func (n *Node) routeOps(mux *http.ServeMux, read func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /metrics", read(n.metrics.handler(n.cfg.Metrics).ServeHTTP))
	ui, err := fs.Sub(dashboard, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(ui))
	mux.HandleFunc("GET /ui/", read(files.ServeHTTP))
	mux.HandleFunc("GET /ui", read(http.RedirectHandler("/ui/", http.StatusMovedPermanently).ServeHTTP))
}
