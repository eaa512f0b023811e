#!/usr/bin/env bash
# make hostile: a former tenant that keeps a hidden reference to its pool file must
# read none of the next tenant's memory (README: Threat model).
#
# For each technique of Tests/hostile/hostile.c (scm, uring-buf, uring-file,
# vmsplice, forkhop, linkrace), once through the socket and once through
# `prezero launch`, on a fresh private hugetlbfs mount and a fresh private prezerod:
#  1. The pool holds two 64 MiB files, A then B, and no page more: the mount is
#     capped at 128 MiB and exactly 64 free pages are reserved (the next tenant's
#     file, and what the hostile tenant keeps). A pool that zeroes released files in
#     place hands A back to the next tenant (it is the oldest clean file); one that
#     recycles through the kernel hands out B, or a file it filled afresh.
#  2. The hostile tenant claims A as the tenant uid (`prezero claim`, or
#     `prezero launch --owner`), checks it is all zero, writes its own pattern over
#     it, hides a reference no /proc scan sees, and lets go of everything else. Its
#     keeper must read its own pattern back through that reference alone, or the
#     technique did not work and the run FAILS.
#  3. A is released (`prezero release`; launch releases when its command exits; the
#     link race ends its lease by removing the destination name, as libvirt does).
#     Then the script waits until prezerod has dealt with it: A left leased/ and
#     nothing is being filled or scrubbed (or HOSTILE_SETTLE_S passed with A still
#     leased: a pool must keep a file that something still has open).
#  4. The next tenant (same uid) claims a file (must be a hit), finds it all zero,
#     and writes a run-unique marker over all of it. The keeper scans everything its
#     reference reaches for that marker: 0 blocks and 0 bytes, or the run FAILS.
#  5. The keeper quits, prezerod stops, the mount goes, and every page must be free again.
# Prints one line per technique and path, then `hostile: N passed, N failed`.
# Exit status 0 when all passed.
#
# Environment: PREZERO_BIN (default .build/release), HOSTILE_TECHNIQUES, HOSTILE_VIA
# ("socket launch"), HOSTILE_USER (the tenant uid's user, default nobody),
# HOSTILE_SETTLE_S (10), HOSTILE_RACE_TRIES (3: a lost link race is run again),
# HOSTILE_LOGS (a directory that keeps each round's prezerod, keeper and tenant logs).
# Needs root, gcc, liburing-dev (scripts/deps.sh) and 64 free 2 MiB pages.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(realpath -m "${PREZERO_BIN:-.build/release}")
techniques=${HOSTILE_TECHNIQUES:-scm uring-buf uring-file vmsplice forkhop linkrace}
vias=${HOSTILE_VIA:-socket launch}
user=${HOSTILE_USER:-nobody}
settle_s=${HOSTILE_SETTLE_S:-10}
race_tries=${HOSTILE_RACE_TRIES:-3}
file_m=64
file_pages=$(( file_m / 2 ))
pages=$(( 2 * file_pages ))
sysfs=/sys/kernel/mm/hugepages/hugepages-2048kB

say() { echo "hostile: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it mounts hugetlbfs, reserves huge pages and starts prezerod)"
for b in prezerod prezero; do [ -x "$bin/$b" ] || die "$bin/$b is missing: run make release (or set PREZERO_BIN)"; done
for t in gcc setpriv mount timeout; do command -v "$t" > /dev/null || die "$t is missing: run scripts/deps.sh"; done
[ -d "$sysfs" ] || die "this kernel has no 2 MiB huge pages ($sysfs)"
uid=$(id -u "$user" 2>/dev/null) || die "no user $user (HOSTILE_USER)"
gid=$(id -g "$user")
[ "$uid" != 0 ] || die "HOSTILE_USER must not be root"

work=; orig_nr=; keepers=(); daemons=(); mounts=()
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
# A process group with a member that is not a zombie (PID 1 reaps the helper's zombie late).
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }
# stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 15).
stop_pid() {
    local i
    kill "$1" 2>/dev/null || return 0
    for i in $(seq $(( ${2:-15} * 10 ))); do alive "$1" || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
# stop_group PGID: a keeper and its helper, SIGKILL, waited for (10 s).
stop_group() {
    local i
    kill -9 -- "-$1" 2>/dev/null || return 0
    for i in $(seq 100); do group_alive "$1" || return 0; sleep 0.1; done
    say "process group $1 still exists after SIGKILL"
}
free_pages() { echo $(( $(cat "$sysfs/free_hugepages") - $(cat "$sysfs/resv_hugepages") )); }

cleanup() {
    local status=$? p m
    set +e
    for p in "${keepers[@]}"; do stop_group "$p"; done
    for p in "${daemons[@]}"; do stop_pid "$p"; done
    for m in "${mounts[@]}"; do mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }; done
    [ -n "$orig_nr" ] && echo "$orig_nr" > "$sysfs/nr_hugepages"
    [ -n "$work" ] && rm -rf "$work"
    return "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

work=$(mktemp -d /tmp/prezero-hostile.XXXXXX)
chmod 755 "$work"
mkdir "$work/keepers" && chown "$uid:$gid" "$work/keepers" && chmod 700 "$work/keepers"
hostile=$work/hostile
gcc -O2 -Wall -Wextra -Werror -o "$hostile" Tests/hostile/hostile.c -luring 2> "$work/gcc.log" || {
    cat "$work/gcc.log" >&2
    grep -q 'liburing.h' "$work/gcc.log" && die "liburing-dev is missing: run scripts/deps.sh"
    die "Tests/hostile/hostile.c does not build"
}

# Exactly the pages the suite needs, free; given back at exit.
orig_nr=$(cat "$sysfs/nr_hugepages")
have=$(free_pages)
if [ "$have" -lt "$pages" ]; then
    echo 1 > /proc/sys/vm/compact_memory 2>/dev/null || true
    echo $(( orig_nr + pages - have )) > "$sysfs/nr_hugepages" 2>/dev/null || true
fi
[ "$(free_pages)" -ge "$pages" ] || die "needs $pages free 2 MiB pages, the kernel gave $(free_pages) (free memory, or reserve them at boot)"
baseline=$(free_pages)
say "$pages x 2 MiB pages for the suite ($baseline free); tenant uid $uid ($user), gid $gid; prezero from $bin"

# The claim JSON's outcome (hit, miss, ...).
outcome() { sed -n 's/.*"outcome" *: *"\([a-z]*\)".*/\1/p' "$1" | head -n 1; }
as_tenant() { timeout 30 setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"; }
# files STATE: names in the pool's STATE directory (none when it does not exist).
files() { ls -A "$mnt/.prezero/$1" 2>/dev/null || true; }
inode_in() { local s; for s in "$@"; do [ -d "$mnt/.prezero/$s" ] && find "$mnt/.prezero/$s" -maxdepth 1 -inum "$ino" | grep -q . && return 0; done; return 1; }
busy() { [ -n "$(files filling)$(files dirty)$(files scrubbing)" ]; }
ask() { timeout 90 "$hostile" ask "$ksock" "$@"; }
# held: prezerod's count of pages held outside the pool (pinned after a take-back); empty
# from a prezerod that has no such count.
held() { "$bin/prezero" status --json --socket "$sock" 2>/dev/null | sed -n 's/.*"held_outside_bytes" *: *\([0-9]*\).*/\1/p' | head -n 1; }

# One round: sets `line` (the verdict line) and `race` (linkrace: won, lost, timeout).
round() {
    local tech=$1 via=$2 r i
    r=$(mktemp -d "$work/$tech-$via.XXXX")
    chmod 755 "$r"   # the tenant uid reaches the control socket in it
    mnt=$r/mnt; sock=$r/prezerod.sock; ksock=$work/keepers/$(basename "$r").sock
    local log=$r/prezerod.log tag mtag out dpid pgid own own_total nz notes=() release_note=
    tag=$(od -An -tx4 -N4 /dev/urandom | tr -d ' ')
    mtag=marker-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')
    race=

    fail() { line="hostile $tech $via: FAILED ($*)"; }

    mkdir "$mnt"
    mount -t hugetlbfs -o pagesize=2M,size=$(( pages * 2 ))M none "$mnt"
    mounts+=("$mnt")
    mkdir "$mnt/tenant" && chown "$uid:$gid" "$mnt/tenant" && chmod 700 "$mnt/tenant"
    cat > "$r/prezerod.yaml" <<YAML
socket: $sock
state_dir: $r/state
min_free: 0
refill_delay_ms: 0
allowed_uids: [$uid]
socket_group: "+$gid"
# A's file (held, or not yet taken back) and the next tenant's may be every page of this rig.
uid_quota: 100%
mounts:
  - path: $mnt
    target: $(( 2 * file_m ))M
    file_size: ${file_m}M
YAML
    "$bin/prezerod" --config "$r/prezerod.yaml" ${HOSTILE_PREZEROD_ARGS:-} 2> "$log" &
    dpid=$!
    daemons+=("$dpid")
    for i in $(seq 100); do [ -S "$sock" ] && break; alive "$dpid" || break; sleep 0.1; done
    [ -S "$sock" ] || { fail "prezerod did not start: $(tail -n 3 "$log" | tr '\n' ' ')"; finish_round; return; }
    for i in $(seq 600); do [ "$(files clean | wc -l)" = 2 ] && ! busy && break; sleep 0.1; done
    [ "$(files clean | wc -l)" = 2 ] || { fail "the pool did not fill two files in 60 s: clean/ has '$(files clean | tr '\n' ' ')'"; finish_round; return; }

    # The hostile tenant.
    local args=(--sock "$ksock" --uid "$uid" --gid "$gid" --tag "$tag" --link-dir "$mnt/tenant" --log "$r/keeper.log" --lifetime 600)
    if [ "$via" = socket ]; then
        local dest=$mnt/tenant/hostile
        if ! as_tenant "$bin/prezero" claim --size "${file_m}M" --dest "$dest" --owner "$uid:$gid" --mode 600 \
                --json --socket "$sock" > "$r/claim.json" 2> "$r/claim.err" || [ "$(outcome "$r/claim.json")" != hit ]; then
            fail "the hostile tenant's claim did not hit: $(cat "$r/claim.err" "$r/claim.json" | tr '\n' ' ')"; finish_round; return
        fi
        out=$(timeout 120 "$hostile" "$tech" "$dest" "${args[@]}" 2> "$r/hostile.err") || true
    else
        out=$(timeout 120 "$bin/prezero" launch --memory "m0=${file_m}M" --owner "$uid:$gid" --socket "$sock" \
                --json-claims "$r/claims.json" -- "$hostile" "$tech" '{prezero:m0}' "${args[@]}" 2> "$r/hostile.err") || true
        if [ "$(outcome "$r/claims.json" 2>/dev/null)" != hit ]; then
            fail "the hostile tenant's launch claim did not hit: $(cat "$r/claims.json" "$r/hostile.err" 2>/dev/null | tr '\n' ' ')"; finish_round; return
        fi
    fi
    printf "%s\n" "$out" > "$r/ready.log"
    [[ $out =~ pgid=([0-9]+) ]] && { pgid=${BASH_REMATCH[1]}; keepers+=("$pgid"); }
    if ! [[ $out =~ ^hostile-ready\ .*\ ino=([0-9]+)\ .*nonzero=([0-9]+)\ own=([0-9]+)/([0-9]+) ]]; then
        fail "set-up failed: $(tr '\n' ' ' < "$r/hostile.err")$out"; finish_round; return
    fi
    ino=${BASH_REMATCH[1]} nz=${BASH_REMATCH[2]} own=${BASH_REMATCH[3]} own_total=${BASH_REMATCH[4]}
    [[ $out =~ race=([a-z]+) ]] && race=${BASH_REMATCH[1]}
    [[ $out =~ ring=made-by-root ]] && notes+=("ring made as root before the uid drop: no CAP_SYS_RESOURCE to raise RLIMIT_MEMLOCK")
    [[ $out =~ (pieces=[0-9]+) ]] && notes+=("${BASH_REMATCH[1]} spliced")
    [[ $out =~ hops=([0-9]+)\ on_target=([0-9]+) ]] && notes+=("${BASH_REMATCH[2]} of ${BASH_REMATCH[1]} hops got the pid set through ns_last_pid")
    if [ "$nz" != 0 ]; then fail "the hostile tenant's fresh file had $nz non-zero bytes"; finish_round; return; fi
    if [ "$tech" = linkrace ] && [ "$race" != won ]; then
        fail "the link race was $race: no name outside the pool survived prezerod's chown"; finish_round; return
    fi
    if [ "$own_total" = 0 ] || [ "$own" != "$own_total" ]; then
        fail "the technique did not work: its keeper read $own/$own_total blocks of its own pattern through the hidden reference"; finish_round; return
    fi

    # Release.
    if [ "$via" = socket ]; then
        if [ "$tech" = linkrace ]; then
            release_note="its lease ended when the tenant removed its name"
        elif ! as_tenant "$bin/prezero" release --dest "$dest" --socket "$sock" > "$r/release.out" 2>&1; then
            fail "release: $(tr '\n' ' ' < "$r/release.out")"; finish_round; return
        fi
    fi
    # Settled: A left leased/ (and dirty/, scrubbing/), nothing is being filled or scrubbed, and clean/ has a file.
    local waited=0 held=
    until ! inode_in leased dirty scrubbing && ! busy && [ -n "$(files clean)" ]; do
        if [ "$waited" -ge $(( settle_s * 10 )) ]; then
            if inode_in leased && ! inode_in dirty scrubbing && ! busy && [ -n "$(files clean)" ]; then held=1; break; fi
            fail "prezerod did not settle in ${settle_s} s: $(cd "$mnt/.prezero" && ls -R | tr '\n' ' ')"; finish_round; return
        fi
        sleep 0.1; waited=$(( waited + 1 ))
    done
    [ -n "$held" ] && notes+=("its file stayed leased")
    [ -n "$release_note" ] && notes+=("$release_note")
    local after
    after=$(ask own) || { fail "the keeper did not answer own after the release: $after"; finish_round; return; }
    [[ $after =~ ^own\ ([0-9]+/[0-9]+) ]] && notes+=("own after release ${BASH_REMATCH[1]}")

    # The next tenant.
    if ! as_tenant "$bin/prezero" claim --size "${file_m}M" --dest "$mnt/tenant/next" --owner "$uid:$gid" --mode 600 \
            --json --socket "$sock" > "$r/next-claim.json" 2> "$r/next-claim.err" || [ "$(outcome "$r/next-claim.json")" != hit ]; then
        fail "the next tenant's claim did not hit: $(cat "$r/next-claim.err" "$r/next-claim.json" | tr '\n' ' ')"; finish_round; return
    fi
    local next nnz nino
    next=$(timeout 60 "$hostile" next "$mnt/tenant/next" --marker "$mtag" --uid "$uid" --gid "$gid" 2>&1) || { fail "next tenant: $next"; finish_round; return; }
    [[ $next =~ ino=([0-9]+)\ .*nonzero=([0-9]+)\ marker=([0-9]+)/([0-9]+) ]] || { fail "next tenant: $next"; finish_round; return; }
    nino=${BASH_REMATCH[1]} nnz=${BASH_REMATCH[2]}
    [ "${BASH_REMATCH[3]}" = "${BASH_REMATCH[4]}" ] || { fail "next tenant could not write its marker: $next"; finish_round; return; }
    [ "$nino" = "$ino" ] && notes+=("the next tenant got the hostile tenant's inode")

    local scan blocks total bytes
    scan=$(ask scan "$mtag") || { fail "the keeper did not answer scan: $scan"; finish_round; return; }
    [[ $scan =~ ^scan\ ([0-9]+)/([0-9]+)\ bytes=([0-9]+) ]] || { fail "keeper: $scan"; finish_round; return; }
    blocks=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]} bytes=${BASH_REMATCH[3]}
    # Pages the keeper still pins are held outside the pool, never lost: counted while it
    # lives, and back in the kernel's free pool (and out of the count) once it is gone.
    local held_during held_after p i
    held_during=$(held)
    ask quit > /dev/null || true
    for p in "${keepers[@]}"; do for i in $(seq 100); do group_alive "$p" || break; sleep 0.1; done; done
    if [ -n "$held_during" ]; then
        for i in $(seq 100); do held_after=$(held); [ "$held_after" = 0 ] && break; sleep 0.1; done
        case $tech in
            uring-buf|vmsplice) [ "$held_during" -gt 0 ] || { fail "its pages were pinned, yet prezerod counted none held outside the pool"; finish_round; return; } ;;
        esac
        [ "$held_after" = 0 ] || { fail "$held_after bytes still counted held outside the pool 10 s after the keeper quit"; finish_round; return; }
        [ "$held_during" -gt 0 ] && notes+=("held outside the pool $(( held_during >> 20 )) MiB while the keeper lived, 0 after")
    fi

    local verdict=ok
    if [ "$blocks" != 0 ] || [ "$bytes" != 0 ]; then verdict="LEAK"; fi
    [ "$nnz" != 0 ] && verdict="LEAK"
    line="hostile $tech $via: own $own/$own_total, next tenant saw $nnz non-zero bytes, holder read $blocks of $total marker blocks ($bytes bytes)"
    [ ${#notes[@]} -gt 0 ] && line+=" [$(IFS=';'; echo "${notes[*]}" | sed 's/;/; /g')]"
    line+=": $verdict"
    finish_round
}

# Ends a round whatever happened in it: keeper, launcher, prezerod, mount; then every page must be free again.
finish_round() {
    local p i
    for p in "${keepers[@]}"; do
        for i in $(seq 50); do group_alive "$p" || break; sleep 0.1; done
        stop_group "$p"
    done
    keepers=()
    for p in "${daemons[@]}"; do stop_pid "$p"; done
    daemons=()
    for p in "${mounts[@]}"; do mountpoint -q "$p" && umount "$p"; done
    mounts=()
    for i in $(seq 100); do [ "$(free_pages)" -ge "$baseline" ] && break; sleep 0.1; done
    if [ "$(free_pages)" -lt "$baseline" ]; then
        line="${line%: *}: FAILED ($(( baseline - $(free_pages) )) huge pages not free again 10 s after the round)"
    fi
    if [ -n "${HOSTILE_LOGS:-}" ] && [ -n "$r" ]; then
        mkdir -p "$HOSTILE_LOGS/$(basename "$r")" && cp "$r"/*.log "$r"/*.err "$r"/*.json "$HOSTILE_LOGS/$(basename "$r")/" 2>/dev/null || true
    fi
    if [[ $line != *": ok" ]] && [ -f "$log" ]; then
        [ -s "$r/keeper.log" ] && sed 's/^/  keeper | /' "$r/keeper.log" | tail -n 5 >&2
        tail -n 8 "$log" | sed 's/^/  prezerod | /' >&2
    fi
}

passed=0; failed=0
for tech in $techniques; do
    for via in $vias; do
        for try in $(seq "$race_tries"); do
            line=; log=; r=
            round "$tech" "$via"
            # A lost link race is the daemon's timing, not a verdict: run it again.
            [ "$tech" = linkrace ] && [ -n "$race" ] && [ "$race" != won ] && [ "$try" -lt "$race_tries" ] || break
            say "$tech $via: the link race was $race (try $try of $race_tries); again"
        done
        echo "$line"
        if [[ $line == *": ok" ]]; then passed=$(( passed + 1 )); else failed=$(( failed + 1 )); fi
    done
done
echo "hostile: $passed passed, $failed failed"
[ "$failed" = 0 ]
