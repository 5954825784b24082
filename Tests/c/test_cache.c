/*
 * test_cache.c — the key/value cache of MultiHeadAttention and GroupQueryAttention through
 * att_layer_call (att_call_args.cache, cache_update_index, cache_update_index_count), as a C
 * decoder uses it:
 *   - prefill then tokens one by one (and a two-token step), with use_causal_mask: every
 *     step's output equals the rows of the same layer called on the whole prefix with
 *     use_causal_mask (float64 1e-10, float32 the usual tolerance); gate and sliding window;
 *     the unfilled part of the cache holds NaN and is never read or written;
 *   - ragged batches (one index per row) = each sequence alone;
 *   - keras_hub's form (a (B, T, S_max) attention_mask instead of use_causal_mask) = the
 *     causal form; a static cache (no index) is only read;
 *   - only the new rows of the cache are written; one layer, four threads, four caches =
 *     serial, bit for bit; att_layer_losses takes a cached call;
 *   - att_call_args of the sizes before the cache fields (112 bytes) and between;
 *   - every bad input: a status and a message, never a crash.
 * Prints `N passed, N failed`.
 */
#include "check.h"

#include <pthread.h>

static const att_dtype DTYPES[2] = {ATT_FLOAT32, ATT_FLOAT64};

/* A layer of one of the two kinds; heads (query), kv (key/value) heads, h (key_dim). */
typedef struct {
    int gqa;
    int64_t heads, kv, h, window, dim;
    int gate, no_bias;
} layer_spec;

static att_layer *make_layer(layer_spec s, att_dtype dtype, int64_t batch, int64_t t) {
    att_layer *layer = NULL;
    if (s.gqa) {
        att_group_query_attention_config c = {.struct_size = sizeof c, .dtype = dtype, .head_dim = s.h,
                                              .num_query_heads = s.heads, .num_key_value_heads = s.kv,
                                              .sliding_window = s.window, .use_gate = s.gate, .no_bias = s.no_bias,
                                              .seed = 7};
        expect(att_group_query_attention_create(&c, &layer), ATT_OK, "", "create GQA");
    } else {
        att_multi_head_attention_config c = {.struct_size = sizeof c, .dtype = dtype, .num_heads = s.heads,
                                             .key_dim = s.h, .sliding_window = s.window, .use_gate = s.gate,
                                             .no_bias = s.no_bias, .seed = 7};
        expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "create MHA");
    }
    att_shape x = SHAPE(batch, t, s.dim);
    expect(att_layer_build(layer, &x, &x, NULL), ATT_OK, "", "build");
    return layer;
}

/* x[:, from:from+t] of a (B, L, D) tensor, as a new tensor. */
static att_tensor rows_of(const att_tensor *x, int64_t from, int64_t t) {
    int64_t b = x->shape.dims[0], l = x->shape.dims[1], d = x->shape.dims[2];
    att_tensor r = new_tensor(x->dtype, SHAPE(b, t, d), NULL);
    size_t size = dtype_size(x->dtype);
    for (int64_t i = 0; i < b; i++)
        memcpy((char *)r.data + (size_t)(i * t * d) * size, (char *)x->data + (size_t)((i * l + from) * d) * size,
               (size_t)(t * d) * size);
    return r;
}

/* A cache (B, 2, S, K, H) filled with NaN. */
static att_tensor nan_cache(att_dtype dt, int64_t b, int64_t s, int64_t k, int64_t h) {
    att_tensor c = new_tensor(dt, SHAPE(b, 2, s, k, h), NULL);
    for (int64_t i = 0; i < numel(c.shape); i++) {
        if (dt == ATT_FLOAT64) ((double *)c.data)[i] = NAN;
        else ((float *)c.data)[i] = NAN;
    }
    return c;
}

/* Whether every element of batch row `row` of the cache at positions >= from is NaN. */
static int tail_is_nan(const att_tensor *c, int64_t row, int64_t from) {
    int64_t s = c->shape.dims[2], w = c->shape.dims[3] * c->shape.dims[4];
    for (int half = 0; half < 2; half++)
        for (int64_t j = from; j < s; j++)
            for (int64_t e = 0; e < w; e++)
                if (!isnan(tensor_at(c, (size_t)(((row * 2 + half) * s + j) * w + e)))) return 0;
    return 1;
}

/* The output of `layer` on the whole prefix x[:, :len] with use_causal_mask: (B, len, D). */
static double *prefix_output(att_layer *layer, const att_tensor *x, int64_t len) {
    att_tensor p = rows_of(x, 0, len), out = new_tensor(x->dtype, p.shape, NULL);
    att_call_args a = {.struct_size = sizeof a, .query = &p, .value = &p, .use_causal_mask = 1, .output = &out};
    expect(att_layer_call(layer, &a), ATT_OK, "", "the whole prefix");
    double *values = malloc((size_t)numel(out.shape) * sizeof(double));
    for (int64_t i = 0; i < numel(out.shape); i++) values[i] = tensor_at(&out, (size_t)i);
    free(p.data);
    free(out.data);
    return values;
}

/* want[b, 0:t] = full[b, from:from+t] of (B, L, D) values. */
static double *slice_rows(const double *full, int64_t b, int64_t l, int64_t d, int64_t from, int64_t t) {
    double *r = malloc((size_t)(b * t * d) * sizeof(double));
    for (int64_t i = 0; i < b; i++) memcpy(r + i * t * d, full + (i * l + from) * d, (size_t)(t * d) * sizeof(double));
    return r;
}

static const layer_spec SPECS[] = {
    {.gqa = 0, .heads = 2, .kv = 2, .h = 4, .dim = 6},
    {.gqa = 0, .heads = 3, .kv = 3, .h = 16, .dim = 10, .gate = 1, .window = 3},
    {.gqa = 1, .heads = 4, .kv = 2, .h = 8, .dim = 8},
    {.gqa = 1, .heads = 6, .kv = 1, .h = 5, .dim = 7, .gate = 1, .no_bias = 1, .window = 4},
    {.gqa = 1, .heads = 8, .kv = 8, .h = 32, .dim = 12},
};

static void steps_equal_prefix(void) {
    enum { B = 2, L = 11, S = 14 };
    const int64_t schedule[] = {4, 1, 1, 2, 1, 1, 1};
    for (size_t si = 0; si < sizeof SPECS / sizeof SPECS[0]; si++) {
        for (int d = 0; d < 2; d++) {
            layer_spec s = SPECS[si];
            att_dtype dt = DTYPES[d];
            char what[160];
            uint64_t rng = 100 + si;
            att_layer *layer = make_layer(s, dt, B, L);
            att_tensor x = random_tensor(dt, SHAPE(B, L, s.dim), &rng);
            double *full = prefix_output(layer, &x, L);
            att_tensor cache = nan_cache(dt, B, S, s.kv, s.h);
            int64_t p = 0;
            for (size_t k = 0; k < sizeof schedule / sizeof schedule[0]; k++) {
                int64_t t = schedule[k];
                att_tensor in = rows_of(&x, p, t), out = new_tensor(dt, in.shape, NULL);
                int64_t index = p;
                att_call_args a = {.struct_size = sizeof a, .query = &in, .value = &in, .use_causal_mask = 1,
                                   .output = &out, .cache = &cache, .cache_update_index = &index,
                                   .cache_update_index_count = 1};
                snprintf(what, sizeof what, "%s %s spec %zu step at %lld", s.gqa ? "GQA" : "MHA", dtype_name(dt), si,
                         (long long)p);
                expect(att_layer_call(layer, &a), ATT_OK, "", what);
                double *want = slice_rows(full, B, L, s.dim, p, t);
                check_close(what, &out, want, (size_t)numel(out.shape));
                free(want);
                free(in.data);
                free(out.data);
                p += t;
            }
            for (int64_t row = 0; row < B; row++)
                check(tail_is_nan(&cache, row, p), "%s: the cache past %lld was written", what, (long long)p);
            free(full);
            free(x.data);
            free(cache.data);
            att_layer_destroy(layer);
        }
    }
}

/* One index per batch row: rows at lengths 1, 6, 3 step together; each equals the layer on
 * its own prefix (B = 1); nothing past a row's filled part is read or written. */
static void ragged_batch(void) {
    enum { B = 3, L = 10, S = 12 };
    const int64_t lengths[B] = {1, 6, 3};
    for (size_t si = 0; si < sizeof SPECS / sizeof SPECS[0]; si++) {
        for (int d = 0; d < 2; d++) {
            layer_spec s = SPECS[si];
            att_dtype dt = DTYPES[d];
            uint64_t rng = 200 + si;
            att_layer *layer = make_layer(s, dt, B, L);
            att_tensor x = random_tensor(dt, SHAPE(B, L, s.dim), &rng);
            att_tensor cache = nan_cache(dt, B, S, s.kv, s.h);
            size_t size = dtype_size(dt), rowBytes = (size_t)(2 * S * s.kv * s.h) * size;
            for (int64_t row = 0; row < B; row++) {  /* prefill each row alone, into its part of the cache */
                att_tensor one = {(char *)x.data + (size_t)(row * L * s.dim) * size, dt, SHAPE(1, L, s.dim)};
                att_tensor in = rows_of(&one, 0, lengths[row]), out = new_tensor(dt, in.shape, NULL);
                att_tensor part = {(char *)cache.data + (size_t)row * rowBytes, dt, SHAPE(1, 2, S, s.kv, s.h)};
                int64_t zero = 0;
                att_call_args a = {.struct_size = sizeof a, .query = &in, .value = &in, .use_causal_mask = 1,
                                   .output = &out, .cache = &part, .cache_update_index = &zero,
                                   .cache_update_index_count = 1};
                expect(att_layer_call(layer, &a), ATT_OK, "", "prefill one row");
                free(in.data);
                free(out.data);
            }
            int64_t position[B];
            memcpy(position, lengths, sizeof position);
            for (int step = 0; step < 3; step++) {
                att_tensor token = new_tensor(dt, SHAPE(B, 1, s.dim), NULL), out = new_tensor(dt, token.shape, NULL);
                for (int64_t row = 0; row < B; row++)
                    memcpy((char *)token.data + (size_t)(row * s.dim) * size,
                           (char *)x.data + (size_t)((row * L + position[row]) * s.dim) * size, (size_t)s.dim * size);
                att_call_args a = {.struct_size = sizeof a, .query = &token, .value = &token, .use_causal_mask = 1,
                                   .output = &out, .cache = &cache, .cache_update_index = position,
                                   .cache_update_index_count = B};
                expect(att_layer_call(layer, &a), ATT_OK, "", "ragged step");
                for (int64_t row = 0; row < B; row++) {
                    att_tensor one = {(char *)x.data + (size_t)(row * L * s.dim) * size, dt, SHAPE(1, L, s.dim)};
                    double *full = prefix_output(layer, &one, position[row] + 1);
                    att_tensor got = {(char *)out.data + (size_t)(row * s.dim) * size, dt, SHAPE(1, 1, s.dim)};
                    char what[160];
                    snprintf(what, sizeof what, "%s %s spec %zu ragged row %lld at %lld", s.gqa ? "GQA" : "MHA",
                             dtype_name(dt), si, (long long)row, (long long)position[row]);
                    check_close(what, &got, full + position[row] * s.dim, (size_t)s.dim);
                    free(full);
                }
                for (int64_t row = 0; row < B; row++) position[row]++;
                free(token.data);
                free(out.data);
            }
            for (int64_t row = 0; row < B; row++)
                check(tail_is_nan(&cache, row, position[row]), "ragged: row %lld's cache past %lld was touched",
                      (long long)row, (long long)position[row]);
            free(x.data);
            free(cache.data);
            att_layer_destroy(layer);
        }
    }
}

/* keras_hub's call: a (B, T, S_max) attention_mask (j <= p + i), no use_causal_mask, a zeroed
 * cache: the same outputs as the causal form. A static cache (no index) is never written. */
static void keras_hub_form(void) {
    enum { B = 2, L = 7, S = 9 };
    for (int d = 0; d < 2; d++) {
        att_dtype dt = DTYPES[d];
        layer_spec s = SPECS[2];
        uint64_t rng = 300;
        att_layer *layer = make_layer(s, dt, B, L);
        att_tensor x = random_tensor(dt, SHAPE(B, L, s.dim), &rng);
        att_tensor a_cache = new_tensor(dt, SHAPE(B, 2, S, s.kv, s.h), NULL);
        att_tensor c_cache = new_tensor(dt, SHAPE(B, 2, S, s.kv, s.h), NULL);
        int64_t p = 0;
        const int64_t schedule[] = {3, 1, 2, 1};
        for (size_t k = 0; k < 4; k++) {
            int64_t t = schedule[k];
            att_tensor in = rows_of(&x, p, t);
            att_tensor out_mask = new_tensor(dt, in.shape, NULL), out_causal = new_tensor(dt, in.shape, NULL);
            uint8_t *m = calloc((size_t)(B * t * S), 1);
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < t; i++)
                    for (int64_t j = 0; j <= p + i; j++) m[(b * t + i) * S + j] = 1;
            att_tensor mask = mask_tensor(m, SHAPE(B, t, S));
            int64_t index = p;
            att_call_args a = {.struct_size = sizeof a, .query = &in, .value = &in, .attention_mask = &mask,
                               .output = &out_mask, .cache = &a_cache, .cache_update_index = &index,
                               .cache_update_index_count = 1};
            expect(att_layer_call(layer, &a), ATT_OK, "", "keras_hub form");
            att_call_args c = {.struct_size = sizeof c, .query = &in, .value = &in, .use_causal_mask = 1,
                               .output = &out_causal, .cache = &c_cache, .cache_update_index = &index,
                               .cache_update_index_count = 1};
            expect(att_layer_call(layer, &c), ATT_OK, "", "causal form");
            double *want = malloc((size_t)numel(in.shape) * sizeof(double));
            for (int64_t i = 0; i < numel(in.shape); i++) want[i] = tensor_at(&out_causal, (size_t)i);
            check_close(dt == ATT_FLOAT64 ? "mask = causal (float64)" : "mask = causal (float32)", &out_mask, want,
                        (size_t)numel(in.shape));
            free(want);
            free(m);
            free(in.data);
            free(out_mask.data);
            free(out_causal.data);
            p += t;
        }
        check(memcmp(a_cache.data, c_cache.data, (size_t)numel(a_cache.shape) * dtype_size(dt)) == 0,
              "both forms write the same cache");
        /* A static cache: read, never written; value not read (NaN there changes nothing). */
        att_tensor before = new_tensor(dt, a_cache.shape, NULL);
        memcpy(before.data, a_cache.data, (size_t)numel(a_cache.shape) * dtype_size(dt));
        att_tensor q = rows_of(&x, 0, 2), out1 = new_tensor(dt, q.shape, NULL), out2 = new_tensor(dt, q.shape, NULL);
        att_tensor nan_value = nan_cache(dt, B, 1, 1, s.dim);
        nan_value.shape = SHAPE(B, 1, s.dim);
        att_call_args st = {.struct_size = sizeof st, .query = &q, .value = &q, .output = &out1, .cache = &a_cache};
        expect(att_layer_call(layer, &st), ATT_OK, "", "static cache");
        st.value = &nan_value;
        st.output = &out2;
        expect(att_layer_call(layer, &st), ATT_OK, "", "static cache, value of NaN");
        check(memcmp(out1.data, out2.data, (size_t)numel(q.shape) * dtype_size(dt)) == 0,
              "a static cache's call does not read value");
        check(memcmp(before.data, a_cache.data, (size_t)numel(a_cache.shape) * dtype_size(dt)) == 0,
              "a static cache is not written");
        free(before.data);
        free(q.data);
        free(out1.data);
        free(out2.data);
        free(nan_value.data);
        free(x.data);
        free(a_cache.data);
        free(c_cache.data);
        att_layer_destroy(layer);
    }
}

/* Only rows p .. p + T - 1 of each batch row's keys and values change; losses take the call. */
static void writes_only_new_rows(void) {
    enum { B = 2, T = 3, S = 8, P = 4 };
    layer_spec s = SPECS[0];
    uint64_t rng = 400;
    att_multi_head_attention_config c = {.struct_size = sizeof c, .dtype = ATT_FLOAT64, .num_heads = s.heads,
                                         .key_dim = s.h, .seed = 3};
    c.activity_regularizer = (att_regularizer){ATT_REG_L2, 0, 0.01};
    att_layer *layer = NULL;
    expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "create");
    att_shape xs = SHAPE(B, T, s.dim);
    expect(att_layer_build(layer, &xs, &xs, NULL), ATT_OK, "", "build");
    att_tensor x = random_tensor(ATT_FLOAT64, xs, &rng), out = new_tensor(ATT_FLOAT64, xs, NULL);
    att_tensor cache = random_tensor(ATT_FLOAT64, SHAPE(B, 2, S, s.kv, s.h), &rng);
    att_tensor before = new_tensor(ATT_FLOAT64, cache.shape, NULL);
    memcpy(before.data, cache.data, (size_t)numel(cache.shape) * 8);
    int64_t index = P;
    att_call_args a = {.struct_size = sizeof a, .query = &x, .value = &x, .output = &out, .cache = &cache,
                       .cache_update_index = &index, .cache_update_index_count = 1, .use_causal_mask = 1};
    expect(att_layer_call(layer, &a), ATT_OK, "", "update");
    int64_t w = s.kv * s.h, changed_outside = 0, unchanged_inside = 0;
    for (int64_t b = 0; b < B; b++)
        for (int half = 0; half < 2; half++)
            for (int64_t j = 0; j < S; j++)
                for (int64_t e = 0; e < w; e++) {
                    size_t i = (size_t)(((b * 2 + half) * S + j) * w + e);
                    int same = ((double *)cache.data)[i] == ((double *)before.data)[i];
                    if (j >= P && j < P + T) unchanged_inside += same;
                    else changed_outside += !same;
                }
    check(changed_outside == 0, "%lld values outside the new rows changed", (long long)changed_outside);
    check(unchanged_inside == 0, "%lld values of the new rows kept their old value", (long long)unchanged_inside);
    /* Losses of the cached call: the weights' (none) then query, key, value, output. */
    double losses[8];
    size_t count = 0;
    expect(att_layer_losses(layer, &a, losses, 8, &count), ATT_OK, "", "losses of a cached call");
    check(count == 4, "a cached call has 4 activity penalties (query, key, value, output); got %zu", count);
    for (size_t i = 0; i < count && i < 8; i++) check(losses[i] > 0, "penalty %zu is %g", i, losses[i]);
    free(x.data);
    free(out.data);
    free(cache.data);
    free(before.data);
    att_layer_destroy(layer);
}

/* ---- threads -------------------------------------------------------------------------------- */

enum { WORKERS = 4, TL = 24, TS = 32 };

typedef struct {
    att_layer *layer;
    att_tensor x, out, cache;
    int failures;
} worker;

static void decode_all(worker *w) {
    int64_t p = 0;
    while (p < TL) {
        int64_t t = p == 0 ? 5 : 1;
        att_tensor in = rows_of(&w->x, p, t);
        att_tensor o = {(float *)w->out.data + p * w->x.shape.dims[2], ATT_FLOAT32, in.shape};
        int64_t index = p;
        att_call_args a = {.struct_size = sizeof a, .query = &in, .value = &in, .use_causal_mask = 1, .output = &o,
                           .cache = &w->cache, .cache_update_index = &index, .cache_update_index_count = 1};
        if (att_layer_call(w->layer, &a) != ATT_OK) w->failures++;
        free(in.data);
        p += t;
    }
}

static void *run_worker(void *arg) {
    decode_all(arg);
    return NULL;
}

static void threads(void) {
    layer_spec s = SPECS[2];
    att_layer *layer = make_layer(s, ATT_FLOAT32, 1, TL);
    worker serial[WORKERS], parallel[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        uint64_t rng = 500 + (uint64_t)i;
        att_tensor x = random_tensor(ATT_FLOAT32, SHAPE(1, TL, s.dim), &rng);
        for (int k = 0; k < 2; k++) {
            worker *w = k ? &parallel[i] : &serial[i];
            w->layer = layer;
            w->x = x;
            w->out = new_tensor(ATT_FLOAT32, x.shape, NULL);
            w->cache = new_tensor(ATT_FLOAT32, SHAPE(1, 2, TS, s.kv, s.h), NULL);
            w->failures = 0;
        }
        decode_all(&serial[i]);
    }
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++) check(pthread_create(&th[i], NULL, run_worker, &parallel[i]) == 0, "pthread_create");
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < WORKERS; i++) {
        check(serial[i].failures == 0 && parallel[i].failures == 0, "worker %d: a call failed", i);
        check(memcmp(serial[i].out.data, parallel[i].out.data, (size_t)numel(serial[i].out.shape) * 4) == 0,
              "worker %d: outputs differ from the serial run", i);
        check(memcmp(serial[i].cache.data, parallel[i].cache.data, (size_t)numel(serial[i].cache.shape) * 4) == 0,
              "worker %d: caches differ from the serial run", i);
        free(serial[i].x.data);
        free(serial[i].out.data);
        free(serial[i].cache.data);
        free(parallel[i].out.data);
        free(parallel[i].cache.data);
    }
    att_layer_destroy(layer);
}

/* ---- the struct's sizes --------------------------------------------------------------------- */

/* Programs built before the cache fields pass struct_size 112: the fields are not read (the
 * call runs without a cache). 120 bytes reach the cache only: a static cache. 128 bytes reach
 * the index but not its count (read as 0): refused. */
static void struct_sizes(void) {
    enum { B = 2, T = 3, S = 6 };
    layer_spec s = SPECS[0];
    uint64_t rng = 600;
    att_layer *layer = make_layer(s, ATT_FLOAT64, B, T);
    att_tensor x = random_tensor(ATT_FLOAT64, SHAPE(B, T, s.dim), &rng);
    att_tensor out = new_tensor(ATT_FLOAT64, x.shape, NULL), plain = new_tensor(ATT_FLOAT64, x.shape, NULL);
    att_tensor cache = new_tensor(ATT_FLOAT64, SHAPE(B, 2, S, s.kv, s.h), NULL);
    int64_t index = 0;
    att_call_args a = {.struct_size = sizeof a, .query = &x, .value = &x, .output = &plain};
    expect(att_layer_call(layer, &a), ATT_OK, "", "no cache");
    check(sizeof(att_call_args) == 136, "att_call_args is %zu bytes, 136 expected", sizeof(att_call_args));
    a = (att_call_args){.struct_size = 112, .query = &x, .value = &x, .output = &out, .cache = &cache,
                        .cache_update_index = &index, .cache_update_index_count = 1};
    expect(att_layer_call(layer, &a), ATT_OK, "", "112 bytes with cache fields set");
    check(memcmp(out.data, plain.data, (size_t)numel(x.shape) * 8) == 0, "112 bytes: the plain call");
    int untouched = 1;
    for (int64_t i = 0; i < numel(cache.shape); i++) untouched &= ((double *)cache.data)[i] == 0;
    check(untouched, "112 bytes: the cache fields were read");
    a.struct_size = 120;
    expect(att_layer_call(layer, &a), ATT_OK, "", "120 bytes: a static cache");
    a.struct_size = 128;
    expect(att_layer_call(layer, &a), ATT_ERR_SHAPE, "cache_update_index_count", "128 bytes: a count of 0");
    a.struct_size = 136;
    expect(att_layer_call(layer, &a), ATT_OK, "", "136 bytes");
    free(x.data);
    free(out.data);
    free(plain.data);
    free(cache.data);
    att_layer_destroy(layer);
}

/* ---- bad input ------------------------------------------------------------------------------- */

static void bad_input(void) {
    enum { B = 2, T = 1, S = 5 };
    uint64_t rng = 700;
    layer_spec s = SPECS[0];
    att_layer *mha = make_layer(s, ATT_FLOAT32, B, T);
    att_tensor x = random_tensor(ATT_FLOAT32, SHAPE(B, T, s.dim), &rng), out = new_tensor(ATT_FLOAT32, x.shape, NULL);
    att_tensor cache = new_tensor(ATT_FLOAT32, SHAPE(B, 2, S, s.kv, s.h), NULL);
    int64_t index = 1, rows[3] = {0, 1, 2};
    att_call_args good = {.struct_size = sizeof good, .query = &x, .value = &x, .output = &out, .cache = &cache,
                          .cache_update_index = &index, .cache_update_index_count = 1, .use_causal_mask = 1};
    att_call_args a = good;
    expect(att_layer_call(mha, &a), ATT_OK, "", "the good call");

    a = good, a.cache = NULL;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "cache", "an index without a cache");
    a = good, a.cache_update_index = NULL;
    expect(att_layer_call(mha, &a), ATT_ERR_NULL_ARGUMENT, "cache_update_index", "NULL index with count 1");
    a = good, a.cache_update_index_count = 0;
    expect(att_layer_call(mha, &a), ATT_ERR_SHAPE, "cache_update_index_count", "count 0");
    a = good, a.cache_update_index = rows, a.cache_update_index_count = 3;
    expect(att_layer_call(mha, &a), ATT_ERR_SHAPE, "batch size", "count 3 for batch 2");
    a = good, a.cache_update_index_count = SIZE_MAX;
    expect(att_layer_call(mha, &a), ATT_ERR_SHAPE, "18446744073709551615", "count SIZE_MAX (unsigned)");
    int64_t bad = -1;
    a = good, a.cache_update_index = &bad;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, ">= 0", "index -1");
    bad = S;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "max_length", "index S_max");
    bad = INT64_MAX;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "max_length", "index INT64_MAX");
    bad = INT64_MIN;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, ">= 0", "index INT64_MIN");
    int64_t pair[2] = {0, S};
    a = good, a.cache_update_index = pair, a.cache_update_index_count = 2;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "cache_update_index[1]", "second row's index");
    att_tensor q3 = random_tensor(ATT_FLOAT32, SHAPE(B, 3, s.dim), &rng), out3 = new_tensor(ATT_FLOAT32, q3.shape, NULL);
    int64_t late = 3;
    a = good, a.query = &q3, a.output = &out3, a.cache_update_index = &late;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "query rows", "causal rows past the cache");
    a.use_causal_mask = 0;
    expect(att_layer_call(mha, &a), ATT_OK, "", "the same without use_causal_mask");

    const att_shape wrong_shapes[] = {SHAPE(B, 2, S, s.kv), SHAPE(B, 2, S, s.kv, s.h + 1), SHAPE(B, 2, S, s.kv + 1, s.h),
                                      SHAPE(B, 3, S, s.kv, s.h), SHAPE(B + 1, 2, S, s.kv, s.h),
                                      SHAPE(B, 2, S, s.kv, s.h, 1), SHAPE(B, 2, -1, s.kv, s.h)};
    for (size_t i = 0; i < sizeof wrong_shapes / sizeof wrong_shapes[0]; i++) {
        att_tensor w = cache;
        w.shape = wrong_shapes[i];
        a = good, a.cache = &w;
        char what[64];
        snprintf(what, sizeof what, "cache of wrong shape %zu", i);
        expect(att_layer_call(mha, &a), ATT_ERR_SHAPE, "cache", what);
    }
    att_tensor huge = cache;
    huge.shape = SHAPE(B, 2, INT64_MAX / 4, s.kv, s.h);
    a = good, a.cache = &huge;
    expect(att_layer_call(mha, &a), ATT_ERR_SHAPE, "cache|64 bits", "cache whose size overflows");
    att_tensor wrong_dtype = cache;
    wrong_dtype.dtype = ATT_FLOAT64;
    a = good, a.cache = &wrong_dtype;
    expect(att_layer_call(mha, &a), ATT_ERR_DTYPE, "cache", "float64 cache, float32 layer");
    wrong_dtype.dtype = ATT_UINT8;
    expect(att_layer_call(mha, &a), ATT_ERR_DTYPE, "cache", "uint8 cache");
    wrong_dtype.dtype = (att_dtype)99;
    expect(att_layer_call(mha, &a), ATT_ERR_DTYPE, "cache", "unknown dtype");
    /* A batch of 2^40 empty rows with one index per row: refused before a row is read. */
    att_tensor empty_q = {x.data, ATT_FLOAT32, SHAPE((int64_t)1 << 40, 0, s.dim)};
    att_tensor empty_out = {out.data, ATT_FLOAT32, SHAPE((int64_t)1 << 40, 0, s.dim)};
    att_tensor empty_cache = {cache.data, ATT_FLOAT32, SHAPE((int64_t)1 << 40, 2, 0, s.kv, s.h)};
    int64_t zero_index = 0;
    a = good, a.query = &empty_q, a.value = &empty_q, a.output = &empty_out, a.cache = &empty_cache,
    a.cache_update_index = &zero_index, a.cache_update_index_count = (size_t)1 << 40, a.use_causal_mask = 0;
    expect(att_layer_call(mha, &a), ATT_ERR_OUT_OF_MEMORY, "update indices", "2^40 per-row indices");
    a.cache_update_index_count = 1;
    expect(att_layer_call(mha, &a), ATT_ERR_OUT_OF_MEMORY, "update indices", "2^40 rows, one index");
    att_tensor no_data = cache;
    no_data.data = NULL;
    a = good, a.cache = &no_data;
    expect(att_layer_call(mha, &a), ATT_ERR_NULL_ARGUMENT, "cache", "cache data NULL");

    /* Overlap: an updated cache shares memory with nothing; a static one may with the inputs. */
    att_tensor in_cache = {cache.data, ATT_FLOAT32, x.shape};
    a = good, a.query = &in_cache, a.value = &in_cache;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "overlaps", "query inside the updated cache");
    a.cache_update_index = NULL, a.cache_update_index_count = 0, a.use_causal_mask = 0;
    expect(att_layer_call(mha, &a), ATT_OK, "", "query inside a static cache");
    att_tensor out_in_cache = {(float *)cache.data + 4, ATT_FLOAT32, x.shape};
    a = good, a.output = &out_in_cache;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "overlaps", "output inside the updated cache");
    a.cache_update_index = NULL, a.cache_update_index_count = 0;
    expect(att_layer_call(mha, &a), ATT_ERR_INVALID_ARGUMENT, "overlaps", "output inside a static cache");
    att_tensor scores = new_tensor(ATT_FLOAT32, SHAPE(B, s.heads, T, S), NULL);
    att_tensor scores_short = new_tensor(ATT_FLOAT32, SHAPE(B, s.heads, T, T), NULL);
    a = good, a.scores = &scores;
    expect(att_layer_call(mha, &a), ATT_OK, "", "scores (B, N, T, S_max)");
    a.scores = &scores_short;
    expect(att_layer_call(mha, &a), ATT_ERR_SHAPE, "scores", "scores (B, N, T, Tv)");

    /* Backward refuses a cache; losses take it. */
    att_tensor dout = new_tensor(ATT_FLOAT32, x.shape, NULL);
    att_gradient_args g = {.struct_size = sizeof g, .output_gradient = &dout};
    a = good;
    expect(att_layer_backward(mha, &a, &g), ATT_ERR_INVALID_ARGUMENT, "gradients", "backward with a cache");
    a.cache = NULL;
    expect(att_layer_backward(mha, &a, &g), ATT_ERR_INVALID_ARGUMENT, "cache", "backward with an index only");
    size_t count = 0;
    a = good;
    expect(att_layer_losses(mha, &a, NULL, 0, &count), ATT_OK, "", "losses with a cache");

    /* Layers without a cache. */
    att_attention_config ac = {.struct_size = sizeof ac};
    att_additive_attention_config dc = {.struct_size = sizeof dc};
    att_reuse_multi_head_attention_config rc = {.struct_size = sizeof rc, .num_heads = 2, .key_dim = 4};
    att_layer *others[3] = {NULL, NULL, NULL};
    att_attention_create(&ac, &others[0]);
    att_additive_attention_create(&dc, &others[1]);
    att_reuse_multi_head_attention_create(&rc, &others[2]);
    for (int i = 0; i < 3; i++) {
        att_shape xs = x.shape;
        expect(att_layer_build(others[i], &xs, &xs, NULL), ATT_OK, "", "build another kind");
        a = good, a.use_causal_mask = 0;
        expect(att_layer_call(others[i], &a), ATT_ERR_INVALID_ARGUMENT, "cache", "a cache to a layer without one");
        a.cache = NULL;
        expect(att_layer_call(others[i], &a), ATT_ERR_INVALID_ARGUMENT, "cache", "an index to a layer without one");
        a = good, a.use_causal_mask = 0, a.cache_update_index = NULL, a.cache_update_index_count = 0;
        expect(att_layer_losses(others[i], &a, NULL, 0, &count), ATT_ERR_INVALID_ARGUMENT, "cache",
               "losses with a cache, a layer without one");
        att_layer_destroy(others[i]);
    }

    /* MultiHeadAttention configurations that cannot take the stacked cache. */
    att_multi_head_attention_config vc = {.struct_size = sizeof vc, .num_heads = 2, .key_dim = 4, .value_dim = 3};
    att_layer *wide = NULL;
    att_multi_head_attention_create(&vc, &wide);
    att_shape xs = x.shape;
    att_layer_build(wide, &xs, &xs, NULL);
    a = good;
    expect(att_layer_call(wide, &a), ATT_ERR_INVALID_ARGUMENT, "value_dim", "value_dim != key_dim");
    att_layer_destroy(wide);
    att_multi_head_attention_config r4 = {.struct_size = sizeof r4, .num_heads = 2, .key_dim = 4};
    att_layer *rank4 = NULL;
    att_multi_head_attention_create(&r4, &rank4);
    att_shape x4 = SHAPE(B, T, 2, s.dim);
    att_layer_build(rank4, &x4, &x4, NULL);
    att_tensor q4 = new_tensor(ATT_FLOAT32, x4, NULL), o4 = new_tensor(ATT_FLOAT32, x4, NULL);
    a = good, a.query = &q4, a.value = &q4, a.output = &o4;
    expect(att_layer_call(rank4, &a), ATT_ERR_INVALID_ARGUMENT, "rank-3", "rank-4 inputs");
    att_layer_destroy(rank4);

    /* GroupQueryAttention's cache has num_key_value_heads heads. */
    att_layer *gqa = make_layer(SPECS[2], ATT_FLOAT32, B, T);
    att_tensor gx = random_tensor(ATT_FLOAT32, SHAPE(B, T, SPECS[2].dim), &rng), gout = new_tensor(ATT_FLOAT32, gx.shape, NULL);
    att_tensor gcache = new_tensor(ATT_FLOAT32, SHAPE(B, 2, S, SPECS[2].heads, SPECS[2].h), NULL);
    a = good, a.query = &gx, a.value = &gx, a.output = &gout, a.cache = &gcache;
    expect(att_layer_call(gqa, &a), ATT_ERR_SHAPE, "num_key_value_heads", "GQA cache with num_query_heads");
    att_layer_destroy(gqa);

    free(gx.data), free(gout.data), free(gcache.data), free(q4.data), free(o4.data), free(dout.data);
    free(scores.data), free(scores_short.data), free(q3.data), free(out3.data);
    free(x.data), free(out.data), free(cache.data);
    att_layer_destroy(mha);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"steps_equal_prefix", steps_equal_prefix},
        {"ragged_batch", ragged_batch},
        {"keras_hub_form", keras_hub_form},
        {"writes_only_new_rows", writes_only_new_rows},
        {"threads", threads},
        {"struct_sizes", struct_sizes},
        {"bad_input", bad_input},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
