/*
 * fuzz_api.c — libFuzzer harness: the fuzz bytes are a small program of calls to the C API
 * of libattention (layer kinds, configs, shapes, masks, flags, weights, destroy and reuse of
 * handles, training calls, key/value caches, att_dot_product_attention, att_set_num_threads, layer files saved,
 * mutated or written whole from the fuzz bytes and loaded with att_layer_load, then called).
 * The byte format is in README.md.
 *
 * Contract checked on every call (abort() otherwise, so the fuzzer reports it): the status
 * is one of attention.h's, never ATT_ERR_INTERNAL nor (one thread) ATT_ERR_BUSY; a failure leaves a non-empty
 * att_last_error(); destroying a live handle succeeds and a destroyed one is refused; a
 * successful weight_info gives a non-empty name. ASan/UBSan/LSan catch the rest.
 *
 * Buffers are honest: a tensor's buffer holds its declared shape's elements whenever the
 * API could accept that shape. A declared shape of more than MAX_ELEMENTS elements gets a
 * small stand-in buffer only when the API must refuse it before reading (bad rank, a dim
 * < 1, a byte count that overflows 64 bits, an unknown dtype); otherwise the call is skipped.
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attention.h"

enum { MAX_OPS = 48, MAX_ELEMENTS = 4096, SLOTS = 4, KINDS = 5 };
enum { OP_CREATE, OP_BUILD, OP_CALL, OP_SET_WEIGHT, OP_GET_WEIGHT, OP_INFO, OP_DESTROY, OP_FOREIGN,
       OP_DOT_PRODUCT, OP_THREADS, OP_LOAD, OP_COUNT };
enum { K_ATTENTION, K_ADDITIVE, K_MHA, K_GQA, K_REUSE };

/* ---- reading the fuzz bytes (zeros once they run out) ---------------------------------- */

typedef struct { const uint8_t *p; size_t n; } reader;

static uint8_t u8(reader *r) {
    if (r->n == 0) return 0;
    r->n--;
    return *r->p++;
}

static uint64_t u64(reader *r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)u8(r) << (8 * i);
    return v;
}

/* Mostly small dims, sometimes 0, negative, large, or overflowing in products. */
static int64_t pick_dim(reader *r) {
    static const int64_t odd[] = {0, -1, -2, INT64_MIN, INT64_MAX, (int64_t)1 << 31, ((int64_t)1 << 32) + 1,
                                  (int64_t)1 << 40, (int64_t)1 << 62, 3037000500, (int64_t)1 << 16, 4096};
    uint8_t b = u8(r);
    if (b < 200) return 1 + b % 5;
    if (b < 224) return 6 + (b - 200);
    return odd[(b - 224) % (sizeof odd / sizeof odd[0])];
}

/* Mostly 3; else -1 ... 9 (ATT_MAX_RANK is 8). */
static int32_t pick_rank(reader *r) {
    uint8_t b = u8(r);
    if (b < 128) return 3;
    if (b == 255) return -1;
    return b % 10;
}

static double pick_double(reader *r) {
    static const double table[] = {0, 0.1, 0.5, 0.9, 0.99999, 1, -0.1, 2, NAN, INFINITY, -INFINITY,
                                   1e-310, 1e300, -0.0, 1e30, -1e30};
    return table[u8(r) % (sizeof table / sizeof table[0])];
}

/* An enum value: mostly 0 ... valid (one past the last valid value), sometimes far off. */
static int32_t pick_enum(reader *r, int32_t valid) {
    static const int32_t odd[] = {-1, 1000, INT32_MAX, INT32_MIN};
    uint8_t b = u8(r);
    return b < 240 ? b % (valid + 1) : odd[b % 4];
}

/* Mostly right; sometimes a size the library must refuse. */
static size_t pick_struct_size(reader *r, size_t size) {
    uint8_t b = u8(r);
    const size_t odd[] = {0, 1, size - 1, size - 8, size + 8, SIZE_MAX, 8, size + 1};
    return b < 232 ? size : odd[b % 8];
}

static int pick_bool(reader *r) { return u8(r) & 1; }

static att_dtype pick_layer_dtype(reader *r) {
    static const int32_t table[] = {ATT_FLOAT32, ATT_FLOAT64, 0, ATT_UINT8, 7, -1};
    uint8_t b = u8(r);
    return (att_dtype)(b < 200 ? table[b % 3] : table[b % 6]);
}

static void pick_shape(reader *r, att_shape *s) {
    memset(s, 0, sizeof *s);
    s->rank = pick_rank(r);
    for (int i = 0; i < ATT_MAX_RANK && i < s->rank; i++) s->dims[i] = pick_dim(r);
}

/* ---- contract checks ------------------------------------------------------------------- */

static void fail(const char *what, att_status s, const char *why) {
    fprintf(stderr, "fuzz_api: %s returned %d (%s): %s; last error \"%s\"\n", what, (int)s,
            att_status_name(s), why, att_last_error() ? att_last_error() : "(NULL)");
    abort();
}

static att_status chk(att_status s, const char *what) {
    if ((int)s < ATT_OK || (int)s > ATT_ERR_IO) fail(what, s, "not a status of attention.h");
    if (s == ATT_ERR_INTERNAL) fail(what, s, "ATT_ERR_INTERNAL is a library bug");
    if (s == ATT_ERR_BUSY) fail(what, s, "ATT_ERR_BUSY with no other thread using the layer");
    if (s != ATT_OK) {
        const char *e = att_last_error();
        if (e == NULL || e[0] == '\0') fail(what, s, "failure without a message");
    }
    return s;
}

/* ---- buffers ----------------------------------------------------------------------------- */

/* Every buffer of one program step, freed together. */
typedef struct {
    void *blocks[64];
    int count;
} arena;

static void *arena_alloc(arena *a, size_t bytes) {
    if (a->count == (int)(sizeof a->blocks / sizeof a->blocks[0])) return NULL;
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) a->blocks[a->count++] = p;
    return p;
}

static void arena_free(arena *a) {
    for (int i = 0; i < a->count; i++) free(a->blocks[i]);
    a->count = 0;
}

/* A heap copy of a struct that begins with struct_size, exactly as large as the caller
 * declares (at least the struct_size field, at most the whole struct): a library that read
 * past the declared size would be caught. */
static const void *sized_copy(arena *a, const void *full, size_t full_size) {
    size_t declared = *(const size_t *)full;
    size_t n = declared >= full_size ? full_size : declared < sizeof(size_t) ? sizeof(size_t) : declared;
    void *p = arena_alloc(a, n);
    if (p) memcpy(p, full, n);
    return p;
}

static size_t dtype_size(att_dtype d) {
    return d == ATT_FLOAT32 ? 4 : d == ATT_UINT8 ? 1 : 8; /* unknown dtypes: the widest */
}

/* The element count of `s` if it is at most MAX_ELEMENTS; -1 if the API must refuse the shape
 * (bad rank, a dim < 1, bytes overflowing 64 bits); -2 for a large shape it could accept. */
static int64_t element_count(const att_shape *s, size_t elem) {
    if (s->rank < 0 || s->rank > ATT_MAX_RANK) return -1;
    for (int i = 0; i < s->rank; i++)
        if (s->dims[i] < 1) return -1;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        if (__builtin_mul_overflow(n, s->dims[i], &n)) return -1;
    int64_t bytes;
    if (__builtin_mul_overflow(n, (int64_t)elem, &bytes)) return -1;
    return n <= MAX_ELEMENTS ? n : -2;
}

static uint64_t next_random(uint64_t *state) { /* splitmix64 */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fills n elements: floats in [-2, 2] with some specials, or a mask of 0/1 by `density`. */
static void fill(void *data, att_dtype d, int64_t n, uint8_t content, uint64_t seed) {
    static const double special[] = {NAN, INFINITY, -INFINITY, 1e30, -1e30, 1e-310, -0.0, 1e-40};
    uint64_t state = seed;
    for (int64_t i = 0; i < n; i++) {
        uint64_t x = next_random(&state);
        double v = ((double)(x >> 11) * 0x1p-53) * 4 - 2;
        if (content >= 192 && x % 7 == 0) v = special[(content + i) % 8];
        if (d == ATT_FLOAT32) ((float *)data)[i] = (float)v;
        else if (d == ATT_FLOAT64) ((double *)data)[i] = v;
        else if (d == ATT_UINT8) ((uint8_t *)data)[i] = content < 64 ? 1 : content < 96 ? 0 : (x % 256 >= content % 128);
    }
}

/* A tensor of the natural shape and dtype (or, by the mode byte, of another shape or dtype,
 * NULL data, or absent when `optional`). Returns 0 when no honest buffer exists (skip the
 * call); otherwise 1 with *out set (NULL if absent). */
static int make_tensor(reader *r, arena *a, att_dtype dtype, const att_shape *natural, int optional,
                       att_tensor **out) {
    static const int32_t dtypes[] = {ATT_FLOAT32, ATT_FLOAT64, ATT_UINT8, 0, 9};
    uint8_t mode = u8(r);
    *out = NULL;
    if (optional && mode < 96) return 1;
    att_tensor *t = arena_alloc(a, sizeof *t);
    if (!t) return 0;
    t->dtype = mode >= 240 ? (att_dtype)dtypes[mode % 5] : dtype;
    t->shape = *natural;
    if (mode >= 224 && mode < 240) pick_shape(r, &t->shape);
    else if (mode >= 208 && mode < 224 && t->shape.rank > 0 && t->shape.rank <= ATT_MAX_RANK)
        t->shape.dims[u8(r) % t->shape.rank] = pick_dim(r);
    int64_t n = element_count(&t->shape, dtype_size(t->dtype));
    int known = t->dtype == ATT_FLOAT32 || t->dtype == ATT_FLOAT64 || t->dtype == ATT_UINT8;
    if (mode == 207) {
        t->data = NULL;
    } else if (n >= 0) {
        t->data = arena_alloc(a, (size_t)n * dtype_size(t->dtype));
        if (!t->data) return 0;
        uint8_t content = u8(r);
        fill(t->data, t->dtype, n, content, u8(r));
    } else if (n == -1 || !known) {
        t->data = arena_alloc(a, 64); /* the API must refuse this shape or dtype unread */
        if (!t->data) return 0;
    } else {
        return 0;
    }
    *out = t;
    return 1;
}

/* ---- layers ------------------------------------------------------------------------------ */

typedef struct {
    att_layer *handle;   /* live, destroyed (stale) or NULL */
    int live, kind;
    att_dtype dtype;     /* the tensors' natural dtype */
    att_shape q, v, k;   /* the last build's shapes */
    int has_k;
} slot;

static void pick_initializer(reader *r, att_initializer *i) {
    i->kind = (att_initializer_kind)pick_enum(r, 14);
    i->a = pick_double(r);
    i->b = pick_double(r);
}

static void pick_regularizer(reader *r, att_regularizer *g) {
    g->kind = (att_regularizer_kind)pick_enum(r, 4);
    g->l1 = pick_double(r);
    g->l2 = pick_double(r);
}

static void pick_constraint(reader *r, att_constraint *c) {
    c->kind = (att_constraint_kind)pick_enum(r, 5);
    c->min_value = pick_double(r);
    c->max_value = pick_double(r);
    c->rate = pick_double(r);
    c->axis = (int8_t)u8(r);
}

/* The initializer, regularizer and constraint fields all multi-head configs share. */
#define PICK_WEIGHT_OPTIONS(r, c)                                                             \
    do {                                                                                      \
        if (u8(r) < 192) break;                                                               \
        pick_initializer(r, &(c)->kernel_initializer);                                        \
        pick_initializer(r, &(c)->bias_initializer);                                          \
        pick_regularizer(r, &(c)->kernel_regularizer);                                        \
        pick_regularizer(r, &(c)->bias_regularizer);                                          \
        pick_regularizer(r, &(c)->activity_regularizer);                                      \
        pick_constraint(r, &(c)->kernel_constraint);                                          \
        pick_constraint(r, &(c)->bias_constraint);                                            \
    } while (0)

static double pick_dropout(reader *r) { return u8(r) < 160 ? 0 : pick_double(r); }

static int32_t pick_small_count(reader *r) { /* output_rank, num_attention_axes */
    uint8_t b = u8(r);
    return b < 128 ? 0 : (int32_t)(b % 11) - 1;
}

static int64_t pick_axis(reader *r) {
    uint8_t b = u8(r);
    return b >= 250 ? (b & 1 ? INT64_MAX : INT64_MIN) : (int64_t)(b % 11) - 5;
}

static void pick_axes(reader *r, int32_t *rank, int64_t *values, int is_axes) {
    *rank = pick_small_count(r);
    for (int i = 0; i < *rank && i < ATT_MAX_RANK; i++) values[i] = is_axes ? pick_axis(r) : pick_dim(r);
}

/* Creates a layer of a fuzzed kind and config into s (destroying what it held). */
static void op_create(reader *r, slot *s, arena *a) {
    if (s->live) chk(att_layer_destroy(s->handle), "att_layer_destroy (before create)");
    memset(s, 0, sizeof *s);
    s->kind = u8(r) % KINDS;
    att_layer *h = NULL;
    uint8_t nulls = u8(r); /* 250: NULL config; 251: NULL out */
    att_layer **out = nulls == 251 ? NULL : &h;
    att_status st;
    switch (s->kind) {
    case K_ATTENTION: {
        att_attention_config config = {0}, *c = &config;
        c->struct_size = pick_struct_size(r, sizeof *c);
        c->dtype = pick_layer_dtype(r);
        c->use_scale = pick_bool(r);
        c->score_mode = (att_score_mode)pick_enum(r, 2);
        c->dropout = pick_dropout(r);
        c->causal = pick_bool(r);
        s->dtype = c->dtype;
        st = chk(att_attention_create(nulls == 250 ? NULL : sized_copy(a, c, sizeof *c), out),
                 "att_attention_create");
        break;
    }
    case K_ADDITIVE: {
        att_additive_attention_config config = {0}, *c = &config;
        c->struct_size = pick_struct_size(r, sizeof *c);
        c->dtype = pick_layer_dtype(r);
        c->no_scale = pick_bool(r);
        c->dropout = pick_dropout(r);
        c->seed = u8(r);
        s->dtype = c->dtype;
        st = chk(att_additive_attention_create(nulls == 250 ? NULL : sized_copy(a, c, sizeof *c), out),
                 "att_additive_attention_create");
        break;
    }
    case K_MHA: {
        att_multi_head_attention_config config = {0}, *c = &config;
        c->struct_size = pick_struct_size(r, sizeof *c);
        c->dtype = pick_layer_dtype(r);
        c->num_heads = pick_dim(r);
        c->key_dim = pick_dim(r);
        c->value_dim = u8(r) < 128 ? 0 : pick_dim(r);
        c->dropout = pick_dropout(r);
        c->no_bias = pick_bool(r);
        pick_axes(r, &c->output_rank, c->output_shape, 0);
        pick_axes(r, &c->num_attention_axes, c->attention_axes, 1);
        c->sliding_window = u8(r) < 192 ? 0 : pick_dim(r);
        c->use_gate = pick_bool(r);
        c->seed = u8(r);
        PICK_WEIGHT_OPTIONS(r, c);
        s->dtype = c->dtype;
        st = chk(att_multi_head_attention_create(nulls == 250 ? NULL : sized_copy(a, c, sizeof *c), out),
                 "att_multi_head_attention_create");
        break;
    }
    case K_GQA: {
        att_group_query_attention_config config = {0}, *c = &config;
        c->struct_size = pick_struct_size(r, sizeof *c);
        c->dtype = pick_layer_dtype(r);
        c->head_dim = pick_dim(r);
        c->num_query_heads = pick_dim(r);
        c->num_key_value_heads = pick_dim(r);
        c->dropout = pick_dropout(r);
        c->no_bias = pick_bool(r);
        c->sliding_window = u8(r) < 192 ? 0 : pick_dim(r);
        c->use_gate = pick_bool(r);
        c->seed = u8(r);
        PICK_WEIGHT_OPTIONS(r, c);
        s->dtype = c->dtype;
        st = chk(att_group_query_attention_create(nulls == 250 ? NULL : sized_copy(a, c, sizeof *c), out),
                 "att_group_query_attention_create");
        break;
    }
    default: {
        att_reuse_multi_head_attention_config config = {0}, *c = &config;
        c->struct_size = pick_struct_size(r, sizeof *c);
        c->dtype = pick_layer_dtype(r);
        c->num_heads = pick_dim(r);
        c->key_dim = pick_dim(r);
        c->value_dim = u8(r) < 128 ? 0 : pick_dim(r);
        c->dropout = pick_dropout(r);
        c->reuse_attention = (int64_t)(u8(r) % 8) - 2;
        c->use_relative_pe = pick_bool(r);
        c->pe_max_seq_length = u8(r) < 128 ? (int64_t)(u8(r) % 8) : pick_dim(r);
        c->no_bias = pick_bool(r);
        pick_axes(r, &c->output_rank, c->output_shape, 0);
        pick_axes(r, &c->num_attention_axes, c->attention_axes, 1);
        c->seed = u8(r);
        PICK_WEIGHT_OPTIONS(r, c);
        s->dtype = c->dtype;
        st = chk(att_reuse_multi_head_attention_create(nulls == 250 ? NULL : sized_copy(a, c, sizeof *c), out),
                 "att_reuse_multi_head_attention_create");
        break;
    }
    }
    if (s->dtype != ATT_FLOAT64) s->dtype = ATT_FLOAT32;
    if (st == ATT_OK) {
        if (h == NULL) fail("*_create", st, "ATT_OK without a handle");
        s->handle = h;
        s->live = 1;
    }
}

/* Replaces the inner (sequence) dims of q and of v/k with new picks: builds bind only the
 * feature dims, so calls may vary the others. */
static void vary_sequence(reader *r, att_shape *q, att_shape *v, att_shape *k) {
    for (int i = 1; i + 1 < q->rank && i < ATT_MAX_RANK; i++)
        if (u8(r) & 1) q->dims[i] = pick_dim(r);
    for (int i = 1; i + 1 < v->rank && i < ATT_MAX_RANK; i++)
        if (u8(r) & 1) v->dims[i] = k->dims[i] = pick_dim(r);
}

static void op_build(reader *r, slot *s) {
    pick_shape(r, &s->q);
    uint8_t b = u8(r);
    if (b < 96) s->v = s->q;
    else pick_shape(r, &s->v);
    if (b & 1 && s->v.rank > 0 && s->v.rank <= ATT_MAX_RANK) s->v.dims[s->v.rank - 1] = pick_dim(r);
    s->has_k = (b & 2) != 0;
    s->k = s->v;
    if (s->has_k && (b & 4) && s->k.rank > 0 && s->k.rank <= ATT_MAX_RANK) s->k.dims[s->k.rank - 1] = pick_dim(r);
    uint8_t nulls = u8(r); /* 250: NULL query shape; 251: NULL value shape */
    chk(att_layer_build(s->handle, nulls == 250 ? NULL : &s->q, nulls == 251 ? NULL : &s->v,
                        s->has_k ? &s->k : NULL), "att_layer_build");
}

/* `s` minus its last dim (the mask of a query or value). */
static att_shape drop_last(const att_shape *s) {
    att_shape m = *s;
    if (m.rank > 0 && m.rank <= ATT_MAX_RANK) m.dims[--m.rank] = 0;
    return m;
}

/* (B, query inner dims, value inner dims): MultiHeadAttention's attention mask. */
static att_shape attention_mask_shape(const att_shape *q, const att_shape *v) {
    att_shape m = drop_last(q);
    for (int i = 1; i + 1 < v->rank && m.rank < ATT_MAX_RANK; i++) m.dims[m.rank++] = v->dims[i];
    return m;
}

/* The training calls on a call's arguments: att_layer_backward with gradient tensors of
 * fuzzed shapes and dtypes (a weight gradient per weight, or none), then att_layer_losses
 * (with or without the call) and att_layer_apply_constraints. */
static void op_train(reader *r, slot *s, arena *a, att_call_args *args, const att_shape *q, const att_shape *v,
                     const att_shape *k, const att_shape *out_shape, const att_shape *scores_shape, uint8_t masks) {
    att_gradient_args *g = arena_alloc(a, sizeof *g);
    att_tensor *d_out, *d_scores, *d_query, *d_value, *d_key = NULL, *d_reuse;
    if (!g || !make_tensor(r, a, s->dtype, out_shape, 1, (att_tensor **)&d_out) ||
        !make_tensor(r, a, s->dtype, scores_shape, 1, &d_scores) || !make_tensor(r, a, s->dtype, q, 1, &d_query) ||
        !make_tensor(r, a, s->dtype, v, 1, &d_value) || (s->has_k && !make_tensor(r, a, s->dtype, k, 1, &d_key)) ||
        !make_tensor(r, a, s->dtype, scores_shape, 1, &d_reuse))
        return;
    g->output_gradient = d_out;
    g->scores_gradient = d_scores;
    g->query_gradient = d_query;
    g->value_gradient = d_value;
    g->key_gradient = d_key;
    g->reuse_attention_scores_gradient = d_reuse;
    g->include_regularization = pick_bool(r);
    size_t count = 0;
    if (u8(r) & 1 && att_layer_weight_count(s->handle, &count) == ATT_OK && count > 0) {
        att_tensor *weights = arena_alloc(a, count * sizeof *weights);
        if (!weights) return;
        for (size_t i = 0; i < count; i++) {
            att_shape shape;
            att_tensor *t;
            if (chk(att_layer_weight_info(s->handle, i, &shape, NULL), "att_layer_weight_info") != ATT_OK ||
                !make_tensor(r, a, s->dtype, &shape, 1, &t))
                return;
            weights[i] = t ? *t : (att_tensor){0};  /* data NULL: that weight is skipped */
        }
        g->weight_gradients = weights;
    }
    g->struct_size = pick_struct_size(r, sizeof *g);
    uint8_t nulls = u8(r); /* 250: NULL args; 251: NULL grads */
    chk(att_layer_backward(s->handle, nulls == 250 ? NULL : sized_copy(a, args, sizeof *args),
                           nulls == 251 ? NULL : sized_copy(a, g, sizeof *g)), "att_layer_backward");
    double losses[4];
    size_t n = 0;
    chk(att_layer_losses(s->handle, masks & 64 ? sized_copy(a, args, sizeof *args) : NULL, u8(r) & 1 ? losses : NULL,
                         u8(r) % 5, &n), "att_layer_losses");
    if (masks & 128) chk(att_layer_apply_constraints(s->handle), "att_layer_apply_constraints");
}

/* K and H of the layer's key/value cache, from its key/kernel (Dk, K, H); 1 and 1 when the
 * layer has none (not built, another kind, a stale handle). */
static void cache_heads(const att_layer *h, int64_t *heads, int64_t *width) {
    *heads = 1;
    *width = 1;
    size_t count = 0;
    if (att_layer_weight_count(h, &count) != ATT_OK) return;
    for (size_t i = 0; i < count; i++) {
        att_shape shape;
        const char *name = NULL;
        if (att_layer_weight_info(h, i, &shape, &name) == ATT_OK && name && strcmp(name, "key/kernel") == 0 &&
            shape.rank == 3) {
            *heads = shape.dims[1];
            *width = shape.dims[2];
            return;
        }
    }
}

/* A cache update index: mostly 0 ... S_max + 1, sometimes far off. */
static int64_t pick_index(reader *r, int64_t s_max) {
    static const int64_t odd[] = {-1, INT64_MAX, INT64_MIN, (int64_t)1 << 62, -((int64_t)1 << 40), 4096};
    uint8_t b = u8(r);
    return b < 200 ? b % (s_max + 2) : odd[b % 6];
}

/* The key/value cache operands of a call (README: op 2). Returns 0 to skip the call. */
static int pick_cache(reader *r, slot *s, arena *a, att_call_args *args, const att_shape *q) {
    uint8_t b = u8(r);
    if (b < 160) return 1;
    int64_t heads, width;
    cache_heads(s->handle, &heads, &width);
    int64_t batch = q->rank >= 1 ? q->dims[0] : 1, s_max = 1 + b % 8;
    att_shape natural = {5, {batch, 2, s_max, heads, width}};
    if (b != 255 && !make_tensor(r, a, s->dtype, &natural, 0, &args->cache)) return 0;
    uint8_t m = u8(r);
    if (m < 64) return 1;
    size_t count = 1;
    if (m >= 128 && m < 192 && batch >= 1 && batch <= MAX_ELEMENTS) count = (size_t)batch;
    if (m >= 192) {
        const size_t odd[] = {0, (size_t)batch + 1, SIZE_MAX, 1};
        count = odd[m % 4];
    }
    /* The library reads the entries only for a count of 1 or the batch size. */
    size_t entries = count == 1 || (batch >= 0 && count == (size_t)batch) ? count : 0;
    if (entries > MAX_ELEMENTS) return 0;
    int64_t *index = arena_alloc(a, (entries ? entries : 1) * sizeof *index);
    if (!index) return 0;
    for (size_t i = 0; i < entries; i++) index[i] = pick_index(r, s_max);
    args->cache_update_index = m >= 192 && m % 4 == 3 ? NULL : index;
    args->cache_update_index_count = count;
    return 1;
}

static void op_call(reader *r, slot *s, arena *a) {
    att_shape q = s->q, v = s->v, k = s->k;
    if (u8(r) >= 128) vary_sequence(r, &q, &v, &k);
    att_shape out_shape = q, scores_shape = q;
    chk(att_layer_output_shape(s->handle, &q, &v, s->has_k ? &k : NULL, &out_shape, &scores_shape),
        "att_layer_output_shape");
    att_shape qm = drop_last(&q), vm = drop_last(&v), am = attention_mask_shape(&q, &v);
    att_call_args *args = arena_alloc(a, sizeof *args);
    att_tensor *query, *value, *key = NULL, *output;
    if (!args) return;
    if (!make_tensor(r, a, s->dtype, &q, 0, &query) || !make_tensor(r, a, s->dtype, &v, 0, &value) ||
        (s->has_k && !make_tensor(r, a, s->dtype, &k, 0, &key)) ||
        !make_tensor(r, a, s->dtype, &out_shape, 0, &output) ||
        !make_tensor(r, a, s->dtype, &scores_shape, 1, &args->scores))
        return;
    uint8_t masks = u8(r);
    if ((masks & 1 && !make_tensor(r, a, ATT_UINT8, &qm, 1, (att_tensor **)&args->query_mask)) ||
        (masks & 2 && !make_tensor(r, a, ATT_UINT8, &vm, 1, (att_tensor **)&args->value_mask)) ||
        (masks & 4 && !make_tensor(r, a, ATT_UINT8, &vm, 1, (att_tensor **)&args->key_mask)) ||
        (masks & 8 && !make_tensor(r, a, ATT_UINT8, &am, 1, (att_tensor **)&args->attention_mask)) ||
        (masks & 16 && !make_tensor(r, a, s->dtype, &scores_shape, 1, (att_tensor **)&args->reuse_attention_scores)))
        return;
    args->struct_size = pick_struct_size(r, sizeof *args);
    args->query = query;
    args->value = value;
    args->key = key;
    args->output = output;
    args->training = pick_bool(r);
    args->use_causal_mask = pick_bool(r);
    args->dropout_seed = u8(r);
    args->dropout_stream = u8(r);
    if (!pick_cache(r, s, a, args, &q)) return;
    if (masks != 255 && masks & 32) {
        op_train(r, s, a, args, &q, &v, &k, &out_shape, &scores_shape, masks);
        return;
    }
    chk(att_layer_call(s->handle, masks == 255 ? NULL : sized_copy(a, args, sizeof *args)), "att_layer_call");
}

/* A weight index: mostly in range, sometimes just past it or far off. */
static size_t pick_weight_index(reader *r, const att_layer *h) {
    size_t count = 0;
    chk(att_layer_weight_count(h, &count), "att_layer_weight_count");
    uint8_t b = u8(r);
    if (b < 224) return count ? b % count : 0;
    const size_t odd[] = {count, count + 1, SIZE_MAX, (size_t)1 << 63};
    return odd[b % 4];
}

static void op_weight(reader *r, slot *s, arena *a, int set) {
    size_t index = pick_weight_index(r, s->handle);
    att_shape shape;
    if (chk(att_layer_weight_info(s->handle, index, &shape, NULL), "att_layer_weight_info") != ATT_OK)
        pick_shape(r, &shape);
    att_tensor *t;
    if (!make_tensor(r, a, s->dtype, &shape, 1, &t)) return;
    if (set) chk(att_layer_set_weight(s->handle, index, t), "att_layer_set_weight");
    else chk(att_layer_get_weight(s->handle, index, t), "att_layer_get_weight");
}

static void op_info(reader *r, slot *s) {
    int32_t built = -1;
    if (chk(att_layer_is_built(s->handle, &built), "att_layer_is_built") == ATT_OK && built != 0 && built != 1)
        fail("att_layer_is_built", ATT_OK, "built is neither 0 nor 1");
    size_t index = pick_weight_index(r, s->handle);
    att_shape shape;
    const char *name = NULL;
    uint8_t b = u8(r);
    if (chk(att_layer_weight_info(s->handle, index, b & 1 ? &shape : NULL, b & 2 ? &name : NULL),
            "att_layer_weight_info") == ATT_OK && (b & 2) && (name == NULL || name[0] == '\0'))
        fail("att_layer_weight_info", ATT_OK, "no weight name");
    chk(att_layer_is_built(s->handle, NULL), "att_layer_is_built(NULL)");
    chk(att_layer_weight_count(s->handle, NULL), "att_layer_weight_count(NULL)");
    chk(att_layer_output_shape(s->handle, &s->q, &s->v, NULL, NULL, NULL), "att_layer_output_shape(NULL outs)");
}

static void op_destroy(slot *s) {
    att_status st = chk(att_layer_destroy(s->handle), "att_layer_destroy");
    if (s->live && st != ATT_OK) fail("att_layer_destroy", st, "a live handle was not destroyed");
    if (!s->live && s->handle && st != ATT_ERR_INVALID_HANDLE) fail("att_layer_destroy", st, "a destroyed handle was accepted");
    s->live = 0; /* the handle stays, stale: later steps reuse it */
}

/* Calls on a handle the library never made (NULL, a stack address, an arbitrary value). */
static void op_foreign(reader *r, slot *slots) {
    int32_t local = 0;
    uint64_t bits = u64(r);
    att_layer *h = bits % 3 == 0 ? NULL : bits % 3 == 1 ? (att_layer *)&local : (att_layer *)(uintptr_t)bits;
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].live && slots[i].handle == h) return;
    att_shape q = {.rank = 3, .dims = {1, 1, 1}};
    int32_t built;
    size_t count;
    att_status st[4] = {
        chk(att_layer_is_built(h, &built), "att_layer_is_built(foreign)"),
        chk(att_layer_weight_count(h, &count), "att_layer_weight_count(foreign)"),
        chk(att_layer_build(h, &q, &q, NULL), "att_layer_build(foreign)"),
        chk(att_layer_destroy(h), "att_layer_destroy(foreign)"),
    };
    for (int i = 0; i < 4; i++)
        if (st[i] != (h == NULL && i == 3 ? ATT_OK : ATT_ERR_INVALID_HANDLE))
            fail("a foreign handle", st[i], "expected ATT_ERR_INVALID_HANDLE");
}

/* att_dot_product_attention on (B,T,N,H), (B,S,K,H), (B,S,K,Hv), bias and mask (B,N,T,S)
 * with some dims set to 1 or leading dims dropped, as numpy broadcasting allows. */
static void op_dot_product(reader *r, arena *a) {
    att_dtype dt = u8(r) & 1 ? ATT_FLOAT64 : ATT_FLOAT32;
    int64_t B = pick_dim(r), T = pick_dim(r), S = pick_dim(r), H = pick_dim(r), Hv = pick_dim(r);
    int64_t K = pick_dim(r), N = K;
    if (u8(r) >= 160) N = pick_dim(r);
    else if (__builtin_mul_overflow(K, 1 + u8(r) % 3, &N)) N = K; /* query heads: a multiple of K */
    att_shape qs = {4, {B, T, N, H}}, ks = {4, {B, S, K, H}}, vs = {4, {B, S, K, Hv}}, os = {4, {B, T, N, Hv}};
    att_shape bs = {4, {B, N, T, S}};
    uint8_t broadcast = u8(r);
    for (int i = 0; i < 4; i++)
        if (broadcast >> i & 1) bs.dims[i] = 1;
    int drop = (broadcast >> 4) % 5;
    bs.rank -= drop;
    memmove(bs.dims, bs.dims + drop, (size_t)bs.rank * sizeof bs.dims[0]);
    att_dot_product_attention_args *args = arena_alloc(a, sizeof *args);
    att_tensor *q, *k, *v, *out;
    if (!args || !make_tensor(r, a, dt, &qs, 0, &q) || !make_tensor(r, a, dt, &ks, 0, &k) ||
        !make_tensor(r, a, dt, &vs, 0, &v) || !make_tensor(r, a, dt, &os, 0, &out) ||
        !make_tensor(r, a, dt, &bs, 1, (att_tensor **)&args->bias) ||
        !make_tensor(r, a, ATT_UINT8, &bs, 1, (att_tensor **)&args->mask))
        return;
    args->struct_size = pick_struct_size(r, sizeof *args);
    args->query = q;
    args->key = k;
    args->value = v;
    args->output = out;
    args->has_scale = pick_bool(r);
    args->scale = pick_double(r);
    args->is_causal = pick_bool(r);
    chk(att_dot_product_attention(broadcast == 255 ? NULL : sized_copy(a, args, sizeof *args)),
        "att_dot_product_attention");
}

/* Thread counts far beyond the cores here, up to 256 (every split must be right for any
 * number of workers, including more workers than items). */
static int32_t wide_thread_count(uint8_t b) {
    static const int32_t wide[] = {4,  5,  6,  7,  8,  9,   11,  12,  13,  16,  17,  24, 31,
                                   32, 33, 48, 63, 64, 65, 96, 127, 128, 129, 192, 255, 256};
    return wide[b % (sizeof wide / sizeof wide[0])];
}

/* The input's thread count (its first byte): mostly 1 ... 3, from byte 192 on a wide one. */
static int32_t pick_thread_count(reader *r) {
    uint8_t b = u8(r);
    return b < 192 ? 1 + b % 3 : wide_thread_count(b - 192);
}

/* att_set_num_threads's argument: byte < 128 a small or invalid value, else a wide count. */
static void op_threads(reader *r) {
    static const int32_t table[] = {1, 2, 3, 4, 0, -1, INT32_MIN, 16};
    uint8_t b = u8(r);
    int32_t n = b < 128 ? table[b % 8] : wide_thread_count(b - 128);
    if (chk(att_set_num_threads(n), "att_set_num_threads") == ATT_OK ? att_get_num_threads() != n
                                                                      : n >= 1)
        fail("att_set_num_threads", ATT_OK, "the thread count was not taken as documented");
    const char *name = att_status_name((att_status)(int8_t)u8(r));
    if (name == NULL || att_version() == NULL || att_last_error() == NULL) fail("att_status_name", ATT_OK, "NULL string");
}

/* ---- layer files ------------------------------------------------------------------------ */

enum { MAX_FILE = 1 << 16 };

/* A directory of this process for the files (made on first use), and a path in it. */
static const char *file_path(const char *name) {
    static char dir[64], path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_api_XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_bytes(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) { perror(path); abort(); }
}

/* Loads a layer file into slot s and, if it loads, calls it. The file is (mode byte < 128) the
 * next n fuzz bytes as they are (n: two bytes), or the slot's layer saved with
 * att_layer_save and then mutated: k (< 16) times a position (two bytes, modulo the size) and
 * a byte to set, or (mode 255) cut to a length. A loaded layer takes the slot; the slot's
 * shapes stay (a saved layer's build shapes) or are picked (a raw file). */
static void op_load(reader *r, slot *s, arena *a) {
    static uint8_t file[MAX_FILE];
    size_t n = 0;
    uint8_t mode = u8(r);
    int raw = mode < 128 || !s->live;
    if (raw) {
        size_t want = (size_t)u8(r) | (size_t)u8(r) << 8;
        while (n < want && r->n > 0) file[n++] = u8(r);
    } else {
        if (chk(att_layer_save(s->handle, file_path("saved")), "att_layer_save") != ATT_OK) return;
        FILE *f = fopen(file_path("saved"), "rb");
        if (!f) fail("att_layer_save", ATT_OK, "ATT_OK without a file");
        n = fread(file, 1, MAX_FILE, f);
        fclose(f);
        if (mode == 255) n = n ? ((size_t)u8(r) | (size_t)u8(r) << 8) % n : 0;
        else
            for (int k = u8(r) % 16; k > 0 && n > 0; k--) {
                size_t at = ((size_t)u8(r) | (size_t)u8(r) << 8) % n;
                file[at] = u8(r);
            }
    }
    write_bytes(file_path("load"), file, n);
    att_layer *h = (att_layer *)file; /* must stay as it is on failure */
    att_status st = chk(att_layer_load(file_path("load"), &h), "att_layer_load");
    if (st != ATT_OK) {
        if (h != (att_layer *)file) fail("att_layer_load", st, "*out changed by a failed load");
        return;
    }
    if (h == NULL || h == (att_layer *)file) fail("att_layer_load", st, "ATT_OK without a handle");
    int32_t built = 0;
    if (chk(att_layer_is_built(h, &built), "att_layer_is_built(loaded)") != ATT_OK || !built)
        fail("att_layer_load", st, "a loaded layer is not built");
    if (s->live) chk(att_layer_destroy(s->handle), "att_layer_destroy (before load)");
    s->handle = h;
    s->live = 1;
    if (raw) {
        pick_shape(r, &s->q);
        s->v = s->k = s->q;
        s->has_k = 0;
        s->dtype = u8(r) & 1 ? ATT_FLOAT64 : ATT_FLOAT32;
    }
    op_call(r, s, a);
}

const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    /* A refused allocation must come back as NULL (ATT_ERR_OUT_OF_MEMORY), as on a machine
     * that cannot hold it, instead of ending the run; 512 MB keeps the fuzzer's RSS in check. */
    return "allocator_may_return_null=1:max_allocation_size_mb=512";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size};
    slot slots[SLOTS];
    arena a = {.count = 0};
    memset(slots, 0, sizeof slots);
    chk(att_set_num_threads(pick_thread_count(&r)), "att_set_num_threads");
    for (int op = 0; op < MAX_OPS && r.n > 0; op++) {
        uint8_t code = u8(&r);
        slot *s = &slots[(code >> 4) % SLOTS];
        switch (code % OP_COUNT) {
        case OP_CREATE: op_create(&r, s, &a); break;
        case OP_BUILD: op_build(&r, s); break;
        case OP_CALL: op_call(&r, s, &a); break;
        case OP_SET_WEIGHT: op_weight(&r, s, &a, 1); break;
        case OP_GET_WEIGHT: op_weight(&r, s, &a, 0); break;
        case OP_INFO: op_info(&r, s); break;
        case OP_DESTROY: op_destroy(s); break;
        case OP_FOREIGN: op_foreign(&r, slots); break;
        case OP_DOT_PRODUCT: op_dot_product(&r, &a); break;
        case OP_THREADS: op_threads(&r); break;
        default: op_load(&r, s, &a); break;
        }
        arena_free(&a);
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].live) chk(att_layer_destroy(slots[i].handle), "att_layer_destroy (end)");
    return 0;
}
