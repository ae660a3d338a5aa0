"""Rows whose classes come in pieces: the partial statistics of each piece (the row_partials
kernel), their float64 combination into what one pass over the whole row gives
(combine_partials), and a class loss from a whole row's statistics.

Two callers cut rows into pieces: fastnll.dask, where a class axis is split across chunks, and
linear_cross_entropy's evaluation, which forms the logits one slice of the vocabulary at a
time.  Statistics arrays hold their fields first, (FIELDS, rows), so that each field is a
contiguous array over the rows; the fields are those of _partial_kernels.pxi, in its order."""
import numpy as np

from ._checks import check_class_range
from ._dispatch import kernels

(MAXIMUM, REST, AT_MAX, X_T, REF, X_SUM, WT_SUM, W_CHUNK) = (
    kernels.ROW_PARTIAL_FIELDS.index(name)
    for name in ("maximum", "rest", "at_max", "x_t", "ref", "x_sum", "wt_sum", "w_chunk"))
FIELDS = len(kernels.ROW_PARTIAL_FIELDS)
# the prefixes that serve: the log-sum-exp alone, and a class-index loss without smoothing
LSE_FIELDS, TARGET_FIELDS = AT_MAX + 1, X_T + 1


def class_partials(x3, t3, classes, first_class, w, ignore_index, eps, C, nthreads):
    """The statistics (FIELDS, rows) of the rows x3[r, :, 0] (kernel-ready, (rows, piece, 1)),
    which hold classes first_class, first_class + 1, ... of C.  t3: their probability targets
    (like x3) or None; classes: class-index targets (rows, 1) int64, or None with t3; w: the
    piece's class weights or None; eps: the label smoothing."""
    prob = t3 is not None
    out = np.zeros((FIELDS, x3.shape[0], 1))
    kernels.row_partials(x=x3, targets=t3, classes=classes, first_class=first_class,
                         ignore_index=ignore_index, weight=w, x_sums=prob or eps > 0,
                         keep=1.0 - eps, spread=eps / C if prob else 0.0, out=out,
                         nthreads=nthreads)
    out[W_CHUNK] = (out[WT_SUM] if prob else
                    (x3.shape[1] if w is None else w.sum(dtype=np.float64)))
    return out[:, :, 0]


def combine(parts):
    """The statistics (FIELDS, rows) of whole rows from those of their pieces, parts
    (FIELDS, rows, pieces)."""
    out = np.empty(parts.shape[:2])
    kernels.combine_partials(parts=parts, out=out)
    return out


def shift(st):
    """The rows' shift: their maximum where it is finite, else 0."""
    return np.where(np.isfinite(st[MAXIMUM]), st[MAXIMUM], 0.0)


def log_sum(st):
    """log of the whole sum of exp(x - shift) (the kernels' finish_logs), per row."""
    mx, rest, at = st[MAXIMUM], st[REST], st[AT_MAX]
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.where(at == 1, np.log1p(rest), np.log1p(rest / at) + np.log(at))
        return np.where(np.isfinite(mx), small, np.log(rest + at))


def class_terms(st, t, *, w, ignore_index, eps, C, kind):
    """Per row of whole-row statistics st (FIELDS + rows): the row's loss (float64, 0 where
    the target is ignored), log-sum-exp parts (shift, log_sum) and the target's weight.
    kind: "nll", "index" (cross-entropy on class indices t) or "prob" (on probabilities)."""
    sh, ls = shift(st), log_sum(st)
    with np.errstate(invalid="ignore"):
        ls = np.where(st[MAXIMUM] == np.inf, np.nan, ls)   # PyTorch's nan
    if kind == "prob":
        with np.errstate(invalid="ignore"):
            return st[WT_SUM] * ls - st[X_SUM], sh, ls, None
    t = np.asarray(t)
    check_class_range(t, C, ignore_index)
    keep = t != ignore_index
    wt = np.where(keep, 1.0 if w is None else w.astype(np.float64)[np.where(keep, t, 0)], 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "nll":
            return np.where(keep, -wt * st[X_T], 0.0), sh, ls, wt
        loss = (1.0 - eps) * (wt * ((sh - st[X_T]) + ls))
        if eps:
            loss = loss + (eps / C) * (st[W_CHUNK] * ls - st[X_SUM])
    return np.where(keep, loss, 0.0), sh, ls, wt
