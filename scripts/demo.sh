#!/usr/bin/env bash
# The main job, end to end, on this host: a real VM launch with pre-zeroed pages.
#
# In a private environment (`prezero lab run`: huge pages, a private prezerod on a
# temporary hugetlbfs mount, libvirt pointed at it, the prezero hook installed, all
# undone on exit), one guest is defined three times: in its stock <hugepages/> form,
# in the best stock form, <hugepages/> with QEMU's prealloc on one thread per host CPU
# (<allocation threads='N'/>) bound to the first node, where libvirt adds a thread-context,
# and in the pre-zeroed form. Each `virsh start` is timed
# (median of DEMO_RUNS) and the table printed. KVM where QEMU can use it, else TCG
# (`prezero accel --libvirt`, printed as `accel:`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PREZERO_BIN:-$PWD/.build/release}
size_g=${DEMO_SIZE:-2}
runs=${DEMO_RUNS:-3}
if [ -z "${PREZERO_LAB_DIR:-}" ]; then
    # The pool's file + the stock guest's pages + headroom.
    exec "$bin/prezero" lab run --reserve "2M:$(( size_g * 512 * 2 + 64 ))" --target "${size_g}G" --libvirt private -- "$0" "$@"
fi
work=$PREZERO_LAB_DIR; log=$PREZERO_LAB_LOG
accel=$("$bin/prezero" accel --libvirt | sed -n 's/^accel: //p')
threads=$(nproc)
define() { "$bin/prezero" lab define "pz-demo-$1" --memory "${size_g}G" --uuid "$2" --backing "$3" > /dev/null; }
define stock 5e6d0c1a-0000-4000-8000-000000000001 stock
define threads 5e6d0c1a-0000-4000-8000-000000000003 "threads=$threads"
define prezero 5e6d0c1a-0000-4000-8000-000000000002 prezero

virsh() { command virsh -q -c qemu:///system "$@"; }
time_start() {
    local t0 t1
    t0=$(date +%s.%N); virsh start "$1" > /dev/null; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== virsh start, ${size_g} GiB guest, $runs runs each after one untimed round (the host backs memory lazily)"
: > "$work/stock"; : > "$work/threads"; : > "$work/prezero"
for r in $(seq 0 "$runs"); do
    line="  run $r:"
    for d in stock threads prezero; do
        "$bin/prezero" lab settle
        t=$(time_start "pz-demo-$d")
        if [ "$d" = prezero ]; then
            grep -q "pc.ram: handed over" "$log" || { echo "demo: the pre-zeroed start was not handed over; see prezerod's log" >&2; exit 1; }
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
echo "stack: $(virsh version --daemon | awk -F': *' '/Running against daemon/ {d=$2} /Running hypervisor/ {h=$2} END {print "libvirt " d ", " h}')"
printf '%-36s %10s\n' "virsh start (${size_g} GiB guest)" "median s"
printf '%-36s %10.3f\n' "stock <hugepages/>" "$s" "stock <hugepages/>, threads=$threads" "$th" "pre-zeroed (prezero)" "$p"
printf '%-36s %10.2fx\n' "speedup over stock" "$(echo "$s / $p" | bc -l)" "speedup over stock, threads=$threads" "$(echo "$th / $p" | bc -l)"
echo
echo "== prezerod's decisions"
grep -E ": (hand-over|make-room|nothing): |: handed over|released" "$log" | sed 's/^.*\[PrezeroPool\] /  /' | tail -n 4
