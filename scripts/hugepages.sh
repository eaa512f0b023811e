#!/usr/bin/env bash
# Reserve huge pages for tests and benchmarks, and give them back afterwards.
#   scripts/hugepages.sh reserve [PAGES_1G] [PAGES_2M]   (defaults: 2 and 512)
#   scripts/hugepages.sh restore
#   scripts/hugepages.sh idle          fails, naming the hugetlbfs mounts, if any huge page is in use
#   scripts/hugepages.sh most-1g MAX   prints how many 1 GiB pages (up to MAX) the host can reserve now
# 1 GiB pages are reserved first: 2 MiB pages fragment memory so that 1 GiB pages may not be found.
# The counts found before are saved and `restore` writes them back.
set -euo pipefail
saved=/run/prezero-hugepages.saved
g=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
m=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

case "${1:-}" in
reserve)
    want_g=${2:-2}
    want_m=${3:-512}
    [ -f "$saved" ] || echo "$(cat "$g" 2>/dev/null || echo 0) $(cat "$m")" > "$saved"
    echo 1 > /proc/sys/vm/compact_memory || true
    if [ -e "$g" ] && [ "$(cat "$g")" -lt "$want_g" ]; then echo "$want_g" > "$g"; fi
    if [ "$(cat "$m")" -lt "$want_m" ]; then echo "$want_m" > "$m"; fi
    got_g=$(cat "$g" 2>/dev/null || echo 0)
    got_m=$(cat "$m")
    if [ "$got_m" -lt "$want_m" ] || [ "$got_g" -lt "$want_g" ]; then
        echo "hugepages: asked for $want_g x 1G and $want_m x 2M, got $got_g and $got_m; free memory or reserve at boot (hugepagesz=1G hugepages=$want_g)" >&2
        exit 1
    fi
    echo "hugepages: $got_g x 1 GiB, $got_m x 2 MiB reserved"
    ;;
restore)
    if [ -f "$saved" ]; then
        read -r old_g old_m < "$saved"
        echo "$old_m" > "$m"
        [ -e "$g" ] && echo "$old_g" > "$g"
        rm -f "$saved"
        echo "hugepages: restored to $old_g x 1 GiB, $old_m x 2 MiB"
    fi
    ;;
idle)
    # The host tests count the host's huge pages and must be alone in moving them: a page
    # someone else holds (a leftover mount, a running VM) would fail them for no fault of theirs.
    busy=""
    for d in /sys/kernel/mm/hugepages/hugepages-*; do
        used=$(( $(cat "$d/nr_hugepages") - $(cat "$d/free_hugepages") ))
        [ "$used" -gt 0 ] && busy="$busy $used x ${d##*hugepages-}"
    done
    if [ -n "$busy" ]; then
        mounts=$(awk '$3 == "hugetlbfs" {printf " %s", $2}' /proc/mounts)
        echo "hugepages: in use before the tests:$busy (hugetlbfs mounts:${mounts:- none}); the tests must be alone with huge pages: stop the VMs or processes that hold them and unmount what a killed run left" >&2
        exit 1
    fi
    ;;
most-1g)
    # Ask for MAX, read what the kernel found, and give them back at once.
    old=$(cat "$g" 2>/dev/null || echo 0)
    [ -e "$g" ] || { echo 0; exit 0; }
    echo 1 > /proc/sys/vm/compact_memory || true
    echo "${2:?usage: $0 most-1g MAX}" > "$g" 2>/dev/null || true
    cat "$g"
    echo "$old" > "$g"
    ;;
*)
    echo "usage: $0 reserve [PAGES_1G] [PAGES_2M] | restore | idle | most-1g MAX" >&2
    exit 2
    ;;
esac
