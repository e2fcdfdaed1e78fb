"""Overlap-add in positions of the unpadded ("full") output, shared by the stream and Dask.

A part is the unpadded transposed convolution of a stretch of input that
starts at sample ``o``: it covers full positions from ``o*stride`` on. An
output window ``[lo, hi)`` sums the parts that reach it, then adds the bias
once per position.
"""


def part_span(part_start, part_length, lo, hi):
    """``(src, src_stop, dst)``: the samples ``part[..., src:src_stop]`` of a part at full
    position ``part_start`` that fall in the window ``[lo, hi)``, from window index
    ``dst`` on; None when they do not meet."""
    first, last = max(lo, part_start), min(hi, part_start + part_length)
    if first >= last:
        return None
    return first - part_start, last - part_start, first - lo


def add_parts(window, parts, spans):
    """Add each part's span (see :func:`part_span`) into ``window``, in order; returns it."""
    for part, (src, src_stop, dst) in zip(parts, spans):
        window[:, :, dst:dst + src_stop - src] += part[:, :, src:src_stop]
    return window


def finish(window, bias, dtype):
    """A summed window as output: ``bias`` (C_out,) added once per position, cast to
    ``dtype`` (float16 windows are summed in float32)."""
    if bias is not None:
        window += bias[:, None]
    return window.astype(dtype, copy=False)
