#!/usr/bin/env bash
# Builds and runs every libFuzzer target tests/fuzz/fuzz_<name>.c (found by glob, so a new file
# is picked up without editing this script), each for FUZZ_SECONDS (default 60), FUZZ_PARALLEL
# (default: the number of CPUs, at most 2) at a time, with ASan and UBSan. Called by `make fuzz`.
#
# A target says what it needs in comment lines:
#   // fuzz-sources: src/http/h1.c src/core/common.c   compile only these with it; without this
#                                                      line it links every object of src/ (but
#                                                      main.c), built instrumented under
#                                                      build/fuzz/obj/ by the Makefile
#   // fuzz-options: -max_len=65536                    extra libFuzzer options (default
#                                                      -max_len=4096)
# Seeds: tests/fuzz/corpus/<name>/ (committed); dictionary: tests/fuzz/<name>.dict if present.
# New inputs go to tests/fuzz/corpus-run/<name>/ (gitignored). A crash, leak, timeout (10 s per
# input) or out-of-memory leaves its input in build/fuzz/<name>-crash-* (or leak-, timeout-,
# oom-) and makes this script fail after all targets ran; each target's log is build/fuzz/<name>.log.
# Reproduce with build/fuzz/fuzz_<name> build/fuzz/<name>-crash-<hash>.
# FUZZ_TARGETS="h1 chunked" runs only those.
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ncpu=$(nproc 2>/dev/null || echo 1)
FUZZ_PARALLEL=${FUZZ_PARALLEL:-$((ncpu < 2 ? ncpu : 2))}
OUT=build/fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
mkdir -p "$OUT"

targets=()
for f in tests/fuzz/fuzz_*.c; do
    name=$(basename "$f" .c)
    name=${name#fuzz_}
    if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $name "* ]]; then
        continue
    fi
    targets+=("$name")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no target in tests/fuzz/fuzz_*.c${FUZZ_TARGETS:+ named $FUZZ_TARGETS}" >&2
    exit 1
fi

# comment_field FILE KEY: the value of the first "// KEY:" line of FILE (empty when none).
comment_field() {
    sed -n "s|^// $2: *||p" "$1" | head -n 1
}

# The instrumented objects of src/, built only when a target links them all.
lib_flags=()
for name in "${targets[@]}"; do
    if [ -z "$(comment_field "tests/fuzz/fuzz_$name.c" fuzz-sources)" ]; then
        echo "fuzz: building the instrumented objects of src/ under $OUT/obj/"
        mk=(make --no-print-directory BUILD="$OUT" CC=clang
            CFLAGS="-g -O1 -fsanitize=fuzzer-no-link $SAN -fno-omit-frame-pointer")
        "${mk[@]}" -j"$ncpu" fuzz-objects >/dev/null
        mapfile -t lib_flags < <("${mk[@]}" -s fuzz-link-flags)
        break
    fi
done

for name in "${targets[@]}"; do
    src=tests/fuzz/fuzz_$name.c
    extra=$(comment_field "$src" fuzz-sources)
    echo "fuzz: building $OUT/fuzz_$name"
    if [ -n "$extra" ]; then
        # shellcheck disable=SC2086 # a list of paths
        clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
            -fsanitize=fuzzer $SAN -Isrc "$src" $extra -o "$OUT/fuzz_$name"
    else
        # shellcheck disable=SC2086 # flag lists from the Makefile
        clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
            -fsanitize=fuzzer $SAN -Isrc ${lib_flags[0]} "$src" ${lib_flags[1]} \
            -o "$OUT/fuzz_$name" ${lib_flags[2]}
    fi
done

# run_target NAME: fuzzes NAME for FUZZ_SECONDS; its exit status goes to $OUT/NAME.rc.
run_target() {
    local name=$1 src=tests/fuzz/fuzz_$1.c opts
    opts=$(comment_field "$src" fuzz-options)
    local args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=1536
                -artifact_prefix="$OUT/$name-" -print_final_stats=1)
    # shellcheck disable=SC2206 # options are words
    args+=(${opts:--max_len=4096})
    [ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
    local dirs=("tests/fuzz/corpus-run/$name")
    mkdir -p "${dirs[0]}"
    [ -d "tests/fuzz/corpus/$name" ] && dirs+=("tests/fuzz/corpus/$name")
    local rc=0
    timeout -k 10 "$((FUZZ_SECONDS + 300))" "$OUT/fuzz_$name" "${args[@]}" "${dirs[@]}" \
        >"$OUT/$name.log" 2>&1 || rc=$?
    echo "$rc" >"$OUT/$name.rc"
}

echo "fuzz: running ${targets[*]} for ${FUZZ_SECONDS}s each, $FUZZ_PARALLEL at a time"
running=0
for name in "${targets[@]}"; do
    rm -f "$OUT/$name.rc"
    if [ "$running" -ge "$FUZZ_PARALLEL" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$name" &
    running=$((running + 1))
done
wait

failed=()
for name in "${targets[@]}"; do
    rc=$(cat "$OUT/$name.rc" 2>/dev/null || echo "?")
    stats=$(grep -E '^(stat::number_of_executed_units|#[0-9]+ +DONE)' "$OUT/$name.log" |
            head -n 1 || true)
    if [ "$rc" = 0 ]; then
        echo "fuzz: $name OK ${stats}"
    else
        failed+=("$name")
        echo "fuzz: $name FAILED (exit $rc); log $OUT/$name.log, last lines:" >&2
        tail -n 40 "$OUT/$name.log" >&2
        ls "$OUT/$name"-* 2>/dev/null | sed 's/^/fuzz: reproducer: /' >&2 || true
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
