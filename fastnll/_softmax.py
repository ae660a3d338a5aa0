"""logsumexp, softmax and log_softmax with scipy.special's semantics."""
import numpy as np

from . import _threads
from ._caches import LLC_BYTES, streams
from ._checks import as_real_array, broadcast_b, check_out, normalize_axes
from ._dispatch import kernels
from ._half import half_kind
from ._layout import (
    ClassView, compute_dtype, deliver, group_axes, is_weak_scalar, kernel_ready,
    kernel_writable, merge_axes, mergeable, same_memory, scalar_or_array,
)

kernels.set_llc_bytes(LLC_BYTES)    # softmax_call leaves a larger out= to the general path


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, out=None):
    """Logarithm of the sum of exponentials, ``log(sum(b * exp(a), axis))``, computed stably.

    A drop-in for ``scipy.special.logsumexp`` on real input.  The largest term is factored
    out, so large or very negative inputs neither overflow nor underflow.  The weights ``b``
    may be negative or zero; ``return_sign`` then gives the logarithm of the absolute value of
    the sum and its sign.

    Parameters
    ----------
    a : array_like
        Real input: an array or nested list of integers, bools or floats, with any strides.
    axis : None, int or tuple of ints, default None
        The axis or axes to reduce; None reduces every axis.
    b : array_like, optional
        Weight of each term, broadcast against ``a``; may be negative or zero.  None (the
        default) weighs every term 1.
    keepdims : bool, default False
        Keep the reduced axes with length 1, so that the result broadcasts against ``a``.
    return_sign : bool, default False
        Return ``(log|sum|, sign)`` instead of ``log(sum)``, so that a negative sum has a
        finite logarithm.
    out : ndarray, optional
        An array to write ``res`` into, as NumPy's ``out=``: the result's shape, a dtype the
        result casts to under ``casting="same_kind"``, writeable.  It is returned in place of
        a fresh result (a 0-d array, not a scalar, when every axis is reduced).

    Returns
    -------
    res : ndarray or NumPy scalar
        ``log(sum(b * exp(a)))`` over ``axis``: shaped like ``a`` (broadcast with ``b``)
        without the reduced axes (kept with length 1 with ``keepdims=True``), a NumPy scalar
        when every axis is reduced without ``keepdims``.  float16 or bfloat16 for such an
        ``a`` without ``b`` (read in place, computed in float32, rounded once); float32 when
        ``a`` (promoted with ``b`` by NumPy's rules) is float32 or 16-bit, float64
        otherwise.  nan where the sum
        is negative, unless ``return_sign=True``.
    sgn : ndarray or NumPy scalar
        Only with ``return_sign=True``, which returns the tuple ``(res, sgn)``: the sign of
        the sum, +1, 0 or -1 (nan where ``res`` is nan), of ``res``'s shape and dtype.

    Raises
    ------
    TypeError
        ``a`` or ``b`` is not a real numeric array (strings, objects, complex, datetimes, a
        ragged list); ``axis`` is not an integer or a tuple of integers; ``out`` is not a
        NumPy array, or of a dtype the result cannot be cast to.
    ValueError
        ``axis`` is out of range or repeated; ``b`` does not broadcast against ``a``;
        ``out`` has the wrong shape or is read-only.

    See Also
    --------
    scipy.special.logsumexp : The SciPy function mirrored here.
    softmax : ``exp(a - logsumexp(a))``.
    log_softmax : ``a - logsumexp(a)``.

    Notes
    -----
    The sum of nothing (an empty axis) is -inf.  A zero weight drops its term even where
    ``a`` is inf or nan.

    In two corners fastnll keeps to SciPy's documented rules rather than SciPy 1.17's output:
    a zero weight drops its term also when the result is infinite (SciPy's fallback for
    infinite results computes ``0 * inf = nan`` there), and a negative sum that underflows
    gives nan like any negative sum (SciPy returns -inf).

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> x = np.array([[1000.0, 1000.0], [-1000.0, -999.0]])
    >>> np.round(fastnll.logsumexp(x, axis=1), 4)     # no overflow, no underflow
    array([1000.6931, -998.6867])
    >>> from scipy.special import logsumexp as sp_logsumexp
    >>> np.allclose(fastnll.logsumexp(x, axis=1), sp_logsumexp(x, axis=1))
    True

    float32 stays float32; ``keepdims=True`` keeps the reduced axis:

    >>> fastnll.logsumexp(np.float32([[0, 1], [2, 3]]), axis=1, keepdims=True).shape
    (2, 1)
    >>> fastnll.logsumexp(np.float32([[0, 1], [2, 3]]), axis=1).dtype
    dtype('float32')

    A negative weight can make the sum negative: its logarithm is nan, unless
    ``return_sign=True``:

    >>> float(fastnll.logsumexp([1.0, 2.0], b=[1.0, -1.0]))
    nan
    >>> res, sgn = fastnll.logsumexp([1.0, 2.0], b=[1.0, -1.0], return_sign=True)
    >>> print(f"{res:.4f} {sgn:+.0f}")
    1.5413 -1
    """
    fast = kernels.logsumexp_call(a, axis, b, keepdims, return_sign, out, _threads.for_work)
    if fast is not None:
        return fast
    return _logsumexp(a, axis, b, keepdims, return_sign, partial=False, out=out)


def lse_operands(a, b, as_array):
    """logsumexp's a and b (or None) as arrays (as_array(value, name): NumPy's, or Dask's for
    fastnll.dask), broadcast against each other, and the compute dtype, in which a Python
    number b is a weak scalar (NumPy 2's promotion)."""
    a = as_array(a, "a")
    if b is None:
        return a, None, compute_dtype(a)
    weak = is_weak_scalar(b)
    b = as_array(b, "b")
    dtype = compute_dtype(a) if weak else compute_dtype(a, b)
    a, b = broadcast_b(a, b)
    return a, b, dtype


def _logsumexp(a, axis, b, keepdims, return_sign, partial, out=None):
    """logsumexp; with partial=True its results are float64 whatever the input's dtype (the
    partial log-sum-exps of chunks that fastnll.dask combines, rounded once, at the end).
    A caller's `out` receives a copy of the result: it is the input's size divided by the
    reduced length, and the kernel's own buffer is needed for the signs anyway."""
    weak = is_weak_scalar(b)
    a, b, dtype = lse_operands(a, b, as_real_array)
    # a 16-bit input (without weights) is read in place, its results rounded to its dtype;
    # with weights whose promotion with it stays 16-bit (SciPy's result dtype) it is computed
    # from a float32 copy and rounded to that dtype at the end
    kind = 0 if (b is not None or partial) else half_kind(a.dtype)
    half_result = None
    if b is not None and not partial:
        promoted = a.dtype if weak else np.result_type(a.dtype, b.dtype)
        half_result = promoted if half_kind(promoted) else None
    axes = normalize_axes(axis, a.ndim)
    if a.ndim == 0:
        a = a.reshape(1)
        b = None if b is None else b.reshape(1)
    out_shape_keep = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
    out_shape = tuple(n for i, n in enumerate(a.shape) if i not in axes)
    if out is not None:
        check_out(out, "out", out_shape_keep if keepdims else out_shape,
                  a.dtype if kind else (half_result or dtype))
    if not axes:   # axis=(): reduce over nothing, i.e. over a new axis of length 1
        a = a[..., np.newaxis]
        b = None if b is None else b[..., np.newaxis]
        axes = (a.ndim - 1,)

    a = kernel_ready(a, a.dtype if kind else dtype)
    grouped, first, count, _ = group_axes(a, axes)
    if not mergeable(grouped, first, count) and a.size:
        if b is None and not kind:
            # The reduced axes do not merge into one (a broadcast or strided view): reduce
            # the one with the smallest stride first, then the partial results weighted by
            # their signs (0 for -inf, nan for nan), instead of copying the input.
            inner = min(axes, key=lambda i: (a.strides[i] == 0, abs(a.strides[i])))
            part, sign = _logsumexp(a, inner, None, True, True, partial)
            return _logsumexp(part, axes, sign, keepdims, return_sign, partial, out)
        # With weights the same two steps would add signed partial sums rounded to the
        # input's precision (cancelling where SciPy's one sum does not) and turn an inf - inf
        # inside a row into inf: copy the input once instead (b is copied by the reshape).
        grouped = np.ascontiguousarray(grouped)
    view = ClassView(merge_axes(grouped, first, count), first)
    res = np.empty(view.outer * view.inner, dtype=np.float64 if partial else dtype)
    nthreads = _threads.for_work(a.size)
    if kind:
        res = np.empty(view.outer * view.inner, dtype=np.float32)
        kernels.half_logsumexp(x=view.x3.view(np.uint16), kind=kind, out=view.to2(res),
                               nthreads=nthreads)
        res = res.astype(a.dtype)
    if b is None:
        if not kind:
            kernels.logsumexp(x=view.x3, out=view.to2(res), nthreads=nthreads)
        sgn = None
        if return_sign:
            sgn = np.where(res == -np.inf, 0.0, 1.0).astype(res.dtype)
            sgn[np.isnan(res)] = np.nan
    else:
        gb = group_axes(kernel_ready(b, dtype), axes)[0]
        b3 = view.to3(merge_axes(gb, first, count))
        sgn = np.empty_like(res)
        kernels.logsumexp_b(x=view.x3, b=b3, out=view.to2(res), sign=view.to2(sgn),
                            nthreads=nthreads)
        if not return_sign:
            res[sgn < 0] = np.nan
        if half_result is not None:
            res, sgn = res.astype(half_result), sgn.astype(half_result)

    shape = out_shape_keep if keepdims else out_shape
    result = deliver(out, scalar_or_array(res.reshape(shape)))
    if return_sign:
        return result, scalar_or_array(sgn.reshape(shape))
    return result


def _softmax_impl(x, axis, take_log, out=None):
    x = as_real_array(x, "x")
    dtype = compute_dtype(x)
    kind = half_kind(x.dtype)     # a 16-bit input is read in place, its result of its dtype
    shape = x.shape
    axes = normalize_axes(axis, x.ndim)
    if out is not None:
        check_out(out, "out", shape, x.dtype if kind else dtype)
    if x.ndim == 0:
        x = x.reshape(1)
    if not axes:   # axis=(): each element is its own slice
        x = x[..., np.newaxis]
        axes = (x.ndim - 1,)
    x = kernel_ready(x, x.dtype if kind else dtype)
    grouped, first, count, perm = group_axes(x, axes)
    merged = merge_axes(grouped, first, count)
    view = ClassView(merged, first)
    y3 = None if out is None else _out_view(out, x, perm, merged.shape, view)
    res = None
    if y3 is None:
        res = np.empty(merged.shape, dtype=x.dtype)
        y3 = view.to3(res)
    if kind:
        kernels.half_softmax(x=view.x3.view(np.uint16), kind=kind, out=y3.view(np.uint16),
                             take_log=take_log, nthreads=_threads.for_work(x.size),
                             stream=res is None and streams(out))
    else:
        kernels.softmax(x=view.x3, out=y3, take_log=take_log,
                        nthreads=_threads.for_work(x.size),
                        stream=res is None and streams(out))
    if res is None:                                # the kernel wrote the caller's out
        return out
    res = res.reshape(grouped.shape)
    if perm is not None:
        res = res.transpose(np.argsort(perm))
    return deliver(out, scalar_or_array(res.reshape(shape)))   # a scalar for a scalar, as SciPy


def _out_view(out, x, perm, merged_shape, view):
    """The kernel's 3-D view of a caller's `out` (shaped like the input), or None where the
    kernel does not write it directly: unless it is laid out as the array the function
    allocates (kernel_writable; reduced axes that need a transpose never are), and shares no
    memory with the kernel-ready input `x` other than being `x` itself (an in-place softmax
    reads each slice before writing it)."""
    if perm is not None or not kernel_writable(out, x.dtype):
        return None
    o = out.reshape(x.shape)            # C-contiguous: a view
    if np.may_share_memory(o, x) and not same_memory(o, x):
        return None
    return view.to3(o.reshape(merged_shape))


def softmax(x, axis=None, *, out=None):
    """Softmax, ``exp(x) / sum(exp(x), axis)``: non-negative values summing to 1 along ``axis``.

    A drop-in for ``scipy.special.softmax``.  Each slice is shifted by its maximum before
    the exponential, so large inputs do not overflow.

    Parameters
    ----------
    x : array_like
        Real input: an array or nested list of integers, bools or floats, with any strides.
    axis : None, int or tuple of ints, default None
        The axis or axes over which each softmax is normalised; None normalises over the
        whole array, as in SciPy.
    out : ndarray, optional
        An array to write the result into, as NumPy's ``out=``: ``x``'s shape, a dtype the
        result casts to under ``casting="same_kind"``, writeable; it may be ``x`` itself (an
        in-place softmax).  It is returned in place of a fresh array (also for a 0-d ``x``).
        In a loop over same-shaped batches it saves the allocation (and the page faults) of
        a new output on every call.

    Returns
    -------
    s : ndarray
        Same shape as ``x`` (a NumPy scalar for a 0-d ``x``, as SciPy); the dtype of a
        float32, float16 or bfloat16 ``x`` (16-bit input is read in place and computed in
        float32, rounded once), float64 otherwise.

    Raises
    ------
    TypeError
        ``x`` is not a real numeric array (strings, objects, complex, datetimes, a ragged
        list); ``axis`` is not an integer or a tuple of integers; ``out`` is not a NumPy
        array, or of a dtype the result cannot be cast to.
    ValueError
        ``axis`` is out of range or repeated; ``out`` has the wrong shape or is read-only.

    See Also
    --------
    scipy.special.softmax : The SciPy function mirrored here.
    log_softmax : The logarithm of the softmax, exact where the softmax underflows.
    logsumexp : The log of the normaliser.

    Notes
    -----
    A slice that holds +inf gives nan throughout, as in SciPy.  An empty slice gives an empty
    result, where SciPy raises.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    >>> np.round(fastnll.softmax(x, axis=1), 4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    >>> from scipy.special import softmax as sp_softmax
    >>> np.allclose(fastnll.softmax(x, axis=1), sp_softmax(x, axis=1))
    True

    With the default ``axis=None`` the whole array is one distribution:

    >>> float(fastnll.softmax(x).sum())
    1.0

    In a loop over same-shaped batches, ``out=`` reuses one buffer:

    >>> buf = np.empty_like(x)
    >>> y = fastnll.softmax(x, axis=1, out=buf)
    >>> y is buf
    True
    """
    fast = kernels.softmax_call(x, axis, out, False, _threads.for_work)
    if fast is not None:
        return fast
    return _softmax_impl(x, axis, False, out)


def log_softmax(x, axis=None, *, out=None):
    """Logarithm of the softmax, ``x - logsumexp(x, axis)``, computed stably.

    A drop-in for ``scipy.special.log_softmax``.  It stays exact where the softmax itself
    underflows to 0 (its logarithm would be -inf), which makes it the input of choice for
    `nll_loss`.

    Parameters
    ----------
    x : array_like
        Real input: an array or nested list of integers, bools or floats, with any strides.
    axis : None, int or tuple of ints, default None
        The axis or axes over which each softmax is normalised; None normalises over the
        whole array, as in SciPy.
    out : ndarray, optional
        An array to write the result into, as NumPy's ``out=``: ``x``'s shape, a dtype the
        result casts to under ``casting="same_kind"``, writeable; it may be ``x`` itself (an
        in-place softmax).  It is returned in place of a fresh array (also for a 0-d ``x``).
        In a loop over same-shaped batches it saves the allocation (and the page faults) of
        a new output on every call.

    Returns
    -------
    s : ndarray
        Same shape as ``x`` (a NumPy scalar for a 0-d ``x``, as SciPy); the dtype of a
        float32, float16 or bfloat16 ``x`` (16-bit input is read in place and computed in
        float32, rounded once), float64 otherwise.

    Raises
    ------
    TypeError
        ``x`` is not a real numeric array (strings, objects, complex, datetimes, a ragged
        list); ``axis`` is not an integer or a tuple of integers; ``out`` is not a NumPy
        array, or of a dtype the result cannot be cast to.
    ValueError
        ``axis`` is out of range or repeated; ``out`` has the wrong shape or is read-only.

    See Also
    --------
    scipy.special.log_softmax : The SciPy function mirrored here.
    softmax : ``exp`` of this function.
    cross_entropy : log-softmax and negative log-likelihood fused in one pass.

    Notes
    -----
    Computed as SciPy does: ``(x - max) - log(sum(exp(x - max)))``, with a non-finite max
    replaced by 0.  Hence ``log_softmax([inf, 1])`` is ``[nan, -inf]``, as in SciPy (whereas
    `cross_entropy` of such a row is nan, as in PyTorch).  An empty slice gives an empty
    result, where SciPy raises.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    >>> np.round(fastnll.log_softmax(x, axis=1), 4)
    array([[-2.4076, -1.4076, -0.4076],
           [-1.0986, -1.0986, -1.0986]])
    >>> from scipy.special import log_softmax as sp_log_softmax
    >>> np.allclose(fastnll.log_softmax(x, axis=1), sp_log_softmax(x, axis=1))
    True

    Where the softmax underflows, its logarithm is still exact:

    >>> fastnll.softmax([0.0, -1000.0])
    array([1., 0.])
    >>> fastnll.log_softmax([0.0, -1000.0])
    array([    0., -1000.])
    """
    fast = kernels.softmax_call(x, axis, out, True, _threads.for_work)
    if fast is not None:
        return fast
    return _softmax_impl(x, axis, True, out)
