# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""nogil kernels of the 1-D transposed convolution: BLAS GEMM + col2im.

For each batch element ``n`` and group ``g`` the convolution is

    columns = W_g^T @ X_g                      (C_out/g * K) x L_in
    out[c, l*stride + k*dilation - padding] += columns[c*K + k, l]

The work is cut into independent units (batch element, group, block of
output channels, tile of output positions; short inputs may put several
batch elements in one unit). A unit owns its block of the output: it writes
bias (or zero) there, runs one GEMM over exactly the input columns that
reach its tile, and scatter-adds them. Units never share output, so they
run in an OpenMP ``prange`` with no locks. The cut never depends on the
thread count, and an element computed with others gets the bits it would
get alone, so results are bitwise identical for any number of threads and
any split of the batch.

Layers with K == 2*stride may instead run Winograd's F(3,2): four GEMMs
for every three output strides instead of six (_run_winograd_unit; the
rule is in _make_plan), cut into units the same way. Its weight may come
transformed beforehand (_prepare_weights; ConvTranspose1d keeps it), which
lets shorter inputs take it.
"""

cimport cython
from libc.stdint cimport int64_t, INT64_MAX
from libc.limits cimport INT_MAX
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange, threadid
from scipy.linalg.cython_blas cimport sgemm, dgemm, cgemm, zgemm, sgemv, dgemv, cgemv, zgemv

cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CONVT_BLAS_OPENMP 1
    #else
    #define CONVT_BLAS_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    int CONVT_BLAS_OPENMP
    int omp_get_max_threads() noexcept nogil

cdef extern from "convt_blas_simd.h":
    int CONVT_BLAS_SIMD_LANES
    void convt_blas_transpose_f32(const float* src, int64_t ld_src, int64_t rows,
                                  int64_t cols, float* dst, int64_t ld_dst) noexcept nogil
    void convt_blas_winograd_inputs_f32(const float* x, int64_t sx_c, int64_t count,
                                        int64_t triples, int first, int n_components,
                                        float* v, int64_t ld, int64_t step) noexcept nogil
    int convt_blas_combine_s2_f32(const float* p0, int64_t step, int64_t rows,
                                  int64_t count, float b0, float b1, int has_bias,
                                  float* dst0, float* dst1) noexcept nogil
    int convt_blas_combine_s4k_f32(const float* p0, int64_t step, int64_t rows,
                                   int64_t count, int64_t s, float b, int has_bias,
                                   float* dst) noexcept nogil
    void convt_blas_depthwise_two_taps_f32(const float* x, int64_t width, const float* tap_a,
                                           const float* tap_b, const float* bias,
                                           int64_t channels, int64_t count, int64_t out_step,
                                           float* acc) noexcept nogil


# Target size of one worker's column buffer, in elements (2 MiB of float32):
# large enough for GEMMs near BLAS's peak, small enough to stay in cache
# while col2im reads it back. Groups with more input channels than
# DEEP_INPUT_CHANNELS may use up to twice as much (see _make_plan).
cdef int64_t WORKSPACE_TARGET = 1 << 19
cdef double DEEP_INPUT_CHANNELS = 256.0
# Cost of packing one element for BLAS, in multiply-adds per input channel
# (measured: repacking a weight for every short tile dominates small-L layers).
cdef double PACK_COST = 30.0
# GEMM sides below this run far from BLAS's peak; channel blocks searched.
cdef int64_t MIN_GEMM_SIDE = 64
cdef int64_t MAX_CHANNEL_BLOCKS = 256
# Work per group above MIN_UNIT_FLOPS is cut into up to this many units.
cdef int64_t MIN_UNITS_PER_GROUP = 8
cdef double MIN_UNIT_FLOPS = 4e6
# Groups with at most this many input channels skip BLAS: a GEMM with an
# inner size this small (depthwise layers: 1) is all call overhead.
cdef int64_t DIRECT_MAX_IN_CHANNELS = 4
cdef int64_t DIRECT_UNIT_OUTPUTS = 8192
# Depthwise layers (one input and one output channel per group, no
# dilation) with inputs of at most DEPTHWISE_MAX_LENGTH positions run
# DEPTHWISE_CHANNELS channels side by side, DEPTHWISE_TILE outputs at a time
# (see _run_depthwise_unit). Measured against the phase-by-phase path (512
# channels, batch 4, K/stride 6/3, 4/2, 16/8, 3/1, 1 and 2 threads): 2.4-3.6x
# as fast at 16 positions, 1.2-2.1x at 96, 0.97-1.6x at 160, and slower
# from 256 on, where a channel's rows are long enough for vector code.
cdef int64_t DEPTHWISE_MAX_LENGTH = 128
cdef int64_t DEPTHWISE_CHANNELS = 64
cdef int64_t DEPTHWISE_TILE = 256
cdef bint DEPTHWISE_BY_CHANNELS = True
# GEMMs with at most this many output rows run as matrix-vector products.
cdef int GEMV_MAX_ROWS = 2
# OpenBLAS's AVX-512 builds run GEMMs with M*N*K up to this through
# small-matrix kernels, which do not pack their operands (and round unlike
# its blocked GEMM). Whether this BLAS has them is set at import from Python
# (convt_blas._threads); until then plans assume it has not.
cdef double SMALL_GEMM_WORK = 1e6
cdef bint BLAS_SMALL_MATRIX_KERNELS = False
# Batch elements share a GEMM (their positions side by side as its columns)
# only when every channel block's rows fill whole tiles of this many rows:
# OpenBLAS computes the rows of a partial tile in an order that depends on
# their column's place in the GEMM. Measured over random merged layers, all
# dtypes, with its SkylakeX and Haswell kernels: with partial row tiles,
# merged results differed from one element at a time in 125 of 241 float64
# and 3 of 198 float32 layers; with whole tiles, in none of 483.
cdef int64_t MERGED_ROW_TILE = 16
# Layers with K == 2*stride (no dilation) run Winograd's F(3,2) (see
# _run_winograd_unit: four GEMMs for every three output strides instead of
# six) when the input is at least WINOGRAD_MIN_LENGTH long and both GEMM
# sides, C_in/g and C_out/g * stride, are at least WINOGRAD_MIN_SIDE.
# Measured on the benchmark's layers: transforming the weight costs more
# per call than a few hundred input positions save (L_in 250 with a 64 MiB
# weight: 3-10% slower, L_in 75-100: 8-49% slower), while from 64 channels
# and 512 positions on every layer is faster (64 -> 32, K = 4: 7-18%).
# Groups whose weight has at most WINOGRAD_SMALL_WEIGHT elements take it
# from WINOGRAD_SMALL_WEIGHT_MIN_LENGTH: at 256 positions, 64 -> 32 to
# 512 -> 256 (K = 16) and 1024 -> 256 (K = 8) 3-29% faster at 1 and 2
# threads, while larger weights were mixed there (768 -> 384, K = 16: 5%
# faster at 1 thread, 11% slower at 2; 1536 -> 768: 2% slower), and at
# 192 positions small ones too (512 -> 256: 8% faster or 27% slower).
# Settable from Python (convt_blas.set_winograd).
cdef int64_t WINOGRAD_MIN_LENGTH = 512
cdef int64_t WINOGRAD_SMALL_WEIGHT = 1 << 21
cdef int64_t WINOGRAD_SMALL_WEIGHT_MIN_LENGTH = 256
cdef int64_t WINOGRAD_MIN_SIDE = 64
# With the weight transformed beforehand (prepare_winograd_weights, held by
# convt_blas.nn.ConvTranspose1d) only the input is transformed per call.
# Then BLAS packing twice the weight's size for four GEMMs (once for the GEMM
# path's one) sets the break-even: measured at N = 1, from 128 positions
# every benchmark layer gains or ties (2048 -> 1024, K = 8: 2% slower at
# 128, 7% faster at 192, 14% at 256; 512 -> 256, K = 16: 7% slower at 100,
# 10% faster at 128).
cdef int64_t WINOGRAD_PREPARED_MIN_LENGTH = 128
cdef bint WINOGRAD_ENABLED = True
# Below WINOGRAD_SHALLOW_INPUT input channels per group, F(3,2) tiles hold
# at most WINOGRAD_SHALLOW_PRODUCTS elements of products (192 KiB of
# float32): with so short an inner size, storing the outputs from the
# products costs about as much as the GEMMs, and it runs from cache only
# if they are still there. Measured at 1 and 2 threads: the 64-channel
# benchmark layers (K = 4) 18-24% faster, as were 64 -> 64, 64 -> 128 and
# 80 -> 40; 96 and 112 channels gained nothing, and tiles that small made
# the deep layers up to 45% slower (BLAS repacks the weight for every tile).
cdef int64_t WINOGRAD_SHALLOW_INPUT = 96
cdef int64_t WINOGRAD_SHALLOW_PRODUCTS = 49152
# A worker's F(3,2) workspace, in elements (4 MiB of float32, what the GEMM
# path's deep layers may use). Plans whose four transformed weight blocks
# and input tiles do not fit it transform one component at a time, with
# GEMM sides halved as needed (see _plan_winograd). Measured against
# holding all four (up to 15.8 MiB per worker) on the deep benchmark
# layers: the function from 6% faster to 3% slower, the layer up to 7%
# slower (Demucs 1024 -> 512: each component reads the weight block and
# input tile again, which costs more when other work loads the memory).
cdef int64_t WINOGRAD_WORKSPACE = 1 << 20
# Blocks of F(3,2)'s input transform (see _winograd_inputs).
cdef int64_t WINOGRAD_INPUT_TRIPLES = 192
cdef int64_t WINOGRAD_INPUT_CHANNELS = 8


cdef struct Plan:
    int64_t c_in_g
    int64_t c_out_g
    int64_t out_length
    int64_t block_channels     # output channels per unit
    int64_t n_blocks
    int64_t tile               # output positions per unit
    int64_t n_tiles
    int64_t max_columns        # input columns one unit's GEMM can need
    int64_t units_per_sample   # units per batch element, or per group of samples_per_unit
    int64_t samples_per_unit   # > 1: that many batch elements share each GEMM
    int64_t n_units            # units of the whole call
    int64_t groups_per_unit    # > 1 only for direct taps: tiny groups share a unit
    bint direct_taps           # compute the taps from x and w instead of a GEMM
    bint depthwise             # direct taps, channels side by side (_run_depthwise_unit)
    bint position_major        # columns laid out (position, channel*K); see _make_plan
    bint input_rows            # one-tile position-major units read the input as X_g^T rows
    int64_t column_elements    # one worker's column buffer (0 for direct taps)
    int64_t copy_elements      # one worker's copy of its input (merged or input_rows), or a vector
    int64_t worker_elements    # workspace per worker: columns, input copy, phase rows
    bint winograd              # F(3,2) over triples of output strides; see _run_winograd_unit
    int64_t triple_first       # winograd: first triple t (outputs 3ts - padding ...)
    int64_t triple_count       # winograd: triples of the whole output
    int64_t tile_triples       # winograd: triples per unit (per sample)
    bint tile_major            # winograd: units in (tile, block) order, else (block, tile)
    bint prepared_weights      # winograd: weights come transformed (prepare_winograd_weights)
    int64_t pass_components    # winograd: components transformed at a time, 4 (held) or 1


cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept nogil:
    # b > 0; C division truncates toward zero.
    cdef int64_t q = a / b
    if a % b != 0 and a < 0:
        q -= 1
    return q


cdef inline int64_t _ceil_div(int64_t a, int64_t b) noexcept nogil:
    return -_floor_div(-a, b)


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef inline bint _mul_overflows(int64_t a, int64_t b) noexcept nogil:
    # a, b >= 0
    return a != 0 and b > INT64_MAX / a


cdef int64_t output_length(const convt_blas_params* p) noexcept nogil:
    cdef int64_t span, total
    if p == NULL:
        return -1
    if p.in_length < 1 or p.stride < 1 or p.dilation < 1 or p.kernel_size < 1 or p.padding < 0:
        return -1
    if _mul_overflows(p.in_length - 1, p.stride) or _mul_overflows(p.dilation, p.kernel_size - 1):
        return -1
    if p.padding > INT64_MAX / 4 or p.output_padding > INT64_MAX / 4 or p.output_padding < 0:
        return -1
    span = (p.in_length - 1) * p.stride
    if span > INT64_MAX / 4 or p.dilation * (p.kernel_size - 1) > INT64_MAX / 4:
        return -1
    total = span + p.dilation * (p.kernel_size - 1) + p.output_padding + 1
    return total - 2 * p.padding


cdef inline int64_t _tile_length(const convt_blas_params* p, int64_t out_length,
                                 int64_t tiles) noexcept nogil:
    """Output positions per tile for about ``tiles`` even tiles, each a whole number of strides."""
    if tiles == 1 or p.stride > INT64_MAX / 4 / p.in_length:
        return out_length  # one tile: the whole input in one GEMM
    return _ceil_div(_ceil_div(out_length, tiles), p.stride) * p.stride


cdef inline double _imbalance(double units) noexcept nogil:
    """Mean stretch of the run time by units left over for 2, 4 and 8 threads."""
    cdef double total = 0.0
    cdef int64_t threads = 2
    if units > 1e6:
        return 1.0
    while threads <= 8:
        total += _ceil_div(<int64_t>units, threads) * threads / units
        threads *= 2
    return total / 3.0


cdef int _make_plan(const convt_blas_params* p, Plan* plan) noexcept nogil:
    """Validate ``p`` and cut the work into units (never by the thread count)."""
    return _make_plan_with(p, plan, WINOGRAD_ENABLED, False)


cdef inline bint _winograd_shape(const convt_blas_params* p) noexcept nogil:
    """Whether the layer's channels and taps qualify for F(3,2), whatever its input length."""
    return (p.dilation == 1 and p.kernel_size == 2 * p.stride
            and p.in_channels / p.groups >= WINOGRAD_MIN_SIDE
            and p.out_channels / p.groups * p.stride >= WINOGRAD_MIN_SIDE)


cdef int _make_plan_with(const convt_blas_params* p, Plan* plan,
                         bint winograd_allowed, bint prepared_weights) noexcept nogil:
    cdef int64_t c_in_g, c_out_g, K, halo, columns, rows, blocks, tiles, min_units
    cdef int64_t block_channels, tile, fewest_tiles, multiple, column_target, small_rows
    cdef int64_t l_lo, l_hi
    cdef double units
    cdef double cost, best_cost, group_flops
    if p == NULL or plan == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    K = p.kernel_size
    if (p.batch < 0 or p.in_channels < 1 or p.in_length < 1 or p.out_channels < 1
            or p.kernel_size < 1 or p.stride < 1 or p.dilation < 1 or p.groups < 1
            or p.padding < 0 or p.output_padding < 0
            or p.in_channels % p.groups != 0 or p.out_channels % p.groups != 0
            or (p.output_padding >= p.stride and p.output_padding >= p.dilation)):
        return CONVT_BLAS_ERR_BAD_SHAPE
    plan.out_length = output_length(p)
    if plan.out_length < 1:
        return CONVT_BLAS_ERR_BAD_SHAPE
    if (_mul_overflows(p.batch, p.out_channels)
            or _mul_overflows(p.batch * p.out_channels, plan.out_length)):
        return CONVT_BLAS_ERR_OVERFLOW
    c_in_g = p.in_channels / p.groups
    c_out_g = p.out_channels / p.groups
    plan.c_in_g = c_in_g
    plan.c_out_g = c_out_g
    # BLAS takes 32-bit sizes: the weight's row length and the GEMM's inner size.
    if c_in_g > INT_MAX or _mul_overflows(c_out_g, K) or c_out_g * K > INT_MAX:
        return CONVT_BLAS_ERR_OVERFLOW

    # Cut the (channel*K) x L_in column matrix into blocks of channels and
    # tiles of positions that fit the workspace. Every block repacks its input
    # tile and every tile repacks its weight block, and every tile boundary
    # recomputes a halo of columns: pick the cut that costs least.
    # Large groups are cut into at least a few units so that threads have
    # work to share; BLAS itself never threads (its threaded GEMM rounds
    # differently, and results must not depend on the thread count).
    halo = (p.dilation * (K - 1) + p.stride - 1) / p.stride
    group_flops = 2.0 * p.in_length * c_in_g * c_out_g * K
    if group_flops >= MIN_UNITS_PER_GROUP * MIN_UNIT_FLOPS:
        min_units = MIN_UNITS_PER_GROUP
    else:
        min_units = _max(1, <int64_t>(group_flops / MIN_UNIT_FLOPS))
    # Every channel block repacks the input, at a cost growing with C_in/g
    # while reading the columns back does not: deep inputs get a larger
    # buffer (up to twice the target) so that they need fewer blocks.
    column_target = <int64_t>(WORKSPACE_TARGET * min(2.0, max(1.0, c_in_g / DEEP_INPUT_CHANNELS)))
    best_cost = -1.0
    for blocks in range(1, _min(c_out_g, MAX_CHANNEL_BLOCKS) + 1):
        block_channels = _ceil_div(c_out_g, blocks)  # whole channels per block
        rows = block_channels * K
        columns = _min(p.in_length, _max(1, column_target / rows - halo - 1))
        fewest_tiles = _max(_ceil_div(p.in_length, columns), _ceil_div(min_units, blocks))
        # The fewest tiles that fit the workspace, or a few more to share
        # evenly among 2, 4 or 8 threads.
        for multiple in range(4 if fewest_tiles < INT64_MAX / 16 else 1):
            tiles = _min(p.in_length, _ceil_div(fewest_tiles, 1 << multiple) << multiple)
            columns = _ceil_div(p.in_length, tiles)
            cost = (PACK_COST * (<double>tiles * c_out_g * K + <double>blocks * p.in_length)
                    + 2.0 * (tiles - 1) * (halo + 1) * c_out_g * K)
            if rows < MIN_GEMM_SIDE or (columns < MIN_GEMM_SIDE and columns < p.in_length):
                cost *= 1.5  # small GEMMs run far from BLAS's peak
            # Blocks and tiles as they come out once rounded (whole channels, whole strides).
            tile = _tile_length(p, plan.out_length, tiles)
            units = (<double>p.groups * _ceil_div(c_out_g, block_channels)
                     * _ceil_div(plan.out_length, tile))
            # The multiply-adds plus the packing, stretched by the idle time
            # of threads when the units do not divide evenly among them
            # (work too small to share runs on one thread anyway).
            cost += <double>c_out_g * K * p.in_length
            if group_flops * p.groups >= 2 * MIN_UNIT_FLOPS:
                cost *= _imbalance(units)
            if best_cost < 0 or cost < best_cost:
                best_cost = cost
                plan.block_channels = block_channels
                plan.tile = tile
    # A few input positions: packing the weight dominates a GEMM with so few
    # columns, and OpenBLAS's AVX-512 builds multiply GEMMs of at most
    # SMALL_GEMM_WORK multiply-adds without packing. Cut the channels that
    # fine when blocks of MIN_GEMM_SIDE rows or more still qualify (one or
    # two columns take the matrix-vector path, which never packs). ``columns``:
    # the GEMM columns of a one-tile unit.
    _input_range(p, 0, plan.out_length, &l_lo, &l_hi)
    columns = l_hi - l_lo + 1
    if (BLAS_SMALL_MATRIX_KERNELS and plan.tile == plan.out_length
            and c_in_g > DIRECT_MAX_IN_CHANNELS and columns > GEMV_MAX_ROWS):
        small_rows = <int64_t>(SMALL_GEMM_WORK / (<double>columns * c_in_g))
        if small_rows >= MIN_GEMM_SIDE:
            plan.block_channels = _min(plan.block_channels, _max(1, small_rows / K))
    plan.n_blocks = _ceil_div(c_out_g, plan.block_channels)
    plan.n_tiles = _ceil_div(plan.out_length, plan.tile)
    plan.max_columns = _min(p.in_length,
                            (plan.tile - 1 + p.dilation * (K - 1)) / p.stride + 2)
    if plan.max_columns > INT_MAX:
        return CONVT_BLAS_ERR_OVERFLOW
    if _mul_overflows(p.groups, plan.n_blocks) or _mul_overflows(p.groups * plan.n_blocks, plan.n_tiles):
        return CONVT_BLAS_ERR_OVERFLOW
    plan.direct_taps = c_in_g <= DIRECT_MAX_IN_CHANNELS
    plan.groups_per_unit = 1
    if plan.direct_taps:
        # Depthwise groups are a few dozen multiply-adds each: a unit takes
        # enough of them to outweigh its own bookkeeping.
        plan.groups_per_unit = _min(p.groups, _max(1, DIRECT_UNIT_OUTPUTS / (c_out_g * plan.tile)))
    plan.units_per_sample = (_ceil_div(p.groups, plan.groups_per_unit)
                             * plan.n_blocks * plan.n_tiles)
    if _mul_overflows(plan.units_per_sample, p.batch):
        return CONVT_BLAS_ERR_OVERFLOW
    if (_mul_overflows(plan.block_channels * K, plan.max_columns)
            or plan.block_channels * K * plan.max_columns > INT64_MAX / 1024):
        return CONVT_BLAS_ERR_OVERFLOW
    # BLAS is fastest when the longer side of the column block is its row
    # count: short tiles of many channels get position-major columns.
    plan.position_major = (not plan.direct_taps
                           and plan.max_columns < plan.block_channels * K)
    plan.column_elements = 0 if plan.direct_taps else plan.block_channels * K * plan.max_columns
    # Short inputs: several batch elements share one GEMM, so that BLAS packs
    # the weight block (the larger operand here) once for all of them. BLAS's
    # blocked GEMM computes each element the same whatever the number of
    # columns as long as its rows fill whole tiles, so results stay bitwise
    # those of one element at a time; blocks with a partial tile of rows, and
    # GEMMs small enough for its small-matrix kernels or for our
    # matrix-vector path, are kept apart (see _samples_sharing_gemm).
    plan.samples_per_unit = 1
    plan.copy_elements = 0 if plan.direct_taps else c_in_g  # a vector for _gemm's scratch
    if plan.position_major and plan.n_tiles == 1 and p.batch > 1:
        plan.samples_per_unit = _samples_sharing_gemm(
            p.batch, <double>p.in_length * _max(plan.block_channels * K, c_in_g), p.batch,
            columns, plan.block_channels * K, _last_block_channels(plan) * K, c_in_g)
        if plan.samples_per_unit > 1:
            plan.column_elements = plan.block_channels * K * plan.samples_per_unit * p.in_length
            plan.copy_elements = c_in_g * plan.samples_per_unit * p.in_length
    # One tile of position-major columns, one element per GEMM: BLAS packs
    # the input's positions as rows of X_g^T (channels-last) faster than
    # as X_g's rows. A worker lays a channels-first tile out so once, for
    # all of its blocks (see _run_unit).
    plan.input_rows = (plan.position_major and plan.n_tiles == 1
                       and plan.samples_per_unit == 1)
    if plan.input_rows:
        plan.copy_elements = c_in_g * plan.max_columns
    plan.n_units = _ceil_div(p.batch, plan.samples_per_unit) * plan.units_per_sample
    # At most tile + 2*min(stride, tile) elements of phase rows.
    if plan.tile > INT64_MAX / 1024:
        return CONVT_BLAS_ERR_OVERFLOW
    plan.worker_elements = (plan.column_elements + plan.copy_elements
                            + _phase_rows(plan, p.stride) * _phase_row_length(plan, p.stride))
    plan.depthwise = (DEPTHWISE_BY_CHANNELS and plan.direct_taps and c_in_g == 1
                      and c_out_g == 1 and p.dilation == 1
                      and p.in_length <= DEPTHWISE_MAX_LENGTH)
    if plan.depthwise:
        plan.groups_per_unit = _min(p.groups, DEPTHWISE_CHANNELS)
        plan.tile = _min(plan.out_length, DEPTHWISE_TILE)
        plan.n_tiles = _ceil_div(plan.out_length, plan.tile)
        plan.max_columns = _min(p.in_length, (plan.tile - 1 + K - 1) / p.stride + 2)
        plan.units_per_sample = _ceil_div(p.groups, plan.groups_per_unit) * plan.n_tiles
        if _mul_overflows(plan.units_per_sample, p.batch):
            return CONVT_BLAS_ERR_OVERFLOW
        plan.n_units = p.batch * plan.units_per_sample
        # The unit's input, outputs and taps, position-major.
        plan.worker_elements = plan.groups_per_unit * (plan.max_columns + plan.tile + K)
    plan.triple_first = plan.triple_count = plan.tile_triples = plan.tile_major = 0
    plan.pass_components = 0
    plan.winograd = winograd_allowed and _winograd_shape(p)
    plan.prepared_weights = plan.winograd and prepared_weights
    plan.winograd = plan.winograd and p.in_length >= (
        WINOGRAD_PREPARED_MIN_LENGTH if plan.prepared_weights
        else WINOGRAD_SMALL_WEIGHT_MIN_LENGTH if c_in_g * c_out_g * K <= WINOGRAD_SMALL_WEIGHT
        else WINOGRAD_MIN_LENGTH)
    if plan.winograd:
        return _plan_winograd(p, plan)
    return CONVT_BLAS_OK


cdef int _plan_winograd(const convt_blas_params* p, Plan* plan) noexcept nogil:
    """Recut a GEMM plan into whole triples of output strides (see _run_winograd_unit).

    Each GEMM has half the rows of a GEMM-path unit's (stride, not K, rows
    per channel), so channel blocks hold twice the channels; tiles are as
    many as the GEMM plan's. The cut depends on the input length and
    channels only, never on the batch or the thread count, so results keep
    their bits for any split of either.
    """
    cdef int64_t s = p.stride, c_in_g = plan.c_in_g, rows, columns, sample_groups
    cdef int64_t u_first = p.padding / s  # first stride u whose outputs u*s + r - padding reach 0
    cdef int64_t u_end = _ceil_div(plan.out_length + p.padding, s)
    cdef double weight_work, input_work
    plan.triple_first = u_first / 3
    plan.triple_count = _ceil_div(u_end, 3) - plan.triple_first
    plan.block_channels = _min(plan.c_out_g, 2 * plan.block_channels)
    plan.n_blocks = _ceil_div(plan.c_out_g, plan.block_channels)
    plan.block_channels = _ceil_div(plan.c_out_g, plan.n_blocks)
    plan.tile_triples = _ceil_div(plan.triple_count, _min(plan.n_tiles, plan.triple_count))
    rows = plan.block_channels * s
    if c_in_g < WINOGRAD_SHALLOW_INPUT:  # a unit's products stay in cache (see above)
        plan.tile_triples = _min(plan.tile_triples,
                                 _max(16, WINOGRAD_SHALLOW_PRODUCTS / (4 * rows)))
        plan.tile_triples = _ceil_div(plan.triple_count,
                                      _ceil_div(plan.triple_count, plan.tile_triples))
    plan.n_tiles = _ceil_div(plan.triple_count, plan.tile_triples)
    # Fit the worker's workspace in WINOGRAD_WORKSPACE: all four components
    # at a time if they fit, else one, and then halve the longer GEMM side
    # (rows, or triples: whichever adds less to read again) while it stays
    # at least WINOGRAD_MIN_SIDE.
    plan.samples_per_unit = 1
    plan.pass_components = 4
    if _winograd_elements(plan, s) > WINOGRAD_WORKSPACE:
        plan.pass_components = 1
    while _winograd_elements(plan, s) > WINOGRAD_WORKSPACE:
        if (plan.block_channels * s >= plan.tile_triples
                and plan.block_channels * s >= 2 * WINOGRAD_MIN_SIDE):
            plan.block_channels = _ceil_div(plan.c_out_g, _min(plan.c_out_g, 2 * plan.n_blocks))
            plan.n_blocks = _ceil_div(plan.c_out_g, plan.block_channels)
        elif plan.tile_triples >= 2 * WINOGRAD_MIN_SIDE:
            plan.tile_triples = _ceil_div(plan.triple_count,
                                          _min(plan.triple_count, 2 * plan.n_tiles))
            plan.n_tiles = _ceil_div(plan.triple_count, plan.tile_triples)
        else:
            break
    rows = plan.block_channels * s
    # Short inputs: several batch elements share each GEMM, as in _make_plan,
    # when one element alone is past BLAS's small-matrix kernels, as many as
    # the workspace holds.
    if plan.n_tiles == 1 and p.batch > 1:
        plan.samples_per_unit = _samples_sharing_gemm(
            p.batch, 4.0 / 3.0 * plan.triple_count * _max(rows, c_in_g),
            _winograd_samples_fitting(plan, s),
            plan.triple_count, rows, _last_block_channels(plan) * s, c_in_g)
    columns = plan.samples_per_unit * plan.tile_triples
    if (columns > INT_MAX or rows > INT_MAX or _mul_overflows(columns, rows + c_in_g)
            or _mul_overflows(c_in_g, rows) or columns * (rows + c_in_g) > INT64_MAX / 16
            or c_in_g * rows > INT64_MAX / 16):
        return CONVT_BLAS_ERR_OVERFLOW
    plan.units_per_sample = p.groups * plan.n_blocks * plan.n_tiles
    if _mul_overflows(plan.units_per_sample, p.batch):
        return CONVT_BLAS_ERR_OVERFLOW
    sample_groups = _ceil_div(p.batch, plan.samples_per_unit)
    plan.n_units = sample_groups * plan.units_per_sample
    # Consecutive units share one operand, which a worker transforming all
    # four components keeps (else it comes from cache): the input tile
    # (tile-major order: blocks innermost) or the weight block (block-major:
    # tiles innermost). Tile-major when redoing the weight for every unit
    # costs no more than redoing the input.
    weight_work = <double>c_in_g * plan.c_out_g * s * sample_groups * plan.n_tiles
    input_work = <double>c_in_g * plan.triple_count * p.batch * plan.n_blocks
    if plan.prepared_weights:
        weight_work = 0
    plan.tile_major = weight_work <= input_work
    # At least the GEMM plan's workspace, which batch elements whose result
    # is not finite fall back to (_redo_non_finite_samples).
    plan.worker_elements = _max(plan.worker_elements, <int64_t>_winograd_elements(plan, s))
    plan.column_elements = 0
    plan.copy_elements = 0
    return CONVT_BLAS_OK


cdef int64_t prepared_weight_length(const convt_blas_params* p) noexcept nogil:
    """Elements of the layer's weight transformed for F(3,2) (twice the weight's); 0 if
    its calls never take it (or Winograd is off), -1 if ``p`` is NULL or invalid.
    The batch and input length are not read."""
    return _prepared_weight_length(p, WINOGRAD_ENABLED)


cdef int64_t _prepared_weight_length(const convt_blas_params* p, bint allowed) noexcept nogil:
    """prepared_weight_length, with F(3,2) ``allowed`` or not."""
    cdef convt_blas_params layer
    cdef Plan plan
    if p == NULL or p.padding < 0 or p.padding > (INT64_MAX - 1) / 2:
        return -1
    layer = p[0]
    layer.batch = 0
    layer.in_length = 2 * layer.padding + 1  # some length with outputs: the transform ignores it
    if _make_plan_with(&layer, &plan, allowed, True) != CONVT_BLAS_OK:
        return -1
    return _prepared_elements(&layer, &plan)


cdef inline int64_t _prepared_elements(const convt_blas_params* p, const Plan* plan) noexcept nogil:
    """The transformed weight's length for a plan that takes it (else 0): 4 (C_in, C_out/g * s)."""
    return 4 * p.in_channels * plan.c_out_g * p.stride if plan.prepared_weights else 0


cdef inline int64_t _weight_block_elements(const Plan* plan, int64_t s) noexcept nogil:
    """One transformed weight matrix in a worker's Winograd workspace (0 if prepared)."""
    return 0 if plan.prepared_weights else plan.c_in_g * plan.block_channels * s


cdef inline double _winograd_samples_fitting(const Plan* plan, int64_t s) noexcept nogil:
    """Batch elements per GEMM whose Winograd workspace fits WINOGRAD_WORKSPACE, for a
    plan of one element per GEMM: the workspace grows by the input matrices and
    products of each element beyond the pass's weight matrices."""
    cdef double weights = plan.pass_components * <double>_weight_block_elements(plan, s)
    return (WINOGRAD_WORKSPACE - weights) / (_winograd_elements(plan, s) - weights)


cdef inline double _winograd_elements(const Plan* plan, int64_t s) noexcept nogil:
    """A worker's Winograd workspace: a pass's weight matrices (unless prepared) and
    input matrices, and four products. In double: planning compares it before
    the sizes are checked for overflow."""
    cdef double columns = <double>plan.samples_per_unit * plan.tile_triples
    return (plan.pass_components * (<double>_weight_block_elements(plan, s)
                                    + columns * plan.c_in_g)
            + 4.0 * columns * plan.block_channels * s)


cdef inline int64_t _samples_sharing_gemm(int64_t batch, double sample_elements,
                                          double most, int64_t columns, int64_t rows,
                                          int64_t last_rows, int64_t c_in_g) noexcept nogil:
    """Batch elements per GEMM for inputs that fit one tile (1: none shared).

    As many as WORKSPACE_TARGET holds at ``sample_elements`` each, and at
    most ``most``, spread evenly over the batch, provided one element's GEMM (``columns`` x
    ``rows``, inner size C_in/g) is past BLAS's small-matrix kernels and our
    matrix-vector path, which round differently, and the rows of every
    channel block (``rows``; the last block's ``last_rows``) fill whole
    tiles of MERGED_ROW_TILE: only then does each element get the bits it
    gets alone.
    """
    cdef int64_t merge = <int64_t>min(<double>batch, WORKSPACE_TARGET / sample_elements, most)
    if (merge > 1 and columns > GEMV_MAX_ROWS
            and <double>columns * rows * c_in_g > SMALL_GEMM_WORK
            and rows % MERGED_ROW_TILE == 0 and last_rows % MERGED_ROW_TILE == 0):
        return _ceil_div(batch, _ceil_div(batch, merge))
    return 1


cdef inline int64_t _last_block_channels(const Plan* plan) noexcept nogil:
    return plan.c_out_g - (plan.n_blocks - 1) * plan.block_channels


cdef inline int64_t _phase_rows(const Plan* plan, int64_t stride) noexcept nogil:
    # One row per phase of a tile, kept until they interleave into the output.
    return _min(stride, plan.tile)


cdef inline int64_t _phase_row_length(const Plan* plan, int64_t stride) noexcept nogil:
    return plan.tile / stride + 2


cdef inline int _thread_count(int n_threads) noexcept nogil:
    """``n_threads`` within [1, CONVT_BLAS_MAX_THREADS]: every count that enters
    the kernels passes here (INT_MAX would have OpenMP start that many threads)."""
    if n_threads < 1:
        return 1
    return CONVT_BLAS_MAX_THREADS if n_threads > CONVT_BLAS_MAX_THREADS else n_threads


cdef inline int64_t _worker_count(const Plan* plan, int n_threads) noexcept nogil:
    return _max(1, _min(<int64_t>_thread_count(n_threads), plan.n_units))


cdef inline void _input_range(const convt_blas_params* p, int64_t start, int64_t stop,
                              int64_t* l_lo, int64_t* l_hi) noexcept nogil:
    """Input positions l_lo..l_hi whose taps l*s + k*d - pad reach outputs [start, stop)."""
    l_lo[0] = _max(0, _ceil_div(start + p.padding - p.dilation * (p.kernel_size - 1), p.stride))
    l_hi[0] = _min(p.in_length - 1, _floor_div(stop - 1 + p.padding, p.stride))


cdef inline int64_t _units_per_sample(const convt_blas_params* p, const Plan* plan) noexcept nogil:
    # Rounded up: batch * units_per_sample covers every unit of the call.
    return _ceil_div(plan.n_units, p.batch) if p.batch > 0 else plan.units_per_sample


cdef int64_t units_per_sample(const convt_blas_params* p) noexcept nogil:
    cdef Plan plan
    if _make_plan(p, &plan) != CONVT_BLAS_OK:
        return -1
    return _units_per_sample(p, &plan)


cdef int64_t workspace_length(const convt_blas_params* p, int n_threads) noexcept nogil:
    return _workspace_length(p, n_threads, False)


cdef int64_t workspace_length_prepared(const convt_blas_params* p, int n_threads) noexcept nogil:
    return _workspace_length(p, n_threads, True)


cdef int64_t _workspace_length(const convt_blas_params* p, int n_threads,
                               bint prepared) noexcept nogil:
    cdef Plan plan
    cdef int64_t per_worker, workers
    if _make_plan_with(p, &plan, WINOGRAD_ENABLED, prepared) != CONVT_BLAS_OK:
        return -1
    per_worker = plan.worker_elements
    workers = _worker_count(&plan, n_threads)
    if _mul_overflows(per_worker, workers):
        return -1
    return per_worker * workers


cdef inline void _gemm(bint trans_a, bint trans_b, int m, int n, int k,
                       const scalar_t* a, int lda, const scalar_t* b, int ldb,
                       scalar_t* c, int ldc, scalar_t* scratch) noexcept nogil:
    """C = op(A) @ op(B) for row-major A, B, C: the only call into BLAS.

    Column-major BLAS sees a row-major matrix as its transpose, so it is
    asked for C^T = op(B)^T @ op(A)^T: operands swapped, m and n swapped.
    ``scratch`` (k elements, or NULL) holds a strided row of op(A) for the
    matrix-vector path.
    """
    cdef char blas_ta = b'T' if trans_b else b'N'
    cdef char blas_tb = b'T' if trans_a else b'N'
    cdef scalar_t one = 1
    cdef scalar_t zero = 0
    cdef int inc_a, inc_c = 1, row, i
    cdef const scalar_t* a_row
    if m <= GEMV_MAX_ROWS and not trans_b:
        # A few output rows: each is C[i]^T = B^T a_i, a matrix-vector product
        # that streams B once without packing it (a GEMM packs all of B first).
        for row in range(m):
            a_row = a + (row if trans_a else row * lda)
            inc_a = lda if trans_a else 1
            if trans_a and scratch != NULL:
                # BLAS may round a strided vector unlike a contiguous one
                # (OpenBLAS's Haswell sgemv does): a contiguous copy gives the
                # same bits for channels-first and channels-last input.
                for i in range(k):
                    scratch[i] = a_row[i * lda]
                a_row = scratch
                inc_a = 1
            if scalar_t is float:
                sgemv(&blas_ta, &n, &k, &one, <float*>b, &ldb, <float*>a_row, &inc_a,
                      &zero, c + row * ldc, &inc_c)
            elif scalar_t is double:
                dgemv(&blas_ta, &n, &k, &one, <double*>b, &ldb, <double*>a_row, &inc_a,
                      &zero, c + row * ldc, &inc_c)
            elif scalar_t is cython.floatcomplex:
                cgemv(&blas_ta, &n, &k, &one, <float complex*>b, &ldb, <float complex*>a_row,
                      &inc_a, &zero, c + row * ldc, &inc_c)
            else:
                zgemv(&blas_ta, &n, &k, &one, <double complex*>b, &ldb, <double complex*>a_row,
                      &inc_a, &zero, c + row * ldc, &inc_c)
        return
    if scalar_t is float:
        sgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <float*>b, &ldb,
              <float*>a, &lda, &zero, c, &ldc)
    elif scalar_t is double:
        dgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <double*>b, &ldb,
              <double*>a, &lda, &zero, c, &ldc)
    elif scalar_t is cython.floatcomplex:
        cgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <float complex*>b, &ldb,
              <float complex*>a, &lda, &zero, c, &ldc)
    else:
        zgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <double complex*>b, &ldb,
              <double complex*>a, &lda, &zero, c, &ldc)


cdef inline bint _blocked_either_way(int64_t m, int64_t n, int64_t k) noexcept nogil:
    """Whether a GEMM with an m-row result may read the weight's rows (transpose_weights).

    Only GEMMs that BLAS runs blocked either way do: a blocked GEMM packs
    both layouts into the same panels, so the bits are the same. Matrix-vector
    rows (_gemm) and OpenBLAS's small-matrix kernels (at most 10^6
    multiply-adds; their variants differ by transposition) keep the weight.
    """
    return m > GEMV_MAX_ROWS and <double>m * <double>n * <double>k > SMALL_GEMM_WORK


cdef inline bint _reads_rows(const scalar_t* w_rows, int64_t m, int64_t n,
                             int64_t k) noexcept nogil:
    return w_rows != NULL and _blocked_either_way(m, n, k)


cdef void _columns_by_channel(const Plan* plan, int64_t K, const scalar_t* x_tile,
                              int64_t sx_c, int64_t sx_l, const scalar_t* w_block,
                              const scalar_t* w_rows, int64_t n_channels, int64_t n_cols,
                              scalar_t* columns, scalar_t* scratch) noexcept nogil:
    """columns[c*K + k, l] = sum_i W_g[i, c, k] * X_g[i, l]: one row per (channel, tap).

    ``w_rows``: NULL, or the block's weight rows (c*K + k, i), C_in/g long
    (transpose_weights), read instead of ``w_block`` where _reads_rows allows.
    """
    cdef bint rows = _reads_rows(w_rows, n_channels * K, n_cols, plan.c_in_g)
    cdef const scalar_t* w_gemm = w_rows if rows else w_block
    cdef int ld_w = <int>(plan.c_in_g if rows else plan.c_out_g * K)
    if sx_l == 1:
        # X_g is (C_in/g, L) with rows sx_c apart.
        _gemm(not rows, False, <int>(n_channels * K), <int>n_cols, <int>plan.c_in_g,
              w_gemm, ld_w, x_tile, <int>sx_c, columns, <int>n_cols, scratch)
    else:
        # Channels-last input: X_g^T is (L, C_in/g) with rows sx_l apart.
        _gemm(not rows, True, <int>(n_channels * K), <int>n_cols, <int>plan.c_in_g,
              w_gemm, ld_w, x_tile, <int>sx_l, columns, <int>n_cols, scratch)


cdef void _columns_by_position(const Plan* plan, int64_t K, const scalar_t* x_tile,
                               int64_t sx_c, int64_t sx_l, const scalar_t* w_block,
                               const scalar_t* w_rows, int64_t n_channels, int64_t n_cols,
                               scalar_t* columns, scalar_t* scratch) noexcept nogil:
    """columns[l, c*K + k] = sum_i X_g[i, l] * W_g[i, c, k]: one row per input position.

    ``w_rows`` as in _columns_by_channel.
    """
    cdef int64_t m_cols = n_channels * K
    cdef bint rows = _reads_rows(w_rows, n_cols, m_cols, plan.c_in_g)
    cdef const scalar_t* w_gemm = w_rows if rows else w_block
    cdef int ld_w = <int>(plan.c_in_g if rows else plan.c_out_g * K)
    if sx_l == 1:
        # X_g is (C_in/g, L) with rows sx_c apart: use its transpose.
        _gemm(True, rows, <int>n_cols, <int>m_cols, <int>plan.c_in_g,
              x_tile, <int>sx_c, w_gemm, ld_w, columns, <int>m_cols, scratch)
    else:
        # Channels-last input: X_g^T is (L, C_in/g) with rows sx_l apart.
        _gemm(False, rows, <int>n_cols, <int>m_cols, <int>plan.c_in_g,
              x_tile, <int>sx_l, w_gemm, ld_w, columns, <int>m_cols, scratch)


cdef void _scatter_taps(const convt_blas_params* p, const Plan* plan, const scalar_t* bias,
                        int64_t n_channels, int64_t start, int64_t stop, int64_t l_lo,
                        int64_t l_hi, const scalar_t* columns, scalar_t* out) noexcept nogil:
    """col2im for position-major columns: the K taps of (l, c) land side by side.

    ``out`` and ``bias`` point at the unit's first channel. The columns are
    read in order, one input position at a time across all channels: the
    output rows it touches then stay in cache from one position to the next
    (a channel at a time would stride through the whole column buffer once
    per channel). Each output element still receives its taps in order of l.
    Positions whose taps all fall inside [start, stop) take a plain
    contiguous loop (d = 1).
    """
    cdef int64_t K = p.kernel_size, s = p.stride, d = p.dilation, pad = p.padding
    cdef int64_t L_out = plan.out_length, m_cols = n_channels * K
    cdef int64_t c, l, k, i, origin, l_inner_lo, l_inner_hi, k_first, k_last
    cdef scalar_t* out_row
    cdef const scalar_t* taps
    cdef scalar_t value
    l_inner_lo = _max(l_lo, _ceil_div(start + pad, s))
    l_inner_hi = _min(l_hi, _floor_div(stop - 1 + pad - d * (K - 1), s))
    if d != 1 or l_inner_lo > l_inner_hi:
        l_inner_lo = l_hi + 1
        l_inner_hi = l_hi
    for c in range(n_channels):
        out_row = out + c * L_out
        value = bias[c] if bias != NULL else 0
        for i in range(start, stop):
            out_row[i] = value
    for l in range(l_lo, l_hi + 1):
        origin = l * s - pad
        taps = columns + (l - l_lo) * m_cols
        out_row = out + origin
        if l_inner_lo <= l <= l_inner_hi:
            for c in range(n_channels):
                for k in range(K):
                    out_row[k] += taps[k]
                out_row += L_out
                taps += K
        else:
            k_first = _max(0, _ceil_div(start - origin, d))
            k_last = _min(K - 1, _floor_div(stop - 1 - origin, d))
            for c in range(n_channels):
                for k in range(k_first, k_last + 1):
                    out_row[k * d] += taps[k]
                out_row += L_out
                taps += K


cdef inline void _sum_phase(const Plan* plan, int64_t K, int64_t s, int64_t d, int64_t r,
                            int64_t q_first, int64_t q_last, int64_t l_lo, int64_t l_hi,
                            int64_t c, scalar_t value, const scalar_t* columns,
                            int64_t n_cols, const scalar_t* x_group, int64_t sx_c,
                            int64_t sx_l, const scalar_t* w_block, scalar_t* row) noexcept nogil:
    """row[q] = value + the taps of phase r of channel c, for q in [q_first, q_last].

    Taps of phase r are those with k*d = j*s + r; tap k of input position
    l = q - j lands on q. With d = 1 they are k = r, r + s, ... (j = 0, 1, ...).
    """
    cdef int64_t k, j, q, q_a, q_b, i
    cdef const scalar_t* col_row
    cdef const scalar_t* x_row
    cdef scalar_t tap
    for q in range(q_first, q_last + 1):
        row[q] = value
    k = r if d == 1 else 0
    j = 0
    while k < K:
        if d != 1:
            if (k * d) % s != r:
                k += 1
                continue
            j = (k * d - r) / s
        q_a = _max(q_first, l_lo + j)
        q_b = _min(q_last, l_hi + j)
        if plan.direct_taps:
            for i in range(plan.c_in_g):
                tap = w_block[(i * plan.c_out_g + c) * K + k]
                x_row = x_group + i * sx_c - j * sx_l
                if sx_l == 1:
                    for q in range(q_a, q_b + 1):
                        row[q] += tap * x_row[q]
                else:
                    for q in range(q_a, q_b + 1):
                        row[q] += tap * x_row[q * sx_l]
        else:
            col_row = columns + (c * K + k) * n_cols - l_lo - j
            for q in range(q_a, q_b + 1):
                row[q] += col_row[q]
        if d == 1:
            k += s
            j += 1
        else:
            k += 1


cdef void _gather_phases(const convt_blas_params* p, const Plan* plan, const scalar_t* bias,
                         int64_t n_groups, int64_t n_channels, int64_t start, int64_t stop,
                         int64_t l_lo, int64_t l_hi, const scalar_t* columns,
                         const scalar_t* x_group, int64_t sx_c, int64_t sx_l,
                         const scalar_t* w_block, scalar_t* phases, scalar_t* out) noexcept nogil:
    """col2im for channel-major columns, as a gather one output phase at a time.

    Output position o with o + pad = q*s + r belongs to phase r. Each phase's
    taps are contiguous shifted rows of the columns: they are summed into one
    row of ``phases`` (vectorised adds, starting from the bias, see
    _sum_phase), and the rows are then interleaved into the output, written
    once, in order. Row r_off holds the tile's outputs first + r_off + m*s.
    With ``plan.direct_taps`` the taps come from ``x_group`` and ``w_block``,
    and the unit may span ``n_groups`` groups (pointers are those of its
    first group); otherwise ``n_groups`` is 1.
    """
    cdef int64_t K = p.kernel_size, s = p.stride, d = p.dilation, pad = p.padding
    cdef int64_t L_out = plan.out_length, n_cols = l_hi - l_lo + 1
    cdef int64_t row_len = _phase_row_length(plan, s)
    cdef int64_t first = start + pad, last = stop - 1 + pad   # o + pad, in the tile
    cdef int64_t n = stop - start, n_rows = _min(s, n), n_full = n / s
    # first = q0*s + r0 and last = q1*s + r1: every phase's bounds follow
    # from these without a division per channel.
    cdef int64_t q0 = _floor_div(first, s), q1 = _floor_div(last, s)
    cdef int64_t r0 = first - q0 * s, r1 = last - q1 * s
    cdef int64_t g, c, r, r_off, m, i, q_first, q_last
    cdef int64_t x_group_step = plan.c_in_g * sx_c
    cdef int64_t w_group_step = plan.c_in_g * plan.c_out_g * K
    cdef int64_t out_group_step = plan.c_out_g * L_out
    cdef scalar_t* out_row
    cdef scalar_t* dst
    cdef const scalar_t* row_a
    cdef const scalar_t* row_b
    cdef scalar_t value
    for g in range(n_groups):
        for c in range(n_channels):
            value = bias[g * plan.c_out_g + c] if bias != NULL else 0
            for r_off in range(n_rows):
                r = r0 + r_off
                q_first = q0
                if r >= s:
                    r -= s
                    q_first += 1
                q_last = q1 if r <= r1 else q1 - 1
                _sum_phase(plan, K, s, d, r, q_first, q_last, l_lo, l_hi, c, value,
                           columns, n_cols, x_group + g * x_group_step, sx_c, sx_l,
                           w_block + g * w_group_step, phases + r_off * row_len - q_first)
            out_row = out + g * out_group_step + c * L_out + start
            if s == 1:
                for i in range(n):
                    out_row[i] = phases[i]
            elif s == 2:
                # The most common stride: a two-way interleave the compiler vectorises.
                row_a = phases
                row_b = phases + row_len
                for i in range(n_full):
                    out_row[2 * i] = row_a[i]
                    out_row[2 * i + 1] = row_b[i]
                if n % 2:
                    out_row[n - 1] = row_a[n_full]
            else:
                # Row by row: the tile's output row is in cache by now.
                for r_off in range(n_rows):
                    row_a = phases + r_off * row_len
                    dst = out_row + r_off
                    for m in range((n - 1 - r_off) / s + 1):
                        dst[m * s] = row_a[m]


cdef inline void _input_as_rows(const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                                int64_t count, int64_t n_cols, int64_t c_in_g, scalar_t* dst,
                                int64_t* held_copy, int64_t key) noexcept nogil:
    """The positions of ``count`` elements (``n_cols`` each, ``sx_n`` apart) one after
    another as rows of X_g^T, (count*n_cols, C_in/g), in ``dst``, unless ``held_copy``
    (NULL, or what the worker's copy holds; -1: nothing) is already ``key``.

    BLAS packs that operand faster than X_g's own rows, with the same bits in
    a blocked GEMM. The channel blocks of one key are consecutive units, so a
    worker lays the input out once, not once per block.
    """
    cdef int64_t j
    if held_copy != NULL and held_copy[0] == key:
        return
    for j in range(count):
        _transpose(x + j * sx_n, sx_c, sx_l, c_in_g, n_cols, dst + j * n_cols * c_in_g, c_in_g)
    if held_copy != NULL:
        held_copy[0] = key


cdef void _run_merged(const convt_blas_params* p, const Plan* plan, int64_t n_first, int64_t g,
                     int64_t co0, int64_t n_channels, int64_t l_lo, int64_t l_hi,
                     const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                     const scalar_t* w_block, const scalar_t* w_rows,
                     const scalar_t* bias_block, scalar_t* out,
                     scalar_t* columns, scalar_t* x_copy, int64_t* held_copy,
                     int64_t copy_key) noexcept nogil:
    """A one-tile unit over batch elements [n_first, n_first + samples_per_unit): one GEMM.

    The GEMM covers every input position of each element (rows j*L + l);
    each element's col2im then reads its rows l_lo..l_hi, as it would alone.
    ``held_copy``, ``copy_key``: as in _input_as_rows.
    """
    cdef int64_t K = p.kernel_size, L = p.in_length
    cdef int64_t count = _min(plan.samples_per_unit, p.batch - n_first)
    cdef int64_t j
    cdef const scalar_t* x_group = x + n_first * sx_n + g * plan.c_in_g * sx_c
    if not (sx_c == 1 and sx_n == L * sx_l):
        # Unless channels-last and packed (the elements' positions already
        # follow each other as rows of X^T).
        _input_as_rows(x_group, sx_n, sx_c, sx_l, count, L, plan.c_in_g, x_copy, held_copy,
                       copy_key)
        x_group, sx_c, sx_l = x_copy, 1, plan.c_in_g
    _columns_by_position(plan, K, x_group, sx_c, sx_l, w_block, w_rows, n_channels,
                         count * L, columns, NULL)
    for j in range(count):
        _scatter_taps(p, plan, bias_block, n_channels, 0, plan.out_length, l_lo, l_hi,
                      columns + (j * L + l_lo) * n_channels * K,
                      out + ((n_first + j) * p.out_channels + g * plan.c_out_g + co0)
                      * plan.out_length)


cdef inline void _winograd_weight_row(const scalar_t* src, int64_t n_channels, int64_t s,
                                      int component, scalar_t* dst) noexcept nogil:
    """One input channel's row of _winograd_weights: ``src`` its taps (K = 2s per channel).
    Called with a literal ``s`` for the common strides, so that the compiler
    turns the phases into vector code."""
    cdef int64_t c, r
    cdef scalar_t half = 0.5
    if component == 0:
        for c in range(n_channels):
            for r in range(s):
                dst[c * s + r] = src[2 * c * s + s + r]
    elif component == 1:
        for c in range(n_channels):
            for r in range(s):
                dst[c * s + r] = half * (src[2 * c * s + r] + src[2 * c * s + s + r])
    elif component == 2:
        for c in range(n_channels):
            for r in range(s):
                dst[c * s + r] = half * (src[2 * c * s + s + r] - src[2 * c * s + r])
    else:
        for c in range(n_channels):
            for r in range(s):
                dst[c * s + r] = src[2 * c * s + r]


cdef void _winograd_weights(const convt_blas_params* p, int64_t c_out_g,
                            const scalar_t* w_rows, int64_t n_rows, int64_t n_channels,
                            int64_t ld, int first, int count, int64_t step,
                            scalar_t* weights) noexcept nogil:
    """``count`` of a block's four F(3,2) matrices (C_in/g, n_channels*s) from ``first`` on:
    W1, (W0+W1)/2, (W1-W0)/2 and W0 are components 0..3.

    W0 and W1 are the taps k < s and k >= s: W_j[i, c*s + r] = W_g[i, c, j*s + r].
    Writes ``n_rows`` input channels from ``w_rows`` on, rows ``ld`` apart,
    matrices ``step``, input channel by input channel (its taps stay in
    cache for every component). Halving is exact, so it costs no rounding.
    """
    cdef int64_t s = p.stride, K = p.kernel_size, i
    cdef int component
    cdef const scalar_t* src
    cdef scalar_t* dst
    for i in range(n_rows):
        src = w_rows + i * c_out_g * K
        for component in range(first, first + count):
            dst = weights + (component - first) * step + i * ld
            if s == 2:
                _winograd_weight_row(src, n_channels, 2, component, dst)
            elif s == 4:
                _winograd_weight_row(src, n_channels, 4, component, dst)
            elif s == 8:
                _winograd_weight_row(src, n_channels, 8, component, dst)
            else:
                _winograd_weight_row(src, n_channels, s, component, dst)


cdef inline scalar_t _winograd_input(scalar_t d0, scalar_t d1, scalar_t d2, scalar_t d3,
                                     int component) noexcept nogil:
    """Component 0..3 of a triple's input transform: d0 - d2, d1 + d2, d2 - d1, d3 - d1."""
    if component == 0:
        return d0 - d2
    if component == 1:
        return d1 + d2
    if component == 2:
        return d2 - d1
    return d3 - d1


cdef inline void _winograd_triple(const scalar_t* row, int64_t sx_l, int64_t L, int64_t t,
                                  int first, int count, int64_t step,
                                  scalar_t* v) noexcept nogil:
    """Triple t at the input's edges: positions outside it are zero."""
    cdef scalar_t zero = 0
    cdef scalar_t d0 = row[(3 * t - 1) * sx_l] if 0 <= 3 * t - 1 < L else zero
    cdef scalar_t d1 = row[3 * t * sx_l] if 0 <= 3 * t < L else zero
    cdef scalar_t d2 = row[(3 * t + 1) * sx_l] if 0 <= 3 * t + 1 < L else zero
    cdef scalar_t d3 = row[(3 * t + 2) * sx_l] if 0 <= 3 * t + 2 < L else zero
    cdef int component
    for component in range(first, first + count):
        v[(component - first) * step] = _winograd_input(d0, d1, d2, d3, component)


cdef void _winograd_inputs(const convt_blas_params* p, const scalar_t* x_sample,
                           int64_t sx_c, int64_t sx_l, int64_t c_in_g, int64_t t0, int64_t t1,
                           int first, int count, int64_t step,
                           scalar_t* inputs) noexcept nogil:
    """Components ``first``..``first+count-1`` of one sample's triples t0..t1 as rows
    0..t1-t0 of (triples, C_in/g) matrices ``step`` elements apart.

    With d_j = x[3t - 1 + j] (zero outside the input), triple t gives
    d0 - d2, d1 + d2, d2 - d1, d3 - d1 (_winograd_input). Position-major, so
    that BLAS reads each column of the GEMM's inner size contiguously
    (measured: 64- and 128-channel GEMMs 7-14% faster than from
    channel-major rows).
    """
    cdef int64_t L = p.in_length, i, i0, i1, block, triple_block, ta, tb, t, lo, hi
    cdef int64_t vector_channels = 0
    cdef int component
    cdef scalar_t d0, d1, d2, d3
    cdef const scalar_t* row
    cdef scalar_t* v
    # Triples lo..hi-1 have all four positions inside the input.
    lo = _min(t1, _max(t0, 1))
    hi = _max(lo, _min(t1, L / 3))
    for i in range(c_in_g):
        row = x_sample + i * sx_c
        v = inputs + i - t0 * c_in_g
        for t in range(t0, lo):
            _winograd_triple(row, sx_l, L, t, first, count, step, v + t * c_in_g)
        for t in range(hi, t1):
            _winograd_triple(row, sx_l, L, t, first, count, step, v + t * c_in_g)
    # Interior triples in blocks of WINOGRAD_INPUT_TRIPLES triples by
    # WINOGRAD_INPUT_CHANNELS channels, position by position within a block:
    # the block's input rows stay in cache (rows a multiple of 4 KiB apart
    # share a few cache sets) and so do the rows it stores.
    # float32 with unit stride along positions: four channels at a time in
    # SSE, which the compiler does not find by itself.
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and sx_l == 1:
            vector_channels = c_in_g - c_in_g % 4
    for triple_block in range(_ceil_div(hi - lo, WINOGRAD_INPUT_TRIPLES)):
        ta = lo + triple_block * WINOGRAD_INPUT_TRIPLES
        tb = _min(hi, ta + WINOGRAD_INPUT_TRIPLES)
        for block in range(_ceil_div(c_in_g, WINOGRAD_INPUT_CHANNELS)):
            i0 = block * WINOGRAD_INPUT_CHANNELS
            i1 = _min(c_in_g, i0 + WINOGRAD_INPUT_CHANNELS)
            if scalar_t is float:
                if i1 <= vector_channels:
                    convt_blas_winograd_inputs_f32(x_sample + i0 * sx_c + 3 * ta - 1, sx_c,
                                                   i1 - i0, tb - ta, first, count,
                                                   inputs + (ta - t0) * c_in_g + i0, c_in_g,
                                                   step)
                    continue
            for t in range(ta, tb):
                v = inputs + (t - t0) * c_in_g
                row = x_sample + (3 * t - 1) * sx_l
                if count == 4:
                    for i in range(i0, i1):
                        d0 = row[i * sx_c]
                        d1 = row[i * sx_c + sx_l]
                        d2 = row[i * sx_c + 2 * sx_l]
                        d3 = row[i * sx_c + 3 * sx_l]
                        v[i] = _winograd_input(d0, d1, d2, d3, 0)
                        v[step + i] = _winograd_input(d0, d1, d2, d3, 1)
                        v[2 * step + i] = _winograd_input(d0, d1, d2, d3, 2)
                        v[3 * step + i] = _winograd_input(d0, d1, d2, d3, 3)
                    continue
                for i in range(i0, i1):
                    d0 = row[i * sx_c]
                    d1 = row[i * sx_c + sx_l]
                    d2 = row[i * sx_c + 2 * sx_l]
                    d3 = row[i * sx_c + 3 * sx_l]
                    for component in range(first, first + count):
                        v[(component - first) * step + i] = _winograd_input(d0, d1, d2, d3,
                                                                            component)


cdef inline void _combine_triples(const scalar_t* p0, int64_t product_step, int64_t rows,
                                  int64_t count, scalar_t b, bint has_bias, int64_t s,
                                  scalar_t* dst) noexcept nogil:
    """Strides 3t, 3t+1, 3t+2 of one channel for ``count`` triples inside the output.

    ``p0``: the channel's phases in P0's row of the first triple; ``dst``:
    that triple's first output. Called with a literal ``s`` for the common
    strides, so that the compiler unrolls the phases into vector code.
    """
    cdef int64_t t, r
    cdef const scalar_t* q
    cdef scalar_t* d
    cdef scalar_t both, early, middle, late
    for t in range(count):
        q = p0 + t * rows
        d = dst + 3 * t * s
        for r in range(s):
            both = q[product_step + r] + q[2 * product_step + r]
            early = q[r] + both
            middle = q[product_step + r] - q[2 * product_step + r]
            late = both + q[3 * product_step + r]
            if has_bias:
                early = early + b
                middle = middle + b
                late = late + b
            d[r] = early
            d[s + r] = middle
            d[2 * s + r] = late


cdef inline void _combine_edge_triple(const convt_blas_params* p, const Plan* plan,
                                      const scalar_t* p0, int64_t product_step, int64_t t,
                                      scalar_t b, bint has_bias, scalar_t* out_row) noexcept nogil:
    """_combine_triples for a triple at the output's edges: outputs outside it are skipped."""
    cdef int64_t s = p.stride, base = 3 * t * s - p.padding, r, o
    cdef const scalar_t* p1 = p0 + product_step
    cdef const scalar_t* p2 = p1 + product_step
    cdef const scalar_t* p3 = p2 + product_step
    cdef scalar_t value
    for r in range(3 * s):
        o = base + r
        if 0 <= o < plan.out_length:
            if r < s:
                value = p0[r] + (p1[r] + p2[r])
            elif r < 2 * s:
                value = p1[r - s] - p2[r - s]
            else:
                value = (p1[r - 2 * s] + p2[r - 2 * s]) + p3[r - 2 * s]
            out_row[o] = value + b if has_bias else value


cdef int _winograd_outputs(const convt_blas_params* p, const Plan* plan,
                           const scalar_t* bias_block, int64_t n_channels, int64_t t0,
                           int64_t t1, const scalar_t* products, int64_t product_step,
                           scalar_t* out_block) noexcept nogil:
    """Strides 3t, 3t+1, 3t+2 of each channel from the products, plus bias.

    Z[3t] = P0 + (P1 + P2), Z[3t+1] = P1 - P2, Z[3t+2] = (P1 + P2) + P3, stride
    u's phase r at output u*s + r - padding. ``products``: P0 of one sample,
    (triples, n_channels*s), row t - t0 for triple t; P1, P2, P3 follow
    ``product_step`` apart. Returns nonzero if a value stored is not finite
    (see _redo_non_finite_samples).
    """
    cdef int64_t s = p.stride, rows = n_channels * s, L_out = plan.out_length
    cdef int64_t c, t, o, inner_lo, inner_hi, inner, inner_first, span_lo, span_hi
    cdef int64_t simd_channels = 0
    cdef const scalar_t* inner_products
    cdef const scalar_t* p0
    cdef scalar_t* out_row
    cdef scalar_t* first_inner
    cdef scalar_t b
    cdef scalar_t zero = 0
    cdef bint has_bias = bias_block != NULL
    cdef int non_finite = 0  # x - x is 0 for finite x only
    # Triples inner_lo..inner_hi-1 have all 3s outputs inside the output.
    inner_lo = _min(t1, _max(t0, _ceil_div(p.padding, 3 * s)))
    inner_hi = _max(inner_lo, _min(t1, (L_out + p.padding) / (3 * s)))
    inner = inner_hi - inner_lo
    inner_products = products + (inner_lo - t0) * rows   # channel 0's phases of triple inner_lo
    inner_first = 3 * inner_lo * s - p.padding           # that triple's first output
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and s == 2 and inner > 0:
            # The inner triples of channel pairs in SSE (the same bits),
            # checked in registers as they are stored; an odd last channel
            # takes the loop below.
            simd_channels = n_channels - n_channels % 2
            for c in range(0, simd_channels, 2):
                non_finite |= convt_blas_combine_s2_f32(
                    inner_products + c * s, product_step, rows, inner,
                    bias_block[c] if has_bias else 0, bias_block[c + 1] if has_bias else 0,
                    has_bias, out_block + c * L_out + inner_first,
                    out_block + (c + 1) * L_out + inner_first)
        elif CONVT_BLAS_SIMD_LANES == 4 and s % 4 == 0 and inner > 0:
            simd_channels = n_channels  # one channel at a time, four phases per vector
            for c in range(n_channels):
                non_finite |= convt_blas_combine_s4k_f32(
                    inner_products + c * s, product_step, rows, inner, s,
                    bias_block[c] if has_bias else 0, has_bias,
                    out_block + c * L_out + inner_first)
    for c in range(n_channels):
        out_row = out_block + c * L_out
        b = bias_block[c] if has_bias else 0
        if inner > 0 and c >= simd_channels:
            p0 = inner_products + c * s
            first_inner = out_row + inner_first
            if s == 2:
                _combine_triples(p0, product_step, rows, inner, b, has_bias, 2, first_inner)
            elif s == 4:
                _combine_triples(p0, product_step, rows, inner, b, has_bias, 4, first_inner)
            elif s == 8:
                _combine_triples(p0, product_step, rows, inner, b, has_bias, 8, first_inner)
            else:
                _combine_triples(p0, product_step, rows, inner, b, has_bias, s, first_inner)
        for t in range(t0, inner_lo):
            _combine_edge_triple(p, plan, products + (t - t0) * rows + c * s, product_step,
                                 t, b, has_bias, out_row)
        for t in range(inner_hi, t1):
            _combine_edge_triple(p, plan, products + (t - t0) * rows + c * s, product_step,
                                 t, b, has_bias, out_row)
        # The channel's stored span, less what SSE checked, in a pass of its
        # own (checking as they are stored keeps the loops above from
        # vectorising).
        span_lo = _max(0, 3 * t0 * s - p.padding)
        span_hi = _min(L_out, 3 * t1 * s - p.padding)
        if c < simd_channels:
            for o in range(span_lo, inner_first):
                non_finite |= out_row[o] - out_row[o] != zero
            span_lo = inner_first + 3 * inner * s
        for o in range(span_lo, span_hi):
            non_finite |= out_row[o] - out_row[o] != zero
    return non_finite


cdef int _run_winograd_unit(const convt_blas_params* p, const Plan* plan, int64_t unit,
                            const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                            const scalar_t* w, const scalar_t* prepared,
                            const scalar_t* bias, scalar_t* out,
                            scalar_t* worker, int64_t* held) noexcept nogil:
    """Winograd's F(3,2) for channels [co0, co0 + n_channels), triples [t0, t1), a few samples.

    With K = 2s and no dilation, output u*s + r - padding (r < s) of channel
    c is Z[u] = W0 x[u] + W1 x[u-1], W_j the (C_out, C_in) taps j*s + r. Three
    strides u = 3t, 3t+1, 3t+2 need six products; F(3,2) (interpolation at
    0, 1, -1 and infinity) makes four, with d_j = x[3t - 1 + j]:
        P0 = W1 (d0 - d2),            P1 = (W0 + W1)/2 (d1 + d2),
        P2 = (W1 - W0)/2 (d2 - d1),   P3 = W0 (d3 - d1),
        Z[3t] = P0 + P1 + P2,  Z[3t+1] = P1 - P2,  Z[3t+2] = P1 + P2 + P3,
    a third fewer multiply-adds, at a rounding error measured within 2x the
    GEMM path's (README). Each product is one GEMM over the unit's triples.
    ``plan.pass_components`` (4 or 1) at a time, a worker transforms the
    block's weight (unless ``prepared``: all groups' transformed weights,
    see prepare_winograd_weights, read in place) and its samples' input
    tile, and multiplies them into those components' products; the four
    products are kept until the outputs combine them (see _plan_winograd).
    ``held``: the weight block and input tile the worker's workspace holds
    transformed (-1: none), kept for its next unit when all four components
    fit at a time. Returns nonzero if an output it stored is not finite.
    """
    cdef int64_t s = p.stride, c_in_g = plan.c_in_g
    cdef int64_t sample_groups = _ceil_div(p.batch, plan.samples_per_unit)
    cdef int64_t tile, rest, sample_group, g, block, first, count, co0, n_channels, rows
    cdef int64_t t0, t1, triples, columns, j, k, ld_w, weight_key, input_key, weight_step
    cdef int64_t input_step
    cdef int k0, n_pass = <int>plan.pass_components
    cdef int non_finite = 0
    cdef const scalar_t* weights
    cdef scalar_t* inputs
    cdef scalar_t* products
    if plan.tile_major:
        block = unit % plan.n_blocks
        rest = unit / plan.n_blocks
        tile = rest % plan.n_tiles
        rest = rest / plan.n_tiles
        sample_group = rest % sample_groups
        g = rest / sample_groups
    else:
        tile = unit % plan.n_tiles
        rest = unit / plan.n_tiles
        sample_group = rest % sample_groups
        rest = rest / sample_groups
        block = rest % plan.n_blocks
        g = rest / plan.n_blocks
    first = sample_group * plan.samples_per_unit
    count = _min(plan.samples_per_unit, p.batch - first)
    co0 = block * plan.block_channels
    n_channels = _min(plan.block_channels, plan.c_out_g - co0)
    rows = n_channels * s
    t0 = plan.triple_first + tile * plan.tile_triples
    t1 = _min(t0 + plan.tile_triples, plan.triple_first + plan.triple_count)
    triples = t1 - t0
    columns = count * triples
    # Offsets from the plan's sizes, so that the buffers do not move with the unit.
    input_step = c_in_g * columns
    inputs = worker + n_pass * _weight_block_elements(plan, s)
    products = inputs + n_pass * c_in_g * plan.samples_per_unit * plan.tile_triples
    if plan.prepared_weights:
        ld_w = plan.c_out_g * s
        weight_step = c_in_g * ld_w
    else:
        ld_w = rows
        weight_step = c_in_g * rows
    weight_key = g * plan.n_blocks + block
    input_key = (g * sample_groups + sample_group) * plan.n_tiles + tile
    # P_k = inputs_k @ weights_k: (columns, rows), position-major.
    weights = prepared + 4 * g * weight_step + co0 * s if plan.prepared_weights else worker
    k0 = 0
    while k0 < 4:
        if not plan.prepared_weights and (n_pass < 4 or held[0] != weight_key):
            _winograd_weights(p, plan.c_out_g,
                              w + (g * c_in_g * plan.c_out_g + co0) * p.kernel_size,
                              c_in_g, n_channels, rows, k0, n_pass, weight_step, worker)
            held[0] = weight_key
        if n_pass < 4 or held[1] != input_key:
            for j in range(count):
                _winograd_inputs(p, x + (first + j) * sx_n + g * c_in_g * sx_c, sx_c, sx_l,
                                 c_in_g, t0, t1, k0, n_pass, input_step,
                                 inputs + j * triples * c_in_g)
            held[1] = input_key
        for k in range(k0, k0 + n_pass):
            _gemm(False, False, <int>columns, <int>rows, <int>c_in_g,
                  inputs + (k - k0) * input_step, <int>c_in_g,
                  weights + (k if plan.prepared_weights else k - k0) * weight_step, <int>ld_w,
                  products + k * columns * rows, <int>rows, NULL)
        k0 += n_pass
    for j in range(count):
        non_finite |= _winograd_outputs(
            p, plan, bias + g * plan.c_out_g + co0 if bias != NULL else NULL,
            n_channels, t0, t1, products + j * triples * rows, columns * rows,
            out + ((first + j) * p.out_channels + g * plan.c_out_g + co0) * plan.out_length)
    return non_finite


cdef inline void _transpose(const scalar_t* src, int64_t ld_src, int64_t step_src,
                            int64_t rows, int64_t cols, scalar_t* dst,
                            int64_t ld_dst) noexcept nogil:
    """dst[j * ld_dst + i] = src[i * ld_src + j * step_src] for a rows x cols block."""
    cdef int64_t i, j, i0, i1, vector_rows = 0
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and step_src == 1:
            vector_rows = rows - rows % 4
            convt_blas_transpose_f32(src, ld_src, vector_rows, cols, dst, ld_dst)
    # Eight rows at a time: their lines stay in cache while the columns go by.
    for i0 in range(vector_rows, rows, 8):
        i1 = _min(rows, i0 + 8)
        for j in range(cols):
            for i in range(i0, i1):
                dst[j * ld_dst + i] = src[i * ld_src + j * step_src]


cdef void _weight_rows(const scalar_t* w, int64_t groups, int64_t c_in_g, int64_t m,
                       scalar_t* rows, int n_threads) noexcept nogil:
    """rows[g][j, i] = W_g[i, j] for each group's (c_in_g, m) weight, in 64 x 64 tiles
    (a tile's rows and columns stay in cache), tiles shared among threads."""
    cdef int64_t row_tiles = _ceil_div(c_in_g, 64), col_tiles = _ceil_div(m, 64)
    cdef int64_t tiles = groups * row_tiles * col_tiles, tile, g, i0, j0, rest
    for tile in prange(tiles, num_threads=_max(1, _min(_thread_count(n_threads), tiles)),
                       schedule='static'):
        g = tile / (row_tiles * col_tiles)
        rest = tile % (row_tiles * col_tiles)
        i0 = (rest / col_tiles) * 64
        j0 = (rest % col_tiles) * 64
        _transpose(w + (g * c_in_g + i0) * m + j0, m, 1, _min(64, c_in_g - i0),
                   _min(64, m - j0), rows + g * c_in_g * m + j0 * c_in_g + i0, c_in_g)


cdef void _run_depthwise_unit(const convt_blas_params* p, const Plan* plan, int64_t n,
                              int64_t g0, int64_t n_groups, int64_t start, int64_t stop,
                              int64_t l_lo, int64_t l_hi,
                              const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                              const scalar_t* w, const scalar_t* bias, scalar_t* out,
                              scalar_t* worker) noexcept nogil:
    """Direct taps of ``n_groups`` depthwise channels from g0, outputs [start, stop), one sample.

    One channel's taps are a handful of multiply-adds per output, too few
    for vector code along a row. The unit lays its input, taps and outputs
    out position-major instead, so that every multiply-add runs across the
    channels (vectorised), then writes the outputs back channel-major. Each
    output sums bias, then its taps in order of k (of l descending), as
    _sum_phase does: the same bits as the phase-by-phase path.
    """
    cdef int64_t K = p.kernel_size, s = p.stride, pad = p.padding, L = p.in_length
    cdef int64_t width = plan.groups_per_unit, n_cols = l_hi - l_lo + 1
    cdef int64_t o, q, r, k, l, c
    cdef scalar_t* x_t = worker                          # (n_cols, width)
    cdef scalar_t* out_t = worker + plan.max_columns * width   # (stop - start, width)
    cdef scalar_t* w_t = out_t + plan.tile * width       # (K, width)
    cdef int64_t n_taps, q_first, q_last
    cdef int64_t two_taps_lo = 0, two_taps_hi = 0   # phases done in SSE (none unless float32)
    cdef scalar_t* acc
    cdef const scalar_t* tap
    cdef const scalar_t* x_l
    cdef const scalar_t* tap_b
    cdef const scalar_t* x_b
    cdef const scalar_t* taps[2]
    cdef const scalar_t* inputs[2]
    cdef scalar_t zero = 0
    if n_cols > 0:
        _transpose(x + n * sx_n + g0 * sx_c + l_lo * sx_l, sx_c, sx_l, n_groups, n_cols,
                   x_t, width)
    _transpose(w + g0 * K, K, 1, n_groups, K, w_t, width)
    # float32, whole vectors of channels: phases whose outputs have exactly
    # two taps (k = r and r + s, K <= r + 2s) take them in SSE along the
    # phase (from input positions 1..L-1), the loop below skips those.
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and n_groups % 4 == 0:
            two_taps_lo = _max(0, K - 2 * s)
            two_taps_hi = _min(s, K - s)        # phases [two_taps_lo, two_taps_hi)
            for r in range(two_taps_lo, two_taps_hi):
                q_first = _max(1, _ceil_div(start + pad - r, s))
                q_last = _min(L - 1, _floor_div(stop - 1 + pad - r, s))
                if q_first <= q_last:
                    convt_blas_depthwise_two_taps_f32(
                        x_t + (q_first - 1 - l_lo) * width, width, w_t + r * width,
                        w_t + (r + s) * width, bias + g0 if bias != NULL else NULL, n_groups,
                        q_last - q_first + 1, s * width,
                        out_t + (q_first * s + r - pad - start) * width)
    q = _floor_div(start + pad, s)
    r = start + pad - q * s
    for o in range(start, stop):
        if two_taps_lo <= r < two_taps_hi and 1 <= q < L:
            r += 1  # done above
            if r == s:
                r = 0
                q += 1
            continue
        acc = out_t + (o - start) * width
        # Taps k = r, r + s, ... reach o from l = q, q - 1, ... (those inside the input).
        n_taps = 0
        k = r
        l = q
        while k < K and l >= 0 and n_taps < 2:
            if l < L:
                taps[n_taps] = w_t + k * width
                inputs[n_taps] = x_t + (l - l_lo) * width
                n_taps += 1
            k += s
            l -= 1
        # The first two taps summed in registers (most layers: K <= 2 * stride),
        # then any others in order; the sums run in the same order either way.
        if n_taps == 0:
            for c in range(n_groups):
                acc[c] = bias[g0 + c] if bias != NULL else zero
        elif n_taps == 1:
            tap = taps[0]
            x_l = inputs[0]
            for c in range(n_groups):
                acc[c] = (bias[g0 + c] if bias != NULL else zero) + tap[c] * x_l[c]
        else:
            tap = taps[0]
            x_l = inputs[0]
            tap_b = taps[1]
            x_b = inputs[1]
            for c in range(n_groups):
                acc[c] = (((bias[g0 + c] if bias != NULL else zero) + tap[c] * x_l[c])
                          + tap_b[c] * x_b[c])
            # Taps past the second, from where the search above stopped.
            while k < K and l >= 0:
                if l < L:
                    tap = w_t + k * width
                    x_l = x_t + (l - l_lo) * width
                    for c in range(n_groups):
                        acc[c] += tap[c] * x_l[c]
                k += s
                l -= 1
        r += 1
        if r == s:
            r = 0
            q += 1
    _transpose(out_t, width, 1, stop - start, n_groups,
               out + (n * p.out_channels + g0) * plan.out_length + start, plan.out_length)


cdef void _run_unit(const convt_blas_params* p, const Plan* plan, int64_t unit,
                    const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                    const scalar_t* w, const scalar_t* w_rows, const scalar_t* bias,
                    scalar_t* out, scalar_t* worker, int64_t* held_copy) noexcept nogil:
    """One unit: output channels [co0, co0 + n_channels) of its groups, positions [start, stop).

    ``worker`` is the worker's workspace: its column buffer, its copy of
    the input (merged samples', or a one-tile input as rows; else one vector
    for _gemm), then its phase rows.
    ``w_rows``: NULL, or the weight's rows for the GEMMs (transpose_weights).
    ``held_copy``: NULL, or what the worker's copy holds (see _input_as_rows).
    """
    cdef int64_t K = p.kernel_size
    cdef int64_t n, g, g_first, block, tile, rest, co0, n_channels, start, stop, copy_key
    cdef int64_t l_lo, l_hi, n_cols
    cdef scalar_t* columns = worker
    cdef scalar_t* copy = worker + plan.column_elements  # input copy, or _gemm's vector
    cdef scalar_t* phase = copy + plan.copy_elements
    cdef const scalar_t* x_group
    cdef const scalar_t* x_tile
    cdef const scalar_t* w_block
    cdef const scalar_t* rows_block = NULL
    cdef const scalar_t* bias_block
    cdef scalar_t* out_block

    n = unit / plan.units_per_sample
    rest = unit - n * plan.units_per_sample
    g_first = (rest / (plan.n_blocks * plan.n_tiles)) * plan.groups_per_unit
    rest = rest % (plan.n_blocks * plan.n_tiles)
    block = rest / plan.n_tiles
    tile = rest - block * plan.n_tiles
    co0 = block * plan.block_channels
    n_channels = _min(plan.block_channels, plan.c_out_g - co0)
    start = tile * plan.tile
    stop = _min(start + plan.tile, plan.out_length)

    _input_range(p, start, stop, &l_lo, &l_hi)
    n_cols = l_hi - l_lo + 1
    if plan.depthwise:
        _run_depthwise_unit(p, plan, n, g_first, _min(p.groups, g_first + plan.groups_per_unit) - g_first,
                            start, stop, l_lo, l_hi, x, sx_n, sx_c, sx_l, w, bias, out, worker)
        return
    if plan.direct_taps:
        # Taps straight from x and w; the unit's groups share one call. (A call
        # site of its own, with the pointers written out: sharing the GEMM
        # path's pointers and call below made the depthwise layer 25% slower.)
        _gather_phases(p, plan, bias + g_first * plan.c_out_g + co0 if bias != NULL else NULL,
                       _min(p.groups, g_first + plan.groups_per_unit) - g_first, n_channels,
                       start, stop, l_lo, l_hi, NULL,
                       x + n * sx_n + g_first * plan.c_in_g * sx_c, sx_c, sx_l,
                       w + g_first * plan.c_in_g * plan.c_out_g * K + co0 * K, phase,
                       out + (n * p.out_channels + g_first * plan.c_out_g + co0) * plan.out_length)
        return
    g = g_first
    bias_block = bias + g * plan.c_out_g + co0 if bias != NULL else NULL
    w_block = w + g * plan.c_in_g * plan.c_out_g * K + co0 * K
    if w_rows != NULL:  # rows c*K + k of the group's (C_out/g * K, C_in/g)
        rows_block = w_rows + (g * plan.c_out_g + co0) * K * plan.c_in_g
    copy_key = n * p.groups + g  # the input a one-tile unit lays out (n: its sample group)
    if plan.samples_per_unit > 1:
        _run_merged(p, plan, n * plan.samples_per_unit, g, co0, n_channels, l_lo, l_hi,
                    x, sx_n, sx_c, sx_l, w_block, rows_block, bias_block, out, columns, copy,
                    held_copy, copy_key)
        return
    out_block = out + (n * p.out_channels + g * plan.c_out_g + co0) * plan.out_length
    x_group = x + n * sx_n + g * plan.c_in_g * sx_c
    if n_cols > 0 and plan.position_major:
        x_tile = x_group + l_lo * sx_l
        if (plan.input_rows and sx_l == 1
                and _blocked_either_way(n_cols, n_channels * K, plan.c_in_g)):
            # Blocked GEMMs only: BLAS's small-matrix kernels round the two
            # layouts differently.
            _input_as_rows(x_tile, 0, sx_c, 1, 1, n_cols, plan.c_in_g, copy, held_copy, copy_key)
            _columns_by_position(plan, K, copy, 1, plan.c_in_g, w_block, rows_block,
                                 n_channels, n_cols, columns, NULL)
        else:
            if held_copy != NULL:
                held_copy[0] = -1  # ``copy`` may serve as _gemm's vector
            _columns_by_position(plan, K, x_tile, sx_c, sx_l, w_block, rows_block,
                                 n_channels, n_cols, columns, copy)
        _scatter_taps(p, plan, bias_block, n_channels, start, stop, l_lo, l_hi, columns,
                      out_block)
        return
    if n_cols > 0:
        _columns_by_channel(plan, K, x_group + l_lo * sx_l, sx_c, sx_l, w_block,
                            rows_block, n_channels, n_cols, columns, copy)
    _gather_phases(p, plan, bias_block, 1, n_channels, start, stop, l_lo, l_hi, columns,
                   x_group, sx_c, sx_l, w_block, phase, out_block)


cdef int _conv_transpose1d(const convt_blas_params* p,
                           const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                           const scalar_t* w, const scalar_t* prepared, int64_t prepared_len,
                           const scalar_t* bias, scalar_t* out,
                           scalar_t* workspace, int64_t workspace_len,
                           int n_threads, const scalar_t* w_rows=NULL,
                           int winograd=-1) noexcept nogil:
    """The convolution. ``prepared``: NULL, or the weight as _prepare_weights lays it
    out (``prepared_len`` elements), used when the plan takes it. ``w_rows``: NULL, or
    the weight as transpose_weights lays it out, which GEMM-path plans read instead
    of ``w`` (the caller checks its length). ``winograd``: whether F(3,2) is allowed,
    as the caller read the switch when it sized the workspace; -1 reads it here."""
    cdef Plan plan
    cdef int64_t per_worker, workers
    cdef bint owns_workspace = False
    cdef bint allowed = WINOGRAD_ENABLED if winograd < 0 else winograd != 0
    cdef int status = _make_plan_with(p, &plan, allowed, prepared != NULL)
    if status != CONVT_BLAS_OK:
        return status
    if (workspace != NULL and workspace_len < plan.worker_elements * _worker_count(&plan, n_threads)
            and _winograd_shape(p)):
        # Sized while the switch was the other way (set_winograd from another
        # thread): the plan that workspace was sized for runs instead of failing.
        _make_plan_with(p, &plan, not allowed, prepared != NULL)
    if x == NULL or w == NULL or out == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    if plan.prepared_weights and prepared_len != _prepared_elements(p, &plan):
        return CONVT_BLAS_ERR_BAD_PREPARED
    # BLAS needs unit stride along one axis and a leading dimension that
    # fits in int and spans the other axis.
    if sx_l == 1:
        if sx_c < p.in_length or sx_c > INT_MAX:
            return CONVT_BLAS_ERR_BAD_STRIDES
    elif sx_c == 1:
        if sx_l < p.in_channels or sx_l > INT_MAX:
            return CONVT_BLAS_ERR_BAD_STRIDES
    else:
        return CONVT_BLAS_ERR_BAD_STRIDES
    if sx_n < 0:
        return CONVT_BLAS_ERR_BAD_STRIDES
    if plan.n_units == 0:
        return CONVT_BLAS_OK

    per_worker = plan.worker_elements
    workers = _worker_count(&plan, n_threads)
    if workspace == NULL:
        workspace = <scalar_t*>malloc(<size_t>(per_worker * workers) * sizeof(scalar_t))
        if workspace == NULL:
            return CONVT_BLAS_ERR_NO_MEMORY
        owns_workspace = True
    elif workspace_len < per_worker * workers:
        return CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL

    if plan.winograd:
        status = _run_winograd(p, &plan, x, sx_n, sx_c, sx_l, w, prepared, bias, out,
                               workspace, per_worker, workers)
        if status == WINOGRAD_NOT_FINITE:
            _redo_non_finite_samples(p, x, sx_n, sx_c, sx_l, w, bias, out, workspace,
                                     per_worker * workers, n_threads)
            status = CONVT_BLAS_OK
    else:
        _run_gemm_plan(p, &plan, x, sx_n, sx_c, sx_l, w, w_rows, bias, out, workspace,
                       per_worker, workers)
    if owns_workspace:
        free(workspace)
    return status


cdef void _run_gemm_plan(const convt_blas_params* p, const Plan* plan,
                         const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                         const scalar_t* w, const scalar_t* w_rows, const scalar_t* bias,
                         scalar_t* out, scalar_t* workspace, int64_t per_worker,
                         int64_t workers) noexcept nogil:
    cdef int64_t unit, worker
    # Per worker: which input its copy holds (see _run_merged and _run_unit);
    # without this memory each unit lays it out again.
    cdef int64_t* held_copy = NULL
    if plan.samples_per_unit > 1 or plan.input_rows:
        held_copy = <int64_t*>malloc(<size_t>workers * sizeof(int64_t))
        if held_copy != NULL:
            for worker in range(workers):
                held_copy[worker] = -1
    if workers > 1:
        for unit in prange(plan.n_units, num_threads=<int>workers, schedule='guided'):
            _run_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, w_rows, bias, out,
                      workspace + threadid() * per_worker,
                      held_copy + threadid() if held_copy != NULL else NULL)
    else:
        for unit in range(plan.n_units):
            _run_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, w_rows, bias, out, workspace,
                      held_copy)
    free(held_copy)


cdef void _redo_non_finite_samples(const convt_blas_params* p,
                                   const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                                   const scalar_t* w, const scalar_t* bias, scalar_t* out,
                                   scalar_t* workspace, int64_t available,
                                   int n_threads) noexcept nogil:
    """Recompute on the GEMM path each batch element whose Winograd output is not all finite.

    F(3,2) mixes each input into three strides and subtracts products, so an
    inf or NaN (or an overflow in its sums) can reach outputs the
    convolution keeps finite. Each such element is computed again alone,
    which gives the bits the GEMM path gives it in any batch; the others
    keep theirs, so results still do not depend on how a batch is split.
    The GEMM plan of one element never needs more workspace than the call's
    Winograd plan (see _plan_winograd).
    """
    cdef convt_blas_params one = p[0]
    cdef Plan plan
    cdef int64_t n, i, size, per_worker, workers
    cdef scalar_t* y
    cdef scalar_t zero = 0
    cdef bint finite
    one.batch = 1
    _make_plan_with(&one, &plan, False, False)
    size = p.out_channels * plan.out_length
    per_worker = plan.worker_elements
    workers = _min(_worker_count(&plan, n_threads), available / per_worker)
    for n in range(p.batch):
        y = out + n * size
        finite = True
        for i in range(size):
            if y[i] - y[i] != zero:
                finite = False
                break
        if not finite:
            _run_gemm_plan(&one, &plan, x + n * sx_n, sx_n, sx_c, sx_l, w, NULL, bias, y,
                           workspace, per_worker, workers)


cdef int WINOGRAD_NOT_FINITE = 1  # not a public status: _run_winograd's "recompute"


cdef int _run_winograd(const convt_blas_params* p, const Plan* plan,
                       const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                       const scalar_t* w, const scalar_t* prepared,
                       const scalar_t* bias, scalar_t* out,
                       scalar_t* workspace, int64_t per_worker, int64_t workers) noexcept nogil:
    """Run a Winograd plan's units; WINOGRAD_NOT_FINITE if an output is not finite."""
    cdef int64_t unit, worker
    cdef int status = CONVT_BLAS_OK
    # Per worker: the weight block and input tile its workspace holds, and
    # whether it stored a value that is not finite.
    cdef int64_t* held = <int64_t*>malloc(<size_t>(3 * workers) * sizeof(int64_t))
    if held == NULL:
        return CONVT_BLAS_ERR_NO_MEMORY
    for worker in range(workers):
        held[3 * worker] = -1
        held[3 * worker + 1] = -1
        held[3 * worker + 2] = 0
    if workers > 1:
        for unit in prange(plan.n_units, num_threads=<int>workers, schedule='guided'):
            if _run_winograd_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, prepared, bias, out,
                                  workspace + threadid() * per_worker, held + 3 * threadid()):
                held[3 * threadid() + 2] = 1
    else:
        for unit in range(plan.n_units):
            if _run_winograd_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, prepared, bias, out,
                                  workspace, held):
                held[2] = 1
    for worker in range(workers):
        if held[3 * worker + 2]:
            status = WINOGRAD_NOT_FINITE
    free(held)
    return status


# One exported entry point per dtype; all share the fused body above.
cdef int conv_transpose1d_f32(
        const convt_blas_params* p,
        const float* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const float* weight, const float* bias, float* out,
        float* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, NULL, 0, bias, out,
                             workspace, workspace_len, n_threads)


cdef int conv_transpose1d_f64(
        const convt_blas_params* p,
        const double* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const double* weight, const double* bias, double* out,
        double* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, NULL, 0, bias, out,
                             workspace, workspace_len, n_threads)


cdef int conv_transpose1d_c64(
        const convt_blas_params* p,
        const float complex* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const float complex* weight, const float complex* bias, float complex* out,
        float complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, NULL, 0, bias, out,
                             workspace, workspace_len, n_threads)


cdef int conv_transpose1d_c128(
        const convt_blas_params* p,
        const double complex* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const double complex* weight, const double complex* bias, double complex* out,
        double complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, NULL, 0, bias, out,
                             workspace, workspace_len, n_threads)


# With a weight kept transformed for F(3,2) (prepared_weight_length).
cdef int prepare_weight_f32(
        const convt_blas_params* p, const float* weight, float* prepared,
        int64_t prepared_len, int n_threads) noexcept nogil:
    return _prepare_weights(p, weight, prepared, prepared_len, n_threads)


cdef int conv_transpose1d_prepared_f32(
        const convt_blas_params* p,
        const float* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const float* weight, const float* prepared, int64_t prepared_len,
        const float* bias, float* out,
        float* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, prepared, prepared_len, bias, out,
                             workspace, workspace_len, n_threads)


cdef int prepare_weight_f64(
        const convt_blas_params* p, const double* weight, double* prepared,
        int64_t prepared_len, int n_threads) noexcept nogil:
    return _prepare_weights(p, weight, prepared, prepared_len, n_threads)


cdef int conv_transpose1d_prepared_f64(
        const convt_blas_params* p,
        const double* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const double* weight, const double* prepared, int64_t prepared_len,
        const double* bias, double* out,
        double* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, prepared, prepared_len, bias, out,
                             workspace, workspace_len, n_threads)


cdef int prepare_weight_c64(
        const convt_blas_params* p, const float complex* weight, float complex* prepared,
        int64_t prepared_len, int n_threads) noexcept nogil:
    return _prepare_weights(p, weight, prepared, prepared_len, n_threads)


cdef int conv_transpose1d_prepared_c64(
        const convt_blas_params* p,
        const float complex* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const float complex* weight, const float complex* prepared, int64_t prepared_len,
        const float complex* bias, float complex* out,
        float complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, prepared, prepared_len, bias, out,
                             workspace, workspace_len, n_threads)


cdef int prepare_weight_c128(
        const convt_blas_params* p, const double complex* weight, double complex* prepared,
        int64_t prepared_len, int n_threads) noexcept nogil:
    return _prepare_weights(p, weight, prepared, prepared_len, n_threads)


cdef int conv_transpose1d_prepared_c128(
        const convt_blas_params* p,
        const double complex* input, int64_t input_stride_batch,
        int64_t input_stride_channel, int64_t input_stride_length,
        const double complex* weight, const double complex* prepared, int64_t prepared_len,
        const double complex* bias, double complex* out,
        double complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil:
    return _conv_transpose1d(p, input, input_stride_batch, input_stride_channel,
                             input_stride_length, weight, prepared, prepared_len, bias, out,
                             workspace, workspace_len, n_threads)


# ---------------------------------------------------------------------------
# Python-facing helpers (called by convt_blas._functional after validation).

def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(CONVT_BLAS_OPENMP)


def set_blas_small_matrix_kernels(bint available):
    """Tell the planner whether BLAS multiplies small GEMMs without packing them."""
    global BLAS_SMALL_MATRIX_KERNELS
    BLAS_SMALL_MATRIX_KERNELS = available


def _set_depthwise_by_channels(bint enabled):
    """Turn _run_depthwise_unit off (False) or on (the default): for tests and benchmarks."""
    global DEPTHWISE_BY_CHANNELS
    DEPTHWISE_BY_CHANNELS = enabled


def set_winograd(bint enabled):
    """Whether layers with K == 2*stride may take Winograd's F(3,2) (see _make_plan)."""
    global WINOGRAD_ENABLED
    WINOGRAD_ENABLED = enabled


def _set_winograd_workspace(int64_t elements):
    """Set a worker's F(3,2) workspace target, in elements; returns the previous one.
    For tests and benchmarks (see WINOGRAD_WORKSPACE)."""
    global WINOGRAD_WORKSPACE
    previous = WINOGRAD_WORKSPACE
    WINOGRAD_WORKSPACE = elements
    return previous


def winograd_enabled():
    return bool(WINOGRAD_ENABLED)


def takes_weight_rows(tuple shape, winograd=None):
    """Whether a call of ``shape`` that has a prepared weight but runs the GEMM path
    (not F(3,2), not direct taps) takes the weight's rows (transpose_weights): whether
    its largest GEMM reads them (_blocked_either_way)."""
    cdef convt_blas_params p
    cdef Plan plan
    cdef int64_t rows, columns
    _plan_or_raise(shape, &p, &plan, True, _switch(winograd))
    if plan.winograd or plan.direct_taps:
        return False
    rows = plan.block_channels * p.kernel_size
    columns = plan.samples_per_unit * p.in_length if plan.samples_per_unit > 1 else plan.max_columns
    return bool(_blocked_either_way(columns if plan.position_major else rows,
                                    rows if plan.position_major else columns, plan.c_in_g))


def transpose_weights(tuple shape, cnp.ndarray weight, int n_threads=1):
    """The weight as its rows, for run's ``w_rows``: per group (C_out/g * K, C_in/g).

    OpenBLAS packs a GEMM operand stored this way, each row's inner size
    contiguous, faster than the (C_in/g, C_out/g * K) of the weight itself:
    measured at 100 input positions, 512 -> 256 channels, K = 16: the GEMM 9%
    faster; 1536 -> 768 channels at 86 positions: 16%. ``weight``:
    C-contiguous (C_in, C_out/g, K) of a supported dtype.
    """
    cdef int64_t groups = shape[9]
    cdef int64_t c_in_g = weight.shape[0] // groups
    cdef int64_t m = cnp.PyArray_SIZE(weight) // weight.shape[0]
    cdef int type_num = cnp.PyArray_TYPE(weight)
    cdef cnp.ndarray rows
    cdef void* src = cnp.PyArray_DATA(weight)
    cdef void* dst
    if type_num not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_COMPLEX64, cnp.NPY_COMPLEX128):
        raise TypeError(f"transpose_weights: unsupported dtype {weight.dtype}")
    if (weight.ndim != 3 or weight.shape[0] != shape[1] or groups < 1 or shape[1] % groups
            or not cnp.PyArray_IS_C_CONTIGUOUS(weight)):
        raise ValueError("transpose_weights: the weight does not match the shape")
    rows = cnp.PyArray_EMPTY(1, [cnp.PyArray_SIZE(weight)], type_num, 0)
    dst = cnp.PyArray_DATA(rows)
    with nogil:
        if type_num == cnp.NPY_FLOAT32:
            _weight_rows(<float*>src, groups, c_in_g, m, <float*>dst, n_threads)
        elif type_num == cnp.NPY_FLOAT64:
            _weight_rows(<double*>src, groups, c_in_g, m, <double*>dst, n_threads)
        elif type_num == cnp.NPY_COMPLEX64:
            _weight_rows(<float complex*>src, groups, c_in_g, m, <float complex*>dst, n_threads)
        else:
            _weight_rows(<double complex*>src, groups, c_in_g, m, <double complex*>dst,
                         n_threads)
    return rows


def takes_prepared_weights(tuple shape, winograd=None):
    """Whether a call of ``shape`` would run F(3,2) on a prepared weight (see run)."""
    cdef convt_blas_params p
    cdef Plan plan
    _plan_or_raise(shape, &p, &plan, True, _switch(winograd))
    return bool(plan.winograd and plan.prepared_weights)


def plan_info(tuple shape, bint prepared=False):
    """The planner's cut for ``shape`` (as in plan_sizes) as a dict, for tests and tuning."""
    cdef convt_blas_params p
    cdef Plan plan
    _plan_or_raise(shape, &p, &plan, prepared, WINOGRAD_ENABLED)
    return plan


def blas_small_matrix_kernels():
    """What the planner assumes: see set_blas_small_matrix_kernels."""
    return bool(BLAS_SMALL_MATRIX_KERNELS)


def max_threads():
    """CONVT_BLAS_MAX_THREADS: the most threads a call runs on."""
    return CONVT_BLAS_MAX_THREADS


def start_threads(int n_threads):
    """Run an empty parallel region on ``n_threads`` (clamped) threads, so that the
    calling thread's OpenMP pool holds them before a call needs them."""
    cdef int i, n = _thread_count(n_threads)
    cdef int total = 0
    if n > 1:
        with nogil:
            for i in prange(n, num_threads=n, schedule='static'):
                total += 1
    return n


def omp_max_threads():
    """OpenMP's current thread limit for the calling thread (1 without OpenMP)."""
    return omp_get_max_threads()


cdef int _fill_params(convt_blas_params* p, tuple shape) except -1:
    (p.batch, p.in_channels, p.in_length, p.out_channels, p.kernel_size,
     p.stride, p.padding, p.output_padding, p.dilation, p.groups) = shape
    return 0


cdef inline bint _switch(winograd):
    """The Winograd switch a caller passed, or as set now for None."""
    return WINOGRAD_ENABLED if winograd is None else bool(winograd)


cdef int _plan_or_raise(tuple shape, convt_blas_params* p, Plan* plan,
                        bint prepared, bint winograd) except -1:
    """Fill ``p`` from ``shape`` and plan it; ValueError if the kernel refuses it."""
    _fill_params(p, shape)
    raise_for_status(_make_plan_with(p, plan, winograd, prepared))
    return 0


def plan_sizes(tuple shape, bint prepared=False, winograd=None):
    """(units per batch element, workspace elements per worker) for ``shape``.

    ``shape`` is (batch, C_in, L_in, C_out, K, stride, padding,
    output_padding, dilation, groups); ``prepared``: the call passes the
    weight transformed (prepare_winograd_weights); ``winograd``: the switch
    the call passes to run (None: as set now). Raises ValueError if the
    kernel refuses it.
    """
    cdef convt_blas_params p
    cdef Plan plan
    _plan_or_raise(shape, &p, &plan, prepared, _switch(winograd))
    return _units_per_sample(&p, &plan), plan.worker_elements


def status_message(int status):
    """The message ``convt_blas_strerror`` (include/convt_blas.h) gives for a status code."""
    return convt_blas_strerror(status).decode()


def raise_for_status(int status):
    if status == CONVT_BLAS_OK:
        return
    if status == CONVT_BLAS_ERR_NO_MEMORY:
        raise MemoryError(status_message(status))
    raise ValueError(f"convt_blas kernel: {status_message(status)}")


cdef int _prepare_weights(const convt_blas_params* p, const scalar_t* w,
                          scalar_t* prepared, int64_t prepared_len, int n_threads,
                          int winograd=-1) noexcept nogil:
    """Every group's weight as _winograd_weights lays a block out, all channels in one block.

    ``prepared_len`` must be prepared_weight_length(p), which is 0 (the layer
    does not qualify: CONVT_BLAS_ERR_BAD_SHAPE) or twice the weight's size.
    ``winograd``: the Winograd switch as the caller read it; -1 reads it here.
    """
    cdef int64_t c_in_g, c_out_g, ld, step, rows_per_chunk = 16, chunks_per_group
    cdef int64_t chunk, g, i0
    cdef int64_t needed = _prepared_weight_length(
        p, WINOGRAD_ENABLED if winograd < 0 else winograd != 0)
    if p == NULL or w == NULL or prepared == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    if needed <= 0:
        return CONVT_BLAS_ERR_BAD_SHAPE
    if prepared_len != needed:
        return CONVT_BLAS_ERR_BAD_PREPARED
    c_in_g = p.in_channels / p.groups
    c_out_g = p.out_channels / p.groups
    ld = c_out_g * p.stride
    step = c_in_g * ld
    chunks_per_group = _ceil_div(c_in_g, rows_per_chunk)
    for chunk in prange(p.groups * chunks_per_group,
                        num_threads=_max(1, _min(_thread_count(n_threads),
                                                 p.groups * chunks_per_group)),
                        schedule='static'):
        g = chunk / chunks_per_group
        i0 = (chunk % chunks_per_group) * rows_per_chunk
        _winograd_weights(p, c_out_g, w + (g * c_in_g + i0) * c_out_g * p.kernel_size,
                          _min(rows_per_chunk, c_in_g - i0), c_out_g, ld, 0, 4, step,
                          prepared + 4 * g * step + i0 * ld)
    return CONVT_BLAS_OK


def prepare_winograd_weights(tuple shape, cnp.ndarray weight, int n_threads=1, winograd=None):
    """The weight transformed for F(3,2), for run's ``prepared``; None if the layer never takes it.

    ``shape`` as in plan_sizes (batch and length are not used); ``winograd``: the
    switch as the call read it (None: as set now); ``weight``:
    C-contiguous (C_in, C_out/g, K) of a supported dtype. Per group, the
    four matrices of _winograd_weights over all of the group's channels,
    (C_in/g, C_out/g * stride) each: twice the weight's size.
    """
    cdef convt_blas_params p
    cdef int64_t length
    cdef int status
    cdef cnp.ndarray prepared
    cdef void* src = cnp.PyArray_DATA(weight)
    cdef void* dst
    cdef int type_num = cnp.PyArray_TYPE(weight)
    cdef bint allowed = _switch(winograd)
    if type_num not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_COMPLEX64, cnp.NPY_COMPLEX128):
        raise TypeError(f"prepare_winograd_weights: unsupported dtype {weight.dtype}")
    _fill_params(&p, shape)
    length = _prepared_weight_length(&p, allowed)
    if length < 0:
        raise_for_status(CONVT_BLAS_ERR_BAD_SHAPE)
    if length == 0:
        return None
    if (cnp.PyArray_SIZE(weight) != length / 2 or not cnp.PyArray_IS_C_CONTIGUOUS(weight)):
        raise ValueError("prepare_winograd_weights: the weight does not match the shape")
    prepared = cnp.PyArray_EMPTY(1, [length], type_num, 0)
    dst = cnp.PyArray_DATA(prepared)
    with nogil:
        if type_num == cnp.NPY_FLOAT32:
            status = _prepare_weights(&p, <float*>src, <float*>dst, length, n_threads, allowed)
        elif type_num == cnp.NPY_FLOAT64:
            status = _prepare_weights(&p, <double*>src, <double*>dst, length, n_threads, allowed)
        elif type_num == cnp.NPY_COMPLEX64:
            status = _prepare_weights(&p, <float complex*>src, <float complex*>dst, length,
                                      n_threads, allowed)
        else:
            status = _prepare_weights(&p, <double complex*>src, <double complex*>dst, length,
                                      n_threads, allowed)
    raise_for_status(status)
    return prepared


def run(tuple shape, cnp.ndarray x, tuple strides, cnp.ndarray weight, bias,
        cnp.ndarray out, cnp.ndarray workspace, int n_threads, prepared=None, w_rows=None,
        winograd=None):
    """Run the kernel on validated arrays; releases the GIL throughout.

    x: element ``strides`` (batch, channel, length), unit stride on the length
    or channel axis. weight, bias, out, workspace: C-contiguous, x's dtype.
    prepared: None, or prepare_winograd_weights(shape, weight) (the
    workspace then sized by plan_sizes(shape, prepared=True)). w_rows: None,
    or transpose_weights(shape, weight), which GEMM-path plans then read.
    winograd: the switch as read when the workspace was sized (None: as set now).
    """
    cdef convt_blas_params p
    cdef int status
    cdef int type_num = cnp.PyArray_TYPE(x)
    cdef int64_t sx_n, sx_c, sx_l
    cdef void* xp = cnp.PyArray_DATA(x)
    cdef void* wp = cnp.PyArray_DATA(weight)
    cdef void* pp = NULL
    cdef void* rp = NULL
    cdef int64_t prepared_len = 0
    cdef cnp.ndarray held
    cdef void* bp = NULL if bias is None else cnp.PyArray_DATA(<cnp.ndarray>bias)
    cdef void* op = cnp.PyArray_DATA(out)
    cdef void* wsp = cnp.PyArray_DATA(workspace)
    cdef int64_t ws_len = cnp.PyArray_SIZE(workspace)
    cdef int allowed = -1 if winograd is None else (1 if winograd else 0)
    sx_n, sx_c, sx_l = strides
    _fill_params(&p, shape)
    if prepared is not None:
        # Its length is the kernel's to check (CONVT_BLAS_ERR_BAD_PREPARED).
        held = <cnp.ndarray?>prepared
        if cnp.PyArray_TYPE(held) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(held):
            raise ValueError("prepared weight does not match the layer")
        pp = cnp.PyArray_DATA(held)
        prepared_len = cnp.PyArray_SIZE(held)
    if w_rows is not None:
        held = <cnp.ndarray?>w_rows
        if (cnp.PyArray_TYPE(held) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(held)
                or cnp.PyArray_SIZE(held) != cnp.PyArray_SIZE(weight)):
            raise ValueError("weight rows do not match the layer")
        rp = cnp.PyArray_DATA(held)
    with nogil:
        if type_num == cnp.NPY_FLOAT32:
            status = _conv_transpose1d(&p, <float*>xp, sx_n, sx_c, sx_l, <float*>wp,
                                       <float*>pp, prepared_len, <float*>bp, <float*>op,
                                       <float*>wsp, ws_len, n_threads, <float*>rp, allowed)
        elif type_num == cnp.NPY_FLOAT64:
            status = _conv_transpose1d(&p, <double*>xp, sx_n, sx_c, sx_l, <double*>wp,
                                       <double*>pp, prepared_len, <double*>bp, <double*>op,
                                       <double*>wsp, ws_len, n_threads, <double*>rp, allowed)
        elif type_num == cnp.NPY_COMPLEX64:
            status = _conv_transpose1d(&p, <float complex*>xp, sx_n, sx_c, sx_l,
                                       <float complex*>wp, <float complex*>pp, prepared_len,
                                       <float complex*>bp, <float complex*>op,
                                       <float complex*>wsp, ws_len, n_threads,
                                       <float complex*>rp, allowed)
        elif type_num == cnp.NPY_COMPLEX128:
            status = _conv_transpose1d(&p, <double complex*>xp, sx_n, sx_c, sx_l,
                                       <double complex*>wp, <double complex*>pp, prepared_len,
                                       <double complex*>bp, <double complex*>op,
                                       <double complex*>wsp, ws_len, n_threads,
                                       <double complex*>rp, allowed)
        else:
            status = CONVT_BLAS_ERR_BAD_SHAPE
    raise_for_status(status)
