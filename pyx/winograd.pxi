# Winograd's F(m, r) for layers with K == r*stride: F(3,2)'s transforms (four GEMMs
# for every three output strides instead of six), the units of every form, and
# the weight's transform, per call or prepared once.

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
                            const scalar_t* weight_rows, int64_t n_rows, int64_t n_channels,
                            int64_t ld, int first, int count, int64_t step,
                            scalar_t* weights) noexcept nogil:
    """``count`` of a block's transformed matrices (C_in/g, n_channels*s) from ``first`` on.
    For F(3,2), W1, (W0+W1)/2, (W1-W0)/2 and W0 are components 0..3; other
    forms are _form_weights's.

    W0 and W1 are the taps k < s and k >= s: W_j[i, c*s + r] = W_g[i, c, j*s + r].
    Writes ``n_rows`` input channels from ``weight_rows`` on, rows ``ld`` apart,
    matrices ``step``, input channel by input channel (its taps stay in
    cache for every component). Halving is exact, so it costs no rounding.
    """
    cdef int64_t s = p.stride, K = p.kernel_size, i
    cdef int component
    cdef const scalar_t* src
    cdef scalar_t* dst
    if K != 2 * s:
        _form_weights(p, _winograd_form(K / s), c_out_g, weight_rows, n_rows, n_channels, ld,
                      first, count, step, weights)
        return
    for i in range(n_rows):
        src = weight_rows + i * c_out_g * K
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


cdef inline bint _winograd_weights_as_rows(int64_t c_in_g) noexcept nogil:
    """Whether prepared F(3,2) weights are laid out as their rows. Shallower groups
    run GEMMs small enough for BLAS's small-matrix kernels (see _plan_winograd),
    which are slower on that layout (64 -> 32 channels, K = 4: 17-24%)."""
    return c_in_g >= WINOGRAD_SHALLOW_INPUT


cdef void _winograd_weight_rows(const convt_blas_params* p, int64_t c_out_g,
                                const scalar_t* weight_rows, int64_t n_rows,
                                int64_t n_channels, int64_t ld, int first, int count,
                                int64_t step, scalar_t* weights, scalar_t* chunk,
                                int64_t chunk_rows) noexcept nogil:
    """_winograd_weights's matrices laid out as their rows: element (i, c*s + r) at
    ``weights[(c*s + r) * ld + i]``, input channels i < ``n_rows`` from ``weight_rows``.

    ``chunk_rows`` input channels at a time go through ``chunk`` (count *
    chunk_rows * n_channels*s elements) in _winograd_weights's layout, its
    vector code, and are then transposed into place.
    """
    cdef int64_t width = n_channels * p.stride, chunk_step = chunk_rows * width
    cdef int64_t i0, n, i, j
    cdef int component
    cdef const scalar_t* src
    cdef scalar_t* dst
    i0 = 0
    while i0 < n_rows:
        n = _min(chunk_rows, n_rows - i0)
        _winograd_weights(p, c_out_g, weight_rows + i0 * c_out_g * p.kernel_size, n,
                          n_channels, width, first, count, chunk_step, chunk)
        for component in range(count):
            # Row by row: each output row's ``n`` elements are stored contiguously
            # (4x4 transposes stored 16 bytes to four rows at a time, 3x slower).
            src = chunk + component * chunk_step
            dst = weights + component * step + i0
            for j in range(width):
                for i in range(n):
                    dst[j * ld + i] = src[i * width + j]
        i0 += n


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
    # Interior triples in blocks of WINOGRAD_INPUT_SPANS triples by
    # WINOGRAD_INPUT_CHANNELS channels, position by position within a block:
    # the block's input rows stay in cache (rows a multiple of 4 KiB apart
    # share a few cache sets) and so do the rows it stores.
    # float32 with unit stride along positions: four channels at a time in
    # SSE, which the compiler does not find by itself.
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and sx_l == 1:
            vector_channels = c_in_g - c_in_g % 4
    for triple_block in range(_ceil_div(hi - lo, WINOGRAD_INPUT_SPANS)):
        ta = lo + triple_block * WINOGRAD_INPUT_SPANS
        tb = _min(hi, ta + WINOGRAD_INPUT_SPANS)
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
    """Winograd's F(m, r) for a block of outputs, spans [t0, t1), a few samples: F(3,2)'s
    blocks are channels [co0, co0 + n_channels), F(4,3)'s and F(3,4)'s GEMM rows
    [j0, j0 + rows) (channel * s + phase), always on a prepared weight
    (_winograd_min_length).

    With K = r*s and no dilation, output u*s + ph - padding (ph < s) of
    channel c is Z[u] = sum_j W_j x[u - j], W_j the (C_out, C_in) taps j*s + ph:
    an r-tap convolution along the strides, one per phase, which F(m, r) runs
    over spans of m strides with m + r - 1 products (_make_form). For r = 2,
    Z[u] = W0 x[u] + W1 x[u-1]; three
    strides u = 3t, 3t+1, 3t+2 need six products; F(3,2) (interpolation at
    0, 1, -1 and infinity) makes four, with d_j = x[3t - 1 + j]:
        P0 = W1 (d0 - d2),            P1 = (W0 + W1)/2 (d1 + d2),
        P2 = (W1 - W0)/2 (d2 - d1),   P3 = W0 (d3 - d1),
        Z[3t] = P0 + P1 + P2,  Z[3t+1] = P1 - P2,  Z[3t+2] = P1 + P2 + P3,
    a third fewer multiply-adds, at a rounding error measured within 2x the
    GEMM path's (README). Each product is one GEMM over the unit's spans.
    ``plan.pass_components`` (all or 1) at a time, a worker transforms the
    block's weight (unless ``prepared``: all groups' transformed weights,
    see prepare_weight, read in place) and its samples' input
    tile, and multiplies them into those components' products; all
    products are kept until the outputs combine them (see _plan_winograd).
    ``held``: the weight block and input tile the worker's workspace holds
    transformed (-1: none), kept for its next unit when all components
    fit at a time. Returns nonzero if an output it stored is not finite.
    """
    cdef int64_t s = p.stride, c_in_g = plan.c_in_g
    cdef int64_t sample_groups = _ceil_div(p.batch, plan.samples_per_unit)
    cdef int64_t tile, rest, sample_group, g, block, first, count, co0, n_channels, rows
    cdef int64_t t0, t1, spans, columns, j, j0, k, ld_w, weight_key, input_key, weight_step
    cdef int64_t input_step
    cdef int k0, n_pass = <int>plan.pass_components, n_components = <int>plan.components
    cdef const WinogradForm* form = _winograd_form(plan.taps) if plan.taps != 2 else NULL
    cdef bint as_rows
    cdef const scalar_t* w_block
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
    if form != NULL:  # a block of rows (channel * s + phase), weights prepared
        co0 = 0
        n_channels = 0
        j0 = block * plan.block_rows
        rows = _min(plan.block_rows, plan.c_out_g * s - j0)
    else:
        co0 = block * plan.block_channels
        n_channels = _min(plan.block_channels, plan.c_out_g - co0)
        j0 = co0 * s
        rows = n_channels * s
    t0 = plan.span_first + tile * plan.tile_spans
    t1 = _min(t0 + plan.tile_spans, plan.span_first + plan.span_count)
    spans = t1 - t0
    columns = count * spans
    # Offsets from the plan's sizes, so that the buffers do not move with the unit.
    input_step = c_in_g * columns
    inputs = worker + n_pass * _weight_block_elements(plan, s)
    products = inputs + n_pass * c_in_g * plan.samples_per_unit * plan.tile_spans
    # P_k = inputs_k @ W_k: (columns, rows), position-major. A prepared weight
    # is laid out as its rows (rows, C_in/g), which BLAS packs fastest, from
    # WINOGRAD_SHALLOW_INPUT input channels on (_winograd_weights_as_rows). A
    # weight transformed here keeps (C_in/g, rows), faster to write, where the
    # GEMM is blocked (both layouts give the same bits), and is laid out as the
    # prepared one where it is not, so that results never depend on preparing.
    as_rows = _winograd_weights_as_rows(c_in_g) and (
        plan.prepared_weights or not _blocked_either_way(columns, rows, c_in_g))
    ld_w = c_in_g if as_rows else (plan.c_out_g * s if plan.prepared_weights else rows)
    weight_step = c_in_g * (plan.c_out_g * s if plan.prepared_weights else rows)
    weight_key = 2 * (g * plan.n_blocks + block) + as_rows
    input_key = (g * sample_groups + sample_group) * plan.n_tiles + tile
    weights = worker
    if plan.prepared_weights:
        weights = prepared + n_components * g * weight_step + (j0 * c_in_g if as_rows else j0)
    k0 = 0
    while k0 < n_components:
        if not plan.prepared_weights and (n_pass < n_components or held[0] != weight_key):
            w_block = w + (g * c_in_g * plan.c_out_g + co0) * p.kernel_size
            if as_rows:
                _winograd_weight_rows(p, plan.c_out_g, w_block, c_in_g, n_channels, ld_w, k0,
                                      n_pass, weight_step, worker,
                                      products + n_components * plan.samples_per_unit
                                      * plan.tile_spans * plan.block_rows,
                                      WINOGRAD_ROWS_CHUNK)
            else:
                _winograd_weights(p, plan.c_out_g, w_block, c_in_g, n_channels, ld_w, k0,
                                  n_pass, weight_step, worker)
            held[0] = weight_key
        if n_pass < n_components or held[1] != input_key:
            for j in range(count):
                if form != NULL:
                    _form_inputs(p, form, x + (first + j) * sx_n + g * c_in_g * sx_c, sx_c,
                                 sx_l, c_in_g, t0, t1, k0, n_pass, input_step,
                                 inputs + j * spans * c_in_g)
                else:
                    _winograd_inputs(p, x + (first + j) * sx_n + g * c_in_g * sx_c, sx_c,
                                     sx_l, c_in_g, t0, t1, k0, n_pass, input_step,
                                     inputs + j * spans * c_in_g)
            held[1] = input_key
        for k in range(k0, k0 + n_pass):
            _gemm(False, as_rows, <int>columns, <int>rows, <int>c_in_g,
                  inputs + (k - k0) * input_step, <int>c_in_g,
                  weights + (k if plan.prepared_weights else k - k0) * weight_step, <int>ld_w,
                  products + k * columns * rows, <int>rows, NULL)
        k0 += n_pass
    for j in range(count):
        if form != NULL:
            non_finite |= _form_outputs(
                p, plan, form, bias + g * plan.c_out_g if bias != NULL else NULL,
                j0, rows, t0, t1, products + j * spans * rows, columns * rows,
                out + ((first + j) * p.out_channels + g * plan.c_out_g) * plan.out_length)
        else:
            non_finite |= _winograd_outputs(
                p, plan, bias + g * plan.c_out_g + co0 if bias != NULL else NULL,
                n_channels, t0, t1, products + j * spans * rows, columns * rows,
                out + ((first + j) * p.out_channels + g * plan.c_out_g + co0) * plan.out_length)
    return non_finite



cdef int _prepare_weights(const convt_blas_params* p, const scalar_t* w,
                          scalar_t* prepared, int64_t prepared_len, int n_threads,
                          int winograd=-1) noexcept nogil:
    """Every group's weight as _winograd_weight_rows lays a block out, all channels in one block.

    ``prepared_len`` must be prepared_weight_length(p), which is 0 (the layer
    does not qualify: CONVT_BLAS_ERR_BAD_SHAPE) or alpha/r times the weight's size.
    ``winograd``: the Winograd switch as the caller read it; -1 reads it here.
    """
    cdef int64_t c_in_g, c_out_g, step, rows_per_chunk = 16, chunks_per_group
    cdef int64_t chunk, g, i0, c0, block, block_channels, n_components
    cdef int failed = 0
    cdef int* failures = &failed
    cdef scalar_t* scratch
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
    step = c_in_g * c_out_g * p.stride
    n_components = _winograd_components(p.kernel_size / p.stride)
    if not _winograd_weights_as_rows(c_in_g):
        chunks_per_group = _ceil_div(c_in_g, rows_per_chunk)
        for chunk in prange(p.groups * chunks_per_group,
                            num_threads=_max(1, _min(_thread_count(n_threads),
                                                     p.groups * chunks_per_group)),
                            schedule='static'):
            g = chunk / chunks_per_group
            i0 = (chunk % chunks_per_group) * rows_per_chunk
            _winograd_weights(p, c_out_g, w + (g * c_in_g + i0) * c_out_g * p.kernel_size,
                              _min(rows_per_chunk, c_in_g - i0), c_out_g, c_out_g * p.stride,
                              0, <int>n_components, step,
                              prepared + n_components * g * step + i0 * c_out_g * p.stride)
        return CONVT_BLAS_OK
    # As rows: each unit transforms 64 input channels (their weight rows read in
    # order), about 64 output rows (whole channels) at a time, and transposes
    # them into place: 256 contiguous bytes per output row and visit.
    rows_per_chunk = 64
    block_channels = _max(1, 64 / p.stride)
    chunks_per_group = _ceil_div(c_in_g, rows_per_chunk)
    for chunk in prange(p.groups * chunks_per_group,
                        num_threads=_max(1, _min(_thread_count(n_threads),
                                                 p.groups * chunks_per_group)),
                        schedule='static'):
        g = chunk / chunks_per_group
        i0 = (chunk % chunks_per_group) * rows_per_chunk
        scratch = <scalar_t*>malloc(<size_t>(n_components * rows_per_chunk * block_channels
                                             * p.stride) * sizeof(scalar_t))
        if scratch == NULL:
            failures[0] = 1
        else:
            for block in range(_ceil_div(c_out_g, block_channels)):
                c0 = block * block_channels
                _winograd_weight_rows(p, c_out_g,
                                      w + ((g * c_in_g + i0) * c_out_g + c0) * p.kernel_size,
                                      _min(rows_per_chunk, c_in_g - i0),
                                      _min(block_channels, c_out_g - c0), c_in_g, 0,
                                      <int>n_components, step,
                                      prepared + n_components * g * step
                                      + c0 * p.stride * c_in_g + i0,
                                      scratch, rows_per_chunk)
            free(scratch)
    return CONVT_BLAS_ERR_NO_MEMORY if failed else CONVT_BLAS_OK
