#!/usr/bin/env bash
# `prezero bench launch` in a private environment (`prezero lab run`: huge pages, a private
# prezerod and hugetlbfs mount; all undone on exit).
#   scripts/bench-launch.sh [prezero bench launch options...]
#   BENCH_SIZE=GiB (default 8; with --page-size 1G, as many 1 GiB pages as the host
#   gives, less one for the small guest).
# The host reserves room for the pool and a stock QEMU's fresh file side by side when it
# can; when it cannot, the stock start takes the pages prezerod gives back.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/page-geometry.sh
if [ -n "${BENCH_SIZE:-}" ]; then size_g=$BENCH_SIZE; else size_for bench-launch 2; fi
pool_pages=$(( size_g * per_g + small_pages ))
exec "$bin/prezero" lab run --reserve "$page_size:$(( pool_pages + size_g * per_g + headroom ))" \
    --page-size "$page_size" --target "$(( pool_pages * page_m ))M" --file-size "${size_g}G" -- \
    sh -c 'exec "$PREZERO_LAB_BIN/prezero" bench launch --socket "$PREZERO_LAB_SOCKET" "$@"' bench-launch --size "${size_g}G" "$@"
