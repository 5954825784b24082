/*
 * train_mha.c — train a MultiHeadAttention layer with plain SGD: learn to reverse a sequence.
 *
 * The task (as examples/python/train_mha.py). A sequence holds T = 8 tokens drawn from a
 * vocabulary of V = 8. Each position's input vector (D = 16) is its token's embedding plus
 * a fixed positional encoding,
 *
 *   x[t] = E[token[t]] + P[t]      E[v] = one-hot v in dims 0..7,
 *                                  P[t] = 2 * one-hot t in dims 8..15,
 *
 * and the target at position t is E[token[T-1-t]], the sequence reversed. One self-attention
 * layer (query = value = x) can do this exactly: query and key learn to make position t attend
 * to position T-1-t, the value and output projections carry that position's token through.
 *
 * Each step, on a fresh batch of 32 random sequences:
 *   att_layer_call                         output = layer(x, x)
 *   loss = mean((output - target)^2),      dL/d(output) = 2 (output - target) / output size
 *   att_layer_backward                     dL/d(weight i) for every weight, with the gradient
 *                                          of the l2 kernel_regularizer's penalty added
 *   att_layer_get_weight / _set_weight     w -= lr * dL/dw
 *   att_layer_apply_constraints            the max_norm kernel_constraint, as Keras's
 *                                          optimizers apply it after each update
 *
 * Prints the loss on a fixed evaluation set of 256 sequences every 100 steps (with the l2
 * penalty from att_layer_losses and the token accuracy) and exits 0 only when the evaluation
 * loss fell at least 20x (1 otherwise, 2 when a library call fails).
 *
 *   make demo
 *   cc -std=c11 -O2 -Iinclude examples/c/train_mha.c -L.build/release -lattention \
 *      -Wl,-rpath,$PWD/.build/release -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attention.h"

enum { BATCH = 32, EVAL_BATCH = 256, T = 8, V = 8, D = 16, HEADS = 2, KEY_DIM = 8, STEPS = 1000,
       MAX_WEIGHTS = 8 };

static const double position_scale = 2.0; /* P[t] = 2 * one-hot: sharper positional scores */
static const float learning_rate = 2.0f;  /* for the MSE averaged over every output element */
static const double l2 = 1e-5, max_norm = 2.0;
static const double required_drop = 20.0; /* the evaluation loss must fall at least this much */

#define TRY(call)                                                                               \
    do {                                                                                        \
        att_status status_ = (call);                                                            \
        if (status_ != ATT_OK) {                                                                \
            fprintf(stderr, "%s failed: %s: %s\n", #call, att_status_name(status_), att_last_error()); \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

/* splitmix64: a small deterministic generator, enough for drawing tokens. */
static uint64_t rng_state = 0x2024;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* Fills x and target (n, T, D) with n random sequences; tokens[b][t] = the target token. */
static void make_batch(int n, float *x, float *target, int *tokens) {
    memset(x, 0, sizeof(float) * (size_t)n * T * D);
    memset(target, 0, sizeof(float) * (size_t)n * T * D);
    int sequence[T];
    for (int b = 0; b < n; b++) {
        for (int t = 0; t < T; t++) sequence[t] = (int)(next_random() % V);
        for (int t = 0; t < T; t++) {
            float *xt = x + ((size_t)b * T + t) * D, *yt = target + ((size_t)b * T + t) * D;
            xt[sequence[t]] = 1.0f;
            xt[V + t] += (float)position_scale;
            yt[sequence[T - 1 - t]] = 1.0f;
            tokens[b * T + t] = sequence[T - 1 - t];
        }
    }
}

static att_tensor tensor3(float *data, int n) {
    att_tensor t = {data, ATT_FLOAT32, {3, {n, T, D}}};
    return t;
}

/* output = layer(x, x) for n sequences. */
static void forward(const att_layer *layer, float *x, float *output, int n) {
    att_tensor xt = tensor3(x, n), ot = tensor3(output, n);
    att_call_args args = {.struct_size = sizeof args, .query = &xt, .value = &xt, .output = &ot};
    TRY(att_layer_call(layer, &args));
}

/* Mean squared error of output against target over n sequences; with `gradient`, also
 * writes dL/d(output) = 2 (output - target) / size there. */
static double mse(const float *output, const float *target, int n, float *gradient) {
    size_t size = (size_t)n * T * D;
    double sum = 0;
    for (size_t i = 0; i < size; i++) {
        double error = (double)output[i] - target[i];
        sum += error * error;
        if (gradient) gradient[i] = (float)(2 * error / (double)size);
    }
    return sum / (double)size;
}

/* The sum of att_layer_losses: the l2 penalty of the kernels' current values. */
static double penalty(const att_layer *layer) {
    double losses[MAX_WEIGHTS];
    size_t count = 0;
    TRY(att_layer_losses(layer, NULL, losses, MAX_WEIGHTS, &count));
    double sum = 0;
    for (size_t i = 0; i < count && i < MAX_WEIGHTS; i++) sum += losses[i];
    return sum;
}

/* The fraction of positions whose largest token output (dims 0..V-1) is the target token. */
static double accuracy(const float *output, const int *tokens, int n) {
    int right = 0;
    for (int i = 0; i < n * T; i++) {
        const float *o = output + (size_t)i * D;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (o[v] > o[best]) best = v;
        right += best == tokens[i];
    }
    return (double)right / (n * T);
}

static double seconds(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t elements(att_shape s) {
    size_t n = 1;
    for (int i = 0; i < s.rank; i++) n *= (size_t)s.dims[i];
    return n;
}

int main(void) {
    /* keras.layers.MultiHeadAttention(2, 8, kernel_regularizer=l2(1e-5),
     *                                 kernel_constraint=max_norm(2.0)) */
    att_multi_head_attention_config config = {.struct_size = sizeof config, .dtype = ATT_FLOAT32,
                                              .num_heads = HEADS, .key_dim = KEY_DIM,
                                              .seed = 1};
    config.kernel_regularizer = (att_regularizer){.kind = ATT_REG_L2, .l2 = l2};
    config.kernel_constraint = (att_constraint){.kind = ATT_CONSTRAINT_MAX_NORM, .max_value = max_norm,
                                                .axis = 0};
    att_layer *layer = NULL;
    TRY(att_multi_head_attention_create(&config, &layer));
    att_shape shape = {3, {BATCH, T, D}};
    TRY(att_layer_build(layer, &shape, &shape, NULL));

    /* The weights (get_weights() order), a buffer for each and one for each gradient. */
    size_t count = 0;
    TRY(att_layer_weight_count(layer, &count));
    if (count > MAX_WEIGHTS) {
        fprintf(stderr, "unexpected weight count %zu\n", count);
        return 2;
    }
    att_tensor weights[MAX_WEIGHTS], gradients[MAX_WEIGHTS];
    printf("libattention %s: MultiHeadAttention(num_heads=%d, key_dim=%d), float32, learning to "
           "reverse sequences of %d tokens\nweights:", att_version(), HEADS, KEY_DIM, T);
    for (size_t i = 0; i < count; i++) {
        att_shape s;
        const char *name;
        TRY(att_layer_weight_info(layer, i, &s, &name));
        weights[i] = (att_tensor){malloc(sizeof(float) * elements(s)), ATT_FLOAT32, s};
        gradients[i] = (att_tensor){malloc(sizeof(float) * elements(s)), ATT_FLOAT32, s};
        if (!weights[i].data || !gradients[i].data) return 2;
        printf(" %s (", name);
        for (int r = 0; r < s.rank; r++) printf(r ? ", %lld" : "%lld", (long long)s.dims[r]);
        printf(")%s", i + 1 < count ? "," : "\n\n");
    }

    static float eval_x[EVAL_BATCH * T * D], eval_target[EVAL_BATCH * T * D], eval_output[EVAL_BATCH * T * D];
    static int eval_tokens[EVAL_BATCH * T], batch_tokens[BATCH * T];
    static float x[BATCH * T * D], target[BATCH * T * D], output[BATCH * T * D], d_output[BATCH * T * D];
    make_batch(EVAL_BATCH, eval_x, eval_target, eval_tokens);

    att_tensor xt = tensor3(x, BATCH), dt = tensor3(d_output, BATCH);
    att_call_args args = {.struct_size = sizeof args, .query = &xt, .value = &xt, .output = NULL};
    att_gradient_args grads = {.struct_size = sizeof grads, .output_gradient = &dt,
                               .weight_gradients = gradients, .include_regularization = 1};

    printf("%6s %10s %10s %11s %9s\n", "step", "eval MSE", "batch MSE", "l2 penalty", "accuracy");
    double initial = 0, final = 0, batch_loss = -1, start = seconds();
    for (int step = 0; step <= STEPS; step++) {
        if (step % 100 == 0) {
            forward(layer, eval_x, eval_output, EVAL_BATCH);
            final = mse(eval_output, eval_target, EVAL_BATCH, NULL);
            if (step == 0) initial = final;
            char shown[32] = "-";
            if (batch_loss >= 0) snprintf(shown, sizeof shown, "%.6f", batch_loss);
            printf("%6d %10.6f %10s %11.6f %8.1f%%\n", step, final, shown, penalty(layer),
                   100 * accuracy(eval_output, eval_tokens, EVAL_BATCH));
        }
        if (step == STEPS) break;

        make_batch(BATCH, x, target, batch_tokens);
        forward(layer, x, output, BATCH);
        batch_loss = mse(output, target, BATCH, d_output);
        /* The backward runs the forward again (args.output NULL: not kept) with these inputs. */
        TRY(att_layer_backward(layer, &args, &grads));
        for (size_t i = 0; i < count; i++) {
            float *w = weights[i].data;
            const float *g = gradients[i].data;
            TRY(att_layer_get_weight(layer, i, &weights[i]));
            for (size_t k = 0, n = elements(weights[i].shape); k < n; k++) w[k] -= learning_rate * g[k];
            TRY(att_layer_set_weight(layer, i, &weights[i]));
        }
        TRY(att_layer_apply_constraints(layer));
    }
    double elapsed = seconds() - start;

    double drop = initial / final;
    printf("\n%d steps in %.2f s; eval MSE %.6f -> %.6f (%.0fx lower), token accuracy %.1f%%\n", STEPS,
           elapsed, initial, final, drop, 100 * accuracy(eval_output, eval_tokens, EVAL_BATCH));
    int ok = drop >= required_drop; /* NaN fails too */
    if (ok)
        printf("trained\n");
    else
        printf("FAILED: the loss fell less than %.0fx\n", required_drop);

    for (size_t i = 0; i < count; i++) {
        free(weights[i].data);
        free(gradients[i].data);
    }
    TRY(att_layer_destroy(layer));
    return ok ? 0 : 1;
}
