/*
 * call_cases.h — the C tests' shared workload over every layer kind: eight layers (Attention
 * dot and concat, AdditiveAttention, MultiHeadAttention of rank 3 and 4 and a larger one,
 * GroupQueryAttention, ReuseMultiHeadAttention, fixed configs and seeds) and
 * att_dot_product_attention, 16 calls over them (different shapes on one layer, float32 and
 * float64, masks, causal, scores, dropout, a key), each with its serial result.
 * prepare_cases() creates the layers and inputs and records the serial results;
 * run_matches() reruns one call and compares bit for bit. Used by test_threads.c and
 * test_fork.c.
 */
#ifndef ATT_TEST_CALL_CASES_H
#define ATT_TEST_CALL_CASES_H

#include "check.h"

enum { LAYERS = 8 };

/* One forward call, repeatable: which layer (-1: att_dot_product_attention), the inputs'
 * dtype and shapes (k rank 0: no key), which masks (random, about 30% zeros), and flags. */
typedef struct {
    const char *name;
    int layer;
    att_dtype dtype;
    att_shape q, k, v;
    int query_mask, value_mask, key_mask; /* shaped as the query / value without the last dim */
    att_shape attention_mask, reuse, bias, mask; /* rank 0: none (mask, bias: dot_product_attention) */
    int causal, training, want_scores;
    double scale; /* dot_product_attention: 0 for 1/sqrt(H) */
} call_spec;

static const call_spec SPECS[] = {
    {.name = "Attention dot, key, masks, scores, dropout", .layer = 0, .dtype = ATT_FLOAT32, .q = SH(3, 2, 5, 8),
     .k = SH(3, 2, 7, 8), .v = SH(3, 2, 7, 8), .query_mask = 1, .value_mask = 1, .training = 1, .want_scores = 1},
    {.name = "Attention dot causal, other shape", .layer = 0, .dtype = ATT_FLOAT32, .q = SH(3, 1, 17, 8),
     .v = SH(3, 1, 3, 8), .causal = 1},
    {.name = "Attention concat (causal config), scores", .layer = 1, .dtype = ATT_FLOAT64, .q = SH(3, 2, 6, 4),
     .v = SH(3, 2, 6, 4), .value_mask = 1, .want_scores = 1},
    {.name = "AdditiveAttention, value_mask, scores, dropout", .layer = 2, .dtype = ATT_FLOAT32,
     .q = SH(3, 2, 4, 6), .v = SH(3, 2, 9, 6), .value_mask = 1, .training = 1, .want_scores = 1},
    {.name = "AdditiveAttention, key, other shape", .layer = 2, .dtype = ATT_FLOAT32, .q = SH(3, 3, 2, 6),
     .k = SH(3, 3, 2, 6), .v = SH(3, 3, 2, 6)},
    {.name = "MultiHeadAttention, attention_mask, scores, dropout", .layer = 3, .dtype = ATT_FLOAT32,
     .q = SH(3, 2, 6, 12), .v = SH(3, 2, 9, 12), .attention_mask = SH(3, 2, 6, 9), .training = 1,
     .want_scores = 1},
    {.name = "MultiHeadAttention causal, query_mask, other shape", .layer = 3, .dtype = ATT_FLOAT32,
     .q = SH(3, 1, 3, 12), .v = SH(3, 1, 4, 12), .query_mask = 1, .causal = 1},
    {.name = "MultiHeadAttention rank 4, key, gate, attention_mask, scores", .layer = 4, .dtype = ATT_FLOAT64,
     .q = SH(4, 2, 3, 4, 6), .k = SH(4, 2, 3, 4, 5), .v = SH(4, 2, 3, 4, 6), .attention_mask = SH(5, 2, 3, 4, 3, 4),
     .want_scores = 1},
    {.name = "GroupQueryAttention window, key, key_mask, causal, scores", .layer = 5, .dtype = ATT_FLOAT32,
     .q = SH(3, 2, 7, 16), .k = SH(3, 2, 9, 16), .v = SH(3, 2, 9, 16), .key_mask = 1, .causal = 1,
     .want_scores = 1},
    {.name = "GroupQueryAttention window past the keys, masks, dropout", .layer = 5, .dtype = ATT_FLOAT32,
     .q = SH(3, 1, 12, 16), .v = SH(3, 1, 4, 16), .query_mask = 1, .value_mask = 1, .training = 1},
    {.name = "ReuseMultiHeadAttention partial reuse, pe, mask, scores", .layer = 6, .dtype = ATT_FLOAT32,
     .q = SH(3, 2, 10, 16), .v = SH(3, 2, 10, 16), .attention_mask = SH(3, 2, 10, 10),
     .reuse = SH(4, 2, 3, 10, 10), .want_scores = 1},
    {.name = "ReuseMultiHeadAttention dropout", .layer = 6, .dtype = ATT_FLOAT32, .q = SH(3, 1, 12, 16),
     .v = SH(3, 1, 12, 16), .reuse = SH(4, 1, 2, 12, 12), .training = 1},
    {.name = "MultiHeadAttention 2x128x64 fused", .layer = 7, .dtype = ATT_FLOAT32, .q = SH(3, 2, 128, 64),
     .v = SH(3, 2, 128, 64)},
    {.name = "MultiHeadAttention 2x128x64, value_mask, scores", .layer = 7, .dtype = ATT_FLOAT32,
     .q = SH(3, 2, 128, 64), .v = SH(3, 2, 96, 64), .value_mask = 1, .want_scores = 1},
    {.name = "dot_product_attention grouped, bias, mask, causal", .layer = -1, .dtype = ATT_FLOAT32,
     .q = SH(4, 2, 6, 4, 8), .k = SH(4, 2, 9, 2, 8), .v = SH(4, 2, 9, 2, 8), .bias = SH(3, 4, 6, 9),
     .mask = SH(2, 6, 9), .causal = 1},
    {.name = "dot_product_attention float64, scale", .layer = -1, .dtype = ATT_FLOAT64, .q = SH(4, 1, 5, 2, 4),
     .k = SH(4, 1, 7, 2, 4), .v = SH(4, 1, 7, 2, 3), .scale = 0.3},
};
enum { CASES = sizeof SPECS / sizeof SPECS[0] };

/* A call ready to run: its tensors and argument templates, and its serial results. */
typedef struct {
    const call_spec *spec;
    att_tensor q, k, v, qm, vm, km, am, reuse, bias, mask;
    att_call_args args;
    att_dot_product_attention_args dpa;
    att_shape out_shape, scores_shape;
    size_t out_bytes, scores_bytes;
    void *want_out, *want_scores;
} call_case;

static att_layer *g_layers[LAYERS];
static call_case g_cases[CASES];
static size_t g_max_out, g_max_scores;

/* Creates and builds the eight layers (fixed configs and seeds, so the same weights each time);
 * the number of calls that failed. Touches no test counters: worker threads call it. */
static int make_layers(att_layer **layers) {
    att_attention_config a0 = {.struct_size = sizeof a0, .dtype = ATT_FLOAT32, .use_scale = 1, .dropout = 0.2};
    att_attention_config a1 = {.struct_size = sizeof a1, .dtype = ATT_FLOAT64, .score_mode = ATT_SCORE_CONCAT,
                               .causal = 1};
    att_additive_attention_config a2 = {.struct_size = sizeof a2, .dtype = ATT_FLOAT32,
                                        .dropout = 0.1, .seed = 3};
    att_multi_head_attention_config m3 = {.struct_size = sizeof m3, .dtype = ATT_FLOAT32, .num_heads = 4,
                                          .key_dim = 8, .dropout = 0.1, .seed = 4};
    att_multi_head_attention_config m4 = {.struct_size = sizeof m4, .dtype = ATT_FLOAT64, .num_heads = 2,
                                          .key_dim = 4, .value_dim = 3, .use_gate = 1, .seed = 5};
    att_group_query_attention_config g5 = {.struct_size = sizeof g5, .dtype = ATT_FLOAT32, .head_dim = 8,
                                           .num_query_heads = 4, .num_key_value_heads = 2, .dropout = 0.1,
                                           .sliding_window = 5, .seed = 6};
    att_reuse_multi_head_attention_config r6 = {.struct_size = sizeof r6, .dtype = ATT_FLOAT32, .num_heads = 4,
                                                .key_dim = 8, .dropout = 0.1, .reuse_attention = 2,
                                                .use_relative_pe = 1, .pe_max_seq_length = 8,
                                                .seed = 7};
    att_multi_head_attention_config m7 = {.struct_size = sizeof m7, .dtype = ATT_FLOAT32, .num_heads = 4,
                                          .key_dim = 16, .seed = 8};
    int failed = 0;
    failed += att_attention_create(&a0, &layers[0]) != ATT_OK;
    failed += att_attention_create(&a1, &layers[1]) != ATT_OK;
    failed += att_additive_attention_create(&a2, &layers[2]) != ATT_OK;
    failed += att_multi_head_attention_create(&m3, &layers[3]) != ATT_OK;
    failed += att_multi_head_attention_create(&m4, &layers[4]) != ATT_OK;
    failed += att_group_query_attention_create(&g5, &layers[5]) != ATT_OK;
    failed += att_reuse_multi_head_attention_create(&r6, &layers[6]) != ATT_OK;
    failed += att_multi_head_attention_create(&m7, &layers[7]) != ATT_OK;
    static const struct {
        att_shape q, v, k;
    } builds[LAYERS] = {
        {SH(3, 1, 1, 8), SH(3, 1, 1, 8), {0}},  {SH(3, 1, 1, 4), SH(3, 1, 1, 4), {0}},
        {SH(3, 1, 1, 6), SH(3, 1, 1, 6), {0}},  {SH(3, 1, 1, 12), SH(3, 1, 1, 12), {0}},
        {SH(4, 1, 1, 1, 6), SH(4, 1, 1, 1, 6), SH(4, 1, 1, 1, 5)},
        {SH(3, 1, 1, 16), SH(3, 1, 1, 16), {0}}, {SH(3, 1, 1, 16), SH(3, 1, 1, 16), {0}},
        {SH(3, 1, 1, 64), SH(3, 1, 1, 64), {0}},
    };
    for (int i = 0; i < LAYERS; i++)
        failed += att_layer_build(layers[i], &builds[i].q, &builds[i].v, builds[i].k.rank ? &builds[i].k : NULL) !=
                  ATT_OK;
    return failed;
}

/* Destroys the layers; the number of calls that failed. */
static int destroy_layers(att_layer **layers) {
    int failed = 0;
    for (int i = 0; i < LAYERS; i++) failed += att_layer_destroy(layers[i]) != ATT_OK;
    return failed;
}

/* Runs case c with layers `layers` into out (and scores when the case wants them). */
static att_status run_case(const call_case *c, att_layer *const *layers, void *out, void *scores) {
    att_tensor o = {out, c->spec->dtype, c->out_shape}, s = {scores, c->spec->dtype, c->scores_shape};
    if (c->spec->layer < 0) {
        att_dot_product_attention_args a = c->dpa;
        a.output = &o;
        return att_dot_product_attention(&a);
    }
    att_call_args a = c->args;
    a.output = &o;
    a.scores = c->spec->want_scores ? &s : NULL;
    return att_layer_call(layers[c->spec->layer], &a);
}

/* Whether the call wrote exactly case c's serial results (outputs poisoned first). */
static int run_matches(const call_case *c, att_layer *const *layers, unsigned char *out, unsigned char *scores) {
    memset(out, 0xA5, c->out_bytes);
    memset(scores, 0xA5, c->scores_bytes);
    if (run_case(c, layers, out, scores) != ATT_OK) return 0;
    return memcmp(out, c->want_out, c->out_bytes) == 0 &&
           (!c->spec->want_scores || memcmp(scores, c->want_scores, c->scores_bytes) == 0);
}

/* Random inputs for every case, and their serial results (with the default thread count). */
static void prepare_cases(void) {
    uint64_t rng = 2024;
    check(make_layers(g_layers) == 0, "creating and building the shared layers failed: %s", att_last_error());
    for (int i = 0; i < CASES; i++) {
        const call_spec *s = &SPECS[i];
        call_case *c = &g_cases[i];
        c->spec = s;
        c->q = random_tensor(s->dtype, s->q, &rng);
        c->v = random_tensor(s->dtype, s->v, &rng);
        c->k = random_tensor(s->dtype, s->k.rank ? s->k : s->v, &rng);
        c->qm = random_mask(drop_last(s->q), &rng);
        c->vm = random_mask(drop_last(s->v), &rng);
        c->km = random_mask(drop_last(s->v), &rng);
        c->am = random_mask(s->attention_mask, &rng);
        c->reuse = random_tensor(s->dtype, s->reuse, &rng);
        c->bias = random_tensor(s->dtype, s->bias, &rng);
        c->mask = random_mask(s->mask, &rng);
        if (s->layer < 0) {
            c->out_shape = s->q;
            c->out_shape.dims[3] = s->v.dims[3];
            c->dpa = (att_dot_product_attention_args){.struct_size = sizeof c->dpa, .query = &c->q, .key = &c->k,
                                                      .value = &c->v, .bias = s->bias.rank ? &c->bias : NULL,
                                                      .mask = s->mask.rank ? &c->mask : NULL,
                                                      .has_scale = s->scale != 0, .scale = s->scale,
                                                      .is_causal = s->causal};
        } else {
            att_call_args a = {.struct_size = sizeof a, .query = &c->q, .value = &c->v};
            a.key = s->k.rank ? &c->k : NULL;
            a.query_mask = s->query_mask ? &c->qm : NULL;
            a.value_mask = s->value_mask ? &c->vm : NULL;
            a.key_mask = s->key_mask ? &c->km : NULL;
            a.attention_mask = s->attention_mask.rank ? &c->am : NULL;
            a.reuse_attention_scores = s->reuse.rank ? &c->reuse : NULL;
            a.use_causal_mask = s->causal;
            a.training = s->training;
            a.dropout_seed = 0x5EED + (uint64_t)i;
            a.dropout_stream = (uint64_t)i << 33;
            c->args = a;
            expect(att_layer_output_shape(g_layers[s->layer], &s->q, &s->v, a.key ? &s->k : NULL, &c->out_shape,
                                          &c->scores_shape),
                   ATT_OK, "", s->name);
        }
        c->out_bytes = (size_t)numel(c->out_shape) * dtype_size(s->dtype);
        c->scores_bytes = s->want_scores ? (size_t)numel(c->scores_shape) * dtype_size(s->dtype) : 0;
        c->want_out = calloc(1, c->out_bytes);
        c->want_scores = calloc(1, c->scores_bytes + 1);
        if (c->out_bytes > g_max_out) g_max_out = c->out_bytes;
        if (c->scores_bytes > g_max_scores) g_max_scores = c->scores_bytes;
        expect(run_case(c, g_layers, c->want_out, c->want_scores), ATT_OK, "", s->name);
        att_tensor got = {c->want_out, s->dtype, c->out_shape};
        int finite = 1, nonzero = 0;
        for (int64_t j = 0; j < numel(c->out_shape); j++) {
            finite &= isfinite(tensor_at(&got, (size_t)j));
            nonzero |= tensor_at(&got, (size_t)j) != 0;
        }
        check(finite && nonzero, "%s: the serial output is not finite and nonzero", s->name);
    }
}

#endif /* ATT_TEST_CALL_CASES_H */
