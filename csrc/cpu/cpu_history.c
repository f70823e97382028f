/* Penalties from a row's history: each distinct token once, by its count of
 * generated occurrences. The history's entries are sorted by token (a radix
 * sort of at most 2 (len + more) words), so a call touches no V-sized state;
 * only a history longer than half the vocabulary takes the marks array,
 * cleared here, since it then costs no more than the sort. */
#include <string.h>

#include "cpu_backend.h"

static void penalise_by_marks(float *x, int64_t V, uint32_t *marks, const int32_t *ids,
                              int64_t len, int64_t prompt_len, const int32_t *more,
                              int64_t more_len, const kiln_row_params *r)
{
    memset(marks, 0, (size_t)V * sizeof marks[0]);
    /* marks[v] = 1 + generated count of v; each distinct v is penalised once
     * and its mark cleared */
    for (int64_t i = 0; i < len; ++i) {
        uint32_t v = (uint32_t)ids[i];
        if (!marks[v])
            marks[v] = 1;
        if (i >= prompt_len)
            marks[v] += 1;
    }
    for (int64_t i = 0; i < more_len; ++i) {
        uint32_t v = (uint32_t)more[i];
        marks[v] += marks[v] ? 1 : 2;
    }
    for (int pass = 0; pass < 2; ++pass) {
        const int32_t *list = pass ? more : ids;
        const int64_t n = pass ? more_len : len;
        for (int64_t i = 0; i < n; ++i) {
            uint32_t v = (uint32_t)list[i];
            if (marks[v]) {
                x[v] = kiln_penalize(x[v], 1, marks[v] - 1, r->repetition, r->presence,
                                     r->frequency);
                marks[v] = 0;
            }
        }
    }
}

void kiln_cpu_apply_history(float *x, int64_t V, uint32_t *work, const int32_t *ids, int64_t len,
                            int64_t prompt_len, const int32_t *more, int64_t more_len,
                            const kiln_row_params *r)
{
    const int64_t total = len + more_len;
    if (total == 0)
        return;
    if (2 * total > V) {
        penalise_by_marks(x, V, work, ids, len, prompt_len, more, more_len, r);
        return;
    }
    /* entry = token << 1 | generated (tokens < V <= 2^31) */
    uint32_t *e = work, *tmp = work + total;
    for (int64_t i = 0; i < len; ++i)
        e[i] = (uint32_t)ids[i] << 1 | (i >= prompt_len);
    for (int64_t i = 0; i < more_len; ++i)
        e[len + i] = (uint32_t)more[i] << 1 | 1u;
    e = kiln_cpu_sort_u32(e, tmp, (size_t)total);
    for (int64_t i = 0; i < total;) {
        const uint32_t v = e[i] >> 1;
        uint32_t generated = 0;
        for (; i < total && e[i] >> 1 == v; ++i)
            generated += e[i] & 1u;
        x[v] = kiln_penalize(x[v], 1, generated, r->repetition, r->presence, r->frequency);
    }
}
