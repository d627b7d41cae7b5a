#!/usr/bin/env bash
# make demo: the whole on-call flow against a built-in world, no cluster
# needed. As root it starts the e2e world (a real kube-apiserver + etcd,
# real istiod, a node agent running pods as processes in their own network
# namespaces, sidecars configured by istiod's xDS, real MariaDB/sshd/redis), seeds the
# sample workloads and runs `kubectl-serverfirst scan -A` and `fix` against
# it. Without root (network namespaces need it) it falls back to probing
# throw-away servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

cluster_demo() {
  mkdir -p .cache/demo
  if [ ! -x "${SERVERFIRST_TESTBIN:-.cache/testbin}/kube-apiserver" ] || [ ! -x "${SERVERFIRST_ISTIOBIN:-${SERVERFIRST_TESTBIN:-.cache/testbin}}/pilot-discovery" ]; then
    echo "demo: first run: building kube-apiserver, etcd and Istio's pilot-discovery and pilot-agent from source into .cache/testbin"
    echo "demo: (15-25 minutes on two cores; later runs start in seconds)"
  fi
  bash hack/testbins.sh
  local kc=.cache/demo/kubeconfig log=.cache/demo/testcluster.log
  rm -f "$kc"
  echo "demo: starting the world (API server, istiod, node agent, sidecars, MariaDB, sshd, redis)..."
  # Built, not `go run`: go run does not pass Ctrl-C on, and the world must
  # see it to tear down its namespaces.
  go -C e2e build -o ../.cache/demo/testcluster ./cmd/testcluster
  .cache/demo/testcluster --kubeconfig "$kc" --world --seed demo --world-bin-dir .cache/demo/bin >"$log" 2>&1 &
  world_pid=$!
  stop_world() { kill -INT "$world_pid" 2>/dev/null || true; wait "$world_pid" 2>/dev/null || true; }
  trap stop_world EXIT
  local waited=0
  until [ -s "$kc" ]; do
    if ! kill -0 "$world_pid" 2>/dev/null; then echo "demo: the world failed to start:"; tail -20 "$log"; exit 1; fi
    sleep 1; waited=$((waited + 1))
    if [ $((waited % 15)) -eq 0 ]; then echo "demo: still starting ($waited s): $(tail -1 "$log")"; fi
  done
  echo "demo: world ready: $(grep -c . "$log") log lines in $log"
  run() { echo; echo "\$ kubectl serverfirst $*"; bin/kubectl-serverfirst --kubeconfig "$kc" "$@"; }
  echo
  echo "1. Scan every namespace: probe pods with and without a sidecar, and a port-forward"
  echo "   to each server for the direct path."
  run scan -A --timeout 2s --connect-timeout 2s || true
  echo
  echo "2. The fixes, ready for kubectl apply -f - (or fix --apply):"
  run fix -n shop --timeout 2s --connect-timeout 2s || true
  echo
  echo "3. Why (kubectl serverfirst explain DEADLOCK):"
  run explain DEADLOCK
}

probe_demo() {
  [ -x bin/kubectl-serverfirst ] || make build
  mkdir -p .cache/demo
  go build -o .cache/demo/servers ./hack/demo

  coproc SERVERS { exec .cache/demo/servers; }
  servers_pid=$SERVERS_PID
  stop_servers() { kill "$servers_pid" 2>/dev/null || true; wait "$servers_pid" 2>/dev/null || true; }
  trap stop_servers EXIT

  targets=()
  declare -A addr
  echo "Local servers (loopback only):"
  while read -r name address description <&"${SERVERS[0]}"; do
    [ "$name" = ready ] && break
    printf '  %-17s %-16s %s\n' "$name" "$address" "$description"
    targets+=("$address")
    addr[$name]=$address
  done

  run() { echo; echo "\$ kubectl serverfirst $*"; bin/kubectl-serverfirst "$@"; }

  echo
  echo "1. Who speaks first? Server-first protocols show a banner; client-first ones stay silent."
  run probe --timeout 3s "${targets[@]}"

  echo
  echo "2. The deadlock: the same SMTP server directly and behind a protocol-sniffing proxy."
  echo "   The proxy waits for the client's first bytes; the client waits for the greeting."
  run probe --timeout 2s "${addr[smtp]}" "${addr[smtp-via-sidecar]}"

  echo
  echo "3. JSON for automation (banner bytes exact; binary greetings also in bannerBase64):"
  run probe -o json "${addr[smtp]}" "${addr[mysql]}"
}

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iptables-restore >/dev/null && [ "${DEMO:-cluster}" = cluster ]; then
  cluster_demo
else
  echo "demo: not root (or DEMO=probe): showing the prober on loopback instead of the cluster flow"
  probe_demo
fi
