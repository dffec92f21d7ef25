package cluster

import (
	"strings"
	"testing"
	"time"

	"lp/fsm"
)

// An agent with trusted_keys refuses a module stored without a signature
// (here put straight into the FSM, as a leader without trusted_keys would
// accept it): nothing is applied and the plan rolls back with the reason.
func TestAgentRefusesUnsignedModule(t *testing.T) {
	const pub = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
	tc := startTestCluster(t, onePair, func(c *Config) {
		if c.Node.Node == "c-standby" {
			c.Node.TrustedKeys = []string{pub}
		}
	})
	tc.registered()
	id := tc.submit("fix1", time.Second, nil)
	p := tc.waitPlan(id, fsm.PlanRolledBack, 20*time.Second)
	if !strings.Contains(p.Reason, "on c-standby failed") || !strings.Contains(p.Reason, "refused: module not signed, and this node has trusted_keys") {
		t.Errorf("plan reason = %q; want c-standby's refusal of an unsigned module", p.Reason)
	}
	tc.patcher.mu.Lock()
	applied := tc.patcher.applied
	tc.patcher.mu.Unlock()
	if len(applied) != 0 {
		t.Errorf("applied %v; want nothing loaded anywhere", applied)
	}
}
