#!/bin/sh
# The NUMA scenarios, run by /init inside the test guest (busybox sh).
# Each scenario prints one line "NUMA RESULT <name> PASS|FAIL <why>"; the host
# (scripts/numa.sh) turns those into the verdict. "NUMA COUNTERS" lines show the
# kernel's per-node huge-page counters at each step. See README.md beside this file.
set -u

MNT=/mnt/huge
POOL=$MNT/.prezero
SOCK=/run/prezero/prezerod.sock
CONF=/etc/prezero/prezerod.yaml
LOG=/tmp/prezerod.log
VM=$MNT/vm
KB=$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)
PS=$((KB * 1024))
NODES=$(ls -d /sys/devices/system/node/node[0-9]* | sed 's/.*node//' | sort -n | tr '\n' ' ')
LAST=$(echo $NODES | awk '{print $NF}')
# Pool files are this many pages: small, so that every node holds several.
FILE_PAGES=4
FILE_BYTES=$((FILE_PAGES * PS))
PID=
failures=0
detail=""

# ---- reporting -------------------------------------------------------------

why=""
fail() { why="${why:+$why; }$*"; }
result() {   # result NAME DETAIL-IF-PASSED
    at="[guest uptime $(cut -d' ' -f1 /proc/uptime) s]"
    if [ -z "$why" ]; then
        echo "NUMA RESULT $1 PASS $2 $at"
    else
        echo "NUMA RESULT $1 FAIL $why $at"
        failures=$((failures + 1))
        echo "NUMA LOG last lines of prezerod's log:"
        tail -n 15 "$LOG" | sed 's/^/NUMA LOG   /'
    fi
    why=""
}

hp() { cat /sys/devices/system/node/node$1/hugepages/hugepages-${KB}kB/$2; }
used() { echo $(( $(hp $1 nr_hugepages) - $(hp $1 free_hugepages) )); }
counters() {
    line=""
    for n in $NODES; do line="$line  node$n nr_hugepages=$(hp $n nr_hugepages) free_hugepages=$(hp $n free_hugepages)"; done
    echo "NUMA COUNTERS $1:$line"
}
# "nr/free" of every node, to compare before and after a step.
snapshot() { for n in $NODES; do printf '%s/%s ' "$(hp $n nr_hugepages)" "$(hp $n free_hugepages)"; done; }
snap_of() { echo "$1" | awk -v i=$(($2 + 1)) '{print $i}'; }

# ---- the pool on disk: names carry the node (n<node>-<bytes>-<seq>) --------

files() {   # files STATE NODE: names of that node's files in a pool state
    ls "$POOL/$1" 2>/dev/null | sed 's/^.*~//' | grep "^n$2-" || true
}
# One pass over the pool (process starts are slow under TCG, so polling loops use
# this instead of one command per file): a line "NODE CLEAN-BYTES POOL-PAGES BUSY-FILES"
# per node, POOL-PAGES counting every state but quarantine, BUSY-FILES the ones in filling/.
pool_table() {
    ls -R $POOL 2>/dev/null | awk -v ps=$PS '
        /:$/ { state = $0; sub(/:$/, "", state); sub(/.*\//, "", state); next }
        { name = $0; sub(/^.*~/, "", name) }
        state != "quarantine" && name ~ /^n[0-9]+-[0-9]+-[0-9]+$/ {
            split(substr(name, 2), p, "-"); n = p[1]
            pages[n] += p[2] / ps
            if (state == "clean") clean[n] += p[2]
            if (state == "filling") busy[n]++
        }
        END { for (n in pages) print n, clean[n] + 0, pages[n], busy[n] + 0 }'
}
pool_col() { pool_table | awk -v n=$1 -v c=$2 '$1 == n {v = $c} END {print v + 0}'; }
pool_pages() { pool_col $1 3; }
clean_bytes() { pool_col $1 2; }
busy() { [ "$(pool_col $1 4)" != 0 ]; }

# Every page of a file is on one of the allowed nodes: map it, read numa_maps.
on_nodes() {   # on_nodes FILE "N..." -> "" when every page is on an allowed node, else why not
    m=$(numa-probe map "$1") || { echo "cannot map $1"; return; }
    pages=$(echo "$m" | sed -n 's/^pages=\([0-9]*\).*/\1/p')
    ok=0
    for n in $2; do
        c=$(echo "$m" | tr ' ' '\n' | sed -n "s/^N$n=//p")
        ok=$((ok + ${c:-0}))
    done
    [ "$ok" = "$pages" ] || echo "$(basename $1): numa_maps says '$m', wanted all on node(s) $2"
}

# ---- prezerod and its JSON -----------------------------------------------

# node-level fields of `prezero status --json`: "NODE VALUE" lines for FIELD
status_field() {
    prezero status --json | awk -v want="$1" '
        { l = $0; sub(/^[ \t]+/, "", l); sub(/[ \t,]+$/, "", l) }
        l ~ /[{[]$/ { depth++; if (depth == 5) { delete f } ; next }
        l ~ /^[]}]$/ { if (depth == 5) print f["node"], f[want]; depth--; next }
        depth == 5 && l ~ /^"[a-z_]+" : / { k = l; sub(/^"/, "", k); sub(/".*/, "", k); v = l; sub(/^[^:]*: /, "", v); f[k] = v }'
}
# Targets and min_free change only by fill/drain: read them once, not in polling loops
# (every prezero CLI start costs about a second under TCG).
load_targets() {
    eval "$(status_field target_bytes | awk '{print "TARGET_" $1 "=" $2}')"
    eval "$(status_field min_free_bytes | awk '{print "MINFREE_" $1 "=" $2}')"
}
target_of() { eval echo "\${TARGET_$1:-0}"; }
# A request straight to the control socket: for the steps around the scenarios
# (drain, fill, side releases), so only the steps under test pay for a CLI start.
ctl() {
    r=$(numa-probe send $SOCK "$1") && echo "$r" | grep -q '"ok":true' || fail "request $1 answered: $r"
}
json_field() { sed -n "s/^ *\"$1\" : \"*\([^\",]*\)\"*,*$/\1/p"; }

start_daemon() {
    prezerod --config $CONF --log-level debug >> $LOG 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        numa-probe send $SOCK '{"v":1,"op":"status"}' 2>/dev/null | grep -q '"ok":true' && { load_targets; return 0; }
        kill -0 $PID 2>/dev/null || break
        usleep 200000
    done
    echo "NUMA RESULT daemon-start FAIL prezerod did not answer on $SOCK:"
    sed 's/^/NUMA LOG   /' $LOG
    return 1
}
stop_daemon() {
    kill -TERM $PID
    for _ in $(seq 100); do kill -0 $PID 2>/dev/null || { wait $PID; return 0; }; usleep 100000; done
    fail "prezerod did not stop within 10 s of SIGTERM"
    kill -KILL $PID
}

wait_for() {   # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    t=$(( $1 * 5 )); shift
    while [ $t -gt 0 ]; do "$@" && return 0; usleep 200000; t=$((t - 1)); done
    return 1
}

# Nodes at their target: nothing in flight, clean bytes at least the target, and
# the kernel's used pages exactly the pool's pages of that node. One awk for all.
settled() {   # settled NODE...
    targets=""; for n in "$@"; do targets="$targets $n:$(target_of $n)"; done
    pool_table | awk -v want="$targets" -v kb=$KB '
        function sys(n, f,   v, path) { path = "/sys/devices/system/node/node" n "/hugepages/hugepages-" kb "kB/" f
                                        getline v < path; close(path); return v + 0 }
        { clean[$1] = $2; pages[$1] = $3; busy[$1] = $4 }
        END { k = split(want, t, " ")
              for (i = 1; i <= k; i++) { split(t[i], nt, ":"); n = nt[1]
                  if (busy[n] + 0 > 0 || clean[n] + 0 < nt[2] + 0) exit 1
                  if (sys(n, "nr_hugepages") - sys(n, "free_hugepages") != pages[n] + 0) exit 1 }
              exit 0 }'
}
all_settled() { settled $NODES; }

# ---- setup ---------------------------------------------------------------

mkdir -p /etc/prezero $VM /run/prezero
cat > /etc/prezero/qemu.conf <<EOF
memory_backing_dir = "$MNT/libvirt-ram"
EOF
cat > /etc/prezero/hook.conf <<EOF
socket = $SOCK
timeout_ms = 20000
EOF
cat > $CONF <<EOF
socket: $SOCK
mounts:
  - path: $MNT
target: 50%
min_free: 10%
file_size: $FILE_BYTES
fill_chunk: $FILE_BYTES
monitor_interval_ms: 100
reclaim_interval_ms: 200
make_room_hold_s: 3
refill_delay_ms: 6000
qemu_conf: /etc/prezero/qemu.conf
EOF
counters "boot"
echo "NUMA NOTE prezerod starting [guest uptime $(cut -d' ' -f1 /proc/uptime) s]"
start_daemon || exit 1
up() { cut -d' ' -f1 /proc/uptime; }
t0=$(up); prezero status >/dev/null; t1=$(up); prezero-hook --help 2>/dev/null; t2=$(up)
echo "NUMA NOTE prezerod answers [guest uptime $t0 s]; one prezero status takes $(awk "BEGIN {print $t1 - $t0}") s, prezero-hook --help $(awk "BEGIN {print $t2 - $t1}") s"

# ---- 1. fill: every node to its target, from its own pinned worker -------------

wait_for 90 all_settled || fail "the pool did not settle at its targets within 90 s"
for n in $NODES; do
    target=$(target_of $n)
    [ "$(clean_bytes $n)" -ge "$target" ] || fail "node $n holds $(clean_bytes $n) clean bytes, target $target"
    [ "$(used $n)" = "$(pool_pages $n)" ] || fail "node $n: the kernel has $(used $n) pages in use, the pool's files of node $n hold $(pool_pages $n)"
    [ "$target" -gt 0 ] || fail "node $n has a target of 0"
    for f in $(files clean $n); do
        w=$(on_nodes $POOL/clean/$f "$n"); [ -z "$w" ] || fail "$w"
    done
    # The node's worker: the "worker started" log line names its thread.
    tid=$(grep 'worker started' $LOG | grep "node=$n " | sed -n 's/.*tid=\([0-9]*\).*/\1/p' | tail -n 1)
    if [ -z "$tid" ] || [ ! -d /proc/$PID/task/$tid ]; then
        fail "no live worker thread for node $n in the log"
        continue
    fi
    cpus=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/$PID/task/$tid/status)
    want=$(cat /sys/devices/system/node/node$n/cpulist)
    [ "$cpus" = "$want" ] || fail "node $n's worker (tid $tid) may run on CPUs $cpus, node $n has $want"
    # The thread's own memory policy shows on mappings that have none of their own.
    pol=$(awk '$3 ~ /^(anon=|heap|stack)/ {print $2; exit}' /proc/$PID/task/$tid/numa_maps)
    [ "$pol" = "bind:$n" ] || fail "node $n's worker (tid $tid) has memory policy '$pol', wanted bind:$n"
    detail="$detail node$n: $(clean_bytes $n)/$target bytes, $(files clean $n | wc -l) files all on N$n, worker tid $tid cpus $cpus policy $pol;"
done
counters "filled"
prezero status | grep . | sed 's/^/NUMA STATUS /'
result fill "${detail:-}"
detail=""

# ---- 2. claim --node 1; 3. its release is taken back and refilled on node 1 -----

c1=$VM/claim-node1
out=$(prezero claim --size $FILE_BYTES --node 1 --dest $c1 --json) || fail "claim --node 1 failed: $out"
node=$(echo "$out" | json_field node)
outcome=$(echo "$out" | json_field outcome)
lease=$(echo "$out" | json_field lease)
[ "$node" = 1 ] || fail "claim --node 1 answered node '$node' ($outcome)"
w=$(on_nodes $c1 "1"); [ -z "$w" ] || fail "$w"
result claim-node1 "$outcome on node $node, $(numa-probe map $c1)"

seq=$(ls $POOL/leased | grep "^$lease~" | sed 's/.*-//')
name=$(ls $POOL/leased | grep "^$lease~" | sed 's/^.*~//')
before=$(snapshot)
numa-probe write $c1 0xa5 || fail "cannot write a pattern into $c1"
r=$(prezero release --dest $c1 --json) || fail "release failed: $r"
echo "$r" | grep -q '"reclaimed" : true' || fail "release did not take the file back: $r"
# The released file is gone for good (no sequence number comes back); its node's worker
# fills a new one of its size on node 1, on the pages the take-back gave back.
refill=""
back() { ! ls -R $POOL | grep -q -- "-$seq\$" && ! busy 1 && refill=$(files clean 1 | grep -v -- "-$seq\$" | grep -- "-$FILE_BYTES-" | sort -t- -k3 -n | tail -n 1) && [ -n "$refill" ] && [ "$(snapshot)" = "$before" ]; }
if wait_for 30 back; then
    w=$(on_nodes $POOL/clean/$refill "1"); [ -z "$w" ] || fail "the refill: $w"
    z=$(numa-probe zero $POOL/clean/$refill) || fail "clean/$refill is not all zero: $z"
    grep -q "lease $lease taken back" $LOG || fail "the log has no 'lease $lease taken back'"
    grep -q "filled $refill on node 1" $LOG || fail "the log has no 'filled $refill on node 1' (filled by another node's worker?)"
else
    where=$(ls -R $POOL | grep -- "-$seq\$" || echo "gone")
    fail "released $name was not taken back and refilled on node 1 within 30 s (the old file: $where; counters $(snapshot), before $before)"
fi
result release-takeback "$name written, released, taken back; $refill filled on node 1, zero, $(numa-probe map $POOL/clean/$refill 2>/dev/null), counters as before ($before)"
counters "after release"

# ---- 2b. a node set {2,3} (with 4 nodes or more) ------------------------------

# No file of a node in any state (leased ones included).
node_empty() { ! ls -R $POOL | sed 's/^.*~//' | grep -q "^n$1-"; }
claim23() { prezero claim --size $FILE_BYTES --node 2,3 --dest $VM/$1 --json; }
# Releases DEST and empties node N's pool.
release_and_empty() {
    ctl "{\"v\":1,\"op\":\"release\",\"release\":{\"dest\":\"$1\"}}"
    ctl "{\"v\":1,\"op\":\"drain\",\"scope\":{\"node\":$2}}"
    wait_for 20 node_empty $2 || fail "node $2's pool did not empty after drain"
}
if echo " $NODES " | grep -q ' 3 '; then
    out=$(claim23 set-a) || fail "claim --node 2,3 failed: $out"
    node=$(echo "$out" | json_field node)
    [ "$node" = 2 ] || [ "$node" = 3 ] || fail "claim --node 2,3 answered node '$node'"
    w=$(on_nodes $VM/set-a "2 3"); [ -z "$w" ] || fail "$w"
    detail="$(echo "$out" | json_field outcome) on node $node, $(numa-probe map $VM/set-a);"
    # Node 2 emptied: the set is served by node 3.
    release_and_empty $VM/set-a 2
    out=$(claim23 set-b) || fail "claim --node 2,3 (node 2 empty) failed: $out"
    node=$(echo "$out" | json_field node)
    [ "$node" = 3 ] || fail "claim --node 2,3 with node 2 empty answered node '$node' ($(echo "$out" | json_field outcome)), wanted 3"
    w=$(on_nodes $VM/set-b "3"); [ -z "$w" ] || fail "$w"
    detail="$detail node 2 empty: $(echo "$out" | json_field outcome) on node $node, $(numa-probe map $VM/set-b 2>/dev/null);"
    # Both emptied: a miss, though nodes 0 and 1 have files of that size.
    release_and_empty $VM/set-b 3
    out=$(claim23 set-c) || fail "claim --node 2,3 (both empty) failed: $out"
    outcome=$(echo "$out" | json_field outcome)
    [ "$outcome" = miss ] || fail "claim --node 2,3 with both empty gave '$outcome' on node $(echo "$out" | json_field node), wanted miss"
    [ ! -e $VM/set-c ] || fail "a miss linked a file at $VM/set-c"
    result claim-nodeset-2-3 "$detail both empty: $outcome, nothing linked"
    detail=""
    # drain set the targets of nodes 2 and 3 to 0; put back the configured share
    ctl '{"v":1,"op":"fill","scope":{"target":"50%"}}'
    load_targets
    wait_for 60 all_settled || echo "NUMA NOTE the pool did not settle again after the node-set claims"
fi

# ---- 2c. a claim the allowed node cannot serve is a miss ------------------------

others_before=""
for n in $NODES; do [ $n = 1 ] || others_before="$others_before $(files clean $n | tr '\n' ' ')"; done
ctl '{"v":1,"op":"drain","scope":{"node":1}}'
wait_for 20 node_empty 1 || fail "node 1's pool did not empty after drain"
cm=$VM/claim-miss
out=$(prezero claim --size $FILE_BYTES --node 1 --dest $cm --json) || fail "claim of an empty node failed: $out"
outcome=$(echo "$out" | json_field outcome)
[ "$outcome" = miss ] || fail "claim --node 1 with node 1 empty gave '$outcome' (node $(echo "$out" | json_field node)), wanted miss"
[ ! -e $cm ] || fail "a miss linked a file at $cm"
others_after=""
for n in $NODES; do [ $n = 1 ] || others_after="$others_after $(files clean $n | tr '\n' ' ')"; done
[ "$others_before" = "$others_after" ] || fail "other nodes' clean files changed: $others_before -> $others_after"
result claim-miss "node 1 empty: $outcome, nothing at $cm, other nodes' clean files untouched"
# drain set node 1's target to 0; put back the configured share
ctl '{"v":1,"op":"fill","scope":{"node":1,"target":"50%"}}'
load_targets
wait_for 60 all_settled || echo "NUMA NOTE the pool did not settle again after the miss"
counters "refilled"

# ---- 4. make-room for node 1 frees pages on node 1 only -------------------------

wait_for 60 all_settled
before=$(snapshot)
free1=$(hp 1 free_hugepages)
want=$((free1 + FILE_PAGES))
r=$(numa-probe send $SOCK "{\"v\":1,\"op\":\"make-room\",\"make_room\":{\"pages\":{\"1\":$want}}}")
after=$(snapshot)   # at once: the freed pages are held only make_room_hold_s
echo "$r" | grep -q '"ok":true' || fail "make-room refused: $r"
free1after=$(snap_of "$after" 1 | cut -d/ -f2)
[ "$free1after" -ge "$want" ] || fail "node 1 has $free1after pages free after make-room for $want"
for n in $NODES; do
    [ $n = 1 ] && continue
    [ "$(snap_of "$before" $n)" = "$(snap_of "$after" $n)" ] || fail "node $n's counters moved: $(snap_of "$before" $n) -> $(snap_of "$after" $n)"
done
result make-room "node 1: $free1 -> $free1after free for $want asked; other nodes unchanged ($before -> $after)"
counters "after make-room node 1"

# ---- 4b. the yield for min_free on node 0 does not touch node 1 ----------------

wait_for 60 all_settled   # the make-room hold ends, node 1 refills || echo "NUMA NOTE the pool did not settle before the yield test"
before=$(snapshot)
keep0=$(( MINFREE_0 / PS ))
take=$(hp 0 free_hugepages)
numa-probe hog 0 $take 4 > /tmp/hog.out 2>&1 &
hog=$!
yielded() { [ "$(hp 0 free_hugepages)" -ge "$keep0" ] && grep -q took /tmp/hog.out; }
wait_for 4 yielded || fail "node 0 has $(hp 0 free_hugepages) free pages with the hog running, min_free is $keep0"
during=$(snapshot)
counters "while another user holds node 0's free pages"
wait $hog || fail "the hog did not get its pages: $(cat /tmp/hog.out)"
for n in $NODES; do
    [ $n = 0 ] && continue
    [ "$(snap_of "$before" $n)" = "$(snap_of "$during" $n)" ] || fail "node $n's counters moved: $(snap_of "$before" $n) -> $(snap_of "$during" $n)"
done
grep 'yielded' $LOG | grep -v 'on node 0 ' | grep -q . && fail "prezerod yielded on another node: $(grep yielded $LOG | grep -v 'on node 0 ')"
grep 'yielded' $LOG | grep -q 'on node 0 ' || fail "no 'yielded ... on node 0' in prezerod's log"
result min-free-yield "$(cat /tmp/hog.out); node 0 kept $keep0 free ($before -> $during), other nodes unchanged"

# ---- 5. the memory plan for two guest cells bound to nodes 0 and 1 -----------

wait_for 60 all_settled || echo "NUMA NOTE the pool did not settle before the hook test"
uuid=5e0f2a44-8f6b-4c1d-9a43-2b6a1a7c0001
dom=$MNT/libvirt-ram/libvirt/qemu/7-numa-two-cells
mkdir -p $dom
cellkib=$((FILE_BYTES / 1024))
xml() {   # xml ID-ATTRIBUTE
cat <<EOF
<domain type='qemu'$1>
  <name>numa-two-cells</name>
  <uuid>$uuid</uuid>
  <memory unit='KiB'>$((2 * cellkib))</memory>
  <memoryBacking><source type='file'/><access mode='shared'/><allocation mode='immediate'/></memoryBacking>
  <vcpu placement='static'>2</vcpu>
  <numatune>
    <memory mode='strict' nodeset='0-1'/>
    <memnode cellid='0' mode='strict' nodeset='0'/>
    <memnode cellid='1' mode='strict' nodeset='1'/>
  </numatune>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
    <numa>
      <cell id='0' cpus='0' memory='$cellkib' unit='KiB'/>
      <cell id='1' cpus='1' memory='$cellkib' unit='KiB'/>
    </numa>
  </cpu>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055</label></seclabel>
</domain>
EOF
}
export PREZERO_HOOK_CONF=/etc/prezero/hook.conf
hookout=$(xml " id='7'" | prezero-hook numa-two-cells start begin - 2>/tmp/hook.err); rc=$?
[ $rc = 0 ] || fail "prezero-hook start begin exited $rc: $(cat /tmp/hook.err)"
[ -z "$hookout" ] || fail "prezero-hook wrote to stdout: $hookout"
for cell in 0 1; do
    f=$dom/ram-node$cell
    if [ -e $f ]; then
        w=$(on_nodes $f "$cell"); [ -z "$w" ] || fail "cell $cell: $w"
        [ "$(stat -c %u:%g $f)" = 64055:64055 ] || fail "ram-node$cell is owned by $(stat -c %u:%g $f), wanted 64055:64055"
        detail="$detail ram-node$cell $(numa-probe map $f);"
    else
        fail "no hand-over at $f: $(cat /tmp/hook.err) $(grep numa-two-cells $LOG | tail -n 3)"
    fi
done
handed=$(grep 'numa-two-cells' $LOG | grep -c 'handed over')
[ "$handed" = 2 ] || fail "the daemon logged $handed hand-overs, wanted 2"
xml "" | prezero-hook numa-two-cells stopped end - 2>>/tmp/hook.err || fail "prezero-hook stopped end failed"
leases_gone() { ! ls $POOL/leased | grep -q "^$uuid"; }
wait_for 10 leases_gone || fail "the domain's leases are still there after stopped end: $(ls $POOL/leased)"
result hook-two-cells "$handed hand-overs:${detail:-}"
detail=""

# ---- 6. a node with no huge pages reserved --------------------------------------

settled_but_last() { settled $(echo $NODES | awk -v l=$LAST '{for (i = 1; i <= NF; i++) if ($i != l) print $i}'); }
prezero drain --node $LAST --no-wait >/dev/null || fail "drain --node $LAST failed"
wait_for 20 node_empty $LAST || fail "node $LAST's pool did not empty after drain: $(ls -R $POOL | grep "n$LAST-")"
echo 0 > /sys/devices/system/node/node$LAST/hugepages/hugepages-${KB}kB/nr_hugepages
[ "$(hp $LAST nr_hugepages)" = 0 ] || fail "node $LAST still has $(hp $LAST nr_hugepages) huge pages"
check_rest() {   # the other nodes still work: status, a claim and its release
    s=$(prezero status 2>&1) || fail "$1: prezero status failed: $s"
    d=$(prezero doctor 2>&1); rc=$?
    [ $rc = 4 ] || fail "$1: prezero doctor exited $rc, wanted 4 (a problem found)"
    echo "$d" | grep FAIL | grep -q "node $LAST" || fail "$1: doctor does not name node $LAST: $d"
    out=$(prezero claim --size $FILE_BYTES --node 0 --dest $VM/after-$1 --json) || fail "$1: claim on node 0 failed: $out"
    [ "$(echo "$out" | json_field node)" = 0 ] || fail "$1: claim on node 0 answered $(echo "$out" | json_field node)"
    prezero release --dest $VM/after-$1 >/dev/null || fail "$1: release failed"
    echo "$d" | grep FAIL | grep "node $LAST" > /tmp/doctor.$1
}
check_rest running
stop_daemon
pools_before=$(for n in $NODES; do pool_pages $n; done | tr '\n' ' ')
LOG=$LOG.restart
start_daemon || exit 1
grep -q "node $LAST has no" $LOG || fail "prezerod did not warn at start-up that node $LAST has no huge pages"
wait_for 60 settled_but_last || fail "the other nodes did not settle after the restart"
pools_after=$(for n in $NODES; do pool_pages $n; done | tr '\n' ' ')
[ "$pools_before" = "$pools_after" ] || fail "pages held per node changed across the restart: $pools_before -> $pools_after"
check_rest restarted
result no-hugepages-node "node $LAST with 0 pages: doctor says '$(head -n 1 /tmp/doctor.running)'; status, claims on node 0 and a restart work"
counters "node $LAST without huge pages"
stop_daemon

echo "NUMA DONE $failures failed"
[ $failures = 0 ]
