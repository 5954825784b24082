/*
 * test_threads.c — forward calls from many threads at once on shared built layers give, bit for
 * bit, the results of serial calls.
 *   Eight layers (Attention dot and concat, AdditiveAttention, MultiHeadAttention of rank 3 and
 *   4 and a larger one, GroupQueryAttention, ReuseMultiHeadAttention) and
 *   att_dot_product_attention, 16 calls over them: different shapes on one layer, float32 and
 *   float64, with and without masks, causal, scores, dropout (training) and a key.
 *   - 8 threads × 500 calls, each thread walking the 16 calls from its own start, against the
 *     serial results;
 *   - att_set_num_threads(1), (2) and (5) give the same results;
 *   - 4 threads calling the shared layers while 4 others create, build, call and destroy layers
 *     of their own (same configs and seeds: same weights, same results).
 * The layers and calls are call_cases.h's. Outputs are poisoned before each call, so a call
 * that writes nothing cannot pass.
 * Prints `N passed, N failed`.
 */
#include "call_cases.h"

#include <pthread.h>
#include <time.h>

enum { THREADS = 8, CALLS_PER_THREAD = 500 };

/* One thread's share: `calls` calls over the cases starting at case `first`, on `layers`
 * (NULL: the shared layers; else `cycles` rounds of creating its own layers, calling every
 * case once on them and destroying them). Counts the calls whose results differ per case. */
typedef struct {
    int first, calls, cycles;
    long ran[CASES], differ[CASES];
    int lifecycle_failures; /* create, build or destroy calls that failed */
} worker;

static void *work(void *arg) {
    worker *w = arg;
    unsigned char *out = malloc(g_max_out), *scores = malloc(g_max_scores + 1);
    for (int i = 0; i < w->calls; i++) {
        int at = (w->first + i) % CASES;
        w->ran[at]++;
        w->differ[at] += !run_matches(&g_cases[at], g_layers, out, scores);
    }
    for (int cycle = 0; cycle < w->cycles; cycle++) {
        att_layer *own[LAYERS];
        w->lifecycle_failures += make_layers(own);
        for (int at = 0; at < CASES; at++) {
            w->ran[at]++;
            w->differ[at] += !run_matches(&g_cases[at], own, out, scores);
        }
        w->lifecycle_failures += destroy_layers(own);
    }
    free(out);
    free(scores);
    return NULL;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs the workers on threads of their own and checks every case's calls. */
static void run_workers(worker *workers, int count, const char *what) {
    pthread_t threads[THREADS];
    double start = seconds();
    for (int t = 0; t < count; t++)
        check(pthread_create(&threads[t], NULL, work, &workers[t]) == 0, "%s: pthread_create failed", what);
    for (int t = 0; t < count; t++) pthread_join(threads[t], NULL);
    double elapsed = seconds() - start;
    long calls = 0;
    for (int t = 0; t < count; t++)
        check(workers[t].lifecycle_failures == 0, "%s: thread %d: %d create/build/destroy calls failed", what, t,
              workers[t].lifecycle_failures);
    for (int at = 0; at < CASES; at++) {
        long ran = 0, differ = 0;
        for (int t = 0; t < count; t++) ran += workers[t].ran[at], differ += workers[t].differ[at];
        calls += ran;
        check(ran > 0 && differ == 0, "%s: %s: %ld of %ld calls failed or differ from the serial result", what,
              SPECS[at].name, differ, ran);
    }
    printf("  %s: %ld calls in %.2f s (%.0f calls/s)\n", what, calls, elapsed, (double)calls / elapsed);
}

static void threads_match_serial(void) {
    prepare_cases();
    worker workers[THREADS] = {{0}};
    for (int t = 0; t < THREADS; t++) workers[t] = (worker){.first = 5 * t, .calls = CALLS_PER_THREAD};
    run_workers(workers, THREADS, "8 threads x 500 calls on shared layers");
}

static void thread_count_does_not_change_results(void) {
    prepare_cases();
    unsigned char *out = malloc(g_max_out), *scores = malloc(g_max_scores + 1);
    static const int counts[] = {1, 2, 5};
    for (size_t n = 0; n < sizeof counts / sizeof counts[0]; n++) {
        expect(att_set_num_threads(counts[n]), ATT_OK, "", "att_set_num_threads");
        for (int at = 0; at < CASES; at++)
            check(run_matches(&g_cases[at], g_layers, out, scores),
                  "%s: att_set_num_threads(%d) changes the result", SPECS[at].name, counts[n]);
    }
    free(out);
    free(scores);
}

static void calls_alongside_create_and_destroy(void) {
    prepare_cases();
    worker workers[THREADS] = {{0}};
    for (int t = 0; t < THREADS; t++)
        workers[t] = t < THREADS / 2 ? (worker){.first = 3 * t, .calls = 200} : (worker){.cycles = 12};
    run_workers(workers, THREADS, "4 threads calling, 4 creating/calling/destroying");
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"threads_match_serial", threads_match_serial},
        {"thread_count_does_not_change_results", thread_count_does_not_change_results},
        {"calls_alongside_create_and_destroy", calls_alongside_create_and_destroy},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
