/* kiln_score on the CPU: docs/semantics.md section 18. The raw distribution
 * of a valid row, then each target's log-probability and rank, the raw
 * top-N and the raw entropy, written through the stages kiln_sample uses. */
#include "cpu_kept.h"
#include "../shared/entropy.h"

void kiln_cpu_score_row(const kiln_call *c, int64_t b, const float *x, float m, kiln_cpu_work *wk)
{
    const int64_t V = c->batch.vocab_size, K = c->num_targets;
    const kiln_outputs *o = &c->outputs;
    const kiln_cpu_row row = { x, 0, V };
    const kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(m, KILN_LOG2E_F);
    kiln_cpu_entropy_sums raw;
    if (o->raw_entropy) {
        raw = kiln_cpu_mass_entropy(&row, &mc, NULL);
    } else {
        raw.mass = kiln_cpu_mass_chunks(&row, &mc, NULL, NULL);
        raw.count = 0;
        raw.exponent = kiln_u128_zero();
    }
    const double log_s1 = kiln_log_mass(raw.mass);
    const int32_t *targets = c->targets + b * K;
    if (c->target_logprobs)
        for (int64_t j = 0; j < K; ++j)
            c->target_logprobs[b * K + j] =
                targets[j] < 0 ? kiln_f32_from_bits(0x7FC00000u)
                               : kiln_logprob(x[targets[j]], m, 1.0f, log_s1);
    if (c->target_ranks && K > 0) {
        /* the -1 padding is ranked as token 0 and then zeroed */
        int32_t *ranks = c->target_ranks + b * K;
        int32_t *ids = (int32_t *)wk->out_ids;
        for (int64_t at = 0; at < K; at += V) {
            const int64_t len = K - at < V ? K - at : V;
            for (int64_t j = 0; j < len; ++j)
                ids[j] = targets[at + j] < 0 ? 0 : targets[at + j];
            kiln_cpu_ranks(x, V, ids, len, ranks + at, wk->cand, wk->tmp_a->w);
        }
        for (int64_t j = 0; j < K; ++j)
            if (targets[j] < 0)
                ranks[j] = 0;
    }
    kiln_cpu_row_state st = { x, m, 1.0f, KILN_LOG2E_F, -1, NULL, NULL, 0, 0, 0.0, &raw, NULL,
                              log_s1 };
    kiln_outputs only = *o;
    kiln_call sub = *c;
    /* section 17's raw outputs and the raw entropy; nothing of the final
     * distribution, which kiln_score does not have */
    only.final_top_ids = NULL;
    only.final_top_logprobs = NULL;
    only.raw_ranks = NULL;
    only.entropy = NULL;
    only.temperatures = NULL;
    sub.outputs = only;
    kiln_cpu_write_extras(&sub, b, &st, wk);
    if (o->valid)
        o->valid[b] = 1;
}
