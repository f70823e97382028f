/* docs/semantics.md section 19's theorem, exactly: on vocabularies of 2..8
 * tokens the first emitted token's probability is summed over every class
 * of random outcomes (the draft d, the accept draw a_0, the emit draw e_0)
 * in wide integers, from the integer masses of sections 5-6 (checked byte
 * for byte against kiln_sample's probs), and held to p(v) = w(v) / S:
 * within 2^-63 for a draft drawn from q~ = Q / S with sum Q = S (random f32
 * q, one-hot drafts), within V / S + |1 - sum q~| + 2^-63 for one drawn from
 * the f32 q itself (q = p included). The classes are intervals of a_0 and
 * e_0 found by bisecting kiln's own accept test and draw, and
 * kiln_verify_drafts is checked to emit the class's token at Philox points.
 * tests/test_verify.c holds the G-tests and the boundary counts; this file
 * holds the sums. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "shared/numerics.h"
#include "shared/philox.h"
#include "shared/speculative.h"

typedef unsigned __int128 u128;

#define MAXV 8
#define TWO64 ((u128)1 << 64)

/* ------------------------------------------------------------- bignum */

#define LIMBS 6 /* every product stays below 2^256 */

typedef struct bn {
    uint64_t l[LIMBS];
} bn;

static bn bn_of(u128 v)
{
    bn r;
    memset(&r, 0, sizeof r);
    r.l[0] = (uint64_t)v;
    r.l[1] = (uint64_t)(v >> 64);
    return r;
}

static bn bn_add(bn a, bn b)
{
    bn r;
    u128 carry = 0;
    for (int i = 0; i < LIMBS; ++i) {
        carry += (u128)a.l[i] + b.l[i];
        r.l[i] = (uint64_t)carry;
        carry >>= 64;
    }
    cr_assert(carry == 0, "bignum overflow");
    return r;
}

static int bn_cmp(bn a, bn b)
{
    for (int i = LIMBS - 1; i >= 0; --i)
        if (a.l[i] != b.l[i])
            return a.l[i] < b.l[i] ? -1 : 1;
    return 0;
}

/* a - b for a >= b */
static bn bn_sub(bn a, bn b)
{
    cr_assert(bn_cmp(a, b) >= 0);
    bn r;
    uint64_t borrow = 0;
    for (int i = 0; i < LIMBS; ++i) {
        const uint64_t d = a.l[i] - b.l[i];
        r.l[i] = d - borrow;
        borrow = (a.l[i] < b.l[i]) | (d < borrow);
    }
    return r;
}

static bn bn_mul(bn a, bn b)
{
    uint64_t t[2 * LIMBS] = { 0 };
    for (int i = 0; i < LIMBS; ++i) {
        u128 carry = 0;
        for (int j = 0; j < LIMBS; ++j) {
            carry += (u128)a.l[i] * b.l[j] + t[i + j];
            t[i + j] = (uint64_t)carry;
            carry >>= 64;
        }
        t[i + LIMBS] = (uint64_t)carry;
    }
    for (int i = LIMBS; i < 2 * LIMBS; ++i)
        cr_assert(t[i] == 0, "bignum overflow");
    bn r;
    memcpy(r.l, t, sizeof r.l);
    return r;
}

static bn bn_mul3(u128 a, u128 b, u128 c)
{
    return bn_mul(bn_mul(bn_of(a), bn_of(b)), bn_of(c));
}

static bn bn_absdiff(bn a, bn b)
{
    return bn_cmp(a, b) >= 0 ? bn_sub(a, b) : bn_sub(b, a);
}

/* ---------------------------------------------------------------- rows */

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

/* One target row and its section 5-6 masses: w[v] is 0 off the kept set. */
typedef struct row {
    int64_t V;
    float x[MAXV];
    float T, top_p, min_p;
    int32_t top_k;
    uint64_t w[MAXV], S;
    int32_t kept;
} row;

static void masses(row *r)
{
    const int64_t V = r->V;
    float m = r->x[0];
    for (int64_t v = 1; v < V; ++v)
        m = r->x[v] > m ? r->x[v] : m;
    const float c = kiln_exp2_factor(r->T);
    int64_t order[MAXV];
    for (int64_t v = 0; v < V; ++v)
        order[v] = v;
    for (int64_t i = 1; i < V; ++i) /* descending key, ties to the lower id */
        for (int64_t j = i; j > 0; --j) {
            const uint32_t ka = kiln_order_key(r->x[order[j - 1]]),
                           kb = kiln_order_key(r->x[order[j]]);
            if (ka > kb || (ka == kb && order[j - 1] < order[j]))
                break;
            const int64_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    const int64_t k = r->top_k <= 0 || r->top_k >= V ? V : r->top_k;
    uint64_t sk = 0;
    for (int64_t i = 0; i < k; ++i)
        sk += kiln_mass(r->x[order[i]], m, c);
    const uint64_t need = kiln_ceil_scale(r->top_p, sk);
    const uint64_t floor_w = kiln_ceil_scale(r->min_p, KILN_MASS_ONE);
    memset(r->w, 0, sizeof r->w);
    r->S = 0;
    r->kept = 0;
    uint64_t run = 0;
    for (int64_t i = 0; i < k && (i == 0 || run < need); ++i) {
        const uint64_t w = kiln_mass(r->x[order[i]], m, c);
        run += w;
        if (w > 0 && w >= floor_w) {
            r->w[order[i]] = w;
            r->S += w;
            ++r->kept;
        }
    }
    cr_assert(r->S >= KILN_MASS_ONE);
}

typedef struct lib {
    kiln_sampler *s;
    void *ws;
    size_t ws_size;
} lib;

static lib lib_create(void)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = 2;
    cfg.max_vocab = MAXV;
    cfg.max_history = 4;
    cfg.num_threads = 1;
    lib l = { NULL, NULL, 0 };
    cr_assert_eq(kiln_sampler_create(&cfg, &l.s), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(l.s, &l.ws_size), KILN_SUCCESS);
    l.ws = malloc(l.ws_size ? l.ws_size : 1);
    cr_assert_not_null(l.ws);
    return l;
}

static void lib_destroy(lib *l)
{
    kiln_sampler_destroy(l->s);
    free(l->ws);
}

static kiln_sampling_params row_params(const row *r, uint64_t seed, uint64_t offset)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = r->T;
    p.top_k_all = r->top_k;
    p.top_p_all = r->top_p;
    p.min_p_all = r->min_p;
    p.seed_all = seed;
    p.offset_all = offset;
    return p;
}

/* Section 10 ties the masses to the library: probs[v] = f32(w / S) on the
 * kept set (w and S below 2^53 convert exactly), 0 elsewhere. */
static void check_against_sample(lib *l, const row *r, float *probs)
{
    kiln_batch bt = kt_batch_f32(r->x, 1, r->V, 1);
    const kiln_sampling_params p = row_params(r, 1, 0);
    int32_t token, kept;
    uint8_t valid;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = &token;
    o.probs = probs;
    o.kept_counts = &kept;
    o.valid = &valid;
    cr_assert_eq(kiln_sample(l->s, &bt, &p, &o, l->ws, l->ws_size, NULL), KILN_SUCCESS, "%s",
                 kiln_last_error());
    cr_assert(valid == 1 && kept == r->kept, "kept %d, masses keep %d", kept, r->kept);
    for (int64_t v = 0; v < r->V; ++v) {
        const float want = (float)((double)r->w[v] * (1.0 / (double)r->S));
        cr_assert(memcmp(&want, &probs[v], 4) == 0, "probs[%lld] = %a, w / S = %a",
                  (long long)v, (double)probs[v], (double)want);
    }
}

static void random_row(row *r, uint64_t *st)
{
    r->V = 2 + (int64_t)(mix(st) % 7);
    const int ties = mix(st) % 4 == 0;
    for (int64_t v = 0; v < r->V; ++v) {
        const double x = 8.0 * unit(st) - 4.0;
        r->x[v] = ties ? (float)floor(x) * 0.5f : (float)x;
    }
    static const float temps[] = { 0.05f, 0.3f, 0.7f, 1.0f, 1.5f, 3.0f, 40.0f };
    r->T = mix(st) % 3 ? (float)(0.2 + 2.0 * unit(st)) : temps[mix(st) % 7];
    r->top_k = mix(st) % 3 ? 0 : (int32_t)(mix(st) % (uint64_t)(r->V + 1));
    r->top_p = mix(st) % 3 ? 1.0f : (float)(0.2 + 0.8 * unit(st));
    r->min_p = mix(st) % 3 ? 0.0f : (float)(0.3 * unit(st));
    masses(r);
}

/* --------------------------------------------------- outcome classes */

/* The a_0 outcomes that accept a draft with quantised mass Q and target
 * mass w: kiln's accept test is monotone in a, so they are [0, A), found by
 * bisection and held to the closed form min(2^64, ceil(w 2^64 / Q)). */
static u128 accept_count(uint64_t Q, uint64_t w)
{
    u128 A;
    if (kiln_draft_accepted(UINT64_MAX, Q, w)) {
        A = TWO64;
    } else {
        uint64_t lo = 0, hi = UINT64_MAX; /* first rejected a is in [lo, hi] */
        while (lo < hi) {
            const uint64_t mid = lo + (hi - lo) / 2;
            if (kiln_draft_accepted(mid, Q, w))
                lo = mid + 1;
            else
                hi = mid;
        }
        A = lo;
    }
    const u128 want = Q == 0 ? (w > 0 ? TWO64 : 0) : (((u128)w << 64) + Q - 1) / Q;
    cr_assert(A == (want < TWO64 ? want : TWO64), "Q %llu w %llu", (unsigned long long)Q,
              (unsigned long long)w);
    return A;
}

/* The e outcomes with floor(e * total / 2^64) < t, t <= total: [0, ceil(t
 * 2^64 / total)), by bisection of kiln_scale_draw. */
static u128 below(uint64_t t, uint64_t total)
{
    if (t >= total)
        return TWO64;
    uint64_t lo = 0, hi = UINT64_MAX;
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        if (kiln_scale_draw(mid, total) < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    cr_assert(lo == (((u128)t << 64) + total - 1) / total);
    return lo;
}

/* Section 19's rule at one draft d with quantised masses Q[]: a_0 < accept
 * emits d; otherwise e_0 < ends[v] (first such v) emits v, from the
 * residual max(0, w - Q) or, when that is empty, the ordinary draw. */
typedef struct rule {
    u128 accept;
    u128 ends[MAXV];
    uint64_t R;
} rule;

static rule rule_at(const row *r, const uint64_t *Q, int64_t d)
{
    rule u;
    u.accept = accept_count(Q[d], r->w[d]);
    uint64_t res[MAXV];
    u.R = 0;
    for (int64_t v = 0; v < r->V; ++v) {
        res[v] = kiln_residual_mass(r->w[v], Q[v]);
        u.R += res[v];
    }
    const uint64_t *weights = u.R ? res : r->w;
    const uint64_t total = u.R ? u.R : r->S;
    uint64_t run = 0;
    for (int64_t v = 0; v < r->V; ++v) {
        run += weights[v];
        u.ends[v] = below(run, total);
    }
    cr_assert(u.ends[r->V - 1] == TWO64);
    return u;
}

static int64_t rule_token(const rule *u, int64_t V, int64_t d, uint64_t a, uint64_t e)
{
    if (a < u->accept)
        return d;
    for (int64_t v = 0; v < V; ++v)
        if (e < u->ends[v])
            return v;
    return -1;
}

/* num[v] / (den 2^128): the probability that v is emitted first when the
 * draft is d with weight pi[d] / den (den = sum pi) and the rule at d uses
 * the quantised masses Q[d]. Every (d, a_0, e_0) emits one token, so the
 * numerators sum to den 2^128 exactly. */
static void emitted(const row *r, const uint64_t (*Q)[MAXV], const u128 *pi, bn *num, rule *rules)
{
    const int64_t V = r->V;
    bn den = bn_of(0), total = bn_of(0);
    for (int64_t v = 0; v < V; ++v)
        num[v] = bn_of(0);
    for (int64_t d = 0; d < V; ++d) {
        den = bn_add(den, bn_of(pi[d]));
        rules[d] = rule_at(r, Q[d], d);
        if (!pi[d])
            continue;
        const rule *u = &rules[d];
        num[d] = bn_add(num[d], bn_mul3(pi[d], u->accept, TWO64));
        u128 prev = 0;
        for (int64_t v = 0; v < V; ++v) {
            num[v] = bn_add(num[v], bn_mul3(pi[d], TWO64 - u->accept, u->ends[v] - prev));
            prev = u->ends[v];
        }
    }
    for (int64_t v = 0; v < V; ++v)
        total = bn_add(total, num[v]);
    cr_assert(bn_cmp(total, bn_mul(den, bn_mul3(TWO64, TWO64, 1))) == 0,
              "the outcome classes do not partition the outcomes");
}

/* |num / (den 2^128) - w / S| <= slack / S + 2^-63 in integers:
 * |num S - w den 2^128| <= slack den 2^128 + S den 2^65. Returns the
 * comparison of the two sides (<= 0: within). */
static int within(const row *r, const bn *num, bn den, int64_t v, u128 slack)
{
    const bn two128 = bn_mul3(TWO64, TWO64, 1);
    const bn lhs = bn_absdiff(bn_mul(num[v], bn_of(r->S)),
                              bn_mul(bn_mul(bn_of(r->w[v]), den), two128));
    const bn rhs = bn_add(bn_mul(bn_mul(bn_of(slack), den), two128),
                          bn_mul(bn_mul(bn_of(r->S), den), bn_of((u128)1 << 65)));
    return bn_cmp(lhs, rhs);
}

/* ------------------------------------------------------------ drafts */

/* A random f32 q with sum_v floor(q(v) S) = S exactly, the theorem's
 * hypothesis: tokens off the kept set get q too (drafts the target drops),
 * the largest q is set to the f32 whose floor(q S) comes closest to the mass
 * left, and the remainder (below 2^-24 S + 1 < 2^23, so an f32 reaches it
 * exactly) goes to another token. Returns 0 when no such q was found. */
static int exact_q(const row *r, uint64_t *st, float *q)
{
    const int64_t V = r->V;
    double raw[MAXV], sum = 0.0;
    for (int64_t v = 0; v < V; ++v) {
        raw[v] = unit(st) < 0.3 ? 0.0 : exp(4.0 * unit(st));
        sum += raw[v];
    }
    int64_t y = 0;
    for (int64_t v = 0; v < V; ++v) {
        q[v] = sum > 0.0 ? (float)(raw[v] / sum) : 0.0f;
        y = q[v] > q[y] ? v : y;
    }
    if (q[y] == 0.0f)
        q[y] = 1.0f;
    const int64_t z = (y + 1 + (int64_t)(mix(st) % (uint64_t)(V - 1))) % V;
    q[z] = 0.0f;
    uint64_t others = 0;
    for (int64_t v = 0; v < V; ++v)
        if (v != y)
            others += kiln_floor_scale(q[v], r->S);
    if (others > r->S)
        return 0;
    const uint64_t left = r->S - others;
    float qy = (float)((double)left / (double)r->S);
    while (qy > 0.0f && kiln_floor_scale(qy, r->S) > left)
        qy = nextafterf(qy, 0.0f);
    while (nextafterf(qy, 2.0f) <= 1.0f && kiln_floor_scale(nextafterf(qy, 2.0f), r->S) <= left)
        qy = nextafterf(qy, 2.0f);
    if (qy == 0.0f)
        return 0;
    q[y] = qy;
    const uint64_t rest = left - kiln_floor_scale(qy, r->S);
    float qz = (float)((double)rest / (double)r->S);
    while (kiln_floor_scale(qz, r->S) < rest)
        qz = nextafterf(qz, 2.0f);
    while (qz > 0.0f && kiln_floor_scale(nextafterf(qz, 0.0f), r->S) >= rest)
        qz = nextafterf(qz, 0.0f);
    if (kiln_floor_scale(qz, r->S) != rest)
        return 0;
    q[z] = qz;
    uint64_t total = 0;
    for (int64_t v = 0; v < V; ++v)
        total += kiln_floor_scale(q[v], r->S);
    cr_assert_eq(total, r->S);
    return 1;
}

/* kiln_verify_drafts with one request, one draft d (q or one-hot) and the
 * target row at both positions: the first emitted token. */
static int32_t library_first(lib *l, const row *r, int32_t d, const float *q, uint64_t seed,
                             uint64_t offset)
{
    float logits[2 * MAXV];
    memcpy(logits, r->x, (size_t)r->V * 4);
    memcpy(logits + r->V, r->x, (size_t)r->V * 4);
    kiln_batch bt = kt_batch_f32(logits, 1, r->V, 1);
    const kiln_sampling_params p = row_params(r, seed, offset);
    kiln_drafts dr = KILN_DRAFTS_INIT;
    dr.max_drafts = 1;
    dr.draft_ids = &d;
    dr.draft_probs = q;
    int32_t tokens[2];
    kiln_verify_outputs vo = KILN_VERIFY_OUTPUTS_INIT;
    vo.tokens = tokens;
    cr_assert_eq(kiln_verify_drafts(l->s, &bt, &p, &dr, &vo, l->ws, l->ws_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    return tokens[0];
}

/* kiln_verify_drafts emits, at random seeds and offsets, the token of the
 * class its (a_0, e_0) falls in (the draws cannot be injected, so the
 * points are Philox's). Returns how many points accepted the draft. */
static int check_classes(lib *l, const row *r, const rule *rules, const float *q,
                         const u128 *pi, uint64_t *st, int points)
{
    int accepted = 0;
    for (int i = 0; i < points; ++i) {
        int64_t d = (int64_t)(mix(st) % (uint64_t)r->V);
        for (int64_t j = 0; j < r->V && !pi[d]; ++j)
            d = (d + 1) % r->V;
        const uint64_t seed = mix(st), offset = mix(st) >> 4;
        const uint64_t a = kiln_philox_draw64(seed, KILN_ACCEPT_SUBSEQUENCE, offset);
        const uint64_t e = kiln_philox_draw64(seed, 0, offset);
        const int64_t want = rule_token(&rules[d], r->V, d, a, e);
        const int32_t got = library_first(l, r, (int32_t)d, q, seed, offset);
        cr_assert_eq(got, want, "draft %lld, a %llu e %llu: library %d, class %lld",
                     (long long)d, (unsigned long long)a, (unsigned long long)e, got,
                     (long long)want);
        accepted += a < rules[d].accept;
    }
    return accepted;
}

static void print_case(const row *r, const float *q)
{
    cr_log_error("V %lld T %a k %d p %a min_p %a S %llu", (long long)r->V, (double)r->T,
                 r->top_k, (double)r->top_p, (double)r->min_p, (unsigned long long)r->S);
    for (int64_t v = 0; v < r->V; ++v)
        cr_log_error("  x[%lld] = %a  w %llu  q %a", (long long)v, (double)r->x[v],
                     (unsigned long long)r->w[v], q ? (double)q[v] : 0.0);
}

/* ------------------------------------------------------------- tests */

/* q random (f32) with sum q~ = 1 exactly, the draft drawn from q~ = Q / S:
 * every first-token probability within 2^-63 of w / S. */
Test(verify_theorem, random_q_exact)
{
    lib l = lib_create();
    uint64_t st = 19;
    int cases = 0, off_kept = 0, partial = 0, accepted = 0, points = 0;
    for (int it = 0; it < 6000; ++it) {
        row r;
        random_row(&r, &st);
        float probs[MAXV], q[MAXV];
        check_against_sample(&l, &r, probs);
        if (!exact_q(&r, &st, q))
            continue;
        ++cases;
        uint64_t Q[MAXV][MAXV];
        u128 pi[MAXV];
        for (int64_t d = 0; d < r.V; ++d) {
            for (int64_t v = 0; v < r.V; ++v)
                Q[d][v] = kiln_floor_scale(q[v], r.S);
            pi[d] = Q[d][d];
            off_kept += pi[d] && !r.w[d];
            partial += pi[d] > r.w[d] && r.w[d];
        }
        bn num[MAXV];
        rule rules[MAXV];
        emitted(&r, (const uint64_t(*)[MAXV])Q, pi, num, rules);
        for (int64_t v = 0; v < r.V; ++v)
            if (within(&r, num, bn_of(r.S), v, 0) > 0) {
                print_case(&r, q);
                cr_assert_fail("case %d token %lld: emitted probability is not w / S within 2^-63",
                         it, (long long)v);
            }
        accepted += check_classes(&l, &r, rules, q, pi, &st, 4);
        points += 4;
    }
    cr_assert_gt(cases, 5900, "only %d cases met sum Q = S", cases);
    cr_assert_gt(off_kept, 4000, "drafts off the kept set: %d", off_kept);
    cr_assert_gt(partial, 3000, "drafts accepted only in part: %d", partial);
    cr_assert(accepted > points / 5 && accepted < points - points / 5, "%d of %d accepted",
              accepted, points);
    lib_destroy(&l);
}

/* One-hot drafts (no draft_probs): Q(d) = S, each d its own distribution
 * q~ = [d], kept or not. Also q = e_d given as draft_probs, the same rule. */
Test(verify_theorem, one_hot_exact)
{
    lib l = lib_create();
    uint64_t st = 23;
    int off_kept = 0;
    for (int it = 0; it < 2000; ++it) {
        row r;
        random_row(&r, &st);
        float probs[MAXV];
        check_against_sample(&l, &r, probs);
        for (int64_t d = 0; d < r.V; ++d) {
            uint64_t Q[MAXV][MAXV];
            u128 pi[MAXV];
            float q[MAXV];
            for (int64_t e = 0; e < r.V; ++e) {
                for (int64_t v = 0; v < r.V; ++v)
                    Q[e][v] = v == e ? r.S : 0;
                pi[e] = e == d;
                q[e] = e == d ? 1.0f : 0.0f;
            }
            off_kept += !r.w[d];
            bn num[MAXV];
            rule rules[MAXV];
            emitted(&r, (const uint64_t(*)[MAXV])Q, pi, num, rules);
            for (int64_t v = 0; v < r.V; ++v)
                if (within(&r, num, bn_of(1), v, 0) > 0) {
                    print_case(&r, NULL);
                    cr_assert_fail("case %d draft %lld token %lld: not w / S within 2^-63", it,
                             (long long)d, (long long)v);
                }
            check_classes(&l, &r, rules, NULL, pi, &st, 1);
            check_classes(&l, &r, rules, q, pi, &st, 1);
        }
    }
    cr_assert_gt(off_kept, 2000);
    lib_destroy(&l);
}

static double bn_double(bn a)
{
    double r = 0.0;
    for (int i = LIMBS - 1; i >= 0; --i)
        r = r * 0x1p64 + (double)a.l[i];
    return r;
}

/* The draft drawn from the f32 q itself, normalised (pi = q 2^80, exact for
 * q >= 2^-57): the doc's looser bound, V / S + |1 - sum q~| + 2^-63 in each
 * probability, for q = p (kiln_sample's probs, the draft model equal to the
 * target), random q with mass off the kept set, and q scaled off sum 1.
 * Up to the 2^-64 grain, P(v) - p(v) = delta(v) alpha(v) - c(v) sum_d delta(d) alpha(d),
 * delta = pi - Q / S, alpha the accept rates, c the residual's shares. */
Test(verify_theorem, drafts_from_q_within_bound)
{
    lib l = lib_create();
    uint64_t st = 29;
    double worst = 0.0;
    int p_rejects = 0;
    for (int it = 0; it < 12000; ++it) {
        row r;
        random_row(&r, &st);
        float probs[MAXV], q[MAXV];
        check_against_sample(&l, &r, probs);
        const int kind = it % 3;
        double raw[MAXV], sum = 0.0;
        for (int64_t v = 0; v < r.V; ++v) {
            raw[v] = v == 0 || unit(&st) > 0.3 ? exp(4.0 * unit(&st)) : 0.0;
            sum += raw[v];
        }
        const double scale = kind == 2 ? (mix(&st) % 2 ? 1.0 - 0x1p-10 : 1.0 + 0x1p-10) : 1.0;
        for (int64_t v = 0; v < r.V; ++v) {
            q[v] = kind == 0 ? probs[v] : (float)(raw[v] / sum * scale);
            q[v] = q[v] < 1.0f ? q[v] : 1.0f;
        }
        uint64_t Q[MAXV][MAXV], sq = 0;
        u128 pi[MAXV];
        for (int64_t d = 0; d < r.V; ++d) {
            for (int64_t v = 0; v < r.V; ++v)
                Q[d][v] = kiln_floor_scale(q[v], r.S);
            sq += Q[d][d];
            const double x = ldexp((double)q[d], 80);
            cr_assert(x == floor(x) && x < 0x1p100);
            pi[d] = (u128)x;
        }
        bn num[MAXV], den = bn_of(0);
        rule rules[MAXV];
        for (int64_t d = 0; d < r.V; ++d)
            den = bn_add(den, bn_of(pi[d]));
        emitted(&r, (const uint64_t(*)[MAXV])Q, pi, num, rules);
        /* kiln_sample's f32 probs can round above w / S, so q = p gives
         * Q(d) > w(d) and a rejection, but with probability below 2^-24 */
        for (int64_t d = 0; kind == 0 && d < r.V; ++d)
            if (pi[d] && rules[d].accept < TWO64) {
                ++p_rejects;
                cr_assert(TWO64 - rules[d].accept <= ((u128)1 << 40) + 1);
            }
        const u128 slack = (u128)r.V + (sq > r.S ? sq - r.S : r.S - sq);
        for (int64_t v = 0; v < r.V; ++v) {
            if (within(&r, num, den, v, slack) > 0) {
                print_case(&r, q);
                cr_assert_fail("case %d (kind %d) token %lld: outside V / S + |1 - sum q~| + "
                               "2^-63",
                               it, kind, (long long)v);
            }
            const bn two128 = bn_mul3(TWO64, TWO64, 1);
            const double dev = bn_double(bn_absdiff(bn_mul(num[v], bn_of(r.S)),
                                                    bn_mul(bn_mul(bn_of(r.w[v]), den), two128))),
                         bound = bn_double(bn_add(bn_mul(bn_mul(bn_of(slack), den), two128),
                                                  bn_mul(bn_mul(bn_of(r.S), den),
                                                         bn_of((u128)1 << 65))));
            worst = dev / bound > worst ? dev / bound : worst;
        }
        check_classes(&l, &r, rules, q, pi, &st, 2);
    }
    /* the bound is nearly tight (q = p comes within 1e-4 of it), so this is
     * no vacuous check */
    cr_assert(worst > 0.99 && worst <= 1.0, "largest deviation / bound: %.9f", worst);
    cr_assert_gt(p_rejects, 2000);
    lib_destroy(&l);
}
