#!/usr/bin/env bash
# Runs the kubelet's own upstream e2e specs ([sig-node] in test/e2e/common/node
# and test/e2e/node of k8s.io/kubernetes, built by build-control-plane.sh
# --e2e) against a cluster whose only node is berth, as root:
#   - a private containerd, pod network (bridge berth-conf) and state in DIR;
#   - the control plane and a berth node, through berth-cluster-up;
#   - the images the specs use, built locally (berth-e2e-images) once per
#     version into the cache beside the binaries, imported into the node
#     with `berth image import` under their upstream references, and served
#     by a registry on loopback that the node's registry config names as
#     registry.k8s.io's mirror (for the specs that pull with Always);
#   - the suite, serially; a JUnit report and a Markdown table (spec, result,
#     seconds, reason when skipped) in target/conformance/.
# The last line is `N passed, N failed, N skipped`; the exit status is 1 when
# a spec failed.
#
#   scripts/conformance.sh [--full | --ci] [--focus REGEX] [--dir DIR] [--procs N]
#                          [--with-slow-gaps] [--repeat N]
#
# The default, quick tier leaves out the specs that watch a pod for minutes
# to prove something does not happen; --full runs every selected spec.
# --ci is the quick tier without its specs that take over 30 s each here
# (the probes that wait out restarts, the subpath rewrite), so that the
# project's test command stays within its time.
# --focus narrows either tier to the specs whose names match REGEX.
# --procs runs the specs in N ginkgo processes ([Serial] ones still alone, at
# the end), as upstream runs node e2e; --full defaults to 4, --ci to 2 (its
# specs mostly wait on 2 s polls), the quick tier to 1.
# --repeat runs the selected specs N more times, stopping at the first
# failure (through the ginkgo CLI): for chasing a flaky spec.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DIR=/var/lib/berth-conformance
OUT=$REPO/target/conformance
NODE=berth-conformance
NAMESPACE=berth-conformance       # containerd namespace
BRIDGE=berth-conf
SUBNET=10.89.251.0/24             # outside the test kit's 10.89.1-250 slots
full=false
ci=false
focus=""
procs=""
slow=false
repeat=0

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --full) full=true; shift ;;
    --ci) ci=true; shift ;;
    --focus) focus=${2:?--focus needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --procs) procs=${2:?--procs needs a value}; shift 2 ;;
    --with-slow-gaps) slow=true; shift ;;
    --repeat) repeat=${2:?--repeat needs a value}; shift 2 ;;
    *) die "usage: $0 [--full | --ci] [--focus REGEX] [--dir DIR] [--procs N] [--with-slow-gaps] [--repeat N]" ;;
  esac
done
[[ $(id -u) == 0 ]] || die "run as root"
# One run at a time on a machine: they share the bridge, the subnet and DIR.
exec 9>/run/berth-conformance.lock
flock -n 9 || { say "waiting for another conformance run to end"; flock 9; }
[[ -n $procs ]] || { procs=1; $ci && procs=2; $full && procs=4; }
[[ $procs =~ ^[1-9][0-9]*$ ]] || die "--procs needs a positive number"

# ---- What runs ---------------------------------------------------------------
# Every [sig-node] spec of the two packages runs, except those matching a
# rule below; each rule's reason goes into the table. Order matters: the
# first rule that matches names the reason.
skip_rules=(
  '\[Disruptive\]'$'\t''disrupts the node (restarts the kubelet or the node)'
  '\[Flaky\]'$'\t''marked flaky upstream'
  'Windows|\[sig-windows\]'$'\t''needs a Windows node'
  'GPU|NVIDIA'$'\t''needs GPUs'
  '\[Feature:Example\]'$'\t''needs the examples'\'' files and a cloud'
  '\[Alpha\]|\[Feature:OffByDefault\]'$'\t''needs an alpha or off-by-default feature gate'
  # Every [Feature:X] but EnvFiles, a beta gate on by default since v1.35
  # that needs nothing more (no other [sig-node] feature starts with "En").
  '\[Feature:([^E]|E[^n]|En[^v])'$'\t''needs an optional feature (a second feature gate or a cluster add-on)'
  'PrivilegedPod .*should enable privileged commands'$'\t''needs dummy network links, which this machine'\''s kernel lacks (ip link add … type dummy fails on the host too)'
)
# What berth does not do yet: these fail (each after the spec's 5-minute
# wait), so the quick tier leaves them out to stay quick; --full runs them.
known_gaps=(
  'Pod InPlace Resize Container \((deferred-resizes|scheduler-focused)\)'$'\t''order-dependent: these [Serial] specs size their pods from the node'\''s free CPU measured as they begin, which counts the previous spec'\''s pods while they are still being deleted; pod-resize-retry-deferred-test-1 passes when run alone'
  'Mount propagation'$'\t''machine gap: the spec enters the node'\''s mount namespace through /proc/1/ns/mnt, which this VM'\''s init refuses even to root on the host (EACCES), and expects /var/lib/kubelet on a shared mount and a process named kubelet; berth'\''s mountPropagation is e2e-tested (integration/tests/e2e/mount_propagation.rs)'
)
# Gaps left out of every tier, --full too: each of these 126 specs waits
# out a 5-minute timeout, which would add hours to --full.
# --with-slow-gaps runs them.
slow_gaps=(
  'PLR Pod InPlace Resize|PodLevelResourcesVerticalScaling'$'\t''berth gap: resizing pod-level resources (spec.resources of the pod) is refused as Infeasible (skipped by every tier: 126 specs that each wait 5 minutes when they fail; --with-slow-gaps runs them)'
)
# Left out of the quick tier only (they run with --full). The quick tier
# runs the [Conformance] specs (a rule starting with ! skips what does not
# match it).
quick_rules=(
  '!\[Conformance\]'$'\t''not [Conformance]; runs with --full'
  'should \*not\* be restarted|\[Slow\]|issue 500 podspec updates'$'\t''slow (minutes of watching or updating); runs with --full'
  '\[Serial\]'$'\t''serial; runs with --full'
  '\[FeatureGate:'$'\t''a beta feature; runs with --full'
)
# Left out of the CI tier only: the quick tier's specs that take over 30 s
# each here (measured: 33-231 s), about 8 minutes together.
ci_rules=(
  'Probing container (should have monotonically increasing restart count|should be restarted with a (GRPC|exec "cat /tmp/health") liveness probe|with readiness probe that fails should never be ready)|InitContainer should not start app containers if init containers fail on a RestartAlways pod|Variable Expansion should succeed in writing subpaths in container'$'\t''over 30 s; runs in the quick tier'
)
rules=("${skip_rules[@]}")
$slow || rules+=("${slow_gaps[@]}")
$full || rules+=("${known_gaps[@]}" "${quick_rules[@]}")
$ci && rules+=("${ci_rules[@]}")
skip_regex=$(printf '%s\n' "${rules[@]}" | cut -f1 | grep -v '^!' | paste -sd'|')
tier_focus=$(printf '%s\n' "${rules[@]}" | cut -f1 | sed -n 's/^!//p' | paste -sd'|')

# ---- Packages, binaries, images --------------------------------------------
say "packages"
bash scripts/install-deps.sh --test
if [[ -f "${HOME:-/root}/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "${HOME:-/root}/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo is not installed (install Rust with rustup first)"

say "control plane and e2e suite binaries"
BIN=$(bash scripts/build-control-plane.sh --e2e)
version=$(basename "$(dirname "$BIN")")

say "build"
cargo build --bin berth --bin berth-logger --bin berth-cluster-up --bin berth-e2e-images
BERTH=$REPO/target/debug/berth

# The images' busybox: Debian's busybox-static 1.37.0-6, built from its
# source package as Debian builds it (its patches, its static config) with
# one option on, FEATURE_DI_ENV_HACK. Debian's deb and static builds carry a
# patch (revert-9c143ce…, temp-deb-installer-hack) that has sh drop
# environment names that are not identifiers, such as data-1, which the
# envFrom specs set and read back with `sh -c env`; upstream's busybox image
# (1.37) keeps them, and so does that option (Debian turns it on only for
# its installer's dynamic build). The source comes through apt, its files
# checked against these sums.
BUSYBOX_SOURCE=busybox=1:1.37.0-6
BUSYBOX_SUMS="3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4  busybox_1.37.0.orig.tar.bz2
10b2cd64b41c26ae134e1cd6135b68575bbe79356c20985f35e32f32a1746c34  busybox_1.37.0-6.debian.tar.xz"
build_busybox() { # OUT
  local out=$1 work
  work=$(mktemp -d)
  mkdir -p "$work"/apt/{lists/partial,cache/archives/partial,etc/sources.list.d,etc/preferences.d} "$work/src"
  echo 'deb-src http://deb.debian.org/debian trixie main' >"$work/apt/etc/sources.list"
  touch "$work/apt/status"
  local apt=(-o "Dir::State=$work/apt" -o "Dir::State::status=$work/apt/status"
    -o "Dir::Cache=$work/apt/cache" -o "Dir::Etc::SourceList=$work/apt/etc/sources.list"
    -o "Dir::Etc::SourceParts=$work/apt/etc/sources.list.d"
    -o "Dir::Etc::PreferencesParts=$work/apt/etc/preferences.d" -o "APT::Sandbox::User=root")
  apt-get "${apt[@]}" -qq update
  (cd "$work/src" && apt-get "${apt[@]}" -qq source --download-only "$BUSYBOX_SOURCE" >/dev/null)
  (cd "$work/src" && sha256sum --quiet -c <<<"$BUSYBOX_SUMS") || die "busybox source: checksum mismatch"
  tar -xjf "$work/src"/busybox_*.orig.tar.bz2 -C "$work/src"
  tar -xJf "$work/src"/busybox_*.debian.tar.xz -C "$work/src"
  local tree
  tree=$(echo "$work/src"/busybox-*/)
  grep -v -e '^#' -e '^$' "$work/src/debian/patches/series" | while read -r patch; do
    patch -d "$tree" -p1 -s <"$work/src/debian/patches/$patch"
  done
  sed 's/^# CONFIG_FEATURE_DI_ENV_HACK is not set/CONFIG_FEATURE_DI_ENV_HACK=y/' \
    "$work/src/debian/config/pkg/static" >"$tree/.config"
  make -C "$tree" oldconfig </dev/null >/dev/null
  grep -qx CONFIG_FEATURE_DI_ENV_HACK=y "$tree/.config" || die "busybox: FEATURE_DI_ENV_HACK is not on"
  make -C "$tree" -j"$(nproc)" busybox >"$work/build.log" 2>&1 || die "busybox did not build (see $work/build.log)"
  cp "$tree/busybox" "$out"
  rm -rf "$work"
}

# Keyed by the builder's source, the busybox and curl's source and which
# image each reference is made as (the case below) too: a changed image is
# built anew.
builder_hash=$({ cat integration/src/bin/berth-e2e-images.rs integration/k8s/cmd/curl/main.go
  sed -n '/^    case \$ref in$/,/^    esac$/p' scripts/conformance.sh
  echo "$BUSYBOX_SOURCE $BUSYBOX_SUMS"; } |
  sha256sum | cut -c1-12)
IMAGES=$(dirname "$BIN")/images-$builder_hash
if [[ ! -f $IMAGES/.complete ]]; then
  say "images for $version into $IMAGES"
  tmp=$(mktemp -d "$(dirname "$BIN")/.images.XXXXXX")
  gcc -static -Os -o "$tmp/pause" crates/berth-containerd/pause/pause.c
  k8s_src=$(cd integration/k8s && PATH="/usr/local/go/bin:$PATH" GOFLAGS=-mod=mod \
    go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  porter=$k8s_src/test/images/agnhost/porter
  # nonewprivs' program, from the module as agnhost is (static, as upstream builds it).
  (cd integration/k8s && PATH="/usr/local/go/bin:$PATH" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -ldflags "-s -w" -o "$tmp/nnp" k8s.io/kubernetes/test/images/nonewprivs)
  # agnhost's curl (upstream's image has the real one; Debian has no static
  # curl, and busybox wget's TLS shares no cipher suite with the kubelet API).
  (cd integration/k8s && PATH="/usr/local/go/bin:$PATH" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -ldflags "-s -w" -o "$tmp/curl" ./cmd/curl)
  # The manifest's references; the private and invalid registries' are
  # meant to fail, so they are not made.
  mapfile -t refs < <("$BIN/nodee2e.test" --list-images | grep -v -e authenticated-image-pulling -e '^invalid')
  kinds=()
  for ref in "${refs[@]}"; do
    case $ref in
      */e2e-test-images/busybox:*) kinds+=("busybox=$ref") ;;
      # The hostname specs' `hostname -f` through the C library's resolver:
      # glibc (which the static busybox carries) reading /etc/hosts.
      */e2e-test-images/glibc-dns-testing:*) kinds+=("busybox=$ref") ;;
      */e2e-test-images/agnhost:*) kinds+=("agnhost=$ref") ;;
      */e2e-test-images/nginx:*) kinds+=("nginx=$ref") ;;
      */e2e-test-images/nonroot:*) kinds+=("nonroot=$ref") ;;
      */e2e-test-images/nonewprivs:*) kinds+=("nonewprivs=$ref") ;;
      */e2e-test-images/kitten:*) kinds+=("kitten=$ref") ;;
      */pause:*) kinds+=("pause=$ref") ;;
    esac
  done
  say "busybox $BUSYBOX_SOURCE from source (a few minutes)"
  build_busybox "$tmp/busybox"
  target/debug/berth-e2e-images --agnhost "$BIN/agnhost" --curl "$tmp/curl" --pause "$tmp/pause" --nnp "$tmp/nnp" \
    --busybox "$tmp/busybox" \
    --porter-dir "$porter" --kitten-dir "$k8s_src/test/images/kitten/html" \
    --out "$tmp/archives" "${kinds[@]}"
  rm -rf "$(dirname "$BIN")"/images-*
  mv "$tmp/archives" "$IMAGES"
  rm -rf "$tmp"
  touch "$IMAGES/.complete"
fi

# ---- A clean run directory ---------------------------------------------------
pids=()
cleanup() {
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -INT "${pids[i]}" 2>/dev/null
    for _ in $(seq 150); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${pids[i]}" 2>/dev/null
  done
  stop_leftovers
}
ctr_() { ctr --address "$DIR/containerd/containerd.sock" -n "$NAMESPACE" "$@"; }
# What the node leaves behind on purpose (pods outlive the agent): the
# namespace's tasks and containers, its mounts, the bridge.
stop_leftovers() {
  if [[ -S $DIR/containerd/containerd.sock ]]; then
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1; done
  fi
  if [[ -f $DIR/containerd.pid ]]; then
    kill "$(cat "$DIR/containerd.pid")" 2>/dev/null
    rm -f "$DIR/containerd.pid"
  fi
  { grep -o " $DIR/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  # The Mount propagation spec's host directories, which the node makes (as
  # containerd's CRI does) and the spec cannot remove here (its cleanup
  # enters /proc/1/ns/mnt); only empty ones, so a kubelet's are never touched.
  rmdir /var/lib/kubelet/mount-propagation-* /var/lib/kubelet 2>/dev/null || true
  ip link delete "$BRIDGE" 2>/dev/null || true
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_leftovers
rm -rf "$DIR"
mkdir -p "$DIR"/{containerd,cni,ipam,logs,manifests} "$OUT"
rm -f "$OUT"/junit.xml "$OUT"/results.md

say "containerd"
cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$DIR/containerd/containerd.sock"
[ttrpc]
  address = "$DIR/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
EOF
containerd --config "$DIR/containerd/config.toml" >"$DIR/logs/containerd.log" 2>&1 &
echo $! >"$DIR/containerd.pid"
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.2; done
ctr_ version >/dev/null 2>&1 || die "containerd did not start (see $DIR/logs/containerd.log)"

cat >"$DIR/cni/10-$BRIDGE.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$BRIDGE", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$DIR/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF

say "registry on loopback"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$DIR/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $DIR/registry}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$DIR/registry.yml" >"$DIR/logs/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.2; done
hosts=()
for archive in "$IMAGES"/*.oci.tar; do
  ref=$(tar -xOf "$archive" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])')
  host=${ref%%/*}
  skopeo copy --quiet --dest-tls-verify=false "oci-archive:$archive" "docker://127.0.0.1:$port/${ref#*/}"
  hosts+=("$host")
done
{
  echo "registries:"
  echo "  \"127.0.0.1:$port\": { plainHttp: true }"
  for host in $(printf '%s\n' "${hosts[@]}" | sort -u); do
    echo "  \"$host\": { mirrors: [\"http://127.0.0.1:$port\"] }"
  done
} >"$DIR/registries.yaml"

# ---- The cluster ---------------------------------------------------------------
say "control plane and node $NODE"
node=("$BERTH" agent --kubeconfig {node-kubeconfig} --node-name {node-name}
  --client-ca-file {ca-cert} --tls-cert-file {node-serving-cert}
  --tls-private-key-file {node-serving-key}
  --containerd-socket "$DIR/containerd/containerd.sock" --containerd-namespace "$NAMESPACE"
  --root-dir "$DIR/berth" --log-dir "$DIR/pod-logs" --manifest-dir "$DIR/manifests"
  --socket "$DIR/berth.sock" --cni-conf-dir "$DIR/cni" --registry-config "$DIR/registries.yaml")
BERTH_K8S_BIN=$BIN RUST_LOG=${RUST_LOG:-info} target/debug/berth-cluster-up --dir "$DIR/cluster" --node-name "$NODE" -- "${node[@]}" \
  >"$DIR/logs/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [[ -f $DIR/cluster/env ]] && break; kill -0 "${pids[-1]}" || break; sleep 0.2; done
[[ -f $DIR/cluster/env ]] || die "the cluster did not come up (see $DIR/logs/cluster.log)"
# shellcheck disable=SC1091
source "$DIR/cluster/env"
# The node registers a few seconds after the control plane is up.
for _ in $(seq 600); do kubectl get "node/$NODE" >/dev/null 2>&1 && break; sleep 0.2; done
kubectl wait --for=condition=Ready "node/$NODE" --timeout=120s >/dev/null ||
  die "node $NODE is not Ready (see $DIR/logs/cluster.log)"

say "images into the node"
for _ in $(seq 100); do "$BERTH" --socket "$DIR/berth.sock" image ls >/dev/null 2>&1 && break; sleep 0.2; done
for archive in "$IMAGES"/*.oci.tar; do
  "$BERTH" --socket "$DIR/berth.sock" image import "$archive" >/dev/null
done

# ---- The suite -------------------------------------------------------------------
tier=quick; $full && tier=full; $ci && tier=ci
# Both the tier's and the caller's, in either order in the spec's name.
focus_regex='\[sig-node\]'
if [[ -n $tier_focus && -n $focus ]]; then
  focus_regex+=".*(($tier_focus).*($focus)|($focus).*($tier_focus))"
elif [[ -n $tier_focus$focus ]]; then
  focus_regex+=".*($tier_focus$focus)"
fi
say "suite ($tier tier)"
start=$(date +%s)
set +e
suite_args=(--kubeconfig="$KUBECONFIG" --provider=skeleton
  --kubectl-path="$(command -v kubectl)" --report-dir="$DIR/report"
  --allowed-not-ready-nodes=0 --minStartupPods=0 --disable-log-dump --dump-logs-on-failure=false
  --node-os-distro=debian)
if ((procs == 1 && repeat == 0)); then
  "$BIN/nodee2e.test" "${suite_args[@]}" \
    --ginkgo.focus="$focus_regex" --ginkgo.skip="$skip_regex" \
    --ginkgo.timeout=4h --ginkgo.no-color --ginkgo.v \
    --ginkgo.junit-report="$OUT/junit.xml" >"$OUT/suite.log" 2>&1
else
  # The CLI writes the merged report under --output-dir (a report path is
  # taken relative to the suite's directory otherwise).
  "$BIN/ginkgo" run --procs="$procs" \
    --focus="$focus_regex" --skip="$skip_regex" \
    --timeout=4h --no-color -v --repeat="$repeat" --output-dir="$OUT" --junit-report=junit.xml \
    "$BIN/nodee2e.test" -- "${suite_args[@]}" >"$OUT/suite.log" 2>&1
fi
suite_rc=$?
set -e
echo "suite ran in $(( $(date +%s) - start )) s (exit $suite_rc; log $OUT/suite.log)"
[[ -f $OUT/junit.xml ]] || die "the suite wrote no report (see $OUT/suite.log)"

printf '%s\n' "${rules[@]}" >"$DIR/skip-rules.tsv"
python3 scripts/conformance-report.py "$OUT/junit.xml" "$DIR/skip-rules.tsv" "$OUT/results.md" "$tier"
