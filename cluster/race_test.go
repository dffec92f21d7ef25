//go:build race

package cluster

// raceEnabled says the test binary runs under the race detector, which
// slows the code 2-20x: waits for conditions stretch by raceWaitFactor.
const raceEnabled = true
