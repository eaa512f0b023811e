#!/usr/bin/env bash
# scripts/numa.sh NODES: run the multi-node NUMA scenarios (Tests/numa/README.md)
# in a QEMU TCG guest with NODES fake NUMA nodes (2 or 4), and print each
# scenario's PASS/FAIL with the guest's per-node huge-page counters.
#
# The guest runs Debian's kernel and busybox-static, fetched with
# `apt-get download` into a cache directory at test time (never committed), and
# the release prezerod, prezero and prezero-hook with the shared libraries ldd
# finds for them. Exit status 0 only when every scenario passed.
#
# Environment:
#   PREZERO_NUMA_BIN    directory of the release binaries (default .build-numa/release)
#   PREZERO_NUMA_CACHE  where the kernel and busybox are kept (default /var/cache/prezero-numa)
#   PREZERO_NUMA_TIMEOUT  seconds the guest may run (default 180; a run takes 60-110 s)
#   PREZERO_NUMA_LOG    if set, the guest's whole console is copied to this file
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
nodes=${1:-}
bin=${PREZERO_NUMA_BIN:-$repo/.build-numa/release}
cache=${PREZERO_NUMA_CACHE:-/var/cache/prezero-numa}
guest_timeout=${PREZERO_NUMA_TIMEOUT:-180}

# Guest layouts: memory per node (MiB), CPUs per node, 2 MiB huge pages reserved per node.
# Node 0 is the largest: it also holds the unpacked initramfs (~250 MiB).
# The 4-node layout has unequal nodes, so targets and min_free differ per node.
case "$nodes" in
    2) mem=(1024 1024); cpus=(0-1 2-3); pages=(48 48) ;;
    4) mem=(1024 512 768 384); cpus=(0 1 2 3); pages=(48 24 36 16) ;;
    *) echo "usage: scripts/numa.sh 2|4   (the number of NUMA nodes of the test guest)" >&2; exit 64 ;;
esac
scenarios=(fill claim-node1 release-takeback)
[ "$nodes" -ge 4 ] && scenarios+=(claim-nodeset-2-3)
scenarios+=(claim-miss make-room min-free-yield hook-two-cells no-hugepages-node)

die() { echo "numa: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get download into $cache)"
for b in prezerod prezero prezero-hook; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing; build it first: swift build -c release --static-swift-stdlib --scratch-path .build-numa (or make numa)"
done
for tool in qemu-system-x86_64 gcc ldd strip apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is missing; install the packages with scripts/deps.sh"
done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "static libc is missing (gcc -static); install libc6-dev (scripts/deps.sh)"

# ---- kernel and busybox from apt, cached and checked ---------------------------

. "$repo/scripts/guest-kernel.sh"
guest_kernel "$cache"

# ---- the initramfs -----------------------------------------------------------

work=$(mktemp -d /tmp/prezero-numa.XXXXXX)
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root=$work/root
mkdir -p "$root"/{bin,numa,usr/local/bin,lib64,lib/x86_64-linux-gnu}
cp "$busybox" "$root/bin/busybox"
install -m 0755 "$repo/Tests/numa/init" "$root/init"
install -m 0755 "$repo/Tests/numa/scenarios.sh" "$root/numa/scenarios.sh"
gcc -static -O2 -Wall -Wextra -Werror -o "$root/numa/numa-probe" "$repo/Tests/numa/numa-probe.c"
for b in prezerod prezero prezero-hook; do
    strip -o "$root/usr/local/bin/$b" "$bin/$b"    # debug info is most of their size
done
# A fully static binary has none ("not a dynamic executable", exit 1).
libs=$(for b in prezerod prezero prezero-hook; do ldd "$bin/$b" 2>/dev/null || true; done \
       | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
for l in $libs; do
    mkdir -p "$root$(dirname "$l")"
    cp -L "$l" "$root$l"
done
(cd "$root" && find . | "$busybox" cpio -o -H newc --quiet) > "$work/initrd.cpio"

# ---- boot ----------------------------------------------------------------------

total=0
qemu_numa=()
for i in "${!mem[@]}"; do
    total=$((total + mem[i]))
    qemu_numa+=(-object "memory-backend-ram,id=m$i,size=${mem[i]}M"
                -numa "node,nodeid=$i,cpus=${cpus[i]},memdev=m$i")
done
ncpus=$(printf '%s\n' "${cpus[@]}" | tr '-' '\n' | sort -n | tail -n 1)
hp=$(IFS=,; echo "${pages[*]}")
echo "numa: $nodes nodes (${mem[*]} MiB, CPUs ${cpus[*]}, ${pages[*]} huge pages), kernel $kpkg, initramfs $(($(stat -c %s "$work/initrd.cpio") >> 20)) MiB"
# KVM where this host's KVM can run a booting guest, else TCG: the one decision, printed.
accel=$("$bin/prezero" accel --boots-kernel | sed -n 's/^accel: //p')
echo "accel: $accel ($("$bin/prezero" accel --boots-kernel | sed -n 2p | sed 's/^ *//'))"
cpu=max; [ "$accel" = kvm ] && cpu=host
started=$(date +%s)
timeout --kill-after=5 "$guest_timeout" qemu-system-x86_64 \
    -accel "$accel" -cpu "$cpu" -m "${total}M" -smp $((ncpus + 1)) "${qemu_numa[@]}" \
    -kernel "$kernel" -initrd "$work/initrd.cpio" \
    -append "console=ttyS0 panic=-1 quiet mitigations=off prezero.hugepages=$hp" \
    -nodefaults -display none -serial "file:$work/console.log" -monitor none -no-reboot \
    </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
status=0
wait "$qemu_pid" || status=$?
qemu_pid=
secs=$(( $(date +%s) - started ))

# ---- verdict ---------------------------------------------------------------------

tr -d '\r' < "$work/console.log" > "$work/guest.log"
[ -z "${PREZERO_NUMA_LOG:-}" ] || cp "$work/guest.log" "$PREZERO_NUMA_LOG"
passed=0
failed=0
grep '^NUMA \(BOOT\|COUNTERS\|NOTE\|STATUS\)' "$work/guest.log" | sed 's/^NUMA /  /' || true
for s in "${scenarios[@]}"; do
    line=$(grep "^NUMA RESULT $s " "$work/guest.log" | tail -n 1 || true)
    verdict=$(echo "$line" | awk '{print $4}')
    detail=$(echo "$line" | cut -d' ' -f5-)
    if [ "$verdict" = PASS ]; then
        passed=$((passed + 1))
        echo "PASS $s: $detail"
    else
        failed=$((failed + 1))
        echo "FAIL $s: ${detail:-no result from the guest}"
    fi
done
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "numa: the guest did not power off within $guest_timeout s (PREZERO_NUMA_TIMEOUT)"
fi
if ! grep -q '^NUMA DONE' "$work/guest.log" || [ "$failed" -gt 0 ]; then
    [ "$failed" -gt 0 ] || failed=1
    echo "numa: guest console (last 60 lines; QEMU exit $status):"
    grep -v '^NUMA \(RESULT\|COUNTERS\)' "$work/guest.log" | tail -n 60 | sed 's/^/  | /'
    cat "$work/qemu.out"
fi
echo "numa ($nodes nodes, ${secs} s):"
echo "numa: $passed passed, $failed failed"
[ "$failed" = 0 ]
