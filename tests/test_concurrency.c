/* Concurrency: 8 host threads, each with its own sampler (kiln.h: one
 * handle per thread; different samplers may be used concurrently), sample
 * many varied batches at the same time. Every output byte must equal the
 * same call made serially on one thread: samplers share no state, the
 * thread-local error message stays per thread, and nothing a thread writes
 * lands in another's buffers.
 *
 * The CPU part runs everywhere (threads also differ in algorithm and OpenMP
 * thread count). The CUDA part gives each thread a CUDA sampler and its own
 * stream and compares with the serial CPU results (CPU == GPU byte for byte);
 * it skips with the reason when there is no device or no CUDA in the build. */
#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

/* The support library links the CUDA runtime (and so exposes its headers)
 * whenever the toolkit was found; kt_have_cuda says whether a device is
 * there at run time. */
#if defined(__has_include)
#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#define CONC_HAVE_CUDART 1
#endif
#endif

#define THREADS 8
#define CALLS 160 /* per thread */
#define ROUNDS 2  /* concurrent rounds, each compared with the serial run */
#define MAXB 12
#define MAXV 300
#define MAXN 4
#define MAXH 8

/* One call: its inputs (host memory, read-only once built) and where the
 * serial run put its outputs. */
typedef struct conc_call {
    kiln_batch batch;
    kiln_sampling_params params;
    unsigned char *logits;
    int64_t *off;
    int32_t *ids, *prompt, *top_k;
    float *fparams[6]; /* temperature, top_p, min_p, repetition, presence, frequency */
    uint64_t *seed, *offset;
    size_t logits_bytes, ids_count;
    kt_result serial;
} conc_call;

typedef struct worker {
    int index;
    kiln_config cfg;
    conc_call calls[CALLS];
    kt_result results[CALLS];
    kiln_status status[CALLS];
    char error[256]; /* first failure, reported by the main thread */
    int use_cuda;
    int reverse; /* run the calls back to front (a different interleaving) */
} worker;

static worker *workers;
static pthread_barrier_t start_line;

static uint16_t to_half(float x, kiln_dtype dtype)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if (dtype == KILN_DTYPE_BF16)
        return (uint16_t)(u >> 16);
    uint32_t sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xFFu, m = u & 0x7FFFFFu;
    if (e == 0xFFu)
        return (uint16_t)(sign | 0x7C00u | (m ? 0x200u : 0u));
    int he = (int)e - 112;
    if (he >= 31)
        return (uint16_t)(sign | 0x7C00u);
    if (he <= 0)
        return (uint16_t)(he < -10 ? sign : sign | ((m | 0x800000u) >> (14 - he)));
    return (uint16_t)(sign | (uint32_t)he << 10 | (m >> 13));
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    cr_assert_not_null(p);
    return p;
}

/* A varied call from (thread, index): shapes, dtype, realistic or hostile
 * rows, greedy and filtered rows, penalties over histories, per-row arrays
 * or scalars. */
static void build_call(conc_call *c, int thread, int index)
{
    ks_rng rng = { 0xC0FFEEull * (uint64_t)(thread + 1) + (uint64_t)index * 7919u };
    const int64_t B = 1 + (int64_t)(ks_rng_u64(&rng) % MAXB);
    const int64_t V = 1 + (int64_t)(ks_rng_u64(&rng) % MAXV);
    const int32_t n = 1 + (int32_t)(ks_rng_u64(&rng) % MAXN);
    const kiln_dtype dtype = (kiln_dtype)(ks_rng_u64(&rng) % 3);
    const size_t es = dtype == KILN_DTYPE_F32 ? 4 : 2;
    c->logits_bytes = (size_t)(B * V) * es;
    c->logits = xcalloc(c->logits_bytes, 1);
    float *row = xcalloc((size_t)V, sizeof *row);
    for (int64_t b = 0; b < B; ++b) {
        const uint64_t seed = ks_rng_u64(&rng);
        switch (seed % 6) {
        case 0: ks_zipf(row, V, seed); break;
        case 1: ks_peaked(row, V, seed); break;
        case 2: ks_flat(row, V, seed); break;
        case 3: ks_zipf_like(row, V, seed); break;
        case 4:
            for (int64_t i = 0; i < V; ++i)
                row[i] = (float)(i % 3); /* ties */
            break;
        default:
            ks_zipf(row, V, seed);
            row[seed % (uint64_t)V] = seed % 4 == 1 ? NAN : seed % 4 == 3 ? INFINITY : -INFINITY;
            break;
        }
        for (int64_t i = 0; i < V; ++i) {
            unsigned char *at = c->logits + (size_t)(b * V + i) * es;
            if (dtype == KILN_DTYPE_F32) {
                memcpy(at, &row[i], 4);
            } else {
                const uint16_t h = to_half(row[i], dtype);
                memcpy(at, &h, 2);
            }
        }
    }
    free(row);

    kiln_batch bt = KILN_BATCH_INIT;
    bt.dtype = dtype;
    bt.logits = c->logits;
    bt.num_rows = B;
    bt.vocab_size = V;
    bt.num_samples = n;
    c->off = NULL;
    c->ids = c->prompt = NULL;
    c->ids_count = 0;
    if (ks_rng_u64(&rng) % 2) {
        c->off = xcalloc((size_t)B + 1, sizeof *c->off);
        c->ids = xcalloc((size_t)B * MAXH, sizeof *c->ids);
        c->prompt = xcalloc((size_t)B, sizeof *c->prompt);
        int64_t pos = 0;
        for (int64_t b = 0; b < B; ++b) {
            c->off[b] = pos;
            const int64_t len = (int64_t)(ks_rng_u64(&rng) % (MAXH + 1));
            for (int64_t i = 0; i < len; ++i)
                c->ids[pos++] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
            c->prompt[b] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)(len + 1));
        }
        c->off[B] = pos;
        c->ids_count = (size_t)pos;
        bt.history_offsets = c->off;
        bt.history_ids = c->ids;
        bt.prompt_lengths = c->prompt;
    }
    c->batch = bt;

    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    static const float temps[] = { 0.0f, 0.6f, 1.0f, 1.5f };
    static const float top_ps[] = { 1.0f, 0.95f, 0.5f };
    static const float min_ps[] = { 0.0f, 0.05f };
    static const float reps[] = { 1.0f, 1.3f };
    static const float pens[] = { 0.0f, 0.4f, -0.2f };
    const float *choices[6] = { temps, top_ps, min_ps, reps, pens, pens };
    const uint64_t counts[6] = { 4, 3, 2, 2, 3, 3 };
    float *alls[6] = { &p.temperature_all, &p.top_p_all, &p.min_p_all,
                       &p.repetition_penalty_all, &p.presence_penalty_all,
                       &p.frequency_penalty_all };
    const float **arrs[6] = { &p.temperature, &p.top_p, &p.min_p, &p.repetition_penalty,
                              &p.presence_penalty, &p.frequency_penalty };
    for (int f = 0; f < 6; ++f) {
        *alls[f] = choices[f][ks_rng_u64(&rng) % counts[f]];
        c->fparams[f] = NULL;
        if (ks_rng_u64(&rng) % 2) {
            c->fparams[f] = xcalloc((size_t)B, sizeof(float));
            for (int64_t b = 0; b < B; ++b)
                c->fparams[f][b] = choices[f][ks_rng_u64(&rng) % counts[f]];
            *arrs[f] = c->fparams[f];
        }
    }
    p.top_k_all = (int32_t)(ks_rng_u64(&rng) % 50);
    c->top_k = xcalloc((size_t)B, sizeof *c->top_k);
    c->seed = xcalloc((size_t)B, sizeof *c->seed);
    c->offset = xcalloc((size_t)B, sizeof *c->offset);
    for (int64_t b = 0; b < B; ++b) {
        c->top_k[b] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)(V + 1));
        c->seed[b] = ks_rng_u64(&rng);
        c->offset[b] = ks_rng_u64(&rng) % 100;
    }
    if (ks_rng_u64(&rng) % 2)
        p.top_k = c->top_k;
    p.seed = c->seed;
    p.offset = c->offset;
    c->params = p;
    c->serial = kt_result_alloc(B, V, n);
}

static void free_call(conc_call *c)
{
    free(c->logits);
    free(c->off);
    free(c->ids);
    free(c->prompt);
    free(c->top_k);
    free(c->seed);
    free(c->offset);
    for (int f = 0; f < 6; ++f)
        free(c->fparams[f]);
    kt_result_free(&c->serial);
}

static kiln_config config_of(int thread, kiln_backend backend)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = backend;
    cfg.max_batch = MAXB;
    cfg.max_vocab = MAXV;
    cfg.max_samples = MAXN;
    cfg.max_history = MAXH;
    cfg.algorithm = (kiln_algorithm)(thread % 3);
    cfg.num_threads = 1 + thread % 2;
    return cfg;
}

static void setup(void)
{
    workers = xcalloc(THREADS, sizeof *workers);
    for (int t = 0; t < THREADS; ++t) {
        workers[t].index = t;
        workers[t].cfg = config_of(t, KILN_BACKEND_CPU);
        for (int i = 0; i < CALLS; ++i) {
            build_call(&workers[t].calls[i], t, i);
            const conc_call *c = &workers[t].calls[i];
            workers[t].results[i] = kt_result_alloc(c->batch.num_rows, c->batch.vocab_size,
                                                    c->batch.num_samples);
        }
    }
    cr_assert_eq(pthread_barrier_init(&start_line, NULL, THREADS), 0);

    /* The serial reference: every thread's calls, one after another, on one
     * thread, each list on a sampler configured like that thread's. */
    for (int t = 0; t < THREADS; ++t) {
        kiln_sampler *s = NULL;
        cr_assert_eq(kiln_sampler_create(&workers[t].cfg, &s), KILN_SUCCESS, "%s",
                     kiln_last_error());
        size_t ws_bytes = 0;
        cr_assert_eq(kiln_sampler_workspace_size(s, &ws_bytes), KILN_SUCCESS);
        void *ws = malloc(ws_bytes);
        cr_assert_not_null(ws);
        for (int i = 0; i < CALLS; ++i) {
            conc_call *c = &workers[t].calls[i];
            kiln_outputs o = kt_outputs(&c->serial);
            cr_assert_eq(kiln_sample(s, &c->batch, &c->params, &o, ws, ws_bytes, NULL),
                         KILN_SUCCESS, "serial call %d of thread %d: %s", i, t,
                         kiln_last_error());
        }
        free(ws);
        kiln_sampler_destroy(s);
    }
}

static void teardown(void)
{
    pthread_barrier_destroy(&start_line);
    for (int t = 0; t < THREADS; ++t)
        for (int i = 0; i < CALLS; ++i) {
            free_call(&workers[t].calls[i]);
            kt_result_free(&workers[t].results[i]);
        }
    free(workers);
}

/* setup() is called by each test body rather than as the suite's .init, so
 * the CUDA test can skip before building anything. */
TestSuite(concurrency, .timeout = 600);

/* ----------------------------------------------------------------- CPU */

static void *cpu_worker(void *arg)
{
    worker *w = arg;
    kiln_sampler *s = NULL;
    void *ws = NULL;
    size_t ws_bytes = 0;
    /* Creation races with the other threads' calls too. */
    kiln_status st = kiln_sampler_create(&w->cfg, &s);
    if (st == KILN_SUCCESS)
        st = kiln_sampler_workspace_size(s, &ws_bytes);
    if (st == KILN_SUCCESS && !(ws = malloc(ws_bytes)))
        st = KILN_ERROR_OUT_OF_MEMORY;
    if (st != KILN_SUCCESS)
        snprintf(w->error, sizeof w->error, "thread %d: sampler: %s (%s)", w->index,
                 kiln_status_string(st), kiln_last_error());
    pthread_barrier_wait(&start_line);
    for (int k = 0; k < CALLS && st == KILN_SUCCESS; ++k) {
        const int i = w->reverse ? CALLS - 1 - k : k;
        conc_call *c = &w->calls[i];
        kt_result_poison(&w->results[i]);
        kiln_outputs o = kt_outputs(&w->results[i]);
        w->status[i] = kiln_sample(s, &c->batch, &c->params, &o, ws, ws_bytes, NULL);
        /* The message is thread-local: a success here reads "" whatever
         * the other threads are doing. */
        if (w->status[i] != KILN_SUCCESS || kiln_last_error()[0] != '\0') {
            snprintf(w->error, sizeof w->error, "thread %d call %d: %s, message \"%s\"",
                     w->index, i, kiln_status_string(w->status[i]), kiln_last_error());
            break;
        }
    }
    free(ws);
    kiln_sampler_destroy(s);
    return NULL;
}

static void run_threads(void *(*fn)(void *), int round)
{
    pthread_t tid[THREADS];
    for (int t = 0; t < THREADS; ++t) {
        workers[t].error[0] = '\0';
        workers[t].reverse = (round + t) % 2;
        cr_assert_eq(pthread_create(&tid[t], NULL, fn, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; ++t)
        cr_assert_eq(pthread_join(tid[t], NULL), 0);
}

static void compare_with_serial(const char *what, int round)
{
    for (int t = 0; t < THREADS; ++t) {
        cr_assert(workers[t].error[0] == '\0', "%s round %d: %s", what, round, workers[t].error);
        for (int i = 0; i < CALLS; ++i) {
            const conc_call *c = &workers[t].calls[i];
            for (int64_t b = 0; b < c->batch.num_rows; ++b)
                cr_assert(kt_row_equal(&workers[t].results[i], b, &c->serial, b),
                          "%s round %d: thread %d call %d row %lld differs from the serial run "
                          "(B %lld, V %lld, n %d, dtype %d)",
                          what, round, t, i, (long long)b, (long long)c->batch.num_rows,
                          (long long)c->batch.vocab_size, (int)c->batch.num_samples,
                          (int)c->batch.dtype);
        }
    }
}

Test(concurrency, cpu_threads_match_serial)
{
    setup();
    for (int round = 0; round < ROUNDS; ++round) {
        run_threads(cpu_worker, round);
        compare_with_serial("CPU", round);
    }
    fprintf(stderr, "concurrency: %d threads x %d calls x %d rounds on the CPU backend, all "
                    "byte-identical to the serial run\n",
            THREADS, CALLS, ROUNDS);
    teardown();
}

/* ---------------------------------------------------------------- CUDA */

#ifdef CONC_HAVE_CUDART
/* A thread's device copy of one call, carved from one allocation. */
typedef struct dev_arena {
    unsigned char *base;
    size_t used, size;
} dev_arena;

static void *carve(dev_arena *a, size_t bytes)
{
    const size_t at = (a->used + 255) / 256 * 256;
    a->used = at + (bytes ? bytes : 1);
    return a->used <= a->size ? a->base + at : NULL;
}

static void *cuda_worker(void *arg)
{
    worker *w = arg;
    kiln_sampler *s = NULL;
    size_t ws_bytes = 0;
    cudaStream_t stream = NULL;
    dev_arena a = { NULL, 0, 0 };
    void *ws = NULL;
    kiln_config cfg = config_of(w->index, KILN_BACKEND_CUDA);
    kiln_status st = kiln_sampler_create(&cfg, &s);
    if (st == KILN_SUCCESS)
        st = kiln_sampler_workspace_size(s, &ws_bytes);
    cudaError_t err = cudaSuccess;
    if (st == KILN_SUCCESS) {
        err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        a.size = (size_t)MAXB * MAXV * 4 * 2 + (size_t)MAXB * MAXN * 12 + (size_t)MAXB * 128 +
                 (size_t)MAXB * MAXH * 4 + 64 * 256;
        if (err == cudaSuccess)
            err = cudaMalloc((void **)&a.base, a.size);
        if (err == cudaSuccess)
            err = cudaMalloc(&ws, ws_bytes ? ws_bytes : 1);
    }
    if (st != KILN_SUCCESS || err != cudaSuccess)
        snprintf(w->error, sizeof w->error, "thread %d: CUDA sampler: %s / %s (%s)", w->index,
                 kiln_status_string(st), cudaGetErrorString(err), kiln_last_error());
    pthread_barrier_wait(&start_line);
    for (int k = 0; k < CALLS && st == KILN_SUCCESS && err == cudaSuccess; ++k) {
        const int i = w->reverse ? CALLS - 1 - k : k;
        const conc_call *c = &w->calls[i];
        kt_result *r = &w->results[i];
        const size_t B = (size_t)c->batch.num_rows, V = (size_t)c->batch.vocab_size,
                     n = (size_t)c->batch.num_samples;
        a.used = 0;
#define UP(dst, src, bytes)                                                               \
    do {                                                                                  \
        void *d_ = carve(&a, (bytes));                                                    \
        if (err == cudaSuccess && d_)                                                     \
            err = cudaMemcpyAsync(d_, (src), (bytes), cudaMemcpyHostToDevice, stream);    \
        (dst) = d_;                                                                       \
    } while (0)
        kiln_batch b = c->batch;
        kiln_sampling_params p = c->params;
        UP(b.logits, c->logits, c->logits_bytes);
        if (c->off) {
            UP(b.history_offsets, c->off, (B + 1) * 8);
            UP(b.history_ids, c->ids, c->ids_count * 4);
            UP(b.prompt_lengths, c->prompt, B * 4);
        }
        if (p.temperature) UP(p.temperature, c->params.temperature, B * 4);
        if (p.top_p) UP(p.top_p, c->params.top_p, B * 4);
        if (p.min_p) UP(p.min_p, c->params.min_p, B * 4);
        if (p.repetition_penalty) UP(p.repetition_penalty, c->params.repetition_penalty, B * 4);
        if (p.presence_penalty) UP(p.presence_penalty, c->params.presence_penalty, B * 4);
        if (p.frequency_penalty) UP(p.frequency_penalty, c->params.frequency_penalty, B * 4);
        if (p.top_k) UP(p.top_k, c->params.top_k, B * 4);
        UP(p.seed, c->params.seed, B * 8);
        UP(p.offset, c->params.offset, B * 8);
#undef UP
        kiln_outputs o = KILN_OUTPUTS_INIT;
        o.tokens = carve(&a, B * n * 4);
        o.logprobs = carve(&a, B * n * 4);
        o.raw_logprobs = carve(&a, B * n * 4);
        o.probs = carve(&a, B * V * 4);
        o.kept_counts = carve(&a, B * 4);
        o.valid = carve(&a, B);
        if (a.used > a.size) {
            snprintf(w->error, sizeof w->error, "thread %d: device arena too small", w->index);
            break;
        }
        if (err == cudaSuccess)
            w->status[i] = kiln_sample(s, &b, &p, &o, ws, ws_bytes, (kiln_stream)stream);
        if (err == cudaSuccess && w->status[i] == KILN_SUCCESS) {
            cudaMemcpyAsync(r->tokens, o.tokens, B * n * 4, cudaMemcpyDeviceToHost, stream);
            cudaMemcpyAsync(r->logprobs, o.logprobs, B * n * 4, cudaMemcpyDeviceToHost, stream);
            cudaMemcpyAsync(r->raw_logprobs, o.raw_logprobs, B * n * 4, cudaMemcpyDeviceToHost,
                            stream);
            cudaMemcpyAsync(r->probs, o.probs, B * V * 4, cudaMemcpyDeviceToHost, stream);
            cudaMemcpyAsync(r->kept, o.kept_counts, B * 4, cudaMemcpyDeviceToHost, stream);
            cudaMemcpyAsync(r->valid, o.valid, B, cudaMemcpyDeviceToHost, stream);
            err = cudaStreamSynchronize(stream);
        }
        if (err != cudaSuccess || w->status[i] != KILN_SUCCESS) {
            snprintf(w->error, sizeof w->error, "thread %d call %d: %s / %s (%s)", w->index, i,
                     kiln_status_string(w->status[i]), cudaGetErrorString(err),
                     kiln_last_error());
            break;
        }
    }
    if (stream)
        cudaStreamDestroy(stream);
    cudaFree(a.base);
    cudaFree(ws);
    kiln_sampler_destroy(s);
    return NULL;
}
#endif

Test(concurrency, cuda_threads_own_streams_match_serial_cpu)
{
    KT_REQUIRE_GPU();
#ifdef CONC_HAVE_CUDART
    setup();
    for (int round = 0; round < ROUNDS; ++round) {
        run_threads(cuda_worker, round);
        compare_with_serial("CUDA", round);
    }
    fprintf(stderr, "concurrency: %d threads x %d calls x %d rounds on the CUDA backend, one "
                    "stream each, all byte-identical to the serial CPU run\n",
            THREADS, CALLS, ROUNDS);
    teardown();
#else
    KT_GPU_UNAVAILABLE("built without the CUDA runtime headers");
#endif
}
