# edgesink — see README.md. Two commands do all set-up on Debian:
#   make run    run the sink on its embedded defaults (SMTP 127.0.0.1:2525,
#               embedded MQTT broker 127.0.0.1:1883)
#   make test   install missing test tools, then run the whole suite

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
FUZZTIME ?= 20s

.PHONY: all go-check build run test test-deps vet fuzz bench cross clean help

all: build

help:
	@echo "make run     run edgesink with built-in defaults"
	@echo "make test    install test tools (Debian, as root) and run all tests"
	@echo "make build   build bin/edgesink for this machine"
	@echo "make cross   build every Raspberry Pi / Linux target into dist/"
	@echo "make bench   measure throughput and latency against mosquitto"
	@echo "make fuzz    fuzz the mail parser for longer (FUZZTIME=$(FUZZTIME))"

go-check:
	@command -v $(GO) >/dev/null 2>&1 || { echo "edgesink needs Go 1.25 or newer: https://go.dev/doc/install (Debian 13: apt-get install golang-go, whose Go 1.24 fetches 1.25 by itself; Debian 12's is too old)"; exit 1; }

build: go-check
	$(BUILD) -o bin/edgesink ./cmd/edgesink

run: build
	./bin/edgesink

test-deps:
	@./.ci/test-deps

vet:
	@fmt=$$(gofmt -l .); if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	$(GO) vet ./...

test: go-check test-deps vet
	$(GO) test -race -timeout 8m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime 15s ./sink

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME) ./sink

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 3000x -timeout 10m ./cmd/edgesink

# One binary per board profile (see board/board.go and `edgesink board`).
cross:
	mkdir -p dist
	GOOS=linux GOARCH=arm GOARM=6 $(BUILD) -o dist/edgesink-pi-zero   ./cmd/edgesink
	GOOS=linux GOARCH=arm GOARM=7 $(BUILD) -o dist/edgesink-pi-armv7  ./cmd/edgesink
	GOOS=linux GOARCH=arm64       $(BUILD) -o dist/edgesink-pi-arm64  ./cmd/edgesink
	GOOS=linux GOARCH=amd64       $(BUILD) -o dist/edgesink-linux-amd64 ./cmd/edgesink
	@ls -l dist/

clean:
	rm -rf bin dist
