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


_I64_MIN, _I64_END = -(2 ** 63), 2 ** 63


def _ignore_index(ignore_index):
    if type(ignore_index) is int and _I64_MIN <= ignore_index < _I64_END:
        return ignore_index
    if isinstance(ignore_index, (bool, np.bool_)):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    if not _I64_MIN <= value < _I64_END:
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

    A drop-in for ``torch.nn.functional.nll_loss`` on NumPy arrays.  The loss of a sample
    with target class ``t`` is ``-weight[t] * input[..., t, ...]``, the log-probability of
    its class picked along the class axis.  Pass ``log_softmax`` output as ``input``, or
    call `cross_entropy` on the logits, which fuses both steps.

    Parameters
    ----------
    input : array_like, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities, classes along ``axis``.  Any real dtype and strides.
    target : array_like of int
        Class indices in ``[0, C)`` or ``ignore_index``, shaped like ``input`` without the
        class axis.  Any integer dtype (PyTorch takes only int64 and uint8).
    weight : array_like, shape (C,), optional
        Non-negative weight of each class (PyTorch does not check the sign; fastnll does).
        None (the default) weighs every class 1.
    ignore_index : int, default -100
        Targets equal to it add nothing to the loss and are left out of the mean.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"``: the sum of the losses divided by the summed weights of the targets that
        are not ``ignore_index`` (nan when every target is ignored); ``"sum"``: their sum;
        ``"none"``: one loss per sample.
    axis : int, optional
        The class axis.  None (the default) is PyTorch's convention: axis 1, or axis 0 for a
        1-D ``input``.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``input``.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``; for ``"none"`` an array shaped like
        ``target`` (a scalar for a 1-D ``input``).  float32 for float32 or float16 ``input``,
        float64 otherwise.
    grad : ndarray
        Only with ``return_grad=True``, which returns the tuple ``(loss, grad)``:
        ``d(loss)/d(input)``, shaped like ``input``, of ``loss``'s dtype (for ``"none"``, the
        gradient of the sum of the losses).

    Raises
    ------
    IndexError
        A target outside ``[0, C)`` that is not ``ignore_index``.
    ValueError
        ``input`` is 0-d; ``target`` or ``weight`` has the wrong shape; unknown
        ``reduction``; ``axis`` out of range; a negative weight; ``ignore_index`` does not
        fit in 64 bits.
    TypeError
        ``input`` or ``weight`` is not a real numeric array; ``target`` does not hold integers
        (floats and bools are refused); ``ignore_index`` or ``axis`` is not an integer.

    See Also
    --------
    torch.nn.functional.nll_loss : The PyTorch function mirrored here.
    cross_entropy : log-softmax and this loss fused, from logits.
    log_softmax : Log-probabilities from logits.
    fastnll.torch.nll_loss : This loss as a PyTorch autograd function.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> logp = fastnll.log_softmax(logits, axis=1)
    >>> target = np.array([0, 2])
    >>> print(f"{fastnll.nll_loss(logp, target):.4f}")
    0.1755
    >>> np.round(fastnll.nll_loss(logp, target, reduction="none"), 4)
    array([0.2413, 0.1096])

    An ignored target is left out of the mean; class weights weigh the mean:

    >>> print(f"{fastnll.nll_loss(logp, np.array([0, -100])):.4f}")
    0.2413
    >>> print(f"{fastnll.nll_loss(logp, target, weight=np.array([2.0, 1.0, 1.0])):.4f}")
    0.1974

    The gradient is ``-weight[t] / (summed weights)`` at each target, 0 elsewhere:

    >>> loss, grad = fastnll.nll_loss(logp, target, return_grad=True)
    >>> grad
    array([[-0.5,  0. ,  0. ],
           [ 0. ,  0. , -0.5]])
    """
    fast = kernels.class_loss_fast(input, target, weight, ignore_index, reduction, 0.0, axis,
                                   return_grad, True, _threads.for_work)
    if fast is not None:
        return fast
    return _class_loss(input, target, weight, ignore_index, reduction, 0.0, axis, return_grad,
                       True)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, return_grad=False):
    """Cross-entropy between logits ``input`` and class targets: log-softmax and NLL fused.

    A drop-in for ``torch.nn.functional.cross_entropy`` on NumPy arrays, in one pass over the
    logits (which also yields the gradient, with ``return_grad=True``).  ``target`` holds
    either class indices (an integer array shaped like ``input`` without the class axis) or
    class probabilities (a float array shaped like ``input``).

    Parameters
    ----------
    input : array_like, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Logits (unnormalised), classes along ``axis``.  Any real dtype and strides.
    target : array_like
        Integer class indices in ``[0, C)`` or ``ignore_index`` (any integer dtype), or float
        class probabilities of the input's shape.  A float target is always read as
        probabilities.
    weight : array_like, shape (C,), optional
        Non-negative weight of each class.  None (the default) weighs every class 1.
    ignore_index : int, default -100
        Targets equal to it add nothing and are left out of the mean (class indices only).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides the sum by the summed weights of the kept targets (class indices)
        or by the number of samples (probabilities); ``"none"`` gives one loss per sample.
    label_smoothing : float, default 0.0
        In ``[0, 1]``: the share of the target mass spread uniformly over the ``C`` classes.
    axis : int, optional
        The class axis.  None (the default) means axis 1, or axis 0 for a 1-D ``input``; for
        example ``axis=-1`` for ``(batch, time, vocab)`` logits with a ``(batch, time)``
        target.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``input``, computed in the same
        fused kernel pass.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``; for ``"none"`` an array shaped like
        ``input`` without the class axis (a scalar for a 1-D ``input``).  float32 for float32
        or float16 ``input``, float64 otherwise.
    grad : ndarray
        Only with ``return_grad=True``, which returns the tuple ``(loss, grad)``:
        ``d(loss)/d(input)``, shaped like ``input``, of ``loss``'s dtype (for ``"none"``, the
        gradient of the sum of the losses).

    Raises
    ------
    IndexError
        A class target outside ``[0, C)`` that is not ``ignore_index``.
    ValueError
        ``input`` is 0-d; ``target`` or ``weight`` has the wrong shape (including a float
        target that is not shaped like ``input``); unknown ``reduction``; ``axis`` out of
        range; ``label_smoothing`` outside ``[0, 1]`` or nan; a negative weight;
        ``ignore_index`` does not fit in 64 bits.
    TypeError
        ``input`` or ``weight`` is not a real numeric array; ``target`` is neither integer
        nor float (bools, strings, complex, a ragged list); ``label_smoothing`` is not a real
        number; ``ignore_index`` or ``axis`` is not an integer.

    See Also
    --------
    torch.nn.functional.cross_entropy : The PyTorch function mirrored here.
    nll_loss : The same loss from log-probabilities.
    log_softmax, logsumexp : Its building blocks.
    fastnll.torch.cross_entropy : This loss as a PyTorch autograd function.

    Notes
    -----
    With class indices, the loss of a sample with target ``t`` is PyTorch's label-smoothing
    formula ``(1-eps) w[t] (lse - x[t]) + eps/C * sum_j w[j] (lse - x[j])``, where ``lse`` is
    the log-sum-exp of the sample's logits ``x`` and ``eps`` is ``label_smoothing``.  With
    probabilities ``p``, the targets are smoothed to ``(1-eps) p + eps/C`` and the loss is
    ``-sum_j w[j] p[j] log_softmax(x)[j]``.

    A row holding +inf gives nan, as in PyTorch (``log_softmax`` is nan there).  PyTorch
    silently accepts a negative ``label_smoothing`` or class weight; fastnll raises
    ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> target = np.array([0, 2])
    >>> print(f"{fastnll.cross_entropy(logits, target):.4f}")
    0.1755
    >>> print(f"{fastnll.cross_entropy(logits, target, label_smoothing=0.1):.4f}")
    0.3455

    Class probabilities as the target:

    >>> probs = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    >>> print(f"{fastnll.cross_entropy(logits, probs):.4f}")
    0.2505

    The gradient of the mean loss is ``(softmax(logits) - onehot(target)) / N``:

    >>> loss, grad = fastnll.cross_entropy(logits, target, return_grad=True)
    >>> np.allclose(grad, (fastnll.softmax(logits, axis=1) - np.eye(3)[target]) / 2)
    True

    Sequence logits with the classes last; float32 stays float32:

    >>> x = np.zeros((2, 4, 10), dtype=np.float32)    # (batch, time, vocab)
    >>> y = np.zeros((2, 4), dtype=np.int64)          # (batch, time)
    >>> loss = fastnll.cross_entropy(x, y, axis=-1)
    >>> print(loss.dtype, f"{loss:.4f}")              # log(10)
    float32 2.3026
    """
    fast = kernels.class_loss_fast(input, target, weight, ignore_index, reduction,
                                   label_smoothing, axis, return_grad, False, _threads.for_work)
    if fast is not None:
        return fast
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
