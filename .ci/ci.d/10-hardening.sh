#!/usr/bin/env bash
# Valgrind memcheck and a clang ASan/UBSan build over the fuzz corpus and the
# test suite (scripts/hardening; about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/hardening
