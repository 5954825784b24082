/*
 * test_backward.c — the gradient API (att_layer_backward, att_layer_losses,
 * att_layer_apply_constraints) from C: float64 MultiHeadAttention (key, gate, biases, masks,
 * scores gradient; self-attention without a key; dropout) and Attention (dot and concat with
 * use_scale, masks, scores gradient) against central finite differences of att_layer_call
 * for elements of the query, value, key and every weight; include_regularization with an l2
 * kernel regularizer (2·l2·w added); att_layer_losses against l2·Σw² computed from
 * att_layer_get_weight; constraints (none, non_neg, max_norm); and the errors: NULL
 * arguments, struct size, output/scores/input/weight gradients of the wrong shape or dtype,
 * key_gradient without a key, an unbuilt layer, bad handles. Prints `N passed, N failed`.
 *
 * The loss of a step is L = Σ output·dO [+ Σ scores·dS]; a difference is
 * (L(x + h) - L(x - h)) / (2h) with h = 1e-6, compared with the gradient within
 * 1e-6 · max(max|fd|, floor) over the checked elements of a tensor, the floor being the
 * rounding of L (8·eps·Σ|terms of L| / (h · 1e-6)) that a gradient of exactly 0 (key/bias)
 * shows as differences.
 */
#include "check.h"
#include "reference.h"

#define F64 ATT_FLOAT64
#define H_STEP 1e-6
#define FD_TOL 1e-6
#define MAX_WEIGHTS 16

/* ---- one problem: a layer, its call and the loss's weights ----------------------------------- */

typedef struct {
    att_layer *layer;
    att_tensor q, k, v;      /* float64 inputs; k unused unless key_given */
    int key_given;
    att_tensor out, scores;  /* the forward's outputs */
    att_tensor d_out, d_scores; /* dS.data NULL: no scores term */
    const att_tensor *query_mask, *value_mask, *key_mask, *attention_mask;
    int training, causal;
    uint64_t seed, stream;
} problem;

static att_call_args problem_args(problem *p) {
    att_call_args a = {.struct_size = sizeof a};
    a.query = &p->q;
    a.value = &p->v;
    a.key = p->key_given ? &p->k : NULL;
    a.query_mask = p->query_mask;
    a.value_mask = p->value_mask;
    a.key_mask = p->key_mask;
    a.attention_mask = p->attention_mask;
    a.training = p->training;
    a.use_causal_mask = p->causal;
    a.dropout_seed = p->seed;
    a.dropout_stream = p->stream;
    a.output = &p->out;
    a.scores = p->d_scores.data ? &p->scores : NULL;
    return a;
}

static double *f64(const att_tensor *t) { return (double *)t->data; }

/* Σ |terms of L| (sign 0) or L (sign 1) of the last forward. */
static double loss_terms(const problem *p, int absolute) {
    double sum = 0;
    for (int64_t i = 0; i < numel(p->out.shape); i++) {
        double t = f64(&p->out)[i] * f64(&p->d_out)[i];
        sum += absolute ? fabs(t) : t;
    }
    for (int64_t i = 0; p->d_scores.data && i < numel(p->scores.shape); i++) {
        double t = f64(&p->scores)[i] * f64(&p->d_scores)[i];
        sum += absolute ? fabs(t) : t;
    }
    return sum;
}

/* L at the current inputs and weights (NAN, and a failure, when the call fails). */
static double loss(problem *p) {
    att_call_args a = problem_args(p);
    att_status st = att_layer_call(p->layer, &a);
    if (st != ATT_OK) {
        check(0, "forward for differences: %s (%s)", att_status_name(st), att_last_error());
        return NAN;
    }
    return loss_terms(p, 0);
}

/* Allocates the outputs and random output (and, when with_scores, scores) gradients. */
static void problem_outputs(problem *p, uint64_t *rng, int with_scores) {
    att_shape out_shape, scores_shape;
    expect(att_layer_output_shape(p->layer, &p->q.shape, &p->v.shape, p->key_given ? &p->k.shape : NULL, &out_shape,
                                  &scores_shape),
           ATT_OK, "", "output_shape");
    p->out = new_tensor(F64, out_shape, NULL);
    p->scores = new_tensor(F64, scores_shape, NULL);
    double *d = random_values(rng, (size_t)numel(out_shape), -1, 1, F64);
    p->d_out = new_tensor(F64, out_shape, d);
    free(d);
    p->d_scores = (att_tensor){NULL, F64, scores_shape};
    if (with_scores) {
        d = random_values(rng, (size_t)numel(scores_shape), -1, 1, F64);
        p->d_scores = new_tensor(F64, scores_shape, d);
        free(d);
    }
}

static void problem_free(problem *p) {
    free(p->q.data), free(p->k.data), free(p->v.data);
    free(p->out.data), free(p->scores.data), free(p->d_out.data), free(p->d_scores.data);
}

/* The elements checked of a tensor of n: 0, n-1 and about 8 in between. */
static int64_t check_step(int64_t n) { return n > 8 ? n / 8 : 1; }

/* Compares got[i] with differences at the checked elements i; fd(i) computes one. */
typedef double (*fd_fn)(problem *p, int64_t index, void *ctx);

static void compare_differences(const char *what, problem *p, const double *got, int64_t n, fd_fn fd, void *ctx,
                                double floor) {
    double worst = 0, largest = 0, got_worst = 0, fd_worst = 0;
    int64_t at = -1, step = check_step(n);
    /* indices 0, step, 2·step, ... and n - 1 */
    for (int64_t i = 0; i < n; i = i == n - 1 ? n : i + step < n ? i + step : n - 1) {
        double d = fd(p, i, ctx);
        largest = fmax(largest, fabs(d));
        double err = fabs(got[i] - d);
        if (!(err <= worst)) { /* NaN counts as the worst */
            worst = err, at = i, got_worst = got[i], fd_worst = d;
        }
    }
    double limit = FD_TOL * fmax(largest, floor);
    check(worst <= limit, "%s: element %lld gradient %.17g, differences %.17g (error %.3g > %.3g)", what,
          (long long)at, got_worst, fd_worst, worst, limit);
}

static double fd_at(problem *p, double *x, int64_t index) {
    double old = x[index], up = old + H_STEP, down = old - H_STEP;
    x[index] = up;
    double lu = loss(p);
    x[index] = down;
    double ld = loss(p);
    x[index] = old;
    return (lu - ld) / (up - down);
}

static double fd_input(problem *p, int64_t index, void *ctx) { return fd_at(p, f64((att_tensor *)ctx), index); }

typedef struct {
    size_t weight;
    att_tensor value;
} weight_ctx;

static double fd_weight(problem *p, int64_t index, void *ctx) {
    weight_ctx *w = ctx;
    double *x = f64(&w->value), old = x[index], up = old + H_STEP, down = old - H_STEP;
    x[index] = up;
    att_layer_set_weight(p->layer, w->weight, &w->value);
    double lu = loss(p);
    x[index] = down;
    att_layer_set_weight(p->layer, w->weight, &w->value);
    double ld = loss(p);
    x[index] = old;
    expect(att_layer_set_weight(p->layer, w->weight, &w->value), ATT_OK, "", "restore weight");
    return (lu - ld) / (up - down);
}

/* Runs att_layer_backward on p (include_regularization as given) into fresh gradient
 * tensors: query, value, key (when given) and every weight. Returns the status; *count gets
 * the number of weights. */
typedef struct {
    att_tensor query, value, key, weights[MAX_WEIGHTS], out, scores;
    size_t count;
} gradients;

static att_status run_backward(problem *p, int include_regularization, gradients *g) {
    memset(g, 0, sizeof *g);
    att_layer_weight_count(p->layer, &g->count);
    if (g->count > MAX_WEIGHTS) g->count = MAX_WEIGHTS;
    g->query = new_tensor(F64, p->q.shape, NULL);
    g->value = new_tensor(F64, p->v.shape, NULL);
    g->key = new_tensor(F64, p->k.shape, NULL);
    for (size_t i = 0; i < g->count; i++) {
        att_shape s = {0};
        att_layer_weight_info(p->layer, i, &s, NULL);
        g->weights[i] = new_tensor(F64, s, NULL);
    }
    g->out = new_tensor(F64, p->out.shape, NULL);
    g->scores = new_tensor(F64, p->scores.shape, NULL);
    att_call_args a = problem_args(p);
    a.output = &g->out;
    a.scores = p->d_scores.data ? &g->scores : NULL;
    att_gradient_args ga = {.struct_size = sizeof ga};
    ga.output_gradient = &p->d_out;
    ga.scores_gradient = p->d_scores.data ? &p->d_scores : NULL;
    ga.query_gradient = &g->query;
    ga.value_gradient = &g->value;
    ga.key_gradient = p->key_given ? &g->key : NULL;
    ga.weight_gradients = g->weights;
    ga.include_regularization = include_regularization;
    return att_layer_backward(p->layer, &a, &ga);
}

static void gradients_free(gradients *g) {
    free(g->query.data), free(g->value.data), free(g->key.data), free(g->out.data), free(g->scores.data);
    for (size_t i = 0; i < g->count; i++) free(g->weights[i].data);
}

/* The backward of p against differences: its forward outputs against att_layer_call's,
 * then the checked elements of query, value, key and every weight. */
static void check_backward(const char *what, problem *p) {
    char label[200];
    gradients g;
    att_status st = run_backward(p, 0, &g);
    snprintf(label, sizeof label, "%s: backward", what);
    expect(st, ATT_OK, "", label);
    if (st != ATT_OK) {
        gradients_free(&g);
        return;
    }
    double base = loss(p); /* fills p->out / p->scores by att_layer_call */
    check(isfinite(base), "%s: loss %g", what, base);
    snprintf(label, sizeof label, "%s: backward's output vs att_layer_call", what);
    check_close(label, &g.out, f64(&p->out), (size_t)numel(p->out.shape));
    if (p->d_scores.data) {
        snprintf(label, sizeof label, "%s: backward's scores vs att_layer_call", what);
        check_close(label, &g.scores, f64(&p->scores), (size_t)numel(p->scores.shape));
    }
    double floor = 8 * DBL_EPSILON * loss_terms(p, 1) / (H_STEP * FD_TOL);
    struct {
        const char *name;
        att_tensor *x, *grad;
    } inputs[3] = {{"query", &p->q, &g.query}, {"value", &p->v, &g.value}, {"key", &p->k, &g.key}};
    for (int i = 0; i < (p->key_given ? 3 : 2); i++) {
        snprintf(label, sizeof label, "%s: d/d%s", what, inputs[i].name);
        compare_differences(label, p, f64(inputs[i].grad), numel(inputs[i].x->shape), fd_input, inputs[i].x, floor);
    }
    for (size_t i = 0; i < g.count; i++) {
        const char *name = "?";
        att_shape s = {0};
        att_layer_weight_info(p->layer, i, &s, &name);
        weight_ctx w = {i, new_tensor(F64, s, NULL)};
        expect(att_layer_get_weight(p->layer, i, &w.value), ATT_OK, "", "get_weight");
        snprintf(label, sizeof label, "%s: d/d%s", what, name);
        compare_differences(label, p, f64(&g.weights[i]), numel(s), fd_weight, &w, floor);
        free(w.value.data);
    }
    gradients_free(&g);
}

/* ---- MultiHeadAttention ----------------------------------------------------------------------- */

static att_multi_head_attention_config mha_config(int64_t heads, int64_t key_dim, int64_t value_dim) {
    att_multi_head_attention_config c = {.struct_size = sizeof c};
    c.dtype = F64;
    c.num_heads = heads;
    c.key_dim = key_dim;
    c.value_dim = value_dim;
    c.seed = 3;
    return c;
}

/* A built float64 MHA with random weights in [-0.5, 0.5) and random inputs. */
static void new_mha_problem(problem *p, const att_multi_head_attention_config *cfg, att_shape qs, att_shape vs,
                            const att_shape *ks, uint64_t *rng) {
    memset(p, 0, sizeof *p);
    expect(att_multi_head_attention_create(cfg, &p->layer), ATT_OK, "", "create MHA");
    expect(att_layer_build(p->layer, &qs, &vs, ks), ATT_OK, "", "build MHA");
    double *values[MAX_WEIGHTS] = {0};
    size_t count = load_random_weights(p->layer, F64, rng, values);
    for (size_t i = 0; i < count; i++) free(values[i]);
    double *x = random_values(rng, (size_t)numel(qs), -1, 1, F64);
    p->q = new_tensor(F64, qs, x);
    free(x);
    x = random_values(rng, (size_t)numel(vs), -1, 1, F64);
    p->v = new_tensor(F64, vs, x);
    free(x);
    p->key_given = ks != NULL;
    att_shape kshape = ks ? *ks : vs;
    x = random_values(rng, (size_t)numel(kshape), -1, 1, F64);
    p->k = new_tensor(F64, kshape, x);
    free(x);
}

static void mha_differences(void) {
    enum { B = 2, T = 3, S = 4, Dq = 4, Dk = 3, Dv = 5, N = 2, Hk = 3, Hv = 2 };
    uint64_t rng = 101;
    static const uint8_t qmask[B * T] = {1, 0, 1, 1, 1, 1};
    static const uint8_t kmask[B * S] = {1, 1, 0, 1, 0, 1, 1, 1};
    static const uint8_t amask[B * T * S] = {1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1,
                                             0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1};
    att_tensor qm = mask_tensor(qmask, SHAPE(B, T)), km = mask_tensor(kmask, SHAPE(B, S));
    att_tensor am = mask_tensor(amask, SHAPE(B, T, S));

    /* Cross attention with a key, gate, value_dim != key_dim, masks; with and without dS. */
    att_multi_head_attention_config cfg = mha_config(N, Hk, Hv);
    cfg.use_gate = 1;
    att_shape ks = SHAPE(B, S, Dk);
    for (int with_scores = 0; with_scores < 2; with_scores++) {
        problem p;
        new_mha_problem(&p, &cfg, SHAPE(B, T, Dq), SHAPE(B, S, Dv), &ks, &rng);
        problem_outputs(&p, &rng, with_scores);
        check_backward(with_scores ? "MHA key+gate, scores gradient" : "MHA key+gate", &p);
        p.query_mask = &qm, p.key_mask = &km, p.attention_mask = &am;
        check_backward(with_scores ? "MHA key+gate+masks, scores gradient" : "MHA key+gate+masks", &p);
        att_layer_destroy(p.layer);
        problem_free(&p);
    }

    /* Self attention, no key: value_gradient holds the key's part. Causal, output_shape 3. */
    cfg = mha_config(N, Hk, 0);
    cfg.output_rank = 1;
    cfg.output_shape[0] = 3;
    problem p;
    new_mha_problem(&p, &cfg, SHAPE(B, T, Dq), SHAPE(B, T, Dq), NULL, &rng);
    problem_outputs(&p, &rng, 1);
    p.causal = 1;
    check_backward("MHA without key (value is the key), causal, output_shape 3", &p);
    att_layer_destroy(p.layer);
    problem_free(&p);

    /* Dropout: training, one mask for the step and every difference (same seed and stream). */
    cfg = mha_config(N, Hk, Hv);
    cfg.dropout = 0.3;
    new_mha_problem(&p, &cfg, SHAPE(B, T, Dq), SHAPE(B, S, Dv), &ks, &rng);
    problem_outputs(&p, &rng, 1);
    p.training = 1, p.seed = 0xFEEDFACECAFEull, p.stream = 7;
    check_backward("MHA dropout 0.3, training", &p);
    att_layer_destroy(p.layer);
    problem_free(&p);
}

/* ---- Attention ---------------------------------------------------------------------------------- */

static void attention_differences(void) {
    enum { B = 2, Tq = 3, Tv = 4, D = 3, Dv = 2 };
    uint64_t rng = 202;
    /* No fully masked row: a row without keys is softmax(s - 1e9), which differences at
     * h = 1e-6 cannot resolve (s rounded to ulp(1e9)). */
    static const uint8_t qmask[B * Tq] = {1, 1, 0, 1, 1, 1};
    static const uint8_t vmask[B * Tv] = {1, 0, 1, 1, 1, 1, 0, 1};
    att_tensor qm = mask_tensor(qmask, SHAPE(B, Tq)), vm = mask_tensor(vmask, SHAPE(B, Tv));
    for (int mode = 0; mode < 2; mode++) {
        for (int with_scores = 0; with_scores < 2; with_scores++) {
            problem p;
            memset(&p, 0, sizeof p);
            att_attention_config cfg = {.struct_size = sizeof cfg, .dtype = F64, .use_scale = 1,
                                        .score_mode = mode ? ATT_SCORE_CONCAT : ATT_SCORE_DOT};
            att_shape qs = SHAPE(B, Tq, D), vs = SHAPE(B, Tv, Dv), ks = SHAPE(B, Tv, D);
            expect(att_attention_create(&cfg, &p.layer), ATT_OK, "", "create Attention");
            expect(att_layer_build(p.layer, &qs, &vs, &ks), ATT_OK, "", "build Attention");
            set_scalar(p.layer, 0, F64, 0.8);
            if (mode) set_scalar(p.layer, 1, F64, 1.3);
            double *x = random_values(&rng, B * Tq * D, -1, 1, F64);
            p.q = new_tensor(F64, qs, x);
            free(x);
            x = random_values(&rng, B * Tv * Dv, -1, 1, F64);
            p.v = new_tensor(F64, vs, x);
            free(x);
            x = random_values(&rng, B * Tv * D, -1, 1, F64);
            p.k = new_tensor(F64, ks, x);
            free(x);
            p.key_given = 1;
            problem_outputs(&p, &rng, with_scores);
            char what[120];
            snprintf(what, sizeof what, "Attention %s+scale%s", mode ? "concat" : "dot",
                     with_scores ? ", scores gradient" : "");
            check_backward(what, &p);
            p.query_mask = &qm, p.value_mask = &vm, p.causal = 1;
            snprintf(what, sizeof what, "Attention %s+scale, masks, causal%s", mode ? "concat" : "dot",
                     with_scores ? ", scores gradient" : "");
            check_backward(what, &p);
            att_layer_destroy(p.layer);
            problem_free(&p);
        }
    }
}

/* ---- errors --------------------------------------------------------------------------------------- */

static void backward_errors(void) {
    enum { B = 2, T = 3, S = 4, D = 4 };
    uint64_t rng = 303;
    att_multi_head_attention_config cfg = mha_config(2, 3, 0);
    problem p;
    new_mha_problem(&p, &cfg, SHAPE(B, T, D), SHAPE(B, S, D), NULL, &rng);
    problem_outputs(&p, &rng, 1);
    size_t count = 0;
    att_layer_weight_count(p.layer, &count);
    att_tensor gq = new_tensor(F64, p.q.shape, NULL), gv = new_tensor(F64, p.v.shape, NULL);
    att_tensor gk = new_tensor(F64, p.v.shape, NULL);
    att_tensor weights[MAX_WEIGHTS];
    for (size_t i = 0; i < count && i < MAX_WEIGHTS; i++) {
        att_shape s = {0};
        att_layer_weight_info(p.layer, i, &s, NULL);
        weights[i] = new_tensor(F64, s, NULL);
    }
    att_tensor out32 = new_tensor(ATT_FLOAT32, p.d_out.shape, NULL);
    att_tensor wrong_out = new_tensor(F64, SHAPE(B, T, D + 1), NULL);
    att_tensor wrong_rank = new_tensor(F64, SHAPE(B * T, D), NULL);
    att_tensor wrong_scores = new_tensor(F64, SHAPE(B, 2, T, S + 1), NULL);
    att_tensor wrong_query = new_tensor(F64, SHAPE(B, T + 1, D), NULL);
    att_tensor wrong_weight = new_tensor(F64, SHAPE(99), NULL);
    att_tensor weight32 = new_tensor(ATT_FLOAT32, weights[0].shape, NULL);

    att_call_args a = problem_args(&p);
    att_gradient_args ok = {.struct_size = sizeof ok, .output_gradient = &p.d_out, .scores_gradient = &p.d_scores,
                            .query_gradient = &gq, .value_gradient = &gv, .weight_gradients = weights};
    expect(att_layer_backward(p.layer, &a, &ok), ATT_OK, "", "valid backward");
    size_t gq_bytes = (size_t)numel(gq.shape) * 8, gv_bytes = (size_t)numel(gv.shape) * 8;
    double *want_gq = malloc(gq_bytes), *want_gv = malloc(gv_bytes);
    memcpy(want_gq, gq.data, gq_bytes);
    memcpy(want_gv, gv.data, gv_bytes);
    a.output = NULL;  /* the library writes the output into a buffer of its own */
    expect(att_layer_backward(p.layer, &a, &ok), ATT_OK, "", "backward with output NULL");
    check(memcmp(want_gq, gq.data, gq_bytes) == 0 && memcmp(want_gv, gv.data, gv_bytes) == 0,
          "backward with output NULL: the same gradients as with an output given");
    free(want_gq);
    free(want_gv);
    a = problem_args(&p);

    att_gradient_args g = ok;
    g.output_gradient = NULL;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_NULL_ARGUMENT, "output_gradient", "NULL output_gradient");
    expect(att_layer_backward(p.layer, &a, NULL), ATT_ERR_NULL_ARGUMENT, "grad|null|argument",
           "NULL gradient args");
    expect(att_layer_backward(p.layer, NULL, &ok), ATT_ERR_NULL_ARGUMENT, "arg|null", "NULL call args");
    g = ok;
    g.output_gradient = &wrong_out;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_SHAPE, "output_gradient|shape",
           "output_gradient (B,T,D+1)");
    g.output_gradient = &wrong_rank;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_SHAPE, "output_gradient|shape|rank",
           "output_gradient of rank 2");
    g.output_gradient = &out32;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_DTYPE, "dtype|float", "float32 output_gradient");
    g = ok;
    g.scores_gradient = &wrong_scores;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_SHAPE, "scores_gradient|shape",
           "scores_gradient of the wrong shape");
    g = ok;
    g.query_gradient = &wrong_query;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_SHAPE, "query_gradient|shape",
           "query_gradient of the wrong shape");
    g = ok;
    g.key_gradient = &gk;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_INVALID_ARGUMENT, "key",
           "key_gradient while args->key is NULL");
    g = ok;
    g.reuse_attention_scores_gradient = &wrong_scores; /* the call has no reuse_attention_scores */
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_INVALID_ARGUMENT, "reuse_attention_scores",
           "reuse_attention_scores_gradient without reuse_attention_scores");
    g = ok;
    att_tensor saved = weights[1];
    weights[1] = wrong_weight;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_SHAPE, "weight|shape", "weight_gradients[1] of shape (99)");
    weights[1] = saved;
    saved = weights[0];
    weights[0] = weight32;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_DTYPE, "weight|dtype|float",
           "weight_gradients[0] float32");
    weights[0] = saved;
    g = ok;
    g.struct_size = 0;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_STRUCT_SIZE, "struct_size|size",
           "gradient args struct_size 0");
    g = ok;
    g.struct_size = sizeof g + 8;
    expect(att_layer_backward(p.layer, &a, &g), ATT_ERR_STRUCT_SIZE, "struct_size|size",
           "gradient args struct_size too large");
    expect(att_layer_backward(NULL, &a, &ok), ATT_ERR_INVALID_HANDLE, "handle|layer", "NULL layer");
    expect(att_layer_backward(p.layer, &a, &ok), ATT_OK, "", "valid backward after the errors");

    /* An unbuilt layer: NOT_BUILT (the C API does not build on first use). */
    att_layer *unbuilt = NULL;
    expect(att_multi_head_attention_create(&cfg, &unbuilt), ATT_OK, "", "create unbuilt MHA");
    g = ok;
    g.weight_gradients = NULL;
    expect(att_layer_backward(unbuilt, &a, &g), ATT_ERR_NOT_BUILT, "built|build", "backward of an unbuilt layer");
    att_attention_config acfg = {.struct_size = sizeof acfg, .dtype = F64};
    att_layer *unbuilt_attention = NULL;
    expect(att_attention_create(&acfg, &unbuilt_attention), ATT_OK, "", "create unbuilt Attention");
    att_tensor luong_out = new_tensor(F64, SHAPE(B, T, D), NULL);
    att_tensor luong_scores_grad = new_tensor(F64, SHAPE(B, T, S), NULL);
    g.scores_gradient = &luong_scores_grad;
    g.output_gradient = &luong_out;
    a.scores = NULL;
    expect(att_layer_backward(unbuilt_attention, &a, &g), ATT_ERR_NOT_BUILT, "built|build",
           "backward of an unbuilt Attention");
    double losses[4];
    size_t n = 0;
    expect(att_layer_losses(NULL, NULL, losses, 4, &n), ATT_ERR_INVALID_HANDLE, "handle|layer", "losses of NULL");
    expect(att_layer_losses(p.layer, NULL, losses, 4, NULL), ATT_ERR_NULL_ARGUMENT, "count|null",
           "losses with count NULL");
    expect(att_layer_apply_constraints(NULL), ATT_ERR_INVALID_HANDLE, "handle|layer", "apply_constraints(NULL)");
    att_layer_destroy(unbuilt);
    att_layer_destroy(unbuilt_attention);
    a = problem_args(&p);
    att_layer_destroy(p.layer);
    expect(att_layer_backward(p.layer, &a, &ok), ATT_ERR_INVALID_HANDLE, "handle|destroyed|layer",
           "backward of a destroyed layer");
    problem_free(&p);
    free(gq.data), free(gv.data), free(gk.data), free(out32.data), free(wrong_out.data), free(wrong_rank.data);
    free(wrong_scores.data), free(wrong_query.data), free(wrong_weight.data), free(weight32.data);
    free(luong_out.data), free(luong_scores_grad.data);
    for (size_t i = 0; i < count && i < MAX_WEIGHTS; i++) free(weights[i].data);
}

/* ---- regularizers and constraints ------------------------------------------------------------------- */

static int is_kernel(const att_layer *layer, size_t i) {
    const char *name = "";
    att_layer_weight_info(layer, i, NULL, &name);
    size_t len = strlen(name);
    return len >= 7 && strcmp(name + len - 7, "/kernel") == 0;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void regularizers(void) {
    enum { B = 2, T = 3, S = 4, D = 4 };
    const double l2 = 0.03;
    uint64_t rng = 404;
    att_multi_head_attention_config cfg = mha_config(2, 3, 0);
    cfg.kernel_regularizer = (att_regularizer){ATT_REG_L2, 0, l2};
    problem p;
    att_shape ks = SHAPE(B, S, 3);
    new_mha_problem(&p, &cfg, SHAPE(B, T, D), SHAPE(B, S, D), &ks, &rng);
    problem_outputs(&p, &rng, 0);
    size_t count = 0, kernels = 0;
    att_layer_weight_count(p.layer, &count);
    double expected[MAX_WEIGHTS];
    for (size_t i = 0; i < count; i++) {
        if (!is_kernel(p.layer, i)) continue;
        int64_t n = 0;
        double *w = get_weight(p.layer, i, F64, &n), sum = 0;
        for (int64_t j = 0; j < n; j++) sum += w[j] * w[j];
        expected[kernels++] = l2 * sum;
        free(w);
    }
    check(kernels == 4, "MHA with biases has %zu kernels, want 4", kernels);
    qsort(expected, kernels, sizeof *expected, compare_doubles);

    /* Weight penalties only (args NULL), then with a call (no activity regularizer). */
    for (int with_call = 0; with_call < 2; with_call++) {
        double losses[MAX_WEIGHTS] = {0};
        size_t n = 99;
        att_call_args a = problem_args(&p);
        expect(att_layer_losses(p.layer, with_call ? &a : NULL, losses, MAX_WEIGHTS, &n), ATT_OK, "",
               with_call ? "losses with a call" : "losses without a call");
        if (!check(n == kernels, "att_layer_losses gives %zu losses, want %zu (one l2 penalty per kernel)", n,
                   kernels))
            continue;
        qsort(losses, n, sizeof *losses, compare_doubles);
        for (size_t i = 0; i < n; i++)
            check(fabs(losses[i] - expected[i]) <= 1e-12 * fabs(expected[i]),
                  "loss %zu (sorted) is %.17g, want l2·Σw² = %.17g", i, losses[i], expected[i]);
    }

    /* include_regularization adds 2·l2·w to each kernel's gradient and nothing elsewhere. */
    gradients plain, regularized;
    expect(run_backward(&p, 0, &plain), ATT_OK, "", "backward without regularization");
    expect(run_backward(&p, 1, &regularized), ATT_OK, "", "backward with regularization");
    check(memcmp(plain.query.data, regularized.query.data, (size_t)numel(p.q.shape) * 8) == 0,
          "include_regularization changed the query gradient");
    check(memcmp(plain.key.data, regularized.key.data, (size_t)numel(p.k.shape) * 8) == 0,
          "include_regularization changed the key gradient");
    for (size_t i = 0; i < count && i < MAX_WEIGHTS; i++) {
        int64_t n = 0;
        double *w = get_weight(p.layer, i, F64, &n), worst = 0;
        for (int64_t j = 0; j < n; j++) {
            double want = is_kernel(p.layer, i) ? 2 * l2 * w[j] : 0;
            double got = f64(&regularized.weights[i])[j] - f64(&plain.weights[i])[j];
            worst = fmax(worst, fabs(got - want));
        }
        check(worst <= 1e-12, "weight %zu: regularized - plain gradient is off 2·l2·w by %.3g", i, worst);
        free(w);
    }
    gradients_free(&plain);
    gradients_free(&regularized);
    att_layer_destroy(p.layer);
    problem_free(&p);

    /* An activity regularizer adds penalties of the call's activity (args given) only. */
    cfg.activity_regularizer = (att_regularizer){ATT_REG_L2, 0, 0.02};
    new_mha_problem(&p, &cfg, SHAPE(B, T, D), SHAPE(B, S, D), &ks, &rng);
    problem_outputs(&p, &rng, 0);
    double without[MAX_WEIGHTS], with[MAX_WEIGHTS];
    size_t n_without = 0, n_with = 0;
    att_call_args a = problem_args(&p);
    expect(att_layer_losses(p.layer, NULL, without, MAX_WEIGHTS, &n_without), ATT_OK, "",
           "activity: losses without a call");
    expect(att_layer_losses(p.layer, &a, with, MAX_WEIGHTS, &n_with), ATT_OK, "", "activity: losses with a call");
    check(n_without == 4 && n_with > n_without, "activity regularizer: %zu losses without a call, %zu with", n_without,
          n_with);
    double sum_without = 0, sum_with = 0;
    for (size_t i = 0; i < n_without && i < MAX_WEIGHTS; i++) sum_without += without[i];
    for (size_t i = 0; i < n_with && i < MAX_WEIGHTS; i++) sum_with += with[i];
    check(sum_with > sum_without && isfinite(sum_with), "activity penalties: Σ losses %g with a call, %g without",
          sum_with, sum_without);
    att_layer_destroy(p.layer);
    problem_free(&p);
}

/* Weight i's values (caller frees) and shape. */
static double *weight_values(const att_layer *layer, size_t i, att_shape *s, int64_t *n) {
    att_layer_weight_info(layer, i, s, NULL);
    return get_weight(layer, i, F64, n);
}

static void constraints(void) {
    enum { B = 2, T = 3, S = 4, D = 4 };
    uint64_t rng = 505;
    for (int kind = 0; kind < 3; kind++) {
        att_multi_head_attention_config cfg = mha_config(2, 3, 0);
        cfg.use_gate = 1;
        const double max_value = 0.4;
        if (kind == 1) cfg.kernel_constraint = (att_constraint){ATT_CONSTRAINT_NON_NEG, 0, 0, 0, 0};
        if (kind == 2) {
            cfg.kernel_constraint = (att_constraint){ATT_CONSTRAINT_MAX_NORM, 0, max_value, 0, 0};
            cfg.bias_constraint = (att_constraint){ATT_CONSTRAINT_NON_NEG, 0, 0, 0, 0};
        }
        const char *what = kind == 0 ? "no constraints" : kind == 1 ? "kernel non_neg" : "kernel max_norm, bias non_neg";
        problem p;
        new_mha_problem(&p, &cfg, SHAPE(B, T, D), SHAPE(B, S, D), NULL, &rng);
        size_t count = 0;
        att_layer_weight_count(p.layer, &count);
        double *before[MAX_WEIGHTS] = {0};
        for (size_t i = 0; i < count && i < MAX_WEIGHTS; i++) {
            att_shape s;
            int64_t n;
            before[i] = weight_values(p.layer, i, &s, &n);
        }
        expect(att_layer_apply_constraints(p.layer), ATT_OK, "", what);
        for (size_t i = 0; i < count && i < MAX_WEIGHTS; i++) {
            att_shape s;
            int64_t n = 0;
            double *after = weight_values(p.layer, i, &s, &n), worst = 0;
            int kernel = is_kernel(p.layer, i);
            int64_t inner = s.rank > 0 ? n / s.dims[0] : 1;
            for (int64_t j = 0; j < n; j++) {
                double w = before[i][j], want = w;
                if (kind == 1 && kernel) want = w < 0 ? 0 : w;
                if (kind == 2 && !kernel) want = w < 0 ? 0 : w;
                if (kind == 2 && kernel) { /* Keras's MaxNorm over axis 0, epsilon 1e-7 */
                    double norm2 = 0;
                    for (int64_t r = 0; r < s.dims[0]; r++) {
                        double x = before[i][r * inner + j % inner];
                        norm2 += x * x;
                    }
                    double norm = sqrt(norm2);
                    want = w * (fmin(norm, max_value) / (1e-7 + norm));
                }
                worst = fmax(worst, fabs(after[j] - want));
            }
            check(worst <= 1e-15, "%s: weight %zu is off the constrained value by %.3g", what, i, worst);
            free(after);
            free(before[i]);
        }
        att_layer_destroy(p.layer);
        problem_free(&p);
    }
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"MultiHeadAttention backward vs differences", mha_differences},
        {"Attention backward vs differences", attention_differences},
        {"backward errors", backward_errors},
        {"regularizers and losses", regularizers},
        {"constraints", constraints},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
