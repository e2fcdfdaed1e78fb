# The Python-facing helpers of convt_blas.kernels (called by convt_blas._functional
# after validation): plans, the weight's transform and rows, and run.

def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(CONVT_BLAS_OPENMP)


def _set_depthwise_by_channels(bint enabled):
    """Turn _run_depthwise_unit off (False) or on (the default): for tests and benchmarks."""
    global DEPTHWISE_BY_CHANNELS
    DEPTHWISE_BY_CHANNELS = enabled


def set_winograd(bint enabled):
    """Whether layers with K == r*stride (r = 2, 3, 4) may take Winograd's F(3,2), F(4,3)
    or F(3,4) (see _make_plan)."""
    global WINOGRAD_ENABLED
    WINOGRAD_ENABLED = enabled


def _set_winograd_workspace(int64_t elements):
    """Set a worker's F(3,2) workspace target, in elements; returns the previous one.
    For tests and benchmarks (see WINOGRAD_WORKSPACE)."""
    global WINOGRAD_WORKSPACE
    previous = WINOGRAD_WORKSPACE
    WINOGRAD_WORKSPACE = elements
    return previous


def _set_direct_max_in_channels(int64_t channels):
    """Set DIRECT_MAX_IN_CHANNELS (groups with at most this many input channels may take
    direct taps); returns the previous value. For tests and benchmarks."""
    global DIRECT_MAX_IN_CHANNELS
    previous = DIRECT_MAX_IN_CHANNELS
    DIRECT_MAX_IN_CHANNELS = channels
    return previous


def _set_winograd_max_input(int64_t channels):
    """Set WINOGRAD_MAX_INPUT (input channels per group from which layers with a prepared
    weight need longer inputs for F(3,2)); returns the previous value. For tests and
    benchmarks."""
    global WINOGRAD_MAX_INPUT
    previous = WINOGRAD_MAX_INPUT
    WINOGRAD_MAX_INPUT = channels
    return previous


def _set_form_rule(int64_t min_side, int64_t min_length, int64_t min_units):
    """Set FORM_MIN_SIDE, FORM_MIN_LENGTH and FORM_MIN_UNITS (when F(4,3) and F(3,4) are
    taken, and their cut); returns the previous three. For tests and tuning."""
    global FORM_MIN_SIDE, FORM_MIN_LENGTH, FORM_MIN_UNITS
    previous = (FORM_MIN_SIDE, FORM_MIN_LENGTH, FORM_MIN_UNITS)
    FORM_MIN_SIDE, FORM_MIN_LENGTH, FORM_MIN_UNITS = min_side, min_length, min_units
    return previous


def _form_matrices(int taps):
    """F(m, r)'s (AT, G, BT) for r = ``taps`` (3 or 4), as the kernels apply them: for
    tests (see _make_form)."""
    cdef const WinogradForm* form
    cdef int n = FORM_COMPONENTS
    if taps not in (3, 4):
        raise ValueError(f"no form for r = {taps}")
    form = _winograd_form(taps)
    at = np.array([[form.at[i * n + k] for k in range(n)] for i in range(form.span)])
    g = np.array([[form.inverse[k] * form.power[k * taps + j] for j in range(taps)]
                  for k in range(n)])
    bt = np.array([[form.bt[k * n + j] for j in range(n)] for k in range(n)])
    return at, g, bt


def winograd_enabled():
    return bool(WINOGRAD_ENABLED)


cdef class CallPlan:
    """The plan of one call shape, made once (plan_call) and handed to run, which
    checks the operands against it and does not plan again."""
    cdef convt_blas_params params
    cdef Plan plan
    cdef readonly tuple shape
    cdef readonly bint winograd
    cdef readonly bint takes_prepared
    cdef readonly bint takes_rows

    @property
    def units_per_sample(self):
        """Independent work units per batch element."""
        return _units_per_sample(&self.params, &self.plan)

    @property
    def worker_elements(self):
        """Workspace elements one worker needs."""
        return self.plan.worker_elements

    def info(self):
        """The Plan struct as a dict, for tests and tuning."""
        return self.plan


def plan_call(tuple shape, bint has_prepared, winograd=None):
    """The CallPlan of a call of ``shape`` (as in plan_sizes) under the Winograd switch
    ``winograd`` (None: as set now). ``has_prepared``: the caller can bring the
    weight transformed (prepare_weight) and its rows (lay_out_weight_rows);
    the plan says whether it takes either. Raises ValueError if the kernel refuses it."""
    cdef CallPlan call = CallPlan.__new__(CallPlan)
    cdef Plan offered
    cdef int64_t rows, columns
    call.shape = shape
    call.winograd = _switch(winograd)
    _plan_or_raise(shape, &call.params, &offered, has_prepared, call.winograd)
    call.takes_prepared = has_prepared and offered.winograd and offered.prepared_weights
    call.takes_rows = False
    if has_prepared and not offered.winograd and not offered.direct_taps:
        # Rows only where the plan's largest GEMM reads them (_reads_rows).
        rows = (offered.row_block if offered.row_block > 0
                else offered.block_channels * call.params.kernel_size)
        columns = (offered.samples_per_unit * call.params.in_length
                   if offered.samples_per_unit > 1 else offered.max_columns)
        call.takes_rows = _blocked_either_way(columns if offered.position_major else rows,
                                              rows if offered.position_major else columns,
                                              offered.c_in_g)
    # Without F(3,2) the prepared plan is the GEMM path's, rows or not: a layer whose
    # length is short of its prepared rule does not fall back to a per-call transform.
    call.plan = offered
    call.plan.prepared_weights = offered.winograd and offered.prepared_weights
    return call


def takes_weight_rows(tuple shape, winograd=None):
    """Whether a call of ``shape`` that has a prepared weight but runs the GEMM path
    (not F(3,2), not direct taps) takes the weight's rows (lay_out_weight_rows): whether
    its largest GEMM reads them (_blocked_either_way)."""
    return plan_call(shape, True, winograd).takes_rows


def takes_prepared_weight(tuple shape, winograd=None):
    """Whether a call of ``shape`` would run F(3,2) on a prepared weight (see run)."""
    return plan_call(shape, True, winograd).takes_prepared


def lay_out_weight_rows(tuple shape, cnp.ndarray weight, int n_threads=1):
    """The weight as its rows, for run's ``weight_rows``: per group (C_out/g * K, C_in/g).

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
    if not _supported(type_num):
        raise TypeError(f"lay_out_weight_rows: unsupported dtype {weight.dtype}")
    if (weight.ndim != 3 or weight.shape[0] != shape[1] or groups < 1 or shape[1] % groups
            or not cnp.PyArray_IS_C_CONTIGUOUS(weight)):
        raise ValueError("lay_out_weight_rows: the weight does not match the shape")
    rows = cnp.PyArray_EMPTY(1, [cnp.PyArray_SIZE(weight)], type_num, 0)
    dst = cnp.PyArray_DATA(rows)
    with nogil:
        _lay_out_weight_rows_typed(type_num, src, groups, c_in_g, m, dst, n_threads)
    return rows


def _plan_info(tuple shape, bint prepared=False):
    """The planner's cut for ``shape`` (as in plan_sizes) as a dict, for tests and tuning."""
    cdef convt_blas_params p
    cdef Plan plan
    _plan_or_raise(shape, &p, &plan, prepared, WINOGRAD_ENABLED)
    return plan


def blas_small_matrix_kernels():
    """Whether the planner cuts for OpenBLAS's small-matrix kernels (its BLAS has them)."""
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
    weight transformed (prepare_weight); ``winograd``: the switch
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


def prepare_weight(tuple shape, cnp.ndarray weight, int n_threads=1, winograd=None):
    """The weight transformed for Winograd, for run's ``prepared``; None if the layer never takes it.

    ``shape`` as in plan_sizes (batch and length are not used); ``winograd``: the
    switch as the call read it (None: as set now); ``weight``:
    C-contiguous (C_in, C_out/g, K) of a supported dtype. Per group, the
    alpha matrices of _winograd_weights over all of the group's channels,
    (C_in/g, C_out/g * stride) each: alpha/r times the weight's size.
    """
    cdef convt_blas_params p
    cdef int64_t length
    cdef int status
    cdef cnp.ndarray prepared
    cdef void* src = cnp.PyArray_DATA(weight)
    cdef void* dst
    cdef int type_num = cnp.PyArray_TYPE(weight)
    cdef bint allowed = _switch(winograd)
    if not _supported(type_num):
        raise TypeError(f"prepare_weight: unsupported dtype {weight.dtype}")
    _fill_params(&p, shape)
    length = _prepared_weight_length(&p, allowed)
    if length < 0:
        raise_for_status(CONVT_BLAS_ERR_BAD_SHAPE)
    if length == 0:
        return None
    if (cnp.PyArray_SIZE(weight) != p.in_channels * (p.out_channels / p.groups) * p.kernel_size
            or not cnp.PyArray_IS_C_CONTIGUOUS(weight)):
        raise ValueError("prepare_weight: the weight does not match the shape")
    prepared = cnp.PyArray_EMPTY(1, [length], type_num, 0)
    dst = cnp.PyArray_DATA(prepared)
    with nogil:
        status = _prepare_weights_typed(type_num, &p, src, dst, length, n_threads, allowed)
    raise_for_status(status)
    return prepared


def run_plan(CallPlan call, cnp.ndarray x, tuple strides, cnp.ndarray weight, bias,
        cnp.ndarray out, cnp.ndarray workspace, int n_threads, prepared=None, weight_rows=None):
    """Run ``call``'s plan on validated arrays; releases the GIL throughout.

    x: element ``strides`` (batch, channel, length), unit stride on the length
    or channel axis. weight, bias, out, workspace: C-contiguous, x's dtype;
    the workspace holds n_threads (clamped to the units) workers'
    ``call.worker_elements``. prepared: None, or prepare_weight of
    the weight (when ``call.takes_prepared``). weight_rows: None, or
    lay_out_weight_rows of the weight, which GEMM-path plans then read.
    """
    cdef int status
    cdef int type_num = cnp.PyArray_TYPE(x)
    cdef int64_t sx_n, sx_c, sx_l
    cdef void* xp = NULL if x is None else cnp.PyArray_DATA(<cnp.ndarray?>x)
    cdef void* wp = NULL if weight is None else cnp.PyArray_DATA(<cnp.ndarray?>weight)
    cdef void* pp = NULL
    cdef void* rp = NULL
    cdef int64_t prepared_len = 0
    cdef cnp.ndarray held
    cdef void* bp = NULL if bias is None else cnp.PyArray_DATA(<cnp.ndarray>bias)
    cdef void* op = cnp.PyArray_DATA(out)
    cdef void* wsp = cnp.PyArray_DATA(workspace)
    cdef int64_t ws_len = cnp.PyArray_SIZE(workspace)
    sx_n, sx_c, sx_l = strides
    if prepared is not None:
        # Its length is the kernel's to check (CONVT_BLAS_ERR_BAD_PREPARED).
        held = <cnp.ndarray?>prepared
        if cnp.PyArray_TYPE(held) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(held):
            raise ValueError("prepared weight does not match the layer")
        pp = cnp.PyArray_DATA(held)
        prepared_len = cnp.PyArray_SIZE(held)
    if weight_rows is not None:
        held = <cnp.ndarray?>weight_rows
        if (cnp.PyArray_TYPE(held) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(held)
                or cnp.PyArray_SIZE(held) != cnp.PyArray_SIZE(weight)):
            raise ValueError("weight rows do not match the layer")
        rp = cnp.PyArray_DATA(held)
    with nogil:
        status = _run_plan_typed(type_num, &call.params, &call.plan, xp, sx_n, sx_c, sx_l, wp,
                                 pp, prepared_len, bp, op, wsp, ws_len, n_threads, rp)
    raise_for_status(status)


cdef int _backward_plan_or_raise(tuple shape, convt_blas_params* p,
                                 BackwardPlan* plan) except -1:
    _fill_params(p, shape)
    raise_for_status(_make_backward_plan(p, plan))
    return 0


def backward_sizes(tuple shape):
    """The backward pass's cut for ``shape`` (as in plan_sizes, batch of at least 1):
    (grad_input units, its workspace elements per worker, its workspace elements
    shared by the workers, then the same three of grad_weight); the shared elements
    lie ahead of the workers'. Raises ValueError if the kernel refuses it."""
    cdef convt_blas_params p
    cdef BackwardPlan plan
    _backward_plan_or_raise(shape, &p, &plan)
    return (plan.input_units, plan.input_worker_elements, plan.input_shared_elements,
            plan.weight_units, plan.weight_worker_elements, plan.weight_shared_elements)


def backward_needs(tuple shape, bint want_input, bint want_weight):
    """(units, workspace elements shared by the workers, each worker's elements) of a
    backward call on ``shape`` that computes the gradients wanted."""
    cdef convt_blas_params p
    cdef BackwardPlan plan
    cdef int64_t shared, per_worker, units
    _backward_plan_or_raise(shape, &p, &plan)
    units = _backward_units(&plan, want_input, want_weight, &shared, &per_worker)
    return units, shared, per_worker


def _set_backward_workspace(int64_t elements):
    """Set a worker's backward buffers' target, in elements; returns the previous one.
    For tests and benchmarks (see BACKWARD_WORKSPACE)."""
    global BACKWARD_WORKSPACE
    previous = BACKWARD_WORKSPACE
    BACKWARD_WORKSPACE = elements
    return previous


def _set_backward_weight_blocks(int64_t units, int64_t side):
    """Set grad_weight's target units per layer and least block side; returns the
    previous pair. For tests and benchmarks (see BACKWARD_WEIGHT_UNITS)."""
    global BACKWARD_WEIGHT_UNITS, BACKWARD_BLOCK_SIDE
    previous = (BACKWARD_WEIGHT_UNITS, BACKWARD_BLOCK_SIDE)
    BACKWARD_WEIGHT_UNITS, BACKWARD_BLOCK_SIDE = units, side
    return previous


def _set_backward_input_blocks(int64_t blocks):
    """Set the most blocks of input channels grad_input's chunks are cut into; returns
    the previous count. For tests and benchmarks (see BACKWARD_INPUT_BLOCKS)."""
    global BACKWARD_INPUT_BLOCKS
    previous = BACKWARD_INPUT_BLOCKS
    BACKWARD_INPUT_BLOCKS = blocks
    return previous


def _set_backward_phases(int64_t min_row, int64_t min_columns):
    """Set the least G row and columns per input channel for grad_input by phases;
    returns the previous pair. For tests and benchmarks (see BACKWARD_PHASE_MIN_ROW)."""
    global BACKWARD_PHASE_MIN_ROW, BACKWARD_PHASE_MIN_COLUMNS
    previous = (BACKWARD_PHASE_MIN_ROW, BACKWARD_PHASE_MIN_COLUMNS)
    BACKWARD_PHASE_MIN_ROW, BACKWARD_PHASE_MIN_COLUMNS = min_row, min_columns
    return previous


def _backward_plan_info(tuple shape):
    """The BackwardPlan struct of ``shape`` as a dict, for tests and tuning."""
    cdef convt_blas_params p
    cdef BackwardPlan plan
    _backward_plan_or_raise(shape, &p, &plan)
    return plan


def run_backward(tuple shape, cnp.ndarray grad_output, x, weight, grad_input, grad_weight,
                 cnp.ndarray workspace, int n_threads):
    """grad_input and grad_weight (either may be None: not computed) of ``shape``.

    Validated, C-contiguous arrays of one supported dtype: grad_output
    (N, C_out, L_out); x (N, C_in, L_in), read for grad_weight (else may be
    None); weight (C_in, C_out/g, K), read for grad_input (else may be None);
    complex callers pass both
    conjugated. grad_input (N, C_in, L_in) and grad_weight (C_in, C_out/g, K)
    are overwritten. The workspace holds n_threads (clamped to the units)
    workers' elements of backward_sizes. Releases the GIL throughout.
    """
    cdef convt_blas_params p
    cdef BackwardPlan plan
    cdef int status
    cdef int type_num = cnp.PyArray_TYPE(grad_output)
    cdef cnp.ndarray gi = None if grad_input is None else <cnp.ndarray?>grad_input
    cdef cnp.ndarray gw = None if grad_weight is None else <cnp.ndarray?>grad_weight
    cdef void* gop = cnp.PyArray_DATA(grad_output)
    cdef void* xp = NULL if x is None else cnp.PyArray_DATA(<cnp.ndarray?>x)
    cdef void* wp = NULL if weight is None else cnp.PyArray_DATA(<cnp.ndarray?>weight)
    cdef void* gip = NULL if gi is None else cnp.PyArray_DATA(gi)
    cdef void* gwp = NULL if gw is None else cnp.PyArray_DATA(gw)
    cdef void* wsp = cnp.PyArray_DATA(workspace)
    cdef int64_t ws_len = cnp.PyArray_SIZE(workspace)
    if not _supported(type_num):
        raise TypeError(f"run_backward: unsupported dtype {grad_output.dtype}")
    _backward_plan_or_raise(shape, &p, &plan)
    if (gi is not None and weight is None) or (gw is not None and x is None):
        raise ValueError("run_backward: grad_input needs the weight, grad_weight the input")
    for arr, size in ((grad_output, p.batch * p.out_channels * output_length(&p)),
                      (x, p.batch * p.in_channels * p.in_length),
                      (weight, p.in_channels * plan.rows), (gi, p.batch * p.in_channels * p.in_length),
                      (gw, p.in_channels * plan.rows), (workspace, None)):
        if arr is None:
            continue
        if (cnp.PyArray_TYPE(arr) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
                or (size is not None and cnp.PyArray_SIZE(arr) != size)):
            raise ValueError("run_backward: an array does not match the shape")
    with nogil:
        status = _run_backward_typed(type_num, &p, &plan, gop, xp, wp, gip, gwp, wsp, ws_len,
                                     n_threads)
    raise_for_status(status)
