#!/usr/bin/env bash
# Installs the Debian 12 packages berth needs, as root. Used by scripts/up.sh
# (runtime + build) and .ci/run (runtime + build + tests).
#   install-deps.sh          runtime and build packages
#   install-deps.sh --test   also what the tests need (busybox-static)
# Skips apt entirely when everything is already installed.
set -euo pipefail

packages=(
  containerd runc containernetworking-plugins iptables iproute2 # runtime
  protobuf-compiler build-essential pkg-config ca-certificates   # build
  busybox-static # the example's and the tests' image, built locally
  docker-registry skopeo # tests: a local registry, and pushing into it
)
# busybox-static is needed by up.sh too (it builds the example's image), so
# --test adds nothing today; the flag stays so callers say what they need.
case "${1:-}" in
  --test | "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
