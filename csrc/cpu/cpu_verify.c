/* kiln_verify_drafts on the CPU: docs/semantics.md section 19. Requests run
 * in parallel into the workspace; only when no request met a bad draft
 * probability are the results copied to the outputs, so nothing is written
 * on error. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.h"
#include "cpu_kept.h"
#include "fp_mode.h"
#include "../error.h"
#include "../shared/philox.h"
#include "../shared/speculative.h"

static size_t round_up(size_t v)
{
    return kiln_round_up_align(v);
}

/* A bad draft-probability entry met at a rejection. */
typedef struct verify_fault {
    int32_t bad; /* 1 when set */
    int32_t position, token;
    float value;
} verify_fault;

typedef struct verify_area {
    int32_t *tokens;   /* [B * (K + 1)] */
    float *logprobs;   /* [B * (K + 1)] */
    int32_t *accepted; /* [B] */
    uint8_t *valid;    /* [B] */
    verify_fault *faults; /* [B] */
} verify_area;

size_t kiln_cpu_verify_bytes(const kiln_config *cfg)
{
    const size_t rows = (size_t)cfg->max_batch;
    return 3 * round_up(rows * 4) + round_up(rows) + round_up(rows * sizeof(verify_fault));
}

static verify_area area_of(const kiln_sampler *s, const kiln_call *c)
{
    const size_t rows = (size_t)s->config.max_batch;
    char *p = kiln_cpu_verify_area(s, c);
    verify_area a;
    a.tokens = (int32_t *)p;
    p += round_up(rows * 4);
    a.logprobs = (float *)p;
    p += round_up(rows * 4);
    a.accepted = (int32_t *)p;
    p += round_up(rows * 4);
    a.valid = (uint8_t *)p;
    p += round_up(rows);
    a.faults = (verify_fault *)p;
    return a;
}

static float quiet_nan(void)
{
    return kiln_f32_from_bits(0x7FC00000u);
}

static float logprob_of(const kiln_cpu_dist *d, int64_t t)
{
    return d->status == KILN_CPU_ROW_GREEDY
               ? 0.0f
               : kiln_logprob(kiln_cpu_row_at(&d->row, t), d->m, d->r.temperature, d->log_s);
}

/* The correction token at a rejected position: the residual max(0, w - Q)
 * over the kept tokens, or the ordinary draw when it is empty. Returns -1
 * when the draft distribution holds a value that is not a probability. */
static int64_t correction(const kiln_cpu_dist *d, const float *q, int64_t V, int64_t draft,
                          uint64_t e, uint64_t *prefix, verify_fault *fault, int32_t position)
{
    if (q)
        for (int64_t j = 0; j < V; ++j)
            if (!kiln_is_probability(q[j])) {
                fault->bad = 1;
                fault->position = position;
                fault->token = (int32_t)j;
                fault->value = q[j];
                return -1;
            }
    uint64_t run = 0, prev = 0;
    for (int64_t j = 0; j < d->n; ++j) {
        const int64_t id = d->ids ? (int64_t)d->ids[j] : j;
        const uint64_t w = d->prefix[j] - prev;
        prev = d->prefix[j];
        const uint64_t qm = q ? kiln_draft_mass(q[id], d->total) : id == draft ? d->total : 0;
        run += kiln_residual_mass(w, qm);
        prefix[j] = run;
    }
    if (run == 0)
        return kiln_cpu_draw(d, e);
    const int64_t at = kiln_cpu_upper_bound(prefix, d->n, kiln_scale_draw(e, run));
    return d->ids ? (int64_t)d->ids[at] : at;
}

static void verify_request(const kiln_sampler *s, const kiln_call *c, int64_t b,
                           kiln_cpu_scratch *sc, const verify_area *a)
{
    const kiln_batch *bt = &c->batch;
    const kiln_drafts *dr = &c->drafts;
    const int64_t V = bt->vocab_size, K = dr->max_drafts;
    const int64_t kb = dr->num_drafts ? dr->num_drafts[b] : K;
    const int32_t *drafts = dr->draft_ids ? dr->draft_ids + b * K : NULL;
    const kiln_row_params r = kiln_row_params_at(&c->params, b);
    int32_t *tokens = a->tokens + b * (K + 1);
    float *logprobs = a->logprobs + b * (K + 1);
    for (int64_t i = 0; i <= K; ++i) {
        tokens[i] = -1;
        logprobs[i] = quiet_nan();
    }
    a->accepted[b] = 0;
    a->valid[b] = 0;
    a->faults[b].bad = 0;

    kiln_cpu_row_input in = kiln_cpu_input_of(c, b);
    const size_t esize = bt->dtype == KILN_DTYPE_F32 ? 4 : 2;
    for (int64_t i = 0; i <= kb; ++i) {
        const int64_t row = b * (K + 1) + i;
        in.logits = (const char *)bt->logits + (size_t)(row * bt->row_stride) * esize;
        in.mask = bt->allowed_mask ? bt->allowed_mask + row * bt->allowed_mask_stride : NULL;
        in.drafts = drafts;
        in.drafts_len = i;
        kiln_cpu_dist d;
        kiln_cpu_distribution(s, c, &in, r, 0, sc, &d);
        if (d.status == KILN_CPU_ROW_INVALID) {
            for (int64_t j = 0; j <= K; ++j) {
                tokens[j] = -1;
                logprobs[j] = quiet_nan();
            }
            a->accepted[b] = 0;
            return;
        }
        const uint64_t e = kiln_philox_draw64(r.seed, 0, r.offset + (uint64_t)i);
        if (i == kb) { /* every draft accepted: the bonus token */
            const int64_t t = kiln_cpu_draw(&d, e);
            tokens[i] = (int32_t)t;
            logprobs[i] = logprob_of(&d, t);
            break;
        }
        const int64_t draft = drafts[i];
        const float *q = dr->draft_probs ? dr->draft_probs + (b * K + i) * dr->draft_probs_stride
                                         : NULL;
        int accept;
        if (d.status == KILN_CPU_ROW_GREEDY) {
            accept = draft == d.argmax;
        } else {
            const uint64_t w = kiln_cpu_kept_mass(&d, draft);
            const uint64_t qm = q ? kiln_draft_mass(q[draft], d.total) : d.total;
            const uint64_t u =
                kiln_philox_draw64(r.seed, KILN_ACCEPT_SUBSEQUENCE, r.offset + (uint64_t)i);
            accept = kiln_draft_accepted(u, qm, w);
        }
        if (accept) {
            tokens[i] = (int32_t)draft;
            logprobs[i] = logprob_of(&d, draft);
            a->accepted[b] = (int32_t)(i + 1);
            continue;
        }
        if (d.status != KILN_CPU_ROW_GREEDY)
            kiln_cpu_dist_expand(&d, 1, sc); /* the residual walks every kept mass */
        const int64_t t = d.status == KILN_CPU_ROW_GREEDY
                              ? d.argmax
                              : correction(&d, q, V, draft, e, sc->tmp[0].w, &a->faults[b],
                                           (int32_t)i);
        if (t < 0)
            return;
        tokens[i] = (int32_t)t;
        logprobs[i] = logprob_of(&d, t);
        break;
    }
    a->valid[b] = 1;
}

kiln_status kiln_cpu_verify(const kiln_sampler *s, const kiln_call *c)
{
    const int64_t B = c->batch.num_rows, K = c->drafts.max_drafts;
    const verify_area a = area_of(s, c);
#ifdef _OPENMP
#pragma omp parallel num_threads(s->config.num_threads)
#endif
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        const kiln_fp_mode fp = kiln_fp_mode_enter();
        kiln_cpu_scratch sc = kiln_cpu_scratch_for(s, c, t);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t b = 0; b < B; ++b)
            verify_request(s, c, b, &sc, &a);
        kiln_fp_mode_leave(fp);
    }
    for (int64_t b = 0; b < B; ++b)
        if (a.faults[b].bad)
            return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                             "drafts.draft_probs[request %lld, position %d, token %d] = %.9g is "
                             "not a probability in [0, 1] (read at the first rejection)",
                             (long long)b, (int)a.faults[b].position, (int)a.faults[b].token,
                             (double)a.faults[b].value);
    const kiln_verify_outputs *o = &c->verify;
    const size_t cells = (size_t)(B * (K + 1));
    memcpy(o->tokens, a.tokens, cells * 4);
    if (o->logprobs)
        memcpy(o->logprobs, a.logprobs, cells * 4);
    if (o->num_accepted)
        memcpy(o->num_accepted, a.accepted, (size_t)B * 4);
    if (o->valid)
        memcpy(o->valid, a.valid, (size_t)B);
    return KILN_SUCCESS;
}
