#!/usr/bin/env bash
# The e2e module (make test): the world, the end-to-end tests, the RBAC and
# scenario tests, the sidecar model. They live in their own module, e2e/, so
# what only the world needs (k8s.io/cri-streaming, ...) never enters the
# product's go.mod; the root `go test ./...` does not reach them, hence this
# script. Extra arguments go to go test, e.g.
#   hack/e2e.sh -run TestJob ./world/
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
cd "$(dirname "$0")/../e2e"
# The module replaces ours with .., so raising a requirement in the root
# go.mod leaves this go.mod behind; say what to do instead of go's terse
# "updates to go.mod needed".
if ! go mod tidy -diff >/dev/null 2>&1; then
  echo "e2e: warning: e2e/go.mod is stale (the root go.mod changed);" >&2
  echo "e2e: tidying it for this run; commit the result: (cd e2e && go mod tidy)" >&2
  go mod tidy
fi
go vet ./...
if [ $# -eq 0 ]; then set -- ./...; fi
go test -count=1 "$@"
