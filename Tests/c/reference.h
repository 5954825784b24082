/*
 * reference.h — plain C building blocks of the reference loops the C tests compare
 * libattention with: softmax, numpy broadcasting, dense projection, the header's dropout
 * rule (Philox-4x32-10), Keras's multi-head mask, and the weights and weighted sums of
 * projected heads (grouped key/value heads, relative position bias, each way of masking).
 * All in double.
 */
#ifndef ATT_TEST_REFERENCE_H
#define ATT_TEST_REFERENCE_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- multi-head attention -------------------------------------------------------------- */

/* How masked logits are treated: Keras's two code paths and TF Model Garden's. */
typedef enum {
    MASKED_FUSED,    /* Keras's fused path: logit -0.7·FLT_MAX, so a fully masked row is uniform */
    MASKED_ZEROED,   /* Keras's explicit path: weight 0, so a fully masked row is all 0 */
    MASKED_MINUS_1E9 /* TF Model Garden: logit + (-1e9) in the layer's dtype, nothing zeroed */
} masked_logits;

/* The masks of a multi-head call (NULL or 0: not given). */
typedef struct {
    const uint8_t *query, *value, *key; /* (B, T), (B, S), (B, S) */
    const uint8_t *attention;           /* broadcasts to (B, T, S) */
    att_shape attention_shape;
    int causal;                         /* keep s <= t */
    int64_t window;                     /* keep |t - s| < window */
} ref_masks;

/* Keras's combined multi-head mask keep (B, T, S): every given mask ANDed. Caller frees. */
static inline uint8_t *ref_keep(const ref_masks *m, int64_t B, int64_t T, int64_t S) {
    uint8_t *keep = malloc((size_t)(B * T * S));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t s = 0; s < S; s++) {
                int64_t idx[3] = {b, t, s};
                keep[(b * T + t) * S + s] =
                    (!m->query || m->query[b * T + t]) && (!m->value || m->value[b * S + s]) &&
                    (!m->key || m->key[b * S + s]) && (!m->causal || s <= t) &&
                    (!m->window || llabs(t - s) < m->window) &&
                    (!m->attention || m->attention[broadcast_index(m->attention_shape, idx, 3)]);
            }
    return keep;
}

/* The projected heads of one attention problem: query (B,T,N,Hk), key (B,S,K,Hk), value
 * (B,S,K,Hv); query head n uses key/value head n / (N/K). Their weights are heads
 * first .. first+N-1 of a scores tensor (B, total, T, S). */
typedef struct {
    int64_t B, T, S, N, K, Hk, Hv, first, total;
    const double *q, *k, *v;
} ref_heads;

/* Writes the heads' weights into scores: softmax over s of q·k/√Hk [+ pe[n, clamp(s - t + P - 1,
 * 0, 2P - 2)] when pe (N, 2P - 1) is given], positions with keep (B,T,S) 0 masked as `how`
 * says (the -1e9 addition rounded as the layer's dtype `dt` rounds it). keep NULL: none. */
static inline void ref_head_weights(const ref_heads *h, const uint8_t *keep, const double *pe, int64_t P,
                                    masked_logits how, att_dtype dt, double *scores) {
    int64_t R = h->N / h->K;
    for (int64_t b = 0; b < h->B; b++)
        for (int64_t n = 0; n < h->N; n++)
            for (int64_t t = 0; t < h->T; t++) {
                double *w = scores + ((b * h->total + h->first + n) * h->T + t) * h->S;
                int any = 0;
                for (int64_t s = 0; s < h->S; s++) {
                    double x = 0;
                    for (int64_t e = 0; e < h->Hk; e++)
                        x += h->q[((b * h->T + t) * h->N + n) * h->Hk + e] / sqrt((double)h->Hk) *
                             h->k[((b * h->S + s) * h->K + n / R) * h->Hk + e];
                    if (pe) {
                        int64_t d = s - t + P - 1;
                        x += pe[n * (2 * P - 1) + (d < 0 ? 0 : d > 2 * P - 2 ? 2 * P - 2 : d)];
                    }
                    int kept = !keep || keep[(b * h->T + t) * h->S + s];
                    any |= kept;
                    if (!kept)
                        x = how == MASKED_FUSED    ? -0.7 * FLT_MAX
                            : how == MASKED_ZEROED ? -INFINITY
                            : dt == ATT_FLOAT32    ? (double)((float)x + -1e9f)
                                                   : x + -1e9;
                    w[s] = x;
                }
                if (any || how != MASKED_ZEROED) softmax(w, h->S);
                else
                    for (int64_t s = 0; s < h->S; s++) w[s] = 0;
            }
}

/* attn (B,T,N,Hv) = Σ_s w[s] · value[b, s, n / (N/K), :] with w the heads' weights in scores
 * after the header's dropout at `rate` (0: none), element f being the flat index in scores. */
static inline void ref_head_outputs(const ref_heads *h, const double *scores, double rate, uint64_t seed,
                                    uint64_t stream, double *attn) {
    int64_t R = h->N / h->K;
    double *w = malloc((size_t)h->S * sizeof *w);
    for (int64_t b = 0; b < h->B; b++)
        for (int64_t n = 0; n < h->N; n++)
            for (int64_t t = 0; t < h->T; t++) {
                uint64_t first = (uint64_t)(((b * h->total + h->first + n) * h->T + t) * h->S);
                memcpy(w, scores + first, (size_t)h->S * sizeof *w);
                if (rate > 0) apply_dropout(w, h->S, first, rate, seed, stream);
                for (int64_t e = 0; e < h->Hv; e++) {
                    double a = 0;
                    for (int64_t s = 0; s < h->S; s++) a += w[s] * h->v[((b * h->S + s) * h->K + n / R) * h->Hv + e];
                    attn[((b * h->T + t) * h->N + n) * h->Hv + e] = a;
                }
            }
    free(w);
}

#endif /* ATT_TEST_REFERENCE_H */
