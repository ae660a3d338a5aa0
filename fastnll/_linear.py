"""Cross-entropy on blocks of logits that the caller owns: linear_cross_entropy (the logits of a
linear layer, never formed whole) and cross_entropy's softcap and z_loss.

Design
(a) linear_cross_entropy walks the rows of ``input`` in blocks.  For each block it forms the
    block's logits with one BLAS product into a preallocated buffer, runs the cross-entropy
    kernel on the buffer, which overwrites the logits with their gradient in place, and feeds
    that gradient into the two products of the backward pass before the next block.  The
    N x V logits and their gradient exist one block at a time.  The products are a
    three-method object: NumpyProducts (``numpy.matmul``, so NumPy's own BLAS: no dependency
    and no GEMM of ours) for arrays, fastnll.torch's _TorchProducts for tensors.
(b) Only kept rows are visited: rows whose target is ``ignore_index`` are left out of every
    product (their gradient rows are 0 and they add nothing to the loss).
(c) The gradient of a "mean" is scaled inside the kernel by the divisor of the whole batch,
    which depends on the targets alone and is computed first (``sum_scale`` of
    ``kernels.class_loss``; ``sigma`` of ``kernels.prob_loss``).
(d) ``grad_linear_weight`` is the sum over blocks of ``G_b.T @ x_b``: the first block's
    product is written into the result, later ones added to it (NumpyProducts by a GEMM of
    NumPy's BLAS with beta = 1, see _blas.py, or where that BLAS cannot be reached through a
    small buffer, one slice of the vocabulary at a time, since NumPy's matmul cannot
    accumulate into its output; the slice sized to stay in the L2 cache while it is added).
(e) BlockLoss holds what one call's blocks share, and is the whole of cross_entropy's softcap
    and z_loss: capped logits ``c tanh(z / c)``, the z-loss ``z_loss * lse**2`` of each kept
    row, and their gradients, composed from the softmax-family kernels on the block.
(f) Block sizes: the block buffers are bounded by a memory budget (_BLOCK_BYTES, which bounds
    the call's extra memory whatever N is); the vocabulary slices of (d) by the L2 cache.
(g) Evaluation (no gradient) of logits larger than the budget goes through slices of the
    vocabulary instead: blocks of many rows (all of them, up to what the budget holds in
    slices of _MIN_SLICE classes), each formed one slice of W's rows at a time, so that W is
    read once per block rather than once per 256 rows.  A slice gives each row's partial
    statistics (maximum, sums of exponentials, the target's logit, weighted sums: the
    row_partials kernel, as fastnll.dask uses it for a split class axis), which combine in
    float64 into the row's loss (_partials.py).  Its loss is rounded differently from the
    gradient path's (which takes the whole row in one kernel call): within a few ulp.
"""
from collections import namedtuple

import numpy as np

from . import _blas, _threads
from ._caches import L2_BYTES
from ._checks import (
    as_real_array, check_class_range, check_grad_out, check_ignore_index, check_label_smoothing,
    check_probability_ignore_index, check_reduction, check_shape, check_softcap, check_z_loss,
    class_targets, class_weight, out_of_bounds, target_array,
)
from ._dispatch import kernels
from ._half import half_kind, rounded
from ._layout import deliver, finish_reduction, kernel_ready, kernel_writable, with_grad
from ._partials import FIELDS, class_partials, class_terms, combine
from ._softmax import logsumexp, softmax

_SUM = kernels.Reduction.SUM
_NONE = kernels.Reduction.NONE

# The block buffers' memory (the logits block and, with softcap or z_loss and a gradient, one
# or two more of its size): enough rows for the BLAS products to run at full speed at the
# usual vocabulary sizes, a bound on the memory a call adds whatever the number of rows.
_BLOCK_BYTES = 32 * 2 ** 20
# The narrowest vocabulary slice of an evaluation (g): a product this wide still runs at the
# BLAS's full speed, and the rows of a block stay many (8192 float32 rows in 32 MB).
_MIN_SLICE = 1024
_GATHER_ROWS = 256      # rows gathered at a time into an evaluation's block
# Where the rows take several blocks, a block's rows are a multiple of this: the BLAS
# computes a product in register tiles of a few rows or columns, and blocks whose rows left
# a partial tile ran slower (H = 512, V = 32000, float32, 2 threads, NumPy's OpenBLAS on an
# AMD EPYC: by blocks of 262 or 250 rows against 256 or 264, ``x @ W.T`` took 4-8% longer
# and ``G @ W`` 6-8%).
_ROW_MULTIPLE = 16
# NumpyProducts.grad_input's most pieces over the vocabulary, each with an array of its own
_MAX_TERMS = 4


_L2_BYTES = L2_BYTES      # a module global, so that the tests can shrink it

LinearGrads = namedtuple("LinearGrads", ["input", "linear_weight", "linear_bias"])
LinearGrads.__doc__ = """The gradients of `linear_cross_entropy`'s loss (``return_grad=True``).

Fields: ``input`` (shaped like ``input``), ``linear_weight`` (``(V, H)``) and ``linear_bias``
(``(V,)``, or None without a bias), all of the input's dtype."""


class BlockLoss:
    """The loss of blocks of logits (rows, C), C-contiguous buffers the caller owns.

    ``targets`` are int64 class indices (``prob`` False) or class probabilities; ``w`` the
    kernel-ready class weights or None.  ``sigma_ce`` scales the cross-entropy gradient,
    ``sigma_z`` the z-loss gradient (the divisors of a mean, else 1).  ``threads``: the
    kernel's thread count (None: fastnll's default for the block's size)."""

    def __init__(self, C, dtype, w, ignore_index, eps, softcap, z_loss, prob, sigma_ce,
                 sigma_z, threads=None):
        self.threads = threads
        self.C, self.dtype, self.w = C, dtype, w
        self.ignore_index, self.eps = ignore_index, eps
        self.softcap, self.z_loss, self.prob = softcap, z_loss, prob
        self.sigma_ce, self.sigma_z = sigma_ce, sigma_z

    def buffers(self, want_grad):
        """How many block-sized buffers a block needs (the logits' and the temporaries')."""
        return 1 + want_grad * ((self.softcap is not None) + (self.z_loss > 0))

    def __call__(self, z, t, rows, want_grad):
        """The loss of the block z (overwritten; with want_grad it holds the gradient on
        return).  t: the block's targets; rows: its per-row losses for "none" (or None).
        Returns (sum of the cross-entropy losses, sum of the z-losses)."""
        p = None
        deriv = None if self.softcap is None else _cap(z, self.softcap, want_grad)
        z_sum = 0.0
        if self.z_loss:
            lse = logsumexp(z, axis=1).astype(np.float64)
            kept = (np.ones(len(z), dtype=bool) if self.prob
                    else t != self.ignore_index)
            z_rows = np.where(kept, self.z_loss * np.square(lse), 0.0)
            z_sum = float(z_rows.sum())
            if want_grad:                  # d(z_loss lse**2)/dz = 2 z_loss lse softmax(z)
                p = softmax(z, axis=1)
                coef = np.where(kept, (2 * self.z_loss * self.sigma_z) * lse, 0.0)
                np.multiply(p, coef.astype(self.dtype)[:, None], out=p)
        ce_rows = None if rows is None else np.empty(len(z), dtype=self.dtype)
        ce_sum = self._cross_entropy(z, t, ce_rows, want_grad)
        if rows is not None:
            if self.z_loss:
                rows[...] = (ce_rows + z_rows).astype(self.dtype)
            else:
                rows[...] = ce_rows
        if p is not None:
            np.add(z, p, out=z)
        if deriv is not None:
            np.multiply(z, deriv, out=z)
        return ce_sum, z_sum

    def _cross_entropy(self, z, t, ce_rows, want_grad):
        n, C = z.shape
        x3 = z.reshape(n, C, 1)
        grad = x3 if want_grad else None
        rows2 = None if ce_rows is None else ce_rows.reshape(n, 1)
        nthreads = self.threads or _threads.for_work(z.size)
        if self.prob:
            return kernels.prob_loss(
                x=x3, targets=kernel_ready(t, self.dtype).reshape(n, C, 1), weight=self.w,
                label_smoothing=self.eps, sigma=self.sigma_ce, rows=rows2, grad=grad,
                nthreads=nthreads)
        bad, bad_value, total, _ = kernels.class_loss(
            x=x3, targets=t.reshape(n, 1), weight=self.w, ignore_index=self.ignore_index,
            label_smoothing=self.eps, is_nll=False,
            reduction=_NONE if ce_rows is not None else _SUM, rows=rows2, grad=grad,
            nthreads=nthreads, sum_scale=self.sigma_ce)
        if bad >= 0:              # (the targets were checked before any block ran)
            raise out_of_bounds(bad_value, C, self.ignore_index)
        return total


def _cap(z, c, want_grad=False):
    """z = c tanh(z / c) in place; with want_grad returns its derivative (else None)."""
    np.divide(z, c, out=z)
    np.tanh(z, out=z)
    deriv = None
    if want_grad:                  # d(c tanh(u / c))/du = 1 - tanh(u / c)**2
        deriv = np.square(z)
        np.subtract(1, deriv, out=deriv)
    np.multiply(z, c, out=z)
    return deriv


def _divisors(reduction, prob, t, w, ignore_index, n_rows):
    """(cross-entropy divisor, z-loss divisor) of a "mean" (the summed weights of the kept
    targets, or the number of rows with probability targets; the number of kept rows), both
    1 otherwise."""
    if reduction != "mean":
        return 1.0, 1.0
    if prob:
        return float(n_rows), float(n_rows)
    kept = t[t != ignore_index]
    ce = float(len(kept)) if w is None else float(w.astype(np.float64)[kept].sum())
    return ce, float(len(kept))


def _scale(divisor):
    """The gradient's scale 1 / divisor: inf for a zero divisor (the kernels' convention: the
    gradient of a mean over zero summed weight, 0 / 0 on the kept rows)."""
    return 1.0 / divisor if divisor != 0 else np.inf


def _finish(reduction, ce_total, z_total, ce_div, z_div, rows, dtype):
    """finish_reduction of the two parts: a "mean" divides each by its own divisor."""
    if reduction != "mean":
        return finish_reduction(reduction, ce_total + z_total, None, rows, dtype)
    if not (z_total or z_div == 0):
        return finish_reduction(reduction, ce_total, ce_div, rows, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.float64(ce_total) / np.float64(ce_div) + np.float64(z_total) / np.float64(z_div)
    return dtype.type(loss)


def _targets(target, x_shape, ax, C, ignore_index):
    """(targets, prob): int64 class indices shaped like x_shape without axis ax,
    range-checked, or class probabilities of shape x_shape."""
    t = target_array(target, "integer class indices or float class probabilities")
    if t.dtype.kind == "f" or half_kind(t.dtype):
        check_probability_ignore_index(ignore_index)
        check_shape("target", t.shape, x_shape,
                    "probability targets must have the logits' shape")
        return t, True
    t = class_targets(t, x_shape, ax, C, ignore_index)
    check_class_range(t, C, ignore_index)
    return t, False


def cross_entropy_capped(x, ax, target, weight, ignore_index, reduction, eps, softcap,
                         z_loss, return_grad, dtype, grad_out=None):
    """cross_entropy with softcap or z_loss on an in-memory input x (classes on axis ax):
    one block, a C-contiguous copy of the logits with the classes last."""
    C = x.shape[ax]
    moved = np.moveaxis(x, ax, -1)
    t, prob = _targets(target, x.shape, ax, C, ignore_index)
    if prob:
        t = np.moveaxis(t, ax, -1)
    w = class_weight(weight, C, dtype)
    (grad_out,) = check_grad_out(grad_out, return_grad, [x.shape], dtype)
    z = np.array(moved, dtype=dtype, order="C").reshape(-1, C)
    n = z.shape[0]
    t2 = t.reshape(n, C) if prob else t.reshape(n)
    ce_div, z_div = _divisors(reduction, prob, t2, w, ignore_index, n)
    loss_of = BlockLoss(C, dtype, w, ignore_index, eps, softcap, z_loss, prob, _scale(ce_div),
                        _scale(z_div))
    rows = np.zeros(moved.shape[:-1], dtype=dtype) if reduction == "none" else None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ce_total, z_total = loss_of(z, t2, None if rows is None else rows.reshape(n),
                                    return_grad)
    loss = _finish(reduction, ce_total, z_total, ce_div, z_div, rows, dtype)
    grad = None
    if return_grad:
        grad = np.moveaxis(z.reshape(moved.shape), -1, ax)
        if grad_out is None:
            grad = np.ascontiguousarray(grad)
    return with_grad(loss, grad, return_grad, grad_out)


def _linear_operands(input, linear_weight, linear_bias):
    """(x, W, b, dtype): the checked operands of linear_cross_entropy."""
    x = as_real_array(input, "input")
    W = as_real_array(linear_weight, "linear_weight")
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (its features), got a scalar")
    if W.ndim != 2:
        raise ValueError(f"linear_weight must be 2-D (classes, features), got shape {W.shape}")
    if x.shape[-1] != W.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features (shape {x.shape}) but "
                         f"linear_weight has {W.shape[1]} (shape {W.shape})")
    if x.dtype not in (np.float32, np.float64) and not half_kind(x.dtype):
        raise TypeError(f"input must be float16, bfloat16, float32 or float64, got dtype "
                        f"{x.dtype}")
    if W.dtype != x.dtype:
        raise TypeError(f"linear_weight must have input's dtype {x.dtype}, got {W.dtype}")
    b = None
    if linear_bias is not None:
        b = as_real_array(linear_bias, "linear_bias")
        check_shape("linear_bias", b.shape, (W.shape[0],),
                    f"linear_weight has shape {W.shape}; expected")
        if b.dtype != x.dtype:
            raise TypeError(f"linear_bias must have input's dtype {x.dtype}, got {b.dtype}")
    if not (W.flags.c_contiguous or W.flags.f_contiguous):
        W = np.ascontiguousarray(W)        # (once, rather than in every block's product)
    return x, W, b, x.dtype


class NumpyProducts:
    """The block products on NumPy's BLAS (``numpy.matmul`` into preallocated blocks).

    ``forward(xb, W, out)``: out = xb @ W.T; ``grad_input(g, W, out)``: out = g @ W;
    ``grad_weight(g, xb, out, first)``: out = g.T @ xb, or out += g.T @ xb after the first
    block.  matmul cannot add into its output: the sum is a GEMM of NumPy's BLAS with
    beta = 1 (_blas.py: 168 ms against 266 ms over the 8 blocks of (2048, 512, 32000)
    float32 here) where that BLAS can be reached, else a product into a buffer of a slice of
    the vocabulary, sized to stay in the L2 cache while it is added.

    Where the logits take several blocks (or slices), each product runs in ``pieces``
    pieces at once (_blas.in_pieces), one single-threaded GEMM a thread, inside
    linear_blocks' _blas.one_thread block: columns of the logits and rows of
    grad_linear_weight (slices of W's rows), terms of grad_input (see there).  Beside
    another busy process, OpenBLAS's own threads, which wait for each other many times a
    product, left the forward + backward of (2048, 512, 32000) float32 at 1.4-1.6x the
    time of the three products unblocked; in pieces it took 1.0-1.2x (quiet, about the
    same time both ways).

    The block kernels run on one thread (``kernel_threads``): a team of fastnll's threads
    waiting for work after a kernel (OpenMP's threads spin for a while) took the cores
    from the products' threads: 8% slower (and with OpenBLAS's threads, which spin after a
    product, 76 ms against 51 ms for the kernels of 8 blocks of (256, 32000) here)."""

    kernel_threads = 1

    def __init__(self, V, H, dtype, pieces=1):
        self.tmp = None
        self.rows = max(1, min(V, _L2_BYTES // (2 * max(H, 1) * dtype.itemsize)))
        self.shape = (self.rows, H)
        self.dtype = dtype
        self.pieces = pieces

    def forward(self, xb, W, out):
        # (np.dot: the same bits, 5% slower on (256, 512) blocks)
        _blas.in_pieces(lambda a, b: np.matmul(xb, W[a:b].T, out=out[:, a:b]), W.shape[0],
                        self.pieces)

    def grad_input(self, g, W, out):
        # as (W.T @ g.T).T: OpenBLAS splits this form better on its threads than g @ W
        # (293 ms against 387 ms over the 8 blocks above).  In up to _MAX_TERMS pieces: over
        # slices of the vocabulary (of the sum), each piece's product into an array of its
        # own, added in their order, so that each piece reads its part of g and W alone
        # (pieces of W's columns each read all of g: 3-4% slower over the whole call, in one
        # process); in more, over W's columns (no arrays of out's size, no sum)
        if not out.flags.c_contiguous:
            out[...] = (W.T @ g.T).T
            return
        if self.pieces > _MAX_TERMS:
            _blas.in_pieces(lambda a, b: np.matmul(W.T[a:b], g.T, out=out[:, a:b].T),
                            W.shape[1], self.pieces)
            return
        parts = {}

        def piece(a, b):
            part = out if a == 0 else np.empty_like(out)
            np.matmul(W[a:b].T, g[:, a:b].T, out=part.T)
            parts[a] = part
        _blas.in_pieces(piece, W.shape[0], self.pieces)
        for a in sorted(parts)[1:]:
            out += parts[a]

    def grad_weight(self, g, xb, out, first):
        add = _blas.add_product(self.dtype)
        if first or add is not None:
            def piece(a, b):
                if first:
                    np.matmul(g.T[a:b], xb, out=out[a:b])
                else:
                    add(out[a:b], g.T[a:b], xb)
            _blas.in_pieces(piece, out.shape[0], self.pieces)
            return
        if self.tmp is None:
            self.tmp = np.empty(self.shape, dtype=self.dtype)
        a = g.T
        for r0 in range(0, out.shape[0], self.rows):
            r1 = min(r0 + self.rows, out.shape[0])
            part = self.tmp[:r1 - r0]
            np.matmul(a[r0:r1], xb, out=part)
            np.add(out[r0:r1], part, out=out[r0:r1])


def linear_cross_entropy(input, linear_weight, target, linear_bias=None, weight=None,
                         ignore_index=-100, reduction="mean", label_smoothing=0.0,
                         softcap=None, z_loss=0.0, return_grad=False, *, grad_out=None):
    """Cross-entropy of a linear layer's logits, without forming the logits.

    The value of ``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)`` with
    the classes last, and its gradients, computed one block of rows at a time: a language
    model's head (``V`` classes, a vocabulary of 32k to 256k tokens) never holds the
    ``N x V`` logits or their gradient, and rows whose target is ``ignore_index`` cost
    nothing.  The arguments are those of ``torch.nn.functional.linear_cross_entropy``
    (PyTorch 2.13), plus ``softcap`` and ``z_loss``.

    Parameters
    ----------
    input : array_like, shape (..., H)
        Features (hidden states), float16, bfloat16, float32 or float64.
    linear_weight : array_like, shape (V, H)
        The output layer's weight, of ``input``'s dtype (PyTorch's ``Linear`` layout).
    target : array_like
        Integer class indices in ``[0, V)`` or ``ignore_index``, shaped ``input.shape[:-1]``
        (any integer dtype), or float class probabilities shaped ``input.shape[:-1] + (V,)``.
    linear_bias : array_like, shape (V,), optional
        The output layer's bias, of ``input``'s dtype.
    weight : array_like, shape (V,), optional
        Class weights, as in `cross_entropy`.
    ignore_index : int, default -100
        Class-index targets equal to it add nothing, get a zero gradient and are left out of
        the mean.
    reduction : {"mean", "sum", "none"}, default "mean"
        As in `cross_entropy`; ``"none"`` gives a loss per row, shaped ``input.shape[:-1]``.
    label_smoothing : float, default 0.0
        As in `cross_entropy`.
    softcap : float, optional
        Cap the logits to ``softcap * tanh(logits / softcap)`` before the loss (Gemma 2).
        A positive number, or None (the default) for no cap.
    z_loss : float, default 0.0
        Add ``z_loss * logsumexp(logits)**2`` per row (PaLM's auxiliary loss): 0 for ignored
        rows, not multiplied by class weights, and under ``"mean"`` divided by the number of
        kept rows (the cross-entropy part keeps its weighted mean).
    return_grad : bool, default False
        Also return the gradients, as ``(loss, grads)``.
    grad_out : tuple of three arrays, optional
        Keyword only.  With ``return_grad=True``, arrays shaped like ``input``,
        ``linear_weight`` and ``linear_bias`` (None without a bias), for example the
        ``grads`` of an earlier call, to write the gradients into, as NumPy's ``out=`` (a
        dtype the gradient casts to under ``casting="same_kind"``, writeable); they are
        returned as ``grads``.  C-contiguous arrays of ``input``'s dtype are written by the
        products directly (float32 and float64 operands), others through a copy.

    Returns
    -------
    loss : NumPy scalar or ndarray
        A scalar of ``input``'s dtype, or for ``"none"`` an array shaped
        ``input.shape[:-1]``.
    grads : LinearGrads
        Only with ``return_grad=True``: a named tuple of the gradients of the loss (of the
        sum of the losses for ``"none"``) with respect to ``input``, ``linear_weight`` and
        ``linear_bias`` (None without a bias), each shaped like its operand.

    Raises
    ------
    IndexError
        A class target outside ``[0, V)`` that is not ``ignore_index``.
    ValueError
        ``input`` is 0-d; ``linear_weight`` is not 2-D or its features differ from
        ``input``'s; ``target``, ``linear_bias`` or ``weight`` has the wrong shape; a value
        `cross_entropy` refuses; ``softcap`` not positive and finite; ``z_loss`` negative or
        not finite;
        ``grad_out`` has the wrong shape, is read-only, or is given without ``return_grad``.
    TypeError
        ``input`` is not float16, bfloat16, float32 or float64; ``linear_weight`` or
        ``linear_bias`` has another dtype; a target, weight or option of the wrong type;
        ``grad_out`` is not a NumPy array (a tuple of them where there are several gradients) or
        has a dtype the gradient cannot be cast to.

    See Also
    --------
    torch.nn.functional.linear_cross_entropy : The PyTorch function mirrored here.
    cross_entropy : The loss on logits that are already formed.
    fastnll.torch.linear_cross_entropy : This function as a PyTorch autograd function.

    Notes
    -----
    Rows whose target is ``ignore_index`` take part in no product: their gradient rows are
    0 and their features are not read, so a nan or inf there does not spread into
    ``grad_linear_weight`` as it would through the formed logits (where 0 * nan is nan).
    Every check, the targets' range included, runs before the first product.  The matrix
    products are NumPy's (``numpy.matmul``, on NumPy's BLAS); the loss and the logits'
    gradient come from fastnll's kernels on each block while it is in memory.  The memory a
    call adds beyond its results is bounded (about 32 MB of block buffers and a slice of
    ``V x H`` in L2 cache) whatever the number of rows.  16-bit operands (float16,
    ``ml_dtypes.bfloat16``) are converted to float32 once, since the BLAS products take no
    16-bit operand (copies of ``input`` and ``linear_weight`` in float32, twice their size),
    and the loss and gradients, computed as for float32 operands, are rounded from their
    float32 values to the 16-bit dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> rng = np.random.default_rng(0)
    >>> h = rng.standard_normal((6, 4))          # 6 tokens, 4 features
    >>> W = rng.standard_normal((10, 4))         # 10 classes
    >>> y = np.array([1, 2, 3, -100, 5, 6])
    >>> loss = fastnll.linear_cross_entropy(h, W, y)
    >>> bool(np.isclose(loss, fastnll.cross_entropy(h @ W.T, y)))
    True
    >>> loss, grads = fastnll.linear_cross_entropy(h, W, y, return_grad=True)
    >>> grads.input.shape, grads.linear_weight.shape, grads.linear_bias
    ((6, 4), (10, 4), None)
    """
    if grad_out is None:
        fast = kernels.linear_call(input, linear_weight, target, linear_bias, weight,
                                   ignore_index, reduction, label_smoothing, softcap, z_loss,
                                   return_grad, _BLOCK_BYTES)
        if fast is not None:
            loss, gx, gW, gb = fast
            return (loss, LinearGrads(gx, gW, gb)) if return_grad else loss
    return linear_blocks_checked(input, linear_weight, linear_bias, target, weight,
                                 ignore_index, reduction, label_smoothing, softcap, z_loss,
                                 return_grad, grad_out=grad_out)


def linear_blocks_checked(input, linear_weight, linear_bias, target, weight, ignore_index,
                          reduction, label_smoothing, softcap, z_loss, return_grad,
                          needs=(True, True, True), row_scale=None, products=None,
                          grad_out=None):
    """linear_cross_entropy's checks, then linear_blocks (whose needs, row_scale and
    grad_out see)."""
    x, W, b, dtype = _linear_operands(input, linear_weight, linear_bias)
    half = half_kind(dtype)
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    eps = check_label_smoothing(label_smoothing)
    softcap = check_softcap(softcap)
    z_loss = check_z_loss(z_loss)
    t, prob = _targets(target, x.shape[:-1] + (W.shape[0],), x.ndim - 1, W.shape[0],
                       ignore_index)
    grad_out = check_grad_out(grad_out, return_grad,
                              [x.shape, W.shape, None if b is None else b.shape], dtype,
                              names=("grad_out[0]", "grad_out[1]", "grad_out[2]"))
    if not half:
        w = class_weight(weight, W.shape[0], dtype)
        return linear_blocks(x, W, b, t, prob, w, ignore_index, reduction, eps, softcap,
                             z_loss, return_grad, needs, row_scale, products, grad_out)
    # 16-bit operands: the products need float32 ones (BLAS has no 16-bit product), so the
    # operands are converted once (exactly) and the loss and gradients, computed as for
    # float32 operands, rounded from their float32 values to the 16-bit dtype (probability
    # targets are converted block by block, as for float32)
    f32 = np.dtype(np.float32)
    x, W = x.astype(f32), W.astype(f32)
    b = None if b is None else b.astype(f32)
    w = class_weight(weight, W.shape[0], f32)
    res = linear_blocks(x, W, b, t, prob, w, ignore_index, reduction, eps, softcap, z_loss,
                        return_grad, needs, row_scale, products)
    if not return_grad:
        return rounded(res, dtype)
    loss, grads = res
    grads = [None if g is None else deliver(out, rounded(g, dtype))
             for g, out in zip(grads, grad_out)]
    return rounded(loss, dtype), LinearGrads(*grads)


def linear_blocks(x, W, b, t, prob, w, ignore_index, reduction, eps, softcap, z_loss,
                  return_grad, needs=(True, True, True), row_scale=None, products=None,
                  grad_out=(None, None, None)):
    """linear_cross_entropy on checked arguments (design notes (a)-(d) above).

    needs: which of the gradients (input, linear_weight, linear_bias) to compute (the others
    are None); row_scale: per-row factors of the gradient (the incoming gradient of a "none"
    loss in fastnll.torch), shaped like the rows, or None; products: whose BLAS computes the
    products (None: NumPy's, by NumpyProducts in pieces; or fastnll.torch's); grad_out: the
    caller's arrays for the gradients (checked), written directly where they are
    C-contiguous, of the dtype and apart from the operands, else copied into at the end."""
    V, H = W.shape
    if products is None and x.size // max(H, 1) * V * x.itemsize <= _BLOCK_BYTES:
        products = NumpyProducts(V, H, x.dtype)     # one block: the compiled call's products
    if products is not None:
        return _blocks(x, W, b, t, prob, w, ignore_index, reduction, eps, softcap, z_loss,
                       return_grad, needs, row_scale, products, grad_out)
    # logits beyond one block: NumPy's BLAS on one thread a piece of each product, as many
    # pieces at once as it had threads (NumpyProducts)
    with _blas.one_thread() as pieces:
        return _blocks(x, W, b, t, prob, w, ignore_index, reduction, eps, softcap, z_loss,
                       return_grad, needs, row_scale, NumpyProducts(V, H, x.dtype, pieces),
                       grad_out)


def _blocks(x, W, b, t, prob, w, ignore_index, reduction, eps, softcap, z_loss, return_grad,
            needs, row_scale, products, grad_out):
    """linear_blocks with its products chosen."""
    dtype = x.dtype
    V, H = W.shape
    N = int(np.prod(x.shape[:-1]))
    x2 = x.reshape(N, H)
    t2 = t.reshape(N, V) if prob else t.reshape(N)
    ce_div, z_div = _divisors(reduction, prob, t2, w, ignore_index, N)
    loss_of = BlockLoss(V, dtype, w, ignore_index, eps, softcap, z_loss, prob, _scale(ce_div),
                        _scale(z_div), products.kernel_threads)
    # the kept rows: all of them (slices), or the indices of those not ignored
    kept = None if prob else np.flatnonzero(t2 != ignore_index)
    if kept is not None and len(kept) == N:
        kept = None
    n_kept = N if kept is None else len(kept)
    scale = None if row_scale is None else np.asarray(row_scale, dtype=dtype).reshape(N)

    rows = np.zeros(N, dtype=dtype) if reduction == "none" else None
    gx = gW = gb = None
    out_x, out_W, out_b = grad_out
    if return_grad:
        need_x, need_W, need_b = needs
        need_b = need_b and b is not None
        if need_x:
            gx = _direct(out_x, (N, H), dtype, (x, W, b, t, w, row_scale))
            if gx is None:
                gx = np.zeros((N, H), dtype=dtype)
            else:
                gx.fill(0)
        if need_W:
            gW = _direct(out_W, (V, H), dtype, (x, W, b, t, w, row_scale))
            if gW is None:
                gW = np.empty((V, H), dtype=dtype)
            if n_kept == 0:
                gW.fill(0)
        gb = np.zeros(V, dtype=np.float64) if need_b else None
    itemsize = dtype.itemsize
    if not return_grad and n_kept * V * itemsize > _BLOCK_BYTES:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ce_total, z_total = _evaluate(x2, W, b, t2, prob, kept, w, ignore_index, eps,
                                          softcap, z_loss, rows, products)
        if rows is not None:
            rows = rows.reshape(x.shape[:-1])
        return _finish(reduction, ce_total, z_total, ce_div, z_div, rows, dtype)
    # (the gradient's buffer count also without it: the same blocks, so the same loss bits
    # while the logits fit the budget)
    nb = _block_rows(n_kept, _BLOCK_BYTES // (loss_of.buffers(True) * max(V, 1) * itemsize))
    buf = np.empty((nb, V), dtype=dtype) if n_kept else None
    gx_buf = np.empty((nb, H), dtype=dtype) if gx is not None and kept is not None else None
    ce_total = z_total = 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for r0 in range(0, n_kept, nb):
            r1 = min(r0 + nb, n_kept)
            sel = slice(r0, r1) if kept is None else kept[r0:r1]
            xb = np.ascontiguousarray(x2[sel])
            z = buf[:r1 - r0]
            products.forward(xb, W, z)
            if b is not None:
                np.add(z, b, out=z)
            rows_b = None if rows is None else np.empty(r1 - r0, dtype=dtype)
            ce, zl = loss_of(z, t2[sel], rows_b, return_grad)
            ce_total += ce
            z_total += zl
            if rows is not None:
                rows[sel] = rows_b
            if not return_grad:
                continue
            if scale is not None:
                np.multiply(z, scale[sel][:, None], out=z)
            if gx is not None:
                if kept is None:
                    products.grad_input(z, W, gx[sel])
                else:
                    products.grad_input(z, W, gx_buf[:r1 - r0])
                    gx[sel] = gx_buf[:r1 - r0]
            if gW is not None:
                products.grad_weight(z, xb, gW, first=r0 == 0)
            if gb is not None:
                gb += z.sum(axis=0, dtype=np.float64)
    if rows is not None:
        rows = rows.reshape(x.shape[:-1])
    loss = _finish(reduction, ce_total, z_total, ce_div, z_div, rows, dtype)
    if not return_grad:
        return loss
    return loss, LinearGrads(_delivered(out_x, gx, x.shape), _delivered(out_W, gW, (V, H)),
                             None if gb is None else deliver(out_b, gb.astype(dtype)))


def _block_rows(n, most):
    """The rows a block takes of n rows, at most `most` (at least 1): all n where they fit one
    block; else the blocks are about equal, so that no small block is left at the end, and
    where `most` is 4 * _ROW_MULTIPLE or more, their rows a multiple of _ROW_MULTIPLE (2048
    rows of at most 262 a block: 8 blocks of 256)."""
    most = max(1, most)
    if n <= most:
        return max(n, 1)
    rows = -(-n // -(-n // most))         # n over the fewest blocks, rounded up
    if most < 4 * _ROW_MULTIPLE:
        return rows
    up = -(-rows // _ROW_MULTIPLE) * _ROW_MULTIPLE
    return up if up <= most else most // _ROW_MULTIPLE * _ROW_MULTIPLE


def _evaluate(x2, W, b, t2, prob, kept, w, ignore_index, eps, softcap, z_loss, rows, products):
    """(sum of the cross-entropy losses, sum of the z-losses) of the kept rows, through
    slices of the vocabulary (design note (g)); rows: the per-row losses to fill, or None."""
    dtype = x2.dtype
    V, H = W.shape
    n_kept = len(x2) if kept is None else len(kept)
    # the budget holds the logits' slice and, where the rows must be gathered (ignored rows
    # left out, or a strided input), their copy
    copied = H * dtype.itemsize if kept is not None or not x2.flags.c_contiguous else 0
    nb = max(1, min(n_kept, _BLOCK_BYTES // (min(V, _MIN_SLICE) * dtype.itemsize + copied)))
    vs = max(1, min(V, (_BLOCK_BYTES - nb * copied) // (nb * dtype.itemsize)))
    starts = range(0, V, vs)
    buf = np.empty(nb * vs, dtype=dtype)
    rows_buf = np.empty((nb, H), dtype=dtype) if copied else None
    # the statistics of the slices so far, combined, and of the last slice
    parts = np.empty((FIELDS, nb, 2))
    nthreads = products.kernel_threads or _threads.for_work(buf.size)
    ce_total = z_total = 0.0
    for r0 in range(0, n_kept, nb):
        r1 = min(r0 + nb, n_kept)
        sel = slice(r0, r1) if kept is None else kept[r0:r1]
        if rows_buf is None:
            xb = x2[sel]
        else:
            xb = rows_buf[:r1 - r0]
            if kept is None:
                xb[...] = x2[sel]
            else:             # (by pieces: no temporary of the block's size)
                for i in range(0, r1 - r0, _GATHER_ROWS):
                    xb[i:i + _GATHER_ROWS] = x2[sel[i:i + _GATHER_ROWS]]
        tb = t2[sel]
        classes = None if prob else tb.reshape(-1, 1)
        for j, v0 in enumerate(starts):
            v1 = min(v0 + vs, V)
            z = buf[:(r1 - r0) * (v1 - v0)].reshape(r1 - r0, v1 - v0)
            products.forward(xb, W[v0:v1], z)
            if b is not None:
                np.add(z, b[v0:v1], out=z)
            if softcap is not None:
                _cap(z, softcap)
            t3 = kernel_ready(tb[:, v0:v1], dtype)[:, :, None] if prob else None
            both = parts[:, :r1 - r0]
            both[:, :, min(j, 1)] = class_partials(
                z[:, :, None], t3, classes, v0, None if w is None else w[v0:v1],
                ignore_index, eps, V, nthreads)
            if j:
                both[:, :, 0] = combine(both)
        loss, shift, log_sum, _ = class_terms(
            parts[:, :r1 - r0, 0], tb, w=w, ignore_index=ignore_index, eps=eps, C=V,
            kind="prob" if prob else "index")
        ce_total += float(loss.sum())
        if z_loss:            # (every row here is kept: probability targets, or kept rows)
            z_rows = z_loss * np.square(shift + log_sum)
            z_total += float(z_rows.sum())
            loss = loss + z_rows
        if rows is not None:
            rows[sel] = loss
    return ce_total, z_total


def _direct(out, shape, dtype, operands):
    """A caller's gradient array as the (rows, features) matrix the products write, where it
    is C-contiguous, of dtype and shares no memory with the operands; else None."""
    if out is None or not kernel_writable(out, dtype, operands):
        return None
    return out.reshape(shape)


def _delivered(out, grad, shape):
    """A gradient as returned: the caller's array (written directly, or copied into), or
    the computed one in its operand's shape."""
    if grad is None:
        return None
    if out is not None and np.may_share_memory(grad, out):     # written directly
        return out
    return deliver(out, grad.reshape(shape))
