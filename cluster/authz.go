package cluster

import (
	"fmt"
	"time"

	"lp/internal/auth"
)

// loadSecurity loads and checks the node's TLS material and tokens: what
// cannot be used is a refusal to start, never a warning.
func (n *Node) loadSecurity() error {
	c := n.cfg.Node
	if c.TLS.CA != "" || c.TLS.Cert != "" || c.TLS.Key != "" {
		t, err := auth.LoadNodeTLS(c.TLS.CA, c.TLS.Cert, c.TLS.Key, n.name, time.Now())
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		n.tls = t
	}
	var toks []auth.Token
	for _, t := range c.Tokens {
		toks = append(toks, auth.Token{Name: t.Name, Role: t.Role, SHA256: t.SHA256})
	}
	ts, err := auth.NewTokens(toks)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	n.tokens = ts
	return nil
}
