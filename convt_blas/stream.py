"""Streaming transposed convolution: chunk by chunk, by overlap-add.

Input sample ``l`` of a transposed convolution writes to the unpadded output
positions ``l*stride + k*dilation`` (``k < K``), so a chunk's output overlaps
the next chunk's by ``R = dilation*(K - 1) + 1 - stride`` samples. Padding
crops ``padding`` samples from the start of that unpadded output and
``padding - output_padding`` from its end (zeros are appended when
``output_padding`` exceeds ``padding``).

Positions are counted below in the unpadded output ("full") of the whole
signal. After ``T`` input samples, positions before ``T*stride`` are final
(later input writes at ``T*stride`` and beyond), and positions before
``T*stride + R - padding + output_padding`` are in the output whatever
follows, since the output ends there if the signal ends now.
"""
import contextlib
import threading

import numpy as np

from ._functional import conv_transpose1d_cpu
from ._overlap import add_parts, finish, part_span
from ._validation import (as_array, astype_hint, check_arguments, check_dtypes, compute_dtype,
                          check_parameters, host_array, native, parameters_repr)
from ._weight_cache import WeightCache


class ConvTranspose1dStream:
    """``conv_transpose1d`` of a signal that arrives in chunks.

    Everything returned by :meth:`push` and :meth:`flush`, concatenated along
    the last axis, equals ``conv_transpose1d`` of the whole signal (within
    float rounding), for every chunking. The state kept between chunks is the
    overlap tail, at most ``max(dilation*(K - 1) + 1 - stride,
    padding - output_padding, 0)`` samples per output channel (the first term
    unless padding exceeds the overlap). Layers that qualify for Winograd's
    F(3,2) keep their :term:`prepared weight`, as ``ConvTranspose1d`` does,
    from the first chunk of 128 or more samples on (twice the weight's
    memory): such chunks take F(3,2); likewise F(4,3) and F(3,4) from their
    thresholds (:ref:`winograd-forms`). A stream holds one signal: a call
    while another thread is inside one raises RuntimeError. An error leaves
    the stream as it was.

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out / groups, K)
        Copied at construction; float16 is accumulated in float32.
    bias : array_like, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or 1-tuple of int
    groups : int
        As in :func:`convt_blas.conv_transpose1d`.

    Examples
    --------
    >>> import numpy as np, convt_blas
    >>> w = np.random.randn(4, 3, 16).astype(np.float32)
    >>> stream = convt_blas.ConvTranspose1dStream(w, stride=8, padding=4)
    >>> x = np.random.randn(1, 4, 10).astype(np.float32)
    >>> parts = [stream.push(x[..., i:i + 3]) for i in range(0, 10, 3)] + [stream.flush()]
    >>> y = np.concatenate(parts, axis=-1)
    >>> y.shape, np.allclose(y, convt_blas.conv_transpose1d(x, w, stride=8, padding=4), atol=1e-5)
    ((1, 3, 80), True)
    >>> stream
    ConvTranspose1dStream(4, 3, kernel_size=16, stride=8, padding=4, bias=False)
    """

    def __init__(self, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                 dilation=1):
        w = native(as_array(weight, "weight"))
        b = None if bias is None else native(as_array(bias, "bias"))
        check_dtypes(w.dtype, w.dtype, None if b is None else b.dtype)
        spec = check_parameters(w.shape, None if b is None else b.shape, stride, padding,
                                output_padding, groups, dilation)
        self.dtype = w.dtype
        # Low-precision partial sums would round at every overlap; keep them in float32.
        work = compute_dtype(w.dtype)
        self._weight = np.array(w, dtype=work, order="C", copy=True)
        self._bias = None if b is None else np.array(b, dtype=work, copy=True)
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.kernel_size = spec.kernel_size
        self.stride = spec.stride
        self.padding = spec.padding
        self.output_padding = spec.output_padding
        self.dilation = spec.dilation
        self.groups = spec.groups
        self.overlap = spec.overlap
        # The output ends at T*stride + end_offset after T input samples.
        self._end_offset = self.overlap - spec.padding + spec.output_padding
        self._checked_shape = None  # last chunk shape found valid, length aside
        # The prepared weight, once a chunk takes Winograd; chunks of a few positions, the
        # stream's usual ones, gain little from weight rows.
        self._weight_cache = WeightCache(keeps_rows=False)
        self._busy = threading.Lock()  # held by the thread inside push or flush
        self.reset()

    @classmethod
    def from_module(cls, module):
        """A stream computing what ``module`` computes on a whole signal.

        ``module`` is any object with ``weight``, ``bias``, ``stride``,
        ``padding``, ``output_padding``, ``groups`` and ``dilation``
        (``convt_blas.ConvTranspose1d`` or ``torch.nn.ConvTranspose1d``); the
        parameters are copied, so later changes to the module do not reach the
        stream.

        Examples
        --------
        >>> import convt_blas
        >>> layer = convt_blas.ConvTranspose1d(16, 8, 16, stride=8, padding=4)
        >>> convt_blas.ConvTranspose1dStream.from_module(layer)
        ConvTranspose1dStream(16, 8, kernel_size=16, stride=8, padding=4)
        """
        bias = getattr(module, "bias", None)
        return cls(host_array(module.weight, "weight"),
                   None if bias is None else host_array(bias, "bias"),
                   stride=module.stride, padding=module.padding,
                   output_padding=module.output_padding, groups=module.groups,
                   dilation=module.dilation)

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_busy"]  # a lock does not pickle; a copy starts idle
        return state

    def __setstate__(self, state):
        if "_weight_cache" not in state:  # pickled before the cache: a bias of shape (C_out, 1)
            state.pop("_transformed", None)
            state["_weight_cache"] = WeightCache(keeps_rows=False)
            if state["_bias"] is not None:
                state["_bias"] = state["_bias"][:, 0]
        self.__dict__.update(state)
        self._busy = threading.Lock()

    def __repr__(self):
        return parameters_repr(self, self._bias is not None)

    def reset(self):
        """Forget the current signal; the next :meth:`push` starts a new one."""
        self._batch = None  # batch size and batched-ness are fixed by the first chunk
        self._batched = None
        self._in_length = 0
        self._next = self.padding  # full position of the next sample to return
        self._tail = None  # partial sums of full positions _next, _next + 1, ...

    @property
    def in_length(self):
        """Input samples pushed since the last reset or flush."""
        return self._in_length

    @property
    def buffered(self):
        """Output samples per channel held until later input or :meth:`flush`."""
        return 0 if self._tail is None else self._tail.shape[-1]

    def _check_chunk(self, chunk):
        """The chunk as (N, C_in, l) in the working dtype; raises before any state changes."""
        x = as_array(chunk, "chunk")
        dtype = x.dtype.newbyteorder("=") if x.dtype.kind in "fc" else x.dtype
        if dtype != self.dtype:  # a TypeError, as conv_transpose1d raises for it
            raise TypeError(f"chunk has dtype {x.dtype}, but the stream's weight has dtype "
                            f"{self.dtype}{astype_hint('chunk', self.dtype)}")
        if x.ndim not in (2, 3):
            raise ValueError(f"expected a chunk of shape (N, C_in, l) or (C_in, l), got shape "
                             f"{x.shape}")
        if x.shape[:-1] != self._checked_shape:  # chunks of a signal mostly share a shape
            # Checked as a padding-free convolution; length 0 is checked as 1.
            check_arguments(x.shape[:-1] + (max(x.shape[-1], 1),), self._weight.shape, None,
                            self.stride, 0, 0, self.groups, self.dilation)
            self._checked_shape = x.shape[:-1]
        batched = x.ndim == 3
        batch = x.shape[0] if batched else 1
        if self._batch is not None and (batched, batch) != (self._batched, self._batch):
            def describe(is_batched, n):
                return f"batch size {n}" if is_batched else "unbatched (C_in, l)"
            raise ValueError(f"chunk is {describe(batched, batch)}, but this signal's earlier "
                             f"chunks were {describe(self._batched, self._batch)}; call reset() "
                             "to start a new signal")
        x3 = x if batched else x[np.newaxis]
        if x3.dtype != self._weight.dtype:  # float16/bfloat16, or another byte order
            x3 = x3.astype(self._weight.dtype)
        return x3, batched

    def _emit(self, buffer, stop, batched):
        """(output, tail): full positions [_next, stop) from ``buffer`` (which starts
        at _next), and the rest of the buffer, the next tail. Changes no state.

        Positions past the buffer's end received no contribution and are zero.
        Bias is added here, once per returned sample.
        """
        count = stop - self._next
        n, c = buffer.shape[:2]
        out = np.zeros((n, c, count), dtype=buffer.dtype)
        have = min(count, buffer.shape[-1])
        out[:, :, :have] = buffer[:, :, :have]
        out = finish(out, self._bias, self.dtype)
        tail = buffer[:, :, count:].copy() if buffer.shape[-1] > count else None
        return (out if batched else out[0]), tail

    def push(self, chunk):
        """Feed the next chunk of the signal; return the output samples it completes.

        Parameters
        ----------
        chunk : array_like, shape (N, C_in, l) or (C_in, l)
            Any length ``l >= 0``. Batch size and batched-ness must match the
            signal's earlier chunks; the dtype must be the weight's.

        Returns
        -------
        numpy.ndarray, shape (N, C_out, m) or (C_out, m)
            The samples that no later input can change, after those already
            returned; ``m`` may be 0.

        Raises
        ------
        ValueError, TypeError
            For a bad chunk; the stream is left as it was.
        MemoryError
            The chunk's output cannot be allocated; the stream is left as it was.
        RuntimeError
            Another thread is inside a call of this stream.
        """
        with self._one_call():
            x3, batched = self._check_chunk(chunk)
            length = x3.shape[-1]
            if length == 0:
                self._batch, self._batched = x3.shape[0], batched
                return np.zeros((x3.shape[0], self.out_channels, 0)[0 if batched else 1:],
                                dtype=self.dtype)
            part = conv_transpose1d_cpu(x3, self._weight, None, self.stride, 0, 0, self.groups,
                                        self.dilation, None, self._weight_cache)
            start = self._in_length * self.stride  # full position of part[..., 0]
            buffer = self._overlap_add(part, start)
            in_length = self._in_length + length
            stop = max(self._next, in_length * self.stride + min(0, self._end_offset))
            out, tail = self._emit(buffer, stop, batched)
            # Everything that can fail is done: the state moves on all at once.
            self._batch, self._batched = x3.shape[0], batched
            self._in_length, self._next, self._tail = in_length, stop, tail
            return out

    @contextlib.contextmanager
    def _one_call(self):
        """Refuse a call while another thread is inside one: the state would mix."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("ConvTranspose1dStream is in use by another thread; a stream "
                               "holds one signal: give each thread its own stream")
        try:
            yield
        finally:
            self._busy.release()

    def _overlap_add(self, part, start):
        """Tail plus ``part`` (at full position ``start``), as a buffer starting at _next."""
        tail_len = self.buffered
        if start == self._next and tail_len <= part.shape[-1]:
            # The steady state: the tail lies inside the new part.
            if tail_len:
                part[:, :, :tail_len] += self._tail
            return part
        # Early in the signal (positions before `padding` are dropped) or a
        # chunk shorter than the tail.
        stop = max(self._next + tail_len, start + part.shape[-1])
        buffer = np.zeros(part.shape[:2] + (max(stop - self._next, 0),), dtype=part.dtype)
        if tail_len:
            buffer[:, :, :tail_len] = self._tail
        span = part_span(start, part.shape[-1], self._next, stop)
        return add_parts(buffer, [part], [span]) if span else buffer

    def flush(self):
        """End the signal: return the remaining output samples and reset.

        Returns
        -------
        numpy.ndarray, shape (N, C_out, m) or (C_out, m)

        Raises
        ------
        ValueError
            Nothing was pushed, or the signal is too short for a positive
            output length (as ``conv_transpose1d`` would raise); the stream is
            left as it was.
        """
        with self._one_call():
            if self._batch is None:
                raise ValueError("flush() needs a signal: push at least one chunk first")
            check_arguments((self._batch, self.in_channels, self._in_length),
                            self._weight.shape, None, self.stride, self.padding,
                            self.output_padding, self.groups, self.dilation)
            stop = self._in_length * self.stride + self._end_offset
            tail = self._tail
            if tail is None:
                tail = np.zeros((self._batch, self.out_channels, 0), dtype=self._weight.dtype)
            out, _ = self._emit(tail, stop, self._batched)
            self.reset()
            return out
