/* Private to the kernels (pyx/kernels.pyx): SSE code for loops the compiler
 * does not vectorise by itself. Not part of the public C API (convt_blas.h).
 *
 * SSE is part of every x86-64 CPU, so this needs no runtime dispatch; other
 * targets get CONVT_BLAS_SIMD_LANES 0 and the kernels' scalar loops.
 */
#ifndef CONVT_BLAS_SIMD_H
#define CONVT_BLAS_SIMD_H

#include <stddef.h>

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define CONVT_BLAS_SIMD_LANES 4

/* F(3,2)'s input transform of triples [0, triples) for channels [0, count),
 * count a multiple of 4, of input rows sx_c apart with unit stride along
 * positions. x points at position 3t - 1 of channel 0 for the first triple
 * (all four positions of every triple readable). With d_j = x[3t - 1 + j] of
 * a channel, stores components first..first+n_components-1 of (d0 - d2,
 * d1 + d2, d2 - d1, d3 - d1) at v[t ld + i], v[step + t ld + i], ...: the
 * scalar loop's operations, so the same bits. */
static inline void convt_blas_winograd_quad_f32(const float *row, ptrdiff_t sx_c, __m128 *d0,
                                                __m128 *d1, __m128 *d2, __m128 *d3)
{
    /* d0..d3 of four channels sx_c apart, from each channel's four positions at row */
    __m128 a = _mm_loadu_ps(row), b = _mm_loadu_ps(row + sx_c);
    __m128 c = _mm_loadu_ps(row + 2 * sx_c), d = _mm_loadu_ps(row + 3 * sx_c);
    _MM_TRANSPOSE4_PS(a, b, c, d);
    *d0 = a; *d1 = b; *d2 = c; *d3 = d;
}

/* Component k (0..3) of the transform of d0..d3: inlined with a literal k,
 * it is one vector operation. */
static inline __m128 convt_blas_winograd_component_f32(__m128 d0, __m128 d1, __m128 d2,
                                                       __m128 d3, int k)
{
    return k == 0 ? _mm_sub_ps(d0, d2) : k == 1 ? _mm_add_ps(d1, d2)
         : k == 2 ? _mm_sub_ps(d2, d1) : _mm_sub_ps(d3, d1);
}

static inline void convt_blas_winograd_inputs_f32(const float *x, ptrdiff_t sx_c,
                                                  ptrdiff_t count, ptrdiff_t triples,
                                                  int first, int n_components, float *v,
                                                  ptrdiff_t ld, ptrdiff_t step)
{
    ptrdiff_t i, t;
    int k;
    __m128 d0, d1, d2, d3;
    if (n_components == 4) {  /* all four: the loop without a branch per vector */
        for (t = 0; t < triples; t++)
            for (i = 0; i < count; i += 4) {
                float *w = v + t * ld + i;
                convt_blas_winograd_quad_f32(x + 3 * t + i * sx_c, sx_c, &d0, &d1, &d2, &d3);
                _mm_storeu_ps(w, convt_blas_winograd_component_f32(d0, d1, d2, d3, 0));
                _mm_storeu_ps(w + step, convt_blas_winograd_component_f32(d0, d1, d2, d3, 1));
                _mm_storeu_ps(w + 2 * step,
                              convt_blas_winograd_component_f32(d0, d1, d2, d3, 2));
                _mm_storeu_ps(w + 3 * step,
                              convt_blas_winograd_component_f32(d0, d1, d2, d3, 3));
            }
        return;
    }
    for (t = 0; t < triples; t++)
        for (i = 0; i < count; i += 4) {
            convt_blas_winograd_quad_f32(x + 3 * t + i * sx_c, sx_c, &d0, &d1, &d2, &d3);
            for (k = first; k < first + n_components; k++)
                _mm_storeu_ps(v + (k - first) * step + t * ld + i,
                              convt_blas_winograd_component_f32(d0, d1, d2, d3, k));
        }
}

/* F(3,2)'s outputs from four products, in _combine_triples' order:
 * P0 + (P1 + P2), P1 - P2, (P1 + P2) + P3, each plus bias if has_bias.
 * Lanes that are not finite (v - v is 0 for finite v only) are set in
 * *not_finite. */
static inline void convt_blas_combine4_f32(__m128 p0, __m128 p1, __m128 p2, __m128 p3,
                                           __m128 bias, int has_bias, __m128 *early,
                                           __m128 *middle, __m128 *late, __m128 *not_finite)
{
    const __m128 zero = _mm_setzero_ps();
    __m128 both = _mm_add_ps(p1, p2);
    __m128 e = _mm_add_ps(p0, both), m = _mm_sub_ps(p1, p2), l = _mm_add_ps(both, p3);
    if (has_bias) {
        e = _mm_add_ps(e, bias);
        m = _mm_add_ps(m, bias);
        l = _mm_add_ps(l, bias);
    }
    *not_finite = _mm_or_ps(*not_finite, _mm_cmpneq_ps(_mm_sub_ps(e, e), zero));
    *not_finite = _mm_or_ps(*not_finite, _mm_cmpneq_ps(_mm_sub_ps(m, m), zero));
    *not_finite = _mm_or_ps(*not_finite, _mm_cmpneq_ps(_mm_sub_ps(l, l), zero));
    *early = e;
    *middle = m;
    *late = l;
}

/* F(3,2)'s combine at stride 2 for two channels side by side, triples
 * [0, count) inside the output. p0: the pair's four phases (channel c's two,
 * then c + 1's) in P0's row of the first triple, rows ``rows`` apart, P1, P2,
 * P3 ``step`` apart; dst0, dst1: each channel's first output of that triple.
 * The scalar loop's operations (convt_blas_combine4_f32), so the same bits,
 * four lanes at a time instead of the two the compiler finds within one
 * channel. Returns nonzero if a value stored is not finite. */
static inline int convt_blas_combine_s2_f32(const float *p0, ptrdiff_t step, ptrdiff_t rows,
                                             ptrdiff_t count, float b0, float b1, int has_bias,
                                             float *dst0, float *dst1)
{
    const __m128 bias = _mm_setr_ps(b0, b0, b1, b1);
    __m128 not_finite = _mm_setzero_ps();
    ptrdiff_t t;
    for (t = 0; t < count; t++) {
        const float *q = p0 + t * rows;
        __m128 early, middle, late;
        convt_blas_combine4_f32(_mm_loadu_ps(q), _mm_loadu_ps(q + step),
                                _mm_loadu_ps(q + 2 * step), _mm_loadu_ps(q + 3 * step),
                                bias, has_bias, &early, &middle, &late, &not_finite);
        /* Channel c's outputs 6t..6t+5 are early, middle, late of its two
         * phases: the low halves; channel c + 1's, the high halves. */
        _mm_storeu_ps(dst0 + 6 * t, _mm_movelh_ps(early, middle));
        _mm_storel_pi((__m64 *)(dst0 + 6 * t + 4), late);
        _mm_storeu_ps(dst1 + 6 * t, _mm_movehl_ps(middle, early));
        _mm_storeh_pi((__m64 *)(dst1 + 6 * t + 4), late);
    }
    return _mm_movemask_ps(not_finite);
}

/* The same for one channel at a stride s that is a multiple of 4: its s
 * phases of each product four at a time, stored as they are (outputs
 * 3ts + r, 3ts + s + r, 3ts + 2s + r). */
static inline int convt_blas_combine_s4k_f32(const float *p0, ptrdiff_t step, ptrdiff_t rows,
                                             ptrdiff_t count, ptrdiff_t s, float b,
                                             int has_bias, float *dst)
{
    const __m128 bias = _mm_set1_ps(b);
    __m128 not_finite = _mm_setzero_ps();
    ptrdiff_t t, r;
    for (t = 0; t < count; t++) {
        const float *q = p0 + t * rows;
        float *d = dst + 3 * t * s;
        for (r = 0; r < s; r += 4) {
            __m128 early, middle, late;
            convt_blas_combine4_f32(_mm_loadu_ps(q + r), _mm_loadu_ps(q + step + r),
                                    _mm_loadu_ps(q + 2 * step + r),
                                    _mm_loadu_ps(q + 3 * step + r),
                                    bias, has_bias, &early, &middle, &late, &not_finite);
            _mm_storeu_ps(d + r, early);
            _mm_storeu_ps(d + s + r, middle);
            _mm_storeu_ps(d + 2 * s + r, late);
        }
    }
    return _mm_movemask_ps(not_finite);
}

/* The nonzero entries of each of the ``rows`` rows of a rows x 6 matrix (row-major),
 * in order: terms[i] of them, their columns at index[6i + q] and their values
 * broadcast at coef[6i + q]. */
static inline void convt_blas_form_terms_f32(const float *matrix, int rows, int *terms,
                                             int *index, __m128 *coef)
{
    int i, k;
    for (i = 0; i < rows; i++) {
        terms[i] = 0;
        for (k = 0; k < 6; k++)
            if (matrix[6 * i + k] != 0.0f) {
                index[6 * i + terms[i]] = k;
                coef[6 * i + terms[i]] = _mm_set1_ps(matrix[6 * i + k]);
                terms[i]++;
            }
    }
}

/* F(m, r)'s input transform (six components) of spans [0, spans) for channels
 * [0, count), count a multiple of 4, of input rows sx_c apart with unit
 * stride along positions. x points at position m t - (r - 1) of channel 0 for
 * the first span; eight positions from there readable for every span. With
 * d_l that position plus l, component k is the sum over l of bt[6k + l] d_l,
 * zero entries skipped, the first term alone, in order of l: the scalar
 * loop's operations (_form_span), so the same bits. Stores components
 * first..first+n_components-1 at v[t ld + i], v[step + t ld + i], ... */
static inline void convt_blas_form_inputs_f32(const float *x, ptrdiff_t sx_c, ptrdiff_t count,
                                              ptrdiff_t spans, ptrdiff_t m, const float *bt,
                                              int first, int n_components, float *v,
                                              ptrdiff_t ld, ptrdiff_t step)
{
    /* Up to CONVT_BLAS_FORM_SPANS spans of four channels at a time: their positions
     * are transposed once into d (a position's four channels per vector), which
     * the spans, overlapping by 6 - m positions, then read. */
    enum { CONVT_BLAS_FORM_SPANS = 32 };
    int terms[6], index[36], k, q;
    __m128 coef[36], d[4 * CONVT_BLAS_FORM_SPANS + 8];
    ptrdiff_t i, t, t0, n, p, needed, readable;
    convt_blas_form_terms_f32(bt, 6, terms, index, coef);
    for (i = 0; i < count; i += 4) {
        const float *r0 = x + i * sx_c, *r1 = r0 + sx_c, *r2 = r1 + sx_c, *r3 = r2 + sx_c;
        for (t0 = 0; t0 < spans; t0 += CONVT_BLAS_FORM_SPANS) {
            n = spans - t0 < CONVT_BLAS_FORM_SPANS ? spans - t0 : CONVT_BLAS_FORM_SPANS;
            needed = m * (n - 1) + 6;
            readable = m * (n - 1) + 8;  /* eight positions from each span's first */
            for (p = t0 * m; p + 4 <= t0 * m + readable && p < t0 * m + needed; p += 4) {
                __m128 a = _mm_loadu_ps(r0 + p), b = _mm_loadu_ps(r1 + p),
                       c = _mm_loadu_ps(r2 + p), e = _mm_loadu_ps(r3 + p);
                _MM_TRANSPOSE4_PS(a, b, c, e);
                d[p - t0 * m] = a; d[p - t0 * m + 1] = b;
                d[p - t0 * m + 2] = c; d[p - t0 * m + 3] = e;
            }
            for (; p < t0 * m + needed; p++)
                d[p - t0 * m] = _mm_setr_ps(r0[p], r1[p], r2[p], r3[p]);
            for (t = 0; t < n; t++) {
                const __m128 *span = d + m * t;
                for (k = first; k < first + n_components; k++) {
                    __m128 acc = _mm_mul_ps(coef[6 * k], span[index[6 * k]]);
                    for (q = 1; q < terms[k]; q++)
                        acc = _mm_add_ps(acc, _mm_mul_ps(coef[6 * k + q],
                                                         span[index[6 * k + q]]));
                    _mm_storeu_ps(v + (k - first) * step + (t0 + t) * ld + i, acc);
                }
            }
        }
    }
}

/* F(m, r)'s outputs at stride 1 (m = 3 or 4, six products) for channels
 * [0, count), a multiple of 4, spans [0, spans) inside the output. p0: P0's
 * row of the first span, channels side by side, rows ``rows`` apart, P1..P5
 * ``step`` apart; dst: channel 0's first output of that span, channels
 * out_step apart; bias: count values or NULL. Output i of a span is bias (or
 * 0) plus at[6i + k] P_k over the nonzero at, in order of k: the scalar loop's
 * operations (_form_outputs), so the same bits. Returns nonzero if a value
 * stored is not finite. */
static inline int convt_blas_form_outputs_s1_f32(const float *p0, ptrdiff_t step,
                                                 ptrdiff_t rows, ptrdiff_t count,
                                                 ptrdiff_t spans, ptrdiff_t m, const float *at,
                                                 const float *bias, float *dst,
                                                 ptrdiff_t out_step)
{
    const __m128 zero = _mm_setzero_ps();
    __m128 not_finite = zero, coef[24], y[4];
    int terms[4], index[24], i, q;
    ptrdiff_t c, t;
    convt_blas_form_terms_f32(at, (int)m, terms, index, coef);
    for (c = 0; c < count; c += 4) {
        const __m128 b = bias ? _mm_loadu_ps(bias + c) : zero;
        float *d0 = dst + c * out_step, *d1 = d0 + out_step, *d2 = d1 + out_step,
              *d3 = d2 + out_step;
        for (t = 0; t < spans; t++) {
            const float *p = p0 + t * rows + c;
            y[3] = zero;
            for (i = 0; i < m; i++) {
                __m128 acc = b;
                for (q = 0; q < terms[i]; q++)
                    acc = _mm_add_ps(acc, _mm_mul_ps(coef[6 * i + q],
                                                     _mm_loadu_ps(p + index[6 * i + q] * step)));
                not_finite = _mm_or_ps(not_finite, _mm_cmpneq_ps(_mm_sub_ps(acc, acc), zero));
                y[i] = acc;
            }
            _MM_TRANSPOSE4_PS(y[0], y[1], y[2], y[3]);
            if (m == 4) {
                _mm_storeu_ps(d0 + 4 * t, y[0]); _mm_storeu_ps(d1 + 4 * t, y[1]);
                _mm_storeu_ps(d2 + 4 * t, y[2]); _mm_storeu_ps(d3 + 4 * t, y[3]);
            } else {
                _mm_storel_pi((__m64 *)(d0 + 3 * t), y[0]);
                _mm_store_ss(d0 + 3 * t + 2, _mm_movehl_ps(y[0], y[0]));
                _mm_storel_pi((__m64 *)(d1 + 3 * t), y[1]);
                _mm_store_ss(d1 + 3 * t + 2, _mm_movehl_ps(y[1], y[1]));
                _mm_storel_pi((__m64 *)(d2 + 3 * t), y[2]);
                _mm_store_ss(d2 + 3 * t + 2, _mm_movehl_ps(y[2], y[2]));
                _mm_storel_pi((__m64 *)(d3 + 3 * t), y[3]);
                _mm_store_ss(d3 + 3 * t + 2, _mm_movehl_ps(y[3], y[3]));
            }
        }
    }
    return _mm_movemask_ps(not_finite);
}

/* A depthwise unit's outputs of one phase that have exactly two taps, four
 * channels at a time: acc[i out_step + c] = (b[c] + tap_a[c] x[i + 1][c])
 * + tap_b[c] x[i][c] for i in [0, count), c in [0, channels) (a multiple of
 * 4), x[j] = x + j width (position-major input rows, x[0] the row before
 * the first output's), b = bias or 0: the order of _run_depthwise_unit's
 * loop, so the same bits. The taps and bias stay in registers along the
 * phase, and each input row is loaded once. */
static inline void convt_blas_depthwise_two_taps_f32(const float *x, ptrdiff_t width,
                                                     const float *tap_a, const float *tap_b,
                                                     const float *bias, ptrdiff_t channels,
                                                     ptrdiff_t count, ptrdiff_t out_step,
                                                     float *acc)
{
    ptrdiff_t c, i;
    for (c = 0; c < channels; c += 4) {
        const __m128 a = _mm_loadu_ps(tap_a + c), b = _mm_loadu_ps(tap_b + c);
        const __m128 start = bias ? _mm_loadu_ps(bias + c) : _mm_setzero_ps();
        __m128 previous = _mm_loadu_ps(x + c);
        for (i = 0; i < count; i++) {
            __m128 current = _mm_loadu_ps(x + (i + 1) * width + c);
            __m128 sum = _mm_add_ps(_mm_add_ps(start, _mm_mul_ps(a, current)),
                                    _mm_mul_ps(b, previous));
            _mm_storeu_ps(acc + i * out_step + c, sum);
            previous = current;
        }
    }
}

/* dst[j ld_dst + i] = src[i ld_src + j] for rows [0, rows), a multiple of 4,
 * and columns [0, cols): 4 x 4 blocks through registers. */
static inline void convt_blas_transpose_f32(const float *src, ptrdiff_t ld_src,
                                            ptrdiff_t rows, ptrdiff_t cols,
                                            float *dst, ptrdiff_t ld_dst)
{
    ptrdiff_t i, j;
    for (i = 0; i < rows; i += 4) {
        const float *s0 = src + i * ld_src, *s1 = s0 + ld_src, *s2 = s1 + ld_src,
                    *s3 = s2 + ld_src;
        for (j = 0; j + 4 <= cols; j += 4) {
            __m128 a = _mm_loadu_ps(s0 + j), b = _mm_loadu_ps(s1 + j),
                   c = _mm_loadu_ps(s2 + j), d = _mm_loadu_ps(s3 + j);
            _MM_TRANSPOSE4_PS(a, b, c, d);
            _mm_storeu_ps(dst + j * ld_dst + i, a);
            _mm_storeu_ps(dst + (j + 1) * ld_dst + i, b);
            _mm_storeu_ps(dst + (j + 2) * ld_dst + i, c);
            _mm_storeu_ps(dst + (j + 3) * ld_dst + i, d);
        }
        for (; j < cols; j++) {
            float *column = dst + j * ld_dst + i;
            column[0] = s0[j]; column[1] = s1[j]; column[2] = s2[j]; column[3] = s3[j];
        }
    }
}

#else
#define CONVT_BLAS_SIMD_LANES 0

static inline void convt_blas_transpose_f32(const float *src, ptrdiff_t ld_src,
                                            ptrdiff_t rows, ptrdiff_t cols,
                                            float *dst, ptrdiff_t ld_dst)
{
    (void)src; (void)ld_src; (void)rows; (void)cols; (void)dst; (void)ld_dst;
}  /* never called: 0 lanes */

static inline void convt_blas_winograd_inputs_f32(const float *x, ptrdiff_t sx_c,
                                                  ptrdiff_t count, ptrdiff_t triples,
                                                  int first, int n_components, float *v,
                                                  ptrdiff_t ld, ptrdiff_t step)
{
    (void)x; (void)sx_c; (void)count; (void)triples; (void)first; (void)n_components;
    (void)v; (void)ld; (void)step;
}  /* never called: 0 lanes */

static inline int convt_blas_combine_s2_f32(const float *p0, ptrdiff_t step, ptrdiff_t rows,
                                            ptrdiff_t count, float b0, float b1, int has_bias,
                                            float *dst0, float *dst1)
{
    (void)p0; (void)step; (void)rows; (void)count; (void)b0; (void)b1; (void)has_bias;
    (void)dst0; (void)dst1;
    return 0;
}  /* never called: 0 lanes */

static inline int convt_blas_combine_s4k_f32(const float *p0, ptrdiff_t step, ptrdiff_t rows,
                                             ptrdiff_t count, ptrdiff_t s, float b,
                                             int has_bias, float *dst)
{
    (void)p0; (void)step; (void)rows; (void)count; (void)s; (void)b; (void)has_bias;
    (void)dst;
    return 0;
}  /* never called: 0 lanes */

static inline void convt_blas_form_inputs_f32(const float *x, ptrdiff_t sx_c, ptrdiff_t count,
                                              ptrdiff_t spans, ptrdiff_t m, const float *bt,
                                              int first, int n_components, float *v,
                                              ptrdiff_t ld, ptrdiff_t step)
{
    (void)x; (void)sx_c; (void)count; (void)spans; (void)m; (void)bt; (void)first;
    (void)n_components; (void)v; (void)ld; (void)step;
}  /* never called: 0 lanes */

static inline int convt_blas_form_outputs_s1_f32(const float *p0, ptrdiff_t step,
                                                 ptrdiff_t rows, ptrdiff_t count,
                                                 ptrdiff_t spans, ptrdiff_t m, const float *at,
                                                 const float *bias, float *dst,
                                                 ptrdiff_t out_step)
{
    (void)p0; (void)step; (void)rows; (void)count; (void)spans; (void)m; (void)at;
    (void)bias; (void)dst; (void)out_step;
    return 0;
}  /* never called: 0 lanes */

static inline void convt_blas_depthwise_two_taps_f32(const float *x, ptrdiff_t width,
                                                     const float *tap_a, const float *tap_b,
                                                     const float *bias, ptrdiff_t channels,
                                                     ptrdiff_t count, ptrdiff_t out_step,
                                                     float *acc)
{
    (void)x; (void)width; (void)tap_a; (void)tap_b; (void)bias; (void)channels; (void)count;
    (void)out_step; (void)acc;
}  /* never called: 0 lanes */
#endif

#endif /* CONVT_BLAS_SIMD_H */
