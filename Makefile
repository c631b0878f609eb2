# Release builds: static, trimmed, version-stamped binaries.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/mvrefresher/mvrefresher/internal/buildinfo.version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
PLATFORMS := linux/amd64 linux/arm64

.PHONY: build test unit fuzz lint release clean

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o mvrefresher ./cmd/mvrefresher

test:
	go test -race -count=1 ./...

# The tests that need no server (no PostgreSQL, no NATS), in seconds: the
# tests that start one skip themselves under -short.
unit:
	go test -short ./...

# A short run of every fuzz target (what parses outside input); crashers
# found before are in the packages' testdata/fuzz and run with the tests.
# The budgets are executions, about 15 s each on CI: with a duration, Go
# 1.26's fuzzing coordinator sometimes fails the target with "context
# deadline exceeded" as the time runs out (golang/go#75804, fixed in Go
# 1.27), which it did once in CI on 2026-12-02 with no failing input.
fuzz:
	go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 300000x ./replication
	go test -run '^$$' -fuzz '^FuzzParseNodeTree$$' -fuzztime 150000x ./catalog
	go test -run '^$$' -fuzz '^FuzzParseQualifiedName$$' -fuzztime 300000x ./config
	go test -run '^$$' -fuzz '^FuzzConfigFile$$' -fuzztime 5000x ./config

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	go vet ./...
	go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...

release:
	rm -rf dist && mkdir -p dist
	for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build $(GOFLAGS_BUILD) -o dist/mvrefresher-$(VERSION)-$$os-$$arch ./cmd/mvrefresher || exit 1; \
	done
	cd dist && sha256sum mvrefresher-* > SHA256SUMS

clean:
	rm -rf dist mvrefresher
