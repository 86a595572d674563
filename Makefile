# scaledownd — build, test and demo. `make help` lists the targets.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/scaledownd
# Pinned external test peers (versions in scripts/setup.sh, which installs
# them into the git-ignored build/tools): amazon-ec2-metadata-mock and moto.
TOOLS   := $(CURDIR)/build/tools
export TESTPEERS_AEMM := $(TOOLS)/ec2-metadata-mock
export TESTPEERS_MOTO := $(TOOLS)/moto/venv/bin/moto_server

.PHONY: help build setup test fmt-check vet unit demo tools clean package package-test fuzz docs chaos

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: $(BIN) ## Build the daemon into bin/.

$(BIN): $(shell find cmd internal pkg -name '*.go' -not -name '*_test.go') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/scaledownd

setup: ## Install what the tests need and this machine lacks (Debian packages, pinned test peers); nothing when all is there.
	@bash scripts/setup.sh

tools: ## Install only the pinned test peers into build/tools (amazon-ec2-metadata-mock, moto).
	@bash scripts/setup.sh tools

test: setup fmt-check vet unit ## Set up, then gofmt check, go vet and every test with -race.

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit: setup
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

chaos: tools ## Fault matrix: SIGKILL/SIGTERM, AWS, Trino and IMDS faults against the real binary (RELIABILITY.md).
	$(GO) test -tags chaos -race -count=1 -timeout 20m -v ./chaos/

.PHONY: e2e
e2e: tools ## A real Trino 476 cluster (fetched into .cache/trino) drained by the real binary (scripts/e2e.sh, e2e/).
	scripts/e2e.sh

.PHONY: bench
# lifecycled, the external peer P3 runs beside the daemon (docs/benchmarks.md): the binary
# from LIFECYCLED=/path, else the pinned commit installed from a module proxy that serves it.
LIFECYCLED_VERSION := aae4e9e7640ac2100c3378b502ab9d75ac1683ff
LIFECYCLED ?=
bench: ## Benchmarks (8–10 min): P1–P5 in sqs/imds/both modes, lifecycled beside the default → BENCHMARKS.md, bench/results.json, bench/p1.png.
	@set -eo pipefail; start=$$(date +%s.%N); \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/scaledownd ./internal/cmd/bench; \
	mkdir -p build; lc='$(LIFECYCLED)'; \
	if [ -z "$$lc" ]; then \
		if GOBIN=$(TOOLS) CGO_ENABLED=0 $(GO) install -trimpath -ldflags '-s -w' github.com/buildkite/lifecycled/cmd/lifecycled@$(LIFECYCLED_VERSION) 2>build/lifecycled-install.txt; \
		then lc=$(TOOLS)/lifecycled; else echo "lifecycled not installed (build/lifecycled-install.txt): the report says so"; fi; \
	fi; \
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 300ms -count 1 ./pkg/lifecycle/ | tee build/bench-go.txt; \
	before=; if [ -f bench/before-issue12.json ]; then before='-before bench/before-issue12.json'; fi; \
	bin/bench -binary $(BIN) -lifecycled "$$lc" -gobench build/bench-go.txt $$before -since $$start \
		-out BENCHMARKS.md -results bench/results.json -chart bench/p1.png
