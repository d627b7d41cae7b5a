# kubectl-serverfirst — build, test and demo targets.
# Everything built here lands under ignored folders: bin/ (the product) and
# .cache/ (test tooling such as kube-apiserver and etcd).

GO      ?= go
BIN     := bin/kubectl-serverfirst
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build test test-deps check race staticcheck bench lint demo clean image release-snapshot conformance

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kubectl-serverfirst

# test-deps installs what the tests need on a fresh machine (Debian daemons,
# nmap, a kube-apiserver and etcd built from pinned modules). Idempotent.
test-deps:
	bash hack/test-deps.sh

# test runs the whole suite: the product's module, then the e2e module (the
# world and the end-to-end tests, e2e/go.mod), the conformance module and the
# Istio tools module. Under CI=true a missing daemon fails instead of skipping.
test: build
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -count=1 ./...
	bash hack/e2e.sh
	bash hack/conformance.sh
	cd e2e/tools/istio && $(GO) vet ./... && $(GO) test -count=1 ./...

# conformance compares our Istio rules with istio.io/istio's own code (a
# separate module under e2e/tools/conformance).
conformance:
	bash hack/conformance.sh

# check = install test dependencies + run the whole suite, then the race
# detector over the packages with hand-written concurrency, then staticcheck.
# README and .ci/run use this.
check: test-deps test race staticcheck

# race runs the packages that start goroutines of their own under the race
# detector (the whole suite under -race would take too long for every check).
RACE_PKGS := ./probe/ ./report/ ./report/publish/ ./cluster/...
race:
	$(GO) test -race -count=1 $(RACE_PKGS)

# staticcheck covers the product, its tests and hack/, then the e2e module.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck:
	$(STATICCHECK) ./...
	cd e2e && $(STATICCHECK) ./...

bench: build
	bash hack/bench.sh

lint: staticcheck
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...

demo: build
	bash hack/demo.sh

# image builds the container image (needs docker or podman; not used by tests).
IMAGE ?= ghcr.io/serverfirst/kubectl-serverfirst:$(VERSION)
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

# release-snapshot builds the krew archives into dist/ with goreleaser.
release-snapshot:
	$(GO) run github.com/goreleaser/goreleaser/v2@v2.15.1 release --snapshot --clean

clean:
	rm -rf bin .cache dist
