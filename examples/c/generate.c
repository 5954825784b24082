/*
 * generate.c — greedy generation with a key/value cache, from C: a small stack of attention
 * layers (a toy decoder: random embeddings, sinusoidal positions, pre-norm residual layers
 * alternating MultiHeadAttention and GroupQueryAttention) generates tokens one at a time.
 * Each layer keeps its keys and values in a cache buffer of its own (B, 2, S_max, K, H) that
 * att_layer_call updates in place (att_call_args.cache, cache_update_index); with
 * use_causal_mask a step projects only the new token and reads only the filled part of the
 * cache. The layers hold no state: the caches are the program's.
 *
 *   cc examples/c/generate.c -Iinclude -L.build/release -Wl,-rpath,$PWD/.build/release -lattention -lm
 *   ./a.out [tokens (2048)] [layers (4)] [dim (256)]
 *
 * Prints the prefill time, the decode speed in tokens/s, and checks the last hidden state
 * against the same stack called on the whole sequence without a cache.
 */
#define _POSIX_C_SOURCE 199309L
#include <attention.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { VOCAB = 512, PROMPT = 32, HEADS = 8, KV_HEADS = 2, MAX_LAYERS = 16 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, att_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, att_status_name(s), att_last_error());
    exit(1);
}

static void *zeroed(size_t count, size_t size) {
    void *p = calloc(count, size);
    if (!p) {
        perror("calloc");
        exit(1);
    }
    return p;
}

/* Uniform in [-1, 1) from a splitmix64 state. */
static float uniform(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (float)((double)((z ^ (z >> 31)) >> 11) * 0x1p-52 - 1.0);
}

/* h[t] = embedding of tokens[t] + the sinusoidal signal of position start + t. */
static void embed(const float *embedding, const int *tokens, int count, int start, int dim, float *h) {
    for (int t = 0; t < count; t++)
        for (int d = 0; d < dim; d += 2) {
            double rate = pow(10000.0, -(double)d / dim), p = (double)(start + t);
            h[t * dim + d] = embedding[tokens[t] * dim + d] + (float)sin(p * rate);
            h[t * dim + d + 1] = embedding[tokens[t] * dim + d + 1] + (float)cos(p * rate);
        }
}

/* x[t] = h[t] / rms(h[t]). */
static void rms_norm(const float *h, int count, int dim, float *x) {
    for (int t = 0; t < count; t++) {
        double sum = 0;
        for (int d = 0; d < dim; d++) sum += (double)h[t * dim + d] * h[t * dim + d];
        float scale = (float)(1.0 / sqrt(sum / dim + 1e-6));
        for (int d = 0; d < dim; d++) x[t * dim + d] = h[t * dim + d] * scale;
    }
}

typedef struct {
    att_layer *layers[MAX_LAYERS];
    float *caches[MAX_LAYERS];
    int64_t kv_heads[MAX_LAYERS];
    int count, dim, head_dim, max_length;
    float *x, *y; /* scratch: normed input and layer output, max_length x dim */
} stack;

/* The stack on h (count tokens at positions start ...), in place; with caches when `cached`,
 * else the plain causal call on the whole h (start must be 0). */
static void run(stack *s, float *h, int count, int start, int cached) {
    att_tensor x = {s->x, ATT_FLOAT32, {3, {1, count, s->dim}}};
    att_tensor y = {s->y, ATT_FLOAT32, {3, {1, count, s->dim}}};
    for (int l = 0; l < s->count; l++) {
        rms_norm(h, count, s->dim, s->x);
        att_tensor cache = {s->caches[l], ATT_FLOAT32, {5, {1, 2, s->max_length, s->kv_heads[l], s->head_dim}}};
        int64_t index = start;
        att_call_args args = {.struct_size = sizeof args, .query = &x, .value = &x, .output = &y,
                              .use_causal_mask = 1};
        if (cached) {
            args.cache = &cache;
            args.cache_update_index = &index;
            args.cache_update_index_count = 1;
        }
        att_status st = att_layer_call(s->layers[l], &args);
        if (st != ATT_OK) die("att_layer_call", st);
        for (int e = 0; e < count * s->dim; e++) h[e] += s->y[e];
    }
}

static int next_token(const float *embedding, const float *h_last, int dim, float *scratch) {
    rms_norm(h_last, 1, dim, scratch);
    int best = 0;
    float best_logit = -INFINITY;
    for (int v = 0; v < VOCAB; v++) {
        float logit = 0;
        for (int d = 0; d < dim; d++) logit += scratch[d] * embedding[v * dim + d];
        if (logit > best_logit) best_logit = logit, best = v;
    }
    return best;
}

int main(int argc, char **argv) {
    int tokens = argc > 1 ? atoi(argv[1]) : 2048, count = argc > 2 ? atoi(argv[2]) : 4;
    int dim = argc > 3 ? atoi(argv[3]) : 256;
    if (tokens <= PROMPT + 1 || count < 1 || count > MAX_LAYERS || dim < HEADS * 2 || dim % (HEADS * 2)) {
        fprintf(stderr, "usage: %s [tokens > %d] [layers 1..%d] [dim, a multiple of %d]\n", argv[0], PROMPT + 1,
                MAX_LAYERS, HEADS * 2);
        return 2;
    }
    stack s = {.count = count, .dim = dim, .head_dim = dim / HEADS, .max_length = tokens};
    s.x = zeroed((size_t)tokens * dim, sizeof(float));
    s.y = zeroed((size_t)tokens * dim, sizeof(float));
    uint64_t rng = 1;
    float *embedding = zeroed((size_t)VOCAB * dim, sizeof(float));
    for (int i = 0; i < VOCAB * dim; i++) embedding[i] = uniform(&rng) * 1.7f;
    for (int l = 0; l < count; l++) {
        att_status st;
        if (l % 2 == 0) {
            att_multi_head_attention_config c = {.struct_size = sizeof c, .num_heads = HEADS, .key_dim = s.head_dim,
                                                 .seed = (uint64_t)l};
            st = att_multi_head_attention_create(&c, &s.layers[l]);
            s.kv_heads[l] = HEADS;
        } else {
            att_group_query_attention_config c = {.struct_size = sizeof c, .head_dim = s.head_dim,
                                                  .num_query_heads = HEADS, .num_key_value_heads = KV_HEADS,
                                                  .seed = (uint64_t)l};
            st = att_group_query_attention_create(&c, &s.layers[l]);
            s.kv_heads[l] = KV_HEADS;
        }
        if (st != ATT_OK) die("create", st);
        att_shape shape = {3, {1, 1, dim}};
        if ((st = att_layer_build(s.layers[l], &shape, &shape, NULL)) != ATT_OK) die("att_layer_build", st);
        s.caches[l] = zeroed((size_t)2 * tokens * s.kv_heads[l] * s.head_dim, sizeof(float));
    }

    int *sequence = zeroed((size_t)tokens, sizeof(int));
    for (int t = 0; t < PROMPT; t++) sequence[t] = (int)((uniform(&rng) + 1) * 0.5f * VOCAB) % VOCAB;
    float *h = zeroed((size_t)tokens * dim, sizeof(float)), *scratch = zeroed((size_t)dim, sizeof(float));
    double t0 = now();
    embed(embedding, sequence, PROMPT, 0, dim, h);
    run(&s, h, PROMPT, 0, 1);
    double prefill = now() - t0;
    sequence[PROMPT] = next_token(embedding, h + (PROMPT - 1) * dim, dim, scratch);
    float *last = zeroed((size_t)dim, sizeof(float));
    t0 = now();
    for (int length = PROMPT + 1; length < tokens; length++) {
        embed(embedding, sequence + length - 1, 1, length - 1, dim, last);
        run(&s, last, 1, length - 1, 1);
        sequence[length] = next_token(embedding, last, dim, scratch);
    }
    double decode = now() - t0;
    int generated = tokens - PROMPT - 1;

    /* The same stack on the whole sequence (but its last token), without a cache. */
    embed(embedding, sequence, tokens - 1, 0, dim, h);
    run(&s, h, tokens - 1, 0, 0);
    double error = 0;
    for (int d = 0; d < dim; d++) error = fmax(error, fabs((double)h[(tokens - 2) * dim + d] - last[d]));

    printf("libattention %s (%s kernels): %d layers (MultiHeadAttention %dx%d / GroupQueryAttention %d/%dx%d), dim %d\n",
           att_version(), att_cpu_kernels(), count, HEADS, s.head_dim, HEADS, KV_HEADS, s.head_dim, dim);
    printf("prefill %d tokens: %.1f ms\n", PROMPT, prefill * 1e3);
    printf("decode %d tokens to length %d: %.2f s, %.0f tokens/s (%.3f ms a token)\n", generated, tokens, decode,
           generated / decode, decode / generated * 1e3);
    printf("last hidden state vs the stack on the whole sequence without a cache: max |error| %.1e\n", error);
    for (int l = 0; l < count; l++) {
        att_layer_destroy(s.layers[l]);
        free(s.caches[l]);
    }
    free(s.x), free(s.y), free(embedding), free(sequence), free(h), free(scratch), free(last);
    return error < 1e-3 ? 0 : 1;
}
