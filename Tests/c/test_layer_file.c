/*
 * test_layer_file.c — att_layer_save / att_layer_load:
 *   - round trips of every layer kind (and configs that change the weights: gate,
 *     output_shape, N-D axes, reuse with a relative position bias, regularizers and
 *     constraints) in float32 and float64: same weight names, shapes and bytes, bit-identical
 *     outputs and scores, and a loaded layer saves the same bytes again;
 *   - every malformed-file path gets its status and a message, never a crash: unreadable
 *     files (missing, a directory, a FIFO), short files, an absurd or too large header length,
 *     truncated or trailing data, bad JSON, deep nesting, huge numbers, bad offsets and sizes,
 *     unknown or mismatched dtypes, unknown kinds, missing or extra tensors, weights that do
 *     not fit the config, configs with invalid values;
 *   - bad arguments: NULL path or out, invalid handle, unbuilt layer, unwritable path.
 * Prints `N passed, N failed`.
 */
#include "check.h"

#include <sys/stat.h>

static char g_dir[256];

static const char *tmp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/att_layer_file_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

/* The file's bytes (malloc'd) and length. */
static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    *size = (size_t)n;
    return p;
}

static void write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* ---- round trips ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int kind; /* 0 Attention, 1 Additive, 2 MHA, 3 GQA, 4 Reuse */
    int variant;
    int rank4, reuse_scores, heads;
} layer_case;

static const layer_case CASES[] = {
    {"Attention concat scale causal", 0, 1, 0, 0, 0}, {"Attention dot (no weights)", 0, 0, 0, 0, 0},
    {"AdditiveAttention", 1, 0, 0, 0, 0},             {"MultiHeadAttention gate output_shape options", 2, 1, 0, 0, 2},
    {"MultiHeadAttention 4-D axes", 2, 2, 1, 0, 2},   {"GroupQueryAttention gate", 3, 1, 0, 0, 4},
    {"ReuseMultiHeadAttention r=1 relative pe", 4, 1, 0, 1, 3},
    {"ReuseMultiHeadAttention r=-1 no bias", 4, 2, 0, 1, 2},
};

static att_layer *create(const layer_case *c, att_dtype dt) {
    att_layer *layer = NULL;
    att_status s = ATT_ERR_INTERNAL;
    att_initializer normal = {ATT_INIT_RANDOM_NORMAL, 0, 0.3};
    att_regularizer l2 = {ATT_REG_L2, 0, 0.01};
    att_constraint max_norm = {ATT_CONSTRAINT_MAX_NORM, 0, 2, 0, 0};
    switch (c->kind) {
    case 0: {
        att_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .use_scale = c->variant,
                                    .score_mode = c->variant ? ATT_SCORE_CONCAT : ATT_SCORE_DOT, .causal = c->variant};
        s = att_attention_create(&cfg, &layer);
        break;
    }
    case 1: {
        att_additive_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .dropout = 0.25,
                                             .seed = 3};
        s = att_additive_attention_create(&cfg, &layer);
        break;
    }
    case 2: {
        att_multi_head_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .num_heads = 2, .key_dim = 3,
                                               .no_bias = c->variant != 1, .seed = 4};
        if (c->variant == 1) {
            cfg.value_dim = 2, cfg.use_gate = 1, cfg.sliding_window = 3, cfg.output_rank = 2;
            cfg.output_shape[0] = 4, cfg.output_shape[1] = 2;
            cfg.kernel_initializer = normal, cfg.kernel_regularizer = l2, cfg.activity_regularizer = l2;
            cfg.bias_constraint = max_norm;
        } else {
            cfg.num_attention_axes = 2, cfg.attention_axes[0] = 1, cfg.attention_axes[1] = 2;
        }
        s = att_multi_head_attention_create(&cfg, &layer);
        break;
    }
    case 3: {
        att_group_query_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .head_dim = 2,
                                                .num_query_heads = 4, .num_key_value_heads = 2,
                                                .use_gate = 1, .seed = 5};
        s = att_group_query_attention_create(&cfg, &layer);
        break;
    }
    default: {
        att_reuse_multi_head_attention_config cfg = {.struct_size = sizeof cfg, .dtype = dt, .num_heads = c->heads,
                                                     .key_dim = 2, .seed = 6};
        if (c->variant == 1) cfg.reuse_attention = 1, cfg.use_relative_pe = 1, cfg.pe_max_seq_length = 7;
        else cfg.reuse_attention = -1, cfg.output_rank = 1, cfg.output_shape[0] = 5;
        s = att_reuse_multi_head_attention_create(&cfg, &layer);
        break;
    }
    }
    expect(s, ATT_OK, "", c->name);
    return layer;
}

/* Runs `layer` on fixed inputs of the case; out and scores receive the results. */
static void run(const layer_case *c, const att_layer *layer, att_dtype dt, att_tensor *out, att_tensor *scores) {
    att_shape qs = c->rank4 ? SHAPE(2, 2, 2, 6) : SHAPE(2, 4, 6), vs = c->rank4 ? SHAPE(2, 2, 3, 6) : SHAPE(2, 5, 6);
    uint64_t state = 11;
    double *qd = random_values(&state, (size_t)numel(qs), -1, 1, dt), *vd = random_values(&state, (size_t)numel(vs), -1, 1, dt);
    att_tensor q = new_tensor(dt, qs, qd), v = new_tensor(dt, vs, vd), reuse = {0};
    att_shape os, ss;
    expect(att_layer_output_shape(layer, &qs, &vs, NULL, &os, &ss), ATT_OK, "", c->name);
    *out = new_tensor(dt, os, NULL);
    *scores = new_tensor(dt, ss, NULL);
    att_call_args args = {.struct_size = sizeof args, .query = &q, .value = &v, .output = out, .scores = scores};
    if (c->reuse_scores) {
        double *rd = random_values(&state, (size_t)numel(ss), 0, 1, dt);
        reuse = new_tensor(dt, ss, rd);
        args.reuse_attention_scores = &reuse;
        free(rd);
    }
    expect(att_layer_call(layer, &args), ATT_OK, "", c->name);
    free(qd), free(vd), free(q.data), free(v.data), free(reuse.data);
}

static int same_bytes(const att_tensor *a, const att_tensor *b) {
    return same_shape(a->shape, b->shape) && memcmp(a->data, b->data, (size_t)numel(a->shape) * dtype_size(a->dtype)) == 0;
}

static void round_trips(void) {
    make_dir();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        for (att_dtype dt = ATT_FLOAT32; dt <= ATT_FLOAT64; dt++) {
            const layer_case *c = &CASES[i];
            char what[160];
            snprintf(what, sizeof what, "%s %s", c->name, dt == ATT_FLOAT32 ? "float32" : "float64");
            att_layer *layer = create(c, dt), *loaded = NULL;
            att_shape qs = c->rank4 ? SHAPE(2, 2, 2, 6) : SHAPE(2, 4, 6), vs = c->rank4 ? SHAPE(2, 2, 3, 6) : SHAPE(2, 5, 6);
            expect(att_layer_build(layer, &qs, &vs, NULL), ATT_OK, "", what);
            size_t count = 0, loaded_count = 99;
            att_layer_weight_count(layer, &count);
            uint64_t state = 7 + i;
            for (size_t w = 0; w < count; w++) { /* random weights: the file must carry them */
                att_shape s;
                att_layer_weight_info(layer, w, &s, NULL);
                double *d = random_values(&state, (size_t)numel(s), -1, 1, dt);
                att_tensor t = new_tensor(dt, s, d);
                expect(att_layer_set_weight(layer, w, &t), ATT_OK, "", what);
                free(d), free(t.data);
            }
            expect(att_layer_save(layer, tmp_path("a.safetensors")), ATT_OK, "", what);
            expect(att_layer_load(tmp_path("a.safetensors"), &loaded), ATT_OK, "", what);
            if (!loaded) continue;
            int32_t built = 0;
            att_layer_is_built(loaded, &built);
            att_layer_weight_count(loaded, &loaded_count);
            check(built && loaded_count == count, "%s: loaded layer built %d with %zu weights, want %zu", what, built,
                  loaded_count, count);
            for (size_t w = 0; w < count && w < loaded_count; w++) {
                att_shape s1, s2;
                const char *n1, *n2;
                att_layer_weight_info(layer, w, &s1, &n1);
                att_layer_weight_info(loaded, w, &s2, &n2);
                att_tensor t1 = new_tensor(dt, s1, NULL), t2 = new_tensor(dt, s1, NULL);
                att_layer_get_weight(layer, w, &t1);
                expect(att_layer_get_weight(loaded, w, &t2), ATT_OK, "", what);
                check(strcmp(n1, n2) == 0 && same_shape(s1, s2) && same_bytes(&t1, &t2),
                      "%s: weight %zu (%s) differs after loading", what, w, n1);
                free(t1.data), free(t2.data);
            }
            att_tensor o1, s1, o2, s2;
            run(c, layer, dt, &o1, &s1);
            run(c, loaded, dt, &o2, &s2);
            check(same_bytes(&o1, &o2) && same_bytes(&s1, &s2), "%s: outputs or scores differ after loading", what);
            /* a loaded layer saves the same file */
            expect(att_layer_save(loaded, tmp_path("b.safetensors")), ATT_OK, "", what);
            size_t na, nb;
            unsigned char *a = read_file(tmp_path("a.safetensors"), &na), *b = read_file(tmp_path("b.safetensors"), &nb);
            check(a && b && na == nb && memcmp(a, b, na) == 0, "%s: the loaded layer saves other bytes", what);
            /* the other dtype's inputs are refused as before */
            free(a), free(b), free(o1.data), free(s1.data), free(o2.data), free(s2.data);
            att_layer_destroy(layer), att_layer_destroy(loaded);
        }
    }
    remove(tmp_path("a.safetensors")), remove(tmp_path("b.safetensors")), rmdir(g_dir);
}

/* ---- malformed files ------------------------------------------------------------------- */

static unsigned char *g_valid;
static size_t g_valid_size, g_header_length;

/* A valid file to edit: AdditiveAttention float32 built for (2, 4, 6): one weight "scale" (6,)
 * at data_offsets [0, 24]. */
static void make_valid(void) {
    att_additive_attention_config cfg = {.struct_size = sizeof cfg, .dtype = ATT_FLOAT32};
    att_layer *layer;
    att_shape q = SHAPE(2, 4, 6);
    expect(att_additive_attention_create(&cfg, &layer), ATT_OK, "", "create");
    expect(att_layer_build(layer, &q, &q, NULL), ATT_OK, "", "build");
    expect(att_layer_save(layer, tmp_path("valid.safetensors")), ATT_OK, "", "save");
    att_layer_destroy(layer);
    g_valid = read_file(tmp_path("valid.safetensors"), &g_valid_size);
    memcpy(&g_header_length, g_valid, 8);
}

/* Writes the valid file with `from` replaced by `to` in its header (the length fixed up),
 * with `length` (when not 0) as the stored header length and `data_delta` bytes of data cut
 * (< 0) or added (> 0), then loads it and expects `want` with a message naming `about`. */
static void bad_file(const char *what, const char *from, const char *to, uint64_t length, long data_delta,
                     att_status want, const char *about) {
    const char *header = (const char *)g_valid + 8;
    const char *at = from ? strstr(header, from) : NULL;
    if (from && (!at || at >= header + g_header_length)) {
        check(0, "%s: test setup: \"%s\" is not in the header", what, from);
        return;
    }
    size_t to_len = to ? strlen(to) : 0, from_len = from ? strlen(from) : 0;
    size_t new_header = g_header_length - from_len + to_len;
    size_t data = g_valid_size - 8 - g_header_length;
    size_t size = 8 + new_header + data + (data_delta > 0 ? (size_t)data_delta : 0);
    unsigned char *file = calloc(1, size + 1);
    uint64_t stored = length ? length : new_header;
    memcpy(file, &stored, 8);
    size_t before = at ? (size_t)(at - header) : g_header_length;
    memcpy(file + 8, header, before);
    if (at) {
        memcpy(file + 8 + before, to, to_len);
        memcpy(file + 8 + before + to_len, at + from_len, g_header_length - before - from_len);
    }
    memcpy(file + 8 + new_header, g_valid + 8 + g_header_length, data);
    if (data_delta < 0) size -= (size_t)-data_delta;
    write_file(tmp_path("bad.safetensors"), file, size);
    free(file);
    att_layer *out = (att_layer *)&g_valid; /* must stay untouched on failure */
    expect(att_layer_load(tmp_path("bad.safetensors"), &out), want, about, what);
    check(out == (att_layer *)&g_valid, "%s: *out was changed by a failed load", what);
}

static void raw_file(const char *what, const void *bytes, size_t size, att_status want, const char *about) {
    write_file(tmp_path("bad.safetensors"), bytes, size);
    att_layer *out = NULL;
    expect(att_layer_load(tmp_path("bad.safetensors"), &out), want, about, what);
}

static void malformed(void) {
    make_dir();
    make_valid();
    att_layer *out = NULL;
    expect(att_layer_load(tmp_path("valid.safetensors"), &out), ATT_OK, "", "the valid file");
    att_layer_destroy(out);
    const att_status I = ATT_ERR_INVALID_ARGUMENT;
    raw_file("an empty file", "", 0, I, "shorter");
    raw_file("a 3-byte file", "abc", 3, I, "shorter");
    bad_file("header length 2^63", NULL, NULL, (uint64_t)1 << 63, 0, I, "limit");
    bad_file("header length 100 000 001", NULL, NULL, 100000001, 0, I, "limit");
    bad_file("header length beyond the file", NULL, NULL, 100000, 0, I, "truncated");
    bad_file("data cut short", NULL, NULL, 0, -4, I, "truncated");
    bad_file("trailing data", NULL, NULL, 0, 8, I, "after the last");
    bad_file("bad JSON", "{\"__metadata__\"", "{\"__metadata__\" [", 0, 0, I, "JSON");
    bad_file("a header that is an array", "{\"__metadata__\": {", "[{\"__metadata__\": {", 0, 0, I, "JSON");
    bad_file("an unterminated string", "\"scale\": {", "\"scale: {", 0, 0, I, "JSON");
    bad_file("a raw control character", "\"scale\": {", "\"sc\001ale\": {", 0, 0, I, "control");
    bad_file("a lone surrogate", "\"scale\": {", "\"\\ud800\": {", 0, 0, I, "surrogate");
    bad_file("a duplicate key", "\"scale\": {", "\"__metadata__\": {}, \"scale\": {", 0, 0, I, "duplicate");
    bad_file("NaN", "\"data_offsets\": [0, 24]", "\"data_offsets\": [0, NaN]", 0, 0, I, "JSON");
    bad_file("a huge offset", "[0, 24]", "[0, 99999999999999999999999]", 0, 0, I, "64 bits");
    bad_file("a 100-digit number", "[0, 24]", "[0, 1" "000000000000000000000000000000000000000000000000000000000"
             "00000000000000000000000000000000000000000000]", 0, 0, I, "longer");
    bad_file("a negative offset", "[0, 24]", "[-4, 20]", 0, 0, I, "begin");
    bad_file("reversed offsets", "[0, 24]", "[24, 0]", 0, 0, I, "begin");
    bad_file("size not shape x dtype", "[0, 24]", "[0, 20]", 0, 0, I, "bytes");
    bad_file("offsets past the data", "[0, 24]", "[4, 28]", 0, 0, I, "gap");
    bad_file("a shape whose size overflows", "\"shape\": [6]", "\"shape\": [4294967296, 4294967296]", 0, 0, I,
             "64 bits");
    bad_file("overlapping tensors", "\"scale\": {",
             "\"other\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]}, \"scale\": {", 0, 0, I,
             "overlap");
    bad_file("an extra key in a tensor", "\"dtype\": \"F32\"", "\"dtype\": \"F32\", \"x\": 1", 0, 0, I, "unknown");
    bad_file("an unknown dtype", "\"F32\"", "\"Q7\"", 0, 0, ATT_ERR_DTYPE, "unknown dtype");
    bad_file("a BF16 tensor", "\"F32\", \"shape\": [6]", "\"BF16\", \"shape\": [12]", 0, 0, ATT_ERR_DTYPE, "BF16");
    bad_file("an F64 tensor in a float32 layer", "\"F32\", \"shape\": [6]", "\"F64\", \"shape\": [3]", 0, 0,
             ATT_ERR_DTYPE, "dtype");
    bad_file("a float64 config with an F32 tensor", "\\\"dtype\\\": \\\"float32\\\"", "\\\"dtype\\\": \\\"float64\\\"",
             0, 0, ATT_ERR_DTYPE, "dtype");
    bad_file("no metadata (read as a tensor)", "\"__metadata__\"", "\"__metadatum\"", 0, 0, I, "dtype");
    bad_file("another format", "libattention-layer-1", "libattention-layer-2", 0, 0, I, "format");
    bad_file("metadata not a string", "\"format\": \"libattention-layer-1\"", "\"format\": 1", 0, 0, I, "string");
    bad_file("an unknown kind", "\"AdditiveAttention\"", "\"Conv2D\"", 0, 0, I, "unknown layer kind");
    bad_file("a config that is not JSON", "\"config\": \"{", "\"config\": \"{{", 0, 0, I, "JSON");
    bad_file("an unknown config key", "\\\"use_scale\\\"", "\\\"colour\\\": 1, \\\"use_scale\\\"", 0, 0, I, "colour");
    bad_file("dropout 2", "\\\"dropout\\\": 0.0", "\\\"dropout\\\": 2.0", 0, 0, I, "dropout");
    bad_file("dropout 1e999", "\\\"dropout\\\": 0.0", "\\\"dropout\\\": 1e999", 0, 0, I, "range");
    bad_file("a seed of 2^64", "\\\"seed\\\": 0", "\\\"seed\\\": 18446744073709551616", 0, 0, I, "seed");
    bad_file("use_scale not a boolean", "\\\"use_scale\\\": true", "\\\"use_scale\\\": 1", 0, 0, I, "true or false");
    bad_file("weights that do not fit the config", "\\\"use_scale\\\": true", "\\\"use_scale\\\": false", 0, 0, I,
             "do not fit");
    bad_file("a tensor not listed", "\"weights\": \"[\\\"scale\\\"]\"", "\"weights\": \"[]\"", 0, 0, I, "not weights");
    bad_file("a listed weight missing", "\"weights\": \"[\\\"scale\\\"]\"",
             "\"weights\": \"[\\\"scale\\\", \\\"bias\\\"]\"", 0, 0, I, "no such tensor");
    bad_file("a weight listed twice", "\"weights\": \"[\\\"scale\\\"]\"",
             "\"weights\": \"[\\\"scale\\\", \\\"scale\\\"]\"", 0, 0, I, "twice");
    bad_file("no build shapes", "\"build_shapes\"", "\"build_shape\"", 0, 0, I, "build_shapes");
    bad_file("a build shape of rank 10", "[[2, 4, 6]", "[[1, 1, 1, 1, 1, 1, 1, 2, 4, 6]", 0, 0, ATT_ERR_SHAPE, "rank");
    bad_file("a weight shape other than the build's", "[[2, 4, 6], [2, 4, 6]", "[[2, 4, 5], [2, 4, 5]", 0, 0,
             ATT_ERR_SHAPE, "shape");
    bad_file("build shapes that do not fit", "[[2, 4, 6], [2, 4, 6]", "[[2, 4, 6], [3, 4, 6, 1]", 0, 0,
             ATT_ERR_SHAPE, "rank|shape");
    /* nesting 100 000 deep: refused at depth 64, no stack overflow */
    size_t deep = 100000, size = 8 + 2 * deep;
    unsigned char *nested = malloc(size);
    uint64_t n = 2 * deep;
    memcpy(nested, &n, 8);
    memset(nested + 8, '[', deep);
    memset(nested + 8 + deep, ']', deep);
    raw_file("JSON nested 100 000 deep", nested, size, I, "deeper");
    free(nested);
    /* unreadable paths */
    expect(att_layer_load(tmp_path("missing.safetensors"), &out), ATT_ERR_IO, "no such file", "a missing file");
    expect(att_layer_load(g_dir, &out), ATT_ERR_IO, "regular", "a directory");
    if (mkfifo(tmp_path("fifo"), 0600) == 0) {
        expect(att_layer_load(tmp_path("fifo"), &out), ATT_ERR_IO, "regular", "a FIFO (must not block)");
        remove(tmp_path("fifo"));
    }
    free(g_valid);
    remove(tmp_path("valid.safetensors")), remove(tmp_path("bad.safetensors")), rmdir(g_dir);
}

/* ---- arguments ------------------------------------------------------------------------- */

static void arguments(void) {
    make_dir();
    att_layer *layer = NULL, *out = NULL;
    att_multi_head_attention_config cfg = {.struct_size = sizeof cfg, .num_heads = 1, .key_dim = 2};
    expect(att_multi_head_attention_create(&cfg, &layer), ATT_OK, "", "create");
    expect(att_layer_save(layer, tmp_path("x.safetensors")), ATT_ERR_NOT_BUILT, "build", "save before build");
    att_shape q = SHAPE(1, 2, 3);
    expect(att_layer_build(layer, &q, &q, NULL), ATT_OK, "", "build");
    expect(att_layer_save(layer, NULL), ATT_ERR_NULL_ARGUMENT, "path", "save to NULL");
    expect(att_layer_save(NULL, tmp_path("x.safetensors")), ATT_ERR_INVALID_HANDLE, "handle", "save of NULL");
    expect(att_layer_save(layer, "/nonexistent-dir/x.safetensors"), ATT_ERR_IO, "nonexistent-dir", "save to a missing dir");
    expect(att_layer_save(layer, g_dir), ATT_ERR_IO, "cannot", "save over a directory");
    expect(att_layer_load(NULL, &out), ATT_ERR_NULL_ARGUMENT, "path", "load of NULL");
    expect(att_layer_save(layer, tmp_path("x.safetensors")), ATT_OK, "", "save");
    expect(att_layer_load(tmp_path("x.safetensors"), NULL), ATT_ERR_NULL_ARGUMENT, "out", "load into NULL");
    /* a failed rebuild keeps the old weights and shapes: the layer still saves */
    att_shape bad = SHAPE(1, 2);
    expect(att_layer_build(layer, &bad, &bad, NULL), ATT_ERR_SHAPE, "rank|shape", "a refused rebuild");
    expect(att_layer_save(layer, tmp_path("x.safetensors")), ATT_OK, "", "save after a refused rebuild");
    att_layer_destroy(layer);
    expect(att_layer_save(layer, tmp_path("x.safetensors")), ATT_ERR_INVALID_HANDLE, "handle", "save of a destroyed layer");
    remove(tmp_path("x.safetensors")), rmdir(g_dir);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"round_trips", round_trips},
        {"malformed", malformed},
        {"arguments", arguments},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
