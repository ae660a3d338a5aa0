"""The oracles: float64 / extended-precision NumPy and SciPy references, and PyTorch autograd."""
# Independent of fastnll: written from the documented formulas (in forms other than the
# kernels' where there is a choice, e.g. binary cross-entropy as softplus terms), or SciPy /
# PyTorch themselves.  Imported as `from reference import ...` (see helpers.py).
#
# The elementwise references return (value, magnitude, gradient, gradient magnitude): the
# magnitudes bound the size of the terms each value is made of, for
# helpers.assert_close(..., mag=...).
import math
import warnings

import numpy as np
import pytest
import scipy.special as sps
import scipy.stats

# Extended precision for the class-loss references (80-bit long double on x86-64 Linux; plain
# float64 elsewhere, which is still accurate enough for the tolerances of helpers.py).
REF = np.longdouble
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def class_axis(ndim, axis):
    """The class axis of a class-target loss: 0 for 1-D input, else `axis` or 1."""
    if axis is None:
        return 0 if ndim == 1 else 1
    return axis % ndim


def as_used(a, dtype):
    """The values the kernels see: an operand cast to the input's dtype, in float64."""
    return np.asarray(a).astype(dtype).astype(np.float64)


# ------------------------------------------------------------------- softmax family ----

def scipy_ref(name, a, **kw):
    """scipy.special.<name> (logsumexp, softmax, log_softmax) on the float64 upcast of `a`
    (warnings about inf/nan silenced)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        a = np.asarray(a)
        a64 = a.astype(np.float64) if a.dtype.kind in "biuf" else a
        if "b" in kw and kw["b"] is not None:
            kw = dict(kw, b=np.asarray(kw["b"], dtype=np.float64))
        return getattr(sps, name)(a64, **kw)


def ref_lse(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log |sum(b exp(a))| over `axis` in float64, shifted by the finite maximum as SciPy
    does; -inf (sign 0) for an empty sum.  Without return_sign a negative sum is nan.  Also
    where SciPy raises (some empty inputs)."""
    a = np.asarray(a, dtype=np.float64)
    if b is not None:
        a, b = np.broadcast_arrays(a, np.asarray(b, dtype=np.float64))
    m = np.max(a, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        e = np.exp(a - m)
        s = np.sum(e if b is None else b * e, axis=axis, keepdims=True)
        res = np.log(np.abs(s)) + m
    sign = np.sign(s)
    if not keepdims:
        res = np.squeeze(res, axis=axis)
        sign = np.squeeze(sign, axis=axis)
    return (res, sign) if return_sign else np.where(sign < 0, np.nan, res)


def scipy_lse(**kw):
    """scipy.special.logsumexp, or ref_lse where an older SciPy raises on empty input."""
    kw = {k: np.asarray(v, np.float64) if k in "ab" else v for k, v in kw.items()}
    try:
        return sps.logsumexp(**kw)
    except ValueError:
        if np.asarray(kw["a"]).size:
            raise
        return ref_lse(**kw)


def ref_softmax(x, axis, log):
    """softmax (log=False) or log_softmax over `axis` through ref_lse."""
    x = np.asarray(x, dtype=np.float64)
    lse = ref_lse(x, axis=axis, keepdims=True) if x.size else np.zeros_like(x)
    return x - lse if log else np.exp(x - lse)


def torch_softmax(x, axis, log):
    """torch.softmax / torch.log_softmax in float64."""
    torch = pytest.importorskip("torch")
    t = torch.tensor(np.asarray(x, dtype=np.float64))
    return (torch.log_softmax if log else torch.softmax)(t, dim=axis).numpy()


def ref_log_softmax_last(x):
    """log_softmax over the last axis in extended precision.

    SciPy's shift (a non-finite maximum is replaced by 0), with the log-sum-exp taken as
    log(count of maxima) + log1p(rest / count) for a finite maximum, so that a tiny
    log-probability such as -log1p(e^-35) keeps its relative precision."""
    x = np.asarray(x, dtype=REF)
    if x.shape[-1] == 0:
        return x.copy()
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        finite = np.isfinite(m)
        tmp = x - np.where(finite, m, 0)
        e = np.exp(tmp)
        top = (x == m) & finite
        count = np.sum(top, axis=-1, keepdims=True)
        rest = np.sum(np.where(top, 0, e), axis=-1, keepdims=True)
        logs = np.where(finite, np.log1p(rest / np.maximum(count, 1)) + np.log(
            np.maximum(count, 1).astype(REF)), np.log(np.sum(e, axis=-1, keepdims=True)))
        return tmp - logs


# ---------------------------------------------------------------- class-target losses ----

def ref_loss(kind, x, target, weight=None, ignore_index=-100, reduction="mean",
             label_smoothing=0.0, axis=None, with_terms=False):
    """NumPy reference for nll_loss (kind="nll") and cross_entropy (kind="ce").

    Returns (loss, grad) in float64; grad is d loss / d x (of the sum for reduction="none").
    PyTorch semantics: a row with +inf (or with every logit -inf) has nan log-probabilities.

    With `with_terms`, also returns the elementwise sum of the magnitudes of the terms that
    make up each gradient entry (e.g. |p| + 1 at a target): entries such as p_t - 1 with
    p_t close to 1 come out of a cancellation, so their rounding error is relative to this,
    not to their value."""
    x = np.asarray(x)
    ax = class_axis(x.ndim, axis)
    xm = np.moveaxis(x.astype(REF), ax, -1)
    C = xm.shape[-1]
    w = np.ones(C, REF) if weight is None else np.asarray(weight).astype(REF)
    W = w.sum()
    eps = REF(label_smoothing)
    target = np.asarray(target)
    prob = target.dtype.kind == "f"
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if kind == "nll":
            logp = xm
        else:
            logp = ref_log_softmax_last(xm)
            bad = np.any(xm == np.inf, axis=-1, keepdims=True)
            logp = np.where(bad, np.nan, logp)
        p = np.exp(logp)
        if prob:
            tm = np.moveaxis(target.astype(REF), ax, -1)
            tp = (1 - eps) * tm + eps / C
            wt = w * tp
            rows = -np.sum(wt * logp, axis=-1)
            g = np.sum(wt, axis=-1, keepdims=True) * p - wt
            mag = np.abs(np.sum(wt, axis=-1, keepdims=True) * p) + np.abs(wt)
            denom = REF(rows.size)
        else:
            t = target.astype(np.int64)
            keep = t != ignore_index
            ts = np.where(keep, t, 0)
            wt = np.where(keep, w[ts] if C else 0, 0)
            onehot = np.zeros(xm.shape, REF)
            if C:
                np.put_along_axis(onehot, ts[..., None], keep[..., None].astype(REF), axis=-1)
            logp_t = np.take_along_axis(logp, ts[..., None], axis=-1)[..., 0] if C else \
                np.zeros(t.shape, REF)
            nll_rows = np.where(keep, -wt * logp_t, 0)
            if kind == "nll":
                rows = nll_rows
                g = -wt[..., None] * onehot
                mag = np.abs(g)
            else:
                smooth = np.where(keep, -np.sum(w * logp, axis=-1), 0)
                rows = (1 - eps) * nll_rows
                if eps > 0 and C:
                    rows = rows + eps / C * smooth
                # an ignored row gets no gradient, except that autograd through
                # log_softmax turns 0 into nan where the log-probabilities are nan
                g = np.where(keep[..., None],
                             (1 - eps) * wt[..., None] * (p - onehot)
                             + (eps / C if C else 0) * (W * p - w),
                             np.where(np.isnan(logp), np.nan, 0))
                mag = np.where(keep[..., None],
                               (1 - eps) * wt[..., None] * (p + onehot)
                               + (eps / C if C else 0) * (W * p + w), 0)
            denom = wt.sum()
        if reduction == "none":
            loss = rows
        elif reduction == "sum":
            loss = rows.sum()
        else:
            loss = rows.sum() / denom
            # (gradients are finite or nan, so scaling by 0 keeps exactly the nans)
            g = g * (1 / denom if denom != 0 else 0)
            mag = mag * (1 / denom if denom != 0 else 0)
    grad = np.moveaxis(g, -1, ax)
    out = np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)
    if with_terms:
        mag = np.nan_to_num(np.asarray(np.moveaxis(mag, -1, ax), dtype=np.float64),
                            nan=0.0, posinf=0.0)
        return out + (mag,)
    return out


def torch_loss(torch, kind, x, target, weight=None, ignore_index=-100, reduction="mean",
               label_smoothing=0.0, axis=None):
    """PyTorch float64 oracle: (loss, grad) as float64 NumPy arrays."""
    F = torch.nn.functional
    x = np.asarray(x)
    ax = class_axis(x.ndim, axis)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    xin = torch.movedim(xt, ax, 1) if x.ndim >= 2 else xt
    target = np.asarray(target)
    if target.dtype.kind == "f":
        tt = torch.tensor(target.astype(np.float64))
        if x.ndim >= 2:
            tt = torch.movedim(tt, ax, 1)
    else:
        tt = torch.tensor(target.astype(np.int64))
    w = None if weight is None else torch.tensor(np.asarray(weight, dtype=np.float64))
    if kind == "nll":
        loss = F.nll_loss(xin, tt, weight=w, ignore_index=ignore_index, reduction=reduction)
    else:
        loss = F.cross_entropy(xin, tt, weight=w, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    loss.sum().backward()
    grad = xt.grad
    grad = np.zeros(x.shape) if grad is None else grad.numpy()
    return loss.detach().numpy().astype(np.float64), grad


def torch_class_oracle(kind):
    """torch_loss as a function of fastnll's keyword arguments (skips without PyTorch)."""
    def oracle(input, target, reduction="mean", axis=None, weight=None, return_grad=True,
               **kw):
        return torch_loss(pytest.importorskip("torch"), kind, input, target, weight=weight,
                          reduction=reduction, axis=axis, **kw)
    return oracle


# -------------------------------------------------------------- elementwise likelihoods ----

def reduce_ref(loss, mag, reduction, divisor=None):
    """The reference reduction (math.fsum where the values are finite): (value, its
    magnitude, the gradient's scale)."""
    if reduction == "none":
        return loss, mag, 1.0
    loss = np.asarray(loss, dtype=np.float64)
    mag = np.asarray(mag, dtype=np.float64)
    total = math.fsum(loss.ravel()) if np.all(np.isfinite(loss)) else float(np.sum(loss))
    mtot = (math.fsum(mag.ravel()) if np.all(np.isfinite(mag)) else float(np.sum(mag))) + 1.0
    if reduction == "sum":
        return np.float64(total), mtot, 1.0
    div = loss.size if divisor is None else divisor
    if div == 0:
        return np.float64(np.nan), 1.0, 1.0
    return np.float64(total / div), mtot / div, 1.0 / div


def ref_bce(x, y, w=None, pw=None):
    """-w [pw y log sigmoid(x) + (1 - y) log sigmoid(-x)] as w [(1 - y) softplus(x) +
    pw y softplus(-x)] per element, and its x-derivative w [(1 - y) sigmoid(x) - pw y
    sigmoid(-x)], with magnitudes.  A term whose coefficient is 0 is absent (not 0 * inf)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.broadcast_to(np.asarray(w, np.float64), x.shape)
    pw = np.ones_like(x) if pw is None else np.broadcast_to(np.asarray(pw, np.float64), x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        pos = np.where(pw * y == 0, 0.0, pw * y * np.logaddexp(0.0, -x))
        neg = np.where(1 - y == 0, 0.0, (1 - y) * np.logaddexp(0.0, x))
        loss = w * (pos + neg)
        grad = w * ((1 - y) * sps.expit(x) - pw * y * sps.expit(-x))
    # the stable form (1-y)x + lw softplus(-x) cancels up to |x| ulps
    mag = w * (1 + pw) * (1 + np.abs(x))
    gmag = w * (1 + pw)
    return loss, mag, grad, gmag


def ref_gauss(x, y, var, eps, full):
    """0.5 (log max(var, eps) + (x - y)^2 / max(var, eps)) [+ log(2 pi) / 2]: (loss, mag,
    d/dx, its mag, d/dvar (through the clamp, as PyTorch), its mag), var broadcast to x."""
    x = np.asarray(x, dtype=np.float64)
    y = np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape)
    v = np.broadcast_to(np.asarray(var, dtype=np.float64), x.shape)
    vc = np.maximum(v, eps)
    d = x - y
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = 0.5 * (np.log(vc) + d * d / vc)
        if full:
            loss = loss + HALF_LOG_2PI
        mag = 0.5 * (np.abs(np.log(vc)) + d * d / vc) + 1.0
        gx = d / vc
        gxmag = np.abs(gx) + 1.0
        gv = 0.5 * (1 / vc - d * d / (vc * vc))
        gvmag = 0.5 * (1 / vc + d * d / (vc * vc))
    return loss, mag, gx, gxmag, gv, gvmag


def var_reduce(g, var_shape, x_shape):
    """Reduce a full-size var gradient to var's own shape (var_shape None: Python float)."""
    if var_shape is None or var_shape == ():
        return np.float64(np.sum(g))
    if var_shape == tuple(x_shape):
        return g
    if var_shape == tuple(x_shape[:-1]):
        return g.sum(axis=-1)
    axes = tuple(i for i, (a, b) in enumerate(zip(x_shape, var_shape)) if a != b)
    return g.sum(axis=axes, keepdims=True)


def gauss_var_view(var, x_shape):
    """var as PyTorch sees it, broadcast to the input's shape (one value per sample when it
    lacks the input's last axis)."""
    v = np.asarray(var, dtype=np.float64)
    if v.ndim and v.shape != tuple(x_shape) and v.shape == tuple(x_shape[:-1]):
        v = v[..., None]
    return np.broadcast_to(v, x_shape)


def ref_poisson(x, y, log_input, full, eps):
    """exp(x) - y x (log_input) or x - y log(x + eps), plus Stirling's log(y!) where y > 1
    when `full`: (loss, mag, d/dx, its mag)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if log_input:
            rate = np.exp(x)
            loss, grad = rate - y * x, rate - y
            mag, gmag = rate + np.abs(y * x) + 1, rate + np.abs(y) + 1
        else:
            lr = np.log(x + eps)
            loss, grad = x - y * lr, 1 - y / (x + eps)
            mag, gmag = np.abs(x) + np.abs(y * lr) + 1, 1 + np.abs(y / (x + eps))
        if full:
            # Stirling's log(y!) ~ y log y - y + log(2 pi y) / 2, only where y > 1
            ys = np.where(y > 1, y, 2.0)
            stirling = np.where(y > 1, sps.xlogy(ys, ys) - ys + 0.5 * np.log(2 * np.pi * ys),
                                0.0)
            loss = loss + stirling
            mag = mag + np.where(y > 1, np.abs(sps.xlogy(ys, ys)) + ys + 1, 0.0)
    return loss, mag, grad, gmag


def ref_kl(x, y, log_target):
    """PyTorch's kl_div terms, products taken literally (0 * inf = nan where x = -inf):
    (loss, mag, d/dx, its mag)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        if log_target:
            e = np.exp(y)
            loss = e * (y - x)
            grad = -e
            mag = e * (np.abs(y) + np.abs(x)) + 1
            gmag = e + 1
        else:
            xl = sps.xlogy(y, y)
            loss = xl - y * x
            grad = -y
            mag = np.abs(xl) + np.abs(y * x) + 1
            gmag = np.abs(y) + 1
    return loss, mag, grad, gmag


def torch_elementwise_oracle(name):
    """(loss, grad) of torch.nn.functional.<name> with autograd (gaussian: (gx, gvar)), as a
    function of fastnll's keyword arguments (skips without PyTorch)."""
    def oracle(input, target, reduction="mean", return_grad=True, var=None, **kw):
        torch = pytest.importorskip("torch")

        def tt(a):
            return torch.tensor(np.asarray(a, dtype=np.float64))
        fn = getattr(torch.nn.functional, name)
        x = tt(input).requires_grad_(True)
        args = [x, tt(target)]
        v = None
        if var is not None:
            v = tt(var).requires_grad_(True)
            if np.ndim(var) == 0:                     # PyTorch wants a tensor of a fitting shape
                args.append(v.expand(x.shape))
            elif np.shape(var) == np.shape(input)[:-1]:
                args.append(v.unsqueeze(-1))
            else:
                args.append(v)
        kw = {k: (tt(a) if isinstance(a, np.ndarray) else a) for k, a in kw.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")           # kl_div's note about "mean"
            loss = fn(*args, reduction=reduction, **kw)
        loss.sum().backward()
        gx = x.grad.numpy() if x.grad is not None else np.zeros(np.shape(input))
        if v is None:
            return loss.detach().numpy(), gx
        gv = v.grad.numpy() if v.grad is not None else np.zeros(np.shape(var))
        return loss.detach().numpy(), (gx, gv)
    return oracle


# ---------------------------------------------------------------------------- entropy ----

def ref_entropy(pk, qk=None, base=None, axis=0):
    """scipy.stats.entropy on float64 copies (warnings silenced)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        pk = np.asarray(pk, dtype=np.float64)
        if qk is not None:
            qk = np.asarray(qk, dtype=np.float64)
            # SciPy 1.17 (and fastnll) broadcasts pk with qk before normalising; with
            # axis=None it ravels each first (so different shapes fail there, in fastnll as
            # in scipy).  SciPy 1.13 normalised first: broadcast here.
            if axis is None:
                pk, qk = pk.ravel(), qk.ravel()
            pk, qk = np.broadcast_arrays(pk, qk)
        return scipy.stats.entropy(pk, qk, base=base, axis=axis)
