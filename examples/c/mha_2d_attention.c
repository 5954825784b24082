/*
 * mha_2d_attention.c — 2D self-attention with MultiHeadAttention, from the Keras docs:
 *
 *   layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(2, 3))
 *   input_tensor = keras.Input(shape=[5, 3, 4, 16])
 *   output_tensor = layer(input_tensor, input_tensor)   # (None, 5, 3, 4, 16)
 *
 * Axis 1 (length 5) is a batch-like axis; attention runs over the 3 x 4 grid of axes 2 and 3,
 * jointly: each of the 12 grid positions attends to all 12 positions of its own (b, a) slice.
 * The program builds the layer, runs it on x of shape (2, 5, 3, 4, 16), prints the shapes of
 * the output and of the scores (B, 5, heads, 3, 4, 3, 4), and checks both against a plain C
 * loop that uses the layer's own weights (read back with att_layer_get_weight). Exits 1 on a
 * mismatch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"

enum { B = 2, A = 5, GRID_1 = 3, GRID_2 = 4, P = GRID_1 * GRID_2, D = 16, HEADS = 2, KEY_DIM = 2 };

#define TRY(call)                                                                               \
    do {                                                                                        \
        att_status status_ = (call);                                                            \
        if (status_ != ATT_OK) {                                                                \
            fprintf(stderr, "%s failed: %s: %s\n", #call, att_status_name(status_), att_last_error()); \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

static void print_shape(const char *name, att_shape s) {
    printf("%-14s (", name);
    for (int i = 0; i < s.rank; i++) printf(i ? ", %lld" : "%lld", (long long)s.dims[i]);
    printf(")\n");
}

/* The layer's weights in Keras order, as float arrays: query, key, value kernels (16, 2, 2)
 * and biases (2, 2); attention_output kernel (2, 2, 16) and bias (16,). */
static float weights[8][D * HEADS * KEY_DIM];
static const char *const weight_names[8] = {"query/kernel", "query/bias", "key/kernel", "key/bias",
                                            "value/kernel", "value/bias", "attention_output/kernel",
                                            "attention_output/bias"};

/* y[p][n][h] = sum_d x[p][d] * kernel[d][n][h] + bias[n][h], for the P positions of a slice. */
static void project(const float *x, const float *kernel, const float *bias, double y[P][HEADS][KEY_DIM]) {
    for (int p = 0; p < P; p++)
        for (int n = 0; n < HEADS; n++)
            for (int h = 0; h < KEY_DIM; h++) {
                double s = bias[n * KEY_DIM + h];
                for (int d = 0; d < D; d++) s += x[p * D + d] * kernel[(d * HEADS + n) * KEY_DIM + h];
                y[p][n][h] = s;
            }
}

/* Self-attention over the 12 grid positions of one (b, a) slice x (P, D): writes the output
 * (P, D) and the scores (HEADS, P, P) of that slice. */
static void reference_slice(const float *x, double *out, double *scores) {
    double q[P][HEADS][KEY_DIM], k[P][HEADS][KEY_DIM], v[P][HEADS][KEY_DIM], context[P][HEADS][KEY_DIM];
    project(x, weights[0], weights[1], q);
    project(x, weights[2], weights[3], k);
    project(x, weights[4], weights[5], v);
    for (int n = 0; n < HEADS; n++)
        for (int p = 0; p < P; p++) {
            double *w = scores + (n * P + p) * P, largest = -INFINITY, sum = 0;
            for (int r = 0; r < P; r++) {
                double s = 0;
                for (int h = 0; h < KEY_DIM; h++) s += q[p][n][h] / sqrt(KEY_DIM) * k[r][n][h];
                largest = fmax(largest, w[r] = s);
            }
            for (int r = 0; r < P; r++) sum += (w[r] = exp(w[r] - largest));
            for (int r = 0; r < P; r++) w[r] /= sum;
            for (int h = 0; h < KEY_DIM; h++) {
                context[p][n][h] = 0;
                for (int r = 0; r < P; r++) context[p][n][h] += w[r] * v[r][n][h];
            }
        }
    for (int p = 0; p < P; p++)
        for (int o = 0; o < D; o++) {
            double s = weights[7][o];
            for (int n = 0; n < HEADS; n++)
                for (int h = 0; h < KEY_DIM; h++) s += context[p][n][h] * weights[6][(n * KEY_DIM + h) * D + o];
            out[p * D + o] = s;
        }
}

/* The largest |got - want| over n elements, and whether it is within float32's contract
 * (1e-5 absolute + 1e-4 relative to the largest |want|). */
static int compare(const char *name, const float *got, const double *want, size_t n) {
    double error = 0, largest = 0;
    for (size_t i = 0; i < n; i++) {
        error = fmax(error, fabs(got[i] - want[i]));
        largest = fmax(largest, fabs(want[i]));
    }
    int ok = error <= 1e-5 + 1e-4 * largest;
    printf("%-14s max abs error %.3g (%s)\n", name, error, ok ? "ok" : "MISMATCH");
    return ok;
}

int main(void) {
    static float x[B * A * P * D], out[B * A * P * D], scores[B * A * HEADS * P * P];
    static double want_out[B * A * P * D], want_scores[B * A * HEADS * P * P];
    unsigned state = 12345;
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / (float)(1u << 24) * 2 - 1;
    }

    att_multi_head_attention_config config = {.struct_size = sizeof config};
    config.dtype = ATT_FLOAT32;
    config.num_heads = HEADS;
    config.key_dim = KEY_DIM;
    config.num_attention_axes = 2;
    config.attention_axes[0] = 2;
    config.attention_axes[1] = 3;
    config.seed = 7;
    /* Keras initialises biases to zeros; small random ones make the check cover them too. */
    config.bias_initializer = (att_initializer){ATT_INIT_RANDOM_UNIFORM, -0.1, 0.1};
    att_layer *layer = NULL;
    TRY(att_multi_head_attention_create(&config, &layer));
    att_shape x_shape = {5, {B, A, GRID_1, GRID_2, D}}, out_shape, scores_shape;
    TRY(att_layer_build(layer, &x_shape, &x_shape, NULL));
    TRY(att_layer_output_shape(layer, &x_shape, &x_shape, NULL, &out_shape, &scores_shape));
    print_shape("input", x_shape);
    print_shape("output", out_shape);
    print_shape("scores", scores_shape);

    att_tensor x_tensor = {x, ATT_FLOAT32, x_shape};
    att_tensor out_tensor = {out, ATT_FLOAT32, out_shape}, scores_tensor = {scores, ATT_FLOAT32, scores_shape};
    att_call_args args = {.struct_size = sizeof args};
    args.query = &x_tensor;
    args.value = &x_tensor;
    args.output = &out_tensor;
    args.scores = &scores_tensor;
    TRY(att_layer_call(layer, &args));

    size_t count = 0;
    TRY(att_layer_weight_count(layer, &count));
    if (count != 8) {
        fprintf(stderr, "expected 8 weights, the layer has %zu\n", count);
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        att_shape shape;
        const char *name = NULL;
        TRY(att_layer_weight_info(layer, i, &shape, &name));
        if (strcmp(name, weight_names[i]) != 0) {
            fprintf(stderr, "weight %zu is %s, expected %s\n", i, name, weight_names[i]);
            return 1;
        }
        att_tensor w = {weights[i], ATT_FLOAT32, shape};
        TRY(att_layer_get_weight(layer, i, &w));
    }
    TRY(att_layer_destroy(layer));

    /* Scores are laid out (B, A, HEADS, 3, 4, 3, 4): slice (b, a) owns HEADS * P * P of them. */
    for (int s = 0; s < B * A; s++)
        reference_slice(x + s * P * D, want_out + s * P * D, want_scores + s * HEADS * P * P);
    int ok = compare("output", out, want_out, sizeof out / sizeof out[0]);
    ok &= compare("scores", scores, want_scores, sizeof scores / sizeof scores[0]);
    return ok ? 0 : 1;
}
