#!/usr/bin/env bash
# Conformance of cluster.ConvertProtocol and cluster.ServiceEntryPortProtocol
# against Istio's own code (make test). The tests live in their own module,
# e2e/tools/conformance, so istio.io/istio never enters the product's go.mod;
# the root `go test ./...` does not reach them, hence this script.
# Extra arguments go to go test, e.g.
#   hack/conformance.sh -run='^$' -fuzz=FuzzConvertProtocol -fuzztime=60s
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
. "$(dirname "$0")/lib/gomod.sh"
cd "$(dirname "$0")/../e2e/tools/conformance"
tidy_if_stale conformance e2e/tools/conformance
go vet ./...
go test -count=1 "$@" ./...
