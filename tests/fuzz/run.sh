#!/usr/bin/env bash
# Builds the HTTP/1 parser fuzzer (tests/fuzz/fuzz_h1.c) with libFuzzer, ASan and UBSan, and runs
# it for FUZZ_SECONDS (default 60) over the committed seeds in tests/fuzz/corpus/h1/. New inputs go
# to tests/fuzz/corpus-run/h1/ (gitignored); a crash leaves its input in build/fuzz/ and makes this
# script fail. FUZZ_JOBS (default 1) runs that many fuzzing processes in parallel.
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}
OUT=build/fuzz
RUN_CORPUS=tests/fuzz/corpus-run/h1
mkdir -p "$OUT" "$RUN_CORPUS"

clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Isrc tests/fuzz/fuzz_h1.c src/http/h1.c src/core/common.c -o "$OUT/fuzz_h1"

args=(-max_total_time="$FUZZ_SECONDS" -max_len=4096 -dict=tests/fuzz/h1.dict
      -artifact_prefix="$OUT/" -print_final_stats=1)
if [ "$FUZZ_JOBS" -gt 1 ]; then
    args+=(-fork="$FUZZ_JOBS")
fi
exec "$OUT/fuzz_h1" "${args[@]}" "$RUN_CORPUS" tests/fuzz/corpus/h1
