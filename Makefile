# edgesink — see README.md. Two commands do all set-up on Debian:
#   make run    run the sink on its embedded defaults (SMTP 127.0.0.1:2525,
#               embedded MQTT broker 127.0.0.1:1883)
#   make test   install missing test tools, then run the whole suite

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Size: packages on the mail path (HOT) are compiled as usual; the rest
# (charset tables, YAML, HTML-to-text tables, the embedded broker, HTTP code
# that only its unused listeners reach, crypto whose hot loops are assembly
# anyway, bcrypt) without inlining. That saves about 0.65 MB
# and keeps the ARMv6 binary well under its 12 MB budget with everything in (see README).
HOT      := runtime/... internal/... sync/... bytes bufio strings strconv unicode/... io net \
            net/textproto os syscall time encoding/json reflect fmt log/slog mime/... \
            github.com/emersion/... github.com/jhillyerd/... github.com/eclipse/... go.bug.st/... \
            github.com/edgesink/...
GCFLAGS  := -gcflags=all=-l $(foreach p,$(HOT),-gcflags=$(p)=)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false $(GCFLAGS) -ldflags '$(LDFLAGS)'
# Execution counts, not durations: a -fuzztime duration races the fuzz
# coordinator's own deadline on go1.26 (go.dev/issue/75804) and fails with
# "context deadline exceeded" on a loaded machine without any finding.
FUZZTIME ?= 200000x
DIST     ?= dist
# Debian package version: must start with a digit (v1.2.0-3-gabc -> 1.2.0+3+gabc).
DEBVERSION ?= $(shell echo '$(VERSION)' | sed -e 's/^v//' -e 's/-/+/g' -e '/^[0-9]/!s/^/0.0.0~git/')
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

# Board profiles: name -> GOOS GOARCH GOARM. The same table is in
# board/board.go (run `edgesink board`); TestMakefileBoards keeps them equal.
BOARDS := pi-zero pi-2 pi-arm64 pi-armv7 linux-amd64 linux-arm64
target_pi-zero     := linux arm 6
target_pi-2        := linux arm 7
target_pi-arm64    := linux arm64
target_pi-armv7    := linux arm 7
target_linux-amd64 := linux amd64
target_linux-arm64 := linux arm64
# Debian architecture -> the board binary its package carries. armhf gets
# the ARMv6 build: Raspberry Pi OS 32-bit runs it on every Pi.
DEB_ARCHES := armhf arm64 amd64
debbin_armhf := pi-zero
debbin_arm64 := pi-arm64
debbin_amd64 := linux-amd64

ifneq ($(BOARD),)
ifeq ($(target_$(BOARD)),)
$(error unknown BOARD=$(BOARD); one of: $(BOARDS))
endif
endif

.PHONY: all go-check build run test test-deps vet fuzz bench cross deb image size clean help

all: build

help:
	@echo "make run     run edgesink with built-in defaults"
	@echo "make test    install test tools (Debian, as root) and run all tests"
	@echo "make build   build bin/edgesink for this machine"
	@echo "make BOARD=pi-zero build   build for one board into dist/ ($(BOARDS))"
	@echo "make cross   build every board profile into dist/"
	@echo "make deb     .deb packages for $(DEB_ARCHES) into dist/"
	@echo "make image BASE=raspios.img.xz   a Raspberry Pi OS image with edgesink in it"
	@echo "make size    what each dependency costs in the ARMv6 binary"
	@echo "make bench   throughput and latency against mosquitto; start-up time, RSS, idle CPU per build"
	@echo "make fuzz    fuzz every parser and sanitizer for longer (FUZZTIME=$(FUZZTIME) executions each)"

go-check:
	@command -v $(GO) >/dev/null 2>&1 || { echo "edgesink needs Go 1.25 or newer: https://go.dev/doc/install (Debian 13: apt-get install golang-go, whose Go 1.24 fetches 1.25 by itself; Debian 12's is too old)"; exit 1; }

build: go-check
ifeq ($(BOARD),)
	$(BUILD) -o bin/edgesink ./cmd/edgesink
else
	@mkdir -p $(DIST)
	GOOS=$(word 1,$(target_$(BOARD))) GOARCH=$(word 2,$(target_$(BOARD))) GOARM=$(word 3,$(target_$(BOARD))) \
		$(BUILD) -o $(DIST)/edgesink-$(BOARD) ./cmd/edgesink
endif

run: build
	./bin/edgesink

test-deps:
	@./.ci/test-deps

vet:
	@fmt=$$(gofmt -l .); if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	$(GO) vet ./...

test: go-check test-deps vet
	$(GO) test -race -timeout 8m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime 40000x -fuzzminimizetime 100x -timeout 5m ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzPlainPath$$' -fuzztime 20000x -fuzzminimizetime 100x -timeout 3m ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzRunsPath$$' -fuzztime 5000x -fuzzminimizetime 100x -timeout 3m ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzLoginServer$$' -fuzztime 60000x -fuzzminimizetime 100x -timeout 3m ./sink/smtpd
	$(GO) test -run '^$$' -fuzz '^FuzzPlainServer$$' -fuzztime 60000x -fuzzminimizetime 100x -timeout 3m ./sink/smtpd

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME) ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzLoginServer$$' -fuzztime $(FUZZTIME) ./sink/smtpd
	$(GO) test -run '^$$' -fuzz '^FuzzPlainServer$$' -fuzztime $(FUZZTIME) ./sink/smtpd
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./forward/spool
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./sink/classify
	$(GO) test -run '^$$' -fuzz '^FuzzPageEscapes$$' -fuzztime $(FUZZTIME) ./forward/status
	$(GO) test -run '^$$' -fuzz '^FuzzCleanText$$' -fuzztime $(FUZZTIME) ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzPlainPath$$' -fuzztime $(FUZZTIME) ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzRunsPath$$' -fuzztime $(FUZZTIME) ./sink/extract
	$(GO) test -run '^TestRunsPathGenerated$$' -runs.mails 20000 ./sink/extract
	$(GO) test -run '^$$' -fuzz '^FuzzLineConn$$' -fuzztime $(FUZZTIME) ./sink/smtpd
	$(GO) test -run '^$$' -fuzz '^FuzzCapture$$' -fuzztime $(FUZZTIME) ./sink/smtpd
	$(GO) test -run '^$$' -fuzz '^FuzzCheckShape$$' -fuzztime $(FUZZTIME) ./sink/smtpd
	$(GO) test -run '^$$' -fuzz '^FuzzID$$' -fuzztime $(FUZZTIME) ./forward/hass

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 3000x -timeout 10m ./cmd/edgesink
	$(GO) test -run '^$$' -bench Footprint -benchtime 1x -timeout 10m ./deploy

# One binary per board profile (see board/board.go and `edgesink board`).
cross: go-check
	@for b in $(BOARDS); do $(MAKE) --no-print-directory BOARD=$$b build || exit 1; done
	@ls -l $(DIST)/edgesink-*

# Debian packages (nfpm, as a library: deploy/mkdeb) with the binary, the
# systemd unit, /etc/edgesink/edgesink.yaml as a conffile and a system user.
deb: go-check
	@$(foreach a,$(DEB_ARCHES),$(MAKE) --no-print-directory BOARD=$(debbin_$(a)) build && \
		$(GO) run ./deploy/mkdeb -arch $(a) -binary $(DIST)/edgesink-$(debbin_$(a)) -version $(DEBVERSION) -out $(DIST) &&) true

# A copy of a downloaded Raspberry Pi OS image with edgesink installed and
# enabled: make image BASE=2025-05-13-raspios-bookworm-arm64-lite.img.xz
# [CONFIG=my.yaml] [ARCH=arm64|armhf, else guessed from the name].
ARCH ?= $(if $(findstring arm64,$(BASE)),arm64,armhf)
image: go-check
	@test -n "$(BASE)" || { echo "usage: make image BASE=raspios.img.xz [CONFIG=edgesink.yaml] [ARCH=armhf|arm64]"; exit 2; }
	@test -n "$(debbin_$(ARCH))" || { echo "ARCH=$(ARCH): want armhf or arm64"; exit 2; }
	@$(MAKE) --no-print-directory BOARD=$(debbin_$(ARCH)) build
	deploy/image.sh "$(BASE)" "$(DIST)/edgesink-$(ARCH).img" "$(DIST)/edgesink-$(debbin_$(ARCH))" "$(or $(CONFIG),deploy/edgesink.yaml)"

# What each module costs in the ARMv6 binary (symbol sizes; see README).
size: go-check
	@$(MAKE) --no-print-directory cross >/dev/null
	@ls -l $(DIST)/edgesink-*
	@GOOS=linux GOARCH=arm GOARM=6 CGO_ENABLED=0 $(GO) build -trimpath $(GCFLAGS) -o $(DIST)/.edgesink-pi-zero.syms ./cmd/edgesink
	@$(GO) run ./deploy/binsize $(DIST)/.edgesink-pi-zero.syms

clean:
	rm -rf bin dist
