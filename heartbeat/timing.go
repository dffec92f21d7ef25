package heartbeat

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Timing is the failure-detector tuning handed to memberlist, plus the
// package's own waits. Field meanings are memberlist's (SWIM with the
// Lifeguard extensions).
//
// # Detection time
//
// With P = ProbeInterval, S = SuspicionMult, M = SuspicionMaxTimeoutMult,
// G = GossipInterval and n members, a node that stops answering is declared
// dead at an observer after
//
//	wait for a probe of it   0 .. (n-1)·P   (n-1 members each probe one
//	                                         member per P, round robin;
//	                                         typically under P)
//	+ the failed probe        P             (direct ping, ProbeTimeout, then
//	                                         indirect and TCP pings until the
//	                                         probe interval ends)
//	+ suspicion               S·s·P .. M·S·s·P,  s = max(1, log10(n))
//	                                        (the short end once S-2 other
//	                                         members confirm the suspicion,
//	                                         or at once when n-2 < S-2)
//	+ gossip of the death     about G       (0 at the member that declared it)
//
// Lifeguard stretches P and the probe waits (up to AwarenessMaxMultiplier
// times) on a member that itself misses acks, which is what keeps a loaded
// machine from declaring healthy peers dead. [Timing.ExpectedDetection]
// computes the typical and worst values.
type Timing struct {
	// Name is the timing's name in lpd.yaml (heartbeat.timing: lan-fast,
	// lan or custom), shown beside its figures; it changes nothing else.
	Name                    string
	ProbeInterval           time.Duration // how often each member probes one other member
	ProbeTimeout            time.Duration // wait for a direct ack before indirect probes
	IndirectChecks          int           // members asked to probe on our behalf
	SuspicionMult           int           // suspicion timeout = SuspicionMult·max(1,log10(n))·ProbeInterval
	SuspicionMaxTimeoutMult int           // unconfirmed suspicion lasts up to this many times the above
	AwarenessMaxMultiplier  int           // Lifeguard: max stretch of probe timing on a degraded member (1 = off)
	GossipInterval          time.Duration // how often queued broadcasts are gossiped
	GossipNodes             int           // members gossiped to per GossipInterval
	GossipToTheDeadTime     time.Duration // keep gossiping to a dead member this long (lets it refute)
	RetransmitMult          int           // a broadcast is sent RetransmitMult·ceil(log10(n+1)) times
	PushPullInterval        time.Duration // full state sync with one random member
	TCPTimeout              time.Duration // TCP connect/IO timeout (push/pull, fallback pings, leave intent)
	BroadcastTimeout        time.Duration // UpdateMeta waits this long for the update to be gossiped
	JoinRetryInterval       time.Duration // while alone, retry Config.Join this often
}

// LANFast is tuned for a LAN (or loopback) of carrier-grade nodes: a node
// that stops answering is declared dead in about half a second (see the
// formula on Timing: 100 ms probes, a 300 ms suspicion that stretches to
// 600 ms while unconfirmed, 50 ms gossip), while a member has to be silent for
// ~400 ms (failed probe plus suspicion) before it is declared dead, and
// Lifeguard is kept on.
func LANFast() Timing {
	return Timing{
		Name:                    "lan-fast",
		ProbeInterval:           100 * time.Millisecond,
		ProbeTimeout:            50 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 2,
		AwarenessMaxMultiplier:  8,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		GossipToTheDeadTime:     15 * time.Second,
		RetransmitMult:          4,
		PushPullInterval:        10 * time.Second,
		TCPTimeout:              time.Second,
		BroadcastTimeout:        time.Second,
		JoinRetryInterval:       time.Second,
	}
}

// MemberlistDefaultLAN is memberlist.DefaultLANConfig's tuning (1 s probes,
// 4·P suspicion: about 5-6 s to declare a node dead), for comparison.
func MemberlistDefaultLAN() Timing {
	c := memberlist.DefaultLANConfig()
	return Timing{
		Name:                    "lan",
		ProbeInterval:           c.ProbeInterval,
		ProbeTimeout:            c.ProbeTimeout,
		IndirectChecks:          c.IndirectChecks,
		SuspicionMult:           c.SuspicionMult,
		SuspicionMaxTimeoutMult: c.SuspicionMaxTimeoutMult,
		AwarenessMaxMultiplier:  c.AwarenessMaxMultiplier,
		GossipInterval:          c.GossipInterval,
		GossipNodes:             c.GossipNodes,
		GossipToTheDeadTime:     c.GossipToTheDeadTime,
		RetransmitMult:          c.RetransmitMult,
		PushPullInterval:        c.PushPullInterval,
		TCPTimeout:              c.TCPTimeout,
		BroadcastTimeout:        5 * time.Second,
		JoinRetryInterval:       5 * time.Second,
	}
}

// Custom returns LANFast with the probe interval, probe timeout and
// suspicion multiplier of lpd.yaml's heartbeat: timing: custom. The gossip
// interval follows the probe interval (half of it, at most LANFast's).
func Custom(probeInterval, probeTimeout time.Duration, suspicionMult int) Timing {
	t := LANFast()
	t.Name = "custom"
	t.ProbeInterval, t.ProbeTimeout, t.SuspicionMult = probeInterval, probeTimeout, suspicionMult
	t.GossipInterval = min(t.GossipInterval, probeInterval/2)
	return t
}

// Fingerprint is the timing as members publish it in their metadata:
// the name, then the figures the failure detector's verdicts depend on,
// "lan-fast 100ms/50ms/3/2" (probe interval / probe timeout / suspicion
// mult / suspicion max timeout mult).
func (t Timing) Fingerprint() string {
	name := t.Name
	if name == "" {
		name = "custom"
	}
	return fmt.Sprintf("%s %v/%v/%d/%d", name, t.ProbeInterval, t.ProbeTimeout, t.SuspicionMult, t.SuspicionMaxTimeoutMult)
}

// SameTiming reports whether two fingerprints carry the same figures (a
// custom timing equal to lan-fast agrees with lan-fast). An empty
// fingerprint (a member of an older version) agrees with everything.
func SameTiming(a, b string) bool {
	if a == "" || b == "" {
		return true
	}
	_, fa, _ := strings.Cut(a, " ")
	_, fb, _ := strings.Cut(b, " ")
	return fa == fb
}

// Validate reports the first field outside its limits.
func (t Timing) Validate() error {
	bad := func(field string, v any, limit string) error {
		return fmt.Errorf("%w: timing %s = %v; want %s", ErrInvalidConfig, field, v, limit)
	}
	switch {
	case t.ProbeInterval <= 0:
		return bad("ProbeInterval", t.ProbeInterval, "> 0")
	case t.ProbeTimeout <= 0 || t.ProbeTimeout >= t.ProbeInterval:
		return bad("ProbeTimeout", t.ProbeTimeout, fmt.Sprintf("> 0 and < ProbeInterval (%v)", t.ProbeInterval))
	case t.IndirectChecks < 0:
		return bad("IndirectChecks", t.IndirectChecks, ">= 0")
	case t.SuspicionMult < 1:
		return bad("SuspicionMult", t.SuspicionMult, ">= 1")
	case t.SuspicionMaxTimeoutMult < 1:
		return bad("SuspicionMaxTimeoutMult", t.SuspicionMaxTimeoutMult, ">= 1")
	case t.AwarenessMaxMultiplier < 1:
		return bad("AwarenessMaxMultiplier", t.AwarenessMaxMultiplier, ">= 1")
	case t.GossipInterval <= 0:
		return bad("GossipInterval", t.GossipInterval, "> 0")
	case t.GossipNodes < 1:
		return bad("GossipNodes", t.GossipNodes, ">= 1")
	case t.GossipToTheDeadTime < 0:
		return bad("GossipToTheDeadTime", t.GossipToTheDeadTime, ">= 0")
	case t.RetransmitMult < 1:
		return bad("RetransmitMult", t.RetransmitMult, ">= 1")
	case t.PushPullInterval < 0:
		return bad("PushPullInterval", t.PushPullInterval, ">= 0 (0 disables)")
	case t.TCPTimeout <= 0:
		return bad("TCPTimeout", t.TCPTimeout, "> 0")
	case t.BroadcastTimeout <= 0:
		return bad("BroadcastTimeout", t.BroadcastTimeout, "> 0")
	case t.JoinRetryInterval <= 0:
		return bad("JoinRetryInterval", t.JoinRetryInterval, "> 0")
	}
	return nil
}

func (t Timing) apply(c *memberlist.Config) {
	c.ProbeInterval = t.ProbeInterval
	c.ProbeTimeout = t.ProbeTimeout
	c.IndirectChecks = t.IndirectChecks
	c.SuspicionMult = t.SuspicionMult
	c.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	c.AwarenessMaxMultiplier = t.AwarenessMaxMultiplier
	c.GossipInterval = t.GossipInterval
	c.GossipNodes = t.GossipNodes
	c.GossipToTheDeadTime = t.GossipToTheDeadTime
	c.RetransmitMult = t.RetransmitMult
	c.PushPullInterval = t.PushPullInterval
	c.TCPTimeout = t.TCPTimeout
}

// suspicionBounds returns memberlist's shortest and longest suspicion
// timeout in a cluster of n members.
func (t Timing) suspicionBounds(n int) (lo, hi time.Duration) {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	lo = time.Duration(float64(t.SuspicionMult) * scale * float64(t.ProbeInterval))
	return lo, time.Duration(t.SuspicionMaxTimeoutMult) * lo
}

// SuspectBound is how long a member may stay suspect in this member's view,
// in a cluster of n members, before the suspicion is taken as a loss
// although memberlist has not declared the member dead:
//
//	SuspectBound(n) = M·S·max(1, log10(n))·P   memberlist's longest suspicion
//	                + 4·P                       margin
//
// The margin covers what separates a refutation from our view of it: the
// sweep that re-checks a suspicion older than the longest one runs every P
// and waits 2·P past it, and its ping takes up to one more P. A suspicion
// that memberlist ends with a refutation therefore ends in our view within
// the bound, and one that memberlist confirms turns into a Dead event
// before it (LANFast: 1 s for up to 9 members, 2 s at 100; the lan timing:
// 28 s for up to 9 members).
func (t Timing) SuspectBound(n int) time.Duration {
	_, hi := t.suspicionBounds(n)
	return hi + 4*t.ProbeInterval
}

// ExpectedDetection returns the typical and the worst time from a node going
// silent to its Dead event at an observer that did not declare it itself, in
// a cluster of n members, by the formula on Timing (without Lifeguard
// stretching). Typical assumes a probe within one interval and a confirmed
// suspicion; worst, the victim probed last by everyone and an unconfirmed
// suspicion.
func (t Timing) ExpectedDetection(n int) (typical, worst time.Duration) {
	if n < 2 {
		n = 2
	}
	lo, hi := t.suspicionBounds(n)
	if k := t.SuspicionMult - 2; k <= 0 || n-2 < k {
		hi = lo // memberlist expects no confirmations: the short timeout applies
	}
	p := t.ProbeInterval
	typical = p/2 + p + lo + t.GossipInterval
	worst = time.Duration(n-1)*p + p + hi + t.GossipInterval
	return typical, worst
}
