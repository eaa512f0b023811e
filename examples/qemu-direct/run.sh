#!/bin/sh
# QEMU (KVM where QEMU can open /dev/kvm, else TCG: `prezero accel`) started by `prezero launch` on a
# pre-zeroed hugetlbfs file. No disk: SeaBIOS idles, which is enough to show the
# hand-over. Stop it with SIGTERM to this script's process (passed on to QEMU) or
# with `quit` on the QMP socket; the file goes back to prezerod either way.
#   SIZE       guest memory (default 2G)
#   QMP        QMP socket path (default /run/prezero-qemu-direct.qmp)
#   PAGE_SIZE  2M or 1G: which pool mount (default: prezerod's first)
#   ACCEL      kvm or tcg (default: what `prezero accel` decides)
#   PREZERO_SOCKET  prezerod's control socket (default /run/prezero/prezerod.sock)
set -eu
SIZE=${SIZE:-2G}
ACCEL=${ACCEL:-$(prezero accel | sed -n 's/^accel: //p')}
QMP=${QMP:-/run/prezero-qemu-direct.qmp}
exec prezero launch --memory "m0=$SIZE" ${PAGE_SIZE:+--page-size "$PAGE_SIZE"} --socket "${PREZERO_SOCKET:-/run/prezero/prezerod.sock}" -- \
    qemu-system-x86_64 -accel "$ACCEL" -nodefaults -nographic -display none -m "$SIZE" \
    -object "memory-backend-file,id=m0,mem-path={prezero:m0},size=$SIZE,share=on,prealloc=on" \
    -machine pc,memory-backend=m0 \
    -qmp "unix:$QMP,server=on,wait=off"
