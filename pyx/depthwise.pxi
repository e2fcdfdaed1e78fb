# Depthwise layers of short inputs: channels side by side, taps in registers.

cdef void _run_depthwise_unit(const convt_blas_params* p, const Plan* plan, int64_t n,
                              int64_t g0, int64_t n_groups, int64_t start, int64_t stop,
                              int64_t l_lo, int64_t l_hi,
                              const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                              const scalar_t* w, const scalar_t* bias, scalar_t* out,
                              scalar_t* worker) noexcept nogil:
    """Direct taps of ``n_groups`` depthwise channels from g0, outputs [start, stop), one sample.

    One channel's taps are a handful of multiply-adds per output, too few
    for vector code along a row. The unit lays its input, taps and outputs
    out position-major instead, so that every multiply-add runs across the
    channels (vectorised), then writes the outputs back channel-major. Each
    output sums bias, then its taps in order of k (of l descending), as
    _sum_phase does: the same bits as the phase-by-phase path.
    """
    cdef int64_t K = p.kernel_size, s = p.stride, pad = p.padding, L = p.in_length
    cdef int64_t width = plan.groups_per_unit, n_cols = l_hi - l_lo + 1
    cdef int64_t o, q, r, k, l, c
    cdef scalar_t* x_t = worker                          # (n_cols, width)
    cdef scalar_t* out_t = worker + plan.max_columns * width   # (stop - start, width)
    cdef scalar_t* w_t = out_t + plan.tile * width       # (K, width)
    cdef int64_t n_taps, q_first, q_last
    cdef int64_t two_taps_lo = 0, two_taps_hi = 0   # phases done in SSE (none unless float32)
    cdef scalar_t* acc
    cdef const scalar_t* tap
    cdef const scalar_t* x_l
    cdef const scalar_t* tap_b
    cdef const scalar_t* x_b
    cdef const scalar_t* taps[2]
    cdef const scalar_t* inputs[2]
    cdef scalar_t zero = 0
    if n_cols > 0:
        _transpose(x + n * sx_n + g0 * sx_c + l_lo * sx_l, sx_c, sx_l, n_groups, n_cols,
                   x_t, width)
    _transpose(w + g0 * K, K, 1, n_groups, K, w_t, width)
    # float32, whole vectors of channels: phases whose outputs have exactly
    # two taps (k = r and r + s, K <= r + 2s) take them in SSE along the
    # phase (from input positions 1..L-1), the loop below skips those.
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and n_groups % 4 == 0:
            two_taps_lo = _max(0, K - 2 * s)
            two_taps_hi = _min(s, K - s)        # phases [two_taps_lo, two_taps_hi)
            for r in range(two_taps_lo, two_taps_hi):
                q_first = _max(1, _ceil_div(start + pad - r, s))
                q_last = _min(L - 1, _floor_div(stop - 1 + pad - r, s))
                if q_first <= q_last:
                    convt_blas_depthwise_two_taps_f32(
                        x_t + (q_first - 1 - l_lo) * width, width, w_t + r * width,
                        w_t + (r + s) * width, bias + g0 if bias != NULL else NULL, n_groups,
                        q_last - q_first + 1, s * width,
                        out_t + (q_first * s + r - pad - start) * width)
    q = _floor_div(start + pad, s)
    r = start + pad - q * s
    for o in range(start, stop):
        if two_taps_lo <= r < two_taps_hi and 1 <= q < L:
            r += 1  # done above
            if r == s:
                r = 0
                q += 1
            continue
        acc = out_t + (o - start) * width
        # Taps k = r, r + s, ... reach o from l = q, q - 1, ... (those inside the input).
        n_taps = 0
        k = r
        l = q
        while k < K and l >= 0 and n_taps < 2:
            if l < L:
                taps[n_taps] = w_t + k * width
                inputs[n_taps] = x_t + (l - l_lo) * width
                n_taps += 1
            k += s
            l -= 1
        # The first two taps summed in registers (most layers: K <= 2 * stride),
        # then any others in order; the sums run in the same order either way.
        if n_taps == 0:
            for c in range(n_groups):
                acc[c] = bias[g0 + c] if bias != NULL else zero
        elif n_taps == 1:
            tap = taps[0]
            x_l = inputs[0]
            for c in range(n_groups):
                acc[c] = (bias[g0 + c] if bias != NULL else zero) + tap[c] * x_l[c]
        else:
            tap = taps[0]
            x_l = inputs[0]
            tap_b = taps[1]
            x_b = inputs[1]
            for c in range(n_groups):
                acc[c] = (((bias[g0 + c] if bias != NULL else zero) + tap[c] * x_l[c])
                          + tap_b[c] * x_b[c])
            # Taps past the second, from where the search above stopped.
            while k < K and l >= 0:
                if l < L:
                    tap = w_t + k * width
                    x_l = x_t + (l - l_lo) * width
                    for c in range(n_groups):
                        acc[c] += tap[c] * x_l[c]
                k += s
                l -= 1
        r += 1
        if r == s:
            r = 0
            q += 1
    _transpose(out_t, width, 1, stop - start, n_groups,
               out + (n * p.out_channels + g0) * plan.out_length + start, plan.out_length)
