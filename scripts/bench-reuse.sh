#!/usr/bin/env bash
# Release to reuse, on a quiet host and on one busy with idle processes, in one run:
# a 64 MiB file is claimed and released ROUNDS times (default 10) with refill_delay_ms 0,
# and each time the seconds from the release request to a new file in clean/ are taken
# (its pages punched back, a new file filled). Then LOAD_PROCS processes of LOAD_THREADS
# threads and LOAD_FDS descriptors each (default 2000, 8, 64) start, and it is measured
# again. Prints the medians, ranges and their ratio. It runs in a private environment
# (`prezero lab run`), undone on exit.
#   scripts/bench-reuse.sh          (make bench-reuse)
#   PREZERO_BIN=DIR: the binaries to measure (default .build/release), e.g. an older build.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
bin=${PREZERO_BIN:-$PWD/.build/release}
# One file of 64 MiB: 32 pages and no spare, so the refill waits for the take-back.
# The lab is this tree's (an older build may have none); the daemon measured is $bin's.
[ -n "${PREZERO_LAB_DIR:-}" ] || exec "$PWD/.build/release/prezero" lab run --bin "$bin" --reserve 2M:32 --target 64M --refill-delay-ms 0 -- "$0" "$@"
work=$PREZERO_LAB_DIR; mnt=$PREZERO_LAB_MOUNT
cli() { "$bin/prezero" "$@" --socket "$PREZERO_LAB_SOCKET"; }
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }
rounds=${ROUNDS:-10}
procs=${LOAD_PROCS:-2000}; threads=${LOAD_THREADS:-8}; fds=${LOAD_FDS:-64}
loader=; loader_pid=
cleanup() {
    [ -n "$loader_pid" ] && stop_pid "$loader_pid"
    [ -n "$loader" ] && rm -f "$loader"
}
trap cleanup EXIT
loader=$(mktemp /tmp/prezero-idle-load.XXXXXX)
gcc -O2 -Wall -Wextra -Werror -pthread -o "$loader" scripts/idle-load.c

# One round: claim, release, and the time to a new clean file.
round() {
    cli claim --size 64M --dest "$mnt/vm" --lease reuse > /dev/null
    local t0 t1
    t0=$(date +%s.%N)
    cli release --lease reuse > /dev/null
    local files=() end=$((SECONDS + 60))
    while [ ${#files[@]} -eq 0 ] && [ $SECONDS -lt $end ]; do files=("$mnt"/.prezero/clean/*); done
    t1=$(date +%s.%N)
    [ ${#files[@]} -gt 0 ] || { echo "bench-reuse: no new clean file within 60 s of the release" >&2; exit 1; }
    echo "$t1 - $t0" | bc -l
}
series() {
    local label=$1 xs=() i
    round > /dev/null   # warm: the first touch of pages is slow here
    for i in $(seq "$rounds"); do xs+=("$(round)"); done
    printf '%s\n' "${xs[@]}" | sort -g > "$work/$label"
    echo "  $label: $(tr '\n' ' ' < "$work/$label")" >&2
}
median() { awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}' "$1"; }
range() { echo "$(head -1 "$1")–$(tail -1 "$1")"; }

echo "== quiet host: $rounds rounds" >&2
series quiet
echo "== busy host: $procs idle processes of $threads threads and $fds descriptors each" >&2
"$loader" "$procs" "$threads" "$fds" > "$work/loader.out" &
loader_pid=$!
for _ in $(seq 1200); do grep -q ready "$work/loader.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/loader.out" || { echo "bench-reuse: the idle processes did not start within 120 s" >&2; exit 1; }
cat "$work/loader.out" >&2
echo "  $(ls /proc | grep -c '^[0-9]') processes on the host now" >&2
series busy
stop_pid "$loader_pid"; loader_pid=

q=$(median "$work/quiet"); b=$(median "$work/busy")
printf 'release to reuse, 64 MiB, %d rounds, median [range] s\n' "$rounds"
printf '  quiet host  %.4f [%s]\n' "$q" "$(range "$work/quiet")"
printf '  busy host   %.4f [%s]  (%d processes x %d threads x %d descriptors)\n' "$b" "$(range "$work/busy")" "$procs" "$threads" "$fds"
printf '  busy / quiet  %.2fx  (target <= 1.2x)\n' "$(echo "$b / $q" | bc -l)"
