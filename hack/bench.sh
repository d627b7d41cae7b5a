#!/usr/bin/env bash
# Benchmarks (make bench):
#  1. the prober: 10,000 loopback targets on 2,500 addresses of 127.0.0.0/8,
#     half of them greeting at once and half silent, banner timeout 1s,
#     through the built bin/kubectl-serverfirst with its default options and
#     through nmap's banner script, side by side. Extra arguments go to the
#     bench program (see: go run ./hack/bench -h), e.g.
#     hack/bench.sh -targets 2000 -nmap ''. BENCH_PROBE=0 skips it.
#  2. the static scan: a real kube-apiserver + etcd seeded with 200
#     namespaces, 5,000 Services, 20,000 Pods, 5,000 EndpointSlices and 1,000
#     ServiceEntries; times cluster.Load and `scan --static -A -o json` and
#     counts API requests (see: go run ./hack/bench-scan -h), at that size
#     and three times it (-scale 1,3: about 31,000 and 94,000 objects, each on
#     a freshly seeded server), then prints how time and memory grow.
#     BENCH_SCAN_ARGS replace those flags, e.g. BENCH_SCAN_ARGS='-pods 2000
#     -runs 3'. BENCH_SCAN=0 skips it. Both need SERVERFIRST_TESTBIN or
#     .cache/testbin (make test-deps) for kube-apiserver and etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/kubectl-serverfirst ] || make build
mkdir -p .cache/bench

if [ "${BENCH_PROBE:-1}" != 0 ]; then
	go build -o .cache/bench/bench ./hack/bench
	.cache/bench/bench -bin bin/kubectl-serverfirst -targets 10000 -ips 2500 -timeout 1s "$@"
fi

if [ "${BENCH_SCAN:-1}" != 0 ]; then
	echo
	go build -o .cache/bench/bench-scan ./hack/bench-scan
	# shellcheck disable=SC2086 # BENCH_SCAN_ARGS is a list of flags
	.cache/bench/bench-scan -bin bin/kubectl-serverfirst ${BENCH_SCAN_ARGS:--scale 1,3 -runs 3}
fi
