/*
 * attention_dispatch.c — the libattention.so that runs on any x86-64.
 *
 * The Swift library is compiled once per kernel variant, each a whole library built for
 * one class of CPU from the same sources:
 *
 *   libattention-avx512.so    AVX-512 F/CD/BW/DQ/VL + FMA (LLVM CPU skylake-avx512)
 *   libattention-avx2.so      AVX2 + FMA, BMI1/2, LZCNT, MOVBE, F16C (haswell, x86-64-v3)
 *   libattention-baseline.so  any x86-64 (SSE2)
 *
 * This file, compiled for baseline x86-64, is the library programs link: on the first call
 * of any att_* function it picks the best variant the CPU has and the OS enables (CPUID,
 * and XGETBV for the AVX and AVX-512 register state), capped by the environment variable
 * ATTENTION_MAX_ISA (avx512, avx2 or baseline), loads it from its own directory with
 * dlopen, and forwards every att_* function to it. Nothing of a variant runs before the
 * check. If no variant can be loaded, every function that returns a status returns
 * ATT_ERR_INTERNAL and att_last_error() says why.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"

/* Every function of the header except att_cpu_kernels, which this file answers itself:
 * X(return type, name, parameters, arguments, value when no variant could be loaded). */
#define ATT_FORWARDED(X)                                                                            \
    X(const char *, att_version, (void), (), ATT_VERSION_STRING)                                    \
    X(int32_t, att_version_number, (void), (), ATT_VERSION_NUMBER)                                  \
    X(const char *, att_last_error, (void), (), load_error)                                         \
    X(const char *, att_status_name, (att_status status), (status), status_name(status))           \
    X(att_status, att_set_num_threads, (int32_t n), (n), ATT_ERR_INTERNAL)                           \
    X(int32_t, att_get_num_threads, (void), (), 1)                                                  \
    X(att_status, att_attention_create, (const att_attention_config *config, att_layer **out),      \
      (config, out), ATT_ERR_INTERNAL)                                                              \
    X(att_status, att_additive_attention_create,                                                    \
      (const att_additive_attention_config *config, att_layer **out), (config, out), ATT_ERR_INTERNAL) \
    X(att_status, att_multi_head_attention_create,                                                  \
      (const att_multi_head_attention_config *config, att_layer **out), (config, out), ATT_ERR_INTERNAL) \
    X(att_status, att_group_query_attention_create,                                                 \
      (const att_group_query_attention_config *config, att_layer **out), (config, out), ATT_ERR_INTERNAL) \
    X(att_status, att_reuse_multi_head_attention_create,                                            \
      (const att_reuse_multi_head_attention_config *config, att_layer **out), (config, out),       \
      ATT_ERR_INTERNAL)                                                                             \
    X(att_status, att_layer_destroy, (att_layer *layer), (layer), ATT_ERR_INTERNAL)                  \
    X(att_status, att_layer_build,                                                                  \
      (att_layer *layer, const att_shape *query_shape, const att_shape *value_shape,                \
       const att_shape *key_shape), (layer, query_shape, value_shape, key_shape), ATT_ERR_INTERNAL) \
    X(att_status, att_layer_is_built, (const att_layer *layer, int32_t *built), (layer, built),     \
      ATT_ERR_INTERNAL)                                                                             \
    X(att_status, att_layer_weight_count, (const att_layer *layer, size_t *count), (layer, count),  \
      ATT_ERR_INTERNAL)                                                                             \
    X(att_status, att_layer_weight_info,                                                            \
      (const att_layer *layer, size_t index, att_shape *shape, const char **name),                 \
      (layer, index, shape, name), ATT_ERR_INTERNAL)                                                \
    X(att_status, att_layer_get_weight, (const att_layer *layer, size_t index, att_tensor *out),    \
      (layer, index, out), ATT_ERR_INTERNAL)                                                        \
    X(att_status, att_layer_set_weight, (att_layer *layer, size_t index, const att_tensor *value),  \
      (layer, index, value), ATT_ERR_INTERNAL)                                                      \
    X(att_status, att_layer_output_shape,                                                           \
      (const att_layer *layer, const att_shape *query_shape, const att_shape *value_shape,          \
       const att_shape *key_shape, att_shape *output_shape, att_shape *scores_shape),               \
      (layer, query_shape, value_shape, key_shape, output_shape, scores_shape), ATT_ERR_INTERNAL)   \
    X(att_status, att_layer_call, (const att_layer *layer, const att_call_args *args), (layer, args), \
      ATT_ERR_INTERNAL)                                                                             \
    X(att_status, att_layer_backward,                                                               \
      (const att_layer *layer, const att_call_args *args, const att_gradient_args *grads),          \
      (layer, args, grads), ATT_ERR_INTERNAL)                                                       \
    X(att_status, att_layer_losses,                                                                 \
      (const att_layer *layer, const att_call_args *args, double *losses, size_t capacity,          \
       size_t *count), (layer, args, losses, capacity, count), ATT_ERR_INTERNAL)                    \
    X(att_status, att_layer_apply_constraints, (att_layer *layer), (layer), ATT_ERR_INTERNAL)        \
    X(att_status, att_layer_save, (const att_layer *layer, const char *path), (layer, path),        \
      ATT_ERR_INTERNAL)                                                                             \
    X(att_status, att_layer_load, (const char *path, att_layer **out), (path, out), ATT_ERR_INTERNAL) \
    X(att_status, att_dot_product_attention, (const att_dot_product_attention_args *args), (args),  \
      ATT_ERR_INTERNAL)

#define ATT_STRINGIFY_(x) #x
#define ATT_STRINGIFY(x) ATT_STRINGIFY_(x)
#define ATT_VERSION_STRING                                                                          \
    ATT_STRINGIFY(ATT_VERSION_MAJOR) "." ATT_STRINGIFY(ATT_VERSION_MINOR) "." ATT_STRINGIFY(ATT_VERSION_PATCH)

/* att_status_name's answer when no variant could be loaded (the variants have their own). */
static const char *status_name(att_status status) {
    static const char *const names[] = {
        "ATT_OK", "ATT_ERR_NULL_ARGUMENT", "ATT_ERR_INVALID_ARGUMENT", "ATT_ERR_SHAPE", "ATT_ERR_DTYPE",
        "ATT_ERR_INVALID_HANDLE", "ATT_ERR_NOT_BUILT", "ATT_ERR_STRUCT_SIZE", "ATT_ERR_OUT_OF_MEMORY",
        "ATT_ERR_INTERNAL", "ATT_ERR_BUSY", "ATT_ERR_IO"};
    return (unsigned)status < sizeof names / sizeof *names ? names[status] : "unknown status";
}

/* The loaded variant's functions. */
#define ATT_POINTER(ret, name, params, args, fallback) ret(*name) params;
static struct {
    ATT_FORWARDED(ATT_POINTER)
} variant;

static const char *variant_name = "none";
static char load_error[8192];
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

/* Kernel variants, best first; `cpu_has` says whether this CPU and OS can run one. */
enum isa { ISA_AVX512, ISA_AVX2, ISA_BASELINE, ISA_COUNT };
static const char *const isa_names[ISA_COUNT] = {"avx512", "avx2", "baseline"};

/* The OS saves the register state of every bit of `mask` in XCR0. */
static int os_saves(unsigned mask) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (eax & mask) == mask;
}

static int cpu_has(enum isa isa) {
    unsigned a, b, c, d;
    if (isa == ISA_BASELINE) return 1;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    /* FMA 12, MOVBE 22, POPCNT 23, OSXSAVE 27, AVX 28, F16C 29 */
    const unsigned leaf1 = 1u << 12 | 1u << 22 | 1u << 23 | 1u << 27 | 1u << 28 | 1u << 29;
    if ((c & leaf1) != leaf1 || !os_saves(0x6)) return 0; /* XMM and YMM state */
    unsigned ext_c = 0;
    if (!__get_cpuid(0x80000001, &a, &b, &ext_c, &d) || !(ext_c & 1u << 5)) return 0; /* LZCNT */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned avx2 = 1u << 3 | 1u << 5 | 1u << 8; /* BMI1, AVX2, BMI2 */
    if ((b & avx2) != avx2) return 0;
    if (isa == ISA_AVX2) return 1;
    const unsigned avx512 = 1u << 16 | 1u << 17 | 1u << 28 | 1u << 30 | 1u << 31; /* F DQ CD BW VL */
    return (b & avx512) == avx512 && os_saves(0xE6); /* + opmask, ZMM0-15 upper, ZMM16-31 */
}

/* The directory this library was loaded from, with a trailing '/', in `dir`. */
static int own_directory(char *dir, size_t size) {
    Dl_info info;
    if (!dladdr((void *)&own_directory, &info) || !info.dli_fname) return 0;
    const char *slash = strrchr(info.dli_fname, '/');
    size_t length = slash ? (size_t)(slash - info.dli_fname) + 1 : 0;
    if (length >= size) return 0;
    memcpy(dir, info.dli_fname, length);
    dir[length] = '\0';
    return 1;
}

/* Opens variant `isa` and fills `variant`; 0 with load_error set when it cannot. */
static int open_variant(const char *dir, enum isa isa) {
    char path[4096];
    if (snprintf(path, sizeof path, "%slibattention-%s.so", dir, isa_names[isa]) >= (int)sizeof path) return 0;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_error, sizeof load_error, "libattention: cannot load the %s kernels: %s", isa_names[isa],
                 dlerror());
        return 0;
    }
#define ATT_RESOLVE(ret, name, params, args, fallback)                                             \
    if (!(*(void **)&variant.name = dlsym(handle, #name))) {                                        \
        snprintf(load_error, sizeof load_error, "libattention: %s has no %s", path, #name);        \
        dlclose(handle);                                                                           \
        memset(&variant, 0, sizeof variant);                                                       \
        return 0;                                                                                  \
    }
    ATT_FORWARDED(ATT_RESOLVE)
    variant_name = isa_names[isa];
    return 1;
}

static void load(void) {
    const char *cap = getenv("ATTENTION_MAX_ISA");
    int first = ISA_AVX512;
    if (cap && *cap) {
        for (first = 0; first < ISA_COUNT && strcmp(cap, isa_names[first]) != 0; first++) {}
        if (first == ISA_COUNT) {
            snprintf(load_error, sizeof load_error,
                     "libattention: ATTENTION_MAX_ISA is \"%.64s\"; expected avx512, avx2 or baseline", cap);
            return;
        }
    }
    char dir[4096];
    if (!own_directory(dir, sizeof dir)) {
        snprintf(load_error, sizeof load_error, "libattention: cannot find the directory it was loaded from");
        return;
    }
    for (int isa = first; isa < ISA_COUNT; isa++)
        if (cpu_has((enum isa)isa) && open_variant(dir, (enum isa)isa)) return;
}

static int loaded(void) {
    pthread_once(&load_once, load);
    return variant.att_version != NULL;
}

#define ATT_STUB(ret, name, params, args, fallback)                                                \
    ret name params { return loaded() ? variant.name args : (fallback); }
ATT_FORWARDED(ATT_STUB)

const char *att_cpu_kernels(void) {
    loaded();
    return variant_name;
}
