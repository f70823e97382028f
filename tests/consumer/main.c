/* A program outside kiln's tree, built against the installed package (CMake
 * find_package and pkg-config; see CMakeLists.txt and run.sh). It samples a
 * few rows on the CPU and checks answers a person can work out by hand.
 * Exit status 0 only if every check passed. */
#include <stdio.h>
#include <string.h>

#include <kiln/kiln.h>

#define ROWS 3
#define V 9
#define N 64

/* "Every effort moves you" -> next token; the most likely is "forward" (3). */
static const float effort[V] = { 4.51f, 0.89f, -1.90f, 6.75f, 1.63f, -1.62f, -1.89f, 6.28f, 1.79f };

static int failures;

static void check(int ok, const char *what)
{
    printf("%s  %s\n", ok ? "ok  " : "FAIL", what);
    failures += !ok;
}

int main(void)
{
    check(kiln_version_number() == KILN_VERSION_NUMBER, "library version matches the header");
    check(strcmp(kiln_version_string(), KILN_VERSION_STRING) == 0, "version string matches");

    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = ROWS;
    cfg.max_vocab = V;
    cfg.max_samples = N;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&cfg, &s) != KILN_SUCCESS) {
        fprintf(stderr, "kiln_sampler_create: %s\n", kiln_last_error());
        return 1;
    }
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    static unsigned char ws[1 << 20];
    check(ws_bytes <= sizeof ws, "workspace fits");

    float logits[ROWS][V];
    for (int r = 0; r < ROWS; ++r)
        memcpy(logits[r], effort, sizeof effort);

    /* Row 0 greedy, row 1 top-k 3, row 2 top-p 0.5 (forward alone holds 57%). */
    const float temperature[ROWS] = { 0.0f, 1.0f, 1.0f };
    const int32_t top_k[ROWS] = { 0, 3, 0 };
    const float top_p[ROWS] = { 1.0f, 1.0f, 0.5f };
    kiln_batch batch = KILN_BATCH_INIT;
    batch.logits = logits;
    batch.num_rows = ROWS;
    batch.vocab_size = V;
    batch.num_samples = N;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed_all = 42;
    int32_t tokens[ROWS][N];
    int32_t kept[ROWS];
    uint8_t valid[ROWS];
    kiln_outputs out = KILN_OUTPUTS_INIT;
    out.tokens = &tokens[0][0];
    out.kept_counts = kept;
    out.valid = valid;

    kiln_status st = kiln_sample(s, &batch, &p, &out, ws, ws_bytes, NULL);
    check(st == KILN_SUCCESS, "kiln_sample succeeds");
    if (st != KILN_SUCCESS)
        fprintf(stderr, "  %s\n", kiln_last_error());

    int greedy = 1, topk = 1, topp = 1;
    for (int j = 0; j < N; ++j) {
        greedy &= tokens[0][j] == 3;
        topk &= tokens[1][j] == 0 || tokens[1][j] == 3 || tokens[1][j] == 7;
        topp &= tokens[2][j] == 3;
    }
    check(greedy && kept[0] == 1, "greedy picks token 3 (\"forward\")");
    check(topk && kept[1] == 3, "top-k 3 draws only forward, toward, closer");
    check(topp && kept[2] == 1, "top-p 0.5 keeps forward alone");
    check(valid[0] && valid[1] && valid[2], "every row valid");

    /* Bad input: a status and a message naming the field and the row. */
    const float bad_top_p[ROWS] = { 1.0f, 1.5f, 1.0f };
    p.top_p = bad_top_p;
    st = kiln_sample(s, &batch, &p, &out, ws, ws_bytes, NULL);
    check(st == KILN_ERROR_INVALID_PARAMETER && strstr(kiln_last_error(), "top_p[1]") != NULL,
          "top_p[1] = 1.5 is rejected with a message naming it");

    kiln_sampler_destroy(s);
    printf("%s\n", failures ? "consumer: FAILED" : "consumer: all checks passed");
    return failures ? 1 : 0;
}
