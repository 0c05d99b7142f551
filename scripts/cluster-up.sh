#!/usr/bin/env bash
# A local Kubernetes cluster whose node is berth, for development, as root:
# the control plane the cluster-mode tests use (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler from scripts/build-control-plane.sh,
# started with the test kit's certificates and flags by berth-cluster-up) and
# a berth agent joined to it as node <host name>. Runs in the foreground and
# prints the KUBECONFIG to use from another shell; Ctrl-C stops the node,
# then the control plane. Pods keep running on containerd, as with any agent
# stop.
#
#   scripts/cluster-up.sh [--dir DIR] [--node-name NAME]
#
# DIR (default /var/lib/berth-cluster) holds certificates, kubeconfigs, etcd's
# data and each component's log; it is made anew on every start.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=/var/lib/berth-cluster
NODE=$(tr '[:upper:]' '[:lower:]' </proc/sys/kernel/hostname)
SOCKET=/run/berth/berth.sock   # the agent's default local API socket
CONTAINERD_SOCKET=/run/containerd/containerd.sock
NAMESPACE=berth                # the agent's default containerd namespace
IMAGE=berth.local/busybox:1    # imported for `kubectl run`; a tag, so never pulled

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --node-name) NODE=${2:?--node-name needs a value}; shift 2 ;;
    *) die "usage: $0 [--dir DIR] [--node-name NAME]" ;;
  esac
done
[[ $(id -u) == 0 ]] || die "run as root"

say "packages"
bash scripts/install-deps.sh --test   # --test brings kubectl
if [[ -f "${HOME:-/root}/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "${HOME:-/root}/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo is not installed (install Rust with rustup first)"

say "containerd"
# As scripts/up.sh starts it.
containerd_up() { ctr --address "$CONTAINERD_SOCKET" version >/dev/null 2>&1; }
if ! containerd_up; then
  if [[ $(cat /proc/1/comm 2>/dev/null) == systemd ]]; then
    systemctl enable --now containerd
  else
    nohup containerd >>/var/log/containerd.log 2>&1 &
  fi
  for _ in $(seq 100); do containerd_up && break; sleep 0.2; done
  containerd_up || die "containerd did not start (see /var/log/containerd.log)"
fi

say "control plane binaries"
BERTH_K8S_BIN=$(bash scripts/build-control-plane.sh)
export BERTH_K8S_BIN

say "build"
cargo build --bin berth --bin berth-logger --bin berth-cluster-up --bin berth-mkimage

# One agent per host: the standalone one of scripts/up.sh holds the same
# socket, state and containerd namespace.
if target/debug/berth --socket "$SOCKET" get pods -A >/dev/null 2>&1; then
  die "a berth agent already serves $SOCKET: stop it first (systemctl stop berth, or kill it)"
fi

say "image $IMAGE"
archive=$(mktemp --suffix=.oci.tar)
trap 'rm -f "$archive"' EXIT
target/debug/berth-mkimage --reference "$IMAGE" "$archive" >/dev/null
ctr --address "$CONTAINERD_SOCKET" -n "$NAMESPACE" images import "$archive" >/dev/null
rm -f "$archive"
echo "try: kubectl run web --image=$IMAGE -- httpd -f -p 80"

# ---- The berth node ---------------------------------------------------------
# The one place that says how the agent joins the cluster. berth-cluster-up
# fills in {node-kubeconfig} and {node-name} (and {ca-cert},
# {node-serving-cert}, {node-serving-key}, {dir}) before it runs this.
node=(target/debug/berth agent --kubeconfig {node-kubeconfig} --node-name {node-name}
  --client-ca-file {ca-cert} --tls-cert-file {node-serving-cert}
  --tls-private-key-file {node-serving-key})
# -----------------------------------------------------------------------------

say "cluster"
exec target/debug/berth-cluster-up --dir "$DIR" --node-name "$NODE" -- "${node[@]}"
