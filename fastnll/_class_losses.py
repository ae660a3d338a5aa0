"""nll_loss and cross_entropy with torch.nn.functional's semantics, on NumPy arrays."""
import numpy as np

from . import _threads
from ._checks import (
    REDUCTIONS, as_real_array, check_class_range, check_grad_out, check_ignore_index,
    check_label_smoothing, check_probability_ignore_index, check_reduction, check_shape,
    check_softcap, check_z_loss, class_axis, class_targets, class_weight, out_of_bounds,
    target_array,
)
from ._dispatch import kernels
from ._half import half_kind, rounded
from ._linear import cross_entropy_capped
from ._layout import (
    ClassView, compute_dtype, finish_reduction, kernel_ready, output_array, with_grad,
)

# the kernels' code of each reduction name (class_loss's `reduction`)
_REDUCTION_CODES = {name: kernels.Reduction[name.upper()] for name in REDUCTIONS}


def _prepare(input, reduction, ignore_index, axis):
    """What both kinds of target check first, in this order: (input as an array,
    reduction, ignore_index, compute dtype, class axis, number of classes)."""
    x = as_real_array(input, "input")
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    dtype = compute_dtype(x)
    ax = class_axis(x.ndim, axis)
    return x, reduction, ignore_index, dtype, ax, x.shape[ax]


def _outputs(shape, ax, dtype, reduction, return_grad, grad_out, inputs):
    """The arrays the kernels write: per-row losses ("none") and the gradient (return_grad;
    the caller's grad_out itself where the kernel can write it), None where not asked."""
    rows = np.empty(shape[:ax] + shape[ax + 1:], dtype=dtype) if reduction == "none" else None
    grad = None
    if return_grad:
        grad = output_array(grad_out, shape, dtype, inputs)
    return rows, grad


def _class_loss(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                return_grad, is_nll, grad_out=None):
    """nll_loss and cross_entropy with class-index targets, on the general path."""
    x, reduction, ignore_index, dtype, ax, C = _prepare(input, reduction, ignore_index, axis)
    w = class_weight(weight, C, dtype)
    t = class_targets(target, x.shape, ax, C, ignore_index)
    kind = half_kind(x.dtype)
    (grad_out,) = check_grad_out(grad_out, return_grad, [x.shape], x.dtype if kind else dtype)
    if grad_out is not None:
        check_class_range(t, C, ignore_index)    # before anything writes the caller's array
    if kind:
        return _half_class_loss(x, kind, ax, t, w, ignore_index, reduction, label_smoothing,
                                return_grad, is_nll, grad_out)
    x = kernel_ready(x, dtype)
    view = ClassView(x, ax)
    rows, grad = _outputs(x.shape, ax, dtype, reduction, return_grad, grad_out,
                          (input, x, t, w))
    bad, bad_value, total, weight_sum = kernels.class_loss(
        x=view.x3, targets=view.to2(t), weight=w, ignore_index=ignore_index,
        label_smoothing=label_smoothing, is_nll=is_nll, reduction=_REDUCTION_CODES[reduction],
        rows=None if rows is None else view.to2(rows),
        grad=None if grad is None else view.to3(grad),
        # nll_loss reads one logit a row, but writes every entry of its gradient
        nthreads=_threads.for_work(view.outer * view.inner if is_nll and grad is None
                                   else x.size),
    )
    if bad >= 0:
        raise out_of_bounds(bad_value, C, ignore_index)
    if (reduction == "mean" and weight_sum == 0 and w is not None and not is_nll and x.size
            and (label_smoothing or return_grad) and np.any(t != ignore_index)):
        loss, grad = _mean_over_zero_weight(x, ax, t, w, ignore_index, label_smoothing,
                                            return_grad, dtype)
        return with_grad(loss, grad, return_grad, grad_out)
    return with_grad(finish_reduction(reduction, total, weight_sum, rows, dtype), grad,
                     return_grad, grad_out)


def _half_class_loss(x, kind, ax, t, w, ignore_index, reduction, eps, return_grad, is_nll,
                     grad_out):
    """_class_loss for a 16-bit input x (float16, bfloat16; half_kind's `kind`), read in place
    by the kernels, with its results (loss, per-row losses, gradient) in x's dtype."""
    dtype = x.dtype
    x = kernel_ready(x, dtype)
    view = ClassView(x, ax)
    rows = (np.empty(x.shape[:ax] + x.shape[ax + 1:], dtype=np.float32)
            if reduction == "none" else None)
    grad = output_array(grad_out, x.shape, dtype, (x, t, w)) if return_grad else None
    bad, bad_value, total, weight_sum = kernels.half_class_loss(
        x=view.x3.view(np.uint16), kind=kind, targets=view.to2(t), weight=w,
        ignore_index=ignore_index, label_smoothing=eps, is_nll=is_nll,
        reduction=_REDUCTION_CODES[reduction], rows=None if rows is None else view.to2(rows),
        grad=None if grad is None else view.to3(grad).view(np.uint16),
        nthreads=_threads.for_work(view.outer * view.inner if is_nll and grad is None
                                   else x.size),
    )
    if bad >= 0:
        raise out_of_bounds(bad_value, x.shape[ax], ignore_index)
    if (reduction == "mean" and weight_sum == 0 and w is not None and not is_nll and x.size
            and (eps or return_grad) and np.any(t != ignore_index)):
        loss, grad = _mean_over_zero_weight(x, ax, t, w, ignore_index, eps, return_grad, dtype)
        return with_grad(loss, grad, return_grad, grad_out)
    loss = finish_reduction(reduction, total, weight_sum,
                            None if rows is None else rows.astype(dtype), dtype)
    return with_grad(loss, grad, return_grad, grad_out)


def _mean_over_zero_weight(x, ax, t, w, ignore_index, eps, return_grad, dtype):
    """cross_entropy's "mean" when the class weights of the kept targets sum to exactly 0
    (weights of both signs, or of 0; some target kept): a division by zero, whose infinities
    and nans are PyTorch's only if they arise in PyTorch's order of operations, so this rare
    case follows it step by step (in float64, with IEEE semantics): the loss
    (1 - eps) nll / W + (smooth / W) (eps / C) and autograd's gradient through log_softmax."""
    C = x.shape[ax]
    z = np.moveaxis(np.asarray(x, dtype=np.float64), ax, -1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # PyTorch's log_softmax: x - (m + log sum exp(x - m)), all nan in a row holding +inf
        # or only -inf (SciPy's, fastnll.log_softmax, differs there)
        m = z.max(axis=-1, keepdims=True)
        logp = z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))
    keep = t != ignore_index
    tt = np.where(keep, t, 0)[..., None]
    w64 = w.astype(np.float64)
    wt = np.where(keep, w64[tt[..., 0]], 0.0)
    W = wt.sum()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nll = -(wt * np.take_along_axis(logp, tt, -1)[..., 0]).sum()
        loss = (nll / W) if not eps else (1 - eps) * (nll / W)
        if eps:
            smooth = np.where(keep, -(logp * w64).sum(-1), 0.0)
            loss = loss + (smooth.sum() / W) * (eps / C)
        grad = None
        if return_grad:
            glogp = np.zeros_like(logp)
            g_nll = -((1 - eps) / W)                       # nll_loss's backward, mean
            np.put_along_axis(glogp, tt, np.where(keep, wt * g_nll, 0.0)[..., None], -1)
            if eps:
                g_smooth = (eps / C) / W                    # through smooth.sum() / W
                glogp = glogp + np.where(keep[..., None], -g_smooth * w64, 0.0)
            g = glogp - np.exp(logp) * glogp.sum(-1, keepdims=True)   # log_softmax's
            grad = np.moveaxis(g, -1, ax).astype(dtype)
    return dtype.type(loss), grad


def _prob_loss(input, t, weight, ignore_index, reduction, eps, axis, return_grad,
               grad_out=None):
    """cross_entropy with class-probability targets t (an array of floats)."""
    x, reduction, ignore_index, dtype, ax, C = _prepare(input, reduction, ignore_index, axis)
    check_probability_ignore_index(ignore_index)
    check_shape("target", t.shape, x.shape,
                "probability targets must have the input's shape")
    w = class_weight(weight, C, dtype)
    # a 16-bit input: computed from a float32 copy (the kernels do not read 16-bit
    # probability targets yet), its results rounded to its dtype at the end
    half = x.dtype if half_kind(x.dtype) else None
    (grad_out,) = check_grad_out(grad_out, return_grad, [x.shape], half or dtype)
    x = kernel_ready(x, dtype)
    view = ClassView(x, ax)
    nrows = view.outer * view.inner
    rows, grad = _outputs(x.shape, ax, dtype, reduction, return_grad,
                          None if half else grad_out, (input, x, t, w))
    total = kernels.prob_loss(
        x=view.x3, targets=view.to3(kernel_ready(t, dtype)), weight=w, label_smoothing=eps,
        sigma=1.0 / nrows if (reduction == "mean" and nrows) else 1.0,
        rows=None if rows is None else view.to2(rows),
        grad=None if grad is None else view.to3(grad), nthreads=_threads.for_work(x.size),
    )
    if half is not None:
        rows, grad = rounded(rows, half), rounded(grad, half)
    # "mean" of an input with no elements is nan, as in PyTorch (also with rows but C = 0)
    loss = finish_reduction(reduction, total, nrows if x.size else 0, rows, half or dtype)
    return with_grad(loss, grad, return_grad, grad_out)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", axis=None,
             return_grad=False, *, grad_out=None):
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
        Weight of each class, of any sign, as in PyTorch.  None (the default) weighs every
        class 1.  The mean divides by the kept targets' summed weights, which may then be 0
        (giving PyTorch's +-inf or nan).
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
    grad_out : ndarray, optional
        Keyword only.  With ``return_grad=True``, an array to write the gradient into, as
        NumPy's ``out=``: ``input``'s shape, a dtype the gradient casts to under
        ``casting="same_kind"``, writeable.  It is returned as the gradient: in a training
        loop, one buffer serves every call instead of a new gradient each time.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``; for ``"none"`` an array shaped like
        ``target`` (a scalar for a 1-D ``input``).  The dtype of a float32, float16 or bfloat16
        ``input`` (class-index targets: 16-bit input is read in place and computed in float32,
        rounded once, as is its gradient), float32 for 16-bit input with probability targets,
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
        ``reduction``; ``axis`` out of range; ``ignore_index`` does not fit in 64 bits;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input`` or ``weight`` is not a real numeric array; ``target`` does not hold integers
        (floats and bools are refused); ``ignore_index`` or ``axis`` is not an integer;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

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
    if grad_out is None:
        fast = kernels.class_loss_call(input, target, weight, ignore_index, reduction, 0.0,
                                       axis, return_grad, True, _threads.for_work)
        if fast is not None:
            return fast
    return _class_loss(input, target, weight, ignore_index, reduction, 0.0, axis, return_grad,
                       True, grad_out)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, return_grad=False, *, softcap=None,
                  z_loss=0.0, grad_out=None):
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
        Weight of each class, of any sign, as in PyTorch.  None (the default) weighs every
        class 1.  The mean divides by the kept targets' summed weights, which may then be 0
        (giving PyTorch's +-inf or nan).
    ignore_index : int, default -100
        Targets equal to it add nothing and are left out of the mean (class indices only;
        with probability targets only a negative value is accepted, and unused, as in
        PyTorch).
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
    softcap : float, optional
        Keyword only.  Cap the logits to ``softcap * tanh(input / softcap)`` before the loss
        (Gemma 2's logit soft-capping); the gradient is taken through the cap.  A positive
        number, or None (the default) for no cap.
    z_loss : float, default 0.0
        Keyword only.  Add ``z_loss * lse**2`` per sample, ``lse`` the log-sum-exp of its
        (capped) logits: PaLM's auxiliary z-loss.  It is 0 for ignored targets, is not
        multiplied by class weights, and under ``"mean"`` is divided by the number of kept
        samples (the cross-entropy part keeps PyTorch's weighted mean).
    grad_out : ndarray, optional
        Keyword only.  With ``return_grad=True``, an array to write the gradient into, as
        NumPy's ``out=``: ``input``'s shape, a dtype the gradient casts to under
        ``casting="same_kind"``, writeable.  It is returned as the gradient: in a training
        loop, one buffer serves every call instead of a new gradient each time.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A NumPy scalar for ``"mean"`` and ``"sum"``; for ``"none"`` an array shaped like
        ``input`` without the class axis (a scalar for a 1-D ``input``).  The dtype of a
        float32, float16 or bfloat16 ``input`` (16-bit input is read in place and computed in
        float32, rounded once, as is its gradient), float64 otherwise.
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
        range; ``label_smoothing`` outside ``[0, 1]`` or nan; ``ignore_index`` does not fit
        in 64 bits;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input`` or ``weight`` is not a real numeric array; ``target`` is neither integer
        nor float (bools, strings, complex, a ragged list); ``label_smoothing`` is not a real
        number; ``ignore_index`` or ``axis`` is not an integer;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

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
    silently accepts a negative ``label_smoothing``; fastnll raises ValueError.

    ``softcap`` and ``z_loss`` (which PyTorch's function does not have) work on a copy of the
    logits with the classes last, composed from the same kernels; without them the call
    reads the input once and allocates nothing of its size (but the gradient).

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
    if softcap is None and (type(z_loss) is float and z_loss == 0.0) and grad_out is None:
        fast = kernels.class_loss_call(input, target, weight, ignore_index, reduction,
                                       label_smoothing, axis, return_grad, False,
                                       _threads.for_work)
        if fast is not None:
            return fast
    eps = check_label_smoothing(label_smoothing)
    softcap = check_softcap(softcap)
    z_loss = check_z_loss(z_loss)
    if softcap is not None or z_loss:
        x, reduction, ignore_index, dtype, ax, _ = _prepare(input, reduction, ignore_index,
                                                            axis)
        if half_kind(x.dtype):
            # from a float32 copy, the results rounded to the 16-bit dtype
            if grad_out is not None:
                check_grad_out(grad_out, return_grad, [x.shape], x.dtype)
            res = cross_entropy_capped(x.astype(dtype), ax, target, weight, ignore_index,
                                       reduction, eps, softcap, z_loss, return_grad, dtype,
                                       None)
            loss, grad = res if return_grad else (res, None)
            return with_grad(rounded(loss, x.dtype), rounded(grad, x.dtype), return_grad,
                             grad_out)
        return cross_entropy_capped(x, ax, target, weight, ignore_index, reduction, eps,
                                    softcap, z_loss, return_grad, dtype, grad_out)
    t = target_array(target, "integer class indices or float class probabilities")
    if t.dtype.kind != "f" and not half_kind(t.dtype):     # (bfloat16 is of kind "V")
        return _class_loss(input, t, weight, ignore_index, reduction, eps, axis, return_grad,
                           False, grad_out)
    return _prob_loss(input, t, weight, ignore_index, reduction, eps, axis, return_grad,
                      grad_out)
