/* lm-head-bench: kiln_sample_hidden (LM head + sampling) against its parts.
 *
 *   lm-head-bench [--quick] [--csv FILE] [--backends cpu,cuda] [--rows LIST]
 *                 [--hidden H] [--vocab V] [--dtype bf16|f16|f32] [--reps N]
 *
 * Per backend and batch size B it times, on the same shapes:
 *   hidden+sample  kiln_sample_hidden, f32 logits, t0.7_k50_p0.9
 *   sample_only    kiln_sample on f32 logits [B, V] (the sampling part alone)
 *   gemm_only      CUDA: cublasGemmEx alone, the exact GEMM lm_head.cu issues
 *   lm_head        CPU: hidden+sample minus sample_only (kiln has no public
 *                  GEMM-only call; the difference is the LM head's cost)
 * CPU: monotonic clock, median of --reps calls (default 3) after a warm-up.
 * CUDA: CUDA events around replays of a captured CUDA graph (which also
 * shows the call is capturable), median of 20 after warm-up.
 * bench/lm_head_torch.py times torch.matmul + the PyTorch pipeline on the
 * same shapes with the same CSV columns. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"

#ifdef KILN_BENCH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

typedef struct options {
    const char *csv;
    int cpu, cuda;
    int64_t rows[16];
    int nrows;
    int64_t hidden, vocab;
    kiln_dtype dtype;
    int reps;
} options;

static FILE *csv;

static void emit(const char *backend, int64_t B, const options *o, const char *what, double us,
                 int reps)
{
    static const char *dt[] = { "f32", "f16", "bf16" };
    printf("| %-4s | %4lld | %5lld | %6lld | %-4s | %-13s | %12.1f | %4d |\n", backend,
           (long long)B, (long long)o->hidden, (long long)o->vocab, dt[o->dtype], what, us, reps);
    if (csv) {
        fprintf(csv, "%s,%lld,%lld,%lld,%s,%s,%.3f,%d\n", backend, (long long)B,
                (long long)o->hidden, (long long)o->vocab, dt[o->dtype], what, us, reps);
        fflush(csv);
    }
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* splitmix64 values in [-1, 1), stored in `dtype` (bf16/f16 by truncation of
 * the f32 bits; the values only need to be plausible). */
static void fill(void *dst, size_t n, kiln_dtype dtype, float scale, uint64_t seed)
{
    for (size_t i = 0; i < n; ++i) {
        uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float v = ((float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
        if (dtype == KILN_DTYPE_F32) {
            ((float *)dst)[i] = v;
        } else {
            uint32_t u;
            memcpy(&u, &v, 4);
            if (dtype == KILN_DTYPE_BF16) {
                ((uint16_t *)dst)[i] = (uint16_t)(u >> 16);
            } else { /* f16 of a value in [-1, 1): exponent rebias, truncated */
                int e = (int)((u >> 23) & 0xFF) - 127 + 15;
                uint16_t h = e <= 0 ? 0 : (uint16_t)(((uint32_t)e << 10) | ((u >> 13) & 0x3FF));
                ((uint16_t *)dst)[i] = (uint16_t)(((u >> 16) & 0x8000u) | h);
            }
        }
    }
}

static kiln_sampling_params method(void)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = 0.7f;
    p.top_k_all = 50;
    p.top_p_all = 0.9f;
    p.seed_all = 42;
    return p;
}

static int check(kiln_status st, const char *what)
{
    if (st != KILN_SUCCESS)
        fprintf(stderr, "lm-head-bench: %s: %s\n", what, kiln_last_error());
    return st != KILN_SUCCESS;
}

/* ----------------------------------------------------------------- CPU */

static int bench_cpu(const options *o, int64_t B)
{
    const size_t es = o->dtype == KILN_DTYPE_F32 ? 4 : 2;
    const int64_t H = o->hidden, V = o->vocab;
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = B;
    cfg.max_vocab = V;
    cfg.max_hidden = H;
    kiln_sampler *s = NULL;
    if (check(kiln_sampler_create(&cfg, &s), "kiln_sampler_create"))
        return 1;
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    void *ws = malloc(ws_bytes), *hidden = malloc((size_t)(B * H) * es),
         *weight = malloc((size_t)(V * H) * es);
    float *logits = malloc((size_t)(B * V) * 4);
    int32_t *tokens = malloc((size_t)B * 4);
    if (!ws || !hidden || !weight || !logits || !tokens) {
        fprintf(stderr, "lm-head-bench: out of host memory at B = %lld\n", (long long)B);
        return 1;
    }
    fill(hidden, (size_t)(B * H), o->dtype, 1.0f, 1);
    fill(weight, (size_t)(V * H), o->dtype, 0.05f, 2);
    fill(logits, (size_t)(B * V), KILN_DTYPE_F32, 8.0f, 3);
    kiln_lm_head head = KILN_LM_HEAD_INIT;
    head.dtype = o->dtype;
    head.hidden = hidden;
    head.hidden_size = H;
    head.weight = weight;
    kiln_batch batch = KILN_BATCH_INIT;
    batch.num_rows = B;
    batch.vocab_size = V;
    kiln_sampling_params p = method();
    kiln_outputs out = KILN_OUTPUTS_INIT;
    out.tokens = tokens;
    double t_hidden[64], t_sample[64];
    int err = 0;
    for (int r = -1; r < o->reps && !err; ++r) { /* r = -1: warm-up */
        double t0 = now_us();
        err |= check(kiln_sample_hidden(s, &head, &batch, &p, &out, ws, ws_bytes, NULL),
                     "kiln_sample_hidden");
        double t1 = now_us();
        kiln_batch lb = batch;
        lb.logits = logits;
        err |= check(kiln_sample(s, &lb, &p, &out, ws, ws_bytes, NULL), "kiln_sample");
        double t2 = now_us();
        if (r >= 0) {
            t_hidden[r] = t1 - t0;
            t_sample[r] = t2 - t1;
        }
    }
    if (!err) {
        double h = median(t_hidden, o->reps), sm = median(t_sample, o->reps);
        emit("cpu", B, o, "hidden+sample", h, o->reps);
        emit("cpu", B, o, "sample_only", sm, o->reps);
        emit("cpu", B, o, "lm_head", h - sm, o->reps);
    }
    free(ws);
    free(hidden);
    free(weight);
    free(logits);
    free(tokens);
    kiln_sampler_destroy(s);
    return err;
}

/* ---------------------------------------------------------------- CUDA */

#ifdef KILN_BENCH_CUDA
#define CU(x)                                                                          \
    do {                                                                               \
        cudaError_t e_ = (x);                                                          \
        if (e_ != cudaSuccess) {                                                       \
            fprintf(stderr, "lm-head-bench: %s: %s\n", #x, cudaGetErrorString(e_));    \
            return 1;                                                                  \
        }                                                                              \
    } while (0)

/* Median of 20 replays of `graph`, after 3 warm-up replays. */
static int time_graph(cudaGraphExec_t exec, cudaStream_t stream, double *us)
{
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i)
        CU(cudaGraphLaunch(exec, stream));
    CU(cudaStreamSynchronize(stream));
    double t[20];
    for (int i = 0; i < 20; ++i) {
        CU(cudaEventRecord(e0, stream));
        CU(cudaGraphLaunch(exec, stream));
        CU(cudaEventRecord(e1, stream));
        CU(cudaEventSynchronize(e1));
        float ms = 0;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        t[i] = ms * 1e3;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    *us = median(t, 20);
    return 0;
}

static cudaDataType_t cuda_type(kiln_dtype d)
{
    return d == KILN_DTYPE_F32 ? CUDA_R_32F : d == KILN_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

static int bench_cuda(const options *o, int64_t B)
{
    const size_t es = o->dtype == KILN_DTYPE_F32 ? 4 : 2;
    const int64_t H = o->hidden, V = o->vocab;
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.max_batch = B;
    cfg.max_vocab = V;
    cfg.max_hidden = H;
    kiln_sampler *s = NULL;
    if (check(kiln_sampler_create(&cfg, &s), "kiln_sampler_create"))
        return 1;
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    void *h_hidden = malloc((size_t)(B * H) * es), *h_weight = malloc((size_t)(V * H) * es);
    float *h_logits = malloc((size_t)(B * V) * 4);
    void *ws, *hidden, *weight, *logits, *tokens, *gemm_ws;
    CU(cudaMalloc(&ws, ws_bytes));
    CU(cudaMalloc(&hidden, (size_t)(B * H) * es));
    CU(cudaMalloc(&weight, (size_t)(V * H) * es));
    CU(cudaMalloc(&logits, (size_t)(B * V) * 4));
    CU(cudaMalloc(&tokens, (size_t)B * 4));
    CU(cudaMalloc(&gemm_ws, (size_t)32 << 20));
    fill(h_hidden, (size_t)(B * H), o->dtype, 1.0f, 1);
    fill(h_weight, (size_t)(V * H), o->dtype, 0.05f, 2);
    fill(h_logits, (size_t)(B * V), KILN_DTYPE_F32, 8.0f, 3);
    CU(cudaMemcpy(hidden, h_hidden, (size_t)(B * H) * es, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(weight, h_weight, (size_t)(V * H) * es, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(logits, h_logits, (size_t)(B * V) * 4, cudaMemcpyHostToDevice));
    free(h_hidden);
    free(h_weight);
    free(h_logits);

    kiln_lm_head head = KILN_LM_HEAD_INIT;
    head.dtype = o->dtype;
    head.hidden = hidden;
    head.hidden_size = H;
    head.weight = weight;
    kiln_batch batch = KILN_BATCH_INIT;
    batch.num_rows = B;
    batch.vocab_size = V;
    kiln_sampling_params p = method();
    kiln_outputs out = KILN_OUTPUTS_INIT;
    out.tokens = tokens;
    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "lm-head-bench: cublasCreate failed\n");
        return 1;
    }
    cudaStream_t stream;
    CU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cublasSetStream(blas, stream);
    cublasSetWorkspace(blas, gemm_ws, (size_t)32 << 20);

    const char *names[3] = { "hidden+sample", "sample_only", "gemm_only" };
    for (int which = 0; which < 3; ++which) {
        /* one eager call first: errors surface outside capture */
        for (int pass = 0; pass < 2; ++pass) {
            cudaGraph_t graph = NULL;
            if (pass == 1)
                CU(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
            kiln_status st = KILN_SUCCESS;
            if (which == 0) {
                st = kiln_sample_hidden(s, &head, &batch, &p, &out, ws, ws_bytes, stream);
            } else if (which == 1) {
                kiln_batch lb = batch;
                lb.logits = logits;
                st = kiln_sample(s, &lb, &p, &out, ws, ws_bytes, stream);
            } else {
                const float alpha = 1.0f, beta = 0.0f;
                const cudaDataType_t t = cuda_type(o->dtype);
                if (cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)V, (int)B, (int)H, &alpha,
                                 weight, t, (int)H, hidden, t, (int)H, &beta, logits, CUDA_R_32F,
                                 (int)V, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                    fprintf(stderr, "lm-head-bench: cublasGemmEx failed\n");
                    return 1;
                }
            }
            if (pass == 1)
                CU(cudaStreamEndCapture(stream, &graph));
            if (check(st, names[which]))
                return 1;
            if (pass == 0) {
                CU(cudaStreamSynchronize(stream));
                continue;
            }
            cudaGraphExec_t exec;
            CU(cudaGraphInstantiate(&exec, graph, 0));
            double us = 0;
            if (time_graph(exec, stream, &us))
                return 1;
            emit("cuda", B, o, names[which], us, 20);
            cudaGraphExecDestroy(exec);
            cudaGraphDestroy(graph);
        }
    }
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
    cudaFree(ws);
    cudaFree(hidden);
    cudaFree(weight);
    cudaFree(logits);
    cudaFree(tokens);
    cudaFree(gemm_ws);
    kiln_sampler_destroy(s);
    return 0;
}
#endif

/* ---------------------------------------------------------------- main */

static int parse_rows(options *o, const char *v)
{
    o->nrows = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *tok = strtok(buf, ","); tok && o->nrows < 16; tok = strtok(NULL, ","))
        o->rows[o->nrows++] = atoll(tok);
    for (int i = 0; i < o->nrows; ++i)
        if (o->rows[i] < 1)
            return 1;
    return o->nrows == 0;
}

int main(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    o.cpu = 1;
#ifdef KILN_BENCH_CUDA
    o.cuda = 1;
#endif
    parse_rows(&o, "1,64,256");
    o.hidden = 4096;
    o.vocab = 128256;
    o.dtype = KILN_DTYPE_BF16;
    o.reps = 3;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            parse_rows(&o, "1,8");
            o.hidden = 256;
            o.vocab = 4096;
            o.reps = 1;
        } else if (strcmp(a, "--csv") == 0 && v) {
            o.csv = v, ++i;
        } else if (strcmp(a, "--backends") == 0 && v) {
            o.cpu = strstr(v, "cpu") != NULL;
            o.cuda = strstr(v, "cuda") != NULL;
            ++i;
        } else if (strcmp(a, "--rows") == 0 && v) {
            if (parse_rows(&o, v))
                goto usage;
            ++i;
        } else if (strcmp(a, "--hidden") == 0 && v) {
            o.hidden = atoll(v), ++i;
        } else if (strcmp(a, "--vocab") == 0 && v) {
            o.vocab = atoll(v), ++i;
        } else if (strcmp(a, "--reps") == 0 && v) {
            o.reps = atoi(v), ++i;
        } else if (strcmp(a, "--dtype") == 0 && v) {
            o.dtype = strcmp(v, "f32") == 0   ? KILN_DTYPE_F32
                      : strcmp(v, "f16") == 0 ? KILN_DTYPE_F16
                                              : KILN_DTYPE_BF16;
            ++i;
        } else {
            goto usage;
        }
    }
    if (o.hidden < 1 || o.vocab < 1 || o.reps < 1 || o.reps > 64)
        goto usage;
#ifndef KILN_BENCH_CUDA
    if (o.cuda) {
        fprintf(stderr, "lm-head-bench: built without CUDA; timing the CPU only\n");
        o.cuda = 0;
    }
#endif
    if (o.csv) {
        csv = fopen(o.csv, "w");
        if (!csv) {
            perror(o.csv);
            return 1;
        }
        fprintf(csv, "backend,rows,hidden,vocab,dtype,what,us_per_call,reps\n");
    }
    printf("| back | rows | hidden | vocab | dtype | what | us/call | reps |\n");
    int err = 0;
    for (int i = 0; i < o.nrows && !err; ++i) {
        if (o.cpu)
            err |= bench_cpu(&o, o.rows[i]);
#ifdef KILN_BENCH_CUDA
        if (o.cuda && !err)
            err |= bench_cuda(&o, o.rows[i]);
#endif
    }
    if (csv)
        fclose(csv);
    return err;
usage:
    fprintf(stderr, "usage: lm-head-bench [--quick] [--csv FILE] [--backends cpu,cuda] "
                    "[--rows LIST] [--hidden H] [--vocab V] [--dtype bf16|f16|f32] [--reps N]\n");
    return 2;
}
