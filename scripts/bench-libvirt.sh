#!/usr/bin/env bash
# `prezero bench libvirt` on a private setup: a private prezerod and hugetlbfs mount,
# libvirt pointed at it, the hook installed as qemu.d/prezero; all undone on exit.
#   scripts/bench-libvirt.sh [prezero bench libvirt options...]   (BENCH_SIZE=GiB, default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
size_g=${BENCH_SIZE:-8}
small_m=256
. scripts/env.sh
trap env_cleanup EXIT
# The pool (SIZE + SMALL) + the stock guest (SIZE) + headroom, in 2 MiB pages.
env_up $(( size_g * 1024 + small_m / 2 + 64 )) "$(( size_g * 1024 + small_m ))M" "${size_g}G" prezero
"$bin/prezero" bench libvirt --size "${size_g}G" --small "${small_m}M" --socket "$sock" "$@"
