#!/usr/bin/env bash
# The Swift tests as `make test` runs them: as root, on real huge pages, with every host
# test run. In `prezero lab run`: reserves huge pages (1 GiB first), gives QEMU's user
# /dev/kvm where the host lacks udev's mode, runs `swift test`, puts everything back, and fails if any test was
# skipped: a host suite skips itself when it lacks root, libvirtd or QEMU, which must
# never pass unseen here.
#   scripts/swift-tests.sh [swift test arguments]     (SOAK_CYCLES, default 200)
#   scripts/swift-tests.sh --check-log LOG            only the skip check, on a saved log
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}

# Lines like `➜ Suite "x" skipped: "why"` from Swift Testing; XCTest has none here.
no_skips() {
    local skipped
    skipped=$(grep -E '^➜ (Suite|Test) .* skipped' "$1" || true)
    [ -z "$skipped" ] && return 0
    echo "$skipped" >&2
    echo "tests: $(echo "$skipped" | wc -l) suite(s) or test(s) above were skipped; make test runs every test: run it as root after make deps" >&2
    return 1
}

if [ "${1:-}" = "--check-log" ]; then no_skips "${2:?usage: $0 --check-log LOG}"; exit; fi

[ "$(id -u)" = 0 ] || { echo "tests: make test needs root (huge pages, hugetlbfs, libvirtd, /dev/kvm); as another user, swift test runs the pure tests alone" >&2; exit 1; }
prezero="$($SWIFT build --show-bin-path)/prezero"
"$prezero" lab hugepages idle
log=$(mktemp /tmp/prezero-tests.XXXXXX)
status=0
# The tests' own environment (PrezeroLab) makes their mounts, daemons and libvirt setup; the
# lab around them reserves the huge pages (1 GiB first) and /dev/kvm's mode, and puts both back.
"$prezero" lab run --reserve 1G:2 --reserve 2M:512 --kvm -- env SOAK_CYCLES="${SOAK_CYCLES:-200}" $SWIFT test --skip-build "$@" 2>&1 | tee "$log" || status=$?
no_skips "$log" || status=1
rm -f "$log"
exit $status
