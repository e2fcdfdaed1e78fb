"""The forms of a weight that a layer, a stream or a Dask graph keeps between calls.

The :term:`prepared weight` (the weight transformed for Winograd) spares each
call the transform and lets shorter inputs take F(3,2), and is what F(4,3) and
F(3,4) run on; the :term:`weight
rows` (the weight laid out as the GEMM path reads it fastest) speed up the
GEMMs. Both give the same bits as making them in the call.

Entries are keyed by the identity of the weight array a call was given, which
its owner never writes: a call racing the assignment of a new weight keeps
the old weight's forms under the old key, which the next call does not match.
"""
from . import kernels


class WeightCache:
    """The prepared weight and weight rows of one owner's weight, made on first need.

    Parameters
    ----------
    keeps_rows : bool
        Whether calls may keep weight rows (the stream and the Dask graph keep
        only the prepared weight).

    Attributes
    ----------
    prepared : tuple or None
        ``(weight, prepared weight)`` from the last call that took Winograd.
    rows : tuple or None
        ``(weight, weight rows)`` from the last call on the GEMM path that reads
        them; ``(weight, None)`` after the weight's first such call.
    """

    def __init__(self, keeps_rows=True):
        self.keeps_rows = keeps_rows
        self.prepared = None
        self.rows = None
        self._keep = True

    @classmethod
    def holding(cls, weight, prepared):
        """A cache that already holds ``weight``'s prepared weight (made by a Dask task)."""
        cache = cls(keeps_rows=False)
        cache.prepared = (weight, prepared)
        return cache

    @property
    def keep(self):
        """Whether calls keep what they make; False empties the cache and keeps nothing."""
        return self._keep

    @keep.setter
    def keep(self, value):
        self._keep = bool(value)
        if not value:
            self.clear()

    def clear(self):
        """Forget everything kept (a new weight's calls would not match it anyway)."""
        self.prepared = None
        self.rows = None

    def prepared_weight(self, weight, params, kernel_weight, n_threads):
        """``weight``'s prepared weight, made from ``kernel_weight`` (the weight as the
        kernels read it) unless kept. Called only by calls that take Winograd, which
        read the Winograd switch on."""
        held = self.prepared
        if held is not None and held[0] is weight:
            return held[1]
        prepared = kernels.prepare_weight(params, kernel_weight, n_threads,
                                                    winograd=True)
        if self._keep:  # read again: a switch turned off meanwhile keeps nothing
            self.prepared = (weight, prepared)
        return prepared

    def weight_rows(self, weight, params, kernel_weight, n_threads):
        """``weight``'s rows (kernels.lay_out_weight_rows), kept; None on the weight's first
        call on the GEMM path.

        Laying out a weight costs up to half a call on short inputs (DAC's first
        layer: 23 ms against 48), so it is made only once a weight is called
        again: a weight called once never pays it, and results are the same bits
        with or without it.
        """
        held = self.rows
        if held is not None and held[0] is weight and held[1] is not None:
            return held[1]
        if held is None or held[0] is not weight:  # the weight's first GEMM-path call
            if self._keep:
                self.rows = (weight, None)
            return None
        rows = kernels.lay_out_weight_rows(params, kernel_weight, n_threads)
        if self._keep:
            self.rows = (weight, rows)
        return rows

    def __getstate__(self):
        # Remade on demand: a pickle need not carry up to three times the weight.
        return {"keeps_rows": self.keeps_rows, "_keep": self._keep}

    def __setstate__(self, state):
        self.__init__(state["keeps_rows"])
        self._keep = state["_keep"]
