package cluster

import (
	"os"
	"strconv"
	"time"
)

// raceWaitFactor stretches the tests' waits under the race detector.
const raceWaitFactor = 3

// waitBudget is how long a test waits for a condition it expects within d
// on an idle machine without the race detector: d, times raceWaitFactor
// under -race, times LP_TEST_WAIT_SCALE when set (a float, for very slow or
// very loaded machines). Only the failure deadline stretches: a wait still
// returns as soon as its condition holds.
func waitBudget(d time.Duration) time.Duration {
	if raceEnabled {
		d *= raceWaitFactor
	}
	if f, err := strconv.ParseFloat(os.Getenv("LP_TEST_WAIT_SCALE"), 64); err == nil && f > 1 {
		d = time.Duration(float64(d) * f)
	}
	return d
}
