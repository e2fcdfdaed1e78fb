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
    bint winograd              # F(m, r) over spans of m output strides; see _run_winograd_unit
    int64_t taps               # winograd: r = K / stride, taps per phase
    int64_t span               # winograd: m, output strides per span (3, or 4 for r = 3)
    int64_t components         # winograd: alpha = m + r - 1 products per span
    int64_t span_first         # winograd: first span t (outputs m t s - padding ...)
    int64_t span_count         # winograd: spans of the whole output
    int64_t tile_spans         # winograd: spans per unit (per sample)
    int64_t block_rows         # winograd: GEMM rows per unit (F(3,2): block_channels * s)
    bint tile_major            # winograd: units in (tile, block) order, else (block, tile)
    bint prepared_weights      # winograd: weights come transformed (prepare_weight)
    int64_t pass_components    # winograd: components transformed at a time, all (held) or 1
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
    plan.span_first = plan.span_count = plan.tile_spans = plan.tile_major = 0
    plan.taps = plan.span = plan.components = plan.pass_components = plan.block_rows = 0
    plan.row_block = plan.n_row_blocks = plan.shared_elements = 0
    plan.winograd = winograd_allowed and _winograd_shape(p)
    plan.prepared_weights = plan.winograd and prepared_weights
    if plan.winograd:  # the form, which sizes a prepared weight at any length
        plan.taps = K / p.stride
        plan.span = _winograd_span(plan.taps)
        plan.components = _winograd_components(plan.taps)
    plan.winograd = plan.winograd and p.in_length >= _winograd_min_length(
        p, c_in_g, c_out_g, plan.prepared_weights)
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
