#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that e2e/testenv starts, from the
# versions pinned in e2e/tools/go.mod, into .cache/testbin/ (ignored by git).
# A stamp file holds a hash of e2e/tools/go.mod and go.sum: while it matches
# and both binaries exist, nothing is rebuilt. Safe to run concurrently: a
# lock serialises builders, and binaries appear only by rename when complete.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${SERVERFIRST_TESTBIN:-$root/.cache/testbin}
mkdir -p "$out"

exec 9>"$out/.lock"
flock 9

want=$(cat e2e/tools/go.mod e2e/tools/go.sum | sha256sum | cut -d' ' -f1)
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] &&
   [ "$(cat "$out/.stamp" 2>/dev/null)" = "$want" ]; then
  echo "testbins: kube-apiserver and etcd are up to date in $out"
  exit 0
fi
rm -f "$out/.stamp"

k8s_version=$(cd e2e/tools && go list -m -f '{{.Version}}' k8s.io/kubernetes)
major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
# The same -X flags Kubernetes' own build sets, so `kubectl version` and
# discovery report the pinned release instead of v0.0.0-master.
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"

build() { # name package [ldflags]
  local name=$1 pkg=$2 flags=${3:-"-s -w"} start=$SECONDS
  (cd e2e/tools && CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$out/.$name.tmp" "$pkg")
  mv -f "$out/.$name.tmp" "$out/$name"
  echo "testbins: built $name in $((SECONDS - start))s"
}

echo "testbins: building etcd (about a minute)..."
build etcd go.etcd.io/etcd/server/v3
echo "testbins: building kube-apiserver $k8s_version (first time: 10-15 min on 2 cores)..."
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
echo "$want" >"$out/.stamp"
echo "testbins: done: $out/kube-apiserver, $out/etcd"
