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

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...
