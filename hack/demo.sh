#!/usr/bin/env bash
# make demo: start throw-away servers on 127.0.0.1 (hack/demo) and probe
# them with the built bin/kubectl-serverfirst. No cluster needed.
# (A later issue replaces this with the full cluster demo.)
set -euo pipefail
cd "$(dirname "$0")/.."
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
