#!/usr/bin/env bash
# scripts/boot-guest.sh OUTDIR [INIT.c]: a guest that boots to userspace, for
# `prezero bench libvirt --boot` and `make isolation`. Writes OUTDIR/vmlinuz (Debian's
# kernel, as the NUMA harness fetches it) and OUTDIR/initrd (a cpio holding only
# INIT.c, default scripts/boot-init.c, built static as /init), both readable by
# libvirt's QEMU user. boot-init.c prints PREZERO-BOOT-USERSPACE on ttyS0 once it runs.
#   PREZERO_NUMA_CACHE  where the kernel and busybox are kept (default /var/cache/prezero-numa)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/boot-guest.sh OUTDIR [INIT.c]}
init=${2:-$repo/scripts/boot-init.c}
. "$repo/scripts/guest-kernel.sh"
guest_kernel "${PREZERO_NUMA_CACHE:-/var/cache/prezero-numa}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$out" "$root/dev"
gcc -static -O2 -Wall -Wextra -Werror -o "$root/init" "$init"
(cd "$root" && find . | "$busybox" cpio -o -H newc --quiet) > "$out/initrd"
cp "$kernel" "$out/vmlinuz"
chmod 755 "$out"; chmod 644 "$out/initrd" "$out/vmlinuz"
echo "boot guest: $kpkg, initrd $(stat -c %s "$out/initrd") bytes in $out" >&2
