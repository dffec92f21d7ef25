// Package faults is lp's fault suite: it runs real lpd processes, each in
// its own network namespace joined to the others by veth pairs on a bridge
// the test creates, with real C targets, and injects the faults that real
// networks, disks and machines produce (partitions both ways and one way,
// random loss and a slow link, kill -9, SIGSTOP, target crashes, failing health checks,
// a full disk, a data dir lost or damaged) while a plan runs. It records a
// history of every API call and answer, the plan's FSM events, role hooks
// and what each target itself prints, and checks lp's promises over that
// history (see check_test.go).
//
// A seed picks the schedule; a failing schedule prints the command that
// replays it (LP_FAULT_SEED=N). `go test ./faults` runs a short fixed set;
// `make soak DURATION=30m` runs random schedules and prints a summary table.
//
// Everything lives in the tests: the package has no API. It needs root (for
// namespaces, tc, tmpfs and ptrace); without network namespaces the cases
// skip with a message.
package faults
