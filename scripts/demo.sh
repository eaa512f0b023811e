#!/usr/bin/env bash
# The main job, end to end, on this host: a real VM launch with pre-zeroed pages.
#
# A private prezerod on a temporary hugetlbfs mount, libvirt pointed at that mount
# (memory_backing_dir and hugetlbfs_mount in qemu.conf), the prezero hook installed,
# and one guest defined twice: in its stock <hugepages/> form and in the pre-zeroed
# form, and a third time in the best stock form: <hugepages/> with QEMU's prealloc on
# one thread per host CPU (<allocation threads='N'/>). Each `virsh start` is timed
# (median of DEMO_RUNS) and the table printed. KVM where QEMU can use it, else TCG
# (`prezero accel --libvirt`, printed as `accel:`).
# Everything is undone on exit: domains, hook, qemu.conf (byte for byte), the
# daemons this script started (by PID), the mount, the huge pages.
set -euo pipefail
cd "$(dirname "$0")/.."
size_g=${DEMO_SIZE:-2}
runs=${DEMO_RUNS:-3}
. scripts/env.sh
cleanup() {
    set +e
    for d in pz-demo-stock pz-demo-threads pz-demo-prezero; do virsh destroy "$d" >/dev/null 2>&1; virsh undefine "$d" >/dev/null 2>&1; done
    env_cleanup
}
trap cleanup EXIT
# The pool's file + the stock guest's pages + headroom.
env_up $(( size_g * 512 * 2 + 64 )) "${size_g}G" "${size_g}G" prezero-demo

domain() { define_domain "$1" "$2" $(( size_g * 1024 )) "$3"; }  # name uuid memoryBacking
threads=$(nproc)
domain pz-demo-stock 5e6d0c1a-0000-4000-8000-000000000001 "<hugepages/><allocation mode='immediate'/>"
domain pz-demo-threads 5e6d0c1a-0000-4000-8000-000000000003 "<hugepages/><allocation mode='immediate' threads='$threads'/>"
domain pz-demo-prezero 5e6d0c1a-0000-4000-8000-000000000002 "<source type='file'/><access mode='shared'/><allocation mode='immediate'/>"

time_start() {
    local t0 t1
    t0=$(date +%s.%N); virsh start "$1" > /dev/null; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== virsh start, ${size_g} GiB guest, $runs runs each after one untimed round (the host backs memory lazily)"
settle() { wait_clean $(( size_g << 30 )); }
: > "$work/stock"; : > "$work/threads"; : > "$work/prezero"
for r in $(seq 0 "$runs"); do
    line="  run $r:"
    for d in stock threads prezero; do
        settle
        t=$(time_start "pz-demo-$d")
        if [ "$d" = prezero ]; then
            grep -q "pc.ram: handed over" "$log" || { echo "demo: the pre-zeroed start was not handed over; see $work/prezerod.log" >&2; exit 1; }
        fi
        virsh destroy "pz-demo-$d" > /dev/null
        [ "$r" = 0 ] || echo "$t" >> "$work/$d"
        line="$line $d $t s"
    done
    [ "$r" = 0 ] && line="$line (warm-up, not counted)"
    echo "$line"
done
s=$(median < "$work/stock"); th=$(median < "$work/threads"); p=$(median < "$work/prezero")
echo
echo "accel: $accel"
printf '%-36s %10s\n' "virsh start (${size_g} GiB guest)" "median s"
printf '%-36s %10.3f\n' "stock <hugepages/>" "$s" "stock <hugepages/>, threads=$threads" "$th" "pre-zeroed (prezero)" "$p"
printf '%-36s %10.2fx\n' "speedup over stock" "$(echo "$s / $p" | bc -l)" "speedup over stock, threads=$threads" "$(echo "$th / $p" | bc -l)"
echo
echo "== prezerod's decisions"
grep -E ": (hand-over|make-room|nothing): |: handed over|released" "$log" | sed 's/^.*\[PrezeroPool\] /  /' | tail -n 4
