#!/usr/bin/env bash
# scripts/boot-guest.sh OUTDIR: a guest that boots to userspace and says so, for
# `prezero bench libvirt --boot`. Writes OUTDIR/vmlinuz (Debian's kernel, as the
# NUMA harness fetches it) and OUTDIR/initrd (a cpio holding only scripts/boot-init.c,
# built static), both readable by libvirt's QEMU user. The guest prints
# PREZERO-BOOT-USERSPACE on ttyS0 once its /init runs.
#   PREZERO_NUMA_CACHE  where the kernel and busybox are kept (default /var/cache/prezero-numa)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/boot-guest.sh OUTDIR}
. "$repo/scripts/guest-kernel.sh"
guest_kernel "${PREZERO_NUMA_CACHE:-/var/cache/prezero-numa}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$out" "$root/dev"
gcc -static -O2 -Wall -Wextra -Werror -o "$root/init" "$repo/scripts/boot-init.c"
(cd "$root" && find . | "$busybox" cpio -o -H newc --quiet) > "$out/initrd"
cp "$kernel" "$out/vmlinuz"
chmod 755 "$out"; chmod 644 "$out/initrd" "$out/vmlinuz"
echo "boot guest: $kpkg, initrd $(stat -c %s "$out/initrd") bytes in $out" >&2
