"""Elementwise likelihood losses with torch.nn.functional's semantics: binary cross-entropy
with logits, Gaussian NLL, Poisson NLL, KL divergence."""
import numpy as np

from . import _threads
from ._dispatch import kernels
from ._validation import (
    as_real_array, check_broadcast, check_nonnegative, check_reduction, check_shape,
    compute_dtype, empty_out, finish_reduction, joint_3d, kernel_ready, real_number,
)

_BCE, _GAUSS, _POISSON, _KL = 0, 1, 2, 3
_FULL, _LOG_INPUT, _LOG_TARGET, _HAS_A, _HAS_B = 1, 2, 4, 8, 16


def _run(kind, x, y, a, b, p0, flags, reduction, return_grad, divisor, dtype):
    """Allocate outputs, run the elementwise kernel, finish the reduction.

    x is the input (its shape is the result's); y, a, b are already broadcast to it (an
    absent a or b is any stand-in of that shape, and its flag _HAS_A / _HAS_B is clear).
    Returns (loss, grad_x, grad_a)."""
    shape = x.shape
    n = x.size
    if divisor is None:
        divisor = n
    sigma = 1.0 / divisor if (reduction in ("mean", "batchmean") and divisor) else 1.0
    want_rows = reduction == "none"
    rows = np.empty(shape, dtype=dtype) if want_rows else None
    gx = np.empty(shape, dtype=dtype) if return_grad else None
    ga = np.empty(shape, dtype=dtype) if (return_grad and kind == _GAUSS) else None
    outs = [o for o in (rows, gx, ga) if o is not None]
    empty3 = empty_out(dtype, 3)
    nthreads = _threads.for_work(n)
    total = 0.0
    for views in joint_3d(shape, [x, y, a, b] + outs):   # usually one group
        x3, y3, a3, b3 = views[:4]
        rest = iter(views[4:])
        r3 = next(rest) if want_rows else empty3
        g3 = next(rest) if return_grad else empty3
        ga3 = next(rest) if ga is not None else empty3
        total += kernels.pointwise_loss(kind, x3, y3, a3, b3, p0, flags, sigma, r3, want_rows,
                                        g3, ga3, return_grad, nthreads)
    return finish_reduction(reduction, total, divisor, rows, dtype), gx, ga


def _operands(input, target):
    x = as_real_array(input, "input")
    y = as_real_array(target, "target")
    dtype = compute_dtype(x)
    return kernel_ready(x, dtype), y, dtype


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None, return_grad=False):
    """Binary cross-entropy between logits ``input`` and targets in [0, 1].

    Semantics of ``torch.nn.functional.binary_cross_entropy_with_logits``: the loss of an
    element is ``-w [pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]``, computed in the
    stable form ``w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)]``, so logits of magnitude 1e30
    do not overflow.

    Parameters
    ----------
    input : array_like
        Logits.  float32 stays float32; other dtypes compute in float64.
    target : array_like
        Same shape as ``input`` (as in PyTorch); values in [0, 1].
    weight : array_like, optional
        Non-negative weights, broadcast to the input's shape.
    reduction : {"mean", "sum", "none"}
    pos_weight : array_like, optional
        Non-negative weight of positive examples, broadcast to the input's shape (typically
        one per class, along the last axis).
    return_grad : bool
        Also return d(loss)/d(input).

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray for ``reduction="none"``
    grad : ndarray shaped like ``input`` (only with ``return_grad=True``)

    Raises
    ------
    ValueError
        Target of another shape, weight or pos_weight not broadcastable or negative, unknown
        reduction.  (PyTorch accepts negative weights; fastnll does not.)
    TypeError
        Non-numeric input.
    """
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    check_shape("target", y.shape, x.shape, "it must match the input's shape")
    y = kernel_ready(y, dtype)
    extra, flags = [], 0
    for name, val, flag in (("weight", weight, _HAS_A), ("pos_weight", pos_weight, _HAS_B)):
        if val is None:
            extra.append(x)           # a stand-in of the right shape: never read
            continue
        flags |= flag
        arr = kernel_ready(as_real_array(val, name), dtype)
        check_nonnegative(name, arr)
        extra.append(check_broadcast(name, arr, x.shape))
    loss, gx, _ = _run(_BCE, x, y, extra[0], extra[1], 0.0, flags, reduction, return_grad,
                       None, dtype)
    return (loss, gx) if return_grad else loss


def _gaussian_var(var, x_shape, dtype):
    """PyTorch's rules for var's shape: the input's shape; the input's shape less its last
    axis; or the input's shape with exactly one axis of size 1.  Returns (broadcast var,
    callable that reduces a full-size gradient to var's own shape)."""
    v = as_real_array(var, "var")
    orig_shape = v.shape
    v = kernel_ready(v, dtype)
    check_nonnegative("var", v)
    if v.ndim == 0:
        return np.broadcast_to(v, x_shape), lambda g: dtype.type(g.sum(dtype=np.float64))
    if v.shape == tuple(x_shape):
        return v, lambda g: g
    if v.shape == tuple(x_shape[:-1]):
        v = v[..., None]
    elif not (v.ndim == len(x_shape)
              and sum(1 for a, b in zip(x_shape, v.shape) if a != b) == 1
              and all(b == 1 for a, b in zip(x_shape, v.shape) if a != b)):
        raise ValueError(
            f"var has shape {orig_shape}, which does not fit input shape {tuple(x_shape)}: "
            "expected the input's shape, the input's shape without its last axis, or the "
            "input's shape with one axis of size 1"
        )
    axes = tuple(i for i, (a, b) in enumerate(zip(x_shape, v.shape)) if a != b)

    def reduce(g):
        return g.sum(axis=axes, keepdims=True, dtype=np.float64).astype(dtype).reshape(orig_shape)
    return np.broadcast_to(v, x_shape), reduce


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean",
                      return_grad=False):
    """Negative log-likelihood of ``target`` under normal distributions N(input, var).

    Semantics of ``torch.nn.functional.gaussian_nll_loss``: the loss of an element is
    ``0.5 (log v + (input - target)^2 / v)`` (plus ``0.5 log(2 pi)`` with ``full=True``),
    ``v = max(var, eps)``.  ``var`` may have the input's shape, the input's shape without the
    last axis (one variance per sample), the input's shape with one axis of size 1, or be a
    scalar; a negative entry raises ValueError.

    Parameters
    ----------
    input : array_like
        Predicted means.  float32 stays float32; other dtypes compute in float64.
    target : array_like
        Observations, broadcast to the input's shape.
    var : array_like or float
    full : bool
    eps : float
        Clamp for var (the gradient flows through the clamp, as in PyTorch).
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return ``(grad_input, grad_var)``, ``grad_var`` shaped like ``var``.

    Returns
    -------
    loss : scalar or ndarray
    (grad_input, grad_var) : only with ``return_grad=True``

    Raises
    ------
    ValueError
        Negative var, var or target of an unfitting shape, unknown reduction.
    TypeError
        Non-numeric input.
    """
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", kernel_ready(y, dtype), x.shape)
    v, reduce_var = _gaussian_var(var, x.shape, dtype)
    loss, gx, gv = _run(_GAUSS, x, y, v, x, real_number(eps, "eps"),
                        (_FULL if full else 0) | _HAS_A, reduction,
                        return_grad, None, dtype)
    return (loss, (gx, reduce_var(gv))) if return_grad else loss


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean",
                     return_grad=False):
    """Negative log-likelihood of counts ``target`` under Poisson rates given by ``input``.

    Semantics of ``torch.nn.functional.poisson_nll_loss``: with ``log_input=True`` the loss of
    an element is ``exp(input) - target * input``; otherwise ``input - target * log(input +
    eps)``.  ``full=True`` adds Stirling's approximation of ``log(target!)`` where
    ``target > 1``.

    Parameters
    ----------
    input : array_like
        Log-rates (``log_input=True``) or rates.
    target : array_like
        Counts, broadcast to the input's shape.
    log_input, full : bool
    eps : float
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return d(loss)/d(input).

    Raises
    ------
    ValueError
        Target not broadcastable to the input, unknown reduction.
    TypeError
        Non-numeric input.
    """
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", kernel_ready(y, dtype), x.shape)
    flags = (_FULL if full else 0) | (_LOG_INPUT if log_input else 0)
    loss, gx, _ = _run(_POISSON, x, y, x, x, real_number(eps, "eps"), flags, reduction,
                       return_grad,
                       None, dtype)
    return (loss, gx) if return_grad else loss


def kl_div(input, target, reduction="mean", log_target=False, return_grad=False):
    """Kullback-Leibler divergence D(target || exp(input)) for log-probabilities ``input``.

    Semantics of ``torch.nn.functional.kl_div``: the loss of an element is
    ``target * (log(target) - input)`` (0 where ``target`` is 0), or with ``log_target=True``
    ``exp(target) * (target - input)``.  ``reduction="batchmean"`` divides the sum by the
    size of the first axis (the KL divergence per sample); ``"mean"`` divides by the number of
    elements (PyTorch warns about that choice; fastnll just computes it).

    Parameters
    ----------
    input : array_like
        Log-probabilities.
    target : array_like
        Probabilities (or log-probabilities with ``log_target=True``), broadcast to the
        input's shape.
    reduction : {"mean", "batchmean", "sum", "none"}
    log_target : bool
    return_grad : bool
        Also return d(loss)/d(input).

    Raises
    ------
    ValueError
        Target not broadcastable to the input, unknown reduction.
    TypeError
        Non-numeric input.
    """
    reduction = check_reduction(reduction, ("none", "batchmean", "mean", "sum"))
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", kernel_ready(y, dtype), x.shape)
    divisor = None
    if reduction == "batchmean":
        divisor = x.shape[0] if x.ndim else 1
    loss, gx, _ = _run(_KL, x, y, x, x, 0.0, _LOG_TARGET if log_target else 0,
                       reduction, return_grad, divisor, dtype)
    return (loss, gx) if return_grad else loss
