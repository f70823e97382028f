#include "cpu_backend.h"

void kiln_cpu_apply_history(float *x, uint32_t *marks, const int32_t *ids, int64_t len,
                            int64_t prompt_len, const int32_t *more, int64_t more_len,
                            const kiln_row_params *r)
{
    /* marks[v] = 1 + generated count of v, then each distinct v is penalised
     * once and its mark cleared, which also restores the all-zero state. */
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
