#!/usr/bin/env bash
# libFuzzer over the parsers, FUZZ_SECONDS each (default 30). A harness is a file in
# Fuzz/ exporting LLVMFuzzerTestOneInput, built with -sanitize=fuzzer,address over the
# sources of the module it tests. Corpora start from Fuzz/corpus/HARNESS and grow in
# a temporary directory; a crash leaves its input in FUZZ_OUT (default .build/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
out=${FUZZ_OUT:-.build/fuzz}
mkdir -p "$out"
declare -A sources=([protocol]="Sources/PrezeroProtocol/*.swift")
status=0
for h in "${!sources[@]}"; do
    bin=$out/$h
    # shellcheck disable=SC2086
    swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "Fuzz_$h" ${sources[$h]} "Fuzz/$h.swift" -o "$bin" 2>&1 \
        | grep -v "Cannot export local symbol" || true
    corpus=$(mktemp -d)
    cp Fuzz/corpus/"$h"/* "$corpus"/
    log=$out/$h.log
    if "$bin" -max_total_time="$seconds" -max_len=65536 -artifact_prefix="$out/$h-" "$corpus" > "$log" 2>&1; then
        echo "fuzz $h: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log"), $(grep -o 'cov: [0-9]*' "$log" | tail -n 1), corpus $(ls "$corpus" | wc -l) inputs"
    else
        echo "fuzz $h: FAILED; input and log in $out ($h-*, $h.log)" >&2
        tail -n 20 "$log" >&2
        status=1
    fi
    rm -rf "$corpus"
done
exit $status
