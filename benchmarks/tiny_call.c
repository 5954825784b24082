/*
 * tiny_call.c — the per-call cost of libattention on a tiny input, for `make bench`.
 *
 * Creates keras.layers.Attention (dot scores), builds it for query = value = (1, 16, 64)
 * float32, makes 1000 warm-up calls, then times CALLS calls of att_layer_call and prints the
 * mean microseconds per call. argv[1]: threads (att_set_num_threads, default 2).
 *
 *   cc -std=c11 -O2 -Iinclude benchmarks/tiny_call.c -L .build/release -lattention \
 *      -Wl,-rpath,$PWD/.build/release -lm
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "attention.h"

enum { T = 16, D = 64, CALLS = 100000, WARMUP = 1000 };

/* Stops the program with the library's message when a call fails. */
#define TRY(call)                                                                               \
    do {                                                                                        \
        att_status status_ = (call);                                                            \
        if (status_ != ATT_OK) {                                                                \
            fprintf(stderr, "%s failed: %s: %s\n", #call, att_status_name(status_), att_last_error()); \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float query[T * D], value[T * D], output[T * D];

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    TRY(att_set_num_threads(threads));
    for (int i = 0; i < T * D; i++) {
        query[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
        value[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
    }

    att_attention_config config = {.struct_size = sizeof config, .dtype = ATT_FLOAT32};
    att_layer *layer = NULL;
    TRY(att_attention_create(&config, &layer));
    att_shape shape = {.rank = 3, .dims = {1, T, D}};
    TRY(att_layer_build(layer, &shape, &shape, NULL));

    att_tensor q = {query, ATT_FLOAT32, shape}, v = {value, ATT_FLOAT32, shape};
    att_tensor out = {output, ATT_FLOAT32, shape};
    att_call_args args = {.struct_size = sizeof args, .query = &q, .value = &v, .output = &out};
    for (int i = 0; i < WARMUP; i++) TRY(att_layer_call(layer, &args));
    double t0 = seconds();
    for (int i = 0; i < CALLS; i++) TRY(att_layer_call(layer, &args));
    double elapsed = seconds() - t0;

    TRY(att_layer_destroy(layer));
    printf("%.4f\n", elapsed / CALLS * 1e6);
    return 0;
}
