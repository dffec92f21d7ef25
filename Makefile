# make demo: the single-host demo.  make test: every test.  make bench: figures.
GO ?= go

.PHONY: build test bench demo examples cluster-down soak

build:
	$(GO) build -o bin/lpd ./cmd/lpd
	$(GO) build -o bin/lpctl ./cmd/lpctl

examples:
	$(MAKE) -C examples

demo: build
	bin/lpctl demo
	bin/lpctl demo --cluster

# -p 1: one package at a time, so the tests of one package do not load the
# machine for another's; go test prints each package's "ok" (or FAIL) line
# as soon as that package finishes, which is the progress report. The tests
# hold on a busy machine (their waits come from the code's timeouts, and the
# gossip in them runs at lpd's priority): see README for the times.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -p 1 -timeout 20m ./...

# BenchmarkLoadedHeartbeat (cluster) runs about 3 minutes: LP_HB_BENCH_SOAK
# (default 20s per load) lengthens it; LP_HB_PRIORITY=normal compares lpd
# without its priority.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

# The fault suite's soak: random schedules (faults/) for DURATION, then a
# summary table (schedules run, faults injected per kind, plans' ends,
# invariant violations); SOAK_TABLE names a file to write the table to.
# A failing schedule prints LP_FAULT_SEED=N to replay it. Needs root.
DURATION ?= 30m
SOAK_TABLE ?=
soak:
	LP_SOAK_DURATION=$(DURATION) LP_SOAK_TABLE=$(SOAK_TABLE) $(GO) test -count=1 -run '^TestSoak$$' -timeout 0 -v ./faults

# Stop what the README's cluster walk-through started: every process named in
# run/*.pid that is still an lpd or a sipd (a stale pidfile naming another
# process is left alone), waiting up to 15s for each before SIGKILL.
cluster-down:
	@for f in run/*.pid; do \
	  [ -f "$$f" ] || continue; pid=$$(cat "$$f"); rm -f "$$f"; \
	  case "$$(cat /proc/$$pid/comm 2>/dev/null)" in lpd|sipd) ;; *) continue ;; esac; \
	  kill "$$pid" 2>/dev/null; i=0; \
	  while kill -0 "$$pid" 2>/dev/null && [ $$i -lt 150 ]; do sleep 0.1; i=$$((i+1)); done; \
	  kill -9 "$$pid" 2>/dev/null; \
	  echo "stopped $$f ($$pid)"; \
	done; true
