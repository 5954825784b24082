/*
 * test_leaks.c — 100 000 cycles of create, build, forward (with and without scores, dropout,
 * masks), a refused call (its error message) and destroy, over every layer kind and
 * att_dot_product_attention, leave resident memory flat: sampled from /proc/self/statm every
 * 10 000 cycles, it may not grow by more than 512 KiB after the first sample. Under
 * AddressSanitizer (whose quarantine holds freed memory, so resident memory grows by design)
 * the samples are printed but not bounded: LeakSanitizer checks the leaks at exit instead.
 * Prints `N passed, N failed`.
 */
#include "check.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#endif

enum { CYCLES = 100000, SAMPLE_EVERY = 10000, KINDS = 6 };
#define GROWTH_LIMIT (512L << 10) /* bytes */

/* Resident memory of this process in bytes. */
static long resident_bytes(void) {
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    if (f) fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* Shared inputs: query (2, 4, 8), value (2, 6, 8), masks, and room for any output. */
typedef struct {
    float q[64], v[96], out[64], scores[256], reuse[48];
    uint8_t value_mask[12];
} buffers;

/* Creates a layer of `kind` (0-4; cycle i picks variants), or returns NULL for kind 5. */
static att_status create(int kind, int i, att_layer **layer) {
    *layer = NULL;
    switch (kind) {
    case 0: {
        att_attention_config c = {.struct_size = sizeof c, .use_scale = i & 1, .score_mode = (i >> 1) & 1,
                                  .dropout = 0.25, .causal = (i >> 2) & 1};
        return att_attention_create(&c, layer);
    }
    case 1: {
        att_additive_attention_config c = {.struct_size = sizeof c, .dtype = i & 1 ? ATT_FLOAT64 : ATT_FLOAT32,
                                           .dropout = 0.1, .seed = (uint64_t)i};
        return att_additive_attention_create(&c, layer);
    }
    case 2: {
        att_multi_head_attention_config c = {.struct_size = sizeof c, .num_heads = 2, .key_dim = 4,
                                             .use_gate = i & 1, .dropout = 0.1, .seed = (uint64_t)i};
        c.kernel_initializer.kind = (i >> 1) & 1 ? ATT_INIT_ORTHOGONAL : ATT_INIT_DEFAULT;
        return att_multi_head_attention_create(&c, layer);
    }
    case 3: {
        att_group_query_attention_config c = {.struct_size = sizeof c, .head_dim = 4, .num_query_heads = 4,
                                              .num_key_value_heads = 2, .sliding_window = 3,
                                              .seed = (uint64_t)i};
        return att_group_query_attention_create(&c, layer);
    }
    case 4: {
        att_reuse_multi_head_attention_config c = {.struct_size = sizeof c, .num_heads = 2, .key_dim = 4,
                                                   .reuse_attention = 1, .use_relative_pe = 1,
                                                   .pe_max_seq_length = 4, .seed = (uint64_t)i};
        return att_reuse_multi_head_attention_create(&c, layer);
    }
    default:
        return ATT_OK;
    }
}

/* One cycle: create, build, call (scores on odd cycles, training on every third), a refused
 * call, destroy. The number of calls that did not return what they should. */
static int cycle(int i, buffers *b) {
    int kind = i % KINDS, failed = 0;
    att_dtype dt = kind == 1 && (i / KINDS) & 1 ? ATT_FLOAT64 : ATT_FLOAT32;
    att_layer *layer = NULL;
    failed += create(kind, i / KINDS, &layer) != ATT_OK;
    double q64[64] = {0}, v64[96] = {0};
    for (int j = 0; j < 64; j++) q64[j] = b->q[j];
    for (int j = 0; j < 96; j++) v64[j] = b->v[j];
    void *q = dt == ATT_FLOAT64 ? (void *)q64 : (void *)b->q, *v = dt == ATT_FLOAT64 ? (void *)v64 : (void *)b->v;
    double out64[64], scores64[256];
    void *out = dt == ATT_FLOAT64 ? (void *)out64 : (void *)b->out;
    void *scores = dt == ATT_FLOAT64 ? (void *)scores64 : (void *)b->scores;
    if (kind == 5) {
        att_tensor tq = {q, dt, SHAPE(2, 4, 2, 4)}, tk = {v, dt, SHAPE(2, 6, 2, 4)}, to = {out, dt, tq.shape};
        att_tensor mask = {b->value_mask, ATT_UINT8, SHAPE(2, 1, 1, 6)};
        att_dot_product_attention_args a = {.struct_size = sizeof a, .query = &tq, .key = &tk, .value = &tk,
                                            .mask = i & 1 ? &mask : NULL, .is_causal = (i >> 1) & 1, .output = &to};
        failed += att_dot_product_attention(&a) != ATT_OK;
        to.shape.dims[3] = 5;
        failed += att_dot_product_attention(&a) != ATT_ERR_SHAPE;
        return failed;
    }
    att_shape qs = SHAPE(2, 4, 8), vs = SHAPE(2, 6, 8), out_shape, scores_shape;
    failed += att_layer_build(layer, &qs, &vs, NULL) != ATT_OK;
    failed += att_layer_output_shape(layer, &qs, &vs, NULL, &out_shape, &scores_shape) != ATT_OK;
    att_tensor tq = {q, dt, qs}, tv = {v, dt, vs}, to = {out, dt, out_shape}, ts = {scores, dt, scores_shape};
    att_tensor reuse = {b->reuse, ATT_FLOAT32, SHAPE(2, 1, 4, 6)};
    att_tensor value_mask = {b->value_mask, ATT_UINT8, SHAPE(2, 6)};
    att_call_args a = {.struct_size = sizeof a, .query = &tq, .value = &tv, .output = &to};
    a.scores = i & 1 ? &ts : NULL;
    a.training = i % 3 == 0;
    a.dropout_seed = (uint64_t)i;
    a.value_mask = kind != 4 && (i & 2) ? &value_mask : NULL;
    a.reuse_attention_scores = kind == 4 ? &reuse : NULL;
    failed += att_layer_call(layer, &a) != ATT_OK;
    to.shape.dims[1] = 5;
    failed += att_layer_call(layer, &a) != ATT_ERR_SHAPE;
    failed += att_layer_destroy(layer) != ATT_OK;
    return failed;
}

static void cycles_keep_memory_flat(void) {
    static buffers b;
    uint64_t rng = 7;
    for (int j = 0; j < 64; j++) b.q[j] = (float)((double)(next_u64(&rng) >> 11) * 0x1p-53 - 0.5);
    for (int j = 0; j < 96; j++) b.v[j] = (float)((double)(next_u64(&rng) >> 11) * 0x1p-53 - 0.5);
    for (int j = 0; j < 48; j++) b.reuse[j] = 1.0f / 6;
    for (int j = 0; j < 12; j++) b.value_mask[j] = j % 4 != 0;
    long samples[CYCLES / SAMPLE_EVERY], failed = 0;
    for (int i = 0; i < CYCLES; i++) {
        failed += cycle(i, &b);
        if ((i + 1) % SAMPLE_EVERY == 0) samples[i / SAMPLE_EVERY] = resident_bytes();
    }
    check(failed == 0, "%ld calls of %d cycles did not return the expected status", failed, CYCLES);
    long most = samples[0];
    printf("  resident memory after each 10 000 cycles (KiB):");
    for (int s = 0; s < CYCLES / SAMPLE_EVERY; s++) {
        printf(" %ld", samples[s] >> 10);
        if (samples[s] > most) most = samples[s];
    }
    printf("\n  growth after the first sample: %ld KiB\n", (most - samples[0]) >> 10);
#ifndef UNDER_ASAN
    check(samples[0] > 0 && most - samples[0] < GROWTH_LIMIT,
          "resident memory grew by %ld KiB over cycles 10 000 .. %d (limit %ld KiB)", (most - samples[0]) >> 10,
          CYCLES, GROWTH_LIMIT >> 10);
#endif
}

int main(int argc, char **argv) {
    static const test_group groups[] = {{"cycles_keep_memory_flat", cycles_keep_memory_flat}};
    return run_groups(argc, argv, groups, 1);
}
