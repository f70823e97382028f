/* The floating-point environment kiln's CPU arithmetic needs: round to
 * nearest, no flush-to-zero, no denormals-are-zero, no trapping. The host
 * process may have changed any of these (PyTorch's set_flush_denormal(True)
 * sets FTZ and DAZ; a shared library built with -ffast-math sets them when
 * it loads), and the GPU never flushes, so every CPU entry point and every
 * OpenMP thread it runs on sets the mode on entry and restores the caller's
 * on exit. The control register is per thread, hence the per-thread calls. */
#ifndef KILN_CPU_FP_MODE_H
#define KILN_CPU_FP_MODE_H

#include <float.h>
#include <stdint.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "kiln needs float expressions evaluated in their own type (FLT_EVAL_METHOD == 0, e.g. SSE2 on x86)"
#endif
#if defined(__FAST_MATH__)
#error "kiln's CPU backend must not be compiled with -ffast-math: its results must equal the GPU's bit for bit"
#endif

typedef struct kiln_fp_mode {
    uint64_t saved;
} kiln_fp_mode;

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
/* MXCSR: FTZ bit 15, DAZ bit 6, rounding bits 13-14 (00: nearest),
 * exception masks bits 7-12 (set: no traps). */
#define KILN_MXCSR_CLEAR 0xE040u
#define KILN_MXCSR_MASKS 0x1F80u

static inline kiln_fp_mode kiln_fp_mode_enter(void)
{
    kiln_fp_mode m;
    const unsigned csr = _mm_getcsr();
    m.saved = csr;
    const unsigned want = (csr & ~KILN_MXCSR_CLEAR) | KILN_MXCSR_MASKS;
    if (want != csr)
        _mm_setcsr(want);
    return m;
}

static inline void kiln_fp_mode_leave(kiln_fp_mode m)
{
    if (_mm_getcsr() != (unsigned)m.saved)
        _mm_setcsr((unsigned)m.saved);
}
#elif defined(__aarch64__)
/* FPCR: FZ bit 24, rounding bits 22-23 (00: nearest), FZ16 bit 19, trap
 * enables bits 8-12 and 15. */
#define KILN_FPCR_CLEAR ((1u << 24) | (3u << 22) | (1u << 19) | 0x9F00u)

static inline kiln_fp_mode kiln_fp_mode_enter(void)
{
    kiln_fp_mode m;
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    m.saved = fpcr;
    const uint64_t want = fpcr & ~(uint64_t)KILN_FPCR_CLEAR;
    if (want != fpcr)
        __asm__ __volatile__("msr fpcr, %0" : : "r"(want));
    return m;
}

static inline void kiln_fp_mode_leave(kiln_fp_mode m)
{
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    if (fpcr != m.saved)
        __asm__ __volatile__("msr fpcr, %0" : : "r"(m.saved));
}
#else
/* Other targets: IEEE defaults are assumed (nothing to set). */
static inline kiln_fp_mode kiln_fp_mode_enter(void)
{
    kiln_fp_mode m = { 0 };
    return m;
}

static inline void kiln_fp_mode_leave(kiln_fp_mode m)
{
    (void)m;
}
#endif

#endif
