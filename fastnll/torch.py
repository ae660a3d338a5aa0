"""fastnll's fused loss kernels as PyTorch autograd functions, for CPU tensors.

``import fastnll.torch`` needs PyTorch; ``import fastnll`` never imports it.  The three
functions take exactly the arguments of their ``torch.nn.functional`` namesakes and return what
those return, so they drop into a training loop in place of PyTorch's losses::

    import fastnll.torch as fnt
    loss = fnt.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()

How a call runs (the fast path): the tensors are handed to fastnll as NumPy views of their own
memory (``Tensor.numpy()``: no copy, any strides); when ``input`` needs a gradient, the fused
kernel computes the loss and d(loss)/d(input) in one pass and the gradient is kept for the
backward pass, which only scales it by the incoming gradient (no second pass over the logits
when that is 1, as after ``loss.backward()``).  The arrays fastnll returns are fresh, and become
tensors through ``torch.from_numpy``, again without a copy.

Anything the fast path does not cover goes to ``torch.nn.functional`` unchanged (see
``_fastnll_can_run`` and the Notes of each function), so a call never gives a different result
from PyTorch's, only, where it can, a faster one.
"""
try:
    import torch
    import torch.nn.functional as _F
    from torch.autograd import forward_ad as _forward_ad
except ImportError as exc:  # pragma: no cover  (the tests run with PyTorch installed)
    raise ImportError("fastnll.torch needs PyTorch: pip install torch") from exc

import functools
import os

import numpy as np

from . import _class_losses, _cpu, _elementwise, _linear
from ._half import BF16, half_kind

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits",
           "linear_cross_entropy"]

# Inputs with fewer elements than this (logits, for linear_cross_entropy) go to PyTorch's own
# function: there a Python autograd.Function's fixed cost (24 us, forward and backward, for
# one that computes nothing, against 30 us for PyTorch's whole cross_entropy at (32, 10) on
# the machine this was measured on) is most of the call, and fastnll's kernels cannot win it
# back.  cross_entropy's forward and backward broke even at 12800 elements there.
MIN_ELEMENTS = 16384

_FLOAT_DTYPES = (torch.float32, torch.float64)
# 16-bit inputs (float16, bfloat16) go through the kernels for the losses that read them in
# place and return their dtype (class-index cross_entropy and nll_loss,
# binary_cross_entropy_with_logits: half=True of _fastnll_can_run), and to PyTorch for the
# others; bfloat16 arrays need ml_dtypes' dtype on the NumPy side (without it, PyTorch).
_INDEX_DTYPES = (torch.int64, torch.uint8)     # the class-index dtypes PyTorch accepts
# Errors by which fastnll refuses arguments; PyTorch then decides (its result or its error).
_REFUSALS = (ValueError, IndexError, TypeError, OverflowError)


_functorch_probe = getattr(torch._C, "_are_functorch_transforms_active", None)
_is_compiling = torch.compiler.is_compiling
_is_tracing = torch.jit.is_tracing
_Tensor = torch.Tensor


def _functorch_active():
    return bool(_functorch_probe()) if _functorch_probe is not None else False


def _transformed():
    """True while PyTorch traces or transforms the computation (torch.compile, torch.jit.trace,
    torch.func transforms, forward-mode AD), where a NumPy round trip cannot take part."""
    return (_is_compiling() or _is_tracing() or _functorch_active()
            or getattr(_forward_ad, "_current_level", -1) >= 0)


def _bfloat16_dtype():
    """ml_dtypes' bfloat16 (NumPy's dtype for torch.bfloat16 memory), or None without it."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def _fastnll_can_run(input, floats=(), index=None, differentiable=(), elements=None,
                     half=False):
    """Whether the fast path applies to a call: the dispatch rule of this module.

    ``input`` must be a float32 or float64 tensor; ``floats`` are the other float operands
    (probability or binary targets, weight, pos_weight; None when absent), which must have
    ``input``'s dtype (PyTorch promotes mixed dtypes, fastnll computes in the input's);
    ``index`` is a class-index target, int64 or uint8 as in PyTorch.  All of them must be plain
    (no ``__torch_function__`` override), dense, on the CPU, and the float operands must not
    need a gradient (fastnll computes the gradients of ``input`` and of the ``differentiable``
    operands only: linear_cross_entropy's weight and bias, also of ``input``'s dtype).
    Nothing may be tracing or transforming the call (torch.compile, torch.jit.trace,
    torch.func transforms, forward-mode AD), and the input must have at least MIN_ELEMENTS
    elements (``elements``, when given, counts them instead: linear_cross_entropy's logits).
    With ``half=True`` the input may also be float16 or bfloat16 (bfloat16 when ml_dtypes
    is installed).
    """
    if not isinstance(input, torch.Tensor):
        return False
    if input.dtype not in _FLOAT_DTYPES and not (
            half and (input.dtype == torch.float16
                      or (input.dtype == torch.bfloat16 and _bfloat16_dtype() is not None))):
        return False
    tensors = [input]
    grad_mode = torch.is_grad_enabled()
    operands = [(t, False) for t in floats] + [(t, True) for t in differentiable]
    for t, may_need_grad in operands:
        if t is None:
            continue
        if (not isinstance(t, torch.Tensor) or t.dtype != input.dtype
                or (grad_mode and t.requires_grad and not may_need_grad)):
            return False
        tensors.append(t)
    if index is not None:
        if not isinstance(index, torch.Tensor) or index.dtype not in _INDEX_DTYPES:
            return False
        tensors.append(index)
    for t in tensors:
        if not t.is_cpu or t.layout != torch.strided:
            return False
    if torch.overrides.has_torch_function(tensors) or _transformed():
        return False
    return (input.numel() if elements is None else elements) >= MIN_ELEMENTS


class _FirstDerivative(torch.autograd.Function):
    """A gradient fastnll computed, tied under create_graph=True to the operands it depends
    on (forward(grad, *operands) returns a copy of grad), whose own backward raises."""

    @staticmethod
    def forward(ctx, grad, *operands):
        return grad.clone()

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise RuntimeError("fastnll.torch computes first derivatives only: use "
                           "torch.nn.functional's function for double backward")


def _once_differentiable(backward):
    """backward without a graph of its own, as torch.autograd.function.once_differentiable,
    but whose gradients, under create_graph=True, are tied to the operands through
    _FirstDerivative, so that differentiating them raises (once_differentiable ties them to
    nothing unless an incoming gradient requires grad: a gradient penalty built on them
    would silently lose its second-order terms)."""
    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        if not torch.is_grad_enabled():      # the usual backward pass (no create_graph)
            return backward(ctx, *grad_outputs)
        with torch.no_grad():
            grads = backward(ctx, *grad_outputs)
        operands = [t for t in ctx.saved_tensors if t is not None and t.requires_grad]
        return tuple(None if g is None else _FirstDerivative.apply(g, *operands)
                     for g in grads)
    return wrapper


class _Unsupported(Exception):
    """fastnll refused the call; PyTorch takes it."""


def _as_array(t):
    if t is None:
        return None
    t = t.detach() if t.requires_grad else t
    if t.dtype == torch.bfloat16:      # NumPy has no bfloat16: ml_dtypes' on the same bits
        return t.view(torch.int16).numpy().view(_bfloat16_dtype())
    return t.numpy()     # a view of t's memory


def _as_tensor(a):
    """A NumPy result as a tensor sharing its memory (bfloat16 through its bits)."""
    a = np.asarray(a)
    if half_kind(a.dtype) == BF16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _compute(loss_fn, input, target, weight, pos_weight, return_grad):
    """Run ``loss_fn`` on NumPy views of the tensors; return the loss (and the gradient) as
    tensors.  Raises _Unsupported when fastnll refuses the arguments."""
    try:
        arrays = [_as_array(t) for t in (input, target, weight, pos_weight)]
    except RuntimeError as exc:      # e.g. a tensor with its negative bit set
        raise _Unsupported from exc
    try:
        out = loss_fn(*arrays, return_grad)
    except _REFUSALS as exc:
        raise _Unsupported from exc
    if return_grad:
        loss, grad = out
        return _as_tensor(loss), _as_tensor(grad)
    return _as_tensor(out)


class _FastnllLoss(torch.autograd.Function):
    """A fastnll loss with its fused gradient.

    forward(input, target, weight, pos_weight, loss_fn, bcast_dim): ``loss_fn(x, t, w, pw,
    return_grad)`` is the fastnll call on NumPy arrays; ``bcast_dim`` is the class axis along
    which the incoming gradient of an unreduced class loss is broadcast (None otherwise).  For
    ``reduction="none"`` fastnll's gradient is that of the sum of the losses, which, since each
    loss depends only on its own row (or element), holds each loss's own derivative: the
    backward pass scales it by the incoming gradient of that loss.
    """

    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, loss_fn, bcast_dim):
        loss, grad = _compute(loss_fn, input, target, weight, pos_weight, True)
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.loss_fn = loss_fn
        ctx.bcast_dim = bcast_dim
        ctx.grad = grad
        return loss

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad_output):
        grad = ctx.grad
        if grad is None:
            # A second backward pass through a retained graph: the first one handed the
            # buffer over, so compute the gradient again (the saved tensors are
            # version-checked, as in PyTorch's own losses).
            input, target, weight, pos_weight = ctx.saved_tensors
            _, grad = _compute(ctx.loss_fn, input, target, weight, pos_weight, True)
        else:
            # Hand the buffer over: without another reference autograd can keep it as
            # input.grad (or pass it on) without copying it.
            ctx.grad = None
        if ctx.bcast_dim is not None:
            grad.mul_(grad_output.unsqueeze(ctx.bcast_dim))
        elif grad_output.numel() != 1 or grad_output.item() != 1.0:
            grad.mul_(grad_output)
        return grad, None, None, None, None, None


def _run(loss_fn, input, target, weight, pos_weight, bcast_dim):
    if torch.is_grad_enabled() and input.requires_grad:
        return _FastnllLoss.apply(input, target, weight, pos_weight, loss_fn, bcast_dim)
    return _compute(loss_fn, input, target, weight, pos_weight, False)


def _class_axis(input):
    return 1 if input.dim() >= 2 else 0


_FALLBACK_NOTES = """
    The call goes to ``torch.nn.functional.{name}`` unchanged (same result, PyTorch's speed)
    when:

    - a tensor is not on the CPU (CUDA, MPS, ``meta``, ...), is not dense (sparse, mkldnn), or
      overrides ``__torch_function__``;
    - ``input`` is not float32, float64, float16 or bfloat16{half}, or a float operand
      has another dtype than ``input`` (PyTorch promotes; fastnll computes in ``input``'s
      dtype){index}
    - a float operand other than ``input`` needs a gradient (fastnll differentiates only with
      respect to ``input``){grads};
    - ``size_average`` or ``reduce`` (deprecated) is given: PyTorch translates them to a
      reduction and warns, as it always has;
    - the call is being traced or transformed: ``torch.compile``, ``torch.jit.trace``,
      ``torch.func`` transforms (``grad``, ``vmap``, ...), forward-mode AD;
    - fastnll refuses the arguments (``ValueError``, ``IndexError``, ``TypeError``): PyTorch
      then returns its own result or raises its own error, with its own message.{extra}

    The backward pass cannot itself be differentiated: ``create_graph=True`` followed by a
    second differentiation raises ``RuntimeError``; use ``torch.nn.functional.{name}`` for
    double backward (Hessian-vector products).  Backward through a retained graph
    (``retain_graph=True``) works; the second pass recomputes the gradient.
"""


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits and class targets, on fastnll's fused kernel.

    ``torch.nn.functional.cross_entropy`` with the same arguments and results; on CPU float32,
    float64, float16 and bfloat16 tensors the loss and its gradient come from one pass of
    fastnll's kernel (16-bit data read in place, computed in float32).

    Parameters
    ----------
    input : Tensor, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Logits (unnormalised), classes on dim 1 (dim 0 for a 1-D input).
    target : Tensor
        Class indices (int64 or uint8) shaped like ``input`` without the class dim, or class
        probabilities shaped like ``input``.
    weight : Tensor, shape (C,), optional
        Class weights.
    size_average, reduce : bool, optional
        Deprecated; handled by PyTorch (see Notes).
    ignore_index : int
        Class-index targets equal to it add nothing and are left out of the mean.
    reduction : {"mean", "sum", "none"}
    label_smoothing : float in [0, 1]

    Returns
    -------
    Tensor
        The loss, of ``input``'s dtype: a scalar, or shaped like the target (class indices) or
        like ``input`` without the class dim (probabilities) for ``reduction="none"``.  It
        carries a gradient function when ``input`` requires a gradient.

    Notes
    -----
    Fast path: the tensors reach fastnll as NumPy views of their memory (no copy, any
    strides); the gradient with respect to ``input`` is computed in the forward pass, from the
    same kernel pass, and kept for the backward pass.  ``target`` and ``weight`` get no
    gradient there (see below for when PyTorch computes one).
{notes}
    See Also
    --------
    torch.nn.functional.cross_entropy : the reference semantics.
    fastnll.cross_entropy : the same loss on NumPy arrays.

    Examples
    --------
    >>> import torch
    >>> import fastnll.torch as fnt
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
    >>> target = torch.tensor([0, 2])
    >>> loss = fnt.cross_entropy(logits, target)
    >>> round(loss.item(), 5)
    0.17546
    >>> loss.backward()
    >>> ref = logits.detach().requires_grad_()
    >>> torch.nn.functional.cross_entropy(ref, target).backward()
    >>> torch.allclose(logits.grad, ref.grad)
    True
    """
    # a plain tensor under MIN_ELEMENTS elements: PyTorch's own function (the rule of
    # _fastnll_can_run, checked first and inline: this is a microsecond call)
    if type(input) is _Tensor and not _is_tracing() and input.numel() < MIN_ELEMENTS:
        return _F.cross_entropy(input, target, weight, size_average, ignore_index, reduce,
                                reduction, label_smoothing)
    float_target = isinstance(target, torch.Tensor) and target.is_floating_point()
    if (size_average is None and reduce is None
            and _fastnll_can_run(input, (target, weight) if float_target else (weight,),
                                 None if float_target else target, half=not float_target)):
        axis = _class_axis(input)

        def loss_fn(x, t, w, _, return_grad):
            return _class_losses.cross_entropy(x, t, w, ignore_index, reduction,
                                               label_smoothing, axis, return_grad)
        try:
            return _run(loss_fn, input, target, weight, None,
                        axis if (reduction == "none" and input.dim() >= 2) else None)
        except _Unsupported:
            pass
    return _F.cross_entropy(input, target, weight, size_average, ignore_index, reduce,
                            reduction, label_smoothing)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of class indices under log-probabilities, on fastnll's kernel.

    ``torch.nn.functional.nll_loss`` with the same arguments and results; on CPU float32,
    float64, float16 and bfloat16 tensors the loss and its gradient come from one pass of
    fastnll's kernel (16-bit data read in place).

    Parameters
    ----------
    input : Tensor, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities, classes on dim 1 (dim 0 for a 1-D input).
    target : Tensor
        Class indices (int64 or uint8) shaped like ``input`` without the class dim.
    weight : Tensor, shape (C,), optional
        Class weights.
    size_average, reduce : bool, optional
        Deprecated; handled by PyTorch (see Notes).
    ignore_index : int
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor
        The loss, of ``input``'s dtype: a scalar, or shaped like ``target`` for
        ``reduction="none"``.

    Notes
    -----
    Fast path: as for :func:`cross_entropy`; ``weight`` gets no gradient there.
{notes}
    See Also
    --------
    torch.nn.functional.nll_loss : the reference semantics.
    fastnll.nll_loss : the same loss on NumPy arrays.

    Examples
    --------
    >>> import torch
    >>> import fastnll.torch as fnt
    >>> logp = torch.log_softmax(torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), dim=1)
    >>> loss = fnt.nll_loss(logp, torch.tensor([0, 2]), reduction="none")
    >>> loss.shape
    torch.Size([2])
    >>> torch.allclose(loss, torch.nn.functional.nll_loss(logp, torch.tensor([0, 2]),
    ...                                                   reduction="none"))
    True
    """
    # a plain tensor under MIN_ELEMENTS elements: PyTorch's own function (the rule of
    # _fastnll_can_run, checked first and inline: this is a microsecond call)
    if type(input) is _Tensor and not _is_tracing() and input.numel() < MIN_ELEMENTS:
        return _F.nll_loss(input, target, weight, size_average, ignore_index, reduce, reduction)
    if (size_average is None and reduce is None
            and _fastnll_can_run(input, (weight,), target, half=True)):
        axis = _class_axis(input)

        def loss_fn(x, t, w, _, return_grad):
            return _class_losses.nll_loss(x, t, w, ignore_index, reduction, axis, return_grad)
        try:
            return _run(loss_fn, input, target, weight, None,
                        axis if (reduction == "none" and input.dim() >= 2) else None)
        except _Unsupported:
            pass
    return _F.nll_loss(input, target, weight, size_average, ignore_index, reduce, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy between logits and targets in [0, 1], on fastnll's kernel.

    ``torch.nn.functional.binary_cross_entropy_with_logits`` with the same arguments and
    results; on CPU float32, float64, float16 and bfloat16 tensors the loss and its gradient
    come from one pass of fastnll's kernel (16-bit data read in place, computed in float32).

    Parameters
    ----------
    input : Tensor
        Logits.
    target : Tensor
        Same shape as ``input``; values in [0, 1].
    weight : Tensor, optional
        Weights, broadcast to ``input``'s shape.
    size_average, reduce : bool, optional
        Deprecated; handled by PyTorch (see Notes).
    reduction : {"mean", "sum", "none"}
    pos_weight : Tensor, optional
        Weight of positive examples, broadcast to ``input``'s shape (typically one per class,
        along the last dim).

    Returns
    -------
    Tensor
        The loss, of ``input``'s dtype: a scalar, or shaped like ``input`` for
        ``reduction="none"``.

    Notes
    -----
    Fast path: as for :func:`cross_entropy`; ``target``, ``weight`` and ``pos_weight`` get no
    gradient there.
{notes}
    See Also
    --------
    torch.nn.functional.binary_cross_entropy_with_logits : the reference semantics.
    fastnll.binary_cross_entropy_with_logits : the same loss on NumPy arrays.

    Examples
    --------
    >>> import torch
    >>> import fastnll.torch as fnt
    >>> x = torch.tensor([[1.5, -0.3], [0.2, 4.0]], dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> loss = fnt.binary_cross_entropy_with_logits(x, y, pos_weight=torch.tensor([2.0, 1.0],
    ...                                             dtype=torch.float64))
    >>> loss.backward()
    >>> x.grad.shape
    torch.Size([2, 2])
    """
    # a plain tensor under MIN_ELEMENTS elements: PyTorch's own function (the rule of
    # _fastnll_can_run, checked first and inline: this is a microsecond call)
    if type(input) is _Tensor and not _is_tracing() and input.numel() < MIN_ELEMENTS:
        return _F.binary_cross_entropy_with_logits(input, target, weight, size_average, reduce,
                                                   reduction, pos_weight)
    if (size_average is None and reduce is None
            and _fastnll_can_run(input, (target, weight, pos_weight), half=True)):
        def loss_fn(x, y, w, pw, return_grad):
            return _elementwise.binary_cross_entropy_with_logits(x, y, w, reduction, pw,
                                                                 return_grad)
        try:
            return _run(loss_fn, input, target, weight, pos_weight, None)
        except _Unsupported:
            pass
    return _F.binary_cross_entropy_with_logits(input, target, weight, size_average, reduce,
                                               reduction, pos_weight)


class _FastnllLinear(torch.autograd.Function):
    """linear_cross_entropy with the gradients of input, linear_weight and linear_bias computed
    in the forward pass, block by block (fastnll's linear_blocks), and kept for the backward
    pass.  forward(input, linear_weight, linear_bias, call): ``call(needs, row_scale)`` runs
    fastnll on NumPy views of the tensors."""

    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, reduced, call):
        ctx.call = call
        ctx.needs = (input.requires_grad, linear_weight.requires_grad,
                     linear_bias is not None and linear_bias.requires_grad)
        ctx.reduced = reduced
        # "none": the loss only; the backward pass runs the blocks with each row's incoming
        # gradient (the gradients of the sum would not serve)
        loss, grads = call(ctx.needs if reduced else (False, False, False), None)
        ctx.grads = grads if reduced else None
        # (saved for PyTorch's check that none of them is modified in place before backward)
        ctx.save_for_backward(input, linear_weight, linear_bias, target, weight)
        return loss

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad_output):
        _ = ctx.saved_tensors      # raises if an operand was modified in place since forward
        if ctx.reduced:
            grads = ctx.grads
            if grads is None:          # a second backward through a retained graph
                grads = ctx.call(ctx.needs, None)[1]
            ctx.grads = None
            if grad_output.item() != 1.0:
                grads = [None if g is None else g.mul_(grad_output) for g in grads]
        else:
            # each row's loss has its own incoming gradient: weigh the rows' logit gradients
            # before the products (a second pass over the blocks)
            grads = ctx.call(ctx.needs, grad_output.detach().numpy())[1]
        return (*grads, None, None, None, None)


class _TorchProducts:
    """linear_cross_entropy's block products on PyTorch's BLAS, for tensors (on NumPy views
    of the same memory, through torch.from_numpy: no copy): its ``addmm_`` adds each
    block's ``G.T @ x`` into grad_linear_weight in place, and its thread pool leaves the
    cores to fastnll's kernels between products.  Used where _products_default chooses it.
    See fastnll._linear.NumpyProducts for the methods."""

    kernel_threads = None

    @staticmethod
    def forward(xb, W, out):
        torch.matmul(torch.from_numpy(xb), torch.from_numpy(W).T, out=torch.from_numpy(out))

    @staticmethod
    def grad_input(g, W, out):
        torch.matmul(torch.from_numpy(g), torch.from_numpy(W), out=torch.from_numpy(out))

    @staticmethod
    def grad_weight(g, xb, out, first):
        gt, xt, ot = torch.from_numpy(g).T, torch.from_numpy(xb), torch.from_numpy(out)
        if first:
            torch.matmul(gt, xt, out=ot)
        else:
            ot.addmm_(gt, xt)


PRODUCTS_VAR = "FASTNLL_TORCH_PRODUCTS"


def _products_default():
    """Whose BLAS computes linear_cross_entropy's block products for tensors: "torch" (its
    matmul and addmm_, _TorchProducts) or "numpy" (NumPy's matmul on the tensors' memory,
    as fastnll.linear_cross_entropy does).

    PyTorch's x86-64 wheels use Intel's MKL, which runs its fastest kernels on Intel CPUs
    only; NumPy's wheels bundle OpenBLAS, which picks its kernels from the CPU's features.
    Measured on (2048, 512, 32000) float32, forward + backward, 2 threads, both ways in one
    process: on an Intel Xeon (2026-12-06, the bench) this function on PyTorch's products
    took 584 ms against 621 ms for fastnll.linear_cross_entropy on NumPy's; on an AMD EPYC
    (Zen 4, 2026-12-07) this function took 1148 ms on PyTorch's products against 961 ms on
    NumPy's (one product alone, a block of 256 rows, ``xb @ W.T``: 57 ms against 35 ms).
    So: PyTorch's BLAS where it is MKL on an Intel CPU, NumPy's elsewhere.
    FASTNLL_TORCH_PRODUCTS=torch or numpy, read at import, overrides the choice.  The two
    BLAS give results equal within rounding, not bit for bit."""
    forced = os.environ.get(PRODUCTS_VAR, "").strip()
    if forced in ("numpy", "torch"):
        return forced
    if forced:
        raise ImportError(f"{PRODUCTS_VAR}={forced!r}: use 'torch' or 'numpy', or leave it "
                          "unset (PyTorch's BLAS where it is MKL on an Intel CPU)")
    mkl = getattr(torch.backends, "mkl", None)
    on_mkl = mkl is not None and mkl.is_available()
    return "torch" if on_mkl and _cpu.vendor() == "intel" else "numpy"


_products = _products_default()


def _linear_can_run(input, linear_weight, linear_bias, target, weight):
    """The fast path of linear_cross_entropy: input, linear_weight and linear_bias (if any)
    float32 or float64 tensors of one dtype; weight and probability targets of that dtype
    and needing no gradient; class indices int64 or uint8; at most 2-D, as PyTorch's
    function takes; all plain, dense CPU tensors, nothing tracing the call."""
    if not isinstance(input, torch.Tensor) or input.dim() > 2:
        return False
    if isinstance(linear_weight, torch.Tensor) and linear_weight.dim() != 2:
        return False
    float_target = isinstance(target, torch.Tensor) and target.is_floating_point()
    if not isinstance(linear_weight, torch.Tensor):
        return False
    rows = input.shape[0] if input.dim() == 2 else 1
    return _fastnll_can_run(input, (target, weight) if float_target else (weight,),
                            None if float_target else target,
                            differentiable=(linear_weight, linear_bias),
                            elements=rows * linear_weight.shape[0])


def _linear_reference(input, linear_weight, target, linear_bias, weight, reduction,
                      ignore_index, label_smoothing, softcap, z_loss):
    """softcap and z_loss composed from PyTorch's functions: the fallback where fastnll does
    not run (PyTorch's linear_cross_entropy has neither), for the inputs PyTorch's function
    takes (1-D or 2-D input, a 2-D linear_weight)."""
    if input.dim() > 2:
        raise RuntimeError(f"expected input with dimensionality 1 or 2, got {input.dim()}")
    if linear_weight.dim() != 2:
        raise ValueError("softcap and z_loss need a 2-D linear_weight (classes, features), "
                         f"got {linear_weight.dim()} dimensions")
    logits = _F.linear(input, linear_weight, linear_bias)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    loss = _F.cross_entropy(logits, target, weight, ignore_index=ignore_index,
                            reduction=reduction, label_smoothing=label_smoothing)
    if z_loss:
        lse = torch.logsumexp(logits, dim=-1)
        if target.is_floating_point():
            kept = torch.ones_like(lse, dtype=torch.bool)
        else:
            kept = target != ignore_index
        rows = torch.where(kept, z_loss * lse.square(), torch.zeros_like(lse))
        if reduction == "mean":
            loss = loss + rows.sum() / kept.sum()
        elif reduction == "sum":
            loss = loss + rows.sum()
        else:
            loss = loss + rows
    return loss


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None, softcap=None, z_loss=0.0):
    """Cross-entropy of a linear layer's logits without forming them, on fastnll's kernels.

    ``torch.nn.functional.linear_cross_entropy`` (PyTorch 2.13) with the same arguments and
    results, plus ``softcap`` and ``z_loss``; on CPU float32 and float64 tensors the loss and
    the gradients of ``input``, ``linear_weight`` and ``linear_bias`` come from
    `fastnll.linear_cross_entropy`, one block of rows at a time.

    Parameters
    ----------
    input : Tensor, shape (H,) or (N, H)
    linear_weight : Tensor, shape (V, H)
    target : Tensor
        Class indices (int64 or uint8), shape () or (N,), or class probabilities, shape
        (V,) or (N, V).
    linear_bias : Tensor, shape (V,), optional
    weight : Tensor, shape (V,), optional
        Class weights.
    reduction : {"mean", "sum", "none"}
    ignore_index : int, optional
        None (the default) means -100, as in PyTorch.
    label_smoothing : float in [0, 1]
    options : torch.nn.LinearCrossEntropyOptions, optional
        Accepted and ignored on the fast path (fastnll always works in blocks); passed to
        PyTorch when it takes the call.
    softcap : float, optional
        Keyword only: cap the logits to ``softcap * tanh(logits / softcap)`` (Gemma 2).
    z_loss : float, default 0.0
        Keyword only: add ``z_loss * logsumexp(logits)**2`` per kept row (PaLM).

    Returns
    -------
    Tensor
        The loss, of ``input``'s dtype, with a gradient function when an operand needs one.

    Notes
    -----
    The gradients are computed in the forward pass (where the logits' blocks are) whenever
    an operand requires a gradient, and kept for the backward pass, which only scales them
    (evaluate under ``torch.no_grad()`` to pay for the loss alone); for
    ``reduction="none"`` the forward pass computes the losses only and the backward pass
    runs the blocks with the incoming gradient of each row.  Operands modified in place
    between the forward and the backward pass raise PyTorch's error, and the gradients
    cannot be differentiated again (``create_graph=True`` gives gradients whose own
    backward raises ``RuntimeError``).  PyTorch takes the
    call (``options`` passed on) when fastnll's fast path does not apply: a tensor not on
    the CPU or not dense, another dtype than float32 or float64, mixed dtypes, ``weight``
    or probability targets needing a gradient, an ``input`` of more than 2 dimensions,
    tracing or transforms, or arguments fastnll refuses.  With ``softcap`` or ``z_loss``,
    PyTorch's functions compose them there (its function has neither).

    The blocks' matrix products run on PyTorch's BLAS where it is Intel's MKL on an Intel
    CPU, and on NumPy's BLAS (on the tensors' memory, no copy) elsewhere, where MKL does not
    run its fastest kernels; ``FASTNLL_TORCH_PRODUCTS=torch`` or ``numpy``, read at import,
    overrides the choice.

    See Also
    --------
    torch.nn.functional.linear_cross_entropy : the reference semantics.
    fastnll.linear_cross_entropy : the same loss on NumPy arrays.

    Examples
    --------
    >>> import torch
    >>> import fastnll.torch as fnt
    >>> h = torch.randn(8, 16, requires_grad=True)
    >>> W = torch.randn(100, 16, requires_grad=True)
    >>> y = torch.randint(0, 100, (8,))
    >>> loss = fnt.linear_cross_entropy(h, W, y)
    >>> loss.backward()
    >>> ref = torch.nn.functional.cross_entropy(h @ W.T, y)
    >>> torch.allclose(loss, ref)
    True
    """
    ii = -100 if ignore_index is None else ignore_index
    float_target = isinstance(target, torch.Tensor) and target.is_floating_point()
    # (PyTorch refuses an explicit ignore_index with probability targets: its error)
    if (_linear_can_run(input, linear_weight, linear_bias, target, weight)
            and not (float_target and ignore_index is not None)):
        try:
            arrays = [_as_array(t) for t in (input, linear_weight, linear_bias, target, weight)]
        except RuntimeError:          # e.g. a tensor with its negative bit set
            arrays = None
        if arrays is not None:
            x, W, b, t, w = arrays

            def call(needs, row_scale):
                out = _linear.linear_blocks_checked(
                    x, W, b, t, w, ii, reduction, label_smoothing, softcap, z_loss,
                    any(needs), needs, row_scale,
                    _TorchProducts if _products == "torch" else None)
                loss, grads = out if any(needs) else (out, ())
                return (torch.from_numpy(np.asarray(loss)),
                        [None if g is None else torch.from_numpy(g) for g in grads])
            try:
                if torch.is_grad_enabled() and any(
                        t is not None and t.requires_grad
                        for t in (input, linear_weight, linear_bias)):
                    return _FastnllLinear.apply(input, linear_weight, linear_bias, target,
                                                weight, reduction != "none", call)
                return call((False, False, False), None)[0]
            except _REFUSALS:
                pass
    if softcap is not None or z_loss:
        return _linear_reference(input, linear_weight, target, linear_bias, weight, reduction,
                                 ii, label_smoothing, softcap, z_loss)
    return _F.linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                   weight=weight, reduction=reduction,
                                   ignore_index=ignore_index, label_smoothing=label_smoothing,
                                   options=options)


def _add_notes(func, **names):
    if func.__doc__:            # None under python -OO
        func.__doc__ = func.__doc__.replace("{notes}", _FALLBACK_NOTES.format(**names))


_HALF_NOTE = "\n      (bfloat16 only with ml_dtypes installed)"
_add_notes(cross_entropy, name="cross_entropy",
           half=_HALF_NOTE[:-1] + ";\n      16-bit with probability targets goes to PyTorch)",
           index=";\n    - class-index targets are not int64 or uint8 (PyTorch refuses other "
                 "integer dtypes);",
           grads=": probability targets and ``weight``",
           extra="  (PyTorch\n      accepts a negative ``label_smoothing``, which fastnll "
                 "refuses.)")
_add_notes(nll_loss, name="nll_loss", half=_HALF_NOTE,
           index=";\n    - the target is not int64 or uint8 (PyTorch refuses other integer "
                 "dtypes);",
           grads=": ``weight``", extra="")
_add_notes(binary_cross_entropy_with_logits, name="binary_cross_entropy_with_logits",
           half=_HALF_NOTE,
           index=";", grads=": ``target``, ``weight`` and ``pos_weight``", extra="")
