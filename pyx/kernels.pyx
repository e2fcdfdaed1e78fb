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
from libc.string cimport memset
from cython.parallel cimport prange, threadid
from scipy.linalg.cython_blas cimport sgemm, dgemm, cgemm, zgemm, sgemv, dgemv, cgemv, zgemv

cimport numpy as cnp
import numpy as np

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
    void convt_blas_form_inputs_f32(const float* x, int64_t sx_c, int64_t count,
                                    int64_t spans, int64_t m, const float* bt, int first,
                                    int n_components, float* v, int64_t ld,
                                    int64_t step) noexcept nogil
    int convt_blas_form_outputs_s1_f32(const float* p0, int64_t step, int64_t rows,
                                       int64_t count, int64_t spans, int64_t m,
                                       const float* at, const float* bias, float* dst,
                                       int64_t out_step) noexcept nogil
    void convt_blas_depthwise_two_taps_f32(const float* x, int64_t width, const float* tap_a,
                                           const float* tap_b, const float* bias,
                                           int64_t channels, int64_t count, int64_t out_step,
                                           float* acc) noexcept nogil

include "plan.pxi"
include "winograd_plan.pxi"
include "sizes.pxi"
include "blas.pxi"
include "col2im.pxi"
include "gemm_path.pxi"
include "depthwise.pxi"
include "winograd_forms.pxi"
include "winograd.pxi"
include "backward_plan.pxi"
include "backward.pxi"


cdef int _conv_transpose1d(const convt_blas_params* p,
                           const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                           const scalar_t* w, const scalar_t* prepared, int64_t prepared_len,
                           const scalar_t* bias, scalar_t* out,
                           scalar_t* workspace, int64_t workspace_len,
                           int n_threads) noexcept nogil:
    """The convolution for a caller that brings no plan (the C API): plans ``p`` under
    the Winograd switch as set now, then runs it. ``prepared``: NULL, or the weight as
    _prepare_weights lays it out (``prepared_len`` elements), used when the plan takes it."""
    cdef Plan plan
    cdef bint allowed = WINOGRAD_ENABLED
    cdef int status = _make_plan_with(p, &plan, allowed, prepared != NULL)
    if status != CONVT_BLAS_OK:
        return status
    if (workspace != NULL and workspace_len < plan.worker_elements * _worker_count(&plan, n_threads)
            and _winograd_shape(p)):
        # Sized while the switch was the other way (set_winograd from another
        # thread): the plan that workspace was sized for runs instead of failing.
        _make_plan_with(p, &plan, not allowed, prepared != NULL)
    return _run_plan(p, &plan, x, sx_n, sx_c, sx_l, w, prepared, prepared_len, bias, out,
                     workspace, workspace_len, n_threads, NULL)


cdef int _run_plan(const convt_blas_params* p, const Plan* plan,
                   const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                   const scalar_t* w, const scalar_t* prepared, int64_t prepared_len,
                   const scalar_t* bias, scalar_t* out,
                   scalar_t* workspace, int64_t workspace_len,
                   int n_threads, const scalar_t* weight_rows) noexcept nogil:
    """Run ``plan``, made for ``p`` by _make_plan_with: checks the operands against it
    and never plans again. ``weight_rows``: NULL, or the weight as lay_out_weight_rows lays it
    out, which GEMM-path plans read instead of ``w`` (the caller checks its length)."""
    cdef int64_t per_worker, workers
    cdef bint owns_workspace = False
    cdef int status = CONVT_BLAS_OK
    if x == NULL or w == NULL or out == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    if plan.prepared_weights and prepared_len != _prepared_elements(p, plan):
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
    workers = _worker_count(plan, n_threads)
    if workspace == NULL:
        workspace = <scalar_t*>malloc(<size_t>(per_worker * workers) * sizeof(scalar_t))
        if workspace == NULL:
            return CONVT_BLAS_ERR_NO_MEMORY
        owns_workspace = True
    elif workspace_len < per_worker * workers:
        return CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL

    if plan.winograd:
        status = _run_winograd(p, plan, x, sx_n, sx_c, sx_l, w, prepared, bias, out,
                               workspace, per_worker, workers)
        if status == WINOGRAD_NOT_FINITE:
            _redo_non_finite_samples(p, x, sx_n, sx_c, sx_l, w, bias, out, workspace,
                                     per_worker * workers, n_threads)
            status = CONVT_BLAS_OK
    else:
        _run_gemm_plan(p, plan, x, sx_n, sx_c, sx_l, w, weight_rows, bias, out, workspace,
                       per_worker, workers)
    if owns_workspace:
        free(workspace)
    return status


cdef void _run_gemm_plan(const convt_blas_params* p, const Plan* plan,
                         const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                         const scalar_t* w, const scalar_t* weight_rows, const scalar_t* bias,
                         scalar_t* out, scalar_t* workspace, int64_t per_worker,
                         int64_t workers) noexcept nogil:
    cdef int64_t unit, worker
    # Per worker: which input its copy holds (see _run_merged and _run_unit);
    # without this memory each unit lays it out again.
    cdef int64_t* held_copy = NULL
    if plan.row_block > 0:
        _run_shared_columns(p, plan, x, sx_n, sx_c, sx_l, w, weight_rows, bias, out,
                            workspace, workers)
        return
    if plan.depthwise:
        if workers > 1:
            for unit in prange(plan.n_units, num_threads=<int>workers, schedule='guided'):
                _run_depthwise_plan_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, bias, out,
                                         workspace + threadid() * per_worker)
        else:
            for unit in range(plan.n_units):
                _run_depthwise_plan_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, bias, out,
                                         workspace)
        return
    if plan.samples_per_unit > 1 or plan.input_rows:
        held_copy = <int64_t*>malloc(<size_t>workers * sizeof(int64_t))
        if held_copy != NULL:
            for worker in range(workers):
                held_copy[worker] = -1
    if workers > 1:
        for unit in prange(plan.n_units, num_threads=<int>workers, schedule='guided'):
            _run_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, weight_rows, bias, out,
                      workspace + threadid() * per_worker,
                      held_copy + threadid() if held_copy != NULL else NULL)
    else:
        for unit in range(plan.n_units):
            _run_unit(p, plan, unit, x, sx_n, sx_c, sx_l, w, weight_rows, bias, out, workspace,
                      held_copy)
    free(held_copy)


cdef void _run_shared_columns(const convt_blas_params* p, const Plan* plan,
                              const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                              const scalar_t* w, const scalar_t* weight_rows,
                              const scalar_t* bias, scalar_t* out, scalar_t* workspace,
                              int64_t workers) noexcept nogil:
    """Stage by stage (element, group, tile): the GEMM's row blocks into one column
    buffer shared by the workers, then col2im by channel blocks.

    The workspace holds the shared columns, then each worker's scratch (a
    vector for _gemm, then phase rows): at most workers * worker_elements.
    """
    cdef int64_t stage, unit
    cdef int64_t scratch = plan.worker_elements - plan.shared_elements
    cdef scalar_t* columns = workspace
    cdef scalar_t* workers_scratch = workspace + plan.shared_elements
    for stage in range(p.batch * p.groups * plan.n_tiles):
        if workers > 1:
            for unit in prange(plan.n_row_blocks, num_threads=<int>workers, schedule='static'):
                _run_stage_rows(p, plan, stage, unit, x, sx_n, sx_c, sx_l, w, weight_rows,
                                columns, workers_scratch + threadid() * scratch)
            for unit in prange(plan.n_blocks, num_threads=<int>workers, schedule='static'):
                _run_stage_col2im(p, plan, stage, unit, x, sx_n, sx_c, sx_l, w, bias, out,
                                  columns, workers_scratch + threadid() * scratch + plan.c_in_g)
        else:
            for unit in range(plan.n_row_blocks):
                _run_stage_rows(p, plan, stage, unit, x, sx_n, sx_c, sx_l, w, weight_rows,
                                columns, workers_scratch)
            for unit in range(plan.n_blocks):
                _run_stage_col2im(p, plan, stage, unit, x, sx_n, sx_c, sx_l, w, bias, out,
                                  columns, workers_scratch + plan.c_in_g)


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


# One exported entry point per dtype (the C API), and the dtype dispatch of the
# Python-facing helpers below: generated from entries.pxi.tp by setup.py.
include "entries.pxi"


include "api.pxi"
