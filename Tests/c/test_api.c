/*
 * test_api.c — libattention's C API used as a C programmer would, against plain C reference
 * loops (written from Keras's math, in double): Attention (dot, concat, scale, masks, causal,
 * scores), AdditiveAttention, MultiHeadAttention (rank 3: biases, gate, value_dim != key_dim,
 * output_shape, every mask), dot_product_attention (K < N heads, bias, mask, causal), each in
 * float32 and float64; weights in Keras order and their round trip; initialisers; output
 * shapes; dropout by the header's Philox rule, identical for 1 and 2 threads; concurrent
 * calls on one layer. Bad inputs are in test_bad_input.c. Prints `N passed, N failed`.
 */
#include "check.h"

#include <threads.h>

static const att_dtype DTYPES[2] = {ATT_FLOAT32, ATT_FLOAT64};

static const char *dtype_name(att_dtype dt) { return dt == ATT_FLOAT64 ? "float64" : "float32"; }

/* ---- reference helpers ------------------------------------------------------------------- */

/* In-place softmax of x[0 .. n-1]. */
static void softmax(double *x, int64_t n) {
    double m = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, x[i]);
    for (int64_t i = 0; i < n; i++) sum += (x[i] = exp(x[i] - m));
    for (int64_t i = 0; i < n; i++) x[i] /= sum;
}

/* The flat index, in a tensor of shape s, of the rank-`rank` index idx that s broadcasts to
 * (numpy rules: trailing dims aligned, size-1 dims repeat). */
static size_t broadcast_index(att_shape s, const int64_t *idx, int rank) {
    size_t at = 0;
    for (int i = 0; i < s.rank; i++) at = at * (size_t)s.dims[i] + (s.dims[i] == 1 ? 0 : (size_t)idx[rank - s.rank + i]);
    return at;
}

/* y (rows, dout) = x (rows, din) · w (din, dout) + b (dout; NULL for none). */
static void project(const double *x, int64_t rows, int64_t din, const double *w, const double *b, int64_t dout,
                    double *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < dout; c++) {
            double s = b ? b[c] : 0;
            for (int64_t d = 0; d < din; d++) s += x[r * din + d] * w[d * dout + c];
            y[r * dout + c] = s;
        }
}

/* Applies the header's dropout to weights w[0 .. n-1], the scores elements first .. first+n-1. */
static void apply_dropout(double *w, int64_t n, uint64_t first, double rate, uint64_t seed, uint64_t stream) {
    for (int64_t j = 0; j < n; j++)
        w[j] = dropout_keeps(first + (uint64_t)j, rate, seed, stream) ? w[j] / (1 - rate) : 0;
}

/* ---- weights ----------------------------------------------------------------------------- */

/* Checks the layer's weight count and each weight's Keras name and shape, in order. */
static void check_weight_list(const char *what, const att_layer *layer, size_t count, const char *const *names,
                              const att_shape *shapes) {
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
static double *get_weight(const att_layer *layer, size_t index, att_dtype dt, int64_t *n) {
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
static size_t load_random_weights(att_layer *layer, att_dtype dt, uint64_t *rng, double **values) {
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
static const double *weight_named(const att_layer *layer, double **values, size_t count, const char *name) {
    for (size_t i = 0; i < count; i++) {
        const char *n = NULL;
        att_layer_weight_info(layer, i, NULL, &n);
        if (n && strcmp(n, name) == 0) return values[i];
    }
    return NULL;
}

/* Sets the scalar weight `index` to x and checks that it reads back. */
static void set_scalar(att_layer *layer, size_t index, att_dtype dt, double x) {
    att_tensor t = new_tensor(dt, (att_shape){0}, &x);
    expect(att_layer_set_weight(layer, index, &t), ATT_OK, "", "set scalar weight");
    int64_t n = 0;
    double *back = get_weight(layer, index, dt, &n);
    check(n == 1 && back[0] == (dt == ATT_FLOAT32 ? (float)x : x), "scalar weight %zu reads back %g, want %g",
          index, back[0], x);
    free(back);
    free(t.data);
}

/* ---- Attention and AdditiveAttention ------------------------------------------------------ */

typedef enum { SCORE_DOT, SCORE_CONCAT, SCORE_ADDITIVE } score_kind;

/* One Attention / AdditiveAttention problem: inputs, weights, masks, dropout. */
typedef struct {
    score_kind kind;
    att_dtype dtype;
    int64_t B, Tq, Tv, D, Dv;
    const double *q, *k, *v;      /* (B,Tq,D), (B,Tv,D), (B,Tv,Dv); k == v when no key is passed */
    const uint8_t *qmask, *vmask; /* (B,Tq), (B,Tv), or NULL */
    int causal;                   /* the effective causal mask (config or call) */
    double scale, csw;            /* dot / concat: scale (1 without use_scale), concat weight */
    const double *add_scale;      /* additive: scale (D,), NULL without use_scale */
    double rate;                  /* dropout applied (0 unless training) */
    uint64_t seed, stream;
} luong_problem;

/* Keras's Attention / AdditiveAttention: output (B,Tq,Dv) and weights (B,Tq,Tv). Masked
 * scores are s - 1e9 in the layer's dtype. */
static void ref_luong(const luong_problem *p, double *out, double *weights) {
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t i = 0; i < p->Tq; i++) {
            int64_t row = b * p->Tq + i;
            double *w = weights + row * p->Tv;
            const double *qi = p->q + row * p->D;
            for (int64_t j = 0; j < p->Tv; j++) {
                const double *kj = p->k + (b * p->Tv + j) * p->D;
                double s = 0;
                for (int64_t d = 0; d < p->D; d++) {
                    if (p->kind == SCORE_DOT) s += qi[d] * kj[d];
                    else if (p->kind == SCORE_CONCAT) s += tanh(p->scale * (qi[d] + kj[d]));
                    else s += (p->add_scale ? p->add_scale[d] : 1) * tanh(qi[d] + kj[d]);
                }
                s *= p->kind == SCORE_DOT ? p->scale : p->kind == SCORE_CONCAT ? p->csw : 1;
                int keep = (!p->vmask || p->vmask[b * p->Tv + j]) && (!p->causal || j <= i);
                if (!keep) s = p->dtype == ATT_FLOAT32 ? (double)((float)s - 1e9f) : s - 1e9;
                w[j] = s;
            }
            softmax(w, p->Tv);
            if (p->rate > 0) apply_dropout(w, p->Tv, (uint64_t)(row * p->Tv), p->rate, p->seed, p->stream);
            for (int64_t e = 0; e < p->Dv; e++) {
                double o = 0;
                for (int64_t j = 0; j < p->Tv; j++) o += w[j] * p->v[(b * p->Tv + j) * p->Dv + e];
                out[row * p->Dv + e] = p->qmask && !p->qmask[row] ? 0 : o;
            }
        }
}

typedef struct {
    int key_given, want_scores, causal_arg, training;
} call_opts;

/* Calls `layer` on p's inputs into out (and scores when o.want_scores). */
static att_status call_luong(const att_layer *layer, const luong_problem *p, call_opts o, att_tensor *out,
                             att_tensor *scores) {
    att_tensor q = new_tensor(p->dtype, SHAPE(p->B, p->Tq, p->D), p->q);
    att_tensor k = new_tensor(p->dtype, SHAPE(p->B, p->Tv, p->D), p->k);
    att_tensor v = new_tensor(p->dtype, SHAPE(p->B, p->Tv, p->Dv), p->v);
    att_tensor qm = mask_tensor(p->qmask, SHAPE(p->B, p->Tq)), vm = mask_tensor(p->vmask, SHAPE(p->B, p->Tv));
    att_call_args args = {.struct_size = sizeof args};
    args.query = &q;
    args.value = &v;
    args.key = o.key_given ? &k : NULL;
    args.query_mask = p->qmask ? &qm : NULL;
    args.value_mask = p->vmask ? &vm : NULL;
    args.training = o.training;
    args.use_causal_mask = o.causal_arg;
    args.dropout_seed = p->seed;
    args.dropout_stream = p->stream;
    args.output = out;
    args.scores = o.want_scores ? scores : NULL;
    att_status st = att_layer_call(layer, &args);
    free(q.data);
    free(k.data);
    free(v.data);
    return st;
}

/* Calls the layer and compares its output (and scores) with ref_luong. */
static void check_luong(const char *what, const att_layer *layer, const luong_problem *p, call_opts o) {
    char label[160];
    snprintf(label, sizeof label, "%s (%s)", what, dtype_name(p->dtype));
    att_tensor out = new_tensor(p->dtype, SHAPE(p->B, p->Tq, p->Dv), NULL);
    att_tensor scores = new_tensor(p->dtype, SHAPE(p->B, p->Tq, p->Tv), NULL);
    double *want_out = malloc((size_t)(p->B * p->Tq * p->Dv) * sizeof(double));
    double *want_scores = malloc((size_t)(p->B * p->Tq * p->Tv) * sizeof(double));
    ref_luong(p, want_out, want_scores);
    expect(call_luong(layer, p, o, &out, &scores), ATT_OK, "", label);
    check_close(label, &out, want_out, (size_t)(p->B * p->Tq * p->Dv));
    if (o.want_scores) check_close(label, &scores, want_scores, (size_t)(p->B * p->Tq * p->Tv));
    free(out.data);
    free(scores.data);
    free(want_out);
    free(want_scores);
}

static void attention_layers(att_dtype dt) {
    enum { B = 2, Tq = 3, Tv = 5, D = 4, Dv = 6 };
    uint64_t rng = 11 + (uint64_t)dt;
    double *q = random_values(&rng, B * Tq * D, -1, 1, dt), *k = random_values(&rng, B * Tv * D, -1, 1, dt);
    double *v = random_values(&rng, B * Tv * Dv, -1, 1, dt), *vk = random_values(&rng, B * Tv * D, -1, 1, dt);
    /* Batch 0, query 0 is fully masked under the causal mask (it sees only key 0). */
    static const uint8_t vmask[B * Tv] = {0, 1, 1, 0, 1, 1, 1, 7, 1, 0};
    static const uint8_t qmask[B * Tq] = {1, 1, 1, 1, 0, 1};
    att_shape qs = SHAPE(B, Tq, D), vs = SHAPE(B, Tv, Dv), ks = SHAPE(B, Tv, D);
    att_layer *layer = NULL;
    int32_t built = -1;
    int64_t n = 0;

    /* dot with use_scale; key != value; Tq != Tv (causal is top-left). */
    att_attention_config dot = {.struct_size = sizeof dot, .dtype = dt, .use_scale = 1};
    expect(att_attention_create(&dot, &layer), ATT_OK, "", "create Attention(use_scale)");
    expect(att_layer_is_built(layer, &built), ATT_OK, "", "is_built");
    check(built == 0, "is_built before build gives %d", built);
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build Attention");
    expect(att_layer_is_built(layer, &built), ATT_OK, "", "is_built");
    check(built == 1, "is_built after build gives %d", built);
    check_weight_list("Attention(use_scale)", layer, 1, (const char *const[]){"scale"}, (att_shape[]){{0, {0}}});
    double *w = get_weight(layer, 0, dt, &n);
    check(n == 1 && w[0] == 1, "Attention scale initialised to %g, want 1", w[0]);
    free(w);
    set_scalar(layer, 0, dt, 0.7);
    luong_problem p = {.kind = SCORE_DOT, .dtype = dt, .B = B, .Tq = Tq, .Tv = Tv, .D = D, .Dv = Dv, .q = q, .k = k,
                       .v = v, .qmask = qmask, .vmask = vmask, .causal = 1, .scale = 0.7};
    check_luong("Attention dot+scale, both masks, use_causal_mask, scores", layer, &p, (call_opts){1, 1, 1, 0});
    p.causal = 0;
    check_luong("Attention dot+scale, both masks", layer, &p, (call_opts){1, 0, 0, 0});
    p.qmask = p.vmask = NULL;
    check_luong("Attention dot+scale, no masks, scores", layer, &p, (call_opts){1, 1, 0, 0});
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build Attention again");
    w = get_weight(layer, 0, dt, &n);
    check(w[0] == 1, "building again re-creates the scale: %g, want 1", w[0]);
    free(w);
    att_layer_destroy(layer);

    /* concat with use_scale; no key (key = value, so Dv = D). */
    att_attention_config concat = {.struct_size = sizeof concat, .dtype = dt, .use_scale = 1, .score_mode = ATT_SCORE_CONCAT};
    att_shape vks = SHAPE(B, Tv, D);
    expect(att_attention_create(&concat, &layer), ATT_OK, "", "create Attention(concat)");
    expect(att_layer_build(layer, &qs, &vks, NULL), ATT_OK, "", "build Attention(concat)");
    check_weight_list("Attention(concat, use_scale)", layer, 2, (const char *const[]){"scale", "concat_score_weight"},
                      (att_shape[]){{0, {0}}, {0, {0}}});
    w = get_weight(layer, 1, dt, &n);
    check(w[0] == 1, "concat_score_weight initialised to %g, want 1", w[0]);
    free(w);
    set_scalar(layer, 0, dt, 0.8);
    set_scalar(layer, 1, dt, 1.5);
    luong_problem c = {.kind = SCORE_CONCAT, .dtype = dt, .B = B, .Tq = Tq, .Tv = Tv, .D = D, .Dv = D, .q = q,
                       .k = vk, .v = vk, .vmask = vmask, .scale = 0.8, .csw = 1.5};
    check_luong("Attention concat+scale, value_mask, scores, no key", layer, &c, (call_opts){0, 1, 0, 0});
    att_layer_destroy(layer);

    /* dot without scale: no weights; TF 2.0's causal=True in the config. */
    att_attention_config causal = {.struct_size = sizeof causal, .dtype = dt, .causal = 1};
    expect(att_attention_create(&causal, &layer), ATT_OK, "", "create Attention(causal)");
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build Attention(causal)");
    check_weight_list("Attention()", layer, 0, NULL, NULL);
    luong_problem d = {.kind = SCORE_DOT, .dtype = dt, .B = B, .Tq = Tq, .Tv = Tv, .D = D, .Dv = Dv, .q = q, .k = k,
                       .v = v, .qmask = qmask, .causal = 1, .scale = 1};
    check_luong("Attention(causal=1) dot, query_mask, scores", layer, &d, (call_opts){1, 1, 0, 0});
    att_layer_destroy(layer);

    /* A zero-filled config is Keras's default Attention(): float32 dot without scale. */
    if (dt == ATT_FLOAT32) {
        att_attention_config zero = {.struct_size = sizeof zero};
        expect(att_attention_create(&zero, &layer), ATT_OK, "", "create Attention from a zero config");
        expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build Attention()");
        d.causal = 0;
        d.qmask = NULL;
        check_luong("Attention() from a zero-filled config", layer, &d, (call_opts){1, 1, 0, 0});
        att_layer_destroy(layer);
    }
    free(q), free(k), free(v), free(vk);
}

static void additive_layers(att_dtype dt) {
    enum { B = 3, Tq = 4, Tv = 6, D = 5, Dv = 2 };
    uint64_t rng = 21 + (uint64_t)dt;
    double *q = random_values(&rng, B * Tq * D, -2, 2, dt), *k = random_values(&rng, B * Tv * D, -2, 2, dt);
    double *v = random_values(&rng, B * Tv * Dv, -1, 1, dt);
    static const uint8_t vmask[B * Tv] = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0};
    static const uint8_t qmask[B * Tq] = {1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1};
    att_shape qs = SHAPE(2, 1, D), vs = SHAPE(2, 9, Dv), ks = SHAPE(2, 9, D);
    att_layer *layer = NULL, *twin = NULL;
    int64_t n = 0, n2 = 0;

    att_additive_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .use_scale = 1, .seed = 42};
    expect(att_additive_attention_create(&cfg, &layer), ATT_OK, "", "create AdditiveAttention");
    expect(att_additive_attention_create(&cfg, &twin), ATT_OK, "", "create AdditiveAttention twin");
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build AdditiveAttention");
    expect(att_layer_build(twin, &qs, &vs, &ks), ATT_OK, "", "build AdditiveAttention twin");
    check_weight_list("AdditiveAttention(use_scale)", layer, 1, (const char *const[]){"scale"},
                      (att_shape[]){SHAPE(D)});
    /* glorot_uniform on (D,): fan_in = fan_out = D, limit sqrt(6 / 2D); the seed decides it. */
    double *w = get_weight(layer, 0, dt, &n), *w2 = get_weight(twin, 0, dt, &n2), limit = sqrt(3.0 / D), largest = 0;
    for (int64_t i = 0; i < n; i++) largest = fmax(largest, fabs(w[i]));
    check(largest <= limit && largest > 0, "AdditiveAttention scale max |w| = %g, glorot limit %g", largest, limit);
    check(n == n2 && memcmp(w, w2, (size_t)n * sizeof *w) == 0, "the same seed gives different scales");
    free(w), free(w2);
    att_layer_destroy(twin);
    cfg.seed = 43;
    expect(att_additive_attention_create(&cfg, &twin), ATT_OK, "", "create AdditiveAttention seed 43");
    expect(att_layer_build(twin, &qs, &vs, &ks), ATT_OK, "", "build AdditiveAttention seed 43");
    w = get_weight(layer, 0, dt, &n), w2 = get_weight(twin, 0, dt, &n2);
    check(memcmp(w, w2, (size_t)n * sizeof *w) != 0, "seeds 42 and 43 give the same scale");
    free(w), free(w2);
    att_layer_destroy(twin);

    double *scale = NULL;
    load_random_weights(layer, dt, &rng, &scale);
    /* Batch and lengths differ from the build's: only the feature dims bind. */
    luong_problem p = {.kind = SCORE_ADDITIVE, .dtype = dt, .B = B, .Tq = Tq, .Tv = Tv, .D = D, .Dv = Dv, .q = q,
                       .k = k, .v = v, .qmask = qmask, .vmask = vmask, .add_scale = scale};
    check_luong("AdditiveAttention, both masks (a fully masked batch), scores", layer, &p, (call_opts){1, 1, 0, 0});
    p.causal = 1;
    check_luong("AdditiveAttention, use_causal_mask", layer, &p, (call_opts){1, 1, 1, 0});
    att_shape qs6 = SHAPE(2, 1, 6), ks6 = SHAPE(2, 9, 6), s = {0};
    expect(att_layer_build(layer, &qs6, &vs, &ks6), ATT_OK, "", "rebuild AdditiveAttention with dim 6");
    att_layer_weight_info(layer, 0, &s, NULL);
    check(same_shape(s, SHAPE(6)), "rebuilding with dim 6 leaves scale of rank %d, dim %lld", s.rank,
          (long long)s.dims[0]);
    att_layer_destroy(layer);

    cfg.use_scale = 0;
    expect(att_additive_attention_create(&cfg, &layer), ATT_OK, "", "create AdditiveAttention(use_scale=0)");
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build AdditiveAttention(use_scale=0)");
    check_weight_list("AdditiveAttention(use_scale=0)", layer, 0, NULL, NULL);
    p.add_scale = NULL;
    p.causal = 0;
    check_luong("AdditiveAttention(use_scale=0), masks", layer, &p, (call_opts){1, 0, 0, 0});
    att_layer_destroy(layer);
    free(q), free(k), free(v), free(scale);
}

/* ---- MultiHeadAttention ------------------------------------------------------------------- */

/* One rank-3 MultiHeadAttention problem. */
typedef struct {
    att_dtype dtype;
    int64_t B, T, S, Dq, Dk, Dv, N, Hk, Hv, O; /* O: product of the output_shape (Dq by default) */
    att_shape out_shape;                       /* (B, T, *output_shape) */
    const double *q, *k, *v;                   /* k == v when no key is passed */
    const double *wq, *bq, *wk, *bk, *wg, *bg, *wv, *bv, *wo, *bo; /* b* NULL without bias, wg without gate */
    const uint8_t *qmask, *vmask, *kmask, *amask;
    att_shape amask_shape;
    int causal;
    int64_t window;       /* sliding window, 0 for none */
    double layer_dropout; /* the config's rate: with scores, it picks Keras's path */
    double rate;          /* dropout applied (training) */
    uint64_t seed, stream;
} mha_problem;

/* Keras 3.15's MultiHeadAttention on rank-3 inputs: output (B,T,*O), pre-dropout scores
 * (B,N,T,S). Fused path (no scores, no dropout): masked logits are -0.7·FLT_MAX; otherwise
 * masked weights are 0 (a fully masked row is all 0). */
static void ref_mha(const mha_problem *p, int want_scores, double *out, double *scores) {
    int64_t B = p->B, T = p->T, S = p->S, N = p->N, Hk = p->Hk, Hv = p->Hv;
    double *qp = malloc((size_t)(B * T * N * Hk) * sizeof(double)), *kp = malloc((size_t)(B * S * N * Hk) * sizeof(double));
    double *vp = malloc((size_t)(B * S * N * Hv) * sizeof(double)), *gp = malloc((size_t)(B * T * N * Hv) * sizeof(double));
    double *attn = calloc((size_t)(B * T * N * Hv), sizeof(double)), *w = malloc((size_t)S * sizeof(double));
    project(p->q, B * T, p->Dq, p->wq, p->bq, N * Hk, qp);
    project(p->k, B * S, p->Dk, p->wk, p->bk, N * Hk, kp);
    project(p->v, B * S, p->Dv, p->wv, p->bv, N * Hv, vp);
    if (p->wg) project(p->q, B * T, p->Dq, p->wg, p->bg, N * Hv, gp);
    int fused = !want_scores && p->layer_dropout == 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t t = 0; t < T; t++) {
                int any = 0;
                for (int64_t s = 0; s < S; s++) {
                    int64_t idx[3] = {b, t, s};
                    int keep = (!p->qmask || p->qmask[b * T + t]) && (!p->vmask || p->vmask[b * S + s]) &&
                               (!p->kmask || p->kmask[b * S + s]) && (!p->causal || s <= t) &&
                               (!p->window || llabs(t - s) < p->window) &&
                               (!p->amask || p->amask[broadcast_index(p->amask_shape, idx, 3)]);
                    double logit = 0;
                    for (int64_t h = 0; h < Hk; h++)
                        logit += qp[((b * T + t) * N + n) * Hk + h] / sqrt((double)Hk) * kp[((b * S + s) * N + n) * Hk + h];
                    w[s] = keep ? logit : fused ? -0.7 * FLT_MAX : -INFINITY;
                    any |= keep;
                }
                if (fused || any) softmax(w, S);
                else
                    for (int64_t s = 0; s < S; s++) w[s] = 0;
                uint64_t first = (uint64_t)(((b * N + n) * T + t) * S);
                if (scores) memcpy(scores + first, w, (size_t)S * sizeof *w);
                if (p->rate > 0) apply_dropout(w, S, first, p->rate, p->seed, p->stream);
                for (int64_t e = 0; e < Hv; e++) {
                    double *a = &attn[((b * T + t) * N + n) * Hv + e];
                    for (int64_t s = 0; s < S; s++) *a += w[s] * vp[((b * S + s) * N + n) * Hv + e];
                    if (p->wg) *a *= 1 / (1 + exp(-gp[((b * T + t) * N + n) * Hv + e]));
                }
            }
    project(attn, B * T, N * Hv, p->wo, p->bo, p->O, out);
    free(qp), free(kp), free(vp), free(gp), free(attn), free(w);
}

/* Calls the layer on p's inputs into out (and scores when o.want_scores). */
static att_status call_mha(const att_layer *layer, const mha_problem *p, call_opts o, att_tensor *out,
                           att_tensor *scores) {
    att_tensor q = new_tensor(p->dtype, SHAPE(p->B, p->T, p->Dq), p->q);
    att_tensor k = new_tensor(p->dtype, SHAPE(p->B, p->S, p->Dk), p->k);
    att_tensor v = new_tensor(p->dtype, SHAPE(p->B, p->S, p->Dv), p->v);
    att_tensor qm = mask_tensor(p->qmask, SHAPE(p->B, p->T)), vm = mask_tensor(p->vmask, SHAPE(p->B, p->S));
    att_tensor km = mask_tensor(p->kmask, SHAPE(p->B, p->S)), am = mask_tensor(p->amask, p->amask_shape);
    att_call_args args = {.struct_size = sizeof args};
    args.query = &q;
    args.value = &v;
    args.key = o.key_given ? &k : NULL;
    args.query_mask = p->qmask ? &qm : NULL;
    args.value_mask = p->vmask ? &vm : NULL;
    args.key_mask = p->kmask ? &km : NULL;
    args.attention_mask = p->amask ? &am : NULL;
    args.training = o.training;
    args.use_causal_mask = o.causal_arg;
    args.dropout_seed = p->seed;
    args.dropout_stream = p->stream;
    args.output = out;
    args.scores = o.want_scores ? scores : NULL;
    att_status st = att_layer_call(layer, &args);
    free(q.data), free(k.data), free(v.data);
    return st;
}

static void check_mha(const char *what, const att_layer *layer, const mha_problem *p, call_opts o) {
    char label[160];
    snprintf(label, sizeof label, "%s (%s)", what, dtype_name(p->dtype));
    size_t n_out = (size_t)(p->B * p->T * p->O), n_scores = (size_t)(p->B * p->N * p->T * p->S);
    att_tensor out = new_tensor(p->dtype, p->out_shape, NULL);
    att_tensor scores = new_tensor(p->dtype, SHAPE(p->B, p->N, p->T, p->S), NULL);
    double *want_out = malloc(n_out * sizeof(double)), *want_scores = malloc(n_scores * sizeof(double));
    ref_mha(p, o.want_scores, want_out, want_scores);
    expect(call_mha(layer, p, o, &out, &scores), ATT_OK, "", label);
    check_close(label, &out, want_out, n_out);
    if (o.want_scores) check_close(label, &scores, want_scores, n_scores);
    free(out.data), free(scores.data), free(want_out), free(want_scores);
}

/* Points p's weights at values, by Keras name. */
static void bind_mha_weights(mha_problem *p, const att_layer *layer, double **values, size_t count) {
    p->wq = weight_named(layer, values, count, "query/kernel");
    p->bq = weight_named(layer, values, count, "query/bias");
    p->wk = weight_named(layer, values, count, "key/kernel");
    p->bk = weight_named(layer, values, count, "key/bias");
    p->wg = weight_named(layer, values, count, "gate/kernel");
    p->bg = weight_named(layer, values, count, "gate/bias");
    p->wv = weight_named(layer, values, count, "value/kernel");
    p->bv = weight_named(layer, values, count, "value/bias");
    p->wo = weight_named(layer, values, count, "attention_output/kernel");
    p->bo = weight_named(layer, values, count, "attention_output/bias");
}

static att_multi_head_attention_config mha_config(att_dtype dt, int64_t heads, int64_t key_dim, int64_t value_dim,
                                                  int32_t use_bias) {
    att_multi_head_attention_config c = {.struct_size = sizeof c};
    c.dtype = dt;
    c.num_heads = heads;
    c.key_dim = key_dim;
    c.value_dim = value_dim;
    c.use_bias = use_bias;
    c.seed = 5;
    return c;
}

static void mha_gate_bias(att_dtype dt) {
    enum { B = 2, T = 3, S = 4, Dq = 5, Dk = 3, Dv = 4, N = 2, Hk = 3, Hv = 2, O = 6 };
    uint64_t rng = 31 + (uint64_t)dt;
    att_multi_head_attention_config cfg = mha_config(dt, N, Hk, Hv, 1);
    cfg.use_gate = 1;
    cfg.output_rank = 1;
    cfg.output_shape[0] = O;
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, T, Dq), vs = SHAPE(B, S, Dv), ks = SHAPE(B, S, Dk);
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create MHA(gate, bias)");
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build MHA(gate, bias)");
    static const char *const names[] = {"query/kernel", "query/bias", "key/kernel", "key/bias",
                                        "gate/kernel", "gate/bias", "value/kernel", "value/bias",
                                        "attention_output/kernel", "attention_output/bias"};
    att_shape shapes[] = {SHAPE(Dq, N, Hk), SHAPE(N, Hk), SHAPE(Dk, N, Hk), SHAPE(N, Hk), SHAPE(Dq, N, Hv),
                          SHAPE(N, Hv), SHAPE(Dv, N, Hv), SHAPE(N, Hv), SHAPE(N, Hv, O), SHAPE(O)};
    check_weight_list("MHA(gate, bias, value_dim 2, output_shape 6)", layer, 10, names, shapes);
    double *values[10] = {0};
    size_t count = load_random_weights(layer, dt, &rng, values);
    double *q = random_values(&rng, B * T * Dq, -1, 1, dt), *k = random_values(&rng, B * S * Dk, -1, 1, dt);
    double *v = random_values(&rng, B * S * Dv, -1, 1, dt);
    static const uint8_t qmask[B * T] = {1, 1, 1, 1, 1, 0};
    static const uint8_t vmask[B * S] = {1, 1, 0, 1, 1, 0, 1, 1};
    static const uint8_t amask[B * T * S] = {1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1};
    mha_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .Dq = Dq, .Dk = Dk, .Dv = Dv, .N = N, .Hk = Hk, .Hv = Hv,
                     .O = O, .out_shape = SHAPE(B, T, O), .q = q, .k = k, .v = v};
    bind_mha_weights(&p, layer, values, count);
    check_mha("MHA gate+bias, no masks, scores", layer, &p, (call_opts){1, 1, 0, 0});
    check_mha("MHA gate+bias, no masks", layer, &p, (call_opts){1, 0, 0, 0});
    p.qmask = qmask, p.vmask = vmask, p.amask = amask, p.amask_shape = SHAPE(B, T, S);
    check_mha("MHA query/value/attention (B,T,S) masks, scores (masked row 0)", layer, &p, (call_opts){1, 1, 0, 0});
    check_mha("MHA query/value/attention (B,T,S) masks, fused (masked row uniform)", layer, &p,
              (call_opts){1, 0, 0, 0});
    /* Batch and lengths differ from the build's. */
    p.B = 1, p.T = 2, p.S = 3, p.out_shape = SHAPE(1, 2, O), p.qmask = p.vmask = p.amask = NULL;
    check_mha("MHA called with other batch and lengths than built", layer, &p, (call_opts){1, 1, 0, 0});
    att_layer_destroy(layer);
    for (size_t i = 0; i < count; i++) free(values[i]);
    free(q), free(k), free(v);
}

static void mha_no_bias(att_dtype dt) {
    enum { B = 2, T = 4, Dq = 3, Dv = 5, N = 3, Hk = 2 };
    uint64_t rng = 41 + (uint64_t)dt;
    att_multi_head_attention_config cfg = mha_config(dt, N, Hk, 0, 0);
    cfg.output_rank = 2;
    cfg.output_shape[0] = 2, cfg.output_shape[1] = 3;
    cfg.sliding_window = 2;
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, T, Dq), vs = SHAPE(B, T, Dv);
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create MHA(no bias)");
    expect(att_layer_build(layer, &qs, &vs, NULL), ATT_OK, "", "build MHA(no bias)");
    static const char *const names[] = {"query/kernel", "key/kernel", "value/kernel", "attention_output/kernel"};
    att_shape shapes[] = {SHAPE(Dq, N, Hk), SHAPE(Dv, N, Hk), SHAPE(Dv, N, Hk), SHAPE(N, Hk, 2, 3)};
    check_weight_list("MHA(use_bias=0, value_dim 0, output_shape (2,3))", layer, 4, names, shapes);
    double *values[4] = {0};
    size_t count = load_random_weights(layer, dt, &rng, values);
    double *q = random_values(&rng, B * T * Dq, -1, 1, dt), *v = random_values(&rng, B * T * Dv, -1, 1, dt);
    /* key_mask[1, 0] = 0 leaves batch 1, query 0 with nothing under causal + window. */
    static const uint8_t kmask[B * T] = {1, 1, 0, 1, 0, 1, 1, 1};
    static const uint8_t qmask[B * T] = {1, 1, 1, 0, 1, 1, 1, 1};
    static const uint8_t amask[T * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1};
    mha_problem p = {.dtype = dt, .B = B, .T = T, .S = T, .Dq = Dq, .Dk = Dv, .Dv = Dv, .N = N, .Hk = Hk, .Hv = Hk,
                     .O = 6, .out_shape = SHAPE(B, T, 2, 3), .q = q, .k = v, .v = v};
    bind_mha_weights(&p, layer, values, count);
    p.kmask = kmask, p.qmask = qmask, p.amask = amask, p.amask_shape = SHAPE(T, T), p.causal = 1, p.window = 2;
    check_mha("MHA causal+window+key/query masks+attention (T,S), scores", layer, &p, (call_opts){0, 1, 1, 0});
    check_mha("MHA causal+window+key/query masks+attention (T,S), fused", layer, &p, (call_opts){0, 0, 1, 0});
    p.kmask = p.qmask = p.amask = NULL;
    check_mha("MHA causal+window only, fused", layer, &p, (call_opts){0, 0, 1, 0});
    att_layer_destroy(layer);
    for (size_t i = 0; i < count; i++) free(values[i]);
    free(q), free(v);
}

/* Keras's fans of a kernel: receptive field = product of all dims but the last two. */
static void kernel_fans(att_shape s, double *fan_in, double *fan_out) {
    double field = 1;
    for (int i = 0; i < s.rank - 2; i++) field *= (double)s.dims[i];
    *fan_in = (double)s.dims[s.rank - 2] * field;
    *fan_out = (double)s.dims[s.rank - 1] * field;
}

/* Creates and builds an MHA (Dq 8, 2 heads of 4, output 8) with these initialisers. */
static att_layer *built_mha(att_initializer kernel, att_initializer bias, uint64_t seed) {
    att_multi_head_attention_config cfg = mha_config(ATT_FLOAT64, 2, 4, 0, 1);
    cfg.kernel_initializer = kernel;
    cfg.bias_initializer = bias;
    cfg.seed = seed;
    att_layer *layer = NULL;
    att_shape qs = SHAPE(1, 2, 8);
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create MHA for initialisers");
    expect(att_layer_build(layer, &qs, &qs, NULL), ATT_OK, "", "build MHA for initialisers");
    return layer;
}

/* Each initialiser kind gives values in its Keras range, on every kernel; biases follow theirs. */
static void mha_initializers(void) {
    static const struct {
        att_initializer_kind kind;
        const char *name;
    } kinds[] = {{ATT_INIT_DEFAULT, "default (glorot_uniform)"}, {ATT_INIT_GLOROT_UNIFORM, "glorot_uniform"},
                 {ATT_INIT_GLOROT_NORMAL, "glorot_normal"}, {ATT_INIT_HE_UNIFORM, "he_uniform"},
                 {ATT_INIT_HE_NORMAL, "he_normal"}, {ATT_INIT_LECUN_UNIFORM, "lecun_uniform"},
                 {ATT_INIT_LECUN_NORMAL, "lecun_normal"}};
    const double trunc = 0.87962566103423978; /* stddev of a unit normal truncated at 2 */
    for (size_t c = 0; c < sizeof kinds / sizeof kinds[0]; c++) {
        att_layer *layer = built_mha((att_initializer){kinds[c].kind, 0, 0}, (att_initializer){0, 0, 0}, 9);
        for (size_t i = 0; i < 8; i++) {
            att_shape s = {0};
            const char *name = "";
            att_layer_weight_info(layer, i, &s, &name);
            int64_t n = 0;
            double *w = get_weight(layer, i, ATT_FLOAT64, &n), largest = 0;
            for (int64_t j = 0; j < n; j++) largest = fmax(largest, fabs(w[j]));
            if (i % 2 == 1) {
                check(largest == 0, "%s: default bias %s is not zero (max |b| %g)", kinds[c].name, name, largest);
            } else {
                double fi, fo, limit;
                kernel_fans(s, &fi, &fo);
                switch (kinds[c].kind) {
                case ATT_INIT_GLOROT_NORMAL: limit = 2 * sqrt(2 / (fi + fo)) / trunc; break;
                case ATT_INIT_HE_UNIFORM: limit = sqrt(6 / fi); break;
                case ATT_INIT_HE_NORMAL: limit = 2 * sqrt(2 / fi) / trunc; break;
                case ATT_INIT_LECUN_UNIFORM: limit = sqrt(3 / fi); break;
                case ATT_INIT_LECUN_NORMAL: limit = 2 * sqrt(1 / fi) / trunc; break;
                default: limit = sqrt(6 / (fi + fo)); break;
                }
                check(largest <= limit * (1 + 1e-12) && largest >= 0.3 * limit,
                      "%s: %s has max |w| %g, want in [0.3, 1] x %g", kinds[c].name, name, largest, limit);
            }
            free(w);
        }
        att_layer_destroy(layer);
    }
    /* The seed decides the weights. */
    att_layer *a = built_mha((att_initializer){0}, (att_initializer){0}, 3), *b = built_mha((att_initializer){0}, (att_initializer){0}, 3);
    att_layer *c = built_mha((att_initializer){0}, (att_initializer){0}, 4);
    int64_t n = 0;
    double *wa = get_weight(a, 0, ATT_FLOAT64, &n), *wb = get_weight(b, 0, ATT_FLOAT64, &n), *wc = get_weight(c, 0, ATT_FLOAT64, &n);
    check(memcmp(wa, wb, (size_t)n * 8) == 0, "MHA: the same seed gives different query kernels");
    check(memcmp(wa, wc, (size_t)n * 8) != 0, "MHA: seeds 3 and 4 give the same query kernel");
    free(wa), free(wb), free(wc);
    att_layer_destroy(a), att_layer_destroy(b), att_layer_destroy(c);

    /* Parametrised kinds: constant/ones, random_uniform range, normal moments, orthogonal. */
    att_layer *layer = built_mha((att_initializer){ATT_INIT_CONSTANT, 0.25, 0}, (att_initializer){ATT_INIT_ONES, 0, 0}, 1);
    for (size_t i = 0; i < 8; i++) {
        double *w = get_weight(layer, i, ATT_FLOAT64, &n), want = i % 2 ? 1 : 0.25;
        int ok = 1;
        for (int64_t j = 0; j < n; j++) ok &= w[j] == want;
        check(ok, "constant(0.25) kernels / ones biases: weight %zu is not all %g", i, want);
        free(w);
    }
    att_layer_destroy(layer);
    layer = built_mha((att_initializer){ATT_INIT_RANDOM_UNIFORM, -0.1, 0.3}, (att_initializer){ATT_INIT_RANDOM_NORMAL, 0, 0}, 1);
    double lo = INFINITY, hi = -INFINITY, sum = 0, sum2 = 0;
    int64_t total = 0;
    for (size_t i = 0; i < 8; i++) {
        double *w = get_weight(layer, i, ATT_FLOAT64, &n);
        for (int64_t j = 0; j < n; j++)
            if (i % 2 == 0) lo = fmin(lo, w[j]), hi = fmax(hi, w[j]);
            else sum += w[j], sum2 += w[j] * w[j], total++;
        free(w);
    }
    check(lo >= -0.1 && hi < 0.3 && hi - lo > 0.3, "random_uniform(-0.1, 0.3) kernels span [%g, %g]", lo, hi);
    double sd = sqrt(sum2 / (double)total);
    check(fabs(sum / (double)total) < 0.03 && sd > 0.03 && sd < 0.075,
          "random_normal() biases: mean %g, rms %g over %lld values; want 0, 0.05", sum / (double)total, sd,
          (long long)total);
    att_layer_destroy(layer);
    layer = built_mha((att_initializer){ATT_INIT_ORTHOGONAL, 2, 0}, (att_initializer){ATT_INIT_ZEROS, 0, 0}, 1);
    for (size_t i = 0; i < 8; i += 2) {
        att_shape s = {0};
        att_layer_weight_info(layer, i, &s, NULL);
        double *w = get_weight(layer, i, ATT_FLOAT64, &n), worst = 0;
        int64_t cols = s.dims[s.rank - 1], rows = n / cols, m = rows < cols ? rows : cols;
        /* The smaller side is orthogonal with norm gain: W^T W or W W^T = gain^2 I. */
        for (int64_t x = 0; x < m; x++)
            for (int64_t y = 0; y < m; y++) {
                double dot = 0;
                for (int64_t z = 0; z < (rows < cols ? cols : rows); z++)
                    dot += rows < cols ? w[x * cols + z] * w[y * cols + z] : w[z * cols + x] * w[z * cols + y];
                worst = fmax(worst, fabs(dot - (x == y ? 4 : 0)));
            }
        check(worst < 1e-9, "orthogonal(gain 2): kernel %zu is off gain^2 I by %g", i, worst);
        free(w);
    }
    att_layer_destroy(layer);
}

/* ---- output shapes ------------------------------------------------------------------------ */

static void check_output_shape(const char *what, const att_layer *layer, att_shape q, att_shape v,
                               const att_shape *k, att_shape want_out, att_shape want_scores) {
    att_shape out = {0}, scores = {0};
    char a[96], b[96];
    expect(att_layer_output_shape(layer, &q, &v, k, &out, &scores), ATT_OK, "", what);
    check(same_shape(out, want_out), "%s: output shape %s, want %s", what, shape_str(out, a, sizeof a),
          shape_str(want_out, b, sizeof b));
    check(same_shape(scores, want_scores), "%s: scores shape %s, want %s", what, shape_str(scores, a, sizeof a),
          shape_str(want_scores, b, sizeof b));
    expect(att_layer_output_shape(layer, &q, &v, k, NULL, NULL), ATT_OK, "", "output_shape with NULL outputs");
}

/* An MHA built for query and value of shape `in` with these attention axes. */
static att_layer *built_nd_mha(att_shape in, int32_t naxes, const int64_t *axes, int32_t orank, const int64_t *oshape) {
    att_multi_head_attention_config cfg = mha_config(ATT_FLOAT32, 2, 3, 0, 1);
    cfg.num_attention_axes = naxes;
    for (int i = 0; i < naxes; i++) cfg.attention_axes[i] = axes[i];
    cfg.output_rank = orank;
    for (int i = 0; i < orank; i++) cfg.output_shape[i] = oshape[i];
    att_layer *layer = NULL;
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create N-D MHA");
    expect(att_layer_build(layer, &in, &in, NULL), ATT_OK, "", "build N-D MHA");
    return layer;
}

static void output_shapes(void) {
    att_layer *layer = NULL;
    att_attention_config acfg = {.struct_size = sizeof acfg};
    att_shape q = SHAPE(2, 3, 4), v = SHAPE(2, 5, 6), k = SHAPE(2, 5, 4);
    expect(att_attention_create(&acfg, &layer), ATT_OK, "", "create Attention()");
    expect(att_layer_build(layer, &q, &v, &k), ATT_OK, "", "build Attention()");
    check_output_shape("Attention", layer, SHAPE(2, 3, 4), SHAPE(2, 5, 6), &k, SHAPE(2, 3, 6), SHAPE(2, 3, 5));
    check_output_shape("Attention, no key", layer, SHAPE(7, 1, 4), SHAPE(7, 2, 4), NULL, SHAPE(7, 1, 4), SHAPE(7, 1, 2));
    att_layer_destroy(layer);
    att_additive_attention_config ccfg = {.struct_size = sizeof ccfg, .dtype = ATT_FLOAT64, .use_scale = 1};
    expect(att_additive_attention_create(&ccfg, &layer), ATT_OK, "", "create AdditiveAttention");
    expect(att_layer_build(layer, &k, &k, NULL), ATT_OK, "", "build AdditiveAttention");
    check_output_shape("AdditiveAttention", layer, SHAPE(2, 3, 4), SHAPE(2, 5, 6), &k, SHAPE(2, 3, 6), SHAPE(2, 3, 5));
    att_layer_destroy(layer);

    layer = built_nd_mha(SHAPE(2, 3, 5), 0, NULL, 2, (const int64_t[]){2, 3});
    check_output_shape("MHA output_shape (2,3)", layer, SHAPE(2, 3, 5), SHAPE(2, 4, 5), NULL, SHAPE(2, 3, 2, 3),
                       SHAPE(2, 2, 3, 4));
    att_layer_destroy(layer);
    layer = built_nd_mha(SHAPE(2, 3, 4, 5), 0, NULL, 0, NULL);
    check_output_shape("MHA rank 4, default axes", layer, SHAPE(2, 3, 4, 5), SHAPE(2, 6, 7, 5), NULL,
                       SHAPE(2, 3, 4, 5), SHAPE(2, 2, 3, 4, 6, 7));
    att_layer_destroy(layer);
    layer = built_nd_mha(SHAPE(2, 3, 4, 5), 1, (const int64_t[]){1}, 0, NULL);
    check_output_shape("MHA rank 4, axes (1,)", layer, SHAPE(2, 3, 4, 5), SHAPE(2, 6, 4, 5), NULL, SHAPE(2, 3, 4, 5),
                       SHAPE(2, 4, 2, 3, 6));
    att_layer_destroy(layer);
    layer = built_nd_mha(SHAPE(2, 5, 3, 4, 16), 2, (const int64_t[]){-3, -2}, 0, NULL);
    check_output_shape("MHA rank 5, axes (-3,-2)", layer, SHAPE(2, 5, 3, 4, 16), SHAPE(2, 5, 3, 4, 16), NULL,
                       SHAPE(2, 5, 3, 4, 16), SHAPE(2, 5, 2, 3, 4, 3, 4));
    att_layer_destroy(layer);
}

/* ---- dot_product_attention ---------------------------------------------------------------- */

typedef struct {
    att_dtype dtype;
    int64_t B, T, S, N, K, H, Hv;
    const double *q, *k, *v, *bias; /* bias NULL for none */
    att_shape bias_shape;
    const uint8_t *mask;            /* NULL for none */
    att_shape mask_shape;
    int has_scale, causal;
    double scale;
} dpa_problem;

/* keras.ops.dot_product_attention: output (B,T,N,Hv). */
static void ref_dpa(const dpa_problem *p, double *out) {
    double scale = p->has_scale ? p->scale : 1 / sqrt((double)p->H), *w = malloc((size_t)p->S * sizeof(double));
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t n = 0; n < p->N; n++)
            for (int64_t t = 0; t < p->T; t++) {
                int64_t kv = n / (p->N / p->K);
                for (int64_t s = 0; s < p->S; s++) {
                    int64_t idx[4] = {b, n, t, s};
                    double x = 0;
                    for (int64_t h = 0; h < p->H; h++)
                        x += p->q[((b * p->T + t) * p->N + n) * p->H + h] * p->k[((b * p->S + s) * p->K + kv) * p->H + h];
                    x = x * scale + (p->bias ? p->bias[broadcast_index(p->bias_shape, idx, 4)] : 0);
                    int keep = (!p->mask || p->mask[broadcast_index(p->mask_shape, idx, 4)]) && (!p->causal || s <= t);
                    w[s] = keep ? x : -0.7 * FLT_MAX;
                }
                softmax(w, p->S);
                for (int64_t e = 0; e < p->Hv; e++) {
                    double o = 0;
                    for (int64_t s = 0; s < p->S; s++) o += w[s] * p->v[((b * p->S + s) * p->K + kv) * p->Hv + e];
                    out[((b * p->T + t) * p->N + n) * p->Hv + e] = o;
                }
            }
    free(w);
}

static void check_dpa(const char *what, const dpa_problem *p) {
    char label[160];
    snprintf(label, sizeof label, "%s (%s)", what, dtype_name(p->dtype));
    att_tensor q = new_tensor(p->dtype, SHAPE(p->B, p->T, p->N, p->H), p->q);
    att_tensor k = new_tensor(p->dtype, SHAPE(p->B, p->S, p->K, p->H), p->k);
    att_tensor v = new_tensor(p->dtype, SHAPE(p->B, p->S, p->K, p->Hv), p->v);
    att_tensor bias = new_tensor(p->dtype, p->bias_shape, p->bias), mask = mask_tensor(p->mask, p->mask_shape);
    att_tensor out = new_tensor(p->dtype, SHAPE(p->B, p->T, p->N, p->Hv), NULL);
    att_dot_product_attention_args args = {.struct_size = sizeof args, .query = &q, .key = &k, .value = &v,
                                           .bias = p->bias ? &bias : NULL, .mask = p->mask ? &mask : NULL,
                                           .has_scale = p->has_scale, .scale = p->scale, .is_causal = p->causal,
                                           .output = &out};
    size_t n = (size_t)(p->B * p->T * p->N * p->Hv);
    double *want = malloc(n * sizeof *want);
    ref_dpa(p, want);
    expect(att_dot_product_attention(&args), ATT_OK, "", label);
    check_close(label, &out, want, n);
    free(q.data), free(k.data), free(v.data), free(bias.data), free(out.data), free(want);
}

static void dot_product_attention(att_dtype dt) {
    uint64_t rng = 51 + (uint64_t)dt;
    enum { B = 2, T = 3, S = 5, N = 4, K = 2, H = 3, Hv = 2 };
    double *q = random_values(&rng, B * T * N * H, -1, 1, dt), *k = random_values(&rng, B * S * K * H, -1, 1, dt);
    double *v = random_values(&rng, B * S * K * Hv, -1, 1, dt), *bias = random_values(&rng, N * T * S, -1, 1, dt);
    uint8_t mask[N * T * S];
    for (int i = 0; i < N * T * S; i++) mask[i] = (uint8_t)(next_u64(&rng) % 4 != 0);
    memset(mask + S, 0, S); /* batch 0, query 1 fully masked: uniform */
    dpa_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .N = N, .K = K, .H = H, .Hv = Hv, .q = q, .k = k, .v = v,
                     .bias = bias, .bias_shape = SHAPE(T, S), .mask = mask, .mask_shape = SHAPE(B, 1, T, S)};
    check_dpa("dpa K<N, bias (T,S), mask (B,1,T,S) with a masked row", &p);
    p.bias_shape = SHAPE(N, 1, S), p.mask_shape = SHAPE(N, T, S), p.has_scale = 1, p.scale = 0.3;
    check_dpa("dpa bias (N,1,S), mask (N,T,S) as (1,N,T,S), scale 0.3", &p);
    p.T = p.S = 3, p.bias = NULL, p.mask = NULL, p.causal = 1, p.K = 1, p.N = 2;
    check_dpa("dpa causal, K=1", &p);
    p.causal = 0, p.K = 2, p.has_scale = 0;
    check_dpa("dpa plain, K=N", &p);
    free(q), free(k), free(v), free(bias);
}

/* ---- dropout and threads ------------------------------------------------------------------ */

/* Calls twice, with 1 and with 2 threads, checks both runs are bit-identical and match ref. */
static void dropout_attention(void) {
    enum { B = 4, Tq = 48, Tv = 80, D = 16 };
    uint64_t rng = 61;
    double *q = random_values(&rng, B * Tq * D, -1, 1, ATT_FLOAT32), *v = random_values(&rng, B * Tv * D, -1, 1, ATT_FLOAT32);
    att_attention_config cfg = {.struct_size = sizeof cfg, .dtype = ATT_FLOAT32, .dropout = 0.25};
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, Tq, D), vs = SHAPE(B, Tv, D);
    expect(att_attention_create(&cfg, &layer), ATT_OK, "", "create Attention(dropout 0.25)");
    expect(att_layer_build(layer, &qs, &vs, NULL), ATT_OK, "", "build Attention(dropout)");
    luong_problem p = {.kind = SCORE_DOT, .dtype = ATT_FLOAT32, .B = B, .Tq = Tq, .Tv = Tv, .D = D, .Dv = D, .q = q,
                       .k = v, .v = v, .scale = 1, .rate = 0.25, .seed = 0x0123456789ABCDEFull, .stream = 0x100000005ull};
    att_tensor out[2], scores[2];
    for (int run = 0; run < 2; run++) {
        expect(att_set_num_threads(run + 1), ATT_OK, "", "set_num_threads");
        out[run] = new_tensor(ATT_FLOAT32, SHAPE(B, Tq, D), NULL);
        scores[run] = new_tensor(ATT_FLOAT32, SHAPE(B, Tq, Tv), NULL);
        expect(call_luong(layer, &p, (call_opts){0, 1, 0, 1}, &out[run], &scores[run]), ATT_OK, "", "dropout call");
    }
    check(memcmp(out[0].data, out[1].data, B * Tq * D * 4) == 0, "Attention dropout output differs for 1 and 2 threads");
    check(memcmp(scores[0].data, scores[1].data, B * Tq * Tv * 4) == 0,
          "Attention dropout scores differ for 1 and 2 threads");
    int64_t kept = 0;
    for (int64_t f = 0; f < B * Tq * Tv; f++) kept += dropout_keeps((uint64_t)f, 0.25, p.seed, p.stream);
    check(kept > 0.72 * B * Tq * Tv && kept < 0.78 * B * Tq * Tv, "the Philox rule keeps %lld of %d", (long long)kept,
          B * Tq * Tv);
    check_luong("Attention dropout 0.25, training, Philox mask", layer, &p, (call_opts){0, 1, 0, 1});
    p.stream = 6;
    check_luong("Attention dropout, stream 6", layer, &p, (call_opts){0, 1, 0, 1});
    p.rate = 0;
    check_luong("Attention dropout, not training", layer, &p, (call_opts){0, 1, 0, 0});
    for (int run = 0; run < 2; run++) free(out[run].data), free(scores[run].data);
    att_layer_destroy(layer);
    free(q), free(v);

    /* AdditiveAttention, float64, rate 0.5, causal. */
    enum { B2 = 2, T2 = 40, D2 = 8 };
    q = random_values(&rng, B2 * T2 * D2, -1, 1, ATT_FLOAT64);
    att_additive_attention_config acfg = {.struct_size = sizeof acfg, .dtype = ATT_FLOAT64, .dropout = 0.5};
    expect(att_additive_attention_create(&acfg, &layer), ATT_OK, "", "create AdditiveAttention(dropout 0.5)");
    qs = SHAPE(B2, T2, D2);
    expect(att_layer_build(layer, &qs, &qs, NULL), ATT_OK, "", "build AdditiveAttention(dropout)");
    luong_problem a = {.kind = SCORE_ADDITIVE, .dtype = ATT_FLOAT64, .B = B2, .Tq = T2, .Tv = T2, .D = D2, .Dv = D2,
                       .q = q, .k = q, .v = q, .causal = 1, .rate = 0.5, .seed = 99, .stream = 1};
    for (int threads = 1; threads <= 2; threads++) {
        att_set_num_threads(threads);
        check_luong(threads == 1 ? "AdditiveAttention dropout 0.5, causal, 1 thread"
                                 : "AdditiveAttention dropout 0.5, causal, 2 threads",
                    layer, &a, (call_opts){0, 1, 1, 1});
    }
    att_layer_destroy(layer);
    free(q);
}

static void dropout_mha(void) {
    enum { B = 2, T = 24, S = 40, D = 8, N = 2, Hk = 4 };
    uint64_t rng = 71;
    att_multi_head_attention_config cfg = mha_config(ATT_FLOAT32, N, Hk, 0, 1);
    cfg.dropout = 0.25;
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, T, D), vs = SHAPE(B, S, D);
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create MHA(dropout)");
    expect(att_layer_build(layer, &qs, &vs, NULL), ATT_OK, "", "build MHA(dropout)");
    double *values[8] = {0};
    size_t count = load_random_weights(layer, ATT_FLOAT32, &rng, values);
    double *q = random_values(&rng, B * T * D, -1, 1, ATT_FLOAT32), *v = random_values(&rng, B * S * D, -1, 1, ATT_FLOAT32);
    uint8_t vmask[B * S];
    for (int i = 0; i < B * S; i++) vmask[i] = (uint8_t)(i % 7 != 3);
    mha_problem p = {.dtype = ATT_FLOAT32, .B = B, .T = T, .S = S, .Dq = D, .Dk = D, .Dv = D, .N = N, .Hk = Hk,
                     .Hv = Hk, .O = D, .out_shape = SHAPE(B, T, D), .q = q, .k = v, .v = v};
    bind_mha_weights(&p, layer, values, count);
    p.vmask = vmask, p.layer_dropout = 0.25, p.rate = 0.25, p.seed = 0xFEEDFACECAFEBEEFull, p.stream = 3;
    att_tensor out[2], scores = new_tensor(ATT_FLOAT32, SHAPE(B, N, T, S), NULL);
    for (int run = 0; run < 2; run++) {
        att_set_num_threads(run + 1);
        out[run] = new_tensor(ATT_FLOAT32, SHAPE(B, T, D), NULL);
        expect(call_mha(layer, &p, (call_opts){1, 0, 0, 1}, &out[run], &scores), ATT_OK, "", "MHA dropout call");
    }
    check(memcmp(out[0].data, out[1].data, B * T * D * 4) == 0, "MHA dropout output differs for 1 and 2 threads");
    check_mha("MHA dropout 0.25, training, value_mask, scores (pre-dropout)", layer, &p, (call_opts){1, 1, 0, 1});
    check_mha("MHA dropout 0.25, training, no scores", layer, &p, (call_opts){1, 0, 0, 1});
    p.rate = 0;
    check_mha("MHA dropout 0.25, not training", layer, &p, (call_opts){1, 0, 0, 0});
    free(out[0].data), free(out[1].data), free(scores.data), free(q), free(v);
    for (size_t i = 0; i < count; i++) free(values[i]);
    att_layer_destroy(layer);
}

/* Several threads call one layer at once; every result equals the serial one bit for bit. */
typedef struct {
    const att_layer *layer;
    mha_problem p;
    att_tensor want;
    int mismatches;
} worker_job;

static int concurrent_worker(void *arg) {
    worker_job *job = arg;
    for (int i = 0; i < 25; i++) {
        att_tensor out = new_tensor(job->p.dtype, job->want.shape, NULL);
        att_status st = call_mha(job->layer, &job->p, (call_opts){0, 0, 0, 0}, &out, NULL);
        job->mismatches += st != ATT_OK || memcmp(out.data, job->want.data, (size_t)numel(out.shape) * 4) != 0;
        free(out.data);
    }
    return 0;
}

static void concurrent_calls(void) {
    enum { B = 2, T = 16, D = 12, JOBS = 4 };
    uint64_t rng = 81;
    att_multi_head_attention_config cfg = mha_config(ATT_FLOAT32, 3, 4, 0, 1);
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, T, D);
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create MHA for threads");
    expect(att_layer_build(layer, &qs, &qs, NULL), ATT_OK, "", "build MHA for threads");
    double *values[8] = {0}, *inputs[JOBS];
    size_t count = load_random_weights(layer, ATT_FLOAT32, &rng, values);
    worker_job jobs[JOBS];
    thrd_t threads[JOBS];
    for (int j = 0; j < JOBS; j++) {
        inputs[j] = random_values(&rng, B * T * D, -1, 1, ATT_FLOAT32);
        jobs[j] = (worker_job){.layer = layer,
                               .p = {.dtype = ATT_FLOAT32, .B = B, .T = T, .S = T, .Dq = D, .Dk = D, .Dv = D, .N = 3,
                                     .Hk = 4, .Hv = 4, .O = D, .out_shape = SHAPE(B, T, D), .q = inputs[j],
                                     .k = inputs[j], .v = inputs[j]}};
        jobs[j].p.causal = j % 2;
        bind_mha_weights(&jobs[j].p, layer, values, count);
        jobs[j].want = new_tensor(ATT_FLOAT32, SHAPE(B, T, D), NULL);
        expect(call_mha(layer, &jobs[j].p, (call_opts){0, 0, 0, 0}, &jobs[j].want, NULL), ATT_OK, "", "serial call");
        double *want = malloc(B * T * D * sizeof *want);
        ref_mha(&jobs[j].p, 0, want, NULL);
        check_close("MHA serial call before the concurrent ones", &jobs[j].want, want, B * T * D);
        free(want);
    }
    for (int j = 0; j < JOBS; j++) check(thrd_create(&threads[j], concurrent_worker, &jobs[j]) == thrd_success, "thrd_create");
    for (int j = 0; j < JOBS; j++) {
        thrd_join(threads[j], NULL);
        check(jobs[j].mismatches == 0, "concurrent calls: %d of 25 results of thread %d differ from the serial one",
              jobs[j].mismatches, j);
        free(jobs[j].want.data), free(inputs[j]);
    }
    for (size_t i = 0; i < count; i++) free(values[i]);
    att_layer_destroy(layer);
}

/* ---- version, statuses, threads, Philox ---------------------------------------------------- */

static int fresh_thread_error(void *arg) {
    *(int *)arg = strcmp(att_last_error(), "") == 0;
    return 0;
}

static void meta(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ATT_VERSION_MAJOR, ATT_VERSION_MINOR, ATT_VERSION_PATCH);
    check(att_version() && strcmp(att_version(), want) == 0, "att_version() is %s, header says %s",
          att_version() ? att_version() : "(null)", want);
    static const char *const names[] = {"ATT_OK", "ATT_ERR_NULL_ARGUMENT", "ATT_ERR_INVALID_ARGUMENT",
                                        "ATT_ERR_SHAPE", "ATT_ERR_DTYPE", "ATT_ERR_INVALID_HANDLE",
                                        "ATT_ERR_NOT_BUILT", "ATT_ERR_STRUCT_SIZE", "ATT_ERR_OUT_OF_MEMORY",
                                        "ATT_ERR_INTERNAL"};
    for (int s = 0; s < 10; s++)
        check(strcmp(att_status_name((att_status)s), names[s]) == 0, "att_status_name(%d) is %s", s,
              att_status_name((att_status)s));
    check(strcmp(att_status_name((att_status)10), "unknown status") == 0, "att_status_name(10) is %s",
          att_status_name((att_status)10));
    check(strcmp(att_status_name((att_status)-1), "unknown status") == 0, "att_status_name(-1) is %s",
          att_status_name((att_status)-1));
    check(strcmp(att_last_error(), "") == 0, "att_last_error() before any failure is \"%s\"", att_last_error());
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    check(att_get_num_threads() == cpus, "default att_get_num_threads() is %d, online CPUs %ld", att_get_num_threads(), cpus);
    expect(att_set_num_threads(3), ATT_OK, "", "att_set_num_threads(3)");
    check(att_get_num_threads() == 3, "att_get_num_threads() after set 3 is %d", att_get_num_threads());
    expect(att_set_num_threads(1), ATT_OK, "", "att_set_num_threads(1)");
    check(att_get_num_threads() == 1, "att_get_num_threads() after set 1 is %d", att_get_num_threads());

    /* att_last_error is per thread: a fresh thread sees "" after a failure here. */
    att_set_num_threads(0);
    int clean = 0;
    thrd_t t;
    if (check(thrd_create(&t, fresh_thread_error, &clean) == thrd_success, "thrd_create")) thrd_join(t, NULL);
    check(clean, "att_last_error() on a new thread is not \"\" after another thread's failure");

    /* Philox-4x32-10 known answers (Random123's kat_vectors): the test's own generator. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1}};
    for (int i = 0; i < 3; i++) {
        uint32_t c[4] = {kat[i][0], kat[i][1], kat[i][2], kat[i][3]};
        philox4x32_10(c, &kat[i][4]);
        check(memcmp(c, &kat[i][6], sizeof c) == 0, "Philox known answer %d: %08x %08x %08x %08x", i, c[0], c[1],
              c[2], c[3]);
    }
}

static void attention_both(void) {
    for (int i = 0; i < 2; i++) attention_layers(DTYPES[i]);
}
static void additive_both(void) {
    for (int i = 0; i < 2; i++) additive_layers(DTYPES[i]);
}
static void mha_both(void) {
    for (int i = 0; i < 2; i++) {
        mha_gate_bias(DTYPES[i]);
        mha_no_bias(DTYPES[i]);
    }
}
static void dpa_both(void) {
    for (int i = 0; i < 2; i++) dot_product_attention(DTYPES[i]);
}

int main(void) {
    run_group("version, statuses, threads, Philox", meta);
    run_group("Attention", attention_both);
    run_group("AdditiveAttention", additive_both);
    run_group("MultiHeadAttention", mha_both);
    run_group("MultiHeadAttention initialisers", mha_initializers);
    run_group("output shapes", output_shapes);
    run_group("dot_product_attention", dpa_both);
    run_group("Attention dropout", dropout_attention);
    run_group("MultiHeadAttention dropout", dropout_mha);
    run_group("concurrent calls", concurrent_calls);
    return finish();
}
