/* Replays fuzz inputs without libFuzzer: every file named on the command
 * line, and every regular file in every directory named (not recursive,
 * sorted by name so runs are repeatable), goes once through
 * LLVMFuzzerTestOneInput. A broken invariant aborts inside the target, so
 * the exit status is non-zero and the last "replay:" line names the input.
 *
 *   fuzz_replay [-v] [-n MAX] PATH...
 *     -v      print every input's name before running it
 *     -n MAX  stop after MAX inputs (for slow runs: valgrind, compute-sanitizer)
 *
 * Built as a plain executable by any C compiler (CI runs it through CTest),
 * and usable under valgrind and compute-sanitizer. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verbose;
static const char *current; /* the input being run, for the crash note */

static void name_current(void)
{
    static const char head[] = "replay: failing input: ";
    if (current) {
        (void)!write(2, head, sizeof head - 1);
        (void)!write(2, current, strlen(current));
        (void)!write(2, "\n", 1);
    }
}

/* Names the input that broke an invariant (abort), then lets the signal take
 * its course so the exit status says what happened. */
static void on_fatal(int sig)
{
    name_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Sanitizer runtimes exit without raising a signal; they call this hook
 * first when it is there (weak: NULL in a build without sanitizers). */
#if defined(__GNUC__)
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
#endif

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return 1;
    }
    for (;;) {
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                fclose(f);
                return 1;
            }
            buf = bigger;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (verbose)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    /* Copy into an exact-size block so a read past the input is caught by
     * AddressSanitizer or valgrind, as it would be under libFuzzer. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, len);
    free(buf);
    current = path;
    LLVMFuzzerTestOneInput(exact, len);
    current = NULL;
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the regular files of `dir` (sorted) to *list. */
static int list_dir(const char *dir, char ***list, size_t *count, size_t *cap)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open directory %s\n", dir);
        return 1;
    }
    const size_t first = *count;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        const size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(n);
        if (!path)
            break;
        snprintf(path, n, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (*count == *cap) {
            *cap = *cap ? 2 * *cap : 256;
            char **bigger = realloc(*list, *cap * sizeof **list);
            if (!bigger) {
                free(path);
                break;
            }
            *list = bigger;
        }
        (*list)[(*count)++] = path;
    }
    closedir(d);
    qsort(*list + first, *count - first, sizeof **list, by_name);
    return 0;
}

int main(int argc, char **argv)
{
    long max = -1;
    char **list = NULL;
    size_t count = 0, cap = 0;
    int bad = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            max = strtol(argv[++i], NULL, 10);
            continue;
        }
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            bad = 1;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            bad |= list_dir(argv[i], &list, &count, &cap);
        } else {
            if (count == cap) {
                cap = cap ? 2 * cap : 256;
                char **bigger = realloc(list, cap * sizeof *list);
                if (!bigger)
                    return 1;
                list = bigger;
            }
            list[count++] = strdup(argv[i]);
        }
    }
    if (count == 0) {
        fprintf(stderr, "usage: %s [-v] [-n MAX] CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    /* Only SIGABRT: a SIGSEGV handler would displace AddressSanitizer's. */
    signal(SIGABRT, on_fatal);
#if defined(__GNUC__)
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(name_current);
#endif
    const clock_t t0 = clock();
    size_t ran = 0;
    for (size_t i = 0; i < count && (max < 0 || (long)ran < max); ++i, ++ran)
        bad |= run_file(list[i]);
    for (size_t i = 0; i < count; ++i)
        free(list[i]);
    free(list);
    printf("replay: %zu inputs, %.1f s of CPU, %s\n", ran,
           (double)(clock() - t0) / CLOCKS_PER_SEC, bad ? "some could not be read" : "all passed");
    return bad;
}
