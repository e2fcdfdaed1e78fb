# The one place that maps row-major arrays onto column-major BLAS, and the weight
# laid out as the GEMMs read it fastest (its rows).

cdef extern from *:
    """
    #if defined(_WIN32)
    static const char *convt_blas_blas_corename(const void *blas_function) { return NULL; }
    #else
    #include <dlfcn.h>
    /* OpenBLAS's name for the kernels it runs, asked of the library that serves
       ``blas_function`` (dlsym on its handle searches its dependencies too), or NULL. */
    static const char *convt_blas_blas_corename(const void *blas_function) {
        static const char *const names[] = {
            "scipy_openblas_get_corename", "scipy_openblas_get_corename64_",
            "openblas_get_corename", "openblas_get_corename64_"};
        const char *(*corename)(void) = NULL;
        const char *name = NULL;
        Dl_info info;
        void *library;
        size_t i;
        if (!dladdr(blas_function, &info) || info.dli_fname == NULL)
            return NULL;
        library = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
        if (library == NULL)
            return NULL;
        for (i = 0; i < sizeof(names) / sizeof(names[0]) && corename == NULL; i++)
            *(void **)(&corename) = dlsym(library, names[i]);
        if (corename != NULL)
            name = corename();  /* a string OpenBLAS keeps, loaded while SciPy is */
        dlclose(library);
        return name;
    }
    #endif
    """
    const char* convt_blas_blas_corename(const void* blas_function) noexcept nogil


# OpenBLAS cores whose sgemm/dgemm take GEMMs of at most SMALL_GEMM_WORK
# multiply-adds through small-matrix kernels that do not pack their operands.
cdef tuple SMALL_MATRIX_CORES = (b"skylakex", b"cooperlake", b"sapphirerapids")


cdef bint _blas_has_small_matrix_kernels():
    """Whether the BLAS behind scipy.linalg.cython_blas has those kernels."""
    cdef const char* name = convt_blas_blas_corename(<const void*>sgemm)
    return name != NULL and (<bytes>name).lower() in SMALL_MATRIX_CORES


BLAS_SMALL_MATRIX_KERNELS = _blas_has_small_matrix_kernels()


cdef inline void _gemm(bint trans_a, bint trans_b, int m, int n, int k,
                       const scalar_t* a, int lda, const scalar_t* b, int ldb,
                       scalar_t* c, int ldc, scalar_t* scratch,
                       bint accumulate=False) noexcept nogil:
    """C = op(A) @ op(B) (C += op(A) @ op(B) if ``accumulate``) for row-major A, B,
    C: the only call into BLAS.

    Column-major BLAS sees a row-major matrix as its transpose, so it is
    asked for C^T = op(B)^T @ op(A)^T: operands swapped, m and n swapped.
    ``scratch`` (k elements, or NULL) holds a strided row of op(A) for the
    matrix-vector path.
    """
    cdef char blas_ta = b'T' if trans_b else b'N'
    cdef char blas_tb = b'T' if trans_a else b'N'
    cdef scalar_t one = 1
    cdef scalar_t beta = 1 if accumulate else 0
    cdef int inc_a, inc_c = 1, row, i
    cdef const scalar_t* a_row
    if m <= GEMV_MAX_ROWS and not trans_b:
        # A few output rows: each is C[i]^T = B^T a_i, a matrix-vector product
        # that streams B once without packing it (a GEMM packs all of B first).
        for row in range(m):
            a_row = a + (row if trans_a else row * lda)
            inc_a = lda if trans_a else 1
            if trans_a and scratch != NULL:
                # BLAS may round a strided vector unlike a contiguous one
                # (OpenBLAS's Haswell sgemv does): a contiguous copy gives the
                # same bits for channels-first and channels-last input.
                for i in range(k):
                    scratch[i] = a_row[i * lda]
                a_row = scratch
                inc_a = 1
            if scalar_t is float:
                sgemv(&blas_ta, &n, &k, &one, <float*>b, &ldb, <float*>a_row, &inc_a,
                      &beta, c + row * ldc, &inc_c)
            elif scalar_t is double:
                dgemv(&blas_ta, &n, &k, &one, <double*>b, &ldb, <double*>a_row, &inc_a,
                      &beta, c + row * ldc, &inc_c)
            elif scalar_t is cython.floatcomplex:
                cgemv(&blas_ta, &n, &k, &one, <float complex*>b, &ldb, <float complex*>a_row,
                      &inc_a, &beta, c + row * ldc, &inc_c)
            else:
                zgemv(&blas_ta, &n, &k, &one, <double complex*>b, &ldb, <double complex*>a_row,
                      &inc_a, &beta, c + row * ldc, &inc_c)
        return
    if scalar_t is float:
        sgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <float*>b, &ldb,
              <float*>a, &lda, &beta, c, &ldc)
    elif scalar_t is double:
        dgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <double*>b, &ldb,
              <double*>a, &lda, &beta, c, &ldc)
    elif scalar_t is cython.floatcomplex:
        cgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <float complex*>b, &ldb,
              <float complex*>a, &lda, &beta, c, &ldc)
    else:
        zgemm(&blas_ta, &blas_tb, &n, &m, &k, &one, <double complex*>b, &ldb,
              <double complex*>a, &lda, &beta, c, &ldc)


cdef inline bint _blocked_either_way(int64_t m, int64_t n, int64_t k) noexcept nogil:
    """Whether a GEMM with an m-row result may read the weight's rows (lay_out_weight_rows).

    Only GEMMs that BLAS runs blocked either way do: a blocked GEMM packs
    both layouts into the same panels, so the bits are the same. Matrix-vector
    rows (_gemm) and OpenBLAS's small-matrix kernels (at most 10^6
    multiply-adds; their variants differ by transposition) keep the weight.
    """
    return m > GEMV_MAX_ROWS and <double>m * <double>n * <double>k > SMALL_GEMM_WORK


cdef inline bint _reads_rows(const scalar_t* weight_rows, int64_t m, int64_t n,
                             int64_t k) noexcept nogil:
    return weight_rows != NULL and _blocked_either_way(m, n, k)



cdef inline void _transpose(const scalar_t* src, int64_t ld_src, int64_t step_src,
                            int64_t rows, int64_t cols, scalar_t* dst,
                            int64_t ld_dst) noexcept nogil:
    """dst[j * ld_dst + i] = src[i * ld_src + j * step_src] for a rows x cols block."""
    cdef int64_t i, j, i0, i1, vector_rows = 0
    if scalar_t is float:
        if CONVT_BLAS_SIMD_LANES == 4 and step_src == 1:
            vector_rows = rows - rows % 4
            convt_blas_transpose_f32(src, ld_src, vector_rows, cols, dst, ld_dst)
    # Eight rows at a time: their lines stay in cache while the columns go by.
    for i0 in range(vector_rows, rows, 8):
        i1 = _min(rows, i0 + 8)
        for j in range(cols):
            for i in range(i0, i1):
                dst[j * ld_dst + i] = src[i * ld_src + j * step_src]


cdef void _lay_out_weight_rows(const scalar_t* w, int64_t groups, int64_t c_in_g, int64_t m,
                       scalar_t* rows, int n_threads) noexcept nogil:
    """rows[g][j, i] = W_g[i, j] for each group's (c_in_g, m) weight, in 64 x 64 tiles
    (a tile's rows and columns stay in cache), tiles shared among threads."""
    cdef int64_t row_tiles = _ceil_div(c_in_g, 64), col_tiles = _ceil_div(m, 64)
    cdef int64_t tiles = groups * row_tiles * col_tiles, tile, g, i0, j0, rest
    for tile in prange(tiles, num_threads=_max(1, _min(_thread_count(n_threads), tiles)),
                       schedule='static'):
        g = tile / (row_tiles * col_tiles)
        rest = tile % (row_tiles * col_tiles)
        i0 = (rest / col_tiles) * 64
        j0 = (rest % col_tiles) * 64
        _transpose(w + (g * c_in_g + i0) * m + j0, m, 1, _min(64, c_in_g - i0),
                   _min(64, m - j0), rows + g * c_in_g * m + j0 * c_in_g + i0, c_in_g)
