/* The FMA peak of this machine: independent chains of 16-lane float32 fused multiply-adds on
 * N threads (argv[1], default 2), enough chains to hide the FMA latency. Prints FLOP/s. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v16 __attribute__((vector_size(64)));
enum { CHAINS = 12, ITERATIONS = 20000000 };

static void *run(void *arg) {
    v16 a, b, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11;
    for (int l = 0; l < 16; l++) {
        a[l] = 0.999999f, b[l] = 1e-7f;
        x0[l] = 0, x1[l] = 1, x2[l] = 2, x3[l] = 3, x4[l] = 4, x5[l] = 5;
        x6[l] = 6, x7[l] = 7, x8[l] = 8, x9[l] = 9, x10[l] = 10, x11[l] = 11;
    }
    for (long i = 0; i < ITERATIONS; i++) {
        x0 = x0 * a + b, x1 = x1 * a + b, x2 = x2 * a + b, x3 = x3 * a + b;
        x4 = x4 * a + b, x5 = x5 * a + b, x6 = x6 * a + b, x7 = x7 * a + b;
        x8 = x8 * a + b, x9 = x9 * a + b, x10 = x10 * a + b, x11 = x11 * a + b;
    }
    v16 s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11;
    float total = 0;
    for (int l = 0; l < 16; l++) total += s[l];
    *(float *)arg = total;
    return NULL;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 256) return 1;
    pthread_t ids[256];
    float sums[256];
    double best = 0;
    for (int round = 0; round < 3; round++) {
        double t0 = seconds();
        for (int t = 0; t < threads; t++) pthread_create(&ids[t], NULL, run, &sums[t]);
        for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
        double rate = (double)threads * ITERATIONS * CHAINS * 16 * 2 / (seconds() - t0);
        if (rate > best) best = rate;
    }
    printf("%.6g\n", best);
    return 0;
}
