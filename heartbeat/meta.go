package heartbeat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// MetaMaxSize is the largest encoded Meta memberlist accepts (512 bytes).
const MetaMaxSize = memberlist.MetaMaxSize

// Health summary values, used by Meta.Health, Summary.State and
// CheckStatus.State.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	// HealthUnknown: not proven either way yet (a check that has not reached
	// its first transition, or a member whose metadata says nothing).
	HealthUnknown = "unknown"
)

// Meta is what a member tells the others about itself through gossip.
type Meta struct {
	Pair   string // pair name; empty on a witness
	Role   string // active | standby | witness
	Server bool   // raft voter
	// Health is HealthHealthy, HealthUnhealthy or HealthUnknown; empty
	// encodes as unknown.
	Health       string
	FailingCheck string // name of the failing check, if any
	Output       string // last output line of the failing check (truncated to fit)
	Version      string // agent version
	API          string // host:port of the HTTP API
	Raft         string // host:port of the raft transport
	// Timing is the member's gossip timing, Timing.Fingerprint; the
	// Membership sets it on the local member's metadata.
	Timing string
}

// wireMeta is the encoding: JSON with one-letter keys and empty fields left
// out, which keeps a typical Meta near 100 bytes.
type wireMeta struct {
	Pair         string `json:"p,omitempty"`
	Role         string `json:"r,omitempty"`
	Server       bool   `json:"s,omitempty"`
	Health       string `json:"h,omitempty"`
	FailingCheck string `json:"f,omitempty"`
	Output       string `json:"o,omitempty"`
	Version      string `json:"v,omitempty"`
	API          string `json:"a,omitempty"`
	Raft         string `json:"t,omitempty"`
	Timing       string `json:"g,omitempty"`
}

// ellipsis marks a truncated Output or FailingCheck.
const ellipsis = "…"

// EncodeMeta encodes m in at most MetaMaxSize bytes. When the encoding is too
// large, Output and then FailingCheck are shortened (at a UTF-8 boundary,
// ending in "…"); if it still does not fit, the error wraps ErrMetaTooLarge.
func EncodeMeta(m Meta) ([]byte, error) {
	switch m.Health {
	case "", HealthHealthy, HealthUnhealthy, HealthUnknown:
	default:
		return nil, fmt.Errorf("%w: meta health %q: want %s, %s or %s",
			ErrInvalidConfig, m.Health, HealthHealthy, HealthUnhealthy, HealthUnknown)
	}
	if m.Health == "" {
		m.Health = HealthUnknown
	}
	w := wireMeta(m)
	b, err := marshalMeta(w)
	if err != nil {
		return nil, err
	}
	for _, field := range []*string{&w.Output, &w.FailingCheck} {
		for len(b) > MetaMaxSize && *field != "" {
			*field = shorten(*field, len(b)-MetaMaxSize)
			if b, err = marshalMeta(w); err != nil {
				return nil, err
			}
		}
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes without the failing check; limit %d (shorten pair, role, version or addresses)",
			ErrMetaTooLarge, len(b), MetaMaxSize)
	}
	return b, nil
}

func marshalMeta(w wireMeta) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encoding meta: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// shorten drops at least over bytes (plus room for the ellipsis) from the end
// of s, cutting at a rune boundary.
func shorten(s string, over int) string {
	s = trimSuffix(s, ellipsis)
	keep := len(s) - over - len(ellipsis)
	if keep <= 0 {
		return ""
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + ellipsis
}

func trimSuffix(s, suffix string) string {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)]
	}
	return s
}

// DecodeMeta decodes metadata received from another member. Empty input (a
// member that publishes none) gives a Meta with unknown health. An unknown
// Health value is read as unknown. Input that is not valid metadata gives an
// error; DecodeMeta never panics.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{Health: HealthUnknown}, nil
	}
	if len(b) > MetaMaxSize {
		return Meta{Health: HealthUnknown}, fmt.Errorf("decoding meta: %d bytes; limit %d: %w", len(b), MetaMaxSize, ErrMetaTooLarge)
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{Health: HealthUnknown}, fmt.Errorf("decoding meta: %w", err)
	}
	m := Meta(w)
	switch m.Health {
	case HealthHealthy, HealthUnhealthy:
	default:
		m.Health = HealthUnknown
	}
	return m, nil
}
