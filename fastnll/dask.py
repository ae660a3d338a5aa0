"""fastnll on Dask arrays: the same functions, lazily, chunk by chunk, on any Dask scheduler.

``import fastnll.dask`` (installed with ``pip install "fastnll[dask]"``; ``import fastnll``
never imports Dask).  Every function takes Dask arrays (NumPy arrays and lists are wrapped) and
returns lazy Dask arrays, 0-d for a reduction, with the signature and the semantics of the
in-memory function of the same name; ``.compute()`` runs them on the scheduler in use: threads,
processes, or a ``distributed`` cluster.

How the graphs are built:

- Each task runs fastnll's in-memory kernels on its chunk, on one thread (the scheduler's
  workers are the parallelism), and hands on float64 results: the chunk's float64 sum of losses
  for "sum" and "mean", float64 partial statistics of rows whose class axis is split.
- "mean" divides the sum over chunks by the sum over chunks of the kept targets' weights (or
  the count of elements), so class weights and ``ignore_index`` give exactly the in-memory
  definition; gradients are scaled by the same divisor.
- A class axis (or a reduced axis) split across chunks is never concatenated: each chunk gives
  its rows' partial log-sum-exp statistics (maximum, sums of exponentials shifted by it,
  weighted sums of logits, the target's logit), which combine in a tree (dask.array.reduction)
  into what one pass over the whole row gives (_combine_rows).
- Losses are rounded to the output dtype once, at the end (a mean's gradient twice: the chunk's
  gradient of the sum, then its product by 1 / divisor).

Errors that the shapes and arguments show are raised when the graph is built; an invalid
value (a target out of range, a negative probability or variance) raises the in-memory
function's exception when the graph is computed.
"""
import functools
import os

import numpy as np

try:
    import dask.array as da
except ImportError as exc:          # pragma: no cover (the tests skip without Dask)
    raise ImportError(
        "fastnll.dask needs Dask: pip install 'fastnll[dask]' (dask[array] and distributed)"
    ) from exc

from . import _class_losses, _elementwise, _entropy, _softmax, _threads
from ._checks import (
    as_real_array, broadcast_pk_qk, check_base, check_broadcast, check_class_range,
    check_class_target_dtype, check_class_target_shape, check_known_shape,
    check_gaussian_var_shape, check_ignore_index, check_label_smoothing, check_probabilities,
    check_probability_ignore_index, check_reduction, check_shape, class_axis, class_targets,
    class_weight, normalize_axes, normalize_axis, real_number, target_array,
)
from ._dispatch import kernels
from ._half import half_kind
from ._layout import (
    compute_dtype, finish_reduction, float64_sums, is_weak_scalar, kernel_ready,
)
# Rows' partial statistics (_partials.py), fields first.  Chunks send the prefix their loss
# needs (what travels between workers): the log-sum-exp's 3 fields, the target's logit too for
# class-index targets, all of them for label smoothing or probability targets.
from ._partials import (
    FIELDS as _FIELDS, LSE_FIELDS as _LSE_FIELDS, MAXIMUM as _MAXIMUM,
    TARGET_FIELDS as _TARGET_FIELDS, WT_SUM as _WT_SUM, W_CHUNK as _W_CHUNK,
    class_partials, class_terms as _class_terms, log_sum as _log_sum, shift as _shift,
)

__all__ = [
    "logsumexp", "softmax", "log_softmax", "nll_loss", "cross_entropy",
    "binary_cross_entropy_with_logits", "gaussian_nll_loss", "poisson_nll_loss", "kl_div",
    "entropy", "from_npy",
]

TASK_THREADS = 1        # kernel threads inside one task: the scheduler runs tasks in parallel

# The graphs are dask.array.blockwise calls.  Each array axis has a letter (the input's axes
# a, b, c, ... in order); "z" is the axis of a row's partial statistics (first) or of
# logsumexp's (result, sign) pair (last), "Z" that of a chunk's (sum, divisor part).  An index
# that the output lacks is contracted: the task then gets a list of blocks (one block here,
# _unwrap takes it out).  Non-array arguments go in with the index None (_arg).  Tasks that
# compute a loss and its gradient return a (loss, [gradients]) tuple as their "block", which
# the next blockwise calls take apart (_pick).
_LETTERS = "abcdefghijklmnopqrstuvwxy"      # blockwise indices of array axes
_FIELD = "z"                                # ... of the partial statistics' fields
_PAIR = "Z"                                 # ... and of a chunk's (sum, divisor part)


# ------------------------------------------------------------------ plumbing ----

def _dask(value, name, whole=None):
    """value as a Dask array of a real dtype and a known shape.  NumPy arrays and lists are
    wrapped in Dask's automatic chunks, but along the axes whole(ndim) (the class or reduced
    axes), which are kept in one chunk: whole rows take the in-memory kernels."""
    if isinstance(value, da.Array):
        if value.dtype.kind not in "biuf":
            as_real_array(np.empty(0, value.dtype), name)     # the in-memory TypeError
        check_known_shape(name, value.shape)
        return _as_float32_if_half(value)
    arr = as_real_array(value, name)
    axes = whole(arr.ndim) if whole is not None and arr.ndim else ()
    return _as_float32_if_half(da.from_array(arr, chunks=tuple(
        -1 if a in axes else "auto" for a in range(arr.ndim)) or "auto"))


def _as_float32_if_half(x):
    """16-bit chunks (float16, bfloat16) converted to float32, chunk by chunk: the graphs
    here compute them in float32 and return float32 (the in-memory functions would return
    the 16-bit dtype, and the partial statistics combined across chunks are float64 anyway)."""
    return x.astype(np.float32) if half_kind(x.dtype) else x


def _whole(value):
    """A small operand every chunk needs whole (class weights): computed when the graph is
    built, if it is a Dask array."""
    return value.compute() if isinstance(value, da.Array) else value


def _aligned(arr, chunks):
    return arr if arr.chunks == tuple(chunks) else arr.rechunk(chunks)


def _unwrap(block):
    # blockwise hands a list of blocks along an index it contracts (concatenate=False); every
    # contracted index here has one block
    while isinstance(block, list):
        (block,) = block
    return block


def _run(fn, *args, **kwargs):
    """fn in a task: one kernel thread, "sum" reductions left in float64."""
    with _threads.threads(TASK_THREADS), float64_sums():
        return fn(*[_unwrap(a) for a in args], **kwargs)


def _task(function, **kwargs):
    """function(*chunks, **kwargs) as a task's callable (picklable: partials of module-level
    functions)."""
    return functools.partial(_run, functools.partial(function, **kwargs) if kwargs else function)


def _ind(ndim):
    return _LETTERS[:ndim]


def _pick(pair, *path):
    pair = _unwrap(pair)
    for i in path:
        pair = pair[i]
    return pair


def _one_per_chunk(value, ndim):
    return np.full((1,) * ndim, value, dtype=np.float64)


def _divide(total, denom, dtype):
    # the in-memory mean's IEEE division (+-inf or nan over a zero divisor), as a 0-d block
    return np.asarray(finish_reduction("mean", np.float64(total), np.float64(denom), None,
                                       dtype))


def _scale_grad(g, scale):
    """g * scale computed in float64 and rounded to g's dtype, in place (g, the chunk's
    gradient of the sum, was rounded once already)."""
    if scale is not None:
        with np.errstate(invalid="ignore"):
            np.multiply(g, np.float64(scale), out=g, dtype=np.float64, casting="unsafe")
    return g


def _sum_chunks(parts):
    """The float64 total of per-chunk values (one element per chunk), added in a tree."""
    return parts.sum(dtype=np.float64)


def _finish_total(total, denom, dtype):
    """A "sum" (denom None) or "mean" as a 0-d Dask array of dtype."""
    if denom is None:
        return total.astype(dtype)
    return da.map_blocks(_divide, total, denom, dtype, dtype=dtype, meta=np.empty((), dtype))


def _reciprocal(denom):
    with np.errstate(divide="ignore"):
        return np.float64(1.0) / np.float64(denom)


def _arg(value):
    """A blockwise argument pair for a value that may be a 0-d Dask array."""
    return (value, "") if isinstance(value, da.Array) else (value, None)


def _loss_graph(fn, args, ndim, rows_ind, reduction, return_grad, denom, dtype, grads=((),)):
    """The lazy result of an in-memory loss run on aligned chunks.

    fn(*blocks, reduction=, return_grad=) is the in-memory function with its options bound;
    args are the blockwise (array, index) pairs, the first the input (ndim axes, index
    _ind(ndim)); rows_ind the index of the per-row losses ("none").  denom: the "mean"
    divisor: a number, or a _KeptWeight of the targets (args[1]); None for "sum" and "none".
    grads: the paths to the gradients in fn's gradient result (() for the gradient itself),
    each shaped like the input.  Returns (loss, [gradients])."""
    x_ind = _ind(ndim)
    block_reduction = "none" if reduction == "none" else "sum"
    flat = [v for pair in args for v in pair]
    one = {c: 1 for c in x_ind}
    if not return_grad:
        call = _task(fn, reduction=block_reduction, return_grad=False)
        if reduction == "none":
            return da.blockwise(call, rows_ind, *flat, dtype=dtype, concatenate=False,
                                meta=np.empty((0,) * len(rows_ind), dtype)), []
        # each chunk's float64 sum, with its part of the divisor when the targets give it
        kept = denom if isinstance(denom, _KeptWeight) else None
        parts = da.blockwise(_task(_chunk_total, fn=fn, ndim=ndim, kept=kept), x_ind + _PAIR,
                             *flat, adjust_chunks=one, new_axes={_PAIR: 2}, dtype=np.float64,
                             concatenate=False)
        return _finish_sums(parts.sum(axis=tuple(range(ndim)), dtype=np.float64), denom,
                            dtype), []
    # one task a chunk computes the loss and the gradients, scaled for "mean" by the divisor
    # (computed from the targets first, when they give it)
    denom, scale = _divisor_and_scale(denom, *args[1])
    call = _task(_loss_and_grads, fn=fn, reduction=block_reduction, ndim=ndim, grads=grads)
    pairs = da.blockwise(call, x_ind, *_arg(scale), *flat, dtype=dtype, concatenate=False,
                         meta=np.empty((0,) * ndim, dtype))
    gradients = [da.blockwise(_pick, x_ind, pairs, x_ind, 1, None, i, None, dtype=dtype,
                              meta=np.empty((0,) * ndim, dtype))
                 for i in range(len(grads))]
    if reduction == "none":
        loss = da.blockwise(_pick, rows_ind, pairs, x_ind, 0, None, dtype=dtype,
                            concatenate=False, meta=np.empty((0,) * len(rows_ind), dtype))
    else:
        parts = da.blockwise(_pick, x_ind, pairs, x_ind, 0, None, adjust_chunks=one,
                             dtype=np.float64)
        loss = _finish_total(_sum_chunks(parts), denom, dtype)
    return loss, gradients


def _finish_sums(sums, denom, dtype):
    """A "sum" (denom None) or "mean" from the summed (total, divisor part) pair."""
    if isinstance(denom, _KeptWeight):
        return sums.map_blocks(_divide_pair, dtype, drop_axis=0, dtype=dtype,
                               meta=np.empty((), dtype))
    return _finish_total(sums[0], denom, dtype)


def _divide_pair(sums, dtype):
    return _divide(sums[0], sums[1], dtype)


def _chunk_total(*blocks, fn, ndim, kept):
    """A chunk's float64 (sum of losses, part of the divisor) (the part 0 unless the divisor
    is the targets' kept weight), shaped (1,) * ndim + (2,)."""
    total = fn(*blocks, reduction="sum", return_grad=False)
    part = 0.0 if kept is None else kept.chunk(blocks[1], checked=True)   # fn checked them
    return np.array([total, part]).reshape((1,) * ndim + (2,))


def _loss_and_grads(scale, *blocks, fn, reduction, ndim, grads):
    """(loss, [gradients]) of one chunk: the loss as the per-row losses ("none") or the
    chunk's float64 sum (one element a chunk), each gradient scaled by `scale` (or not)."""
    loss, grad = fn(*blocks, reduction=reduction, return_grad=True)
    if reduction != "none":
        loss = _one_per_chunk(loss, ndim)
    return loss, [_scale_grad(np.asarray(_pick(grad, *path)), scale) for path in grads]


# ------------------------------------------------ partial statistics of rows ----
# Statistics arrays hold their fields first: (_FIELDS,) + the rows' layout, so that each field
# is a contiguous array over the rows.

def _rows_view(block, axes):
    """block as (rows, K, 1): the reduced axes last, merged (a copy only where the strides
    need one), and the shape of the rows."""
    moved = np.moveaxis(block, axes, tuple(range(-len(axes), 0)))
    rows = moved.shape[:moved.ndim - len(axes)]
    k = int(np.prod(moved.shape[len(rows):], dtype=np.int64))
    return moved.reshape(int(np.prod(rows, dtype=np.int64)), k)[:, :, None], rows


def _with_reduced(stats, rows_shape, axes):
    """(F, rows) statistics as (F,) + the chunk's layout with the reduced axes of length 1."""
    out = stats.reshape((stats.shape[0],) + rows_shape + (1,) * len(axes))
    return np.moveaxis(out, tuple(range(1 + len(rows_shape), out.ndim)),
                       tuple(1 + a for a in axes))


def _row_stats(block, axes, dtype):
    """The log-sum-exp statistics of each row of a chunk, the rows running along `axes`:
    ((_FIELDS, number of rows) float64, the rows' shape)."""
    # (kernel_ready: a chunk received from another worker can sit at an unaligned address)
    x3, rows = _rows_view(kernel_ready(np.asarray(block), dtype), axes)
    out = np.zeros((_FIELDS, x3.shape[0], 1))
    kernels.row_partials(x=x3, targets=None, classes=None, first_class=0, ignore_index=0,
                         weight=None, x_sums=False, keep=1.0, spread=0.0, out=out,
                         nthreads=TASK_THREADS)
    return out[:, :, 0], rows


def _combine_rows(parts, axis, keepdims):
    """The statistics of whole rows from those of their pieces along `axis` (the combine
    and aggregate of dask.array.reduction; the arithmetic is the kernel's), with the pieces'
    fields (a prefix: the others are 0)."""
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    n = parts.shape[0]
    p = np.moveaxis(parts, axis, tuple(range(-len(axis), 0)))
    rows_shape = p.shape[1:p.ndim - len(axis)]
    p = p.reshape(n, int(np.prod(rows_shape, dtype=np.int64)),
                  int(np.prod(p.shape[p.ndim - len(axis):], dtype=np.int64)))
    if n < _FIELDS:
        p = np.concatenate([p, np.zeros((_FIELDS - n,) + p.shape[1:])])
    out = np.empty(p.shape[:2])
    kernels.combine_partials(parts=p, out=out)
    # back to the pieces' layout, the reduced axes of length 1
    out = out[:n].reshape((n,) + rows_shape + (1,) * len(axis))
    out = np.moveaxis(out, tuple(range(out.ndim - len(axis), out.ndim)), axis)
    return out if keepdims else out.squeeze(axis)


def _keep_chunk(block, axis, keepdims):
    return block


def _combined(stats, axes):
    """Whole rows' statistics from per-chunk ones (a tree over the chunks along axes, the
    axes of the data: the statistics' are one further, after the fields)."""
    return da.reduction(stats, _keep_chunk, _combine_rows, axis=tuple(a + 1 for a in axes),
                        keepdims=True,
                        dtype=np.float64, concatenate=True, combine=_combine_rows,
                        meta=np.empty((0,) * stats.ndim))


# ------------------------------------------------------------- class losses ----

class _KeptWeight:
    """The divisor of a class loss's "mean": the summed weights of the targets that are not
    ignored (their count without class weights), a float64 sum over the chunks of targets."""

    def __init__(self, w, C, ignore_index):
        self.w, self.C, self.ignore_index = w, C, ignore_index

    def chunk(self, t, count=False, checked=False):
        """A chunk's part of the divisor (and its number of kept targets); checked: the
        task has already checked these targets (its loss did)."""
        t = np.asarray(t)
        if not checked:
            check_class_range(t, self.C, self.ignore_index)
        keep = t != self.ignore_index
        n = float(np.count_nonzero(keep))
        weight = n if self.w is None else self.w.astype(np.float64)[t[keep]].sum()
        return (weight, n) if count else weight

    def sums(self, t, t_ind):
        """(divisor, number of kept targets) as a Dask array of 2, from the targets alone."""
        parts = da.blockwise(_task(_kept_chunk, kept=self, ndim=t.ndim), t_ind + _PAIR, t,
                             t_ind, adjust_chunks={c: 1 for c in t_ind}, new_axes={_PAIR: 2},
                             dtype=np.float64)
        return parts.sum(axis=tuple(range(t.ndim)), dtype=np.float64)


def _kept_chunk(t, *, kept, ndim):
    return np.array(kept.chunk(t, count=True)).reshape((1,) * ndim + (2,))


def _kept_scale(sums):
    """The gradients' scale 1 / divisor; with every target ignored 0 (the gradient is 0, as
    in PyTorch), and inf for kept targets whose weights sum to 0 (PyTorch's infinities and
    nans there come from its order of operations: see the README)."""
    weight, kept = sums
    if weight != 0:
        return np.float64(1.0) / weight
    return np.float64(np.inf if kept else 0.0)


def _divisor_and_scale(denom, t, t_ind):
    """(the loss's divisor, the gradients' scale) of a "mean" (None, None otherwise)."""
    if denom is None:
        return None, None
    if isinstance(denom, _KeptWeight):
        sums = denom.sums(t, t_ind)
        return sums[0], sums.map_blocks(_kept_scale, drop_axis=0, dtype=np.float64,
                                        meta=np.empty(()))
    return denom, _reciprocal(denom)


def _index_chunk(x, t, *, w, ignore_index, eps, axis, is_nll, reduction, return_grad):
    return _class_losses._class_loss(x, t, w, ignore_index, reduction, eps, axis, return_grad,
                                     is_nll)


def _prob_chunk(x, t, *, w, ignore_index, eps, axis, reduction, return_grad):
    return _class_losses._prob_loss(x, t, w, ignore_index, reduction, eps, axis, return_grad)


def _class_stats_chunk(x, t, classes, *, ax, w, ignore_index, eps, C, kind, dtype):
    """A chunk's partial row statistics (kind: "nll", "index" or "prob" targets)."""
    c0, cb = (int(classes[0]) if classes.size else 0), x.shape[ax]
    # (kernel_ready: unpickled in a worker, an array can sit at any address)
    wb = None if w is None else kernel_ready(np.asarray(w[c0:c0 + cb]), dtype)
    x3, rows = _rows_view(kernel_ready(np.asarray(x), dtype), (ax,))
    if kind == "prob":
        t3, c2 = _rows_view(kernel_ready(np.asarray(t), dtype), (ax,))[0], None
    else:
        t3, c2 = None, kernel_ready(np.asarray(t), np.dtype(np.int64)).reshape(-1, 1)
    stats = class_partials(x3, t3, c2, c0, wb, ignore_index, eps, C, TASK_THREADS)
    return _with_reduced(stats[:_class_fields(kind, eps)], rows, (ax,))


def _class_fields(kind, eps):
    """How many statistics a class loss's chunks send (a prefix of the fields)."""
    return _TARGET_FIELDS if kind != "prob" and not eps else _FIELDS


def _class_rows_chunk(st, t=None, *, out_dtype, **options):
    return _class_terms(np.asarray(st), t, **options)[0].astype(out_dtype)


def _class_total_chunk(st, t=None, *, kept, **options):
    """(sum of the rows' losses, part of the divisor), as _chunk_total."""
    rows = _class_terms(np.asarray(st), t, **options)[0]
    part = 0.0 if kept is None else kept.chunk(t, checked=True)   # _class_terms checked
    return np.array([rows.sum(), part]).reshape((1,) * rows.ndim + (2,))


def _class_grad_chunk(x, t, classes, st, scale, *, ax, w, ignore_index, eps, C, kind, dtype):
    """A chunk of the gradient from whole rows' statistics (float64, rounded once)."""
    st = np.asarray(st)
    _, shift, log_sum, wt = _class_terms(st, t, w=w, ignore_index=ignore_index, eps=eps, C=C,
                                         kind=kind)
    c0, cb = (int(classes[0]) if classes.size else 0), x.shape[ax]
    z = np.moveaxis(np.asarray(x, dtype=np.float64), ax, -1)       # rows + (cb,)
    wb = (np.ones(cb) if w is None else w[c0:c0 + cb].astype(np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "nll":
            g = np.zeros_like(z)
        else:
            p = np.exp((z - shift[..., None]) - log_sum[..., None])
        if kind == "prob":
            q = (1.0 - eps) * np.moveaxis(np.asarray(t, dtype=np.float64), ax, -1) + eps / C
            g = p * st[_WT_SUM][..., None] - wb * q
        elif kind == "index":
            keep = np.asarray(t) != ignore_index
            coef = (1.0 - eps) * wt
            if eps:
                coef = coef + np.where(keep, (eps / C) * st[_W_CHUNK], 0.0)
            g = p * coef[..., None]
            if eps:
                g -= np.where(keep[..., None], (eps / C) * wb, 0.0)
        if kind != "prob":              # the target's entry (rows flattened: 1-D input too)
            shape = g.shape
            t, wt = np.asarray(t).reshape(-1), np.reshape(wt, -1)
            g = np.ascontiguousarray(g).reshape(t.size, cb)
            rows = np.flatnonzero((t != ignore_index) & (t >= c0) & (t < c0 + cb))
            g[rows, t[rows] - c0] -= (1.0 - eps) * wt[rows] if kind == "index" else wt[rows]
            g = g.reshape(shape)
    return np.moveaxis(_scale_grad(g, scale), -1, ax).astype(dtype)


def _class_loss(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                return_grad, is_nll):
    eps = 0.0 if is_nll else check_label_smoothing(label_smoothing)
    x = _dask(input, "input", whole=lambda ndim: (class_axis(ndim, axis),))
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    dtype = compute_dtype(x)
    ax = class_axis(x.ndim, axis)
    C = x.shape[ax]
    w = class_weight(_whole(weight), C, dtype)
    x_ind = _ind(x.ndim)
    cl = x_ind[ax]
    t_ind = x_ind.replace(cl, "")
    rows_chunks = x.chunks[:ax] + x.chunks[ax + 1:]
    if isinstance(target, da.Array):
        t = target
        check_known_shape("target", t.shape)
        prob = t.dtype.kind == "f" and not is_nll
        if not prob:
            check_class_target_dtype(t.dtype)
    else:
        t = target_array(
            target, "integer class indices" if is_nll else
            "integer class indices or float class probabilities")
        prob = t.dtype.kind == "f" and not is_nll
        if not prob:
            t = class_targets(t, x.shape, ax, C, ignore_index)
        t = da.asarray(t)
    if prob:
        check_probability_ignore_index(ignore_index)
        check_shape("target", t.shape, x.shape,
                    "probability targets must have the input's shape")
        t, t_ind = _aligned(t, x.chunks), x_ind
        denom = x.size // C if x.size else 0        # the rows ("mean" of nothing: nan)
    else:
        check_class_target_shape(t.shape, x.shape, ax)
        t = _aligned(t, rows_chunks)
        denom = _KeptWeight(w, C, ignore_index)
    if reduction != "mean":
        denom = None

    if x.numblocks[ax] == 1:        # whole rows in each chunk: the in-memory function
        fn = (functools.partial(_prob_chunk, w=w, ignore_index=ignore_index, eps=eps, axis=ax)
              if prob else
              functools.partial(_index_chunk, w=w, ignore_index=ignore_index, eps=eps,
                                axis=ax, is_nll=is_nll))
        loss, grads = _loss_graph(fn, [(x, x_ind), (t, t_ind)], x.ndim, x_ind.replace(cl, ""),
                                  reduction, return_grad, denom, dtype)
        return (loss, grads[0]) if return_grad else loss

    # the class axis split: partial statistics of the rows, combined in a tree
    kind = "prob" if prob else ("nll" if is_nll else "index")
    options = dict(w=w, ignore_index=ignore_index, eps=eps, C=C, kind=kind)
    classes = da.arange(C, chunks=x.chunks[ax])
    stats = da.blockwise(
        _task(_class_stats_chunk, ax=ax, dtype=dtype, **options), _FIELD + x_ind,
        x, x_ind, t, t_ind, classes, cl, adjust_chunks={cl: 1},
        new_axes={_FIELD: _class_fields(kind, eps)},
        dtype=np.float64, concatenate=False, meta=np.empty((0,) * (x.ndim + 1)))
    rows_stats = _combined(stats, (ax,)).squeeze(axis=ax + 1)
    r_ind = x_ind.replace(cl, "")
    # (probability targets are read by the statistics alone)
    row_args = (rows_stats, _FIELD + r_ind) + (() if prob else (t, t_ind))
    scale = None
    if return_grad:     # the divisor from the targets first: the gradients need it
        denom, scale = _divisor_and_scale(denom, t, t_ind)
    if reduction == "none":
        loss = da.blockwise(_task(_class_rows_chunk, out_dtype=dtype, **options), r_ind,
                            *row_args, dtype=dtype, concatenate=False,
                            meta=np.empty((0,) * len(r_ind), dtype))
    else:
        kept = denom if isinstance(denom, _KeptWeight) else None
        parts = da.blockwise(_task(_class_total_chunk, kept=kept, **options), r_ind + _PAIR,
                             *row_args, adjust_chunks={c: 1 for c in r_ind},
                             new_axes={_PAIR: 2}, dtype=np.float64, concatenate=False)
        loss = _finish_sums(parts.sum(axis=tuple(range(len(r_ind))), dtype=np.float64),
                            denom, dtype)
    if not return_grad:
        return loss
    grad = da.blockwise(
        _task(_class_grad_chunk, ax=ax, dtype=dtype, **options), x_ind, x, x_ind, t, t_ind,
        classes, cl, rows_stats, _FIELD + r_ind, *_arg(scale), dtype=dtype,
        concatenate=False, meta=np.empty((0,) * x.ndim, dtype))
    return loss, grad


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", axis=None,
             return_grad=False):
    """`fastnll.nll_loss` on Dask arrays (lazy; 0-d for "mean" and "sum").

    Any chunking, the class axis split across chunks included.  "mean" divides by the
    summed weights of the kept targets over every chunk.  An out-of-range target raises the
    in-memory IndexError when computed."""
    return _class_loss(input, target, weight, ignore_index, reduction, 0.0, axis, return_grad,
                       True)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, return_grad=False):
    """`fastnll.cross_entropy` on Dask arrays (lazy; 0-d for "mean" and "sum").

    Class-index targets (any integer dtype) or class-probability targets (a float array of
    the input's shape), any chunking: with the class axis split across chunks, each chunk's
    partial log-sum-exp statistics are combined in a tree, never by concatenating a row."""
    return _class_loss(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                       return_grad, False)


# ----------------------------------------------------------- softmax family ----

def _whole_rows(arr, axes):
    return arr.ndim == 0 or all(arr.numblocks[i] == 1 for i in axes)


def _lse_chunk(a, b=None, *, axes, partial):
    """(log|sum|, sign) of a chunk's rows along axes (kept with length 1), stacked on a new
    last axis; float64 partial results when partial."""
    res, sgn = _softmax._logsumexp(a, axes, b, True, True, partial)
    return np.stack([np.asarray(res), np.asarray(sgn)], axis=-1)


def _combine_lse(parts, axis, keepdims):
    # the partial log|sum|s weighted by their signs (0 for -inf, nan for nan)
    res, sgn = _softmax._logsumexp(parts[..., 0], axis, parts[..., 1], True, True, True)
    out = np.stack([np.asarray(res), np.asarray(sgn)], axis=-1)
    return out if keepdims else out.squeeze(axis)


def _lse_result(out, weighted, return_sign, dtype):
    res, sgn = out[..., 0].astype(dtype), out[..., 1].astype(dtype)
    if weighted and not return_sign:
        res[sgn < 0] = np.nan
    return np.stack([res, sgn], axis=-1)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """`fastnll.logsumexp` on Dask arrays (lazy).

    Any chunking: where a reduced axis is split across chunks, each chunk's float64
    ``(log|sum|, sign)`` is combined in a tree, as SciPy would weigh the terms."""
    a, b, dtype = _softmax.lse_operands(
        a, b, lambda value, name: _dask(value, name, whole=(
            (lambda ndim: normalize_axes(axis, ndim)) if name == "a" else None)))
    if b is not None:
        b = _aligned(b, a.chunks)
    axes = normalize_axes(axis, a.ndim)
    ind = _ind(a.ndim)
    flat = [a, ind] + ([] if b is None else [b, ind])
    one = {ind[i]: 1 for i in axes}
    whole = _whole_rows(a, axes)
    out = da.blockwise(_task(_lse_chunk, axes=axes, partial=not whole), ind + _FIELD, *flat,
                       adjust_chunks=one, new_axes={_FIELD: 2},
                       dtype=dtype if whole else np.float64, concatenate=False)
    if not whole:
        out = da.reduction(out, _keep_chunk, _combine_lse, combine=_combine_lse, axis=axes,
                           keepdims=True, dtype=np.float64, concatenate=True,
                           meta=np.empty((0,) * out.ndim))
    out = out.map_blocks(_lse_result, b is not None, return_sign, dtype, dtype=dtype)
    res, sgn = out[..., 0], out[..., 1]
    if not keepdims and a.ndim:
        res, sgn = res.squeeze(axis=axes), sgn.squeeze(axis=axes)
    return (res, sgn) if return_sign else res


def _softmax_chunk(x, *, axes, take_log):
    return np.asarray(_softmax._softmax_impl(x, axes, take_log))


def _lse_stats_chunk(x, *, axes, dtype):
    stats, rows = _row_stats(x, axes, dtype)
    return _with_reduced(stats[:_LSE_FIELDS], rows, axes)


def _softmax_from_stats(x, st, *, take_log, dtype):
    # SciPy's (x - shift) - log(sum exp(x - shift)), shift the maximum (0 where not finite)
    st = np.asarray(st)
    with np.errstate(invalid="ignore", over="ignore"):
        r = (np.asarray(x, dtype=np.float64) - _shift(st)) - _log_sum(st)
        if not take_log:
            r = np.exp(r)
            r[np.broadcast_to(st[_MAXIMUM] == np.inf, r.shape)] = np.nan   # SciPy: all nan
    return r.astype(dtype)


def _softmax_graph(x, axis, take_log):
    x = _dask(x, "x", whole=lambda ndim: normalize_axes(axis, ndim))
    dtype = compute_dtype(x)
    axes = normalize_axes(axis, x.ndim)
    meta = np.empty((0,) * x.ndim, dtype)
    if _whole_rows(x, axes):
        return x.map_blocks(_task(_softmax_chunk, axes=axes, take_log=take_log), dtype=dtype,
                            meta=meta)
    ind = _ind(x.ndim)
    stats = da.blockwise(_task(_lse_stats_chunk, axes=axes, dtype=dtype), _FIELD + ind, x, ind,
                         adjust_chunks={ind[i]: 1 for i in axes},
                         new_axes={_FIELD: _LSE_FIELDS},
                         dtype=np.float64, meta=np.empty((0,) * (x.ndim + 1)))
    return da.blockwise(_task(_softmax_from_stats, take_log=take_log, dtype=dtype), ind,
                        x, ind, _combined(stats, axes), _FIELD + ind, dtype=dtype,
                        concatenate=False, meta=meta)


def softmax(x, axis=None):
    """`fastnll.softmax` on Dask arrays (lazy, chunked like ``x``).

    With the softmax's axes split across chunks, the rows' partial log-sum-exp statistics are
    combined in a tree first (one more read of ``x``)."""
    return _softmax_graph(x, axis, False)


def log_softmax(x, axis=None):
    """`fastnll.log_softmax` on Dask arrays (lazy, chunked like ``x``).

    With the axes split across chunks, the rows' partial log-sum-exp statistics are combined
    in a tree first (one more read of ``x``)."""
    return _softmax_graph(x, axis, True)


# ------------------------------------------------------- elementwise losses ----

def _elementwise_graph(fn, x, operands, reduction, return_grad, dtype, divisor, grads=((),)):
    """An elementwise loss: the operands (name -> Dask array of the input's shape) aligned
    with the input's chunks, fn run on each chunk."""
    ind = _ind(x.ndim)
    names = tuple(operands)
    args = [(x, ind)] + [(_aligned(operands[k], x.chunks), ind) for k in names]
    denom = None if reduction in ("none", "sum") else divisor
    return _loss_graph(functools.partial(_elementwise_chunk, fn=fn, names=names), args,
                       x.ndim, ind, reduction, return_grad, denom, dtype, grads)


def _elementwise_chunk(x, *blocks, fn, names, reduction, return_grad):
    return fn(x, **dict(zip(names, blocks)), reduction=reduction, return_grad=return_grad)


def _operands(input, target):
    x = _dask(input, "input")
    return x, _dask(target, "target"), compute_dtype(x)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None, return_grad=False):
    """`fastnll.binary_cross_entropy_with_logits` on Dask arrays (lazy; 0-d for "mean" and
    "sum"); ``weight`` and ``pos_weight`` may be Dask arrays too."""
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    check_shape("target", y.shape, x.shape, "it must match the input's shape")
    ops = {"target": y}
    for name, val in (("weight", weight), ("pos_weight", pos_weight)):
        if val is not None:
            ops[name] = check_broadcast(name, _dask(val, name), x.shape)
    loss, grads = _elementwise_graph(_elementwise_fns.bce, x, ops, reduction, return_grad, dtype,
                               x.size)
    return (loss, grads[0]) if return_grad else loss


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean",
                      return_grad=False):
    """`fastnll.gaussian_nll_loss` on Dask arrays (lazy; 0-d for "mean" and "sum"); the
    gradient of ``var`` has ``var``'s shape (0-d for a scalar ``var``)."""
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", y, x.shape)
    real_number(eps, "eps")
    v = _dask(var, "var")
    var_shape = v.shape
    if v.ndim:
        check_gaussian_var_shape(v.shape, x.shape)
        if v.shape == x.shape[:-1] and v.shape != x.shape:
            v = v[..., None]
    # the axes the gradient of var is summed over (all for a scalar var)
    axes = None if not v.ndim else tuple(i for i in range(x.ndim) if v.shape[i] != x.shape[i])
    v = da.broadcast_to(v, x.shape)
    fn = functools.partial(_elementwise_fns.gaussian, full=full, eps=eps)
    loss, grads = _elementwise_graph(fn, x, {"target": y, "var": v}, reduction, return_grad, dtype,
                               x.size, grads=((0,), (1,)))
    if not return_grad:
        return loss
    gx, gv = grads
    if var_shape != x.shape:
        gv = gv.sum(axis=axes, dtype=np.float64).astype(dtype).reshape(var_shape)
    return loss, (gx, gv)


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean",
                     return_grad=False):
    """`fastnll.poisson_nll_loss` on Dask arrays (lazy; 0-d for "mean" and "sum")."""
    reduction = check_reduction(reduction)
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", y, x.shape)
    real_number(eps, "eps")
    fn = functools.partial(_elementwise_fns.poisson, log_input=log_input, full=full, eps=eps)
    loss, grads = _elementwise_graph(fn, x, {"target": y}, reduction, return_grad, dtype, x.size)
    return (loss, grads[0]) if return_grad else loss


def kl_div(input, target, reduction="mean", log_target=False, return_grad=False):
    """`fastnll.kl_div` on Dask arrays (lazy; 0-d for "mean", "batchmean" and "sum")."""
    reduction = check_reduction(reduction, ("none", "batchmean", "mean", "sum"))
    x, y, dtype = _operands(input, target)
    y = check_broadcast("target", y, x.shape)
    divisor = (x.shape[0] if x.ndim else 1) if reduction == "batchmean" else x.size
    fn = functools.partial(_elementwise_fns.kl, log_target=log_target)
    loss, grads = _elementwise_graph(fn, x, {"target": y}, reduction, return_grad, dtype, divisor)
    return (loss, grads[0]) if return_grad else loss


class _elementwise_fns:
    """The in-memory functions with the chunk's operands by name (a chunk's "batchmean" is
    the dask layer's: chunks run "sum")."""
    @staticmethod
    def bce(x, target, reduction, return_grad, weight=None, pos_weight=None):
        return _elementwise.binary_cross_entropy_with_logits(
            x, target, weight=weight, reduction=reduction, pos_weight=pos_weight,
            return_grad=return_grad)

    @staticmethod
    def gaussian(x, target, var, reduction, return_grad, full, eps):
        return _elementwise.gaussian_nll_loss(x, target, var, full=full, eps=eps,
                                              reduction=reduction, return_grad=return_grad)

    @staticmethod
    def poisson(x, target, reduction, return_grad, log_input, full, eps):
        return _elementwise.poisson_nll_loss(x, target, log_input=log_input, full=full, eps=eps,
                                             reduction=reduction, return_grad=return_grad)

    @staticmethod
    def kl(x, target, reduction, return_grad, log_target):
        return _elementwise.kl_div(x, target, reduction=reduction, log_target=log_target,
                                   return_grad=return_grad)


# ------------------------------------------------------------------ entropy ----

def _flat(arr):
    # (Dask does not reshape an empty array of several chunks)
    return (arr.rechunk(arr.shape) if arr.size == 0 else arr).reshape(-1)


def _entropy_chunk(p, q=None, *, axis, base):
    return np.asarray(_entropy.entropy(p, q, base=base, axis=axis))


def _entropy_sums_chunk(p, q=None, *, axis):
    """float64 partial sums along axis (kept with length 1) + a last axis of 3 fields:
    sum p, sum q, and sum p log p (no q) or sum p log(p / q)."""
    p = np.asarray(p, dtype=np.float64)
    for name, arr in (("pk", p), ("qk", q)):
        if arr is not None and (np.asarray(arr) < 0).any():
            arr = np.asarray(arr)
            check_probabilities(name, True, float(arr[arr < 0].flat[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        if q is None:
            terms = np.where(p == 0, 0.0, p * np.log(p))
            q_sum = np.zeros_like(p.sum(axis=axis, keepdims=True))
        else:
            q = np.asarray(q, dtype=np.float64)
            terms = np.where(p == 0, 0.0, p * np.log(p / q))
            q_sum = q.sum(axis=axis, keepdims=True)
    return np.stack([p.sum(axis=axis, keepdims=True), q_sum,
                     terms.sum(axis=axis, keepdims=True)], axis=-1)


def _entropy_finish(sums, *, relative, scale, out_dtype):
    P, Q, S = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (S / P + np.log(Q / P)) if relative else (np.log(P) - S / P)
        return (h * scale).astype(out_dtype)


def entropy(pk, qk=None, base=None, axis=0):
    """`fastnll.entropy` on Dask arrays (lazy).

    An axis split across chunks is reduced in float64 partial sums (sum p, sum q, sum p log p
    or sum p log(p/q)), combined in a tree; a negative probability raises the in-memory
    ValueError when computed."""
    keep = (lambda ndim: ()) if axis is None else (lambda ndim: (normalize_axis(axis, ndim),))
    p = _dask(pk, "pk", whole=keep)
    q = None if qk is None else _dask(qk, "qk")        # (aligned with pk's chunks below)
    check_base(base)
    dtype = compute_dtype(p) if q is None or is_weak_scalar(qk) else compute_dtype(p, q)
    if axis is None:      # SciPy flattens each array first, then broadcasts
        p = _flat(p)
        q = None if q is None else _flat(q)
        axis = 0
    if q is not None:
        p, q = broadcast_pk_qk(p, q)
        q = _aligned(q, p.chunks)
    ax = normalize_axis(axis, p.ndim)
    if p.ndim == 0:
        p = p.reshape(1)
        q = None if q is None else q.reshape(1)
    ind = _ind(p.ndim)
    out_ind = ind.replace(ind[ax], "")
    flat = [p, ind] + ([] if q is None else [q, ind])
    if p.numblocks[ax] == 1:
        return da.blockwise(_task(_entropy_chunk, axis=ax, base=base), out_ind, *flat,
                            dtype=dtype, concatenate=False,
                            meta=np.empty((0,) * len(out_ind), dtype))
    sums = da.blockwise(_task(_entropy_sums_chunk, axis=ax), ind + _FIELD, *flat,
                        adjust_chunks={ind[ax]: 1}, new_axes={_FIELD: 3}, dtype=np.float64)
    sums = sums.sum(axis=ax, dtype=np.float64)
    return sums.map_blocks(_entropy_finish, relative=q is not None,
                           scale=_entropy.log_base_scale(base), out_dtype=dtype, dtype=dtype,
                           drop_axis=sums.ndim - 1, meta=np.empty((0,) * len(out_ind), dtype))


# --------------------------------------------------------------------- data ----

class _NpyFile:
    """A .npy file as an array-like for da.from_array: only the path travels with the graph;
    each read maps the file, copies the slice out and drops the map."""

    def __init__(self, path):
        self.path = os.fspath(path)
        mapped = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = mapped.shape, mapped.dtype, mapped.ndim

    def __getitem__(self, index):
        return np.array(np.load(self.path, mmap_mode="r")[index])

    def __dask_tokenize__(self):
        # the file's identity: another file, or this one rewritten, is another array
        return (os.path.abspath(self.path), os.path.getmtime(self.path), self.shape,
                str(self.dtype))


def from_npy(path, chunks="auto"):
    """A Dask array over a ``.npy`` file, each chunk read by its own task from a memory map.

    Nothing of the data passes through the client: the task that needs a chunk maps the file,
    copies the chunk and unmaps it, so workers with less memory than the file read it chunk
    by chunk (the workers must see the same path: one machine, or a shared file system).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` file (``np.save``, or ``np.lib.format.open_memmap`` to write it in pieces).
    chunks : int, tuple or "auto", default "auto"
        Dask chunks, as ``dask.array.from_array`` takes them.

    Returns
    -------
    dask.array.Array
        The file's array, lazily.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastnll.dask
    >>> path = os.path.join(tempfile.mkdtemp(), "logits.npy")
    >>> np.save(path, np.zeros((6, 4), dtype=np.float32))
    >>> x = fastnll.dask.from_npy(path, chunks=(2, 4))
    >>> x.numblocks
    (3, 1)
    >>> print(f"{float(fastnll.dask.logsumexp(x, axis=1).sum().compute()):.4f}")   # 6 log 4
    8.3178
    """
    return da.from_array(_NpyFile(path), chunks=chunks, asarray=False, fancy=False)
