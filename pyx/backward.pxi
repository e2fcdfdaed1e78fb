# The backward pass: gradients of the transposed convolution with respect to its
# input and weight (the bias's is a plain sum, left to NumPy by the caller).
#
# For each batch element n and group g, with cols = im2col(grad_output) of
# (C_out/g * K) rows by input positions (row co*K + k, column l holds
# grad_output[n, g*C_out/g + co, l*stride + k*dilation - padding], zero outside):
#
#     grad_input[n, g]  = W_g @ cols             (C_in/g x L_in)
#     grad_weight[g]   += X[n, g] @ cols^T       (C_in/g x C_out/g * K)
#
# Where K is a multiple of the stride, grad_input runs by phases instead, on
# grad_output laid out by position without an im2col (see BACKWARD_PHASE_MIN_ROW).
#
# The batch's input positions are cut into chunks: tiles of one element's
# positions, or, for short inputs, whole elements side by side (one GEMM
# for several elements instead of one small GEMM each). grad_input is cut
# into (group, chunk) units, each owning its block of grad_input.
# grad_weight is cut into (group, block of input channels, block of output
# channels) units, each owning its block of grad_weight and summing the
# chunks in one fixed order. No cut depends on the thread count, so results
# are bitwise identical for any number of threads (not for any split of the
# batch: the chunks follow the batch size). Complex gradients are conjugate
# Wirtinger (torch's): the caller passes conj(W) and conj(X).


cdef inline void _positions_inside(int64_t offset, int64_t stride, int64_t count,
                                   int64_t out_length, int64_t* lo, int64_t* hi) noexcept nogil:
    """[lo, hi): the positions j < ``count`` whose output j*stride + offset lies in
    [0, out_length)."""
    lo[0] = _min(count, _max(0, _ceil_div(-offset, stride)))
    hi[0] = _max(lo[0], _min(count, _floor_div(out_length - 1 - offset, stride) + 1))


cdef inline void _scatter_merged(const convt_blas_params* p, const scalar_t* merged,
                                 int64_t columns, int64_t element_step, int64_t samples,
                                 int64_t in_count, int64_t count,
                                 scalar_t* dst) noexcept nogil:
    """grad_input rows from a GEMM of several elements side by side: element i's
    ``count`` positions start at column i * element_step of ``merged``'s rows."""
    cdef int64_t i, c, j
    for i in range(samples):
        for c in range(in_count):
            for j in range(count):
                dst[(i * p.in_channels + c) * p.in_length + j] = merged[
                    c * columns + i * element_step + j]


cdef inline void _im2col_grad_output(const scalar_t* grad_rows, int64_t channels,
                                     int64_t out_length, const convt_blas_params* p,
                                     int64_t first, int64_t count, scalar_t* cols,
                                     int64_t ld) noexcept nogil:
    """cols[(c*K + k)*ld + j] = grad_rows[c, (first + j)*stride + k*dilation - padding],
    zero outside the output: ``channels`` rows of grad_output, ``count`` input positions."""
    cdef int64_t c, k, j, offset, lo, hi, s = p.stride
    cdef const scalar_t* src
    cdef scalar_t* dst
    for c in range(channels):
        for k in range(p.kernel_size):
            src = grad_rows + c * out_length
            dst = cols + (c * p.kernel_size + k) * ld
            offset = k * p.dilation - p.padding + first * s
            _positions_inside(offset, s, count, out_length, &lo, &hi)
            for j in range(lo):
                dst[j] = 0
            if s == 1:
                for j in range(lo, hi):
                    dst[j] = src[j + offset]
            else:
                for j in range(lo, hi):
                    dst[j] = src[j * s + offset]
            for j in range(hi, count):
                dst[j] = 0


cdef inline void _im2col_chunk(const convt_blas_params* p, const scalar_t* grad_output,
                               int64_t first_sample, int64_t samples, int64_t channel,
                               int64_t channels, int64_t first, int64_t count,
                               scalar_t* cols) noexcept nogil:
    """A chunk's im2col: each batch element's columns beside the previous one's."""
    cdef int64_t out_length = output_length(p), i
    for i in range(samples):
        _im2col_grad_output(
            grad_output + ((first_sample + i) * p.out_channels + channel) * out_length,
            channels, out_length, p, first, count, cols + i * count, samples * count)


cdef inline void _grad_output_by_position(const scalar_t* grad_rows, int64_t channels,
                                          int64_t out_length, const convt_blas_params* p,
                                          int64_t first, int64_t count,
                                          scalar_t* g_rows) noexcept nogil:
    """g_rows[m*Q + h*channels + c] = grad_rows[c, (first + m)*stride + h - padding] for
    m < ``count``, zero outside the output (Q = channels * stride): ``channels`` rows of
    grad_output laid out by position. Row m*stride + h of a (count * stride) x channels
    matrix, that is: the transpose of grad_output's columns from first*stride - padding."""
    cdef int64_t start = first * p.stride - p.padding, rows = count * p.stride, u
    cdef int64_t lo = _min(rows, _max(0, -start))
    cdef int64_t hi = _max(lo, _min(rows, out_length - start))
    for u in range(lo * channels):
        g_rows[u] = 0
    if hi > lo:
        _transpose(grad_rows + start + lo, out_length, 1, channels, hi - lo,
                   g_rows + lo * channels, channels)
    for u in range(hi * channels, rows * channels):
        g_rows[u] = 0


cdef void _lay_out_weight_taps(const convt_blas_params* p, const BackwardPlan* plan,
                               const scalar_t* w, scalar_t* taps) noexcept nogil:
    """taps[j][c][h*C_out/g + o] = w[c, o, j*stride + h]: tap j of every input channel's
    weight as a row-major C_in x (stride * C_out/g) matrix, in G's order."""
    cdef int64_t s = p.stride, q = plan.c_out_g * s, c, j
    for c in range(p.in_channels):
        for j in range(plan.input_taps):
            _transpose(w + c * plan.rows + j * s, p.kernel_size, 1, plan.c_out_g, s,
                       taps + (j * p.in_channels + c) * q, plan.c_out_g)


cdef void _grad_input_phases(const convt_blas_params* p, const BackwardPlan* plan,
                             int64_t unit, const scalar_t* grad_output, const scalar_t* w,
                             const scalar_t* w_taps, scalar_t* grad_input,
                             scalar_t* workspace) noexcept nogil:
    """grad_input[chunk's elements, g, block] = sum over taps j of W_j[block] @ G[j:]^T,
    G the chunk's grad_output by position (_grad_output_by_position), r - 1 rows past
    each element's positions: elements side by side in one GEMM leave r - 1 unused
    columns between them."""
    cdef int64_t ci = (unit % plan.input_in_blocks) * plan.input_in_block
    cdef int64_t rest = unit / plan.input_in_blocks
    cdef int64_t g = rest / plan.input_cut.chunks
    cdef int64_t in_count = _min(plan.input_in_block, plan.c_in_g - ci)
    cdef int64_t s = p.stride, q = plan.c_out_g * s, r = plan.input_taps
    cdef int64_t out_length = output_length(p)
    cdef int64_t n0, samples, first, count, span, columns, i, j, lda, ld_out
    cdef scalar_t* g_rows = workspace
    cdef scalar_t* out
    cdef scalar_t* dst
    cdef const scalar_t* a
    _chunk_columns(&plan.input_cut, rest % plan.input_cut.chunks, p.batch, p.in_length,
                   &n0, &samples, &first, &count)
    span = count + r - 1
    for i in range(samples):
        _grad_output_by_position(
            grad_output + ((n0 + i) * p.out_channels + g * plan.c_out_g) * out_length,
            plan.c_out_g, out_length, p, first, span, g_rows + i * span * q)
    columns = samples * span - (r - 1)
    dst = grad_input + (n0 * p.in_channels + g * plan.c_in_g + ci) * p.in_length + first
    out, ld_out = dst, p.in_length
    if samples > 1:
        out, ld_out = g_rows + samples * span * q, columns
    for j in range(r):
        if w_taps != NULL:
            a, lda = w_taps + (j * p.in_channels + g * plan.c_in_g + ci) * q, q
        else:  # one output channel
            a, lda = w + (g * plan.c_in_g + ci) * plan.rows + j * s, plan.rows
        _gemm(False, True, <int>in_count, <int>columns, <int>q, a, <int>lda,
              g_rows + j * q, <int>q, out, <int>ld_out, <scalar_t*>NULL, j > 0)
    if samples > 1:
        _scatter_merged(p, out, columns, span, samples, in_count, count, dst)


cdef void _grad_input_im2col(const convt_blas_params* p, const BackwardPlan* plan,
                             int64_t unit, const scalar_t* grad_output, const scalar_t* w,
                             scalar_t* grad_input, scalar_t* workspace) noexcept nogil:
    """grad_input[chunk's elements, g, block] = W_g[block] @ im2col(grad_output[chunk's
    elements, g])."""
    cdef int64_t ci = (unit % plan.input_in_blocks) * plan.input_in_block
    cdef int64_t rest = unit / plan.input_in_blocks
    cdef int64_t g = rest / plan.input_cut.chunks
    cdef int64_t in_count = _min(plan.input_in_block, plan.c_in_g - ci)
    cdef int64_t n0, samples, first, count, columns
    cdef scalar_t* cols = workspace
    cdef scalar_t* merged = workspace + plan.rows * plan.input_cut.columns
    cdef scalar_t* dst
    cdef const scalar_t* w_block = w + (g * plan.c_in_g + ci) * plan.rows
    columns = _chunk_columns(&plan.input_cut, rest % plan.input_cut.chunks, p.batch,
                             p.in_length, &n0, &samples, &first, &count)
    _im2col_chunk(p, grad_output, n0, samples, g * plan.c_out_g, plan.c_out_g, first, count,
                  cols)
    dst = grad_input + (n0 * p.in_channels + g * plan.c_in_g + ci) * p.in_length + first
    if samples == 1:
        _gemm(False, False, <int>in_count, <int>count, <int>plan.rows, w_block,
              <int>plan.rows, cols, <int>count, dst, <int>p.in_length, <scalar_t*>NULL)
        return
    # Several elements in one GEMM: its rows hold each element's positions in turn.
    _gemm(False, False, <int>in_count, <int>columns, <int>plan.rows, w_block,
          <int>plan.rows, cols, <int>columns, merged, <int>columns, <scalar_t*>NULL)
    _scatter_merged(p, merged, columns, count, samples, in_count, count, dst)


cdef inline void _grad_input_unit(const convt_blas_params* p, const BackwardPlan* plan,
                                  int64_t unit, const scalar_t* grad_output, const scalar_t* w,
                                  const scalar_t* w_taps, scalar_t* grad_input,
                                  scalar_t* workspace) noexcept nogil:
    """One unit of grad_input, by phases or by the im2col as the plan says."""
    if plan.input_taps:
        _grad_input_phases(p, plan, unit, grad_output, w, w_taps, grad_input, workspace)
    else:
        _grad_input_im2col(p, plan, unit, grad_output, w, grad_input, workspace)


cdef void _grad_weight_unit(const convt_blas_params* p, const BackwardPlan* plan, int64_t unit,
                            const scalar_t* grad_output, const scalar_t* x,
                            scalar_t* grad_weight, scalar_t* split_sums,
                            scalar_t* workspace) noexcept nogil:
    """One block of grad_weight: the sum over its split's range of chunks, in order, of
    X[chunk, g, block] @ im2col(grad_output[chunk, g, block])^T, into grad_weight (the
    first split) or its place in ``split_sums`` (the others, one weight's size each)."""
    cdef int64_t K = p.kernel_size
    cdef int64_t split = unit % plan.weight_splits
    cdef int64_t per_split = _ceil_div(plan.weight_cut.chunks, plan.weight_splits)
    cdef int64_t o_block = (unit / plan.weight_splits) % plan.out_blocks
    cdef int64_t rest = unit / plan.weight_splits / plan.out_blocks
    cdef int64_t i_block = rest % plan.in_blocks, g = rest / plan.in_blocks
    cdef int64_t co = o_block * plan.out_block, ci = i_block * plan.in_block
    cdef int64_t out_count = _min(plan.out_block, plan.c_out_g - co)
    cdef int64_t in_count = _min(plan.in_block, plan.c_in_g - ci)
    cdef int64_t block_rows = out_count * K
    cdef int64_t chunk, n0, samples, first, count, columns, i, j, c, lda
    cdef scalar_t* cols = workspace
    cdef scalar_t* partial = cols + plan.out_block * K * plan.weight_cut.columns
    cdef scalar_t* merged = partial + plan.in_block * plan.out_block * K
    cdef scalar_t* dst = ((grad_weight if split == 0
                           else split_sums + (split - 1) * p.in_channels * plan.rows)
                          + (g * plan.c_in_g + ci) * plan.rows + co * K)
    cdef int64_t chunk_first = split * per_split
    cdef const scalar_t* x_rows
    cdef const scalar_t* src
    cdef scalar_t* row
    for chunk in range(chunk_first, _min(plan.weight_cut.chunks, chunk_first + per_split)):
        columns = _chunk_columns(&plan.weight_cut, chunk, p.batch, p.in_length,
                                 &n0, &samples, &first, &count)
        _im2col_chunk(p, grad_output, n0, samples, g * plan.c_out_g + co, out_count, first,
                      count, cols)
        x_rows = x + (n0 * p.in_channels + g * plan.c_in_g + ci) * p.in_length + first
        lda = p.in_length
        if samples > 1:  # the elements' rows side by side, as the im2col's columns
            for c in range(in_count):
                for i in range(samples):
                    src = x_rows + i * p.in_channels * p.in_length + c * p.in_length
                    for j in range(count):
                        merged[c * columns + i * count + j] = src[j]
            x_rows = merged
            lda = columns
        # The first product lands in place; later ones are added in order.
        _gemm(False, True, <int>in_count, <int>block_rows, <int>columns, x_rows, <int>lda,
              cols, <int>columns, dst if chunk == chunk_first else partial,
              <int>(plan.rows if chunk == chunk_first else block_rows), <scalar_t*>NULL)
        if chunk > chunk_first:
            for i in range(in_count):
                row = dst + i * plan.rows
                for j in range(block_rows):
                    row[j] = row[j] + partial[i * block_rows + j]


cdef void _depthwise_channel(const convt_blas_params* p, int64_t c,
                             const scalar_t* grad_output, const scalar_t* x, const scalar_t* w,
                             scalar_t* grad_input, scalar_t* grad_weight) noexcept nogil:
    """Both gradients of depthwise channel ``c``: grad_input's positions sum their taps
    in order of k, grad_weight's taps the batch's products in order (n, then l)."""
    cdef int64_t K = p.kernel_size, s = p.stride, L = p.in_length
    cdef int64_t out_length = output_length(p), n, k, l, lo, hi, offset
    cdef const scalar_t* gy
    cdef const scalar_t* x_row
    cdef scalar_t* gx
    cdef scalar_t tap, total
    for k in range(K):
        offset = k * p.dilation - p.padding
        _positions_inside(offset, s, L, out_length, &lo, &hi)
        if grad_input != NULL:
            tap = w[c * K + k]
            for n in range(p.batch):
                gy = grad_output + (n * p.out_channels + c) * out_length + offset
                gx = grad_input + (n * p.in_channels + c) * L
                if k == 0:
                    for l in range(L):
                        gx[l] = 0
                for l in range(lo, hi):
                    gx[l] = gx[l] + tap * gy[l * s]
        if grad_weight != NULL:
            total = 0
            for n in range(p.batch):
                gy = grad_output + (n * p.out_channels + c) * out_length + offset
                x_row = x + (n * p.in_channels + c) * L
                for l in range(lo, hi):
                    total = total + x_row[l] * gy[l * s]
            grad_weight[c * K + k] = total


cdef int _run_backward(const convt_blas_params* p, const BackwardPlan* plan,
                       const scalar_t* grad_output, const scalar_t* x, const scalar_t* w,
                       scalar_t* grad_input, scalar_t* grad_weight,
                       scalar_t* workspace, int64_t workspace_len,
                       int n_threads) noexcept nogil:
    """grad_input (if not NULL; needs ``w``) and grad_weight (if not NULL; needs ``x``).

    grad_output, x: C-contiguous (N, C_out, L_out) and (N, C_in, L_in); w:
    C-contiguous (C_in, C_out/g, K), conjugated by the caller for complex;
    grad_input, grad_weight: C-contiguous, fully overwritten. The workspace
    holds grad_weight's split sums (weight_shared_elements, if it is computed), the
    weight by tap (input_shared_elements, if grad_input is), then ``n_threads``
    (clamped) workers' largest worker_elements.
    """
    cdef int64_t unit, per_worker, workers, shared, needed, row, j, split
    cdef scalar_t* split_sums = workspace
    cdef scalar_t* w_taps = NULL
    cdef scalar_t* sums
    cdef scalar_t* dst
    needed = _backward_workspace(plan, grad_input != NULL, grad_weight != NULL, n_threads,
                                 &shared, &per_worker, &workers)
    if needed < 0:
        return CONVT_BLAS_ERR_OVERFLOW
    if workspace_len < needed:
        return CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL
    workspace = workspace + shared
    if plan.depthwise:
        if workers > 1:
            for unit in prange(p.in_channels, num_threads=<int>workers, schedule='static'):
                _depthwise_channel(p, unit, grad_output, x, w, grad_input, grad_weight)
        else:
            for unit in range(p.in_channels):
                _depthwise_channel(p, unit, grad_output, x, w, grad_input, grad_weight)
        return CONVT_BLAS_OK
    if grad_input != NULL and plan.input_units:
        if plan.input_shared_elements:
            w_taps = split_sums + (plan.weight_shared_elements if grad_weight != NULL else 0)
            _lay_out_weight_taps(p, plan, w, w_taps)
        if workers > 1:
            for unit in prange(plan.input_units, num_threads=<int>workers, schedule='guided'):
                _grad_input_unit(p, plan, unit, grad_output, w, w_taps, grad_input,
                                 workspace + threadid() * per_worker)
        else:
            for unit in range(plan.input_units):
                _grad_input_unit(p, plan, unit, grad_output, w, w_taps, grad_input, workspace)
    if grad_weight != NULL:
        if p.batch == 0:
            for unit in range(p.in_channels * plan.rows):
                grad_weight[unit] = 0
        elif workers > 1:
            for unit in prange(plan.weight_units, num_threads=<int>workers, schedule='guided'):
                _grad_weight_unit(p, plan, unit, grad_output, x, grad_weight, split_sums,
                                  workspace + threadid() * per_worker)
        else:
            for unit in range(plan.weight_units):
                _grad_weight_unit(p, plan, unit, grad_output, x, grad_weight, split_sums,
                                  workspace)
        if p.batch > 0 and plan.weight_splits > 1:
            # The splits' sums added to the first's in order, row by row.
            for row in prange(p.in_channels, num_threads=<int>workers, schedule='static'):
                dst = grad_weight + row * plan.rows
                for split in range(1, plan.weight_splits):
                    sums = split_sums + (split - 1) * p.in_channels * plan.rows + row * plan.rows
                    for j in range(plan.rows):
                        dst[j] = dst[j] + sums[j]
    return CONVT_BLAS_OK


# The C API's backward (entries.pxi): plain operands in, torch's gradients out.

cdef inline int64_t _backward_units(const BackwardPlan* plan, bint want_input,
                                    bint want_weight, int64_t* shared,
                                    int64_t* per_worker) noexcept nogil:
    """The units of a call computing the gradients wanted, the workspace elements the
    workers share (grad_weight's split sums, grad_input's weight by tap) and each
    worker's elements."""
    shared[0] = ((plan.weight_shared_elements if want_weight else 0)
                 + (plan.input_shared_elements if want_input else 0))
    per_worker[0] = _max(plan.input_worker_elements if want_input else 0,
                         plan.weight_worker_elements if want_weight else 0)
    return _max(plan.input_units if want_input else 0,
                plan.weight_units if want_weight else 0)


cdef inline int64_t _backward_workspace(const BackwardPlan* plan, bint want_input,
                                        bint want_weight, int n_threads, int64_t* shared,
                                        int64_t* per_worker, int64_t* workers) noexcept nogil:
    """The workspace elements _run_backward needs (-1: more than an int64_t counts):
    the shared elements, then ``workers`` workers' ``per_worker`` (_backward_units)."""
    workers[0] = _max(1, _min(<int64_t>_thread_count(n_threads),
                              _backward_units(plan, want_input, want_weight, shared,
                                              per_worker)))
    if (_mul_overflows(per_worker[0], workers[0])
            or per_worker[0] * workers[0] > INT64_MAX - shared[0]):
        return -1
    return shared[0] + per_worker[0] * workers[0]


cdef int64_t backward_workspace_length(const convt_blas_params* p, int n_threads) noexcept nogil:
    """Workspace elements a backward call with ``n_threads`` needs, whichever
    gradients it computes; -1 for a NULL, invalid or overflowing ``p``."""
    cdef BackwardPlan plan
    cdef int64_t shared, per_worker, workers
    if p == NULL or _make_backward_plan(p, &plan) != CONVT_BLAS_OK:
        return -1
    return _backward_workspace(&plan, True, True, n_threads, &shared, &per_worker, &workers)


cdef int _conv_transpose1d_backward(const convt_blas_params* p, const scalar_t* grad_output,
                                    const scalar_t* x, const scalar_t* w,
                                    scalar_t* grad_input, scalar_t* grad_weight,
                                    scalar_t* grad_bias, scalar_t* workspace,
                                    int64_t workspace_len, int n_threads) noexcept nogil:
    """The backward for a caller that brings no plan (the C API): validates ``p`` and
    the pointers, conjugates complex operands (into copies it allocates), runs
    _run_backward and sums grad_bias in order. Writes nothing unless it succeeds."""
    cdef BackwardPlan plan
    cdef int status
    cdef int64_t per_worker, workers, shared, needed, out_len, x_len, w_len, i, n, c, l
    cdef scalar_t* conj_x = NULL
    cdef scalar_t* conj_w = NULL
    cdef scalar_t* owned = NULL
    cdef scalar_t total
    cdef const scalar_t* row
    if p == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    status = _make_backward_plan(p, &plan)
    if status != CONVT_BLAS_OK:
        return status
    if (grad_output == NULL or (grad_input != NULL and w == NULL)
            or (grad_weight != NULL and x == NULL)):
        return CONVT_BLAS_ERR_NULL_POINTER
    out_len = output_length(p)
    if (_mul_overflows(p.batch, p.out_channels) or _mul_overflows(p.batch * p.out_channels, out_len)
            or _mul_overflows(p.batch, p.in_channels)
            or _mul_overflows(p.batch * p.in_channels, p.in_length)
            or _mul_overflows(p.in_channels, plan.rows)):
        return CONVT_BLAS_ERR_OVERFLOW
    x_len = p.batch * p.in_channels * p.in_length
    w_len = p.in_channels * plan.rows
    needed = _backward_workspace(&plan, grad_input != NULL, grad_weight != NULL, n_threads,
                                 &shared, &per_worker, &workers)
    if needed < 0:
        return CONVT_BLAS_ERR_OVERFLOW
    if workspace != NULL and workspace_len < needed:
        return CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL
    if _max(needed, _max(x_len, w_len)) > INT64_MAX / <int64_t>sizeof(scalar_t):
        return CONVT_BLAS_ERR_OVERFLOW

    if scalar_t is cython.floatcomplex or scalar_t is cython.doublecomplex:
        # torch's convention: grad_input correlates with conj(W), grad_weight with conj(X).
        if grad_input != NULL:
            conj_w = <scalar_t*>malloc(<size_t>_max(1, w_len) * sizeof(scalar_t))
            if conj_w == NULL:
                return CONVT_BLAS_ERR_NO_MEMORY
            for i in range(w_len):
                conj_w[i] = w[i].conjugate()
            w = conj_w
        if grad_weight != NULL:
            conj_x = <scalar_t*>malloc(<size_t>_max(1, x_len) * sizeof(scalar_t))
            if conj_x == NULL:
                free(conj_w)
                return CONVT_BLAS_ERR_NO_MEMORY
            for i in range(x_len):
                conj_x[i] = x[i].conjugate()
            x = conj_x
    if workspace == NULL:
        owned = <scalar_t*>malloc(<size_t>_max(1, needed) * sizeof(scalar_t))
        if owned == NULL:
            free(conj_w)
            free(conj_x)
            return CONVT_BLAS_ERR_NO_MEMORY
        workspace = owned
        workspace_len = needed

    status = _run_backward(p, &plan, grad_output, x, w, grad_input, grad_weight,
                           workspace, workspace_len, n_threads)
    if status == CONVT_BLAS_OK and grad_bias != NULL:
        for c in range(p.out_channels):
            total = 0
            for n in range(p.batch):
                row = grad_output + (n * p.out_channels + c) * out_len
                for l in range(out_len):
                    total = total + row[l]
            grad_bias[c] = total
    free(owned)
    free(conj_w)
    free(conj_x)
    return status
