#!/usr/bin/env bash
# Benchmark of the prober (make bench): 10,000 loopback targets, half of them
# greeting at once and half silent, banner timeout 1s, through the built
# bin/kubectl-serverfirst and through nmap's banner script, side by side.
# Extra arguments go to the bench program (see: go run ./hack/bench -h),
# e.g. hack/bench.sh -targets 2000 -nmap ''.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/kubectl-serverfirst ] || make build
mkdir -p .cache/bench
go build -o .cache/bench/bench ./hack/bench
exec .cache/bench/bench -bin bin/kubectl-serverfirst -targets 10000 -timeout 1s "$@"
