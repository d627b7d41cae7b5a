#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that internal/testenv starts, from the
# versions pinned in e2e/tools/go.mod, and Istio's pilot-discovery (istiod)
# and pilot-agent that the e2e world runs, from e2e/tools/istio/go.mod (plus
# that module's own istio-world command), into .cache/testbin/ (ignored by
# git). Each group has its own stamp file holding a hash of its inputs:
# while it matches and the binaries exist, that group is not rebuilt (so
# moving the Istio pin never rebuilds kube-apiserver, and editing
# istio-world never rebuilds istiod). Safe to run concurrently: a lock
# serialises builders, and binaries appear only by rename when complete.
#
# SERVERFIRST_TESTBIN overrides the folder; SERVERFIRST_ISTIOBIN puts the
# Istio group elsewhere (e.g. while kube-apiserver comes from a shared
# folder someone else builds).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${SERVERFIRST_TESTBIN:-$root/.cache/testbin}
istio_out=${SERVERFIRST_ISTIOBIN:-$out}
mkdir -p "$out" "$istio_out"

build() { # module-dir out-dir name package [ldflags]
  local dir=$1 dest=$2 name=$3 pkg=$4 flags=${5:-"-s -w"} start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$dest/.$name.tmp" "$pkg")
  mv -f "$dest/.$name.tmp" "$dest/$name"
  echo "testbins: built $name in $((SECONDS - start))s"
}

kube_bins() {
  local want
  want=$(cat e2e/tools/go.mod e2e/tools/go.sum | sha256sum | cut -d' ' -f1)
  if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] &&
     [ "$(cat "$out/.stamp" 2>/dev/null)" = "$want" ]; then
    echo "testbins: kube-apiserver and etcd are up to date in $out"
    return
  fi
  rm -f "$out/.stamp"

  local k8s_version major minor vpkg ldflags
  k8s_version=$(cd e2e/tools && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  major=${k8s_version#v}; major=${major%%.*}
  minor=${k8s_version#v*.}; minor=${minor%%.*}
  # The same -X flags Kubernetes' own build sets, so `kubectl version` and
  # discovery report the pinned release instead of v0.0.0-master.
  vpkg=k8s.io/component-base/version
  ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"

  echo "testbins: building etcd (about a minute)..."
  build e2e/tools "$out" etcd go.etcd.io/etcd/server/v3
  echo "testbins: building kube-apiserver $k8s_version (first time: 10-15 min on 2 cores)..."
  build e2e/tools "$out" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
  echo "$want" >"$out/.stamp"
  echo "testbins: done: $out/kube-apiserver, $out/etcd"
}

# istio_bins builds istiod and pilot-agent from the pinned istio.io/istio.
# (The world renders the injector from the same module's charts at start-up,
# through istio-world, so only the pin matters here.)
istio_bins() {
  local want dir=e2e/tools/istio
  want=$(cat $dir/go.mod $dir/go.sum | sha256sum | cut -d' ' -f1)
  if [ -x "$istio_out/pilot-discovery" ] && [ -x "$istio_out/pilot-agent" ] &&
     [ "$(cat "$istio_out/.stamp-istio" 2>/dev/null)" = "$want" ]; then
    echo "testbins: pilot-discovery and pilot-agent are up to date in $istio_out"
    return
  fi
  rm -f "$istio_out/.stamp-istio"
  local pin moddir istio_version ldflags
  pin=$(cd $dir && go list -m -f '{{.Version}}' istio.io/istio)
  moddir=$(cd $dir && go list -m -f '{{.Dir}}' istio.io/istio)
  if [ -z "$moddir" ]; then
    (cd $dir && go mod download istio.io/istio)
    moddir=$(cd $dir && go list -m -f '{{.Dir}}' istio.io/istio)
  fi
  # The version Istio's own Makefile stamps (VERSION file + "-dev"): the
  # proxies and istiod compare it in xDS, so it must parse as 1.X.
  istio_version=$(cat "$moddir/VERSION")-dev
  ldflags="-s -w -X istio.io/istio/pkg/version.buildVersion=$istio_version -X istio.io/istio/pkg/version.buildStatus=Clean"
  echo "testbins: building pilot-discovery $istio_version ($pin; first time: several minutes on 2 cores)..."
  build $dir "$istio_out" pilot-discovery istio.io/istio/pilot/cmd/pilot-discovery "$ldflags"
  echo "testbins: building pilot-agent..."
  build $dir "$istio_out" pilot-agent istio.io/istio/pilot/cmd/pilot-agent "$ldflags"
  echo "$want" >"$istio_out/.stamp-istio"
  echo "testbins: done: $istio_out/pilot-discovery, $istio_out/pilot-agent"
}

# istio_world builds e2e/tools/istio's own command (chart rendering, the
# xDS side of the world's sidecars). It changes with this repository, so
# its stamp hashes the module's sources; the world computes the same hash
# (world.LocateIstioBinaries) and asks for this script when it is stale.
istio_world() {
  local want dir=e2e/tools/istio
  want=$(find $dir -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
  if [ -x "$istio_out/istio-world" ] && [ "$(cat "$istio_out/.stamp-istio-world" 2>/dev/null)" = "$want" ]; then
    echo "testbins: istio-world is up to date in $istio_out"
    return
  fi
  rm -f "$istio_out/.stamp-istio-world"
  build $dir "$istio_out" istio-world ./cmd/istio-world
  echo "$want" >"$istio_out/.stamp-istio-world"
}

exec 9>"$out/.lock"
flock 9
kube_bins
if [ "$istio_out" != "$out" ]; then
  exec 8>"$istio_out/.lock"
  flock 8
fi
istio_bins
istio_world
