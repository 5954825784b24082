/*
 * demo.c — a first program with libattention.
 *
 * Creates keras.layers.Attention (dot scores, use_scale=True) and
 * keras.layers.AdditiveAttention, builds them, loads known weights, runs both on a small
 * masked batch, and checks each output against a plain C loop of the Keras formula:
 *
 *   Attention:          score[i][j] = scale * sum_d q[i][d] * k[j][d]
 *   AdditiveAttention:  score[i][j] = sum_d scale[d] * tanh(q[i][d] + k[j][d])
 *   weights = softmax_j(score) over the keys the value_mask keeps,
 *   output[i] = sum_j weights[i][j] * v[j]  (0 for a row the query_mask masks out).
 *
 * Prints one line per layer with its largest error and exits 1 on a mismatch.
 *
 *   make demo
 *   cc -std=c11 -I include examples/c/demo.c -L .build/release -lattention \
 *      -Wl,-rpath,$PWD/.build/release -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"

enum { B = 2, TQ = 3, TV = 4, DIM = 4 };

/* Stops the program with the library's message when a call fails. */
#define TRY(call)                                                                               \
    do {                                                                                        \
        att_status status_ = (call);                                                            \
        if (status_ != ATT_OK) {                                                                \
            fprintf(stderr, "%s failed: %s: %s\n", #call, att_status_name(status_), att_last_error()); \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

/* The inputs: one batch of 2 sequences. Masks: 0 masks out, anything else keeps. */
static float query[B][TQ][DIM], value[B][TV][DIM];
static const uint8_t query_mask[B][TQ] = {{1, 1, 1}, {1, 1, 0}};
static const uint8_t value_mask[B][TV] = {{1, 1, 1, 0}, {1, 1, 0, 0}};

/* The plain C loop: value is also the key, as when a call passes no key. `score` gives the
 * score of query i and key j of batch b. Masked keys get weight 0 (Keras subtracts 1e9). */
static void reference(double (*score)(int b, int i, int j), double out[B][TQ][DIM]) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < TQ; i++) {
            double w[TV], largest = -INFINITY, sum = 0;
            for (int j = 0; j < TV; j++)
                if (value_mask[b][j]) largest = fmax(largest, w[j] = score(b, i, j));
            for (int j = 0; j < TV; j++) sum += (w[j] = value_mask[b][j] ? exp(w[j] - largest) : 0);
            for (int d = 0; d < DIM; d++) {
                double o = 0;
                for (int j = 0; j < TV; j++) o += w[j] / sum * value[b][j][d];
                out[b][i][d] = query_mask[b][i] ? o : 0;
            }
        }
}

static const double dot_scale = 0.5;
static const float additive_scale[DIM] = {0.5f, -1.0f, 0.25f, 2.0f};

static double dot_score(int b, int i, int j) {
    double s = 0;
    for (int d = 0; d < DIM; d++) s += query[b][i][d] * value[b][j][d];
    return dot_scale * s;
}

static double additive_score(int b, int i, int j) {
    double s = 0;
    for (int d = 0; d < DIM; d++) s += additive_scale[d] * tanh(query[b][i][d] + value[b][j][d]);
    return s;
}

/* Runs `layer` on the inputs and returns the largest |library - reference|. */
static double run(att_layer *layer, double (*score)(int, int, int)) {
    att_tensor q = {query, ATT_FLOAT32, {3, {B, TQ, DIM}}};
    att_tensor v = {value, ATT_FLOAT32, {3, {B, TV, DIM}}};
    att_tensor qm = {(void *)query_mask, ATT_UINT8, {2, {B, TQ}}};
    att_tensor vm = {(void *)value_mask, ATT_UINT8, {2, {B, TV}}};
    float out[B][TQ][DIM];
    att_tensor o = {out, ATT_FLOAT32, {3, {B, TQ, DIM}}};

    att_call_args args = {.struct_size = sizeof args};
    args.query = &q;
    args.value = &v; /* no key: the value is the key */
    args.query_mask = &qm;
    args.value_mask = &vm;
    args.output = &o;
    TRY(att_layer_call(layer, &args));

    double want[B][TQ][DIM], error = 0;
    reference(score, want);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < TQ; i++)
            for (int d = 0; d < DIM; d++) error = fmax(error, fabs(out[b][i][d] - want[b][i][d]));
    return error;
}

int main(void) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < TV; t++)
            for (int d = 0; d < DIM; d++) {
                if (t < TQ) query[b][t][d] = (float)sin(1.0 + b + 0.7 * t + 0.3 * d);
                value[b][t][d] = (float)cos(0.5 * b + 0.9 * t - 0.4 * d);
            }
    att_shape query_shape = {3, {B, TQ, DIM}}, value_shape = {3, {B, TV, DIM}};
    printf("libattention %s, %s kernels\n\n%-20s %s\n", att_version(), att_cpu_kernels(), "layer", "max abs error");

    /* keras.layers.Attention(use_scale=True), its scale set to 0.5. */
    att_layer *attention = NULL;
    att_attention_config attention_config = {.struct_size = sizeof attention_config, .dtype = ATT_FLOAT32,
                                             .use_scale = 1, .score_mode = ATT_SCORE_DOT};
    TRY(att_attention_create(&attention_config, &attention));
    TRY(att_layer_build(attention, &query_shape, &value_shape, NULL));
    float scale = (float)dot_scale;
    att_tensor scale_tensor = {&scale, ATT_FLOAT32, {0, {0}}}; /* weight 0, "scale": shape () */
    TRY(att_layer_set_weight(attention, 0, &scale_tensor));
    double attention_error = run(attention, dot_score);
    printf("%-20s %.3g\n", "Attention", attention_error);
    TRY(att_layer_destroy(attention));

    /* keras.layers.AdditiveAttention(use_scale=True), its scale (dim,) set by hand. */
    att_layer *additive = NULL;
    att_additive_attention_config additive_config = {.struct_size = sizeof additive_config,
                                                     .dtype = ATT_FLOAT32}; /* no_scale = 0: a scale */
    TRY(att_additive_attention_create(&additive_config, &additive));
    TRY(att_layer_build(additive, &query_shape, &value_shape, NULL));
    att_tensor additive_scale_tensor = {(void *)additive_scale, ATT_FLOAT32, {1, {DIM}}};
    TRY(att_layer_set_weight(additive, 0, &additive_scale_tensor));
    double additive_error = run(additive, additive_score);
    printf("%-20s %.3g\n", "AdditiveAttention", additive_error);
    TRY(att_layer_destroy(additive));

    /* float32 contract: 1e-5 absolute + 1e-4 relative; these outputs are at most 1 in size. */
    int ok = attention_error <= 1.1e-4 && additive_error <= 1.1e-4;
    printf("\n%s\n", ok ? "outputs match the reference" : "MISMATCH");
    return ok ? 0 : 1;
}
