/*
 * test_nd_empty.c — issue 16 from C: padding masks of N-D multi-head inputs broadcast as
 * Keras broadcasts them, Attention / AdditiveAttention on inputs of rank 2 to 5, and empty
 * tensors (a zero batch, query length or key length) in every layer and in
 * att_dot_product_attention, forward and backward.
 *
 * The meaning of the masks is checked by equivalence: a call with (B, T) / (B, S) / (1, S)
 * masks gives bit for bit what the same call gives with the explicit attention_mask (or the
 * tiled mask) that Keras's rule makes of them; an N-D Attention call gives what the rank-3
 * calls of its slices give.
 */
#include "check.h"

static const att_dtype DTYPES[2] = {ATT_FLOAT32, ATT_FLOAT64};

static att_layer *mha(att_dtype dt, int axis1, int gate, int bias_ones) {
    att_multi_head_attention_config c = {.struct_size = sizeof c, .dtype = dt, .num_heads = 2, .key_dim = 3,
                                         .use_gate = gate};
    if (axis1) c.num_attention_axes = 1, c.attention_axes[0] = 1;
    if (bias_ones) c.bias_initializer.kind = ATT_INIT_ONES;
    att_layer *l = NULL;
    expect(att_multi_head_attention_create(&c, &l), ATT_OK, "", "create MultiHeadAttention");
    return l;
}

static att_layer *gqa(att_dtype dt, int bias_ones) {
    att_group_query_attention_config c = {.struct_size = sizeof c, .dtype = dt, .head_dim = 2,
                                          .num_query_heads = 4, .num_key_value_heads = 2};
    if (bias_ones) c.bias_initializer.kind = ATT_INIT_ONES;
    att_layer *l = NULL;
    expect(att_group_query_attention_create(&c, &l), ATT_OK, "", "create GroupQueryAttention");
    return l;
}

static att_layer *luong(att_dtype dt, int additive) {
    att_layer *l = NULL;
    if (additive) {
        att_additive_attention_config c = {.struct_size = sizeof c, .dtype = dt, .seed = 3};
        expect(att_additive_attention_create(&c, &l), ATT_OK, "", "create AdditiveAttention");
    } else {
        att_attention_config c = {.struct_size = sizeof c, .dtype = dt, .use_scale = 1};
        expect(att_attention_create(&c, &l), ATT_OK, "", "create Attention");
    }
    return l;
}

static att_layer *reuse(att_dtype dt) {
    att_reuse_multi_head_attention_config c = {.struct_size = sizeof c, .dtype = dt, .num_heads = 2, .key_dim = 3};
    c.bias_initializer.kind = ATT_INIT_ONES;
    att_layer *l = NULL;
    expect(att_reuse_multi_head_attention_create(&c, &l), ATT_OK, "", "create ReuseMultiHeadAttention");
    return l;
}

static int same_bytes(const att_tensor *a, const att_tensor *b) {
    return same_shape(a->shape, b->shape) &&
           memcmp(a->data, b->data, (size_t)numel(a->shape) * dtype_size(a->dtype)) == 0;
}

/* One forward and backward of `layer` on q, v with the given masks: output, scores and the
 * gradients of query, value and every weight (dO all ones, dScores all halves). */
typedef struct {
    att_tensor out, scores, dq, dv, dw[16];
    size_t weights;
    att_status call, backward;
} run_result;

static run_result run(const att_layer *layer, att_tensor *q, att_tensor *v, const att_tensor *qm,
                      const att_tensor *vm, const att_tensor *km, const att_tensor *am, int causal) {
    run_result r = {0};
    att_shape os = {0}, ss = {0};
    expect(att_layer_output_shape(layer, &q->shape, &v->shape, NULL, &os, &ss), ATT_OK, "", "output_shape");
    att_dtype dt = q->dtype;
    r.out = new_tensor(dt, os, NULL), r.scores = new_tensor(dt, ss, NULL);
    att_call_args a = {.struct_size = sizeof a, .query = q, .value = v, .query_mask = qm, .value_mask = vm,
                       .key_mask = km, .attention_mask = am, .use_causal_mask = causal, .output = &r.out,
                       .scores = &r.scores};
    r.call = att_layer_call(layer, &a);
    att_layer_weight_count(layer, &r.weights);
    for (size_t i = 0; i < r.weights; i++) {
        att_shape s = {0};
        att_layer_weight_info(layer, i, &s, NULL);
        r.dw[i] = new_tensor(dt, s, NULL);
    }
    int64_t n = numel(os), m = numel(ss);
    double *ones = malloc((size_t)(n ? n : 1) * sizeof *ones), *halves = malloc((size_t)(m ? m : 1) * sizeof *halves);
    for (int64_t i = 0; i < n; i++) ones[i] = 1;
    for (int64_t i = 0; i < m; i++) halves[i] = 0.5;
    att_tensor d_out = new_tensor(dt, os, ones), d_scores = new_tensor(dt, ss, halves);
    r.dq = new_tensor(dt, q->shape, NULL), r.dv = new_tensor(dt, v->shape, NULL);
    att_gradient_args g = {.struct_size = sizeof g, .output_gradient = &d_out, .scores_gradient = &d_scores,
                           .query_gradient = &r.dq, .value_gradient = &r.dv,
                           .weight_gradients = r.weights ? r.dw : NULL};
    att_tensor out2 = new_tensor(dt, os, NULL), scores2 = new_tensor(dt, ss, NULL);
    a.output = &out2, a.scores = &scores2;
    r.backward = att_layer_backward(layer, &a, &g);
    free(ones), free(halves), free(d_out.data), free(d_scores.data), free(out2.data), free(scores2.data);
    return r;
}

static void free_run(run_result *r) {
    free(r->out.data), free(r->scores.data), free(r->dq.data), free(r->dv.data);
    for (size_t i = 0; i < r->weights; i++) free(r->dw[i].data);
}

/* Both runs succeeded and agree bit for bit in everything they computed. */
static void check_same_run(const char *what, run_result *a, run_result *b) {
    expect(a->call, ATT_OK, "", what), expect(b->call, ATT_OK, "", what);
    expect(a->backward, ATT_OK, "", what), expect(b->backward, ATT_OK, "", what);
    check(same_bytes(&a->out, &b->out), "%s: outputs differ", what);
    check(same_bytes(&a->scores, &b->scores), "%s: scores differ", what);
    check(same_bytes(&a->dq, &b->dq), "%s: query gradients differ", what);
    check(same_bytes(&a->dv, &b->dv), "%s: value gradients differ", what);
    for (size_t i = 0; i < a->weights; i++) check(same_bytes(&a->dw[i], &b->dw[i]), "%s: weight %zu gradients differ", what, i);
    free_run(a), free_run(b);
}

/* MultiHeadAttention over axis 1 of (B, T, X, D) = (2, 3, 2, 4), value (2, 5, 2, 4):
 * query_mask (B, T), value_mask (B, S), key_mask (1, S) mean the attention_mask
 * (B, 1, 1, T, S) of their AND (the scores are (B, X, N, T, S)). */
static void mha_rank4_padding_masks(void) {
    for (int d = 0; d < 2; d++) {
        att_dtype dt = DTYPES[d];
        uint64_t rng = 16 + (uint64_t)d;
        att_layer *l = mha(dt, 1, d, 0);
        att_tensor q = random_tensor(dt, SHAPE(2, 3, 2, 4), &rng), v = random_tensor(dt, SHAPE(2, 5, 2, 4), &rng);
        expect(att_layer_build(l, &q.shape, &v.shape, NULL), ATT_OK, "", "build rank 4 over axis 1");
        double *w[16];
        size_t count = load_random_weights(l, dt, &rng, w);
        att_tensor qm = random_mask(SHAPE(2, 3), &rng), vm = random_mask(SHAPE(2, 5), &rng);
        att_tensor km = random_mask(SHAPE(1, 5), &rng), am = new_tensor(ATT_UINT8, SHAPE(2, 1, 1, 3, 5), NULL);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 3; t++)
                for (int s = 0; s < 5; s++)
                    ((uint8_t *)am.data)[(b * 3 + t) * 5 + s] = ((uint8_t *)qm.data)[b * 3 + t] &&
                        ((uint8_t *)vm.data)[b * 5 + s] && ((uint8_t *)km.data)[s];
        for (int causal = 0; causal < 2; causal++) {
            run_result a = run(l, &q, &v, &qm, &vm, &km, NULL, causal), b = run(l, &q, &v, NULL, NULL, NULL, &am, causal);
            char what[96];
            snprintf(what, sizeof what, "MHA rank 4 (B,T)/(B,S)/(1,S) masks, causal %d (%s)", causal, dtype_name(dt));
            check_same_run(what, &a, &b);
        }
        /* (1, S) broadcasts over the batch: the same as the tiled (B, S). */
        att_tensor tiled = new_tensor(ATT_UINT8, SHAPE(2, 5), NULL);
        memcpy(tiled.data, km.data, 5), memcpy((uint8_t *)tiled.data + 5, km.data, 5);
        run_result a = run(l, &q, &v, NULL, &km, NULL, NULL, 0), b = run(l, &q, &v, NULL, &tiled, NULL, NULL, 0);
        check_same_run("MHA value_mask (1, S) vs tiled (B, S)", &a, &b);
        /* Keras's rule refuses the query's shape without its last dim here: (B, T, X, 1) gains
         * its size-1 axis at -3, giving (B, T, 1, X, 1) against the scores (B, X, N, T, S). */
        att_tensor bad = random_mask(SHAPE(2, 3, 2), &rng);
        run_result r = run(l, &q, &v, &bad, NULL, NULL, NULL, 0);
        expect(r.call, ATT_ERR_SHAPE, "query_mask|broadcast", "MHA rank 4 over axis 1, query_mask (B, T, X)");
        free_run(&r);
        att_tensor scalar = random_mask((att_shape){0}, &rng);
        r = run(l, &q, &v, NULL, &scalar, NULL, NULL, 0);
        expect(r.call, ATT_ERR_SHAPE, "scalar", "MHA value_mask of rank 0");
        free_run(&r);
        for (size_t i = 0; i < count; i++) free(w[i]);
        free(q.data), free(v.data), free(qm.data), free(vm.data), free(km.data), free(am.data), free(tiled.data);
        free(bad.data), free(scalar.data);
        att_layer_destroy(l);
    }
}

/* GroupQueryAttention: a (1, S) value_mask and an (S,) key_mask mean the tiled (B, S) ones. */
static void gqa_broadcast_masks(void) {
    for (int d = 0; d < 2; d++) {
        att_dtype dt = DTYPES[d];
        uint64_t rng = 31 + (uint64_t)d;
        att_layer *l = gqa(dt, 0);
        att_tensor q = random_tensor(dt, SHAPE(2, 3, 4), &rng), v = random_tensor(dt, SHAPE(2, 5, 4), &rng);
        att_tensor vm = random_mask(SHAPE(1, 5), &rng), km = random_mask(SHAPE(5), &rng);
        ((uint8_t *)vm.data)[0] = ((uint8_t *)km.data)[0] = 1;
        att_tensor vt = new_tensor(ATT_UINT8, SHAPE(2, 5), NULL), kt = new_tensor(ATT_UINT8, SHAPE(2, 5), NULL);
        for (int b = 0; b < 2; b++) memcpy((uint8_t *)vt.data + 5 * b, vm.data, 5), memcpy((uint8_t *)kt.data + 5 * b, km.data, 5);
        expect(att_layer_build(l, &q.shape, &v.shape, NULL), ATT_OK, "", "build GQA");
        run_result a = run(l, &q, &v, NULL, &vm, &km, NULL, 0), b = run(l, &q, &v, NULL, &vt, &kt, NULL, 0);
        check_same_run(dt == ATT_FLOAT32 ? "GQA (1, S) / (S,) masks (float32)" : "GQA (1, S) / (S,) masks (float64)", &a, &b);
        free(q.data), free(v.data), free(vm.data), free(km.data), free(vt.data), free(kt.data);
        att_layer_destroy(l);
    }
}

/* Attention / AdditiveAttention on (B, X, Tq, D) = (2, 3, 4, 5): each (b, x) slice is the
 * rank-3 call of that slice with its masks (query_mask (B, X, Tq), value_mask (B, X, Tv)). */
static void luong_rank4_slices(void) {
    for (int d = 0; d < 2; d++)
        for (int additive = 0; additive < 2; additive++) {
            att_dtype dt = DTYPES[d];
            size_t es = dtype_size(dt);
            uint64_t rng = 40 + (uint64_t)(2 * d + additive);
            att_layer *l = luong(dt, additive);
            att_tensor q = random_tensor(dt, SHAPE(2, 3, 4, 5), &rng), v = random_tensor(dt, SHAPE(2, 3, 6, 5), &rng);
            att_tensor qm = random_mask(SHAPE(2, 3, 4), &rng), vm = random_mask(SHAPE(2, 3, 6), &rng);
            expect(att_layer_build(l, &q.shape, &v.shape, NULL), ATT_OK, "", "build rank 4");
            run_result all = run(l, &q, &v, &qm, &vm, NULL, NULL, 1);
            expect(all.call, ATT_OK, "", "Luong rank 4"), expect(all.backward, ATT_OK, "", "Luong rank 4 backward");
            check(same_shape(all.out.shape, SHAPE(2, 3, 4, 5)) && same_shape(all.scores.shape, SHAPE(2, 3, 4, 6)),
                  "Luong rank 4: output and scores shapes");
            int same = 1;
            for (int s = 0; s < 6; s++) {
                att_tensor qs = new_tensor(dt, SHAPE(1, 4, 5), NULL), vs = new_tensor(dt, SHAPE(1, 6, 5), NULL);
                memcpy(qs.data, (char *)q.data + (size_t)s * 20 * es, 20 * es);
                memcpy(vs.data, (char *)v.data + (size_t)s * 30 * es, 30 * es);
                att_tensor qms = mask_tensor((uint8_t *)qm.data + 4 * s, SHAPE(1, 4));
                att_tensor vms = mask_tensor((uint8_t *)vm.data + 6 * s, SHAPE(1, 6));
                run_result one = run(l, &qs, &vs, &qms, &vms, NULL, NULL, 1);
                same &= one.call == ATT_OK && one.backward == ATT_OK;
                same &= memcmp(one.out.data, (char *)all.out.data + (size_t)s * 20 * es, 20 * es) == 0;
                same &= memcmp(one.scores.data, (char *)all.scores.data + (size_t)s * 24 * es, 24 * es) == 0;
                same &= memcmp(one.dq.data, (char *)all.dq.data + (size_t)s * 20 * es, 20 * es) == 0;
                same &= memcmp(one.dv.data, (char *)all.dv.data + (size_t)s * 30 * es, 30 * es) == 0;
                free_run(&one), free(qs.data), free(vs.data);
            }
            check(same, "%s rank 4 vs its rank-3 slices (%s): outputs, scores and input gradients",
                  additive ? "AdditiveAttention" : "Attention", dtype_name(dt));
            /* Rank 2 (no batch axis) and rank 5 run too. */
            att_tensor q2 = random_tensor(dt, SHAPE(4, 5), &rng), v2 = random_tensor(dt, SHAPE(6, 5), &rng);
            run_result r2 = run(l, &q2, &v2, NULL, NULL, NULL, NULL, 0);
            expect(r2.call, ATT_OK, "", "Luong rank 2"), expect(r2.backward, ATT_OK, "", "Luong rank 2 backward");
            att_tensor q5 = random_tensor(dt, SHAPE(2, 1, 2, 4, 5), &rng), v5 = random_tensor(dt, SHAPE(2, 1, 2, 6, 5), &rng);
            att_tensor vm5 = random_mask(SHAPE(1, 2, 6), &rng);
            run_result r5 = run(l, &q5, &v5, NULL, &vm5, NULL, NULL, 0);
            expect(r5.call, ATT_OK, "", "Luong rank 5, value_mask (1, X, Tv)");
            expect(r5.backward, ATT_OK, "", "Luong rank 5 backward");
            free_run(&all), free_run(&r2), free_run(&r5);
            free(q.data), free(v.data), free(qm.data), free(vm.data), free(q2.data), free(v2.data);
            free(q5.data), free(v5.data), free(vm5.data);
            att_layer_destroy(l);
        }
}

/* Every layer with a zero batch, a zero query length or a zero key length: ATT_OK, output
 * of the right shape, with no keys equal to the output bias (1 here; 0 for Attention and
 * AdditiveAttention); input gradients 0; weight gradients 0 but the output bias's. */
static void empty_tensors(void) {
    static const att_shape cases[][2] = {
        {SH(3, 0, 3, 4), SH(3, 0, 5, 4)}, {SH(3, 2, 0, 4), SH(3, 2, 5, 4)}, {SH(3, 2, 3, 4), SH(3, 2, 0, 4)},
    };
    for (int d = 0; d < 2; d++)
        for (int kind = 0; kind < 5; kind++)
            for (int c = 0; c < 3; c++) {
                att_dtype dt = DTYPES[d];
                att_layer *l = kind == 0 ? luong(dt, 0) : kind == 1 ? luong(dt, 1) : kind == 2 ? mha(dt, 0, 1, 1)
                             : kind == 3 ? gqa(dt, 1) : reuse(dt);
                uint64_t rng = 50;
                att_tensor q = random_tensor(dt, cases[c][0], &rng), v = random_tensor(dt, cases[c][1], &rng);
                char what[96];
                snprintf(what, sizeof what, "empty case %d, layer kind %d (%s)", c, kind, dtype_name(dt));
                expect(att_layer_build(l, &q.shape, &v.shape, NULL), ATT_OK, "", what);
                run_result r = run(l, &q, &v, NULL, NULL, NULL, NULL, 0);
                expect(r.call, ATT_OK, "", what), expect(r.backward, ATT_OK, "", what);
                double want = c == 2 && kind >= 2 ? 1 : 0;
                int ok = 1;
                for (int64_t i = 0; i < numel(r.out.shape); i++) ok &= tensor_at(&r.out, (size_t)i) == want;
                for (int64_t i = 0; i < numel(r.dq.shape); i++) ok &= tensor_at(&r.dq, (size_t)i) == 0;
                for (int64_t i = 0; i < numel(r.dv.shape); i++) ok &= tensor_at(&r.dv, (size_t)i) == 0;
                check(ok && same_shape(r.out.shape, c == 1 ? SHAPE(2, 0, 4) : cases[c][0]),
                      "%s: output %g everywhere and zero input gradients", what, want);
                for (size_t i = 0; i < r.weights; i++) {
                    const char *name = NULL;
                    att_layer_weight_info(l, i, NULL, &name);
                    int output_bias = name && strstr(name, "output") && strstr(name, "bias");
                    /* The output bias's gradient is Σ dO over the rows: 6 with no keys, else 0 rows. */
                    double want_dw = output_bias ? (double)numel(r.out.shape) / 4 : 0;
                    int zero = 1;
                    for (int64_t e = 0; e < numel(r.dw[i].shape); e++) zero &= tensor_at(&r.dw[i], (size_t)e) == want_dw;
                    check(zero, "%s: weight %zu (%s) gradient is not %g", what, i, name ? name : "?", want_dw);
                }
                free_run(&r), free(q.data), free(v.data);
                att_layer_destroy(l);
            }
}

/* att_dot_product_attention with B, T, S or N zero; K = 0 and negative dims are errors. */
static void empty_dot_product_attention(void) {
    static const att_shape cases[][2] = {
        {SH(4, 0, 3, 4, 2), SH(4, 0, 5, 2, 2)}, {SH(4, 1, 0, 4, 2), SH(4, 1, 5, 2, 2)},
        {SH(4, 1, 3, 4, 2), SH(4, 1, 0, 2, 2)}, {SH(4, 1, 3, 0, 2), SH(4, 1, 5, 2, 2)},
    };
    uint64_t rng = 60;
    for (int c = 0; c < 4; c++) {
        att_tensor q = random_tensor(ATT_FLOAT32, cases[c][0], &rng), k = random_tensor(ATT_FLOAT32, cases[c][1], &rng);
        att_tensor out = new_tensor(ATT_FLOAT32, cases[c][0], NULL);
        for (int64_t i = 0; i < numel(out.shape); i++) ((float *)out.data)[i] = NAN;
        att_dot_product_attention_args a = {.struct_size = sizeof a, .query = &q, .key = &k, .value = &k, .output = &out};
        expect(att_dot_product_attention(&a), ATT_OK, "", "dot_product_attention with an empty axis");
        int zero = 1;
        for (int64_t i = 0; i < numel(out.shape); i++) zero &= ((float *)out.data)[i] == 0;
        check(zero, "dot_product_attention case %d: the output is 0 (no keys) or empty", c);
        if (c == 0) { /* no elements: NULL data is accepted (what malloc(0) may give) */
            att_tensor nq = {NULL, ATT_FLOAT32, q.shape}, nk = {NULL, ATT_FLOAT32, k.shape}, no = {NULL, ATT_FLOAT32, out.shape};
            att_dot_product_attention_args n = {.struct_size = sizeof n, .query = &nq, .key = &nk, .value = &nk, .output = &no};
            expect(att_dot_product_attention(&n), ATT_OK, "", "dot_product_attention, empty tensors with NULL data");
            nk.shape = SHAPE(4, 1, 5, 2, 2);
            expect(att_dot_product_attention(&n), ATT_ERR_NULL_ARGUMENT, "key->data", "NULL data of a non-empty key");
            /* Empty, but its other dims' product overflows: its strides would (found by fuzzing). */
            nk.shape = SHAPE(0, INT64_C(1) << 31, INT64_C(1) << 31, 4);
            nq.shape = SHAPE(0, 3, INT64_C(1) << 31, 4);
            no.shape = nq.shape;
            expect(att_dot_product_attention(&n), ATT_ERR_SHAPE, "64 bits", "empty tensors whose other dims overflow");
        }
        if (c == 0) {
            k.shape.dims[2] = 0;
            expect(att_dot_product_attention(&a), ATT_ERR_SHAPE, "key/value head", "dot_product_attention K = 0");
            q.shape.dims[1] = -1;
            expect(att_dot_product_attention(&a), ATT_ERR_SHAPE, "dim -1", "dot_product_attention T = -1");
        }
        free(q.data), free(k.data), free(out.data);
    }
}

/* Negative dims stay errors and feature dims must be >= 1, in build and call. */
static void dims_that_stay_errors(void) {
    att_layer *l = mha(ATT_FLOAT32, 0, 0, 0);
    att_shape neg = SHAPE(2, -1, 4), zero_feature = SHAPE(2, 3, 0), v = SHAPE(2, 5, 4);
    expect(att_layer_build(l, &neg, &v, NULL), ATT_ERR_SHAPE, "dim -1", "MHA build with dim -1");
    expect(att_layer_build(l, &zero_feature, &v, NULL), ATT_ERR_SHAPE, "feature", "MHA build with feature dim 0");
    att_layer_destroy(l);
    l = luong(ATT_FLOAT32, 0);
    att_shape rank1 = SHAPE(4);
    expect(att_layer_build(l, &rank1, &rank1, NULL), ATT_ERR_SHAPE, "rank >= 2", "Attention rank 1");
    att_layer_destroy(l);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"MultiHeadAttention rank-4 padding masks", mha_rank4_padding_masks},
        {"GroupQueryAttention broadcast masks", gqa_broadcast_masks},
        {"Attention / AdditiveAttention N-D", luong_rank4_slices},
        {"empty tensors, every layer", empty_tensors},
        {"empty dot_product_attention", empty_dot_product_attention},
        {"dims that stay errors", dims_that_stay_errors},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
