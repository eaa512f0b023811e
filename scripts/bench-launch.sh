#!/usr/bin/env bash
# `prezero bench launch` on a private prezerod and hugetlbfs mount; all undone on exit.
#   scripts/bench-launch.sh [prezero bench launch options...]
#   BENCH_SIZE=GiB (default 8; with --page-size 1G, as many 1 GiB pages as the host
#   gives, less one for the small guest).
# The host reserves room for the pool and a stock QEMU's fresh file side by side when
# it can; when it cannot, the stock start takes the pages prezerod gives back.
set -euo pipefail
cd "$(dirname "$0")/.."
page_size=2M
args=("$@")
for i in "${!args[@]}"; do
    case "${args[i]}" in
        --page-size) page_size=${args[i+1]} ;;
        --page-size=*) page_size=${args[i]#*=} ;;
    esac
done
case "$page_size" in 2M|2m) page_size=2M; per_g=512; page_m=2; small_pages=128; headroom=32 ;;
    1G|1g) page_size=1G; per_g=1; page_m=1024; small_pages=1; headroom=0 ;;
    *) echo "bench-launch: --page-size must be 2M or 1G" >&2; exit 2 ;; esac
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
. scripts/env.sh
trap env_cleanup EXIT
pool_pages=$(( size_g * per_g + small_pages ))
pool_up $(( pool_pages + size_g * per_g + headroom )) "$(( pool_pages * page_m ))M" "${size_g}G"
"$bin/prezero" bench launch --size "${size_g}G" --socket "$sock" "$@"
