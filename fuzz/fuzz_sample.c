/* libFuzzer target over kiln's public API: kiln_sampler_create,
 * kiln_sample, kiln_score, kiln_verify_drafts and kiln_best_of_n.
 *
 * The input bytes are decoded front to back into one call: sampler limits
 * (sane, or raw 64-bit values), shapes, strides, dtype, struct sizes, every
 * sampling parameter (per-row array or all-rows scalar, hostile values
 * included), token histories (valid and corrupt), logits as raw bits or from
 * a palette of NaN / +-inf / denormal / huge values and all-equal rows, which
 * outputs are requested, and a few deliberately wrong pointers (NULL,
 * misaligned, overlapping). Bytes past the end read as zero, so every input
 * is some call; fuzz/make_corpus.py writes seeds in the same layout.
 * The fields added to kiln.h later (token mask, logit bias, dynatemp,
 * max_top_logprobs, the top-N / rank / entropy / temperature outputs, a
 * kiln_score call and a kiln_verify_drafts call on the same batch) come
 * from an extension tagged "KX" at
 * the end of a sample case (see decode_ext), so every older input still
 * decodes as it did.
 *
 * Each call is judged against docs/semantics.md, not just "no crash":
 *  - an independent model of section 12 lists the statuses the input may
 *    produce: a clean input must succeed, a bad one must fail with one of
 *    them, and kiln_last_error() is "" exactly after a success;
 *  - on failure nothing is written: outputs and workspace keep their poison,
 *    inputs are unchanged;
 *  - on success every row agrees with a model of its validity (section 2):
 *    tokens in [0, V) or all -1, valid flags, kept counts, the kept set a
 *    canonical prefix holding the top token, probabilities finite, monotone
 *    in the logit and summing to 1, log-probabilities consistent with them;
 *    unrequested outputs and the padding between probs rows are untouched;
 *    masked tokens never drawn and with probability 0, a row whose mask
 *    allows nothing invalid; raw top-N the canonical prefix (-1 / -inf past
 *    V), final top-N the kept prefix (-1 / -inf past the kept count), both
 *    byte-consistent with the draws' log-probabilities; ranks canonical
 *    positions (0 if invalid); entropies finite, >= 0 and at most ln V (NaN
 *    if invalid); temperatures T bit for bit without dynatemp, within
 *    [max(0, T - d), T + d] with it;
 *  - kiln_score (section 18): its own status model, nothing written on
 *    failure, targets' ranks and log-probabilities, raw top-N and entropy,
 *    and the same bytes as kiln_sample's raw outputs for the same row;
 *  - kiln_verify_drafts (section 19): its own status model, outputs
 *    untouched on failure, accepted drafts then one emitted token the mask
 *    allows then -1, and with K = 0 kiln_sample's token and logprob;
 *  - batch invariance (section 13): every row sampled alone (its mask words,
 *    bias entries and dynatemp values packed), by a second sampler with
 *    another algorithm and thread count, gives the same bytes in every
 *    output, the extension's included.
 *
 * KILN_FUZZ_BACKEND=cuda (a build with the CUDA runtime, on a GPU): every
 * buffer lives in device memory, per-row faults make rows invalid instead of
 * failing the call (section 12, last paragraph), and every row is also
 * sampled alone on the CPU backend and compared byte for byte. The
 * extension is not decoded in this mode yet (see the sample case's
 * decoder).
 *
 * A broken invariant prints what and where, then abort()s: libFuzzer keeps
 * the input as a crash, fuzz/replay.c exits non-zero. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

#ifdef KILN_FUZZ_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Calls whose workspace would exceed this are not made: the fuzzer is after
 * logic, not allocation size (raw configurations can ask for terabytes). */
#define WORKSPACE_CAP ((size_t)64 << 20)
/* Shapes the decoder produces from sane limits. */
#define MAX_ROWS 8
#define MAX_VOCAB 2048
/* Now and then a vocabulary past 16384, where the CPU select path samples
 * every 16th key to estimate its threshold (and must recover when an
 * adversarial row misleads the estimate). */
#define BIG_VOCAB 16384
#define MAX_BIG_VOCAB (BIG_VOCAB + 4096)
#define MAX_N 4
#define MAX_HIST 12

/* ------------------------------------------------------------ failures */

struct fuzz_case;
static const struct fuzz_case *g_case; /* described when an invariant breaks */
static void describe_case(const struct fuzz_case *c);

static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kiln fuzz: invariant broken at fuzz_sample.c:%d: ", line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  kiln_last_error(): \"%s\"\n", kiln_last_error());
    if (g_case)
        describe_case(g_case);
    abort();
}
#define FAIL(...) fail_at(__LINE__, __VA_ARGS__)
#define ENSURE(cond, ...)      \
    do {                       \
        if (!(cond))           \
            FAIL(__VA_ARGS__); \
    } while (0)

#define BIT(st) (1u << (unsigned)(st))

static void count(unsigned long *table, kiln_status st);
static void count_row(int valid, int greedy);
static void count_alone(void);
static void count_ext(void);
static unsigned long *stats_table(int which);

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static uint32_t f2u(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int is_finite(float x)
{
    return (f2u(x) & 0x7F800000u) != 0x7F800000u;
}

/* Loads and stores through memcpy: the fuzzer misaligns buffers on purpose,
 * and the model still reads them. */
static int64_t ld_i64(const void *p, int64_t i)
{
    int64_t v;
    memcpy(&v, (const unsigned char *)p + 8 * i, 8);
    return v;
}

static uint64_t ld_u64(const void *p, int64_t i)
{
    uint64_t v;
    memcpy(&v, (const unsigned char *)p + 8 * i, 8);
    return v;
}

static int32_t ld_i32(const void *p, int64_t i)
{
    int32_t v;
    memcpy(&v, (const unsigned char *)p + 4 * i, 4);
    return v;
}

static float ld_f32(const void *p, int64_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)p + 4 * i, 4);
    return v;
}

/* --------------------------------------------------------------- input */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static uint16_t u16(reader *r)
{
    uint16_t lo = u8(r);
    return (uint16_t)(lo | (uint16_t)(u8(r) << 8));
}

static uint32_t u32(reader *r)
{
    uint32_t lo = u16(r);
    return lo | (uint32_t)u16(r) << 16;
}

static uint64_t u64(reader *r)
{
    uint64_t lo = u32(r);
    return lo | (uint64_t)u32(r) << 32;
}

/* binary32 bit patterns worth trying anywhere a float goes. */
static const uint32_t palette[] = {
    0x00000000u, 0x80000000u, 0x3F800000u, 0xBF800000u, 0x3F000000u, 0x40000000u, /* 0 -0 1 -1 .5 2 */
    0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FFFFFFFu,                         /* NaNs */
    0x7F800000u, 0xFF800000u, 0x7F7FFFFFu, 0xFF7FFFFFu,                         /* +-inf, +-FLT_MAX */
    0x00800000u, 0x80800000u, 0x00000001u, 0x80000001u, 0x007FFFFFu, 0x807FFFFFu, /* FLT_MIN, denormals */
    0x3F800001u, 0x3F7FFFFFu, 0x0DA24260u, 0x7149F2CAu,                         /* 1+ulp 1-ulp 1e-30 1e30 */
    0x42C80000u, 0xC2C80000u, 0x42B170A4u, 0xC2B170A4u,                         /* +-100 +-88.72 */
    0x42200000u, 0xC2200000u, 0x42800000u, 0xC2800000u,                         /* +-40 +-64 */
    0x4B800000u, 0xCB800000u, 0x33D6BF95u, 0x3A83126Fu,                         /* +-2^24 1e-7 1e-3 */
    0x3F333333u, 0x3F666666u, 0x3DCCCCCDu, 0x40400000u,                         /* .7 .9 .1 3 */
};
#define NPALETTE (sizeof palette / sizeof palette[0])

static float palette_or_raw(reader *r)
{
    uint8_t s = u8(r);
    if (s < NPALETTE)
        return u2f(palette[s]);
    if (s < 64)
        return u2f(u32(r));
    return (float)((int)s - 160) * 0.125f; /* [-12, 12] in eighths: ties galore */
}

enum { P_TEMP, P_TOPK, P_TOPP, P_MINP, P_REP, P_PRES, P_FREQ, P_SEED, P_OFFSET, NPARAM };

/* A float parameter: hostile values from the palette, raw bits, or a
 * typical value for that parameter. */
static float param_f32(reader *r, int which)
{
    uint8_t s = u8(r);
    if (s < NPALETTE)
        return u2f(palette[s]);
    if (s < 64)
        return u2f(u32(r));
    const float t = (float)(s - 64) / 191.0f; /* [0, 1] */
    switch (which) {
    case P_TEMP: return t * 3.0f;
    case P_TOPP: return t;
    case P_MINP: return t * 0.5f;
    case P_REP: return 0.5f + t;
    default: return t * 4.0f - 2.0f; /* presence, frequency */
    }
}

static int32_t param_top_k(reader *r, int64_t V)
{
    uint8_t s = u8(r);
    if (s < 200)
        return (int32_t)(s % (V + 2));
    switch (s % 8) {
    case 0: return -1;
    case 1: return INT32_MIN;
    case 2: return INT32_MAX;
    case 3: return (int32_t)(V - 1);
    case 4: return (int32_t)V;
    case 5: return 1;
    case 6: return (int32_t)(V + 1);
    default: return (int32_t)u32(r);
    }
}

static uint64_t param_u64(reader *r)
{
    uint8_t s = u8(r);
    return s < 128 ? s : u64(r);
}

/* ----------------------------------------------------- half precision */

/* f32 -> binary16 by truncation (the encoder need not round; the model
 * decodes whatever bits were written). */
static uint16_t f32_to_f16(float x)
{
    uint32_t u = f2u(x), sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xFFu, m = u & 0x7FFFFFu;
    if (e == 0xFFu)
        return (uint16_t)(sign | 0x7C00u | (m ? 0x200u | (m >> 13) : 0u));
    int he = (int)e - 127 + 15;
    if (he >= 31)
        return (uint16_t)(sign | 0x7C00u);
    if (he <= 0) {
        if (he < -10)
            return (uint16_t)sign;
        return (uint16_t)(sign | ((m | 0x800000u) >> (14 - he)));
    }
    return (uint16_t)(sign | (uint32_t)he << 10 | (m >> 13));
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1Fu)
        return u2f(sign | 0x7F800000u | (m << 13));
    if (e)
        return u2f(sign | (e + 112u) << 23 | (m << 13));
    float v = (float)m * 0x1p-24f; /* exact */
    return sign ? -v : v;
}

static uint16_t f32_to_bf16(float x)
{
    return (uint16_t)(f2u(x) >> 16);
}

static float bf16_to_f32(uint16_t h)
{
    return u2f((uint32_t)h << 16);
}

/* --------------------------------------------------------------- memory */

/* One buffer of the call: a host copy (always) and, for the CUDA backend, a
 * device copy. `shift` bytes in front make the pointer kiln sees misaligned
 * on purpose; host allocations are exact so AddressSanitizer sees any byte
 * read or written past the end. */
typedef struct mem {
    unsigned char *base;
    unsigned char *dbase;
    size_t size, shift;
    int on_dev;
} mem;

#ifdef KILN_FUZZ_HAVE_CUDART
static void cuda_ok(cudaError_t err, const char *what)
{
    if (err != cudaSuccess)
        FAIL("%s: %s", what, cudaGetErrorString(err));
}

static unsigned char *dev_alloc(size_t bytes)
{
    void *p = NULL;
    cuda_ok(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
    return (unsigned char *)p;
}

static void dev_free(void *p)
{
    cudaFree(p);
}

static void dev_copy(void *dst, const void *src, size_t bytes, int to_dev)
{
    if (bytes)
        cuda_ok(cudaMemcpy(dst, src, bytes, to_dev ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost),
                "cudaMemcpy");
}

static void dev_sync(void)
{
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize after kiln");
}
#else
static unsigned char *dev_alloc(size_t bytes)
{
    (void)bytes;
    FAIL("built without the CUDA runtime");
    return NULL;
}

static void dev_free(void *p)
{
    (void)p;
}

static void dev_copy(void *dst, const void *src, size_t bytes, int to_dev)
{
    (void)dst;
    (void)src;
    (void)bytes;
    (void)to_dev;
}

static void dev_sync(void)
{
}
#endif

static void mem_new(mem *m, size_t size, size_t shift, int on_dev)
{
    m->size = size;
    m->shift = shift;
    m->on_dev = on_dev;
    m->base = (unsigned char *)xmalloc(size + shift);
    memset(m->base, 0, size + shift);
    m->dbase = on_dev ? dev_alloc(size + shift) : NULL;
}

static unsigned char *mem_host(const mem *m)
{
    return m->base + m->shift;
}

/* The address kiln is given. */
static void *mem_arg(const mem *m)
{
    return (m->on_dev ? m->dbase : m->base) + m->shift;
}

static void mem_push(mem *m)
{
    if (m->on_dev)
        dev_copy(m->dbase, m->base, m->size + m->shift, 1);
}

static void mem_pull(mem *m)
{
    if (m->on_dev)
        dev_copy(m->base, m->dbase, m->size + m->shift, 0);
}

static void mem_free(mem *m)
{
    free(m->base);
    if (m->dbase)
        dev_free(m->dbase);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------- struct sizes */

/* The sizes a caller compiled against an older header may pass: every prefix
 * that ends where a field starts, and the whole struct (kiln.h: fields are
 * only appended; section 12: any other size is refused). */
#define END(T, f) offsetof(T, f)
static const size_t config_sizes[] = {
    END(kiln_config, backend), END(kiln_config, device), END(kiln_config, max_batch),
    END(kiln_config, max_vocab), END(kiln_config, max_samples), END(kiln_config, max_history),
    END(kiln_config, num_threads), END(kiln_config, algorithm), END(kiln_config, max_hidden),
    sizeof(kiln_config)
};
static const size_t batch_sizes[] = {
    END(kiln_batch, dtype), END(kiln_batch, logits), END(kiln_batch, num_rows),
    END(kiln_batch, vocab_size), END(kiln_batch, row_stride), END(kiln_batch, num_samples),
    END(kiln_batch, history_offsets), END(kiln_batch, history_ids),
    END(kiln_batch, prompt_lengths), sizeof(kiln_batch)
};
static const size_t params_sizes[] = {
    END(kiln_sampling_params, temperature), END(kiln_sampling_params, temperature_all),
    END(kiln_sampling_params, top_k), END(kiln_sampling_params, top_k_all),
    END(kiln_sampling_params, top_p), END(kiln_sampling_params, top_p_all),
    END(kiln_sampling_params, min_p), END(kiln_sampling_params, min_p_all),
    END(kiln_sampling_params, repetition_penalty),
    END(kiln_sampling_params, repetition_penalty_all),
    END(kiln_sampling_params, presence_penalty), END(kiln_sampling_params, presence_penalty_all),
    END(kiln_sampling_params, frequency_penalty),
    END(kiln_sampling_params, frequency_penalty_all), END(kiln_sampling_params, seed),
    END(kiln_sampling_params, seed_all), END(kiln_sampling_params, offset),
    END(kiln_sampling_params, offset_all), sizeof(kiln_sampling_params)
};
static const size_t outputs_sizes[] = {
    END(kiln_outputs, tokens), END(kiln_outputs, logprobs), END(kiln_outputs, raw_logprobs),
    END(kiln_outputs, probs), END(kiln_outputs, probs_row_stride),
    END(kiln_outputs, kept_counts), END(kiln_outputs, valid), sizeof(kiln_outputs)
};
/* The lists above are what the front of the layout picks from (they predate
 * the mask, bias, dynatemp and top-N fields, and old inputs must decode as
 * before); kiln knows every prefix below, which the extension at the end of
 * the layout can pick. */
static const size_t config_known[] = {
    END(kiln_config, backend), END(kiln_config, device), END(kiln_config, max_batch),
    END(kiln_config, max_vocab), END(kiln_config, max_samples), END(kiln_config, max_history),
    END(kiln_config, num_threads), END(kiln_config, algorithm), END(kiln_config, max_hidden),
    END(kiln_config, max_top_logprobs), sizeof(kiln_config)
};
static const size_t batch_known[] = {
    END(kiln_batch, dtype), END(kiln_batch, logits), END(kiln_batch, num_rows),
    END(kiln_batch, vocab_size), END(kiln_batch, row_stride), END(kiln_batch, num_samples),
    END(kiln_batch, history_offsets), END(kiln_batch, history_ids),
    END(kiln_batch, prompt_lengths), END(kiln_batch, allowed_mask),
    END(kiln_batch, allowed_mask_stride), END(kiln_batch, logit_bias_offsets),
    END(kiln_batch, logit_bias_ids), END(kiln_batch, logit_bias_values), sizeof(kiln_batch)
};
static const size_t params_known[] = {
    END(kiln_sampling_params, temperature), END(kiln_sampling_params, temperature_all),
    END(kiln_sampling_params, top_k), END(kiln_sampling_params, top_k_all),
    END(kiln_sampling_params, top_p), END(kiln_sampling_params, top_p_all),
    END(kiln_sampling_params, min_p), END(kiln_sampling_params, min_p_all),
    END(kiln_sampling_params, repetition_penalty),
    END(kiln_sampling_params, repetition_penalty_all),
    END(kiln_sampling_params, presence_penalty), END(kiln_sampling_params, presence_penalty_all),
    END(kiln_sampling_params, frequency_penalty),
    END(kiln_sampling_params, frequency_penalty_all), END(kiln_sampling_params, seed),
    END(kiln_sampling_params, seed_all), END(kiln_sampling_params, offset),
    END(kiln_sampling_params, offset_all), END(kiln_sampling_params, dynatemp_range),
    END(kiln_sampling_params, dynatemp_range_all), END(kiln_sampling_params, dynatemp_exponent),
    END(kiln_sampling_params, dynatemp_exponent_all), sizeof(kiln_sampling_params)
};
static const size_t outputs_known[] = {
    END(kiln_outputs, tokens), END(kiln_outputs, logprobs), END(kiln_outputs, raw_logprobs),
    END(kiln_outputs, probs), END(kiln_outputs, probs_row_stride),
    END(kiln_outputs, kept_counts), END(kiln_outputs, valid), END(kiln_outputs, num_top_logprobs),
    END(kiln_outputs, raw_top_ids), END(kiln_outputs, raw_top_logprobs),
    END(kiln_outputs, final_top_ids), END(kiln_outputs, final_top_logprobs),
    END(kiln_outputs, raw_ranks), END(kiln_outputs, entropy), END(kiln_outputs, raw_entropy),
    END(kiln_outputs, temperatures), sizeof(kiln_outputs)
};
static const size_t score_outputs_known[] = {
    END(kiln_score_outputs, logprobs), END(kiln_score_outputs, ranks),
    END(kiln_score_outputs, num_top_logprobs), END(kiln_score_outputs, top_ids),
    END(kiln_score_outputs, top_logprobs), END(kiln_score_outputs, entropy),
    END(kiln_score_outputs, valid), sizeof(kiln_score_outputs)
};
#undef END
#define COUNT(a) (sizeof a / sizeof a[0])

static size_t decode_struct_size(reader *r, const size_t *sizes, size_t count)
{
    const size_t full = sizes[count - 1];
    uint8_t s = u8(r);
    if (s < 248)
        return full;
    switch (s) {
    case 248: case 249: case 250: case 251: return sizes[u8(r) % count];
    case 252: return 0;
    case 253: return full + 8;
    case 254: return full - 4;
    default: return (size_t)u64(r);
    }
}

static int size_known(size_t given, const size_t *sizes, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        if (given == sizes[i])
            return 1;
    return 0;
}

/* What the caller hands over: a heap block of exactly `given` bytes when
 * that is a size kiln knows (so reading past it is a heap overflow), else
 * the whole struct with a wrong struct_size. */
static void *pass_struct(const void *full, size_t full_size, size_t given, int known)
{
    const size_t bytes = known ? given : full_size;
    unsigned char *p = (unsigned char *)xmalloc(bytes);
    memcpy(p, full, bytes);
    memcpy(p, &given, sizeof given);
    return p;
}

/* What kiln should see: the defaults, overwritten by the caller's prefix. */
static void effective_struct(void *eff, const void *full, size_t given, int known)
{
    if (known)
        memcpy(eff, full, given);
}

/* ------------------------------------------------------------ the case */

enum {
    M_LOGITS, M_OFF, M_IDS, M_PROMPT,
    M_TEMP, M_TOPK, M_TOPP, M_MINP, M_REP, M_PRES, M_FREQ, M_SEED, M_OFFSET,
    M_TOKENS, M_LOGPROBS, M_RAW, M_PROBS, M_KEPT, M_VALID, M_WS,
    /* the extension: inputs, then kiln_sample's outputs, then kiln_score's */
    M_MASK, M_BOFF, M_BIDS, M_BVALS, M_DTR, M_DTE, M_TGT,
    M_RTID, M_RTLP, M_FTID, M_FTLP, M_RANKS, M_ENT, M_RENT, M_TEMPS,
    M_SLP, M_SRANK, M_STID, M_STLP, M_SENT, M_SVALID,
    /* kiln_verify_drafts: inputs, outputs */
    M_DIDS, M_DNUM, M_DPROBS, M_VTOK, M_VACC, M_VLP, M_VVALID,
    NMEM
};

static const char *const mem_names[NMEM] = {
    "logits", "history_offsets", "history_ids", "prompt_lengths",
    "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty",
    "frequency_penalty", "seed", "offset",
    "tokens", "logprobs", "raw_logprobs", "probs", "kept_counts", "valid", "workspace",
    "allowed_mask", "logit_bias_offsets", "logit_bias_ids", "logit_bias_values",
    "dynatemp_range", "dynatemp_exponent", "targets",
    "raw_top_ids", "raw_top_logprobs", "final_top_ids", "final_top_logprobs", "raw_ranks",
    "entropy", "raw_entropy", "temperatures",
    "score logprobs", "score ranks", "score top_ids", "score top_logprobs", "score entropy",
    "score valid", "draft_ids", "num_drafts", "draft_probs", "verify tokens",
    "verify num_accepted", "verify logprobs", "verify valid"
};

/* kiln_sample's outputs (and the workspace), and kiln_score's. */
static int is_sample_output(int i)
{
    return (i >= M_TOKENS && i <= M_WS) || (i >= M_RTID && i <= M_TEMPS);
}

static int is_score_output(int i)
{
    return i == M_WS || (i >= M_SLP && i <= M_SVALID);
}

static int is_verify_output(int i)
{
    return i == M_WS || i >= M_VTOK;
}

/* Deliberate mistakes a caller can make with pointers. */
enum {
    MOD_NULL_SAMPLER, MOD_NULL_BATCH, MOD_NULL_PARAMS, MOD_NULL_OUTPUTS, MOD_NULL_LOGITS,
    MOD_NULL_TOKENS, MOD_NULL_WS, MOD_NULL_IDS, MOD_NULL_OFFSETS, MOD_MISALIGN, MOD_OVERLAP,
    MOD_SHARE_INPUT, NMOD
};

typedef struct hostile {
    int kind;
    uint8_t a, b, c;
} hostile;

typedef struct fuzz_case {
    int cuda; /* the sampler is a CUDA one: buffers live on the device */
    kiln_config cfg;
    kiln_sampler *s;
    size_t ws_need;

    /* What the buffers are allocated for. */
    int64_t rows, vocab;
    int32_t n;
    kiln_dtype dtype; /* a valid dtype even when the call passes a bad one */
    size_t esize;
    int64_t stride, pstride; /* elements, as allocated */
    int64_t hist_base;       /* junk ids before row 0's history */
    mem m[NMEM];

    /* The call as passed (maybe hostile) and as kiln should read it. */
    kiln_sampler *sampler_arg;
    kiln_batch fb;
    kiln_sampling_params fp;
    kiln_outputs fo;
    size_t b_given, p_given, o_given;
    int b_known, p_known, o_known;
    void *b_arg, *p_arg, *o_arg;
    kiln_batch eb;
    kiln_sampling_params ep;
    kiln_outputs eo;
    void *ws_arg;
    size_t ws_size_arg;
    int aliased_output; /* M_* of an output aimed into another buffer, or 0 */

    /* The extension (kiln_score): the second call of the case. */
    int ext;           /* the input carries the extension */
    int score_on;
    int score_params_null;
    const int32_t *targets;
    int32_t num_targets, tgt_k; /* as passed; as allocated per row */
    kiln_score_outputs fso, eso;
    size_t so_given;
    int so_known;
    void *so_arg;
    int64_t ext_mask_stride;

    /* The extension (kiln_verify_drafts): the third call of the case. */
    int verify_on;
    int64_t vrows;            /* requests, as allocated */
    int32_t vK, vK_alloc;     /* max_drafts as passed; as allocated */
    int64_t vstride_alloc;    /* draft_probs stride as allocated */
    kiln_batch vfb, veb;
    void *vb_arg;
    kiln_drafts fd;
    size_t d_given;
    int d_known;
    void *d_arg;
    kiln_verify_outputs vo;
    void *vo_arg;
} fuzz_case;

/* Host copy of the bytes at a pointer kiln was given (device or host). */
static const void *host_of(const fuzz_case *c, const void *p)
{
    if (!p)
        return NULL;
    const uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < NMEM; ++i) {
        const mem *m = &c->m[i];
        if (!m->base)
            continue;
        const uintptr_t lo = (uintptr_t)mem_arg(m);
        if (a >= lo && a < lo + (m->size ? m->size : 1))
            return mem_host(m) + (a - lo);
    }
    FAIL("fuzz model: pointer %p is not one of the case's buffers", p);
    return NULL;
}

/* ------------------------------------------------------------ the model */

/* One row's parameters as the caller set them (per-row array or scalar). */
typedef struct row_params {
    float temperature, top_p, min_p, rep, pres, freq;
    int32_t top_k;
    uint64_t seed, offset;
    float dt_range, dt_exp;
} row_params;

static row_params params_of_row(const fuzz_case *c, int64_t b)
{
    const kiln_sampling_params *p = &c->ep;
#define PICK(arr, all, ld) (arr ? ld(host_of(c, arr), b) : all)
    row_params r;
    r.temperature = PICK(p->temperature, p->temperature_all, ld_f32);
    r.top_k = PICK(p->top_k, p->top_k_all, ld_i32);
    r.top_p = PICK(p->top_p, p->top_p_all, ld_f32);
    r.min_p = PICK(p->min_p, p->min_p_all, ld_f32);
    r.rep = PICK(p->repetition_penalty, p->repetition_penalty_all, ld_f32);
    r.pres = PICK(p->presence_penalty, p->presence_penalty_all, ld_f32);
    r.freq = PICK(p->frequency_penalty, p->frequency_penalty_all, ld_f32);
    r.seed = PICK(p->seed, p->seed_all, ld_u64);
    r.offset = PICK(p->offset, p->offset_all, ld_u64);
    r.dt_range = PICK(p->dynatemp_range, p->dynatemp_range_all, ld_f32);
    r.dt_exp = PICK(p->dynatemp_exponent, p->dynatemp_exponent_all, ld_f32);
#undef PICK
    return r;
}

/* kiln.h's rules for a row's values; 0 if they are all valid. */
static int params_bad(const row_params *r)
{
    return !(r->temperature >= 0.0f && is_finite(r->temperature)) ||
           !(r->top_p > 0.0f && r->top_p <= 1.0f) || !(r->min_p >= 0.0f && r->min_p <= 1.0f) ||
           !(r->rep > 0.0f && is_finite(r->rep)) || !is_finite(r->pres) || !is_finite(r->freq) ||
           !(r->dt_range >= 0.0f && is_finite(r->dt_range)) ||
           !(r->dt_exp > 0.0f && is_finite(r->dt_exp));
}

/* Only the penalties (what kiln_score reads of its params). */
static int penalties_bad(const row_params *r)
{
    return !(r->rep > 0.0f && is_finite(r->rep)) || !is_finite(r->pres) || !is_finite(r->freq);
}

/* Row b's logit bias entries [lo, hi), and whether the structure or a value
 * breaks a rule (CPU: checked before anything runs). Only rows up to the
 * first decreasing offset are read, as kiln reads them. */
typedef struct row_bias {
    int64_t lo, hi;
    int fault;
} row_bias;

static row_bias bias_of_row(const fuzz_case *c, int64_t b)
{
    row_bias rb = { 0, 0, 0 };
    const kiln_batch *bt = &c->eb;
    if (!bt->logit_bias_offsets)
        return rb;
    const void *off = host_of(c, bt->logit_bias_offsets);
    if (ld_i64(off, 0) < 0) {
        rb.fault = 1;
        return rb;
    }
    for (int64_t i = 0; i <= b; ++i)
        if (ld_i64(off, i + 1) < ld_i64(off, i)) {
            rb.fault = 1;
            return rb;
        }
    rb.lo = ld_i64(off, b);
    rb.hi = ld_i64(off, b + 1);
    if (!bt->logit_bias_ids || !bt->logit_bias_values)
        return rb;
    ENSURE((uint64_t)rb.hi <= c->m[M_BIDS].size / 4 && (uint64_t)rb.hi <= c->m[M_BVALS].size / 4,
           "fuzz model: row %lld bias outside the arrays", (long long)b);
    const void *ids = host_of(c, bt->logit_bias_ids), *vals = host_of(c, bt->logit_bias_values);
    for (int64_t i = rb.lo; i < rb.hi; ++i)
        if (ld_i32(ids, i) < 0 || ld_i32(ids, i) >= bt->vocab_size || !is_finite(ld_f32(vals, i)))
            rb.fault = 1;
    return rb;
}

/* The bias of every row is well formed (the CPU check of the whole CSR). */
static int bias_ok(const fuzz_case *c)
{
    for (int64_t b = 0; b < c->eb.num_rows; ++b)
        if (bias_of_row(c, b).fault)
            return 0;
    return 1;
}

/* Token t of row b is allowed by the mask (or there is no mask). */
static int mask_allows(const fuzz_case *c, int64_t b, int64_t t)
{
    const kiln_batch *bt = &c->eb;
    if (!bt->allowed_mask)
        return 1;
    const int64_t words = (bt->vocab_size + 31) / 32;
    const int64_t ms = bt->allowed_mask_stride ? bt->allowed_mask_stride : words;
    const uint32_t w = (uint32_t)ld_i32(host_of(c, bt->allowed_mask), b * ms + t / 32);
    return (w >> (t % 32)) & 1u;
}

/* Row b's history as [h0, h0 + len) of the ids and its prompt length, and
 * whether the row breaks a rule (decreasing or negative offsets, too long,
 * a prompt length or an id out of range). */
typedef struct row_history {
    int64_t h0, len, prompt;
    int fault;          /* any of the below */
    int fault_shape;    /* longer than max_history */
    int fault_param;    /* offsets, prompt length or ids */
} row_history;

static row_history history_of_row(const fuzz_case *c, int64_t b)
{
    row_history h = { 0, 0, 0, 0, 0, 0 };
    const kiln_batch *bt = &c->eb;
    if (!bt->history_offsets)
        return h;
    /* Per row, as the device checks it; row 0 covers a negative
     * history_offsets[0]. */
    const void *off = host_of(c, bt->history_offsets);
    const int64_t lo = ld_i64(off, b), hi = ld_i64(off, b + 1);
    const __int128 len = (__int128)hi - lo;
    if (lo < 0 || len < 0) {
        h.fault = h.fault_param = 1;
        return h;
    }
    if (len > c->cfg.max_history) {
        h.fault = h.fault_shape = 1;
        return h;
    }
    h.h0 = lo;
    h.len = (int64_t)len;
    if (bt->prompt_lengths) {
        h.prompt = ld_i32(host_of(c, bt->prompt_lengths), b);
        if (h.prompt < 0 || h.prompt > h.len) {
            h.fault = h.fault_param = 1;
            return h;
        }
    }
    if (!bt->history_ids)
        return h;
    const size_t have = c->m[M_IDS].size / 4;
    ENSURE((uint64_t)(h.h0 + h.len) <= have, "fuzz model: row %lld history outside the ids",
           (long long)b);
    const void *ids = host_of(c, bt->history_ids);
    for (int64_t i = h.h0; i < h.h0 + h.len; ++i)
        if (ld_i32(ids, i) < 0 || ld_i32(ids, i) >= bt->vocab_size)
            h.fault = h.fault_param = 1;
    return h;
}

typedef struct region {
    int which; /* mem index, or -1 */
    uintptr_t begin, end;
    int is_output;
} region;

static int add_region(region *list, int n, int which, const void *p, unsigned __int128 bytes,
                      int is_output)
{
    if (!p || bytes == 0)
        return n;
    list[n].which = which;
    list[n].begin = (uintptr_t)p;
    list[n].end = (uintptr_t)p + (uintptr_t)bytes;
    list[n].is_output = is_output;
    return n + 1;
}

/* Every buffer of a call with valid shapes, with the extent section 12
 * counts for it. The history ids only for the CPU backend: with CUDA the
 * host cannot know their number. */
static int call_regions(const fuzz_case *c, region *list, int score)
{
    const kiln_batch *bt = &c->eb;
    const kiln_sampling_params *p = &c->ep;
    const kiln_outputs *o = &c->eo;
    const unsigned __int128 B = (uint64_t)bt->num_rows, V = (uint64_t)bt->vocab_size;
    /* rows of logits (and of the mask): K + 1 per request for kiln_verify_drafts */
    const unsigned __int128 LR = score == 2 ? B * (uint64_t)(c->fd.max_drafts + 1) : B;
    const unsigned __int128 draws = B * (uint64_t)bt->num_samples;
    const uint64_t rs = (uint64_t)(bt->row_stride ? bt->row_stride : bt->vocab_size);
    const uint64_t ps = (uint64_t)(o->probs_row_stride ? o->probs_row_stride : bt->vocab_size);
    const size_t es = bt->dtype == KILN_DTYPE_F32 ? 4 : 2;
    int n = 0;
    n = add_region(list, n, M_LOGITS, bt->logits, ((LR - 1) * rs + V) * es, 0);
    if (bt->history_offsets) {
        n = add_region(list, n, M_OFF, bt->history_offsets, (B + 1) * 8, 0);
        if (!c->cuda && bt->history_ids) {
            const int64_t last = ld_i64(host_of(c, bt->history_offsets), (int64_t)B);
            n = add_region(list, n, M_IDS, bt->history_ids, (uint64_t)(last > 0 ? last : 0) * 4u,
                           0);
        }
    }
    n = add_region(list, n, M_PROMPT, bt->prompt_lengths, B * 4, 0);
    n = add_region(list, n, M_TEMP, p->temperature, B * 4, 0);
    n = add_region(list, n, M_TOPK, p->top_k, B * 4, 0);
    n = add_region(list, n, M_TOPP, p->top_p, B * 4, 0);
    n = add_region(list, n, M_MINP, p->min_p, B * 4, 0);
    n = add_region(list, n, M_REP, p->repetition_penalty, B * 4, 0);
    n = add_region(list, n, M_PRES, p->presence_penalty, B * 4, 0);
    n = add_region(list, n, M_FREQ, p->frequency_penalty, B * 4, 0);
    n = add_region(list, n, M_SEED, p->seed, B * 8, 0);
    n = add_region(list, n, M_OFFSET, p->offset, B * 8, 0);
    n = add_region(list, n, M_DTR, p->dynatemp_range, B * 4, 0);
    n = add_region(list, n, M_DTE, p->dynatemp_exponent, B * 4, 0);
    if (bt->allowed_mask) {
        const uint64_t words = (uint64_t)(bt->vocab_size + 31) / 32;
        const uint64_t ms = bt->allowed_mask_stride ? (uint64_t)bt->allowed_mask_stride : words;
        n = add_region(list, n, M_MASK, bt->allowed_mask, ((LR - 1) * ms + words) * 4, 0);
    }
    if (bt->logit_bias_offsets) {
        n = add_region(list, n, M_BOFF, bt->logit_bias_offsets, (B + 1) * 8, 0);
        if (!c->cuda) {
            const int64_t last = ld_i64(host_of(c, bt->logit_bias_offsets), (int64_t)B);
            const uint64_t e = (uint64_t)(last > 0 ? last : 0);
            n = add_region(list, n, M_BIDS, bt->logit_bias_ids, e * 4u, 0);
            n = add_region(list, n, M_BVALS, bt->logit_bias_values, e * 4u, 0);
        }
    }
    if (score == 2) {
        const kiln_drafts *d = &c->fd;
        const kiln_verify_outputs *vo = &c->vo;
        const unsigned __int128 K = (uint64_t)d->max_drafts;
        const uint64_t ds = (uint64_t)(d->draft_probs_stride ? d->draft_probs_stride : bt->vocab_size);
        n = add_region(list, n, M_DIDS, d->draft_ids, B * K * 4, 0);
        n = add_region(list, n, M_DNUM, d->num_drafts, B * 4, 0);
        if (d->draft_probs && K > 0)
            n = add_region(list, n, M_DPROBS, d->draft_probs, ((B * K - 1) * ds + V) * 4, 0);
        n = add_region(list, n, M_VTOK, vo->tokens, B * (K + 1) * 4, 1);
        n = add_region(list, n, M_VACC, vo->num_accepted, B * 4, 1);
        n = add_region(list, n, M_VLP, vo->logprobs, B * (K + 1) * 4, 1);
        n = add_region(list, n, M_VVALID, vo->valid, B, 1);
        n = add_region(list, n, M_WS, c->ws_arg, c->ws_need, 1);
        return n;
    }
    if (score) {
        const kiln_score_outputs *so = &c->eso;
        const unsigned __int128 cells = B * (uint64_t)(c->num_targets > 0 ? c->num_targets : 0);
        const unsigned __int128 top = B * (uint64_t)(so->num_top_logprobs > 0 ? so->num_top_logprobs : 0);
        n = add_region(list, n, M_TGT, c->targets, cells * 4, 0);
        n = add_region(list, n, M_SLP, so->logprobs, cells * 4, 1);
        n = add_region(list, n, M_SRANK, so->ranks, cells * 4, 1);
        n = add_region(list, n, M_STID, so->top_ids, top * 4, 1);
        n = add_region(list, n, M_STLP, so->top_logprobs, top * 4, 1);
        n = add_region(list, n, M_SENT, so->entropy, B * 4, 1);
        n = add_region(list, n, M_SVALID, so->valid, B, 1);
        n = add_region(list, n, M_WS, c->ws_arg, c->ws_need, 1);
        return n;
    }
    const unsigned __int128 top = B * (uint64_t)(o->num_top_logprobs > 0 ? o->num_top_logprobs : 0);
    n = add_region(list, n, M_TOKENS, o->tokens, draws * 4, 1);
    n = add_region(list, n, M_LOGPROBS, o->logprobs, draws * 4, 1);
    n = add_region(list, n, M_RAW, o->raw_logprobs, draws * 4, 1);
    n = add_region(list, n, M_PROBS, o->probs, o->probs ? ((B - 1) * ps + V) * 4 : 0, 1);
    n = add_region(list, n, M_KEPT, o->kept_counts, B * 4, 1);
    n = add_region(list, n, M_VALID, o->valid, B, 1);
    n = add_region(list, n, M_RTID, o->raw_top_ids, top * 4, 1);
    n = add_region(list, n, M_RTLP, o->raw_top_logprobs, top * 4, 1);
    n = add_region(list, n, M_FTID, o->final_top_ids, top * 4, 1);
    n = add_region(list, n, M_FTLP, o->final_top_logprobs, top * 4, 1);
    n = add_region(list, n, M_RANKS, o->raw_ranks, draws * 4, 1);
    n = add_region(list, n, M_ENT, o->entropy, B * 4, 1);
    n = add_region(list, n, M_RENT, o->raw_entropy, B * 4, 1);
    n = add_region(list, n, M_TEMPS, o->temperatures, B * 4, 1);
    n = add_region(list, n, M_WS, c->ws_arg, c->ws_need, 1);
    return n;
}

typedef enum { STRIDE_OK, STRIDE_BAD, STRIDE_HUGE } stride_class;

/* A row stride (0 means V) against section 12: below V, or so large that
 * the extent in bytes overflows int64, is an error; anything past what any
 * real buffer could hold (only ever passed for one row) may be refused. */
static stride_class classify_stride(int64_t stride, int64_t B, int64_t V, size_t esize)
{
    const int64_t s = stride ? stride : V;
    if (s < V)
        return STRIDE_BAD;
    const unsigned __int128 extent = ((unsigned __int128)(uint64_t)(B - 1) * (uint64_t)s + (uint64_t)V) * esize;
    if (extent > (unsigned __int128)INT64_MAX)
        return STRIDE_BAD;
    return s > V + 64 ? STRIDE_HUGE : STRIDE_OK;
}

static int misaligned(const void *p, size_t align)
{
    return p && (uintptr_t)p % align != 0;
}

/* kiln_score's outputs as the kiln_outputs fields that mean the same. */
static kiln_outputs score_as_outputs(const kiln_score_outputs *so)
{
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.num_top_logprobs = so->num_top_logprobs;
    o.raw_top_ids = so->top_ids;
    o.raw_top_logprobs = so->top_logprobs;
    o.raw_entropy = so->entropy;
    o.valid = so->valid;
    return o;
}

/* What the CUDA backend refuses (BACKEND_UNAVAILABLE once the input is
 * otherwise clean): nothing today; kept so a refusal can be modelled again. */
static int cuda_unsupported(const fuzz_case *c, int score)
{
    (void)c;
    (void)score;
    return 0;
}

/* The statuses kiln_sample (score = 0) or kiln_score (score = 1, with the
 * params kiln should read in c->ep) may return for this call: `must` holds
 * the errors the input certainly has (empty: it must succeed), `*may` codes
 * that are also acceptable (limits the contract leaves to the
 * implementation). */
static unsigned model_call(const fuzz_case *c, int score, unsigned *may)
{
    unsigned must = 0;
    *may = 0;
    int null_struct = 0;
    const int sc = score == 1, vf = score == 2;
    const void *p_arg = sc && c->score_params_null ? NULL : c->p_arg;
    const void *o_arg = sc ? c->so_arg : vf ? c->d_arg : c->o_arg;
    const int o_known = sc ? c->so_known : vf ? c->d_known : c->o_known;
    if (!c->sampler_arg || !c->b_arg || (!p_arg && !sc) || !o_arg) {
        must |= BIT(KILN_ERROR_NULL_POINTER);
        null_struct = 1;
    }
    if ((c->b_arg && !c->b_known) || (p_arg && !c->p_known) || (o_arg && !o_known))
        must |= BIT(KILN_ERROR_INVALID_PARAMETER);
    if (!c->b_arg || (!p_arg && !sc) || !o_arg || !c->b_known || (p_arg && !c->p_known) ||
        !o_known)
        goto done;
    {
        const kiln_batch *bt = &c->eb;
        const kiln_sampling_params *p = &c->ep;
        const kiln_outputs so = score_as_outputs(&c->eso);
        const kiln_outputs none = KILN_OUTPUTS_INIT;
        const kiln_outputs *o = sc ? &so : vf ? &none : &c->eo;
        const kiln_config *cfg = &c->cfg;
        const int dtype_ok = bt->dtype == KILN_DTYPE_F32 || bt->dtype == KILN_DTYPE_F16 ||
                             bt->dtype == KILN_DTYPE_BF16;
        const size_t es = bt->dtype == KILN_DTYPE_F32 ? 4 : 2;
        if (!dtype_ok)
            must |= BIT(KILN_ERROR_INVALID_PARAMETER);
        const int B_ok = bt->num_rows >= 1 && bt->num_rows <= cfg->max_batch;
        const int V_ok = bt->vocab_size >= 1 && bt->vocab_size <= cfg->max_vocab;
        const int n_ok = bt->num_samples >= 1 && bt->num_samples <= cfg->max_samples &&
                         (!score || bt->num_samples == 1);
        /* kiln_verify_drafts: K + 1 rows of logits per request */
        /* (max_drafts as kiln sees it: a short kiln_drafts leaves it 0) */
        const int32_t vK = c->fd.max_drafts;
        const int K_ok = !vf || (B_ok && vK >= 0 && (int64_t)vK + 1 <= cfg->max_batch / bt->num_rows);
        const int64_t LR = vf && K_ok ? bt->num_rows * ((int64_t)vK + 1) : bt->num_rows;
        if (!B_ok || !V_ok || !n_ok || !K_ok)
            must |= BIT(KILN_ERROR_INVALID_SHAPE);
        int strides_ok = 0;
        if (B_ok && V_ok && dtype_ok && K_ok) {
            stride_class lc = classify_stride(bt->row_stride, LR, bt->vocab_size, es);
            stride_class pc = o->probs ? classify_stride(o->probs_row_stride, bt->num_rows,
                                                         bt->vocab_size, 4)
                                       : STRIDE_OK;
            if (lc == STRIDE_BAD || pc == STRIDE_BAD)
                must |= BIT(KILN_ERROR_INVALID_SHAPE);
            if (lc == STRIDE_HUGE || pc == STRIDE_HUGE)
                *may |= BIT(KILN_ERROR_INVALID_SHAPE);
            strides_ok = lc != STRIDE_BAD && pc != STRIDE_BAD;
        }
        /* the mask stride, in 32-bit words */
        if (bt->allowed_mask && B_ok && V_ok) {
            const int64_t words = (bt->vocab_size + 31) / 32;
            const int64_t ms = bt->allowed_mask_stride ? bt->allowed_mask_stride : words;
            if (ms < words || ms > (INT64_MAX / 4 - words) / LR) {
                must |= BIT(KILN_ERROR_INVALID_SHAPE);
                strides_ok = 0;
            }
        }
        /* top-N count against the sampler's limit */
        const int top_set = o->raw_top_ids || o->raw_top_logprobs || o->final_top_ids ||
                            o->final_top_logprobs;
        if (o->num_top_logprobs < 0 || o->num_top_logprobs > cfg->max_top_logprobs ||
            (o->num_top_logprobs == 0 && top_set)) {
            must |= BIT(KILN_ERROR_INVALID_SHAPE);
            strides_ok = 0;
        }
        int drafts_ok = 1;
        if (vf) {
            const kiln_drafts *d = &c->fd;
            const kiln_verify_outputs *vo = &c->vo;
            if (!vo->tokens || (d->max_drafts > 0 && !d->draft_ids))
                must |= BIT(KILN_ERROR_NULL_POINTER);
            const int64_t ds = d->draft_probs_stride ? d->draft_probs_stride : bt->vocab_size;
            if (d->draft_probs && B_ok && V_ok && K_ok &&
                (ds < bt->vocab_size ||
                 ds > (INT64_MAX / 4 - bt->vocab_size) /
                          (bt->num_rows * (d->max_drafts > 0 ? d->max_drafts : 1)))) {
                must |= BIT(KILN_ERROR_INVALID_SHAPE);
                strides_ok = 0;
            }
            if (misaligned(d->draft_ids, 4) || misaligned(d->num_drafts, 4) ||
                misaligned(d->draft_probs, 4) || misaligned(vo->tokens, 4) ||
                misaligned(vo->num_accepted, 4) || misaligned(vo->logprobs, 4))
                must |= BIT(KILN_ERROR_MISALIGNED);
            /* the values, on the host for the CPU backend: K_b, the draft
             * ids and q(d_i); the rest of a row is read at a rejection */
            if (B_ok && V_ok && K_ok && strides_ok && !c->cuda && vK <= c->vK_alloc &&
                (vK == 0 || d->draft_ids) && (!d->draft_probs || ds == c->vstride_alloc)) {
                const int64_t K = vK;
                for (int64_t b = 0; b < bt->num_rows; ++b) {
                    const int32_t kb = d->num_drafts ? ld_i32(host_of(c, d->num_drafts), b) : (int32_t)K;
                    if (kb < 0 || kb > K) {
                        must |= BIT(KILN_ERROR_INVALID_PARAMETER);
                        drafts_ok = 0;
                        continue;
                    }
                    for (int32_t i = 0; i < kb; ++i) {
                        const int32_t id = ld_i32(host_of(c, d->draft_ids), b * K + i);
                        if (id < 0 || id >= bt->vocab_size) {
                            must |= BIT(KILN_ERROR_INVALID_PARAMETER);
                            drafts_ok = 0;
                            break;
                        }
                        if (!d->draft_probs)
                            continue;
                        const void *q = host_of(c, d->draft_probs);
                        const float qd = ld_f32(q, (b * K + i) * ds + id);
                        if (!(qd > 0.0f && qd <= 1.0f)) {
                            must |= BIT(KILN_ERROR_INVALID_PARAMETER);
                            drafts_ok = 0;
                            break;
                        }
                        for (int64_t j = 0; j < bt->vocab_size; ++j) {
                            const float v = ld_f32(q, (b * K + i) * ds + j);
                            if (!(v >= 0.0f && v <= 1.0f))
                                *may |= BIT(KILN_ERROR_INVALID_PARAMETER);
                        }
                    }
                }
            }
        }
        if (sc) {
            if (c->num_targets < 0 ||
                (B_ok && (uint64_t)c->num_targets > (uint64_t)(INT64_MAX / 4) / (uint64_t)bt->num_rows)) {
                must |= BIT(KILN_ERROR_INVALID_SHAPE);
                strides_ok = 0;
            }
            if (c->num_targets > 0 && !c->targets)
                must |= BIT(KILN_ERROR_NULL_POINTER);
        }
        if (!bt->logits || (!score && !o->tokens) || !c->ws_arg)
            must |= BIT(KILN_ERROR_NULL_POINTER);
        if ((bt->history_offsets && !bt->history_ids) ||
            (!bt->history_offsets && (bt->history_ids || bt->prompt_lengths)))
            must |= BIT(KILN_ERROR_NULL_POINTER);
        if ((bt->logit_bias_offsets && (!bt->logit_bias_ids || !bt->logit_bias_values)) ||
            (!bt->logit_bias_offsets && (bt->logit_bias_ids || bt->logit_bias_values)))
            must |= BIT(KILN_ERROR_NULL_POINTER);
        if (bt->history_offsets && cfg->max_history == 0)
            must |= BIT(KILN_ERROR_INVALID_SHAPE);
        if (c->ws_size_arg < c->ws_need)
            must |= BIT(KILN_ERROR_WORKSPACE_TOO_SMALL);
        if (misaligned(bt->logits, es) || misaligned(bt->history_offsets, 8) ||
            misaligned(bt->history_ids, 4) || misaligned(bt->prompt_lengths, 4) ||
            misaligned(p->temperature, 4) || misaligned(p->top_k, 4) || misaligned(p->top_p, 4) ||
            misaligned(p->min_p, 4) || misaligned(p->repetition_penalty, 4) ||
            misaligned(p->presence_penalty, 4) || misaligned(p->frequency_penalty, 4) ||
            misaligned(p->seed, 8) || misaligned(p->offset, 8) || misaligned(o->tokens, 4) ||
            misaligned(o->logprobs, 4) || misaligned(o->raw_logprobs, 4) ||
            misaligned(o->probs, 4) || misaligned(o->kept_counts, 4) ||
            misaligned(p->dynatemp_range, 4) || misaligned(p->dynatemp_exponent, 4) ||
            misaligned(bt->allowed_mask, 4) || misaligned(bt->logit_bias_offsets, 8) ||
            misaligned(bt->logit_bias_ids, 4) || misaligned(bt->logit_bias_values, 4) ||
            misaligned(o->raw_top_ids, 4) || misaligned(o->raw_top_logprobs, 4) ||
            misaligned(o->final_top_ids, 4) || misaligned(o->final_top_logprobs, 4) ||
            misaligned(o->raw_ranks, 4) || misaligned(o->entropy, 4) ||
            misaligned(o->raw_entropy, 4) || misaligned(o->temperatures, 4) ||
            (sc && (misaligned(c->targets, 4) || misaligned(c->eso.logprobs, 4) ||
                       misaligned(c->eso.ranks, 4))))
            must |= BIT(KILN_ERROR_MISALIGNED);

        /* Histories, logit bias, targets and per-row arrays are the
         * caller's host memory for the CPU backend, so their values are
         * checked before anything runs. */
        int hist_ok = 1;
        if (B_ok && V_ok && bt->history_offsets && bt->history_ids && !c->cuda &&
            cfg->max_history > 0) {
            for (int64_t b = 0; b < bt->num_rows; ++b) {
                row_history h = history_of_row(c, b);
                if (h.fault_shape)
                    must |= BIT(KILN_ERROR_INVALID_SHAPE);
                if (h.fault_param)
                    must |= BIT(KILN_ERROR_INVALID_PARAMETER);
                if (h.fault)
                    hist_ok = 0;
            }
        }
        if (B_ok && V_ok && bt->logit_bias_offsets && bt->logit_bias_ids &&
            bt->logit_bias_values && !c->cuda && !bias_ok(c)) {
            must |= BIT(KILN_ERROR_INVALID_PARAMETER);
            hist_ok = 0;
        }
        if (sc && B_ok && V_ok && !c->cuda && c->targets && c->num_targets > 0 &&
            c->num_targets <= c->tgt_k) {
            const void *t = host_of(c, c->targets);
            for (int64_t i = 0; i < bt->num_rows * c->num_targets; ++i)
                if (ld_i32(t, i) < -1 || ld_i32(t, i) >= bt->vocab_size)
                    must |= BIT(KILN_ERROR_INVALID_PARAMETER);
        }
        if (B_ok && V_ok && n_ok && dtype_ok && strides_ok && hist_ok && drafts_ok) {
            region list[48];
            const int n = call_regions(c, list, score);
            for (int i = 0; i < n; ++i)
                for (int j = i + 1; j < n; ++j)
                    if ((list[i].is_output || list[j].is_output) &&
                        list[i].begin < list[j].end && list[j].begin < list[i].end)
                        must |= BIT(KILN_ERROR_OVERLAP);
        }

        /* Scalars in use are host values on every backend. */
        kiln_sampling_params s = *p;
        s.temperature = NULL;
        s.top_p = s.min_p = s.repetition_penalty = s.presence_penalty = s.frequency_penalty = NULL;
        s.dynatemp_range = s.dynatemp_exponent = NULL;
        kiln_sampling_params defaults = KILN_SAMPLING_PARAMS_INIT;
        if (p->temperature) s.temperature_all = defaults.temperature_all;
        if (p->top_p) s.top_p_all = defaults.top_p_all;
        if (p->min_p) s.min_p_all = defaults.min_p_all;
        if (p->repetition_penalty) s.repetition_penalty_all = defaults.repetition_penalty_all;
        if (p->presence_penalty) s.presence_penalty_all = defaults.presence_penalty_all;
        if (p->frequency_penalty) s.frequency_penalty_all = defaults.frequency_penalty_all;
        if (p->dynatemp_range) s.dynatemp_range_all = defaults.dynatemp_range_all;
        if (p->dynatemp_exponent) s.dynatemp_exponent_all = defaults.dynatemp_exponent_all;
        row_params sr = { s.temperature_all, s.top_p_all, s.min_p_all, s.repetition_penalty_all,
                          s.presence_penalty_all, s.frequency_penalty_all, 0, 0, 0,
                          s.dynatemp_range_all, s.dynatemp_exponent_all };
        if (params_bad(&sr))
            must |= BIT(KILN_ERROR_INVALID_PARAMETER);
        if (!c->cuda && B_ok)
            for (int64_t b = 0; b < bt->num_rows; ++b) {
                row_params r = params_of_row(c, b);
                if (params_bad(&r))
                    must |= BIT(KILN_ERROR_INVALID_PARAMETER);
            }
        if (c->cuda && cuda_unsupported(c, score)) {
            if (must == 0)
                must = BIT(KILN_ERROR_BACKEND_UNAVAILABLE);
            else
                *may |= BIT(KILN_ERROR_BACKEND_UNAVAILABLE);
        }
    }
done:
    /* Without a sampler or a struct, that is the error to expect; anything
     * else wrong may be reported instead. */
    if (null_struct) {
        *may |= must & ~BIT(KILN_ERROR_NULL_POINTER);
        must = BIT(KILN_ERROR_NULL_POINTER);
    }
    return must;
}

static unsigned model_sample(const fuzz_case *c, unsigned *may)
{
    return model_call(c, 0, may);
}

/* kiln_score reads only the penalties of its params (kiln.h), so the rest
 * may be anything; kiln today validates the whole struct anyway, which the
 * contract allows as an extra error (reported in *may). */
static unsigned model_score(const fuzz_case *c, unsigned *may)
{
    fuzz_case *probe = (fuzz_case *)xmalloc(sizeof *probe);
    *probe = *c;
    const kiln_sampling_params defaults = KILN_SAMPLING_PARAMS_INIT;
    const void *p_arg = c->score_params_null ? NULL : c->p_arg;
    unsigned must;
    if (!p_arg || !c->p_known) {
        if (!p_arg)
            probe->ep = defaults;
        must = model_call(probe, 1, may);
    } else {
        kiln_sampling_params pen = defaults;
        pen.repetition_penalty = c->ep.repetition_penalty;
        pen.repetition_penalty_all = c->ep.repetition_penalty_all;
        pen.presence_penalty = c->ep.presence_penalty;
        pen.presence_penalty_all = c->ep.presence_penalty_all;
        pen.frequency_penalty = c->ep.frequency_penalty;
        pen.frequency_penalty_all = c->ep.frequency_penalty_all;
        probe->ep = pen;
        must = model_call(probe, 1, may);
        unsigned may_full;
        const unsigned full = model_call(c, 1, &may_full);
        *may |= (full | may_full) & (BIT(KILN_ERROR_INVALID_PARAMETER) |
                                     BIT(KILN_ERROR_MISALIGNED) | BIT(KILN_ERROR_OVERLAP));
    }
    free(probe);
    return must;
}

static void check_status(kiln_status st, unsigned must, unsigned may, const char *what)
{
    const char *msg = kiln_last_error();
    ENSURE(msg != NULL, "%s: kiln_last_error() returned NULL", what);
    const char *name = kiln_status_string(st);
    ENSURE(name != NULL, "%s: kiln_status_string(%d) returned NULL", what, (int)st);
    if (must == 0) {
        ENSURE(st == KILN_SUCCESS || (BIT(st) & may), "%s: a valid input failed with %s",
               what, name);
    } else {
        ENSURE(st != KILN_SUCCESS, "%s: bad input accepted (expected one of the statuses 0x%x)",
               what, must | may);
        ENSURE(BIT(st) & (must | may), "%s: status %s, expected one of 0x%x", what, name,
               must | may);
    }
    if (st == KILN_SUCCESS)
        ENSURE(msg[0] == '\0', "%s: success left the message \"%s\"", what, msg);
    else
        ENSURE(msg[0] != '\0', "%s: %s with an empty message", what, name);
}

/* ------------------------------------------------------ row invariants */

/* One row's outputs in host memory; NULL where not requested. */
typedef struct row_out {
    const int32_t *tokens;
    const float *logprobs, *raw;
    const float *probs;
    const int32_t *kept;
    const uint8_t *valid;
    /* the extension: N entries each of the top-N, n ranks, one of the rest */
    const int32_t *rtid, *ftid, *ranks;
    const float *rtlp, *ftlp, *ent, *rent, *temps;
} row_out;

/* The row's logits as f32 after the penalties (section 1), from the bytes
 * kiln was given. */
static void penalised_row_at(const fuzz_case *c, int64_t lrow, int64_t b, const row_params *r,
                             const row_history *h, float *x, uint32_t *seen, uint32_t *gen)
{
    const kiln_batch *bt = &c->eb;
    const int64_t V = bt->vocab_size, rs = bt->row_stride ? bt->row_stride : V;
    const unsigned char *row = (const unsigned char *)host_of(c, bt->logits) +
                               (size_t)(lrow * rs) * (bt->dtype == KILN_DTYPE_F32 ? 4 : 2);
    for (int64_t i = 0; i < V; ++i) {
        if (bt->dtype == KILN_DTYPE_F32) {
            memcpy(&x[i], row + 4 * i, 4);
        } else {
            uint16_t v;
            memcpy(&v, row + 2 * i, 2);
            x[i] = bt->dtype == KILN_DTYPE_F16 ? f16_to_f32(v) : bf16_to_f32(v);
        }
    }
    /* the mask, then the bias, in the order given */
    if (bt->allowed_mask)
        for (int64_t i = 0; i < V; ++i)
            if (!mask_allows(c, lrow, i))
                x[i] = -INFINITY;
    if (bt->logit_bias_offsets && bt->logit_bias_ids && bt->logit_bias_values) {
        const row_bias rb = bias_of_row(c, b);
        const void *bids = host_of(c, bt->logit_bias_ids);
        const void *bvals = host_of(c, bt->logit_bias_values);
        for (int64_t i = rb.lo; i < rb.hi; ++i) {
            const int32_t id = ld_i32(bids, i);
            x[id] = x[id] + ld_f32(bvals, i);
        }
    }
    if (!bt->history_offsets || h->len == 0 ||
        (r->rep == 1.0f && r->pres == 0.0f && r->freq == 0.0f))
        return;
    const void *ids = host_of(c, bt->history_ids);
    for (int64_t i = 0; i < h->len; ++i) {
        const int32_t v = ld_i32(ids, h->h0 + i);
        seen[v] = 1;
        gen[v] += i >= h->prompt;
    }
    for (int64_t i = 0; i < h->len; ++i) {
        const int32_t v = ld_i32(ids, h->h0 + i);
        if (!seen[v])
            continue;
        float y = x[v];
        y = y > 0.0f ? y / r->rep : y * r->rep;
        if (gen[v]) {
            y = y - r->freq * (float)gen[v];
            y = y - r->pres;
        }
        x[v] = y;
        seen[v] = gen[v] = 0;
    }
}

/* Row b's logits, mask, bias and history (every call but kiln_verify_drafts,
 * whose request b reads logit and mask row lrow = b * (K + 1) + i). */
static void penalised_row(const fuzz_case *c, int64_t b, const row_params *r,
                          const row_history *h, float *x, uint32_t *seen, uint32_t *gen)
{
    penalised_row_at(c, b, b, r, h, x, seen, gen);
}

/* Canonical order (section 3): descending logit, ties to the lower id. */
static const float *sort_x;

static int canon_before(int32_t a, int32_t b)
{
    return sort_x[a] > sort_x[b] || (sort_x[a] == sort_x[b] && a < b);
}

static void canon_sort(int32_t *ids, int32_t *tmp, int64_t n)
{
    if (n < 2)
        return;
    const int64_t h = n / 2;
    canon_sort(ids, tmp, h);
    canon_sort(ids + h, tmp, n - h);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = canon_before(ids[j], ids[i]) ? ids[j++] : ids[i++];
    while (i < h)
        tmp[k++] = ids[i++];
    while (j < n)
        tmp[k++] = ids[j++];
    memcpy(ids, tmp, (size_t)n * sizeof *ids);
}

static const uint32_t QNAN = 0x7FC00000u;

/* Section 17's and 15's outputs of an invalid row: ids -1, log-probabilities
 * NaN, ranks 0, entropies and temperature NaN. */
static void check_invalid_extras(const row_out *o, int32_t N, int32_t n, int64_t b)
{
    for (int32_t i = 0; i < N; ++i) {
        if (o->rtid)
            ENSURE(o->rtid[i] == -1, "row %lld invalid, raw_top_ids[%d] = %d", (long long)b, i,
                   o->rtid[i]);
        if (o->ftid)
            ENSURE(o->ftid[i] == -1, "row %lld invalid, final_top_ids[%d] = %d", (long long)b, i,
                   o->ftid[i]);
        if (o->rtlp)
            ENSURE(f2u(o->rtlp[i]) == QNAN, "row %lld invalid, raw_top_logprobs[%d] bits 0x%08x",
                   (long long)b, i, f2u(o->rtlp[i]));
        if (o->ftlp)
            ENSURE(f2u(o->ftlp[i]) == QNAN,
                   "row %lld invalid, final_top_logprobs[%d] bits 0x%08x", (long long)b, i,
                   f2u(o->ftlp[i]));
    }
    if (o->ranks)
        for (int32_t j = 0; j < n; ++j)
            ENSURE(o->ranks[j] == 0, "row %lld invalid, raw_ranks[%d] = %d", (long long)b, j,
                   o->ranks[j]);
    const float *nan_outs[] = { o->ent, o->rent, o->temps };
    static const char *const nan_names[] = { "entropy", "raw_entropy", "temperatures" };
    for (int i = 0; i < 3; ++i)
        if (nan_outs[i])
            ENSURE(f2u(*nan_outs[i]) == QNAN, "row %lld invalid, %s bits 0x%08x", (long long)b,
                   nan_names[i], f2u(*nan_outs[i]));
}

/* Raw top-N (section 17): the first N tokens of the canonical order with
 * their raw log-probabilities, non-increasing, -inf for -inf logits; id -1
 * and -inf past V. */
static void check_raw_top(const int32_t *ids, const float *lps, int32_t N, int64_t V,
                          const float *x, const int32_t *order, int64_t b, const char *what)
{
    for (int32_t i = 0; i < N; ++i) {
        if (i >= V) {
            if (ids)
                ENSURE(ids[i] == -1, "row %lld: %s ids[%d] = %d past V", (long long)b, what, i,
                       ids[i]);
            if (lps)
                ENSURE(lps[i] == -INFINITY, "row %lld: %s logprobs[%d] = %g past V",
                       (long long)b, what, i, (double)lps[i]);
            continue;
        }
        if (ids)
            ENSURE(ids[i] == order[i], "row %lld: %s ids[%d] = %d, canonical order has %d",
                   (long long)b, what, i, ids[i], order[i]);
        if (lps) {
            const float v = lps[i];
            ENSURE(v == v && v <= 0.0f, "row %lld: %s logprobs[%d] = %g", (long long)b, what, i,
                   (double)v);
            if (x[order[i]] == -INFINITY)
                ENSURE(v == -INFINITY, "row %lld: %s logprobs[%d] = %g for a -inf logit",
                       (long long)b, what, i, (double)v);
            if (i > 0)
                ENSURE(v <= lps[i - 1], "row %lld: %s logprobs increase at %d", (long long)b,
                       what, i);
        }
    }
}

static void check_invalid_row(const row_out *o, int64_t V, int32_t n, int32_t N, int64_t b)
{
    for (int32_t j = 0; j < n; ++j) {
        ENSURE(o->tokens[j] == -1, "row %lld invalid but tokens[%d] = %d", (long long)b, j,
               o->tokens[j]);
        if (o->logprobs)
            ENSURE(f2u(o->logprobs[j]) == QNAN, "row %lld invalid, logprobs[%d] bits 0x%08x",
                   (long long)b, j, f2u(o->logprobs[j]));
        if (o->raw)
            ENSURE(f2u(o->raw[j]) == QNAN, "row %lld invalid, raw_logprobs[%d] bits 0x%08x",
                   (long long)b, j, f2u(o->raw[j]));
    }
    if (o->probs)
        for (int64_t i = 0; i < V; ++i)
            ENSURE(f2u(o->probs[i]) == 0, "row %lld invalid, probs[%lld] = %g", (long long)b,
                   (long long)i, (double)o->probs[i]);
    if (o->kept)
        ENSURE(*o->kept == 0, "row %lld invalid, kept %d", (long long)b, *o->kept);
    if (o->valid)
        ENSURE(*o->valid == 0, "row %lld invalid, valid %d", (long long)b, *o->valid);
    check_invalid_extras(o, N, n, b);
}

/* Every invariant of one row that holds whatever the parameters. `fault`:
 * the row's values or history are bad (CUDA: the row must come back
 * invalid). */
static void check_row(const fuzz_case *c, int64_t b, const row_out *o, float *x, uint32_t *seen,
                      uint32_t *gen, int32_t *order, int32_t *tmp)
{
    const int64_t V = c->eb.vocab_size;
    const int32_t n = c->eb.num_samples;
    const int32_t N = c->eo.num_top_logprobs;
    const row_params r = params_of_row(c, b);
    const row_history h = history_of_row(c, b);
    if (params_bad(&r) || h.fault) {
        ENSURE(c->cuda, "row %lld: a bad row got past validation", (long long)b);
        check_invalid_row(o, V, n, N, b);
        count_row(0, 0);
        return;
    }
    penalised_row(c, b, &r, &h, x, seen, gen);
    float m = -INFINITY;
    int bad = 0;
    int64_t argmax = 0;
    for (int64_t i = 0; i < V; ++i) {
        bad |= x[i] != x[i] || x[i] == INFINITY;
        if (x[i] > m) {
            m = x[i];
            argmax = i;
        }
    }
    if (bad || m == -INFINITY) {
        check_invalid_row(o, V, n, N, b);
        count_row(0, 0);
        return;
    }
    if (o->valid)
        ENSURE(*o->valid == 1, "row %lld valid but flag %d", (long long)b, *o->valid);

    /* The temperature the row was sampled at (section 16): T itself, bit
     * for bit, without dynatemp; within [max(0, T - d), T + d] with it.
     * Unknown when dynatemp is on and temperatures was not requested. */
    const int dyn = r.dt_range > 0.0f;
    float T = r.temperature;
    int t_known = !dyn;
    if (o->temps) {
        const float t = *o->temps;
        if (!dyn) {
            ENSURE(f2u(t) == f2u(r.temperature), "row %lld: temperatures %a, T %a without dynatemp",
                   (long long)b, (double)t, (double)r.temperature);
        } else {
            const double lo = fmax(0.0, (double)r.temperature - (double)r.dt_range);
            const double hi = (double)r.temperature + (double)r.dt_range;
            const float flo = nextafterf((float)lo, -INFINITY);
            const float fhi = (float)hi < FLT_MAX ? nextafterf((float)hi, INFINITY) : FLT_MAX;
            ENSURE(is_finite(t) && t >= 0.0f && t >= flo && t <= fhi,
                   "row %lld: dynatemp temperature %a outside [%a, %a] (T %a, range %a, exponent %a)",
                   (long long)b, (double)t, lo, hi, (double)r.temperature, (double)r.dt_range,
                   (double)r.dt_exp);
        }
        T = t;
        t_known = 1;
    }
    count_row(1, t_known && T == 0.0f);
    for (int32_t j = 0; j < n; ++j) {
        ENSURE(o->tokens[j] >= 0 && o->tokens[j] < V, "row %lld: token[%d] = %d outside [0, %lld)",
               (long long)b, j, o->tokens[j], (long long)V);
        ENSURE(mask_allows(c, b, o->tokens[j]), "row %lld: drew token %d, which the mask forbids",
               (long long)b, o->tokens[j]);
        if (o->raw)
            ENSURE(is_finite(o->raw[j]) && o->raw[j] <= 0.0f, "row %lld: raw_logprobs[%d] = %g",
                   (long long)b, j, (double)o->raw[j]);
    }
    if (o->probs && c->eb.allowed_mask)
        for (int64_t i = 0; i < V; ++i)
            if (!mask_allows(c, b, i))
                ENSURE(f2u(o->probs[i]) == 0, "row %lld: masked token %lld has probability %g",
                       (long long)b, (long long)i, (double)o->probs[i]);

    /* Entropies (section 15): finite, >= 0, at most ln V (raw) */
    const double ent_slack = 1e-5;
    if (o->rent)
        ENSURE(is_finite(*o->rent) && *o->rent >= 0.0f &&
                   (double)*o->rent <= log((double)V) * (1.0 + ent_slack) + ent_slack,
               "row %lld: raw_entropy %g with V %lld", (long long)b, (double)*o->rent,
               (long long)V);
    if (o->ent)
        ENSURE(is_finite(*o->ent) && *o->ent >= 0.0f &&
                   (double)*o->ent <= log((double)V) * (1.0 + ent_slack) + ent_slack,
               "row %lld: entropy %g with V %lld", (long long)b, (double)*o->ent, (long long)V);

    /* Canonical order and each token's place in it, for the top-N, the
     * ranks and the kept set. */
    const int need_order = o->probs || o->rtid || o->rtlp || o->ftid || o->ftlp || o->ranks;
    if (need_order) {
        for (int64_t i = 0; i < V; ++i)
            order[i] = (int32_t)i;
        sort_x = x;
        canon_sort(order, tmp, V);
        ENSURE(order[0] == argmax, "fuzz model: canonical order starts at %d, argmax %lld",
               order[0], (long long)argmax);
        for (int64_t i = 0; i < V; ++i)
            tmp[order[i]] = (int32_t)i; /* tmp: position in the order */
    }
    check_raw_top(o->rtid, o->rtlp, N, V, x, order, b, "raw_top");
    for (int32_t j = 0; j < n; ++j) {
        const int32_t t = o->tokens[j];
        if (o->ranks)
            ENSURE(o->ranks[j] == tmp[t] + 1, "row %lld: raw_ranks[%d] = %d, token %d is at %d",
                   (long long)b, j, o->ranks[j], t, tmp[t] + 1);
        if (o->rtlp && o->raw && tmp[t] < N)
            ENSURE(f2u(o->rtlp[tmp[t]]) == f2u(o->raw[j]),
                   "row %lld: raw_top_logprobs[%d] %a but the draw's raw logprob %a",
                   (long long)b, tmp[t], (double)o->rtlp[tmp[t]], (double)o->raw[j]);
    }

    const int64_t k = (r.top_k <= 0 || r.top_k >= V) ? V : r.top_k;
    if (t_known && T == 0.0f) { /* section 4 */
        for (int32_t j = 0; j < n; ++j) {
            ENSURE(o->tokens[j] == argmax, "row %lld greedy: token %d, argmax %lld", (long long)b,
                   o->tokens[j], (long long)argmax);
            if (o->logprobs)
                ENSURE(f2u(o->logprobs[j]) == 0, "row %lld greedy: logprob bits 0x%08x",
                       (long long)b, f2u(o->logprobs[j]));
        }
        if (o->kept)
            ENSURE(*o->kept == 1, "row %lld greedy: kept %d", (long long)b, *o->kept);
        if (o->probs)
            for (int64_t i = 0; i < V; ++i)
                ENSURE(f2u(o->probs[i]) == (i == argmax ? 0x3F800000u : 0u),
                       "row %lld greedy: probs[%lld] = %g", (long long)b, (long long)i,
                       (double)o->probs[i]);
        if (o->ent)
            ENSURE(f2u(*o->ent) == 0, "row %lld greedy: entropy %g", (long long)b,
                   (double)*o->ent);
        for (int32_t i = 0; i < N; ++i) {
            if (o->ftid)
                ENSURE(o->ftid[i] == (i == 0 ? (int32_t)argmax : -1),
                       "row %lld greedy: final_top_ids[%d] = %d", (long long)b, i, o->ftid[i]);
            if (o->ftlp)
                ENSURE(i == 0 ? f2u(o->ftlp[i]) == 0 : o->ftlp[i] == -INFINITY,
                       "row %lld greedy: final_top_logprobs[%d] = %g", (long long)b, i,
                       (double)o->ftlp[i]);
        }
        return;
    }

    for (int32_t j = 0; j < n; ++j) {
        const int32_t t = o->tokens[j];
        /* has mass (section 5): (x - m) * c >= -40 with c clamped */
        if (t_known) {
            float cexp = 1.44269502162933349609375f / T;
            cexp = cexp <= FLT_MAX ? cexp : FLT_MAX;
            ENSURE((x[t] - m) * cexp >= -40.0f, "row %lld: drew token %d, which has no mass",
                   (long long)b, t);
        }
        if (o->logprobs)
            ENSURE(is_finite(o->logprobs[j]) && o->logprobs[j] <= 0.0f,
                   "row %lld: logprobs[%d] = %g", (long long)b, j, (double)o->logprobs[j]);
    }
    if (o->kept)
        ENSURE(*o->kept >= 1 && *o->kept <= k, "row %lld: kept %d with top_k %lld", (long long)b,
               *o->kept, (long long)k);
    const int unfiltered = k == V && r.top_p == 1.0f && r.min_p == 0.0f;
    if (o->logprobs && o->raw && t_known && T == 1.0f && unfiltered)
        for (int32_t j = 0; j < n; ++j)
            ENSURE(f2u(o->logprobs[j]) == f2u(o->raw[j]),
                   "row %lld: T = 1, no filter, but logprob %a != raw %a", (long long)b,
                   (double)o->logprobs[j], (double)o->raw[j]);
    if (o->ent && o->rent && t_known && T == 1.0f && unfiltered)
        ENSURE(f2u(*o->ent) == f2u(*o->rent), "row %lld: T = 1, no filter, but entropy %a != raw %a",
               (long long)b, (double)*o->ent, (double)*o->rent);

    /* The kept set (nonzero probabilities) is a canonical prefix holding the
     * top token, probabilities are monotone along it and sum to 1. */
    int64_t kept = -1; /* unknown */
    if (o->probs) {
        kept = 0;
        double sum = 0.0;
        float prev = INFINITY;
        for (int64_t i = 0; i < V; ++i) {
            const float p = o->probs[order[i]];
            ENSURE(is_finite(p) && p >= 0.0f && p <= 1.0f, "row %lld: probs[%d] = %g",
                   (long long)b, order[i], (double)p);
            if (p == 0.0f)
                continue;
            ENSURE(kept == i, "row %lld: kept set is not a canonical prefix (token %d at rank "
                   "%lld kept after a gap)", (long long)b, order[i], (long long)i);
            ENSURE(p <= prev, "row %lld: probs not monotone in the logit at token %d",
                   (long long)b, order[i]);
            ENSURE(p >= r.min_p * o->probs[argmax] * (1.0f - 1e-6f),
                   "row %lld: token %d kept with p %g below min_p %g of the top", (long long)b,
                   order[i], (double)p, (double)r.min_p);
            prev = p;
            ++kept;
            sum += p;
        }
        ENSURE(kept >= 1 && o->probs[argmax] > 0.0f, "row %lld: top token %lld not kept",
               (long long)b, (long long)argmax);
        ENSURE(kept <= k, "row %lld: %lld tokens kept with top_k %lld", (long long)b,
               (long long)kept, (long long)k);
        if (o->kept)
            ENSURE(*o->kept == kept, "row %lld: kept_counts %d but %lld nonzero probabilities",
                   (long long)b, *o->kept, (long long)kept);
        ENSURE(fabs(sum - 1.0) <= 1e-6 + 1.2e-7 * (double)kept,
               "row %lld: probabilities sum to %.9g", (long long)b, sum);
        for (int32_t j = 0; j < n; ++j) {
            const int32_t t = o->tokens[j];
            ENSURE(o->probs[t] > 0.0f, "row %lld: drew token %d outside the kept set",
                   (long long)b, t);
            /* logprob from the logit vs log of the probability from the mass */
            if (o->logprobs && o->probs[t] >= 1e-6f && t_known && T >= 1e-37f)
                ENSURE(fabs((double)o->logprobs[j] - log((double)o->probs[t])) <= 1e-4,
                       "row %lld: token %d logprob %.9g but log(prob) %.9g", (long long)b, t,
                       (double)o->logprobs[j], log((double)o->probs[t]));
        }
    } else if (o->kept) {
        kept = *o->kept;
    }
    if (kept >= 1 && o->ent)
        ENSURE((double)*o->ent <= log((double)kept) * (1.0 + ent_slack) + ent_slack,
               "row %lld: entropy %g with %lld tokens kept", (long long)b, (double)*o->ent,
               (long long)kept);

    /* Final top-N (section 17): the kept prefix of the canonical order with
     * final log-probabilities, then -1 / -inf. */
    if (o->ftid || o->ftlp) {
        int64_t K = kept;
        if (K < 0) { /* from the ids themselves */
            K = 0;
            if (o->ftid)
                while (K < N && o->ftid[K] != -1)
                    ++K;
            else
                while (K < N && o->ftlp[K] != -INFINITY)
                    ++K;
            ENSURE(K >= 1 || N == 0, "row %lld: final top-N holds no token", (long long)b);
            ENSURE(K <= k, "row %lld: final top-N holds %lld tokens with top_k %lld",
                   (long long)b, (long long)K, (long long)k);
        }
        for (int32_t i = 0; i < N; ++i) {
            if (i >= K) {
                if (o->ftid)
                    ENSURE(o->ftid[i] == -1, "row %lld: final_top_ids[%d] = %d past kept %lld",
                           (long long)b, i, o->ftid[i], (long long)K);
                if (o->ftlp)
                    ENSURE(o->ftlp[i] == -INFINITY,
                           "row %lld: final_top_logprobs[%d] = %g past kept %lld", (long long)b,
                           i, (double)o->ftlp[i], (long long)K);
                continue;
            }
            if (o->ftid)
                ENSURE(o->ftid[i] == order[i],
                       "row %lld: final_top_ids[%d] = %d, canonical order has %d", (long long)b,
                       i, o->ftid[i], order[i]);
            if (o->ftlp) {
                ENSURE(is_finite(o->ftlp[i]) && o->ftlp[i] <= 0.0f,
                       "row %lld: final_top_logprobs[%d] = %g", (long long)b, i,
                       (double)o->ftlp[i]);
                if (i > 0)
                    ENSURE(o->ftlp[i] <= o->ftlp[i - 1],
                           "row %lld: final_top_logprobs increase at %d", (long long)b, i);
            }
        }
        if (o->ftlp && o->logprobs)
            for (int32_t j = 0; j < n; ++j) {
                const int32_t t = o->tokens[j];
                if (tmp[t] < N && tmp[t] < K)
                    ENSURE(f2u(o->ftlp[tmp[t]]) == f2u(o->logprobs[j]),
                           "row %lld: final_top_logprobs[%d] %a but the draw's logprob %a",
                           (long long)b, tmp[t], (double)o->ftlp[tmp[t]],
                           (double)o->logprobs[j]);
            }
    }
}

/* The call as kiln saw it, for the report of a broken invariant. */
static void describe_case(const fuzz_case *c)
{
    const kiln_batch *bt = &c->eb;
    const kiln_outputs *o = &c->eo;
    fprintf(stderr,
            "  sampler: %s, algorithm %d, threads %d, max_batch %lld, max_vocab %lld, "
            "max_samples %d, max_history %lld\n",
            c->cuda ? "CUDA" : "CPU", (int)c->cfg.algorithm, c->cfg.num_threads,
            (long long)c->cfg.max_batch, (long long)c->cfg.max_vocab, (int)c->cfg.max_samples,
            (long long)c->cfg.max_history);
    fprintf(stderr,
            "  struct sizes batch %zu%s params %zu%s outputs %zu%s; dtype %d rows %lld V %lld "
            "n %d row_stride %lld probs_row_stride %lld\n",
            c->b_given, c->b_known ? "" : "(?)", c->p_given, c->p_known ? "" : "(?)", c->o_given,
            c->o_known ? "" : "(?)", (int)bt->dtype, (long long)bt->num_rows,
            (long long)bt->vocab_size, (int)bt->num_samples, (long long)bt->row_stride,
            (long long)o->probs_row_stride);
    fprintf(stderr, "  outputs: logprobs %d raw %d probs %d kept %d valid %d; history %s%s\n",
            !!o->logprobs, !!o->raw_logprobs, !!o->probs, !!o->kept_counts, !!o->valid,
            bt->history_offsets ? "yes" : "no", bt->prompt_lengths ? " with prompts" : "");
    if (c->ext) {
        const kiln_sampling_params *p = &c->ep;
        fprintf(stderr,
                "  extension: mask %s (stride %lld), bias %s, dynatemp range %a%s exponent %a%s, "
                "max_top_logprobs %d N %d, top ids/lp raw %d/%d final %d/%d, ranks %d entropy %d "
                "raw_entropy %d temperatures %d\n",
                bt->allowed_mask ? "yes" : "no", (long long)bt->allowed_mask_stride,
                bt->logit_bias_offsets ? "yes" : "no", (double)p->dynatemp_range_all,
                p->dynatemp_range ? " (arrays)" : "", (double)p->dynatemp_exponent_all,
                p->dynatemp_exponent ? " (arrays)" : "", (int)c->cfg.max_top_logprobs,
                (int)o->num_top_logprobs, !!o->raw_top_ids, !!o->raw_top_logprobs,
                !!o->final_top_ids, !!o->final_top_logprobs, !!o->raw_ranks, !!o->entropy,
                !!o->raw_entropy, !!o->temperatures);
        if (c->score_on)
            fprintf(stderr, "  kiln_score: K %d%s, params %s, N %d, outputs struct %zu%s\n",
                    (int)c->num_targets, c->targets ? "" : " (targets NULL)",
                    c->score_params_null ? "NULL" : "the batch's", (int)c->eso.num_top_logprobs,
                    c->so_given, c->so_known ? "" : "(?)");
    }
    const int rows_ok = bt->num_rows >= 1 && bt->num_rows <= c->rows && bt->vocab_size >= 1 &&
                        bt->vocab_size <= c->vocab && bt->logits && c->b_known && c->p_known &&
                        (bt->dtype == KILN_DTYPE_F32 || bt->dtype == KILN_DTYPE_F16 ||
                         bt->dtype == KILN_DTYPE_BF16);
    if (!rows_ok)
        return;
    const int64_t V = bt->vocab_size, rs = bt->row_stride ? bt->row_stride : V;
    for (int64_t b = 0; b < bt->num_rows; ++b) {
        const row_params r = params_of_row(c, b);
        fprintf(stderr,
                "  row %lld: T %a top_k %d top_p %a min_p %a rep %a pres %a freq %a seed %llu "
                "offset %llu dynatemp %a^%a\n    logits:",
                (long long)b, (double)r.temperature, r.top_k, (double)r.top_p, (double)r.min_p,
                (double)r.rep, (double)r.pres, (double)r.freq, (unsigned long long)r.seed,
                (unsigned long long)r.offset, (double)r.dt_range, (double)r.dt_exp);
        const unsigned char *row = (const unsigned char *)host_of(c, bt->logits) +
                                   (size_t)(b * rs) * (bt->dtype == KILN_DTYPE_F32 ? 4 : 2);
        for (int64_t i = 0; i < V && i < 64; ++i) {
            float x;
            if (bt->dtype == KILN_DTYPE_F32)
                memcpy(&x, row + 4 * i, 4);
            else {
                uint16_t h;
                memcpy(&h, row + 2 * i, 2);
                x = bt->dtype == KILN_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
            fprintf(stderr, " %a", (double)x);
        }
        fprintf(stderr, "%s\n", V > 64 ? " ..." : "");
        if (bt->history_offsets && bt->history_ids) {
            const row_history h = history_of_row(c, b);
            fprintf(stderr, "    history (prompt %lld%s):", (long long)h.prompt,
                    h.fault ? ", bad" : "");
            if (!h.fault)
                for (int64_t i = 0; i < h.len; ++i)
                    fprintf(stderr, " %d", ld_i32(host_of(c, bt->history_ids), h.h0 + i));
            fprintf(stderr, "\n");
        }
        if (o->tokens && c->m[M_TOKENS].base && mem_arg(&c->m[M_TOKENS]) == (void *)o->tokens) {
            fprintf(stderr, "    tokens:");
            for (int32_t j = 0; j < bt->num_samples && j < 16; ++j)
                fprintf(stderr, " %d", ld_i32(mem_host(&c->m[M_TOKENS]), b * bt->num_samples + j));
            fprintf(stderr, "\n");
        }
    }
}

/* ---------------------------------------------------- running one call */

static kiln_sampler *make_sampler(const kiln_config *limits, kiln_backend backend,
                                  kiln_algorithm algorithm, int threads, size_t *ws)
{
    kiln_config cfg = *limits;
    cfg.struct_size = sizeof cfg;
    cfg.backend = backend;
    cfg.algorithm = algorithm;
    cfg.num_threads = threads;
    kiln_sampler *s = NULL;
    kiln_status st = kiln_sampler_create(&cfg, &s);
    ENSURE(st == KILN_SUCCESS && s, "kiln_sampler_create for a valid config: %s",
           kiln_status_string(st));
    ENSURE(kiln_sampler_workspace_size(s, ws) == KILN_SUCCESS, "workspace size query failed");
    return s;
}

/* Row b of the case sampled alone (B = 1, packed row, its own history from
 * 0, parameters as scalars or one-element arrays, every output requested)
 * by sampler `s`; compared byte for byte with the batch's row. */
static void check_alone(const fuzz_case *c, int64_t b, kiln_sampler *s, int on_dev,
                        const row_out *batch_row, const char *who)
{
    const kiln_batch *bt = &c->eb;
    const int64_t V = bt->vocab_size, rs = bt->row_stride ? bt->row_stride : V;
    const int32_t n = bt->num_samples;
    const size_t es = bt->dtype == KILN_DTYPE_F32 ? 4 : 2;
    size_t ws_bytes = 0;
    ENSURE(kiln_sampler_workspace_size(s, &ws_bytes) == KILN_SUCCESS, "workspace size query");
    mem m[NMEM];
    memset(m, 0, sizeof m);

    mem_new(&m[M_LOGITS], (size_t)V * es, 0, on_dev);
    memcpy(mem_host(&m[M_LOGITS]), (const unsigned char *)host_of(c, bt->logits) + (size_t)(b * rs) * es,
           (size_t)V * es);
    kiln_batch one = KILN_BATCH_INIT;
    one.dtype = bt->dtype;
    one.num_rows = 1;
    one.vocab_size = V;
    one.num_samples = n;
    if (bt->history_offsets) {
        const row_history h = history_of_row(c, b);
        mem_new(&m[M_OFF], 16, 0, on_dev);
        int64_t off[2] = { 0, h.len };
        memcpy(mem_host(&m[M_OFF]), off, sizeof off);
        mem_new(&m[M_IDS], (size_t)h.len * 4, 0, on_dev);
        if (h.len)
            memcpy(mem_host(&m[M_IDS]), (const int32_t *)host_of(c, bt->history_ids) + h.h0,
                   (size_t)h.len * 4);
        if (bt->prompt_lengths) {
            mem_new(&m[M_PROMPT], 4, 0, on_dev);
            int32_t pl = (int32_t)h.prompt;
            memcpy(mem_host(&m[M_PROMPT]), &pl, 4);
        }
    }
    /* the row's mask words and bias entries, packed */
    const int64_t words = (V + 31) / 32;
    if (bt->allowed_mask) {
        const int64_t ms = bt->allowed_mask_stride ? bt->allowed_mask_stride : words;
        mem_new(&m[M_MASK], (size_t)words * 4, 0, on_dev);
        memcpy(mem_host(&m[M_MASK]), (const unsigned char *)host_of(c, bt->allowed_mask) +
                                         (size_t)(b * ms) * 4, (size_t)words * 4);
    }
    if (bt->logit_bias_offsets) {
        const row_bias rb = bias_of_row(c, b);
        const int64_t len = rb.hi - rb.lo;
        mem_new(&m[M_BOFF], 16, 0, on_dev);
        int64_t off[2] = { 0, len };
        memcpy(mem_host(&m[M_BOFF]), off, sizeof off);
        mem_new(&m[M_BIDS], (size_t)len * 4, 0, on_dev);
        mem_new(&m[M_BVALS], (size_t)len * 4, 0, on_dev);
        if (len) {
            memcpy(mem_host(&m[M_BIDS]),
                   (const unsigned char *)host_of(c, bt->logit_bias_ids) + (size_t)rb.lo * 4,
                   (size_t)len * 4);
            memcpy(mem_host(&m[M_BVALS]),
                   (const unsigned char *)host_of(c, bt->logit_bias_values) + (size_t)rb.lo * 4,
                   (size_t)len * 4);
        }
    }
    const row_params r = params_of_row(c, b);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = r.temperature;
    p.top_k_all = r.top_k;
    p.top_p_all = r.top_p;
    p.min_p_all = r.min_p;
    p.repetition_penalty_all = r.rep;
    p.presence_penalty_all = r.pres;
    p.frequency_penalty_all = r.freq;
    p.seed_all = r.seed;
    p.offset_all = r.offset;
    p.dynatemp_range_all = r.dt_range;
    p.dynatemp_exponent_all = r.dt_exp;
    if (b % 2) { /* odd rows: the same values through one-element arrays */
        const void *vals[NPARAM] = { &r.temperature, &r.top_k, &r.top_p, &r.min_p, &r.rep,
                                     &r.pres, &r.freq, &r.seed, &r.offset };
        for (int i = 0; i < NPARAM; ++i) {
            const size_t bytes = i >= P_SEED ? 8 : 4;
            mem_new(&m[M_TEMP + i], bytes, 0, on_dev);
            memcpy(mem_host(&m[M_TEMP + i]), vals[i], bytes);
        }
        if (c->ext) {
            mem_new(&m[M_DTR], 4, 0, on_dev);
            memcpy(mem_host(&m[M_DTR]), &r.dt_range, 4);
            mem_new(&m[M_DTE], 4, 0, on_dev);
            memcpy(mem_host(&m[M_DTE]), &r.dt_exp, 4);
        }
    }
    /* The extension's outputs: every one, unless the sampler is a CUDA one
     * (which refuses them today). */
    const int extras = !on_dev;
    const int32_t N = extras ? c->eo.num_top_logprobs : 0;
    mem_new(&m[M_TOKENS], (size_t)n * 4, 0, on_dev);
    mem_new(&m[M_LOGPROBS], (size_t)n * 4, 0, on_dev);
    mem_new(&m[M_RAW], (size_t)n * 4, 0, on_dev);
    mem_new(&m[M_PROBS], (size_t)V * 4, 0, on_dev);
    mem_new(&m[M_KEPT], 4, 0, on_dev);
    mem_new(&m[M_VALID], 1, 0, on_dev);
    mem_new(&m[M_WS], ws_bytes, 0, on_dev);
    if (extras) {
        for (int i = M_RTID; i <= M_FTLP; ++i)
            mem_new(&m[i], (size_t)N * 4, 0, on_dev);
        mem_new(&m[M_RANKS], (size_t)n * 4, 0, on_dev);
        for (int i = M_ENT; i <= M_TEMPS; ++i)
            mem_new(&m[i], 4, 0, on_dev);
    }
    for (int i = 0; i < NMEM; ++i)
        if (m[i].base && is_sample_output(i) && i != M_WS)
            memset(mem_host(&m[i]), 0xA5, m[i].size);
    for (int i = 0; i < NMEM; ++i)
        if (m[i].base)
            mem_push(&m[i]);

    one.logits = mem_arg(&m[M_LOGITS]);
    if (bt->history_offsets) {
        one.history_offsets = (const int64_t *)mem_arg(&m[M_OFF]);
        one.history_ids = (const int32_t *)mem_arg(&m[M_IDS]);
        if (bt->prompt_lengths)
            one.prompt_lengths = (const int32_t *)mem_arg(&m[M_PROMPT]);
    }
    if (bt->allowed_mask)
        one.allowed_mask = (const int32_t *)mem_arg(&m[M_MASK]);
    if (bt->logit_bias_offsets) {
        one.logit_bias_offsets = (const int64_t *)mem_arg(&m[M_BOFF]);
        one.logit_bias_ids = (const int32_t *)mem_arg(&m[M_BIDS]);
        one.logit_bias_values = (const float *)mem_arg(&m[M_BVALS]);
    }
    if (m[M_DTR].base) {
        p.dynatemp_range = (const float *)mem_arg(&m[M_DTR]);
        p.dynatemp_exponent = (const float *)mem_arg(&m[M_DTE]);
    }
    if (b % 2) {
        p.temperature = (const float *)mem_arg(&m[M_TEMP]);
        p.top_k = (const int32_t *)mem_arg(&m[M_TOPK]);
        p.top_p = (const float *)mem_arg(&m[M_TOPP]);
        p.min_p = (const float *)mem_arg(&m[M_MINP]);
        p.repetition_penalty = (const float *)mem_arg(&m[M_REP]);
        p.presence_penalty = (const float *)mem_arg(&m[M_PRES]);
        p.frequency_penalty = (const float *)mem_arg(&m[M_FREQ]);
        p.seed = (const uint64_t *)mem_arg(&m[M_SEED]);
        p.offset = (const uint64_t *)mem_arg(&m[M_OFFSET]);
    }
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = (int32_t *)mem_arg(&m[M_TOKENS]);
    o.logprobs = (float *)mem_arg(&m[M_LOGPROBS]);
    o.raw_logprobs = (float *)mem_arg(&m[M_RAW]);
    o.probs = (float *)mem_arg(&m[M_PROBS]);
    o.kept_counts = (int32_t *)mem_arg(&m[M_KEPT]);
    o.valid = (uint8_t *)mem_arg(&m[M_VALID]);
    if (extras) {
        o.num_top_logprobs = N;
        if (N > 0) {
            o.raw_top_ids = (int32_t *)mem_arg(&m[M_RTID]);
            o.raw_top_logprobs = (float *)mem_arg(&m[M_RTLP]);
            o.final_top_ids = (int32_t *)mem_arg(&m[M_FTID]);
            o.final_top_logprobs = (float *)mem_arg(&m[M_FTLP]);
        }
        o.raw_ranks = (int32_t *)mem_arg(&m[M_RANKS]);
        o.entropy = (float *)mem_arg(&m[M_ENT]);
        o.raw_entropy = (float *)mem_arg(&m[M_RENT]);
        o.temperatures = (float *)mem_arg(&m[M_TEMPS]);
    }
    kiln_status st = kiln_sample(s, &one, &p, &o, mem_arg(&m[M_WS]), ws_bytes, NULL);
    count_alone();
    ENSURE(st == KILN_SUCCESS, "row %lld alone (%s): %s", (long long)b, who,
           kiln_status_string(st));
    if (on_dev)
        dev_sync();
    for (int i = 0; i < NMEM; ++i)
        if (m[i].base && is_sample_output(i))
            mem_pull(&m[i]);

    const int32_t *tok = (const int32_t *)mem_host(&m[M_TOKENS]);
    ENSURE(memcmp(tok, batch_row->tokens, (size_t)n * 4) == 0,
           "row %lld: tokens differ from the row sampled alone (%s): %d vs %d", (long long)b, who,
           batch_row->tokens[0], tok[0]);
#define SAME(ptr, mi, bytes, name)                                                        \
    ENSURE(!(ptr) || memcmp((ptr), mem_host(&m[mi]), (bytes)) == 0,                      \
           "row %lld: %s differ from the row sampled alone (%s)", (long long)b, name, who)
    SAME(batch_row->logprobs, M_LOGPROBS, (size_t)n * 4, "logprobs");
    SAME(batch_row->raw, M_RAW, (size_t)n * 4, "raw_logprobs");
    SAME(batch_row->probs, M_PROBS, (size_t)V * 4, "probs");
    SAME(batch_row->kept, M_KEPT, 4, "kept_counts");
    SAME(batch_row->valid, M_VALID, 1, "valid");
    if (extras) {
        const size_t nb = (size_t)N * 4;
        SAME(batch_row->rtid, M_RTID, nb, "raw_top_ids");
        SAME(batch_row->rtlp, M_RTLP, nb, "raw_top_logprobs");
        SAME(batch_row->ftid, M_FTID, nb, "final_top_ids");
        SAME(batch_row->ftlp, M_FTLP, nb, "final_top_logprobs");
        SAME(batch_row->ranks, M_RANKS, (size_t)n * 4, "raw_ranks");
        SAME(batch_row->ent, M_ENT, 4, "entropy");
        SAME(batch_row->rent, M_RENT, 4, "raw_entropy");
        SAME(batch_row->temps, M_TEMPS, 4, "temperatures");
    }
#undef SAME
    for (int i = 0; i < NMEM; ++i)
        if (m[i].base)
            mem_free(&m[i]);
}

/* ------------------------------------------------------------ decoding */

/* A row stride: 0 (meaning V), V plus a little padding, or a hostile value.
 * `alloc` gets the stride the buffer is laid out with. */
static int64_t decode_stride(reader *r, int64_t B, int64_t V, size_t esize, int64_t *alloc)
{
    uint8_t s = u8(r);
    int64_t v;
    if (s < 128)
        v = 0;
    else if (s < 224)
        v = V + s % 7;
    else {
        switch (s % 8) {
        case 0: v = V - 1; break;
        case 1: v = 1; break;
        case 2: v = -1; break;
        case 3: v = INT64_MIN; break;
        case 4: v = INT64_MAX; break;
        case 5: v = B > 1 ? INT64_MAX / (int64_t)esize / (B - 1) + 1 : INT64_MAX / (int64_t)esize; break;
        case 6: v = INT64_MAX / (int64_t)esize; break;
        default: v = (int64_t)u64(r); break;
        }
    }
    const int64_t eff = v ? v : V;
    *alloc = eff >= V && eff <= V + 64 ? eff : V;
    /* A stride beyond the buffer that does not overflow is the caller's bug,
     * not kiln's: for several rows, make it overflow instead. */
    if (classify_stride(v, B, V, esize) == STRIDE_HUGE && B > 1)
        v = INT64_MAX;
    return v;
}

/* A count that is usually `good`; hostile values otherwise. A hostile value
 * that is within the limits would be a caller bug (buffers are sized for
 * `good`), so it becomes `good`. */
static int64_t decode_count(reader *r, int64_t good, int64_t limit, int64_t type_max)
{
    uint8_t s = u8(r);
    if (s < 248)
        return good;
    int64_t v;
    switch (s) {
    case 248: v = 0; break;
    case 249: v = -1; break;
    case 250: v = type_max == INT32_MAX ? INT32_MIN : INT64_MIN; break;
    case 251: v = limit + 1; break;
    case 252: v = type_max; break;
    case 253: v = KILN_MAX_VOCAB_SIZE + 1; break;
    default: v = type_max == INT32_MAX ? (int32_t)u32(r) : (int64_t)u64(r); break;
    }
    return v >= 1 && v <= limit ? good : v;
}

/* Row b of the logits, as `dtype`, from one of several generators. */
static void decode_row(reader *r, unsigned char *out, int64_t V, kiln_dtype dtype)
{
    const uint8_t mode = u8(r) % 10;
    float a = 0.0f;
    uint32_t step = 1, mod = 1;
    if (mode == 0 || mode == 7)
        a = palette_or_raw(r);
    if (mode == 3) {
        step = u8(r);
        mod = 1u + u8(r);
        a = palette_or_raw(r);
    }
    const uint32_t seed = mode == 5 ? 1u + u8(r) : 0;
    for (int64_t i = 0; i < V; ++i) {
        float x = 0.0f;
        if (mode == 2) { /* raw bits */
            if (dtype == KILN_DTYPE_F32) {
                uint32_t v = u32(r);
                memcpy(out + 4 * i, &v, 4);
            } else {
                uint16_t v = u16(r);
                memcpy(out + 2 * i, &v, 2);
            }
            continue;
        }
        switch (mode) {
        case 0: x = a; break;                                     /* all equal */
        case 1: x = palette_or_raw(r); break;                     /* palette */
        case 3: x = (float)(((uint32_t)i * step) % mod) * a; break; /* ramp, ties */
        case 4: x = -INFINITY; break;                             /* one-hot, below */
        case 5: x = -1.1f * logf((float)(1 + ((uint32_t)i * seed * 2654435761u) % (uint32_t)V)); break;
        case 6: {                                                 /* denormals */
            uint8_t v = u8(r);
            x = u2f(((uint32_t)v * 0x01010101u & 0x7FFFFFu) | (v & 1u) << 31);
            break;
        }
        case 7: x = u2f(f2u(a) + u8(r) % 3u); break;              /* ulps apart */
        case 8: {                                                 /* near +-FLT_MAX */
            uint8_t v = u8(r);
            x = u2f((0x7F7FFFFFu - (v >> 1)) | (uint32_t)(v & 1u) << 31);
            break;
        }
        default: {                                                /* masked */
            uint8_t v = u8(r);
            x = v < 128 ? -INFINITY : (float)((int)v - 192) * 0.125f;
            break;
        }
        }
        if (dtype == KILN_DTYPE_F32)
            memcpy(out + 4 * i, &x, 4);
        else {
            uint16_t h = dtype == KILN_DTYPE_F16 ? f32_to_f16(x) : f32_to_bf16(x);
            memcpy(out + 2 * i, &h, 2);
        }
    }
    if (mode == 4) { /* a few finite tokens among -inf */
        const int count = 1 + u8(r) % 3;
        for (int j = 0; j < count; ++j) {
            const int64_t at = u16(r) % V;
            const float v = palette_or_raw(r);
            if (dtype == KILN_DTYPE_F32)
                memcpy(out + 4 * at, &v, 4);
            else {
                uint16_t h = dtype == KILN_DTYPE_F16 ? f32_to_f16(v) : f32_to_bf16(v);
                memcpy(out + 2 * at, &h, 2);
            }
        }
    }
}

static void fill_poison(unsigned char *p, size_t elems, size_t esize)
{
    /* NaN in every dtype: a read of padding makes the row invalid, which the
     * row-alone comparison then sees. */
    for (size_t i = 0; i < elems; ++i) {
        if (esize == 4) {
            uint32_t v = 0x7FC0DEADu;
            memcpy(p + 4 * i, &v, 4);
        } else {
            uint16_t v = 0x7FC1u; /* NaN as f16 and as bf16 */
            memcpy(p + 2 * i, &v, 2);
        }
    }
}

/* ------------------------------------------------------- the score case */

/* kiln_score on the case's batch (section 18), after kiln_sample: statuses
 * from the model, nothing written on failure, and on success every row
 * against its raw distribution (valid flag, target log-probabilities and
 * ranks, raw top-N, raw entropy) and, when kiln_sample succeeded with the
 * same params, byte for byte against kiln_sample's raw outputs. */
static void run_score_case(fuzz_case *c, int sample_ok)
{
    const int dev = c->cuda;
    unsigned char *before[NMEM] = { NULL };
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base) {
            before[i] = (unsigned char *)xmalloc(c->m[i].size + c->m[i].shift);
            memcpy(before[i], c->m[i].base, c->m[i].size + c->m[i].shift);
            mem_push(&c->m[i]);
        }
    unsigned may = 0;
    const unsigned must = model_score(c, &may);
    const void *p_arg = c->score_params_null ? NULL : c->p_arg;
    const kiln_status st = kiln_score(c->sampler_arg, (const kiln_batch *)c->b_arg,
                                      (const kiln_sampling_params *)p_arg, c->targets,
                                      c->num_targets, (const kiln_score_outputs *)c->so_arg,
                                      c->ws_arg, c->ws_size_arg, NULL);
    if (dev && st == KILN_SUCCESS)
        dev_sync();
    count(stats_table(3), st);
    check_status(st, must, may, "kiln_score");
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base)
            mem_pull(&c->m[i]);
    const kiln_score_outputs *so = &c->eso;
    const void *reqs[] = { so->logprobs, so->ranks, so->top_ids, so->top_logprobs, so->entropy,
                           so->valid };
    for (int i = 0; i < NMEM; ++i) {
        if (!c->m[i].base)
            continue;
        const int output = is_score_output(i);
        const int requested = i >= M_SLP && i <= M_SVALID && reqs[i - M_SLP];
        if (output && st == KILN_SUCCESS && (requested || i == M_WS))
            continue;
        ENSURE(memcmp(before[i], c->m[i].base, c->m[i].size + c->m[i].shift) == 0,
               "kiln_score %s %s", st == KILN_SUCCESS ? "succeeded but changed" : "failed but changed",
               mem_names[i]);
    }
    if (st == KILN_SUCCESS) {
        const int64_t B = c->eb.num_rows, V = c->eb.vocab_size;
        const int32_t K = c->num_targets, N = so->num_top_logprobs;
        const kiln_outputs *eo = &c->eo;
        /* kiln_sample's raw outputs are the same bytes when it read the
         * same penalties */
        const int same = sample_ok && p_arg && c->eb.num_samples == 1;
        float *x = (float *)xmalloc((size_t)V * sizeof *x);
        uint32_t *seen = (uint32_t *)calloc((size_t)V, 4), *gen = (uint32_t *)calloc((size_t)V, 4);
        int32_t *order = (int32_t *)xmalloc((size_t)V * 4), *pos = (int32_t *)xmalloc((size_t)V * 4);
        if (!seen || !gen)
            abort();
        const kiln_sampling_params none = KILN_SAMPLING_PARAMS_INIT;
        for (int64_t b = 0; b < B; ++b) {
            const float *lp = so->logprobs ? (const float *)mem_host(&c->m[M_SLP]) + b * K : NULL;
            const int32_t *rk = so->ranks ? (const int32_t *)mem_host(&c->m[M_SRANK]) + b * K : NULL;
            const int32_t *tid = so->top_ids ? (const int32_t *)mem_host(&c->m[M_STID]) + b * N : NULL;
            const float *tlp = so->top_logprobs ? (const float *)mem_host(&c->m[M_STLP]) + b * N : NULL;
            const float *ent = so->entropy ? (const float *)mem_host(&c->m[M_SENT]) + b : NULL;
            const uint8_t *val = so->valid ? (const uint8_t *)mem_host(&c->m[M_SVALID]) + b : NULL;
            const int32_t *tg = K > 0 ? (const int32_t *)host_of(c, c->targets) + b * K : NULL;
            row_params r = params_of_row(c, b);
            if (!p_arg) {
                r.rep = none.repetition_penalty_all;
                r.pres = none.presence_penalty_all;
                r.freq = none.frequency_penalty_all;
            }
            const row_history h = history_of_row(c, b);
            ENSURE(!penalties_bad(&r) && !h.fault && !bias_of_row(c, b).fault,
                   "kiln_score row %lld: a bad row got past validation", (long long)b);
            penalised_row(c, b, &r, &h, x, seen, gen);
            float m = -INFINITY;
            int bad = 0;
            for (int64_t i = 0; i < V; ++i) {
                bad |= x[i] != x[i] || x[i] == INFINITY;
                m = x[i] > m ? x[i] : m;
            }
            if (bad || m == -INFINITY) {
                if (val)
                    ENSURE(*val == 0, "kiln_score row %lld invalid, valid %d", (long long)b, *val);
                for (int32_t j = 0; j < K; ++j) {
                    if (lp)
                        ENSURE(f2u(lp[j]) == QNAN, "kiln_score row %lld invalid, logprobs[%d] %g",
                               (long long)b, j, (double)lp[j]);
                    if (rk)
                        ENSURE(rk[j] == 0, "kiln_score row %lld invalid, ranks[%d] = %d",
                               (long long)b, j, rk[j]);
                }
                row_out o;
                memset(&o, 0, sizeof o);
                o.rtid = tid;
                o.rtlp = tlp;
                o.rent = ent;
                check_invalid_extras(&o, N, 0, b);
                count_row(0, 0);
                continue;
            }
            count_row(1, 0);
            if (val)
                ENSURE(*val == 1, "kiln_score row %lld valid but flag %d", (long long)b, *val);
            for (int64_t i = 0; i < V; ++i)
                order[i] = (int32_t)i;
            sort_x = x;
            canon_sort(order, pos, V);
            for (int64_t i = 0; i < V; ++i)
                pos[order[i]] = (int32_t)i;
            check_raw_top(tid, tlp, N, V, x, order, b, "kiln_score top");
            if (ent)
                ENSURE(is_finite(*ent) && *ent >= 0.0f &&
                           (double)*ent <= log((double)V) * (1.0 + 1e-5) + 1e-5,
                       "kiln_score row %lld: entropy %g with V %lld", (long long)b, (double)*ent,
                       (long long)V);
            for (int32_t j = 0; j < K; ++j) {
                const int32_t t = tg[j];
                if (t == -1) {
                    if (lp)
                        ENSURE(f2u(lp[j]) == QNAN, "kiln_score row %lld: target -1, logprob %g",
                               (long long)b, (double)lp[j]);
                    if (rk)
                        ENSURE(rk[j] == 0, "kiln_score row %lld: target -1, rank %d",
                               (long long)b, rk[j]);
                    continue;
                }
                if (rk)
                    ENSURE(rk[j] == pos[t] + 1, "kiln_score row %lld: target %d rank %d, at %d",
                           (long long)b, t, rk[j], pos[t] + 1);
                if (lp) {
                    ENSURE(lp[j] == lp[j] && lp[j] <= 0.0f && (x[t] != -INFINITY || lp[j] == -INFINITY),
                           "kiln_score row %lld: target %d logprob %g", (long long)b, t,
                           (double)lp[j]);
                    if (tlp && pos[t] < N)
                        ENSURE(f2u(lp[j]) == f2u(tlp[pos[t]]),
                               "kiln_score row %lld: target %d logprob %a, top-N has %a",
                               (long long)b, t, (double)lp[j], (double)tlp[pos[t]]);
                }
            }
            if (!same)
                continue;
            /* the same bytes as kiln_sample's raw outputs for this row */
            if (tid && eo->raw_top_ids && eo->num_top_logprobs == N)
                ENSURE(memcmp(tid, (const int32_t *)mem_host(&c->m[M_RTID]) + b * N, (size_t)N * 4) == 0,
                       "kiln_score row %lld: top ids differ from kiln_sample's raw_top_ids", (long long)b);
            if (tlp && eo->raw_top_logprobs && eo->num_top_logprobs == N)
                ENSURE(memcmp(tlp, (const float *)mem_host(&c->m[M_RTLP]) + b * N, (size_t)N * 4) == 0,
                       "kiln_score row %lld: top logprobs differ from kiln_sample's", (long long)b);
            if (ent && eo->raw_entropy)
                ENSURE(f2u(*ent) == f2u(((const float *)mem_host(&c->m[M_RENT]))[b]),
                       "kiln_score row %lld: entropy %a, kiln_sample's raw_entropy %a", (long long)b,
                       (double)*ent, (double)((const float *)mem_host(&c->m[M_RENT]))[b]);
            const int32_t tok = ((const int32_t *)mem_host(&c->m[M_TOKENS]))[b];
            for (int32_t j = 0; j < K; ++j) {
                if (tg[j] != tok)
                    continue;
                if (lp && eo->raw_logprobs)
                    ENSURE(f2u(lp[j]) == f2u(((const float *)mem_host(&c->m[M_RAW]))[b]),
                           "kiln_score row %lld: target %d logprob %a, kiln_sample's raw %a",
                           (long long)b, tok, (double)lp[j],
                           (double)((const float *)mem_host(&c->m[M_RAW]))[b]);
                if (rk && eo->raw_ranks)
                    ENSURE(rk[j] == ((const int32_t *)mem_host(&c->m[M_RANKS]))[b],
                           "kiln_score row %lld: target %d rank %d, kiln_sample's %d", (long long)b,
                           tok, rk[j], ((const int32_t *)mem_host(&c->m[M_RANKS]))[b]);
            }
        }
        free(x);
        free(seen);
        free(gen);
        free(order);
        free(pos);
    }
    for (int i = 0; i < NMEM; ++i)
        free(before[i]);
}

/* ------------------------------------------------------- the sample case */

/* ------------------------------------------------------- the extension */

/* The fields kiln.h gained after the layout above was fixed (mask, logit
 * bias, dynatemp, top-N, ranks, entropies, temperatures, kiln_score) are
 * decoded from an extension at the END of a sample case's bytes, after the
 * logits, which starts with the tag "KX": an input without it (every input
 * written before, whatever trailing bytes it has) decodes exactly as it
 * did, and bytes past the end still read as zero (feature off).
 *
 *   "KX" feat
 *   feat & 32: struct sizes: 3 bytes (batch, params, outputs), 0 keeps the
 *              size decoded above, else the (s - 1) % count-th known prefix
 *   feat & 1:  mask: stride selector, then per row a mode (+ its bytes)
 *   feat & 2:  bias: base, per row a count then (id, value) per entry,
 *              corruption selector (+ row), pointer flags
 *   feat & 4:  dynatemp: array flags, range_all, exponent_all, per-row arrays
 *   feat & 8:  outputs: max_top_logprobs, N, which outputs, hostile pointer
 *   feat & 16: kiln_score: flags (+ size), K, targets, which outputs, N
 *   feat & 64: kiln_verify_drafts: K, flags, outputs (+ probs stride), (+ size),
 *              K_b per request, draft ids, draft probability rows */
typedef struct ext_choice {
    uint8_t feat;
    uint8_t bias_ptr;
    uint8_t want2;
    uint8_t out_hostile;
    int32_t N;
    uint8_t dt_arrays;
    uint8_t score_flags, score_want;
    int32_t score_N;
    uint8_t vflags, vwant;
} ext_choice;

static const uint8_t EXT_TAG[2] = { 'K', 'X' };

static float dt_value(reader *r, int exponent)
{
    uint8_t s = u8(r);
    if (s < NPALETTE)
        return u2f(palette[s]);
    if (s < 64)
        return u2f(u32(r));
    const float t = (float)(s - 64) / 191.0f;
    return exponent ? 0.125f + t * 3.0f : t * 3.0f;
}

/* N for max_top_logprobs mt: usually within [0, mt], hostile otherwise. */
static int32_t decode_top_n(reader *r, int32_t mt)
{
    uint8_t s = u8(r);
    if (s < 240)
        return (int32_t)(s % (mt + 1));
    switch (s % 6) {
    case 0: return mt + 1;
    case 1: return -1;
    case 2: return INT32_MIN;
    case 3: return INT32_MAX;
    case 4: return 0;
    default: return 1025;
    }
}

/* Rows of the top-N outputs to allocate: N when it is usable, else 1. */
static int64_t top_alloc(int32_t N, int32_t mt)
{
    return N >= 1 && N <= mt ? N : 1;
}

static void decode_ext(reader *r, fuzz_case *c, ext_choice *x, kiln_sampling_params *fp)
{
    const int dev = c->cuda;
    const int64_t B = c->rows, V = c->vocab;
    memset(x, 0, sizeof *x);
    x->feat = u8(r);
    if (x->feat & 32) {
        const uint8_t sb = u8(r), sp = u8(r), so = u8(r);
        if (sb) c->b_given = batch_known[(sb - 1) % COUNT(batch_known)];
        if (sp) c->p_given = params_known[(sp - 1) % COUNT(params_known)];
        if (so) c->o_given = outputs_known[(so - 1) % COUNT(outputs_known)];
    }
    if (x->feat & 1) { /* mask */
        const int64_t words = (V + 31) / 32;
        int64_t ms = 0, alloc = words;
        size_t shift = 0;
        const uint8_t s = u8(r);
        if (s >= 128 && s < 224) {
            ms = words + s % 4;
            alloc = ms;
        } else if (s >= 224) {
            switch (s % 6) {
            case 0: ms = words - 1; break;
            case 1: ms = -1; break;
            case 2: ms = INT64_MIN; break;
            case 3: ms = INT64_MAX; break;
            case 4: ms = (INT64_MAX / 4 - words) / B + 1; break;
            default: shift = 1 + s % 3; break;
            }
        }
        mem_new(&c->m[M_MASK], (size_t)((B - 1) * alloc + words) * 4, shift, dev);
        unsigned char *mh = mem_host(&c->m[M_MASK]);
        for (int64_t b = 0; b < B; ++b) {
            uint32_t *w = (uint32_t *)xmalloc((size_t)alloc * 4);
            const uint8_t mode = u8(r) % 7;
            uint32_t one = 0, step = 1, base = 0;
            if (mode == 3 || mode == 5)
                one = u16(r) % (uint32_t)V;
            if (mode == 4) {
                step = 1 + u8(r) % 8;
                base = u8(r) % step;
            }
            for (int64_t i = 0; i < alloc; ++i) {
                uint32_t v = 0;
                if (i >= words) {
                    v = (uint32_t)(i * 0x9E3779B9u); /* padding: never read */
                } else {
                    switch (mode) {
                    case 0: v = 0xFFFFFFFFu; break;                 /* all allowed */
                    case 1: v = 0; break;                           /* none */
                    case 2: v = u32(r); break;                      /* raw bits */
                    case 3: v = (uint32_t)i == one / 32 ? 1u << (one % 32) : 0u; break;
                    case 4:
                        for (uint32_t j = 0; j < 32; ++j)
                            v |= (uint32_t)(((uint32_t)i * 32 + j) % step == base) << j;
                        break;
                    case 5: v = (uint32_t)i == one / 32 ? ~(1u << (one % 32)) : ~0u; break;
                    default: v = (uint32_t)u8(r) * 0x01010101u; break;
                    }
                    if (i == words - 1 && V % 32) /* bits past V: set, to be ignored */
                        v |= ~0u << (V % 32);
                }
                w[i] = v;
            }
            const int64_t len = b + 1 < B ? alloc : words;
            memcpy(mh + (size_t)(b * alloc) * 4, w, (size_t)len * 4);
            free(w);
        }
        c->ext_mask_stride = ms;
    }
    if (x->feat & 2) { /* logit bias */
        const int64_t base = u8(r) % 4;
        int64_t lens[MAX_ROWS], total = base;
        for (int64_t b = 0; b < B; ++b) {
            const uint8_t s = u8(r);
            lens[b] = s < 240 ? s % 5 : 5 + s % 8;
            total += lens[b];
        }
        int64_t off[MAX_ROWS + 1];
        int32_t *ids = (int32_t *)xmalloc((size_t)total * 4);
        float *vals = (float *)xmalloc((size_t)total * 4);
        for (int64_t i = 0; i < base; ++i) {
            ids[i] = -7; /* before row 0: never read */
            vals[i] = u2f(QNAN);
        }
        int64_t pos = base;
        for (int64_t b = 0; b < B; ++b) {
            off[b] = pos;
            for (int64_t i = 0; i < lens[b]; ++i) {
                const uint8_t s = u8(r);
                int32_t id;
                if (s < 240)
                    id = (int32_t)(s % V);
                else
                    switch (s % 6) {
                    case 0: id = -1; break;
                    case 1: id = (int32_t)V; break;
                    case 2: id = INT32_MIN; break;
                    case 3: id = INT32_MAX; break;
                    case 4: id = (int32_t)(V + 1); break;
                    default: id = (int32_t)u32(r); break;
                    }
                ids[pos] = id;
                vals[pos] = palette_or_raw(r);
                ++pos;
            }
        }
        off[B] = pos;
        const uint8_t s = u8(r); /* corrupt offsets: decreasing or negative */
        if (s >= 240) {
            const int64_t j = 1 + u8(r) % B;
            switch (s % 4) {
            case 0: off[0] = -1; break;
            case 1: off[j] = off[j - 1] - 1; break;
            case 2: off[0] = INT64_MIN; break;
            default: off[j] = INT64_MIN; break;
            }
        }
        x->bias_ptr = u8(r);
        const int mis = (x->bias_ptr >> 3) & 3;
        const size_t sh = 1 + (x->bias_ptr >> 5) % 3;
        mem_new(&c->m[M_BOFF], (size_t)(B + 1) * 8, mis == 1 ? sh : 0, dev);
        mem_new(&c->m[M_BIDS], (size_t)total * 4, mis == 2 ? sh : 0, dev);
        mem_new(&c->m[M_BVALS], (size_t)total * 4, mis == 3 ? sh : 0, dev);
        memcpy(mem_host(&c->m[M_BOFF]), off, (size_t)(B + 1) * 8);
        memcpy(mem_host(&c->m[M_BIDS]), ids, (size_t)total * 4);
        memcpy(mem_host(&c->m[M_BVALS]), vals, (size_t)total * 4);
        free(ids);
        free(vals);
    }
    if (x->feat & 4) { /* dynatemp */
        x->dt_arrays = u8(r);
        fp->dynatemp_range_all = dt_value(r, 0);
        fp->dynatemp_exponent_all = dt_value(r, 1);
        for (int k = 0; k < 2; ++k) {
            if (!((x->dt_arrays >> k) & 1))
                continue;
            const int mi = k ? M_DTE : M_DTR;
            mem_new(&c->m[mi], (size_t)B * 4, (x->dt_arrays >> (2 + k)) & 1 ? 2 : 0, dev);
            for (int64_t b = 0; b < B; ++b) {
                const float v = dt_value(r, k);
                memcpy(mem_host(&c->m[mi]) + 4 * b, &v, 4);
            }
        }
    }
    int32_t mt = c->cfg.max_top_logprobs;
    if (x->feat & 8) { /* top-N and the other new outputs */
        const uint8_t s = u8(r);
        mt = s < 250 ? s % 40 : s == 250 ? 1024 : s % 4;
        x->N = decode_top_n(r, mt);
        x->want2 = u8(r);
        x->out_hostile = u8(r);
    }
    if (x->feat & 16) { /* kiln_score */
        x->score_flags = u8(r);
        c->so_given = sizeof(kiln_score_outputs);
        if (x->score_flags & 128) {
            const uint8_t s = u8(r);
            c->so_given = s < 248 ? score_outputs_known[s % COUNT(score_outputs_known)]
                          : s < 252 ? 0 : s < 254 ? sizeof(kiln_score_outputs) + 8
                                                  : sizeof(kiln_score_outputs) - 4;
        }
        c->tgt_k = (int32_t)(u8(r) % 5);
        mem_new(&c->m[M_TGT], (size_t)(B * c->tgt_k) * 4, ((x->score_flags >> 4) & 7) == 1 ? 2 : 0,
                dev);
        for (int64_t i = 0; i < B * c->tgt_k; ++i) {
            const uint8_t s = u8(r);
            int32_t t;
            if (s < 200)
                t = (int32_t)(s % V);
            else if (s < 240)
                t = -1;
            else
                switch (s % 5) {
                case 0: t = -2; break;
                case 1: t = (int32_t)V; break;
                case 2: t = INT32_MIN; break;
                case 3: t = INT32_MAX; break;
                default: t = (int32_t)(V + 1); break;
                }
            memcpy(mem_host(&c->m[M_TGT]) + 4 * i, &t, 4);
        }
        x->score_want = u8(r);
        x->score_N = decode_top_n(r, mt);
    }
    if (x->feat & 64) { /* kiln_verify_drafts */
        const uint8_t kd = u8(r);
        int32_t Ka = 0, Kp;
        if (kd < 248) {
            Ka = (int32_t)(kd % B);
            Kp = Ka;
        } else {
            Kp = kd == 248 ? -1 : kd == 249 ? INT32_MIN : kd == 250 ? INT32_MAX
                                                                    : (int32_t)c->cfg.max_batch;
        }
        const int64_t Bv = B / (Ka + 1);
        c->vK = Kp;
        c->vK_alloc = Ka;
        c->vrows = Bv;
        x->vflags = u8(r);
        x->vwant = u8(r);
        const uint8_t pst = x->vwant & 8 ? u8(r) : 0;
        c->d_given = sizeof(kiln_drafts);
        if (x->vflags & 128) {
            const uint8_t ss = u8(r);
            static const size_t dsizes[] = { offsetof(kiln_drafts, max_drafts),
                                             offsetof(kiln_drafts, draft_ids),
                                             offsetof(kiln_drafts, num_drafts),
                                             offsetof(kiln_drafts, draft_probs),
                                             offsetof(kiln_drafts, draft_probs_stride),
                                             sizeof(kiln_drafts) };
            c->d_given = ss < 248 ? dsizes[ss % COUNT(dsizes)] : ss < 252 ? 0 : sizeof(kiln_drafts) + 8;
        }
        const int vmis = (x->vflags >> 4) & 7;
        if (x->vflags & 1) {
            mem_new(&c->m[M_DNUM], (size_t)Bv * 4, vmis == 2 ? 2 : 0, dev);
            for (int64_t b = 0; b < Bv; ++b) {
                const uint8_t sv = u8(r);
                const int32_t kb = sv < 240 ? (int32_t)(sv % (Ka + 1))
                                   : sv % 4 == 0 ? -1 : sv % 4 == 1 ? Ka + 1
                                   : sv % 4 == 2 ? INT32_MIN : INT32_MAX;
                memcpy(mem_host(&c->m[M_DNUM]) + 4 * b, &kb, 4);
            }
        }
        mem_new(&c->m[M_DIDS], (size_t)(Bv * Ka) * 4, vmis == 1 ? 2 : 0, dev);
        for (int64_t i = 0; i < Bv * Ka; ++i) {
            const uint8_t sv = u8(r);
            int32_t id;
            if (sv < 240)
                id = (int32_t)(sv % V);
            else
                switch (sv % 5) {
                case 0: id = -1; break;
                case 1: id = (int32_t)V; break;
                case 2: id = INT32_MIN; break;
                case 3: id = INT32_MAX; break;
                default: id = (int32_t)(V + 1); break;
                }
            memcpy(mem_host(&c->m[M_DIDS]) + 4 * i, &id, 4);
        }
        c->vstride_alloc = V;
        c->fd.draft_probs_stride = 0;
        if (pst >= 128 && pst < 224)
            c->fd.draft_probs_stride = c->vstride_alloc = V + pst % 3;
        else if (pst >= 224)
            c->fd.draft_probs_stride = pst % 3 == 0 ? V - 1 : pst % 3 == 1 ? -1 : INT64_MAX;
        if (x->vflags & 2) {
            const int64_t rows = Bv * Ka, ds = c->vstride_alloc;
            mem_new(&c->m[M_DPROBS], (size_t)(rows ? (rows - 1) * ds + V : 0) * 4,
                    vmis == 3 ? 2 : 0, dev);
            for (int64_t q = 0; q < rows; ++q) {
                float *row = (float *)xmalloc((size_t)ds * 4);
                const uint8_t mode = u8(r) % 4;
                int32_t d;
                memcpy(&d, mem_host(&c->m[M_DIDS]) + 4 * q, 4);
                for (int64_t j = 0; j < ds; ++j) {
                    float v;
                    if (j >= V)
                        v = u2f(QNAN); /* padding: never read */
                    else if (mode == 0)
                        v = j == d ? 1.0f : 0.0f;
                    else if (mode == 1)
                        v = 1.0f / (float)V;
                    else if (mode == 2)
                        v = palette_or_raw(r);
                    else
                        v = (float)u8(r) / 255.0f;
                    row[j] = v;
                }
                memcpy(mem_host(&c->m[M_DPROBS]) + (size_t)(q * ds) * 4, row,
                       (size_t)(q + 1 < rows ? ds : V) * 4);
                free(row);
            }
        }
        const int64_t cells = Bv * (Ka + 1);
        mem_new(&c->m[M_VTOK], (size_t)cells * 4, vmis == 4 ? 2 : 0, dev);
        mem_new(&c->m[M_VACC], (size_t)Bv * 4, vmis == 5 ? 2 : 0, dev);
        mem_new(&c->m[M_VLP], (size_t)cells * 4, vmis == 6 ? 2 : 0, dev);
        mem_new(&c->m[M_VVALID], (size_t)Bv, 0, dev);
    }
    /* max_top_logprobs is a sampler limit: a new sampler, and the workspace
     * size argument keeps its relation to the size needed */
    if (mt != c->cfg.max_top_logprobs) {
        kiln_sampler_destroy(c->s);
        c->s = NULL;
        c->cfg.max_top_logprobs = mt;
        kiln_status st = kiln_sampler_create(&c->cfg, &c->s);
        ENSURE(st == KILN_SUCCESS, "kiln_sampler_create with max_top_logprobs %d: %s", (int)mt,
               kiln_status_string(st));
        const size_t old = c->ws_need;
        ENSURE(kiln_sampler_workspace_size(c->s, &c->ws_need) == KILN_SUCCESS, "workspace size");
        if (c->ws_size_arg != 0)
            c->ws_size_arg = (size_t)((int64_t)c->ws_need + ((int64_t)c->ws_size_arg - (int64_t)old));
    }
    /* the outputs (poisoned with the rest) */
    const int64_t draws = B * c->n;
    const int sh = x->out_hostile >= 240 ? x->out_hostile % 8 : -1;
    if (x->feat & 8) {
        const int64_t na = top_alloc(x->N, mt);
        for (int i = M_RTID; i <= M_FTLP; ++i)
            mem_new(&c->m[i], (size_t)(B * na) * 4, sh == i - M_RTID ? 1 + x->out_hostile % 3 : 0, dev);
        mem_new(&c->m[M_RANKS], (size_t)draws * 4, sh == 4 ? 2 : 0, dev);
        for (int i = M_ENT; i <= M_TEMPS; ++i)
            mem_new(&c->m[i], (size_t)B * 4, sh == i - M_RANKS + 4 ? 2 : 0, dev);
    }
    if (x->feat & 16) {
        const int64_t cells = B * (c->tgt_k ? c->tgt_k : 1);
        const int64_t na = top_alloc(x->score_N, mt);
        const int ms = (x->score_flags >> 4) & 7;
        mem_new(&c->m[M_SLP], (size_t)cells * 4, ms == 2 ? 2 : 0, dev);
        mem_new(&c->m[M_SRANK], (size_t)cells * 4, ms == 3 ? 2 : 0, dev);
        mem_new(&c->m[M_STID], (size_t)(B * na) * 4, ms == 4 ? 2 : 0, dev);
        mem_new(&c->m[M_STLP], (size_t)(B * na) * 4, ms == 5 ? 2 : 0, dev);
        mem_new(&c->m[M_SENT], (size_t)B * 4, ms == 6 ? 2 : 0, dev);
        mem_new(&c->m[M_SVALID], (size_t)B, 0, dev);
    }
}

/* The extension's pointers into the call. */
static void apply_ext(fuzz_case *c, const ext_choice *x, kiln_batch *fb, kiln_outputs *fo)
{
    if (x->feat & 1) {
        fb->allowed_mask = (const int32_t *)mem_arg(&c->m[M_MASK]);
        fb->allowed_mask_stride = c->ext_mask_stride;
    }
    if (x->feat & 2) {
        if (!(x->bias_ptr & 4))
            fb->logit_bias_offsets = (const int64_t *)mem_arg(&c->m[M_BOFF]);
        if (!(x->bias_ptr & 1))
            fb->logit_bias_ids = (const int32_t *)mem_arg(&c->m[M_BIDS]);
        if (!(x->bias_ptr & 2))
            fb->logit_bias_values = (const float *)mem_arg(&c->m[M_BVALS]);
    }
    if (x->feat & 8) {
        fo->num_top_logprobs = x->N;
        void **outs[] = { (void **)&fo->raw_top_ids, (void **)&fo->raw_top_logprobs,
                          (void **)&fo->final_top_ids, (void **)&fo->final_top_logprobs,
                          (void **)&fo->raw_ranks, (void **)&fo->entropy,
                          (void **)&fo->raw_entropy, (void **)&fo->temperatures };
        for (int i = 0; i < 8; ++i)
            if ((x->want2 >> i) & 1)
                *outs[i] = mem_arg(&c->m[M_RTID + i]);
    }
    if (x->feat & 16) {
        c->score_on = 1;
        c->score_params_null = x->score_flags & 1;
        c->targets = x->score_flags & 2 ? NULL : (const int32_t *)mem_arg(&c->m[M_TGT]);
        switch ((x->score_flags >> 2) & 3) {
        case 0: c->num_targets = c->tgt_k; break;
        case 1: c->num_targets = -1; break;
        case 2: c->num_targets = INT32_MIN; break;
        default: /* a count nothing was allocated for: only with NULL targets */
            c->num_targets = c->tgt_k + 1000;
            c->targets = NULL;
            break;
        }
        kiln_score_outputs so = KILN_SCORE_OUTPUTS_INIT;
        so.num_top_logprobs = x->score_N;
        if (x->score_want & 1) so.logprobs = (float *)mem_arg(&c->m[M_SLP]);
        if (x->score_want & 2) so.ranks = (int32_t *)mem_arg(&c->m[M_SRANK]);
        if (x->score_want & 4) so.top_ids = (int32_t *)mem_arg(&c->m[M_STID]);
        if (x->score_want & 8) so.top_logprobs = (float *)mem_arg(&c->m[M_STLP]);
        if (x->score_want & 16) so.entropy = (float *)mem_arg(&c->m[M_SENT]);
        if (x->score_want & 32) so.valid = (uint8_t *)mem_arg(&c->m[M_SVALID]);
        c->fso = so;
        c->so_known = size_known(c->so_given, score_outputs_known, COUNT(score_outputs_known));
        kiln_score_outputs sdef = KILN_SCORE_OUTPUTS_INIT;
        c->eso = sdef;
        effective_struct(&c->eso, &so, c->so_given, c->so_known);
        c->so_arg = pass_struct(&so, sizeof so, c->so_given, c->so_known);
    }
}

/* ------------------------------------------------------ the verify case */

static const size_t drafts_known[] = {
    offsetof(kiln_drafts, max_drafts), offsetof(kiln_drafts, draft_ids),
    offsetof(kiln_drafts, num_drafts), offsetof(kiln_drafts, draft_probs),
    offsetof(kiln_drafts, draft_probs_stride), sizeof(kiln_drafts)
};

/* kiln_verify_drafts' arguments: the case's batch with num_rows requests
 * of K + 1 target rows each (the same logits, mask, history, bias and
 * params, read per request), the drafts and the outputs. */
static void setup_verify(fuzz_case *c, const ext_choice *x)
{
    c->verify_on = 1;
    kiln_batch vb = c->fb;
    if (vb.num_rows == c->rows)
        vb.num_rows = c->vrows;
    c->vfb = vb;
    kiln_batch bdef = KILN_BATCH_INIT;
    c->veb = bdef;
    effective_struct(&c->veb, &vb, c->b_given, c->b_known);
    c->vb_arg = c->b_arg ? pass_struct(&vb, sizeof vb, c->b_given, c->b_known) : NULL;
    kiln_drafts d = KILN_DRAFTS_INIT;
    d.max_drafts = c->vK;
    if (!(x->vflags & 4))
        d.draft_ids = (const int32_t *)mem_arg(&c->m[M_DIDS]);
    if (x->vflags & 1)
        d.num_drafts = (const int32_t *)mem_arg(&c->m[M_DNUM]);
    if (x->vflags & 2)
        d.draft_probs = (const float *)mem_arg(&c->m[M_DPROBS]);
    d.draft_probs_stride = c->fd.draft_probs_stride;
    c->d_known = size_known(c->d_given, drafts_known, COUNT(drafts_known));
    kiln_drafts ddef = KILN_DRAFTS_INIT;
    c->fd = ddef;
    effective_struct(&c->fd, &d, c->d_given, c->d_known);
    c->d_arg = pass_struct(&d, sizeof d, c->d_given, c->d_known);
    kiln_verify_outputs vo = KILN_VERIFY_OUTPUTS_INIT;
    if (!(x->vflags & 8))
        vo.tokens = (int32_t *)mem_arg(&c->m[M_VTOK]);
    if (x->vwant & 1)
        vo.num_accepted = (int32_t *)mem_arg(&c->m[M_VACC]);
    if (x->vwant & 2)
        vo.logprobs = (float *)mem_arg(&c->m[M_VLP]);
    if (x->vwant & 4)
        vo.valid = (uint8_t *)mem_arg(&c->m[M_VVALID]);
    c->vo = vo;
    c->vo_arg = pass_struct(&vo, sizeof vo, sizeof vo, 1);
}

/* kiln_verify_drafts (section 19), after kiln_sample: statuses from the
 * model, nothing written on failure, and on success each request's
 * structure (accepted drafts, then one emitted token the mask allows, then
 * -1; log-probabilities finite then NaN; an invalid request all -1 / NaN)
 * and, with K = 0, kiln_sample's bytes for the same rows. */
static void run_verify_case(fuzz_case *c, int sample_ok)
{
    const int dev = c->cuda;
    unsigned char *before[NMEM] = { NULL };
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base) {
            before[i] = (unsigned char *)xmalloc(c->m[i].size + c->m[i].shift);
            memcpy(before[i], c->m[i].base, c->m[i].size + c->m[i].shift);
            mem_push(&c->m[i]);
        }
    fuzz_case *probe = (fuzz_case *)xmalloc(sizeof *probe);
    *probe = *c;
    probe->eb = c->veb;
    probe->b_arg = c->vb_arg;
    unsigned may = 0;
    const unsigned must = model_call(probe, 2, &may);
    const kiln_status st = kiln_verify_drafts(c->sampler_arg, (const kiln_batch *)c->vb_arg,
                                              (const kiln_sampling_params *)c->p_arg,
                                              (const kiln_drafts *)c->d_arg,
                                              (const kiln_verify_outputs *)c->vo_arg, c->ws_arg,
                                              c->ws_size_arg, NULL);
    if (dev && st == KILN_SUCCESS)
        dev_sync();
    count(stats_table(4), st);
    check_status(st, must, may, "kiln_verify_drafts");
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base)
            mem_pull(&c->m[i]);
    const kiln_verify_outputs *vo = &c->vo;
    const void *reqs[] = { vo->tokens, vo->num_accepted, vo->logprobs, vo->valid };
    /* A draft probability that is not a probability in the row of the first
     * rejection can only be found by running the rule: the call then fails
     * after using its workspace (outputs untouched). Section 19 says every
     * bad input is "checked before anything is written"; for this one the
     * workspace is the exception. */
    const int late_fault = st == KILN_ERROR_INVALID_PARAMETER &&
                           !(must & BIT(KILN_ERROR_INVALID_PARAMETER));
    for (int i = 0; i < NMEM; ++i) {
        if (!c->m[i].base)
            continue;
        const int requested = i >= M_VTOK && reqs[i - M_VTOK];
        if ((st == KILN_SUCCESS && (requested || i == M_WS)) || (late_fault && i == M_WS))
            continue;
        ENSURE(memcmp(before[i], c->m[i].base, c->m[i].size + c->m[i].shift) == 0,
               "kiln_verify_drafts %s %s", st == KILN_SUCCESS ? "succeeded but changed" :
               "failed but changed", mem_names[i]);
    }
    if (st == KILN_SUCCESS) {
        const int64_t B = c->veb.num_rows, V = c->veb.vocab_size, K = c->fd.max_drafts;
        const kiln_drafts *d = &c->fd;
        float *x = (float *)xmalloc((size_t)V * sizeof *x);
        uint32_t *seen = (uint32_t *)calloc((size_t)V, 4), *gen = (uint32_t *)calloc((size_t)V, 4);
        if (!seen || !gen)
            abort();
        for (int64_t b = 0; b < B; ++b) {
            const int32_t kb = d->num_drafts ? ld_i32(host_of(c, d->num_drafts), b) : (int32_t)K;
            /* position 0: the request's own history; an invalid target row
             * there makes the request invalid, and with no drafts it is
             * the only position */
            const row_params rp = params_of_row(probe, b);
            const row_history rh = history_of_row(probe, b);
            penalised_row_at(probe, b * (K + 1), b, &rp, &rh, x, seen, gen);
            float m0 = -INFINITY;
            int bad0 = 0;
            for (int64_t i = 0; i < V; ++i) {
                bad0 |= x[i] != x[i] || x[i] == INFINITY;
                m0 = x[i] > m0 ? x[i] : m0;
            }
            const int valid0 = !bad0 && m0 != -INFINITY;
            const int32_t *tok = (const int32_t *)mem_host(&c->m[M_VTOK]) + b * (K + 1);
            const int32_t *acc = vo->num_accepted ? (const int32_t *)mem_host(&c->m[M_VACC]) + b : NULL;
            const float *lp = vo->logprobs ? (const float *)mem_host(&c->m[M_VLP]) + b * (K + 1) : NULL;
            const uint8_t *val = vo->valid ? (const uint8_t *)mem_host(&c->m[M_VVALID]) + b : NULL;
            const int valid = val ? *val : tok[0] != -1;
            ENSURE(!val || *val <= 1, "kiln_verify_drafts request %lld: valid %d", (long long)b,
                   *val);
            ENSURE(valid0 || !valid, "kiln_verify_drafts request %lld: valid with an invalid "
                   "target row at position 0", (long long)b);
            ENSURE(kb > 0 || valid == valid0, "kiln_verify_drafts request %lld: no drafts, "
                   "valid %d but the target row's validity %d", (long long)b, valid, valid0);
            if (!valid) {
                for (int64_t i = 0; i <= K; ++i) {
                    ENSURE(tok[i] == -1, "kiln_verify_drafts request %lld invalid, tokens[%lld] = %d",
                           (long long)b, (long long)i, tok[i]);
                    if (lp)
                        ENSURE(f2u(lp[i]) == QNAN,
                               "kiln_verify_drafts request %lld invalid, logprobs[%lld] = %g",
                               (long long)b, (long long)i, (double)lp[i]);
                }
                if (acc)
                    ENSURE(*acc == 0, "kiln_verify_drafts request %lld invalid, accepted %d",
                           (long long)b, *acc);
                count_row(0, 0);
                continue;
            }
            count_row(1, 0);
            int64_t a = K;
            while (a > 0 && tok[a] == -1)
                --a;
            if (acc)
                ENSURE(*acc == a, "kiln_verify_drafts request %lld: num_accepted %d, tokens say %lld",
                       (long long)b, *acc, (long long)a);
            ENSURE(a <= kb, "kiln_verify_drafts request %lld: %lld accepted of %d drafts",
                   (long long)b, (long long)a, kb);
            for (int64_t i = 0; i <= K; ++i) {
                if (i < a)
                    ENSURE(tok[i] == ld_i32(host_of(c, d->draft_ids), b * K + i),
                           "kiln_verify_drafts request %lld: tokens[%lld] = %d is not the draft %d",
                           (long long)b, (long long)i, tok[i],
                           ld_i32(host_of(c, d->draft_ids), b * K + i));
                if (i == a)
                    ENSURE(tok[i] >= 0 && tok[i] < V && mask_allows(probe, b * (K + 1) + i, tok[i]),
                           "kiln_verify_drafts request %lld: emitted token %d at %lld",
                           (long long)b, tok[i], (long long)i);
                if (i > a)
                    ENSURE(tok[i] == -1, "kiln_verify_drafts request %lld: tokens[%lld] = %d past "
                           "the emitted token", (long long)b, (long long)i, tok[i]);
                if (lp)
                    ENSURE(i <= a ? lp[i] == lp[i] && lp[i] <= 0.0f : f2u(lp[i]) == QNAN,
                           "kiln_verify_drafts request %lld: logprobs[%lld] = %g with %lld accepted",
                           (long long)b, (long long)i, (double)lp[i], (long long)a);
            }
            /* K = 0: kiln_sample's draw for the same row, seed and offset */
            if (K == 0 && sample_ok && c->eb.num_samples == 1) {
                const int32_t st_tok = ((const int32_t *)mem_host(&c->m[M_TOKENS]))[b];
                ENSURE(tok[0] == st_tok, "kiln_verify_drafts request %lld: K = 0 token %d, "
                       "kiln_sample's %d", (long long)b, tok[0], st_tok);
                if (lp && c->eo.logprobs)
                    ENSURE(f2u(lp[0]) == f2u(((const float *)mem_host(&c->m[M_LOGPROBS]))[b]),
                           "kiln_verify_drafts request %lld: K = 0 logprob %a, kiln_sample's %a",
                           (long long)b, (double)lp[0],
                           (double)((const float *)mem_host(&c->m[M_LOGPROBS]))[b]);
            }
        }
        free(x);
        free(seen);
        free(gen);
    }
    free(probe);
    for (int i = 0; i < NMEM; ++i)
        free(before[i]);
}

static int g_cuda;

static void run_sample_case(reader *r, const kiln_config *limits)
{
    fuzz_case *c = (fuzz_case *)xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->cfg = *limits;
    c->cuda = limits->backend == KILN_BACKEND_CUDA;
    const int dev = c->cuda;
    {
        kiln_config cfg = *limits;
        kiln_status st = kiln_sampler_create(&cfg, &c->s);
        ENSURE(st == KILN_SUCCESS, "kiln_sampler_create: %s", kiln_status_string(st));
        ENSURE(kiln_sampler_workspace_size(c->s, &c->ws_need) == KILN_SUCCESS, "workspace size");
    }
    const kiln_config *cfg = &c->cfg;
    const int64_t max_rows = cfg->max_batch < MAX_ROWS ? cfg->max_batch : MAX_ROWS;
    const int64_t max_vocab = cfg->max_vocab < MAX_BIG_VOCAB ? cfg->max_vocab : MAX_BIG_VOCAB;
    const int64_t max_n = cfg->max_samples < MAX_N ? cfg->max_samples : MAX_N;
    const int64_t max_hist = cfg->max_history < MAX_HIST ? cfg->max_history : MAX_HIST;
    const int64_t B = c->rows = 1 + u8(r) % max_rows;
    const int64_t V = c->vocab = 1 + u16(r) % max_vocab;
    const int32_t n = c->n = (int32_t)(1 + u8(r) % max_n);
    const uint8_t alt = u8(r);

    /* shapes as passed */
    kiln_batch fb = KILN_BATCH_INIT;
    kiln_outputs fo = KILN_OUTPUTS_INIT;
    kiln_sampling_params fp = KILN_SAMPLING_PARAMS_INIT;
    {
        uint8_t s = u8(r);
        c->dtype = (kiln_dtype)(s % 3);
        if (s < 250)
            fb.dtype = c->dtype;
        else
            fb.dtype = (kiln_dtype)(s == 250 ? 3 : s == 251 ? -1 : s == 252 ? INT32_MAX
                                    : s == 253 ? INT32_MIN : (int32_t)u32(r));
        if (fb.dtype >= 0 && fb.dtype <= 2)
            c->dtype = fb.dtype;
    }
    c->esize = c->dtype == KILN_DTYPE_F32 ? 4 : 2;
    fb.num_rows = decode_count(r, B, cfg->max_batch, INT64_MAX);
    fb.vocab_size = decode_count(r, V, cfg->max_vocab, INT64_MAX);
    fb.num_samples = (int32_t)decode_count(r, n, cfg->max_samples, INT32_MAX);
    fb.row_stride = decode_stride(r, B, V, c->esize, &c->stride);
    fo.probs_row_stride = decode_stride(r, B, V, 4, &c->pstride);
    c->b_given = decode_struct_size(r, batch_sizes, COUNT(batch_sizes));
    c->p_given = decode_struct_size(r, params_sizes, COUNT(params_sizes));
    c->o_given = decode_struct_size(r, outputs_sizes, COUNT(outputs_sizes));
    const uint8_t want = u8(r); /* which optional outputs */
    size_t ws_shift = 0;
    c->ws_size_arg = c->ws_need;
    {
        uint8_t s = u8(r);
        if (s >= 224 && s < 232)
            ws_shift = u8(r);
        else if (s >= 232 && s < 240)
            c->ws_size_arg = c->ws_need - 1 - u8(r) % 16;
        else if (s >= 240 && s < 248)
            c->ws_size_arg = c->ws_need + u8(r);
        else if (s >= 248)
            c->ws_size_arg = 0;
    }
    hostile mods[3];
    int nmods = 0;
    size_t shift[NMEM] = { 0 };
    while (nmods < 3) {
        uint8_t s = u8(r);
        if (s < 208)
            break;
        hostile h = { (s - 208) % NMOD, u8(r), u8(r), u8(r) };
        if (h.kind == MOD_MISALIGN) {
            static const int targets[] = { M_LOGITS, M_OFF, M_IDS, M_PROMPT, M_TEMP, M_TOPK,
                                           M_TOPP, M_MINP, M_REP, M_PRES, M_FREQ, M_SEED,
                                           M_OFFSET, M_TOKENS, M_LOGPROBS, M_RAW, M_PROBS,
                                           M_KEPT };
            shift[targets[h.a % COUNT(targets)]] = 1 + h.b % 7;
        }
        mods[nmods++] = h;
    }

    /* parameters: the scalar always (a bad one must be ignored when its
     * array is given), the array when its bit is set */
    const uint16_t arrays = u16(r);
    for (int i = 0; i < NPARAM; ++i) {
        const int is_array = (arrays >> i) & 1;
        const size_t bytes = i >= P_SEED ? 8 : 4;
        if (is_array) {
            mem_new(&c->m[M_TEMP + i], (size_t)B * bytes, shift[M_TEMP + i], dev);
        }
        unsigned char *dst = is_array ? mem_host(&c->m[M_TEMP + i]) : NULL;
        for (int64_t b = -1; b < (is_array ? B : 0); ++b) {
            union { float f; int32_t k; uint64_t u; } v;
            if (i == P_TOPK)
                v.k = param_top_k(r, V);
            else if (i >= P_SEED)
                v.u = param_u64(r);
            else
                v.f = param_f32(r, i);
            if (b >= 0) {
                memcpy(dst + (size_t)b * bytes, &v, bytes);
                continue;
            }
            switch (i) {
            case P_TEMP: fp.temperature_all = v.f; break;
            case P_TOPK: fp.top_k_all = v.k; break;
            case P_TOPP: fp.top_p_all = v.f; break;
            case P_MINP: fp.min_p_all = v.f; break;
            case P_REP: fp.repetition_penalty_all = v.f; break;
            case P_PRES: fp.presence_penalty_all = v.f; break;
            case P_FREQ: fp.frequency_penalty_all = v.f; break;
            case P_SEED: fp.seed_all = v.u; break;
            default: fp.offset_all = v.u; break;
            }
        }
    }

    /* history */
    const uint8_t hist = cfg->max_history > 0 || (arrays >> 12 & 1) ? u8(r) : 0;
    if (hist & 1) {
        c->hist_base = (hist >> 2) & 3;
        int64_t lens[MAX_ROWS], total = c->hist_base;
        for (int64_t b = 0; b < B; ++b) {
            uint8_t s = u8(r);
            lens[b] = s < 240 ? s % (max_hist + 1) : max_hist + 1 + s % 3;
            total += lens[b];
        }
        mem_new(&c->m[M_OFF], (size_t)(B + 1) * 8, shift[M_OFF], dev);
        mem_new(&c->m[M_IDS], (size_t)total * 4, shift[M_IDS], dev);
        int64_t off[MAX_ROWS + 1];
        int32_t *ids = (int32_t *)xmalloc((size_t)total * 4);
        for (int64_t i = 0; i < c->hist_base; ++i)
            ids[i] = -7; /* before row 0: never read */
        int64_t pos = c->hist_base;
        for (int64_t b = 0; b < B; ++b) {
            off[b] = pos;
            for (int64_t i = 0; i < lens[b]; ++i) {
                uint8_t s = u8(r);
                int32_t id;
                if (s < 240)
                    id = (int32_t)(s % V);
                else
                    switch (s % 6) {
                    case 0: id = -1; break;
                    case 1: id = (int32_t)V; break;
                    case 2: id = INT32_MIN; break;
                    case 3: id = INT32_MAX; break;
                    case 4: id = (int32_t)(V + 1); break;
                    default: id = (int32_t)u32(r); break;
                    }
                ids[pos++] = id;
            }
        }
        off[B] = pos;
        memcpy(mem_host(&c->m[M_IDS]), ids, (size_t)total * 4);
        free(ids);
        if (hist & 2) {
            mem_new(&c->m[M_PROMPT], (size_t)B * 4, shift[M_PROMPT], dev);
            int32_t pl[MAX_ROWS];
            for (int64_t b = 0; b < B; ++b) {
                uint8_t s = u8(r);
                const int32_t len = (int32_t)lens[b];
                if (s < 240)
                    pl[b] = s % (len + 1);
                else
                    pl[b] = s % 4 == 0 ? -1 : s % 4 == 1 ? len + 1 : s % 4 == 2 ? INT32_MIN : INT32_MAX;
            }
            memcpy(mem_host(&c->m[M_PROMPT]), pl, (size_t)B * 4);
        }
        uint8_t s = u8(r); /* corrupt offsets */
        if (s >= 240) {
            const int64_t j = 1 + u8(r) % B;
            switch (s % 6) {
            case 0: off[0] = -1; break;
            case 1: off[j] = off[j - 1] - 1; break;
            case 2: off[B] = INT64_MAX; break;
            case 3: off[B] = (int64_t)1 << 40; break;
            case 4: off[j] = INT64_MIN; break;
            default: off[0] = INT64_MIN; break;
            }
        }
        memcpy(mem_host(&c->m[M_OFF]), off, (size_t)(B + 1) * 8);
    }

    /* logits, padding poisoned */
    mem_new(&c->m[M_LOGITS], (size_t)((B - 1) * c->stride + V) * c->esize, shift[M_LOGITS], dev);
    for (int64_t b = 0; b < B; ++b) {
        unsigned char *row = mem_host(&c->m[M_LOGITS]) + (size_t)(b * c->stride) * c->esize;
        decode_row(r, row, V, c->dtype);
        if (b + 1 < B)
            fill_poison(row + (size_t)V * c->esize, (size_t)(c->stride - V), c->esize);
    }

    /* the extension, when tagged */
    ext_choice ext;
    memset(&ext, 0, sizeof ext);
    /* not on the CUDA backend yet: it runs the extension's stages now, but
     * the model of their device-side faults (a bad bias entry or score
     * target makes its row invalid there) is not written; test_gpu's parity
     * tests cover them */
    if (!c->cuda && r->n >= 2 && r->p[0] == EXT_TAG[0] && r->p[1] == EXT_TAG[1]) {
        u8(r);
        u8(r);
        c->ext = 1;
        count_ext();
        decode_ext(r, c, &ext, &fp);
    }

    /* outputs, poisoned */
    const size_t draws = (size_t)(B * n);
    mem_new(&c->m[M_TOKENS], draws * 4, shift[M_TOKENS], dev);
    mem_new(&c->m[M_LOGPROBS], draws * 4, shift[M_LOGPROBS], dev);
    mem_new(&c->m[M_RAW], draws * 4, shift[M_RAW], dev);
    mem_new(&c->m[M_PROBS], (size_t)((B - 1) * c->pstride + V) * 4, shift[M_PROBS], dev);
    mem_new(&c->m[M_KEPT], (size_t)B * 4, shift[M_KEPT], dev);
    mem_new(&c->m[M_VALID], (size_t)B, 0, dev);
    mem_new(&c->m[M_WS], c->ws_size_arg, ws_shift, dev);
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base && (is_sample_output(i) || is_score_output(i) || is_verify_output(i)))
            memset(mem_host(&c->m[i]), i == M_WS ? 0x3C : 0xA5, c->m[i].size);

    /* the call */
    fb.logits = mem_arg(&c->m[M_LOGITS]);
    if (hist & 1) {
        fb.history_offsets = (const int64_t *)mem_arg(&c->m[M_OFF]);
        fb.history_ids = (const int32_t *)mem_arg(&c->m[M_IDS]);
        if (hist & 2)
            fb.prompt_lengths = (const int32_t *)mem_arg(&c->m[M_PROMPT]);
    }
    if (c->m[M_TEMP].base) fp.temperature = (const float *)mem_arg(&c->m[M_TEMP]);
    if (c->m[M_TOPK].base) fp.top_k = (const int32_t *)mem_arg(&c->m[M_TOPK]);
    if (c->m[M_TOPP].base) fp.top_p = (const float *)mem_arg(&c->m[M_TOPP]);
    if (c->m[M_MINP].base) fp.min_p = (const float *)mem_arg(&c->m[M_MINP]);
    if (c->m[M_REP].base) fp.repetition_penalty = (const float *)mem_arg(&c->m[M_REP]);
    if (c->m[M_PRES].base) fp.presence_penalty = (const float *)mem_arg(&c->m[M_PRES]);
    if (c->m[M_FREQ].base) fp.frequency_penalty = (const float *)mem_arg(&c->m[M_FREQ]);
    if (c->m[M_SEED].base) fp.seed = (const uint64_t *)mem_arg(&c->m[M_SEED]);
    if (c->m[M_OFFSET].base) fp.offset = (const uint64_t *)mem_arg(&c->m[M_OFFSET]);
    fo.tokens = (int32_t *)mem_arg(&c->m[M_TOKENS]);
    if (want & 1) fo.logprobs = (float *)mem_arg(&c->m[M_LOGPROBS]);
    if (want & 2) fo.raw_logprobs = (float *)mem_arg(&c->m[M_RAW]);
    if (want & 4) fo.probs = (float *)mem_arg(&c->m[M_PROBS]);
    if (want & 8) fo.kept_counts = (int32_t *)mem_arg(&c->m[M_KEPT]);
    if (want & 16) fo.valid = (uint8_t *)mem_arg(&c->m[M_VALID]);
    if (c->m[M_DTR].base) fp.dynatemp_range = (const float *)mem_arg(&c->m[M_DTR]);
    if (c->m[M_DTE].base) fp.dynatemp_exponent = (const float *)mem_arg(&c->m[M_DTE]);
    apply_ext(c, &ext, &fb, &fo);
    c->sampler_arg = c->s;
    c->ws_arg = mem_arg(&c->m[M_WS]);

    int null_batch = 0, null_params = 0, null_outputs = 0;
    const hostile *overlap = NULL;
    for (int i = 0; i < nmods; ++i) {
        const hostile *h = &mods[i];
        switch (h->kind) {
        case MOD_NULL_SAMPLER: c->sampler_arg = NULL; break;
        case MOD_NULL_BATCH: null_batch = 1; break;
        case MOD_NULL_PARAMS: null_params = 1; break;
        case MOD_NULL_OUTPUTS: null_outputs = 1; break;
        case MOD_NULL_LOGITS: fb.logits = NULL; break;
        case MOD_NULL_TOKENS: fo.tokens = NULL; break;
        case MOD_NULL_WS: c->ws_arg = NULL; break;
        case MOD_NULL_IDS: fb.history_ids = NULL; break;
        case MOD_NULL_OFFSETS: fb.history_offsets = NULL; break;
        case MOD_OVERLAP: overlap = h; break;
        case MOD_SHARE_INPUT: { /* inputs may share memory: one float array for two fields */
            const float **fields[] = { &fp.temperature, &fp.top_p, &fp.min_p,
                                       &fp.repetition_penalty, &fp.presence_penalty,
                                       &fp.frequency_penalty };
            const float **to = fields[h->a % 6], **from = fields[h->b % 6];
            if (*from && to != from)
                *to = *from;
            break;
        }
        default: break; /* MOD_MISALIGN: applied when allocating */
        }
    }
    /* The extension's hostile pointer: a new output aimed at the tokens. */
    if ((ext.feat & 8) && ext.out_hostile >= 224 && ext.out_hostile < 240 && fo.tokens) {
        void **outs[] = { (void **)&fo.raw_top_ids, (void **)&fo.raw_top_logprobs,
                          (void **)&fo.final_top_ids, (void **)&fo.final_top_logprobs,
                          (void **)&fo.raw_ranks, (void **)&fo.entropy, (void **)&fo.raw_entropy,
                          (void **)&fo.temperatures };
        const int k = ext.out_hostile % 8;
        *outs[k] = fo.tokens;
        c->aliased_output = M_RTID + k;
    }

    /* What kiln should see. */
    kiln_batch bdef = KILN_BATCH_INIT;
    kiln_sampling_params pdef = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs odef = KILN_OUTPUTS_INIT;
    c->b_known = size_known(c->b_given, batch_known, COUNT(batch_known));
    c->p_known = size_known(c->p_given, params_known, COUNT(params_known));
    c->o_known = size_known(c->o_given, outputs_known, COUNT(outputs_known));
    c->eb = bdef;
    c->ep = pdef;
    c->eo = odef;

    /* An output aimed into another buffer of the call: chosen among the
     * regions kiln will see, so the overlap is real. */
    if (overlap) {
        static const int outs[] = { M_TOKENS, M_LOGPROBS, M_RAW, M_PROBS, M_KEPT, M_VALID };
        const int which = outs[overlap->a % 6];
        fuzz_case probe = *c;
        probe.sampler_arg = c->s; /* evaluate the shapes whatever else is wrong */
        probe.b_arg = probe.p_arg = probe.o_arg = &probe;
        effective_struct(&probe.eb, &fb, c->b_given, c->b_known);
        effective_struct(&probe.ep, &fp, c->p_given, c->p_known);
        effective_struct(&probe.eo, &fo, c->o_given, c->o_known);
        unsigned may;
        const int shapes_ok = c->b_known && c->p_known && c->o_known &&
                              !(model_sample(&probe, &may) &
                                (BIT(KILN_ERROR_INVALID_SHAPE) | BIT(KILN_ERROR_INVALID_PARAMETER)));
        if (shapes_ok) {
            region list[48];
            const int nr = call_regions(&probe, list, 0);
            int cands[48], nc = 0;
            for (int i = 0; i < nr; ++i)
                if (list[i].which != which)
                    cands[nc++] = i;
            if (nc) {
                const region *t = &list[cands[overlap->b % nc]];
                const uintptr_t at = t->begin + overlap->c % (t->end - t->begin);
                void *p = (void *)at;
                switch (which) {
                case M_TOKENS: fo.tokens = (int32_t *)p; break;
                case M_LOGPROBS: fo.logprobs = (float *)p; break;
                case M_RAW: fo.raw_logprobs = (float *)p; break;
                case M_PROBS: fo.probs = (float *)p; break;
                case M_KEPT: fo.kept_counts = (int32_t *)p; break;
                default: fo.valid = (uint8_t *)p; break;
                }
                c->aliased_output = which;
            }
        }
    }
    c->fb = fb;
    c->fp = fp;
    c->fo = fo;
    effective_struct(&c->eb, &fb, c->b_given, c->b_known);
    effective_struct(&c->ep, &fp, c->p_given, c->p_known);
    effective_struct(&c->eo, &fo, c->o_given, c->o_known);
    if (c->aliased_output) { /* a short kiln_outputs may hide it from kiln */
        const void *seen[] = { c->eo.tokens, c->eo.logprobs, c->eo.raw_logprobs, c->eo.probs,
                               c->eo.kept_counts, c->eo.valid };
        const void *seen_ext[] = { c->eo.raw_top_ids, c->eo.raw_top_logprobs,
                                   c->eo.final_top_ids, c->eo.final_top_logprobs,
                                   c->eo.raw_ranks, c->eo.entropy, c->eo.raw_entropy,
                                   c->eo.temperatures };
        if (c->aliased_output >= M_RTID ? !seen_ext[c->aliased_output - M_RTID]
                                        : !seen[c->aliased_output - M_TOKENS])
            c->aliased_output = 0;
    }
    c->b_arg = null_batch ? NULL : pass_struct(&fb, sizeof fb, c->b_given, c->b_known);
    c->p_arg = null_params ? NULL : pass_struct(&fp, sizeof fp, c->p_given, c->p_known);
    c->o_arg = null_outputs ? NULL : pass_struct(&fo, sizeof fo, c->o_given, c->o_known);
    if (ext.feat & 64)
        setup_verify(c, &ext);

    /* Snapshot, upload, call. */
    unsigned char *before[NMEM] = { NULL };
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base) {
            before[i] = (unsigned char *)xmalloc(c->m[i].size + c->m[i].shift);
            memcpy(before[i], c->m[i].base, c->m[i].size + c->m[i].shift);
            mem_push(&c->m[i]);
        }
    unsigned may = 0;
    const unsigned must = model_sample(c, &may);
    g_case = c;
    const kiln_status st = kiln_sample(c->sampler_arg, (const kiln_batch *)c->b_arg,
                                       (const kiln_sampling_params *)c->p_arg,
                                       (const kiln_outputs *)c->o_arg, c->ws_arg, c->ws_size_arg,
                                       NULL);
    if (dev && st == KILN_SUCCESS)
        dev_sync();
    count(stats_table(0), st);
    check_status(st, must, may, "kiln_sample");
    for (int i = 0; i < NMEM; ++i)
        if (c->m[i].base)
            mem_pull(&c->m[i]);

    /* Inputs never change; on failure nothing changes at all. */
    for (int i = 0; i < NMEM; ++i) {
        if (!c->m[i].base)
            continue;
        const int output = is_sample_output(i);
        if (output && st == KILN_SUCCESS)
            continue;
        ENSURE(memcmp(before[i], c->m[i].base, c->m[i].size + c->m[i].shift) == 0,
               "%s changed by a call that %s", mem_names[i],
               st == KILN_SUCCESS ? "succeeded (it is an input)" : "failed");
    }

    if (st == KILN_SUCCESS) {
        ENSURE(!c->aliased_output, "fuzz model: an aliased output was accepted");
        /* Unrequested outputs and the probs padding are untouched. */
        const kiln_outputs *eo = &c->eo;
        const void *reqs[] = { eo->logprobs, eo->raw_logprobs, eo->probs, eo->kept_counts,
                               eo->valid };
        for (int i = 0; i < 5; ++i)
            if (!reqs[i]) {
                const mem *m = &c->m[M_LOGPROBS + i];
                ENSURE(memcmp(before[M_LOGPROBS + i], m->base, m->size + m->shift) == 0,
                       "%s written but not requested", mem_names[M_LOGPROBS + i]);
            }
        const void *reqs_ext[] = { eo->raw_top_ids, eo->raw_top_logprobs, eo->final_top_ids,
                                   eo->final_top_logprobs, eo->raw_ranks, eo->entropy,
                                   eo->raw_entropy, eo->temperatures };
        for (int i = 0; i < 8; ++i) {
            const mem *m = &c->m[M_RTID + i];
            if (!reqs_ext[i] && m->base)
                ENSURE(memcmp(before[M_RTID + i], m->base, m->size + m->shift) == 0,
                       "%s written but not requested", mem_names[M_RTID + i]);
        }
        const int64_t ps = eo->probs_row_stride ? eo->probs_row_stride : V;
        if (eo->probs)
            for (int64_t b = 0; b + 1 < B; ++b)
                for (int64_t i = V; i < ps; ++i)
                    ENSURE((uint32_t)ld_i32(mem_host(&c->m[M_PROBS]), b * ps + i) == 0xA5A5A5A5u,
                           "probs padding of row %lld written at %lld", (long long)b, (long long)i);

        float *x = (float *)xmalloc((size_t)V * sizeof *x);
        uint32_t *seen = (uint32_t *)calloc((size_t)V, 4), *gen = (uint32_t *)calloc((size_t)V, 4);
        int32_t *order = (int32_t *)xmalloc((size_t)V * 4), *tmp = (int32_t *)xmalloc((size_t)V * 4);
        if (!seen || !gen)
            abort();
        /* Second opinions: another algorithm and thread count, and for CUDA
         * the CPU backend. */
        const kiln_algorithm alg2 = (kiln_algorithm)((cfg->algorithm + 1 + alt % 2) % 3);
        size_t ws2;
        kiln_sampler *s2 = make_sampler(cfg, c->cuda ? KILN_BACKEND_CUDA : KILN_BACKEND_CPU, alg2,
                                        1 + (alt >> 1) % 3, &ws2);
        kiln_sampler *s3 = c->cuda ? make_sampler(cfg, KILN_BACKEND_CPU, cfg->algorithm, 1, &ws2)
                                   : NULL;
        /* n as kiln saw it: a short kiln_batch leaves num_samples at 1 */
        const int32_t ne = c->eb.num_samples;
        for (int64_t b = 0; b < B; ++b) {
            row_out o;
            o.tokens = (const int32_t *)mem_host(&c->m[M_TOKENS]) + b * ne;
            o.logprobs = eo->logprobs ? (const float *)mem_host(&c->m[M_LOGPROBS]) + b * ne : NULL;
            o.raw = eo->raw_logprobs ? (const float *)mem_host(&c->m[M_RAW]) + b * ne : NULL;
            o.probs = eo->probs ? (const float *)mem_host(&c->m[M_PROBS]) + b * ps : NULL;
            o.kept = eo->kept_counts ? (const int32_t *)mem_host(&c->m[M_KEPT]) + b : NULL;
            o.valid = eo->valid ? (const uint8_t *)mem_host(&c->m[M_VALID]) + b : NULL;
            const int32_t N = eo->num_top_logprobs;
#define EXT_ROW(ptr, mi, T, per) (ptr ? (const T *)mem_host(&c->m[mi]) + b * (per) : NULL)
            o.rtid = EXT_ROW(eo->raw_top_ids, M_RTID, int32_t, N);
            o.rtlp = EXT_ROW(eo->raw_top_logprobs, M_RTLP, float, N);
            o.ftid = EXT_ROW(eo->final_top_ids, M_FTID, int32_t, N);
            o.ftlp = EXT_ROW(eo->final_top_logprobs, M_FTLP, float, N);
            o.ranks = EXT_ROW(eo->raw_ranks, M_RANKS, int32_t, ne);
            o.ent = EXT_ROW(eo->entropy, M_ENT, float, 1);
            o.rent = EXT_ROW(eo->raw_entropy, M_RENT, float, 1);
            o.temps = EXT_ROW(eo->temperatures, M_TEMPS, float, 1);
#undef EXT_ROW
            check_row(c, b, &o, x, seen, gen, order, tmp);
            const row_params rp = params_of_row(c, b);
            if (params_bad(&rp) || history_of_row(c, b).fault || bias_of_row(c, b).fault)
                continue; /* CUDA only: the row alone would fail on the host */
            check_alone(c, b, s2, dev, &o, c->cuda ? "CUDA, other algorithm" : "other algorithm");
            if (s3)
                check_alone(c, b, s3, 0, &o, "CPU backend");
        }
        kiln_sampler_destroy(s2);
        kiln_sampler_destroy(s3);
        free(x);
        free(seen);
        free(gen);
        free(order);
        free(tmp);
    }
    if (c->score_on)
        run_score_case(c, st == KILN_SUCCESS);
    if (c->verify_on)
        run_verify_case(c, st == KILN_SUCCESS);

    g_case = NULL;
    for (int i = 0; i < NMEM; ++i) {
        free(before[i]);
        if (c->m[i].base)
            mem_free(&c->m[i]);
    }
    free(c->b_arg);
    free(c->p_arg);
    free(c->o_arg);
    free(c->so_arg);
    free(c->vb_arg);
    free(c->d_arg);
    free(c->vo_arg);
    ENSURE(kiln_sampler_destroy(c->s) == KILN_SUCCESS, "kiln_sampler_destroy");
    free(c);
}

/* ------------------------------------------------------ configurations */

/* The statuses kiln_sampler_create may return for `cfg` (given with
 * struct_size `given`). */
static unsigned model_config(const kiln_config *eff, int known, unsigned *may)
{
    unsigned must = 0;
    *may = BIT(KILN_ERROR_OUT_OF_MEMORY);
    if (!known)
        return BIT(KILN_ERROR_INVALID_CONFIG);
    if ((eff->backend != KILN_BACKEND_CPU && eff->backend != KILN_BACKEND_CUDA) ||
        (eff->algorithm != KILN_ALGORITHM_AUTO && eff->algorithm != KILN_ALGORITHM_SORT &&
         eff->algorithm != KILN_ALGORITHM_SELECT) ||
        eff->max_batch < 1 || eff->max_vocab < 1 || eff->max_vocab > KILN_MAX_VOCAB_SIZE ||
        eff->max_samples < 1 || eff->max_history < 0 || eff->num_threads < 0 ||
        eff->max_hidden < 0 || eff->max_hidden > ((int64_t)1 << 20))
        must |= BIT(KILN_ERROR_INVALID_CONFIG);
    /* Upper bounds kiln.h leaves open; the library may set its own. */
    if (eff->max_batch > INT32_MAX || eff->max_samples > (1 << 24) ||
        eff->max_history > ((int64_t)1 << 31) || eff->num_threads > 4096)
        *may |= BIT(KILN_ERROR_INVALID_CONFIG);
    if (eff->backend == KILN_BACKEND_CUDA) {
        /* no CUDA in the build, no device, a bad ordinal, a CUDA failure, or
         * limits the device cannot index */
        *may |= BIT(KILN_ERROR_BACKEND_UNAVAILABLE) | BIT(KILN_ERROR_CUDA) |
                BIT(KILN_ERROR_INVALID_CONFIG);
    }
    return must;
}

/* Raw configuration fields; on success the rest of the input is sampled
 * with those limits (when the workspace is reasonable). */
static void run_config_case(reader *r)
{
    kiln_config full = KILN_CONFIG_INIT;
    const size_t given = decode_struct_size(r, config_sizes, COUNT(config_sizes));
    const uint8_t sel = u8(r);
    full.backend = (kiln_backend)(sel & 1 ? (int32_t)u32(r) : (g_cuda ? 1 : 0));
    full.device = sel & 2 ? (int)u32(r) : 0;
    full.max_batch = (int64_t)u64(r);
    full.max_vocab = (int64_t)u64(r);
    full.max_samples = (int32_t)u32(r);
    full.max_history = (int64_t)u64(r);
    full.num_threads = sel & 4 ? (int)u32(r) : (int)(u8(r) % 4);
    full.algorithm = (kiln_algorithm)(sel & 8 ? (int32_t)u32(r) : (int32_t)(u8(r) % 3));
    full.max_hidden = sel & 16 ? (int64_t)u64(r) : 0;
    const int known = size_known(given, config_known, COUNT(config_known));
    kiln_config eff = KILN_CONFIG_INIT;
    effective_struct(&eff, &full, given, known);
    void *arg = pass_struct(&full, sizeof full, given, known);

    unsigned may;
    const unsigned must = model_config(&eff, known, &may);
    kiln_sampler *s = (kiln_sampler *)(uintptr_t)1; /* must be overwritten */
    const kiln_status st = kiln_sampler_create((const kiln_config *)arg, &s);
    free(arg);
    count(stats_table(1), st);
    check_status(st, must, may, "kiln_sampler_create");
    if (st != KILN_SUCCESS) {
        ENSURE(s == NULL, "kiln_sampler_create failed but left *sampler = %p", (void *)s);
        return;
    }
    kiln_backend backend;
    size_t ws = 0;
    ENSURE(kiln_sampler_backend(s, &backend) == KILN_SUCCESS && backend == eff.backend,
           "kiln_sampler_backend");
    ENSURE(kiln_sampler_workspace_size(s, &ws) == KILN_SUCCESS, "workspace size");
    kiln_sampler_destroy(s);
    /* Sample with these limits unless that needs a huge workspace, many
     * threads, or a backend whose memory this run does not use. */
    const int threads = eff.num_threads ? eff.num_threads : 2;
    if (ws > WORKSPACE_CAP || threads > 8 || (eff.backend == KILN_BACKEND_CUDA) != g_cuda)
        return;
    eff.struct_size = sizeof eff;
    run_sample_case(r, &eff);
}

/* ---------------------------------------------------------- best of n */

static void run_best_of_n_case(reader *r)
{
    size_t ws;
    kiln_config limits = KILN_CONFIG_INIT;
    limits.max_vocab = 1;
    kiln_sampler *s = make_sampler(&limits, g_cuda ? KILN_BACKEND_CUDA : KILN_BACKEND_CPU,
                                   KILN_ALGORITHM_AUTO, 1, &ws);
    uint8_t gs = u8(r), ns = u8(r), hs = u8(r);
    int32_t n = (int32_t)(1 + ns % 8);
    if (ns >= 248)
        n = ns == 248 ? 0 : ns == 249 ? -1 : ns == 250 ? INT32_MIN : ns == 251 ? INT32_MAX
            : (int32_t)u32(r);
    const int n_ok = n >= 1;
    /* A raw n can be valid and huge; then no group is passed (groups = 0
     * reads nothing) rather than gigabytes of scores. */
    int64_t G = n_ok && n > 64 ? 0 : gs % 9, groups = G;
    if (gs >= 248) {
        switch (gs) {
        case 248: groups = -1; break;
        case 249: groups = INT64_MIN; break;
        case 250: groups = INT64_MAX; break;
        case 251: groups = n_ok ? INT64_MAX / 4 / n + 1 : INT64_MAX; break;
        default: groups = (int64_t)u64(r); break;
        }
        /* in range but not what was allocated: the caller's bug */
        if (groups >= 0 && (!n_ok || groups <= INT64_MAX / 4 / n))
            groups = G;
    }
    const int64_t alloc_n = n_ok ? n : 1;
    mem sc, best;
    mem_new(&sc, (size_t)(G * alloc_n) * 4, hs == 226 ? 1 + u8(r) % 3 : 0, g_cuda);
    mem_new(&best, (size_t)G * 4, hs == 227 ? 1 + u8(r) % 3 : 0, g_cuda);
    float *scores = (float *)xmalloc((size_t)(G * alloc_n) * 4);
    for (int64_t i = 0; i < G * alloc_n; ++i)
        scores[i] = u8(r) < 64 ? u2f(0x7FC00000u) : palette_or_raw(r);
    memcpy(mem_host(&sc), scores, (size_t)(G * alloc_n) * 4); /* maybe misaligned */
    memset(mem_host(&best), 0xA5, best.size);
    unsigned char *sc_before = (unsigned char *)xmalloc(sc.size + 1);
    memcpy(sc_before, mem_host(&sc), sc.size);
    mem_push(&sc);
    mem_push(&best);
    const float *sp = (const float *)mem_arg(&sc);
    int32_t *bp = (int32_t *)mem_arg(&best);
    kiln_sampler *sarg = s;
    if (hs == 224) sp = NULL;
    if (hs == 225) bp = NULL;
    if (hs == 228 && G > 0 && n_ok) /* best inside the scores */
        bp = (int32_t *)((unsigned char *)mem_arg(&sc) + 4 * (u8(r) % (size_t)(G * n)));
    if (hs == 229) sarg = NULL;

    unsigned must = 0, may = 0;
    if (!sarg || !sp || !bp)
        must |= BIT(KILN_ERROR_NULL_POINTER);
    if (groups < 0 || n < 1 || groups > INT64_MAX / 4 / n)
        must |= BIT(KILN_ERROR_INVALID_SHAPE);
    if (misaligned(sp, 4) || misaligned(bp, 4))
        must |= BIT(KILN_ERROR_MISALIGNED);
    if (hs == 228 && G > 0 && n_ok && sp && groups == G)
        must |= BIT(KILN_ERROR_OVERLAP);
    if (!sarg) {
        may = must & ~BIT(KILN_ERROR_NULL_POINTER);
        must = BIT(KILN_ERROR_NULL_POINTER);
    }
    const kiln_status st = kiln_best_of_n(sarg, sp, groups, n, bp, NULL);
    if (g_cuda && st == KILN_SUCCESS)
        dev_sync();
    count(stats_table(2), st);
    check_status(st, must, may, "kiln_best_of_n");
    mem_pull(&sc);
    mem_pull(&best);
    ENSURE(memcmp(sc_before, mem_host(&sc), sc.size) == 0, "best_of_n changed the scores");
    const unsigned char *got_at = mem_host(&best);
    for (int64_t g = 0; g < G; ++g) {
        const int32_t got = ld_i32(got_at, g);
        int32_t want = -1;
        if (st == KILN_SUCCESS && groups > 0) {
            const float *sg = scores + g * n;
            for (int32_t i = 0; i < n; ++i)
                if (sg[i] == sg[i] && (want < 0 || sg[i] > sg[want]))
                    want = i;
            ENSURE(got == want, "best_of_n group %lld: %d, expected %d", (long long)g, got,
                   want);
        } else {
            ENSURE((uint32_t)got == 0xA5A5A5A5u, "best_of_n wrote best[%lld] = %d",
                   (long long)g, got);
        }
    }
    free(scores);
    free(sc_before);
    mem_free(&sc);
    mem_free(&best);
    kiln_sampler_destroy(s);
}

/* ------------------------------------------------------------- entry */

/* KILN_FUZZ_STATS=1: what the inputs exercised, printed at exit (for
 * docs/robustness.md and to see that a corpus reaches what it should). */
static struct {
    int on;
    unsigned long sample[16], config[16], best[16], score[16], verify[16];
    unsigned long ext;
    unsigned long rows_valid, rows_invalid, rows_greedy, alone;
} stats;

static void print_stats(void)
{
    static const char *const names[] = { "SUCCESS", "NULL_POINTER", "INVALID_SHAPE",
                                         "INVALID_PARAMETER", "INVALID_CONFIG",
                                         "WORKSPACE_TOO_SMALL", "MISALIGNED", "OVERLAP",
                                         "OUT_OF_MEMORY", "BACKEND_UNAVAILABLE", "CUDA",
                                         "INTERNAL" };
    const char *const what[] = { "kiln_sample", "kiln_sampler_create (raw)", "kiln_best_of_n",
                                 "kiln_score", "kiln_verify_drafts" };
    const unsigned long *counts[] = { stats.sample, stats.config, stats.best, stats.score,
                                      stats.verify };
    fprintf(stderr, "stats: sample cases with the extension: %lu\n", stats.ext);
    for (int k = 0; k < 5; ++k) {
        fprintf(stderr, "stats: %s:", what[k]);
        for (int i = 0; i < 12; ++i)
            if (counts[k][i])
                fprintf(stderr, " %s %lu", names[i], counts[k][i]);
        fprintf(stderr, "\n");
    }
    fprintf(stderr, "stats: rows checked: %lu valid (%lu greedy), %lu invalid; %lu rows re-run alone\n",
            stats.rows_valid, stats.rows_greedy, stats.rows_invalid, stats.alone);
}

static void count(unsigned long *table, kiln_status st)
{
    if (stats.on && (unsigned)st < 16)
        table[st]++;
}

static void count_row(int valid, int greedy)
{
    stats.rows_valid += valid;
    stats.rows_invalid += !valid;
    stats.rows_greedy += greedy;
}

static void count_alone(void)
{
    stats.alone++;
}

static void count_ext(void)
{
    stats.ext++;
}

static unsigned long *stats_table(int which)
{
    return which == 0 ? stats.sample : which == 1 ? stats.config : which == 2 ? stats.best
           : which == 3 ? stats.score : stats.verify;
}

static void once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    const char *b = getenv("KILN_FUZZ_BACKEND");
    if (b && strcmp(b, "cuda") == 0) {
#ifndef KILN_FUZZ_HAVE_CUDART
        fprintf(stderr, "kiln fuzz: KILN_FUZZ_BACKEND=cuda, but this build has no CUDA runtime\n");
        exit(2);
#else
        g_cuda = 1;
#endif
    }
    const char *st_env = getenv("KILN_FUZZ_STATS");
    if (st_env && st_env[0] == '1') {
        stats.on = 1;
        atexit(print_stats);
    }
    /* The never-NULL promises. */
    for (int st = -2; st < 40; ++st)
        ENSURE(kiln_status_string((kiln_status)st) != NULL, "kiln_status_string(%d) is NULL", st);
    size_t ws;
    kiln_backend be;
    ENSURE(kiln_sampler_workspace_size(NULL, &ws) == KILN_ERROR_NULL_POINTER, "ws(NULL)");
    ENSURE(kiln_sampler_backend(NULL, &be) == KILN_ERROR_NULL_POINTER, "backend(NULL)");
    ENSURE(kiln_sampler_destroy(NULL) == KILN_SUCCESS, "destroy(NULL)");
    ENSURE(kiln_sampler_create(NULL, NULL) == KILN_ERROR_NULL_POINTER, "create(NULL, NULL)");
    kiln_sampler *s = (kiln_sampler *)(uintptr_t)1;
    ENSURE(kiln_sampler_create(NULL, &s) == KILN_ERROR_NULL_POINTER && s == NULL,
           "create(NULL config)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    once();
    reader r = { data, size };
    const uint8_t op = u8(&r);
    switch (op & 15) {
    case 15:
        run_best_of_n_case(&r);
        break;
    case 14:
        run_config_case(&r);
        break;
    default: {
        const uint8_t flags = u8(&r);
        kiln_config cfg = KILN_CONFIG_INIT;
        cfg.backend = g_cuda ? KILN_BACKEND_CUDA : KILN_BACKEND_CPU;
        cfg.algorithm = (kiln_algorithm)(flags % 3);
        cfg.num_threads = (flags >> 2) & 3;
        cfg.max_batch = 1 + u8(&r) % MAX_ROWS;
        const uint8_t vs = u8(&r);
        cfg.max_vocab = vs < 192   ? 1 + vs % 64
                        : vs < 248 ? 1 + u16(&r) % MAX_VOCAB
                                   : BIG_VOCAB + u16(&r) % (MAX_BIG_VOCAB - BIG_VOCAB);
        cfg.max_samples = 1 + u8(&r) % MAX_N;
        cfg.max_history = flags & 16 ? u8(&r) % MAX_HIST : 0;
        run_sample_case(&r, &cfg);
        break;
    }
    }
    return 0;
}
