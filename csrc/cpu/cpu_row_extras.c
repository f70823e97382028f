/* The optional per-row outputs beyond draws and probabilities:
 * docs/semantics.md sections 15 (entropy), 16 (the temperature a row was
 * sampled at) and 17 (top-N log-probabilities and raw ranks). */
#include <string.h>

#include "cpu_backend.h"
#include "../shared/entropy.h"

static float quiet_nan(void)
{
    return kiln_f32_from_bits(0x7FC00000u);
}

void kiln_cpu_write_invalid_extras(const kiln_call *c, int64_t b)
{
    const kiln_outputs *o = &c->outputs;
    const int64_t N = o->num_top_logprobs, n = c->batch.num_samples;
    for (int64_t i = 0; i < N; ++i) {
        if (o->raw_top_ids)
            o->raw_top_ids[b * N + i] = -1;
        if (o->raw_top_logprobs)
            o->raw_top_logprobs[b * N + i] = quiet_nan();
        if (o->final_top_ids)
            o->final_top_ids[b * N + i] = -1;
        if (o->final_top_logprobs)
            o->final_top_logprobs[b * N + i] = quiet_nan();
    }
    if (o->raw_ranks)
        for (int64_t j = 0; j < n; ++j)
            o->raw_ranks[b * n + j] = 0;
    if (o->entropy)
        o->entropy[b] = quiet_nan();
    if (o->raw_entropy)
        o->raw_entropy[b] = quiet_nan();
    if (o->temperatures)
        o->temperatures[b] = quiet_nan();
    if (c->is_score)
        for (int32_t j = 0; j < c->num_targets; ++j) {
            if (c->target_logprobs)
                c->target_logprobs[b * c->num_targets + j] = quiet_nan();
            if (c->target_ranks)
                c->target_ranks[b * c->num_targets + j] = 0;
        }
}

void kiln_cpu_write_extras(const kiln_call *c, int64_t b, const kiln_cpu_row_state *st,
                           kiln_cpu_work *wk)
{
    const kiln_outputs *o = &c->outputs;
    const int64_t V = c->batch.vocab_size, n = c->batch.num_samples;
    const int64_t N = o->num_top_logprobs;
    const float neg_inf = -__builtin_inff();

    if (o->temperatures)
        o->temperatures[b] = st->temperature;
    if (o->raw_entropy)
        o->raw_entropy[b] = kiln_f64_to_f32(kiln_entropy_nats(st->raw->mass, st->raw->exponent));
    if (o->entropy) {
        float h = 0.0f;
        if (st->temperature != 0.0f) {
            /* before wk is touched: the kept set may live in it */
            const kiln_cpu_entropy_sums k =
                st->final ? *st->final
                          : kiln_cpu_entropy_prefix(st->x, st->kept_ids, st->kept_prefix,
                                                    st->kept_n, st->max, st->exp2_factor);
            h = kiln_f64_to_f32(kiln_entropy_nats(k.mass, k.exponent));
        }
        o->entropy[b] = h;
    }

    if (N > 0 && (o->raw_top_ids || o->raw_top_logprobs || o->final_top_ids ||
                  o->final_top_logprobs)) {
        const size_t have =
            kiln_cpu_first_in_order(st->x, V, (size_t)N, wk->out_ids, wk->cand, wk->tmp_a, wk->tmp_b);
        const double log_s1 = st->log_s1;
        const int64_t kept = st->temperature != 0.0f ? st->kept_count : 1;
        for (int64_t i = 0; i < N; ++i) {
            const int in_row = i < (int64_t)have;
            const uint32_t t = in_row ? wk->out_ids[i] : 0;
            if (o->raw_top_ids)
                o->raw_top_ids[b * N + i] = in_row ? (int32_t)t : -1;
            if (o->raw_top_logprobs)
                o->raw_top_logprobs[b * N + i] =
                    in_row ? kiln_logprob(st->x[t], st->max, 1.0f, log_s1) : neg_inf;
            /* the kept set is a canonical prefix: the first kept tokens are
             * the first tokens */
            const int is_kept = in_row && i < kept;
            if (o->final_top_ids)
                o->final_top_ids[b * N + i] = is_kept ? (int32_t)t : -1;
            if (o->final_top_logprobs)
                o->final_top_logprobs[b * N + i] =
                    !is_kept ? neg_inf
                    : st->temperature == 0.0f
                        ? 0.0f
                        : kiln_logprob(st->x[t], st->max, st->temperature, st->log_s);
        }
    }

    if (o->raw_ranks) {
        if (st->temperature == 0.0f)
            for (int64_t j = 0; j < n; ++j)
                o->raw_ranks[b * n + j] = 1;
        else
            kiln_cpu_ranks(st->x, V, o->tokens + b * n, n, o->raw_ranks + b * n, wk->cand,
                           wk->tmp_a->w);
    }
}
