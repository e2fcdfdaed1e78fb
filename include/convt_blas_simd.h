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
 * a channel, stores d0 - d2, d1 + d2, d2 - d1, d3 - d1 at v[t ld + i],
 * v[step + t ld + i], ...: the scalar loop's operations, so the same bits. */
static inline void convt_blas_winograd_inputs_f32(const float *x, ptrdiff_t sx_c,
                                                  ptrdiff_t count, ptrdiff_t triples,
                                                  float *v, ptrdiff_t ld, ptrdiff_t step)
{
    ptrdiff_t i, t;
    for (t = 0; t < triples; t++) {
        const float *row = x + 3 * t;
        float *w = v + t * ld;
        for (i = 0; i < count; i += 4) {
            __m128 d0 = _mm_loadu_ps(row + i * sx_c);       /* channel i:   d0..d3 */
            __m128 d1 = _mm_loadu_ps(row + (i + 1) * sx_c);
            __m128 d2 = _mm_loadu_ps(row + (i + 2) * sx_c);
            __m128 d3 = _mm_loadu_ps(row + (i + 3) * sx_c);
            _MM_TRANSPOSE4_PS(d0, d1, d2, d3);               /* now d_j of channels i..i+3 */
            _mm_storeu_ps(w + i, _mm_sub_ps(d0, d2));
            _mm_storeu_ps(w + step + i, _mm_add_ps(d1, d2));
            _mm_storeu_ps(w + 2 * step + i, _mm_sub_ps(d2, d1));
            _mm_storeu_ps(w + 3 * step + i, _mm_sub_ps(d3, d1));
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
                                                  float *v, ptrdiff_t ld, ptrdiff_t step)
{
    (void)x; (void)sx_c; (void)count; (void)triples; (void)v; (void)ld; (void)step;
}  /* never called: 0 lanes */
#endif

#endif /* CONVT_BLAS_SIMD_H */
