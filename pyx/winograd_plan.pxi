# Winograd's plans: which layers and inputs take F(3,2), F(4,3) or F(3,4), and their
# cut into units (the transforms are winograd.pxi's and winograd_forms.pxi's).

# Layers with K == 2*stride (no dilation) run Winograd's F(3,2) (see
# _run_winograd_unit: four GEMMs for every three output strides instead of
# six) when the input is at least WINOGRAD_MIN_LENGTH long and both GEMM
# sides, C_in/g and C_out/g * stride, are at least WINOGRAD_MIN_SIDE; layers
# with K == 3*stride or 4*stride run F(4,3) or F(3,4) (winograd_forms.pxi)
# from shorter inputs (_winograd_min_length).
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
# F(4,3) and F(3,4) run on a prepared weight when both GEMM sides, C_in/g and
# C_out/g * stride, are at least FORM_MIN_SIDE and the input at least
# FORM_MIN_LENGTH long, FORM_DEEP_MIN_LENGTH from FORM_DEEP_INPUT input
# channels (see _plan_form for the cut). Measured against the GEMM path with
# weight rows, in-process, 1 / 2 threads, over 118 layers (channels 128-1026,
# K = 3, 4, 12, 16, 24 and 1024, 128-1024 positions): from 256 sides and 256
# positions, geometric mean 1.24x / 1.18x, slowest 0.99x / 0.96x; from 128
# channels or positions, layers down to 0.79x / 0.57x (transforms and smaller
# GEMMs cost more than the halved multiply-adds save). At 160-224 positions
# 256-512 channels were 0.87-1.19x; from 1024 input channels 0.98-1.08x at 128
# positions and 1.04-1.20x at 192, the iSTFT layer (1026 -> 1, K = 1024) 1.21x /
# 1.05x at 160. Per call, transforming the weight cost about what F(m, r)
# saves, so the function does not take it.
cdef int64_t FORM_MIN_SIDE = 256
cdef int64_t FORM_MIN_LENGTH = 256
cdef int64_t FORM_DEEP_INPUT = 1024
cdef int64_t FORM_DEEP_MIN_LENGTH = 160
cdef int64_t FORM_MIN_SPANS = 128
cdef int64_t FORM_MIN_UNITS = 4
# Blocks of the input transform (see _winograd_inputs).
cdef int64_t WINOGRAD_INPUT_SPANS = 192
cdef int64_t WINOGRAD_INPUT_CHANNELS = 8
# F(3,2)'s transformed weights are laid out as their rows, (C_out/g * s, C_in/g)
# per component: BLAS packs them faster than (C_in/g, C_out/g * s) (the GEMM
# alone: 5-23% faster at 256-1024 input channels, 61% at 2048). A unit that
# transforms its weight block as rows (small GEMMs, see _run_winograd_unit)
# does so this many input channels at a time, then transposes them.
cdef int64_t WINOGRAD_ROWS_CHUNK = 4


cdef inline bint _winograd_shape(const convt_blas_params* p) noexcept nogil:
    """Whether the layer's channels and taps qualify for Winograd (K = r * stride,
    r = 2, 3 or 4), whatever its input length."""
    return (p.dilation == 1 and p.kernel_size % p.stride == 0
            and 2 <= p.kernel_size / p.stride <= 4
            and p.in_channels / p.groups >= WINOGRAD_MIN_SIDE
            and p.out_channels / p.groups * p.stride >= WINOGRAD_MIN_SIDE)


cdef inline int64_t _winograd_span(int64_t taps) noexcept nogil:
    """m of the F(m, r) that r = ``taps`` runs: F(3,2), F(4,3), F(3,4)."""
    return 4 if taps == 3 else 3


cdef inline int64_t _winograd_components(int64_t taps) noexcept nogil:
    """alpha = m + r - 1, the products of a span (_winograd_span)."""
    return _winograd_span(taps) + taps - 1


cdef inline int64_t _winograd_min_length(const convt_blas_params* p, int64_t c_in_g,
                                         int64_t c_out_g, bint prepared) noexcept nogil:
    """The shortest input that takes Winograd (INT64_MAX: none)."""
    if p.kernel_size != 2 * p.stride:
        if (not prepared or c_in_g < FORM_MIN_SIDE
                or c_out_g * p.stride < FORM_MIN_SIDE):  # see FORM_MIN_SIDE
            return INT64_MAX
        if c_in_g >= FORM_DEEP_INPUT:
            return _min(FORM_MIN_LENGTH, FORM_DEEP_MIN_LENGTH)
        return FORM_MIN_LENGTH
    return ((WINOGRAD_PREPARED_MIN_LENGTH if c_in_g < WINOGRAD_MAX_INPUT
             else WINOGRAD_PREPARED_DEEP_MIN_LENGTH) if prepared
            else WINOGRAD_SMALL_WEIGHT_MIN_LENGTH
            if c_in_g * c_out_g * p.kernel_size <= WINOGRAD_SMALL_WEIGHT
            else WINOGRAD_MIN_LENGTH)


cdef int _plan_winograd(const convt_blas_params* p, Plan* plan) noexcept nogil:
    """Recut a GEMM plan into whole spans of output strides (see _run_winograd_unit).

    F(3,2): each GEMM has half the rows of a GEMM-path unit's (stride, not K,
    rows per channel), so channel blocks hold twice the channels; tiles are
    as many as the GEMM plan's. F(4,3) and F(3,4): _plan_form. The cut
    depends on the input length and channels only, never on the batch or
    the thread count, so results keep their bits for any split of either.
    """
    cdef int64_t s = p.stride
    cdef int64_t u_first = p.padding / s  # first stride u whose outputs u*s + r - padding reach 0
    cdef int64_t u_end = _ceil_div(plan.out_length + p.padding, s)
    plan.span_first = u_first / plan.span
    plan.span_count = _ceil_div(u_end, plan.span) - plan.span_first
    plan.samples_per_unit = 1
    plan.pass_components = plan.components
    if plan.taps != 2:
        _plan_form(p, plan)
        return _finish_winograd_plan(p, plan)
    plan.block_channels = _min(plan.c_out_g, 2 * plan.block_channels)
    plan.n_blocks = _ceil_div(plan.c_out_g, plan.block_channels)
    plan.block_channels = _ceil_div(plan.c_out_g, plan.n_blocks)
    plan.block_rows = plan.block_channels * s
    plan.tile_spans = _ceil_div(plan.span_count, _min(plan.n_tiles, plan.span_count))
    if plan.c_in_g < WINOGRAD_SHALLOW_INPUT:  # a unit's products stay in cache (see above)
        plan.tile_spans = _min(plan.tile_spans,
                               _max(16, WINOGRAD_SHALLOW_PRODUCTS / (4 * plan.block_rows)))
        plan.tile_spans = _ceil_div(plan.span_count,
                                    _ceil_div(plan.span_count, plan.tile_spans))
    plan.n_tiles = _ceil_div(plan.span_count, plan.tile_spans)
    # Fit the worker's workspace in WINOGRAD_WORKSPACE: all four components
    # at a time if they fit, else one, and then halve the longer GEMM side
    # (rows, or spans: whichever adds less to read again) while it stays
    # at least WINOGRAD_MIN_SIDE.
    if _winograd_elements(plan, s) > WINOGRAD_WORKSPACE:
        plan.pass_components = 1
    while _winograd_elements(plan, s) > WINOGRAD_WORKSPACE:
        # (A block of one channel is as small as blocks get: halving it again
        # would loop forever.)
        if (plan.block_rows >= plan.tile_spans and plan.block_channels > 1
                and plan.block_rows >= 2 * WINOGRAD_MIN_SIDE):
            plan.block_channels = _ceil_div(plan.c_out_g, _min(plan.c_out_g, 2 * plan.n_blocks))
            plan.n_blocks = _ceil_div(plan.c_out_g, plan.block_channels)
            plan.block_rows = plan.block_channels * s
        elif plan.tile_spans >= 2 * WINOGRAD_MIN_SIDE:
            plan.tile_spans = _ceil_div(plan.span_count, _min(plan.span_count, 2 * plan.n_tiles))
            plan.n_tiles = _ceil_div(plan.span_count, plan.tile_spans)
        else:
            break
    return _finish_winograd_plan(p, plan)


cdef void _plan_form(const convt_blas_params* p, Plan* plan) noexcept nogil:
    """F(4,3) and F(3,4)'s cut, for a prepared weight laid out as rows: blocks of
    any GEMM rows (channel * stride + phase, so that one output channel of 256
    phases is cut too), tiles of whole spans.

    Tiles of at least FORM_MIN_SPANS spans (at stride 1 a GEMM-plan tile holds
    a few dozen); then rows cut into blocks of at least WINOGRAD_MIN_SIDE,
    whole tiles of MERGED_ROW_TILE, until a group has FORM_MIN_UNITS units:
    fewer left threads idle (three units on two threads: 0.7-0.8x the GEMM
    path), more pack the input tile again for each block. Then the longer
    GEMM side is halved while a worker's workspace exceeds WINOGRAD_WORKSPACE.
    """
    cdef int64_t s = p.stride, total = plan.c_out_g * s
    plan.n_tiles = _max(1, plan.span_count / FORM_MIN_SPANS)
    plan.tile_spans = _ceil_div(plan.span_count, plan.n_tiles)
    plan.n_tiles = _ceil_div(plan.span_count, plan.tile_spans)
    plan.block_rows = _max(_min(total, WINOGRAD_MIN_SIDE),
                           _ceil_div(total, _ceil_div(FORM_MIN_UNITS, plan.n_tiles)))
    plan.block_rows = _ceil_div(plan.block_rows, MERGED_ROW_TILE) * MERGED_ROW_TILE
    while _winograd_elements(plan, s) > WINOGRAD_WORKSPACE:
        if plan.block_rows >= plan.tile_spans and plan.block_rows >= 2 * WINOGRAD_MIN_SIDE:
            plan.block_rows = _ceil_div(plan.block_rows / 2, MERGED_ROW_TILE) * MERGED_ROW_TILE
        elif plan.tile_spans >= 2 * WINOGRAD_MIN_SIDE:
            plan.tile_spans = _ceil_div(plan.span_count, 2 * plan.n_tiles)
            plan.n_tiles = _ceil_div(plan.span_count, plan.tile_spans)
        else:
            break
    if _winograd_elements(plan, s) > WINOGRAD_WORKSPACE:
        plan.pass_components = 1
    plan.block_rows = _min(plan.block_rows, total)
    plan.n_blocks = _ceil_div(total, plan.block_rows)
    plan.block_channels = 0  # blocks of rows, not of channels


cdef int _finish_winograd_plan(const convt_blas_params* p, Plan* plan) noexcept nogil:
    """Batch elements per GEMM, unit counts and order, and the workspace of a Winograd cut."""
    cdef int64_t s = p.stride, c_in_g = plan.c_in_g, rows = plan.block_rows, columns
    cdef int64_t sample_groups, last_rows = plan.c_out_g * s - (plan.n_blocks - 1) * rows
    cdef double weight_work, input_work
    # Short inputs: several batch elements share each GEMM, as in _make_plan,
    # when one element alone is past BLAS's small-matrix kernels, as many as
    # the workspace holds.
    if plan.n_tiles == 1 and p.batch > 1:
        plan.samples_per_unit = _samples_sharing_gemm(
            p.batch, <double>plan.components / plan.span * plan.span_count
            * _max(rows, c_in_g),
            _winograd_samples_fitting(plan, s),
            plan.span_count, rows, last_rows, c_in_g)
    columns = plan.samples_per_unit * plan.tile_spans
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
    # components keeps (else it comes from cache): the input tile
    # (tile-major order: blocks innermost) or the weight block (block-major:
    # tiles innermost). Tile-major when redoing the weight for every unit
    # costs no more than redoing the input.
    weight_work = <double>c_in_g * plan.c_out_g * s * sample_groups * plan.n_tiles
    input_work = <double>c_in_g * plan.span_count * p.batch * plan.n_blocks
    if plan.prepared_weights:
        weight_work = 0
    plan.tile_major = weight_work <= input_work
    # At least the GEMM plan's workspace, which batch elements whose result
    # is not finite fall back to (_redo_non_finite_samples).
    plan.worker_elements = _max(plan.worker_elements, <int64_t>_winograd_elements(plan, s))
    plan.column_elements = 0
    plan.copy_elements = plan.tail_elements = 0
    return CONVT_BLAS_OK
