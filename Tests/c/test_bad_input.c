/*
 * test_bad_input.c — every bad-input path of libattention's C API: NULL pointers, struct
 * sizes, unknown enums, out-of-range values, shapes and dtypes that do not fit, masks a layer
 * does not take, weights out of range, calls before build, overflowing sizes, NULL / foreign /
 * destroyed handles; NaN inputs. Each failure must return the exact status with a message in
 * att_last_error() that names the problem; nothing may crash. Prints `N passed, N failed`.
 *
 * Tensors of a fixture point at static 4096-element buffers, so a case with a wrong shape
 * never makes the library read past a buffer even if it failed to reject the shape.
 */
#include "check.h"

#include <threads.h>

#define BIG 4096
#define HUGE_DIM (INT64_C(1) << 31) /* two of these and a third dim overflow 64 bits */

static double g_buffers[10][BIG];
static uint8_t g_ones[BIG];

static att_tensor buffer(int i, att_dtype dt, att_shape s) {
    att_tensor t = {g_buffers[i], dt, s};
    return t;
}

static att_tensor ones_mask(att_shape s) { return mask_tensor(g_ones, s); }

/* ---- call fixtures -------------------------------------------------------------------------- */

/* A valid call: tensors and the args that point at them. Cases edit one thing. */
typedef struct {
    att_tensor q, k, v, out, scores, qmask, vmask, kmask, amask;
    att_call_args args;
} fixture;

/* A valid float32 call with tensors of these shapes. The masks, left out of the args, have
 * Keras's shapes: query_mask q[:2], value_mask and key_mask v[:2], attention_mask (B, T, S). */
static void make_fixture(fixture *f, att_shape q, att_shape k, att_shape v, att_shape out, att_shape scores) {
    f->q = buffer(0, ATT_FLOAT32, q);
    f->k = buffer(1, ATT_FLOAT32, k);
    f->v = buffer(2, ATT_FLOAT32, v);
    f->out = buffer(3, ATT_FLOAT32, out);
    f->scores = buffer(4, ATT_FLOAT32, scores);
    f->qmask = ones_mask(SHAPE(q.dims[0], q.dims[1]));
    f->vmask = f->kmask = ones_mask(SHAPE(v.dims[0], v.dims[1]));
    f->amask = ones_mask(SHAPE(q.dims[0], q.dims[1], v.dims[1]));
    f->args = (att_call_args){.struct_size = sizeof f->args, .query = &f->q, .value = &f->v, .key = &f->k,
                              .output = &f->out, .scores = &f->scores};
}

/* Attention / AdditiveAttention: q (2,3,4), v (2,5,6), k (2,5,4). */
static void luong_fixture(fixture *f) {
    make_fixture(f, SHAPE(2, 3, 4), SHAPE(2, 5, 4), SHAPE(2, 5, 6), SHAPE(2, 3, 6), SHAPE(2, 3, 5));
}

/* MultiHeadAttention (2 heads of 3): q (2,3,5), v (2,4,4), k (2,4,3). */
static void mha_fixture(fixture *f) {
    make_fixture(f, SHAPE(2, 3, 5), SHAPE(2, 4, 3), SHAPE(2, 4, 4), SHAPE(2, 3, 5), SHAPE(2, 2, 3, 4));
}

/* Runs one call on a fresh fixture after the edits in __VA_ARGS__ (which see `f`). */
#define CALL_CASE(layer, init, want, about, what, ...) \
    do {                                               \
        fixture f;                                     \
        init(&f);                                      \
        __VA_ARGS__;                                   \
        expect(att_layer_call(layer, &f.args), want, about, what); \
    } while (0)

/* `layer`, built for the shapes of fixture `init` when `build`. */
static att_layer *built_for(att_layer *layer, int build, void (*init)(fixture *), const char *what) {
    fixture f;
    init(&f);
    if (build) expect(att_layer_build(layer, &f.q.shape, &f.v.shape, &f.k.shape), ATT_OK, "", what);
    return layer;
}

static att_layer *attention_layer(int build) {
    att_attention_config cfg = {.struct_size = sizeof cfg};
    att_layer *layer = NULL;
    expect(att_attention_create(&cfg, &layer), ATT_OK, "", "create Attention");
    return built_for(layer, build, luong_fixture, "build Attention");
}

static att_layer *additive_layer(int build) {
    att_additive_attention_config cfg = {.struct_size = sizeof cfg};
    att_layer *layer = NULL;
    expect(att_additive_attention_create(&cfg, &layer), ATT_OK, "", "create AdditiveAttention");
    return built_for(layer, build, luong_fixture, "build AdditiveAttention");
}

static att_multi_head_attention_config valid_mha_config(void) {
    att_multi_head_attention_config c = {.struct_size = sizeof c, .num_heads = 2, .key_dim = 3};
    return c;
}

static att_layer *mha_layer(int build) {
    att_multi_head_attention_config cfg = valid_mha_config();
    att_layer *layer = NULL;
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create MHA");
    return built_for(layer, build, mha_fixture, "build MHA");
}

/* ---- create --------------------------------------------------------------------------------- */

/* Each layer kind's create call on its config (all three share one bad field) returns `want`. */
static void expect_creates(const att_attention_config *a, const att_additive_attention_config *d,
                           const att_multi_head_attention_config *m, att_status want, const char *about,
                           const char *what) {
    att_layer *layer = NULL;
    expect(att_attention_create(a, &layer), want, about, what);
    expect(att_additive_attention_create(d, &layer), want, about, what);
    expect(att_multi_head_attention_create(m, &layer), want, about, what);
}

static void create_errors(void) {
    att_layer *layer = NULL;
    att_attention_config a = {.struct_size = sizeof a};
    att_additive_attention_config d = {.struct_size = sizeof d};
    att_multi_head_attention_config m = valid_mha_config();
    expect(att_attention_create(NULL, &layer), ATT_ERR_NULL_ARGUMENT, "config", "Attention: config NULL");
    expect(att_attention_create(&a, NULL), ATT_ERR_NULL_ARGUMENT, "out|layer", "Attention: out NULL");
    expect(att_additive_attention_create(NULL, &layer), ATT_ERR_NULL_ARGUMENT, "config", "Additive: config NULL");
    expect(att_additive_attention_create(&d, NULL), ATT_ERR_NULL_ARGUMENT, "out|layer", "Additive: out NULL");
    expect(att_multi_head_attention_create(NULL, &layer), ATT_ERR_NULL_ARGUMENT, "config", "MHA: config NULL");
    expect(att_multi_head_attention_create(&m, NULL), ATT_ERR_NULL_ARGUMENT, "out|layer", "MHA: out NULL");

    static const size_t sizes[] = {0, 1, sizeof(att_attention_config) - 1, 12345, SIZE_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "struct_size %zu", sizes[i]);
        a.struct_size = d.struct_size = m.struct_size = sizes[i];
        expect_creates(&a, &d, &m, ATT_ERR_STRUCT_SIZE, "struct_size|size", what);
    }
    a.struct_size = sizeof a, d.struct_size = sizeof d, m.struct_size = sizeof m;

    static const int dtypes[] = {ATT_UINT8, 7, -1};
    for (size_t i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof what, "layer dtype %d", dtypes[i]);
        a.dtype = d.dtype = m.dtype = (att_dtype)dtypes[i];
        expect_creates(&a, &d, &m, ATT_ERR_INVALID_ARGUMENT, "dtype", what);
    }
    a.dtype = d.dtype = m.dtype = ATT_FLOAT32;

    static const double rates[] = {1.0, 1.5, -0.1, -0.0 - 1e-300, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "dropout %g", rates[i]);
        a.dropout = d.dropout = m.dropout = rates[i];
        expect_creates(&a, &d, &m, ATT_ERR_INVALID_ARGUMENT, "dropout", what);
    }
    a.dropout = 0;

    a.score_mode = (att_score_mode)2;
    expect(att_attention_create(&a, &layer), ATT_ERR_INVALID_ARGUMENT, "score_mode|score mode", "score_mode 2");
    a.score_mode = (att_score_mode)-1;
    expect(att_attention_create(&a, &layer), ATT_ERR_INVALID_ARGUMENT, "score_mode|score mode", "score_mode -1");

    /* MultiHeadAttention: one bad field at a time on a valid config. */
    att_multi_head_attention_config c;
#define BAD_MHA(about, what, ...)                                                                  \
    do {                                                                                           \
        c = valid_mha_config();                                                                    \
        __VA_ARGS__;                                                                               \
        expect(att_multi_head_attention_create(&c, &layer), ATT_ERR_INVALID_ARGUMENT, about, what); \
    } while (0)
    BAD_MHA("num_heads|heads", "num_heads 0", c.num_heads = 0);
    BAD_MHA("num_heads|heads", "num_heads -1", c.num_heads = -1);
    BAD_MHA("key_dim", "key_dim 0", c.key_dim = 0);
    BAD_MHA("key_dim", "key_dim -5", c.key_dim = -5);
    BAD_MHA("value_dim", "value_dim -1", c.value_dim = -1);
    BAD_MHA("output_rank|output_shape", "output_rank -1", c.output_rank = -1);
    BAD_MHA("output_rank|output_shape", "output_rank 9", c.output_rank = ATT_MAX_RANK + 1);
    BAD_MHA("output_rank|output_shape", "output_rank 7 (a kernel of 9 dims)", c.output_rank = ATT_MAX_RANK - 1);
    BAD_MHA("output_shape", "output_shape (3, 0)", c.output_rank = 2, c.output_shape[0] = 3, c.output_shape[1] = 0);
    BAD_MHA("output_shape", "output_shape (-2)", c.output_rank = 1, c.output_shape[0] = -2);
    BAD_MHA("attention_axes|axes", "num_attention_axes -1", c.num_attention_axes = -1);
    BAD_MHA("attention_axes|axes", "num_attention_axes 9", c.num_attention_axes = ATT_MAX_RANK + 1);
    BAD_MHA("sliding_window|window", "sliding_window -1", c.sliding_window = -1);
    BAD_MHA("initializer", "kernel_initializer kind 14", c.kernel_initializer.kind = (att_initializer_kind)14);
    BAD_MHA("initializer", "kernel_initializer kind -1", c.kernel_initializer.kind = (att_initializer_kind)-1);
    BAD_MHA("initializer", "bias_initializer kind 99", c.bias_initializer.kind = (att_initializer_kind)99);
    BAD_MHA("regularizer", "kernel_regularizer kind 4", c.kernel_regularizer.kind = (att_regularizer_kind)4);
    BAD_MHA("regularizer|l1", "bias_regularizer l1 -1", c.bias_regularizer = (att_regularizer){ATT_REG_L1, -1, 0});
    BAD_MHA("regularizer|l2", "activity_regularizer l2 NaN",
            c.activity_regularizer = (att_regularizer){ATT_REG_L2, 0, NAN});
    BAD_MHA("regularizer|l1", "kernel_regularizer l1 inf",
            c.kernel_regularizer = (att_regularizer){ATT_REG_L1_L2, INFINITY, 0.1});
    BAD_MHA("constraint", "kernel_constraint kind 5", c.kernel_constraint.kind = (att_constraint_kind)5);
    BAD_MHA("constraint|min_value|max_value", "bias_constraint min_value 2 > max_value 1",
            c.bias_constraint = (att_constraint){ATT_CONSTRAINT_MIN_MAX_NORM, 2, 1, 1, 0});
    BAD_MHA("constraint|rate", "kernel_constraint min_max_norm rate 1.5",
            c.kernel_constraint = (att_constraint){ATT_CONSTRAINT_MIN_MAX_NORM, 0, 1, 1.5, 0});
#undef BAD_MHA
    att_multi_head_attention_config zero = {.struct_size = sizeof zero};
    expect(att_multi_head_attention_create(&zero, &layer), ATT_ERR_INVALID_ARGUMENT, "num_heads|heads",
           "zero-filled MHA config (num_heads 0)");

    /* Booleans: any nonzero value is true. */
    a = (att_attention_config){.struct_size = sizeof a, .use_scale = -3};
    size_t count = 0;
    att_shape q = SHAPE(1, 2, 3);
    expect(att_attention_create(&a, &layer), ATT_OK, "", "Attention use_scale -3");
    expect(att_layer_build(layer, &q, &q, NULL), ATT_OK, "", "build Attention use_scale -3");
    att_layer_weight_count(layer, &count);
    check(count == 1, "use_scale = -3 is true: %zu weights, want 1", count);
    att_layer_destroy(layer);
}

/* ---- handles -------------------------------------------------------------------------------- */

static void handle_errors(void) {
    int on_stack = 0;
    void *heap_block = calloc(1, 256);
    att_layer *dead = attention_layer(1);
    expect(att_layer_destroy(dead), ATT_OK, "", "destroy");
    expect(att_layer_destroy(NULL), ATT_OK, "", "destroy(NULL)");
    struct {
        const char *name;
        att_layer *layer;
    } bad[] = {{"NULL", NULL}, {"stack address", (att_layer *)&on_stack}, {"heap block", heap_block},
               {"destroyed", dead}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[96];
        att_layer *h = bad[i].layer;
        att_shape q = SHAPE(2, 3, 4), v = SHAPE(2, 5, 6), s = {0};
        int32_t built = 0;
        size_t count = 0;
        const char *name = NULL;
        att_tensor w = buffer(0, ATT_FLOAT32, (att_shape){0});
        const char *about = "handle|layer";
#define HANDLE_CASE(fn, call)                                               \
    snprintf(what, sizeof what, "%s on a %s handle", fn, bad[i].name); \
    expect(call, ATT_ERR_INVALID_HANDLE, about, what)
        HANDLE_CASE("build", att_layer_build(h, &q, &v, NULL));
        HANDLE_CASE("is_built", att_layer_is_built(h, &built));
        HANDLE_CASE("weight_count", att_layer_weight_count(h, &count));
        HANDLE_CASE("weight_info", att_layer_weight_info(h, 0, &s, &name));
        HANDLE_CASE("get_weight", att_layer_get_weight(h, 0, &w));
        HANDLE_CASE("set_weight", att_layer_set_weight(h, 0, &w));
        HANDLE_CASE("output_shape", att_layer_output_shape(h, &q, &v, NULL, &s, &s));
        fixture f;
        luong_fixture(&f);
        HANDLE_CASE("call", att_layer_call(h, &f.args));
        if (h) {
            HANDLE_CASE("destroy", att_layer_destroy(h));
        }
#undef HANDLE_CASE
    }
    check(on_stack == 0, "the library wrote into a foreign handle's memory");
    free(heap_block);
}

/* ---- build ---------------------------------------------------------------------------------- */

static void expect_build(att_layer *layer, att_shape q, att_shape v, const att_shape *k, att_status want,
                         const char *about, const char *what) {
    expect(att_layer_build(layer, &q, &v, k), want, about, what);
}

static void build_errors(void) {
    att_layer *att = attention_layer(0), *add = additive_layer(0), *mha = mha_layer(0);
    att_shape q = SHAPE(2, 3, 4), v = SHAPE(2, 5, 6), k = SHAPE(2, 5, 4);
    expect(att_layer_build(att, NULL, &v, &k), ATT_ERR_NULL_ARGUMENT, "query", "build: query_shape NULL");
    expect(att_layer_build(att, &q, NULL, &k), ATT_ERR_NULL_ARGUMENT, "value", "build: value_shape NULL");
    att_layer *luong[2] = {att, add};
    for (int i = 0; i < 2; i++) {
        att_layer *l = luong[i];
        att_shape k5 = SHAPE(2, 5, 5), k4d = SHAPE(2, 5, 1, 4), neg = {-1, {0}}, r9 = {ATT_MAX_RANK + 1, {0}};
        expect_build(l, SHAPE(2, 12), v, &k, ATT_ERR_SHAPE, "rank", "build: query rank 2");
        expect_build(l, SHAPE(2, 3, 1, 4), v, &k, ATT_ERR_SHAPE, "rank", "build: query rank 4");
        expect_build(l, q, SHAPE(2, 30), &k, ATT_ERR_SHAPE, "rank", "build: value rank 2");
        expect_build(l, q, v, &k4d, ATT_ERR_SHAPE, "rank", "build: key rank 4");
        expect_build(l, neg, v, &k, ATT_ERR_SHAPE, "rank", "build: query rank -1");
        expect_build(l, q, r9, &k, ATT_ERR_SHAPE, "rank", "build: value rank 9");
        expect_build(l, SHAPE(2, 3, 0), v, &k, ATT_ERR_SHAPE, "(feature) dim must be >= 1", "build: query feature dim 0");
        expect_build(l, SHAPE(3), SHAPE(5), NULL, ATT_ERR_SHAPE, "rank >= 2", "build: rank-1 inputs");
        expect_build(l, q, SHAPE(2, -5, 6), &k, ATT_ERR_SHAPE, "dim|positive|>= 1|negative", "build: value dim -5");
        expect_build(l, q, v, &k5, ATT_ERR_SHAPE, "dim|key|query", "build: query dim 4, key dim 5");
        expect_build(l, q, v, NULL, ATT_ERR_SHAPE, "dim|key|value|query", "build: no key, query dim 4, value dim 6");
        expect_build(l, SHAPE(HUGE_DIM, HUGE_DIM, 4), SHAPE(HUGE_DIM, 5, 4), NULL, ATT_ERR_SHAPE, "overflow|64 bits",
                     "build: query of 2^64 elements");
    }
    att_shape mv = SHAPE(2, 4, 4), mk = SHAPE(2, 4, 3), mk5 = SHAPE(2, 5, 3), mk4d = SHAPE(2, 4, 1, 3);
    expect_build(mha, SHAPE(2, 5), mv, &mk, ATT_ERR_SHAPE, "rank", "MHA build: query rank 2");
    expect_build(mha, SHAPE(2, 3, 5), mv, &mk5, ATT_ERR_SHAPE, "key|value|dim", "MHA build: key length 5, value 4");
    expect_build(mha, SHAPE(2, 3, 5), mv, &mk4d, ATT_ERR_SHAPE, "key|value|rank", "MHA build: key rank 4, value 3");
    att_layer *layer = NULL;
    att_multi_head_attention_config c = valid_mha_config();
    c.num_attention_axes = 1, c.attention_axes[0] = 5;
    expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "create MHA axes (5)");
    expect_build(layer, SHAPE(2, 3, 5), mv, NULL, ATT_ERR_INVALID_ARGUMENT, "axis|axes", "MHA build: axis 5 for rank 3");
    att_layer_destroy(layer);
    c.attention_axes[0] = -4;
    expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "create MHA axes (-4)");
    expect_build(layer, SHAPE(2, 3, 5), mv, NULL, ATT_ERR_INVALID_ARGUMENT, "axis|axes", "MHA build: axis -4 for rank 3");
    att_layer_destroy(layer);
    c = valid_mha_config();
    c.num_heads = c.key_dim = HUGE_DIM;
    expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "create MHA with 2^31 heads of 2^31");
    expect_build(layer, SHAPE(1, 1, HUGE_DIM), SHAPE(1, 1, 1), NULL, ATT_ERR_SHAPE, "overflow|64 bits",
                 "MHA build: query kernel of 2^93 elements");
    att_layer_destroy(layer);
    att_layer_destroy(att), att_layer_destroy(add), att_layer_destroy(mha);
}

/* ---- weights -------------------------------------------------------------------------------- */

static void weight_errors(void) {
    att_layer *mha = mha_layer(0);
    size_t count = 0;
    att_shape s = {0};
    int32_t built = 0;
    att_tensor w = buffer(0, ATT_FLOAT32, SHAPE(5, 2, 3)); /* query/kernel (Dq, N, Hk) */
    expect(att_layer_weight_count(mha, &count), ATT_ERR_NOT_BUILT, "build", "weight_count before build");
    expect(att_layer_weight_info(mha, 0, &s, NULL), ATT_ERR_NOT_BUILT, "build", "weight_info before build");
    expect(att_layer_get_weight(mha, 0, &w), ATT_ERR_NOT_BUILT, "build", "get_weight before build");
    expect(att_layer_set_weight(mha, 0, &w), ATT_ERR_NOT_BUILT, "build", "set_weight before build");
    expect(att_layer_is_built(mha, NULL), ATT_ERR_NULL_ARGUMENT, "built", "is_built(NULL)");
    att_shape q = SHAPE(2, 3, 5), v = SHAPE(2, 4, 4), k = SHAPE(2, 4, 3);
    expect(att_layer_build(mha, &q, &v, &k), ATT_OK, "", "build MHA");
    expect(att_layer_is_built(mha, &built), ATT_OK, "", "is_built");
    expect(att_layer_weight_count(mha, NULL), ATT_ERR_NULL_ARGUMENT, "count", "weight_count(NULL)");
    expect(att_layer_weight_info(mha, 0, NULL, NULL), ATT_OK, "", "weight_info with NULL outputs");
    expect(att_layer_weight_info(mha, 8, &s, NULL), ATT_ERR_INVALID_ARGUMENT, "index|range",
           "weight_info index 8 of 8");
    expect(att_layer_weight_info(mha, SIZE_MAX, &s, NULL), ATT_ERR_INVALID_ARGUMENT, "index|range",
           "weight_info index SIZE_MAX");

    for (int set = 0; set < 2; set++) {
        const char *fn = set ? "set_weight" : "get_weight";
        char what[96];
#define WEIGHT_CASE(index, tensor, want, about, text)                 \
    snprintf(what, sizeof what, "%s: %s", fn, text);                 \
    expect(set ? att_layer_set_weight(mha, index, tensor) : att_layer_get_weight(mha, index, tensor), want, about, what)
        att_tensor t = w;
        WEIGHT_CASE(0, NULL, ATT_ERR_NULL_ARGUMENT, "value|out|tensor|weight", "tensor NULL");
        t.data = NULL;
        WEIGHT_CASE(0, &t, ATT_ERR_NULL_ARGUMENT, "data", "data NULL");
        t = w, t.shape = SHAPE(5, 2, 4);
        WEIGHT_CASE(0, &t, ATT_ERR_SHAPE, "shape", "(5,2,4) for (5,2,3)");
        t.shape = SHAPE(5, 6);
        WEIGHT_CASE(0, &t, ATT_ERR_SHAPE, "shape|rank", "(5,6) for (5,2,3)");
        t.shape = SHAPE(2, 3);
        WEIGHT_CASE(0, &t, ATT_ERR_SHAPE, "shape|rank", "query/bias shape for query/kernel");
        t = w, t.dtype = ATT_FLOAT64;
        WEIGHT_CASE(0, &t, ATT_ERR_DTYPE, "dtype|float", "float64 for a float32 layer");
        t.dtype = ATT_UINT8;
        WEIGHT_CASE(0, &t, ATT_ERR_DTYPE, "dtype|float|uint8", "uint8");
        t.dtype = (att_dtype)9;
        WEIGHT_CASE(0, &t, ATT_ERR_DTYPE, "dtype", "dtype 9");
        t = w;
        WEIGHT_CASE(8, &t, ATT_ERR_INVALID_ARGUMENT, "index|range", "index 8 of 8");
        WEIGHT_CASE(SIZE_MAX, &t, ATT_ERR_INVALID_ARGUMENT, "index|range", "index SIZE_MAX");
#undef WEIGHT_CASE
    }
    att_layer_destroy(mha);

    /* Attention: no weights without scale; a scalar weight is rank 0, not (1,). */
    att_layer *att = attention_layer(1);
    expect(att_layer_weight_info(att, 0, &s, NULL), ATT_ERR_INVALID_ARGUMENT, "index|range",
           "weight_info 0 of a layer without weights");
    att_layer_destroy(att);
    att_attention_config cfg = {.struct_size = sizeof cfg, .use_scale = 1};
    att_shape aq = SHAPE(1, 2, 3);
    att_attention_create(&cfg, &att);
    att_layer_build(att, &aq, &aq, NULL);
    att_tensor scalar = buffer(0, ATT_FLOAT32, SHAPE(1));
    expect(att_layer_set_weight(att, 0, &scalar), ATT_ERR_SHAPE, "shape|rank", "set scale () from shape (1,)");
    att_layer_destroy(att);
}

/* ---- output_shape --------------------------------------------------------------------------- */

static void output_shape_errors(void) {
    att_layer *att = attention_layer(1), *mha = mha_layer(1);
    att_shape q = SHAPE(2, 3, 4), v = SHAPE(2, 5, 6), k = SHAPE(2, 5, 4), o = {0}, s = {0};
    expect(att_layer_output_shape(att, NULL, &v, &k, &o, &s), ATT_ERR_NULL_ARGUMENT, "query",
           "output_shape: query NULL");
    expect(att_layer_output_shape(att, &q, NULL, &k, &o, &s), ATT_ERR_NULL_ARGUMENT, "value",
           "output_shape: value NULL");
#define OS_CASE(layer, qs, vs, ks, want, about, what)                           \
    do {                                                                          \
        att_shape q_ = qs, v_ = vs, k_ = ks;                                      \
        expect(att_layer_output_shape(layer, &q_, &v_, &k_, &o, &s), want, about, what); \
    } while (0)
    OS_CASE(att, SHAPE(2, 12), v, k, ATT_ERR_SHAPE, "rank", "output_shape: query rank 2");
    OS_CASE(att, SHAPE(2, 3, 5), v, k, ATT_ERR_SHAPE, "dim|key|query", "output_shape: query dim 5, key dim 4");
    OS_CASE(att, SHAPE(3, 3, 4), v, k, ATT_ERR_SHAPE, "batch", "output_shape: query batch 3, value batch 2");
    OS_CASE(att, q, v, SHAPE(2, 7, 4), ATT_ERR_SHAPE, "length|key|value", "output_shape: key length 7, value 5");
    OS_CASE(att, q, v, SHAPE(1, 5, 4), ATT_ERR_SHAPE, "batch", "output_shape: key batch 1");
    OS_CASE(att, q, SHAPE(2, 5, 0), k, ATT_ERR_SHAPE, "(feature) dim must be >= 1", "output_shape: value feature dim 0");
    OS_CASE(att, SHAPE(HUGE_DIM, HUGE_DIM, 4), SHAPE(HUGE_DIM, 5, 6), SHAPE(HUGE_DIM, 5, 4), ATT_ERR_SHAPE,
            "overflow|64 bits",
            "output_shape: query of 2^64 elements");
    OS_CASE(mha, SHAPE(2, 3, 1, 5), SHAPE(2, 4, 1, 4), SHAPE(2, 4, 1, 3), ATT_ERR_SHAPE, "rank",
            "MHA output_shape: rank 4 for a rank-3 build");
    OS_CASE(mha, SHAPE(2, 3, 5), SHAPE(2, 4, 4), SHAPE(3, 4, 3), ATT_ERR_SHAPE, "batch|axis 0|key",
            "MHA output_shape: key batch 3, query and value batch 2");
    OS_CASE(mha, SHAPE(2, 3, 6), SHAPE(2, 4, 4), SHAPE(2, 4, 3), ATT_ERR_SHAPE, "dim|query|build",
            "MHA output_shape: query dim 6 for 5 built");
    OS_CASE(mha, SHAPE(2, 3, 5), SHAPE(2, 4, 7), SHAPE(2, 4, 3), ATT_ERR_SHAPE, "dim|value|build",
            "MHA output_shape: value dim 7 for 4 built");
#undef OS_CASE
    att_layer_destroy(att), att_layer_destroy(mha);
}

/* ---- call ----------------------------------------------------------------------------------- */

/* The failures every layer kind shares, on a built layer with fixture `init`. */
static void common_call_errors(att_layer *l, void (*init)(fixture *), const char *kind) {
    char what[128];
#define W(text) (snprintf(what, sizeof what, "%s call: %s", kind, text), what)
    expect(att_layer_call(l, NULL), ATT_ERR_NULL_ARGUMENT, "args|arguments", W("args NULL"));
    CALL_CASE(l, init, ATT_ERR_STRUCT_SIZE, "struct_size|size", W("struct_size 0"), f.args.struct_size = 0);
    CALL_CASE(l, init, ATT_ERR_STRUCT_SIZE, "struct_size|size", W("struct_size 12345"), f.args.struct_size = 12345);
    CALL_CASE(l, init, ATT_ERR_STRUCT_SIZE, "struct_size|size", W("struct_size SIZE_MAX"),
              f.args.struct_size = SIZE_MAX);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "query", W("query NULL"), f.args.query = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "value", W("value NULL"), f.args.value = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "output", W("output NULL"), f.args.output = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "query|data", W("query data NULL"), f.q.data = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "value|data", W("value data NULL"), f.v.data = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "key|data", W("key data NULL"), f.k.data = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "output|data", W("output data NULL"), f.out.data = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "scores|data", W("scores data NULL"), f.scores.data = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "mask|data", W("query_mask data NULL"),
              f.args.query_mask = &f.qmask, f.qmask.data = NULL);
    CALL_CASE(l, init, ATT_ERR_NULL_ARGUMENT, "mask|data", W("value_mask data NULL"),
              f.args.value_mask = &f.vmask, f.vmask.data = NULL);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "query|dtype", W("float64 query"), f.q.dtype = ATT_FLOAT64);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "value|dtype", W("float64 value"), f.v.dtype = ATT_FLOAT64);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "key|dtype", W("float64 key"), f.k.dtype = ATT_FLOAT64);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "output|dtype", W("float64 output"), f.out.dtype = ATT_FLOAT64);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "scores|dtype", W("float64 scores"), f.scores.dtype = ATT_FLOAT64);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "query|dtype", W("uint8 query"), f.q.dtype = ATT_UINT8);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "query|dtype", W("query dtype 9"), f.q.dtype = (att_dtype)9);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "mask|uint8|dtype", W("float32 query_mask"),
              f.args.query_mask = &f.qmask, f.qmask.dtype = ATT_FLOAT32, f.qmask.data = g_buffers[5]);
    CALL_CASE(l, init, ATT_ERR_DTYPE, "mask|uint8|dtype", W("float64 value_mask"),
              f.args.value_mask = &f.vmask, f.vmask.dtype = ATT_FLOAT64, f.vmask.data = g_buffers[5]);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "rank", W("query rank 2"), f.q.shape = SHAPE(2, 3 * f.q.shape.dims[2]));
    CALL_CASE(l, init, ATT_ERR_SHAPE, "rank", W("query rank 9"), f.q.shape.rank = ATT_MAX_RANK + 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "rank", W("query rank -1"), f.q.shape.rank = -1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "dim", W("query feature dim 0"), f.q.shape.dims[f.q.shape.rank - 1] = 0);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "dim|positive|negative", W("value dim -2"), f.v.shape.dims[1] = -2);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "length|key|value", W("key length != value length"), f.k.shape.dims[1] += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "batch|axis 0", W("value and key batch 1, query batch 2"), f.v.shape.dims[0] = 1,
              f.k.shape.dims[0] = 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "batch|axis 0", W("key batch 3"), f.k.shape.dims[0] = 3);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "output", W("output last dim + 1"), f.out.shape.dims[2] += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "output", W("output batch + 1"), f.out.shape.dims[0] += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "output|rank", W("output rank + 1"),
              f.out.shape.dims[f.out.shape.rank] = 1, f.out.shape.rank += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "scores", W("scores last dim + 1"),
              f.scores.shape.dims[f.scores.shape.rank - 1] += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "scores|rank", W("scores rank - 1"), f.scores.shape.rank -= 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "query_mask|query mask|mask", W("query_mask (B, Tq+1)"),
              f.args.query_mask = &f.qmask, f.qmask.shape.dims[1] += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "query_mask|query mask|mask", W("query_mask (B, Tq, 1)"),
              f.args.query_mask = &f.qmask, f.qmask.shape.dims[2] = 1, f.qmask.shape.rank = 3);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "value_mask|value mask|mask", W("value_mask (B, Tv+1)"),
              f.args.value_mask = &f.vmask, f.vmask.shape.dims[1] += 1);
    CALL_CASE(l, init, ATT_ERR_SHAPE, "value_mask|value mask|mask", W("value_mask (B+1, Tv)"),
              f.args.value_mask = &f.vmask, f.vmask.shape.dims[0] += 1);
    /* 2^31 x 2^31 x Dq elements: the product overflows int64. */
    CALL_CASE(l, init, ATT_ERR_SHAPE, "overflow|64 bits", W("query of 2^64+ elements"), f.q.shape.dims[0] = HUGE_DIM,
              f.q.shape.dims[1] = HUGE_DIM, f.k.shape.dims[0] = HUGE_DIM, f.v.shape.dims[0] = HUGE_DIM,
              f.out.shape.dims[0] = HUGE_DIM, f.out.shape.dims[1] = HUGE_DIM, f.args.scores = NULL);
#undef W
}

static void luong_call_errors(void) {
    att_layer *unbuilt[2] = {attention_layer(0), additive_layer(0)};
    att_layer *built[2] = {attention_layer(1), additive_layer(1)};
    const char *kinds[2] = {"Attention", "AdditiveAttention"};
    for (int i = 0; i < 2; i++) {
        att_layer *l = built[i];
        char what[128];
        snprintf(what, sizeof what, "%s call before build", kinds[i]);
        CALL_CASE(unbuilt[i], luong_fixture, ATT_ERR_NOT_BUILT, "build", what);
        common_call_errors(l, luong_fixture, kinds[i]);
        snprintf(what, sizeof what, "%s call: query dim 5, key dim 4", kinds[i]);
        CALL_CASE(l, luong_fixture, ATT_ERR_SHAPE, "dim|key|query", what, f.q.shape.dims[2] = 5);
        snprintf(what, sizeof what, "%s call: no key, query dim 4, value dim 6", kinds[i]);
        CALL_CASE(l, luong_fixture, ATT_ERR_SHAPE, "dim|key|value|query", what, f.args.key = NULL);
        snprintf(what, sizeof what, "%s call: query rank 4", kinds[i]);
        CALL_CASE(l, luong_fixture, ATT_ERR_SHAPE, "rank", what, f.q.shape = SHAPE(2, 3, 1, 4),
                  f.args.scores = NULL, f.out.shape = SHAPE(2, 3, 1, 6));
        snprintf(what, sizeof what, "%s call: key_mask", kinds[i]);
        CALL_CASE(l, luong_fixture, ATT_ERR_INVALID_ARGUMENT, "key_mask|key mask", what, f.args.key_mask = &f.kmask);
        snprintf(what, sizeof what, "%s call: attention_mask", kinds[i]);
        CALL_CASE(l, luong_fixture, ATT_ERR_INVALID_ARGUMENT, "attention_mask|attention mask", what,
                  f.args.attention_mask = &f.amask);
        att_layer_destroy(unbuilt[i]);
    }
    /* AdditiveAttention's scale binds the feature dim: 4 built, 6 called. */
    CALL_CASE(built[1], luong_fixture, ATT_ERR_SHAPE, "dim|scale|build", "AdditiveAttention call: dim 6 for 4 built",
              f.q.shape.dims[2] = 6, f.k.shape.dims[2] = 6);
    att_layer_destroy(built[0]), att_layer_destroy(built[1]);
}

static void mha_call_errors(void) {
    att_layer *unbuilt = mha_layer(0), *l = mha_layer(1);
    CALL_CASE(unbuilt, mha_fixture, ATT_ERR_NOT_BUILT, "build", "MHA call before build");
    att_layer_destroy(unbuilt);
    common_call_errors(l, mha_fixture, "MHA");
#define MHA(want, about, what, ...) CALL_CASE(l, mha_fixture, want, about, "MHA call: " what, __VA_ARGS__)
    MHA(ATT_ERR_SHAPE, "rank|build", "rank 4 for a rank-3 build", f.q.shape = SHAPE(2, 3, 1, 5),
        f.v.shape = SHAPE(2, 4, 1, 4), f.k.shape = SHAPE(2, 4, 1, 3), f.out.shape = SHAPE(2, 3, 1, 5),
        f.args.scores = NULL);
    MHA(ATT_ERR_SHAPE, "dim|query|build", "query dim 6 for 5 built", f.q.shape.dims[2] = 6, f.out.shape.dims[2] = 6);
    MHA(ATT_ERR_SHAPE, "dim|value|build", "value dim 5 for 4 built", f.v.shape.dims[2] = 5);
    MHA(ATT_ERR_SHAPE, "dim|key|build", "key dim 2 for 3 built", f.k.shape.dims[2] = 2);
    MHA(ATT_ERR_SHAPE, "dim|key|build", "no key: value dim 4 for key dim 3 built", f.args.key = NULL);
    MHA(ATT_ERR_SHAPE, "batch|axis 0|key", "key batch 1, query and value batch 2", f.k.shape.dims[0] = 1);
    MHA(ATT_ERR_SHAPE, "key_mask|key mask|mask", "key_mask (B, S+1)", f.args.key_mask = &f.kmask,
        f.kmask.shape.dims[1] += 1);
    MHA(ATT_ERR_DTYPE, "mask|uint8|dtype", "float32 key_mask", f.args.key_mask = &f.kmask, f.kmask.dtype = ATT_FLOAT32,
        f.kmask.data = g_buffers[5]);
    MHA(ATT_ERR_NULL_ARGUMENT, "mask|data", "key_mask data NULL", f.args.key_mask = &f.kmask, f.kmask.data = NULL);
    MHA(ATT_ERR_SHAPE, "attention_mask|attention mask|mask|broadcast", "attention_mask (B, T, S+1)",
        f.args.attention_mask = &f.amask, f.amask.shape.dims[2] += 1);
    MHA(ATT_ERR_SHAPE, "attention_mask|attention mask|mask|broadcast", "attention_mask (3, T, S) for batch 2",
        f.args.attention_mask = &f.amask, f.amask.shape.dims[0] = 3);
    MHA(ATT_ERR_SHAPE, "attention_mask|attention mask|mask|rank", "attention_mask rank 5",
        f.args.attention_mask = &f.amask, f.amask.shape = SHAPE(1, 1, 2, 3, 4));
    MHA(ATT_ERR_DTYPE, "mask|uint8|dtype", "float32 attention_mask", f.args.attention_mask = &f.amask,
        f.amask.dtype = ATT_FLOAT32, f.amask.data = g_buffers[5]);
    MHA(ATT_ERR_NULL_ARGUMENT, "mask|data", "attention_mask data NULL", f.args.attention_mask = &f.amask,
        f.amask.data = NULL);
#undef MHA
    att_layer_destroy(l);
}

/* ---- dot_product_attention ------------------------------------------------------------------ */

typedef struct {
    att_tensor q, k, v, bias, mask, out;
    att_dot_product_attention_args args;
} dpa_fixture;

/* float32: q (2,3,4,5), k (2,6,2,5), v (2,6,2,3), out (2,3,4,3); bias and mask (B,N,T,S) unused. */
static void dpa_init(dpa_fixture *f) {
    f->q = buffer(0, ATT_FLOAT32, SHAPE(2, 3, 4, 5));
    f->k = buffer(1, ATT_FLOAT32, SHAPE(2, 6, 2, 5));
    f->v = buffer(2, ATT_FLOAT32, SHAPE(2, 6, 2, 3));
    f->out = buffer(3, ATT_FLOAT32, SHAPE(2, 3, 4, 3));
    f->bias = buffer(4, ATT_FLOAT32, SHAPE(2, 4, 3, 6));
    f->mask = ones_mask(SHAPE(2, 4, 3, 6));
    f->args = (att_dot_product_attention_args){.struct_size = sizeof f->args, .query = &f->q, .key = &f->k,
                                               .value = &f->v, .output = &f->out};
}

#define DPA(want, about, what, ...)                                                   \
    do {                                                                              \
        dpa_fixture f;                                                                \
        dpa_init(&f);                                                                 \
        __VA_ARGS__;                                                                  \
        expect(att_dot_product_attention(&f.args), want, about, "dpa: " what);        \
    } while (0)

static void dpa_errors(void) {
    expect(att_dot_product_attention(NULL), ATT_ERR_NULL_ARGUMENT, "args|arguments", "dpa: args NULL");
    DPA(ATT_OK, "", "the valid fixture", (void)0);
    DPA(ATT_OK, "", "the valid fixture with bias and mask", f.args.bias = &f.bias, f.args.mask = &f.mask);
    DPA(ATT_ERR_STRUCT_SIZE, "struct_size|size", "struct_size 0", f.args.struct_size = 0);
    DPA(ATT_ERR_STRUCT_SIZE, "struct_size|size", "struct_size 7777", f.args.struct_size = 7777);
    DPA(ATT_ERR_NULL_ARGUMENT, "query", "query NULL", f.args.query = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "key", "key NULL", f.args.key = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "value", "value NULL", f.args.value = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "output", "output NULL", f.args.output = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "query|data", "query data NULL", f.q.data = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "key|data", "key data NULL", f.k.data = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "value|data", "value data NULL", f.v.data = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "output|data", "output data NULL", f.out.data = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "bias|data", "bias data NULL", f.args.bias = &f.bias, f.bias.data = NULL);
    DPA(ATT_ERR_NULL_ARGUMENT, "mask|data", "mask data NULL", f.args.mask = &f.mask, f.mask.data = NULL);
    DPA(ATT_ERR_SHAPE, "rank|4-D", "query rank 3", f.q.shape = SHAPE(2, 3, 20));
    DPA(ATT_ERR_SHAPE, "rank|4-D", "key rank 5", f.k.shape = SHAPE(2, 6, 2, 5, 1));
    DPA(ATT_ERR_SHAPE, "rank", "query rank 9", f.q.shape.rank = ATT_MAX_RANK + 1);
    DPA(ATT_ERR_SHAPE, "key/value head", "key/value heads 0", f.k.shape.dims[2] = 0, f.v.shape.dims[2] = 0);
    DPA(ATT_ERR_SHAPE, "dim|positive|negative", "query dim -1", f.q.shape.dims[1] = -1);
    DPA(ATT_ERR_SHAPE, "head|divide", "3 key heads for 4 query heads", f.k.shape.dims[2] = 3, f.v.shape.dims[2] = 3);
    DPA(ATT_ERR_SHAPE, "head|key|value", "key heads 2, value heads 1", f.v.shape.dims[2] = 1);
    DPA(ATT_ERR_SHAPE, "dim|key|query|head", "key head dim 4, query 5", f.k.shape.dims[3] = 4);
    DPA(ATT_ERR_SHAPE, "batch", "key and value batch 1", f.k.shape.dims[0] = 1, f.v.shape.dims[0] = 1);
    DPA(ATT_ERR_SHAPE, "length|key|value", "value length 7, key 6", f.v.shape.dims[1] = 7);
    DPA(ATT_ERR_SHAPE, "output", "output (2,3,4,5)", f.out.shape.dims[3] = 5);
    DPA(ATT_ERR_SHAPE, "bias|broadcast", "bias (3,7)", f.args.bias = &f.bias, f.bias.shape = SHAPE(3, 7));
    DPA(ATT_ERR_SHAPE, "bias|broadcast", "bias (3,4,3,6) for batch 2", f.args.bias = &f.bias,
        f.bias.shape = SHAPE(3, 4, 3, 6));
    DPA(ATT_ERR_SHAPE, "bias|rank", "bias rank 5", f.args.bias = &f.bias, f.bias.shape = SHAPE(1, 2, 4, 3, 6));
    DPA(ATT_ERR_SHAPE, "mask|broadcast", "mask (3,5)", f.args.mask = &f.mask, f.mask.shape = SHAPE(3, 5));
    DPA(ATT_ERR_SHAPE, "mask|broadcast", "mask (2,3,3,6) for 4 heads", f.args.mask = &f.mask,
        f.mask.shape = SHAPE(2, 3, 3, 6));
    DPA(ATT_ERR_DTYPE, "mask|uint8|dtype", "float32 mask", f.args.mask = &f.mask, f.mask.dtype = ATT_FLOAT32,
        f.mask.data = g_buffers[5]);
    DPA(ATT_ERR_DTYPE, "bias|dtype", "float64 bias", f.args.bias = &f.bias, f.bias.dtype = ATT_FLOAT64);
    DPA(ATT_ERR_DTYPE, "bias|dtype", "uint8 bias", f.args.bias = &f.bias, f.bias.dtype = ATT_UINT8);
    DPA(ATT_ERR_DTYPE, "key|dtype", "float64 key", f.k.dtype = ATT_FLOAT64);
    DPA(ATT_ERR_DTYPE, "output|dtype", "float64 output", f.out.dtype = ATT_FLOAT64);
    DPA(ATT_ERR_DTYPE, "query|dtype", "uint8 query", f.q.dtype = ATT_UINT8, f.k.dtype = ATT_UINT8,
        f.v.dtype = ATT_UINT8, f.out.dtype = ATT_UINT8);
    DPA(ATT_ERR_DTYPE, "query|dtype", "query dtype 0", f.q.dtype = (att_dtype)0);
    DPA(ATT_ERR_SHAPE, "overflow|64 bits", "query of 2^64+ elements", f.q.shape.dims[0] = HUGE_DIM,
        f.q.shape.dims[1] = HUGE_DIM, f.k.shape.dims[0] = HUGE_DIM, f.v.shape.dims[0] = HUGE_DIM,
        f.out.shape.dims[0] = HUGE_DIM, f.out.shape.dims[1] = HUGE_DIM);
}

/* ---- NaN inputs ------------------------------------------------------------------------------- */

/* Checks that exactly the elements flagged in `nan_rows` (per row of `row` elements) are NaN. */
static void check_nan_rows(const char *what, const float *x, size_t rows, size_t row, const int *nan_rows) {
    size_t wrong = rows;
    for (size_t r = 0; r < rows && wrong == rows; r++)
        for (size_t e = 0; e < row; e++)
            if (nan_rows[r] ? !isnan(x[r * row + e]) : !isfinite(x[r * row + e])) wrong = r;
    check(wrong == rows, "%s: row %zu is %s", what, wrong, wrong < rows && nan_rows[wrong] ? "not NaN" : "not finite");
}

static void nan_inputs(void) {
    static float q[2 * 3 * 5], v[2 * 5 * 6], k[2 * 5 * 5], out[2 * 3 * 6], scores[2 * 2 * 3 * 5];
    uint64_t rng = 5;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) v[i] = (float)(next_u64(&rng) % 1000) / 1000;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) k[i] = (float)(next_u64(&rng) % 1000) / 1000;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = (float)(next_u64(&rng) % 1000) / 1000;
    q[0] = NAN; /* query (0, 0): output row (0, 0) only */
    const int query_row0[6] = {1, 0, 0, 0, 0, 0};
    att_tensor tq = {q, ATT_FLOAT32, SHAPE(2, 3, 5)}, tv = {v, ATT_FLOAT32, SHAPE(2, 5, 6)};
    att_tensor tk = {k, ATT_FLOAT32, SHAPE(2, 5, 5)}, to = {out, ATT_FLOAT32, SHAPE(2, 3, 6)};
    att_tensor ts = {scores, ATT_FLOAT32, SHAPE(2, 3, 5)};
    att_call_args args = {.struct_size = sizeof args, .query = &tq, .value = &tv, .key = &tk, .output = &to,
                          .scores = &ts};
    att_shape qs = tq.shape, vs = tv.shape, ks = tk.shape;
    att_attention_config acfg = {.struct_size = sizeof acfg};
    att_additive_attention_config dcfg = {.struct_size = sizeof dcfg};
    att_layer *layers[2] = {NULL, NULL};
    att_attention_create(&acfg, &layers[0]);
    att_additive_attention_create(&dcfg, &layers[1]);
    for (int i = 0; i < 2; i++) {
        const char *what = i ? "AdditiveAttention NaN query" : "Attention NaN query";
        expect(att_layer_build(layers[i], &qs, &vs, &ks), ATT_OK, "", what);
        expect(att_layer_call(layers[i], &args), ATT_OK, "", what);
        check_nan_rows(what, out, 6, 6, query_row0);
        check_nan_rows(what, scores, 6, 5, query_row0);
        att_layer_destroy(layers[i]);
    }

    att_multi_head_attention_config mcfg = {.struct_size = sizeof mcfg, .num_heads = 2, .key_dim = 3};
    att_layer *mha = NULL;
    att_multi_head_attention_create(&mcfg, &mha);
    expect(att_layer_build(mha, &qs, &vs, &ks), ATT_OK, "", "build MHA");
    to.shape = SHAPE(2, 3, 5);
    ts.shape = SHAPE(2, 2, 3, 5);
    expect(att_layer_call(mha, &args), ATT_OK, "", "MHA NaN query, scores");
    check_nan_rows("MHA NaN query, output", out, 6, 5, query_row0);
    const int scores_rows[12] = {1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}; /* (b, n, t) = (0, *, 0) */
    check_nan_rows("MHA NaN query, scores", scores, 12, 5, scores_rows);
    args.scores = NULL;
    expect(att_layer_call(mha, &args), ATT_OK, "", "MHA NaN query, fused");
    check_nan_rows("MHA NaN query, fused output", out, 6, 5, query_row0);
    q[0] = 1, v[6] = NAN; /* value (0, 1): every output of batch 0 */
    const int batch0[6] = {1, 1, 1, 0, 0, 0};
    expect(att_layer_call(mha, &args), ATT_OK, "", "MHA NaN value");
    check_nan_rows("MHA NaN value, output", out, 6, 5, batch0);
    att_layer_destroy(mha);

    /* dot_product_attention: query (0, 0, head 0) NaN -> output (0, 0, head 0) only. */
    q[0] = NAN;
    att_tensor dq = {q, ATT_FLOAT32, SHAPE(2, 3, 1, 5)}, dk = {k, ATT_FLOAT32, SHAPE(2, 5, 1, 5)};
    att_tensor dv = {k, ATT_FLOAT32, SHAPE(2, 5, 1, 5)}, dout = {out, ATT_FLOAT32, SHAPE(2, 3, 1, 5)};
    att_dot_product_attention_args dargs = {.struct_size = sizeof dargs, .query = &dq, .key = &dk, .value = &dv,
                                            .output = &dout};
    expect(att_dot_product_attention(&dargs), ATT_OK, "", "dpa NaN query");
    check_nan_rows("dpa NaN query", out, 6, 5, query_row0);
}

/* ---- threads and errors --------------------------------------------------------------------- */

static int fail_on_other_thread(void *message) {
    att_layer *layer = NULL;
    att_attention_create(NULL, &layer);
    snprintf(message, 256, "%s", att_last_error());
    return 0;
}

static void thread_and_error_state(void) {
    expect(att_set_num_threads(0), ATT_ERR_INVALID_ARGUMENT, "thread", "att_set_num_threads(0)");
    expect(att_set_num_threads(-1), ATT_ERR_INVALID_ARGUMENT, "thread", "att_set_num_threads(-1)");
    expect(att_set_num_threads(INT32_MIN), ATT_ERR_INVALID_ARGUMENT, "thread", "att_set_num_threads(INT32_MIN)");
    check(att_get_num_threads() >= 1, "att_get_num_threads() is %d after rejected settings", att_get_num_threads());

    /* The message stays until the next failure on this thread; other threads have their own. */
    char mine[256], theirs[256] = "";
    snprintf(mine, sizeof mine, "%s", att_last_error());
    att_version();
    att_get_num_threads();
    check(strcmp(att_last_error(), mine) == 0, "att_last_error() changed after successful calls: \"%s\"",
          att_last_error());
    thrd_t t;
    if (check(thrd_create(&t, fail_on_other_thread, theirs) == thrd_success, "thrd_create")) thrd_join(t, NULL);
    check(contains_any(theirs, "config"), "the other thread's message is \"%s\"", theirs);
    check(strcmp(att_last_error(), mine) == 0, "another thread's failure changed this thread's message to \"%s\"",
          att_last_error());
}

int main(int argc, char **argv) {
    for (size_t i = 0; i < BIG; i++) g_ones[i] = 1;
    static const test_group groups[] = {
        {"create", create_errors},
        {"handles", handle_errors},
        {"build", build_errors},
        {"weights", weight_errors},
        {"output_shape", output_shape_errors},
        {"Attention / AdditiveAttention call", luong_call_errors},
        {"MultiHeadAttention call", mha_call_errors},
        {"dot_product_attention", dpa_errors},
        {"NaN inputs", nan_inputs},
        {"threads and att_last_error", thread_and_error_state},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
