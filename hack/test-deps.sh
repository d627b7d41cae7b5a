#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine.
# Safe to run again: each step checks before it installs or builds.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in mariadbd:mariadb-server sshd:openssh-server redis-server:redis-server \
            nmap:nmap ip:iproute2 iptables:iptables exim4:exim4-daemon-light chromium:chromium chromedriver:chromium-driver \
            curl:curl unshare:util-linux setpriv:util-linux; do
  bin=${pair%%:*} pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need_apt+=("$pkg")
done
# PostgreSQL's server binaries live outside PATH on Debian.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test-deps: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's postinst scripts start system daemons; the tests start their own
# throw-away instances on loopback, so stop the system ones to free ports.
for svc in mariadb redis-server postgresql ssh exim4; do
  service "$svc" stop >/dev/null 2>&1 || true
done
# kube-apiserver + etcd for internal/testenv, built once from e2e/tools (slow the first time).
bash hack/testbins.sh
# helm, for scan -f's `helm template` test, built once from the Go module proxy
# into .cache/bin (a few minutes the first time).
HELM_VERSION=v3.22.0
if [ "$(cat .cache/bin/.helm-version 2>/dev/null)" != "$HELM_VERSION" ] || [ ! -x .cache/bin/helm ]; then
  echo "test-deps: building helm $HELM_VERSION into .cache/bin"
  mkdir -p .cache/bin
  GOBIN="$PWD/.cache/bin" GOFLAGS=-mod=mod go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > .cache/bin/.helm-version
fi
# The SARIF 2.1.0 JSON schema for the -o sarif test, from the npm registry
# (@microsoft/jest-sarif ships it), checked against the hash it had when pinned.
SARIF_SCHEMA=.cache/sarif/sarif-2.1.0-rtm.5.json
SARIF_SCHEMA_SHA256=2d99159ae54a3eea97f81781cff48780548657c35949f4b7f25e99a2ba4de4f8
if ! echo "$SARIF_SCHEMA_SHA256  $SARIF_SCHEMA" | sha256sum -c --status 2>/dev/null; then
  echo "test-deps: fetching the SARIF 2.1.0 schema (npm @microsoft/jest-sarif)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @microsoft/jest-sarif@1.0.0-beta.0 >/dev/null && tar xzf microsoft-jest-sarif-1.0.0-beta.0.tgz package/lib/schemas/sarif-2.1.0-rtm.5.json)
  mkdir -p .cache/sarif
  mv "$tmp/package/lib/schemas/sarif-2.1.0-rtm.5.json" "$SARIF_SCHEMA"
  rm -rf "$tmp"
  echo "$SARIF_SCHEMA_SHA256  $SARIF_SCHEMA" | sha256sum -c --status || { echo "test-deps: $SARIF_SCHEMA has an unexpected hash" >&2; exit 1; }
fi
