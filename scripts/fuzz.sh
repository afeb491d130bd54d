#!/usr/bin/env bash
# scripts/fuzz.sh: run the libFuzzer targets that `make fuzz-build` put into build-fuzz/fuzz/ (README "Fuzzing").
#   scripts/fuzz.sh once [TARGET...]   each target once over its committed corpus fuzz/corpus/<target>/ (make test,
#                                      make fuzz-corpus); one "ok - fuzz corpus <target>" or "not ok - ..." line each
#   scripts/fuzz.sh run [TARGET...]    fuzz each target for FUZZ_SECONDS (default 60) from its corpus (make fuzz);
#                                      new inputs go to build-fuzz/corpus/<target>/, the committed seeds stay as they
#                                      are; a crash is saved as build-fuzz/crashes/<target>-crash-<sha1>
#   scripts/fuzz.sh list               the target names (every fuzz/*.c)
# Targets default to all of them; fuzz/<target>.dict is passed as the dictionary when it exists. A crash, a
# sanitizer report, a leak or a broken contract (FUZZ_CHECK) fails the target. Exit status 1 when one failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
# halt at the first report, with the stack; leaks count (libFuzzer checks them after each input)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:halt_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

mode=${1:-}
shift || true
case $mode in
once | run | list) ;;
*)
    printf 'usage: scripts/fuzz.sh once|run|list [TARGET...]\n' >&2
    exit 2
    ;;
esac

targets=("$@")
if ((${#targets[@]} == 0)); then
    for src in fuzz/*.c; do
        [[ -f $src ]] && targets+=("$(basename "$src" .c)")
    done
fi
if [[ $mode == list ]]; then
    printf '%s\n' "${targets[@]}"
    exit 0
fi

failed=0
label='fuzz corpus'
[[ $mode == run ]] && label=fuzz
for t in "${targets[@]}"; do
    bin=$FUZZ_BUILD/fuzz/$t corpus=fuzz/corpus/$t
    opts=()
    [[ -f fuzz/$t.dict ]] && opts+=("-dict=fuzz/$t.dict")
    if [[ ! -x $bin ]]; then
        printf 'not ok - %s %s [%s not built: make fuzz-build]\n' "$label" "$t" "$bin"
        failed=1
        continue
    fi
    if [[ ! -d $corpus ]] || [[ -z $(ls -A "$corpus") ]]; then
        printf 'not ok - %s %s [no seeds in %s]\n' "$label" "$t" "$corpus"
        failed=1
        continue
    fi
    log=$(mktemp "${TMPDIR:-/tmp}/gb-fuzz.XXXXXX")
    rc=0
    if [[ $mode == once ]]; then
        # -runs=0: read and execute every input of the corpus, then stop
        "$bin" -runs=0 -timeout=10 "${opts[@]}" "$corpus" >"$log" 2>&1 || rc=$?
        n=$(find "$corpus" -type f | wc -l)
        if ((rc == 0)); then
            printf 'ok - fuzz corpus %s: %d input(s)\n' "$t" "$n"
        else
            printf 'not ok - fuzz corpus %s [exit status %d]\n' "$t" "$rc"
            sed 's/^/#   /' "$log" | tail -n 60
            failed=1
        fi
    else
        work=$FUZZ_BUILD/corpus/$t
        mkdir -p "$work" "$FUZZ_BUILD/crashes"
        printf '# fuzzing %s for %ss\n' "$t" "$FUZZ_SECONDS"
        "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$FUZZ_BUILD/crashes/$t-" "${opts[@]}" "$work" "$corpus" >"$log" 2>&1 || rc=$?
        stats=$(grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr -s ' \n' ' ' || true)
        if ((rc == 0)); then
            printf 'ok - fuzz %s: %s%d input(s) in %s\n' "$t" "$stats" "$(find "$work" -type f | wc -l)" "$work"
        else
            printf 'not ok - fuzz %s [exit status %d; crash input in %s/crashes/]\n' "$t" "$rc" "$FUZZ_BUILD"
            sed 's/^/#   /' "$log" | grep -v '^#   #[0-9]' | tail -n 60
            failed=1
        fi
    fi
    rm -f "$log"
done
exit "$failed"
