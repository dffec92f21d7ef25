package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Gossip timings (Heartbeat.Timing).
const (
	TimingLANFast = "lan-fast" // lp's tuned failure detector: a silent node is dead in about 0.5-1 s
	TimingLAN     = "lan"      // memberlist's LAN defaults: about 5-6 s
	TimingCustom  = "custom"   // lan-fast with the probe_interval, probe_timeout and suspicion_mult given
)

// Heartbeat is the gossip failure detector's timing (heartbeat:). Every
// node of a cluster should have the same; lpd warns about a peer that
// publishes another. With timing custom, figures left out are lan-fast's
// (see Effective).
type Heartbeat struct {
	Timing        string        // timing: TimingLANFast (default), TimingLAN or TimingCustom
	ProbeInterval time.Duration // probe_interval: custom only; how often each member probes one other
	ProbeTimeout  time.Duration // probe_timeout: custom only; wait for a direct ack, < probe_interval
	SuspicionMult int           // suspicion_mult: custom only; suspicion lasts mult·max(1,log10(n))·probe_interval
}

// Limits of the custom timing.
const (
	minProbeInterval = 10 * time.Millisecond
	maxProbeInterval = time.Minute
	maxSuspicionMult = 100
)

// heartbeatFields is the schema of heartbeat:.
func heartbeatFields(h *Heartbeat) []field {
	return []field{
		{"timing", str(&h.Timing, "lan-fast, lan or custom")},
		{"probe_interval", duration(&h.ProbeInterval)},
		{"probe_timeout", duration(&h.ProbeTimeout)},
		{"suspicion_mult", func(d *decoder, path string, v *yaml.Node) error {
			if err := integer(&h.SuspicionMult, "an integer 1-100")(d, path, v); err != nil {
				return err
			}
			if h.SuspicionMult < 1 {
				// 0 means "not set" in the struct; written out, it is a mistake.
				return &Error{File: d.file, Line: v.Line, Field: path, Msg: fmt.Sprintf("%d out of range 1-%d", h.SuspicionMult, maxSuspicionMult), Err: ErrInvalid}
			}
			return nil
		}},
	}
}

// Custom figures when a custom timing leaves them out: lan-fast's.
const (
	DefaultProbeInterval = 100 * time.Millisecond
	DefaultSuspicionMult = 3
)

// Effective returns h with the figures timing custom leaves out filled:
// probe_interval 100ms, probe_timeout half the probe interval,
// suspicion_mult 3 (lan-fast's). The named timings are returned as they are.
func (h Heartbeat) Effective() Heartbeat {
	if h.Timing != TimingCustom {
		return h
	}
	if h.ProbeInterval == 0 {
		h.ProbeInterval = DefaultProbeInterval
	}
	if h.ProbeTimeout == 0 {
		h.ProbeTimeout = h.ProbeInterval / 2
	}
	if h.SuspicionMult == 0 {
		h.SuspicionMult = DefaultSuspicionMult
	}
	return h
}

// validate checks the heartbeat section: with the named timings none of
// probe_interval, probe_timeout and suspicion_mult may be set.
func (h *Heartbeat) validate() error {
	switch h.Timing {
	case TimingLANFast, TimingLAN:
		for _, c := range []struct {
			field string
			set   bool
		}{
			{"heartbeat.probe_interval", h.ProbeInterval != 0},
			{"heartbeat.probe_timeout", h.ProbeTimeout != 0},
			{"heartbeat.suspicion_mult", h.SuspicionMult != 0},
		} {
			if c.set {
				return invalid(c.field, fmt.Sprintf("only with timing: custom (timing is %s)", h.Timing))
			}
		}
		return nil
	case TimingCustom:
	default:
		return invalidNear("heartbeat.timing", "heartbeat", fmt.Sprintf("want lan-fast, lan or custom, got %q", h.Timing))
	}
	e := h.Effective()
	switch {
	case e.ProbeInterval < minProbeInterval || e.ProbeInterval > maxProbeInterval:
		return invalid("heartbeat.probe_interval", fmt.Sprintf("%v out of range %v-%v", e.ProbeInterval, minProbeInterval, maxProbeInterval))
	case e.ProbeTimeout <= 0 || e.ProbeTimeout >= e.ProbeInterval:
		return invalidNear("heartbeat.probe_timeout", "heartbeat", fmt.Sprintf("%v: want more than 0 and less than probe_interval (%v)", e.ProbeTimeout, e.ProbeInterval))
	case e.SuspicionMult < 1 || e.SuspicionMult > maxSuspicionMult:
		return invalid("heartbeat.suspicion_mult", fmt.Sprintf("%d out of range 1-%d", e.SuspicionMult, maxSuspicionMult))
	}
	return nil
}

// Priority is the CPU priority lpd gives its own threads (priority:), so
// that gossip and raft keep their timing when the services on the node
// saturate the CPUs. Processes lpd starts (health checks, hooks) keep the
// normal priority.
type Priority struct {
	Nice int // nice: nice level -20..19 of lpd's threads (the fallback with rt); default -10, 0 leaves it alone
	RT   int // rt: SCHED_RR priority 1-99, guarded by a CPU budget; default 1, 0: none
}

// DefaultNice is the nice level lpd's threads get without a real-time
// priority, or when theirs is refused or over its CPU budget.
const DefaultNice = -10

// DefaultRT is lpd's default real-time priority: the lowest, above every
// normal thread and below any other real-time one.
const DefaultRT = 1

func priorityFields(p *Priority) []field {
	return []field{
		{"nice", integer(&p.Nice, "an integer -20..19")},
		{"rt", integer(&p.RT, "an integer 0-99")},
	}
}

func (p *Priority) validate() error {
	switch {
	case p.Nice < -20 || p.Nice > 19:
		return invalid("priority.nice", fmt.Sprintf("%d out of range -20..19", p.Nice))
	case p.RT < 0 || p.RT > 99:
		return invalid("priority.rt", fmt.Sprintf("%d out of range 0-99 (0: no real-time priority)", p.RT))
	}
	return nil
}
