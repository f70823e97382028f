#include "extras.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#define KT_FIELDS(X)                                 \
    X(tokens, (size_t)(r->rows * r->n))              \
    X(logprobs, (size_t)(r->rows * r->n))            \
    X(raw_logprobs, (size_t)(r->rows * r->n))        \
    X(probs, (size_t)(r->rows * r->vocab))           \
    X(kept, (size_t)r->rows)                         \
    X(valid, (size_t)r->rows)                        \
    X(raw_top_ids, (size_t)(r->rows * r->top))       \
    X(raw_top_logprobs, (size_t)(r->rows * r->top))  \
    X(final_top_ids, (size_t)(r->rows * r->top))     \
    X(final_top_logprobs, (size_t)(r->rows * r->top)) \
    X(raw_ranks, (size_t)(r->rows * r->n))           \
    X(entropy, (size_t)r->rows)                      \
    X(raw_entropy, (size_t)r->rows)                  \
    X(temperatures, (size_t)r->rows)

kt_full kt_full_alloc(int64_t rows, int64_t vocab, int32_t n, int32_t top)
{
    kt_full f;
    memset(&f, 0, sizeof f);
    kt_full *r = &f;
    r->rows = rows;
    r->vocab = vocab;
    r->n = n;
    r->top = top;
#define ALLOC(name, count)                                      \
    r->name = malloc((count) * sizeof *r->name + 1);            \
    cr_assert_not_null(r->name);
    KT_FIELDS(ALLOC)
#undef ALLOC
    kt_full_poison(r);
    return f;
}

void kt_full_free(kt_full *r)
{
#define FREE(name, count) free(r->name);
    KT_FIELDS(FREE)
#undef FREE
    memset(r, 0, sizeof *r);
}

void kt_full_poison(kt_full *r)
{
#define POISON(name, count) memset(r->name, 0xA5, (count) * sizeof *r->name);
    KT_FIELDS(POISON)
#undef POISON
}

static int all_poison(const void *p, size_t bytes)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < bytes; ++i)
        if (c[i] != 0xA5)
            return 0;
    return 1;
}

int kt_full_untouched(const kt_full *r)
{
#define CHECK_POISON(name, count)                               \
    if (!all_poison(r->name, (count) * sizeof *r->name))        \
        return 0;
    KT_FIELDS(CHECK_POISON)
#undef CHECK_POISON
    return 1;
}

kiln_outputs kt_full_outputs(kt_full *r)
{
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = r->tokens;
    o.logprobs = r->logprobs;
    o.raw_logprobs = r->raw_logprobs;
    o.probs = r->probs;
    o.kept_counts = r->kept;
    o.valid = r->valid;
    o.num_top_logprobs = r->top;
    if (r->top > 0) {
        o.raw_top_ids = r->raw_top_ids;
        o.raw_top_logprobs = r->raw_top_logprobs;
        o.final_top_ids = r->final_top_ids;
        o.final_top_logprobs = r->final_top_logprobs;
    }
    o.raw_ranks = r->raw_ranks;
    o.entropy = r->entropy;
    o.raw_entropy = r->raw_entropy;
    o.temperatures = r->temperatures;
    return o;
}

int kt_full_equal(const kt_full *a, const kt_full *b)
{
    if (a->rows != b->rows || a->vocab != b->vocab || a->n != b->n || a->top != b->top)
        return 0;
    for (int64_t i = 0; i < a->rows; ++i)
        if (!kt_full_row_equal(a, i, b, i))
            return 0;
    return 1;
}

int kt_full_row_equal(const kt_full *a, int64_t ra, const kt_full *b, int64_t rb)
{
    if (a->vocab != b->vocab || a->n != b->n || a->top != b->top)
        return 0;
#define ROW_EQ(name, per)                                                               \
    if (memcmp(a->name + ra * (per), b->name + rb * (per), (size_t)(per) * sizeof *a->name)) \
        return 0;
    ROW_EQ(tokens, a->n)
    ROW_EQ(logprobs, a->n)
    ROW_EQ(raw_logprobs, a->n)
    ROW_EQ(probs, a->vocab)
    ROW_EQ(kept, 1)
    ROW_EQ(valid, 1)
    ROW_EQ(raw_top_ids, a->top)
    ROW_EQ(raw_top_logprobs, a->top)
    ROW_EQ(final_top_ids, a->top)
    ROW_EQ(final_top_logprobs, a->top)
    ROW_EQ(raw_ranks, a->n)
    ROW_EQ(entropy, 1)
    ROW_EQ(raw_entropy, 1)
    ROW_EQ(temperatures, 1)
#undef ROW_EQ
    return 1;
}

kt_sampler kt_cpu_sampler(int64_t max_batch, int64_t max_vocab, int32_t max_samples,
                          int64_t max_history, int num_threads, int32_t max_top,
                          kiln_algorithm algorithm)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = max_batch;
    cfg.max_vocab = max_vocab;
    cfg.max_samples = max_samples;
    cfg.max_history = max_history;
    cfg.num_threads = num_threads;
    cfg.max_top_logprobs = max_top;
    cfg.algorithm = algorithm;
    kt_sampler s = { NULL, NULL, 0, KILN_BACKEND_CPU };
    kiln_status st = kiln_sampler_create(&cfg, &s.sampler);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sampler_create: %s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(s.sampler, &s.workspace_size), KILN_SUCCESS);
    s.workspace = malloc(s.workspace_size ? s.workspace_size : 1);
    cr_assert_not_null(s.workspace);
    return s;
}

kiln_status kt_full_sample(kt_sampler *s, const kiln_batch *batch,
                           const kiln_sampling_params *params, kt_full *out)
{
    const kiln_outputs o = kt_full_outputs(out);
    return kiln_sample(s->sampler, batch, params, &o, s->workspace, s->workspace_size, NULL);
}

void kt_log_softmax64(const double *x, int64_t vocab, double *out)
{
    double m = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i)
        m = x[i] > m ? x[i] : m;
    double s = 0.0;
    for (int64_t i = 0; i < vocab; ++i)
        s += exp(x[i] - m);
    const double ls = log(s);
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = x[i] - m - ls;
}

static const float *order_keys;

static int by_canonical(const void *pa, const void *pb)
{
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    const float xa = order_keys[a], xb = order_keys[b];
    if (xa > xb)
        return -1;
    if (xa < xb)
        return 1;
    return (a > b) - (a < b); /* equal values, -0 == +0 included */
}

void kt_canonical_order(const float *x, int64_t vocab, int32_t *order)
{
    for (int64_t i = 0; i < vocab; ++i)
        order[i] = (int32_t)i;
    order_keys = x;
    qsort(order, (size_t)vocab, sizeof *order, by_canonical);
}
