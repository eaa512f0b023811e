#!/usr/bin/env bash
# `prezero bench launch` on a private prezerod and hugetlbfs mount; all undone on exit.
#   scripts/bench-launch.sh [prezero bench launch options...]   (BENCH_SIZE=GiB, default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
size_g=${BENCH_SIZE:-8}
small_m=256
. scripts/env.sh
trap env_cleanup EXIT
# The pool (SIZE + SMALL) + the stock QEMU's fresh file (SIZE) + headroom, in 2 MiB pages.
pool_up $(( size_g * 1024 + small_m / 2 + 64 )) "$(( size_g * 1024 + small_m ))M" "${size_g}G"
"$bin/prezero" bench launch --size "${size_g}G" --small "${small_m}M" --socket "$sock" "$@"
