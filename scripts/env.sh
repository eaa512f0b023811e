# Sourced by demo.sh and bench-libvirt.sh: a private prezero + libvirt setup on this
# host, undone by `env_cleanup` (run it from an EXIT trap).
#
#   pool_up PAGES POOL_TARGET FILE_SIZE [MIN_PAGES]            (prezerod only)
#   env_up PAGES POOL_TARGET FILE_SIZE HOOK_NAME [MIN_PAGES]   (and libvirt)
#     HOOK_NAME `installed`: the hook a package installed (/etc/libvirt/hooks/qemu.d/prezero)
#     is used as it is, pointed at the private prezerod by its /etc/prezero/hook.conf
#     (saved and restored)
#
# Pages are of $page_size (2M, the default, or 1G; set it before sourcing). Reserves
# PAGES huge pages, or as many as the host gives when that is at least MIN_PAGES
# (then a stock start gets its pages through prezerod's make-room), mounts a private hugetlbfs, starts a private prezerod
# filled to POOL_TARGET, points libvirt at the mount (memory_backing_dir and
# hugetlbfs_mount appended to qemu.conf, which is restored byte for byte), installs
# the hook as /etc/libvirt/hooks/qemu.d/HOOK_NAME and (re)starts libvirtd so that it
# finds the hook. Where /dev/kvm works but libvirt's QEMU user cannot open it, it is
# given Debian's udev mode for the run (scripts/kvm.sh). Undone: the daemons this
# started are stopped by PID, a libvirtd that was running is restarted, the mount,
# the pages, /dev/kvm's mode and the hook are given back.
# Sets: bin, work, mnt, sock, log, cli(), accel (kvm|tcg: env_up for libvirt's QEMU
# user, pool_up for a QEMU this script's user starts) and domain_type (kvm|qemu).
set -euo pipefail
bin=${PREZERO_BIN:-$PWD/.build/release}
conf=/etc/libvirt/qemu.conf
hook_conf=/etc/prezero/hook.conf
page_size=${page_size:-2M}
reserved_pages=0
work=; mnt=; sock=; log=; hook=; made_hook_dirs=; wrote_hook_conf=; pid=; started_virtlogd=; started_libvirtd=; had_libvirtd=; reserved=; kvm_granted=
accel=; domain_type=

# page_geometry ARGS...: the bench scripts' --page-size (2M or 1G) among ARGS. Sets
# page_size, per_g (pages a GiB), page_m (MiB a page), small_pages (the small guest:
# 256 MiB, or one 1 GiB page) and headroom (spare pages beside the pool).
page_geometry() {
    local a next=
    page_size=2M
    for a in "$@"; do
        [ -n "$next" ] && { page_size=$a; next=; continue; }
        case "$a" in --page-size) next=1 ;; --page-size=*) page_size=${a#*=} ;; esac
    done
    case "$page_size" in
        2M|2m) page_size=2M; per_g=512; page_m=2; small_pages=128; headroom=32 ;;
        1G|1g) page_size=1G; per_g=1; page_m=1024; small_pages=1; headroom=0 ;;
        *) echo "--page-size must be 2M or 1G" >&2; exit 2 ;;
    esac
}

alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
stop_pid() { kill "$1" 2>/dev/null || return 0; for _ in $(seq 150); do alive "$1" || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }
virsh() { command virsh -q -c qemu:///system "$@"; }
cli() { "$bin/prezero" "$@" --socket "$sock"; }
# The one decision (prezero accel), printed as `accel: kvm|tcg`.
decide_accel() {
    accel=$("$bin/prezero" accel "$@" | sed -n 's/^accel: //p')
    if [ "$accel" = kvm ]; then domain_type=kvm; else domain_type=qemu; fi
    echo "accel: $accel"
}

# A private hugetlbfs mount and prezerod filled to TARGET (files of FILE_SIZE).
# reserve_pages WANT [MIN]: WANT pages of $page_size, else at least MIN; sets reserved_pages.
reserve_pages() {
    local want=$1 min=${2:-$1} n
    reserved=1
    for n in "$want" "$min"; do
        if [ "$page_size" = 1G ]; then set -- "$n" 0; else set -- 0 "$n"; fi
        if scripts/hugepages.sh reserve "$@" 2>/dev/null; then reserved_pages=$n; return 0; fi
        scripts/hugepages.sh restore > /dev/null
    done
    scripts/hugepages.sh reserve "$@"   # says what the host gave, and fails
}

pool_up() {
    local pages=$1 target=$2 file_size=$3 min_pages=${4:-$1}
    work=$(mktemp -d /tmp/prezero-env.XXXXXX)
    chmod 755 "$work"   # QEMU runs as the qemu user and must reach the mount
    mnt=$work/hugepages; sock=$work/prezerod.sock; log=$work/prezerod.log
    reserve_pages "$pages" "$min_pages"
    echo "hugepages: $reserved_pages x $page_size pages reserved for this run (wanted $pages, at least $min_pages)"
    mkdir -p "$mnt" && mount -t hugetlbfs -o "pagesize=$page_size" none "$mnt"
    mkdir -p "$mnt/libvirt-ram"

    echo "== prezerod on $mnt"
    cat > "$work/prezerod.yaml" <<YAML
socket: $sock
state_dir: $work/state
min_free: 0
refill_delay_ms: ${pool_refill_delay_ms:-1000}
# Long enough for a stock guest to preallocate the pages make-room freed for it, short
# enough that a benchmark round does not wait the default 30 s for the refill (the
# benches wait for the hold to be over before each start).
make_room_hold_s: 5
mounts:
  - path: $mnt
    target: $target
    file_size: $file_size
YAML
    "$bin/prezerod" --config "$work/prezerod.yaml" 2> "$log" &
    pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    cli fill --target "$target" > /dev/null
    decide_accel
}

env_up() {
    local pages=$1 target=$2 file_size=$3 hook_name=$4 min_pages=${5:-$1}
    hook=/etc/libvirt/hooks/qemu.d/$hook_name
    if [ "$hook_name" = installed ]; then
        [ -x /etc/libvirt/hooks/qemu.d/prezero ] || { echo "no installed hook at /etc/libvirt/hooks/qemu.d/prezero" >&2; hook=; return 1; }
        hook=   # the package's: never removed here
    elif [ -e "$hook" ]; then
        echo "$hook exists already: this host has prezero installed; run the command against its own prezerod instead" >&2
        hook=; return 1
    fi
    pool_up "$pages" "$target" "$file_size" "$min_pages"

    echo "== libvirt: memory_backing_dir and hugetlbfs_mount on $mnt, hook ${hook:-/etc/libvirt/hooks/qemu.d/prezero (installed)}"
    cp "$conf" "$work/qemu.conf.orig"
    printf '\nmemory_backing_dir = "%s"\nhugetlbfs_mount = "%s"\n' "$mnt/libvirt-ram" "$mnt" >> "$conf"
    for d in /etc/libvirt/hooks /etc/libvirt/hooks/qemu.d; do
        [ -d "$d" ] || { mkdir "$d" && made_hook_dirs="$d $made_hook_dirs"; }
    done
    if [ "$hook_name" = installed ]; then
        [ -f "$hook_conf" ] && cp -p "$hook_conf" "$work/hook.conf.orig"
        wrote_hook_conf=1
        printf 'socket = %s\ntimeout_ms = 5000\n' "$sock" > "$hook_conf"
    elif [ "$hook_name" = prezero ]; then
        # As `prezero install` lays it out: the binary itself, configured by /etc/prezero/hook.conf
        # (saved and restored), so that what is timed is what a host runs.
        mkdir -p /etc/prezero
        [ -f "$hook_conf" ] && cp -p "$hook_conf" "$work/hook.conf.orig"
        wrote_hook_conf=1
        printf 'socket = %s\ntimeout_ms = 5000\n' "$sock" > "$hook_conf"
        cp "$bin/prezero-hook" "$hook"
    else
        # Beside a host's own hook: a wrapper pointing this one at the private prezerod.
        printf 'socket = %s\ntimeout_ms = 5000\n' "$sock" > "$work/hook.conf"
        printf '#!/bin/sh\nPREZERO_HOOK_CONF=%s exec %s "$@"\n' "$work/hook.conf" "$bin/prezero-hook" > "$hook"
    fi
    [ -n "$hook" ] && chmod 755 "$hook"
    kvm_granted=1; scripts/kvm.sh grant "$bin/prezero" > /dev/null
    decide_accel --libvirt
    if ! alive "$(cat /run/virtlogd.pid 2>/dev/null)"; then /usr/sbin/virtlogd -d; started_virtlogd=$(cat /run/virtlogd.pid); fi
    if alive "$(cat /run/libvirtd.pid 2>/dev/null)"; then had_libvirtd=1; stop_pid "$(cat /run/libvirtd.pid)"; fi
    /usr/sbin/libvirtd -d; started_libvirtd=1
    for _ in $(seq 100); do virsh version >/dev/null 2>&1 && break; sleep 0.1; done
}

# wait_clean BYTES: until the private pool holds BYTES clean (at most 30 s), so that no start
# is timed or checked while the pool refills.
wait_clean() {
    for _ in $(seq 300); do
        [ "$(cli status --json | sed -n 's/.*"clean_bytes" : \([0-9]*\).*/\1/p' | head -1)" = "$1" ] && return 0
        sleep 0.1
    done
}

# define_domain NAME UUID MEMORY_MIB BACKING: a guest with no disk (SeaBIOS idles, which is
# enough to time a start), its <memoryBacking> children BACKING; libvirt's accelerator.
define_domain() {
    cat > "$work/$1.xml" <<XML
<domain type='$domain_type'>
  <name>$1</name><uuid>$2</uuid>
  <memory unit='MiB'>$3</memory>
  <memoryBacking>$4</memoryBacking>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
</domain>
XML
    virsh define "$work/$1.xml" > /dev/null
}

env_cleanup() {
    local status=$?
    set +e
    if [ "$status" != 0 ] && [ -s "$log" ]; then
        echo "== the run failed (exit $status); the end of prezerod's log:" >&2
        tail -n 20 "$log" | sed 's/^/  | /' >&2
    fi
    [ -n "$hook" ] && rm -f "$hook"
    for d in $made_hook_dirs; do rmdir "$d" 2>/dev/null; done
    if [ -n "$wrote_hook_conf" ]; then
        if [ -f "$work/hook.conf.orig" ]; then cp -p "$work/hook.conf.orig" "$hook_conf"; else rm -f "$hook_conf"; rmdir /etc/prezero 2>/dev/null; fi
    fi
    [ -n "$work" ] && [ -f "$work/qemu.conf.orig" ] && cp "$work/qemu.conf.orig" "$conf"
    lv=$(cat /run/libvirtd.pid 2>/dev/null)
    if [ -n "$started_libvirtd$had_libvirtd" ] && alive "$lv"; then stop_pid "$lv"; fi
    [ -n "$had_libvirtd" ] && /usr/sbin/libvirtd -d
    [ -n "$started_virtlogd" ] && stop_pid "$started_virtlogd"
    [ -n "$pid" ] && stop_pid "$pid"
    [ -n "$mnt" ] && mountpoint -q "$mnt" && umount "$mnt"
    [ -n "$work" ] && rm -rf "$work"
    [ -n "$kvm_granted" ] && scripts/kvm.sh restore
    [ -n "$reserved" ] && scripts/hugepages.sh restore
}
