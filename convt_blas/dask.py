"""conv_transpose1d for Dask arrays: overlap-add across chunks of the length axis.

Each block of the input is convolved on its own, without padding; input
sample ``l`` writes to the unpadded output positions ``l*stride + k*dilation``,
so the block starting at sample ``o`` covers positions from ``o*stride`` on,
``dilation*(K - 1) + 1 - stride`` past its own ``l*stride`` samples. Output
block ``j`` holds positions ``o_j*stride`` up to ``o_{j+1}*stride`` (cropped by
the padding at both ends of the signal) and sums the parts of every block
that reach them. Batch blocks map one to one; the channel axis is gathered
into one block, since every output channel reads all input channels of its
group.

dask is imported on first use, so this module (and ``convt_blas``) imports
without it.
"""
import numpy as np

from . import _threads, kernels
from ._functional import conv_transpose1d_cpu
from ._overlap import add_parts, finish, part_span
from ._validation import as_array, check_arguments, check_dtypes, compute_dtype, native
from ._weight_cache import WeightCache


def _dask_modules():
    try:
        import dask.array as da
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph
    except ImportError as exc:
        raise ImportError("convt_blas.dask needs dask[array]; install the 'dask' extra "
                          "(pip install 'convt_blas[dask]')") from exc
    return da, tokenize, HighLevelGraph


def _block_part(x_block, weight, prepared, stride, groups, dilation):
    """Unpadded transposed convolution of one block, in the weight's dtype.

    ``prepared``: the graph's prepared weight (_prepare's task), or None.
    """
    if x_block.dtype != weight.dtype or not x_block.flags.aligned:
        # Blocks received from other processes may sit unaligned in a network buffer.
        x_block = x_block.astype(weight.dtype)
    cache = None if prepared is None else WeightCache.holding(weight, prepared)
    return conv_transpose1d_cpu(x_block, weight, None, stride, 0, 0, groups, dilation, None,
                                cache)


def _prepare(weight, params):
    """The graph's prepared weight, once (None if the layer never takes Winograd)."""
    return kernels.prepare_weight(params, weight)


def _assemble(parts, spans, bias, shape, dtype):
    """One output block: the parts' spans (see convt_blas._overlap) summed, bias added."""
    work = parts[0].dtype if parts else np.dtype(dtype)
    out = np.zeros(shape, dtype=compute_dtype(work))
    return finish(add_parts(out, parts, spans), bias, dtype)


def _output_bounds(offsets, total, stride, start, stop):
    """Full positions where output blocks begin and end: one per input block, empty ones dropped."""
    bounds = [start]
    for offset in offsets[1:]:
        position = min(max(offset * stride, start), stop)
        if position > bounds[-1]:
            bounds.append(position)
    if stop > bounds[-1]:
        bounds.append(stop)
    return bounds


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """``convt_blas.conv_transpose1d`` of a Dask array, chunked along batch and length.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C_in, L_in) or (C_in, L_in)
        Any chunking with known chunk sizes (other array-likes are wrapped
        with ``dask.array.asarray``). Chunks along the channel axis are merged.
    weight : array_like, shape (C_in, C_out / groups, K)
        In memory; it is placed in the graph once.
    bias : array_like, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or 1-tuple of int
    groups : int

    Returns
    -------
    dask.array.Array, shape (N, C_out, L_out) or (C_out, L_out)
        Lazy; equal to the in-memory result within float rounding for any
        chunking. Batch chunks are the input's; length chunk ``j`` holds the
        ``stride * len(chunk j)`` samples that input chunk ``j`` starts (the
        first and last cropped by the padding, empty ones dropped).

    Raises
    ------
    ValueError, TypeError
        As ``convt_blas.conv_transpose1d`` for the whole array, or for chunk
        sizes that are not known.
    ImportError
        dask is not installed.

    Examples
    --------
    .. doctest::
       :skipif: dask is None

       >>> import numpy as np, dask.array as da, convt_blas
       >>> import convt_blas.dask
       >>> x = np.random.default_rng(0).standard_normal((2, 4, 100)).astype(np.float32)
       >>> w = np.ones((4, 3, 4), np.float32)
       >>> y = convt_blas.dask.conv_transpose1d(da.from_array(x, chunks=(1, 4, 30)), w,
       ...                                      stride=2, padding=1)
       >>> y.chunks[2]  # input chunk j starts output chunk j, cropped by the padding
       (59, 60, 60, 21)
       >>> np.allclose(y.compute(), convt_blas.conv_transpose1d(x, w, stride=2, padding=1),
       ...             atol=1e-5)
       True
    """
    da, tokenize, HighLevelGraph = _dask_modules()
    if not isinstance(x, da.Array):
        x = da.asarray(x)
    x = native(x)
    w = native(as_array(weight, "weight"))
    b = None if bias is None else native(as_array(bias, "bias"))
    check_dtypes(x.dtype, w.dtype, None if b is None else b.dtype)
    if any(np.isnan(size) for size in x.shape):
        raise ValueError(f"x has unknown chunk sizes (shape {x.shape}); call "
                         "x.compute_chunk_sizes() first")
    spec = check_arguments(x.shape, w.shape, None if b is None else b.shape, stride, padding,
                           output_padding, groups, dilation)
    x3 = x if spec.batched else x[np.newaxis]
    if x3.numblocks[1] > 1:
        x3 = x3.rechunk({1: -1})

    work = compute_dtype(x.dtype)  # float16/bfloat16 summed in float32
    w = np.array(w, dtype=work, order="C", copy=True)
    b = None if b is None else np.array(b, dtype=work, copy=True)
    s = spec.stride
    overlap = spec.overlap
    start = spec.padding  # the output is full[start:stop] of the unpadded result
    stop = start + spec.out_length

    lengths = x3.chunks[2]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    blocks = [(i, offsets[i], lengths[i]) for i in range(len(lengths)) if lengths[i] > 0]
    bounds = _output_bounds([offset for _, offset, _ in blocks], spec.in_length, s, start, stop)

    token = tokenize(x3.name, w, b, spec)
    name = "conv_transpose1d-" + token
    part_name = "conv_transpose1d-part-" + token
    weight_key, bias_key = "conv_transpose1d-weight-" + token, "conv_transpose1d-bias-" + token
    prepared_key = "conv_transpose1d-prepared-" + token
    layer = {weight_key: w, bias_key: b, prepared_key: None}
    unpadded = (1, spec.in_channels, max(lengths), spec.out_channels, spec.kernel_size, s, 0, 0,
                spec.dilation, spec.groups)
    # Blocks that take Winograd share one prepared weight (as ConvTranspose1d keeps
    # it): made once per compute if the longest block takes it.
    _threads.configure_blas()  # whether it does depends on the BLAS found
    if kernels.takes_prepared_weight(unpadded):
        layer[prepared_key] = (_prepare, weight_key, unpadded)
    for bi, n_b in enumerate(x3.chunks[0]):
        for i, _, _ in blocks:
            layer[(part_name, bi, i)] = (_block_part, (x3.name, bi, 0, i), weight_key,
                                         prepared_key, s, spec.groups, spec.dilation)
        for j in range(len(bounds) - 1):
            lo, hi = bounds[j], bounds[j + 1]
            keys, spans = [], []
            for i, offset, length in blocks:
                span = part_span(offset * s, length * s + overlap, lo, hi)
                if span:
                    keys.append((part_name, bi, i))
                    spans.append(list(span))
            layer[(name, bi, 0, j)] = (_assemble, keys, spans, bias_key,
                                       (n_b, spec.out_channels, hi - lo), x.dtype)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x3])
    chunks = (x3.chunks[0], (spec.out_channels,), tuple(np.diff(bounds).tolist()))
    result = da.Array(graph, name, chunks, meta=np.empty((0, 0, 0), dtype=x.dtype))
    return result if spec.batched else result[0]
