/*
 * check.h — the small harness shared by the C test programs of libattention.
 *
 * Each test group runs in a child process (run_group), so a crash or a hang in the library
 * is reported as one failure of that group instead of ending the program. Checks count
 * passes and failures and print one line per failure; finish() prints `N passed, N failed`.
 * Tensors are built from double arrays (rounded to float for ATT_FLOAT32, so a reference
 * computed from the same doubles sees exactly the library's inputs).
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

/* Runs fn in a child process with a 120 s limit and adds its counts; a crash, a hang or a
 * nonzero exit of the child is one failure. The parent never calls the library, so every
 * child starts from a fresh library state (threads included). */
static inline void run_group(const char *name, void (*fn)(void)) {
    int fd[2];
    fflush(stdout);
    if (pipe(fd) != 0) {
        perror("pipe");
        exit(2);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fd[0]);
        g_passed = g_failed = 0;
        g_group = name;
        alarm(120);
        fn();
        fflush(stdout);
        int counts[2] = {g_passed, g_failed};
        _exit(write(fd[1], counts, sizeof counts) == (ssize_t)sizeof counts ? 0 : 3);
    }
    close(fd[1]);
    int counts[2] = {0, 0};
    ssize_t n = read(fd[0], counts, sizeof counts);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n == (ssize_t)sizeof counts) {
        g_passed += counts[0];
        g_failed += counts[1];
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n != (ssize_t)sizeof counts) {
        g_failed++;
        if (WIFSIGNALED(status))
            printf("FAIL %s: the group died of signal %d%s\n", name, WTERMSIG(status),
                   WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
        else
            printf("FAIL %s: the group did not finish (exit %d)\n", name, WEXITSTATUS(status));
    }
}

/* Prints the summary line; the program's exit code. */
static inline int finish(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

/* ---- shapes and tensors ---------------------------------------------------------------- */

static inline att_shape shape_of(const int64_t *dims, int rank) {
    att_shape s = {0};
    s.rank = rank;
    for (int i = 0; i < rank && i < ATT_MAX_RANK; i++) s.dims[i] = dims[i];
    return s;
}
/* SHAPE(2, 3, 4) is the att_shape of rank 3 with those dims. */
#define SHAPE(...) shape_of((const int64_t[]){__VA_ARGS__}, \
                            (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

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

/* Philox-4x32-10 (Salmon et al. 2011), in place on the counter. */
static inline void philox4x32_10(uint32_t c[4], const uint32_t key[2]) {
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* The header's dropout rule: whether score element f survives dropout at `rate`. */
static inline int dropout_keeps(uint64_t f, double rate, uint64_t seed, uint64_t stream) {
    uint32_t c[4] = {(uint32_t)f, (uint32_t)(f >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(c, key);
    return (double)(c[0] >> 8) * 0x1p-24 >= rate;
}

#endif /* ATT_TEST_CHECK_H */
