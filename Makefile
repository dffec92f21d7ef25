# make demo: the single-host demo.  make test: every test.  make bench: figures.
GO ?= go

.PHONY: build test bench demo examples

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
