#!/usr/bin/env bash
# Builds the control plane berth's cluster-mode tests run against (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler) from
# k8s.io/kubernetes through the Go module proxy, into a cache outside the
# clone keyed by version. A complete build is never rebuilt; prints the
# directory holding the binaries. With --e2e it also builds the upstream
# node e2e suite (nodee2e.test, from integration/k8s/nodee2e) and agnhost,
# the suite's test server, into the same directory, once.
#
#   scripts/build-control-plane.sh            # build if missing, print bin dir
#   scripts/build-control-plane.sh --no-build # print bin dir if built, else fail
#   scripts/build-control-plane.sh --e2e      # also the e2e suite and agnhost
#   BERTH_K8S_CACHE=/elsewhere scripts/...    # another cache root
set -euo pipefail
mode=build e2e=false
for arg in "$@"; do
  case "$arg" in
    --no-build) mode=no-build ;;
    --e2e) e2e=true ;;
    *) echo "usage: $0 [--no-build] [--e2e]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../integration/k8s"

version=$(awk '($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2 } ($1 == "require" && $2 == "k8s.io/kubernetes") { print $3 }' go.mod | head -1)
[[ -n "$version" ]] || { echo "fatal: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
cache="${BERTH_K8S_CACHE:-/var/cache/berth-k8s}/$version"
bin="$cache/bin"
# ginkgo (the CLI, for --full's parallel run) came after .e2e-complete; a
# cache without it gets just that built.
have_e2e() { [[ -f "$bin/.e2e-complete" && -x "$bin/ginkgo" ]]; }
if [[ -f "$bin/.complete" ]] && { ! $e2e || have_e2e; }; then
  echo "$bin"
  exit 0
fi
if [[ $mode == no-build ]]; then
  echo "no complete build in $bin" >&2
  exit 1
fi

command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
# A dependency that wants a newer Go fails here, loudly, instead of
# fetching a toolchain.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

minor=${version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
# As upstream's hack/lib/version.sh stamps them, so /version tells the truth.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
# A build cache of its own, removed with the build directory: it is ~4 GB,
# and the binaries are only rebuilt when the version changes.
export GOCACHE="$tmp/.gocache"
trap 'rm -rf "$tmp"' EXIT

if [[ ! -f "$bin/.complete" ]]; then
  start=$(date +%s)
  echo "building the control plane $version into $bin (about 10 minutes on 2 cores with a warm module cache, more for the downloads on a fresh machine)" >&2
  mkdir "$tmp/bin"
  go build -ldflags "$ldflags" -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    ./cmd/etcd
  "$tmp/bin/kube-apiserver" --version | grep -qx "Kubernetes $version" ||
    { echo "fatal: kube-apiserver does not say $version" >&2; exit 1; }
  touch "$tmp/bin/.complete"
  rm -rf "$bin"
  mv "$tmp/bin" "$bin"
  echo "built the control plane in $(( $(date +%s) - start )) s" >&2
fi

if $e2e && [[ ! -f "$bin/.e2e-complete" ]]; then
  start=$(date +%s)
  echo "building the node e2e suite and agnhost $version into $bin (about 15 minutes on 2 cores)" >&2
  # agnhost reports the tag of the image upstream builds from this tree.
  agnhost_version=$(cat "$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/VERSION")
  go test -c -ldflags "$ldflags" -o "$tmp/nodee2e.test" ./nodee2e
  go build -ldflags "-s -w -X main.Version=$agnhost_version" -o "$tmp/agnhost" k8s.io/kubernetes/test/images/agnhost
  mv "$tmp/nodee2e.test" "$tmp/agnhost" "$bin/"
  touch "$bin/.e2e-complete"
  echo "built the node e2e suite in $(( $(date +%s) - start )) s" >&2
fi
if $e2e && [[ ! -x "$bin/ginkgo" ]]; then
  # The ginkgo CLI of the suite's own ginkgo version (about 20 s).
  go build -o "$tmp/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
  mv "$tmp/ginkgo" "$bin/"
fi
echo "$bin"
