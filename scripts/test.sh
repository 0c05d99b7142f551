#!/usr/bin/env bash
# The project's one test command (the README's, and what CI runs): format,
# lint, build, then every test. Run as root on a machine set up by
# scripts/install-deps.sh: the containerd tests start their own private
# containerd (never the host's) and BERTH_REQUIRE_CONTAINERD=1 makes them fail,
# not skip, when they cannot. The cluster-mode tests start their own control
# plane from scripts/build-control-plane.sh's cache (built here when missing)
# and BERTH_REQUIRE_CONTROL_PLANE=1 does the same for them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it began (seconds since the run started), so a slow
# CI run shows where its time went.
step() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

step "packages"
# A no-op when everything is installed; on a fresh machine this makes the
# one test command enough.
bash scripts/install-deps.sh --test
if [[ -f "${HOME:-/root}/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "${HOME:-/root}/.cargo/env"
fi
command -v cargo >/dev/null || { echo "fatal: cargo is not installed" >&2; exit 1; }

# One build from scratch gains nothing from incremental state, which would
# more than double target/'s size on CI's disk. Set it to 1 to keep it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "disk"
# The build takes about 2 GB and the log tests a few hundred MB more: a
# nearly full disk fails them in ways that look like bugs, so say it first.
df -h . "${TMPDIR:-/tmp}"
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if (( free_kb < 4 * 1024 * 1024 )); then
  echo "warning: under 4 GB free here; the build and the log tests may fail for want of disk" >&2
fi

step "control plane"
# Built once per Kubernetes version into a cache outside the clone (about
# 10 minutes on 2 cores, plus ~0.7 GB of module downloads, the first time);
# at once when cached.
BERTH_K8S_BIN=$(bash scripts/build-control-plane.sh)
export BERTH_K8S_BIN
echo "$BERTH_K8S_BIN"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build"
# Also builds target/debug/berth, the binary the e2e tests drive.
cargo build --workspace --all-targets

step "tests"
export BERTH_REQUIRE_CONTAINERD=1 BERTH_REQUIRE_CONTROL_PLANE=1
# The e2e tests mostly wait on containerd, runc and the control plane: four
# at a time on 2 cores took the e2e binary from 741 s to 455 s, all passing.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests. They go first, so that the run's closing
  # line is nextest's summary of all the other tests.
  cargo test --workspace --doc
  # Each test in its own process; hung tests are killed (scripts/nextest.toml).
  cargo nextest run --workspace --no-fail-fast --config-file scripts/nextest.toml 2>&1 |
    tee target/nextest.log
else
  # No per-test timeout here: bound the whole run instead.
  timeout 25m cargo test --workspace --no-fail-fast 2>&1 | tee target/nextest.log
fi

step "upstream node conformance (CI tier)"
# The kubelet's own e2e specs against a berth node (scripts/conformance.sh;
# about 10 minutes here, and 10 more the first time to build the suite).
# Fails when a spec in the tier fails.
bash scripts/conformance.sh --ci

step "summary"
echo "the run took $SECONDS s"
# The Rust tests' closing line last, as the run's closing line.
grep -m1 -E '^[0-9]+ passed' target/conformance/results.md || true
if grep -q '^ *Summary' target/nextest.log; then
  grep -E '^ *Summary' target/nextest.log | tail -n 1
else
  # cargo test prints one result per test binary: their sum.
  awk '/^test result:/ { p += $4; f += $6 } END { printf "Rust tests: %d passed, %d failed\n", p, f }' \
    target/nextest.log
fi
