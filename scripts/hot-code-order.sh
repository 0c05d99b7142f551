#!/usr/bin/env bash
# Measures which functions the agent runs with 100 pods on it and writes them
# to crates/berth/hot-code.order, which release builds link first, together
# (crates/berth/build.rs says why). Run it as root after a change of
# toolchain or dependencies, when the names in the file no longer match
# (berth-bench --rss then shows the agent's file-backed RSS growing back).
#
# How: drop the release binary from the page cache, turn its disk's
# readahead off (restored on exit), run `berth-bench 10 --rss` three times,
# and list the functions on the pages of code the runs read
# (scripts/hot-code-pages.py): a function one run missed (a timer's, a
# rarer path's) would otherwise keep a 64 KiB window of cold code resident
# on its own. Each round reads the binary built with the previous list, so
# a second round drops more of the cold functions the first one listed
# beside hot ones. Nothing else may run the release binary meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "hot-code-order.sh: run as root" >&2; exit 1; }
rounds=${1:-2}
samples=3
binary=target/release/berth
# Where this build's functions went (a fixed path: the same one again does
# not relink).
link_map=$PWD/target/release/berth.map

readahead=""
restore() {
  if [[ -n $readahead ]]; then echo "$readahead" > "$ra_file"; fi
}
trap restore EXIT

for ((round = 1; round <= rounds; round++)); do
  BERTH_LINK_MAP=$link_map cargo build --release \
    --bin berth --bin berth-logger --bin berth-bench
  dev=$(stat -c '%Hd:%Ld' "$binary")
  ra_file=/sys/dev/block/$dev/queue/read_ahead_kb
  # A partition's queue is its disk's.
  [[ -f $ra_file ]] || ra_file=/sys/dev/block/$dev/../queue/read_ahead_kb
  sync
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$binary"
  readahead=$(cat "$ra_file")
  echo 0 > "$ra_file"
  for ((sample = 1; sample <= samples; sample++)); do
    target/release/berth-bench 10 --rss | grep RSS
  done
  echo "$readahead" > "$ra_file"
  readahead=""
  python3 scripts/hot-code-pages.py "$binary" "$link_map" crates/berth/hot-code.order
done
