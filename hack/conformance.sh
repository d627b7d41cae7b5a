#!/usr/bin/env bash
# Conformance of cluster.ConvertProtocol and cluster.ServiceEntryPortProtocol
# against Istio's own code (make test). The tests live in their own module,
# e2e/tools/conformance, so istio.io/istio never enters the product's go.mod;
# the root `go test ./...` does not reach them, hence this script.
# Extra arguments go to go test, e.g.
#   hack/conformance.sh -run='^$' -fuzz=FuzzConvertProtocol -fuzztime=60s
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
cd "$(dirname "$0")/../e2e/tools/conformance"
# The module replaces ours with ../../.., so raising a requirement in the
# root go.mod leaves this go.mod behind; say what to do instead of go's
# terse "updates to go.mod needed".
if ! go mod tidy -diff >/dev/null 2>&1; then
  echo "conformance: warning: e2e/tools/conformance/go.mod is stale (the root go.mod changed);" >&2
  echo "conformance: tidying it for this run; commit the result: (cd e2e/tools/conformance && go mod tidy)" >&2
  go mod tidy
fi
go vet ./...
go test -count=1 "$@" ./...
