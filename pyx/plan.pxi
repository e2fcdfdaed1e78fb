# The plan: tunables, the Plan struct and the rules that cut a call into units
# (never by the thread count). Part of convt_blas.kernels: kernels.pyx includes
# every .pxi here into one extension module, so helpers stay inlinable across them.

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
# Shared columns (see _plan_shared_columns): GEMM row blocks are whole
# tiles of this many rows, BLAS's own row tile.
cdef int64_t SHARED_ROW_TILE = 16
cdef int64_t SHARED_MAX_ROW_BLOCKS = 16
# Groups with at most this many input channels skip BLAS: a GEMM with an
# inner size of one (depthwise layers) is all call overhead. Measured over a
# grid of 288 layers (C_in/g 1, 2, 4; C_out/g 1-256; K 3, 16; stride 1, 8;
# groups 1, 64; 16 and 512 positions; batch 1, 8), direct taps over the GEMM
# path, geometric mean: 0.94 at one input channel, 1.16 at two, 1.52 at four
# (up to 4.3x slower with many output channels and taps).
cdef int64_t DIRECT_MAX_IN_CHANNELS = 1
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
# its blocked GEMM). Whether the BLAS behind cython_blas has them is asked
# once, as this module loads (blas.pxi), so every caller plans alike.
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
# With a prepared weight, groups with WINOGRAD_MAX_INPUT input channels or
# more take F(3,2) from WINOGRAD_PREPARED_DEEP_MIN_LENGTH positions: below,
# packing four transformed matrices (twice the weight) costs more than F(3,2)
# saves against the GEMM path reading the weight rows. Measured on the zoo's
# layers with K = 2*stride (bench/zoo.py), in-process, 1 / 2 threads, F(3,2)
# over the GEMM path with weight rows: from 384 channels, 13% / 13% slower at
# 150 positions, 11% slower / 2% faster at 200, 6% / 4% slower at 240,
# 7-19% faster from 250 on (9 layers); below 384 channels 7-27% faster from
# 600 positions on.
cdef int64_t WINOGRAD_MAX_INPUT = 384
cdef int64_t WINOGRAD_PREPARED_DEEP_MIN_LENGTH = 250
# With the weight transformed beforehand (prepare_weight, held by
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
# F(3,2)'s transformed weights are laid out as their rows, (C_out/g * s, C_in/g)
# per component: BLAS packs them faster than (C_in/g, C_out/g * s) (the GEMM
# alone: 5-23% faster at 256-1024 input channels, 61% at 2048). A unit that
# transforms its weight block as rows (small GEMMs, see _run_winograd_unit)
# does so this many input channels at a time, then transposes them.
cdef int64_t WINOGRAD_ROWS_CHUNK = 4


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
    int64_t tail_elements      # one-tile position-major: a block's last rows of weight (_tail_weight)
    int64_t worker_elements    # workspace per worker: columns, input copy, phase rows
    bint winograd              # F(3,2) over triples of output strides; see _run_winograd_unit
    int64_t triple_first       # winograd: first triple t (outputs 3ts - padding ...)
    int64_t triple_count       # winograd: triples of the whole output
    int64_t tile_triples       # winograd: triples per unit (per sample)
    bint tile_major            # winograd: units in (tile, block) order, else (block, tile)
    bint prepared_weights      # winograd: weights come transformed (prepare_weight)
    int64_t pass_components    # winograd: components transformed at a time, 4 (held) or 1
    int64_t row_block          # > 0: shared columns, GEMM rows per unit (_run_shared_columns)
    int64_t n_row_blocks       # shared columns: GEMM units per stage (element, group, tile)
    int64_t shared_elements    # shared columns: the column buffer all workers share


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
    cdef double cost, best_cost, group_flops, shared_cost
    cdef int64_t shared_tiles, shared_row_blocks
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
    shared_cost = _shared_columns_cost(p, c_in_g, c_out_g, halo, column_target, group_flops,
                                       &shared_tiles, &shared_row_blocks)
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
    # those of one element at a time: the shared GEMM takes a block's whole
    # tiles of rows, and each element its rows past them alone, batched or not
    # (_merged_rows); GEMMs small enough for BLAS's small-matrix kernels or
    # for our matrix-vector path are kept apart (see _samples_sharing_gemm).
    plan.samples_per_unit = 1
    plan.copy_elements = 0 if plan.direct_taps else c_in_g  # a vector for _gemm's scratch
    if plan.position_major and plan.n_tiles == 1 and p.batch > 1:
        # The rows past whole tiles each element computes alone (_merged_rows).
        rows = _merged_rows(c_in_g, plan.block_channels * K, columns)
        plan.samples_per_unit = _samples_sharing_gemm(
            p.batch, <double>p.in_length * _max(plan.block_channels * K, c_in_g), p.batch,
            columns, rows, rows, c_in_g)
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
    # A block's rows past its whole tiles (_tail_weight), where a block has them.
    plan.tail_elements = (MERGED_ROW_TILE * c_in_g
                          if plan.position_major and plan.n_tiles == 1
                          and (plan.block_channels * K % MERGED_ROW_TILE
                               or _last_block_channels(plan) * K % MERGED_ROW_TILE) else 0)
    plan.worker_elements = (plan.column_elements + plan.copy_elements + plan.tail_elements
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
    plan.row_block = plan.n_row_blocks = plan.shared_elements = 0
    plan.winograd = winograd_allowed and _winograd_shape(p)
    plan.prepared_weights = plan.winograd and prepared_weights
    plan.winograd = plan.winograd and p.in_length >= (
        (WINOGRAD_PREPARED_MIN_LENGTH if c_in_g < WINOGRAD_MAX_INPUT
         else WINOGRAD_PREPARED_DEEP_MIN_LENGTH) if plan.prepared_weights
        else WINOGRAD_SMALL_WEIGHT_MIN_LENGTH if c_in_g * c_out_g * K <= WINOGRAD_SMALL_WEIGHT
        else WINOGRAD_MIN_LENGTH)
    if plan.winograd:
        return _plan_winograd(p, plan)
    if not plan.direct_taps and not plan.depthwise and shared_cost < best_cost:
        return _plan_shared_columns(p, plan, shared_tiles, shared_row_blocks)
    return CONVT_BLAS_OK


cdef double _shared_columns_cost(const convt_blas_params* p, int64_t c_in_g, int64_t c_out_g,
                                 int64_t halo, int64_t column_target, double group_flops,
                                 int64_t* best_tiles, int64_t* best_row_blocks) noexcept nogil:
    """The cost, in _make_plan's terms, of the best shared-columns cut (1e300: none).

    Per tile of positions one GEMM covers all C_out/g * K rows, cut into row
    blocks that the threads share: the weight is packed once per tile and
    the input tile once per row block, and no output is shared. The units a
    group's work is cut into come from row blocks, not from more tiles, so
    layers with a large weight and a short input pack their weight once
    (one output channel, K = 1024, 224 positions: 8 tiles packed it 8 times).
    """
    cdef int64_t K = p.kernel_size, rows = c_out_g * K, columns, tiles, row_blocks
    cdef double cost, best = -1.0
    columns = _min(p.in_length, _max(1, column_target / rows - halo - 1))
    tiles = _ceil_div(p.in_length, columns)
    columns = _ceil_div(p.in_length, tiles)
    # At least two row blocks: a single unit per stage would leave threads
    # idle, and stages run one after another (the plain cut shares the batch).
    row_blocks = 2
    while row_blocks <= SHARED_MAX_ROW_BLOCKS:
        if rows / row_blocks < MIN_GEMM_SIDE:
            break
        cost = (PACK_COST * (<double>tiles * rows + <double>row_blocks * p.in_length)
                + 2.0 * (tiles - 1) * _min(halo + 1, columns) * rows)
        if columns < MIN_GEMM_SIDE and columns < p.in_length:
            cost *= 1.5
        cost += <double>rows * p.in_length
        if group_flops * p.groups >= 2 * MIN_UNIT_FLOPS:
            cost *= _imbalance(<double>row_blocks)
        if best < 0 or cost < best:
            best = cost
            best_tiles[0] = tiles
            best_row_blocks[0] = row_blocks
        row_blocks *= 2
    return best if best >= 0 else 1e300


cdef int _plan_shared_columns(const convt_blas_params* p, Plan* plan, int64_t tiles,
                              int64_t row_blocks) noexcept nogil:
    """Recut a GEMM plan into shared-columns stages (see _run_shared_columns).

    Row blocks are whole SHARED_ROW_TILEs; col2im takes about as many channel
    blocks. The cut depends on the channels and input length only.
    """
    cdef int64_t K = p.kernel_size, rows = plan.c_out_g * K
    plan.tile = _tile_length(p, plan.out_length, tiles)
    plan.n_tiles = _ceil_div(plan.out_length, plan.tile)
    plan.max_columns = _min(p.in_length, (plan.tile - 1 + p.dilation * (K - 1)) / p.stride + 2)
    plan.row_block = _ceil_div(_ceil_div(rows, row_blocks), SHARED_ROW_TILE) * SHARED_ROW_TILE
    plan.n_row_blocks = _ceil_div(rows, plan.row_block)
    plan.block_channels = _ceil_div(plan.c_out_g, _min(plan.c_out_g, plan.n_row_blocks))
    plan.n_blocks = _ceil_div(plan.c_out_g, plan.block_channels)
    plan.position_major = plan.input_rows = False
    plan.samples_per_unit = plan.groups_per_unit = 1
    plan.column_elements = plan.copy_elements = plan.tail_elements = 0
    if _mul_overflows(rows, plan.max_columns) or rows * plan.max_columns > INT64_MAX / 1024:
        return CONVT_BLAS_ERR_OVERFLOW
    plan.shared_elements = rows * plan.max_columns
    plan.worker_elements = (plan.shared_elements + plan.c_in_g
                            + _phase_rows(plan, p.stride) * _phase_row_length(plan, p.stride))
    if (_mul_overflows(p.groups, plan.n_tiles)
            or _mul_overflows(p.groups * plan.n_tiles, plan.n_row_blocks)):
        return CONVT_BLAS_ERR_OVERFLOW
    plan.units_per_sample = p.groups * plan.n_tiles * plan.n_row_blocks
    if _mul_overflows(plan.units_per_sample, p.batch):
        return CONVT_BLAS_ERR_OVERFLOW
    plan.n_units = p.batch * plan.units_per_sample
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
        # (A block of one channel is as small as blocks get: halving it again
        # would loop forever.)
        if (plan.block_channels * s >= plan.tile_triples and plan.block_channels > 1
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
    plan.copy_elements = plan.tail_elements = 0
    return CONVT_BLAS_OK
