/* kiln_verify_drafts against docs/semantics.md section 19: an independent
 * model of the accept / residual rule built on kiln_sample's own outputs for
 * each target row (its masses checked against kiln_sample's probs byte for
 * byte, then section 5's masses and section 7's Philox draws), the K_b = 0
 * promise, the distribution theorem (G-tests, exact cases and the counting
 * at its boundaries), filters, bad input, layouts, invariance and the
 * draft-extended history. CPU backend only: the arrays are host memory, and
 * the CUDA backend refuses kiln_verify_drafts. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "shared/numerics.h"
#include "shared/philox.h"
#include "shared/speculative.h"
#include "stats.h"

typedef unsigned __int128 u128;

#define RV 4096 /* largest vocabulary the cases and the reference handle */

/* ------------------------------------------------------------- sampler */

typedef struct vsampler {
    kiln_sampler *s;
    void *ws;
    size_t ws_size;
} vsampler;

static vsampler vs_create(int64_t max_batch, int64_t max_vocab, int64_t max_history,
                          int threads, kiln_algorithm alg)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = max_batch;
    cfg.max_vocab = max_vocab;
    cfg.max_samples = 4; /* so num_samples = 2 reaches the verify-only check */
    cfg.max_history = max_history;
    cfg.num_threads = threads;
    cfg.algorithm = alg;
    vsampler v = { NULL, NULL, 0 };
    cr_assert_eq(kiln_sampler_create(&cfg, &v.s), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(v.s, &v.ws_size), KILN_SUCCESS);
    v.ws = malloc(v.ws_size ? v.ws_size : 1);
    cr_assert_not_null(v.ws);
    return v;
}

static void vs_destroy(vsampler *v)
{
    kiln_sampler_destroy(v->s);
    free(v->ws);
}

/* ---------------------------------------------------------------- cases */

static uint64_t mix(uint64_t *st)
{
    uint64_t z = (*st += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *st)
{
    return (double)(mix(st) >> 11) * 0x1p-53;
}

/* One call's inputs, all host memory. Per-request seed, offset and
 * temperature; the other parameters are scalars. */
typedef struct vcase {
    int64_t B, V;
    int32_t K;
    float *logits;       /* [B * (K + 1), V] */
    int32_t *draft_ids;  /* [B, K] */
    int32_t *num_drafts; /* [B] or NULL */
    float *draft_probs;  /* [B, K, V] or NULL */
    int64_t *hist_off;   /* [B + 1] or NULL */
    int32_t *hist_ids;
    int32_t *prompt_len; /* [B] */
    uint64_t *seed, *offset;
    float *temperature;
    int32_t top_k;
    float top_p, min_p, repetition, presence, frequency, dynatemp;
    int32_t *mask;       /* [B * (K + 1), ceil(V / 32)] or NULL */
    int64_t *bias_off;   /* [B + 1] or NULL */
    int32_t *bias_ids;
    float *bias_values;
} vcase;

static vcase vc_alloc(int64_t B, int64_t V, int32_t K, int with_q)
{
    vcase c;
    memset(&c, 0, sizeof c);
    c.B = B;
    c.V = V;
    c.K = K;
    c.logits = calloc((size_t)(B * (K + 1) * V), sizeof(float));
    c.draft_ids = calloc((size_t)(B * K + 1), sizeof(int32_t));
    c.num_drafts = calloc((size_t)B, sizeof(int32_t));
    c.draft_probs = with_q ? calloc((size_t)(B * K * V + 1), sizeof(float)) : NULL;
    c.seed = calloc((size_t)B, sizeof(uint64_t));
    c.offset = calloc((size_t)B, sizeof(uint64_t));
    c.temperature = calloc((size_t)B, sizeof(float));
    cr_assert(c.logits && c.draft_ids && c.num_drafts && (c.draft_probs || !with_q) && c.seed &&
              c.offset && c.temperature);
    for (int64_t b = 0; b < B; ++b) {
        c.num_drafts[b] = K;
        c.temperature[b] = 1.0f;
    }
    c.top_p = 1.0f;
    c.repetition = 1.0f;
    return c;
}

static void vc_free(vcase *c)
{
    free(c->logits);
    free(c->draft_ids);
    free(c->num_drafts);
    free(c->draft_probs);
    free(c->hist_off);
    free(c->hist_ids);
    free(c->prompt_len);
    free(c->seed);
    free(c->offset);
    free(c->temperature);
    free(c->mask);
    free(c->bias_off);
    free(c->bias_ids);
    free(c->bias_values);
}

/* A mask per target row clearing about a quarter of the tokens (never
 * all), and up to three logit-bias entries per request. */
static void vc_mask_and_bias(vcase *c, uint64_t *st)
{
    const int64_t rows = c->B * (c->K + 1), words = (c->V + 31) / 32;
    c->mask = calloc((size_t)(rows * words), 4);
    c->bias_off = calloc((size_t)(c->B + 1), sizeof(int64_t));
    c->bias_ids = calloc((size_t)(c->B * 3 + 1), 4);
    c->bias_values = calloc((size_t)(c->B * 3 + 1), 4);
    cr_assert(c->mask && c->bias_off && c->bias_ids && c->bias_values);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t v = 0; v < c->V; ++v)
            if (v == r % c->V || mix(st) % 4)
                c->mask[r * words + v / 32] |= (int32_t)(1u << (v % 32));
    for (int64_t b = 0; b < c->B; ++b) {
        const int64_t n = (int64_t)(mix(st) % 4);
        c->bias_off[b + 1] = c->bias_off[b] + n;
        for (int64_t j = c->bias_off[b]; j < c->bias_off[b + 1]; ++j) {
            c->bias_ids[j] = (int32_t)(mix(st) % (uint64_t)c->V);
            c->bias_values[j] = (float)(6.0 * unit(st) - 2.0);
        }
    }
}

/* Random logits, a random q per draft position with the draft drawn from q
 * (so some drafts are accepted and some are not), and per-request seeds. */
static void vc_fill(vcase *c, uint64_t *st)
{
    const int64_t V = c->V, K = c->K;
    for (int64_t i = 0; i < c->B * (K + 1) * V; ++i)
        c->logits[i] = (float)(4.0 * unit(st) - 2.0);
    for (int64_t b = 0; b < c->B; ++b) {
        c->seed[b] = mix(st);
        c->offset[b] = mix(st) >> 8;
        for (int64_t i = 0; i < K; ++i) {
            float *q = c->draft_probs ? c->draft_probs + (b * K + i) * V : NULL;
            if (!q) {
                c->draft_ids[b * K + i] = (int32_t)(mix(st) % (uint64_t)V);
                continue;
            }
            double sum = 0.0, w[RV];
            cr_assert(V <= RV);
            for (int64_t v = 0; v < V; ++v) {
                w[v] = unit(st) < 0.3 ? 0.0 : exp(3.0 * unit(st));
                sum += w[v];
            }
            if (sum == 0.0)
                w[0] = sum = 1.0;
            double u = unit(st) * sum, run = 0.0;
            int32_t d = -1;
            for (int64_t v = 0; v < V; ++v) {
                q[v] = (float)(w[v] / sum);
                run += w[v];
                if (d < 0 && w[v] > 0.0 && u < run)
                    d = (int32_t)v;
            }
            if (d < 0)
                for (d = (int32_t)V - 1; w[d] == 0.0; --d)
                    ;
            c->draft_ids[b * K + i] = d;
        }
    }
}

static void vc_history(vcase *c, uint64_t *st, int64_t max_len)
{
    c->hist_off = calloc((size_t)(c->B + 1), sizeof(int64_t));
    c->hist_ids = calloc((size_t)(c->B * max_len + 1), sizeof(int32_t));
    c->prompt_len = calloc((size_t)c->B, sizeof(int32_t));
    cr_assert(c->hist_off && c->hist_ids && c->prompt_len);
    for (int64_t b = 0; b < c->B; ++b) {
        const int64_t len = (int64_t)(mix(st) % (uint64_t)(max_len + 1));
        c->hist_off[b + 1] = c->hist_off[b] + len;
        c->prompt_len[b] = (int32_t)(len ? mix(st) % (uint64_t)(len + 1) : 0);
        for (int64_t j = 0; j < len; ++j)
            c->hist_ids[c->hist_off[b] + j] = (int32_t)(mix(st) % (uint64_t)c->V);
    }
}

typedef struct vout {
    int32_t *tokens;   /* [B * (K + 1)] */
    int32_t *accepted; /* [B] */
    float *logprobs;   /* [B * (K + 1)] */
    uint8_t *valid;    /* [B] */
} vout;

static vout vo_alloc(int64_t B, int32_t K)
{
    vout o;
    const size_t cells = (size_t)(B * (K + 1));
    o.tokens = malloc(cells * 4);
    o.logprobs = malloc(cells * 4);
    o.accepted = malloc((size_t)B * 4);
    o.valid = malloc((size_t)B);
    cr_assert(o.tokens && o.logprobs && o.accepted && o.valid);
    memset(o.tokens, 0xA5, cells * 4);
    memset(o.logprobs, 0xA5, cells * 4);
    memset(o.accepted, 0xA5, (size_t)B * 4);
    memset(o.valid, 0xA5, (size_t)B);
    return o;
}

static void vo_free(vout *o)
{
    free(o->tokens);
    free(o->logprobs);
    free(o->accepted);
    free(o->valid);
}

static kiln_batch vc_batch(const vcase *c)
{
    kiln_batch bt = kt_batch_f32(c->logits, c->B, c->V, 1);
    bt.history_offsets = c->hist_off;
    bt.history_ids = c->hist_ids;
    bt.prompt_lengths = c->prompt_len;
    bt.allowed_mask = c->mask;
    bt.logit_bias_offsets = c->bias_off;
    bt.logit_bias_ids = c->bias_ids;
    bt.logit_bias_values = c->bias_values;
    return bt;
}

static kiln_sampling_params vc_params(const vcase *c)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = c->temperature;
    p.top_k_all = c->top_k;
    p.top_p_all = c->top_p;
    p.min_p_all = c->min_p;
    p.repetition_penalty_all = c->repetition;
    p.presence_penalty_all = c->presence;
    p.frequency_penalty_all = c->frequency;
    p.dynatemp_range_all = c->dynatemp;
    p.seed = c->seed;
    p.offset = c->offset;
    return p;
}

static kiln_drafts vc_drafts(const vcase *c)
{
    kiln_drafts d = KILN_DRAFTS_INIT;
    d.max_drafts = c->K;
    d.draft_ids = c->K > 0 ? c->draft_ids : NULL;
    d.num_drafts = c->num_drafts;
    d.draft_probs = c->draft_probs;
    return d;
}

static kiln_verify_outputs vo_outputs(vout *o)
{
    kiln_verify_outputs vo = KILN_VERIFY_OUTPUTS_INIT;
    vo.tokens = o->tokens;
    vo.num_accepted = o->accepted;
    vo.logprobs = o->logprobs;
    vo.valid = o->valid;
    return vo;
}

static kiln_status run_verify(vsampler *v, const vcase *c, vout *o)
{
    const kiln_batch bt = vc_batch(c);
    const kiln_sampling_params p = vc_params(c);
    const kiln_drafts d = vc_drafts(c);
    const kiln_verify_outputs vo = vo_outputs(o);
    return kiln_verify_drafts(v->s, &bt, &p, &d, &vo, v->ws, v->ws_size, NULL);
}

static void run_ok(vsampler *v, const vcase *c, vout *o)
{
    const kiln_status st = run_verify(v, c, o);
    cr_assert_eq(st, KILN_SUCCESS, "%s: %s", kiln_status_string(st), kiln_last_error());
    cr_assert_str_eq(kiln_last_error(), "");
}

/* ------------------------------------------------------- the reference */

/* kiln_sample's view of target row (b, i): the request's parameters at
 * offset o + i, its history extended by drafts 0..i-1 when `extend`. */
typedef struct target {
    int32_t token; /* kiln_sample's draw with e_i (the ordinary draw) */
    float logprob;
    float probs[RV];
    int32_t kept;
    uint8_t valid;
    float temperature; /* the row's (dynatemp) temperature */
    float x[RV]; /* penalised logits, computed here from section 1 */
} target;

static void sample_target(vsampler *ks, const vcase *c, int64_t b, int64_t i, int extend,
                          target *t)
{
    const int64_t V = c->V, K = c->K;
    cr_assert(V <= RV);
    const float *row = c->logits + (b * (K + 1) + i) * V;
    int64_t h0 = 0, hl = 0;
    int32_t pl = 0;
    if (c->hist_off) {
        h0 = c->hist_off[b];
        hl = c->hist_off[b + 1] - h0;
        pl = c->prompt_len[b];
    }
    const int64_t nd = extend ? i : 0;
    int32_t ids[256];
    cr_assert(hl + nd <= 256);
    for (int64_t j = 0; j < hl; ++j)
        ids[j] = c->hist_ids[h0 + j];
    for (int64_t j = 0; j < nd; ++j)
        ids[hl + j] = c->draft_ids[b * K + j];
    int64_t off[2] = { 0, hl + nd };
    kiln_batch bt = kt_batch_f32(row, 1, V, 1);
    if (c->hist_off || nd) {
        bt.history_offsets = off;
        bt.history_ids = ids;
        bt.prompt_lengths = &pl;
    }
    const int64_t words = (V + 31) / 32;
    const int32_t *mask = c->mask ? c->mask + (b * (K + 1) + i) * words : NULL;
    bt.allowed_mask = mask;
    int64_t boff[2] = { 0, 0 };
    if (c->bias_off) {
        boff[1] = c->bias_off[b + 1] - c->bias_off[b];
        bt.logit_bias_offsets = boff;
        bt.logit_bias_ids = c->bias_ids + c->bias_off[b];
        bt.logit_bias_values = c->bias_values + c->bias_off[b];
    }
    kiln_sampling_params p = vc_params(c);
    p.temperature = NULL;
    p.temperature_all = c->temperature[b];
    p.seed = NULL;
    p.seed_all = c->seed[b];
    p.offset = NULL;
    p.offset_all = c->offset[b] + (uint64_t)i;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = &t->token;
    o.logprobs = &t->logprob;
    o.probs = t->probs;
    o.kept_counts = &t->kept;
    o.valid = &t->valid;
    o.temperatures = &t->temperature;
    const kiln_status st = kiln_sample(ks->s, &bt, &p, &o, ks->ws, ks->ws_size, NULL);
    cr_assert_eq(st, KILN_SUCCESS, "%s", kiln_last_error());

    /* section 1: the mask, the bias in order, then repetition over the
     * whole history and frequency and presence over the generated part, once
     * per distinct token */
    for (int64_t v = 0; v < V; ++v) {
        float x = row[v];
        if (mask && !((uint32_t)mask[v / 32] >> (v % 32) & 1u))
            x = -INFINITY;
        for (int64_t j = boff[0]; c->bias_off && j < boff[1]; ++j)
            if (bt.logit_bias_ids[j] == v)
                x = x + bt.logit_bias_values[j];
        int seen = 0;
        uint32_t gen = 0;
        for (int64_t j = 0; j < hl + nd; ++j)
            if (ids[j] == v) {
                seen = 1;
                gen += j >= pl;
            }
        if (seen)
            x = x > 0.0f ? x / c->repetition : x * c->repetition;
        if (gen) {
            x = x - c->frequency * (float)gen;
            x = x - c->presence;
        }
        t->x[v] = x;
    }
}

/* floor(q * s) for q in [0, 1], from q's bits. */
static uint64_t floor_scale(float q, uint64_t s)
{
    uint32_t bits;
    memcpy(&bits, &q, 4);
    const uint32_t be = bits >> 23;
    const uint64_t man = be ? (bits & 0x7FFFFFu) | 0x800000u : bits & 0x7FFFFFu;
    const int shift = be ? 150 - (int)be : 149;
    const u128 prod = (u128)man * s;
    return shift >= 128 ? 0 : (uint64_t)(prod >> shift);
}

static uint64_t hi64(uint64_t a, uint64_t b)
{
    return (uint64_t)(((u128)a * b) >> 64);
}

static float nan_bits(void)
{
    const uint32_t u = 0x7FC00000u;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Section 19's rule for request b, from kiln_sample's outputs per target
 * row. Masses come from section 5 on the penalised logits and are checked
 * byte for byte against kiln_sample's probs before they are used. Returns
 * the request's valid flag. */
static int reference(vsampler *ks, const vcase *c, int64_t b, int extend, int32_t *tokens,
                     float *logprobs, int32_t *accepted)
{
    const int64_t V = c->V, K = c->K, kb = c->num_drafts ? c->num_drafts[b] : K;
    for (int64_t i = 0; i <= K; ++i) {
        tokens[i] = -1;
        logprobs[i] = nan_bits();
    }
    *accepted = 0;
    for (int64_t i = 0; i <= kb; ++i) {
        static target t;
        static uint64_t w[RV], R[RV];
        sample_target(ks, c, b, i, extend, &t);
        if (!t.valid) {
            for (int64_t j = 0; j <= K; ++j) {
                tokens[j] = -1;
                logprobs[j] = nan_bits();
            }
            *accepted = 0;
            return 0;
        }
        if (i == kb) {
            tokens[i] = t.token;
            logprobs[i] = t.logprob;
            return 1;
        }
        const int32_t d = c->draft_ids[b * K + i];
        const float T = t.temperature;
        if (T == 0.0f) {
            if (d == t.token) {
                tokens[i] = d;
                logprobs[i] = 0.0f;
                *accepted = (int32_t)(i + 1);
                continue;
            }
            tokens[i] = t.token;
            logprobs[i] = 0.0f;
            return 1;
        }
        float m = -INFINITY;
        for (int64_t v = 0; v < V; ++v)
            m = t.x[v] > m ? t.x[v] : m;
        const float cf = kiln_exp2_factor(T);
        uint64_t S = 0;
        for (int64_t v = 0; v < V; ++v) {
            w[v] = t.probs[v] > 0.0f ? kiln_mass(t.x[v], m, cf) : 0;
            S += w[v];
        }
        for (int64_t v = 0; v < V; ++v) {
            const float pr = (float)((double)w[v] * (1.0 / (double)S));
            cr_assert(memcmp(&pr, &t.probs[v], 4) == 0,
                      "request %lld position %lld token %lld: reference mass gives prob %a, "
                      "kiln_sample %a",
                      (long long)b, (long long)i, (long long)v, (double)pr, (double)t.probs[v]);
        }
        const float *q = c->draft_probs ? c->draft_probs + (b * K + i) * V : NULL;
        const uint64_t Qd = q ? floor_scale(q[d], S) : S;
        const uint64_t a = kiln_philox_draw64(c->seed[b], (uint64_t)1 << 32, c->offset[b] + i);
        const double log_s = kiln_log_mass(S);
        if (hi64(a, Qd) < w[d]) {
            tokens[i] = d;
            logprobs[i] = kiln_logprob(t.x[d], m, T, log_s);
            cr_assert(fabs(logprobs[i] - log(t.probs[d])) < 1e-5);
            *accepted = (int32_t)(i + 1);
            continue;
        }
        uint64_t tot = 0;
        for (int64_t v = 0; v < V; ++v) {
            const uint64_t Qv = q ? floor_scale(q[v], S) : v == d ? S : 0;
            R[v] = w[v] > Qv ? w[v] - Qv : 0;
            tot += R[v];
        }
        if (tot == 0) {
            tokens[i] = t.token;
            logprobs[i] = t.logprob;
            return 1;
        }
        const uint64_t e = kiln_philox_draw64(c->seed[b], 0, c->offset[b] + i);
        const uint64_t r = hi64(e, tot);
        uint64_t run = 0;
        int64_t v = 0;
        for (; v < V; ++v) {
            run += R[v];
            if (run > r)
                break;
        }
        cr_assert(v < V && t.probs[v] > 0.0f);
        tokens[i] = (int32_t)v;
        logprobs[i] = kiln_logprob(t.x[v], m, T, log_s);
        cr_assert(fabs(logprobs[i] - log(t.probs[v])) < 1e-5);
        return 1;
    }
    cr_assert_fail("unreachable");
    return 0;
}

/* Every request of `o` equals the reference, byte for byte; returns how
 * many drafts were accepted in all. */
static int64_t check_reference(vsampler *ks, const vcase *c, const vout *o)
{
    const int64_t K = c->K;
    int64_t total = 0;
    for (int64_t b = 0; b < c->B; ++b) {
        int32_t tok[16], acc;
        float lp[16];
        cr_assert(K < 16);
        const int valid = reference(ks, c, b, 1, tok, lp, &acc);
        cr_assert_eq(o->valid[b], valid, "request %lld", (long long)b);
        cr_assert_eq(o->accepted[b], acc, "request %lld: %d accepted, reference %d",
                     (long long)b, o->accepted[b], acc);
        for (int64_t i = 0; i <= K; ++i) {
            cr_assert_eq(o->tokens[b * (K + 1) + i], tok[i],
                         "request %lld position %lld: token %d, reference %d", (long long)b,
                         (long long)i, o->tokens[b * (K + 1) + i], tok[i]);
            cr_assert(memcmp(&o->logprobs[b * (K + 1) + i], &lp[i], 4) == 0,
                      "request %lld position %lld: logprob %a, reference %a", (long long)b,
                      (long long)i, (double)o->logprobs[b * (K + 1) + i], (double)lp[i]);
        }
        /* the structure the header promises */
        const int64_t kb = c->num_drafts ? c->num_drafts[b] : K;
        cr_assert(acc >= 0 && acc <= kb);
        for (int32_t i = 0; i < acc; ++i)
            cr_assert_eq(tok[i], c->draft_ids[b * K + i]);
        if (valid)
            cr_assert(tok[acc] >= 0 && tok[acc] < c->V);
        for (int64_t i = acc + 1; i <= K; ++i)
            cr_assert(tok[i] == -1 && isnan(lp[i]));
        total += acc;
    }
    return total;
}

/* --------------------------------------------------------------- tests */

Test(verify, matches_reference_rule)
{
    vsampler v = vs_create(64 * 5, 40, 0, 1, KILN_ALGORITHM_AUTO);
    vsampler ks = vs_create(1, 40, 16, 1, KILN_ALGORITHM_AUTO);
    uint64_t st = 11;
    int64_t accepted = 0, rejected = 0;
    for (int trial = 0; trial < 12; ++trial) {
        vcase c = vc_alloc(64, trial % 3 == 2 ? 7 : 24 + trial, 4, trial % 4 != 3);
        vc_fill(&c, &st);
        c.top_k = trial % 2 ? 12 : 0;
        c.top_p = trial % 3 ? 0.9f : 1.0f;
        c.min_p = trial == 5 ? 0.05f : 0.0f;
        for (int64_t b = 0; b < c.B; ++b) {
            c.num_drafts[b] = (int32_t)(mix(&st) % 5);
            c.temperature[b] = b % 9 == 0 ? 0.0f : b % 2 ? 0.7f : 1.3f;
            if (b % 16 == 5) /* offset + i wraps around 2^64 */
                c.offset[b] = UINT64_MAX - (uint64_t)(b % 3);
        }
        vout o = vo_alloc(c.B, c.K);
        run_ok(&v, &c, &o);
        const int64_t a = check_reference(&ks, &c, &o);
        accepted += a;
        for (int64_t b = 0; b < c.B; ++b)
            rejected += o.accepted[b] < c.num_drafts[b];
        vo_free(&o);
        vc_free(&c);
    }
    /* the cases exercise both branches of the rule */
    cr_assert(accepted > 100 && rejected > 100, "accepted %lld, rejected %lld",
              (long long)accepted, (long long)rejected);
    vs_destroy(&ks);
    vs_destroy(&v);
}

/* The reference on every CPU path to a kept set (sort; select for top-k;
 * dense, min-p sparse and chunked, top-p chunked for AUTO) and with q = 1
 * everywhere, where every residual is empty and the correction is the
 * ordinary draw. */
Test(verify, matches_reference_on_every_path)
{
    static const struct {
        kiln_algorithm alg;
        int64_t V;
        int32_t top_k;
        float top_p, min_p;
        int qmode; /* 0: one-hot, 1: random q, 2: q = 1 */
    } cfgs[] = {
        { KILN_ALGORITHM_SORT, 300, 20, 0.9f, 0.0f, 1 },
        { KILN_ALGORITHM_SORT, 300, 0, 1.0f, 0.0f, 0 },
        { KILN_ALGORITHM_SORT, 300, 0, 1.0f, 0.05f, 2 },
        { KILN_ALGORITHM_SELECT, 300, 20, 0.8f, 0.0f, 1 },
        { KILN_ALGORITHM_SELECT, 300, 0, 0.6f, 0.0f, 0 },
        { KILN_ALGORITHM_AUTO, 2000, 0, 1.0f, 0.0f, 1 },
        { KILN_ALGORITHM_AUTO, 2000, 0, 1.0f, 0.5f, 1 },
        { KILN_ALGORITHM_AUTO, 2000, 0, 1.0f, 0.01f, 0 },
        { KILN_ALGORITHM_AUTO, 2000, 0, 0.5f, 0.0f, 1 },
        { KILN_ALGORITHM_AUTO, 2000, 0, 0.7f, 0.2f, 2 },
        { KILN_ALGORITHM_AUTO, 2000, 100, 1.0f, 0.0f, 2 },
        { KILN_ALGORITHM_AUTO, 24, 5, 1.0f, 0.0f, 2 },
    };
    uint64_t st = 31337;
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; ++k) {
        vsampler v = vs_create(32 * 4, cfgs[k].V, 0, 2, cfgs[k].alg);
        vsampler ks = vs_create(1, cfgs[k].V, 8, 1, cfgs[k].alg);
        vcase c = vc_alloc(32, cfgs[k].V, 3, cfgs[k].qmode > 0);
        vc_fill(&c, &st);
        c.top_k = cfgs[k].top_k;
        c.top_p = cfgs[k].top_p;
        c.min_p = cfgs[k].min_p;
        for (int64_t b = 0; b < c.B; ++b) {
            c.num_drafts[b] = (int32_t)(b % 4);
            c.temperature[b] = b % 8 == 3 ? 0.0f : 1.0f;
            for (int i = 0; i < c.K; ++i) {
                if (mix(&st) % 2)
                    c.logits[(b * 4 + i) * c.V + c.draft_ids[b * 3 + i]] += 5.0f;
                if (cfgs[k].qmode == 2)
                    for (int64_t x = 0; x < c.V; ++x)
                        c.draft_probs[(b * 3 + i) * c.V + x] = 1.0f;
            }
        }
        vout o = vo_alloc(c.B, c.K);
        run_ok(&v, &c, &o);
        const int64_t accepted = check_reference(&ks, &c, &o);
        cr_assert(accepted > 5, "config %zu: %lld accepted", k, (long long)accepted);
        vo_free(&o);
        vc_free(&c);
        vs_destroy(&ks);
        vs_destroy(&v);
    }
}

/* An invalid target row makes its request invalid only when the rule
 * reaches it. */
Test(verify, invalid_row_only_when_reached)
{
    vsampler v = vs_create(4 * 3, 8, 0, 1, KILN_ALGORITHM_AUTO);
    vsampler ks = vs_create(1, 8, 16, 1, KILN_ALGORITHM_AUTO);
    vcase c = vc_alloc(4, 8, 2, 0);
    uint64_t st = 5;
    vc_fill(&c, &st);
    for (int64_t b = 0; b < 4; ++b) {
        c.temperature[b] = 0.0f;
        for (int64_t v2 = 0; v2 < 8; ++v2)
            c.logits[(b * 3 + 1) * 8 + v2] = (float)v2; /* position 1: top is 7 */
        c.logits[(b * 3 + 0) * 8 + 3] = 9.0f;           /* position 0: top is 3 */
        c.logits[(b * 3 + 2) * 8 + 5] = NAN;             /* position 2 invalid */
    }
    c.draft_ids[0 * 2] = 2; /* rejected at 0: valid */
    c.draft_ids[1 * 2] = 3; /* accepted at 0, rejected at 1: valid */
    c.draft_ids[1 * 2 + 1] = 6;
    c.draft_ids[2 * 2] = 3; /* both accepted: reaches the NaN row */
    c.draft_ids[2 * 2 + 1] = 7;
    c.draft_ids[3 * 2] = 3; /* K_b = 1: the bonus at position 1 */
    c.num_drafts[3] = 1;
    vout o = vo_alloc(4, 2);
    run_ok(&v, &c, &o);
    check_reference(&ks, &c, &o);
    cr_assert_eq(o.valid[0], 1);
    cr_assert_eq(o.tokens[0], 3);
    cr_assert_eq(o.valid[1], 1);
    cr_assert(o.tokens[3] == 3 && o.tokens[4] == 7 && o.accepted[1] == 1);
    cr_assert_eq(o.valid[2], 0);
    cr_assert(o.tokens[6] == -1 && o.tokens[7] == -1 && o.tokens[8] == -1 && o.accepted[2] == 0);
    cr_assert(o.valid[3] == 1 && o.accepted[3] == 1 && o.tokens[10] == 7 && o.tokens[11] == -1);
    vo_free(&o);
    vc_free(&c);
    vs_destroy(&ks);
    vs_destroy(&v);
}

/* Penalties at position i see drafts 0..i-1 as generated tokens: the rule
 * matches the reference with the extended history, and not the one without.
 * With a mask per target row and a logit bias per request too. */
Test(verify, penalties_see_earlier_drafts)
{
    vsampler v = vs_create(48 * 4, 16, 12, 1, KILN_ALGORITHM_AUTO);
    vsampler ks = vs_create(1, 16, 32, 1, KILN_ALGORITHM_AUTO);
    uint64_t st = 77;
    int64_t differ = 0;
    for (int trial = 0; trial < 6; ++trial) {
        vcase c = vc_alloc(48, 16, 3, trial % 2 == 0);
        vc_fill(&c, &st);
        vc_history(&c, &st, 12);
        if (trial >= 2)
            vc_mask_and_bias(&c, &st);
        c.frequency = trial % 2 ? 0.35f : 0.0f;
        c.dynatemp = trial == 3 || trial == 4 ? 0.6f : 0.0f;
        c.repetition = trial < 3 ? 1.3f : 1.0f;
        c.presence = trial % 3 ? 0.8f : 0.0f;
        if (c.repetition == 1.0f && c.presence == 0.0f)
            c.presence = 1.5f;
        c.top_k = trial == 4 ? 6 : 0;
        for (int64_t b = 0; b < c.B; ++b) {
            c.temperature[b] = b % 7 == 0 ? 0.0f : 0.8f;
            /* drafts that repeat one another, so the extension matters */
            const int32_t d0 = c.draft_ids[b * c.K];
            if (b % 2 && (!c.draft_probs || c.draft_probs[(b * c.K + 1) * c.V + d0] > 0.0f))
                c.draft_ids[b * c.K + 1] = d0;
        }
        vout o = vo_alloc(c.B, c.K);
        run_ok(&v, &c, &o);
        check_reference(&ks, &c, &o);
        for (int64_t b = 0; b < c.B; ++b) {
            int32_t tok[16], acc;
            float lp[16];
            reference(&ks, &c, b, 0, tok, lp, &acc);
            differ += acc != o.accepted[b] ||
                      memcmp(tok, o.tokens + b * (c.K + 1), (size_t)(c.K + 1) * 4) != 0 ||
                      memcmp(lp, o.logprobs + b * (c.K + 1), (size_t)(c.K + 1) * 4) != 0;
        }
        vo_free(&o);
        vc_free(&c);
    }
    cr_assert(differ > 10, "only %lld requests tell the extended history apart",
              (long long)differ);
    vs_destroy(&ks);
    vs_destroy(&v);
}

/* Greedy, by hand: logits (0, 2, 1.9, 0) at every position and drafts
 * (1, 2). Penalising the generated 1 makes 2 the top at position 1, and
 * penalising 1 and 2 makes 1 the top again at position 2 (the bonus). */
Test(verify, penalised_greedy_by_hand)
{
    vsampler v = vs_create(3, 4, 0, 1, KILN_ALGORITHM_AUTO);
    for (int which = 0; which < 2; ++which) {
        vcase c = vc_alloc(1, 4, 2, 0);
        for (int i = 0; i < 3; ++i) {
            c.logits[i * 4 + 1] = 2.0f;
            c.logits[i * 4 + 2] = 1.9f;
        }
        c.temperature[0] = 0.0f;
        c.draft_ids[0] = 1;
        c.draft_ids[1] = 2;
        if (which)
            c.repetition = 2.0f;
        else
            c.presence = 0.5f;
        vout o = vo_alloc(1, 2);
        run_ok(&v, &c, &o);
        cr_assert_eq(o.accepted[0], 2, "penalty %d: accepted %d", which, o.accepted[0]);
        cr_assert(o.tokens[0] == 1 && o.tokens[1] == 2 && o.tokens[2] == 1,
                  "penalty %d: tokens %d %d %d", which, o.tokens[0], o.tokens[1], o.tokens[2]);
        cr_assert(o.logprobs[0] == 0.0f && o.logprobs[1] == 0.0f && o.logprobs[2] == 0.0f);
        vo_free(&o);
        vc_free(&c);
    }
    vs_destroy(&v);
}

/* K_b = 0 is kiln_sample of row b * (K + 1) with the request's seed and
 * offset: same token, same logprob bytes. Both K = 0 (no draft arrays) and
 * K = 3 with every K_b = 0. */
Test(verify, no_drafts_is_kiln_sample)
{
    vsampler v = vs_create(40 * 4, 32, 8, 1, KILN_ALGORITHM_AUTO);
    uint64_t st = 3;
    for (int trial = 0; trial < 8; ++trial) {
        const int32_t K = trial % 2 ? 3 : 0;
        vcase c = vc_alloc(40, 32, K, 0);
        vc_fill(&c, &st);
        if (trial >= 4)
            vc_history(&c, &st, 8);
        c.top_k = trial % 4 == 1 ? 5 : 0;
        c.top_p = trial % 4 == 2 ? 0.6f : 1.0f;
        c.min_p = trial % 4 == 3 ? 0.2f : 0.0f;
        c.repetition = trial >= 4 ? 1.2f : 1.0f;
        c.presence = trial >= 6 ? 0.4f : 0.0f;
        for (int64_t b = 0; b < c.B; ++b) {
            c.num_drafts[b] = 0;
            c.temperature[b] = b % 5 == 0 ? 0.0f : 0.5f + 0.1f * (float)(b % 7);
        }
        vout o = vo_alloc(c.B, K);
        kiln_batch bt = vc_batch(&c);
        kiln_sampling_params p = vc_params(&c);
        kiln_drafts d = vc_drafts(&c);
        if (K == 0)
            d.num_drafts = NULL;
        kiln_verify_outputs vo = vo_outputs(&o);
        cr_assert_eq(kiln_verify_drafts(v.s, &bt, &p, &d, &vo, v.ws, v.ws_size, NULL),
                     KILN_SUCCESS, "%s", kiln_last_error());

        bt.row_stride = (K + 1) * c.V; /* row b of this batch is target row (b, 0) */
        int32_t tok[40];
        float lp[40];
        kiln_outputs so = KILN_OUTPUTS_INIT;
        so.tokens = tok;
        so.logprobs = lp;
        cr_assert_eq(kiln_sample(v.s, &bt, &p, &so, v.ws, v.ws_size, NULL), KILN_SUCCESS, "%s",
                     kiln_last_error());
        for (int64_t b = 0; b < c.B; ++b) {
            cr_assert_eq(o.tokens[b * (K + 1)], tok[b], "trial %d request %lld", trial,
                         (long long)b);
            cr_assert(memcmp(&o.logprobs[b * (K + 1)], &lp[b], 4) == 0,
                      "trial %d request %lld: logprob %a, kiln_sample %a", trial, (long long)b,
                      (double)o.logprobs[b * (K + 1)], (double)lp[b]);
            cr_assert(o.accepted[b] == 0 && o.valid[b] == 1);
            for (int32_t i = 1; i <= K; ++i)
                cr_assert(o.tokens[b * (K + 1) + i] == -1 && isnan(o.logprobs[b * (K + 1) + i]));
        }
        vo_free(&o);
        vc_free(&c);
    }
    vs_destroy(&v);
}

/* kiln_sample's final probabilities of every target row of `c`, [B * (K + 1), V]
 * (valid when the rows do not depend on the history). */
static float *target_probs(vsampler *v, const vcase *c)
{
    const int64_t rows = c->B * (c->K + 1);
    float *probs = malloc((size_t)(rows * c->V) * 4);
    int32_t *tok = malloc((size_t)rows * 4);
    cr_assert(probs && tok);
    kiln_batch bt = kt_batch_f32(c->logits, rows, c->V, 1);
    kiln_sampling_params p = vc_params(c);
    p.temperature = NULL;
    p.temperature_all = c->temperature[0];
    p.seed = NULL;
    p.offset = NULL;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = tok;
    o.probs = probs;
    cr_assert_eq(kiln_sample(v->s, &bt, &p, &o, v->ws, v->ws_size, NULL), KILN_SUCCESS, "%s",
                 kiln_last_error());
    free(tok);
    return probs;
}

#define DIST_V 6
#define DIST_B 4000
#define DIST_CALLS 25

/* The distribution theorem with K = 2: drafts drawn from q, N = 100000
 * requests with distinct seeds. The first emitted token must follow p
 * (G-test, alpha = 1e-4: moving 0.01 of probability between the two likeliest
 * tokens gives a noncentrality of 73 against the critical value 25.7 at
 * 5 degrees of freedom, power > 0.99), and the acceptance rate at position 0
 * must be sum_x min(p, q) with draft_probs, sum_x q p for one-hot drafts,
 * within five binomial standard deviations. Given an accepted first draft,
 * the token at position 1 must follow position 1's own target p1 (a G-test
 * at the same alpha over the roughly 50000 such requests). */
static void draw_from(const float *q, double qsum, uint64_t *st, int32_t *d)
{
    const double u = unit(st) * qsum;
    double run = 0.0;
    *d = DIST_V - 1;
    for (int32_t x = 0; x < DIST_V; ++x)
        if (u < (run += q[x])) {
            *d = x;
            return;
        }
}

static void distribution_case(int with_q)
{
    static const double P[2][DIST_V] = { { 0.30, 0.25, 0.20, 0.12, 0.08, 0.05 },
                                         { 0.05, 0.10, 0.15, 0.20, 0.20, 0.30 } };
    static const float Q[2][DIST_V] = { { 0.10f, 0.30f, 0.05f, 0.25f, 0.20f, 0.10f },
                                        { 0.30f, 0.10f, 0.10f, 0.10f, 0.20f, 0.20f } };
    vsampler v = vs_create(DIST_B * 3, DIST_V, 0, 1, KILN_ALGORITHM_AUTO);
    vcase c = vc_alloc(DIST_B, DIST_V, 2, with_q);
    for (int64_t r = 0; r < DIST_B * 3; ++r)
        for (int64_t x = 0; x < DIST_V; ++x)
            c.logits[r * DIST_V + x] = (float)log(P[r % 3 == 1][x]);
    float *probs = target_probs(&v, &c);
    double p[2][DIST_V], qsum[2] = { 0.0, 0.0 }, want_accept = 0.0;
    for (int k = 0; k < 2; ++k)
        for (int64_t x = 0; x < DIST_V; ++x) {
            p[k][x] = probs[k * DIST_V + x];
            qsum[k] += Q[k][x];
        }
    for (int64_t x = 0; x < DIST_V; ++x)
        want_accept += with_q ? fmin(p[0][x], Q[0][x] / qsum[0]) : p[0][x] * Q[0][x] / qsum[0];
    uint64_t counts[2][DIST_V] = { { 0 } }, accepted = 0, st = 99 + (uint64_t)with_q;
    vout o = vo_alloc(DIST_B, 2);
    for (int call = 0; call < DIST_CALLS; ++call) {
        for (int64_t b = 0; b < DIST_B; ++b) {
            c.seed[b] = mix(&st);
            c.offset[b] = 0;
            for (int k = 0; k < 2; ++k) {
                draw_from(Q[k], qsum[k], &st, &c.draft_ids[b * 2 + k]);
                if (with_q)
                    memcpy(c.draft_probs + (b * 2 + k) * DIST_V, Q[k], sizeof Q[k]);
            }
        }
        run_ok(&v, &c, &o);
        for (int64_t b = 0; b < DIST_B; ++b) {
            const int32_t t = o.tokens[b * 3];
            cr_assert(t >= 0 && t < DIST_V);
            counts[0][t]++;
            accepted += o.accepted[b] > 0;
            cr_assert_eq(o.accepted[b] > 0, t == c.draft_ids[b * 2] && o.tokens[b * 3 + 1] >= 0);
            if (o.accepted[b] > 0)
                counts[1][o.tokens[b * 3 + 1]]++;
        }
    }
    const uint64_t N = (uint64_t)DIST_B * DIST_CALLS;
    const kt_gtest g = kt_gtest_run(counts[0], p[0], DIST_V, N);
    cr_assert(g.p_value > 1e-4, "first token does not follow p: G = %.2f, df %.0f, p-value %.3g",
              g.g, g.df, g.p_value);
    const double rate = (double)accepted / (double)N;
    const double sd = sqrt(want_accept * (1.0 - want_accept) / (double)N);
    cr_assert(fabs(rate - want_accept) < 5.0 * sd, "acceptance %.5f, expected %.5f (sd %.5f)",
              rate, want_accept, sd);
    const kt_gtest g1 = kt_gtest_run(counts[1], p[1], DIST_V, accepted);
    cr_assert(g1.p_value > 1e-4,
              "second token does not follow p1: G = %.2f, df %.0f, p-value %.3g", g1.g, g1.df,
              g1.p_value);
    vo_free(&o);
    free(probs);
    vc_free(&c);
    vs_destroy(&v);
}

Test(verify, first_token_follows_target_with_q)
{
    distribution_case(1);
}

Test(verify, first_token_follows_target_one_hot)
{
    distribution_case(0);
}

/* p = q exactly (masses 2^40, 2^39, 2^38, 2^38 at T = log2(e), S = 2^41,
 * so Q = w): every draft is accepted, whatever the seed. */
/* Every position of the chain, K = 1, 3 and 8, 10^6 requests each, V = 8
 * with top-k 6 and top-p 0.95 on (so q puts mass on tokens the target
 * drops, which are always rejected): position i has its own target p_i and
 * draft distribution q_i (close to p_i, so deep positions are reached), and
 * the targets do not depend on earlier tokens, so a token emitted at
 * position i, given the request got there, must follow p_i. A token outside
 * p_i's support fails outright; each position with at least 20000 arrivals
 * gets a G-test at alpha = 1e-5 (critical value 25.7 at 5 degrees of
 * freedom). Power: moving probability d between two tokens near 0.15 gives
 * the noncentrality N * 2 d^2 / 0.15, so d = 0.005 is 333 at the first
 * position's 10^6 arrivals, and d = 0.02 is 107 at the 20000 floor of the
 * deepest positions tested: power > 0.99 for both. With draft_probs and
 * with one-hot drafts. */
#define CHAIN_V 8
#define CHAIN_B 20000
#define CHAIN_CALLS 50

static void chain_case(int32_t K, int with_q)
{
    vsampler v = vs_create(CHAIN_B * (K + 1), CHAIN_V, 0, 1, KILN_ALGORITHM_AUTO);
    vcase c = vc_alloc(CHAIN_B, CHAIN_V, K, with_q);
    c.top_k = 6;
    c.top_p = 0.95f;
    uint64_t st = 1234 + (uint64_t)K * 17 + (uint64_t)with_q;
    float base[9][CHAIN_V], q[9][CHAIN_V];
    double qsum[9];
    for (int32_t i = 0; i <= K; ++i) {
        qsum[i] = 0.0;
        for (int x = 0; x < CHAIN_V; ++x) {
            base[i][x] = (float)(2.0 * unit(&st) - 1.0);
            q[i][x] = (float)exp(base[i][x] + 0.4 * (unit(&st) - 0.5));
            qsum[i] += q[i][x];
        }
        for (int x = 0; x < CHAIN_V; ++x)
            q[i][x] = (float)(q[i][x] / qsum[i]);
        qsum[i] = 0.0;
        for (int x = 0; x < CHAIN_V; ++x)
            qsum[i] += q[i][x];
    }
    for (int64_t b = 0; b < CHAIN_B; ++b)
        for (int32_t i = 0; i <= K; ++i)
            memcpy(c.logits + (b * (K + 1) + i) * CHAIN_V, base[i], sizeof base[i]);
    float *probs = target_probs(&v, &c);
    uint64_t counts[9][CHAIN_V] = { { 0 } }, arrivals[9] = { 0 };
    vout o = vo_alloc(CHAIN_B, K);
    for (int call = 0; call < CHAIN_CALLS; ++call) {
        for (int64_t b = 0; b < CHAIN_B; ++b) {
            c.seed[b] = mix(&st);
            c.offset[b] = mix(&st);
            for (int32_t i = 0; i < K; ++i) {
                int32_t *d = &c.draft_ids[b * K + i];
                const double u = unit(&st) * qsum[i];
                double run = 0.0;
                *d = CHAIN_V - 1;
                for (int32_t x = 0; x < CHAIN_V; ++x)
                    if (u < (run += q[i][x])) {
                        *d = x;
                        break;
                    }
                if (with_q)
                    memcpy(c.draft_probs + (b * K + i) * CHAIN_V, q[i], sizeof q[i]);
            }
        }
        run_ok(&v, &c, &o);
        for (int64_t b = 0; b < CHAIN_B; ++b) {
            const int32_t a = o.accepted[b];
            cr_assert(a >= 0 && a <= K);
            for (int32_t i = 0; i <= a; ++i) {
                const int32_t t = o.tokens[b * (K + 1) + i];
                cr_assert(t >= 0 && t < CHAIN_V);
                cr_assert(probs[i * CHAIN_V + t] > 0.0f, "K %d position %d emitted token %d, "
                          "which its target does not keep", K, i, t);
                counts[i][t]++;
                arrivals[i]++;
            }
        }
    }
    cr_assert_eq(arrivals[0], (uint64_t)CHAIN_B * CHAIN_CALLS);
    int tested = 0;
    for (int32_t i = 0; i <= K; ++i) {
        if (arrivals[i] < 20000)
            continue;
        double p[CHAIN_V];
        for (int x = 0; x < CHAIN_V; ++x)
            p[x] = probs[i * CHAIN_V + x];
        const kt_gtest g = kt_gtest_run(counts[i], p, CHAIN_V, arrivals[i]);
        cr_assert(g.p_value > 1e-5,
                  "K %d (%s) position %d: emitted tokens do not follow p_%d over %llu arrivals: "
                  "G = %.2f, df %.0f, p-value %.3g",
                  K, with_q ? "q" : "one-hot", i, i, (unsigned long long)arrivals[i], g.g, g.df,
                  g.p_value);
        ++tested;
    }
    cr_assert_geq(tested, K < 3 ? K + 1 : 3, "K %d: only %d positions were reached often enough", K,
                  tested);
    vo_free(&o);
    free(probs);
    vc_free(&c);
    vs_destroy(&v);
}

Test(verify, chain_follows_every_position_k1, .timeout = 600)
{
    chain_case(1, 1);
    chain_case(1, 0);
}

Test(verify, chain_follows_every_position_k3, .timeout = 600)
{
    chain_case(3, 1);
    chain_case(3, 0);
}

Test(verify, chain_follows_every_position_k8, .timeout = 600)
{
    chain_case(8, 1);
    chain_case(8, 0);
}

Test(verify, equal_distributions_always_accept)
{
    vsampler v = vs_create(1000 * 4, 4, 0, 1, KILN_ALGORITHM_AUTO);
    vsampler ks = vs_create(1, 4, 8, 1, KILN_ALGORITHM_AUTO);
    static const float X[4] = { 3.0f, 2.0f, 1.0f, 1.0f };
    static const float Q[4] = { 0.5f, 0.25f, 0.125f, 0.125f };
    vcase c = vc_alloc(1000, 4, 3, 1);
    uint64_t st = 8;
    for (int64_t r = 0; r < 1000 * 4; ++r)
        memcpy(c.logits + r * 4, X, sizeof X);
    for (int64_t b = 0; b < 1000; ++b) {
        c.temperature[b] = KILN_LOG2E_F;
        c.seed[b] = mix(&st);
        c.offset[b] = mix(&st);
        for (int i = 0; i < 3; ++i) {
            memcpy(c.draft_probs + (b * 3 + i) * 4, Q, sizeof Q);
            const double u = unit(&st);
            c.draft_ids[b * 3 + i] = u < 0.5 ? 0 : u < 0.75 ? 1 : u < 0.875 ? 2 : 3;
        }
    }
    float *probs = target_probs(&v, &c);
    for (int x = 0; x < 4; ++x)
        cr_assert_eq(probs[x], Q[x], "token %d: p = %a", x, (double)probs[x]);
    vout o = vo_alloc(c.B, c.K);
    run_ok(&v, &c, &o);
    for (int64_t b = 0; b < c.B; ++b)
        cr_assert_eq(o.accepted[b], 3, "request %lld rejected a draft with p = q", (long long)b);
    check_reference(&ks, &c, &o); /* and the bonus token is kiln_sample's at offset + 3 */
    free(probs);
    vo_free(&o);
    vc_free(&c);
    vs_destroy(&ks);
    vs_destroy(&v);
}

/* q all on a token the target does not keep (top-k = 3 of 6): always
 * rejected, and the correction is the ordinary draw, kiln_sample's token and
 * logprob at the same offset, with q given one-hot and with draft_probs NULL. */
Test(verify, draft_outside_target_always_rejected)
{
    for (int with_q = 0; with_q < 2; ++with_q) {
        vsampler v = vs_create(1000 * 2, 6, 0, 1, KILN_ALGORITHM_AUTO);
        vcase c = vc_alloc(1000, 6, 1, with_q);
        uint64_t st = 21;
        vc_fill(&c, &st);
        c.top_k = 3;
        int32_t tok[1000];
        float lp[1000];
        kiln_batch bt = vc_batch(&c);
        bt.row_stride = 2 * c.V;
        kiln_sampling_params p = vc_params(&c);
        kiln_outputs so = KILN_OUTPUTS_INIT;
        so.tokens = tok;
        so.logprobs = lp;
        cr_assert_eq(kiln_sample(v.s, &bt, &p, &so, v.ws, v.ws_size, NULL), KILN_SUCCESS);
        float *probs = target_probs(&v, &c);
        for (int64_t b = 0; b < c.B; ++b) {
            int32_t d = (int32_t)(mix(&st) % 6);
            while (probs[b * 2 * 6 + d] > 0.0f)
                d = (d + 1) % 6;
            c.draft_ids[b] = d;
            if (with_q) {
                memset(c.draft_probs + b * 6, 0, 6 * 4);
                c.draft_probs[b * 6 + d] = 1.0f;
            }
        }
        vout o = vo_alloc(c.B, 1);
        run_ok(&v, &c, &o);
        for (int64_t b = 0; b < c.B; ++b) {
            cr_assert_eq(o.accepted[b], 0, "request %lld accepted a token with p = 0",
                         (long long)b);
            cr_assert_eq(o.tokens[b * 2], tok[b], "request %lld: correction %d, kiln_sample %d",
                         (long long)b, o.tokens[b * 2], tok[b]);
            cr_assert(memcmp(&o.logprobs[b * 2], &lp[b], 4) == 0);
            cr_assert(o.tokens[b * 2 + 1] == -1 && isnan(o.logprobs[b * 2 + 1]));
        }
        free(probs);
        vo_free(&o);
        vc_free(&c);
        vs_destroy(&v);
    }
}

/* With top-k, top-p or min-p on, no emitted token (accepted draft,
 * correction or bonus) lies outside its position's kept set, though most
 * drafts do. */
Test(verify, filters_hold_for_every_emitted_token)
{
    static const int32_t tk[3] = { 4, 0, 0 };
    static const float tp[3] = { 1.0f, 0.5f, 1.0f };
    static const float mp[3] = { 0.0f, 0.0f, 0.3f };
    for (int f = 0; f < 6; ++f) {
        vsampler v = vs_create(500 * 5, 32, 0, 1, KILN_ALGORITHM_AUTO);
        vcase c = vc_alloc(500, 32, 4, f >= 3);
        uint64_t st = 1000 + (uint64_t)f;
        vc_fill(&c, &st);
        c.top_k = tk[f % 3];
        c.top_p = tp[f % 3];
        c.min_p = mp[f % 3];
        for (int64_t b = 0; b < c.B; ++b)
            for (int i = 0; i < c.K; ++i) {
                const int32_t d = (int32_t)(mix(&st) % 32);
                c.draft_ids[b * c.K + i] = d;
                if (c.draft_probs)
                    c.draft_probs[(b * c.K + i) * 32 + d] = 1.0f / 32.0f;
            }
        float *probs = target_probs(&v, &c);
        vout o = vo_alloc(c.B, c.K);
        run_ok(&v, &c, &o);
        int64_t outside = 0, accepted = 0;
        for (int64_t b = 0; b < c.B; ++b) {
            for (int i = 0; i < c.K; ++i)
                outside += probs[(b * 5 + i) * 32 + c.draft_ids[b * c.K + i]] == 0.0f;
            accepted += o.accepted[b];
            for (int i = 0; i <= o.accepted[b]; ++i) {
                const int32_t t = o.tokens[b * 5 + i];
                cr_assert(t >= 0 && t < 32 && probs[(b * 5 + i) * 32 + t] > 0.0f,
                          "filter %d request %lld position %d: token %d is not kept", f,
                          (long long)b, i, t);
            }
        }
        cr_assert(outside > 1000 && accepted > 5, "outside %lld, accepted %lld",
                  (long long)outside, (long long)accepted);
        free(probs);
        vo_free(&o);
        vc_free(&c);
        vs_destroy(&v);
    }
}

/* ------------------------------------------------------------ bad input */

#define EB 2
#define EV 8
#define EK 2
#define ECELLS (EB * (EK + 2))

static struct {
    vsampler v;
    float logits[EB * (EK + 2) * EV];
    int32_t draft_ids[EB * (EK + 1)];
    int32_t num_drafts[EB];
    float draft_probs[EB * (EK + 1) * EV];
    int32_t tokens[ECELLS], accepted[EB];
    float logprobs[ECELLS];
    uint8_t valid[EB];
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_drafts drafts;
    kiln_verify_outputs outputs;
    size_t ws_cut; /* bytes taken off the workspace size */
} ef;

/* A valid call: greedy-free, top_k = 1, so every draft but token 0 is
 * rejected; request 0 drafts (3, 0), request 1 drafts (0, 0). */
static void ef_reset(void)
{
    for (int i = 0; i < EB * (EK + 2) * EV; ++i)
        ef.logits[i] = (float)(EV - i % EV) * 0.25f;
    for (int i = 0; i < EB * (EK + 1); ++i)
        ef.draft_ids[i] = 0;
    ef.draft_ids[0] = 3;
    for (int b = 0; b < EB; ++b)
        ef.num_drafts[b] = EK;
    for (int i = 0; i < EB * (EK + 1) * EV; ++i)
        ef.draft_probs[i] = 1.0f / EV;
    ef.batch = kt_batch_f32(ef.logits, EB, EV, 1);
    const kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    ef.params = p;
    ef.params.top_k_all = 1;
    ef.params.seed_all = 7;
    const kiln_drafts d = KILN_DRAFTS_INIT;
    ef.drafts = d;
    ef.drafts.max_drafts = EK;
    ef.drafts.draft_ids = ef.draft_ids;
    ef.drafts.num_drafts = ef.num_drafts;
    ef.drafts.draft_probs = ef.draft_probs;
    const kiln_verify_outputs o = KILN_VERIFY_OUTPUTS_INIT;
    ef.outputs = o;
    ef.outputs.tokens = ef.tokens;
    ef.outputs.num_accepted = ef.accepted;
    ef.outputs.logprobs = ef.logprobs;
    ef.outputs.valid = ef.valid;
    ef.ws_cut = 0;
}

static int ef_untouched(void)
{
    const unsigned char *ps[4] = { (const void *)ef.tokens, (const void *)ef.accepted,
                                   (const void *)ef.logprobs, ef.valid };
    const size_t ns[4] = { sizeof ef.tokens, sizeof ef.accepted, sizeof ef.logprobs,
                           sizeof ef.valid };
    for (int k = 0; k < 4; ++k)
        for (size_t i = 0; i < ns[k]; ++i)
            if (ps[k][i] != 0xA5)
                return 0;
    return 1;
}

static kiln_status ef_call(void)
{
    memset(ef.tokens, 0xA5, sizeof ef.tokens);
    memset(ef.accepted, 0xA5, sizeof ef.accepted);
    memset(ef.logprobs, 0xA5, sizeof ef.logprobs);
    memset(ef.valid, 0xA5, sizeof ef.valid);
    return kiln_verify_drafts(ef.v.s, &ef.batch, &ef.params, &ef.drafts, &ef.outputs, ef.v.ws,
                              ef.v.ws_size - ef.ws_cut, NULL);
}

static void ef_expect_at(int line, kiln_status want, const char *need1, const char *need2)
{
    const kiln_status st = ef_call();
    const char *msg = kiln_last_error();
    cr_assert_eq(st, want, "line %d: status %d (%s), expected %d (%s); message \"%s\"", line,
                 (int)st, kiln_status_string(st), (int)want, kiln_status_string(want), msg);
    cr_assert(strstr(msg, need1) != NULL, "line %d: message \"%s\" does not contain \"%s\"",
              line, msg, need1);
    if (need2)
        cr_assert(strstr(msg, need2) != NULL, "line %d: message \"%s\" does not contain \"%s\"",
                  line, msg, need2);
    cr_assert(ef_untouched(), "line %d: an output was written on error", line);
    ef_reset();
}
#define EF_EXPECT(want, need1, need2) ef_expect_at(__LINE__, want, need1, need2)

static void ef_expect_ok_at(int line)
{
    const kiln_status st = ef_call();
    cr_assert_eq(st, KILN_SUCCESS, "line %d: %s: %s", line, kiln_status_string(st),
                 kiln_last_error());
    cr_assert_str_eq(kiln_last_error(), "", "line %d", line);
    ef_reset();
}
#define EF_OK() ef_expect_ok_at(__LINE__)

Test(verify, bad_input)
{
    ef.v = vs_create(EB * (EK + 1), EV, 0, 1, KILN_ALGORITHM_AUTO);
    ef_reset();
    EF_OK();
    ef_call();
    cr_assert(ef.accepted[0] == 0 && ef.tokens[0] == 0 && ef.accepted[1] == 2,
              "the fixture's rejections: %d %d %d", ef.accepted[0], ef.tokens[0], ef.accepted[1]);
    ef_reset();

    ef.draft_ids[1] = EV;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "drafts.draft_ids[1] = 8", "outside [0, 8)");
    ef.draft_ids[EK + 1] = -1;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "drafts.draft_ids[3] = -1", "request 1, position 1");
    ef.num_drafts[1] = 1; /* entries past K_b are not read */
    ef.draft_ids[EK + 1] = 99;
    EF_OK();

    ef.num_drafts[1] = EK + 1;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "drafts.num_drafts[1] = 3", "[0, max_drafts = 2]");
    ef.num_drafts[0] = -1;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "drafts.num_drafts[0] = -1", NULL);

    /* q at the draft itself: always read */
    const float bad_q[4] = { NAN, 1.5f, -0.25f, 0.0f };
    for (int k = 0; k < 4; ++k) {
        ef.draft_probs[(1 * EK + 1) * EV + 0] = bad_q[k];
        EF_EXPECT(KILN_ERROR_INVALID_PARAMETER,
                  "drafts.draft_probs[request 1, position 1, token 0]", "(0, 1]");
    }
    /* q elsewhere: read only on the row of the first rejection (request 0,
     * position 0, which rejects token 3) */
    ef.draft_probs[5] = NAN;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "drafts.draft_probs[request 0, position 0, token 5]",
              "not a probability");
    ef.draft_probs[6] = 2.0f;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "token 6] = 2", NULL);
    ef.draft_probs[EV + 5] = NAN; /* request 0, position 1: never reached */
    ef.draft_probs[(1 * EK + 0) * EV + 5] = -1.0f; /* request 1 accepts: row not read */
    EF_OK();
    ef.drafts.draft_probs = NULL; /* one-hot: no q to check */
    EF_OK();

    ef.batch.num_samples = 2;
    EF_EXPECT(KILN_ERROR_INVALID_SHAPE, "batch.num_samples = 2 must be 1", NULL);
    ef.drafts.max_drafts = EK + 1; /* 2 * 4 target rows > max_batch = 6 */
    EF_EXPECT(KILN_ERROR_INVALID_SHAPE, "drafts.max_drafts = 3", "max_batch");
    ef.drafts.max_drafts = -1;
    EF_EXPECT(KILN_ERROR_INVALID_SHAPE, "drafts.max_drafts = -1", NULL);
    ef.drafts.draft_probs_stride = EV - 1;
    EF_EXPECT(KILN_ERROR_INVALID_SHAPE, "drafts.draft_probs_stride = 7", NULL);

    ef.outputs.tokens = NULL;
    EF_EXPECT(KILN_ERROR_NULL_POINTER, "outputs.tokens is NULL", NULL);
    ef.drafts.draft_ids = NULL;
    EF_EXPECT(KILN_ERROR_NULL_POINTER, "drafts.draft_ids is NULL", NULL);
    ef.drafts.struct_size = 3;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "kiln_drafts.struct_size = 3", NULL);
    ef.outputs.struct_size = 5;
    EF_EXPECT(KILN_ERROR_INVALID_PARAMETER, "kiln_verify_outputs.struct_size = 5", NULL);
    ef.outputs.logprobs = (float *)(ef.tokens + 1);
    EF_EXPECT(KILN_ERROR_OVERLAP, "outputs.logprobs", NULL);
    ef.outputs.num_accepted = (int32_t *)(ef.draft_ids + 1);
    EF_EXPECT(KILN_ERROR_OVERLAP, "outputs.num_accepted", NULL);
    ef.drafts.num_drafts = (const int32_t *)((const char *)ef.num_drafts + 1);
    EF_EXPECT(KILN_ERROR_MISALIGNED, "drafts.num_drafts", NULL);
    ef.ws_cut = 1;
    EF_EXPECT(KILN_ERROR_WORKSPACE_TOO_SMALL, "workspace_size", NULL);

    const kiln_status st =
        kiln_verify_drafts(ef.v.s, &ef.batch, &ef.params, NULL, &ef.outputs, ef.v.ws,
                           ef.v.ws_size, NULL);
    cr_assert(st == KILN_ERROR_NULL_POINTER && strstr(kiln_last_error(), "drafts is NULL"));
    cr_assert_eq(kiln_verify_drafts(ef.v.s, &ef.batch, &ef.params, &ef.drafts, NULL, ef.v.ws,
                                    ef.v.ws_size, NULL),
                 KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "outputs is NULL"), "%s", kiln_last_error());
    vs_destroy(&ef.v);
}

/* ----------------------------------------------------------- invariance */

/* Requests order[0..n) of c as a new call. */
static vcase vc_subset(const vcase *c, const int64_t *order, int64_t n)
{
    const int64_t V = c->V, K = c->K;
    vcase s = vc_alloc(n, V, c->K, c->draft_probs != NULL);
    s.top_k = c->top_k;
    s.top_p = c->top_p;
    s.min_p = c->min_p;
    s.repetition = c->repetition;
    s.presence = c->presence;
    s.frequency = c->frequency;
    s.dynatemp = c->dynatemp;
    const int64_t words = (V + 31) / 32;
    if (c->mask) {
        s.mask = calloc((size_t)(n * (K + 1) * words), 4);
        cr_assert(s.mask);
    }
    if (c->bias_off) {
        s.bias_off = calloc((size_t)(n + 1), sizeof(int64_t));
        s.bias_ids = calloc((size_t)(c->bias_off[c->B] + 1), 4);
        s.bias_values = calloc((size_t)(c->bias_off[c->B] + 1), 4);
        cr_assert(s.bias_off && s.bias_ids && s.bias_values);
    }
    int64_t hist = 0;
    for (int64_t j = 0; j < n; ++j)
        hist += c->hist_off ? c->hist_off[order[j] + 1] - c->hist_off[order[j]] : 0;
    if (c->hist_off) {
        s.hist_off = calloc((size_t)(n + 1), sizeof(int64_t));
        s.hist_ids = calloc((size_t)(hist + 1), sizeof(int32_t));
        s.prompt_len = calloc((size_t)n, sizeof(int32_t));
        cr_assert(s.hist_off && s.hist_ids && s.prompt_len);
    }
    for (int64_t j = 0; j < n; ++j) {
        const int64_t b = order[j];
        memcpy(s.logits + j * (K + 1) * V, c->logits + b * (K + 1) * V,
               (size_t)((K + 1) * V) * 4);
        memcpy(s.draft_ids + j * K, c->draft_ids + b * K, (size_t)K * 4);
        if (c->draft_probs)
            memcpy(s.draft_probs + j * K * V, c->draft_probs + b * K * V, (size_t)(K * V) * 4);
        s.num_drafts[j] = c->num_drafts[b];
        s.seed[j] = c->seed[b];
        s.offset[j] = c->offset[b];
        s.temperature[j] = c->temperature[b];
        if (c->mask)
            memcpy(s.mask + j * (K + 1) * words, c->mask + b * (K + 1) * words,
                   (size_t)((K + 1) * words) * 4);
        if (c->bias_off) {
            const int64_t len = c->bias_off[b + 1] - c->bias_off[b];
            s.bias_off[j + 1] = s.bias_off[j] + len;
            memcpy(s.bias_ids + s.bias_off[j], c->bias_ids + c->bias_off[b], (size_t)len * 4);
            memcpy(s.bias_values + s.bias_off[j], c->bias_values + c->bias_off[b],
                   (size_t)len * 4);
        }
        if (c->hist_off) {
            const int64_t len = c->hist_off[b + 1] - c->hist_off[b];
            s.hist_off[j + 1] = s.hist_off[j] + len;
            memcpy(s.hist_ids + s.hist_off[j], c->hist_ids + c->hist_off[b], (size_t)len * 4);
            s.prompt_len[j] = c->prompt_len[b];
        }
    }
    return s;
}

static void same_request(const vout *a, int64_t ra, const vout *b, int64_t rb, int32_t K,
                         const char *what)
{
    const size_t cells = (size_t)(K + 1);
    cr_assert(a->accepted[ra] == b->accepted[rb] && a->valid[ra] == b->valid[rb] &&
                  memcmp(a->tokens + ra * (K + 1), b->tokens + rb * (K + 1), cells * 4) == 0 &&
                  memcmp(a->logprobs + ra * (K + 1), b->logprobs + rb * (K + 1), cells * 4) == 0,
              "%s: request %lld differs from request %lld of the reference call", what,
              (long long)rb, (long long)ra);
}

/* A request's outputs depend on neither its batch position, the batch size,
 * the thread count nor the algorithm. */
Test(verify, invariance)
{
    static const int threads[5] = { 1, 2, 1, 2, 2 };
    static const kiln_algorithm algs[5] = { KILN_ALGORITHM_SORT, KILN_ALGORITHM_SORT,
                                            KILN_ALGORITHM_SELECT, KILN_ALGORITHM_SELECT,
                                            KILN_ALGORITHM_AUTO };
    enum { IB = 24, IV = 512, IK = 4 };
    vsampler vs[5];
    for (int k = 0; k < 5; ++k)
        vs[k] = vs_create(IB * (IK + 1), IV, 16, threads[k], algs[k]);
    uint64_t st = 4242;
    for (int with_q = 0; with_q < 2; ++with_q) {
        vcase c = vc_alloc(IB, IV, IK, with_q);
        vc_fill(&c, &st);
        vc_history(&c, &st, 12);
        if (with_q)
            vc_mask_and_bias(&c, &st);
        c.frequency = 0.2f;
        c.dynatemp = with_q ? 0.0f : 0.5f;
        c.top_k = 50;
        c.top_p = 0.9f;
        c.repetition = 1.2f;
        c.presence = 0.3f;
        for (int64_t b = 0; b < IB; ++b) {
            c.num_drafts[b] = (int32_t)(b % (IK + 1));
            c.temperature[b] = b % 6 == 1 ? 0.0f : 0.9f;
            /* some drafts the target likes, so later positions are reached */
            for (int i = 0; i < IK; ++i)
                if (b % 3 == 0) {
                    const int64_t r = b * (IK + 1) + i;
                    const int32_t d = c.draft_ids[b * IK + i];
                    c.logits[r * IV + d] = 10.0f;
                    if (c.mask)
                        c.mask[r * (IV / 32) + d / 32] |= (int32_t)(1u << (d % 32));
                }
        }
        c.logits[(5 * (IK + 1) + 2) * IV + 7] = NAN; /* request 5 never gets there */
        c.logits[(7 * (IK + 1) + 0) * IV + 7] = NAN; /* request 7 is invalid */
        vout base = vo_alloc(IB, IK);
        run_ok(&vs[0], &c, &base);
        int64_t reached = 0;
        for (int64_t b = 0; b < IB; ++b)
            reached += base.accepted[b] >= 2;
        cr_assert(reached >= 4, "only %lld requests accepted two drafts", (long long)reached);
        cr_assert(base.valid[5] == 1 && base.valid[7] == 0 && base.tokens[7 * (IK + 1)] == -1);
        for (int k = 1; k < 5; ++k) {
            vout o = vo_alloc(IB, IK);
            run_ok(&vs[k], &c, &o);
            for (int64_t b = 0; b < IB; ++b)
                same_request(&base, b, &o, b, IK, k % 2 ? "2 threads" : "algorithm");
            vo_free(&o);
        }
        int64_t order[IB];
        for (int64_t j = 0; j < IB; ++j)
            order[j] = IB - 1 - j;
        vcase rev = vc_subset(&c, order, IB);
        vout ro = vo_alloc(IB, IK);
        run_ok(&vs[1], &rev, &ro);
        for (int64_t j = 0; j < IB; ++j)
            same_request(&base, order[j], &ro, j, IK, "reversed batch");
        vo_free(&ro);
        vc_free(&rev);
        for (int64_t b = 0; b < IB; ++b) {
            vcase one = vc_subset(&c, &b, 1);
            vout oo = vo_alloc(1, IK);
            run_ok(&vs[b % 5], &one, &oo);
            same_request(&base, b, &oo, 0, IK, "alone");
            vo_free(&oo);
            vc_free(&one);
        }
        vo_free(&base);
        vc_free(&c);
    }
    for (int k = 0; k < 5; ++k)
        vs_destroy(&vs[k]);
}

/* ---------------------------------------------------------------- layouts */

static uint16_t to_f16(float f)
{
    /* exact for the values used: |f| in [2^-10, 2^10) with 10 mantissa bits */
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const int32_t e = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
    return (uint16_t)(sign | (uint32_t)e << 10 | ((u >> 13) & 0x3FFu));
}

/* f16 and bf16 logits give the bytes of the f32 logits they convert to;
 * padded logit rows and draft-probability rows (NaN in the padding) give
 * the bytes of dense ones. */
Test(verify, layouts)
{
    enum { LB = 16, LV = 40, LK = 3, ROWS = LB * (LK + 1), PAD = 5 };
    vsampler v = vs_create(ROWS, LV, 0, 2, KILN_ALGORITHM_AUTO);
    uint64_t st = 606;
    vcase c = vc_alloc(LB, LV, LK, 1);
    vc_fill(&c, &st);
    c.top_k = 10;
    for (int64_t b = 0; b < LB; ++b) {
        c.num_drafts[b] = (int32_t)(b % (LK + 1));
        c.temperature[b] = b % 5 == 0 ? 0.0f : 0.8f;
    }
    for (int64_t i = 0; i < ROWS * LV; ++i) /* values f16 and bf16 hold exactly */
        c.logits[i] = (float)((int)(c.logits[i] * 64.0f) | 1) / 64.0f;
    for (int64_t b = 0; b < LB; ++b)
        for (int i = 0; i < LK; ++i)
            if (mix(&st) % 2)
                c.logits[(b * (LK + 1) + i) * LV + c.draft_ids[b * LK + i]] = 5.0f;
    vout base = vo_alloc(LB, LK);
    run_ok(&v, &c, &base);

    uint16_t *half = malloc(ROWS * LV * 2);
    float *padded = malloc((size_t)ROWS * (LV + PAD) * 4);
    float *qpad = malloc((size_t)LB * LK * (LV + PAD) * 4);
    cr_assert(half && padded && qpad);
    for (int kind = 0; kind < 4; ++kind) {
        kiln_batch bt = vc_batch(&c);
        kiln_sampling_params p = vc_params(&c);
        kiln_drafts d = vc_drafts(&c);
        if (kind == 0 || kind == 1) {
            for (int64_t i = 0; i < ROWS * LV; ++i) {
                uint32_t u;
                memcpy(&u, &c.logits[i], 4);
                cr_assert(kind || (u & 0xFFFFu) == 0, "not a bf16 value");
                half[i] = kind ? to_f16(c.logits[i]) : (uint16_t)(u >> 16);
            }
            bt.dtype = kind ? KILN_DTYPE_F16 : KILN_DTYPE_BF16;
            bt.logits = half;
        } else if (kind == 2) {
            for (int64_t r = 0; r < ROWS; ++r)
                for (int64_t x = 0; x < LV + PAD; ++x)
                    padded[r * (LV + PAD) + x] = x < LV ? c.logits[r * LV + x] : NAN;
            bt.logits = padded;
            bt.row_stride = LV + PAD;
        } else {
            for (int64_t r = 0; r < LB * LK; ++r)
                for (int64_t x = 0; x < LV + PAD; ++x)
                    qpad[r * (LV + PAD) + x] = x < LV ? c.draft_probs[r * LV + x] : NAN;
            d.draft_probs = qpad;
            d.draft_probs_stride = LV + PAD;
        }
        vout o = vo_alloc(LB, LK);
        kiln_verify_outputs vo = vo_outputs(&o);
        const kiln_status s = kiln_verify_drafts(v.s, &bt, &p, &d, &vo, v.ws, v.ws_size, NULL);
        cr_assert_eq(s, KILN_SUCCESS, "layout %d: %s", kind, kiln_last_error());
        for (int64_t b = 0; b < LB; ++b)
            same_request(&base, b, &o, b, LK, kind == 0   ? "bf16"
                                                : kind == 1 ? "f16"
                                                : kind == 2 ? "row_stride"
                                                            : "draft_probs_stride");
        vo_free(&o);
    }
    free(half);
    free(padded);
    free(qpad);
    vo_free(&base);
    vc_free(&c);
    vs_destroy(&v);
}

/* Every output but tokens is optional, and leaving them out changes no
 * token. */
Test(verify, only_tokens)
{
    vsampler v = vs_create(20 * 4, 64, 0, 1, KILN_ALGORITHM_AUTO);
    uint64_t st = 12;
    vcase c = vc_alloc(20, 64, 3, 1);
    vc_fill(&c, &st);
    vout full = vo_alloc(20, 3), bare = vo_alloc(20, 3);
    run_ok(&v, &c, &full);
    kiln_batch bt = vc_batch(&c);
    kiln_sampling_params p = vc_params(&c);
    kiln_drafts d = vc_drafts(&c);
    kiln_verify_outputs vo = KILN_VERIFY_OUTPUTS_INIT;
    vo.tokens = bare.tokens;
    cr_assert_eq(kiln_verify_drafts(v.s, &bt, &p, &d, &vo, v.ws, v.ws_size, NULL), KILN_SUCCESS,
                 "%s", kiln_last_error());
    cr_assert(memcmp(full.tokens, bare.tokens, 20 * 4 * 4) == 0);
    for (int64_t i = 0; i < 20; ++i)
        cr_assert(bare.accepted[i] == (int32_t)0xA5A5A5A5 && bare.valid[i] == 0xA5);
    vo_free(&full);
    vo_free(&bare);
    vc_free(&c);
    vs_destroy(&v);
}

/* The counting behind section 19's theorem, at the exact boundaries: the
 * accept test holds for a in [0, min(2^64, ceil(w 2^64 / Q))) and no other a,
 * and the residual draw maps e in [ceil(r 2^64 / R), ceil((r + 1) 2^64 / R))
 * to unit r: floor(2^64 / R) or one more values each. */
Test(verify, accept_and_residual_counts)
{
    uint64_t st = 2024;
    for (int it = 0; it < 20000; ++it) {
        const uint64_t S = (mix(&st) >> (int)(mix(&st) % 40)) | 1;
        const uint64_t Q = 1 + mix(&st) % S, w = mix(&st) % (S + 1);
        const u128 A = (((u128)w << 64) + Q - 1) / Q;
        if (A >= ((u128)1 << 64)) {
            cr_assert(kiln_draft_accepted(UINT64_MAX, Q, w), "w %llu Q %llu",
                      (unsigned long long)w, (unsigned long long)Q);
        } else {
            const uint64_t a = (uint64_t)A;
            cr_assert(!kiln_draft_accepted(a, Q, w), "w %llu Q %llu: a = %llu accepted",
                      (unsigned long long)w, (unsigned long long)Q, (unsigned long long)a);
            if (a > 0)
                cr_assert(kiln_draft_accepted(a - 1, Q, w));
        }
        const uint64_t R = S, r = mix(&st) % R;
        const u128 lo = (((u128)r << 64) + R - 1) / R, hi = (((u128)(r + 1) << 64) + R - 1) / R;
        const u128 count = hi - lo, base = ((u128)1 << 64) / R;
        cr_assert(count == base || count == base + 1);
        cr_assert_eq(kiln_scale_draw((uint64_t)lo, R), r);
        if (lo > 0)
            cr_assert_eq(kiln_scale_draw((uint64_t)(lo - 1), R), r - 1);
        cr_assert_eq(kiln_scale_draw((uint64_t)(hi - 1), R), r);
    }
}

/* A caller built against an older header: kiln_drafts without draft_probs
 * is a one-hot call, kiln_verify_outputs with tokens alone writes nothing
 * past them, whatever the fields past struct_size hold. num_drafts NULL
 * means K_b = K. */
Test(verify, older_struct_sizes)
{
    vsampler v = vs_create(12 * 3, 16, 0, 1, KILN_ALGORITHM_AUTO);
    uint64_t st = 90;
    vcase c = vc_alloc(12, 16, 2, 1);
    vc_fill(&c, &st);
    vcase onehot = c;
    onehot.draft_probs = NULL;
    vout want = vo_alloc(12, 2), got = vo_alloc(12, 2), with_q = vo_alloc(12, 2);
    run_ok(&v, &onehot, &want);
    run_ok(&v, &c, &with_q);
    cr_assert(memcmp(want.tokens, with_q.tokens, 12 * 3 * 4) != 0, "q made no difference");
    vo_free(&with_q);
    kiln_batch bt = vc_batch(&c);
    kiln_sampling_params p = vc_params(&c);
    kiln_drafts d = vc_drafts(&c);
    d.struct_size = offsetof(kiln_drafts, draft_probs);
    d.num_drafts = NULL; /* every K_b is K, as in c */
    kiln_verify_outputs vo = vo_outputs(&got);
    vo.struct_size = offsetof(kiln_verify_outputs, num_accepted);
    cr_assert_eq(kiln_verify_drafts(v.s, &bt, &p, &d, &vo, v.ws, v.ws_size, NULL), KILN_SUCCESS,
                 "%s", kiln_last_error());
    cr_assert(memcmp(want.tokens, got.tokens, 12 * 3 * 4) == 0);
    for (int64_t i = 0; i < 12; ++i)
        cr_assert(got.accepted[i] == (int32_t)0xA5A5A5A5 && got.valid[i] == 0xA5);
    for (int64_t i = 0; i < 12 * 3; ++i) {
        uint32_t u;
        memcpy(&u, &got.logprobs[i], 4);
        cr_assert_eq(u, 0xA5A5A5A5u);
    }
    vo_free(&want);
    vo_free(&got);
    vc_free(&c);
    vs_destroy(&v);
}
