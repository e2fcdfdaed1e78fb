# The backward pass's plan: how both gradients are cut into units, and the rules
# that choose each gradient's path (backward.pxi runs them).

ctypedef struct ColumnCut:
    int64_t samples  # batch elements side by side in a chunk (1: chunks are tiles)
    int64_t tiles    # tiles per batch element (1 when samples > 1)
    int64_t tile     # input positions per tile
    int64_t chunks   # chunks of the whole batch
    int64_t columns  # the most columns (input positions) of a chunk


ctypedef struct BackwardPlan:
    int64_t c_in_g
    int64_t c_out_g
    int64_t rows                    # C_out/g * K: the im2col rows of a whole group
    ColumnCut input_cut             # grad_input's chunks: units of (group, chunk, in_block)
    int64_t input_in_block          # input channels per unit
    int64_t input_in_blocks
    int64_t input_units
    int64_t input_worker_elements   # im2col buffer, and the GEMM's result for merged chunks
    int64_t input_taps              # grad_input by phases: this many GEMMs each (0: im2col)
    int64_t input_shared_elements   # the weight laid out by tap for them (0: read in place)
    # grad_weight: units of (group, block of C_in/g, block of C_out/g)
    int64_t in_block
    int64_t in_blocks
    int64_t out_block
    int64_t out_blocks
    ColumnCut weight_cut
    int64_t weight_splits           # units per block, each summing a range of the chunks
    int64_t weight_units
    int64_t weight_worker_elements  # im2col buffer, one partial product, merged input
    int64_t weight_shared_elements  # the sums of splits past the first, added in order after
    bint depthwise                  # one input and one output channel a group: direct loops


# A worker's buffers stay near BACKWARD_WORKSPACE elements (4 MiB of float32):
# chunks of at least BACKWARD_MIN_TILE positions keep the GEMMs' sides long
# enough for BLAS, even where a group's rows alone pass the target. Measured
# on the benchmark layers, one thread, against 2**19: wide layers 10-35%
# faster (fewer repacks of the weight per column), the others within 5%;
# 2**21 gained no more.
cdef int64_t BACKWARD_WORKSPACE = 1 << 20
cdef int64_t BACKWARD_MIN_TILE = 32
# grad_weight's units per layer when the work is large enough to share:
# blocks of at least BACKWARD_BLOCK_SIDE rows or columns each. Measured on
# one thread against 16 units of 64: up to 37% faster (DAC 192 -> 96 at
# 22016 positions), 7-25% on the mid-size layers, none slower by over 2%.
cdef int64_t BACKWARD_WEIGHT_UNITS = 8
cdef int64_t BACKWARD_BLOCK_SIDE = 128
# Layers with fewer units than that (few, narrow channels over a long input at
# batch 1) cut their input positions into more chunks, of at least this many
# positions, and sum grad_weight's chunks in up to BACKWARD_WEIGHT_UNITS ranges
# side by side (partial sums of at most BACKWARD_WORKSPACE elements in all, added
# in order at the end). Before, HiFi-GAN's and EnCodec's 64 -> 32 at batch 1 ran
# grad_weight as one unit and grad_input as three chunks; at 2 threads their
# backward took 5.1 and 4.8 ms, now 3.2 and 3.0 (the 40,000-position signal 16.5 ->
# 11.2 ms); at 1 thread the same within the noise.
cdef int64_t BACKWARD_SPLIT_MIN_TILE = 256
# grad_input's chunks still short of units are cut into at most this many blocks of
# input channels, each packing the chunk's im2col again. Measured on 512 -> 256 (K = 16)
# at 8-100 positions and 1536 -> 768 at 86, batch 1, against one block: 2 blocks
# 1-4% slower at 1 thread and 27-29% faster at 2; 4 blocks 2-14% slower at 1 thread
# and 5-8% slower than 2 blocks at 2 threads.
cdef int64_t BACKWARD_INPUT_BLOCKS = 2
# Where K = r * stride (dilation 1), each input position meets r whole strides of
# grad_output: grad_input = sum over taps j of W_j @ G[j:]^T, with G grad_output's
# strides laid out by position (rows of C_out/g * stride, written once instead of
# the r times the im2col writes them) and W_j the weight's tap j. The r GEMMs of
# C_out/g * stride inner elements run at a better BLAS rate than the one of
# C_out/g * K on the im2col, which is never written. Taken where a row of G holds
# at least BACKWARD_PHASE_MIN_ROW elements (narrower, the GEMMs are too thin) and,
# where the weight must be laid out by tap first (C_out/g > 1), the batch's input
# positions number at least BACKWARD_PHASE_MIN_COLUMNS times C_in/g: a copy of the
# weight costs what the im2col of as many positions as its input channels does
# (DAC's 1536 -> 768 at 86 positions, batch 1: 0.79x the im2col's time).
cdef int64_t BACKWARD_PHASE_MIN_ROW = 32
cdef int64_t BACKWARD_PHASE_MIN_COLUMNS = 2


cdef ColumnCut _cut_columns(int64_t buffer_rows, int64_t batch, int64_t length,
                            int64_t least_chunks) noexcept nogil:
    """Chunks of at most about BACKWARD_WORKSPACE / buffer_rows columns: even tiles of
    long inputs, or as many whole short inputs as fit, spread evenly over the batch;
    tiles of at least BACKWARD_SPLIT_MIN_TILE positions make up ``least_chunks``
    where the batch is short of it."""
    cdef ColumnCut cut
    cdef int64_t target = _max(BACKWARD_MIN_TILE, BACKWARD_WORKSPACE / _max(1, buffer_rows))
    cut.samples = 1
    if length < target and batch > 1:
        cut.samples = _min(batch, target / length)
        cut.samples = _ceil_div(batch, _ceil_div(batch, cut.samples))
    if cut.samples == 1:
        cut.tiles = _ceil_div(length, _min(target, length))
        cut.tiles = _max(cut.tiles, _min(_ceil_div(least_chunks, _max(1, batch)),
                                         length / BACKWARD_SPLIT_MIN_TILE))
        cut.tile = _ceil_div(length, cut.tiles)
        cut.chunks = batch * cut.tiles
    else:
        cut.tiles = 1
        cut.tile = length
        cut.chunks = _ceil_div(batch, cut.samples)
    cut.columns = cut.samples * cut.tile
    return cut


cdef inline int64_t _chunk_columns(const ColumnCut* cut, int64_t chunk, int64_t batch,
                                   int64_t length, int64_t* first_sample, int64_t* samples,
                                   int64_t* first, int64_t* count) noexcept nogil:
    """Where ``chunk`` lies: its batch elements and their positions; returns its columns."""
    if cut.samples == 1:
        first_sample[0] = chunk / cut.tiles
        samples[0] = 1
        first[0] = (chunk % cut.tiles) * cut.tile
        count[0] = _min(cut.tile, length - first[0])
    else:
        first_sample[0] = chunk * cut.samples
        samples[0] = _min(cut.samples, batch - first_sample[0])
        first[0] = 0
        count[0] = length
    return samples[0] * count[0]


cdef int _make_backward_plan(const convt_blas_params* p, BackwardPlan* plan) noexcept nogil:
    """Validate ``p`` and cut both gradients into units (never by the thread count)."""
    cdef int64_t K = p.kernel_size, out_length, wanted, blocks, span
    cdef bint phases
    cdef double flops
    memset(plan, 0, sizeof(BackwardPlan))  # what a path does not use stays zero
    if (p.batch < 0 or p.in_channels < 1 or p.out_channels < 1 or K < 1 or p.stride < 1
            or p.padding < 0 or p.output_padding < 0 or p.dilation < 1 or p.groups < 1
            or p.in_channels % p.groups or p.out_channels % p.groups or p.in_length < 1):
        return CONVT_BLAS_ERR_BAD_SHAPE
    out_length = output_length(p)
    if out_length < 1:
        return CONVT_BLAS_ERR_BAD_SHAPE
    plan.c_in_g = p.in_channels / p.groups
    plan.c_out_g = p.out_channels / p.groups
    if _mul_overflows(plan.c_out_g, K):
        return CONVT_BLAS_ERR_OVERFLOW
    plan.rows = plan.c_out_g * K
    # Every GEMM side and leading dimension is a BLAS int; buffers are indexable.
    if (plan.rows > INT_MAX or plan.c_in_g > INT_MAX or p.in_length > INT_MAX
            or _mul_overflows(plan.rows + plan.c_in_g, _max(BACKWARD_MIN_TILE, p.in_length))
            or _mul_overflows(p.batch, p.groups)):
        return CONVT_BLAS_ERR_OVERFLOW
    # Depthwise: a channel's K taps by direct loops, a channel a unit (a GEMM of one row
    # per group cost more in calls than in arithmetic: 512 channels, K = 6, 32 positions,
    # batch 16: 3.1 ms, against 2.9 for torch). No cut, no workspace.
    plan.depthwise = plan.c_in_g == 1 and plan.c_out_g == 1
    if plan.depthwise:
        plan.input_units = plan.weight_units = p.in_channels
        return CONVT_BLAS_OK

    flops = 2.0 * p.batch * p.in_length * plan.c_in_g * plan.rows * p.groups
    wanted = 1
    if flops >= 2 * MIN_UNIT_FLOPS:
        wanted = _ceil_div(BACKWARD_WEIGHT_UNITS, p.groups)
    plan.input_cut = _cut_columns(plan.rows + plan.c_in_g, p.batch, p.in_length, wanted)
    if _mul_overflows(p.groups, plan.input_cut.chunks):
        return CONVT_BLAS_ERR_OVERFLOW
    phases = (p.dilation == 1 and K % p.stride == 0
              and plan.c_out_g * p.stride >= BACKWARD_PHASE_MIN_ROW
              and (plan.c_out_g == 1 or <double>p.batch * p.in_length
                   >= <double>BACKWARD_PHASE_MIN_COLUMNS * plan.c_in_g))
    # Too few chunks (one short input): blocks of input channels, each making the
    # chunk's im2col again (see BACKWARD_INPUT_BLOCKS). By phases only one chunk is
    # cut so: EnCodec's 256 -> 128 at 600 positions in 2 chunks of 2 blocks ran 15%
    # slower than in 2 chunks at 1 and at 2 threads.
    blocks = _max(1, _min(_min(_ceil_div(_min(wanted, 2) if phases else wanted,
                                         _max(1, plan.input_cut.chunks)),
                               BACKWARD_INPUT_BLOCKS), plan.c_in_g / BACKWARD_BLOCK_SIDE))
    plan.input_in_block = _ceil_div(plan.c_in_g, blocks)
    plan.input_in_blocks = _ceil_div(plan.c_in_g, plan.input_in_block)
    plan.input_units = p.groups * plan.input_cut.chunks * plan.input_in_blocks
    plan.input_worker_elements = (plan.rows + (plan.input_in_block
                                               if plan.input_cut.samples > 1 else 0)
                                  ) * plan.input_cut.columns
    plan.input_taps = 0
    plan.input_shared_elements = 0
    # G's rows: each element's positions and the r - 1 after them (a size that
    # overflows leaves the layer to the im2col, whose buffer was checked above).
    span = plan.input_cut.samples * (plan.input_cut.tile + K / p.stride - 1)
    if phases and not _mul_overflows(plan.c_out_g * p.stride + plan.input_in_block, span):
        plan.input_taps = K / p.stride
        plan.input_worker_elements = (plan.c_out_g * p.stride + (
            plan.input_in_block if plan.input_cut.samples > 1 else 0)) * span
        if plan.c_out_g > 1:  # else tap j is w's columns j*stride to (j+1)*stride
            plan.input_shared_elements = p.in_channels * plan.rows

    # Blocks of output channels first (each im2col row is made by one unit),
    # then of input channels, until the layer has BACKWARD_WEIGHT_UNITS units;
    # small layers stay one unit per group.
    blocks = _max(1, _min(wanted, _min(plan.c_out_g, plan.rows / BACKWARD_BLOCK_SIDE)))
    plan.out_block = _ceil_div(plan.c_out_g, blocks)
    plan.out_blocks = _ceil_div(plan.c_out_g, plan.out_block)
    wanted = _ceil_div(wanted, plan.out_blocks)
    blocks = _max(1, _min(wanted, plan.c_in_g / BACKWARD_BLOCK_SIDE))
    plan.in_block = _ceil_div(plan.c_in_g, blocks)
    plan.in_blocks = _ceil_div(plan.c_in_g, plan.in_block)
    wanted = _ceil_div(wanted, plan.in_blocks)  # units short of BACKWARD_WEIGHT_UNITS
    plan.weight_cut = _cut_columns(plan.out_block * K + plan.in_block, p.batch, p.in_length,
                                   wanted)
    # Still short of units: splits sum ranges of the chunks side by side.
    plan.weight_splits = _max(1, _min(_min(wanted, plan.weight_cut.chunks),
                                      1 + BACKWARD_WORKSPACE / (p.in_channels * plan.rows)))
    if plan.weight_cut.chunks > 0:  # every split a range of at least one chunk
        plan.weight_splits = _ceil_div(plan.weight_cut.chunks,
                                       _ceil_div(plan.weight_cut.chunks, plan.weight_splits))
    plan.weight_units = p.groups * plan.in_blocks * plan.out_blocks * plan.weight_splits
    plan.weight_shared_elements = (plan.weight_splits - 1) * p.in_channels * plan.rows
    plan.weight_worker_elements = (
        plan.out_block * K * (plan.weight_cut.columns + plan.in_block)
        + (plan.in_block * plan.weight_cut.columns if plan.weight_cut.samples > 1 else 0))
    return CONVT_BLAS_OK
