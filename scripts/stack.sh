#!/usr/bin/env bash
# The second libvirt/QEMU stack: libvirt 11.3 and QEMU 10.0 from Debian 12's bookworm-backports,
# in a Debian 12 root of their own, beside the host's libvirt 9.0 and QEMU 7.2. The host's apt
# sources and packages are not touched: mmdebstrap is handed the backports line, and builds
# the root from empty. prezerod, the tests and the CLI stay on the host.
#
#   scripts/stack.sh build ROOT            build ROOT from empty (about a minute, ~430 MB)
#   scripts/stack.sh run ROOT -- CMD...    run CMD with ROOT's libvirt in place of the host's
#   scripts/stack.sh versions ROOT         print ROOT's libvirtd and QEMU versions
#
# `run` works in a private mount namespace, so nothing it mounts outlives it or is seen by the
# host: ROOT's /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
# /var/log/libvirt are put over the host's, so that virsh, the lab (PrezeroLab) and prezerod read
# and write ROOT's libvirt at the usual paths; /dev, /proc, /sys, /tmp (where the lab mounts its
# hugetlbfs and keeps its files), /run/prezero, /boot and the build's binaries are bound into ROOT
# at the same paths (and the project, whose prezero-hook the hook runs), so that ROOT's libvirtd, its hook and its QEMU see what the host sees.
# PREZERO_LIBVIRT_ROOT=ROOT tells the lab to start libvirtd and virtlogd inside ROOT (chroot), and
# a qemu-system-x86_64 first in PATH runs ROOT's QEMU for what starts QEMU directly.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "stack: $*" >&2; exit 2; }
# The packages of the stack, all from bookworm-backports (Default-Release below); the rest of the
# root is plain bookworm.
PACKAGES=libvirt-daemon-system,libvirt-daemon-driver-qemu,libvirt-clients,qemu-system-x86,qemu-utils,numad
MIRROR=${PREZERO_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# /tmp is bound into ROOT, so ROOT cannot lie under it (nor the project's path bind over it).
outside_tmp() {
    local r
    r=$(realpath -m "$1")
    case "$r/" in /tmp/*) die "$1 lies under /tmp, which is bound into the root; put the root elsewhere, e.g. /var/tmp/prezero-stack/root" ;; esac
}

build() {
    local root=$1
    outside_tmp "$root"
    [ "$(id -u)" = 0 ] || die "building the root needs root (mmdebstrap --mode=root); run it with sudo"
    command -v mmdebstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
    [ ! -e "$root" ] || [ -z "$(ls -A "$root")" ] || die "$root is not empty; the root is built from empty (rm -rf it first)"
    # The host's users and groups go in before the packages, so that libvirt-qemu and kvm keep the
    # host's ids: a file the host's prezerod gives QEMU's user, and /dev/kvm's group, mean the same
    # inside the root.
    mmdebstrap --variant=apt --mode=root --quiet \
        --aptopt='APT::Default-Release "bookworm-backports"' \
        --essential-hook='for f in passwd group shadow gshadow; do cp -p /etc/$f "$1/etc/$f"; done' \
        --include="$PACKAGES" \
        bookworm "$root" "deb $MIRROR bookworm main" "deb $MIRROR bookworm-backports main"
    # libvirt's private /dev for each QEMU (qemu.conf's namespaces) comes out without /dev/kvm
    # when libvirtd runs in a chroot whose /dev is the host's, bound in ("Could not access KVM
    # kernel module"): QEMU runs in libvirtd's own mount namespace instead, as namespaces = []
    # configures on any host. Nothing of the hand-over depends on it.
    printf '\n# prezero stack: QEMU in libvirtd'"'"'s mount namespace (scripts/stack.sh)\nnamespaces = []\n' >> "$root/etc/libvirt/qemu.conf"
    # Debian's package starts nothing in a chroot; the lab starts libvirtd and virtlogd itself.
    versions "$root"
}

versions() {
    local root=$1
    [ -x "$root/usr/sbin/libvirtd" ] || die "$root has no libvirtd: build it with: scripts/stack.sh build $root"
    echo "stack: $root: libvirt $(chroot "$root" /usr/sbin/libvirtd --version | awk '{print $NF}'), QEMU $(chroot "$root" /usr/bin/qemu-system-x86_64 --version | awk 'NR==1 {print $4}')"
}

# Inside the private namespace: the binds, then CMD.
inside() {
    local root=$1 bin=$2
    shift 2
    # ROOT itself a mount point: libvirt makes / a slave mount for each QEMU's own namespace
    # (qemu.conf's namespaces), which fails with EINVAL where / is no mount.
    mount --bind "$root" "$root"
    # /tmp becomes a shared mount so that what the lab mounts under it later shows inside ROOT too.
    mount --bind /tmp /tmp
    mount --make-shared /tmp
    local d
    for d in /dev /proc /sys; do mount --rbind "$d" "$root$d"; mount --make-rslave "$root$d"; done
    mount --bind /tmp "$root/tmp"
    mkdir -p /run/prezero "$root/run/prezero" "$root/boot"
    case "$bin/" in /tmp/*) ;; *) mkdir -p "$root$bin" ;; esac
    mount --bind /run/prezero "$root/run/prezero"
    mount --bind -o ro /boot "$root/boot"
    # A project under /tmp is inside already.
    case "$bin/" in /tmp/*) ;; *) mount --bind "$bin" "$root$bin" ;; esac
    for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/prezero; do
        mkdir -p "$d" "$root$d"
        mount --bind "$root$d" "$d"
    done
    # QEMU run directly (prezero launch, migration, bench launch) is the root's too: a
    # qemu-system-x86_64 first in PATH runs it inside ROOT, as root.
    mkdir -p "$root/.host-bin"
    printf '#!/bin/sh\nexec chroot %s /usr/bin/qemu-system-x86_64 "$@"\n' "$root" > "$root/.host-bin/qemu-system-x86_64"
    chmod 755 "$root/.host-bin/qemu-system-x86_64"
    export PATH="$root/.host-bin:$PATH"
    export PREZERO_LIBVIRT_ROOT=$root
    exec "$@"
}

# A run that died (a test binary that crashed skips the lab's close) leaves ROOT's libvirtd,
# virtlogd and QEMUs running, holding whatever they inherited: each process whose root is ROOT
# is stopped, by PID.
reap() {
    local root=$1 p left=()
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && left+=("${p#/proc/}")
    done
    [ ${#left[@]} -gt 0 ] || return 0
    echo "stack: stopping what the run left inside $root: PIDs ${left[*]}" >&2
    kill "${left[@]}" 2>/dev/null || true
    sleep 2
    for p in "${left[@]}"; do [ -d "/proc/$p" ] && kill -9 "$p" 2>/dev/null; done
    return 0
}

run() {
    local root=$1
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: scripts/stack.sh run ROOT -- CMD..."
    [ "$(id -u)" = 0 ] || die "run needs root (a mount namespace and chroot)"
    outside_tmp "$root"
    versions "$root" >&2
    root=$(realpath "$root")
    # The project, with its builds, at the same path inside ROOT: the hook libvirtd runs is its
    # prezero-hook (static).
    local bin
    bin=$(realpath .)
    # /etc/prezero and /run/prezero are made on the host only if missing, and removed again if empty.
    local made=()
    for d in /etc/prezero /run/prezero; do [ -e "$d" ] || made+=("$d"); done
    local status=0
    unshare --mount --propagation private "$0" __inside "$root" "$bin" "$@" || status=$?
    reap "$root"
    for d in "${made[@]}"; do rmdir "$d" 2>/dev/null || true; done
    return $status
}

case "${1:-}" in
    build) build "${2:?usage: scripts/stack.sh build ROOT}" ;;
    run) shift; run "$@" ;;
    versions) versions "${2:?usage: scripts/stack.sh versions ROOT}" ;;
    __inside) shift; inside "$@" ;;
    -h|--help|"") sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
    *) die "unknown command '$1'; see scripts/stack.sh --help" ;;
esac
