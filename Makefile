# scaledownd — build, test and demo. `make help` lists the targets.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/scaledownd
# Pinned external test peers, built from the Go module proxy.
AEMM_VERSION := v1.13.0
TOOLS   := $(CURDIR)/build/tools
AEMM    := $(TOOLS)/ec2-metadata-mock

export TESTPEERS_AEMM := $(AEMM)

.PHONY: help build test fmt-check vet unit demo tools clean package package-test fuzz docs chaos

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: $(BIN) ## Build the daemon into bin/.

$(BIN): $(shell find cmd internal pkg -name '*.go' -not -name '*_test.go') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/scaledownd

tools: $(AEMM) ## Build the pinned external test peers (amazon-ec2-metadata-mock).

$(AEMM):
	GOBIN=$(TOOLS) $(GO) install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$(AEMM_VERSION)

test: fmt-check vet unit ## gofmt check, go vet and every test with -race.

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit: tools
	$(GO) test -race -count=1 -timeout 10m ./...

FUZZTIME ?= 60s
fuzz: ## Fuzz the message classifier and the Trino response parser (FUZZTIME each).
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./pkg/lifecycle/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTaskCount$$' -fuzztime $(FUZZTIME) ./pkg/trinoadmin/
	$(GO) test -run '^$$' -fuzz '^FuzzInfo$$' -fuzztime $(FUZZTIME) ./pkg/trinoadmin/

demo: ## Run a whole scale-down locally against the test peers (no AWS, no Trino).
	@# One build for both binaries: they share the compile of every dependency.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/scaledownd ./internal/cmd/demo
	bin/demo -binary $(BIN)

package: ## Build the .deb and .rpm into dist/ (VERSION=X.Y.Z to set the version).
	bash scripts/package.sh deb rpm

package-test: ## Install, upgrade, lint and purge the .deb on this machine (Debian, root).
	bash scripts/package-test.sh

docs: ## Regenerate the README's configuration table from the settings.
	$(GO) run ./internal/cmd/docgen

clean: ## Remove build output.
	rm -rf bin build dist

chaos: ## Fault matrix: SIGKILL/SIGTERM, AWS, Trino and IMDS faults against the real binary (RELIABILITY.md).
	$(GO) test -tags chaos -race -count=1 -timeout 20m -v ./chaos/

.PHONY: e2e
e2e: tools ## A real Trino 476 cluster (fetched into .cache/trino) drained by the real binary (scripts/e2e.sh, e2e/).
	scripts/e2e.sh

.PHONY: bench
bench: ## Benchmarks (8–10 min): fleets of 1–1,000 in sqs/imds/both modes and mode both's polling policies → BENCHMARKS.md, bench/results.json, bench/p1.png.
	@set -eo pipefail; start=$$(date +%s.%N); \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/scaledownd ./internal/cmd/bench; \
	mkdir -p build; \
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 300ms -count 1 ./pkg/lifecycle/ | tee build/bench-go.txt; \
	bin/bench -binary $(BIN) -gobench build/bench-go.txt -since $$start \
		-out BENCHMARKS.md -results bench/results.json -chart bench/p1.png
