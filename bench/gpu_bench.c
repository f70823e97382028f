/* kiln-gpu-bench: the GPU headline of bench/gpu-headline. kiln's CUDA
 * backend (cuda-auto: the sort-free select path; cuda-sort: CUB's segmented
 * sort) over B x V x dtype x method, each call a CUDA-graph replay timed
 * with CUDA events, beside the device-to-device copy bandwidth measured in
 * the same run (the floor: the logits read once at that bandwidth).
 *
 *   kiln-gpu-bench [--csv FILE] [--rows 1,64,256] [--vocab 32000,128256,151936]
 *                  [--dtypes f32,bf16] [--methods LIST] [--backends LIST]
 *                  [--reps N] [--budget-s S]
 *
 * Every CUDA call is checked; the tokens of each timed configuration are
 * read back and must lie in [0, V) (the logits are finite, so every row is
 * valid). Several input sets are rotated so a replay does not find the
 * logits of the previous one in L2. CSV columns are kiln-bench's. Exit
 * status: 0, 1 on any error, 77 when there is no CUDA device (or no CUDA in
 * the build), so scripts/gpu-check reports SKIP. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "logit_shapes.h"
#include "sampler.h" /* cuda_cluster_off, for cuda-rows */

#ifdef KILN_BENCH_CUDA
#include <cuda_runtime_api.h>

typedef struct method {
    const char *name;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
} method;

/* The headline methods (the names bench/gpu_headline.py and kiln-bench use). */
static const method all_methods[] = {
    { "t0.7_k50_p0.9", 0.7f, 50, 0.9f, 0.0f },
    { "top_p0.9", 1.0f, 0, 0.9f, 0.0f },
    { "min_p0.05", 1.0f, 0, 1.0f, 0.05f },
    { "plain", 1.0f, 0, 1.0f, 0.0f },
    { "top_k50", 1.0f, 50, 1.0f, 0.0f },
    { "greedy", 0.0f, 0, 1.0f, 0.0f },
};
#define N_METHODS (int)(sizeof all_methods / sizeof all_methods[0])

typedef struct backend_spec {
    const char *name;
    kiln_algorithm algorithm;
    int cluster_off; /* the per-row kernels instead of the cluster path */
} backend_spec;

/* cuda-auto takes the cluster path for these plain calls; cuda-rows is the
 * same call through the per-row kernels (prepare, select, tiles, draws),
 * for the comparison docs/performance.md's model predicts. */
static const backend_spec all_backends[] = {
    { "cuda-auto", KILN_ALGORITHM_AUTO, 0 },
    { "cuda-sort", KILN_ALGORITHM_SORT, 0 },
    { "cuda-rows", KILN_ALGORITHM_AUTO, 1 },
};
#define N_BACKENDS (int)(sizeof all_backends / sizeof all_backends[0])

#define MAX_SETS 8

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

/* Any CUDA failure ends the run: a timing after one would be meaningless. */
#define CK(call)                                                                             \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "kiln-gpu-bench: %s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call, \
                    cudaGetErrorName(e_), cudaGetErrorString(e_));                           \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define KCK(call)                                                                            \
    do {                                                                                     \
        kiln_status s_ = (call);                                                             \
        if (s_ != KILN_SUCCESS) {                                                            \
            fprintf(stderr, "kiln-gpu-bench: %s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, \
                    kiln_status_string(s_), kiln_last_error());                              \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* kiln-bench's rows: the textbook's Zipf-like shape, a Zipf law, peaked and
 * flat rows, in turn. */
static void fill_logits(float *x, int64_t rows, int64_t V, uint64_t seed)
{
#pragma omp parallel for schedule(dynamic)
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

static double copy_gbps(void)
{
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[20];
    for (int i = 0; i < 22; ++i) {
        CK(cudaEventRecord(e0, 0));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 2)
            t[i - 2] = ms;
    }
    const double ms = median(t, 20);
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return 2.0 * (double)bytes / (ms * 1e6); /* bytes read + written per second, in GB/s */
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

static int parse_names(const char *s, int *out, int count, const char *(*get)(int))
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int i = 0;
        while (i < count && strcmp(get(i), tok) != 0)
            ++i;
        if (i == count) {
            fprintf(stderr, "kiln-gpu-bench: unknown name '%s'\n", tok);
            exit(2);
        }
        out[n++] = i;
    }
    return n;
}

static const char *method_name(int i) { return all_methods[i].name; }
static const char *backend_name(int i) { return all_backends[i].name; }

static FILE *csv;

static void emit(const char *backend, int64_t B, int64_t V, const char *dt, const char *m,
                 double us, int reps, double floor_us, const char *note)
{
    const double bytes = (double)(B * V) * (strcmp(dt, "f32") == 0 ? 4 : 2);
    const double tps = us > 0 ? (double)B / (us * 1e-6) : 0.0;
    const double gbps = us > 0 ? bytes / (us * 1e3) : 0.0;
    const double pct = us > 0 ? 100.0 * floor_us / us : 0.0;
    printf("| %-9s | %4lld | %6lld | %-4s | %-13s | %10.2f | %12.0f | %8.1f | %6.1f%% | %s\n",
           backend, (long long)B, (long long)V, dt, m, us, tps, gbps, pct, note);
    fflush(stdout);
    if (csv) {
        fprintf(csv, "%s,%lld,%lld,%s,%s,%.3f,%d,%.0f,%.4f,%.3f,%.2f,%s\n", backend, (long long)B,
                (long long)V, dt, m, us, reps, tps, gbps, floor_us, pct, note);
        fflush(csv);
    }
}

/* One (backend, shape, method): a graph per input set, replays timed. */
static int bench_one(const backend_spec *bs, const method *m, int64_t B, int64_t V, int dtype,
                     void *const *d_logits, int n_sets, const uint64_t *d_seeds, int min_reps,
                     double *us_out, int *reps_out)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.algorithm = bs->algorithm;
    cfg.max_batch = B;
    cfg.max_vocab = V;
    kiln_sampler *s = NULL;
    KCK(kiln_sampler_create(&cfg, &s));
    s->cuda_cluster_off = bs->cluster_off;
    size_t ws_bytes = 0;
    KCK(kiln_sampler_workspace_size(s, &ws_bytes));
    void *ws = NULL;
    int32_t *tokens = NULL;
    float *logprobs = NULL;
    CK(cudaMalloc(&ws, ws_bytes ? ws_bytes : 1));
    CK(cudaMalloc((void **)&tokens, (size_t)B * 4));
    CK(cudaMalloc((void **)&logprobs, (size_t)B * 4));
    CK(cudaMemset(tokens, 0xA5, (size_t)B * 4));
    cudaStream_t stream;
    CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraphExec_t exec[MAX_SETS];
    for (int i = 0; i < n_sets; ++i) {
        const int warm_up = i == 0; /* one direct call first (lazy module loading) */
        kiln_batch b = KILN_BATCH_INIT;
        b.dtype = (kiln_dtype)dtype;
        b.logits = d_logits[i];
        b.num_rows = B;
        b.vocab_size = V;
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.temperature_all = m->temperature;
        p.top_k_all = m->top_k;
        p.top_p_all = m->top_p;
        p.min_p_all = m->min_p;
        p.seed = d_seeds;
        p.offset_all = (uint64_t)i;
        kiln_outputs o = KILN_OUTPUTS_INIT;
        o.tokens = tokens;
        o.logprobs = logprobs;
        if (warm_up) {
            KCK(kiln_sample(s, &b, &p, &o, ws, ws_bytes, (kiln_stream)stream));
            CK(cudaStreamSynchronize(stream));
        }
        cudaGraph_t graph;
        CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        kiln_status st = kiln_sample(s, &b, &p, &o, ws, ws_bytes, (kiln_stream)stream);
        CK(cudaStreamEndCapture(stream, &graph));
        KCK(st);
        CK(cudaGraphInstantiate(&exec[i], graph, 0));
        CK(cudaGraphDestroy(graph));
    }
    for (int i = 0; i < 3 * n_sets; ++i) /* warm-up */
        CK(cudaGraphLaunch(exec[i % n_sets], stream));
    CK(cudaStreamSynchronize(stream));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double times[256];
    int reps = 0;
    const int want = min_reps > 2 * n_sets ? min_reps : 2 * n_sets;
    while (reps < want && reps < 256) {
        CK(cudaEventRecord(e0, stream));
        CK(cudaGraphLaunch(exec[reps % n_sets], stream));
        CK(cudaEventRecord(e1, stream));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        times[reps++] = ms * 1e3;
    }
    CK(cudaGetLastError());
    int32_t *host = malloc((size_t)B * 4);
    CK(cudaMemcpy(host, tokens, (size_t)B * 4, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int64_t r = 0; r < B; ++r)
        bad += host[r] < 0 || host[r] >= V;
    free(host);
    *us_out = median(times, reps);
    *reps_out = reps;
    for (int i = 0; i < n_sets; ++i)
        CK(cudaGraphExecDestroy(exec[i]));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaStreamDestroy(stream));
    CK(cudaFree(ws));
    CK(cudaFree(tokens));
    CK(cudaFree(logprobs));
    kiln_sampler_destroy(s);
    return bad;
}

int main(int argc, char **argv)
{
    int64_t rows[16] = { 1, 64, 256 }, vocab[16] = { 32000, 128256, 151936 };
    int n_rows = 3, n_vocab = 3;
    int dtypes[2] = { KILN_DTYPE_F32, KILN_DTYPE_BF16 }, n_dtypes = 2;
    int methods[N_METHODS] = { 0, 1, 2, 3 }, n_methods = 4;
    int backends[N_BACKENDS] = { 0, 1, 2 }, n_backends = 3;
    int min_reps = 20;
    double budget_s = 1e9;
    const char *csv_path = NULL;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "kiln-gpu-bench: %s needs a value\n", a);
            return 2;
        }
        ++i;
        if (strcmp(a, "--csv") == 0)
            csv_path = v;
        else if (strcmp(a, "--rows") == 0)
            n_rows = parse_list(v, rows, 16);
        else if (strcmp(a, "--vocab") == 0)
            n_vocab = parse_list(v, vocab, 16);
        else if (strcmp(a, "--dtypes") == 0) {
            n_dtypes = 0;
            if (strstr(v, "f32"))
                dtypes[n_dtypes++] = KILN_DTYPE_F32;
            if (strstr(v, "bf16"))
                dtypes[n_dtypes++] = KILN_DTYPE_BF16;
        } else if (strcmp(a, "--methods") == 0)
            n_methods = parse_names(v, methods, N_METHODS, method_name);
        else if (strcmp(a, "--backends") == 0)
            n_backends = parse_names(v, backends, N_BACKENDS, backend_name);
        else if (strcmp(a, "--reps") == 0)
            min_reps = atoi(v);
        else if (strcmp(a, "--budget-s") == 0)
            budget_s = atof(v);
        else {
            fprintf(stderr, "usage: kiln-gpu-bench [--csv FILE] [--rows LIST] [--vocab LIST] "
                            "[--dtypes f32,bf16] [--methods LIST] [--backends LIST] [--reps N] "
                            "[--budget-s S]\n");
            return 2;
        }
    }
    const double t_start = now_s();
    int devices = 0;
    cudaError_t derr = cudaGetDeviceCount(&devices);
    if (derr != cudaSuccess || devices == 0) {
        printf("kiln-gpu-bench: no CUDA device (%s): skipped\n",
               derr != cudaSuccess ? cudaGetErrorString(derr) : "0 devices");
        return 77;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const double gbps = copy_gbps();
    if (csv_path) {
        csv = fopen(csv_path, "w");
        if (!csv) {
            perror(csv_path);
            return 1;
        }
        fprintf(csv, "backend,rows,vocab,dtype,method,us_per_call,reps,tokens_per_s,gbps,"
                     "floor_us,pct_of_floor,note\n");
        /* the floor's own row: the measured copy bandwidth, rows = 0 */
        fprintf(csv, "copy-floor,0,0,-,-,0,20,0,%.1f,0,0,device-to-device cudaMemcpyAsync 1 GiB "
                     "(read + write bytes / time)\n", gbps);
    }
    printf("kiln %s GPU bench on %s (sm_%d%d, %d SMs): device copy %.0f GB/s (read + write)\n",
           kiln_version_string(), prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           gbps);
    printf("floor = logits bytes read once at that bandwidth; times are medians of CUDA-graph "
           "replays (CUDA events)\n\n");
    printf("| backend   |    B |      V | type | method        |   us/call |     tokens/s |     GB/s |  floor | note\n");
    printf("|-----------|------|--------|------|---------------|-----------|--------------|----------|--------|-----\n");
    int errors = 0;
    for (int di = 0; di < n_dtypes; ++di)
        for (int vi = 0; vi < n_vocab; ++vi)
            for (int ri = 0; ri < n_rows; ++ri) {
                const int64_t B = rows[ri], V = vocab[vi];
                const int dtype = dtypes[di];
                const char *dt = dtype == KILN_DTYPE_F32 ? "f32" : "bf16";
                const size_t esize = dtype == KILN_DTYPE_F32 ? 4 : 2;
                const size_t bytes = (size_t)(B * V) * esize;
                const double floor_us = (double)bytes / (gbps * 1e3);
                if (now_s() - t_start > budget_s) {
                    for (int mi = 0; mi < n_methods; ++mi)
                        for (int bi = 0; bi < n_backends; ++bi)
                            emit(all_backends[backends[bi]].name, B, V, dt,
                                 all_methods[methods[mi]].name, 0.0, 0, floor_us,
                                 "skipped: over --budget-s");
                    continue;
                }
                /* enough sets to exceed the 60 MB L2 twice over, 2..8 */
                size_t want = ((size_t)128 << 20) / (bytes ? bytes : 1) + 1;
                const int n_sets = want > MAX_SETS ? MAX_SETS : want < 2 ? 2 : (int)want;
                void *d_logits[MAX_SETS];
                float *x = malloc((size_t)(B * V) * 4);
                uint16_t *h = dtype == KILN_DTYPE_BF16 ? malloc(bytes) : NULL;
                for (int sidx = 0; sidx < n_sets; ++sidx) {
                    fill_logits(x, B, V, 1000u * (uint64_t)sidx + 17);
                    if (h)
                        for (int64_t i = 0; i < B * V; ++i)
                            h[i] = to_bf16(x[i]);
                    CK(cudaMalloc(&d_logits[sidx], bytes));
                    CK(cudaMemcpy(d_logits[sidx], h ? (void *)h : (void *)x, bytes,
                                  cudaMemcpyHostToDevice));
                }
                free(x);
                free(h);
                uint64_t *seeds = malloc((size_t)B * 8), *d_seeds = NULL;
                ks_rng rng = { (uint64_t)(B * 31 + V) };
                for (int64_t r = 0; r < B; ++r)
                    seeds[r] = ks_rng_u64(&rng);
                CK(cudaMalloc((void **)&d_seeds, (size_t)B * 8));
                CK(cudaMemcpy(d_seeds, seeds, (size_t)B * 8, cudaMemcpyHostToDevice));
                free(seeds);
                for (int mi = 0; mi < n_methods; ++mi)
                    for (int bi = 0; bi < n_backends; ++bi) {
                        const backend_spec *bs = &all_backends[backends[bi]];
                        const method *m = &all_methods[methods[mi]];
                        double us = 0;
                        int reps = 0;
                        int bad = bench_one(bs, m, B, V, dtype, d_logits, n_sets, d_seeds,
                                            min_reps, &us, &reps);
                        errors += bad;
                        emit(bs->name, B, V, dt, m->name, us, reps, floor_us,
                             bad ? "ERROR: tokens outside [0 V)" : "");
                    }
                for (int sidx = 0; sidx < n_sets; ++sidx)
                    CK(cudaFree(d_logits[sidx]));
                CK(cudaFree(d_seeds));
            }
    if (csv)
        fclose(csv);
    printf("\nkiln-gpu-bench: %.0f s%s\n", now_s() - t_start,
           errors ? ", ERRORS: some tokens were out of range" : "");
    return errors ? 1 : 0;
}

#else /* built without the CUDA backend */

int main(void)
{
    printf("kiln-gpu-bench: built without CUDA: skipped\n");
    return 77;
}

#endif
