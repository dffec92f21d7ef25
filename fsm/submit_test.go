package fsm

import "testing"

func TestSubmitRefusesProcessCheckOfUnknownTarget(t *testing.T) {
	h := newCluster(t)
	sp := spec(blob1)
	sp.Health = []CheckSpec{{Name: "alive", Process: "nosuch"}}
	h.refused(&SubmitPlan{Spec: sp}, ErrInvalid, "process nosuch is not a target of node")
	sp.Health = []CheckSpec{{Name: "alive", Process: "other"}} // every node has "other"
	h.submit(sp)
}
