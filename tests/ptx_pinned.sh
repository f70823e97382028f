#!/usr/bin/env bash
# Compiles every kernel file to PTX under -use_fast_math (which turns on
# --ftz=true, --prec-div=false and --fmad=true) and fails if any float
# instruction flushes, approximates or fuses: kiln's exactness must not rest
# on the flags a parent project compiles it with (csrc/shared/numerics.h).
# A control file with plain operators must show all three, so a broken grep
# cannot pass. Usage: ptx_pinned.sh NVCC ARCH SOURCE_DIR BINARY_DIR
set -euo pipefail
nvcc=$1 arch=$2 src=$3 bin=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-arch="sm_$arch" -use_fast_math -std=c++17 -ptx -I"$src/csrc" -I"$src/include" -I"$bin/include")
bad='\.ftz|\.approx|fma\.rn'

cat >"$work/control.cu" <<'CU'
__global__ void control(float *y, const float *x) { y[0] = x[0] * x[1] + x[2] / x[3]; y[1] = x[4] > 0.0f; }
CU
"$nvcc" "${flags[@]}" "$work/control.cu" -o "$work/control.ptx"
for what in '\.ftz' '\.approx' 'fma\.rn'; do
  grep -qE "$what" "$work/control.ptx" || { echo "control: no $what under -use_fast_math; the check is blind"; exit 1; }
done

status=0
for cu in "$src"/cuda/*.cu; do
  name=$(basename "$cu" .cu)
  "$nvcc" "${flags[@]}" "$cu" -o "$work/$name.ptx"
  hits=$(grep -cE "$bad" "$work/$name.ptx" || true)
  if [ "$hits" != 0 ]; then
    echo "$name.cu: $hits flushing/approximate/fused float instructions under -use_fast_math:"
    grep -nE "$bad" "$work/$name.ptx" | head -n 10
    status=1
  else
    echo "$name.cu: no .ftz, .approx or fma in $(grep -c . "$work/$name.ptx") PTX lines"
  fi
done
exit $status
