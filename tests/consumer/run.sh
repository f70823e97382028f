#!/usr/bin/env bash
# Builds and runs main.c against an installed kiln, both ways a project would:
#   tests/consumer/run.sh PREFIX [WORKDIR]
# 1. CMake: find_package(kiln) -> kiln::kiln and kiln::kiln_static (CTest).
# 2. pkg-config: cc main.c $(pkg-config --cflags --libs kiln), and --static.
set -euo pipefail
prefix=$(cd "$1" && pwd)
work=${2:-$(mktemp -d)}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"

echo "-- find_package(kiln) from $prefix"
cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake"
ctest --test-dir "$work/cmake" --output-on-failure

echo "-- pkg-config kiln from $prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib64/pkgconfig:${PKG_CONFIG_PATH:-}"
libdir=$(realpath "$(pkg-config --variable=libdir kiln)")
echo "   cflags: $(pkg-config --cflags kiln)   libs: $(pkg-config --libs kiln)"
cc -std=c11 -Wall -Wextra -pedantic -Werror -o "$work/consumer_pc" "$here/main.c" \
   $(pkg-config --cflags --libs kiln) -Wl,-rpath,"$libdir"
"$work/consumer_pc"
if [ -f "$libdir/libkiln.a" ]; then
  echo "   static: $(pkg-config --static --libs kiln)"
  # -l:libkiln.a picks the archive over the .so found in the same directory.
  cc -std=c11 -Wall -Wextra -pedantic -Werror -o "$work/consumer_pc_static" "$here/main.c" \
     $(pkg-config --cflags kiln) -L"$libdir" -l:libkiln.a \
     $(pkg-config --static --libs kiln | sed 's/-lkiln//')
  "$work/consumer_pc_static"
fi
