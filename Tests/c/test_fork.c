/*
 * test_fork.c — a child forked while other threads use the library can use it.
 *   The parent runs call_cases.h's workload (every layer kind and att_dot_product_attention)
 *   on two threads and creates and destroys layers on a third (so the handle table's lock is
 *   taken all the time), and forks repeatedly meanwhile. Each child, under a 30 s alarm:
 *   reruns every call on the layers made before the fork and compares with the parent's serial
 *   results bit for bit, with the default thread count and with att_set_num_threads(4); sets a
 *   weight of and rebuilds layers the parent's threads were calling at the fork (their user
 *   counts must have been reset); creates new layers and checks them the same way; then
 *   `_exit`s with the number of problems. The parent checks every child's exit status.
 * Prints `N passed, N failed`.
 */
#include "call_cases.h"

#include <pthread.h>
#include <stdatomic.h>

enum { FORKS = 12, CALLERS = 2 };

static atomic_int g_stop;

/* A parent thread calling the cases from `first` on until told to stop. */
typedef struct {
    int first;
    long differ; /* calls whose results differ from the serial ones */
} caller;

static void *keep_calling(void *arg) {
    caller *c = arg;
    int at = c->first;
    unsigned char *out = malloc(g_max_out), *scores = malloc(g_max_scores + 1);
    long wrong = 0;
    while (!atomic_load(&g_stop)) {
        wrong += !run_matches(&g_cases[at % CASES], g_layers, out, scores);
        at++;
    }
    free(out), free(scores);
    c->differ = wrong;
    return NULL;
}

static void *keep_creating(void *arg) {
    long *failures = arg;
    while (!atomic_load(&g_stop)) {
        att_layer *own[LAYERS];
        *failures += make_layers(own);
        *failures += destroy_layers(own);
    }
    return NULL;
}

/* Calls every case on `layers` (with `threads` threads); the number of mismatches. */
static int all_cases_match(att_layer *const *layers, int threads) {
    if (att_set_num_threads(threads) != ATT_OK) return 1;
    unsigned char *out = malloc(g_max_out), *scores = malloc(g_max_scores + 1);
    int wrong = 0;
    for (int at = 0; at < CASES; at++) wrong += !run_matches(&g_cases[at], layers, out, scores);
    free(out), free(scores);
    return wrong;
}

/* The child's checks; its exit status (0: all well; else the problems, at most 100). */
static int child_checks(int default_threads) {
    alarm(30);
    int problems = all_cases_match(g_layers, default_threads);
    problems += all_cases_match(g_layers, 4);
    /* Writers on layers the parent's threads were calling: refused if a user count survived. */
    for (int i = 0; i < LAYERS; i++) {
        size_t count = 0;
        problems += att_layer_weight_count(g_layers[i], &count) != ATT_OK;
        if (count == 0) continue;
        att_shape s;
        problems += att_layer_weight_info(g_layers[i], 0, &s, NULL) != ATT_OK;
        att_dtype dt = i == 1 || i == 4 ? ATT_FLOAT64 : ATT_FLOAT32;
        att_tensor w = new_tensor(dt, s, NULL);
        problems += att_layer_get_weight(g_layers[i], 0, &w) != ATT_OK;
        problems += att_layer_set_weight(g_layers[i], 0, &w) != ATT_OK;
        problems += att_layer_apply_constraints(g_layers[i]) != ATT_OK;
        free(w.data);
    }
    problems += all_cases_match(g_layers, 1);
    att_layer *fresh[LAYERS];
    problems += make_layers(fresh);
    problems += all_cases_match(fresh, 4);
    problems += destroy_layers(fresh);
    return problems > 100 ? 100 : problems;
}

static void fork_while_threads_call(void) {
    prepare_cases();
    int default_threads = att_get_num_threads();
    pthread_t threads[CALLERS], creator;
    caller callers[CALLERS] = {{.first = 0}, {.first = 7}};
    long creator_failures = 0;
    for (int t = 0; t < CALLERS; t++)
        check(pthread_create(&threads[t], NULL, keep_calling, &callers[t]) == 0, "pthread_create failed");
    check(pthread_create(&creator, NULL, keep_creating, &creator_failures) == 0, "pthread_create failed");
    for (int f = 0; f < FORKS; f++) {
        struct timespec pause = {0, (1 + f % 4) * 1000 * 1000};
        nanosleep(&pause, NULL);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) _exit(child_checks(default_threads));
        if (!check(pid > 0, "fork failed")) break;
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status))
            check(0, "fork %d: the child died of signal %d%s", f, WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (timeout: a deadlock?)" : "");
        else
            check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork %d: the child found %d problems", f,
                  WEXITSTATUS(status));
    }
    atomic_store(&g_stop, 1);
    for (int t = 0; t < CALLERS; t++) pthread_join(threads[t], NULL);
    pthread_join(creator, NULL);
    for (int t = 0; t < CALLERS; t++)
        check(callers[t].differ == 0, "parent caller %d: %ld calls differ from the serial results", t,
              callers[t].differ);
    check(creator_failures == 0, "parent creator: %ld create/build/destroy calls failed", creator_failures);
}

/* A child of a process that never used the library before the fork, and a child's child. */
static void fork_before_first_use(void) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(30);
        prepare_cases();
        int problems = g_failed + all_cases_match(g_layers, 4);
        pid_t grandchild = fork();
        if (grandchild == 0) _exit(child_checks(2));
        int status = 0;
        waitpid(grandchild, &status, 0);
        problems += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        _exit(problems > 100 ? 100 : problems);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child (and its child) found problems: status %d",
          status);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"fork_while_threads_call", fork_while_threads_call},
        {"fork_before_first_use", fork_before_first_use},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
