/*
 * attention.h — libattention: the attention layers of Keras, from C.
 *
 * SYNOPSIS
 *   #include <attention.h>
 *   cc prog.c -I include -L .build/release -lattention
 *
 * DESCRIPTION
 *   libattention computes the attention layers of Keras 3 — Attention (Luong, dot or concat
 *   scores), AdditiveAttention (Bahdanau), MultiHeadAttention (N-D attention axes),
 *   GroupQueryAttention — TF Model Garden's ReuseMultiHeadAttention, and the functional
 *   keras.ops.dot_product_attention, with Keras's weights and Keras's numbers
 *   (float32: within 1e-5 absolute + 1e-4 relative to the largest magnitude; float64: 1e-10),
 *   without a deep-learning framework in the process.
 *
 *   A layer is an opaque handle. Its life:
 *     att_attention_create(&cfg, &layer)          (or another *_create)
 *     att_layer_build(layer, &q_shape, &v_shape, NULL)   creates and initialises weights
 *     att_layer_set_weight(layer, i, &w) ...      optional: load Keras's get_weights()
 *     att_layer_call(layer, &args)                as often as wanted, from any thread
 *     att_layer_backward(layer, &args, &grads)    training: gradients of inputs and weights
 *     att_layer_save(layer, "layer.safetensors")  optional: config, shapes and weights to a file
 *     att_layer_destroy(layer)
 *   att_layer_load("layer.safetensors", &layer) gives a built layer again (also from Python).
 *
 * CONVENTIONS
 *   - Every fallible function returns att_status; ATT_OK (0) is success. On failure a message
 *     naming the problem is available from att_last_error() on the same thread.
 *   - Tensors are row-major and contiguous. The caller owns every buffer; the library never
 *     keeps a pointer past the call that received it.
 *   - Outputs must not overlap: a tensor the library writes (output, scores, a gradient, a
 *     key/value cache it updates) may not share a byte with any tensor of the same call,
 *     read or written; overlap gives ATT_ERR_INVALID_ARGUMENT. The one in-place update is
 *     the key/value cache's (see KEY/VALUE CACHE). Inputs may share buffers (self-attention
 *     passes the same tensor as query and value).
 *   - Config and argument structs begin with `struct_size`: set it to sizeof(the struct).
 *     Structs grow only at their end, and the library accepts every size from the struct's
 *     size in the version that introduced it (0.1.0 for every struct of this header) up to
 *     its own sizeof: fields past the caller's struct_size read as zero. So a program built
 *     against an older header keeps working with a newer library; a size outside that range
 *     (a newer header than the library, or garbage) gives ATT_ERR_STRUCT_SIZE, naming the
 *     range.
 *   - Zero is the default of every field: zero-filling a struct (e.g.
 *     `att_call_args a = {.struct_size = sizeof a};`) gives Keras's default for each
 *     argument the struct carries. Where Keras's default is true, the field is spelled
 *     negatively (no_bias, no_scale) so that zero still means that default. Fields without a
 *     default (num_heads, key_dim, ...) must be set.
 *   - Seeds: a seed is a key, and 0 is a key like any other: the same seed always gives the
 *     same weights (and dropout_seed the same dropout masks). There is no "random seed"
 *     value (Keras's seed=None draws one); pick a seed from your own entropy source to vary.
 *   - size_t arguments and fields are unsigned throughout: an index or capacity of SIZE_MAX
 *     means SIZE_MAX (out of range, or "room for everything"), never -1.
 *   - Booleans are int32_t: 0 is false, anything else true. Masks are ATT_UINT8 tensors:
 *     0 masks a position out, anything else keeps it.
 *   - A handle that is NULL, was never created by this library, or was destroyed yields
 *     ATT_ERR_INVALID_HANDLE, never a crash.
 *
 * THREADS
 *   Different layers are independent. On one layer:
 *   - readers: att_layer_call, att_layer_backward, att_layer_losses, att_layer_is_built,
 *     att_layer_weight_count, att_layer_weight_info, att_layer_get_weight and
 *     att_layer_output_shape may run concurrently from any number of threads;
 *   - writers: att_layer_build, att_layer_set_weight and att_layer_apply_constraints change
 *     the layer and need it to themselves.
 *   Nothing blocks: a writer called while a reader or another writer is inside the layer, and
 *   a reader called while a writer is inside it, return ATT_ERR_BUSY at once, having done
 *   nothing (retry later; a program that wants its writes to succeed stops its calls first).
 *   att_layer_destroy never waits and never fails for a live handle: the handle is invalid
 *   from its return on (later uses give ATT_ERR_INVALID_HANDLE), calls already inside the
 *   layer complete normally, and the layer is freed when the last of them returns.
 *   The create functions, att_dot_product_attention and the library-wide functions are
 *   thread-safe. att_set_num_threads is global and applies to calls that start after it.
 *
 * FORK
 *   A child forked at any moment (e.g. by Python's multiprocessing "fork" start method) can
 *   use the library: layers created before the fork are valid in the child with the weights
 *   they had at the fork, and new ones can be created. Calls that other threads of the parent
 *   were running at the fork do not exist in the child (their layers are not in use there,
 *   their output buffers are left as they were); no lock of the library is held across the
 *   fork. As with any fork of a multithreaded process, only the library's state is covered:
 *   do not fork while another thread is inside att_layer_build or att_layer_set_weight of a
 *   layer the child will use (its weights may be half written in the child).
 *   The child's calls run on worker threads started in the child (the calling thread waits:
 *   the Swift runtime inside the library keeps each thread's id, and the forking thread's
 *   is its parent's, so that thread must not contend with the child's threads). Threads
 *   of the child's own that call the library concurrently with the forking thread may
 *   meet the same hazard: in a forked child, call the library from one thread.
 *
 * MEMORY
 *   A call's working memory is freed when it returns, except blocks of 64 KiB and more:
 *   those are kept for the next call (of any layer or thread), at most 256 MiB and 256 blocks
 *   in all, the most recently used. malloc serves such blocks from fresh pages that the
 *   kernel faults in and zeroes again on every call (12 of 44 ms of a MultiHeadAttention
 *   call of 8 × 256 tokens, dim 512, before they were kept).
 */
#ifndef ATTENTION_H
#define ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header: MAJOR.MINOR.PATCH, and as one number
 * (MAJOR * 1000000 + MINOR * 1000 + PATCH, e.g. 2000 for 0.2.0) for #if and comparisons.
 * While MAJOR is 0, a MINOR step may rename fields or change what a value means (the struct
 * layouts stay compatible: see struct_size); PATCH steps change no meaning. */
#define ATT_VERSION_MAJOR 0
#define ATT_VERSION_MINOR 3
#define ATT_VERSION_PATCH 0
#define ATT_VERSION_NUMBER (ATT_VERSION_MAJOR * 1000000 + ATT_VERSION_MINOR * 1000 + ATT_VERSION_PATCH)

/* The largest tensor rank the API accepts. */
#define ATT_MAX_RANK 8

/* ---------------------------------------------------------------------------------------- */
/* Status and errors                                                                          */
/* ---------------------------------------------------------------------------------------- */

typedef enum att_status {
    ATT_OK = 0,
    ATT_ERR_NULL_ARGUMENT = 1,    /* a required pointer (argument, field or data) was NULL */
    ATT_ERR_INVALID_ARGUMENT = 2, /* a config or argument value is out of range or unknown */
    ATT_ERR_SHAPE = 3,            /* ranks or dims do not fit, or a size product overflows */
    ATT_ERR_DTYPE = 4,            /* a tensor's dtype is not the one required */
    ATT_ERR_INVALID_HANDLE = 5,   /* NULL, foreign or destroyed layer handle */
    ATT_ERR_NOT_BUILT = 6,        /* the layer has no weights yet: call att_layer_build */
    ATT_ERR_STRUCT_SIZE = 7,      /* struct_size is outside the sizes this library accepts */
    ATT_ERR_OUT_OF_MEMORY = 8,    /* a working buffer could not be allocated */
    ATT_ERR_INTERNAL = 9,         /* a bug in libattention: please report it */
    ATT_ERR_BUSY = 10,            /* the layer is in use by another thread (see THREADS); nothing
                                     was done: retry once the other use has returned */
    ATT_ERR_IO = 11               /* a file could not be opened, read or written (layer files);
                                     att_last_error() has the system's reason */
} att_status;

/* The library's version (not the header's): "MAJOR.MINOR.PATCH" (static storage), and
 * ATT_VERSION_NUMBER as the library was built. A program can compare att_version_number()
 * with the ATT_VERSION_NUMBER it was compiled with. */
const char *att_version(void);
int32_t att_version_number(void);

/* The kernels in use: "avx512", "avx2" or "baseline" — the best variant this CPU and OS
 * support, chosen on the first call of any function, capped by the environment variable
 * ATTENTION_MAX_ISA (avx512, avx2 or baseline) — or "native" in a library built for one
 * CPU (make TARGET_CPU=...). "none" when no variant could be loaded: then every function
 * returning a status returns ATT_ERR_INTERNAL and att_last_error() says why. Static. */
const char *att_cpu_kernels(void);

/* The message of the last failed call on this thread ("" if none). Valid until the next
 * failing call on this thread. Thread-safe. */
const char *att_last_error(void);

/* The status's name, e.g. "ATT_ERR_SHAPE"; "unknown status" for other values. Static. */
const char *att_status_name(att_status status);

/* Threads used by one call (>= 1; one call uses at most 1024). Default: the number of online
 * CPUs. Results are bit-identical for every value: outputs, scores and every gradient
 * (dropout included). The worker threads are started when a call first needs them and
 * kept; a call made while another thread's call holds them runs on its own thread.
 * Returns ATT_ERR_INVALID_ARGUMENT for n < 1. */
att_status att_set_num_threads(int32_t n);
int32_t att_get_num_threads(void);

/* ---------------------------------------------------------------------------------------- */
/* Tensors                                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef enum att_dtype {
    ATT_FLOAT32 = 1,
    ATT_FLOAT64 = 2,
    ATT_UINT8 = 3 /* masks only */
} att_dtype;

typedef struct att_shape {
    int32_t rank;                /* 0 ... ATT_MAX_RANK */
    int64_t dims[ATT_MAX_RANK];  /* dims[0 .. rank-1]; each >= 0 (see EMPTY TENSORS) */
} att_shape;

/* A dense row-major tensor. `data` holds shape's product elements of `dtype`; it must not be
 * NULL, also when that product is 0.
 *
 * EMPTY TENSORS: every dim but the feature dims (the last dim of query, key and value; H,
 * Hv and the key/value heads K of att_dot_product_attention) may be 0 — batch, other axes,
 * Tq, Tv, and there the query heads N. A zero feature dim is ATT_ERR_SHAPE, as is a
 * negative dim. With no query rows the results are empty and weight gradients are 0 (plus
 * the regularizers' when asked for; an empty batch's activity penalty is 0). With no keys
 * (Tv = 0, Tq > 0) each attended row is the empty sum 0: Attention, AdditiveAttention and
 * att_dot_product_attention output 0; the multi-head layers output their output projection's
 * bias; the gradients of the inputs and of every weight but that bias are 0. A tensor with
 * no elements may have NULL data (never read or written). */
typedef struct att_tensor {
    void *data;
    att_dtype dtype;
    att_shape shape;
} att_tensor;

/* ---------------------------------------------------------------------------------------- */
/* Layers                                                                                     */
/* ---------------------------------------------------------------------------------------- */

typedef struct att_layer att_layer;

typedef enum att_score_mode {
    ATT_SCORE_DOT = 0,    /* scores = (q . k) * scale */
    ATT_SCORE_CONCAT = 1  /* scores = concat_score_weight * sum(tanh(scale * (q + k))) */
} att_score_mode;

/* keras.layers.Attention (Luong). Weights, in Keras's order: `scale` () if use_scale
 * (initialised to 1), `concat_score_weight` () if score_mode is concat (initialised to 1). */
typedef struct att_attention_config {
    size_t struct_size;       /* sizeof(att_attention_config) */
    att_dtype dtype;          /* ATT_FLOAT32 (also when 0) or ATT_FLOAT64 */
    int32_t use_scale;        /* Keras's default: 0 (no scale weight) */
    att_score_mode score_mode;/* default ATT_SCORE_DOT */
    double dropout;           /* on the attention weights when training; [0, 1); default 0 */
    int32_t causal;           /* TF 2.0's `causal=True`: a causal mask on every call */
} att_attention_config;

/* keras.layers.AdditiveAttention (Bahdanau): scores = sum(scale * tanh(q + k)). Weight:
 * `scale` (dim,) unless no_scale, glorot-uniform initialised from `seed`. */
typedef struct att_additive_attention_config {
    size_t struct_size;       /* sizeof(att_additive_attention_config) */
    att_dtype dtype;          /* ATT_FLOAT32 (also when 0) or ATT_FLOAT64 */
    int32_t no_scale;         /* Keras's use_scale=False; 0: a scale weight, as Keras's default */
    double dropout;           /* [0, 1) */
    uint64_t seed;            /* weight initialisation (see CONVENTIONS: 0 is a seed) */
} att_additive_attention_config;

/* Weight initialisers, by Keras name. ATT_INIT_DEFAULT is the layer's default for the slot
 * (glorot_uniform for kernels, zeros for biases). Parameters, where the kind has them:
 *   RANDOM_NORMAL, TRUNCATED_NORMAL: a = mean, b = stddev   (both 0 ⇒ 0, 0.05)
 *   RANDOM_UNIFORM:                  a = minval, b = maxval (both 0 ⇒ -0.05, 0.05)
 *   CONSTANT:                        a = value
 *   ORTHOGONAL:                      a = gain               (0 ⇒ 1) */
typedef enum att_initializer_kind {
    ATT_INIT_DEFAULT = 0,
    ATT_INIT_GLOROT_UNIFORM = 1,
    ATT_INIT_GLOROT_NORMAL = 2,
    ATT_INIT_HE_UNIFORM = 3,
    ATT_INIT_HE_NORMAL = 4,
    ATT_INIT_LECUN_UNIFORM = 5,
    ATT_INIT_LECUN_NORMAL = 6,
    ATT_INIT_RANDOM_NORMAL = 7,
    ATT_INIT_RANDOM_UNIFORM = 8,
    ATT_INIT_TRUNCATED_NORMAL = 9,
    ATT_INIT_ZEROS = 10,
    ATT_INIT_ONES = 11,
    ATT_INIT_CONSTANT = 12,
    ATT_INIT_ORTHOGONAL = 13
} att_initializer_kind;

typedef struct att_initializer {
    att_initializer_kind kind;
    double a, b;
} att_initializer;

/* Regularizers (Keras's l1, l2, l1_l2): att_layer_losses, and att_layer_backward with
 * include_regularization. */
typedef enum att_regularizer_kind {
    ATT_REG_NONE = 0,
    ATT_REG_L1 = 1,     /* l1 */
    ATT_REG_L2 = 2,     /* l2 */
    ATT_REG_L1_L2 = 3   /* l1 and l2 */
} att_regularizer_kind;

typedef struct att_regularizer {
    att_regularizer_kind kind;   /* ATT_REG_NONE (0): none, Keras's default */
    double l1, l2;      /* >= 0 and finite, used as given (Keras's l1() and l2() take 0.01) */
} att_regularizer;

/* Constraints (Keras's max_norm, non_neg, unit_norm, min_max_norm): att_layer_apply_constraints. */
typedef enum att_constraint_kind {
    ATT_CONSTRAINT_NONE = 0,
    ATT_CONSTRAINT_MAX_NORM = 1,     /* max_value, axis */
    ATT_CONSTRAINT_NON_NEG = 2,
    ATT_CONSTRAINT_UNIT_NORM = 3,    /* axis */
    ATT_CONSTRAINT_MIN_MAX_NORM = 4  /* min_value <= max_value, rate in [0, 1], axis */
} att_constraint_kind;

typedef struct att_constraint {
    att_constraint_kind kind;    /* ATT_CONSTRAINT_NONE (0): none, Keras's default */
    double min_value, max_value, rate; /* used as given (Keras: max_norm(2.0),
                                          min_max_norm(0.0, 1.0, rate=1.0)) */
    int32_t axis;                /* Keras's default: 0 */
} att_constraint;

/* keras.layers.MultiHeadAttention. Weights, in Keras's get_weights() order (Dq, Dk, Dv the
 * last dims of query, key, value; N heads; Hk key_dim; Hv value_dim; O output_shape):
 *   query/kernel (Dq,N,Hk) [query/bias (N,Hk)]  key/kernel (Dk,N,Hk) [key/bias (N,Hk)]
 *   [gate/kernel (Dq,N,Hv) [gate/bias (N,Hv)]]  value/kernel (Dv,N,Hv) [value/bias (N,Hv)]
 *   attention_output/kernel (N,Hv,*O) [attention_output/bias (*O)]
 * with biases unless no_bias. */
typedef struct att_multi_head_attention_config {
    size_t struct_size;            /* sizeof(att_multi_head_attention_config) */
    att_dtype dtype;               /* ATT_FLOAT32 (also when 0) or ATT_FLOAT64 */
    int64_t num_heads;             /* >= 1 */
    int64_t key_dim;               /* >= 1 */
    int64_t value_dim;             /* >= 1, or 0 for key_dim */
    double dropout;                /* [0, 1) */
    int32_t no_bias;               /* Keras's use_bias=False; 0: biases, as Keras's default */
    int32_t output_rank;           /* 0: output last dim = query's last dim; at most ATT_MAX_RANK - 2 */
    int64_t output_shape[ATT_MAX_RANK]; /* output_shape[0 .. output_rank-1], each >= 1 */
    int32_t num_attention_axes;    /* 0: every axis but batch and features */
    int64_t attention_axes[ATT_MAX_RANK]; /* input axes; negative counts from the rank */
    int64_t sliding_window;        /* 0: none; else keep |i - j| < sliding_window */
    int32_t use_gate;              /* sigmoid gate of the query, multiplied in */
    uint64_t seed;                 /* weight initialisation (see CONVENTIONS: 0 is a seed) */
    att_initializer kernel_initializer, bias_initializer;
    att_regularizer kernel_regularizer, bias_regularizer, activity_regularizer;
    att_constraint kernel_constraint, bias_constraint;
} att_multi_head_attention_config;

/* keras.layers.GroupQueryAttention (also known as GroupedQueryAttention): rank-3 inputs;
 * key and value have num_key_value_heads heads,
 * each shared by num_query_heads / num_key_value_heads query heads (query head n uses
 * key/value head n / (Nq/Nkv), in place). Weights, in Keras's order (H = head_dim):
 *   query/kernel (Dq,Nq,H) [query/bias (Nq,H)]  key/kernel (Dk,Nkv,H) [key/bias (Nkv,H)]
 *   [gate/kernel (Dq,Nq,H) [gate/bias (Nq,H)]]  value/kernel (Dv,Nkv,H) [value/bias (Nkv,H)]
 *   attention_output/kernel (Nq,H,Dq) [attention_output/bias (Dq)] */
typedef struct att_group_query_attention_config {
    size_t struct_size;            /* sizeof(att_group_query_attention_config) */
    att_dtype dtype;               /* ATT_FLOAT32 (also when 0) or ATT_FLOAT64 */
    int64_t head_dim;              /* >= 1 */
    int64_t num_query_heads;       /* >= 1 */
    int64_t num_key_value_heads;   /* >= 1, divides num_query_heads */
    double dropout;                /* [0, 1) */
    int32_t no_bias;               /* Keras's use_bias=False; 0: biases, as Keras's default */
    int64_t sliding_window;        /* 0: none; else keep |i - j| < sliding_window */
    int32_t use_gate;
    uint64_t seed;                 /* weight initialisation (see CONVENTIONS: 0 is a seed) */
    att_initializer kernel_initializer, bias_initializer;
    att_regularizer kernel_regularizer, bias_regularizer, activity_regularizer;
    att_constraint kernel_constraint, bias_constraint;
} att_group_query_attention_config;

/* TF Model Garden's ReuseMultiHeadAttention: the first r = reuse_attention heads (-1: all)
 * take their attention weights from an earlier layer (att_call_args.reuse_attention_scores);
 * the other n = N - r compute them, with an optional relative position bias
 * E[0, h, clamp(j - i + P - 1, 0, 2P - 2)] (P = pe_max_seq_length; attention over axis 1
 * only). Masking as Keras's (−1e9 added; see att_layer_call). Weights, in upstream's
 * get_weights() order:
 *   [relative_position_embeddings (1,n,2P-1) if use_relative_pe and n > 0]
 *   query/kernel (Dq,n,Hk) [+bias (n,Hk)], key/kernel (Dk,n,Hk) [+bias]     if n > 0
 *   value_reuse/kernel (Dv,r,Hv) [+bias (r,Hv)]                             if r > 0
 *   value_new/kernel (Dv,n,Hv) [+bias (n,Hv)]                               if n > 0
 *   attention_output_reuse/kernel (r,Hv,*O) [+bias (*O)]                   if r > 0
 *   attention_output_new/kernel (n,Hv,*O) [+bias (*O) only when r == 0]    if n > 0
 * Biases ([+bias]) exist unless no_bias.
 * Negative attention_axes count from the rank of the projection (input rank + 1), as
 * upstream resolves them; one that lands on the heads or feature axis (upstream then
 * attends across heads) is refused. Scores: [new heads, reused heads] along the head axis.
 * reuse_attention_scores: shaped like the scores, except that with partial reuse the head
 * axis (axis 1) may hold more than r heads; the first r are used. */
typedef struct att_reuse_multi_head_attention_config {
    size_t struct_size;            /* sizeof(att_reuse_multi_head_attention_config) */
    att_dtype dtype;               /* ATT_FLOAT32 (also when 0) or ATT_FLOAT64 */
    int64_t num_heads;             /* >= 1 */
    int64_t key_dim;               /* >= 1 */
    int64_t value_dim;             /* >= 1, or 0 for key_dim */
    double dropout;                /* [0, 1) */
    int64_t reuse_attention;       /* -1 ... num_heads */
    int32_t use_relative_pe;
    int64_t pe_max_seq_length;     /* >= 1; 0 means upstream's default, 512 */
    int32_t no_bias;               /* upstream's use_bias=False; 0: biases, as its default */
    int32_t output_rank;           /* 0: output last dim = query's last dim; at most ATT_MAX_RANK - 2 */
    int64_t output_shape[ATT_MAX_RANK];
    int32_t num_attention_axes;    /* 0: every axis but batch and features */
    int64_t attention_axes[ATT_MAX_RANK];
    uint64_t seed;                 /* weight initialisation (see CONVENTIONS: 0 is a seed) */
    att_initializer kernel_initializer, bias_initializer;
    att_regularizer kernel_regularizer, bias_regularizer, activity_regularizer;
    att_constraint kernel_constraint, bias_constraint;
} att_reuse_multi_head_attention_config;

/* Create a layer. On success *out is a new handle owned by the caller (att_layer_destroy).
 * Errors: NULL_ARGUMENT, STRUCT_SIZE, INVALID_ARGUMENT (unknown enum, dropout outside [0,1),
 * dims < 1, ...), OUT_OF_MEMORY. Thread-safe. */
att_status att_attention_create(const att_attention_config *config, att_layer **out);
att_status att_additive_attention_create(const att_additive_attention_config *config,
                                         att_layer **out);
att_status att_multi_head_attention_create(const att_multi_head_attention_config *config,
                                           att_layer **out);
att_status att_group_query_attention_create(const att_group_query_attention_config *config,
                                            att_layer **out);
att_status att_reuse_multi_head_attention_create(const att_reuse_multi_head_attention_config *config,
                                                 att_layer **out);

/* Destroy a layer. NULL is accepted and ignored (ATT_OK); a foreign or already destroyed
 * handle gives ATT_ERR_INVALID_HANDLE. The handle is invalid once this returns; calls still
 * running on the layer in other threads complete normally and the layer is freed when the
 * last of them returns (see THREADS). Thread-safe. */
att_status att_layer_destroy(att_layer *layer);

/* Create the weights for inputs of these shapes (key may be NULL: the value's shape) and
 * initialise them. Only the dims the weights depend on (the feature dims, and the rank for
 * MultiHeadAttention) bind later calls. Building again re-creates the weights.
 * Errors: INVALID_HANDLE, NULL_ARGUMENT, SHAPE (ranks or dims that do not fit),
 * INVALID_ARGUMENT (attention_axes that do not fit the rank, an initializer the weight's
 * shape does not allow), OUT_OF_MEMORY, BUSY (another thread is using the layer). A writer
 * (see THREADS). */
att_status att_layer_build(att_layer *layer, const att_shape *query_shape,
                           const att_shape *value_shape, const att_shape *key_shape);

/* Whether the layer has been built (*built = 0 or 1). Errors: INVALID_HANDLE, NULL_ARGUMENT,
 * BUSY (a writer is changing the layer). Like every reader below, thread-safe (see THREADS). */
att_status att_layer_is_built(const att_layer *layer, int32_t *built);

/* The number of weights, as len(keras_layer.get_weights()).
 * Errors: INVALID_HANDLE, NOT_BUILT, NULL_ARGUMENT, BUSY. */
att_status att_layer_weight_count(const att_layer *layer, size_t *count);

/* Weight `index`'s shape and Keras name (e.g. "query/kernel"; static storage that lives as
 * long as the library). Either output may be NULL. Errors: INVALID_HANDLE, NOT_BUILT,
 * INVALID_ARGUMENT (index out of range), BUSY. */
att_status att_layer_weight_info(const att_layer *layer, size_t index, att_shape *shape,
                                 const char **name);

/* Copy weight `index` out into `out` (its shape and the layer's dtype must match) or in
 * from `value`. Errors: INVALID_HANDLE, NOT_BUILT, INVALID_ARGUMENT (index out of range),
 * SHAPE, DTYPE, NULL_ARGUMENT, BUSY. get_weight is a reader, set_weight a writer (THREADS). */
att_status att_layer_get_weight(const att_layer *layer, size_t index, att_tensor *out);
att_status att_layer_set_weight(att_layer *layer, size_t index, const att_tensor *value);

/* Arguments of one forward call. Unused optional pointers are NULL.
 * attention_mask (MultiHeadAttention, GroupQueryAttention, ReuseMultiHeadAttention): 1 keeps
 * the pair (query position, key position). For rank-3 inputs its full shape is (B, Tq, Tv);
 * any shape that broadcasts to it numpy-style with at least 2 dims is accepted: (Tq, Tv),
 * (1, Tq, Tv), (B, 1, Tv), ... A mask with one more dim than that is read against the scores
 * (B, N, Tq, Tv) instead, so it may differ per head. With attention_axes, the full shape is
 * the scores' shape without the head axis, (B, <other axes>, <query attention axes>, <key
 * attention axes>); a shorter mask gains size-1 axes just before its last
 * 2 * len(attention_axes) dims, as Keras expands it. A mask that fits none of these gives
 * ATT_ERR_SHAPE naming the full shape. */
typedef struct att_call_args {
    size_t struct_size;                /* sizeof(att_call_args) */
    const att_tensor *query;           /* (B, Tq, Dq). Attention, AdditiveAttention: (L..., Tq, D),
                                          any rank >= 2, the leading axes L batch axes (equal in
                                          query, value, key); MultiHeadAttention, Reuse: any
                                          rank >= 3; GroupQueryAttention: rank 3 */
    const att_tensor *value;           /* (B, Tv, Dv); (L..., Tv, Dv) */
    const att_tensor *key;             /* (B, Tv, Dk), or NULL for value */
    const att_tensor *query_mask;      /* ATT_UINT8. Attention, AdditiveAttention: broadcasts to
                                          (L..., Tq); zeroes output rows. Multi-head layers:
                                          see value_mask */
    const att_tensor *value_mask;      /* ATT_UINT8. Attention, AdditiveAttention: of rank below
                                          the inputs', broadcasts to (L..., Tv) (a padding mask:
                                          keep[..., i, j] = m[..., j]); of the inputs' rank,
                                          broadcasts to the scores (L..., Tq, Tv).
                                          MultiHeadAttention, GroupQueryAttention: Keras's rule:
                                          query_mask m -> m[..., None], value_mask and key_mask
                                          (rank >= 1) -> m[..., None, :], causal / sliding window
                                          (1, T, S) (axis-1 lengths), attention_mask as given,
                                          ANDed with numpy broadcasting; the result gains size-1
                                          axes at -2*len(attention_axes)-1 up to the scores'
                                          rank, then broadcasts to the scores. Any shapes for which
                                          that works: e.g. a rank-4 query (B, T, X, D) over axis
                                          1 takes (B, T) and (B, S) or (1, S) masks, which apply
                                          across X and the heads */
    const att_tensor *key_mask;        /* ATT_UINT8; MultiHeadAttention, GroupQuery: as value_mask */
    const att_tensor *attention_mask;  /* ATT_UINT8, broadcast as Keras does; multi-head layers */
    int32_t training;                  /* dropout applies only when training (default 0:
                                          inference, as Keras's training=None) */
    int32_t use_causal_mask;           /* query i attends to keys j <= i: top-left aligned,
                                          also when Tq != Tv (as Keras) */
    uint64_t dropout_seed;             /* Philox key of the dropout mask; 0 is a key */
    uint64_t dropout_stream;           /* per-call counter: change it between calls */
    att_tensor *output;                /* required: shape from att_layer_output_shape */
    att_tensor *scores;                /* optional: the attention weights, as Keras returns */
    const att_tensor *reuse_attention_scores; /* ReuseMultiHeadAttention with reuse > 0:
                                          an earlier layer's scores, shaped like `scores` */
    /* Fields added in 0.3.0 (a struct_size without them reads them as zero: no cache). */
    att_tensor *cache;                 /* MultiHeadAttention, GroupQueryAttention: NULL (no cache),
                                          or a key/value cache (B, 2, S_max, K, H) of the layer's
                                          dtype, keys at [:, 0], values at [:, 1]; K the key/value
                                          heads (num_heads, or num_key_value_heads), H key_dim
                                          (= value_dim). Written in place when cache_update_index
                                          is given, else only read. See KEY/VALUE CACHE below */
    const int64_t *cache_update_index; /* NULL: the cache is used as it is. Else where the new
                                          tokens go: cache_update_index_count entries, 1 (every
                                          batch row) or B (one per row: sequences of different
                                          lengths), each p with 0 <= p and p + Tv <= S_max; read
                                          during the call only */
    size_t cache_update_index_count;   /* entries at cache_update_index: 1 or B (0 with NULL) */
} att_call_args;

/* The shapes of the output and of the scores for inputs of these shapes (key may be NULL).
 * Either output may be NULL. Errors: INVALID_HANDLE, NOT_BUILT (MultiHeadAttention: the
 * shapes depend on the build), NULL_ARGUMENT, SHAPE (inputs that do not fit the layer), BUSY. */
att_status att_layer_output_shape(const att_layer *layer, const att_shape *query_shape,
                                  const att_shape *value_shape, const att_shape *key_shape,
                                  att_shape *output_shape, att_shape *scores_shape);

/* KEY/VALUE CACHE (MultiHeadAttention, GroupQueryAttention; rank-3 inputs over axis 1, and
 * value_dim == key_dim): incremental decoding as keras_hub's CachedMultiHeadAttention does it,
 * with its cache layout (B, 2, S_max, K, H).
 *   - With cache_update_index: only the new tokens are projected. Their keys and values
 *     (from key, default value, and value: (B, Tv, ...)) are written into args->cache at
 *     rows p_b .. p_b + Tv - 1 of each batch row b, in place (no other byte of the cache is
 *     written); then the query (B, Tq, Dq) attends over the whole cache, S_max keys, and the
 *     masks decide what each row sees — keras_hub passes a (B, Tq, S_max) attention_mask with
 *     key j visible to query row i when j <= p + i. With use_causal_mask instead, query row i
 *     of batch row b stands at key position p_b + i and sees the positions <= p_b + i (and a
 *     sliding window counts from there): no mask to build, and the keys past p_b + Tq - 1 —
 *     the unfilled part of the cache — are not read at all. Without use_causal_mask the whole
 *     cache is attended (as keras_hub does; a sliding window keeps |p_b + i - j| < w on both
 *     sides), so its unfilled part must hold finite numbers (start from a zeroed cache).
 *   - Without cache_update_index (NULL): the cache is read as it is and the new tokens'
 *     value and key are not read (keras_hub's cross-attention over an encoder's cached keys
 *     and values); the causal mask and window are top-left aligned, as without a cache.
 *   Masks are read against the scores (B, N, Tq, S_max): query_mask (B, Tq); value_mask and
 *   key_mask over the cache's positions (B, S_max); attention_mask (B, Tq, S_max) or any
 *   shape that broadcasts to it. args->scores, when given, is (B, N, Tq, S_max)
 *   (att_layer_output_shape does not know the cache: its scores shape is the uncached one).
 *   A fully masked row is uniform or zero by Keras's rule below, except with
 *   use_causal_mask and cache_update_index, where it is zero (uniform would read the
 *   unfilled cache). The gate (use_gate) applies as without a cache (keras_hub's subclass
 *   skips it; this library does not). att_layer_losses takes a cached call (activity
 *   penalties of the query, the new keys and values, the gate and the output);
 *   att_layer_backward does not (INVALID_ARGUMENT: a cache is for inference).
 *   The layer keeps no state: one layer serves many sequences, each with its own cache
 *   buffer, from any number of threads; calls that update the same cache must not run at
 *   once (the library cannot see that). The cache may not overlap any other tensor of the
 *   call (INVALID_ARGUMENT); without an update it may overlap the inputs.
 *   Errors: INVALID_ARGUMENT (a layer kind without a cache; cache_update_index without a
 *   cache; p < 0 or p + Tv > S_max, or with use_causal_mask p + Tq > S_max; value_dim !=
 *   key_dim; inputs of rank != 3 or other attention axes; overlap), SHAPE (a cache that is
 *   not (B, 2, S_max, K, H); a count that is neither 1 nor B), DTYPE (a cache of another
 *   dtype), NULL_ARGUMENT (cache->data, or cache_update_index NULL with a count above 0). */

/* Run the layer forward. Writes args->output and, when given, args->scores.
 * Masking, every layer: in a row that keeps at least one key, a masked key gets weight
 *   exactly 0 — what Keras's arithmetic (−1e9 added, or −0.7·FLT_MAX filled in) gives
 *   whenever the kept scores are finite and well inside ±1e9. A row whose every key is
 *   masked follows Keras's arithmetic exactly (below). Tiles of keys that a causal band or
 *   sliding window masks for every row are not read at all, so NaN/Inf stored at such
 *   positions of the key or value does not reach the output (Keras's unfused paths would
 *   propagate it as 0·NaN).
 * Attention / AdditiveAttention: returned scores are the weights after masking, softmax
 *   and dropout; a query-masked row of the output is 0; a fully masked row is
 *   softmax(s − 1e9) computed in the dtype (uniform in float32 when |s| < 32).
 * MultiHeadAttention, GroupQueryAttention: scores (B, <other axes>, N, <query attention
 *   axes>, <key attention axes>) are the weights before dropout; a fully masked row is
 *   uniform when Keras would take its fused path (rank 3, no scores, dropout 0) and zero
 *   otherwise.
 * ReuseMultiHeadAttention: scores as MultiHeadAttention's, new heads then reused heads;
 *   a fully masked row is softmax(s + bias − 1e9); only attention_mask masks.
 * Dropout keeps score element f (its flat index in the scores tensor) iff
 *   (philox4x32_10((f, f>>32, stream, stream>>32), (seed, seed>>32))[0] >> 8) * 2^-24 >= rate,
 *   and divides kept elements by 1 - rate.
 * With args->cache: see KEY/VALUE CACHE above (args->cache is then also written).
 * Errors: INVALID_HANDLE, NOT_BUILT, NULL_ARGUMENT, STRUCT_SIZE, SHAPE, DTYPE,
 *   INVALID_ARGUMENT (a mask, reuse_attention_scores or cache the layer kind does not take;
 *   reuse_attention_scores missing when the layer reuses heads), OUT_OF_MEMORY, BUSY (a
 *   writer is changing the layer). A reader: thread-safe (see THREADS). */
att_status att_layer_call(const att_layer *layer, const att_call_args *args);

/* ---------------------------------------------------------------------------------------- */
/* Training: gradients, regularization losses, constraints                                    */
/* ---------------------------------------------------------------------------------------- */

/* What att_layer_backward reads and writes. Every gradient is a tensor of the layer's dtype
 * and of the exact shape of what it is the gradient of; each output is optional (NULL: not
 * computed), owned by the caller and overwritten. */
typedef struct att_gradient_args {
    size_t struct_size;                  /* sizeof(att_gradient_args) */
    const att_tensor *output_gradient;   /* required: dL/d(output), the output's shape */
    const att_tensor *scores_gradient;   /* optional: dL/d(scores); needs args->scores */
    att_tensor *query_gradient;          /* dL/d(query) */
    att_tensor *value_gradient;          /* dL/d(value); with args->key NULL (key = value)
                                            it includes the key's share */
    att_tensor *key_gradient;            /* dL/d(key); only when args->key is given */
    att_tensor *reuse_attention_scores_gradient; /* ReuseMultiHeadAttention with reuse:
                                            dL/d(reuse_attention_scores), its shape */
    att_tensor *weight_gradients;        /* NULL, or an array of att_layer_weight_count
                                            tensors: dL/d(weight i), get_weights() order;
                                            an entry with data NULL is skipped */
    int32_t include_regularization;      /* add the gradient of the sum of att_layer_losses */
} att_gradient_args;

/* One training step's gradients. Runs the forward of `args` (writing args->output and, when
 * given, args->scores; args->output may be NULL here) and the backward of
 *   L = sum(output * output_gradient) [+ sum(scores * scores_gradient)]
 *       [+ sum of the layer's losses for this call, when include_regularization],
 * with the same dropout mask in both (training, dropout_seed, dropout_stream as in args).
 * Masked positions pass no gradient through the scores. The dot-product core recomputes
 * attention tiles from the forward's per-row log-sum-exp (FlashAttention-2): working memory
 * stays O(T·d). Errors: those of att_layer_call, plus SHAPE / DTYPE for a gradient tensor
 * that does not match, INVALID_ARGUMENT for key_gradient without args->key, a
 * reuse_attention_scores_gradient without args->reuse_attention_scores or for a layer that
 * reuses no scores, scores_gradient without args->scores, or args->cache (a key/value cache
 * is for inference). Thread-safe as att_layer_call. */
att_status att_layer_backward(const att_layer *layer, const att_call_args *args, const att_gradient_args *grads);

/* The layer's regularization losses, as Keras's layer.losses: first the penalty of each
 * weight with a kernel_regularizer / bias_regularizer (get_weights() order), then, when
 * `args` is not NULL, the activity_regularizer's penalties of that call (each divided by
 * its tensor's batch size, as Keras does), one per regularized tensor. Writes
 * min(capacity, n) values to `losses` and n to *count (capacity is unsigned: SIZE_MAX is
 * room for all); `losses` may be NULL only when capacity is 0.
 * Layers without regularizers have none. args->output may be NULL.
 * Errors: INVALID_HANDLE, NOT_BUILT, NULL_ARGUMENT (count; losses with capacity > 0), those
 * of att_layer_call.
 * Thread-safe as att_layer_call. */
att_status att_layer_losses(const att_layer *layer, const att_call_args *args, double *losses,
                            size_t capacity, size_t *count);

/* Applies kernel_constraint and bias_constraint to the weights in place — what Keras's
 * optimizer does after each update. A writer: BUSY while another thread uses the layer.
 * Errors: INVALID_HANDLE, NOT_BUILT, BUSY; INVALID_ARGUMENT when a constraint's axis does not
 * fit a weight's rank, and then no weight is changed. */
att_status att_layer_apply_constraints(att_layer *layer);

/* ---------------------------------------------------------------------------------------- */
/* Layer files                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* A layer file holds a built layer — its kind, its Keras config, the input shapes it was
 * built for and its weights — in the safetensors format: an 8-byte little-endian header
 * length N, N bytes of JSON header, then the tensors' little-endian data. Each weight is a
 * tensor named as att_layer_weight_info names it ("query/kernel"), of dtype "F32" or "F64"
 * (the layer's) and of the weight's shape. The header's "__metadata__" holds strings:
 *   "format"        "libattention-layer-1"
 *   "layer"         Keras's class name: "Attention", "AdditiveAttention", "MultiHeadAttention",
 *                   "GroupedQueryAttention" ("GroupQueryAttention" is read too) or
 *                   "ReuseMultiHeadAttention"
 *   "config"        JSON: the layer's Keras get_config() ("dtype", the constructor's arguments
 *                   by Keras name, initializers, regularizers and constraints as Keras
 *                   serialises them, "seed"; "name" and "trainable" are ignored)
 *   "build_shapes"  JSON: [query, value, key or null] input shapes (a null dim reads as 1)
 *   "weights"       JSON: the weight names in get_weights() order
 * Python's layer.save(path) writes the same files and attention.load(path) reads them, so
 * a layer taken from Keras in Python (attention.from_keras) runs in a C program. */

/* Write `layer` (built with att_layer_build, or loaded) to the file at `path`, replacing it:
 * the file is written beside `path` under a temporary name and renamed over it, so `path`
 * never holds half a file. The caller keeps `layer` and `path`. Initializer seeds are not
 * recorded (the weights are). Errors: INVALID_HANDLE, NULL_ARGUMENT (path), NOT_BUILT,
 * IO (the file cannot be created, written or renamed; att_last_error() says why),
 * OUT_OF_MEMORY, BUSY (a writer is changing the layer). A reader: may run with calls on the
 * same layer (see THREADS). */
att_status att_layer_save(const att_layer *layer, const char *path);

/* Read the layer file at `path`: on success *out is a new handle (owned by the caller:
 * att_layer_destroy) to a built layer of the file's kind, config and dtype, built for its
 * build shapes and holding its weights; on failure *out is unchanged and nothing is
 * allocated. A file from an untrusted source is safe to load: every malformed part is a
 * status and a message naming it, never a crash.
 * Errors: NULL_ARGUMENT (path, out); IO (cannot open or read, not a regular file, or the
 * file shrank while loading); INVALID_ARGUMENT (not a layer file: shorter than 8 bytes, a
 * header length above 100 000 000 or beyond the file's end, a header that is not JSON or
 * nests deeper than 64 levels, numbers beyond 64-bit range, a structure other than the
 * above, no or another "format", tensor data offsets that overlap, leave a gap, do not end
 * at the file's end or do not span shape x dtype bytes, tensors missing from or not listed
 * in "weights", an unknown kind, a config with unknown keys or values the layer refuses, or
 * weights other than the ones the config and build shapes give); DTYPE (a tensor dtype other
 * than F32 and F64, or other than the config's dtype); SHAPE (a tensor's shape is not its
 * weight's, or build shapes the layer refuses); OUT_OF_MEMORY. Thread-safe. */
att_status att_layer_load(const char *path, att_layer **out);

/* ---------------------------------------------------------------------------------------- */
/* Functional dot-product attention (keras.ops.dot_product_attention)                         */
/* ---------------------------------------------------------------------------------------- */

typedef struct att_dot_product_attention_args {
    size_t struct_size;          /* sizeof(att_dot_product_attention_args) */
    const att_tensor *query;     /* (B, T, N, H) */
    const att_tensor *key;       /* (B, S, K, H); K divides N: query head n uses n / (N/K) */
    const att_tensor *value;     /* (B, S, K, Hv) */
    const att_tensor *bias;      /* optional, added to the logits; broadcasts to (B,N,T,S) */
    const att_tensor *mask;      /* optional ATT_UINT8; broadcasts to (B,N,T,S) */
    int32_t has_scale;           /* 0: scale = 1/sqrt(H) */
    double scale;
    int32_t is_causal;           /* keep j <= i (top-left aligned, also when T != S) */
    att_tensor *output;          /* (B, T, N, Hv) */
} att_dot_product_attention_args;

/* softmax(scale · q·kᵀ + bias) · v per (b, n), masked keys at weight 0 (a fully masked row
 * is uniform, as Keras's fill with -0.7·FLT_MAX makes it).
 * Bias and mask broadcast numpy-style against (B, N, T, S) (lower ranks get leading 1s).
 * Errors: NULL_ARGUMENT, STRUCT_SIZE, SHAPE, DTYPE, INVALID_ARGUMENT (a scale that is not
 * finite). Thread-safe. */
att_status att_dot_product_attention(const att_dot_product_attention_args *args);

#ifdef __cplusplus
}
#endif

#endif /* ATTENTION_H */
