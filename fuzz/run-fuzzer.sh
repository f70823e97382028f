#!/usr/bin/env bash
# A libFuzzer campaign on kiln's public API (fuzz/fuzz_sample.c), CPU backend.
#
#   fuzz/run-fuzzer.sh [SECONDS] [JOBS]      default 600 s, one job per core
#
# 1. Builds build-fuzz/ with clang: the library instrumented for coverage
#    (-fsanitize=fuzzer-no-link) and everything under AddressSanitizer and
#    UndefinedBehaviorSanitizer (KILN_SANITIZE), the target with
#    -fsanitize=fuzzer.
# 2. Fuzzes for SECONDS in JOBS processes (libFuzzer's -fork mode), starting
#    from a copy of fuzz/corpus in build-fuzz/work/corpus; crashes (broken
#    invariants, sanitizer reports, timeouts) go to build-fuzz/work/artifacts/
#    and do not stop the run.
# 3. Merges the inputs that add coverage into fuzz/corpus (-merge=1; named by
#    their SHA-1), so CI replays them from then on.
# 4. Prints libFuzzer's figures (executions, cov, ft, corpus) and lists the
#    artifacts. A crash is triaged by hand: replay it with
#    build-fuzz/fuzz/fuzz_replay FILE, fix, and keep it as
#    fuzz/corpus/regress-<what> so CI replays it for good.
#
# Known library bugs that would stop every job that reaches them are listed
# in fuzz/ubsan-known.supp and recovered from (reported nowhere); the
# regress-* inputs in fuzz/corpus keep exposing them to CI's sanitizer
# replay until they are fixed. Empty the file to fuzz with no exceptions.
#
# fuzz/fuzz_sample.dict holds the extension's tag ("KX", see decode_ext in
# fuzz_sample.c), which mutations would otherwise often lose.
#
# Environment: KILN_FUZZ_BUILD (default build-fuzz), KILN_FUZZ_NO_MERGE=1 to
# leave fuzz/corpus alone, KILN_FUZZ_ARGS for extra libFuzzer flags.
# Log: build-fuzz/work/fuzz.log.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
jobs=${2:-$(nproc)}
build=${KILN_FUZZ_BUILD:-build-fuzz}
work=$build/work

command -v clang >/dev/null || { echo "run-fuzzer: clang is needed (apt-get install clang)" >&2; exit 2; }
scripts/deps
# The sanitizer flags are given here rather than through KILN_SANITIZE so the
# checks named in the suppression file can be made recoverable.
known=$(grep -v '^#' fuzz/ubsan-known.supp | cut -d: -f1 | sort -u | paste -sd, || true)
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
[ -n "$known" ] && san="$san -fsanitize-recover=$known"
cmake -S . -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=OFF -DKILN_SANITIZE=OFF \
      -DKILN_FUZZ_LIBFUZZER=ON -DKILN_BUILD_EXAMPLES=OFF \
      -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
      -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" --target fuzz_sample fuzz_replay

mkdir -p "$work/corpus" "$work/artifacts"
cp -n fuzz/corpus/* "$work/corpus/" 2>/dev/null || true
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$PWD/fuzz/ubsan-known.supp}"
# libomp (clang's OpenMP) keeps team buffers it never frees: tests/lsan.supp
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}"
# Tiny calls open an OpenMP parallel region each; spinning idle threads
# would eat the cores the fuzzer needs.
export OMP_WAIT_POLICY=passive

fork=()
[ "$jobs" -gt 1 ] && fork=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
echo "run-fuzzer: $seconds s, $jobs job(s), corpus $(ls "$work/corpus" | wc -l) inputs"
# shellcheck disable=SC2086
"$build/fuzz/fuzz_sample" "${fork[@]}" -max_total_time="$seconds" -max_len=16384 \
    -dict=fuzz/fuzz_sample.dict -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" ${KILN_FUZZ_ARGS:-} "$work/corpus" 2>&1 |
  tee "$work/fuzz.log" | grep -E '^#[0-9]+: |DONE|INFO: (fuzzed|exiting)|stat::|ERROR|SUMMARY|invariant' || true

if [ "${KILN_FUZZ_NO_MERGE:-0}" != 1 ]; then
  before=$(ls fuzz/corpus | wc -l)
  "$build/fuzz/fuzz_sample" -merge=1 -max_len=16384 -timeout=20 fuzz/corpus "$work/corpus" \
      >"$work/merge.log" 2>&1 || { echo "run-fuzzer: merge failed, see $work/merge.log" >&2; }
  echo "run-fuzzer: fuzz/corpus $before -> $(ls fuzz/corpus | wc -l) inputs"
fi
echo "run-fuzzer: last status line:"
grep -E '^#[0-9]+: ' "$work/fuzz.log" | tail -n 1 || grep -E '^#[0-9]+' "$work/fuzz.log" | tail -n 1 || true
n=$(ls "$work/artifacts" | wc -l)
echo "run-fuzzer: $n artifact(s) in $work/artifacts"
ls "$work/artifacts" | head -20
[ "$n" -eq 0 ]
