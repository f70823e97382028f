/* kiln-decode-loop: text from a word bigram model, one kiln call per step.
 *
 * A bigram model of ngram/coriolanus.txt (add-k smoothing, logits =
 * log(count + k)) gives the next-word logits; every step samples all the
 * scenarios at once, one row each, with per-row temperature, top-p,
 * penalties and seeds, and each row's history for the penalties. It shows
 * what the textbook says: greedy falls into ", and, and, and"; temperature
 * and top-p give varied text; a repetition penalty breaks the loop (for a
 * while), a frequency penalty for good; a fixed seed gives the same text
 * again, and the same on the GPU as on the CPU when one is present.
 * decode_loop.py is the same program in Python and prints the same text.
 *
 *   kiln-decode-loop [--cpu] [--steps N] [TEXT]
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

#ifdef KILN_DECODE_CUDA
#include <cuda_runtime_api.h>
#endif

#ifndef KILN_NGRAM_TEXT
#define KILN_NGRAM_TEXT "examples/ngram/coriolanus.txt"
#endif

#define SMOOTHING 0.001 /* add-k */
#define PROMPT_LEN 2
static const char *const prompt_words[PROMPT_LEN] = { "the", "people" };
static const char punct[] = ".,;:!?";

typedef struct scenario {
    const char *name;
    float temperature, top_p, repetition, frequency;
    uint64_t seed;
} scenario;

static const scenario scenarios[] = {
    { "greedy (T = 0)", 0.0f, 1.0f, 1.0f, 0.0f, 0 },
    { "T = 1.0, seed 1", 1.0f, 1.0f, 1.0f, 0.0f, 1 },
    { "T = 0.7, top-p = 0.9, seed 1", 0.7f, 0.9f, 1.0f, 0.0f, 1 },
    { "greedy + repetition penalty 1.3 (once per word used)", 0.0f, 1.0f, 1.3f, 0.0f, 0 },
    { "greedy + frequency penalty 0.5 (per use)", 0.0f, 1.0f, 1.0f, 0.5f, 0 },
    { "T = 0.7, top-p = 0.9, repetition penalty 1.3, seed 7", 0.7f, 0.9f, 1.3f, 0.0f, 7 },
    { "the same, seed 7 again", 0.7f, 0.9f, 1.3f, 0.0f, 7 },
};
#define ROWS ((int)(sizeof scenarios / sizeof scenarios[0]))

static void die(const char *what)
{
    fprintf(stderr, "kiln-decode-loop: %s\n", what);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

/* ------------------------------------------------------------ the model */

typedef struct model {
    char **words; /* id -> word, in order of first appearance */
    int vocab;
    int *counts;  /* [vocab][vocab] bigram counts */
    float *table; /* table[c] = f32(log(c + k)) */
} model;

static int word_id(model *m, const char *w, int add)
{
    for (int i = 0; i < m->vocab; ++i)
        if (strcmp(m->words[i], w) == 0)
            return i;
    if (!add)
        return -1;
    m->words = realloc(m->words, (size_t)(m->vocab + 1) * sizeof *m->words);
    if (!m->words || !(m->words[m->vocab] = malloc(strlen(w) + 1)))
        die("out of memory");
    strcpy(m->words[m->vocab], w);
    return m->vocab++;
}

/* Lower-case words ([a-z']+) and the marks .,;:!? as tokens; speaker names
 * (a line ending in ':' after a blank line) are skipped. */
static int *tokenize(model *m, char *text, int *count)
{
    size_t cap = 1024, n = 0;
    int *ids = xcalloc(cap, sizeof *ids);
    int prev_blank = 1;
    for (char *line = text; line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        while (*line == ' ' || *line == '\t' || *line == '\r')
            ++line;
        size_t len = strlen(line);
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len) {
            prev_blank = 1;
        } else {
            int speaker = line[len - 1] == ':' && prev_blank;
            prev_blank = 0;
            char word[256];
            size_t wl = 0;
            for (size_t i = 0; !speaker && i <= len; ++i) {
                char ch = (char)tolower((unsigned char)line[i]); /* line[len] ends the last word */
                if ((ch >= 'a' && ch <= 'z') || ch == '\'') {
                    if (wl + 1 < sizeof word)
                        word[wl++] = ch;
                    continue;
                }
                word[wl] = '\0';
                int letters = (int)strspn(word, "'") < (int)wl;
                const char *emit[2] = { letters ? word : NULL, NULL };
                char mark[2] = { ch, '\0' };
                if (ch && strchr(punct, ch))
                    emit[1] = mark;
                for (int e = 0; e < 2; ++e) {
                    if (!emit[e])
                        continue;
                    if (n == cap && !(ids = realloc(ids, (cap *= 2) * sizeof *ids)))
                        die("out of memory");
                    ids[n++] = word_id(m, emit[e], 1);
                }
                wl = 0;
            }
        }
        line = next;
    }
    *count = (int)n;
    return ids;
}

static void build(model *m, const int *ids, int n)
{
    size_t v = (size_t)m->vocab;
    m->counts = xcalloc(v * v, sizeof *m->counts);
    int max = 0;
    for (int i = 0; i + 1 < n; ++i) {
        int c = ++m->counts[(size_t)ids[i] * v + (size_t)ids[i + 1]];
        max = c > max ? c : max;
    }
    /* log() in double, then one rounding to f32: decode_loop.py computes the
     * same floats through the same C library's log(). */
    m->table = xcalloc((size_t)max + 1, sizeof *m->table);
    for (int c = 0; c <= max; ++c)
        m->table[c] = (float)log((double)c + SMOOTHING);
}

/* ------------------------------------------------------------ sampling */

typedef struct sampler {
    kiln_sampler *s;
    void *workspace;
    size_t workspace_size;
    int cuda;
} sampler;

/* One step's inputs for every row, on the host. */
typedef struct step_batch {
    float *logits;    /* [ROWS][V] */
    int64_t *offsets; /* [ROWS + 1] */
    int32_t *ids;     /* [ROWS * history] */
    int32_t prompt_lengths[ROWS];
    float temperature[ROWS], top_p[ROWS], repetition[ROWS], frequency[ROWS];
    uint64_t seed[ROWS];
    int32_t tokens[ROWS];
} step_batch;

static int open_sampler(sampler *sp, int cuda, int vocab, int max_history)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = cuda ? KILN_BACKEND_CUDA : KILN_BACKEND_CPU;
    cfg.max_batch = ROWS;
    cfg.max_vocab = vocab;
    cfg.max_history = max_history;
    sp->cuda = cuda;
    if (kiln_sampler_create(&cfg, &sp->s) != KILN_SUCCESS)
        return 0;
    kiln_sampler_workspace_size(sp->s, &sp->workspace_size);
#ifdef KILN_DECODE_CUDA
    if (cuda)
        return cudaMalloc(&sp->workspace, sp->workspace_size) == cudaSuccess;
#endif
    sp->workspace = xcalloc(sp->workspace_size, 1);
    return 1;
}

static void close_sampler(sampler *sp)
{
#ifdef KILN_DECODE_CUDA
    if (sp->cuda)
        cudaFree(sp->workspace);
    else
#endif
        free(sp->workspace);
    kiln_sampler_destroy(sp->s);
}

static void check(kiln_status st)
{
    if (st != KILN_SUCCESS) {
        fprintf(stderr, "kiln-decode-loop: kiln_sample: %s (%s)\n", kiln_status_string(st),
                kiln_last_error());
        exit(1);
    }
}

#ifdef KILN_DECODE_CUDA
/* The same call with every array copied to the device (a serving stack has
 * them there already). */
static void *to_device(const void *host, size_t bytes)
{
    void *d = NULL;
    if (cudaMalloc(&d, bytes ? bytes : 1) != cudaSuccess ||
        cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
        die("CUDA copy to the device failed");
    return d;
}
#endif

static void sample_step(sampler *sp, step_batch *b, int vocab, uint64_t step)
{
    kiln_batch batch = KILN_BATCH_INIT;
    batch.logits = b->logits;
    batch.num_rows = ROWS;
    batch.vocab_size = vocab;
    batch.history_offsets = b->offsets;
    batch.history_ids = b->ids;
    batch.prompt_lengths = b->prompt_lengths;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = b->temperature;
    p.top_p = b->top_p;
    p.repetition_penalty = b->repetition;
    p.frequency_penalty = b->frequency;
    p.seed = b->seed;
    p.offset_all = step; /* a fresh draw every step for the same seed */
    kiln_outputs out = KILN_OUTPUTS_INIT;
    out.tokens = b->tokens;
    if (!sp->cuda) {
        check(kiln_sample(sp->s, &batch, &p, &out, sp->workspace, sp->workspace_size, NULL));
        return;
    }
#ifdef KILN_DECODE_CUDA
    size_t n_ids = (size_t)b->offsets[ROWS];
    void *d[10] = {
        to_device(b->logits, sizeof(float) * ROWS * (size_t)vocab),
        to_device(b->offsets, sizeof(int64_t) * (ROWS + 1)),
        to_device(b->ids, sizeof(int32_t) * n_ids),
        to_device(b->prompt_lengths, sizeof b->prompt_lengths),
        to_device(b->temperature, sizeof b->temperature),
        to_device(b->top_p, sizeof b->top_p),
        to_device(b->repetition, sizeof b->repetition),
        to_device(b->frequency, sizeof b->frequency),
        to_device(b->seed, sizeof b->seed),
        to_device(b->tokens, sizeof b->tokens),
    };
    batch.logits = d[0];
    batch.history_offsets = d[1];
    batch.history_ids = d[2];
    batch.prompt_lengths = d[3];
    p.temperature = d[4];
    p.top_p = d[5];
    p.repetition_penalty = d[6];
    p.frequency_penalty = d[7];
    p.seed = d[8];
    out.tokens = d[9];
    check(kiln_sample(sp->s, &batch, &p, &out, sp->workspace, sp->workspace_size, NULL));
    if (cudaMemcpy(b->tokens, d[9], sizeof b->tokens, cudaMemcpyDeviceToHost) != cudaSuccess)
        die("CUDA copy from the device failed");
    for (int i = 0; i < 10; ++i)
        cudaFree(d[i]);
#endif
}

/* Generates `steps` tokens for every row from the prompt: rows[r] gets
 * PROMPT_LEN + steps ids. */
static void generate(sampler *sp, const model *m, int steps, int32_t *rows)
{
    const int len = PROMPT_LEN + steps;
    const size_t v = (size_t)m->vocab;
    step_batch *b = xcalloc(1, sizeof *b);
    b->logits = xcalloc(ROWS * v, sizeof *b->logits);
    b->offsets = xcalloc(ROWS + 1, sizeof *b->offsets);
    b->ids = xcalloc((size_t)ROWS * (size_t)len, sizeof *b->ids);
    for (int r = 0; r < ROWS; ++r) {
        for (int i = 0; i < PROMPT_LEN; ++i)
            rows[r * len + i] = word_id((model *)m, prompt_words[i], 0);
        b->prompt_lengths[r] = PROMPT_LEN;
        b->temperature[r] = scenarios[r].temperature;
        b->top_p[r] = scenarios[r].top_p;
        b->repetition[r] = scenarios[r].repetition;
        b->frequency[r] = scenarios[r].frequency;
        b->seed[r] = scenarios[r].seed;
    }
    for (int step = 0; step < steps; ++step) {
        const int have = PROMPT_LEN + step;
        for (int r = 0; r < ROWS; ++r) {
            const int *c = m->counts + (size_t)rows[r * len + have - 1] * v;
            for (size_t w = 0; w < v; ++w)
                b->logits[r * v + w] = m->table[c[w]];
            b->offsets[r + 1] = b->offsets[r] + have;
            memcpy(b->ids + b->offsets[r], rows + r * len, sizeof(int32_t) * (size_t)have);
        }
        sample_step(sp, b, m->vocab, (uint64_t)step);
        for (int r = 0; r < ROWS; ++r)
            rows[r * len + have] = b->tokens[r];
    }
    free(b->logits);
    free(b->offsets);
    free(b->ids);
    free(b);
}

/* ------------------------------------------------------------ printing */

/* Words joined by spaces, punctuation attached, sentences and "i"
 * capitalised, wrapped at `width` columns (as decode_loop.py's render). */
static void render(const model *m, const int32_t *ids, int n, const char *indent, int width)
{
    char line[512], w[256];
    size_t il = strlen(indent);
    strcpy(line, indent);
    int cap = 1;
    for (int i = 0; i < n; ++i) {
        snprintf(w, sizeof w, "%s", m->words[ids[i]]);
        if (w[0] && !w[1] && strchr(punct, w[0])) {
            strcat(line, w);
            cap = strchr(".!?", w[0]) != NULL;
            continue;
        }
        if (cap || strcmp(w, "i") == 0 || strncmp(w, "i'", 2) == 0)
            w[0] = (char)toupper((unsigned char)w[0]);
        cap = 0;
        size_t piece = strlen(w) + (strlen(line) > il ? 1 : 0);
        if ((int)(strlen(line) + piece) > width) {
            printf("%s\n", line);
            snprintf(line, sizeof line, "%s%s", indent, w);
        } else {
            if (strlen(line) > il)
                strcat(line, " ");
            strcat(line, w);
        }
    }
    printf("%s\n", line);
}

/* The longest periodic tail repeated at least 3 times (period <= 6). */
static int find_loop(const int32_t *ids, int n, int *period)
{
    int best = -1;
    for (int p = 1; p <= 6 && p <= n; ++p) {
        int start = n - p;
        while (start > 0 && ids[start - 1] == ids[start - 1 + p])
            --start;
        if (n - start >= 3 * p && (best < 0 || start < best)) {
            best = start;
            *period = p;
        }
    }
    return best;
}

/* Step by step for one scenario: each generated token again, alone as a
 * batch of one on the CPU backend, with the raw top-5 candidates, the
 * entropy of the final distribution and the nucleus size (kept tokens).
 * The token drawn alone must be the one drawn in the batch: a row's result
 * depends only on its logits, parameters, seed and offset. */
#define EXPLAIN_ROW 2 /* T = 0.7, top-p = 0.9, seed 1 */
#define EXPLAIN_TOP 5
static int explain(const model *m, const int32_t *row, int len, int shown)
{
    const scenario *sc = &scenarios[EXPLAIN_ROW];
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_vocab = m->vocab;
    cfg.max_top_logprobs = EXPLAIN_TOP;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&cfg, &s) != KILN_SUCCESS)
        die(kiln_last_error());
    size_t ws = 0;
    kiln_sampler_workspace_size(s, &ws);
    void *workspace = xcalloc(ws ? ws : 1, 1);
    float *logits = xcalloc((size_t)m->vocab, sizeof *logits);
    printf("Step by step: %s\n", sc->name);
    printf("  (each token sampled again alone; raw p at T = 1, entropy of the final\n"
           "  distribution in nats, nucleus = tokens top-p keeps)\n\n");
    printf("  %-4s %-12s %7s %7s  %s\n", "step", "token", "entropy", "nucleus",
           "top-5 candidates (raw p)");
    int mismatches = 0;
    for (int t = 0; t < shown && PROMPT_LEN + t < len; ++t) {
        const int *c = m->counts + (size_t)row[PROMPT_LEN + t - 1] * (size_t)m->vocab;
        for (int w = 0; w < m->vocab; ++w)
            logits[w] = m->table[c[w]];
        kiln_batch batch = KILN_BATCH_INIT;
        batch.logits = logits;
        batch.num_rows = 1;
        batch.vocab_size = m->vocab;
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.temperature_all = sc->temperature;
        p.top_p_all = sc->top_p;
        p.seed_all = sc->seed;
        p.offset_all = (uint64_t)t;
        int32_t token = -1, kept = 0, top_ids[EXPLAIN_TOP];
        float top_lp[EXPLAIN_TOP], entropy = 0.0f;
        kiln_outputs o = KILN_OUTPUTS_INIT;
        o.tokens = &token;
        o.kept_counts = &kept;
        o.num_top_logprobs = EXPLAIN_TOP;
        o.raw_top_ids = top_ids;
        o.raw_top_logprobs = top_lp;
        o.entropy = &entropy;
        check(kiln_sample(s, &batch, &p, &o, workspace, ws, NULL));
        const int same = token == row[PROMPT_LEN + t];
        mismatches += !same;
        printf("  %-4d %-12s %7.3f %7d ", t + 1, m->words[token], (double)entropy, (int)kept);
        for (int i = 0; i < EXPLAIN_TOP && top_ids[i] >= 0; ++i)
            printf(" %s %.2f", m->words[top_ids[i]], exp((double)top_lp[i]));
        printf("%s\n", same ? "" : "  <-- NOT THE BATCH'S TOKEN");
    }
    printf("\n");
    free(logits);
    free(workspace);
    kiln_sampler_destroy(s);
    return mismatches;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = xcalloc((size_t)size + 1, 1);
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    text[got] = '\0';
    return text;
}

int main(int argc, char **argv)
{
    const char *path = KILN_NGRAM_TEXT;
    int steps = 40, force_cpu = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--cpu") == 0)
            force_cpu = 1;
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else
            path = argv[i];
    }
    if (steps < 1)
        die("--steps must be >= 1");
    char *text = read_file(path);
    if (!text) {
        fprintf(stderr, "kiln-decode-loop: cannot read %s\n", path);
        return 1;
    }
    model m = { 0 };
    int n_tokens = 0;
    int *tokens = tokenize(&m, text, &n_tokens);
    build(&m, tokens, n_tokens);
    for (int i = 0; i < PROMPT_LEN; ++i)
        if (word_id(&m, prompt_words[i], 0) < 0)
            die("the prompt's words are not in the text");

    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("kiln %s decode loop: a word bigram model of %s\n", kiln_version_string(), base);
    printf("%d tokens, %d distinct; add-k smoothing (k = %g), logits = log(count + k)\n",
           n_tokens, m.vocab, SMOOTHING);
    printf("prompt \"%s %s\", %d steps; each step is one kiln call for all %d rows\n\n",
           prompt_words[0], prompt_words[1], steps, ROWS);

    const int len = PROMPT_LEN + steps;
    int32_t *rows = xcalloc((size_t)ROWS * (size_t)len, sizeof *rows);
    sampler cpu;
    if (!open_sampler(&cpu, 0, m.vocab, len))
        die(kiln_last_error());
    generate(&cpu, &m, steps, rows);
    close_sampler(&cpu);

    for (int r = 0; r < ROWS; ++r) {
        printf("%s\n", scenarios[r].name);
        render(&m, rows + r * len, len, "    ", 76);
        int period = 0, start = find_loop(rows + r * len, len, &period);
        if (start >= 0) {
            printf("    -> stuck from token %d on: \"", start + 1);
            fflush(stdout);
            /* the loop's words, rendered without indent, on one line */
            char buf[256] = "";
            for (int i = 0; i < period; ++i) {
                const char *w = m.words[rows[r * len + start + i]];
                int is_punct = !w[1] && strchr(punct, w[0]);
                if (i > 0 && !is_punct)
                    strcat(buf, " ");
                strncat(buf, w, sizeof buf - strlen(buf) - 2);
            }
            printf("%s\" over and over\n", buf);
        }
        printf("\n");
    }
    int same = memcmp(rows + (ROWS - 1) * len, rows + (ROWS - 2) * len,
                      sizeof(int32_t) * (size_t)len) == 0;
    printf("seed 7 twice: %s\n", same ? "the same text" : "DIFFERENT TEXT");
    int status = same ? 0 : 1;
    printf("\n");
    if (explain(&m, rows + EXPLAIN_ROW * len, len, steps < 12 ? steps : 12) && !status)
        status = 3;

    const char *why = force_cpu ? "--cpu given" : "kiln built without CUDA";
    int have_gpu = 0;
#ifdef KILN_DECODE_CUDA
    int devices = 0;
    sampler gpu;
    if (!force_cpu) {
        why = "no CUDA device";
        if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0 &&
            open_sampler(&gpu, 1, m.vocab, len))
            have_gpu = 1;
    }
    if (have_gpu) {
        int32_t *gpu_rows = xcalloc((size_t)ROWS * (size_t)len, sizeof *gpu_rows);
        generate(&gpu, &m, steps, gpu_rows);
        close_sampler(&gpu);
        int agree = 0;
        for (int r = 0; r < ROWS; ++r)
            agree += memcmp(rows + r * len, gpu_rows + r * len, sizeof(int32_t) * (size_t)len) == 0;
        printf("GPU: the same text as the CPU on %d of %d rows%s\n", agree, ROWS,
               agree == ROWS ? "" : "  <-- MISMATCH");
        if (agree != ROWS && !status)
            status = 2;
        free(gpu_rows);
    }
#endif
    if (!have_gpu)
        printf("GPU: not compared (%s)\n", why);

    for (int i = 0; i < m.vocab; ++i)
        free(m.words[i]);
    free(m.words);
    free(m.counts);
    free(m.table);
    free(tokens);
    free(rows);
    free(text);
    return status;
}
