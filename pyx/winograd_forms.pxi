# Winograd's F(m, r) for layers with K = r * stride, r = 3 or 4 (F(3,2), r = 2, has
# hand-vectorised transforms of its own in winograd.pxi): the matrices, built from
# their interpolation points, and the weight, input and output transforms.
#
# Every phase of the layer is an r-tap convolution along the input's strides
# (see _run_winograd_unit), so m output strides take alpha = m + r - 1 products
# instead of m * r. With the points 0, 1, -1, 1/2, -2 and infinity (alpha = 6)
# F(4,3) takes half the multiply-adds of K = 3*stride layers and F(3,4) half
# of K = 4*stride ones. Those points round less than 0, +-1, +-2: on
# 256-1026 input channels F(3,4)'s float32 error was 2.7x the GEMM path's
# (5.2x with +-2), F(4,3)'s 3.4x (7.5x).

cdef int FORM_COMPONENTS = 6
cdef double[5] FORM_POINTS = [0.0, 1.0, -1.0, 0.5, -2.0]


cdef struct WinogradForm:
    int span                 # m: output strides per span
    int taps                 # r: taps per phase, K / stride
    # Product k of a span is (G g)_k (BT d)_k, g the phase's taps from the last,
    # d the span's inputs; output stride i of the span is sum_k AT[i, k] P_k.
    double at[4 * 6]         # AT (m x alpha), row-major
    double power[6 * 4]      # G = diag(inverse) * power: point^j (alpha x r)
    double inverse[6]        # 1 / prod_{l != k} (point_k - point_l); 1 at infinity
    double bt[6 * 6]         # BT (alpha x alpha): polynomial coefficients, exact


cdef WinogradForm[2] WINOGRAD_FORMS  # r = 3 (F(4,3)) and r = 4 (F(3,4))


cdef void _make_form(WinogradForm* form, int span, int taps) noexcept nogil:
    """Toom-Cook's matrices for the points in FORM_POINTS and infinity.

    Row k of BT holds the coefficients of prod_{l != k} (x - point_l) (all
    five points for infinity's row), so that BT d interpolates; G scales the
    taps' values at each point by that product's value there. All entries
    but ``inverse`` are exact in float32.
    """
    cdef int n = FORM_COMPONENTS, k, l, i, j, degree
    cdef double value, f
    cdef double[6] poly
    form.span = span
    form.taps = taps
    for k in range(n):
        for j in range(n):
            poly[j] = 0
        poly[0] = 1
        degree = 0
        f = 1
        for l in range(n - 1):
            if l == k:
                continue
            # poly *= (x - point_l)
            for j in range(degree + 1, 0, -1):
                poly[j] = poly[j - 1] - FORM_POINTS[l] * poly[j]
            poly[0] = -FORM_POINTS[l] * poly[0]
            degree += 1
            if k < n - 1:
                f *= FORM_POINTS[k] - FORM_POINTS[l]
        for j in range(n):
            form.bt[k * n + j] = poly[j]
        form.inverse[k] = 1.0 / f
        for j in range(taps):
            if k < n - 1:
                value = 1.0
                for i in range(j):
                    value *= FORM_POINTS[k]
            else:
                value = 1.0 if j == taps - 1 else 0.0
            form.power[k * taps + j] = value
        for i in range(span):
            if k < n - 1:
                value = 1.0
                for j in range(i):
                    value *= FORM_POINTS[k]
            else:
                value = 1.0 if i == span - 1 else 0.0
            form.at[i * n + k] = value


_make_form(&WINOGRAD_FORMS[0], 4, 3)
_make_form(&WINOGRAD_FORMS[1], 3, 4)


cdef inline const WinogradForm* _winograd_form(int64_t taps) noexcept nogil:
    """The form for r = ``taps`` (3 or 4)."""
    return &WINOGRAD_FORMS[taps - 3]


cdef inline void _form_weight_row(const scalar_t* src, int64_t n_channels, int64_t s,
                                   int r, const scalar_t* power, scalar_t inverse,
                                   scalar_t* dst) noexcept nogil:
    """One input channel's component: ``src`` its taps (K = r*s per channel). Called
    with a literal ``r`` and, for the common strides, ``s``, so that the compiler
    turns the phases (or, at stride 1, the channels) into vector code."""
    cdef int64_t c, ph
    cdef int j
    cdef scalar_t acc
    cdef const scalar_t* taps
    for c in range(n_channels):
        taps = src + c * r * s + (r - 1) * s
        for ph in range(s):
            acc = power[0] * taps[ph]
            for j in range(1, r):
                acc = acc + power[j] * taps[ph - j * s]
            dst[c * s + ph] = acc * inverse


cdef void _form_weights(const convt_blas_params* p, const WinogradForm* form,
                        int64_t c_out_g, const scalar_t* weight_rows, int64_t n_rows,
                        int64_t n_channels, int64_t ld, int first, int count, int64_t step,
                        scalar_t* weights) noexcept nogil:
    """_winograd_weights for F(m, r): component k of input channel i is, at c*s + ph,
    inverse_k * sum_j point_k^j W_{r-1-j}[i, c, ph], W_j the taps j*s + ph."""
    cdef int64_t s = p.stride, K = p.kernel_size, i
    cdef int r = form.taps, component, j
    cdef scalar_t[4] power
    cdef scalar_t inverse
    cdef const scalar_t* src
    cdef scalar_t* dst
    for i in range(n_rows):
        src = weight_rows + i * c_out_g * K
        for component in range(first, first + count):
            for j in range(r):
                power[j] = form.power[component * r + j]
            inverse = form.inverse[component]
            dst = weights + (component - first) * step + i * ld
            if r == 3:
                if s == 1:
                    _form_weight_row(src, n_channels, 1, 3, power, inverse, dst)
                elif s == 2:
                    _form_weight_row(src, n_channels, 2, 3, power, inverse, dst)
                elif s == 4:
                    _form_weight_row(src, n_channels, 4, 3, power, inverse, dst)
                elif s == 8:
                    _form_weight_row(src, n_channels, 8, 3, power, inverse, dst)
                else:
                    _form_weight_row(src, n_channels, s, 3, power, inverse, dst)
            elif s == 1:
                _form_weight_row(src, n_channels, 1, 4, power, inverse, dst)
            elif s == 2:
                _form_weight_row(src, n_channels, 2, 4, power, inverse, dst)
            elif s == 4:
                _form_weight_row(src, n_channels, 4, 4, power, inverse, dst)
            elif s == 8:
                _form_weight_row(src, n_channels, 8, 4, power, inverse, dst)
            else:
                _form_weight_row(src, n_channels, s, 4, power, inverse, dst)


cdef inline void _form_span(const WinogradForm* form, const scalar_t* bt,
                            const scalar_t* row, int64_t sx_l, int64_t L, int64_t t,
                            int first, int count, int64_t step, scalar_t* v) noexcept nogil:
    """Components of span t's input transform (d_l = x[m t - (r - 1) + l], zero outside):
    BT's nonzero terms in order of l, the first alone (convt_blas_form_inputs_f32's
    operations)."""
    cdef int n = FORM_COMPONENTS, k, l
    cdef int64_t position = form.span * t - (form.taps - 1)
    cdef scalar_t[6] d
    cdef scalar_t acc, zero = 0
    cdef bint started
    for l in range(n):
        d[l] = row[(position + l) * sx_l] if 0 <= position + l < L else zero
    for k in range(first, first + count):
        started = False
        acc = zero
        for l in range(n):
            if bt[k * n + l] != zero:
                acc = acc + bt[k * n + l] * d[l] if started else bt[k * n + l] * d[l]
                started = True
        v[(k - first) * step] = acc


cdef void _form_inputs(const convt_blas_params* p, const WinogradForm* form,
                       const scalar_t* x_sample, int64_t sx_c, int64_t sx_l, int64_t c_in_g,
                       int64_t t0, int64_t t1, int first, int count, int64_t step,
                       scalar_t* inputs) noexcept nogil:
    """_winograd_inputs for F(m, r): components of spans t0..t1-1 as rows of
    (spans, C_in/g) matrices ``step`` apart, position-major, in blocks of
    channels and spans so that the rows read and written stay in cache.
    float32 with unit stride along positions: four channels at a time in SSE
    for spans whose eight positions from m t - (r - 1) lie in the input."""
    cdef int64_t m = form.span, L = p.in_length, i, i0, i1, t, ta, tb, lo, hi
    cdef int64_t back = form.taps - 1, vector_channels = 0
    cdef int k
    cdef scalar_t[36] bt
    for k in range(FORM_COMPONENTS * FORM_COMPONENTS):
        bt[k] = form.bt[k]
    lo = _min(t1, _max(t0, _ceil_div(back, m)))
    hi = lo
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and sx_l == 1 and L + back >= 8:
            vector_channels = c_in_g - c_in_g % 4
            hi = _max(lo, _min(t1, (L + back - 8) / m + 1))
    ta = t0
    while ta < t1:
        tb = _min(t1, ta + WINOGRAD_INPUT_SPANS)
        i0 = 0
        while i0 < c_in_g:
            i1 = _min(c_in_g, i0 + WINOGRAD_INPUT_CHANNELS)
            for t in range(ta, tb):
                if scalar_t is float:
                    if lo <= t < hi and i1 <= vector_channels:
                        continue
                for i in range(i0, i1):
                    _form_span(form, bt, x_sample + i * sx_c, sx_l, L, t,
                               first, count, step, inputs + (t - t0) * c_in_g + i)
            if scalar_t is float:
                if i1 <= vector_channels and _max(ta, lo) < _min(tb, hi):
                    convt_blas_form_inputs_f32(
                        x_sample + i0 * sx_c + m * _max(ta, lo) - back, sx_c, i1 - i0,
                        _min(tb, hi) - _max(ta, lo), m, bt, first, count,
                        inputs + (_max(ta, lo) - t0) * c_in_g + i0, c_in_g, step)
            i0 = i1
        ta = tb


cdef int _form_outputs(const convt_blas_params* p, const Plan* plan, const WinogradForm* form,
                       const scalar_t* bias_group, int64_t j0, int64_t n_rows, int64_t t0,
                       int64_t t1, const scalar_t* products, int64_t product_step,
                       scalar_t* out_group) noexcept nogil:
    """_winograd_outputs for F(m, r) and GEMM rows j0..j0+n_rows-1 (row j: channel
    j / s, phase j % s): stride m t + i of each row is bias + sum_k AT[i, k] P_k
    (k in order, zero entries skipped), phase ph at output (m t + i) s + ph -
    padding. ``bias_group``, ``out_group``: the group's. Checks only what it
    stores (another unit may hold the channel's other phases); returns
    nonzero if a value stored is not finite."""
    cdef int64_t s = p.stride, m = form.span, L_out = plan.out_length
    cdef int64_t c, t, i, ph, ph_lo, ph_hi, o, base, inner_lo, inner_hi
    cdef int64_t vector_rows = 0  # rows j0.. that SSE stored (stride 1: rows are channels)
    cdef int n = FORM_COMPONENTS, k
    cdef scalar_t[24] at
    cdef scalar_t a, b, acc
    cdef scalar_t zero = 0
    cdef const scalar_t* q
    cdef scalar_t* out_row
    cdef scalar_t* d
    cdef int non_finite = 0
    for k in range(m * n):
        at[k] = form.at[k]
    # Spans inner_lo..inner_hi-1 have all m s outputs inside the output.
    inner_lo = _min(t1, _max(t0, _ceil_div(p.padding, m * s)))
    inner_hi = _max(inner_lo, _min(t1, (L_out + p.padding) / (m * s)))
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and s == 1 and inner_hi > inner_lo and n_rows >= 4:
            # Rows are channels: four at a time, checked in registers as stored.
            vector_rows = n_rows - n_rows % 4
            non_finite |= convt_blas_form_outputs_s1_f32(
                products + (inner_lo - t0) * n_rows, product_step, n_rows, vector_rows,
                inner_hi - inner_lo, m, at, bias_group + j0 if bias_group != NULL else NULL,
                out_group + j0 * L_out + m * inner_lo - p.padding, L_out)
    for c in range(j0 / s, (j0 + n_rows - 1) / s + 1):
        ph_lo = _max(j0, c * s) - c * s
        ph_hi = _min(j0 + n_rows, (c + 1) * s) - c * s
        out_row = out_group + c * L_out
        b = bias_group[c] if bias_group != NULL else zero
        for t in range(t0, t1):
            if s == 1 and c - j0 < vector_rows and inner_lo <= t < inner_hi:  # SSE's
                continue
            q = products + (t - t0) * n_rows + c * s - j0
            base = m * t * s - p.padding
            if base >= 0 and base + m * s <= L_out:
                for i in range(m):
                    d = out_row + base + i * s
                    for ph in range(ph_lo, ph_hi):
                        d[ph] = b
                    for k in range(n):
                        a = at[i * n + k]
                        if a != zero:
                            for ph in range(ph_lo, ph_hi):
                                d[ph] = d[ph] + a * q[k * product_step + ph]
                    for ph in range(ph_lo, ph_hi):
                        non_finite |= d[ph] - d[ph] != zero
            else:
                for i in range(m):
                    for ph in range(ph_lo, ph_hi):
                        o = base + i * s + ph
                        if 0 <= o < L_out:
                            acc = b
                            for k in range(n):
                                a = at[i * n + k]
                                if a != zero:
                                    acc = acc + a * q[k * product_step + ph]
                            out_row[o] = acc
                            non_finite |= acc - acc != zero
    return non_finite
