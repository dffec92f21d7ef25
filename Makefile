# make demo: the single-host demo.  make test: every test.  make bench: figures.
GO ?= go

.PHONY: build test bench demo examples cluster-down

build:
	$(GO) build -o bin/lpd ./cmd/lpd
	$(GO) build -o bin/lpctl ./cmd/lpctl

examples:
	$(MAKE) -C examples

demo: build
	bin/lpctl demo
	bin/lpctl demo --cluster

# -p 1: one package at a time. The cluster tests time heartbeats in
# hundreds of milliseconds; sharing two cores with the engine's stress test
# (8 spinning threads) can make a healthy node look suspect.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -p 1 -timeout 20m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

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
