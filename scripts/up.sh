#!/usr/bin/env bash
# Sets up berth on a fresh Debian 12 machine, as root, and runs the example
# pod: installs the packages, starts containerd, builds and installs berth,
# imports a busybox image (built locally, so the example needs no registry),
# starts the agent and waits for the static pod deploy/manifests/web.yaml to
# serve.
# Safe to run again: it rebuilds, reinstalls and restarts the agent (pods keep
# running across the restart).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=/etc/berth/config.yaml
SOCKET=/run/berth/berth.sock          # deploy/config.yaml's `socket`
MANIFESTS=/etc/berth/manifests        # deploy/config.yaml's `manifestDir`
CONTAINERD_SOCKET=/run/containerd/containerd.sock
IMAGE=docker.io/library/busybox:latest

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command every 0.2 s until it succeeds, for up to $1 seconds.
wait_until() {
  local seconds=$1; shift
  local tries=$((seconds * 5))
  until "$@"; do
    tries=$((tries - 1))
    ((tries > 0)) || return 1
    sleep 0.2
  done
}

[[ $(id -u) == 0 ]] || die "run as root"
systemd_runs() { [[ $(cat /proc/1/comm 2>/dev/null) == systemd ]]; }

say "packages"
bash scripts/install-deps.sh

if [[ -f "${HOME:-/root}/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "${HOME:-/root}/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo is not installed (install Rust with rustup first)"

say "containerd"
containerd_up() { ctr --address "$CONTAINERD_SOCKET" version >/dev/null 2>&1; }
if ! containerd_up; then
  if systemd_runs; then
    systemctl enable --now containerd
  else
    # No systemd as PID 1: run it in the background with its default config.
    nohup containerd >>/var/log/containerd.log 2>&1 &
  fi
  wait_until 20 containerd_up || die "containerd did not start (see /var/log/containerd.log)"
fi

say "build (release)"
cargo build --release --bin berth --bin berth-logger --bin berth-mkimage
install -D -m 0755 target/release/berth /usr/local/bin/berth
# The per-container log writer the shim spawns; the agent finds it beside itself.
install -D -m 0755 target/release/berth-logger /usr/local/bin/berth-logger

say "configuration"
install -d -m 0755 /etc/berth "$MANIFESTS"
if [[ -f $CONFIG ]] && ! cmp -s deploy/config.yaml "$CONFIG"; then
  say "keeping the existing $CONFIG (deploy/config.yaml differs)"
else
  install -m 0644 deploy/config.yaml "$CONFIG"
fi

say "agent"
agent_up() { berth --socket "$SOCKET" get pods -A >/dev/null 2>&1; }
if systemd_runs; then
  install -m 0644 systemd/berth.service /etc/systemd/system/berth.service
  systemctl daemon-reload
  systemctl enable berth
  systemctl restart berth
else
  # No systemd: a background process, restarted with the new binary. Any
  # running agent is stopped, not only one this script started: a second
  # agent would refuse the busy socket while the old one went on answering.
  agents() { pgrep -f '^/usr/local/bin/berth agent( |$)'; }
  if old=$(agents); then
    kill -TERM $old
    old_gone() { ! agents >/dev/null; }
    wait_until 15 old_gone || die "the old agent (pid $old) did not stop"
  fi
  nohup /usr/local/bin/berth agent --config "$CONFIG" >>/var/log/berth.log 2>&1 &
  echo $! >/run/berth.pid
fi
wait_until 20 agent_up || die "the agent did not come up (see /var/log/berth.log or journalctl -u berth)"
if ! systemd_runs && ! kill -0 "$(cat /run/berth.pid)" 2>/dev/null; then
  die "the agent exited at start (see /var/log/berth.log)"
fi

say "image $IMAGE"
archive=$(mktemp --suffix=.oci.tar)
trap 'rm -f "$archive"' EXIT
target/release/berth-mkimage --reference "$IMAGE" "$archive" >/dev/null
berth --socket "$SOCKET" image import "$archive"

say "example pod"
install -m 0644 deploy/manifests/web.yaml "$MANIFESTS/web.yaml"
node=$(tr '[:upper:]' '[:lower:]' </proc/sys/kernel/hostname)  # the default nodeName
pod="web-$node"
# The pod's IP once it is Running (read from `get pod -o json` with sed: a
# fresh Debian has no jq).
pod_ip() {
  local json
  json=$(berth --socket "$SOCKET" get pod "$pod" -o json 2>/dev/null) || return 0
  grep -q '"phase": *"Running"' <<<"$json" || return 0
  sed -n 's/.*"podIP": *"\([^"]*\)".*/\1/p' <<<"$json" | head -n 1
}
has_ip() { [[ -n $(pod_ip) ]]; }
wait_until 60 has_ip || {
  berth --socket "$SOCKET" describe pod "$pod" || true
  die "pod $pod is not Running"
}
ip=$(pod_ip)

berth --socket "$SOCKET" get pods -o wide
say "GET http://$ip/"
# bash's /dev/tcp: a fresh Debian has no curl, and busybox's wget needs DNS.
served() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/80" && printf "GET / HTTP/1.0\r\n\r\n" >&3 && sed "1,/^\r\?$/d" <&3' _ "$ip"
}
wait_until 10 served || die "the pod does not answer on $ip:80"

cat <<DONE

berth is running. Try:
  berth get pods -o wide
  berth describe pod $pod
  berth logs $pod
  berth exec $pod -- ps
  berth apply -f my-pod.yaml
DONE
