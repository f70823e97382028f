/* kiln-bench: sampling throughput of every kiln backend and algorithm over a
 * sweep of batch sizes, vocabularies, dtypes and methods, beside the memory
 * bandwidth floor measured in the same run.
 *
 *   kiln-bench [--quick] [--csv FILE] [--backends LIST] [--rows LIST]
 *              [--vocab LIST] [--dtypes LIST] [--methods LIST]
 *              [--min-ms N] [--max-call-ms N]
 *
 * CPU times: monotonic clock, median of >= 5 timed calls after one warm-up.
 * GPU times: CUDA events around replays of a captured CUDA graph, median of
 * >= 20 after warm-up. Several input sets are rotated so repeated calls do
 * not find the logits in cache. Results go to stdout as a table and, with
 * --csv, to a CSV file (bench/report.py turns CSVs into tables and plots). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kiln/kiln.h"
#include "logit_shapes.h"

#ifdef KILN_BENCH_CUDA
#include <cuda_runtime_api.h>
#endif

/* ------------------------------------------------------------ the sweep */

typedef struct method {
    const char *name;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    int penalties; /* repetition 1.1, presence 0.5, frequency 0.3 over 512 tokens */
} method;

static const method all_methods[] = {
    { "greedy", 0.0f, 0, 1.0f, 0.0f, 0 },
    { "temperature", 0.7f, 0, 1.0f, 0.0f, 0 },
    { "top_k50", 1.0f, 50, 1.0f, 0.0f, 0 },
    { "top_p0.9", 1.0f, 0, 0.9f, 0.0f, 0 },
    { "t0.7_k50_p0.9", 0.7f, 50, 0.9f, 0.0f, 0 },
    { "min_p0.05", 1.0f, 0, 1.0f, 0.05f, 0 },
    { "t0.7_k50_p0.9_pen512", 0.7f, 50, 0.9f, 0.0f, 1 },
};
#define N_METHODS (int)(sizeof all_methods / sizeof all_methods[0])
#define HISTORY 512

typedef struct backend_spec {
    const char *name;
    kiln_backend backend;
    kiln_algorithm algorithm;
    int threads; /* CPU: 1, or 0 for all */
} backend_spec;

static const backend_spec all_backends[] = {
    { "cpu-1t", KILN_BACKEND_CPU, KILN_ALGORITHM_AUTO, 1 },
    { "cpu-1t-sort", KILN_BACKEND_CPU, KILN_ALGORITHM_SORT, 1 },
    { "cpu-all", KILN_BACKEND_CPU, KILN_ALGORITHM_AUTO, 0 },
    { "cuda-sort", KILN_BACKEND_CUDA, KILN_ALGORITHM_SORT, 0 },
    { "cuda-auto", KILN_BACKEND_CUDA, KILN_ALGORITHM_AUTO, 0 },
};
#define N_BACKENDS (int)(sizeof all_backends / sizeof all_backends[0])

typedef struct options {
    int quick;
    const char *csv;
    int64_t rows[16], vocab[16];
    int n_rows, n_vocab;
    int dtypes[2], n_dtypes;
    int methods[N_METHODS], n_methods;
    int backends[N_BACKENDS], n_backends;
    double min_ms;      /* keep timing until this much time was spent */
    double max_call_ms; /* skip larger configs of a backend once a call took longer */
} options;

/* ----------------------------------------------------------- utilities */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static int parse_list(const char *s, int64_t *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = strtoll(s, (char **)&s, 10);
        if (*s == ',')
            ++s;
    }
    return n;
}

static int find_name(const char *name, int count, const char *(*get)(int))
{
    for (int i = 0; i < count; ++i)
        if (strcmp(get(i), name) == 0)
            return i;
    return -1;
}

static const char *method_name(int i) { return all_methods[i].name; }
static const char *backend_name(int i) { return all_backends[i].name; }

static int parse_names(const char *s, int *out, int count, const char *(*get)(int))
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int i = find_name(tok, count, get);
        if (i < 0) {
            fprintf(stderr, "kiln-bench: unknown name '%s'\n", tok);
            exit(2);
        }
        out[n++] = i;
    }
    return n;
}

/* ------------------------------------------------------------ input sets */

/* Logits that look real: rows cycle through the textbook's Zipf-like shape,
 * a Zipf law, peaked rows and flat rows. */
static void fill_logits(float *x, int64_t rows, int64_t V, uint64_t seed)
{
    for (int64_t b = 0; b < rows; ++b) {
        float *r = x + b * V;
        switch (b % 4) {
        case 0: ks_zipf_like(r, V, seed + (uint64_t)b); break;
        case 1: ks_zipf(r, V, seed + (uint64_t)b); break;
        case 2: ks_peaked(r, V, seed + (uint64_t)b); break;
        default: ks_flat(r, V, seed + (uint64_t)b); break;
        }
    }
}

typedef struct input_set {
    void *logits; /* host memory */
    int64_t *offsets;
    int32_t *ids, *prompt;
    uint64_t *seeds;
} input_set;

static int sets_for(size_t bytes)
{
    /* enough sets that their total exceeds the largest caches (~256 MB) */
    size_t want = (256u << 20) / (bytes ? bytes : 1) + 1;
    return want > 8 ? 8 : want < 2 ? 2 : (int)want;
}

static void make_set(input_set *s, int64_t rows, int64_t V, int dtype, uint64_t seed)
{
    float *x = malloc((size_t)(rows * V) * 4);
    fill_logits(x, rows, V, seed);
    if (dtype == KILN_DTYPE_BF16) {
        uint16_t *h = malloc((size_t)(rows * V) * 2);
        for (int64_t i = 0; i < rows * V; ++i)
            h[i] = to_bf16(x[i]);
        free(x);
        s->logits = h;
    } else {
        s->logits = x;
    }
    ks_rng rng = { seed ^ 0xABCDEFu };
    s->offsets = malloc((size_t)(rows + 1) * 8);
    s->ids = malloc((size_t)(rows * HISTORY) * 4);
    s->prompt = malloc((size_t)rows * 4);
    s->seeds = malloc((size_t)rows * 8);
    for (int64_t b = 0; b <= rows; ++b)
        s->offsets[b] = b * HISTORY;
    for (int64_t i = 0; i < rows * HISTORY; ++i)
        s->ids[i] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
    for (int64_t b = 0; b < rows; ++b) {
        s->prompt[b] = HISTORY / 2;
        s->seeds[b] = ks_rng_u64(&rng);
    }
}

static void free_set(input_set *s)
{
    free(s->logits);
    free(s->offsets);
    free(s->ids);
    free(s->prompt);
    free(s->seeds);
}

/* ------------------------------------------------------------- one call */

typedef struct call_views {
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs out;
} call_views;

static call_views views(const input_set *s, int64_t rows, int64_t V, int dtype, const method *m,
                        int32_t *tokens, float *logprobs)
{
    call_views v;
    kiln_batch b = KILN_BATCH_INIT;
    b.dtype = (kiln_dtype)dtype;
    b.logits = s->logits;
    b.num_rows = rows;
    b.vocab_size = V;
    if (m->penalties) {
        b.history_offsets = s->offsets;
        b.history_ids = s->ids;
        b.prompt_lengths = s->prompt;
    }
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = m->temperature;
    p.top_k_all = m->top_k;
    p.top_p_all = m->top_p;
    p.min_p_all = m->min_p;
    if (m->penalties) {
        p.repetition_penalty_all = 1.1f;
        p.presence_penalty_all = 0.5f;
        p.frequency_penalty_all = 0.3f;
    }
    p.seed = s->seeds;
    p.offset_all = 0;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = tokens;
    o.logprobs = logprobs;
    v.batch = b;
    v.params = p;
    v.out = o;
    return v;
}

/* -------------------------------------------------------- bandwidth */

static double cpu_copy_gbps(int threads)
{
    const size_t bytes = (size_t)512 << 20;
    char *a = malloc(bytes), *b = malloc(bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 0.0;
    for (int rep = 0; rep < 5; ++rep) {
        double t0 = now_ms();
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (int chunk = 0; chunk < 64; ++chunk)
            memcpy(b + (size_t)chunk * (bytes / 64), a + (size_t)chunk * (bytes / 64), bytes / 64);
        double ms = now_ms() - t0;
        double gbps = 2.0 * (double)bytes / (ms * 1e6); /* read + write */
        best = gbps > best ? gbps : best;
    }
    (void)threads;
    free(a);
    free(b);
    return best;
}

/* ------------------------------------------------------------- results */

typedef struct result {
    const char *backend;
    int64_t rows, vocab;
    const char *dtype;
    const char *method;
    double us;        /* median microseconds per call */
    int reps;
    double floor_us;  /* logits bytes at the measured copy bandwidth */
    double gbps;      /* logits bytes / time */
    const char *note; /* "" or why skipped */
} result;

static FILE *csv;

static void emit(const result *r)
{
    const double tokens_per_s = r->us > 0 ? (double)r->rows / (r->us * 1e-6) : 0.0;
    printf("| %-11s | %5lld | %6lld | %-4s | %-20s | %11.1f | %12.0f | %8.2f | %7.1f%% | %s\n",
           r->backend, (long long)r->rows, (long long)r->vocab, r->dtype, r->method, r->us,
           tokens_per_s, r->gbps, r->us > 0 ? 100.0 * r->floor_us / r->us : 0.0, r->note);
    fflush(stdout);
    if (csv) {
        fprintf(csv, "%s,%lld,%lld,%s,%s,%.3f,%d,%.0f,%.4f,%.3f,%.2f,%s\n", r->backend,
                (long long)r->rows, (long long)r->vocab, r->dtype, r->method, r->us, r->reps,
                tokens_per_s, r->gbps, r->floor_us, r->us > 0 ? 100.0 * r->floor_us / r->us : 0.0,
                r->note);
        fflush(csv);
    }
}

/* ----------------------------------------------------------------- CPU */

static void bench_cpu(const options *o, const backend_spec *bs, int64_t rows, int64_t V,
                      int dtype, input_set *sets, int n_sets, double copy_gbps, result *r,
                      double *call_ms_out)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CPU;
    cfg.algorithm = bs->algorithm;
    cfg.num_threads = bs->threads;
    cfg.max_batch = rows;
    cfg.max_vocab = V;
    cfg.max_history = HISTORY;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&cfg, &s) != KILN_SUCCESS) {
        fprintf(stderr, "kiln-bench: %s\n", kiln_last_error());
        exit(1);
    }
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    void *ws = malloc(ws_bytes);
    int32_t *tokens = malloc((size_t)rows * 4);
    float *logprobs = malloc((size_t)rows * 4);
    const method *m = &all_methods[find_name(r->method, N_METHODS, method_name)];
    double times[256];
    int reps = 0;
    double spent = 0.0;
    for (int i = -1; reps < 256; ++i) {
        const input_set *set = &sets[(i + n_sets) % n_sets];
        call_views v = views(set, rows, V, dtype, m, tokens, logprobs);
        double t0 = now_ms();
        kiln_status st = kiln_sample(s, &v.batch, &v.params, &v.out, ws, ws_bytes, NULL);
        double ms = now_ms() - t0;
        if (st != KILN_SUCCESS) {
            fprintf(stderr, "kiln-bench: %s\n", kiln_last_error());
            exit(1);
        }
        if (i < 0)
            continue; /* warm-up */
        times[reps++] = ms;
        spent += ms;
        if (reps >= 5 && (spent >= o->min_ms || ms > o->max_call_ms))
            break;
    }
    r->reps = reps;
    r->us = 1e3 * median(times, reps);
    *call_ms_out = r->us * 1e-3;
    const double bytes = (double)(rows * V) * (dtype == KILN_DTYPE_F32 ? 4 : 2);
    r->gbps = bytes / (r->us * 1e3);
    r->floor_us = bytes / (copy_gbps * 1e3);
    free(ws);
    free(tokens);
    free(logprobs);
    kiln_sampler_destroy(s);
}

/* ----------------------------------------------------------------- GPU */

#ifdef KILN_BENCH_CUDA
static double gpu_copy_gbps(void)
{
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess)
        return 0.0;
    cudaMemset(a, 1, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[20];
    for (int i = 0; i < 22; ++i) {
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 2)
            t[i - 2] = ms;
    }
    double ms = median(t, 20);
    cudaFree(a);
    cudaFree(b);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 2.0 * (double)bytes / (ms * 1e6);
}

static int bench_cuda(const backend_spec *bs, int64_t rows, int64_t V, int dtype,
                      input_set *sets, int n_sets, double copy_gbps, result *r)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.algorithm = bs->algorithm;
    cfg.max_batch = rows;
    cfg.max_vocab = V;
    cfg.max_history = HISTORY;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&cfg, &s) != KILN_SUCCESS)
        return 0;
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    void *ws = NULL;
    int32_t *tokens = NULL;
    float *logprobs = NULL;
    const size_t esize = dtype == KILN_DTYPE_F32 ? 4 : 2;
    const size_t logit_bytes = (size_t)(rows * V) * esize;
    if (cudaMalloc(&ws, ws_bytes ? ws_bytes : 1) != cudaSuccess ||
        cudaMalloc((void **)&tokens, (size_t)rows * 4) != cudaSuccess ||
        cudaMalloc((void **)&logprobs, (size_t)rows * 4) != cudaSuccess) {
        r->note = "out of device memory";
        kiln_sampler_destroy(s);
        return 1;
    }
    const method *m = &all_methods[find_name(r->method, N_METHODS, method_name)];
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    /* one device copy of each input set, one captured graph per set */
    input_set dsets[8];
    cudaGraphExec_t exec[8];
    for (int i = 0; i < n_sets; ++i) {
        dsets[i] = sets[i];
        cudaMalloc(&dsets[i].logits, logit_bytes);
        cudaMalloc((void **)&dsets[i].offsets, (size_t)(rows + 1) * 8);
        cudaMalloc((void **)&dsets[i].ids, (size_t)(rows * HISTORY) * 4);
        cudaMalloc((void **)&dsets[i].prompt, (size_t)rows * 4);
        cudaMalloc((void **)&dsets[i].seeds, (size_t)rows * 8);
        cudaMemcpy(dsets[i].logits, sets[i].logits, logit_bytes, cudaMemcpyHostToDevice);
        cudaMemcpy(dsets[i].offsets, sets[i].offsets, (size_t)(rows + 1) * 8, cudaMemcpyHostToDevice);
        cudaMemcpy(dsets[i].ids, sets[i].ids, (size_t)(rows * HISTORY) * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dsets[i].prompt, sets[i].prompt, (size_t)rows * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dsets[i].seeds, sets[i].seeds, (size_t)rows * 8, cudaMemcpyHostToDevice);
        call_views v = views(&dsets[i], rows, V, dtype, m, tokens, logprobs);
        cudaGraph_t graph;
        cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
        kiln_status st = kiln_sample(s, &v.batch, &v.params, &v.out, ws, ws_bytes, stream);
        cudaStreamEndCapture(stream, &graph);
        if (st != KILN_SUCCESS) {
            fprintf(stderr, "kiln-bench: %s\n", kiln_last_error());
            exit(1);
        }
        cudaGraphInstantiate(&exec[i], graph, 0);
        cudaGraphDestroy(graph);
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double times[64];
    int reps = 0;
    for (int i = -5; reps < 64; ++i) {
        cudaEventRecord(e0, stream);
        cudaGraphLaunch(exec[(i + 5 * n_sets) % n_sets], stream);
        cudaEventRecord(e1, stream);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 0)
            times[reps++] = ms;
        if (reps >= 20 && reps >= 2 * n_sets)
            break;
    }
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        fprintf(stderr, "kiln-bench: CUDA error %s\n", cudaGetErrorString(err));
        exit(1);
    }
    r->reps = reps;
    r->us = 1e3 * median(times, reps);
    r->gbps = (double)logit_bytes / (r->us * 1e3);
    r->floor_us = (double)logit_bytes / (copy_gbps * 1e3);
    for (int i = 0; i < n_sets; ++i) {
        cudaGraphExecDestroy(exec[i]);
        cudaFree(dsets[i].logits);
        cudaFree(dsets[i].offsets);
        cudaFree(dsets[i].ids);
        cudaFree(dsets[i].prompt);
        cudaFree(dsets[i].seeds);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(stream);
    cudaFree(ws);
    cudaFree(tokens);
    cudaFree(logprobs);
    kiln_sampler_destroy(s);
    return 1;
}
#endif

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: kiln-bench [--quick] [--csv FILE] [--backends LIST] [--rows LIST]\n"
            "                  [--vocab LIST] [--dtypes f32,bf16] [--methods LIST]\n"
            "                  [--min-ms N] [--max-call-ms N]\n"
            "backends:");
    for (int i = 0; i < N_BACKENDS; ++i)
        fprintf(stderr, " %s", all_backends[i].name);
    fprintf(stderr, "\nmethods:");
    for (int i = 0; i < N_METHODS; ++i)
        fprintf(stderr, " %s", all_methods[i].name);
    fprintf(stderr, "\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    static const int64_t rows_default[] = { 1, 8, 64, 256, 1024 };
    static const int64_t vocab_default[] = { 32000, 128256, 151936, 262144 };
    o.n_rows = 5;
    memcpy(o.rows, rows_default, sizeof rows_default);
    o.n_vocab = 4;
    memcpy(o.vocab, vocab_default, sizeof vocab_default);
    o.dtypes[0] = KILN_DTYPE_F32;
    o.dtypes[1] = KILN_DTYPE_BF16;
    o.n_dtypes = 2;
    o.n_methods = N_METHODS;
    for (int i = 0; i < N_METHODS; ++i)
        o.methods[i] = i;
    o.n_backends = N_BACKENDS;
    for (int i = 0; i < N_BACKENDS; ++i)
        o.backends[i] = i;
    o.min_ms = 300.0;
    o.max_call_ms = 2000.0;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            o.quick = 1;
        } else if (strcmp(a, "--csv") == 0 && v) {
            o.csv = v, ++i;
        } else if (strcmp(a, "--rows") == 0 && v) {
            o.n_rows = parse_list(v, o.rows, 16), ++i;
        } else if (strcmp(a, "--vocab") == 0 && v) {
            o.n_vocab = parse_list(v, o.vocab, 16), ++i;
        } else if (strcmp(a, "--dtypes") == 0 && v) {
            o.n_dtypes = 0;
            if (strstr(v, "f32"))
                o.dtypes[o.n_dtypes++] = KILN_DTYPE_F32;
            if (strstr(v, "bf16"))
                o.dtypes[o.n_dtypes++] = KILN_DTYPE_BF16;
            ++i;
        } else if (strcmp(a, "--methods") == 0 && v) {
            o.n_methods = parse_names(v, o.methods, N_METHODS, method_name), ++i;
        } else if (strcmp(a, "--backends") == 0 && v) {
            o.n_backends = parse_names(v, o.backends, N_BACKENDS, backend_name), ++i;
        } else if (strcmp(a, "--min-ms") == 0 && v) {
            o.min_ms = atof(v), ++i;
        } else if (strcmp(a, "--max-call-ms") == 0 && v) {
            o.max_call_ms = atof(v), ++i;
        } else {
            usage();
        }
    }
    if (o.quick) {
        /* CPU only, small: a smoke run of a few seconds for CI */
        o.n_rows = 2;
        o.rows[0] = 1;
        o.rows[1] = 8;
        o.n_vocab = 1;
        o.vocab[0] = 32000;
        o.n_dtypes = 1;
        o.n_backends = 0;
        for (int i = 0; i < N_BACKENDS; ++i)
            if (all_backends[i].backend == KILN_BACKEND_CPU)
                o.backends[o.n_backends++] = i;
        o.min_ms = 20.0;
    }

#ifdef KILN_BENCH_CUDA
    int have_gpu = 0;
    double gpu_gbps = 0.0;
    int devices = 0;
    have_gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
    if (!have_gpu)
        cudaGetLastError();
    char gpu_name[256] = "";
    if (have_gpu) {
        struct cudaDeviceProp prop;
        cudaGetDeviceProperties(&prop, 0);
        snprintf(gpu_name, sizeof gpu_name, "%s", prop.name);
        gpu_gbps = gpu_copy_gbps();
    }
#endif
    const int all_threads =
#ifdef _OPENMP
        omp_get_max_threads();
#else
        1;
#endif
    const double cpu_gbps_1t = cpu_copy_gbps(1), cpu_gbps_all = cpu_copy_gbps(all_threads);

    if (o.csv) {
        csv = fopen(o.csv, "w");
        if (!csv) {
            perror(o.csv);
            return 1;
        }
        fprintf(csv, "backend,rows,vocab,dtype,method,us_per_call,reps,tokens_per_s,gbps,"
                     "floor_us,pct_of_floor,note\n");
    }
    printf("kiln %s bench. CPU: %d threads, copy %.1f GB/s (1 thread), %.1f GB/s (all).",
           kiln_version_string(), all_threads, cpu_gbps_1t, cpu_gbps_all);
#ifdef KILN_BENCH_CUDA
    if (have_gpu)
        printf(" GPU: %s, device copy %.0f GB/s.", gpu_name, gpu_gbps);
    else
        printf(" GPU: none.");
#else
    printf(" GPU: not built.");
#endif
    printf("\nfloor = logits bytes read once at the copy bandwidth (read + write bytes / time)\n\n");
    printf("| backend     |  rows |  vocab | type | method               |  us per call |     tokens/s |     GB/s | %% floor | note\n");
    printf("|-------------|-------|--------|------|----------------------|--------------|--------------|----------|---------|-----\n");

    const int total = o.n_backends * o.n_rows * o.n_vocab * o.n_dtypes * o.n_methods;
    int done = 0;
    double slow_ms[N_BACKENDS][N_METHODS];
    for (int i = 0; i < N_BACKENDS; ++i)
        for (int j = 0; j < N_METHODS; ++j)
            slow_ms[i][j] = 0.0;
    for (int di = 0; di < o.n_dtypes; ++di)
        for (int vi = 0; vi < o.n_vocab; ++vi)
            for (int ri = 0; ri < o.n_rows; ++ri) {
                const int64_t rows = o.rows[ri], V = o.vocab[vi];
                const int dtype = o.dtypes[di];
                const size_t bytes = (size_t)(rows * V) * (dtype == KILN_DTYPE_F32 ? 4 : 2);
                const int n_sets = sets_for(bytes);
                input_set sets[8];
                for (int s = 0; s < n_sets; ++s)
                    make_set(&sets[s], rows, V, dtype, 1000u * (uint64_t)s + 17);
                for (int mi = 0; mi < o.n_methods; ++mi)
                    for (int bi = 0; bi < o.n_backends; ++bi) {
                        const backend_spec *bs = &all_backends[o.backends[bi]];
                        result r;
                        memset(&r, 0, sizeof r);
                        r.backend = bs->name;
                        r.rows = rows;
                        r.vocab = V;
                        r.dtype = dtype == KILN_DTYPE_F32 ? "f32" : "bf16";
                        r.method = all_methods[o.methods[mi]].name;
                        r.note = "";
                        ++done;
                        fprintf(stderr, "\r[%d/%d] %s B=%lld V=%lld %s %s          ", done, total,
                                bs->name, (long long)rows, (long long)V, r.dtype, r.method);
                        if (bs->backend == KILN_BACKEND_CUDA) {
#ifdef KILN_BENCH_CUDA
                            if (!have_gpu || !bench_cuda(bs, rows, V, dtype, sets, n_sets, gpu_gbps, &r))
                                continue;
#else
                            continue;
#endif
                        } else {
                            /* a backend whose call on a smaller shape already took
                             * longer than --max-call-ms skips the larger ones */
                            double *slow = &slow_ms[o.backends[bi]][o.methods[mi]];
                            if (*slow > o.max_call_ms) {
                                r.note = "skipped: slower than --max-call-ms on a smaller shape";
                                emit(&r);
                                continue;
                            }
                            double call_ms = 0.0;
                            bench_cpu(&o, bs, rows, V, dtype, sets, n_sets,
                                      bs->threads == 1 ? cpu_gbps_1t : cpu_gbps_all, &r, &call_ms);
                            if (call_ms > *slow)
                                *slow = call_ms;
                        }
                        emit(&r);
                    }
                for (int s = 0; s < n_sets; ++s)
                    free_set(&sets[s]);
            }
    fprintf(stderr, "\rdone: %d configurations                                           \n", total);
    if (csv)
        fclose(csv);
    return 0;
}
