/*
 * test_gqa_reuse.c — GroupQueryAttention and ReuseMultiHeadAttention through the C API, against
 * plain C reference loops (reference.h) written from Keras 3.15's GroupQueryAttention and TF Model
 * Garden's ReuseMultiHeadAttention, in double.
 *   GroupQueryAttention: 1, some and all key/value heads; with and without bias and gate; query,
 *   value, key and attention masks, causal, sliding window; fully masked rows on Keras's fused
 *   path (uniform) and explicit path (zero); weights in Keras order; dropout by the header's rule.
 *   ReuseMultiHeadAttention: no, partial, full and -1 reuse; relative position bias with T and S
 *   longer than pe_max_seq_length; attention_mask with a fully masked row (softmax(s - 1e9));
 *   scores [new, reused]; weights in upstream's order; dropout by the header's rule.
 *   Bad input of both, and reuse_attention_scores given to the other layers.
 * float32 and float64. Prints `N passed, N failed`.
 */
#include "check.h"
#include "reference.h"

static const att_dtype DTYPES[2] = {ATT_FLOAT32, ATT_FLOAT64};

/* The expected weights of a layer: names and shapes in order. */
typedef struct {
    const char *names[16];
    att_shape shapes[16];
    size_t count;
} weight_list;

static void add_weight(weight_list *l, const char *name, att_shape s) {
    l->names[l->count] = name;
    l->shapes[l->count++] = s;
}

/* a's dims followed by b's. */
static att_shape shape_cat(att_shape a, att_shape b) {
    for (int i = 0; i < b.rank; i++) a.dims[a.rank++] = b.dims[i];
    return a;
}

static void free_values(double **values, size_t count) {
    for (size_t i = 0; i < count; i++) free(values[i]);
}

/* ---- GroupQueryAttention ------------------------------------------------------------------ */

/* One GroupQueryAttention problem: query (B,T,D), value (B,S,D), key (B,S,Dk). */
typedef struct {
    att_dtype dtype;
    int64_t B, T, S, D, Dk, Nq, Nkv, H;
    const double *q, *k, *v; /* k == v (and Dk == D) when no key is passed */
    const double *wq, *bq, *wk, *bk, *wg, *bg, *wv, *bv, *wo, *bo; /* b* NULL without bias, wg without gate */
    ref_masks masks;         /* masks.causal is the call's use_causal_mask */
    double layer_dropout;    /* the config's rate: with scores, it picks Keras's path */
    double rate;             /* dropout applied (training) */
    uint64_t seed, stream;
} gqa_problem;

/* Keras 3.15's GroupQueryAttention: output (B,T,D), pre-dropout scores (B,Nq,T,S). Query head n
 * uses key/value head n / (Nq/Nkv); the fused path (no scores, dropout 0) leaves a fully masked
 * row uniform, the explicit path zero. */
static void ref_gqa(const gqa_problem *p, int want_scores, double *out, double *scores) {
    int64_t B = p->B, T = p->T, S = p->S, Nq = p->Nq, Nkv = p->Nkv, H = p->H;
    double *qp = malloc((size_t)(B * T * Nq * H) * sizeof(double));
    double *gp = malloc((size_t)(B * T * Nq * H) * sizeof(double));
    double *kp = malloc((size_t)(B * S * Nkv * H) * sizeof(double));
    double *vp = malloc((size_t)(B * S * Nkv * H) * sizeof(double));
    double *attn = malloc((size_t)(B * T * Nq * H) * sizeof(double));
    double *w = malloc((size_t)(B * Nq * T * S) * sizeof(double));
    project(p->q, B * T, p->D, p->wq, p->bq, Nq * H, qp);
    project(p->k, B * S, p->Dk, p->wk, p->bk, Nkv * H, kp);
    project(p->v, B * S, p->D, p->wv, p->bv, Nkv * H, vp);
    uint8_t *keep = ref_keep(&p->masks, B, T, S);
    ref_heads h = {B, T, S, Nq, Nkv, H, H, 0, Nq, qp, kp, vp};
    int fused = !want_scores && p->layer_dropout == 0;
    ref_head_weights(&h, keep, NULL, 0, fused ? MASKED_FUSED : MASKED_ZEROED, p->dtype, w);
    ref_head_outputs(&h, w, p->rate, p->seed, p->stream, attn);
    if (p->wg) {
        project(p->q, B * T, p->D, p->wg, p->bg, Nq * H, gp);
        for (int64_t i = 0; i < B * T * Nq * H; i++) attn[i] /= 1 + exp(-gp[i]);
    }
    project(attn, B * T, Nq * H, p->wo, p->bo, p->D, out);
    if (scores) memcpy(scores, w, (size_t)(B * Nq * T * S) * sizeof(double));
    free(qp), free(gp), free(kp), free(vp), free(attn), free(w), free(keep);
}

static att_status call_gqa(const att_layer *layer, const gqa_problem *p, call_opts o, att_tensor *out,
                           att_tensor *scores) {
    const ref_masks *m = &p->masks;
    att_tensor qm = mask_tensor(m->query, SHAPE(p->B, p->T)), vm = mask_tensor(m->value, SHAPE(p->B, p->S));
    att_tensor km = mask_tensor(m->key, SHAPE(p->B, p->S)), am = mask_tensor(m->attention, m->attention_shape);
    call_inputs in = {.dtype = p->dtype, .q = p->q, .k = p->k, .v = p->v, .q_shape = SHAPE(p->B, p->T, p->D),
                      .k_shape = SHAPE(p->B, p->S, p->Dk), .v_shape = SHAPE(p->B, p->S, p->D),
                      .query_mask = m->query ? &qm : NULL, .value_mask = m->value ? &vm : NULL,
                      .key_mask = m->key ? &km : NULL, .attention_mask = m->attention ? &am : NULL, .seed = p->seed,
                      .stream = p->stream};
    o.causal_arg = m->causal;
    return call_layer(layer, &in, o, out, scores);
}

/* Calls the layer (use_causal_mask as p->masks.causal) and compares with ref_gqa. */
static void check_gqa(const char *what, const att_layer *layer, const gqa_problem *p, call_opts o) {
    call_result r = new_call_result(p->dtype, SHAPE(p->B, p->T, p->D), SHAPE(p->B, p->Nq, p->T, p->S));
    ref_gqa(p, o.want_scores, r.want_out, r.want_scores);
    check_call_result(what, call_gqa(layer, p, o, &r.out, &r.scores), o, &r);
}

static att_group_query_attention_config gqa_config(att_dtype dt, int64_t nq, int64_t nkv, int64_t head_dim,
                                                   int32_t use_bias, int32_t use_gate) {
    att_group_query_attention_config c = {.struct_size = sizeof c};
    c.dtype = dt;
    c.num_query_heads = nq;
    c.num_key_value_heads = nkv;
    c.head_dim = head_dim;
    c.no_bias = !use_bias;
    c.use_gate = use_gate;
    c.seed = 7;
    return c;
}

/* GroupQueryAttention's weights in Keras order, with gate and biases. */
static const char *const GQA_WEIGHT_NAMES[10] = {"query/kernel", "query/bias", "key/kernel", "key/bias",
                                                 "gate/kernel", "gate/bias", "value/kernel", "value/bias",
                                                 "attention_output/kernel", "attention_output/bias"};

/* Creates the layer `cfg` describes, builds it for p's shapes (with the key when key_given),
 * checks its weight list, loads random weights into values and points p's weights at them. */
static att_layer *new_gqa(const att_group_query_attention_config *cfg, gqa_problem *p, int key_given, uint64_t *rng,
                          double **values, size_t *count) {
    char what[128];
    snprintf(what, sizeof what, "GQA(Nq %lld, Nkv %lld, bias %d, gate %d, %s)", (long long)p->Nq, (long long)p->Nkv,
             !cfg->no_bias, cfg->use_gate, dtype_name(p->dtype));
    att_layer *layer = NULL;
    att_shape qs = SHAPE(p->B, p->T, p->D), vs = SHAPE(p->B, p->S, p->D), ks = SHAPE(p->B, p->S, p->Dk);
    expect(att_group_query_attention_create(cfg, &layer), ATT_OK, "", what);
    expect(att_layer_build(layer, &qs, &vs, key_given ? &ks : NULL), ATT_OK, "", what);
    att_shape all[10] = {SHAPE(p->D, p->Nq, p->H),   SHAPE(p->Nq, p->H),  SHAPE(p->Dk, p->Nkv, p->H),
                         SHAPE(p->Nkv, p->H),        SHAPE(p->D, p->Nq, p->H), SHAPE(p->Nq, p->H),
                         SHAPE(p->D, p->Nkv, p->H),  SHAPE(p->Nkv, p->H), SHAPE(p->Nq, p->H, p->D),
                         SHAPE(p->D)};
    weight_list want = {0};
    for (int i = 0; i < 10; i++)
        if ((i % 2 == 0 || !cfg->no_bias) && (cfg->use_gate || (i != 4 && i != 5)))
            add_weight(&want, GQA_WEIGHT_NAMES[i], all[i]);
    check_weight_list(what, layer, want.count, want.names, want.shapes);
    *count = load_random_weights(layer, p->dtype, rng, values);
    const double **fields[10] = {&p->wq, &p->bq, &p->wk, &p->bk, &p->wg, &p->bg, &p->wv, &p->bv, &p->wo, &p->bo};
    for (int i = 0; i < 10; i++) *fields[i] = weight_named(layer, values, *count, GQA_WEIGHT_NAMES[i]);
    return layer;
}

/* Key/value heads 1, a divisor and all of 4 query heads, each with and without bias and gate;
 * query, value and attention masks with fully masked rows; causal with T != S. */
static void gqa_heads(att_dtype dt) {
    enum { B = 2, T = 3, S = 4, D = 5, Dk = 3, Nq = 4, H = 3 };
    static const struct {
        int64_t nkv;
        int32_t bias, gate;
    } variants[] = {{1, 1, 1}, {2, 1, 0}, {4, 0, 1}, {2, 0, 0}};
    /* query_mask masks (1, 2); attention_mask masks row (0, 1) entirely. */
    static const uint8_t qmask[B * T] = {1, 1, 1, 1, 1, 0};
    static const uint8_t vmask[B * S] = {1, 0, 1, 1, 1, 1, 1, 0};
    static const uint8_t amask[B * T * S] = {1, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1};
    uint64_t rng = 101 + (uint64_t)dt;
    double *q = random_values(&rng, B * T * D, -1, 1, dt), *k = random_values(&rng, B * S * Dk, -1, 1, dt);
    double *v = random_values(&rng, B * S * D, -1, 1, dt);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        att_group_query_attention_config cfg = gqa_config(dt, Nq, variants[i].nkv, H, variants[i].bias,
                                                          variants[i].gate);
        gqa_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .D = D, .Dk = Dk, .Nq = Nq, .Nkv = variants[i].nkv,
                         .H = H, .q = q, .k = k, .v = v};
        double *values[10] = {0};
        size_t count = 0;
        att_layer *layer = new_gqa(&cfg, &p, 1, &rng, values, &count);
        char what[160];
#define GQA_CASE(text, scores)                                                                                 \
    snprintf(what, sizeof what, "GQA Nkv %lld bias %d gate %d: %s", (long long)p.Nkv, variants[i].bias,      \
             variants[i].gate, text);                                                                          \
    check_gqa(what, layer, &p, (call_opts){1, scores, 0, 0})
        GQA_CASE("no masks, scores", 1);
        GQA_CASE("no masks, fused", 0);
        p.masks = (ref_masks){.query = qmask, .value = vmask, .attention = amask, .attention_shape = SHAPE(B, T, S)};
        GQA_CASE("query/value/attention (B,T,S) masks, scores (masked rows 0)", 1);
        GQA_CASE("query/value/attention (B,T,S) masks, fused (masked rows uniform)", 0);
        p.masks = (ref_masks){.causal = 1};
        GQA_CASE("causal only (T 3 < S 4), fused", 0);
        GQA_CASE("causal only (T 3 < S 4), scores", 1);
        p.masks = (ref_masks){.causal = 1, .value = vmask};
        GQA_CASE("causal + value_mask, fused", 0);
#undef GQA_CASE
        att_layer_destroy(layer);
        free_values(values, count);
    }
    free(q), free(k), free(v);
}

/* Self-attention without a key (Keras's key = value): key_mask, query_mask, attention (T,S),
 * causal and a sliding window together, leaving fully masked rows. */
static void gqa_masks(att_dtype dt) {
    enum { B = 2, T = 5, D = 4, Nq = 6, Nkv = 3, H = 2 };
    uint64_t rng = 131 + (uint64_t)dt;
    att_group_query_attention_config cfg = gqa_config(dt, Nq, Nkv, H, 1, 0);
    cfg.sliding_window = 2;
    double *x = random_values(&rng, B * T * D, -1, 1, dt);
    gqa_problem p = {.dtype = dt, .B = B, .T = T, .S = T, .D = D, .Dk = D, .Nq = Nq, .Nkv = Nkv, .H = H, .q = x,
                     .k = x, .v = x};
    double *values[10] = {0};
    size_t count = 0;
    att_layer *layer = new_gqa(&cfg, &p, 0, &rng, values, &count);
    /* key_mask[1, 0] = 0 leaves (1, 0) with nothing under causal + window; query_mask masks (0, 3). */
    static const uint8_t kmask[B * T] = {1, 1, 0, 1, 1, 0, 1, 1, 1, 1};
    static const uint8_t qmask[B * T] = {1, 1, 1, 0, 1, 1, 1, 1, 1, 1};
    static uint8_t amask[T * T];
    for (int i = 0; i < T * T; i++) amask[i] = (uint8_t)(i != 6 && i != 18);
    p.masks = (ref_masks){.key = kmask, .query = qmask, .attention = amask, .attention_shape = SHAPE(T, T),
                          .causal = 1, .window = 2};
    check_gqa("GQA window 2 + causal + key/query masks + attention (T,S), scores", layer, &p, (call_opts){0, 1, 0, 0});
    check_gqa("GQA window 2 + causal + key/query masks + attention (T,S), fused", layer, &p, (call_opts){0, 0, 0, 0});
    p.masks = (ref_masks){.window = 2};
    check_gqa("GQA window 2 only, fused", layer, &p, (call_opts){0, 0, 0, 0});
    p.masks = (ref_masks){.window = 2, .key = kmask};
    check_gqa("GQA window 2 + key_mask, scores", layer, &p, (call_opts){0, 1, 0, 0});
    /* Other batch and length than built. */
    p.B = 1, p.T = p.S = 3, p.masks = (ref_masks){.window = 2, .causal = 1};
    check_gqa("GQA called with batch 1, length 3 (built 2, 5)", layer, &p, (call_opts){0, 1, 0, 0});
    att_shape out = {0}, scores = {0}, qs = SHAPE(3, 7, D), vs = SHAPE(3, 2, D);
    expect(att_layer_output_shape(layer, &qs, &vs, NULL, &out, &scores), ATT_OK, "", "GQA output_shape");
    check(same_shape(out, SHAPE(3, 7, D)) && same_shape(scores, SHAPE(3, Nq, 7, 2)),
          "GQA output_shape: output and scores shapes are not (3,7,4), (3,6,7,2)");
    att_layer_destroy(layer);
    free_values(values, count);
    free(x);
}

/* Dropout in training reproduces the header's Philox rule on the (B,Nq,T,S) scores. */
static void gqa_dropout(att_dtype dt) {
    enum { B = 2, T = 8, S = 12, D = 8, Nq = 4, Nkv = 2, H = 4 };
    uint64_t rng = 151 + (uint64_t)dt;
    att_group_query_attention_config cfg = gqa_config(dt, Nq, Nkv, H, 1, 1);
    cfg.dropout = 0.3;
    double *q = random_values(&rng, B * T * D, -1, 1, dt), *v = random_values(&rng, B * S * D, -1, 1, dt);
    gqa_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .D = D, .Dk = D, .Nq = Nq, .Nkv = Nkv, .H = H, .q = q,
                     .k = v, .v = v};
    double *values[10] = {0};
    size_t count = 0;
    att_layer *layer = new_gqa(&cfg, &p, 0, &rng, values, &count);
    uint8_t vmask[B * S], qmask[B * T];
    for (int i = 0; i < B * S; i++) vmask[i] = (uint8_t)(i % 5 != 2);
    for (int i = 0; i < B * T; i++) qmask[i] = (uint8_t)(i != 3);
    p.masks = (ref_masks){.value = vmask, .query = qmask};
    p.layer_dropout = p.rate = 0.3, p.seed = 0x0123456789ABCDEFull, p.stream = 11;
    check_gqa("GQA dropout 0.3, training, scores (pre-dropout)", layer, &p, (call_opts){0, 1, 0, 1});
    check_gqa("GQA dropout 0.3, training, no scores (masked row 0)", layer, &p, (call_opts){0, 0, 0, 1});
    p.stream = (uint64_t)1 << 40, p.seed = 3;
    check_gqa("GQA dropout 0.3, training, stream 2^40", layer, &p, (call_opts){0, 0, 0, 1});
    p.rate = 0;
    check_gqa("GQA dropout 0.3, not training (explicit path: masked row 0)", layer, &p, (call_opts){0, 0, 0, 0});
    att_layer_destroy(layer);
    free_values(values, count);
    free(q), free(v);
}

/* ---- ReuseMultiHeadAttention -------------------------------------------------------------- */

/* One ReuseMultiHeadAttention problem: query (B,T,Dq), value (B,S,Dv), key (B,S,Dk); r of the
 * N heads reused, n = N - r new. */
typedef struct {
    att_dtype dtype;
    int64_t B, T, S, Dq, Dk, Dv, N, r, Hk, Hv, O, P; /* O: product of the output_shape; P: pe_max_seq_length */
    att_shape out_shape;                             /* (B, T, *output_shape) */
    const double *q, *k, *v;                         /* k == v when no key is passed */
    const double *pe, *wq, *bq, *wk, *bk, *wvr, *bvr, *wvn, *bvn, *wor, *bor, *won, *bon; /* NULL: absent */
    const double *given;                             /* reuse_attention_scores (B,N,T,S); NULL: not passed */
    const uint8_t *amask;                            /* NULL: none */
    att_shape amask_shape;
    double rate; /* dropout applied (training) */
    uint64_t seed, stream;
} reuse_problem;

/* TF Model Garden's ReuseMultiHeadAttention: scores (B,N,T,S) = [new heads: softmax(q·k/√Hk +
 * E[h, clamp(s - t + P - 1)] masked by + (-1e9)), reused heads: given[:, :r]]; output = the
 * reused heads' projection (+bias) + the new heads' (bias only when r = 0); dropout on both by
 * the element's flat index in the scores. */
static void ref_reuse(const reuse_problem *p, double *out, double *scores) {
    int64_t B = p->B, T = p->T, S = p->S, N = p->N, r = p->r, n = N - r, Hk = p->Hk, Hv = p->Hv;
    double *qp = malloc((size_t)(B * T * n * Hk + 1) * sizeof(double));
    double *kp = malloc((size_t)(B * S * n * Hk + 1) * sizeof(double));
    double *vp = malloc((size_t)(B * S * N * Hv) * sizeof(double));
    double *attn = malloc((size_t)(B * T * N * Hv) * sizeof(double));
    double *part = malloc((size_t)(B * T * p->O) * sizeof(double));
    for (int64_t i = 0; i < B * T * p->O; i++) out[i] = 0;
    if (n > 0) {
        project(p->q, B * T, p->Dq, p->wq, p->bq, n * Hk, qp);
        project(p->k, B * S, p->Dk, p->wk, p->bk, n * Hk, kp);
        project(p->v, B * S, p->Dv, p->wvn, p->bvn, n * Hv, vp);
        uint8_t *keep = ref_keep(&(ref_masks){.attention = p->amask, .attention_shape = p->amask_shape}, B, T, S);
        ref_heads h = {B, T, S, n, n, Hk, Hv, 0, N, qp, kp, vp};
        ref_head_weights(&h, keep, p->pe, p->P, MASKED_MINUS_1E9, p->dtype, scores);
        ref_head_outputs(&h, scores, p->rate, p->seed, p->stream, attn);
        project(attn, B * T, n * Hv, p->won, p->bon, p->O, out);
        free(keep);
    }
    if (r > 0) {
        for (int64_t b = 0; b < B; b++)
            memcpy(scores + (b * N + n) * T * S, p->given + b * N * T * S, (size_t)(r * T * S) * sizeof(double));
        project(p->v, B * S, p->Dv, p->wvr, p->bvr, r * Hv, vp);
        ref_heads h = {B, T, S, r, r, Hk, Hv, n, N, NULL, NULL, vp};
        ref_head_outputs(&h, scores, p->rate, p->seed, p->stream, attn);
        project(attn, B * T, r * Hv, p->wor, p->bor, p->O, part);
        for (int64_t i = 0; i < B * T * p->O; i++) out[i] += part[i];
    }
    free(qp), free(kp), free(vp), free(attn), free(part);
}

static att_status call_reuse(const att_layer *layer, const reuse_problem *p, call_opts o, att_tensor *out,
                             att_tensor *scores) {
    att_tensor am = mask_tensor(p->amask, p->amask_shape);
    att_tensor given = new_tensor(p->dtype, SHAPE(p->B, p->N, p->T, p->S), p->given);
    call_inputs in = {.dtype = p->dtype, .q = p->q, .k = p->k, .v = p->v, .q_shape = SHAPE(p->B, p->T, p->Dq),
                      .k_shape = SHAPE(p->B, p->S, p->Dk), .v_shape = SHAPE(p->B, p->S, p->Dv),
                      .attention_mask = p->amask ? &am : NULL, .reuse_attention_scores = p->given ? &given : NULL,
                      .seed = p->seed, .stream = p->stream};
    att_status st = call_layer(layer, &in, o, out, scores);
    free(given.data);
    return st;
}

static void check_reuse(const char *what, const att_layer *layer, const reuse_problem *p, call_opts o) {
    call_result r = new_call_result(p->dtype, p->out_shape, SHAPE(p->B, p->N, p->T, p->S));
    ref_reuse(p, r.want_out, r.want_scores);
    check_call_result(what, call_reuse(layer, p, o, &r.out, &r.scores), o, &r);
}

static att_reuse_multi_head_attention_config reuse_config(att_dtype dt, int64_t heads, int64_t key_dim,
                                                          int64_t value_dim, int64_t reuse, int32_t use_bias) {
    att_reuse_multi_head_attention_config c = {.struct_size = sizeof c};
    c.dtype = dt;
    c.num_heads = heads;
    c.key_dim = key_dim;
    c.value_dim = value_dim;
    c.reuse_attention = reuse;
    c.no_bias = !use_bias;
    c.seed = 9;
    return c;
}

/* Upstream's weights, with every optional one. */
static const char *const REUSE_WEIGHT_NAMES[13] = {
    "relative_position_embeddings", "query/kernel", "query/bias", "key/kernel", "key/bias",
    "value_reuse/kernel", "value_reuse/bias", "value_new/kernel", "value_new/bias",
    "attention_output_reuse/kernel", "attention_output_reuse/bias", "attention_output_new/kernel",
    "attention_output_new/bias"};

/* The weights the header lists for this config and p's dims, in order. */
static weight_list reuse_weights(const att_reuse_multi_head_attention_config *c, const reuse_problem *p) {
    int64_t r = p->r, n = p->N - r, P = p->P;
    att_shape o = p->out_shape;
    o.rank -= 2;
    memmove(o.dims, o.dims + 2, (size_t)o.rank * sizeof o.dims[0]);
    int bias = c->no_bias == 0;
    struct {
        int present;
        att_shape shape;
    } all[13] = {{c->use_relative_pe && n > 0, SHAPE(1, n, 2 * P - 1)},
                 {n > 0, SHAPE(p->Dq, n, p->Hk)},
                 {n > 0 && bias, SHAPE(n, p->Hk)},
                 {n > 0, SHAPE(p->Dk, n, p->Hk)},
                 {n > 0 && bias, SHAPE(n, p->Hk)},
                 {r > 0, SHAPE(p->Dv, r, p->Hv)},
                 {r > 0 && bias, SHAPE(r, p->Hv)},
                 {n > 0, SHAPE(p->Dv, n, p->Hv)},
                 {n > 0 && bias, SHAPE(n, p->Hv)},
                 {r > 0, shape_cat(SHAPE(r, p->Hv), o)},
                 {r > 0 && bias, o},
                 {n > 0, shape_cat(SHAPE(n, p->Hv), o)},
                 {n > 0 && bias && r == 0, o}};
    weight_list l = {0};
    for (int i = 0; i < 13; i++)
        if (all[i].present) add_weight(&l, REUSE_WEIGHT_NAMES[i], all[i].shape);
    return l;
}

/* Creates the layer, builds it for p's shapes, checks its weight list, loads random weights
 * and points p's weights at them. */
static att_layer *new_reuse(const att_reuse_multi_head_attention_config *cfg, reuse_problem *p, int key_given,
                            uint64_t *rng, double **values, size_t *count) {
    char what[160];
    snprintf(what, sizeof what, "Reuse(N %lld, reuse %lld, relative PE %d, P %lld, bias %d, %s)",
             (long long)cfg->num_heads, (long long)cfg->reuse_attention, cfg->use_relative_pe,
             (long long)cfg->pe_max_seq_length, !cfg->no_bias, dtype_name(p->dtype));
    att_layer *layer = NULL;
    att_shape qs = SHAPE(p->B, p->T, p->Dq), vs = SHAPE(p->B, p->S, p->Dv), ks = SHAPE(p->B, p->S, p->Dk);
    expect(att_reuse_multi_head_attention_create(cfg, &layer), ATT_OK, "", what);
    expect(att_layer_build(layer, &qs, &vs, key_given ? &ks : NULL), ATT_OK, "", what);
    weight_list want = reuse_weights(cfg, p);
    check_weight_list(what, layer, want.count, want.names, want.shapes);
    att_shape out = {0}, scores = {0};
    expect(att_layer_output_shape(layer, &qs, &vs, key_given ? &ks : NULL, &out, &scores), ATT_OK, "", what);
    check(same_shape(out, p->out_shape) && same_shape(scores, SHAPE(p->B, p->N, p->T, p->S)),
          "%s: output_shape gives other output or scores shapes", what);
    *count = load_random_weights(layer, p->dtype, rng, values);
    const double **fields[13] = {&p->pe,  &p->wq,  &p->bq,  &p->wk,  &p->bk,  &p->wvr, &p->bvr,
                                 &p->wvn, &p->bvn, &p->wor, &p->bor, &p->won, &p->bon};
    for (int i = 0; i < 13; i++) *fields[i] = weight_named(layer, values, *count, REUSE_WEIGHT_NAMES[i]);
    return layer;
}

/* No reuse: relative position bias with T 5 and S 4 longer than pe_max_seq_length 2, key given,
 * attention_mask (B,T,S) with a fully masked row; a reuse_attention_scores argument is ignored. */
static void reuse_none(att_dtype dt) {
    enum { B = 2, T = 5, S = 4, Dq = 4, Dk = 5, Dv = 6, N = 2, Hk = 3, P = 2 };
    uint64_t rng = 201 + (uint64_t)dt;
    att_reuse_multi_head_attention_config cfg = reuse_config(dt, N, Hk, 0, 0, 1);
    cfg.use_relative_pe = 1, cfg.pe_max_seq_length = P;
    double *q = random_values(&rng, B * T * Dq, -1, 1, dt), *k = random_values(&rng, B * S * Dk, -1, 1, dt);
    double *v = random_values(&rng, B * S * Dv, -1, 1, dt), *junk = random_values(&rng, B * N * T * S, 5, 9, dt);
    reuse_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .Dq = Dq, .Dk = Dk, .Dv = Dv, .N = N, .r = 0, .Hk = Hk,
                       .Hv = Hk, .O = Dq, .P = P, .out_shape = SHAPE(B, T, Dq), .q = q, .k = k, .v = v};
    /* Upstream initialises the position table truncated-normal(0, 0.2): |E| <= 0.4, not all 0. */
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, T, Dq), vs = SHAPE(B, S, Dv), ks = SHAPE(B, S, Dk);
    expect(att_reuse_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create Reuse for its position table");
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build Reuse for its position table");
    int64_t count0 = 0;
    double *table = get_weight(layer, 0, dt, &count0), largest = 0;
    for (int64_t i = 0; i < count0; i++) largest = fmax(largest, fabs(table[i]));
    check(count0 == N * (2 * P - 1) && largest > 0 && largest <= 0.4 * (1 + 1e-6),
          "relative_position_embeddings initialised with max |E| %g, want in (0, 0.4]", largest);
    free(table);
    att_layer_destroy(layer);

    double *values[13] = {0};
    size_t count = 0;
    layer = new_reuse(&cfg, &p, 1, &rng, values, &count);
    static uint8_t amask[B * T * S];
    for (int i = 0; i < B * T * S; i++) amask[i] = (uint8_t)(i % 7 != 1);
    memset(amask + (1 * T + 3) * S, 0, S); /* (1, 3) fully masked: softmax(s - 1e9) */
    check_reuse("Reuse r=0, relative PE (T, S > P), no mask, scores", layer, &p, (call_opts){1, 1, 0, 0});
    p.amask = amask, p.amask_shape = SHAPE(B, T, S);
    check_reuse("Reuse r=0, relative PE, attention_mask (B,T,S) with a fully masked row, scores", layer, &p,
                (call_opts){1, 1, 0, 0});
    check_reuse("Reuse r=0, relative PE, attention_mask, no scores", layer, &p, (call_opts){1, 0, 0, 0});
    p.given = junk; /* ref_reuse reads it only for reused heads */
    check_reuse("Reuse r=0 ignores reuse_attention_scores", layer, &p, (call_opts){1, 1, 0, 0});
    att_layer_destroy(layer);
    free_values(values, count);
    free(q), free(k), free(v), free(junk);
}

/* Partial reuse: 1 of 3 heads with relative PE (T 6, S 5 > P 3), no bias, value_dim 3 (key_dim 2),
 * output_shape (2,3), no key, attention_mask (T,S) with a fully masked row; and 2 of 3 heads
 * with bias and a key, no PE. The reuse_attention_scores' heads past r must not matter. */
static void reuse_partial(att_dtype dt) {
    enum { B = 2, T = 6, S = 5, D = 4, N = 3, Hk = 2, Hv = 3, P = 3, Dk = 3 };
    uint64_t rng = 221 + (uint64_t)dt;
    double *q = random_values(&rng, B * T * D, -1, 1, dt), *v = random_values(&rng, B * S * D, -1, 1, dt);
    double *k = random_values(&rng, B * S * Dk, -1, 1, dt), *given = random_values(&rng, B * N * T * S, 0, 1, dt);
    for (int64_t b = 0; b < B; b++) /* heads 1, 2 hold values that would show if read */
        for (int64_t i = T * S; i < N * T * S; i++) given[b * N * T * S + i] = 1e3 + (double)i;
    static uint8_t amask[T * S];
    for (int i = 0; i < T * S; i++) amask[i] = (uint8_t)(i % 4 != 0 && (i < 2 * S || i >= 3 * S));

    att_reuse_multi_head_attention_config cfg = reuse_config(dt, N, Hk, Hv, 1, 0);
    cfg.use_relative_pe = 1, cfg.pe_max_seq_length = P, cfg.output_rank = 2;
    cfg.output_shape[0] = 2, cfg.output_shape[1] = 3;
    reuse_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .Dq = D, .Dk = D, .Dv = D, .N = N, .r = 1, .Hk = Hk,
                       .Hv = Hv, .O = 6, .P = P, .out_shape = SHAPE(B, T, 2, 3), .q = q, .k = v, .v = v,
                       .given = given};
    double *values[13] = {0};
    size_t count = 0;
    att_layer *layer = new_reuse(&cfg, &p, 0, &rng, values, &count);
    check_reuse("Reuse 1 of 3, relative PE, output_shape (2,3), no mask, scores [new, reused]", layer, &p,
                (call_opts){0, 1, 0, 0});
    p.amask = amask, p.amask_shape = SHAPE(T, S);
    check_reuse("Reuse 1 of 3, relative PE, attention_mask (T,S) with a fully masked row, scores", layer, &p,
                (call_opts){0, 1, 0, 0});
    check_reuse("Reuse 1 of 3, relative PE, attention_mask (T,S), no scores", layer, &p, (call_opts){0, 0, 0, 0});
    att_layer_destroy(layer);
    free_values(values, count);

    cfg = reuse_config(dt, N, Hk, 0, 2, 1);
    p = (reuse_problem){.dtype = dt, .B = B, .T = T, .S = S, .Dq = D, .Dk = Dk, .Dv = D, .N = N, .r = 2, .Hk = Hk,
                        .Hv = Hk, .O = D, .out_shape = SHAPE(B, T, D), .q = q, .k = k, .v = v, .given = given};
    for (int64_t b = 0; b < B; b++) /* now head 1 is reused: ordinary values */
        for (int64_t i = T * S; i < 2 * T * S; i++) given[b * N * T * S + i] = (double)(float)(0.01 * (double)(i % 37));
    layer = new_reuse(&cfg, &p, 1, &rng, values, &count);
    check_reuse("Reuse 2 of 3, bias (new output without), key, scores", layer, &p, (call_opts){1, 1, 0, 0});
    static uint8_t amask3[B * T * S];
    for (int i = 0; i < B * T * S; i++) amask3[i] = (uint8_t)(i % 3 != 0);
    p.amask = amask3, p.amask_shape = SHAPE(B, T, S);
    check_reuse("Reuse 2 of 3, bias, key, attention_mask (B,T,S), scores", layer, &p, (call_opts){1, 1, 0, 0});
    att_layer_destroy(layer);
    free_values(values, count);
    free(q), free(k), free(v), free(given);
}

/* Full reuse (-1 and num_heads): the scores returned are the given ones, bit for bit; relative
 * PE asked for but no new heads: no position table. */
static void reuse_full(att_dtype dt) {
    enum { B = 2, T = 3, S = 4, D = 5, N = 2, Hk = 3 };
    uint64_t rng = 241 + (uint64_t)dt;
    double *q = random_values(&rng, B * T * D, -1, 1, dt), *v = random_values(&rng, B * S * D, -1, 1, dt);
    double *given = random_values(&rng, B * N * T * S, 0, 1, dt);
    static const struct {
        int64_t reuse;
        int32_t bias, pe;
    } variants[] = {{-1, 1, 1}, {N, 0, 0}};
    for (int i = 0; i < 2; i++) {
        att_reuse_multi_head_attention_config cfg = reuse_config(dt, N, Hk, 0, variants[i].reuse, variants[i].bias);
        cfg.use_relative_pe = variants[i].pe;
        reuse_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .Dq = D, .Dk = D, .Dv = D, .N = N, .r = N, .Hk = Hk,
                           .Hv = Hk, .O = D, .P = 512, .out_shape = SHAPE(B, T, D), .q = q, .k = v, .v = v,
                           .given = given};
        double *values[13] = {0};
        size_t count = 0;
        att_layer *layer = new_reuse(&cfg, &p, 0, &rng, values, &count);
        char what[128];
        snprintf(what, sizeof what, "Reuse full (reuse %lld, bias %d), scores", (long long)variants[i].reuse,
                 variants[i].bias);
        check_reuse(what, layer, &p, (call_opts){0, 1, 0, 0});
        att_tensor out = new_tensor(dt, p.out_shape, NULL), scores = new_tensor(dt, SHAPE(B, N, T, S), NULL);
        att_tensor want = new_tensor(dt, SHAPE(B, N, T, S), given);
        expect(call_reuse(layer, &p, (call_opts){0, 1, 0, 0}, &out, &scores), ATT_OK, "", what);
        check(memcmp(scores.data, want.data, (size_t)(B * N * T * S) * dtype_size(dt)) == 0,
              "%s (%s): scores are not the given reuse_attention_scores bit for bit", what, dtype_name(dt));
        free(out.data), free(scores.data), free(want.data);
        att_layer_destroy(layer);
        free_values(values, count);
    }
    free(q), free(v), free(given);
}

/* Dropout in training: new and reused heads dropped by their flat index in the returned
 * [new, reused] scores; the scores returned are pre-dropout. */
static void reuse_dropout(att_dtype dt) {
    enum { B = 2, T = 9, S = 7, D = 6, N = 3, Hk = 4, P = 4 };
    uint64_t rng = 261 + (uint64_t)dt;
    double *q = random_values(&rng, B * T * D, -1, 1, dt), *v = random_values(&rng, B * S * D, -1, 1, dt);
    double *given = random_values(&rng, B * N * T * S, 0, 1, dt);
    static uint8_t amask[B * T * S];
    for (int i = 0; i < B * T * S; i++) amask[i] = (uint8_t)(i % 6 != 4);
    static const int64_t reuses[] = {1, -1, 0};
    for (int i = 0; i < 3; i++) {
        att_reuse_multi_head_attention_config cfg = reuse_config(dt, N, Hk, 0, reuses[i], 1);
        cfg.dropout = 0.3, cfg.use_relative_pe = 1, cfg.pe_max_seq_length = P;
        int64_t r = reuses[i] == -1 ? N : reuses[i];
        reuse_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .Dq = D, .Dk = D, .Dv = D, .N = N, .r = r, .Hk = Hk,
                           .Hv = Hk, .O = D, .P = P, .out_shape = SHAPE(B, T, D), .q = q, .k = v, .v = v,
                           .given = r ? given : NULL, .amask = amask, .amask_shape = SHAPE(B, T, S),
                           .rate = 0.3, .seed = 0xDEADBEEF00000001ull, .stream = 5};
        double *values[13] = {0};
        size_t count = 0;
        att_layer *layer = new_reuse(&cfg, &p, 0, &rng, values, &count);
        char what[128];
        snprintf(what, sizeof what, "Reuse %lld of 3, dropout 0.3, training, scores (pre-dropout)", (long long)r);
        check_reuse(what, layer, &p, (call_opts){0, 1, 0, 1});
        snprintf(what, sizeof what, "Reuse %lld of 3, dropout 0.3, training, no scores", (long long)r);
        check_reuse(what, layer, &p, (call_opts){0, 0, 0, 1});
        p.rate = 0;
        snprintf(what, sizeof what, "Reuse %lld of 3, dropout 0.3, not training", (long long)r);
        check_reuse(what, layer, &p, (call_opts){0, 1, 0, 0});
        att_layer_destroy(layer);
        free_values(values, count);
    }
    free(q), free(v), free(given);
}

/* ---- longer sequences --------------------------------------------------------------------- */

/* Runs `call` (a check) with 1 and then 2 threads. */
#define WITH_THREADS(call)                               \
    for (int threads = 1; threads <= 2; threads++) {     \
        att_set_num_threads(threads);                    \
        call;                                            \
    }

/* Sequences longer than a kernel tile: GQA with masks and dropout, Reuse with relative PE,
 * a mask with fully masked rows and dropout; with 1 and 2 threads. */
static void long_sequences(att_dtype dt) {
    enum { B = 2, T = 67, S = 131, D = 16, Nq = 8, Nkv = 2, H = 8 };
    uint64_t rng = 301 + (uint64_t)dt;
    double *q = random_values(&rng, B * T * D, -1, 1, dt), *v = random_values(&rng, B * S * D, -1, 1, dt);
    double *given = random_values(&rng, B * 4 * T * S, 0, 1, dt);
    static uint8_t vmask[B * S], qmask[B * T], amask[B * T * S];
    for (int i = 0; i < B * S; i++) vmask[i] = (uint8_t)(i % 9 != 4);
    for (int i = 0; i < B * T; i++) qmask[i] = (uint8_t)(i != 70);
    for (int i = 0; i < B * T * S; i++) amask[i] = (uint8_t)((i / S) % 11 != 3 && i % 13 != 0);
    att_group_query_attention_config cfg = gqa_config(dt, Nq, Nkv, H, 1, 0);
    gqa_problem p = {.dtype = dt, .B = B, .T = T, .S = S, .D = D, .Dk = D, .Nq = Nq, .Nkv = Nkv, .H = H, .q = q,
                     .k = v, .v = v, .masks = {.value = vmask, .query = qmask, .causal = 1}};
    double *values[13] = {0};
    size_t count = 0;
    att_layer *layer = new_gqa(&cfg, &p, 0, &rng, values, &count);
    WITH_THREADS(check_gqa("GQA T 67, S 131, causal + value/query masks, fused", layer, &p, (call_opts){0, 0, 0, 0}));
    WITH_THREADS(check_gqa("GQA T 67, S 131, causal + value/query masks, scores", layer, &p, (call_opts){0, 1, 0, 0}));
    att_layer_destroy(layer);
    free_values(values, count);
    cfg.dropout = 0.2;
    layer = new_gqa(&cfg, &p, 0, &rng, values, &count);
    p.layer_dropout = p.rate = 0.2, p.seed = 77, p.stream = 1;
    WITH_THREADS(check_gqa("GQA T 67, S 131, dropout 0.2, training", layer, &p, (call_opts){0, 0, 0, 1}));
    att_layer_destroy(layer);
    free_values(values, count);

    att_reuse_multi_head_attention_config rc = reuse_config(dt, 4, 8, 0, 2, 1);
    rc.use_relative_pe = 1, rc.pe_max_seq_length = 40, rc.dropout = 0.2;
    reuse_problem r = {.dtype = dt, .B = B, .T = T, .S = S, .Dq = D, .Dk = D, .Dv = D, .N = 4, .r = 2, .Hk = 8,
                       .Hv = 8, .O = D, .P = 40, .out_shape = SHAPE(B, T, D), .q = q, .k = v, .v = v,
                       .given = given, .amask = amask, .amask_shape = SHAPE(B, T, S)};
    layer = new_reuse(&rc, &r, 0, &rng, values, &count);
    WITH_THREADS(check_reuse("Reuse 2 of 4, T 67, S 131 > P 40, attention_mask, scores", layer, &r,
                             (call_opts){0, 1, 0, 0}));
    r.rate = 0.2, r.seed = 78, r.stream = 2;
    WITH_THREADS(check_reuse("Reuse 2 of 4, T 67, S 131, dropout 0.2, training", layer, &r, (call_opts){0, 1, 0, 1}));
    att_layer_destroy(layer);
    free_values(values, count);
    free(q), free(v), free(given);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static double g_zeros[4096]; /* every bad call's inputs: larger than any tensor they describe */

/* Calls `layer` on zero inputs of in's shapes (and masks), with output and scores tensors of
 * these shapes, and returns the status. */
static att_status bad_call(const att_layer *layer, call_inputs in, call_opts o, att_shape out_shape,
                           att_shape scores_shape) {
    in.q = in.k = in.v = g_zeros;
    att_tensor out = new_tensor(in.dtype, out_shape, NULL), scores = new_tensor(in.dtype, scores_shape, NULL);
    att_status st = call_layer(layer, &in, o, &out, &scores);
    free(out.data), free(scores.data);
    return st;
}

static void gqa_bad_input(void) {
    att_layer *layer = NULL;
    att_group_query_attention_config c, valid = gqa_config(ATT_FLOAT32, 4, 2, 3, 1, 0);
    expect(att_group_query_attention_create(NULL, &layer), ATT_ERR_NULL_ARGUMENT, "config", "GQA: config NULL");
    expect(att_group_query_attention_create(&valid, NULL), ATT_ERR_NULL_ARGUMENT, "out|layer", "GQA: out NULL");
#define BAD_GQA(want, about, what, ...)                                                    \
    do {                                                                                   \
        c = valid;                                                                         \
        __VA_ARGS__;                                                                       \
        expect(att_group_query_attention_create(&c, &layer), want, about, "GQA: " what); \
    } while (0)
    BAD_GQA(ATT_ERR_STRUCT_SIZE, "struct_size|size", "struct_size 0", c.struct_size = 0);
    BAD_GQA(ATT_ERR_STRUCT_SIZE, "struct_size|size", "struct_size - 1", c.struct_size -= 1);
    BAD_GQA(ATT_ERR_STRUCT_SIZE, "struct_size|size", "MHA's struct_size",
            c.struct_size = sizeof(att_multi_head_attention_config));
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "divisible|divide", "num_key_value_heads 3 for 4 query heads",
            c.num_key_value_heads = 3);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "divisible|divide", "num_key_value_heads 8 for 4 query heads",
            c.num_key_value_heads = 8);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "num_key_value_heads", "num_key_value_heads 0", c.num_key_value_heads = 0);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "num_key_value_heads", "num_key_value_heads -2", c.num_key_value_heads = -2);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "num_query_heads", "num_query_heads 0", c.num_query_heads = 0);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "head_dim", "head_dim 0", c.head_dim = 0);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "head_dim", "head_dim -3", c.head_dim = -3);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "dropout", "dropout 1", c.dropout = 1);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "sliding_window|window", "sliding_window -1", c.sliding_window = -1);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "dtype", "dtype uint8", c.dtype = ATT_UINT8);
    BAD_GQA(ATT_ERR_INVALID_ARGUMENT, "initializer", "kernel_initializer kind 99",
            c.kernel_initializer.kind = (att_initializer_kind)99);
#undef BAD_GQA
    att_group_query_attention_config zero = {.struct_size = sizeof zero};
    expect(att_group_query_attention_create(&zero, &layer), ATT_ERR_INVALID_ARGUMENT,
           "head_dim|num_query_heads|num_key_value_heads|heads", "GQA: zero-filled config");

    /* Rank-3 inputs (query and value may differ in their last dim, as in Keras's call). */
    expect(att_group_query_attention_create(&valid, &layer), ATT_OK, "", "create GQA");
    att_shape q = SHAPE(2, 3, 4), v = SHAPE(2, 5, 4), k = SHAPE(2, 5, 3);
    att_shape q4 = SHAPE(2, 3, 1, 4), v4 = SHAPE(2, 5, 1, 4), k4 = SHAPE(2, 5, 1, 3);
    att_shape v2 = SHAPE(2, 20), v6 = SHAPE(2, 5, 6), o = {0}, s = {0};
    const char *rank = "rank|rank-3|3-D", *dims = "last dim|dim|query|value";
    expect(att_layer_build(layer, &q4, &v4, &k4), ATT_ERR_SHAPE, rank, "GQA build: rank 4");
    expect(att_layer_build(layer, &q, &v2, &k), ATT_ERR_SHAPE, rank, "GQA build: value rank 2");
    expect(att_layer_build(layer, &q, &v, &k4), ATT_ERR_SHAPE, rank, "GQA build: key rank 4");
    expect(att_layer_build(layer, &q, &v6, &k), ATT_OK, "", "GQA build: query dim 4, value dim 6 is allowed");
    expect(att_layer_build(layer, &q, &v, &k), ATT_OK, "", "build GQA");
    expect(att_layer_output_shape(layer, &q4, &v4, &k4, &o, &s), ATT_ERR_SHAPE, rank, "GQA output_shape: rank 4");
    expect(att_layer_output_shape(layer, &q, &v6, &k, &o, &s), ATT_ERR_SHAPE, dims,
           "GQA output_shape: value dim 6 on a layer built for 4");
    call_inputs in = {.dtype = ATT_FLOAT32, .q_shape = q, .k_shape = k, .v_shape = v};
    call_opts with_key = {1, 1, 0, 0};
    att_shape out = SHAPE(2, 3, 4), scores = SHAPE(2, 4, 3, 5);
    expect(bad_call(layer, in, with_key, out, scores), ATT_OK, "", "GQA call: the valid call");
    call_inputs bad = in;
    bad.q_shape = q4, bad.v_shape = v4, bad.k_shape = k4;
    expect(bad_call(layer, bad, (call_opts){1, 0, 0, 0}, SHAPE(2, 3, 1, 4), scores), ATT_ERR_SHAPE, rank,
           "GQA call: rank 4");
    bad = in, bad.v_shape = SHAPE(2, 5, 5);
    expect(bad_call(layer, bad, with_key, out, scores), ATT_ERR_SHAPE, dims, "GQA call: query dim 4, value dim 5");
    att_tensor reuse = new_tensor(ATT_FLOAT32, scores, NULL);
    bad = in, bad.reuse_attention_scores = &reuse;
    expect(bad_call(layer, bad, with_key, out, scores), ATT_ERR_INVALID_ARGUMENT, "reuse_attention_scores|reuse",
           "GQA call: reuse_attention_scores given");
    att_layer_destroy(layer);

    /* MultiHeadAttention, Attention and AdditiveAttention take no reuse_attention_scores either. */
    att_multi_head_attention_config mc = {.struct_size = sizeof mc, .num_heads = 4, .key_dim = 3};
    att_attention_config ac = {.struct_size = sizeof ac};
    att_additive_attention_config dc = {.struct_size = sizeof dc};
    att_layer *others[3] = {NULL, NULL, NULL};
    expect(att_multi_head_attention_create(&mc, &others[0]), ATT_OK, "", "create MHA");
    expect(att_attention_create(&ac, &others[1]), ATT_OK, "", "create Attention");
    expect(att_additive_attention_create(&dc, &others[2]), ATT_OK, "", "create AdditiveAttention");
    static const char *const kinds[3] = {"MHA", "Attention", "AdditiveAttention"};
    att_shape lk = SHAPE(2, 5, 4), lscores = SHAPE(2, 3, 5);
    for (int i = 0; i < 3; i++) {
        char what[96];
        att_shape *key = i ? &lk : &k;
        call_inputs ok = in;
        ok.k_shape = *key;
        expect(att_layer_build(others[i], &q, &v, key), ATT_OK, "", kinds[i]);
        snprintf(what, sizeof what, "%s call: the valid call", kinds[i]);
        expect(bad_call(others[i], ok, with_key, out, i ? lscores : scores), ATT_OK, "", what);
        ok.reuse_attention_scores = &reuse;
        reuse.shape = i ? lscores : scores;
        snprintf(what, sizeof what, "%s call: reuse_attention_scores given", kinds[i]);
        expect(bad_call(others[i], ok, with_key, out, i ? lscores : scores), ATT_ERR_INVALID_ARGUMENT,
               "reuse_attention_scores|reuse", what);
        att_layer_destroy(others[i]);
    }
    free(reuse.data);
}

/* use_relative_pe with attention over axes other than (1,) is rejected, by create or by build
 * (axes resolve against the rank). */
static void expect_pe_axes_rejected(const char *what, int32_t naxes, int64_t axis, att_shape in) {
    att_reuse_multi_head_attention_config c = reuse_config(ATT_FLOAT32, 2, 3, 0, 0, 1);
    c.use_relative_pe = 1, c.num_attention_axes = naxes, c.attention_axes[0] = axis;
    att_layer *layer = NULL;
    att_status st = att_reuse_multi_head_attention_create(&c, &layer);
    if (st == ATT_OK) {
        st = att_layer_build(layer, &in, &in, NULL);
        att_layer_destroy(layer);
    }
    expect(st, ATT_ERR_INVALID_ARGUMENT, "relative|use_relative_pe|axis|axes", what);
}

static void reuse_bad_input(void) {
    att_layer *layer = NULL;
    att_reuse_multi_head_attention_config c, valid = reuse_config(ATT_FLOAT32, 3, 2, 0, 1, 1);
    expect(att_reuse_multi_head_attention_create(NULL, &layer), ATT_ERR_NULL_ARGUMENT, "config",
           "Reuse: config NULL");
    expect(att_reuse_multi_head_attention_create(&valid, NULL), ATT_ERR_NULL_ARGUMENT, "out|layer", "Reuse: out NULL");
#define BAD_REUSE(want, about, what, ...)                                                       \
    do {                                                                                        \
        c = valid;                                                                              \
        __VA_ARGS__;                                                                            \
        expect(att_reuse_multi_head_attention_create(&c, &layer), want, about, "Reuse: " what); \
    } while (0)
    BAD_REUSE(ATT_ERR_STRUCT_SIZE, "struct_size|size", "struct_size 0", c.struct_size = 0);
    BAD_REUSE(ATT_ERR_STRUCT_SIZE, "struct_size|size", "struct_size + 8", c.struct_size += 8);
    BAD_REUSE(ATT_ERR_STRUCT_SIZE, "struct_size|size", "GQA's struct_size",
              c.struct_size = sizeof(att_group_query_attention_config));
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "reuse_attention", "reuse_attention -2", c.reuse_attention = -2);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "reuse_attention", "reuse_attention 4 of 3 heads", c.reuse_attention = 4);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "pe_max_seq_length", "pe_max_seq_length -1", c.pe_max_seq_length = -1,
              c.use_relative_pe = 1);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "num_heads|heads", "num_heads 0", c.num_heads = 0, c.reuse_attention = 0);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "key_dim", "key_dim 0", c.key_dim = 0);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "value_dim", "value_dim -1", c.value_dim = -1);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "dropout", "dropout -0.1", c.dropout = -0.1);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "dtype", "dtype 7", c.dtype = (att_dtype)7);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "output_shape", "output_shape (0)", c.output_rank = 1, c.output_shape[0] = 0);
    BAD_REUSE(ATT_ERR_INVALID_ARGUMENT, "output_rank", "output_rank 7 (a kernel of 9 dims)", c.output_rank = ATT_MAX_RANK - 1);
#undef BAD_REUSE

    /* Relative PE needs attention over axis 1 only; -3 is axis 1 of a rank-3 input's projection. */
    expect_pe_axes_rejected("Reuse: use_relative_pe with attention_axes (2,) on rank 4", 1, 2, SHAPE(2, 3, 4, 5));
    expect_pe_axes_rejected("Reuse: use_relative_pe with default axes (1, 2) on rank 4", 0, 0, SHAPE(2, 3, 4, 5));
    c = reuse_config(ATT_FLOAT32, 2, 3, 0, 0, 1);
    c.use_relative_pe = 1, c.num_attention_axes = 1, c.attention_axes[0] = -3, c.pe_max_seq_length = 0;
    att_shape s3 = SHAPE(2, 3, 4);
    expect(att_reuse_multi_head_attention_create(&c, &layer), ATT_OK, "", "Reuse: relative PE, axes (-3,)");
    expect(att_layer_build(layer, &s3, &s3, NULL), ATT_OK, "", "Reuse build: relative PE, axes (-3,) on rank 3");
    const char *name = NULL;
    att_shape table = {0};
    att_layer_weight_info(layer, 0, &table, &name);
    check(name && strcmp(name, "relative_position_embeddings") == 0 && same_shape(table, SHAPE(1, 2, 1023)),
          "Reuse pe_max_seq_length 0 (512): weight 0 is %s, want relative_position_embeddings (1,2,1023)",
          name ? name : "(null)");
    att_layer_destroy(layer);

    /* Calls of a layer reusing 1 of 3 heads: q (2,3,4), v (2,5,6), k (2,5,3). */
    expect(att_reuse_multi_head_attention_create(&valid, &layer), ATT_OK, "", "create Reuse");
    att_shape q = SHAPE(2, 3, 4), v = SHAPE(2, 5, 6), k = SHAPE(2, 5, 3), out = SHAPE(2, 3, 4);
    att_shape scores = SHAPE(2, 3, 3, 5);
    expect(att_layer_build(layer, &q, &v, &k), ATT_OK, "", "build Reuse");
    att_tensor reuse = new_tensor(ATT_FLOAT32, scores, NULL), wide = new_tensor(ATT_FLOAT64, scores, NULL);
    static uint8_t ones[64];
    memset(ones, 1, sizeof ones);
    att_tensor qm = mask_tensor(ones, SHAPE(2, 3)), vm = mask_tensor(ones, SHAPE(2, 5));
    att_tensor am = mask_tensor(ones, SHAPE(2, 3, 5));
    call_inputs in = {.dtype = ATT_FLOAT32, .q_shape = q, .k_shape = k, .v_shape = v, .reuse_attention_scores = &reuse};
    call_opts o = {1, 1, 0, 0};
    expect(bad_call(layer, in, o, out, scores), ATT_OK, "", "Reuse call: the valid call");
    call_inputs b = in;
    b.attention_mask = &am;
    expect(bad_call(layer, b, o, out, scores), ATT_OK, "", "Reuse call: the valid call with attention_mask");
#define REUSE_CALL(want, about, what, ...)                                          \
    do {                                                                            \
        b = in;                                                                     \
        call_opts o_ = o;                                                           \
        att_tensor r_ = reuse;                                                      \
        b.reuse_attention_scores = &r_;                                             \
        __VA_ARGS__;                                                                \
        expect(bad_call(layer, b, o_, out, scores), want, about, "Reuse call: " what); \
    } while (0)
    REUSE_CALL(ATT_ERR_INVALID_ARGUMENT, "reuse_attention_scores", "no reuse_attention_scores with reuse 1",
               b.reuse_attention_scores = NULL);
    REUSE_CALL(ATT_OK, "", "reuse_attention_scores (2,1,3,5): partial reuse reads the first 1 of >= 1 heads",
               r_.shape = SHAPE(2, 1, 3, 5));
    REUSE_CALL(ATT_ERR_SHAPE, "reuse_attention_scores", "reuse_attention_scores (2,3,3,4)",
               r_.shape = SHAPE(2, 3, 3, 4));
    REUSE_CALL(ATT_ERR_SHAPE, "reuse_attention_scores", "reuse_attention_scores (3,3,5)", r_.shape = SHAPE(3, 3, 5));
    REUSE_CALL(ATT_ERR_DTYPE, "reuse_attention_scores", "float64 reuse_attention_scores on float32", r_ = wide);
    REUSE_CALL(ATT_ERR_DTYPE, "reuse_attention_scores", "uint8 reuse_attention_scores", r_.dtype = ATT_UINT8);
    REUSE_CALL(ATT_ERR_NULL_ARGUMENT, "reuse_attention_scores|data", "reuse_attention_scores data NULL",
               r_.data = NULL);
    REUSE_CALL(ATT_ERR_INVALID_ARGUMENT, "query_mask", "query_mask", b.query_mask = &qm);
    REUSE_CALL(ATT_ERR_INVALID_ARGUMENT, "value_mask", "value_mask", b.value_mask = &vm);
    REUSE_CALL(ATT_ERR_INVALID_ARGUMENT, "key_mask", "key_mask", b.key_mask = &vm);
    REUSE_CALL(ATT_ERR_INVALID_ARGUMENT, "causal", "use_causal_mask", o_.causal_arg = 1);
#undef REUSE_CALL
    att_layer_destroy(layer);

    c = reuse_config(ATT_FLOAT32, 3, 2, 0, -1, 1);
    expect(att_reuse_multi_head_attention_create(&c, &layer), ATT_OK, "", "create Reuse(-1)");
    expect(att_layer_build(layer, &q, &v, &k), ATT_OK, "", "build Reuse(-1)");
    b = in, b.reuse_attention_scores = NULL;
    expect(bad_call(layer, b, o, out, scores), ATT_ERR_INVALID_ARGUMENT, "reuse_attention_scores",
           "Reuse(-1) call: no reuse_attention_scores");
    att_layer_destroy(layer);
    free(reuse.data), free(wide.data);
}

static void gqa_all(void) {
    for (int i = 0; i < 2; i++) {
        gqa_heads(DTYPES[i]);
        gqa_masks(DTYPES[i]);
    }
}
static void gqa_dropout_all(void) {
    for (int i = 0; i < 2; i++) gqa_dropout(DTYPES[i]);
}
static void reuse_all(void) {
    for (int i = 0; i < 2; i++) {
        reuse_none(DTYPES[i]);
        reuse_partial(DTYPES[i]);
        reuse_full(DTYPES[i]);
    }
}
static void reuse_dropout_all(void) {
    for (int i = 0; i < 2; i++) reuse_dropout(DTYPES[i]);
}
static void long_all(void) {
    for (int i = 0; i < 2; i++) long_sequences(DTYPES[i]);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"GroupQueryAttention", gqa_all},
        {"GroupQueryAttention dropout", gqa_dropout_all},
        {"ReuseMultiHeadAttention", reuse_all},
        {"ReuseMultiHeadAttention dropout", reuse_dropout_all},
        {"longer sequences, 1 and 2 threads", long_all},
        {"GroupQueryAttention bad input", gqa_bad_input},
        {"ReuseMultiHeadAttention bad input", reuse_bad_input},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
