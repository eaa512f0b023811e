#!/usr/bin/env bash
# libFuzzer over every parser of outside input, FUZZ_SECONDS each (default 30).
#
# SwiftPM builds the parsers' targets (PrezeroLibvirtModel, PrezeroConfigYAML, and
# PrezeroQemuModel, PrezeroCore, PrezeroProtocol and Yams under them) with --sanitize=fuzzer,address
# into its own scratch path; each harness, a file in Fuzz/
# exporting LLVMFuzzerTestOneInput, is linked against those objects. A harness's
# corpus starts from the fixtures and from Fuzz/corpus/HARNESS, which also keeps every
# input that once crashed it (libFuzzer runs each seed first, so a fixed crash that
# comes back fails the run). A new crash leaves its input and log in FUZZ_OUT.
#   FUZZ_SECONDS  per harness (default 30)     FUZZ_ONLY  run only these harnesses
#   FUZZ_OUT      default .build/fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
out=${FUZZ_OUT:-.build/fuzz}
scratch=.build-fuzz
fixtures=Tests/PrezeroCoreTests/Fixtures
harnesses=(${FUZZ_ONLY:-protocol domain rewrite config qemuconf hook})
mkdir -p "$out"
# Leaks in Foundation that prezero cannot avoid, each explained there.
export LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0"
# A failed check's fatalError is libFuzzer's crash; Swift's own backtracer on top of it
# trips ASan and buries the message.
export SWIFT_BACKTRACE=enable=no

echo "fuzz: building the parsers' targets with -sanitize=fuzzer,address" >&2
ours=(PrezeroLibvirtModel PrezeroConfigYAML PrezeroQemuModel PrezeroCore PrezeroProtocol)
# One -sanitize=fuzzer,address: given as two flags (SwiftPM's --sanitize), the driver
# hands the compiler only the last, and the objects get no coverage counters.
for target in PrezeroLibvirtModel PrezeroConfigYAML; do
    swift build -c release --scratch-path "$scratch" --target "$target" \
        -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address >&2
done
# The harnesses link every object of these targets: one left by a source since renamed
# or moved would define its symbols twice, so objects whose source is gone are dropped.
for t in "${ours[@]}"; do
    find "$scratch/release/$t.build" -name '*.swift.o' | while read -r o; do
        [ -n "$(find "Sources/$t" -name "$(basename "$o" .o)" -print -quit)" ] || rm -f "$o"
    done
done
objects=$(for t in "${ours[@]}" Yams CYaml; do find "$scratch/release/$t.build" -name '*.o'; done)
if ! objdump -h "$scratch/release/PrezeroLibvirtModel.build/DomainXML.swift.o" | grep sancov > /dev/null; then
    echo "fuzz: PrezeroLibvirtModel was built without coverage counters; libFuzzer would search blind" >&2; exit 1
fi

# seed HARNESS DIR: the fixture inputs for HARNESS, copied into DIR.
seed() {
    local h=$1 dir=$2 f name
    case $h in
        domain|rewrite) cp "$fixtures"/libvirt-9.0-domains/*.xml "$fixtures"/libvirt-9.0-hook-stdin/*.xml "$dir"/ ;;
        qemuconf) cp "$fixtures"/libvirt-9.0-qemu.conf "$dir"/ ;;
        config) cp examples/prezerod.yaml "$dir"/; sed -e '1,2d' -e 's/^# \?//' examples/prezerod.yaml > "$dir"/uncommented.yaml ;;
        hook)
            # hook.conf NUL "NAME\nOP\nSUBOP\n-" NUL the XML libvirtd wrote on stdin.
            for f in "$fixtures"/libvirt-9.0-hook-stdin/*.xml; do
                name=$(basename "$f" .xml)
                { printf 'socket = /run/prezero/prezerod.sock\ntimeout_ms = 5000\nfail_closed = yes\n\0'
                  printf '%s\n%s\n%s\n-\0' "${name%%.*}" "$(echo "${name#*.}" | cut -d- -f1)" "$(echo "${name#*.}" | cut -d- -f2)"
                  cat "$f"; } > "$dir/$name"
            done ;;
    esac
    if [ -d "Fuzz/corpus/$h" ]; then cp -R "Fuzz/corpus/$h/." "$dir"/; fi
}

status=0
for h in "${harnesses[@]}"; do
    bin=$out/$h
    # shellcheck disable=SC2086
    if ! swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "Fuzz_$h" -I "$scratch/release/Modules" \
        -Xcc -fmodule-map-file="$scratch/checkouts/Yams/Sources/CYaml/include/module.modulemap" \
        "Fuzz/$h.swift" Fuzz/Support/*.swift $objects -o "$bin" > "$out/$h.build.log" 2>&1; then
        echo "fuzz $h: does not build:" >&2; grep -v "Cannot export local symbol" "$out/$h.build.log" >&2
        status=1; continue
    fi
    corpus=$(mktemp -d)
    seed "$h" "$corpus"
    log=$out/$h.log
    # LeakSanitizer on every input costs libFuzzer ~30x its speed here (Foundation keeps
    # caches that look like leaks until the check), so the search runs without it and
    # then every input of the grown corpus runs once more with it.
    if "$bin" -max_total_time="$seconds" -max_len=65536 -detect_leaks=0 -artifact_prefix="$out/$h-" "$corpus" > "$log" 2>&1 &&
       "$bin" -runs=0 -detect_leaks=1 -artifact_prefix="$out/$h-" "$corpus" > "$log.leaks" 2>&1; then
        echo "fuzz $h: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log"), $(grep -o 'cov: [0-9]*' "$log" | tail -n 1), corpus $(ls "$corpus" | wc -l) inputs, no leaks"
    else
        echo "fuzz $h: FAILED; input and log in $out ($h-*, $h.log*)" >&2
        tail -n 30 "$log" "$log.leaks" >&2 2>/dev/null || true
        status=1
    fi
    rm -rf "$corpus"
done
exit $status
