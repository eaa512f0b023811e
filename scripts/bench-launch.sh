#!/usr/bin/env bash
# `prezero bench launch` on a private prezerod and hugetlbfs mount; all undone on exit.
#   scripts/bench-launch.sh [prezero bench launch options...]
#   BENCH_SIZE=GiB (default 8; with --page-size 1G, as many 1 GiB pages as the host
#   gives, less one for the small guest).
# The host reserves room for the pool and a stock QEMU's fresh file side by side when
# it can; when it cannot, the stock start takes the pages prezerod gives back.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
page_geometry "$@"
if [ -n "${BENCH_SIZE:-}" ]; then
    size_g=$BENCH_SIZE
elif [ "$page_size" = 1G ]; then
    most=$(scripts/hugepages.sh most-1g 64)
    size_g=$(( (most - small_pages) / 2 ))
    echo "bench-launch: the host can reserve $most x 1 GiB pages now: a ${size_g} GiB guest and a 1 GiB one"
    [ "$size_g" -ge 1 ] || { echo "bench-launch: too few 1 GiB pages; free memory or reserve them at boot (hugepagesz=1G hugepages=N)" >&2; exit 1; }
else
    size_g=8
fi
trap env_cleanup EXIT
pool_pages=$(( size_g * per_g + small_pages ))
pool_up $(( pool_pages + size_g * per_g + headroom )) "$(( pool_pages * page_m ))M" "${size_g}G"
"$bin/prezero" bench launch --size "${size_g}G" --socket "$sock" "$@"
