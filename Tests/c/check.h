/*
 * check.h — the small harness shared by the C test programs of libattention.
 *
 * Each test group runs in a process of its own (run_groups), so a crash or a hang in the
 * library is reported as one failure of that group instead of ending the program. Checks count
 * passes and failures and print one line per failure; finish() prints `N passed, N failed`.
 * ATT_TEST_VERBOSE=1 in the environment also prints each expected failure and its message.
 * Tensors are built from double arrays (rounded to float for ATT_FLOAT32, so a reference
 * computed from the same doubles sees exactly the library's inputs). The weight helpers load
 * random weights through the API and find them by Keras name.
 */
#ifndef ATT_TEST_CHECK_H
#define ATT_TEST_CHECK_H

#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attention.h"

static int g_passed, g_failed;
static const char *g_group = "";

#if defined(__GNUC__)
#define ATT_TEST_PRINTF __attribute__((format(printf, 2, 3)))
#else
#define ATT_TEST_PRINTF
#endif

/* Records one check; prints `FAIL group: message` when it failed. */
static inline int check(int ok, const char *fmt, ...) ATT_TEST_PRINTF;
static inline int check(int ok, const char *fmt, ...) {
    if (ok) {
        g_passed++;
        return 1;
    }
    g_failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", g_group);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return 0;
}

/* Whether `text` contains, ignoring case, one of the '|'-separated alternatives. */
static inline int contains_any(const char *text, const char *alternatives) {
    const char *alt = alternatives;
    while (*alt) {
        size_t len = strcspn(alt, "|");
        for (const char *t = text; *t; t++) {
            size_t i = 0;
            while (i < len && t[i] && tolower((unsigned char)t[i]) == tolower((unsigned char)alt[i])) i++;
            if (i == len) return 1;
        }
        alt += len + (alt[len] == '|');
    }
    return 0;
}

/* Checks a call's status; for a failure also that att_last_error() names the problem
 * (contains one of the '|'-separated words of `about`). */
static inline void expect(att_status got, att_status want, const char *about, const char *what) {
    const char *msg = att_last_error();
    if (getenv("ATT_TEST_VERBOSE") && want != ATT_OK) /* shows every message the cases see */
        printf("  %s: %s \"%s\"\n", what, att_status_name(got), got ? msg : "");
    if (got != want) {
        check(0, "%s: got %s (\"%s\"), want %s", what, att_status_name(got), got ? msg : "",
              att_status_name(want));
        return;
    }
    if (want == ATT_OK) {
        g_passed++;
        return;
    }
    check(msg && msg[0] && contains_any(msg, about), "%s: %s message \"%s\" does not mention %s", what,
          att_status_name(want), msg ? msg : "(null)", about);
}

typedef struct {
    const char *name;
    void (*fn)(void);
} test_group;

/* Prints the summary line; the program's exit code. */
static inline int finish(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

/* The program's main: runs each group in a fresh process (this program re-executed with
 * `--group INDEX FD`; it writes its two counts to FD) with a 120 s limit, and adds up the
 * counts; a crash, a hang or a bad exit of a group is one failure. Re-executing rather than
 * only forking matters: a child forked from a process that has loaded the Swift runtime
 * inherits its parent's thread id cached in the runtime's locks, and can deadlock.
 * `PROGRAM --group INDEX` runs one group in this process (for a debugger). */
static inline int run_groups_then(int argc, char **argv, const test_group *groups, int count,
                                  void (*before_finish)(void));
static inline int run_groups(int argc, char **argv, const test_group *groups, int count) {
    return run_groups_then(argc, argv, groups, count, NULL);
}

/* run_groups, calling before_finish (when not NULL) in the parent after the last group, just
 * before the closing `N passed, N failed` line (for a summary of the whole run). */
static inline int run_groups_then(int argc, char **argv, const test_group *groups, int count,
                                  void (*before_finish)(void)) {
    if (argc >= 3 && strcmp(argv[1], "--group") == 0) {
        int index = atoi(argv[2]);
        if (index < 0 || index >= count) return 2;
        g_group = groups[index].name;
        alarm(120);
        groups[index].fn();
        fflush(stdout);
        if (argc == 3) return finish();
        int counts[2] = {g_passed, g_failed};
        return write(atoi(argv[3]), counts, sizeof counts) == (ssize_t)sizeof counts ? 0 : 3;
    }
    for (int index = 0; index < count; index++) {
        int fd[2];
        fflush(stdout);
        if (pipe(fd) != 0) {
            perror("pipe");
            return 2;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            char index_arg[16], fd_arg[16];
            close(fd[0]);
            snprintf(index_arg, sizeof index_arg, "%d", index);
            snprintf(fd_arg, sizeof fd_arg, "%d", fd[1]);
            execl("/proc/self/exe", argv[0], "--group", index_arg, fd_arg, (char *)NULL);
            execl(argv[0], argv[0], "--group", index_arg, fd_arg, (char *)NULL);
            perror("exec");
            _exit(127);
        }
        close(fd[1]);
        int counts[2] = {0, 0}, status = 0;
        ssize_t n = read(fd[0], counts, sizeof counts);
        close(fd[0]);
        waitpid(pid, &status, 0);
        if (n == (ssize_t)sizeof counts) {
            g_passed += counts[0];
            g_failed += counts[1];
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n != (ssize_t)sizeof counts) {
            g_failed++;
            if (WIFSIGNALED(status))
                printf("FAIL %s: the group died of signal %d%s\n", groups[index].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
            else
                printf("FAIL %s: the group did not finish (exit %d)\n", groups[index].name, WEXITSTATUS(status));
        }
    }
    if (before_finish) before_finish();
    return finish();
}

/* ---- shapes and tensors ---------------------------------------------------------------- */

static inline att_shape shape_of(const int64_t *dims, int rank) {
    att_shape s = {0};
    s.rank = rank;
    for (int i = 0; i < rank && i < ATT_MAX_RANK; i++) s.dims[i] = dims[i];
    return s;
}
/* A constant att_shape, for static tables: SH(rank, dims...). */
#define SH(rank, ...) {rank, {__VA_ARGS__}}
/* SHAPE(2, 3, 4) is the att_shape of rank 3 with those dims. */
#define SHAPE(...) shape_of((const int64_t[]){__VA_ARGS__}, \
                            (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* The shape without its last dim (a mask's shape from its tensor's). */
static inline att_shape drop_last(att_shape s) {
    s.rank--;
    return s;
}

static inline int64_t numel(att_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++) n *= s.dims[i];
    return n;
}

static inline int same_shape(att_shape a, att_shape b) {
    if (a.rank != b.rank) return 0;
    for (int i = 0; i < a.rank; i++)
        if (a.dims[i] != b.dims[i]) return 0;
    return 1;
}

static inline const char *shape_str(att_shape s, char *buf, size_t size) {
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < s.rank && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ", %lld" : "%lld", (long long)s.dims[i]);
    if (at < size) snprintf(buf + at, size - at, ")");
    return buf;
}

static inline size_t dtype_size(att_dtype dt) { return dt == ATT_FLOAT64 ? 8 : dt == ATT_UINT8 ? 1 : 4; }

/* A new tensor of `shape` holding src (or zeros when src is NULL), converted to dt. */
static inline att_tensor new_tensor(att_dtype dt, att_shape shape, const double *src) {
    size_t n = (size_t)numel(shape);
    att_tensor t = {calloc(n ? n : 1, dtype_size(dt)), dt, shape};
    if (!t.data) {
        perror("calloc");
        exit(2);
    }
    for (size_t i = 0; src && i < n; i++) {
        if (dt == ATT_FLOAT64) ((double *)t.data)[i] = src[i];
        else ((float *)t.data)[i] = (float)src[i];
    }
    return t;
}

static inline double tensor_at(const att_tensor *t, size_t i) {
    return t->dtype == ATT_FLOAT64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

/* A uint8 mask tensor over the caller's array. */
static inline att_tensor mask_tensor(const uint8_t *m, att_shape shape) {
    att_tensor t = {(void *)m, ATT_UINT8, shape};
    return t;
}

/* ---- numbers ---------------------------------------------------------------------------- */

/* splitmix64: the test inputs' generator. */
static inline uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n values uniform in [lo, hi), rounded to float when dt is ATT_FLOAT32. Caller frees. */
static inline double *random_values(uint64_t *state, size_t n, double lo, double hi, att_dtype dt) {
    double *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) {
        perror("malloc");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        double u = (double)(next_u64(state) >> 11) * 0x1p-53;
        x[i] = lo + (hi - lo) * u;
        if (dt == ATT_FLOAT32) x[i] = (float)x[i];
    }
    return x;
}

/* A tensor of `shape` with values uniform in [-1, 1) (rounded to dt). Caller frees data. */
static inline att_tensor random_tensor(att_dtype dt, att_shape shape, uint64_t *rng) {
    double *x = random_values(rng, (size_t)numel(shape), -1, 1, dt);
    att_tensor t = new_tensor(dt, shape, x);
    free(x);
    return t;
}

/* A uint8 mask of `shape`, about 30% zeros. Caller frees data. */
static inline att_tensor random_mask(att_shape shape, uint64_t *rng) {
    att_tensor t = new_tensor(ATT_UINT8, shape, NULL);
    for (int64_t i = 0; i < numel(shape); i++) ((uint8_t *)t.data)[i] = next_u64(rng) % 10 >= 3;
    return t;
}

/* The numerics contract: |got - want| <= atol + rtol * max|want| (float32: 1e-5, 1e-4;
 * float64: 1e-10, 1e-10). NaN must match NaN. */
static inline void check_close(const char *what, const att_tensor *got, const double *want, size_t n) {
    double atol = got->dtype == ATT_FLOAT64 ? 1e-10 : 1e-5, rtol = got->dtype == ATT_FLOAT64 ? 1e-10 : 1e-4;
    double largest = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > largest) largest = fabs(want[i]);
    double tol = atol + rtol * largest, worst = 0;
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        double g = tensor_at(got, i), e = want[i];
        int ok = isnan(e) ? isnan(g) : fabs(g - e) <= tol;
        double err = isnan(e) || isnan(g) ? INFINITY : fabs(g - e);
        if (!ok && (bad == n || err > worst)) {
            bad = i;
            worst = err;
        }
    }
    if (bad == n) g_passed++;
    else
        check(0, "%s: element %zu is %.17g, want %.17g (tolerance %.3g)", what, bad, tensor_at(got, bad),
              want[bad], tol);
}

static inline const char *dtype_name(att_dtype dt) { return dt == ATT_FLOAT64 ? "float64" : "float32"; }

/* How a test calls a layer: whether it passes the key, asks for the scores, sets
 * use_causal_mask, and trains. */
typedef struct {
    int key_given, want_scores, causal_arg, training;
} call_opts;

/* One layer call's inputs as doubles with their shapes, its masks (NULL: none), the scores
 * it reuses and dropout. */
typedef struct {
    att_dtype dtype;
    const double *q, *k, *v;
    att_shape q_shape, k_shape, v_shape;
    const att_tensor *query_mask, *value_mask, *key_mask, *attention_mask;
    const att_tensor *reuse_attention_scores; /* ReuseMultiHeadAttention; NULL: none */
    uint64_t seed, stream;
} call_inputs;

/* Calls `layer` on `in` into out (and scores when o.want_scores; the key only when
 * o.key_given). */
static inline att_status call_layer(const att_layer *layer, const call_inputs *in, call_opts o, att_tensor *out,
                                    att_tensor *scores) {
    att_tensor q = new_tensor(in->dtype, in->q_shape, in->q);
    att_tensor k = new_tensor(in->dtype, in->k_shape, in->k);
    att_tensor v = new_tensor(in->dtype, in->v_shape, in->v);
    att_call_args args = {.struct_size = sizeof args};
    args.query = &q;
    args.value = &v;
    args.key = o.key_given ? &k : NULL;
    args.query_mask = in->query_mask;
    args.value_mask = in->value_mask;
    args.key_mask = in->key_mask;
    args.attention_mask = in->attention_mask;
    args.reuse_attention_scores = in->reuse_attention_scores;
    args.training = o.training;
    args.use_causal_mask = o.causal_arg;
    args.dropout_seed = in->seed;
    args.dropout_stream = in->stream;
    args.output = out;
    args.scores = o.want_scores ? scores : NULL;
    att_status st = att_layer_call(layer, &args);
    free(q.data), free(k.data), free(v.data);
    return st;
}

/* A call's output and scores tensors, and room for the reference's values of both. */
typedef struct {
    att_tensor out, scores;
    double *want_out, *want_scores;
} call_result;

static inline call_result new_call_result(att_dtype dt, att_shape out_shape, att_shape scores_shape) {
    call_result r = {new_tensor(dt, out_shape, NULL), new_tensor(dt, scores_shape, NULL), NULL, NULL};
    r.want_out = malloc((size_t)numel(out_shape) * sizeof(double));
    r.want_scores = malloc((size_t)numel(scores_shape) * sizeof(double));
    if (!r.want_out || !r.want_scores) {
        perror("malloc");
        exit(2);
    }
    return r;
}

/* Checks that the call returned `status` ATT_OK and that its output (and scores when
 * o.want_scores) match the reference; labels the checks `what (dtype)`; frees r. */
static inline void check_call_result(const char *what, att_status status, call_opts o, call_result *r) {
    char label[160];
    snprintf(label, sizeof label, "%s (%s)", what, dtype_name(r->out.dtype));
    expect(status, ATT_OK, "", label);
    check_close(label, &r->out, r->want_out, (size_t)numel(r->out.shape));
    if (o.want_scores) check_close(label, &r->scores, r->want_scores, (size_t)numel(r->scores.shape));
    free(r->out.data), free(r->scores.data), free(r->want_out), free(r->want_scores);
}

/* ---- weights --------------------------------------------------------------------------------- */

/* Checks the layer's weight count and each weight's Keras name and shape, in order. */
static inline void check_weight_list(const char *what, const att_layer *layer, size_t count,
                                     const char *const *names, const att_shape *shapes) {
    size_t got = 99;
    expect(att_layer_weight_count(layer, &got), ATT_OK, "", what);
    if (!check(got == count, "%s: %zu weights, want %zu", what, got, count)) return;
    for (size_t i = 0; i < count; i++) {
        att_shape s = {-1, {0}};
        const char *name = NULL;
        char a[96], b[96];
        expect(att_layer_weight_info(layer, i, &s, &name), ATT_OK, "", what);
        check(name && strcmp(name, names[i]) == 0, "%s: weight %zu is named %s, want %s", what, i,
              name ? name : "(null)", names[i]);
        check(same_shape(s, shapes[i]), "%s: weight %zu (%s) has shape %s, want %s", what, i, names[i],
              shape_str(s, a, sizeof a), shape_str(shapes[i], b, sizeof b));
    }
}

/* Copies weight `index` out as doubles (caller frees). */
static inline double *get_weight(const att_layer *layer, size_t index, att_dtype dt, int64_t *n) {
    att_shape s = {0};
    att_layer_weight_info(layer, index, &s, NULL);
    att_tensor t = new_tensor(dt, s, NULL);
    expect(att_layer_get_weight(layer, index, &t), ATT_OK, "", "get_weight");
    *n = numel(s);
    double *x = malloc((size_t)*n * sizeof *x);
    for (int64_t i = 0; i < *n; i++) x[i] = tensor_at(&t, (size_t)i);
    free(t.data);
    return x;
}

/* Sets every weight of `layer` to random values in [-0.5, 0.5), checks that each reads back
 * bit for bit, and returns them (values[i] for weight i; caller frees). */
static inline size_t load_random_weights(att_layer *layer, att_dtype dt, uint64_t *rng, double **values) {
    size_t count = 0;
    att_layer_weight_count(layer, &count);
    for (size_t i = 0; i < count; i++) {
        att_shape s = {0};
        att_layer_weight_info(layer, i, &s, NULL);
        values[i] = random_values(rng, (size_t)numel(s), -0.5, 0.5, dt);
        att_tensor in = new_tensor(dt, s, values[i]), out = new_tensor(dt, s, NULL);
        expect(att_layer_set_weight(layer, i, &in), ATT_OK, "", "set_weight");
        expect(att_layer_get_weight(layer, i, &out), ATT_OK, "", "get_weight");
        check(memcmp(in.data, out.data, (size_t)numel(s) * dtype_size(dt)) == 0,
              "weight %zu does not read back as set (%s)", i, dtype_name(dt));
        free(in.data);
        free(out.data);
    }
    return count;
}

/* The values of the weight named `name` among values[0 .. count-1], or NULL. */
static inline const double *weight_named(const att_layer *layer, double **values, size_t count, const char *name) {
    for (size_t i = 0; i < count; i++) {
        const char *n = NULL;
        att_layer_weight_info(layer, i, NULL, &n);
        if (n && strcmp(n, name) == 0) return values[i];
    }
    return NULL;
}

/* Sets the scalar weight `index` to x and checks that it reads back. */
static inline void set_scalar(att_layer *layer, size_t index, att_dtype dt, double x) {
    att_tensor t = new_tensor(dt, (att_shape){0}, &x);
    expect(att_layer_set_weight(layer, index, &t), ATT_OK, "", "set scalar weight");
    int64_t n = 0;
    double *back = get_weight(layer, index, dt, &n);
    check(n == 1 && back[0] == (dt == ATT_FLOAT32 ? (float)x : x), "scalar weight %zu reads back %g, want %g",
          index, back[0], x);
    free(back);
    free(t.data);
}

#endif /* ATT_TEST_CHECK_H */
