#!/usr/bin/env bash
# The main job, end to end, on this host: a real VM launch with pre-zeroed pages.
#
# A private prezerod on a temporary hugetlbfs mount, libvirt pointed at that mount
# (memory_backing_dir and hugetlbfs_mount in qemu.conf), the prezero hook installed,
# and one guest defined twice: in its stock <hugepages/> form and in the pre-zeroed
# form. Each `virsh start` is timed (median of DEMO_RUNS) and the table printed.
# Everything is undone on exit: domains, hook, qemu.conf (byte for byte), the
# daemons this script started (by PID), the mount, the huge pages.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.build/release
size_g=${DEMO_SIZE:-2}
runs=${DEMO_RUNS:-3}
pages=$(( size_g * 512 * 2 + 64 ))     # the pool's file + the stock guest's pages + headroom
work=$(mktemp -d /tmp/prezero-demo.XXXXXX)
chmod 755 "$work"   # QEMU runs as the qemu user and must reach the mount
mnt=$work/hugepages
conf=/etc/libvirt/qemu.conf
hook=/etc/libvirt/hooks/qemu.d/prezero-demo
pid=; started_virtlogd=; started_libvirtd=; had_libvirtd=
virsh() { command virsh -q -c qemu:///system "$@"; }
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
stop_pid() { kill "$1" 2>/dev/null || return 0; for _ in $(seq 100); do alive "$1" || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

cleanup() {
    set +e
    for d in pz-demo-stock pz-demo-prezero; do virsh destroy "$d" >/dev/null 2>&1; virsh undefine "$d" >/dev/null 2>&1; done
    rm -f "$hook"
    [ -f "$work/qemu.conf.orig" ] && cp "$work/qemu.conf.orig" "$conf"
    lv=$(cat /run/libvirtd.pid 2>/dev/null)
    if [ -n "$started_libvirtd$had_libvirtd" ] && alive "$lv"; then stop_pid "$lv"; fi
    [ -n "$had_libvirtd" ] && /usr/sbin/libvirtd -d
    [ -n "$started_virtlogd" ] && stop_pid "$started_virtlogd"
    [ -n "$pid" ] && stop_pid "$pid"
    mountpoint -q "$mnt" && umount "$mnt"
    rm -rf "$work"
    scripts/hugepages.sh restore
}
trap cleanup EXIT

scripts/hugepages.sh reserve 0 "$pages"
mkdir -p "$mnt" && mount -t hugetlbfs -o pagesize=2M none "$mnt"
mkdir -p "$mnt/libvirt-ram"

echo "== prezerod on $mnt"
cat > "$work/prezerod.yaml" <<YAML
socket: $work/prezerod.sock
state_dir: $work/state
min_free: 0
refill_delay_ms: 1000
mounts:
  - path: $mnt
    target: ${size_g}G
    file_size: ${size_g}G
YAML
"$bin/prezerod" --config "$work/prezerod.yaml" 2> "$work/prezerod.log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/prezerod.sock" ] && break; sleep 0.05; done
cli() { "$bin/prezero" "$@" --socket "$work/prezerod.sock"; }
cli fill --target "${size_g}G" > /dev/null

echo "== libvirt: memory_backing_dir and hugetlbfs_mount on $mnt, hook installed"
cp "$conf" "$work/qemu.conf.orig"
printf '\nmemory_backing_dir = "%s"\nhugetlbfs_mount = "%s"\n' "$mnt/libvirt-ram" "$mnt" >> "$conf"
printf 'socket = %s\ntimeout_ms = 5000\n' "$work/prezerod.sock" > "$work/hook.conf"
mkdir -p "$(dirname "$hook")"
printf '#!/bin/sh\nPREZERO_HOOK_CONF=%s exec %s "$@"\n' "$work/hook.conf" "$bin/prezero-hook" > "$hook"
chmod 755 "$hook"
if ! alive "$(cat /run/virtlogd.pid 2>/dev/null)"; then /usr/sbin/virtlogd -d; started_virtlogd=$(cat /run/virtlogd.pid); fi
if alive "$(cat /run/libvirtd.pid 2>/dev/null)"; then had_libvirtd=1; stop_pid "$(cat /run/libvirtd.pid)"; fi
/usr/sbin/libvirtd -d; started_libvirtd=1
for _ in $(seq 100); do virsh version >/dev/null 2>&1 && break; sleep 0.1; done

domain() {  # name uuid memoryBacking
    cat > "$work/$1.xml" <<XML
<domain type='qemu'>
  <name>$1</name><uuid>$2</uuid>
  <memory unit='GiB'>$size_g</memory>
  <memoryBacking>$3</memoryBacking>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
</domain>
XML
    virsh define "$work/$1.xml" > /dev/null
}
domain pz-demo-stock 5e6d0c1a-0000-4000-8000-000000000001 "<hugepages/><allocation mode='immediate'/>"
domain pz-demo-prezero 5e6d0c1a-0000-4000-8000-000000000002 "<source type='file'/><access mode='shared'/><allocation mode='immediate'/>"

clean_bytes() { cli status --json | sed -n 's/.*"clean_bytes" : \([0-9]*\).*/\1/p' | head -1; }
time_start() {
    local t0 t1
    t0=$(date +%s.%N); virsh start "$1" > /dev/null; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== virsh start, ${size_g} GiB guest, $runs runs each"
: > "$work/stock"; : > "$work/prezero"
for r in $(seq "$runs"); do
    time_start pz-demo-stock >> "$work/stock"; virsh destroy pz-demo-stock > /dev/null
    for _ in $(seq 300); do [ "$(clean_bytes)" = "$(( size_g << 30 ))" ] && break; sleep 0.1; done
    time_start pz-demo-prezero >> "$work/prezero"
    grep -q "pc.ram: handed over" "$work/prezerod.log" || { echo "demo: the pre-zeroed start was not handed over; see $work/prezerod.log" >&2; exit 1; }
    virsh destroy pz-demo-prezero > /dev/null
    echo "  run $r: stock $(tail -1 "$work/stock") s, prezero $(tail -1 "$work/prezero") s"
done
s=$(median < "$work/stock"); p=$(median < "$work/prezero")
echo
printf '%-28s %10s\n' "virsh start (${size_g} GiB guest)" "median s"
printf '%-28s %10.3f\n' "stock <hugepages/>" "$s" "pre-zeroed (prezero)" "$p"
printf '%-28s %10.2fx\n' "speedup" "$(echo "$s / $p" | bc -l)"
echo
echo "== prezerod's decisions"
grep -E "handed over|not handed over|left alone|released" "$work/prezerod.log" | sed 's/^.*\[PrezeroPool\] /  /' | tail -n 4
