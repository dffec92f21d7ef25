package fsm

import (
	"fmt"
	"maps"
	"reflect"
)

// Held is what readers may keep from a View: the values of the state's
// maps (a Plan, a Node, an Observed, a desired stack), which share their
// slices and maps with the state. An apply must never write into such a
// value; it stores a new one. Tests take a Held before each command and
// check it after (decide's verifier, this package's harness).
type Held struct {
	plans    map[string]Plan
	nodes    map[string]Node
	observed map[string]map[string]Observed
	desired  map[string]map[string][]PatchRef
	was      *State // deep copy, taken at the same time
}

// Hold takes the values a reader could keep now, and a deep copy of them.
func (f *FSM) Hold() Held {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h := Held{
		plans: maps.Clone(f.state.Plans), nodes: maps.Clone(f.state.Nodes),
		observed: map[string]map[string]Observed{}, desired: map[string]map[string][]PatchRef{},
		was: f.state.Clone(),
	}
	for k, v := range f.state.Observed {
		h.observed[k] = maps.Clone(v)
	}
	for k, v := range f.state.Desired {
		h.desired[k] = maps.Clone(v)
	}
	return h
}

// InPlace describes the first held value that differs from what it was
// when it was taken (an apply wrote into it), or returns "".
func (h Held) InPlace() string {
	diff := func(what string, held, was any) string {
		if reflect.DeepEqual(held, was) {
			return ""
		}
		return fmt.Sprintf("%s changed in place under a reader that held it:\nheld %+v\nwas  %+v", what, held, was)
	}
	for id, p := range h.plans {
		if d := diff("plan "+id, p, h.was.Plans[id]); d != "" {
			return d
		}
	}
	for name, n := range h.nodes {
		if d := diff("node "+name, n, h.was.Nodes[name]); d != "" {
			return d
		}
	}
	for name, m := range h.observed {
		for t, o := range m {
			if d := diff("the observation of "+name+"/"+t, o, h.was.Observed[name][t]); d != "" {
				return d
			}
		}
	}
	for name, m := range h.desired {
		for t, s := range m {
			if d := diff("the desired stack of "+name+"/"+t, s, h.was.Desired[name][t]); d != "" {
				return d
			}
		}
	}
	return ""
}
