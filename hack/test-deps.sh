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
# kube-apiserver + etcd for e2e/testenv, built once from e2e/tools (slow the first time).
bash hack/testbins.sh
