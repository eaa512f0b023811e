#!/bin/bash
# prezero's scale benchmarks on a machine with nothing installed: a static prezero-bench
# beside this script, root, and hugetlbfs. The most important item first, each repeated
# RUNS times (default 3) and cut off at its time limit (all of them: under 8 minutes), its
# JSON written to $OUT (default ./out) as soon as it is done, so that a run cut short keeps
# what it finished. One page size is reserved at a time (96 GiB of 2 MiB pages and 64 GiB of
# 1 GiB pages do not fit in 128 GiB together); the pages are given back on exit.
#   sudo OUT=/some/dir ./run.sh
# Sizes follow the memory: RESERVE_2M_G (default 96, at most 3/4 of what is available),
# RESERVE_1G_G (default 64, the same bound), FILL_G (default 64, at most the 2 MiB
# reservation), STORM_VMS (16) and STORM_SIZE (FILL_G / STORM_VMS, in MiB).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench="$here/prezero-bench"
OUT=${OUT:-$here/out}
RUNS=${RUNS:-3}
mkdir -p "$OUT"
log() { echo "bench-bundle: $*" | tee -a "$OUT/run.log" >&2; }

[ "$(id -u)" = 0 ] || { echo "bench-bundle: run as root (it mounts hugetlbfs and reserves huge pages)" >&2; exit 1; }
grep -qw hugetlbfs /proc/filesystems || { echo "bench-bundle: this kernel has no hugetlbfs (CONFIG_HUGETLBFS); nothing can run" >&2; exit 1; }
[ -x "$bench" ] || { echo "bench-bundle: $bench is missing; unpack the whole bundle" >&2; exit 1; }

pages() { echo "/sys/kernel/mm/hugepages/hugepages-$1kB/nr_hugepages"; }
two=$(pages 2048) one=$(pages 1048576)
orig2=$(cat "$two" 2>/dev/null || echo 0) orig1=$(cat "$one" 2>/dev/null || echo 0)
restore() {
    [ -w "$two" ] && echo "$orig2" > "$two"
    [ -w "$one" ] && echo "$orig1" > "$one"
    log "huge pages given back: $(cat "$two" 2>/dev/null || echo -) x 2 MiB, $(cat "$one" 2>/dev/null || echo -) x 1 GiB"
}
trap restore EXIT

# reserve SIZE_KB GIB: sets that size's pages (the other size's to 0), prints the GiB it got.
reserve() {
    local file; file=$(pages "$1")
    [ -w "$two" ] && echo 0 > "$two"
    [ -w "$one" ] && echo 0 > "$one"
    [ -w "$file" ] || { echo 0; return; }
    echo $(( $2 * 1048576 / $1 )) > "$file" 2>/dev/null
    echo $(( $(cat "$file") * $1 / 1048576 ))
}

# item NAME LIMIT ARGS...: one benchmark, its JSON in $OUT/NAME.json.
item() {
    local name=$1 limit=$2; shift 2
    log "$name: prezero-bench $* --runs $RUNS (at most ${limit} s)"
    local t0=$SECONDS
    if timeout "$limit" "$bench" "$@" --runs "$RUNS" --json > "$OUT/$name.json.tmp" 2> "$OUT/$name.err"; then
        mv "$OUT/$name.json.tmp" "$OUT/$name.json"
        log "$name: done in $(( SECONDS - t0 )) s"
    else
        log "$name: failed or cut off after $(( SECONDS - t0 )) s: $(tail -1 "$OUT/$name.err")"
    fi
}

cpus=$(nproc)
avail_g=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
cap_g=$(( avail_g * 3 / 4 ))
want2=${RESERVE_2M_G:-96} want1=${RESERVE_1G_G:-64}
{ uname -a; echo "cpus $cpus"; grep -E 'MemTotal|MemAvailable|Huge' /proc/meminfo; ls /sys/devices/system/node | grep node; } > "$OUT/machine.txt" 2>&1
log "$cpus CPUs, $(uname -r), ${avail_g} GiB available"

# 2 MiB pages: fill with 16 (or one per CPU) and 4 workers against as many files, the
# hand-over at the whole reservation, the storm, then recycle and the fill budget.
got2=$(reserve 2048 $(( want2 < cap_g ? want2 : cap_g )))
log "reserved ${got2} GiB of 2 MiB pages"
if [ "$got2" -ge 1 ]; then
    fill=${FILL_G:-64}; [ "$fill" -le "$got2" ] || fill=$got2
    many=$(( cpus < 16 ? cpus : 16 ))
    vms=${STORM_VMS:-16}
    storm_mib=${STORM_SIZE:-$(( fill * 1024 / vms / 2 * 2 ))}
    item fill-$many 120 pool --only fill --size "${fill}G" --workers "$many"
    item handover-2M 110 pool --only handover --size "${got2}G"
    item storm-$vms 60 storm --vms "$vms" --size "${storm_mib}M"
    item fill-4 70 pool --only fill --size "${fill}G" --workers 4
    item recycle-budget 40 pool --only recycle,budget --size "${fill}G" --workers "$many"
fi

# 1 GiB pages: the hand-over at the whole reservation.
got1=$(reserve 1048576 $(( want1 < cap_g ? want1 : cap_g )))
log "reserved ${got1} x 1 GiB pages"
if [ "$got1" -ge 1 ]; then
    item handover-1G 50 pool --only handover --size 64M
fi
log "all done: $(ls "$OUT" | tr '\n' ' ')"
