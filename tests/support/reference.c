#include "reference.h"

#include <math.h>
#include <stdlib.h>

typedef struct ranked {
    double x;
    int64_t id;
} ranked;

static int by_logit_desc(const void *a, const void *b)
{
    const ranked *p = a, *q = b;
    if (p->x != q->x)
        return p->x > q->x ? -1 : 1;
    return p->id < q->id ? -1 : (p->id > q->id);
}

kt_ref_result kt_reference_distribution(const float *logits, int64_t V, kt_ref_params prm,
                                        double *probs)
{
    kt_ref_result res = { 0, INFINITY, INFINITY };
    ranked *r = malloc((size_t)V * sizeof *r);
    for (int64_t i = 0; i < V; ++i) {
        r[i].x = (double)logits[i];
        r[i].id = i;
        probs[i] = 0.0;
    }
    qsort(r, (size_t)V, sizeof *r, by_logit_desc);
    if (prm.temperature == 0.0) {
        probs[r[0].id] = 1.0;
        res.kept = 1;
        free(r);
        return res;
    }
    /* softmax of x / T over all tokens, in sorted order */
    double *pr = malloc((size_t)V * sizeof *pr);
    double top = r[0].x / prm.temperature, sum = 0.0;
    for (int64_t i = 0; i < V; ++i) {
        pr[i] = exp(r[i].x / prm.temperature - top);
        sum += pr[i];
    }
    for (int64_t i = 0; i < V; ++i)
        pr[i] /= sum;

    int64_t len = (prm.top_k <= 0 || prm.top_k >= V) ? V : prm.top_k;
    if (prm.top_p < 1.0) {
        double mass = 0.0;
        for (int64_t i = 0; i < len; ++i)
            mass += pr[i];
        double cum = 0.0;
        int64_t i = 0;
        while (i < len) {
            double before = cum;
            cum += pr[i++];
            double gap = fabs(before / mass - prm.top_p);
            if (gap < res.top_p_margin)
                res.top_p_margin = gap;
            if (cum / mass >= prm.top_p) {
                double g2 = fabs(cum / mass - prm.top_p);
                if (g2 < res.top_p_margin)
                    res.top_p_margin = g2;
                break;
            }
        }
        len = i;
    }
    double kept_mass = 0.0;
    for (int64_t i = 0; i < len; ++i) {
        double ratio = pr[i] / pr[0];
        if (prm.min_p > 0.0) {
            double gap = fabs(ratio - prm.min_p);
            if (gap < res.min_p_margin)
                res.min_p_margin = gap;
        }
        if (ratio >= prm.min_p && pr[i] > 0.0) {
            probs[r[i].id] = pr[i];
            kept_mass += pr[i];
            res.kept++;
        }
    }
    for (int64_t i = 0; i < V; ++i)
        probs[i] /= kept_mass;
    free(pr);
    free(r);
    return res;
}

void kt_reference_penalize(double *x, int64_t V, const int32_t *ids, int64_t len,
                           int64_t prompt_len, double repetition, double presence,
                           double frequency)
{
    int64_t *generated = calloc((size_t)V, sizeof *generated);
    char *seen = calloc((size_t)V, 1);
    for (int64_t i = 0; i < len; ++i) {
        seen[ids[i]] = 1;
        if (i >= prompt_len)
            generated[ids[i]]++;
    }
    for (int64_t v = 0; v < V; ++v) {
        if (seen[v])
            x[v] = x[v] > 0 ? x[v] / repetition : x[v] * repetition;
        if (generated[v] > 0)
            x[v] = x[v] - frequency * (double)generated[v] - presence;
    }
    free(generated);
    free(seen);
}
