/*
 * convt_blas CUDA path: the col2im step as a gather, one thread per output element.
 *
 * After cuBLAS has computed the columns of every batch element,
 *
 *   columns[n, co, k, li] = sum_ci weight[ci, co % C_out_g, k] * input[n, ci, li]
 *   (ci running over the group of co; layout (batch, out_channels, kernel_size, in_length)),
 *
 * output element (n, co, lo) is the sum of the columns (n, co, k, li) with
 * li*stride + k*dilation - padding == lo, plus bias[co]. Each thread reads its
 * contributions in ascending k and writes its element once: no atomics, so the
 * result does not depend on thread scheduling and is the same on every run.
 *
 * The same source builds three ways:
 *   - by NVRTC (CuPy's RawModule) or nvcc: extern "C" __global__ kernels
 *     convt_blas_gather_{f32,f64,f16}_{i32,i64} (data type, index width), launched
 *     on a 1-D grid of any size;
 *   - by a plain C++ compiler: the __host__ __device__ functions only;
 *   - by a plain C++ compiler with CONVT_BLAS_CUDA_HOST_ENTRIES defined: the
 *     same entry points as ordinary extern "C" functions that loop over every
 *     output element (define it in one translation unit only).
 * It includes no header under NVRTC, which has no standard library.
 */
#ifndef CONVT_BLAS_CUDA_CUH
#define CONVT_BLAS_CUDA_CUH

#if defined(__CUDACC__)
#define CONVT_BLAS_HD __host__ __device__ __forceinline__
#define CONVT_BLAS_RESTRICT __restrict__
#else
#define CONVT_BLAS_HD inline
#define CONVT_BLAS_RESTRICT
#endif

#if !defined(__CUDACC_RTC__)
#include <cstring>
#endif

/* An IEEE half as its bits: no cuda_fp16.h needed, same layout as __half and numpy.float16. */
struct convt_blas_half {
    unsigned short bits;
};

/* Sizes of one launch, and the residue arithmetic of the taps, precomputed on the host:
 *   phase_gcd   = gcd(stride, dilation)
 *   tap_step    = stride / phase_gcd     (taps k and k + tap_step land on the same residue)
 *   tap_inverse = (dilation / phase_gcd)^-1 mod tap_step  (0 when tap_step == 1)
 *   input_step  = dilation / phase_gcd   (li drops by this when k grows by tap_step) */
struct convt_blas_cuda_geometry {
    long long batch;
    long long out_channels;
    long long out_length;
    long long kernel_size;
    long long in_length;
    long long stride;
    long long padding;
    long long dilation;
    long long phase_gcd;
    long long tap_step;
    long long tap_inverse;
    long long input_step;
};

CONVT_BLAS_HD float convt_blas_to_accumulator(float value) { return value; }
CONVT_BLAS_HD double convt_blas_to_accumulator(double value) { return value; }

CONVT_BLAS_HD float convt_blas_to_accumulator(convt_blas_half value) {
#if defined(__CUDA_ARCH__)
    float result;
    asm("cvt.f32.f16 %0, %1;" : "=f"(result) : "h"(value.bits));
    return result;
#else
    const unsigned sign = (unsigned)(value.bits & 0x8000u) << 16;
    const unsigned exponent = (value.bits >> 10) & 0x1fu;
    const unsigned mantissa = value.bits & 0x3ffu;
    float result;
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24, exact in float */
        result = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -result : result;
    }
    const unsigned bits = exponent == 0x1f ? sign | 0x7f800000u | (mantissa << 13)
                                           : sign | ((exponent + 112u) << 23) | (mantissa << 13);
    std::memcpy(&result, &bits, sizeof result);
    return result;
#endif
}

CONVT_BLAS_HD void convt_blas_store(float* out, float value) { *out = value; }
CONVT_BLAS_HD void convt_blas_store(double* out, double value) { *out = value; }

/* float -> half, rounding to nearest even (as numpy's astype(float16) and __float2half_rn). */
CONVT_BLAS_HD void convt_blas_store(convt_blas_half* out, float value) {
#if defined(__CUDA_ARCH__)
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(out->bits) : "f"(value));
#else
    unsigned bits;
    std::memcpy(&bits, &value, sizeof bits);
    const unsigned sign = (bits >> 16) & 0x8000u;
    const unsigned magnitude = bits & 0x7fffffffu;
    unsigned half;
    if (magnitude > 0x7f800000u) {          /* NaN stays a quiet NaN */
        half = 0x7e00u | ((magnitude >> 13) & 0x3ffu);
    } else if (magnitude >= 0x47800000u) {  /* >= 65536 (or inf): inf */
        half = 0x7c00u;
    } else if (magnitude >= 0x38800000u) {  /* normal half: drop 13 mantissa bits */
        half = (magnitude >> 13) - (112u << 10);
        const unsigned rest = magnitude & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) {
            ++half;                         /* a carry may reach the exponent, or inf */
        }
    } else if (magnitude >= 0x33000000u) {  /* subnormal half: round(value * 2^24) */
        const unsigned shift = 126u - (magnitude >> 23);
        const unsigned significand = (magnitude & 0x7fffffu) | 0x800000u;
        half = significand >> shift;
        const unsigned rest = significand & ((1u << shift) - 1u);
        const unsigned midpoint = 1u << (shift - 1u);
        if (rest > midpoint || (rest == midpoint && (half & 1u))) {
            ++half;
        }
    } else {                                /* below half the smallest subnormal: zero */
        half = 0;
    }
    out->bits = (unsigned short)(sign | half);
#endif
}

/* Output element `index` of a launch (flat over (batch, out_channels, out_length)):
 * bias plus its columns, summed in Accumulator in ascending tap order. Index is
 * int when every offset of the launch fits in it (cheaper divisions), else long long. */
template <typename Index, typename Column, typename Value, typename Accumulator>
CONVT_BLAS_HD Accumulator convt_blas_gather_element(Index index,
                                                    const Column* CONVT_BLAS_RESTRICT columns,
                                                    const Value* CONVT_BLAS_RESTRICT bias,
                                                    const convt_blas_cuda_geometry& g) {
    const Index out_length = (Index)g.out_length, in_length = (Index)g.in_length;
    const Index kernel_size = (Index)g.kernel_size, stride = (Index)g.stride;
    const Index tap_step = (Index)g.tap_step, input_step = (Index)g.input_step;
    const Index row = index / out_length; /* n * out_channels + co */
    Accumulator sum = 0;
    if (bias != 0) {
        sum = convt_blas_to_accumulator(bias[row % (Index)g.out_channels]);
    }
    /* Taps reaching the output satisfy tap*dilation == target (mod stride); the first one
     * is tap = target mod stride when dilation is 1, and reads input target / stride. */
    const Index target = index - row * out_length + (Index)g.padding;
    const Index quotient = target / stride;
    const Index residue = target - quotient * stride;
    Index tap = residue;
    Index in_pos = quotient;
    if (g.dilation != 1) {
        const Index phase_gcd = (Index)g.phase_gcd;
        if (residue % phase_gcd != 0) {
            return sum; /* no tap reaches this output */
        }
        tap = residue / phase_gcd * (Index)g.tap_inverse % tap_step;
        in_pos += (residue - tap * (Index)g.dilation) / stride; /* exact division */
    }
    if (in_pos >= in_length) { /* skip the taps whose input lies past the end */
        const Index skip = (in_pos - in_length + input_step) / input_step;
        tap += skip * tap_step;
        in_pos -= skip * input_step;
    }
    const Column* row_columns = columns + row * kernel_size * in_length;
    for (; tap < kernel_size && in_pos >= 0; tap += tap_step, in_pos -= input_step) {
        sum += convt_blas_to_accumulator(row_columns[tap * in_length + in_pos]);
    }
    return sum;
}

/* Parameters of every entry point, in launch order. */
#define CONVT_BLAS_CUDA_GATHER_PARAMS(Column, Value)                                        \
    const Column* CONVT_BLAS_RESTRICT columns, const Value* CONVT_BLAS_RESTRICT bias,       \
        Value* CONVT_BLAS_RESTRICT out, long long batch, long long out_channels,            \
        long long out_length, long long kernel_size, long long in_length, long long stride, \
        long long padding, long long dilation, long long phase_gcd, long long tap_step,     \
        long long tap_inverse, long long input_step

#if defined(__CUDACC__)
#define CONVT_BLAS_CUDA_ENTRY extern "C" __global__ void
#define CONVT_BLAS_CUDA_FIRST_INDEX ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define CONVT_BLAS_CUDA_INDEX_STEP ((long long)gridDim.x * blockDim.x)
#elif defined(CONVT_BLAS_CUDA_HOST_ENTRIES)
#define CONVT_BLAS_CUDA_ENTRY extern "C" void
#define CONVT_BLAS_CUDA_FIRST_INDEX 0LL
#define CONVT_BLAS_CUDA_INDEX_STEP 1LL
#endif

#if defined(CONVT_BLAS_CUDA_ENTRY)
/* bias may be null. A grid-stride loop, so any grid size covers the output. */
#define CONVT_BLAS_CUDA_GATHER_ENTRY(name, Column, Value, Accumulator, Index)                  \
    CONVT_BLAS_CUDA_ENTRY name(CONVT_BLAS_CUDA_GATHER_PARAMS(Column, Value)) {                \
        const convt_blas_cuda_geometry g = {batch,     out_channels, out_length,  kernel_size, \
                                            in_length, stride,       padding,     dilation,    \
                                            phase_gcd, tap_step,     tap_inverse, input_step}; \
        const Index total = (Index)(batch * out_channels * out_length);                      \
        for (Index index = (Index)(CONVT_BLAS_CUDA_FIRST_INDEX); index < total;              \
             index += (Index)(CONVT_BLAS_CUDA_INDEX_STEP)) {                                 \
            convt_blas_store(out + index,                                                     \
                             convt_blas_gather_element<Index, Column, Value, Accumulator>(   \
                                 index, columns, bias, g));                                   \
        }                                                                                     \
    }

/* float16: float columns (cuBLAS accumulates and stores them in float32), half bias and output. */
CONVT_BLAS_CUDA_GATHER_ENTRY(convt_blas_gather_f32_i32, float, float, float, int)
CONVT_BLAS_CUDA_GATHER_ENTRY(convt_blas_gather_f64_i32, double, double, double, int)
CONVT_BLAS_CUDA_GATHER_ENTRY(convt_blas_gather_f16_i32, float, convt_blas_half, float, int)
CONVT_BLAS_CUDA_GATHER_ENTRY(convt_blas_gather_f32_i64, float, float, float, long long)
CONVT_BLAS_CUDA_GATHER_ENTRY(convt_blas_gather_f64_i64, double, double, double, long long)
CONVT_BLAS_CUDA_GATHER_ENTRY(convt_blas_gather_f16_i64, float, convt_blas_half, float, long long)
#endif

#endif /* CONVT_BLAS_CUDA_CUH */
