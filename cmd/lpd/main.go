// Command lpd is the lp node daemon: it reads its node config and runs a
// cluster.Node (raft member, gossip member, agent, HTTP API) until SIGTERM or
// SIGINT, on which it leaves the cluster gracefully and exits 0.
//
//	lpd --config /etc/lp/lpd.yaml [--log-level debug|info|warn|error]
//	lpd --help
//
// --rejoin-as-new is the recovery for a node whose data dir was lost or
// damaged while the cluster still counts it as a voter (lpd refuses to start
// such a node otherwise): it leaves the cluster under its name and joins
// again as a new member that catches up from the leader
// (docs/operations-faults.md).
//
// The failure detector's timing comes from lpd.yaml's heartbeat: section;
// --gossip-timing lan-fast|lan overrides it (the failover benchmark compares
// the two that way).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"lp/cluster"
	"lp/config"
	"lp/engine"
	"lp/heartbeat"
	"lp/internal/logq"
	"lp/internal/sched"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is lpd without the process around it: it returns the exit status
// (0 after a graceful leave or --help, 1 on a config or start error, 2 on a
// bad invocation).
func run(args []string, stdout, stderr io.Writer) int {
	var (
		path, level, timing, prio string
		rejoin                    bool
		code                      int
	)
	root := &cobra.Command{
		Use:   "lpd --config lpd.yaml",
		Short: "The lp node daemon: raft and gossip member, patch agent, HTTP API",
		Long: `lpd is the lp node daemon. It reads its node config (see docs/config.md), joins
the cluster (raft member, gossip member), runs the agent that patches this
node's targets and serves the HTTP API on ports.api. It runs until SIGTERM
or SIGINT, then leaves the cluster gracefully and exits 0.`,
		Example:       "  lpd --config /etc/lp/lpd.yaml --log-level info",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code = serve(path, level, timing, prio, rejoin, stderr)
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.Flags()
	f.StringVar(&path, "config", "", "node config file (lpd.yaml); required")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&rejoin, "rejoin-as-new", false, "when the data dir lost this node's raft state but the cluster still counts it as a voter: leave under this name and join again empty (docs/operations-faults.md)")
	f.StringVar(&prio, "priority", "", "CPU priority of lpd's threads, overriding lpd.yaml's priority: normal, nice:N or rr:N")
	f.StringVar(&timing, "gossip-timing", "", "failure detector timing, overriding lpd.yaml's heartbeat.timing: lan-fast, or lan (alias memberlist-lan)")
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "lpd: %v\nusage: lpd --config lpd.yaml [--log-level info] (lpd --help for more)\n", err)
		return 2
	}
	return code
}

// serve runs the node until a signal; it returns the exit status.
// logQueueBytes bounds the log lines queued while the output is blocked.
const logQueueBytes = 8 << 20

func serve(path, level, timing, prio string, rejoin bool, stderr io.Writer) int {
	// Catch SIGTERM and SIGINT first, so that a signal during start-up
	// still ends in a graceful leave.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if path == "" {
		fmt.Fprintln(stderr, "usage: lpd --config lpd.yaml [--log-level info] (lpd --help for more)")
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		fmt.Fprintf(stderr, "lpd: bad --log-level %q: want debug, info, warn or error\n", level)
		return 2
	}
	var gossip heartbeat.Timing
	switch timing {
	case "":
	case "lan-fast":
		gossip = heartbeat.LANFast()
	case "lan", "memberlist-lan":
		gossip = heartbeat.MemberlistDefaultLAN()
	default:
		fmt.Fprintf(stderr, "lpd: bad --gossip-timing %q: want lan-fast or lan\n", timing)
		return 2
	}
	// Log lines queue in memory and one goroutine writes them out: a
	// write held by a busy disk must not stall gossip (package logq).
	// Errors go through the same queue, so they stay the last line.
	out := logq.New(stderr, logQueueBytes)
	defer out.Close()
	stderr = out
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: lv}))

	n, err := config.LoadNode(path)
	if err != nil {
		fmt.Fprintf(stderr, "lpd: %v\n", err)
		return 1
	}
	for _, key := range n.Unsupported() {
		log.Warn("config key is not supported by this lpd yet; ignored", "key", key)
	}
	if n.Insecure && n.TLS == (config.TLS{}) {
		log.Warn("insecure: true: the API and raft run without TLS and without authentication on " + n.Bind +
			"; anyone who reaches them can patch this host (set tls; see docs/security.md)")
	}
	p := sched.Priority{Nice: n.Priority.Nice, RT: n.Priority.RT}
	if prio != "" {
		if p, err = parsePriority(prio); err != nil {
			fmt.Fprintf(stderr, "lpd: bad --priority %q: %v\n", prio, err)
			return 2
		}
	}
	// Raised before the node starts, so that its threads start raised, and
	// kept on threads the runtime starts later; logged once it runs (a
	// start error is one line).
	var (
		threads  int
		raiseErr error
		got      = p
	)
	if !p.IsZero() {
		var stopRaise func()
		got, threads, stopRaise, raiseErr = sched.Raise(p, func(now sched.Priority, why string) {
			log.Warn("CPU priority of lpd's threads changed", "priority", now.String(), "why", why)
		})
		defer stopRaise()
	}
	cfg := cluster.FromNode(n)
	if cfg.Metrics, err = raftMetrics(); err != nil {
		// Metrics are for operators; lp runs without raft's.
		log.Warn("raft and memberlist metrics are not exported", "err", err)
	}
	cfg.Patcher = cluster.EnginePatcher{Options: engine.Options{
		DebugDir: n.DebugDir,
		Logf:     func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...), "component", "engine") },
	}}
	cfg.Logger = log
	cfg.RejoinAsNew = rejoin
	if timing != "" {
		cfg.Gossip = gossip
	}
	node, err := cluster.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "lpd: %v\n", err)
		return 1
	}
	switch {
	case p.IsZero():
	case raiseErr != nil && !got.IsZero():
		log.Warn("real-time priority refused; lpd runs at its fallback nice level, and heartbeats may be late on a saturated machine",
			"wanted", p.String(), "priority", got.String(), "threads", threads, "err", raiseErr)
	case raiseErr != nil:
		log.Warn("cannot raise lpd's CPU priority; heartbeats may be late on a saturated machine", "priority", p.String(), "err", raiseErr)
	default:
		log.Info("CPU priority of lpd's threads", "priority", p.String(), "threads", threads)
	}
	log.Info("heartbeat timing", "timing", cfg.Gossip.Fingerprint(), "suspect_bound_3_nodes", cfg.Gossip.SuspectBound(3))
	<-ctx.Done()
	log.Info("leaving the cluster")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	return 0
}

// raftMetrics sends raft's and memberlist's go-metrics (which they report
// to the process-wide go-metrics instance) to a Prometheus registry that
// the node serves at /metrics with its own: raft_*, memberlist_*.
func raftMetrics() (prometheus.Gatherer, error) {
	reg := prometheus.NewRegistry()
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 5 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("creating the prometheus sink: %w", err)
	}
	conf := gometrics.DefaultConfig("")
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false // the node's registry has Go's own
	if _, err := gometrics.NewGlobal(conf, sink); err != nil {
		return nil, fmt.Errorf("installing the go-metrics sink: %w", err)
	}
	return reg, nil
}

// parsePriority reads --priority: normal, nice:N or rr:N.
func parsePriority(s string) (sched.Priority, error) {
	var p sched.Priority
	kind, num, _ := strings.Cut(s, ":")
	v, err := strconv.Atoi(num)
	switch {
	case kind == "normal" && num == "":
		return p, nil
	case kind == "nice" && err == nil:
		p.Nice = v
	case kind == "rr" && err == nil && v > 0:
		p.RT, p.Nice = v, config.DefaultNice // the nice level is the fallback
	default:
		return p, errors.New("want normal, nice:N or rr:N")
	}
	return p, p.Validate()
}
