/*
 * test_thread_sweep.c — results do not depend on the thread count: for every layer kind and
 * att_dot_product_attention, each result at att_set_num_threads(n) for n in SWEEP_COUNTS
 * (1 ... 256, far beyond the cores of the machine) is bit for bit (memcmp) the 1-thread one.
 *   Results: the forward output (fused call, no scores), the output and scores of a call
 *   that returns them, and att_layer_backward's output, scores and every gradient (query,
 *   value, key, reuse_attention_scores, each weight).
 *   Configs: Attention dot (use_scale, causal, masks, dropout) and concat (float32 at
 *   (4,300,96)×(4,257,96), and float64); AdditiveAttention at (4,300,96)×(4,257,96);
 *   MultiHeadAttention self-attention (value = the query tensor itself, which the layers
 *   project in one product) on (8,128,64) with 8 heads × 16, BERT-base (4,256,768) with
 *   12 heads × 64 and (2,128,192) with 12 heads × 64; an odd shape (97 query rows, 61 key
 *   rows, 13-wide heads, gate, attention_mask, dropout) and rank-4 inputs attending over
 *   axes 1 and 2; GroupQueryAttention 12 query / 4 key-value heads × 64, self-attention on
 *   (4,256,768); ReuseMultiHeadAttention with partial reuse and relative position
 *   embeddings; att_dot_product_attention grouped with bias and mask, and float64 with a
 *   scale.
 * One test group (process) per config, so a crash at some thread count is reported (with
 * that count) as a failure of its config and the other configs still run.
 * Seconds in all: BERT-base, the largest config, takes about 0.35 s per thread count here
 * (2 cores) and 0.9 s under `make test-sanitize`'s ASan. Prints a summary line, then
 * `N passed, N failed`.
 */
#include "check.h"

#include <time.h>

static const int32_t SWEEP_COUNTS[] = {1, 2, 3, 5, 6, 8, 12, 16, 32, 64, 256};
enum {
    COUNTS = sizeof SWEEP_COUNTS / sizeof SWEEP_COUNTS[0],
    MAX_WEIGHTS = 16,
    MAX_RESULTS = 8 + MAX_WEIGHTS
};

typedef enum { ATTENTION, ADDITIVE, MHA, GQA, REUSE, DOT_PRODUCT } layer_kind;

/* One config: the layer (struct_size and dtype are filled in at creation), the inputs'
 * shapes (k rank 0: no key), which masks (random, about 30% zeros) and flags. */
typedef struct {
    const char *name;
    layer_kind kind;
    att_dtype dtype;
    union {
        att_attention_config attention;
        att_additive_attention_config additive;
        att_multi_head_attention_config mha;
        att_group_query_attention_config gqa;
        att_reuse_multi_head_attention_config reuse;
    } config;
    att_shape q, k, v;
    int query_mask, value_mask, key_mask;       /* shaped as query / value without the last dim */
    att_shape attention_mask, reuse, bias, mask; /* rank 0: none (bias, mask: dot_product_attention) */
    int self_attention;                          /* the value is the query tensor itself */
    int causal, training, want_scores;
    double scale;                                /* dot_product_attention: 0 for 1/sqrt(H) */
} sweep_config;

#define ATTN(...) .kind = ATTENTION, .config.attention = {__VA_ARGS__}
#define ADDITIVE_(...) .kind = ADDITIVE, .config.additive = {__VA_ARGS__}
#define MHA_(...) .kind = MHA, .config.mha = {__VA_ARGS__}
#define GQA_(...) .kind = GQA, .config.gqa = {__VA_ARGS__}
#define REUSE_(...) .kind = REUSE, .config.reuse = {__VA_ARGS__}

static const sweep_config CONFIGS[] = {
    {.name = "Attention dot, use_scale, causal, key, masks, dropout, scores", .dtype = ATT_FLOAT32,
     ATTN(.use_scale = 1, .dropout = 0.1), .q = SH(3, 3, 150, 64), .k = SH(3, 3, 130, 64), .v = SH(3, 3, 130, 48),
     .query_mask = 1, .value_mask = 1, .causal = 1, .training = 1, .want_scores = 1},
    {.name = "Attention concat, use_scale, value_mask, scores, (4,300,96)x(4,257,96)", .dtype = ATT_FLOAT32,
     ATTN(.use_scale = 1, .score_mode = ATT_SCORE_CONCAT), .q = SH(3, 4, 300, 96), .v = SH(3, 4, 257, 96),
     .value_mask = 1, .want_scores = 1},
    {.name = "Attention concat float64, causal config, key, masks, scores", .dtype = ATT_FLOAT64,
     ATTN(.use_scale = 1, .score_mode = ATT_SCORE_CONCAT, .causal = 1), .q = SH(3, 2, 61, 24),
     .k = SH(3, 2, 47, 24), .v = SH(3, 2, 47, 24), .query_mask = 1, .value_mask = 1, .want_scores = 1},
    {.name = "AdditiveAttention, use_scale, key, value_mask, scores, (4,300,96)x(4,257,96)", .dtype = ATT_FLOAT32,
     ADDITIVE_(.seed = 3), .q = SH(3, 4, 300, 96), .k = SH(3, 4, 257, 96), .v = SH(3, 4, 257, 96),
     .value_mask = 1, .want_scores = 1},
    {.name = "MultiHeadAttention self-attention (8,128,64), 8 heads x 16, scores", .dtype = ATT_FLOAT32,
     MHA_(.num_heads = 8, .key_dim = 16, .seed = 4), .q = SH(3, 8, 128, 64), .v = SH(3, 8, 128, 64),
     .self_attention = 1, .want_scores = 1},
    {.name = "MultiHeadAttention BERT-base self-attention (4,256,768), 12 heads x 64, scores", .dtype = ATT_FLOAT32,
     MHA_(.num_heads = 12, .key_dim = 64, .seed = 5), .q = SH(3, 4, 256, 768),
     .v = SH(3, 4, 256, 768), .self_attention = 1, .want_scores = 1},
    {.name = "MultiHeadAttention self-attention (2,128,192), 12 heads x 64, scores", .dtype = ATT_FLOAT32,
     MHA_(.num_heads = 12, .key_dim = 64, .seed = 10), .q = SH(3, 2, 128, 192),
     .v = SH(3, 2, 128, 192), .self_attention = 1, .want_scores = 1},
    {.name = "MultiHeadAttention odd: 97 query rows, 61 key rows, 5 heads x 13, gate, key, attention_mask, "
             "dropout, scores",
     .dtype = ATT_FLOAT32,
     MHA_(.num_heads = 5, .key_dim = 13, .value_dim = 11, .dropout = 0.1, .use_gate = 1, .seed = 6),
     .q = SH(3, 3, 97, 40), .k = SH(3, 3, 61, 36), .v = SH(3, 3, 61, 52), .attention_mask = SH(3, 3, 97, 61),
     .training = 1, .want_scores = 1},
    {.name = "MultiHeadAttention rank 4, attention_axes (1, 2), key, scores", .dtype = ATT_FLOAT32,
     MHA_(.num_heads = 4, .key_dim = 8, .num_attention_axes = 2, .attention_axes = {1, 2}, .seed = 7),
     .q = SH(4, 2, 12, 20, 32), .k = SH(4, 2, 9, 15, 24), .v = SH(4, 2, 9, 15, 32), .want_scores = 1},
    {.name = "GroupQueryAttention 12 query / 4 kv heads x 64, self-attention (4,256,768), causal, scores",
     .dtype = ATT_FLOAT32,
     GQA_(.head_dim = 64, .num_query_heads = 12, .num_key_value_heads = 4, .seed = 8),
     .q = SH(3, 4, 256, 768), .v = SH(3, 4, 256, 768), .self_attention = 1, .causal = 1, .want_scores = 1},
    {.name = "ReuseMultiHeadAttention 2 of 6 heads reused, relative pe, attention_mask, scores", .dtype = ATT_FLOAT32,
     REUSE_(.num_heads = 6, .key_dim = 16, .reuse_attention = 2, .use_relative_pe = 1, .pe_max_seq_length = 64,
            .seed = 9),
     .q = SH(3, 3, 80, 96), .v = SH(3, 3, 80, 96), .attention_mask = SH(3, 3, 80, 80), .reuse = SH(4, 3, 2, 80, 80),
     .want_scores = 1},
    {.name = "dot_product_attention grouped 8/2 heads, bias, mask, causal", .kind = DOT_PRODUCT,
     .dtype = ATT_FLOAT32, .q = SH(4, 2, 200, 8, 32), .k = SH(4, 2, 170, 2, 32), .v = SH(4, 2, 170, 2, 24),
     .bias = SH(3, 8, 200, 170), .mask = SH(2, 200, 170), .causal = 1},
    {.name = "dot_product_attention float64, scale", .kind = DOT_PRODUCT, .dtype = ATT_FLOAT64,
     .q = SH(4, 2, 90, 4, 16), .k = SH(4, 2, 70, 4, 16), .v = SH(4, 2, 70, 4, 16), .scale = 0.3},
};
enum { CONFIG_COUNT = sizeof CONFIGS / sizeof CONFIGS[0] };

/* ---- what a crash or a timeout was doing ---------------------------------------------------- */

static char g_doing[256];

/* Prints "FAIL group: <signal> while <g_doing>" and dies of the signal as before, so the
 * parent still counts the group as crashed. Only async-signal-safe calls. */
static void report_crash(int sig) {
    char line[512];
    const char *what = sig == SIGALRM ? "timeout" : sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                       : sig == SIGILL ? "SIGILL (a Swift trap)" : sig == SIGTRAP ? "SIGTRAP (a Swift trap)"
                       : sig == SIGABRT ? "SIGABRT" : "SIGFPE";
    size_t n = 0;
    for (const char *parts[] = {"FAIL ", g_group, ": ", what, " while ", g_doing, "\n", NULL}, **p = parts; *p; p++)
        for (const char *c = *p; *c && n < sizeof line; c++) line[n++] = *c;
    ssize_t ignored = write(STDOUT_FILENO, line, n);
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void doing(const char *what, int32_t threads) {
    snprintf(g_doing, sizeof g_doing, "%s at %d threads", what, (int)threads);
}

/* ---- one config's tensors and results ------------------------------------------------------- */

/* Everything a config's run reads, and where it writes its results. */
typedef struct {
    const sweep_config *c;
    att_layer *layer;
    att_tensor q, k, v, qm, vm, km, am, reuse, bias, mask, d_out, d_scores;
    att_shape out_shape, scores_shape;
    size_t weights;
    att_tensor results[MAX_RESULTS]; /* in the order sweep_once writes them; the weight */
    const char *names[MAX_RESULTS];  /* gradients last, contiguous (weight_gradients) */
    int count;
} sweep_run;

/* Weights of a scale that keeps softmax away from saturation (where differences in the last
 * bits would hide): kernels uniform in ±1/√fan_in, embeddings in ±1, biases and scales in
 * [0.25, 1.25). */
static void load_weights(sweep_run *r, uint64_t *rng) {
    for (size_t i = 0; i < r->weights; i++) {
        att_shape s = {0};
        const char *name = "";
        att_layer_weight_info(r->layer, i, &s, &name);
        double fan_in = s.rank < 2 ? 0 : strncmp(name, "attention_output", 16) == 0 ? (double)(s.dims[0] * s.dims[1])
                                        : strstr(name, "embeddings") ? 1
                                                                     : (double)s.dims[0];
        double hi = fan_in > 0 ? 1 / sqrt(fan_in) : 1.25, lo = fan_in > 0 ? -hi : 0.25;
        double *x = random_values(rng, (size_t)numel(s), lo, hi, r->c->dtype);
        att_tensor t = new_tensor(r->c->dtype, s, x);
        expect(att_layer_set_weight(r->layer, i, &t), ATT_OK, "", name);
        free(x);
        free(t.data);
    }
}

/* Creates and builds the layer of config c (NULL for dot_product_attention); a failure is
 * counted and gives NULL. */
static att_layer *create_layer(const sweep_config *c) {
    att_layer *layer = NULL;
    att_status st = ATT_OK;
    switch (c->kind) {
    case ATTENTION: {
        att_attention_config cfg = c->config.attention;
        cfg.struct_size = sizeof cfg, cfg.dtype = c->dtype;
        st = att_attention_create(&cfg, &layer);
        break;
    }
    case ADDITIVE: {
        att_additive_attention_config cfg = c->config.additive;
        cfg.struct_size = sizeof cfg, cfg.dtype = c->dtype;
        st = att_additive_attention_create(&cfg, &layer);
        break;
    }
    case MHA: {
        att_multi_head_attention_config cfg = c->config.mha;
        cfg.struct_size = sizeof cfg, cfg.dtype = c->dtype;
        st = att_multi_head_attention_create(&cfg, &layer);
        break;
    }
    case GQA: {
        att_group_query_attention_config cfg = c->config.gqa;
        cfg.struct_size = sizeof cfg, cfg.dtype = c->dtype;
        st = att_group_query_attention_create(&cfg, &layer);
        break;
    }
    case REUSE: {
        att_reuse_multi_head_attention_config cfg = c->config.reuse;
        cfg.struct_size = sizeof cfg, cfg.dtype = c->dtype;
        st = att_reuse_multi_head_attention_create(&cfg, &layer);
        break;
    }
    case DOT_PRODUCT:
        return NULL;
    }
    expect(st, ATT_OK, "", "create");
    if (st != ATT_OK) return NULL;
    st = att_layer_build(layer, &c->q, &c->v, c->k.rank ? &c->k : NULL);
    expect(st, ATT_OK, "", "build");
    if (st != ATT_OK) {
        att_layer_destroy(layer);
        return NULL;
    }
    return layer;
}

/* Adds a result tensor of `shape` (zeros) named `name`; returns it. */
static att_tensor *add_result(sweep_run *r, const char *name, att_shape shape) {
    r->names[r->count] = name;
    r->results[r->count] = new_tensor(r->c->dtype, shape, NULL);
    return &r->results[r->count++];
}

/* The call's arguments (output and scores left NULL). */
static att_call_args call_args(const sweep_run *r) {
    const sweep_config *c = r->c;
    att_call_args a = {.struct_size = sizeof a, .query = &r->q, .value = &r->v};
    a.value = c->self_attention ? &r->q : &r->v;
    a.key = c->k.rank ? &r->k : NULL;
    a.query_mask = c->query_mask ? &r->qm : NULL;
    a.value_mask = c->value_mask ? &r->vm : NULL;
    a.key_mask = c->key_mask ? &r->km : NULL;
    a.attention_mask = c->attention_mask.rank ? &r->am : NULL;
    a.reuse_attention_scores = c->reuse.rank ? &r->reuse : NULL;
    a.use_causal_mask = c->causal;
    a.training = c->training;
    a.dropout_seed = 0x5EED;
    a.dropout_stream = 7;
    return a;
}

/* Sets up config c: inputs, layer with its weights, and the result tensors (every result
 * the config has, in a fixed order). Returns 0 when setting up failed (counted). */
static int sweep_setup(sweep_run *r, const sweep_config *c) {
    memset(r, 0, sizeof *r);
    r->c = c;
    uint64_t rng = 0x7357 + (uint64_t)(c - CONFIGS);
    att_dtype dt = c->dtype;
    r->q = random_tensor(dt, c->q, &rng);
    r->k = random_tensor(dt, c->k.rank ? c->k : c->v, &rng);
    r->v = random_tensor(dt, c->v, &rng);
    r->qm = random_mask(drop_last(c->q), &rng);
    r->vm = random_mask(drop_last(c->v), &rng);
    r->km = random_mask(drop_last(c->v), &rng);
    r->am = random_mask(c->attention_mask, &rng);
    r->bias = random_tensor(dt, c->bias, &rng);
    r->mask = random_mask(c->mask, &rng);
    {
        double *x = random_values(&rng, (size_t)numel(c->reuse), 0, 1, dt);
        r->reuse = new_tensor(dt, c->reuse, x);
        free(x);
    }
    if (c->kind == DOT_PRODUCT) {
        r->out_shape = c->q;
        r->out_shape.dims[3] = c->v.dims[3];
        add_result(r, "output", r->out_shape);
        return 1;
    }
    r->layer = create_layer(c);
    if (!r->layer) return 0;
    att_layer_weight_count(r->layer, &r->weights);
    if (!check(r->weights <= MAX_WEIGHTS, "%zu weights, more than MAX_WEIGHTS", r->weights)) return 0;
    load_weights(r, &rng);
    att_status st = att_layer_output_shape(r->layer, &c->q, &c->v, c->k.rank ? &c->k : NULL,
                                           &r->out_shape, &r->scores_shape);
    expect(st, ATT_OK, "", "output_shape");
    if (st != ATT_OK) return 0;
    r->d_out = random_tensor(dt, r->out_shape, &rng);
    r->d_scores = random_tensor(dt, c->want_scores ? r->scores_shape : (att_shape){0}, &rng);
    add_result(r, "forward output", r->out_shape);
    if (c->want_scores) {
        add_result(r, "forward output (with scores)", r->out_shape);
        add_result(r, "forward scores", r->scores_shape);
    }
    add_result(r, "backward output", r->out_shape);
    if (c->want_scores) add_result(r, "backward scores", r->scores_shape);
    add_result(r, "query gradient", c->q);
    add_result(r, "value gradient", c->v);
    if (c->k.rank) add_result(r, "key gradient", c->k);
    if (c->reuse.rank) add_result(r, "reuse_attention_scores gradient", c->reuse);
    for (size_t i = 0; i < r->weights; i++) {
        att_shape s = {0};
        const char *name = "";
        att_layer_weight_info(r->layer, i, &s, &name);
        add_result(r, name, s);
    }
    return 1;
}

/* Runs the config once at the current thread count into r->results (poisoned first, so a
 * result that is not written cannot match). Returns 0 if a call failed (counted). */
static int sweep_once(sweep_run *r, int32_t threads) {
    for (int i = 0; i < r->count; i++)
        memset(r->results[i].data, 0xA5, (size_t)numel(r->results[i].shape) * dtype_size(r->c->dtype));
    const sweep_config *c = r->c;
    att_tensor *res = NULL;
    char label[64];
    snprintf(label, sizeof label, "at %d threads", (int)threads);
    if (c->kind == DOT_PRODUCT) {
        doing("dot_product_attention", threads);
        att_dot_product_attention_args a = {.struct_size = sizeof a, .query = &r->q, .key = &r->k, .value = &r->v,
                                            .bias = c->bias.rank ? &r->bias : NULL,
                                            .mask = c->mask.rank ? &r->mask : NULL, .has_scale = c->scale != 0,
                                            .scale = c->scale, .is_causal = c->causal, .output = &r->results[0]};
        att_status st = att_dot_product_attention(&a);
        expect(st, ATT_OK, "", label);
        return st == ATT_OK;
    }
    res = &r->results[0];
    att_call_args a = call_args(r);
    a.output = res++;
    doing("the forward call", threads);
    att_status st = att_layer_call(r->layer, &a);
    expect(st, ATT_OK, "", label);
    if (c->want_scores) {
        a.output = res++;
        a.scores = res++;
        doing("the forward call with scores", threads);
        att_status st2 = att_layer_call(r->layer, &a);
        expect(st2, ATT_OK, "", label);
        st = st ? st : st2;
    }
    a.output = res++;
    a.scores = c->want_scores ? res++ : NULL;
    att_gradient_args g = {.struct_size = sizeof g, .output_gradient = &r->d_out};
    g.scores_gradient = c->want_scores ? &r->d_scores : NULL;
    g.query_gradient = res++;
    g.value_gradient = res++;
    g.key_gradient = c->k.rank ? res++ : NULL;
    g.reuse_attention_scores_gradient = c->reuse.rank ? res++ : NULL;
    g.weight_gradients = res;
    doing("the backward", threads);
    att_status st3 = att_layer_backward(r->layer, &a, &g);
    expect(st3, ATT_OK, "", label);
    return st == ATT_OK && st3 == ATT_OK;
}

/* Copies the results (the reference of later runs); caller frees each .data. */
static void copy_results(const sweep_run *r, att_tensor *copies) {
    for (int i = 0; i < r->count; i++) {
        const att_tensor *t = &r->results[i];
        size_t bytes = (size_t)numel(t->shape) * dtype_size(t->dtype);
        copies[i] = *t;
        copies[i].data = malloc(bytes ? bytes : 1);
        memcpy(copies[i].data, t->data, bytes);
    }
}

/* Checks that result `got` is bit for bit `want`; when not, says in how many elements it
 * differs and by how much at most, relative to the largest |want|. */
static void check_identical(const char *what, int32_t threads, const att_tensor *got,
                            const att_tensor *want) {
    size_t n = (size_t)numel(want->shape);
    if (memcmp(got->data, want->data, n * dtype_size(want->dtype)) == 0) {
        g_passed++;
        return;
    }
    size_t differ = 0;
    double largest = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double g = tensor_at(got, i), w = tensor_at(want, i);
        if (isfinite(w) && fabs(w) > largest) largest = fabs(w);
        if (memcmp((const char *)got->data + i * dtype_size(got->dtype),
                   (const char *)want->data + i * dtype_size(want->dtype), dtype_size(want->dtype)) != 0) {
            differ++;
            double d = isnan(g) != isnan(w) ? INFINITY : fabs(g - w);
            if (d > worst || isnan(d)) worst = d;
        }
    }
    check(0, "%s at %d threads differs from 1 thread in %zu of %zu elements (max |diff| %.3g, %.3g relative)", what, (int)threads, differ, n, worst, largest > 0 ? worst / largest : worst);
}

static void sweep_free(sweep_run *r) {
    att_tensor *all[] = {&r->q, &r->k, &r->v, &r->qm, &r->vm, &r->km, &r->am, &r->reuse, &r->bias, &r->mask,
                         &r->d_out, &r->d_scores};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->data);
    for (int i = 0; i < r->count; i++) free(r->results[i].data);
    if (r->layer) expect(att_layer_destroy(r->layer), ATT_OK, "", "destroy");
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The group of config `index`: its results at every count of SWEEP_COUNTS against those at
 * 1 thread. */
static void sweep_config_at(int index) {
    static const int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGALRM};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) signal(signals[i], report_crash);
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines out before a crash */
    const sweep_config *c = &CONFIGS[index];
    sweep_run r;
    double start = seconds();
    if (!sweep_setup(&r, c)) {
        sweep_free(&r);
        return;
    }
    att_tensor want[MAX_RESULTS];
    if (!check(SWEEP_COUNTS[0] == 1 && att_set_num_threads(1) == ATT_OK, "%s: att_set_num_threads(1)", c->name) ||
        !sweep_once(&r, 1)) {
        sweep_free(&r);
        return;
    }
    copy_results(&r, want);
    int nonzero = 0;
    for (int64_t j = 0; j < numel(want[0].shape); j++) nonzero |= tensor_at(&want[0], (size_t)j) != 0;
    check(nonzero, "%s: the 1-thread output is all zeros", c->name);
    for (int n = 1; n < COUNTS; n++) {
        int32_t threads = SWEEP_COUNTS[n];
        expect(att_set_num_threads(threads), ATT_OK, "", "att_set_num_threads");
        if (!sweep_once(&r, threads)) continue;
        for (int i = 0; i < r.count; i++) check_identical(r.names[i], threads, &r.results[i], &want[i]);
    }
    printf("  %s: %d results x %d thread counts in %.2f s\n", c->name, r.count, COUNTS, seconds() - start);
    for (int i = 0; i < r.count; i++) free(want[i].data);
    sweep_free(&r);
}

/* The group: the config named by g_group (run_groups names each group after its config). */
static void sweep_group(void) {
    for (int i = 0; i < CONFIG_COUNT; i++)
        if (strcmp(g_group, CONFIGS[i].name) == 0) {
            sweep_config_at(i);
            return;
        }
    check(0, "no config named %s", g_group);
}

static void summary(void) {
    if (g_failed == 0)
        printf("sweep: %d layer configs x %d thread counts (1 ... %d), all bit-identical\n", CONFIG_COUNT, COUNTS,
               (int)SWEEP_COUNTS[COUNTS - 1]);
    else
        printf("sweep: %d layer configs x %d thread counts (1 ... %d): %d failures (above)\n", CONFIG_COUNT, COUNTS,
               (int)SWEEP_COUNTS[COUNTS - 1], g_failed);
}

int main(int argc, char **argv) {
    test_group groups[CONFIG_COUNT];
    for (int i = 0; i < CONFIG_COUNT; i++) groups[i] = (test_group){CONFIGS[i].name, sweep_group};
    return run_groups_then(argc, argv, groups, CONFIG_COUNT, summary);
}
