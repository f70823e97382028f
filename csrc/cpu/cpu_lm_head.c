/* The CPU LM head of kiln_sample_hidden: logits = hidden x weight^T (+ bias)
 * as a blocked GEMM, vocabulary blocks in parallel.
 *
 * Every logit is summed in one fixed order, whatever the blocking or the
 * thread count: eight f32 partial sums, lane j taking the products of
 * h = j, j + 8, j + 16, ... in increasing h, combined as
 * ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)), then + bias. Products
 * are rounded to f32 before they are added (the build has no FMA
 * contraction); for f16 and bf16 inputs every product is exact in f32. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.h"
#include "fp_mode.h"
#include "../shared/numerics.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define KILN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define KILN_CLONES
#endif

#define LANES 8      /* partial sums per logit: the fixed summation order */
#define VOCAB_BLOCK 16 /* weight rows per task */
#define ROW_BLOCK 4  /* hidden rows per register tile */
#define H_CHUNK 512  /* hidden elements per tile, a multiple of LANES */

/* n elements of `src` (dtype d) from element `at`, as f32, zero-padded to
 * `pad` (a multiple of LANES) so the kernel needs no tail loop: a padded
 * lane adds 0 * 0 = +0, which changes no partial sum's value. */
static void load_f32(float *dst, const void *src, kiln_dtype d, int64_t at, int64_t n, int64_t pad)
{
    if (d == KILN_DTYPE_F32) {
        memcpy(dst, (const float *)src + at, (size_t)n * sizeof(float));
    } else if (d == KILN_DTYPE_BF16) {
        const uint16_t *s = (const uint16_t *)src + at;
        for (int64_t i = 0; i < n; ++i)
            dst[i] = kiln_bf16_to_f32(s[i]);
    } else {
        const uint16_t *s = (const uint16_t *)src + at;
        for (int64_t i = 0; i < n; ++i)
            dst[i] = kiln_f16_to_f32(s[i]);
    }
    for (int64_t i = n; i < pad; ++i)
        dst[i] = 0.0f;
}

/* acc[r][v][j] += x[r][h + j] * w[v][h + j] over the chunk, h ascending.
 * Register tiles of ROW_BLOCK rows x 4 vocabulary rows, each a LANES-wide
 * vector: one pass over the chunk loads each x and w vector once per tile.
 * The tile shape changes which products are in flight together, never the
 * order in which a lane adds its own. Unused rows hold zeros. */
KILN_CLONES
static void tile_kernel(float acc[ROW_BLOCK][VOCAB_BLOCK][LANES],
                        const float x[ROW_BLOCK][H_CHUNK], const float w[VOCAB_BLOCK][H_CHUNK],
                        int64_t len)
{
    for (int v0 = 0; v0 < VOCAB_BLOCK; v0 += 4) {
        float a[ROW_BLOCK][4][LANES];
        for (int r = 0; r < ROW_BLOCK; ++r)
            for (int v = 0; v < 4; ++v)
                for (int j = 0; j < LANES; ++j)
                    a[r][v][j] = acc[r][v0 + v][j];
        for (int64_t h = 0; h < len; h += LANES)
            for (int r = 0; r < ROW_BLOCK; ++r)
                for (int v = 0; v < 4; ++v)
                    for (int j = 0; j < LANES; ++j)
                        a[r][v][j] = a[r][v][j] + x[r][h + j] * w[v0 + v][h + j];
        for (int r = 0; r < ROW_BLOCK; ++r)
            for (int v = 0; v < 4; ++v)
                for (int j = 0; j < LANES; ++j)
                    acc[r][v0 + v][j] = a[r][v][j];
    }
}

static float combine(const float p[LANES])
{
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

void kiln_cpu_lm_head(const kiln_sampler *s, const kiln_lm_head *head, int64_t rows,
                      int64_t vocab, float *logits, uint16_t *logits_bf16)
{
    const int64_t H = head->hidden_size;
    const int64_t blocks = (vocab + VOCAB_BLOCK - 1) / VOCAB_BLOCK;
#pragma omp parallel num_threads(s->config.num_threads)
    {
        const kiln_fp_mode fp = kiln_fp_mode_enter();
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            /* 48 KiB of tiles per thread, on its stack: the call allocates nothing. */
            float w[VOCAB_BLOCK][H_CHUNK];
            float x[ROW_BLOCK][H_CHUNK];
            float acc[ROW_BLOCK][VOCAB_BLOCK][LANES];
            const int64_t v0 = blk * VOCAB_BLOCK;
            const int nv = (int)(vocab - v0 < VOCAB_BLOCK ? vocab - v0 : VOCAB_BLOCK);
            for (int64_t r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
                const int nr = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
                memset(acc, 0, sizeof acc);
                for (int64_t h0 = 0; h0 < H; h0 += H_CHUNK) {
                    const int64_t len = H - h0 < H_CHUNK ? H - h0 : H_CHUNK;
                    const int64_t pad = (len + LANES - 1) / LANES * LANES;
                    for (int v = 0; v < nv; ++v)
                        load_f32(w[v], head->weight, head->dtype, (v0 + v) * H + h0, len, pad);
                    for (int v = nv; v < VOCAB_BLOCK; ++v)
                        memset(w[v], 0, (size_t)pad * sizeof(float));
                    for (int r = 0; r < nr; ++r)
                        load_f32(x[r], head->hidden, head->dtype, (r0 + r) * head->hidden_stride + h0,
                                 len, pad);
                    for (int r = nr; r < ROW_BLOCK; ++r)
                        memset(x[r], 0, (size_t)pad * sizeof(float));
                    tile_kernel(acc, (const float(*)[H_CHUNK])x, (const float(*)[H_CHUNK])w, pad);
                }
                for (int r = 0; r < nr; ++r)
                    for (int v = 0; v < nv; ++v) {
                        float y = combine(acc[r][v]);
                        if (head->bias)
                            y = y + head->bias[v0 + v];
                        const int64_t at = (r0 + r) * vocab + v0 + v;
                        if (logits_bf16)
                            logits_bf16[at] = kiln_f32_to_bf16(y);
                        else
                            logits[at] = y;
                    }
            }
        }
        kiln_fp_mode_leave(fp);
    }
}
