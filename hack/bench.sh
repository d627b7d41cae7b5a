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
#  3. the active scan at scale: the e2e world (real istiod, pods as
#     processes) seeded with 50 namespaces x 4 server-first Services, each
#     in front of its own sshd pod with a sidecar (200 servers; about 5 min
#     to seed on the shared machine, -servers 1 puts a namespace's four on
#     one pod), 6 of the namespaces with client config of their own; first
#     times one probe pod alone (the goal's "one probe pod's start"), then
#     counts the probe
#     pods (API watch), port-forwards and API requests (a counting proxy,
#     and apiserver_request_total) and times `scan -A --vantage pods` and
#     `--vantage config` of bin/kubectl-serverfirst, and `--vantage pods`
#     of the commit before probe pods were planned per client class
#     (9875430^, built into .cache/bench), side by side with issue 16's
#     goals (see: go -C e2e run ./cmd/worldbench -h). Needs root and
#     hack/test-deps.sh (Istio's binaries), else says "skipped". It starts
#     the world: where other worlds may run, hold their lock, e.g.
#     flock /tmp/world.lock make bench. BENCH_WORLD_ARGS replace the flags,
#     e.g. BENCH_WORLD_ARGS='-namespaces 10 -own-config 2'. BENCH_WORLD=0
#     skips it.
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

if [ "${BENCH_WORLD:-1}" != 0 ]; then
	echo
	if [ "$(id -u)" != 0 ]; then
		echo "world bench: skipped: needs root and hack/test-deps.sh (the e2e world creates network namespaces)"
	else
		go -C e2e build -o ../.cache/bench/worldbench ./cmd/worldbench
		before=()
		# "before" is the commit before the scan planned probe pods per
		# client class (9875430): one mesh-client and one outside-client
		# pod per namespace.
		if base=$(git rev-parse --verify -q 9875430^); then
			if [ "$(cat .cache/bench/before.rev 2>/dev/null)" != "$base" ] || [ ! -x .cache/bench/kubectl-serverfirst-before ]; then
				rm -rf .cache/bench/src-before && mkdir -p .cache/bench/src-before
				git archive "$base" | tar -x -C .cache/bench/src-before
				(cd .cache/bench/src-before && CGO_ENABLED=0 go build -trimpath -o ../kubectl-serverfirst-before ./cmd/kubectl-serverfirst)
				echo "$base" >.cache/bench/before.rev
			fi
			before=(-before .cache/bench/kubectl-serverfirst-before -before-name "before ${base:0:7}")
		else
			echo "world bench: no before run (commit 9875430 is not in this clone)"
		fi
		# shellcheck disable=SC2086 # BENCH_WORLD_ARGS is a list of flags
		.cache/bench/worldbench -bin bin/kubectl-serverfirst "${before[@]}" ${BENCH_WORLD_ARGS:-}
	fi
fi
