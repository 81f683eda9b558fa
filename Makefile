# ferry — run `make help` for the targets.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
BIN     := bin/ferry

.PHONY: help build test demo bench fuzz lint clean deps

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/ferry (static, trimmed, versioned)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/ferry

deps: ## install what tests, demo and benchmarks run against (apt, and the cached trixie and sid roots), when missing
	@bash internal/scripts/deps.sh
	$(GO) mod download

test: deps ## run every test: unit, fuzz seeds, and integration against real dockerd, sshd, registry, skopeo, podman
	$(GO) test -count=1 -timeout 20m ./...

demo: deps build ## the whole job on throwaway daemons: a bundle, a pool of two bundles sharing a base, a send over a throwaway sshd, the image run there
	@FERRY=$(CURDIR)/$(BIN) bash examples/demo/run.sh

bench: deps build ## measure save, load, pool, delta and send against docker, gzip, pigz, skopeo and ssh on a ~430 MB image; content deltas and pools of a rebuilt Debian tree against their floor
	@FERRY=$(CURDIR)/$(BIN) bash bench/bench.sh
	@FERRY=$(CURDIR)/$(BIN) bash bench/send.sh
	@FERRY=$(CURDIR)/$(BIN) bash bench/content.sh
	@FERRY=$(CURDIR)/$(BIN) bash bench/content.sh pool
	$(GO) test ./content -run '^$$' -bench . -benchtime 5x

# Inputs are tars of several KiB: minimizing one for seconds stalls a worker (0 execs/s), so
# minimization is capped by count.
FUZZ := archive:FuzzRead archive:FuzzManifestJSON archive:FuzzParseTag content:FuzzSegment content:FuzzRebuild content:FuzzIndexJSON content:FuzzCacheEntry dedupe:FuzzReadInventory dedupe:FuzzPoolRecord

fuzz: ## fuzz the bundle reader, the manifest and tag parsers, the content delta reader, the layer segmenter, the content index and cache, the inventory --have reads, and the pool's records, 60 s each
	@for f in $(FUZZ); do $(GO) test ./$${f%%:*} -run '^$$' -fuzz "^$${f#*:}\$$" -fuzztime 60s -fuzzminimizetime 100x || exit 1; done

lint: ## go vet, and staticcheck when installed
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; fi

clean: ## remove build output
	rm -rf bin
