# One command runs every test: make test
GO ?= go

.PHONY: test build bench demo fuzz

build:
	$(GO) build ./...
	$(GO) build -o bin/lpd ./cmd/lpd
	$(GO) build -o bin/lpctl ./cmd/lpctl

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
