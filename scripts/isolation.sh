#!/usr/bin/env bash
# make isolation: no byte of tenant A reaches tenant B, seen from inside B.
#
#  1. A private prezerod keeps a pool of exactly one file of ISOLATION_SIZE_M MiB
#     (default 256) on a private hugetlbfs mount.
#  2. Tenant A boots Debian's kernel (KVM where it works, else TCG) through
#     `prezero launch` on that file; its /init (scripts/isolation-init.c) writes a
#     run-unique 64-byte marker into every 64-byte slot of all the memory it gets.
#  3. A is destroyed; prezerod takes its file back (its pages punched back to the
#     kernel, the inode let go) and fills a new one. The host has room for one file
#     and no second, so the new file is made of A's very pages, zeroed by the kernel's
#     own free-and-allocate.
#  4. Tenant B boots through `prezero launch` on that new file (its inode is checked,
#     in A's and B's QEMU: never A's) and scans its whole physical RAM through
#     /proc/kcore for the marker. Expected: 0.
#  5. The control: the same two tenants on a hugetlbfs file handed to QEMU directly,
#     reused as it is. B must see the marker there, or the detector is blind and the
#     run fails.
# Prints: isolation: tenant B saw 0 of A's markers in N MiB; control saw M
# Exit status: 0 isolation held and the control saw the leak; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PREZERO_BIN:-$PWD/.build/release}
size_m=${ISOLATION_SIZE_M:-256}
timeout_s=${ISOLATION_TIMEOUT_S:-600}
# In a private environment (`prezero lab run`), undone on exit. Room for one pool file and
# not a page more, so that B's file can only be made of A's pages (a spare page would be
# filled into a small second file while A runs, and B's file would be cut from two); the
# control runs on the same pages once the pool is drained.
[ -n "${PREZERO_LAB_DIR:-}" ] || exec "$bin/prezero" lab run --reserve "2M:$(( size_m / 2 ))" --target "${size_m}M" -- "$0" "$@"
work=$PREZERO_LAB_DIR; mnt=$PREZERO_LAB_MOUNT; sock=$PREZERO_LAB_SOCKET; log=$PREZERO_LAB_LOG
lpid=
alive() { [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
# A tenant still running is stopped (its launcher releases its file) before the lab ends.
trap '[ -n "$lpid" ] && { kill "$lpid"; wait "$lpid"; }' EXIT
accel=$("$bin/prezero" accel --boots-kernel | sed -n 's/^accel: //p')
echo "accel: $accel"
cpu=max; [ "$accel" = kvm ] && cpu=host
guest=$work/guest
scripts/boot-guest.sh "$guest" scripts/isolation-init.c
marker=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
clean_inode() { stat -c %i "$mnt"/.prezero/clean/* 2>/dev/null || true; }

# tenant NAME TASK MEMPATH: boot a guest whose /init does TASK (prezero.write=… or
# prezero.scan=…) on MEMPATH ({prezero:m0} goes through `prezero launch`), wait for
# its report, and destroy it. Sets `report` (the guest's line) and `inode` (of the
# file its QEMU maps).
tenant() {
    local name=$1 task=$2 path=$3 serial=$work/$1.serial qpid= fd waited=0
    local qemu=(qemu-system-x86_64 -machine q35,memory-backend=m0 -accel "$accel" -cpu "$cpu" -smp 1 -m "${size_m}M"
        -object "memory-backend-file,id=m0,mem-path=$path,size=${size_m}M,share=on"
        -kernel "$guest/vmlinuz" -initrd "$guest/initrd"
        -append "console=ttyS0 panic=-1 quiet init_on_alloc=0 init_on_free=0 $task"
        -display none -nodefaults -serial "file:$serial" -no-reboot)
    : > "$serial"
    if [ "$path" = "{prezero:m0}" ]; then
        "$bin/prezero" launch --memory "m0=${size_m}M" --socket "$sock" --json-claims "$work/$name.claims" -- "${qemu[@]}" \
            2> "$work/$name.launch" &
    else
        "${qemu[@]}" 2> "$work/$name.launch" &
    fi
    lpid=$!
    until grep -q '^PREZERO-' "$serial"; do
        if ! alive "$lpid" || [ "$waited" -ge $(( timeout_s * 10 )) ]; then
            echo "isolation: tenant $name gave no report ($(alive "$lpid" && echo "in ${timeout_s} s" || echo "its QEMU exited")); its console and launcher:" >&2
            tail -n 15 "$serial" "$work/$name.launch" >&2
            grep -E '^HugePages_(Total|Free|Rsvd|Surp)' /proc/meminfo | tr '\n' ' ' >&2; echo >&2
            ls -l "$mnt" "$mnt"/.prezero/* >&2; exit 1
        fi
        sleep 0.1; waited=$(( waited + 1 ))
    done
    report=$(grep -m 1 '^PREZERO-' "$serial" | tr -d '\r')
    if [ "$path" = "{prezero:m0}" ]; then
        grep -q '"outcome" : "hit"' "$work/$name.claims" || { echo "isolation: tenant $name got no pre-zeroed file:" >&2; cat "$work/$name.claims" >&2; exit 1; }
        fd=$(sed -n 's|.*"path" : "/proc/self/fd/\([0-9]*\)".*|\1|p' "$work/$name.claims")
        qpid=$(pgrep -P "$lpid" -x qemu-system-x86)
        inode=$(stat -L -c %i "/proc/$qpid/fd/$fd")
        lease=$(sed -n 's/.*"lease" : "\(.*\)".*/\1/p' "$work/$name.claims")
        # prezerod's log names the pool file each lease got.
        file=$(grep "(lease $lease," "$log" | sed -n 's/.*claim hit: \([^ ]*\) .*/\1/p')
        echo "isolation: tenant $name: $report (lease $lease, pool file $file, inode $inode)"
    else
        inode=$(stat -c %i "$path")
        echo "isolation: control $name: $report (inode $inode, reused as it is)"
    fi
    kill -TERM "$lpid"; wait "$lpid" || true; lpid=
}

# matches REPORT / mib REPORT: from "PREZERO-SCANNED <MiB> MiB <matches> MATCHES".
scanned() { [[ $1 =~ ^PREZERO-SCANNED\ ([0-9]+)\ MiB\ ([0-9]+)\ MATCHES ]] || { echo "isolation: B did not scan: $1" >&2; exit 1; }; mib=${BASH_REMATCH[1]}; matches=${BASH_REMATCH[2]}; }
wrote() { [[ $1 =~ ^PREZERO-WROTE\ ([0-9]+)\ MiB ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || { echo "isolation: A wrote nothing: $1" >&2; exit 1; }; }

pool_inode=$(clean_inode)
[ -n "$pool_inode" ] && [ "$(echo "$pool_inode" | wc -w)" = 1 ] || { echo "isolation: the pool should hold one clean file, has: $(ls "$mnt"/.prezero/*/)" >&2; exit 1; }

tenant A "prezero.write=$marker" "{prezero:m0}"; wrote "$report"
a_inode=$inode
# prezerod takes A's file back and fills a new one on the same pages.
new_clean() { local i; i=$(clean_inode); [ -n "$i" ] && [ "$i" != "$a_inode" ]; }
for _ in $(seq $(( timeout_s * 10 ))); do new_clean && break; sleep 0.1; done
new_clean || { echo "isolation: no new file in clean/ after A's was taken back: $(ls -i "$mnt"/.prezero/*/)" >&2; exit 1; }
tenant B "prezero.scan=$marker" "{prezero:m0}"; scanned "$report"
[ "$inode" != "$a_inode" ] || { echo "isolation: FAILED: B got A's inode $a_inode: an inode served two tenants" >&2; exit 1; }
b_mib=$mib b_matches=$matches

"$bin/prezero" drain --socket "$sock" > /dev/null
control=$mnt/control.ram
tenant A-control "prezero.write=$marker" "$control"; wrote "$report"
tenant B-control "prezero.scan=$marker" "$control"; scanned "$report"
rm -f "$control"

echo "isolation: tenant B saw $b_matches of A's markers in $b_mib MiB; control saw $matches"
[ "$b_matches" = 0 ] || { echo "isolation: FAILED: a former tenant's memory reached a new one" >&2; exit 1; }
[ "$matches" -gt 0 ] || { echo "isolation: FAILED: the control saw no marker, so the detector cannot see a leak" >&2; exit 1; }
