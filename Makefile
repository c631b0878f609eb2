# Release builds: static, trimmed, version-stamped binaries.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.buildVersion=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
PLATFORMS := linux/amd64 linux/arm64

.PHONY: build test lint release clean

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o mvrefresher ./cmd/mvrefresher

test:
	go test -race -count=1 ./...

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
