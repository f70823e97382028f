#include "cpu_backend.h"

void kiln_cpu_apply_history(float *x, uint32_t *marks, const int32_t *ids, int64_t len,
                            int64_t prompt_len, const kiln_row_params *r)
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
    for (int64_t i = 0; i < len; ++i) {
        uint32_t v = (uint32_t)ids[i];
        if (marks[v]) {
            x[v] = kiln_penalize(x[v], 1, marks[v] - 1, r->repetition, r->presence, r->frequency);
            marks[v] = 0;
        }
    }
}
