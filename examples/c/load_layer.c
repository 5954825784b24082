/*
 * load_layer.c — run a layer saved as a layer file (Python: layer.save(path), e.g. after
 * attention.from_keras(keras_layer); C: att_layer_save) with no Python in the process.
 *
 *   load_layer LAYER_FILE [--shapes QUERY VALUE [KEY]] [--inputs FILE] [--output FILE] [--scores FILE]
 *
 * Inputs are generated deterministically for --shapes (dims joined by x, e.g. 2x8x16), or read
 * from --inputs, a file of records: a tag byte ('q' query, 'v' value, 'k' key, 'Q' query_mask,
 * 'V' value_mask, 'K' key_mask, 'A' attention_mask, 'R' reuse_attention_scores, 'c'
 * use_causal_mask), an att_dtype byte, an int32 rank, rank int64 dims, then the row-major
 * data (native byte order; 'c' is a rank-0 uint8). Prints the output's shape and statistics;
 * --output / --scores write the output / the attention scores as raw row-major data.
 * Without arguments it saves a small MultiHeadAttention to $TMPDIR (or /tmp)/
 * load_layer_demo.safetensors and runs that.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attention.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        att_status s_ = (call);                                                                    \
        if (s_ != ATT_OK) {                                                                        \
            fprintf(stderr, "%s: %s (%s)\n", #call, att_last_error(), att_status_name(s_));        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { QUERY, VALUE, KEY, QUERY_MASK, VALUE_MASK, KEY_MASK, ATTENTION_MASK, REUSE_SCORES, SLOTS };
static const char tags[] = "qvkQVKAR";

typedef struct {
    att_tensor t[SLOTS];
    int present[SLOTS];
    int causal;
} inputs;

static size_t element_size(att_dtype d) { return d == ATT_FLOAT64 ? 8 : d == ATT_FLOAT32 ? 4 : 1; }

static size_t element_count(const att_shape *s) {
    size_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= (size_t)s->dims[i];
    return n;
}

static void *read_exactly(FILE *f, size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p || fread(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "load_layer: cannot read %s from the inputs file\n", what);
        exit(1);
    }
    return p;
}

static void read_inputs(const char *path, inputs *in) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    int tag;
    while ((tag = fgetc(f)) != EOF) {
        uint8_t dtype;
        int32_t rank;
        att_shape shape = {0};
        if (fread(&dtype, 1, 1, f) != 1 || fread(&rank, 4, 1, f) != 1 || rank < 0 || rank > ATT_MAX_RANK ||
            fread(shape.dims, 8, (size_t)rank, f) != (size_t)rank) {
            fprintf(stderr, "load_layer: bad record header in %s\n", path);
            exit(1);
        }
        shape.rank = rank;
        void *data = read_exactly(f, element_count(&shape) * element_size((att_dtype)dtype), "a record's data");
        if (tag == 'c') {
            in->causal = *(uint8_t *)data != 0;
            free(data);
            continue;
        }
        const char *slot = strchr(tags, tag);
        if (!slot || tag == 0) { fprintf(stderr, "load_layer: unknown record tag %d\n", tag); exit(1); }
        in->t[slot - tags] = (att_tensor){data, (att_dtype)dtype, shape};
        in->present[slot - tags] = 1;
    }
    fclose(f);
}

static int parse_shape(const char *text, att_shape *s) {
    memset(s, 0, sizeof *s);
    for (const char *p = text; *p && s->rank < ATT_MAX_RANK; s->rank++) {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 1) return 0;
        s->dims[s->rank] = d;
        p = *end == 'x' ? end + 1 : end;
        if (*end && *end != 'x') return 0;
    }
    return s->rank > 0;
}

/* Deterministic values in [-1, 1) (a linear congruential sequence), in `dtype`. */
static void *generate(const att_shape *s, att_dtype dtype, uint32_t seed) {
    size_t n = element_count(s);
    void *p = malloc(n * element_size(dtype));
    if (!p) { perror("malloc"); exit(1); }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        double v = (seed >> 8) * 0x1p-23 - 1.0;
        if (dtype == ATT_FLOAT32) ((float *)p)[i] = (float)v;
        else ((double *)p)[i] = v;
    }
    return p;
}

/* Runs the layer; returns the status (ATT_ERR_DTYPE when the inputs' dtype is not the layer's). */
static att_status run(const att_layer *layer, inputs *in, att_tensor *output, att_tensor *scores, int want_scores) {
    att_shape out_shape, scores_shape;
    att_status s = att_layer_output_shape(layer, &in->t[QUERY].shape, &in->t[VALUE].shape,
                                          in->present[KEY] ? &in->t[KEY].shape : NULL, &out_shape, &scores_shape);
    if (s != ATT_OK) return s;
    att_dtype dtype = in->t[QUERY].dtype;
    *output = (att_tensor){malloc(element_count(&out_shape) * element_size(dtype)), dtype, out_shape};
    *scores = (att_tensor){want_scores ? malloc(element_count(&scores_shape) * element_size(dtype)) : NULL, dtype,
                           scores_shape};
    att_call_args args = {.struct_size = sizeof args};
    const att_tensor **fields[SLOTS] = {&args.query, &args.value, &args.key, &args.query_mask, &args.value_mask,
                                        &args.key_mask, &args.attention_mask, &args.reuse_attention_scores};
    for (int i = 0; i < SLOTS; i++) *fields[i] = in->present[i] ? &in->t[i] : NULL;
    args.use_causal_mask = in->causal;
    args.output = output;
    args.scores = want_scores ? scores : NULL;
    s = att_layer_call(layer, &args);
    if (s != ATT_OK) {
        free(output->data);
        free(scores->data);
    }
    return s;
}

static void write_raw(const char *path, const att_tensor *t) {
    FILE *f = fopen(path, "wb");
    size_t bytes = element_count(&t->shape) * element_size(t->dtype);
    if (!f || fwrite(t->data, 1, bytes, f) != bytes || fclose(f) != 0) { perror(path); exit(1); }
}

/* A small MultiHeadAttention saved to `path`, for a run without arguments. */
static void save_demo(const char *path) {
    att_multi_head_attention_config cfg = {.struct_size = sizeof cfg};
    cfg.num_heads = 2;
    cfg.key_dim = 4;
    cfg.seed = 7;
    att_layer *layer;
    att_shape shape = {3, {2, 6, 8}};
    CHECK(att_multi_head_attention_create(&cfg, &layer));
    CHECK(att_layer_build(layer, &shape, &shape, NULL));
    CHECK(att_layer_save(layer, path));
    CHECK(att_layer_destroy(layer));
    printf("saved a MultiHeadAttention(num_heads=2, key_dim=4) built for (2, 6, 8) to %s\n", path);
}

int main(int argc, char **argv) {
    const char *file = NULL, *inputs_path = NULL, *output_path = NULL, *scores_path = NULL;
    char demo_path[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(demo_path, sizeof demo_path, "%s/load_layer_demo.safetensors", tmp && *tmp ? tmp : "/tmp");
    char *demo_argv[] = {argv[0], demo_path, "--shapes", "2x6x8", "2x6x8", NULL};
    if (argc == 1) {
        save_demo(demo_argv[1]);
        argc = 5;
        argv = demo_argv;
    }
    inputs in = {0};
    int shapes = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--inputs") && i + 1 < argc) inputs_path = argv[++i];
        else if (!strcmp(argv[i], "--output") && i + 1 < argc) output_path = argv[++i];
        else if (!strcmp(argv[i], "--scores") && i + 1 < argc) scores_path = argv[++i];
        else if (!strcmp(argv[i], "--shapes")) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && shapes < 3) {
                if (!parse_shape(argv[++i], &in.t[shapes].shape)) {
                    fprintf(stderr, "load_layer: bad shape %s (want dims joined by x, e.g. 2x8x16)\n", argv[i]);
                    return 2;
                }
                in.present[shapes++] = 1;
            }
        } else if (!file && argv[i][0] != '-') file = argv[i];
        else {
            fprintf(stderr, "usage: %s LAYER_FILE [--shapes QUERY VALUE [KEY]] [--inputs FILE] [--output FILE] "
                            "[--scores FILE]\n", argv[0]);
            return 2;
        }
    }
    if (!file || (!inputs_path && shapes < 2)) {
        fprintf(stderr, "load_layer: give a layer file and --shapes QUERY VALUE [KEY] or --inputs FILE\n");
        return 2;
    }
    att_layer *layer;
    CHECK(att_layer_load(file, &layer));
    size_t weights = 0;
    CHECK(att_layer_weight_count(layer, &weights));
    printf("loaded %s: %zu weights", file, weights);
    for (size_t i = 0; i < weights; i++) {
        const char *name;
        att_shape shape;
        CHECK(att_layer_weight_info(layer, i, &shape, &name));
        printf("%s %s", i ? "," : ":", name);
    }
    printf("\n");

    att_tensor output, scores;
    att_status s;
    if (inputs_path) {
        read_inputs(inputs_path, &in);
        s = run(layer, &in, &output, &scores, scores_path != NULL);
    } else {
        /* The API has no dtype query: a call in the wrong dtype is refused (ATT_ERR_DTYPE),
         * having done nothing, so try float32, then float64. */
        s = ATT_ERR_DTYPE;
        for (att_dtype dtype = ATT_FLOAT32; s == ATT_ERR_DTYPE && dtype <= ATT_FLOAT64; dtype++) {
            for (int i = 0; i < shapes; i++) {
                free(in.t[i].data);
                in.t[i].dtype = dtype;
                in.t[i].data = generate(&in.t[i].shape, dtype, 1234u + (uint32_t)i);
            }
            s = run(layer, &in, &output, &scores, scores_path != NULL);
        }
    }
    if (s != ATT_OK) {
        fprintf(stderr, "att_layer_call: %s (%s)\n", att_last_error(), att_status_name(s));
        return 1;
    }
    size_t n = element_count(&output.shape);
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v = output.dtype == ATT_FLOAT32 ? ((float *)output.data)[i] : ((double *)output.data)[i];
        sum += v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    printf("output %s (", output.dtype == ATT_FLOAT32 ? "float32" : "float64");
    for (int i = 0; i < output.shape.rank; i++) printf("%s%lld", i ? ", " : "", (long long)output.shape.dims[i]);
    printf("): mean %.9g, min %.9g, max %.9g\n", sum / (double)n, lo, hi);
    if (output_path) write_raw(output_path, &output);
    if (scores_path) write_raw(scores_path, &scores);
    free(output.data);
    free(scores.data);
    for (int i = 0; i < SLOTS; i++) free(in.t[i].data);
    CHECK(att_layer_destroy(layer));
    return 0;
}
