#!/usr/bin/env bash
# `prezero bench libvirt` in a private environment (`prezero lab run`): huge pages, a private
# prezerod and hugetlbfs mount, libvirt pointed at it, the hook installed as qemu.d/prezero;
# all undone on exit.
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
. scripts/page-geometry.sh
if [ -n "$sizes" ]; then
    size_g=$(echo "$sizes" | tr ',' '\n' | sed 's/[Gg]$//' | sort -n | tail -n 1)
elif [ -n "${BENCH_SIZE:-}" ]; then
    size_g=$BENCH_SIZE
else
    size_for bench-libvirt 1
fi
if [ -z "${PREZERO_LAB_DIR:-}" ]; then
    pool_pages=$(( size_g * per_g + small_pages ))
    # Best: the pool and a stock guest side by side; at least: the pool alone (make-room).
    exec "$bin/prezero" lab run --reserve "$page_size:$(( pool_pages + size_g * per_g + headroom )):$(( pool_pages + headroom ))" \
        --page-size "$page_size" --target "$(( pool_pages * page_m ))M" --file-size "${size_g}G" --libvirt prezero -- "$0" "$@"
fi
extra=()
if [ -n "$boot" ]; then
    scripts/boot-guest.sh "$PREZERO_LAB_DIR/boot"
    extra=(--kernel "$PREZERO_LAB_DIR/boot/vmlinuz" --initrd "$PREZERO_LAB_DIR/boot/initrd")
fi
size_args=(--size "${size_g}G")
[ -n "$sizes" ] && size_args=()
"$bin/prezero" bench libvirt "${size_args[@]}" --socket "$PREZERO_LAB_SOCKET" "${extra[@]}" "$@"
