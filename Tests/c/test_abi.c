/*
 * test_abi.c — the ABI's promises to programs built against another version of the header:
 * the version macros and att_version_number(); every versioned struct accepted at each size
 * from its first published size (0.1.0) to its current sizeof, read no further than its
 * struct_size (the struct ends where an inaccessible page begins), and refused at any other
 * size; renamed fields kept their 0.1.0 offsets; zero-filled configs give Keras's defaults;
 * every size_t argument is unsigned (SIZE_MAX never reads as -1); outputs that overlap
 * another tensor of the call are refused; a wrong attention_mask's message names the shape
 * to pass.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "check.h"

#include <stddef.h>
#include <sys/mman.h>

/* The struct sizes of attention.h 0.1.0 (commit 73bccfb, LP64), written out here rather than
 * read from the library's table, so that a change of that table is caught. */
enum {
    FIRST_ATTENTION_CONFIG = 40,
    FIRST_ADDITIVE_CONFIG = 32,
    FIRST_MHA_CONFIG = 416,
    FIRST_GQA_CONFIG = 280,
    FIRST_REUSE_CONFIG = 424,
    FIRST_CALL_ARGS = 112,
    FIRST_GRADIENT_ARGS = 72,
    FIRST_DPA_ARGS = 80,
};

/* ---- version ------------------------------------------------------------------------------ */

static void version(void) {
    check(ATT_VERSION_NUMBER == ATT_VERSION_MAJOR * 1000000 + ATT_VERSION_MINOR * 1000 + ATT_VERSION_PATCH,
          "ATT_VERSION_NUMBER is %d", ATT_VERSION_NUMBER);
#if ATT_VERSION_NUMBER < 2000
    check(0, "ATT_VERSION_NUMBER %d is older than 0.2.0, which introduced it", ATT_VERSION_NUMBER);
#endif
    check(att_version_number() == ATT_VERSION_NUMBER, "att_version_number() is %d, the header's %d",
          (int)att_version_number(), ATT_VERSION_NUMBER);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ATT_VERSION_MAJOR, ATT_VERSION_MINOR, ATT_VERSION_PATCH);
    check(strcmp(att_version(), want) == 0, "att_version() is %s, want %s", att_version(), want);
}

/* ---- the fixture: a built MultiHeadAttention (float64) and its tensors -------------------- */

enum { B = 2, T = 5, S = 7, D = 4, HEADS = 2, KEY_DIM = 3 };

static att_layer *g_mha;
static att_tensor g_q, g_v, g_out, g_scores, g_dout, g_dq;
static att_tensor g_weight_grads[8];
static size_t g_weight_count;

static void fixture(void) {
    uint64_t rng = 11;
    att_multi_head_attention_config c = {.struct_size = sizeof c, .dtype = ATT_FLOAT64, .num_heads = HEADS,
                                         .key_dim = KEY_DIM, .seed = 5};
    c.kernel_regularizer = (att_regularizer){ATT_REG_L2, 0, 0.01};
    expect(att_multi_head_attention_create(&c, &g_mha), ATT_OK, "", "create the fixture's MHA");
    att_shape qs = SHAPE(B, T, D), vs = SHAPE(B, S, D), scores = SHAPE(B, HEADS, T, S);
    expect(att_layer_build(g_mha, &qs, &vs, NULL), ATT_OK, "", "build the fixture's MHA");
    g_q = random_tensor(ATT_FLOAT64, qs, &rng);
    g_v = random_tensor(ATT_FLOAT64, vs, &rng);
    g_out = new_tensor(ATT_FLOAT64, qs, NULL);
    g_scores = new_tensor(ATT_FLOAT64, scores, NULL);
    g_dout = random_tensor(ATT_FLOAT64, qs, &rng);
    g_dq = new_tensor(ATT_FLOAT64, qs, NULL);
    att_layer_weight_count(g_mha, &g_weight_count);
    for (size_t i = 0; i < g_weight_count && i < 8; i++) {
        att_shape s = {0};
        att_layer_weight_info(g_mha, i, &s, NULL);
        g_weight_grads[i] = new_tensor(ATT_FLOAT64, s, NULL);
    }
}

static att_call_args call_args(void) {
    att_call_args a = {.struct_size = sizeof a, .query = &g_q, .value = &g_v, .output = &g_out, .scores = &g_scores};
    return a;
}

static att_gradient_args gradient_args(void) {
    att_gradient_args g = {.struct_size = sizeof g, .output_gradient = &g_dout, .query_gradient = &g_dq,
                           .weight_gradients = g_weight_grads};
    return g;
}

/* ---- struct sizes --------------------------------------------------------------------------- */

/* The versioned structs, by the API call that takes each. */
enum which {
    W_ATTENTION, W_ADDITIVE, W_MHA, W_GQA, W_REUSE, W_CALL, W_GRADIENT, W_DPA, W_COUNT
};

static const struct {
    const char *name;
    size_t first, current;
} VERSIONED[W_COUNT] = {
    {"att_attention_config", FIRST_ATTENTION_CONFIG, sizeof(att_attention_config)},
    {"att_additive_attention_config", FIRST_ADDITIVE_CONFIG, sizeof(att_additive_attention_config)},
    {"att_multi_head_attention_config", FIRST_MHA_CONFIG, sizeof(att_multi_head_attention_config)},
    {"att_group_query_attention_config", FIRST_GQA_CONFIG, sizeof(att_group_query_attention_config)},
    {"att_reuse_multi_head_attention_config", FIRST_REUSE_CONFIG, sizeof(att_reuse_multi_head_attention_config)},
    {"att_call_args", FIRST_CALL_ARGS, sizeof(att_call_args)},
    {"att_gradient_args", FIRST_GRADIENT_ARGS, sizeof(att_gradient_args)},
    {"att_dot_product_attention_args", FIRST_DPA_ARGS, sizeof(att_dot_product_attention_args)},
};

/* Room for any of the structs, and more. */
typedef union {
    att_attention_config attention;
    att_additive_attention_config additive;
    att_multi_head_attention_config mha;
    att_group_query_attention_config gqa;
    att_reuse_multi_head_attention_config reuse;
    att_call_args call;
    att_gradient_args gradient;
    att_dot_product_attention_args dpa;
    unsigned char bytes[1024];
} any_struct;

/* DPA inputs (B, T, N, H) = (1, 3, 2, 4), shared by the DPA cases. */
static double g_dq4[24], g_dk4[24], g_dout4[24];
static att_tensor g_dpa_q = {g_dq4, ATT_FLOAT64, {4, {1, 3, 2, 4}}}, g_dpa_k = {g_dk4, ATT_FLOAT64, {4, {1, 3, 2, 4}}},
                  g_dpa_out = {g_dout4, ATT_FLOAT64, {4, {1, 3, 2, 4}}};

/* A valid full-size struct of kind `w` (struct_size = its sizeof). */
static any_struct valid_struct(enum which w) {
    any_struct s;
    memset(&s, 0, sizeof s);
    switch (w) {
    case W_ATTENTION: s.attention.struct_size = sizeof s.attention; break;
    case W_ADDITIVE: s.additive.struct_size = sizeof s.additive; break;
    case W_MHA: s.mha = (att_multi_head_attention_config){.struct_size = sizeof s.mha, .num_heads = 2, .key_dim = 3}; break;
    case W_GQA:
        s.gqa = (att_group_query_attention_config){.struct_size = sizeof s.gqa, .head_dim = 2, .num_query_heads = 2,
                                                   .num_key_value_heads = 1};
        break;
    case W_REUSE: s.reuse = (att_reuse_multi_head_attention_config){.struct_size = sizeof s.reuse, .num_heads = 2, .key_dim = 3}; break;
    case W_CALL: s.call = call_args(); break;
    case W_GRADIENT: s.gradient = gradient_args(); break;
    default:
        s.dpa = (att_dot_product_attention_args){.struct_size = sizeof s.dpa, .query = &g_dpa_q, .key = &g_dpa_k,
                                                 .value = &g_dpa_k, .output = &g_dpa_out};
    }
    return s;
}

/* The API call that takes a struct of kind `w` at `p` (a created layer is destroyed). */
static att_status use(enum which w, const void *p) {
    att_layer *layer = NULL;
    att_status st;
    switch (w) {
    case W_ATTENTION: st = att_attention_create(p, &layer); break;
    case W_ADDITIVE: st = att_additive_attention_create(p, &layer); break;
    case W_MHA: st = att_multi_head_attention_create(p, &layer); break;
    case W_GQA: st = att_group_query_attention_create(p, &layer); break;
    case W_REUSE: st = att_reuse_multi_head_attention_create(p, &layer); break;
    case W_CALL: st = att_layer_call(g_mha, p); break;
    case W_GRADIENT: {
        att_call_args a = call_args();
        st = att_layer_backward(g_mha, &a, p);
        break;
    }
    default: st = att_dot_product_attention(p);
    }
    if (layer) att_layer_destroy(layer);
    return st;
}

/* The first `size` bytes of `s`, placed to end where an inaccessible page begins: a read of
 * one byte past them faults. `*mapping` receives the pages to unmap. */
static void *guarded_copy(const any_struct *s, size_t size, void **mapping) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *base = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + page, page, PROT_NONE) != 0) {
        perror("mmap");
        exit(2);
    }
    *mapping = base;
    unsigned char *p = base + page - size;
    memcpy(p, s, size);
    return p;
}

/* Every size from the first published one to sizeof is accepted, and read no further. */
static void accepted_sizes(void) {
    fixture();
    for (int w = 0; w < W_COUNT; w++) {
        check(VERSIONED[w].first <= VERSIONED[w].current, "%s: first published size %zu > sizeof %zu",
              VERSIONED[w].name, VERSIONED[w].first, VERSIONED[w].current);
        for (size_t size = VERSIONED[w].first; size <= VERSIONED[w].current; size += 8) {
            any_struct s = valid_struct((enum which)w);
            *(size_t *)&s = size;
            void *mapping;
            const void *p = guarded_copy(&s, size, &mapping);
            char what[128];
            snprintf(what, sizeof what, "%s of %zu bytes, ending at an inaccessible page", VERSIONED[w].name, size);
            expect(use((enum which)w, p), ATT_OK, "", what);
            munmap(mapping, 2 * (size_t)sysconf(_SC_PAGESIZE));
        }
    }
}

/* Sizes outside [first, sizeof] are refused, and the message names the accepted sizes. */
static void refused_sizes(void) {
    fixture();
    for (int w = 0; w < W_COUNT; w++) {
        const size_t sizes[] = {0, 1, 8, VERSIONED[w].first - 1, VERSIONED[w].current + 1, VERSIONED[w].current + 8,
                                (size_t)1 << 63, SIZE_MAX};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            any_struct s = valid_struct((enum which)w);
            *(size_t *)&s = sizes[i];
            char what[128], about[64];
            snprintf(what, sizeof what, "%s with struct_size %zu", VERSIONED[w].name, sizes[i]);
            snprintf(about, sizeof about, "accepts %zu", VERSIONED[w].first);
            expect(use((enum which)w, &s), ATT_ERR_STRUCT_SIZE, about, what);
        }
    }
}

/* 0.2.0 renamed use_bias / use_scale to no_bias / no_scale in place: same offsets as 0.1.0. */
static void layout(void) {
    check(offsetof(att_additive_attention_config, no_scale) == 12, "no_scale moved");
    check(offsetof(att_multi_head_attention_config, no_bias) == 48, "MHA no_bias moved");
    check(offsetof(att_group_query_attention_config, no_bias) == 48, "GQA no_bias moved");
    check(offsetof(att_reuse_multi_head_attention_config, no_bias) == 72, "Reuse no_bias moved");
    check(offsetof(att_call_args, reuse_attention_scores) == 104, "att_call_args' last 0.1.0 field moved");
    check(offsetof(att_gradient_args, include_regularization) == 64, "att_gradient_args' last 0.1.0 field moved");
}

/* ---- zero is Keras's default ----------------------------------------------------------------- */

/* Creates with `config` (via `w`), builds for (2, 5, 4) x (2, 7, 4) and checks the weight count
 * and whether weight `probe` is named `name`. */
static void check_defaults(enum which w, const void *config, size_t count, size_t probe, const char *name,
                           const char *what) {
    att_layer *layer = NULL;
    att_status st;
    switch (w) {
    case W_ATTENTION: st = att_attention_create(config, &layer); break;
    case W_ADDITIVE: st = att_additive_attention_create(config, &layer); break;
    case W_MHA: st = att_multi_head_attention_create(config, &layer); break;
    case W_GQA: st = att_group_query_attention_create(config, &layer); break;
    default: st = att_reuse_multi_head_attention_create(config, &layer);
    }
    expect(st, ATT_OK, "", what);
    att_shape qs = SHAPE(B, T, D), vs = SHAPE(B, S, D);
    expect(att_layer_build(layer, &qs, &vs, NULL), ATT_OK, "", what);
    size_t n = 99;
    att_layer_weight_count(layer, &n);
    check(n == count, "%s: %zu weights, want %zu", what, n, count);
    if (name && probe < n) {
        const char *got = NULL;
        att_layer_weight_info(layer, probe, NULL, &got);
        check(got && strcmp(got, name) == 0, "%s: weight %zu is %s, want %s", what, probe, got ? got : "(null)", name);
    }
    att_layer_destroy(layer);
}

static void zero_is_the_default(void) {
    att_attention_config a = {.struct_size = sizeof a};
    check_defaults(W_ATTENTION, &a, 0, 0, NULL, "Attention(): use_scale=False");
    att_additive_attention_config d = {.struct_size = sizeof d};
    check_defaults(W_ADDITIVE, &d, 1, 0, "scale", "AdditiveAttention(): use_scale=True");
    d.no_scale = 1;
    check_defaults(W_ADDITIVE, &d, 0, 0, NULL, "AdditiveAttention(no_scale)");
    att_multi_head_attention_config m = {.struct_size = sizeof m, .num_heads = 2, .key_dim = 3};
    check_defaults(W_MHA, &m, 8, 1, "query/bias", "MultiHeadAttention(2, 3): use_bias=True");
    m.no_bias = 1;
    check_defaults(W_MHA, &m, 4, 1, "key/kernel", "MultiHeadAttention(no_bias)");
    att_group_query_attention_config g = {.struct_size = sizeof g, .head_dim = 2, .num_query_heads = 2,
                                          .num_key_value_heads = 1};
    check_defaults(W_GQA, &g, 8, 1, "query/bias", "GroupQueryAttention(2, 2, 1): use_bias=True");
    g.no_bias = 7; /* any nonzero value is true */
    check_defaults(W_GQA, &g, 4, 1, "key/kernel", "GroupQueryAttention(no_bias = 7)");
    att_reuse_multi_head_attention_config r = {.struct_size = sizeof r, .num_heads = 2, .key_dim = 3};
    check_defaults(W_REUSE, &r, 8, 1, "query/bias", "ReuseMultiHeadAttention(2, 3): use_bias=True");
    r.no_bias = 1;
    check_defaults(W_REUSE, &r, 4, 1, "key/kernel", "ReuseMultiHeadAttention(no_bias)");
}

/* ---- size_t is unsigned ---------------------------------------------------------------------- */

static void unsigned_sizes(void) {
    fixture();
    const size_t huge[] = {g_weight_count, (size_t)1 << 63, SIZE_MAX - 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        char what[96];
        att_shape s;
        att_tensor t = g_weight_grads[0];
        snprintf(what, sizeof what, "weight_info index %zu", huge[i]);
        expect(att_layer_weight_info(g_mha, huge[i], &s, NULL), ATT_ERR_INVALID_ARGUMENT, "index", what);
        snprintf(what, sizeof what, "get_weight index %zu", huge[i]);
        expect(att_layer_get_weight(g_mha, huge[i], &t), ATT_ERR_INVALID_ARGUMENT, "index", what);
        snprintf(what, sizeof what, "set_weight index %zu", huge[i]);
        expect(att_layer_set_weight(g_mha, huge[i], &t), ATT_ERR_INVALID_ARGUMENT, "index", what);
        check(strstr(att_last_error(), "index 18446744073709551615") || huge[i] != SIZE_MAX,
              "the message shows SIZE_MAX as itself: \"%s\"", att_last_error());
    }

    /* The fixture has an l2 kernel regularizer: 4 losses (one per kernel). */
    double want[8] = {0};
    size_t n = 0;
    expect(att_layer_losses(g_mha, NULL, want, 8, &n), ATT_OK, "", "losses, capacity 8");
    check(n == 4 && want[0] > 0, "%zu losses (first %g), want 4 positive", n, want[0]);
    const size_t capacities[] = {(size_t)1 << 63, SIZE_MAX - 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof capacities / sizeof *capacities; i++) {
        double got[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        size_t count = 0;
        char what[96];
        snprintf(what, sizeof what, "losses, capacity %zu", capacities[i]);
        expect(att_layer_losses(g_mha, NULL, got, capacities[i], &count), ATT_OK, "", what);
        check(count == 4 && memcmp(got, want, 4 * sizeof *got) == 0 && got[4] == -1,
              "%s: count %zu, values %g %g %g %g, then %g (want the 4 losses, then -1 untouched)", what, count,
              got[0], got[1], got[2], got[3], got[4]);
        snprintf(what, sizeof what, "losses NULL, capacity %zu", capacities[i]);
        expect(att_layer_losses(g_mha, NULL, NULL, capacities[i], &count), ATT_ERR_NULL_ARGUMENT, "losses", what);
    }
    double two[3] = {-1, -1, -1};
    expect(att_layer_losses(g_mha, NULL, two, 2, &n), ATT_OK, "", "losses, capacity 2");
    check(n == 4 && two[0] == want[0] && two[1] == want[1] && two[2] == -1, "capacity 2 writes 2 of %zu losses", n);
    expect(att_layer_losses(g_mha, NULL, NULL, 0, &n), ATT_OK, "", "losses NULL, capacity 0");
    check(n == 4, "capacity 0 still counts: %zu", n);

    /* losses may be NULL only with capacity 0, also for a layer that has no losses. */
    att_attention_config c = {.struct_size = sizeof c};
    att_layer *plain = NULL;
    att_shape qs = SHAPE(B, T, D);
    att_attention_create(&c, &plain);
    att_layer_build(plain, &qs, &qs, NULL);
    expect(att_layer_losses(plain, NULL, NULL, 1, &n), ATT_ERR_NULL_ARGUMENT, "losses",
           "losses NULL, capacity 1, no regularizers");
    expect(att_layer_losses(plain, NULL, NULL, 0, &n), ATT_OK, "", "no regularizers, capacity 0");
    check(n == 0, "a layer without regularizers has %zu losses", n);
    att_layer_destroy(plain);
}

/* ---- outputs may not overlap --------------------------------------------------------------- */

static void overlapping_outputs(void) {
    fixture();
    att_call_args a = call_args();
    expect(att_layer_call(g_mha, &a), ATT_OK, "", "a call with separate buffers");

    att_tensor t = g_out;
    t.data = g_q.data; /* output == query, same shape */
    a = call_args();
    a.output = &t;
    expect(att_layer_call(g_mha, &a), ATT_ERR_INVALID_ARGUMENT, "args->output overlaps args->query",
           "output aliasing the query");
    t.data = (double *)g_v.data + 3; /* starts inside the value */
    expect(att_layer_call(g_mha, &a), ATT_ERR_INVALID_ARGUMENT, "overlaps args->value", "output inside the value");
    t.data = (double *)g_scores.data + 10; /* inside the scores */
    expect(att_layer_call(g_mha, &a), ATT_ERR_INVALID_ARGUMENT, "overlaps", "output inside the scores");
    t = g_out;
    t.shape = SHAPE(B, T + 1, D); /* a wrong shape is a SHAPE error, even when it overlaps */
    t.data = g_q.data;
    expect(att_layer_call(g_mha, &a), ATT_ERR_SHAPE, "output", "output of a wrong shape over the query");

    uint8_t *mask_in_out = (uint8_t *)g_out.data + 8;
    att_tensor vm = mask_tensor(mask_in_out, SHAPE(B, S));
    a = call_args();
    a.value_mask = &vm;
    expect(att_layer_call(g_mha, &a), ATT_ERR_INVALID_ARGUMENT, "args->output overlaps args->value_mask",
           "a value_mask inside the output");

    /* Inputs may share memory: self-attention, query == value == key. */
    att_tensor self_out = new_tensor(ATT_FLOAT64, g_q.shape, NULL);
    a = (att_call_args){.struct_size = sizeof a, .query = &g_q, .value = &g_q, .key = &g_q, .output = &self_out};
    expect(att_layer_call(g_mha, &a), ATT_OK, "", "query, value and key one buffer");
    free(self_out.data);

    /* Backward: a gradient over an input or over the output_gradient. */
    a = call_args();
    att_gradient_args g = gradient_args();
    expect(att_layer_backward(g_mha, &a, &g), ATT_OK, "", "a backward with separate buffers");
    g.query_gradient = &g_q;
    expect(att_layer_backward(g_mha, &a, &g), ATT_ERR_INVALID_ARGUMENT, "grads->query_gradient overlaps args->query",
           "query_gradient aliasing the query");
    g = gradient_args();
    att_tensor w[8];
    memcpy(w, g_weight_grads, sizeof w);
    w[0].data = g_dout.data; /* query/kernel (4, 2, 3): 24 of output_gradient's 40 doubles */
    g.weight_gradients = w;
    expect(att_layer_backward(g_mha, &a, &g), ATT_ERR_INVALID_ARGUMENT,
           "grads->weight_gradients[0] overlaps grads->output_gradient", "a weight gradient over the output_gradient");
    g = gradient_args();
    g.query_gradient = &g_out; /* the forward's output and a gradient in one buffer */
    expect(att_layer_backward(g_mha, &a, &g), ATT_ERR_INVALID_ARGUMENT, "overlaps", "query_gradient == output");

    /* losses: the call's output over its query. */
    t = g_out;
    t.data = g_q.data;
    a = call_args();
    a.output = &t;
    size_t n = 0;
    double losses[8];
    expect(att_layer_losses(g_mha, &a, losses, 8, &n), ATT_ERR_INVALID_ARGUMENT, "overlaps", "losses of an aliased call");

    /* dot_product_attention: output == query refused; key == value accepted. */
    att_dot_product_attention_args d = {.struct_size = sizeof d, .query = &g_dpa_q, .key = &g_dpa_k,
                                        .value = &g_dpa_k, .output = &g_dpa_out};
    expect(att_dot_product_attention(&d), ATT_OK, "", "dot_product_attention, key == value");
    d.output = &g_dpa_q;
    expect(att_dot_product_attention(&d), ATT_ERR_INVALID_ARGUMENT, "args->output overlaps args->query",
           "dot_product_attention output == query");
}

/* ---- messages in the caller's terms ---------------------------------------------------------- */

static void attention_mask_message(void) {
    fixture();
    static uint8_t ones[B * T * S * HEADS];
    memset(ones, 1, sizeof ones);
    const struct {
        att_shape shape;
        att_status want;
    } cases[] = {
        {SH(3, B, T, S), ATT_OK},        {SH(2, T, S), ATT_OK},           {SH(3, B, 1, S), ATT_OK},
        {SH(3, 1, T, S), ATT_OK},        {SH(4, B, HEADS, T, S), ATT_OK}, {SH(3, B, T + 1, S), ATT_ERR_SHAPE},
        {SH(3, B, S, T), ATT_ERR_SHAPE}, {SH(2, B, S), ATT_ERR_SHAPE},    {SH(4, B, 3, T, S), ATT_ERR_SHAPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        att_tensor m = mask_tensor(ones, cases[i].shape);
        att_call_args a = call_args();
        a.attention_mask = &m;
        char what[96], buf[64];
        snprintf(what, sizeof what, "attention_mask %s", shape_str(cases[i].shape, buf, sizeof buf));
        expect(att_layer_call(g_mha, &a), cases[i].want, "pass (B, T, S) = (2, 5, 7), or a shape that broadcasts", what);
    }
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"version", version},
        {"accepted struct sizes", accepted_sizes},
        {"refused struct sizes", refused_sizes},
        {"layout of renamed fields", layout},
        {"zero is Keras's default", zero_is_the_default},
        {"size_t is unsigned", unsigned_sizes},
        {"overlapping outputs", overlapping_outputs},
        {"attention_mask message", attention_mask_message},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof *groups));
}
