# Sourced by the scripts: puts nvcc on PATH when the toolkit is in its usual
# place, so CMake finds it and builds the CUDA backend.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
