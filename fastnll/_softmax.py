"""logsumexp, softmax and log_softmax with scipy.special's semantics."""
import math

import numpy as np

from . import _threads
from ._dispatch import kernels
from ._validation import (
    ClassView, as_real_array, compute_dtype, kernel_ready, normalize_axes,
)


def _group_axes(a, axes):
    """Bring the reduced axes together: returns (array, first_axis, count, perm).

    Consecutive axes need no change (perm is None); others are moved to the end by the
    transpose perm (the reshape that follows then copies once)."""
    if axes == tuple(range(axes[0], axes[0] + len(axes))):
        return a, axes[0], len(axes), None
    perm = [i for i in range(a.ndim) if i not in axes] + list(axes)
    return a.transpose(perm), a.ndim - len(axes), len(axes), perm


def _merged(a, first, count):
    """Reshape so that axes [first, first+count) become one axis (a view when possible)."""
    shape = a.shape
    return a.reshape(shape[:first] + (math.prod(shape[first:first + count]),)
                     + shape[first + count:])


def _mergeable(a, first, count):
    """Whether axes [first, first+count) of a merge into one axis without a copy."""
    dims = [(n, s) for n, s in zip(a.shape[first:first + count], a.strides[first:first + count])
            if n != 1]
    return all(s_out == n_in * s_in for (_, s_out), (n_in, s_in) in zip(dims, dims[1:]))


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """Log of the sum of exponentials, ``log(sum(b * exp(a), axis))``, computed stably.

    Semantics of ``scipy.special.logsumexp`` for real input: ``axis`` is None (every axis), an
    int or a tuple of ints; ``b`` broadcasts against ``a`` and may be negative or zero (a zero
    weight drops its term even where ``a`` is inf or nan); a negative sum gives nan unless
    ``return_sign`` is True, which returns ``(log|sum|, sign)``.  The sum of nothing is -inf.

    Two corners where fastnll keeps to SciPy's documented rules rather than SciPy 1.17's
    output: a zero weight drops its term also when the result is infinite (SciPy's fallback
    for infinite results computes ``0 * inf = nan`` there), and a negative sum that
    underflows gives nan like any negative sum (SciPy returns -inf).

    Parameters
    ----------
    a : array_like
        Real input.  float32 stays float32; other dtypes compute in float64.
    axis : None, int or tuple of ints
    b : array_like, optional
        Weights, broadcast against ``a``.
    keepdims : bool
    return_sign : bool

    Returns
    -------
    res : ndarray or scalar
    sgn : ndarray or scalar
        Only with ``return_sign=True``: +1, 0 or -1 (nan where ``res`` is nan).

    Raises
    ------
    TypeError
        Non-numeric or complex input.
    ValueError
        ``axis`` out of range or repeated; ``b`` not broadcastable to ``a``.
    """
    a = as_real_array(a, "a")
    if b is not None:
        b = as_real_array(b, "b")
        dtype = compute_dtype(a, b)
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"b with shape {b.shape} cannot be broadcast against a with shape {a.shape}"
            ) from None
        a = np.broadcast_to(a, shape)
        b = np.broadcast_to(b, shape)
    else:
        dtype = compute_dtype(a)
    axes = normalize_axes(axis, a.ndim)
    if a.ndim == 0:
        a = a.reshape(1)
        b = None if b is None else b.reshape(1)
    out_shape_keep = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
    out_shape = tuple(n for i, n in enumerate(a.shape) if i not in axes)
    if not axes:   # axis=(): reduce over nothing, i.e. over a new axis of length 1
        a = a[..., np.newaxis]
        b = None if b is None else b[..., np.newaxis]
        axes = (a.ndim - 1,)

    a = kernel_ready(a, dtype)
    grouped, first, count, _ = _group_axes(a, axes)
    if not _mergeable(grouped, first, count) and a.size:
        # The reduced axes do not merge into one (a broadcast or strided view): reduce the
        # one with the smallest stride first, then the partial results weighted by their
        # signs, instead of copying the input.
        inner = min(axes, key=lambda i: (a.strides[i] == 0, abs(a.strides[i])))
        part, sign = logsumexp(a, axis=inner, b=b, keepdims=True, return_sign=True)
        return logsumexp(part, axis=axes, b=sign, keepdims=keepdims, return_sign=return_sign)
    view = ClassView(_merged(grouped, first, count), first)
    out = np.empty(view.outer * view.inner, dtype=dtype)
    nthreads = _threads.for_work(a.size)
    if b is None:
        kernels.logsumexp(view.x3, view.to2(out), nthreads)
        sgn = None
        if return_sign:
            sgn = np.where(out == -np.inf, 0.0, 1.0).astype(dtype)
            sgn[np.isnan(out)] = np.nan
    else:
        gb = _group_axes(kernel_ready(b, dtype), axes)[0]
        b3 = view.to3(_merged(gb, first, count))
        sgn = np.empty_like(out)
        kernels.logsumexp_b(view.x3, b3, view.to2(out), view.to2(sgn), nthreads)
        if not return_sign:
            out[sgn < 0] = np.nan

    shape = out_shape_keep if keepdims else out_shape
    out = out.reshape(shape)
    out = out[()] if out.ndim == 0 else out
    if return_sign:
        sgn = sgn.reshape(shape)
        return out, (sgn[()] if sgn.ndim == 0 else sgn)
    return out


def _softmax_impl(x, axis, take_log):
    x = as_real_array(x, "x")
    dtype = compute_dtype(x)
    shape = x.shape
    axes = normalize_axes(axis, x.ndim)
    if x.ndim == 0:
        x = x.reshape(1)
    if not axes:   # axis=(): each element is its own slice
        x = x[..., np.newaxis]
        axes = (x.ndim - 1,)
    grouped, first, count, perm = _group_axes(kernel_ready(x, dtype), axes)
    merged = _merged(grouped, first, count)
    view = ClassView(merged, first)
    out = np.empty(merged.shape, dtype=dtype)
    kernels.softmax(view.x3, view.to3(out), take_log, _threads.for_work(x.size))
    out = out.reshape(grouped.shape)
    if perm is not None:
        out = out.transpose(np.argsort(perm))
    return out.reshape(shape)


def softmax(x, axis=None):
    """Softmax, ``exp(x) / sum(exp(x), axis)``, with ``scipy.special.softmax``'s semantics.

    ``axis`` is None (every axis together), an int or a tuple of ints.  A slice that holds
    +inf gives nan throughout (as SciPy); an empty slice gives an empty result (SciPy raises).

    Raises
    ------
    TypeError
        Non-numeric or complex input.
    ValueError
        ``axis`` out of range or repeated.
    """
    return _softmax_impl(x, axis, False)


def log_softmax(x, axis=None):
    """Log of the softmax, ``x - logsumexp(x, axis)``, computed as SciPy does:
    ``(x - max) - log(sum(exp(x - max)))`` with a non-finite max replaced by 0.

    See `softmax` for ``axis`` and errors.
    """
    return _softmax_impl(x, axis, True)
