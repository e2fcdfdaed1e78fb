# Sizes a plan implies: prepared weight, units per element, workspace, workers.

cdef int64_t prepared_weight_length(const convt_blas_params* p) noexcept nogil:
    """Elements of the layer's weight transformed for Winograd (alpha/r times the
    weight's: twice for F(3,2) and F(4,3), 1.5 times for F(3,4)); 0 if
    its calls never take it (or Winograd is off), -1 if ``p`` is NULL or invalid.
    The batch and input length are not read."""
    return _prepared_weight_length(p, WINOGRAD_ENABLED)


cdef int64_t _prepared_weight_length(const convt_blas_params* p, bint allowed) noexcept nogil:
    """prepared_weight_length, with Winograd ``allowed`` or not."""
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
    """The transformed weight's length for a plan that takes it (else 0): alpha (C_in, C_out/g * s)."""
    return plan.components * p.in_channels * plan.c_out_g * p.stride if plan.prepared_weights else 0


cdef inline int64_t _weight_block_elements(const Plan* plan, int64_t s) noexcept nogil:
    """One transformed weight matrix in a worker's Winograd workspace (0 if prepared)."""
    return 0 if plan.prepared_weights else plan.c_in_g * plan.block_rows


cdef inline double _winograd_samples_fitting(const Plan* plan, int64_t s) noexcept nogil:
    """Batch elements per GEMM whose Winograd workspace fits WINOGRAD_WORKSPACE, for a
    plan of one element per GEMM: the workspace grows by the input matrices and
    products of each element beyond the pass's weight matrices."""
    cdef double weights = plan.pass_components * <double>_weight_block_elements(plan, s)
    return (WINOGRAD_WORKSPACE - weights) / (_winograd_elements(plan, s) - weights)


cdef inline double _winograd_elements(const Plan* plan, int64_t s) noexcept nogil:
    """A worker's Winograd workspace: a pass's weight matrices (unless prepared) and
    input matrices, all components' products, and the transform's chunk where a unit may lay
    its weight out as rows (_winograd_weight_rows). In double: planning compares
    it before the sizes are checked for overflow."""
    cdef double columns = <double>plan.samples_per_unit * plan.tile_spans
    cdef double chunk = 0
    if not plan.prepared_weights and _winograd_weights_as_rows(plan.c_in_g):
        chunk = <double>plan.pass_components * WINOGRAD_ROWS_CHUNK * plan.block_rows
    return (plan.pass_components * (<double>_weight_block_elements(plan, s)
                                    + columns * plan.c_in_g)
            + <double>plan.components * columns * plan.block_rows + chunk)


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


cdef inline int64_t _merged_rows(int64_t c_in_g, int64_t n_rows, int64_t n_cols) noexcept nogil:
    """How many of a one-tile position-major block's ``n_rows`` rows a GEMM over several
    batch elements may compute (0 or whole tiles of MERGED_ROW_TILE rows, from row 0),
    each element's bits staying those it gets alone: only whole tiles, whose GEMM for one
    element (``n_cols`` columns) BLAS runs blocked (see _samples_sharing_gemm). Each
    element computes the rows past them, fewer than a tile, alone, batched or not.

    Measured against growing that rest until BLAS blocks its GEMM too (which then
    reads the weight's rows): merged layers 1.2-1.7x slower, for at most 7% gained by
    a single element's layer (2005 -> 1770, K = 3, 15 positions)."""
    cdef int64_t head = n_rows - n_rows % MERGED_ROW_TILE
    if head == 0 or not _blocked_either_way(n_cols, head, c_in_g):
        return 0
    return head


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
