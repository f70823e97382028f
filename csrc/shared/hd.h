/* The qualifier that lets one function body serve gcc (CPU backend) and nvcc
 * (device code). Everything that must agree bit for bit between backends is
 * written once under it. */
#ifndef KILN_SHARED_HD_H
#define KILN_SHARED_HD_H

#include <stdint.h>

#if defined(__CUDACC__)
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD static inline
#endif

#endif
