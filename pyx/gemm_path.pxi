# The GEMM path: one unit's input columns, its GEMM and its col2im.

cdef void _column_rows(const Plan* plan, int64_t K, const scalar_t* x_tile,
                       int64_t sx_c, int64_t sx_l, const scalar_t* w_rows,
                       const scalar_t* weight_rows, int64_t n_rows, int64_t n_cols,
                       scalar_t* columns, scalar_t* scratch) noexcept nogil:
    """columns[r, l] = sum_i W_g[i, r] * X_g[i, l] for ``n_rows`` rows r = c*K + k.

    ``w_rows`` points at the first row's column of W_g (C_in/g, C_out/g * K).
    ``weight_rows``: NULL, or the same rows laid out (r, i), C_in/g long
    (lay_out_weight_rows), read instead of ``w_rows`` where _reads_rows allows.
    """
    cdef bint rows = _reads_rows(weight_rows, n_rows, n_cols, plan.c_in_g)
    cdef const scalar_t* w_gemm = weight_rows if rows else w_rows
    cdef int ld_w = <int>(plan.c_in_g if rows else plan.c_out_g * K)
    if sx_l == 1:
        # X_g is (C_in/g, L) with rows sx_c apart.
        _gemm(not rows, False, <int>n_rows, <int>n_cols, <int>plan.c_in_g,
              w_gemm, ld_w, x_tile, <int>sx_c, columns, <int>n_cols, scratch)
    else:
        # Channels-last input: X_g^T is (L, C_in/g) with rows sx_l apart.
        _gemm(not rows, True, <int>n_rows, <int>n_cols, <int>plan.c_in_g,
              w_gemm, ld_w, x_tile, <int>sx_l, columns, <int>n_cols, scratch)


cdef void _columns_by_channel(const Plan* plan, int64_t K, const scalar_t* x_tile,
                              int64_t sx_c, int64_t sx_l, const scalar_t* w_block,
                              const scalar_t* weight_rows, int64_t n_channels,
                              int64_t n_cols, scalar_t* columns,
                              scalar_t* scratch) noexcept nogil:
    """columns[c*K + k, l] = sum_i W_g[i, c, k] * X_g[i, l]: one row per (channel, tap)."""
    _column_rows(plan, K, x_tile, sx_c, sx_l, w_block, weight_rows, n_channels * K, n_cols,
                 columns, scratch)


cdef void _columns_by_position(const Plan* plan, int64_t K, const scalar_t* x_tile,
                               int64_t sx_c, int64_t sx_l, const scalar_t* w_block,
                               const scalar_t* weight_rows, int64_t r0, int64_t n_rows,
                               int64_t ld, int64_t n_cols, scalar_t* columns,
                               scalar_t* scratch) noexcept nogil:
    """columns[l, r] = sum_i X_g[i, l] * W_g[i, r] for the block's rows r = c*K + k in
    [r0, r0 + n_rows): one row of ``columns`` (``ld`` long) per input position.

    ``w_block``, ``weight_rows``: the block's row 0, as in _columns_by_channel.
    """
    cdef bint rows = _reads_rows(weight_rows, n_cols, n_rows, plan.c_in_g)
    _position_gemm(plan, x_tile, sx_c, sx_l, rows,
                   weight_rows + r0 * plan.c_in_g if rows else w_block + r0,
                   plan.c_in_g if rows else plan.c_out_g * K, n_rows, ld, n_cols,
                   columns + r0, scratch)


cdef inline void _position_gemm(const Plan* plan, const scalar_t* x_tile, int64_t sx_c,
                                int64_t sx_l, bint rows, const scalar_t* w_gemm, int64_t ld_w,
                                int64_t n_rows, int64_t ld, int64_t n_cols, scalar_t* columns,
                                scalar_t* scratch) noexcept nogil:
    """columns[l, r] = sum_i X_g[i, l] * W[i, r] for r < ``n_rows``: ``w_gemm`` as the
    weight's rows (``rows``) or as (C_in/g, ...) rows ``ld_w`` apart."""
    if sx_l == 1:
        # X_g is (C_in/g, L) with rows sx_c apart: use its transpose.
        _gemm(True, rows, <int>n_cols, <int>n_rows, <int>plan.c_in_g,
              x_tile, <int>sx_c, w_gemm, <int>ld_w, columns, <int>ld, scratch)
    else:
        # Channels-last input: X_g^T is (L, C_in/g) with rows sx_l apart.
        _gemm(False, rows, <int>n_cols, <int>n_rows, <int>plan.c_in_g,
              x_tile, <int>sx_l, w_gemm, <int>ld_w, columns, <int>ld, scratch)


cdef inline const scalar_t* _tail_weight(const Plan* plan, int64_t K, const scalar_t* w_block,
                                         const scalar_t* weight_rows, int64_t first,
                                         int64_t n_rows, scalar_t* buffer) noexcept nogil:
    """A block's rows [first, n_rows) of the weight laid out as rows, (n_rows - first,
    C_in/g): ``weight_rows``'s own, or the caller's weight copied so into ``buffer``
    (MERGED_ROW_TILE * C_in/g). _tail_columns reads every block's tail so: BLAS's
    small-matrix kernels round each layout differently, and a layer keeps the rows."""
    if weight_rows != NULL:
        return weight_rows + first * plan.c_in_g
    _transpose(w_block + first, plan.c_out_g * K, 1, plan.c_in_g, n_rows - first, buffer,
               plan.c_in_g)
    return buffer


cdef inline void _tail_columns(const Plan* plan, const scalar_t* x_tile, int64_t sx_c,
                               int64_t sx_l, const scalar_t* w_tail, int64_t first,
                               int64_t n_rows, int64_t n_cols, scalar_t* columns) noexcept nogil:
    """_columns_by_position's rows [first, n_rows) of a block from _tail_weight's rows."""
    _position_gemm(plan, x_tile, sx_c, sx_l, True, w_tail, plan.c_in_g, n_rows - first,
                   n_rows, n_cols, columns + first, NULL)


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
                     const scalar_t* w_block, const scalar_t* weight_rows,
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
    cdef int64_t m_rows = n_channels * K, n_cols = l_hi - l_lo + 1
    cdef int64_t first = _merged_rows(plan.c_in_g, m_rows, n_cols), j
    cdef const scalar_t* x_group = x + n_first * sx_n + g * plan.c_in_g * sx_c
    cdef const scalar_t* x_rows = x_group
    cdef const scalar_t* w_tail = NULL
    cdef scalar_t* tail_weight = x_copy + plan.copy_elements  # the worker's, after its copy
    cdef int64_t sr_c = sx_c, sr_l = sx_l
    if first > 0:
        if not (sx_c == 1 and sx_n == L * sx_l):
            # Unless channels-last and packed (the elements' positions already
            # follow each other as rows of X^T).
            _input_as_rows(x_group, sx_n, sx_c, sx_l, count, L, plan.c_in_g, x_copy,
                           held_copy, copy_key)
            x_rows, sr_c, sr_l = x_copy, 1, plan.c_in_g
        _columns_by_position(plan, K, x_rows, sr_c, sr_l, w_block, weight_rows, 0, first,
                             m_rows, count * L, columns, NULL)
    # The rows past the whole tiles, each element alone as _run_unit computes them:
    # from the positions as rows (BLAS's small-matrix kernels round each layout
    # differently), or from x where no rows are shared (more than GEMV_MAX_ROWS
    # columns: plans merge no fewer, see _make_plan).
    if 0 < first < m_rows:
        w_tail = _tail_weight(plan, K, w_block, weight_rows, first, m_rows, tail_weight)
    for j in range(count if first < m_rows else 0):
        if first > 0:
            _tail_columns(plan, x_rows + (j * L + l_lo) * sr_l, sr_c, sr_l, w_tail, first,
                          m_rows, n_cols, columns + (j * L + l_lo) * m_rows)
        else:
            _columns_by_position(plan, K, x_group + j * sx_n + l_lo * sx_l, sx_c, sx_l,
                                 w_block, weight_rows, 0, m_rows, m_rows, n_cols,
                                 columns + (j * L + l_lo) * m_rows, NULL)
    for j in range(count):
        _scatter_taps(p, plan, bias_block, n_channels, 0, plan.out_length, l_lo, l_hi,
                      columns + (j * L + l_lo) * n_channels * K,
                      out + ((n_first + j) * p.out_channels + g * plan.c_out_g + co0)
                      * plan.out_length)



cdef inline void _unit_span(const Plan* plan, int64_t unit, int64_t* n, int64_t* g_first,
                            int64_t* block, int64_t* start, int64_t* stop) noexcept nogil:
    """A unit's batch element (or group of samples), first group, channel block and
    output positions [start, stop)."""
    cdef int64_t rest, tile
    n[0] = unit / plan.units_per_sample
    rest = unit - n[0] * plan.units_per_sample
    g_first[0] = (rest / (plan.n_blocks * plan.n_tiles)) * plan.groups_per_unit
    rest = rest % (plan.n_blocks * plan.n_tiles)
    block[0] = rest / plan.n_tiles
    tile = rest - block[0] * plan.n_tiles
    start[0] = tile * plan.tile
    stop[0] = _min(start[0] + plan.tile, plan.out_length)


cdef void _run_depthwise_plan_unit(const convt_blas_params* p, const Plan* plan, int64_t unit,
                                   const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                                   const scalar_t* w, const scalar_t* bias, scalar_t* out,
                                   scalar_t* worker) noexcept nogil:
    """One unit of a depthwise plan (channels side by side): its element, groups and tile."""
    cdef int64_t n, g_first, block, start, stop, l_lo, l_hi
    _unit_span(plan, unit, &n, &g_first, &block, &start, &stop)
    _input_range(p, start, stop, &l_lo, &l_hi)
    _run_depthwise_unit(p, plan, n, g_first, _min(p.groups, g_first + plan.groups_per_unit) - g_first,
                        start, stop, l_lo, l_hi, x, sx_n, sx_c, sx_l, w, bias, out, worker)


cdef void _run_unit(const convt_blas_params* p, const Plan* plan, int64_t unit,
                    const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                    const scalar_t* w, const scalar_t* weight_rows, const scalar_t* bias,
                    scalar_t* out, scalar_t* worker, int64_t* held_copy) noexcept nogil:
    """One unit: output channels [co0, co0 + n_channels) of its groups, positions [start, stop).

    ``worker`` is the worker's workspace: its column buffer, its copy of
    the input (merged samples', or a one-tile input as rows; else one vector
    for _gemm), then its phase rows.
    ``weight_rows``: NULL, or the weight's rows for the GEMMs (lay_out_weight_rows).
    ``held_copy``: NULL, or what the worker's copy holds (see _input_as_rows).
    """
    cdef int64_t K = p.kernel_size
    cdef int64_t n, g, g_first, block, co0, n_channels, start, stop, copy_key
    cdef int64_t l_lo, l_hi, n_cols, m_rows, head, sg_c, sg_l
    cdef scalar_t* columns = worker
    cdef scalar_t* copy = worker + plan.column_elements  # input copy, or _gemm's vector
    cdef scalar_t* phase = copy + plan.copy_elements + plan.tail_elements  # after the tail weight
    cdef const scalar_t* x_group
    cdef const scalar_t* x_tile
    cdef const scalar_t* x_gemm
    cdef scalar_t* vector
    cdef const scalar_t* w_block
    cdef const scalar_t* rows_block = NULL
    cdef const scalar_t* bias_block
    cdef scalar_t* out_block

    _unit_span(plan, unit, &n, &g_first, &block, &start, &stop)
    co0 = block * plan.block_channels
    n_channels = _min(plan.block_channels, plan.c_out_g - co0)

    _input_range(p, start, stop, &l_lo, &l_hi)
    n_cols = l_hi - l_lo + 1
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
    if weight_rows != NULL:  # rows c*K + k of the group's (C_out/g * K, C_in/g)
        rows_block = weight_rows + (g * plan.c_out_g + co0) * K * plan.c_in_g
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
        m_rows = n_channels * K
        # A one-tile block's rows past _merged_rows are a GEMM of their own: as
        # _run_merged computes them, so that the bits do not depend on the batch.
        head = _merged_rows(plan.c_in_g, m_rows, n_cols) if plan.n_tiles == 1 else 0
        if head == 0:
            head = m_rows
        if plan.input_rows and sx_l == 1 and _blocked_either_way(n_cols, head, plan.c_in_g):
            # Blocked GEMMs only: BLAS's small-matrix kernels round the two
            # layouts differently.
            _input_as_rows(x_tile, 0, sx_c, 1, 1, n_cols, plan.c_in_g, copy, held_copy, copy_key)
            x_gemm, sg_c, sg_l, vector = copy, 1, plan.c_in_g, <scalar_t*>NULL
        else:
            if held_copy != NULL:
                held_copy[0] = -1  # ``copy`` may serve as _gemm's vector
            x_gemm, sg_c, sg_l, vector = x_tile, sx_c, sx_l, copy
        _columns_by_position(plan, K, x_gemm, sg_c, sg_l, w_block, rows_block, 0, head,
                             m_rows, n_cols, columns, vector)
        if head < m_rows:  # from the positions and the weight as rows, as _run_merged
            _tail_columns(plan, x_gemm, sg_c, sg_l,
                          _tail_weight(plan, K, w_block, rows_block, head, m_rows,
                                       phase - plan.tail_elements),
                          head, m_rows, n_cols, columns)
        _scatter_taps(p, plan, bias_block, n_channels, start, stop, l_lo, l_hi, columns,
                      out_block)
        return
    if n_cols > 0:
        _columns_by_channel(plan, K, x_group + l_lo * sx_l, sx_c, sx_l, w_block,
                            rows_block, n_channels, n_cols, columns, copy)
    _gather_phases(p, plan, bias_block, 1, n_channels, start, stop, l_lo, l_hi, columns,
                   x_group, sx_c, sx_l, w_block, phase, out_block)


cdef inline void _stage_of(const convt_blas_params* p, const Plan* plan, int64_t stage,
                           int64_t* n, int64_t* g, int64_t* start, int64_t* stop,
                           int64_t* l_lo, int64_t* l_hi) noexcept nogil:
    """Batch element, group and output positions of a shared-columns stage."""
    cdef int64_t tile = stage % plan.n_tiles
    n[0] = stage / (p.groups * plan.n_tiles)
    g[0] = (stage / plan.n_tiles) % p.groups
    start[0] = tile * plan.tile
    stop[0] = _min(start[0] + plan.tile, plan.out_length)
    _input_range(p, start[0], stop[0], l_lo, l_hi)


cdef void _run_stage_rows(const convt_blas_params* p, const Plan* plan, int64_t stage,
                          int64_t row_block, const scalar_t* x, int64_t sx_n, int64_t sx_c,
                          int64_t sx_l, const scalar_t* w, const scalar_t* weight_rows,
                          scalar_t* columns, scalar_t* scratch) noexcept nogil:
    """A shared-columns stage's GEMM for rows [r0, r0 + plan.row_block) of its columns.

    Each row block packs its own part of the weight and the stage's input
    tile: with few input positions and many rows this shares the work of
    one GEMM among threads without packing the weight once per unit.
    """
    cdef int64_t K = p.kernel_size, n, g, start, stop, l_lo, l_hi, n_cols, r0, n_rows
    cdef int64_t rows_g = plan.c_out_g * K
    _stage_of(p, plan, stage, &n, &g, &start, &stop, &l_lo, &l_hi)
    n_cols = l_hi - l_lo + 1
    r0 = row_block * plan.row_block
    n_rows = _min(plan.row_block, rows_g - r0)
    if n_cols <= 0 or n_rows <= 0:
        return
    _column_rows(plan, K, x + n * sx_n + g * plan.c_in_g * sx_c + l_lo * sx_l, sx_c, sx_l,
                 w + g * plan.c_in_g * rows_g + r0,
                 weight_rows + (g * rows_g + r0) * plan.c_in_g if weight_rows != NULL else NULL,
                 n_rows, n_cols, columns + r0 * n_cols, scratch)


cdef void _run_stage_col2im(const convt_blas_params* p, const Plan* plan, int64_t stage,
                            int64_t block, const scalar_t* x, int64_t sx_n, int64_t sx_c,
                            int64_t sx_l, const scalar_t* w, const scalar_t* bias,
                            scalar_t* out, const scalar_t* columns,
                            scalar_t* phase) noexcept nogil:
    """A shared-columns stage's col2im for output channels [co0, co0 + block_channels)."""
    cdef int64_t K = p.kernel_size, n, g, start, stop, l_lo, l_hi, co0, n_channels, n_cols
    _stage_of(p, plan, stage, &n, &g, &start, &stop, &l_lo, &l_hi)
    n_cols = _max(0, l_hi - l_lo + 1)
    co0 = block * plan.block_channels
    n_channels = _min(plan.block_channels, plan.c_out_g - co0)
    _gather_phases(p, plan, bias + g * plan.c_out_g + co0 if bias != NULL else NULL, 1,
                   n_channels, start, stop, l_lo, l_hi, columns + co0 * K * n_cols,
                   x + n * sx_n + g * plan.c_in_g * sx_c, sx_c, sx_l,
                   w + g * plan.c_in_g * plan.c_out_g * K + co0 * K, phase,
                   out + (n * p.out_channels + g * plan.c_out_g + co0) * plan.out_length)
