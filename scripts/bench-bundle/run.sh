#!/bin/bash
# prezero's scale benchmarks on a machine with nothing installed: a static prezero-bench
# beside this script, root, and hugetlbfs. Most important first, each repeated (RUNS, default
# 3), its JSON written to $OUT (default ./out) as soon as it is done, so that a run cut short
# keeps what it finished. Huge pages are reserved for the run and given back on exit.
#   sudo OUT=/some/dir ./run.sh
# Sizes follow the free memory (about 35% each for 2 MiB and 1 GiB pages); POOL_SIZE,
# STORM_VMS and STORM_SIZE override them (a small machine: POOL_SIZE=1G STORM_VMS=8 STORM_SIZE=64M).
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

avail_g=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
share_g=$(( avail_g * 35 / 100 ))
[ "$share_g" -ge 1 ] || { echo "bench-bundle: only ${avail_g} GiB available; too little to measure" >&2; exit 1; }
# 1 GiB pages first: they need whole free gigabytes, which 2 MiB pages would break up.
[ -w "$one" ] && echo "$share_g" > "$one" 2>/dev/null
echo $(( share_g * 512 )) > "$two"
got2=$(( $(cat "$two") / 512 )) got1=$(cat "$one" 2>/dev/null || echo 0)
log "$(nproc) CPUs, $(uname -r), ${avail_g} GiB available; reserved ${got2} GiB of 2 MiB pages and ${got1} x 1 GiB pages"
{ uname -a; nproc; grep -E 'MemTotal|MemAvailable|Huge' /proc/meminfo; ls /sys/devices/system/node | grep node; } > "$OUT/machine.txt" 2>&1

POOL_SIZE=${POOL_SIZE:-$(( got2 > 32 ? 32 : got2 ))G}
STORM_VMS=${STORM_VMS:-32}
STORM_SIZE=${STORM_SIZE:-$(( got2 * 1024 / STORM_VMS / 2 * 2 > 1024 ? 1024 : got2 * 1024 / STORM_VMS / 2 * 2 ))M}

# name, time limit in seconds, arguments
item() {
    local name=$1 limit=$2; shift 2
    log "$name: prezero-bench $* (at most ${limit} s)"
    local t0=$SECONDS
    if timeout "$limit" "$bench" "$@" --json > "$OUT/$name.json.tmp" 2> "$OUT/$name.err"; then
        mv "$OUT/$name.json.tmp" "$OUT/$name.json"
        log "$name: done in $(( SECONDS - t0 )) s"
    else
        log "$name: failed or cut off after $(( SECONDS - t0 )) s: $(tail -1 "$OUT/$name.err")"
    fi
}

item pool 240 pool --size "$POOL_SIZE" --runs "$RUNS"
item storm 150 storm --vms "$STORM_VMS" --size "$STORM_SIZE" --runs "$RUNS"
log "all done: $(ls "$OUT" | tr "\n" " ")"
