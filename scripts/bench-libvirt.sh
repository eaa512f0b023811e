#!/usr/bin/env bash
# `prezero bench libvirt` on a private setup: a private prezerod and hugetlbfs mount,
# libvirt pointed at it, the hook installed as qemu.d/prezero; all undone on exit.
#   scripts/bench-libvirt.sh [prezero bench libvirt options...]
#   BENCH_SIZE=GiB (default 8, or the largest of --sizes; with --page-size 1G, as many
#   1 GiB pages as the host gives, less one for the small guest).
# --page-size 1G mounts 1 GiB pages; --boot builds the boot guest (scripts/boot-guest.sh).
# The host reserves room for the pool and a stock guest side by side when it can; when
# it cannot (16 GiB on a 24 GiB host), the stock start gets its pages from the pool
# through prezerod's make-room, as it would on a host running prezero.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=; boot=
args=("$@")
for i in "${!args[@]}"; do
    case "${args[i]}" in
        --sizes) sizes=${args[i+1]} ;;
        --sizes=*) sizes=${args[i]#*=} ;;
        --boot) boot=1 ;;
    esac
done
. scripts/env.sh
page_geometry "$@"
if [ -n "$sizes" ]; then
    size_g=$(echo "$sizes" | tr ',' '\n' | sed 's/[Gg]$//' | sort -n | tail -n 1)
elif [ -n "${BENCH_SIZE:-}" ]; then
    size_g=$BENCH_SIZE
elif [ "$page_size" = 1G ]; then
    most=$(scripts/hugepages.sh most-1g 64)
    size_g=$(( most - small_pages ))
    echo "bench-libvirt: the host can reserve $most x 1 GiB pages now: a ${size_g} GiB guest and a 1 GiB one"
    [ "$size_g" -ge 1 ] || { echo "bench-libvirt: too few 1 GiB pages; free memory or reserve them at boot (hugepagesz=1G hugepages=N)" >&2; exit 1; }
else
    size_g=8
fi
trap env_cleanup EXIT
pool_pages=$(( size_g * per_g + small_pages ))
# Best: the pool and a stock guest side by side; at least: the pool alone (make-room).
env_up $(( pool_pages + size_g * per_g + headroom )) "$(( pool_pages * page_m ))M" "${size_g}G" prezero $(( pool_pages + headroom ))
extra=()
if [ -n "$boot" ]; then
    scripts/boot-guest.sh "$work/boot"
    extra=(--kernel "$work/boot/vmlinuz" --initrd "$work/boot/initrd")
fi
size_args=(--size "${size_g}G")
[ -n "$sizes" ] && size_args=()
"$bin/prezero" bench libvirt "${size_args[@]}" --socket "$sock" "${extra[@]}" "$@"
