/*
 * test_api.c — libattention's C API used as a C programmer would, against plain C reference
 * loops written from Keras's math (in double): version, status names, thread settings and the
 * per-thread error; Attention (dot and concat scores, use_scale, query/value masks, causal
 * from the call and from the config, scores) and AdditiveAttention (scale weight, masks,
 * causal), each in float32 and float64; weights in Keras order, their round trip and initial
 * values; dropout by the header's Philox rule, identical for 1 and 2 threads.
 * MultiHeadAttention and dot_product_attention are in test_mha.c, bad inputs in
 * test_bad_input.c. Prints `N passed, N failed`.
 */
#include "check.h"
#include "reference.h"

#include <threads.h>

static const att_dtype DTYPES[2] = {ATT_FLOAT32, ATT_FLOAT64};

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

/* Calls `layer` on p's inputs into out (and scores when o.want_scores). */
static att_status call_luong(const att_layer *layer, const luong_problem *p, call_opts o, att_tensor *out,
                             att_tensor *scores) {
    att_tensor qm = mask_tensor(p->qmask, SHAPE(p->B, p->Tq)), vm = mask_tensor(p->vmask, SHAPE(p->B, p->Tv));
    call_inputs in = {.dtype = p->dtype, .q = p->q, .k = p->k, .v = p->v, .q_shape = SHAPE(p->B, p->Tq, p->D),
                      .k_shape = SHAPE(p->B, p->Tv, p->D), .v_shape = SHAPE(p->B, p->Tv, p->Dv),
                      .query_mask = p->qmask ? &qm : NULL, .value_mask = p->vmask ? &vm : NULL, .seed = p->seed,
                      .stream = p->stream};
    return call_layer(layer, &in, o, out, scores);
}

/* Calls the layer and compares its output (and scores) with ref_luong. */
static void check_luong(const char *what, const att_layer *layer, const luong_problem *p, call_opts o) {
    call_result r = new_call_result(p->dtype, SHAPE(p->B, p->Tq, p->Dv), SHAPE(p->B, p->Tq, p->Tv));
    ref_luong(p, r.want_out, r.want_scores);
    check_call_result(what, call_luong(layer, p, o, &r.out, &r.scores), o, &r);
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
    att_attention_config concat = {.struct_size = sizeof concat, .dtype = dt, .use_scale = 1,
                                   .score_mode = ATT_SCORE_CONCAT};
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

    att_additive_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .seed = 42};
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

    cfg.no_scale = 1;
    expect(att_additive_attention_create(&cfg, &layer), ATT_OK, "", "create AdditiveAttention(no_scale)");
    expect(att_layer_build(layer, &qs, &vs, &ks), ATT_OK, "", "build AdditiveAttention(no_scale)");
    check_weight_list("AdditiveAttention(no_scale)", layer, 0, NULL, NULL);
    p.add_scale = NULL;
    p.causal = 0;
    check_luong("AdditiveAttention(no_scale), masks", layer, &p, (call_opts){1, 0, 0, 0});
    att_layer_destroy(layer);
    free(q), free(k), free(v), free(scale);
}

/* ---- dropout ------------------------------------------------------------------------------ */

/* Calls twice, with 1 and with 2 threads, checks both runs are bit-identical and match ref. */
static void dropout_attention(void) {
    enum { B = 4, Tq = 48, Tv = 80, D = 16 };
    uint64_t rng = 61;
    double *q = random_values(&rng, B * Tq * D, -1, 1, ATT_FLOAT32);
    double *v = random_values(&rng, B * Tv * D, -1, 1, ATT_FLOAT32);
    att_attention_config cfg = {.struct_size = sizeof cfg, .dtype = ATT_FLOAT32, .dropout = 0.25};
    att_layer *layer = NULL;
    att_shape qs = SHAPE(B, Tq, D), vs = SHAPE(B, Tv, D);
    expect(att_attention_create(&cfg, &layer), ATT_OK, "", "create Attention(dropout 0.25)");
    expect(att_layer_build(layer, &qs, &vs, NULL), ATT_OK, "", "build Attention(dropout)");
    luong_problem p = {.kind = SCORE_DOT, .dtype = ATT_FLOAT32, .B = B, .Tq = Tq, .Tv = Tv, .D = D, .Dv = D, .q = q,
                       .k = v, .v = v, .scale = 1, .rate = 0.25, .seed = 0x0123456789ABCDEFull,
                       .stream = 0x100000005ull};
    att_tensor out[2], scores[2];
    for (int run = 0; run < 2; run++) {
        expect(att_set_num_threads(run + 1), ATT_OK, "", "set_num_threads");
        out[run] = new_tensor(ATT_FLOAT32, SHAPE(B, Tq, D), NULL);
        scores[run] = new_tensor(ATT_FLOAT32, SHAPE(B, Tq, Tv), NULL);
        expect(call_luong(layer, &p, (call_opts){0, 1, 0, 1}, &out[run], &scores[run]), ATT_OK, "", "dropout call");
    }
    check(memcmp(out[0].data, out[1].data, B * Tq * D * 4) == 0,
          "Attention dropout output differs for 1 and 2 threads");
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
    att_additive_attention_config acfg = {.struct_size = sizeof acfg, .dtype = ATT_FLOAT64, .no_scale = 1,
                                          .dropout = 0.5};
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
                                        "ATT_ERR_INTERNAL", "ATT_ERR_BUSY", "ATT_ERR_IO"};
    for (int s = 0; s < 12; s++)
        check(strcmp(att_status_name((att_status)s), names[s]) == 0, "att_status_name(%d) is %s", s,
              att_status_name((att_status)s));
    check(strcmp(att_status_name((att_status)12), "unknown status") == 0, "att_status_name(12) is %s",
          att_status_name((att_status)12));
    check(strcmp(att_status_name((att_status)-1), "unknown status") == 0, "att_status_name(-1) is %s",
          att_status_name((att_status)-1));
    check(strcmp(att_last_error(), "") == 0, "att_last_error() before any failure is \"%s\"", att_last_error());
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    check(att_get_num_threads() == cpus, "default att_get_num_threads() is %d, online CPUs %ld",
          att_get_num_threads(), cpus);
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

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"version, statuses, threads, Philox", meta},
        {"Attention", attention_both},
        {"AdditiveAttention", additive_both},
        {"Attention dropout", dropout_attention},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
