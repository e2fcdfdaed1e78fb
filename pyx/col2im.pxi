# col2im: the columns a GEMM made, added into the output at stride, dilation and
# padding, tap by tap or phase by phase.

cdef void _scatter_taps(const convt_blas_params* p, const Plan* plan, const scalar_t* bias,
                        int64_t n_channels, int64_t start, int64_t stop, int64_t l_lo,
                        int64_t l_hi, const scalar_t* columns, scalar_t* out) noexcept nogil:
    """col2im for position-major columns: the K taps of (l, c) land side by side.

    ``out`` and ``bias`` point at the unit's first channel. The columns are
    read in order, one input position at a time across all channels: the
    output rows it touches then stay in cache from one position to the next
    (a channel at a time would stride through the whole column buffer once
    per channel). Each output element still receives its taps in order of l.
    Positions whose taps all fall inside [start, stop) take a plain
    contiguous loop (d = 1).
    """
    cdef int64_t K = p.kernel_size, s = p.stride, d = p.dilation, pad = p.padding
    cdef int64_t L_out = plan.out_length, m_cols = n_channels * K
    cdef int64_t c, l, k, i, origin, l_inner_lo, l_inner_hi, k_first, k_last
    cdef scalar_t* out_row
    cdef const scalar_t* taps
    cdef scalar_t value
    l_inner_lo = _max(l_lo, _ceil_div(start + pad, s))
    l_inner_hi = _min(l_hi, _floor_div(stop - 1 + pad - d * (K - 1), s))
    if d != 1 or l_inner_lo > l_inner_hi:
        l_inner_lo = l_hi + 1
        l_inner_hi = l_hi
    for c in range(n_channels):
        out_row = out + c * L_out
        value = bias[c] if bias != NULL else 0
        for i in range(start, stop):
            out_row[i] = value
    for l in range(l_lo, l_hi + 1):
        origin = l * s - pad
        taps = columns + (l - l_lo) * m_cols
        out_row = out + origin
        if l_inner_lo <= l <= l_inner_hi:
            for c in range(n_channels):
                for k in range(K):
                    out_row[k] += taps[k]
                out_row += L_out
                taps += K
        else:
            k_first = _max(0, _ceil_div(start - origin, d))
            k_last = _min(K - 1, _floor_div(stop - 1 - origin, d))
            for c in range(n_channels):
                for k in range(k_first, k_last + 1):
                    out_row[k * d] += taps[k]
                out_row += L_out
                taps += K


cdef inline void _sum_phase(const Plan* plan, int64_t K, int64_t s, int64_t d, int64_t r,
                            int64_t q_first, int64_t q_last, int64_t l_lo, int64_t l_hi,
                            int64_t c, scalar_t value, const scalar_t* columns,
                            int64_t n_cols, const scalar_t* x_group, int64_t sx_c,
                            int64_t sx_l, const scalar_t* w_block, scalar_t* row) noexcept nogil:
    """row[q] = value + the taps of phase r of channel c, for q in [q_first, q_last].

    Taps of phase r are those with k*d = j*s + r; tap k of input position
    l = q - j lands on q. With d = 1 they are k = r, r + s, ... (j = 0, 1, ...).
    """
    cdef int64_t k, j, q, q_a, q_b, i
    cdef const scalar_t* col_row
    cdef const scalar_t* x_row
    cdef scalar_t tap
    for q in range(q_first, q_last + 1):
        row[q] = value
    k = r if d == 1 else 0
    j = 0
    while k < K:
        if d != 1:
            if (k * d) % s != r:
                k += 1
                continue
            j = (k * d - r) / s
        q_a = _max(q_first, l_lo + j)
        q_b = _min(q_last, l_hi + j)
        if plan.direct_taps:
            for i in range(plan.c_in_g):
                tap = w_block[(i * plan.c_out_g + c) * K + k]
                x_row = x_group + i * sx_c - j * sx_l
                if sx_l == 1:
                    for q in range(q_a, q_b + 1):
                        row[q] += tap * x_row[q]
                else:
                    for q in range(q_a, q_b + 1):
                        row[q] += tap * x_row[q * sx_l]
        else:
            col_row = columns + (c * K + k) * n_cols - l_lo - j
            for q in range(q_a, q_b + 1):
                row[q] += col_row[q]
        if d == 1:
            k += s
            j += 1
        else:
            k += 1


cdef void _gather_phases(const convt_blas_params* p, const Plan* plan, const scalar_t* bias,
                         int64_t n_groups, int64_t n_channels, int64_t start, int64_t stop,
                         int64_t l_lo, int64_t l_hi, const scalar_t* columns,
                         const scalar_t* x_group, int64_t sx_c, int64_t sx_l,
                         const scalar_t* w_block, scalar_t* phases, scalar_t* out) noexcept nogil:
    """col2im for channel-major columns, as a gather one output phase at a time.

    Output position o with o + pad = q*s + r belongs to phase r. Each phase's
    taps are contiguous shifted rows of the columns: they are summed into one
    row of ``phases`` (vectorised adds, starting from the bias, see
    _sum_phase), and the rows are then interleaved into the output, written
    once, in order. Row r_off holds the tile's outputs first + r_off + m*s.
    With ``plan.direct_taps`` the taps come from ``x_group`` and ``w_block``,
    and the unit may span ``n_groups`` groups (pointers are those of its
    first group); otherwise ``n_groups`` is 1.
    """
    cdef int64_t K = p.kernel_size, s = p.stride, d = p.dilation, pad = p.padding
    cdef int64_t L_out = plan.out_length, n_cols = l_hi - l_lo + 1
    cdef int64_t row_len = _phase_row_length(plan, s)
    cdef int64_t first = start + pad, last = stop - 1 + pad   # o + pad, in the tile
    cdef int64_t n = stop - start, n_rows = _min(s, n), n_full = n / s
    # first = q0*s + r0 and last = q1*s + r1: every phase's bounds follow
    # from these without a division per channel.
    cdef int64_t q0 = _floor_div(first, s), q1 = _floor_div(last, s)
    cdef int64_t r0 = first - q0 * s, r1 = last - q1 * s
    cdef int64_t g, c, r, r_off, m, i, q_first, q_last
    cdef int64_t x_group_step = plan.c_in_g * sx_c
    cdef int64_t w_group_step = plan.c_in_g * plan.c_out_g * K
    cdef int64_t out_group_step = plan.c_out_g * L_out
    cdef scalar_t* out_row
    cdef scalar_t* dst
    cdef const scalar_t* row_a
    cdef const scalar_t* row_b
    cdef scalar_t value
    for g in range(n_groups):
        for c in range(n_channels):
            value = bias[g * plan.c_out_g + c] if bias != NULL else 0
            for r_off in range(n_rows):
                r = r0 + r_off
                q_first = q0
                if r >= s:
                    r -= s
                    q_first += 1
                q_last = q1 if r <= r1 else q1 - 1
                _sum_phase(plan, K, s, d, r, q_first, q_last, l_lo, l_hi, c, value,
                           columns, n_cols, x_group + g * x_group_step, sx_c, sx_l,
                           w_block + g * w_group_step, phases + r_off * row_len - q_first)
            out_row = out + g * out_group_step + c * L_out + start
            if s == 1:
                for i in range(n):
                    out_row[i] = phases[i]
            elif s == 2:
                # The most common stride: a two-way interleave the compiler vectorises.
                row_a = phases
                row_b = phases + row_len
                for i in range(n_full):
                    out_row[2 * i] = row_a[i]
                    out_row[2 * i + 1] = row_b[i]
                if n % 2:
                    out_row[n - 1] = row_a[n_full]
            else:
                # Row by row: the tile's output row is in cache by now.
                for r_off in range(n_rows):
                    row_a = phases + r_off * row_len
                    dst = out_row + r_off
                    for m in range((n - 1 - r_off) / s + 1):
                        dst[m * s] = row_a[m]
