# Sourced: Debian's kernel and busybox-static for the test guests (the NUMA
# harness, `bench libvirt --boot`), fetched with `apt-get download` into a cache
# directory at run time and never committed.
#
#   guest_kernel CACHE   sets $kernel (a vmlinuz), $kpkg and $busybox (a static busybox)
#
# Every artefact is checked before it is used: a .deb must be an archive dpkg-deb
# can read, the kernel a bzImage, busybox an executable that runs. One that fails a
# check is deleted and fetched again, so a truncated download or a cache left by an
# older run never reaches a guest.

# stdout of everything here is captured by $(...): progress goes to stderr.
_gk_die() { echo "guest-kernel: $*" >&2; exit 1; }

_gk_newest_kernel() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -n 1
}

# A .deb is usable when dpkg-deb can list its control data and its payload.
_gk_deb_ok() { dpkg-deb --info "$1" >/dev/null 2>&1 && dpkg-deb --fsys-tarfile "$1" | tar -t >/dev/null 2>&1; }

# An x86 boot image carries "HdrS" at offset 0x202.
_gk_bzimage() { [ "$(dd if="$1" bs=1 skip=514 count=4 2>/dev/null)" = HdrS ]; }

# _gk_fetch CACHE PACKAGE: prints the path of a readable .deb of PACKAGE in CACHE.
_gk_fetch() {
    local cache=$1 pkg=$2 deb try
    for try in cached download update-and-download; do
        deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$deb" ]; then
            if _gk_deb_ok "$deb"; then echo "$deb"; return 0; fi
            echo "guest-kernel: $deb is not a readable archive; fetching it again" >&2
            rm -f "$deb"
        fi
        case $try in
            cached) ;;
            download|update-and-download)
                # A stale package list names versions the mirror no longer has: update, then retry.
                [ "$try" = download ] || apt-get update -qq >&2
                (cd "$cache" && apt-get download -q "$pkg" 2>&1 | grep -v "couldn't be accessed by user '_apt'" >&2 || true) ;;
        esac
    done
    _gk_die "apt-get download $pkg gave no readable .deb (see above); check the network and /etc/apt/sources.list"
}

guest_kernel() {
    local cache=$1 kdeb bdeb x old
    mkdir -p "$cache"
    kpkg=$(_gk_newest_kernel)
    if [ -z "$kpkg" ]; then apt-get update -qq >&2; kpkg=$(_gk_newest_kernel); fi
    [ -n "$kpkg" ] || _gk_die "apt knows no linux-image-6.1.0-*-amd64 package; check /etc/apt/sources.list (Debian 12 main and security)"
    kdeb=$(_gk_fetch "$cache" "$kpkg")
    bdeb=$(_gk_fetch "$cache" busybox-static)
    for old in "$cache"/linux-image-*.deb; do [ "$old" = "$kdeb" ] || rm -f "$old"; done   # only the newest kernel
    kernel=$cache/$kpkg.vmlinuz
    if ! _gk_bzimage "$kernel"; then
        rm -f "$cache"/linux-image-*.vmlinuz
        x=$(mktemp -d)
        dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$x" --wildcards './boot/vmlinuz-*'
        mv "$x"/boot/vmlinuz-* "$kernel"
        rm -rf "$x"
        _gk_bzimage "$kernel" || _gk_die "$kdeb holds no bzImage kernel"
    fi
    busybox=$cache/busybox
    if [ "$bdeb" -nt "$busybox" ] || ! "$busybox" true 2>/dev/null; then
        x=$(mktemp -d)
        dpkg-deb -x "$bdeb" "$x"
        mv "$x/bin/busybox" "$busybox"
        rm -rf "$x"
        "$busybox" true || _gk_die "$bdeb holds no busybox that runs here"
    fi
}
