#!/usr/bin/env bash
# The main job, end to end, on this host: a private prezerod on a temporary
# hugetlbfs mount is filled, a VM-sized file is claimed from it, and the
# hand-over is timed against a fresh file of the same size. Everything it
# reserved, mounted or started is undone on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release
size=${DEMO_SIZE:-4G}
pages=$(( $(echo "$size" | sed 's/G$//') * 512 * 2 + 64 ))   # pool + a fresh file + headroom, in 2 MiB pages
work=$(mktemp -d /tmp/prezero-demo.XXXXXX)
mnt=$work/hugepages
pid=

cleanup() {
    set +e
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    mountpoint -q "$mnt" && umount "$mnt"
    rm -rf "$work"
    scripts/hugepages.sh restore
}
trap cleanup EXIT

scripts/hugepages.sh reserve 0 "$pages"
mkdir -p "$mnt"
mount -t hugetlbfs -o pagesize=2M none "$mnt"
mkdir -p "$mnt/vms"
cat > "$work/prezerod.yaml" <<YAML
socket: $work/prezerod.sock
state_dir: $work/state
min_free: 64M
mounts:
  - path: $mnt
    target: 0
    file_size: $size
allowed_dirs: ["$mnt/vms"]
YAML

echo "== prezerod on $mnt"
$bin/prezerod --config "$work/prezerod.yaml" 2> "$work/prezerod.log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/prezerod.sock" ] && break; sleep 0.05; done
cli() { $bin/prezero "$@" --socket "$work/prezerod.sock"; }

echo "== fill $size (the kernel zeroes the pages now, not at VM launch)"
cli fill --target "$size"
echo "== claim a $size file for a VM"
cli claim --size "$size" --dest "$mnt/vms/guest-ram" --json
echo "== hand-over: mmap + MADV_POPULATE_WRITE, fresh file vs pool file"
cli release --dest "$mnt/vms/guest-ram"
cli drain > /dev/null
kill "$pid"; wait "$pid" || true; pid=
$bin/prezero bench pool --size "$size" --runs 5
echo "== prezerod log (last lines)"
tail -n 5 "$work/prezerod.log"
