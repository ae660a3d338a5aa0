"""Elementwise likelihood losses with torch.nn.functional's semantics: binary cross-entropy
with logits, Gaussian NLL, Poisson NLL, KL divergence."""
import numpy as np

from . import _threads
from ._checks import (
    as_real_array, check_broadcast, check_gaussian_var_shape, check_grad_out, check_nonnegative,
    check_reduction, check_shape, real_number,
)
from ._dispatch import kernels
from ._half import half_kind
from ._layout import (
    compute_dtype, deliver, finish_reduction, joint_3d, kernel_ready, output_array, with_grad,
)

_KIND = kernels.Elementwise


def _run(kind, x, y, a=None, b=None, eps=0.0, full=False, log_input=False, log_target=False,
         reduction="mean", return_grad=False, divisor=None, dtype=None, grad_out=None):
    """Allocate outputs, run the elementwise kernel, finish the reduction.

    x is the input (its shape is the result's); y, and a and b where given, are already
    broadcast to it.  Returns (loss, grad_x, grad_a); grad_a only for the Gaussian's var.
    grad_x is the caller's grad_out itself where the kernel can write it."""
    shape = x.shape
    n = x.size
    if divisor is None:
        divisor = n
    sigma = 1.0 / divisor if (reduction in ("mean", "batchmean") and divisor) else 1.0
    rows = np.empty(shape, dtype=dtype) if reduction == "none" else None
    gx = output_array(grad_out, shape, dtype, (x, y, a, b)) if return_grad else None
    # 16-bit operands (all of x's dtype): read in place by the kernel, which leaves the
    # Gaussian's var gradient in float32, for the caller's sum over var's broadcast axes
    half = half_kind(dtype)
    ga = (np.empty(shape, dtype=np.float32 if half else dtype)
          if (return_grad and kind == _KIND.GAUSSIAN) else None)
    optional = (a, b, rows, gx, ga)
    nthreads = _threads.for_work(n)
    total = 0.0
    for views in joint_3d(shape, [x, y] + [v for v in optional if v is not None]):
        rest = iter(views[2:])       # the views of the optional operands that are there
        a3, b3, rows3, gx3, ga3 = [None if v is None else next(rest) for v in optional]
        if half:
            x3, y3, a3, b3, rows3, gx3 = [None if v is None else v.view(np.uint16) for v in
                                          (views[0], views[1], a3, b3, rows3, gx3)]
            total += kernels.half_elementwise_loss(
                kind=kind, half=half, x=x3, y=y3, a=a3, b=b3, eps=eps, full=full,
                log_input=log_input, log_target=log_target, sigma=sigma, rows=rows3,
                grad=gx3, grad_a=ga3, nthreads=nthreads)
            continue
        total += kernels.elementwise_loss(
            kind=kind, x=views[0], y=views[1], a=a3, b=b3, eps=eps, full=full,
            log_input=log_input, log_target=log_target, sigma=sigma, rows=rows3, grad=gx3,
            grad_a=ga3, nthreads=nthreads)
    return finish_reduction(reduction, total, divisor, rows, dtype), gx, ga


def _operands(input, target):
    x = as_real_array(input, "input")
    y = as_real_array(target, "target")
    # the input's dtype decides: float32 or float64, or a 16-bit one kept (read in place)
    dtype = x.dtype if half_kind(x.dtype) else compute_dtype(x)
    return kernel_ready(x, dtype), y, dtype


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None, return_grad=False, *, grad_out=None):
    """Binary cross-entropy between logits ``input`` and targets in [0, 1].

    A drop-in for ``torch.nn.functional.binary_cross_entropy_with_logits`` on NumPy arrays:
    the sigmoid and the binary cross-entropy fused, for multi-label classification or any
    independent yes/no predictions.  The loss of an element is
    ``-w [pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]``, with ``x`` the logit, ``y``
    the target, ``w`` the weight and ``pw`` the positive weight.

    Parameters
    ----------
    input : array_like
        Logits, of any shape.  Any real dtype and strides.
    target : array_like
        Targets in [0, 1] (usually 0 or 1), of the same shape as ``input`` (as in PyTorch, no
        broadcasting).
    weight : array_like, optional
        Weight of each element, of any sign (as in PyTorch), broadcast to the input's
        shape.  None (the default) weighs every element 1.
    reduction : {"mean", "sum", "none"}, default "mean"
        The mean or sum over all elements, or ``"none"`` for one loss per element.
    pos_weight : array_like, optional
        Weight of the positive term, of any sign (as in PyTorch), broadcast to the input's
        shape (typically one per class, along the last axis).  None (the default) means 1.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``input``.
    grad_out : ndarray, optional
        Keyword only.  With ``return_grad=True``, an array to write the gradient into, as
        NumPy's ``out=``: ``input``'s shape, a dtype the gradient casts to under
        ``casting="same_kind"``, writeable.  It is returned as the gradient: in a training
        loop, one buffer serves every call instead of a new gradient each time.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``, an array of the input's shape for
        ``"none"``.  The dtype of a float32, float16 or bfloat16 ``input`` (16-bit input is
        read in place and computed in float32), float64 otherwise (the dtype of ``input``
        decides).
    grad : ndarray
        Only with ``return_grad=True``, which returns the tuple ``(loss, grad)``:
        ``d(loss)/d(input)``, of the input's shape and ``loss``'s dtype (for ``"none"``, the
        gradient of the sum of the losses).

    Raises
    ------
    ValueError
        ``target`` of another shape; ``weight`` or ``pos_weight`` that does not broadcast to
        the input's shape; unknown ``reduction``;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input``, ``target``, ``weight`` or ``pos_weight`` is not a real numeric array;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

    See Also
    --------
    torch.nn.functional.binary_cross_entropy_with_logits : The PyTorch function mirrored here.
    cross_entropy : The loss for one class out of C.
    fastnll.torch.binary_cross_entropy_with_logits : This loss as a PyTorch autograd function.

    Notes
    -----
    Computed in PyTorch's stable form ``w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)]``, so
    logits of magnitude 1e30 do not overflow.  The target's range is not checked.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> logits = np.array([[1.5, -0.5], [-2.0, 3.0]])
    >>> target = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> loss = fastnll.binary_cross_entropy_with_logits(logits, target)
    >>> print(f"{loss:.4f}")
    0.2128
    >>> p = 1 / (1 + np.exp(-logits))                  # the naive formula agrees here
    >>> np.allclose(loss, -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))
    True

    One positive weight per class (the last axis), and the gradient ``(p - y) / n``:

    >>> loss = fastnll.binary_cross_entropy_with_logits(logits, target, pos_weight=[2.0, 1.0])
    >>> print(f"{loss:.4f}")
    0.2631
    >>> loss, grad = fastnll.binary_cross_entropy_with_logits(logits, target, return_grad=True)
    >>> np.allclose(grad, (p - target) / 4)
    True

    Huge logits do not overflow:

    >>> fastnll.binary_cross_entropy_with_logits(
    ...     np.array([1e30, -1e30]), np.array([0.0, 1.0]), reduction="none").tolist()
    [1e+30, 1e+30]
    """
    if grad_out is None:
        fast = kernels.elementwise_call(_KIND.BCE, input, target, weight, pos_weight, 0.0, False,
                                        False, False, reduction, return_grad, _threads.for_work)
        if fast is not None:
            return fast
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    check_shape("target", y.shape, x.shape, "it must match the input's shape")
    y = kernel_ready(y, dtype)
    extra = []
    for name, val in (("weight", weight), ("pos_weight", pos_weight)):
        if val is None:
            extra.append(None)
            continue
        arr = kernel_ready(as_real_array(val, name), dtype)     # any sign, as in PyTorch
        extra.append(check_broadcast(name, arr, x.shape))
    (grad_out,) = check_grad_out(grad_out, return_grad, [x.shape], dtype)
    loss, gx, _ = _run(_KIND.BCE, x, y, a=extra[0], b=extra[1], reduction=reduction,
                       return_grad=return_grad, dtype=dtype, grad_out=grad_out)
    return with_grad(loss, gx, return_grad, grad_out)


def _gaussian_var(var, x_shape, dtype):
    """var broadcast to the input's shape, and a callable that reduces a full-size gradient
    to var's own shape (see check_gaussian_var_shape for the shapes PyTorch allows)."""
    v = as_real_array(var, "var")
    orig_shape = v.shape
    v = kernel_ready(v, dtype)
    check_nonnegative("var", v)
    if v.ndim == 0:
        return np.broadcast_to(v, x_shape), lambda g: dtype.type(g.sum(dtype=np.float64))
    check_gaussian_var_shape(v.shape, x_shape)
    if v.shape == tuple(x_shape):
        return v, lambda g: g.astype(dtype, copy=False)     # (float32 for 16-bit input)
    if v.shape == tuple(x_shape[:-1]):
        v = v[..., None]
    axes = tuple(i for i, (a, b) in enumerate(zip(x_shape, v.shape)) if a != b)

    def reduce(g):
        return g.sum(axis=axes, keepdims=True, dtype=np.float64).astype(dtype).reshape(orig_shape)
    return np.broadcast_to(v, x_shape), reduce


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean",
                      return_grad=False, *, grad_out=None):
    """Negative log-likelihood of ``target`` under normal distributions N(input, var).

    A drop-in for ``torch.nn.functional.gaussian_nll_loss`` on NumPy arrays, for regression
    that predicts a mean and a variance.  The loss of an element is
    ``0.5 (log v + (input - target)^2 / v)``, plus ``0.5 log(2 pi)`` with ``full=True``,
    where ``v = max(var, eps)``.

    Parameters
    ----------
    input : array_like
        Predicted means.  Any real dtype and strides.
    target : array_like
        Observations, broadcast to the input's shape.
    var : array_like or float
        Non-negative variances: of the input's shape, of the input's shape without its last
        axis (one variance per sample), of the input's shape with one axis of size 1, or a
        scalar.
    full : bool, default False
        Add the constant ``0.5 log(2 pi)``, making the loss the exact negative log-density.
    eps : float, default 1e-6
        Lower clamp for ``var``, for stability (the gradient flows through the clamp, as in
        PyTorch).
    reduction : {"mean", "sum", "none"}, default "mean"
        The mean or sum over all elements, or ``"none"`` for one loss per element.
    return_grad : bool, default False
        Also return the gradients with respect to ``input`` and ``var``.
    grad_out : tuple of two ndarrays, optional
        Keyword only.  With ``return_grad=True``, arrays ``(grad_input, grad_var)`` shaped like
        ``input`` and ``var`` to write the two gradients into, as NumPy's ``out=`` (a dtype
        the gradient casts to under ``casting="same_kind"``, writeable); they are returned
        as the gradients.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``, an array of the input's shape for
        ``"none"``.  The dtype of a float32, float16 or bfloat16 ``input`` (16-bit input is
        read in place and computed in float32), float64 otherwise (the dtype of ``input``
        decides).
    (grad_input, grad_var) : tuple of ndarray
        Only with ``return_grad=True``, which returns ``(loss, (grad_input, grad_var))``:
        ``d(loss)/d(input)`` of the input's shape, and ``d(loss)/d(var)`` of ``var``'s shape
        (a NumPy scalar for a scalar ``var``), both of ``loss``'s dtype (for ``"none"``, the
        gradients of the sum of the losses).

    Raises
    ------
    ValueError
        A negative entry in ``var``; ``var`` or ``target`` of a shape that does not fit the
        input's; unknown ``reduction``;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input``, ``target`` or ``var`` is not a real numeric array; ``eps`` is not a real
        number;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

    See Also
    --------
    torch.nn.functional.gaussian_nll_loss : The PyTorch function mirrored here.
    scipy.stats.norm : ``-norm.logpdf(target, input, sqrt(var))`` is the loss with
        ``full=True``.
    poisson_nll_loss : The negative log-likelihood of counts.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> mean = np.array([1.0, 2.0, 3.0])
    >>> y = np.array([1.5, 2.0, 2.0])
    >>> var = np.array([0.5, 1.0, 2.0])
    >>> loss = fastnll.gaussian_nll_loss(mean, y, var, full=True)
    >>> print(f"{loss:.4f}")
    1.0856
    >>> from scipy.stats import norm
    >>> np.allclose(loss, -np.mean(norm.logpdf(y, mean, np.sqrt(var))))
    True

    With one shared variance, the gradients ``(mean - y) / (n var)`` and ``d(loss)/d(var)``:

    >>> loss, (g_mean, g_var) = fastnll.gaussian_nll_loss(mean, y, 1.0, return_grad=True)
    >>> np.round(g_mean, 4)
    array([-0.1667,  0.    ,  0.3333])
    >>> print(f"{g_var:.4f}")
    0.2917
    """
    if grad_out is None:
        fast = kernels.elementwise_call(_KIND.GAUSSIAN, input, target, var, None, eps, full,
                                        False, False, reduction, return_grad, _threads.for_work)
        if fast is not None:
            return fast
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", kernel_ready(y, dtype), x.shape)
    v, reduce_var = _gaussian_var(var, x.shape, dtype)
    eps = real_number(eps, "eps")
    out_x, out_var = check_grad_out(grad_out, return_grad, [x.shape, np.shape(var)], dtype,
                                    names=("grad_out[0]", "grad_out[1]"))
    loss, gx, gv = _run(_KIND.GAUSSIAN, x, y, a=v, eps=eps, full=full, reduction=reduction,
                        return_grad=return_grad, dtype=dtype, grad_out=out_x)
    if not return_grad:
        return loss
    return loss, (deliver(out_x, gx), deliver(out_var, reduce_var(gv)))


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean",
                     return_grad=False, *, grad_out=None):
    """Negative log-likelihood of counts ``target`` under Poisson rates given by ``input``.

    A drop-in for ``torch.nn.functional.poisson_nll_loss`` on NumPy arrays, for count
    regression.  With ``log_input=True`` the loss of an element is
    ``exp(input) - target * input``; otherwise ``input - target * log(input + eps)``.  Both
    leave out the constant ``log(target!)`` unless ``full=True``.

    Parameters
    ----------
    input : array_like
        Log-rates (``log_input=True``) or rates.  Any real dtype and strides.
    target : array_like
        Counts, broadcast to the input's shape.
    log_input : bool, default True
        Whether ``input`` holds log-rates (the stable choice) rather than rates.
    full : bool, default False
        Add Stirling's approximation of ``log(target!)``,
        ``target log(target) - target + 0.5 log(2 pi target)``, where ``target > 1``.
    eps : float, default 1e-8
        Added to the rate inside the logarithm with ``log_input=False``, to avoid ``log(0)``.
    reduction : {"mean", "sum", "none"}, default "mean"
        The mean or sum over all elements, or ``"none"`` for one loss per element.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``input``.
    grad_out : ndarray, optional
        Keyword only.  With ``return_grad=True``, an array to write the gradient into, as
        NumPy's ``out=``: ``input``'s shape, a dtype the gradient casts to under
        ``casting="same_kind"``, writeable.  It is returned as the gradient: in a training
        loop, one buffer serves every call instead of a new gradient each time.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``, an array of the input's shape for
        ``"none"``.  The dtype of a float32, float16 or bfloat16 ``input`` (16-bit input is
        read in place and computed in float32), float64 otherwise (the dtype of ``input``
        decides).
    grad : ndarray
        Only with ``return_grad=True``, which returns the tuple ``(loss, grad)``:
        ``d(loss)/d(input)``, of the input's shape and ``loss``'s dtype (for ``"none"``, the
        gradient of the sum of the losses).

    Raises
    ------
    ValueError
        ``target`` does not broadcast to the input's shape; unknown ``reduction``;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input`` or ``target`` is not a real numeric array; ``eps`` is not a real number;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

    See Also
    --------
    torch.nn.functional.poisson_nll_loss : The PyTorch function mirrored here.
    scipy.stats.poisson : ``-poisson.logpmf(target, rate)`` is the loss plus the exact
        ``log(target!)``.
    gaussian_nll_loss : The negative log-likelihood of real observations.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> rate = np.array([1.0, 2.0, 4.0])
    >>> counts = np.array([0.0, 3.0, 4.0])
    >>> loss = fastnll.poisson_nll_loss(np.log(rate), counts)
    >>> print(f"{loss:.4f}")
    -0.2082
    >>> from scipy.special import gammaln
    >>> from scipy.stats import poisson
    >>> np.allclose(loss, -np.mean(poisson.logpmf(counts, rate) + gammaln(counts + 1)))
    True

    The same rates given directly, and the gradient ``(rate - counts) / n`` for log-rates:

    >>> print(f"{fastnll.poisson_nll_loss(rate, counts, log_input=False):.4f}")
    -0.2082
    >>> loss, grad = fastnll.poisson_nll_loss(np.log(rate), counts, return_grad=True)
    >>> np.allclose(grad, (rate - counts) / 3)
    True
    """
    if grad_out is None:
        fast = kernels.elementwise_call(_KIND.POISSON, input, target, None, None, eps, full,
                                        log_input, False, reduction, return_grad,
                                        _threads.for_work)
        if fast is not None:
            return fast
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", kernel_ready(y, dtype), x.shape)
    eps = real_number(eps, "eps")
    (grad_out,) = check_grad_out(grad_out, return_grad, [x.shape], dtype)
    loss, gx, _ = _run(_KIND.POISSON, x, y, eps=eps, full=full, log_input=log_input,
                       reduction=reduction, return_grad=return_grad, dtype=dtype,
                       grad_out=grad_out)
    return with_grad(loss, gx, return_grad, grad_out)


def kl_div(input, target, reduction="mean", log_target=False, return_grad=False, *,
           grad_out=None):
    """Kullback-Leibler divergence D(target || exp(input)) for log-probabilities ``input``.

    A drop-in for ``torch.nn.functional.kl_div`` on NumPy arrays.  The loss of an element is
    ``target * (log(target) - input)`` (0 where ``target`` is 0), or with
    ``log_target=True`` ``exp(target) * (target - input)``.  Note the order: ``input`` is
    the model's log-distribution, ``target`` the reference.

    Parameters
    ----------
    input : array_like
        Log-probabilities.  Any real dtype and strides.
    target : array_like
        Probabilities (or log-probabilities with ``log_target=True``), broadcast to the
        input's shape.
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        ``"batchmean"`` divides the sum by the size of the first axis: the KL divergence per
        sample.  ``"mean"`` divides by the number of elements (PyTorch warns about that
        choice; fastnll just computes it).  ``"none"`` gives one term per element.
    log_target : bool, default False
        Whether ``target`` holds log-probabilities.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``input``.
    grad_out : ndarray, optional
        Keyword only.  With ``return_grad=True``, an array to write the gradient into, as
        NumPy's ``out=``: ``input``'s shape, a dtype the gradient casts to under
        ``casting="same_kind"``, writeable.  It is returned as the gradient: in a training
        loop, one buffer serves every call instead of a new gradient each time.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar, or an array of the input's shape for ``"none"``.  The dtype of a
        float32, float16 or bfloat16 ``input`` (16-bit input is read in place and computed in
        float32), float64 otherwise (the dtype of ``input`` decides).
    grad : ndarray
        Only with ``return_grad=True``, which returns the tuple ``(loss, grad)``:
        ``d(loss)/d(input)``, of the input's shape and ``loss``'s dtype (for ``"none"``, the
        gradient of the sum of the losses).

    Raises
    ------
    ValueError
        ``target`` does not broadcast to the input's shape; unknown ``reduction``;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input`` or ``target`` is not a real numeric array;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

    See Also
    --------
    torch.nn.functional.kl_div : The PyTorch function mirrored here.
    scipy.special.rel_entr : The elementwise terms ``target * log(target / exp(input))``.
    entropy : Relative entropy of (unnormalised) distributions, as ``scipy.stats.entropy``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> p = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])       # reference (target)
    >>> q = np.array([[1/3, 1/3, 1/3], [0.2, 0.2, 0.6]])       # model
    >>> loss = fastnll.kl_div(np.log(q), p, reduction="batchmean")
    >>> print(f"{loss:.4f}")
    0.0802
    >>> from scipy.special import rel_entr
    >>> np.allclose(loss, rel_entr(p, q).sum() / 2)
    True
    >>> np.allclose(loss, fastnll.kl_div(np.log(q), np.log(p), reduction="batchmean",
    ...                                  log_target=True))
    True
    """
    if grad_out is None:
        fast = kernels.elementwise_call(_KIND.KL, input, target, None, None, 0.0, False, False,
                                        log_target, reduction, return_grad, _threads.for_work)
        if fast is not None:
            return fast
    reduction = check_reduction(reduction, ("none", "batchmean", "mean", "sum"))
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", kernel_ready(y, dtype), x.shape)
    divisor = None
    if reduction == "batchmean":
        divisor = x.shape[0] if x.ndim else 1
    (grad_out,) = check_grad_out(grad_out, return_grad, [x.shape], dtype)
    loss, gx, _ = _run(_KIND.KL, x, y, log_target=log_target, reduction=reduction,
                       return_grad=return_grad, divisor=divisor, dtype=dtype, grad_out=grad_out)
    return with_grad(loss, gx, return_grad, grad_out)
