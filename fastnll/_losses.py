"""nll_loss and cross_entropy with torch.nn.functional's semantics, on NumPy arrays."""
import operator

import numpy as np

from . import _threads
from ._dispatch import kernels
from ._validation import (
    ClassView, as_real_array, check_label_smoothing, check_nonnegative, check_reduction,
    check_shape, compute_dtype, empty_out, finish_reduction, kernel_ready, normalize_axis,
)


def _class_axis(ndim, axis):
    if ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis), got a scalar")
    if axis is None:
        return 0 if ndim == 1 else 1
    return normalize_axis(axis, ndim)


def _weight(weight, C, dtype):
    if weight is None:
        return empty_out(dtype, 1), False
    w = as_real_array(weight, "weight")
    check_shape("weight", w.shape, (C,), "the input has C classes; expected shape")
    w = kernel_ready(w, dtype)
    check_nonnegative("weight", w)      # nan passes, as in PyTorch and the elementwise losses
    return w, True


_I64 = np.dtype(np.int64)


def _out_of_bounds(value, C, ignore_index):
    valid = f"0..{C - 1} or " if C else ""
    return IndexError(f"target {value} is out of bounds for {C} classes "
                      f"(valid targets are {valid}ignore_index={ignore_index})")


def _target_array(target, what):
    """np.asarray(target), with errors that name the target: a ragged nested list is a
    TypeError, and a list of Python ints that do not all fit in int64 (which NumPy stores as
    float64 or object) comes back as an object array, for _class_targets to report the value
    (rather than being taken for probabilities)."""
    try:
        t = np.asarray(target)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"target must be an array of {what}: {exc}") from None
    if t.dtype.kind == "f" and t.size and not isinstance(target, np.ndarray):
        obj = np.asarray(target, dtype=object)
        if obj.shape == t.shape and all(type(v) is int for v in obj.flat):
            return obj
    return t


def _class_targets(target, x_shape, axis, C, ignore_index):
    t = _target_array(target, "integer class indices")
    if t.dtype != _I64:
        if t.dtype.kind not in "iu":
            if t.dtype.kind == "O":      # Python ints beyond 64 bits
                for v in t.flat:
                    if type(v) is int and not -(2 ** 63) <= v < 2 ** 63:
                        raise _out_of_bounds(v, C, ignore_index)
            raise TypeError(
                f"target must hold integer class indices, got dtype {t.dtype!s}"
            )
        if t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max:
            raise _out_of_bounds(int(t.max()), C, ignore_index)
    t = kernel_ready(t, _I64)          # also aligns e.g. a field of a structured array
    if t.shape != x_shape[:axis] + x_shape[axis + 1:]:
        check_shape("target", t.shape, x_shape[:axis] + x_shape[axis + 1:],
                    f"input has shape {tuple(x_shape)} with classes on axis {axis}; "
                    "expected")
    return t


def _ignore_index(ignore_index):
    if isinstance(ignore_index, (bool, np.bool_)):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    if not -(2 ** 63) <= value < 2 ** 63:
        raise ValueError(f"ignore_index must fit in 64 bits, got {value}")
    return value


_REDUCTION_CODE = {"none": 0, "mean": 1, "sum": 2}


def _class_loss(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                return_grad, is_nll):
    x = as_real_array(input, "input")
    reduction = check_reduction(reduction)
    code = _REDUCTION_CODE[reduction]
    ignore_index = _ignore_index(ignore_index)
    dtype = compute_dtype(x)
    ax = _class_axis(x.ndim, axis)
    C = x.shape[ax]
    w, has_w = _weight(weight, C, dtype)
    t = _class_targets(target, x.shape, ax, C, ignore_index)
    x = kernel_ready(x, dtype)
    view = ClassView(x, ax)
    shape = x.shape
    rows = np.empty(shape[:ax] + shape[ax + 1:], dtype=dtype) if code == 0 else None
    grad = None
    if return_grad:
        grad = np.zeros(shape, dtype=dtype) if is_nll else np.empty(shape, dtype=dtype)
    bad, badv, total, denom = kernels.class_loss(
        view.x3, view.to2(t), w, has_w, ignore_index, label_smoothing, is_nll, code,
        view.to2(rows) if code == 0 else empty_out(dtype, 2),
        view.to3(grad) if return_grad else empty_out(dtype, 3), return_grad,
        _threads.for_work(x.size),
    )
    if bad >= 0:
        raise _out_of_bounds(badv, C, ignore_index)
    loss = finish_reduction(reduction, total, denom, rows, dtype)
    return (loss, grad) if return_grad else loss


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", axis=None,
             return_grad=False):
    """Negative log-likelihood of class indices under log-probabilities ``input``.

    Semantics of ``torch.nn.functional.nll_loss``: the loss of a sample is
    ``-weight[t] * input[..., t, ...]``; ``reduction="mean"`` divides the sum by the summed
    weights of the targets that are not ``ignore_index`` (nan when every target is ignored).

    Parameters
    ----------
    input : array_like, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities.  float32 stays float32; other dtypes compute in float64.
    target : array_like of integers
        Class indices in [0, C) or ``ignore_index``, shaped like ``input`` without the class
        axis.  Any integer dtype is accepted (PyTorch takes only int64 and uint8).
    weight : array_like, shape (C,), optional
        Non-negative class weights (PyTorch does not check the sign; fastnll does).
    ignore_index : int
    reduction : {"mean", "sum", "none"}
    axis : int, optional
        The class axis.  None means PyTorch's convention: axis 1, or axis 0 for a 1-D input.
    return_grad : bool
        Also return d(loss)/d(input) (for "none", of the sum of the losses).

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray for ``reduction="none"``
    grad : ndarray shaped like ``input`` (only with ``return_grad=True``)

    Raises
    ------
    IndexError
        A target outside [0, C) that is not ``ignore_index``.
    ValueError
        Mismatched shapes, unknown reduction, axis out of range, negative weight.
    TypeError
        Non-numeric input, non-integer target.
    """
    return _class_loss(input, target, weight, ignore_index, reduction, 0.0, axis, return_grad,
                       True)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, return_grad=False):
    """Cross-entropy between logits ``input`` and class targets, fused log-softmax + NLL.

    Semantics of ``torch.nn.functional.cross_entropy``.  ``target`` is either class indices
    (an integer array shaped like ``input`` without the class axis, with ``ignore_index``) or
    class probabilities (a float array shaped like ``input``).  With class indices the loss of
    a sample is ``(1-eps) w[t] (lse - x[t]) + eps/C * sum_j w[j] (lse - x[j])`` (PyTorch's
    label-smoothing formula) and ``"mean"`` divides by the summed weights of the kept targets;
    with probabilities the targets are smoothed to ``(1-eps) p + eps/C``, the loss is
    ``-sum_j w[j] p[j] log_softmax(x)[j]`` and ``"mean"`` divides by the number of samples.

    A row holding +inf gives nan, as in PyTorch (``log_softmax`` is nan there).

    Parameters
    ----------
    input : array_like, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Logits (unnormalised).  float32 stays float32; other dtypes compute in float64.
    target : array_like
        Integer class indices, or float class probabilities of the input's shape.
    weight : array_like, shape (C,), optional
        Non-negative class weights.
    ignore_index : int
        Targets equal to it add nothing and are left out of the mean (class indices only).
    reduction : {"mean", "sum", "none"}
    label_smoothing : float in [0, 1]
        PyTorch silently accepts negative values; fastnll raises ValueError.
    axis : int, optional
        The class axis; None means axis 1 (axis 0 for a 1-D input).  For example ``axis=-1``
        on ``(batch, time, vocab)`` logits, with a ``(batch, time)`` target.
    return_grad : bool
        Also return d(loss)/d(input), computed in the same fused kernel pass.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray for ``reduction="none"``
    grad : ndarray shaped like ``input`` (only with ``return_grad=True``)

    Raises
    ------
    IndexError
        A class target outside [0, C) that is not ``ignore_index``.
    ValueError
        Mismatched shapes, unknown reduction, axis out of range, ``label_smoothing`` outside
        [0, 1], negative weight.
    TypeError
        Non-numeric input or target.

    Examples
    --------
    >>> import numpy as np, fastnll
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> round(float(fastnll.cross_entropy(logits, np.array([0, 2]))), 6)
    0.142566
    """
    eps = check_label_smoothing(label_smoothing)
    t = _target_array(target, "integer class indices or float class probabilities")
    if t.dtype.kind != "f":
        return _class_loss(input, t, weight, ignore_index, reduction, eps, axis, return_grad,
                           False)
    x = as_real_array(input, "input")
    reduction = check_reduction(reduction)
    _ignore_index(ignore_index)        # unused with probabilities, but checked all the same
    code = _REDUCTION_CODE[reduction]
    dtype = compute_dtype(x)
    ax = _class_axis(x.ndim, axis)
    C = x.shape[ax]
    check_shape("target", t.shape, x.shape,
                "probability targets must have the input's shape")
    w, has_w = _weight(weight, C, dtype)
    x = kernel_ready(x, dtype)
    view = ClassView(x, ax)
    t3 = view.to3(kernel_ready(t, dtype))
    nrows = view.outer * view.inner
    sigma = 1.0 / nrows if (code == 1 and nrows) else 1.0
    rows = np.empty(x.shape[:ax] + x.shape[ax + 1:], dtype=dtype) if code == 0 else None
    grad = np.empty(x.shape, dtype=dtype) if return_grad else None
    total = kernels.prob_loss(
        view.x3, t3, w, has_w, eps, sigma,
        view.to2(rows) if code == 0 else empty_out(dtype, 2), code == 0,
        view.to3(grad) if return_grad else empty_out(dtype, 3), return_grad,
        _threads.for_work(x.size),
    )
    # "mean" of an input with no elements is nan, as in PyTorch (also with rows but C = 0)
    loss = finish_reduction(reduction, total, nrows if x.size else 0, rows, dtype)
    return (loss, grad) if return_grad else loss
