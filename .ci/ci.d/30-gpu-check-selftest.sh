#!/usr/bin/env bash
# scripts/gpu-check selftest (no GPU; about 20 s): the step machinery on
# synthetic steps, then the real GPU plan, where every GPU step must come out
# SKIP with its reason, every test binary must exist, match its filter and
# fail (not skip) under KILN_REQUIRE_GPU=1, and the summary and the log
# tarball must be written. Uses the build/ that scripts/test made. Keeps the
# one-call GPU verification from rotting between the rare GPU sessions.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash -n scripts/gpu-check bench/gpu-headline
python3 -m py_compile bench/gpu_headline.py
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck -x scripts/gpu-check bench/gpu-headline
fi
scripts/gpu-check selftest
