/*
 * test_mha.c — MultiHeadAttention and keras.ops.dot_product_attention through the C API,
 * against plain C reference loops written from Keras 3.15's math (in double): rank-3 MHA with
 * biases, gate, value_dim != key_dim, output_shape, every mask (query, value, key, attention
 * (B,T,S) and (T,S), causal, sliding window) on Keras's fused path and on its explicit path;
 * weights in Keras order; initialisers; output and scores shapes for N-D attention axes;
 * dropout by the header's Philox rule; concurrent calls on one layer; dot_product_attention
 * with K < N heads, bias, mask, causal. float32 and float64. Prints `N passed, N failed`.
 */
#include "check.h"
#include "reference.h"

#include <threads.h>

static const att_dtype DTYPES[2] = {ATT_FLOAT32, ATT_FLOAT64};

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
    double *qp = malloc((size_t)(B * T * N * Hk) * sizeof(double));
    double *kp = malloc((size_t)(B * S * N * Hk) * sizeof(double));
    double *vp = malloc((size_t)(B * S * N * Hv) * sizeof(double));
    double *gp = malloc((size_t)(B * T * N * Hv) * sizeof(double));
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
                        logit += qp[((b * T + t) * N + n) * Hk + h] / sqrt((double)Hk) *
                                 kp[((b * S + s) * N + n) * Hk + h];
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
    att_tensor qm = mask_tensor(p->qmask, SHAPE(p->B, p->T)), vm = mask_tensor(p->vmask, SHAPE(p->B, p->S));
    att_tensor km = mask_tensor(p->kmask, SHAPE(p->B, p->S)), am = mask_tensor(p->amask, p->amask_shape);
    call_inputs in = {.dtype = p->dtype, .q = p->q, .k = p->k, .v = p->v, .q_shape = SHAPE(p->B, p->T, p->Dq),
                      .k_shape = SHAPE(p->B, p->S, p->Dk), .v_shape = SHAPE(p->B, p->S, p->Dv),
                      .query_mask = p->qmask ? &qm : NULL, .value_mask = p->vmask ? &vm : NULL,
                      .key_mask = p->kmask ? &km : NULL, .attention_mask = p->amask ? &am : NULL, .seed = p->seed,
                      .stream = p->stream};
    return call_layer(layer, &in, o, out, scores);
}

/* Calls the layer and compares its output (and scores) with ref_mha. */
static void check_mha(const char *what, const att_layer *layer, const mha_problem *p, call_opts o) {
    call_result r = new_call_result(p->dtype, p->out_shape, SHAPE(p->B, p->N, p->T, p->S));
    ref_mha(p, o.want_scores, r.want_out, r.want_scores);
    check_call_result(what, call_mha(layer, p, o, &r.out, &r.scores), o, &r);
}

/* MultiHeadAttention's weights in Keras order, with gate and biases. */
static const char *const MHA_WEIGHT_NAMES[10] = {"query/kernel", "query/bias", "key/kernel", "key/bias",
                                                 "gate/kernel", "gate/bias", "value/kernel", "value/bias",
                                                 "attention_output/kernel", "attention_output/bias"};

/* Points p's weights at values, by Keras name (NULL for a weight the layer lacks). */
static void bind_mha_weights(mha_problem *p, const att_layer *layer, double **values, size_t count) {
    const double **fields[10] = {&p->wq, &p->bq, &p->wk, &p->bk, &p->wg, &p->bg, &p->wv, &p->bv, &p->wo, &p->bo};
    for (int i = 0; i < 10; i++) *fields[i] = weight_named(layer, values, count, MHA_WEIGHT_NAMES[i]);
}

static att_multi_head_attention_config mha_config(att_dtype dt, int64_t heads, int64_t key_dim, int64_t value_dim,
                                                  int32_t use_bias) {
    att_multi_head_attention_config c = {.struct_size = sizeof c};
    c.dtype = dt;
    c.num_heads = heads;
    c.key_dim = key_dim;
    c.value_dim = value_dim;
    c.no_bias = !use_bias;
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
    att_shape shapes[] = {SHAPE(Dq, N, Hk), SHAPE(N, Hk), SHAPE(Dk, N, Hk), SHAPE(N, Hk), SHAPE(Dq, N, Hv),
                          SHAPE(N, Hv), SHAPE(Dv, N, Hv), SHAPE(N, Hv), SHAPE(N, Hv, O), SHAPE(O)};
    check_weight_list("MHA(gate, bias, value_dim 2, output_shape 6)", layer, 10, MHA_WEIGHT_NAMES, shapes);
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

/* Keras 3's fans of an EinsumDense kernel: fan_in = product of the first `input_axes` dims
 * (contracted with the input), fan_out = product of the rest. */
static void kernel_fans(att_shape s, int input_axes, double *fan_in, double *fan_out) {
    *fan_in = *fan_out = 1;
    for (int i = 0; i < s.rank; i++) *(i < input_axes ? fan_in : fan_out) *= (double)s.dims[i];
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
                kernel_fans(s, strncmp(name, "attention_output", 16) == 0 ? 2 : 1, &fi, &fo);
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
    const att_initializer defaults = {ATT_INIT_DEFAULT, 0, 0};
    att_layer *a = built_mha(defaults, defaults, 3), *b = built_mha(defaults, defaults, 3);
    att_layer *c = built_mha(defaults, defaults, 4);
    int64_t n = 0;
    double *wa = get_weight(a, 0, ATT_FLOAT64, &n), *wb = get_weight(b, 0, ATT_FLOAT64, &n);
    double *wc = get_weight(c, 0, ATT_FLOAT64, &n);
    check(memcmp(wa, wb, (size_t)n * 8) == 0, "MHA: the same seed gives different query kernels");
    check(memcmp(wa, wc, (size_t)n * 8) != 0, "MHA: seeds 3 and 4 give the same query kernel");
    free(wa), free(wb), free(wc);
    att_layer_destroy(a), att_layer_destroy(b), att_layer_destroy(c);

    /* Parametrised kinds: constant/ones, random_uniform range, normal moments, orthogonal. */
    att_layer *layer =
        built_mha((att_initializer){ATT_INIT_CONSTANT, 0.25, 0}, (att_initializer){ATT_INIT_ONES, 0, 0}, 1);
    for (size_t i = 0; i < 8; i++) {
        double *w = get_weight(layer, i, ATT_FLOAT64, &n), want = i % 2 ? 1 : 0.25;
        int ok = 1;
        for (int64_t j = 0; j < n; j++) ok &= w[j] == want;
        check(ok, "constant(0.25) kernels / ones biases: weight %zu is not all %g", i, want);
        free(w);
    }
    att_layer_destroy(layer);
    layer = built_mha((att_initializer){ATT_INIT_RANDOM_UNIFORM, -0.1, 0.3},
                      (att_initializer){ATT_INIT_RANDOM_NORMAL, 0, 0}, 1);
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
    check_output_shape("Attention, no key", layer, SHAPE(7, 1, 4), SHAPE(7, 2, 4), NULL, SHAPE(7, 1, 4),
                       SHAPE(7, 1, 2));
    att_layer_destroy(layer);
    att_additive_attention_config ccfg = {.struct_size = sizeof ccfg, .dtype = ATT_FLOAT64};
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
                        x += p->q[((b * p->T + t) * p->N + n) * p->H + h] *
                             p->k[((b * p->S + s) * p->K + kv) * p->H + h];
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
    double *q = random_values(&rng, B * T * D, -1, 1, ATT_FLOAT32);
    double *v = random_values(&rng, B * S * D, -1, 1, ATT_FLOAT32);
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
        att_status st = call_mha(job->layer, &job->p, (call_opts){0, 0, job->p.causal, 0}, &out, NULL);
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
        expect(call_mha(layer, &jobs[j].p, (call_opts){0, 0, j % 2, 0}, &jobs[j].want, NULL), ATT_OK, "",
               "serial call");
        double *want = malloc(B * T * D * sizeof *want);
        ref_mha(&jobs[j].p, 0, want, NULL);
        check_close("MHA serial call before the concurrent ones", &jobs[j].want, want, B * T * D);
        free(want);
    }
    for (int j = 0; j < JOBS; j++)
        check(thrd_create(&threads[j], concurrent_worker, &jobs[j]) == thrd_success, "thrd_create");
    for (int j = 0; j < JOBS; j++) {
        thrd_join(threads[j], NULL);
        check(jobs[j].mismatches == 0, "concurrent calls: %d of 25 results of thread %d differ from the serial one",
              jobs[j].mismatches, j);
        free(jobs[j].want.data), free(inputs[j]);
    }
    for (size_t i = 0; i < count; i++) free(values[i]);
    att_layer_destroy(layer);
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

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"MultiHeadAttention", mha_both},
        {"MultiHeadAttention initialisers", mha_initializers},
        {"output shapes", output_shapes},
        {"dot_product_attention", dpa_both},
        {"MultiHeadAttention dropout", dropout_mha},
        {"concurrent calls", concurrent_calls},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
