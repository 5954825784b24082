/* What the kernels do across the lanes of vector registers, which Swift has no spelling
   for (a shuffle): square blocks transposed, and the largest lane. Compiled for the CPU of
   the Swift module that calls them, which picks the sizes of its kernel vector (16 floats in
   a zmm register on AVX-512, 8 in a ymm on the avx2 kernels).

   A block of n rows of n elements is loaded as n vectors; log2(n) rounds of interleaving row
   i with row i + n/2 (b[2i] = their low halves' lanes interleaved, b[2i + 1] = their high
   halves') leave row j holding column j. */
#ifndef VECTOR_SHUFFLES_H
#define VECTOR_SHUFFLES_H

/* Every function here is static inline, so no call passes a vector across a compiled
   boundary: clang's warning that a vector argument wider than the target's registers
   "changes the ABI" (the avx2 and baseline variants see the 512-bit, and baseline the 256-bit,
   definitions) does not apply. */
#ifdef __clang__
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpsabi"
#endif

/* Vectors of one kernel register (and halves of them); loads and stores through them may
   be unaligned and alias the kernels' scalars. */
#define SHUFFLE_VECTOR(scalar, n) __attribute__((ext_vector_type(n), aligned(sizeof(scalar)), __may_alias__))
typedef float shuffle_float16 SHUFFLE_VECTOR(float, 16);
typedef float shuffle_float8 SHUFFLE_VECTOR(float, 8);
typedef float shuffle_float4 SHUFFLE_VECTOR(float, 4);
typedef double shuffle_double8 SHUFFLE_VECTOR(double, 8);
typedef double shuffle_double4 SHUFFLE_VECTOR(double, 4);
typedef double shuffle_double2 SHUFFLE_VECTOR(double, 2);
typedef int shuffle_int16 __attribute__((ext_vector_type(16)));
typedef int shuffle_int8 __attribute__((ext_vector_type(8)));
typedef int shuffle_int4 __attribute__((ext_vector_type(4)));
typedef long shuffle_long8 __attribute__((ext_vector_type(8)));
typedef long shuffle_long4 __attribute__((ext_vector_type(4)));
typedef long shuffle_long2 __attribute__((ext_vector_type(2)));

#define TRANSPOSE_ZIP16_LOW 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define TRANSPOSE_ZIP16_HIGH 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#define TRANSPOSE_ZIP8_LOW 0, 8, 1, 9, 2, 10, 3, 11
#define TRANSPOSE_ZIP8_HIGH 4, 12, 5, 13, 6, 14, 7, 15
#define TRANSPOSE_ZIP4_LOW 0, 4, 1, 5
#define TRANSPOSE_ZIP4_HIGH 2, 6, 3, 7

/* out[j * out_stride + i] = in[i * in_stride + j] for i, j < n (strides in elements; no
   alignment needed; the blocks must not overlap). */
#define TRANSPOSE_BLOCK(name, scalar, vector, n, low, high)                                   \
    static inline void name(const scalar *in, long in_stride, scalar *out, long out_stride) { \
        vector a[n], b[n];                                                                    \
        for (int i = 0; i < n; i++) a[i] = *(const vector *)(in + i * in_stride);            \
        for (int round = 1; round < n; round *= 2) {                                          \
            for (int i = 0; i < n / 2; i++) {                                                 \
                b[2 * i] = __builtin_shufflevector(a[i], a[i + n / 2], low);                  \
                b[2 * i + 1] = __builtin_shufflevector(a[i], a[i + n / 2], high);             \
            }                                                                                 \
            for (int i = 0; i < n; i++) a[i] = b[i];                                          \
        }                                                                                     \
        for (int i = 0; i < n; i++) *(vector *)(out + i * out_stride) = a[i];                \
    }

TRANSPOSE_BLOCK(transpose_float_16x16, float, shuffle_float16, 16, TRANSPOSE_ZIP16_LOW, TRANSPOSE_ZIP16_HIGH)
TRANSPOSE_BLOCK(transpose_float_8x8, float, shuffle_float8, 8, TRANSPOSE_ZIP8_LOW, TRANSPOSE_ZIP8_HIGH)
TRANSPOSE_BLOCK(transpose_double_8x8, double, shuffle_double8, 8, TRANSPOSE_ZIP8_LOW, TRANSPOSE_ZIP8_HIGH)
TRANSPOSE_BLOCK(transpose_double_4x4, double, shuffle_double4, 4, TRANSPOSE_ZIP4_LOW, TRANSPOSE_ZIP4_HIGH)

/* The larger of a and b lane by lane: b where a < b, else a (one max instruction; a NaN in b
   is passed over). */
#define LARGER_LANES(name, vector, mask)                                                      \
    static inline vector name(vector a, vector b) {                                           \
        mask below = a < b;                                                                   \
        return (vector)(((mask)b & below) | ((mask)a & ~below));                              \
    }
LARGER_LANES(larger_float16, shuffle_float16, shuffle_int16)
LARGER_LANES(larger_float8, shuffle_float8, shuffle_int8)
LARGER_LANES(larger_float4, shuffle_float4, shuffle_int4)
LARGER_LANES(larger_double8, shuffle_double8, shuffle_long8)
LARGER_LANES(larger_double4, shuffle_double4, shuffle_long4)
LARGER_LANES(larger_double2, shuffle_double2, shuffle_long2)

/* The largest lane of v (a NaN may be passed over): halves compared until one lane is left. */
static inline float largest_lane_float4(shuffle_float4 v) {
    v = larger_float4(v, __builtin_shufflevector(v, v, 2, 3, 0, 1));
    return larger_float4(v, __builtin_shufflevector(v, v, 1, 0, 3, 2))[0];
}
static inline float largest_lane_float8(shuffle_float8 v) {
    return largest_lane_float4(larger_float4(__builtin_shufflevector(v, v, 0, 1, 2, 3),
                                             __builtin_shufflevector(v, v, 4, 5, 6, 7)));
}
static inline float largest_lane_float16(shuffle_float16 v) {
    return largest_lane_float8(larger_float8(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7),
                                             __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)));
}
static inline double largest_lane_double2(shuffle_double2 v) {
    return larger_double2(v, __builtin_shufflevector(v, v, 1, 0))[0];
}
static inline double largest_lane_double4(shuffle_double4 v) {
    return largest_lane_double2(larger_double2(__builtin_shufflevector(v, v, 0, 1), __builtin_shufflevector(v, v, 2, 3)));
}
static inline double largest_lane_double8(shuffle_double8 v) {
    return largest_lane_double4(larger_double4(__builtin_shufflevector(v, v, 0, 1, 2, 3),
                                               __builtin_shufflevector(v, v, 4, 5, 6, 7)));
}

/* The largest element of the `vectors` vectors at x (a NaN may be passed over; -inf for
   none): lane-wise in four independent chains, then the largest lane. */
#define LARGEST(name, scalar, vector, n, larger, largest_lane)                                \
    static inline scalar name(const scalar *x, long vectors) {                                \
        vector m0 = (vector)(-__builtin_inf()), m1 = m0, m2 = m0, m3 = m0;                    \
        long v = 0;                                                                           \
        for (; v + 4 <= vectors; v += 4) {                                                    \
            m0 = larger(m0, *(const vector *)(x + v * n));                                    \
            m1 = larger(m1, *(const vector *)(x + (v + 1) * n));                              \
            m2 = larger(m2, *(const vector *)(x + (v + 2) * n));                              \
            m3 = larger(m3, *(const vector *)(x + (v + 3) * n));                              \
        }                                                                                     \
        for (; v < vectors; v++) m0 = larger(m0, *(const vector *)(x + v * n));               \
        return largest_lane(larger(larger(m0, m1), larger(m2, m3)));                          \
    }
LARGEST(largest_float16s, float, shuffle_float16, 16, larger_float16, largest_lane_float16)
LARGEST(largest_float8s, float, shuffle_float8, 8, larger_float8, largest_lane_float8)
LARGEST(largest_double8s, double, shuffle_double8, 8, larger_double8, largest_lane_double8)
LARGEST(largest_double4s, double, shuffle_double4, 4, larger_double4, largest_lane_double4)

#ifdef __clang__
#pragma clang diagnostic pop
#endif

#endif
