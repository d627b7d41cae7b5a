#!/usr/bin/env bash
# The e2e module (make test): the world, the end-to-end tests, the RBAC and
# scenario tests, the sidecar model. They live in their own module, e2e/, so
# what only the world needs (k8s.io/cri-streaming, ...) never enters the
# product's go.mod; the root `go test ./...` does not reach them, hence this
# script. Extra arguments go to go test, e.g.
#   hack/e2e.sh -run TestJob ./world/
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
. "$(dirname "$0")/lib/gomod.sh"
cd "$(dirname "$0")/../e2e"
tidy_if_stale e2e e2e
go vet ./...
if [ $# -eq 0 ]; then set -- ./...; fi
go test -count=1 "$@"
