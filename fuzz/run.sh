#!/bin/sh
# run.sh SRCDIR BUILDDIR TARGET... - what `make fuzz-run` does: run each
# libFuzzer target fuzz/fuzz_TARGET for $FUZZ_SECONDS seconds (30 by
# default) with its dictionary, on a copy of its seed corpus kept in
# BUILDDIR/fuzz/run/TARGET/corpus (what a run finds stays there for the
# next).  A crash, leak, sanitizer report, timeout (FUZZ_TIMEOUT, 25 s
# per input) or out-of-memory fails the run: the exit status is 1 and
# the reproducer is left in BUILDDIR/fuzz/run/TARGET/, named below.
set -u
src=$1
build=$2
shift 2
secs=${FUZZ_SECONDS:-30}
status=0
for t in "$@"; do
    exe=$build/fuzz/fuzz_$t
    work=$build/fuzz/run/$t
    mkdir -p "$work/corpus" || exit 1
    cp -R "$src/fuzz/corpus/$t/." "$work/corpus/" || exit 1
    printf '== fuzz_%s: %s s, log %s\n' "$t" "$secs" "$work/log"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$exe" -dict="$src/fuzz/$t.dict" -max_total_time="$secs" \
        -timeout="${FUZZ_TIMEOUT:-25}" -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1
    rc=$?
    # The last status line (execs, cov, ft, corpus) and the totals.
    grep -E '^#[0-9]+' "$work/log" | tail -n 1
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$work/log"
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "fuzz_$t FAILED (exit $rc):"
        grep -E 'ERROR: |SUMMARY: |runtime error' "$work/log" | head -n 5
        grep -E 'Test unit written to|artifact_prefix' "$work/log" | sed 's/^/  /'
        echo "  reproduce: $exe $work/<that file>   (full log: $work/log)"
    fi
done
exit $status
