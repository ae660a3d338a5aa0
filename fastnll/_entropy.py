"""entropy with scipy.stats.entropy's semantics."""
import numpy as np

from . import _threads
from ._dispatch import kernels
from ._validation import (
    ClassView, as_real_array, compute_dtype, kernel_ready, normalize_axis, real_number,
)


def entropy(pk, qk=None, base=None, axis=0):
    """Shannon entropy ``-sum(p log p)``, or relative entropy ``sum(p log(p / q))`` when ``qk``
    is given, of distributions along ``axis``.

    Semantics of ``scipy.stats.entropy``: ``pk`` and ``qk`` are normalised to sum to 1 along
    ``axis`` first; zero probabilities contribute nothing; a zero ``qk`` where ``pk`` is
    positive gives inf; ``base`` changes the unit (natural log by default: nats).  ``pk`` and
    ``qk`` broadcast against each other.  ``axis=None`` flattens.

    Parameters
    ----------
    pk : array_like
        Non-negative (unnormalised) probabilities.
    qk : array_like, optional
        Non-negative (unnormalised) probabilities of the reference distribution.
    base : float, optional
    axis : int or None

    Returns
    -------
    S : scalar or ndarray

    Raises
    ------
    ValueError
        A negative entry in ``pk`` or ``qk`` (SciPy returns -inf or nan instead), a base that
        is not positive, shapes that do not broadcast, axis out of range.
    TypeError
        Non-numeric input.
    """
    p = as_real_array(pk, "pk")
    q = None if qk is None else as_real_array(qk, "qk")
    if base is not None:
        if not real_number(base, "base") > 0:
            raise ValueError(f"base must be a positive number or None, got {base!r}")
    dtype = compute_dtype(p) if q is None else compute_dtype(p, q)
    if axis is None:      # SciPy flattens each array first, then broadcasts
        p = p.reshape(-1)
        q = None if q is None else q.reshape(-1)
        axis = 0
    if q is not None:
        try:
            p, q = np.broadcast_arrays(p, q)
        except ValueError:
            raise ValueError(
                f"pk with shape {p.shape} and qk with shape {q.shape} cannot be broadcast "
                "together"
            ) from None
    ax = normalize_axis(axis, p.ndim)
    if p.ndim == 0:
        p = p.reshape(1)
        q = None if q is None else q.reshape(1)
    p = kernel_ready(p, dtype)
    view = ClassView(p, ax)
    q3 = view.to3(kernel_ready(q, dtype)) if q is not None else view.x3
    for name, arr in (("pk", view.x3), ("qk", q3 if q is not None else None)):
        if arr is None:
            continue
        found, value = kernels.first_negative(arr)
        if found:
            raise ValueError(f"{name} must hold non-negative probabilities, got {value!r}")
    out = np.empty(view.outer * view.inner, dtype=dtype)
    scale = 1.0
    if base is not None:
        with np.errstate(divide="ignore"):
            scale = float(np.float64(1.0) / np.log(np.float64(base)))   # base 1: inf, as SciPy
    kernels.entropy(view.x3, q3, q is not None, scale, view.to2(out),
                    _threads.for_work(p.size))
    out = out.reshape(p.shape[:ax] + p.shape[ax + 1:])
    return out[()] if out.ndim == 0 else out
