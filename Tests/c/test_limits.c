/*
 * test_limits.c — requests for more memory than the machine has are refused up front with
 * ATT_ERR_OUT_OF_MEMORY and a message giving the size, within a second, never a crash or a
 * kill by the OOM killer; sizes whose products overflow 64 bits are ATT_ERR_SHAPE.
 * Sizes are chosen from this machine's physical memory (sysconf), so the requests are just
 * over it (and far over it) but never overflow:
 *   - weights: one weight over physical memory, float32 and float64; several weights each
 *     under it whose store is over it; an orthogonal initializer whose working matrices are
 *     over it; AdditiveAttention's scale; key_dim 2^34;
 *   - call workspace: a projection (rows × heads·key_dim) and a materialised causal mask
 *     (T × S bytes) over physical memory, with inputs of a few MiB (calloc'd, never touched);
 *   - overflowing weight and input sizes;
 *   - a call whose heads are 1 GiB wide runs with scratch independent of the head width.
 * Prints `N passed, N failed`.
 */
#include "check.h"

#include <time.h>

static int64_t physical_memory(void) { return (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE); }

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Checks that a call returned `want` (message naming `about`) in under a second. */
static void expect_prompt(att_status got, double started, att_status want, const char *about, const char *what) {
    double elapsed = seconds() - started;
    expect(got, want, about, what);
    check(elapsed < 1.0, "%s: took %.2f s to refuse", what, elapsed);
}

static att_multi_head_attention_config mha_config(att_dtype dt, int64_t heads, int64_t key_dim) {
    att_multi_head_attention_config c = {.struct_size = sizeof c};
    c.dtype = dt;
    c.num_heads = heads;
    c.key_dim = key_dim;
    return c;
}

/* Builds a MultiHeadAttention of `c` for inputs (1, 2, dim) and expects `want`. */
static void build_mha(const att_multi_head_attention_config *c, int64_t dim, att_status want, const char *about,
                      const char *what) {
    att_layer *layer = NULL;
    expect(att_multi_head_attention_create(c, &layer), ATT_OK, "", what);
    att_shape q = SHAPE(1, 2, dim);
    double started = seconds();
    expect_prompt(att_layer_build(layer, &q, &q, NULL), started, want, about, what);
    int32_t built = 1;
    att_layer_is_built(layer, &built);
    check(!built, "%s: the layer counts as built after a refused build", what);
    expect(att_layer_destroy(layer), ATT_OK, "", what);
}

static void weights_over_physical_memory(void) {
    int64_t phys = physical_memory();
    const char *about = "physical memory";
    /* query/kernel (1, 1, K) alone is just over physical memory. */
    att_multi_head_attention_config c = mha_config(ATT_FLOAT32, 1, phys / 4 + 1);
    build_mha(&c, 1, ATT_ERR_OUT_OF_MEMORY, about, "one float32 weight over physical memory");
    c = mha_config(ATT_FLOAT64, 1, phys / 8 + 1);
    build_mha(&c, 1, ATT_ERR_OUT_OF_MEMORY, about, "one float64 weight over physical memory");
    /* Four kernels (1, 1, K), (K, 1, 1) of a third of physical memory each: the store is over it. */
    c = mha_config(ATT_FLOAT32, 1, phys / 12);
    build_mha(&c, 1, ATT_ERR_OUT_OF_MEMORY, "the weights", "weights each under physical memory, together over it");
    /* An orthogonal query kernel of phys/20 elements: 0.2 of memory as float32, but the QR
     * needs several float64 copies of it. */
    c = mha_config(ATT_FLOAT32, 1, phys / 20);
    c.kernel_initializer.kind = ATT_INIT_ORTHOGONAL;
    build_mha(&c, 1, ATT_ERR_OUT_OF_MEMORY, "orthogonal", "orthogonal initializer's working matrices");
    /* Far over: key_dim 2^34 with 16 query features (2^40 elements per kernel). */
    c = mha_config(ATT_FLOAT32, 1, (int64_t)1 << 34);
    build_mha(&c, 16, ATT_ERR_OUT_OF_MEMORY, "bytes", "key_dim 2^34");
    c = mha_config(ATT_FLOAT32, 1 << 18, (int64_t)1 << 20);
    build_mha(&c, 1 << 20, ATT_ERR_OUT_OF_MEMORY, "bytes", "2^58 elements per kernel");

    att_additive_attention_config a = {.struct_size = sizeof a, .dtype = ATT_FLOAT64};
    att_layer *layer = NULL;
    expect(att_additive_attention_create(&a, &layer), ATT_OK, "", "AdditiveAttention");
    att_shape q = SHAPE(1, 1, phys / 8 + 1);
    double started = seconds();
    expect_prompt(att_layer_build(layer, &q, &q, NULL), started, ATT_ERR_OUT_OF_MEMORY, about,
                  "AdditiveAttention scale over physical memory");
    expect(att_layer_destroy(layer), ATT_OK, "", "AdditiveAttention");
}

/* A call of a float32 layer whose output shape is `out` and whose inputs are q and v, with
 * buffers from calloc (mapped lazily: never touched, they cost no memory). */
static void call_refused(att_layer *layer, att_shape q, att_shape v, att_shape out, int causal, const char *about,
                         const char *what) {
    att_tensor tq = {calloc((size_t)numel(q), 4), ATT_FLOAT32, q};
    att_tensor tv = {calloc((size_t)numel(v), 4), ATT_FLOAT32, v};
    att_tensor to = {calloc((size_t)numel(out), 4), ATT_FLOAT32, out};
    if (!check(tq.data && tv.data && to.data, "%s: calloc failed", what)) return;
    att_call_args args = {.struct_size = sizeof args, .query = &tq, .value = &tv, .output = &to};
    args.use_causal_mask = causal;
    double started = seconds();
    expect_prompt(att_layer_call(layer, &args), started, ATT_ERR_OUT_OF_MEMORY, about, what);
    free(tq.data), free(tv.data), free(to.data);
}

static void workspace_over_physical_memory(void) {
    int64_t phys = physical_memory();
    /* Projected query: rows × 1 head × 2^20 floats, twice physical memory; weights 16 MiB. */
    att_multi_head_attention_config c = mha_config(ATT_FLOAT32, 1, (int64_t)1 << 20);
    att_layer *layer = NULL;
    expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "MultiHeadAttention key_dim 2^20");
    att_shape one = SHAPE(1, 1, 1);
    expect(att_layer_build(layer, &one, &one, NULL), ATT_OK, "", "build key_dim 2^20");
    int64_t rows = 2 * phys / ((int64_t)4 << 20) + 1;
    att_shape q = SHAPE(1, rows, 1);
    call_refused(layer, q, one, q, 0, "physical memory", "a projection over physical memory");
    expect(att_layer_destroy(layer), ATT_OK, "", "MultiHeadAttention key_dim 2^20");

    /* Attention over axes (1, 2) materialises the causal band (T × S bytes): just over memory. */
    c = mha_config(ATT_FLOAT32, 1, 1);
    expect(att_multi_head_attention_create(&c, &layer), ATT_OK, "", "MultiHeadAttention rank 4");
    att_shape small = SHAPE(1, 1, 1, 1);
    expect(att_layer_build(layer, &small, &small, NULL), ATT_OK, "", "build rank 4");
    int64_t t = (int64_t)sqrt((double)phys) + 2;
    att_shape big = SHAPE(1, t, 1, 1);
    call_refused(layer, big, big, big, 1, "physical memory", "a causal mask over physical memory");
    expect(att_layer_destroy(layer), ATT_OK, "", "MultiHeadAttention rank 4");
}

static void overflowing_sizes(void) {
    /* A kernel (2^32, 1, 2^32) of float32: 2^64 elements. */
    att_multi_head_attention_config c = mha_config(ATT_FLOAT32, 1, (int64_t)1 << 32);
    build_mha(&c, (int64_t)1 << 32, ATT_ERR_SHAPE, "64 bits", "a kernel of 2^64 elements");
    /* 2^62 elements fit, 2^62 float32 bytes (2^64) do not. */
    c = mha_config(ATT_FLOAT32, 1, (int64_t)1 << 31);
    build_mha(&c, (int64_t)1 << 31, ATT_ERR_SHAPE, "64 bits", "a kernel of 2^64 bytes");

    att_attention_config a = {.struct_size = sizeof a};
    att_layer *layer = NULL;
    expect(att_attention_create(&a, &layer), ATT_OK, "", "Attention");
    att_shape small = SHAPE(1, 1, 4);
    expect(att_layer_build(layer, &small, &small, NULL), ATT_OK, "", "build Attention");
    float x = 0, y = 0;
    att_tensor q = {&x, ATT_FLOAT32, SHAPE((int64_t)1 << 31, (int64_t)1 << 31, 4)};
    att_tensor v = {&y, ATT_FLOAT32, SHAPE((int64_t)1 << 31, 1, 4)};
    att_tensor out = {&x, ATT_FLOAT32, q.shape};
    att_call_args args = {.struct_size = sizeof args, .query = &q, .value = &v, .output = &out};
    double started = seconds();
    expect_prompt(att_layer_call(layer, &args), started, ATT_ERR_SHAPE, "64 bits", "a query of 2^64 bytes");
    expect(att_layer_destroy(layer), ATT_OK, "", "Attention");
}

/* Heads of 2^28 features (1 GiB of float32 per row, calloc'd zeros): a worker's packed key
 * tiles would be 32 GiB, so the kernel takes its row-by-row path, whose scratch does not grow
 * with the head dim. The logits are all 0, so the output is the mean of the values. */
static void wide_heads(void) {
    int64_t h = (int64_t)1 << 28;
    att_tensor q = {calloc((size_t)h, 4), ATT_FLOAT32, SHAPE(1, 1, 1, h)};
    att_tensor k = {calloc((size_t)(2 * h), 4), ATT_FLOAT32, SHAPE(1, 2, 1, h)};
    float values[2] = {1, 3}, out = 0;
    att_tensor v = {values, ATT_FLOAT32, SHAPE(1, 2, 1, 1)};
    att_tensor o = {&out, ATT_FLOAT32, SHAPE(1, 1, 1, 1)};
    if (check(q.data && k.data, "calloc of the 2^28-feature query and keys failed")) {
        att_dot_product_attention_args args = {.struct_size = sizeof args, .query = &q, .key = &k, .value = &v,
                                               .output = &o};
        expect(att_dot_product_attention(&args), ATT_OK, "", "dot_product_attention with head dim 2^28");
        check(out == 2, "dot_product_attention with head dim 2^28: output %g, want 2", out);
    }
    free(q.data), free(k.data);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"weights_over_physical_memory", weights_over_physical_memory},
        {"workspace_over_physical_memory", workspace_over_physical_memory},
        {"overflowing_sizes", overflowing_sizes},
        {"wide_heads", wide_heads},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
