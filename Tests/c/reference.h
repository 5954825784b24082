/*
 * reference.h — plain C building blocks of the reference loops the C tests compare
 * libattention with: softmax, numpy broadcasting, dense projection, and the header's dropout
 * rule (Philox-4x32-10). All in double.
 */
#ifndef ATT_TEST_REFERENCE_H
#define ATT_TEST_REFERENCE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "attention.h"

/* Philox-4x32-10 (Salmon et al. 2011), in place on the counter. */
static inline void philox4x32_10(uint32_t c[4], const uint32_t key[2]) {
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* The header's dropout rule: whether score element f survives dropout at `rate`. */
static inline int dropout_keeps(uint64_t f, double rate, uint64_t seed, uint64_t stream) {
    uint32_t c[4] = {(uint32_t)f, (uint32_t)(f >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(c, key);
    return (double)(c[0] >> 8) * 0x1p-24 >= rate;
}

/* In-place softmax of x[0 .. n-1]. */
static inline void softmax(double *x, int64_t n) {
    double m = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, x[i]);
    for (int64_t i = 0; i < n; i++) sum += (x[i] = exp(x[i] - m));
    for (int64_t i = 0; i < n; i++) x[i] /= sum;
}

/* The flat index, in a tensor of shape s, of the rank-`rank` index idx that s broadcasts to
 * (numpy rules: trailing dims aligned, size-1 dims repeat). */
static inline size_t broadcast_index(att_shape s, const int64_t *idx, int rank) {
    size_t at = 0;
    for (int i = 0; i < s.rank; i++)
        at = at * (size_t)s.dims[i] + (s.dims[i] == 1 ? 0 : (size_t)idx[rank - s.rank + i]);
    return at;
}

/* y (rows, dout) = x (rows, din) · w (din, dout) + b (dout; NULL for none). */
static inline void project(const double *x, int64_t rows, int64_t din, const double *w, const double *b,
                           int64_t dout, double *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < dout; c++) {
            double s = b ? b[c] : 0;
            for (int64_t d = 0; d < din; d++) s += x[r * din + d] * w[d * dout + c];
            y[r * dout + c] = s;
        }
}

/* Applies the header's dropout to weights w[0 .. n-1], the scores elements first .. first+n-1. */
static inline void apply_dropout(double *w, int64_t n, uint64_t first, double rate, uint64_t seed, uint64_t stream) {
    for (int64_t j = 0; j < n; j++)
        w[j] = dropout_keeps(first + (uint64_t)j, rate, seed, stream) ? w[j] / (1 - rate) : 0;
}

#endif /* ATT_TEST_REFERENCE_H */
