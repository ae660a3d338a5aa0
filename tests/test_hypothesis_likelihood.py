"""Randomised differential tests of the elementwise likelihoods and entropy (and of every other
function on inputs with size-0 dimensions): fastnll against float64 NumPy / SciPy references,
over shapes (0-d, size-0 and size-1 dimensions, one long axis), dtypes, memory layouts
(transposed, stepped, reversed, read-only), broadcast operands and every option, drawn by
hypothesis.

The references are written here in float64 from the documented formulas (in forms other than
the kernels' where there is a choice, e.g. binary cross-entropy through log-sigmoids), or are
SciPy itself (entropy).  test_hypothesis.py covers the softmax family and the class-axis losses
on non-empty inputs; test_likelihood.py has fixed-grid and PyTorch checks.
"""
import math
import os
import warnings

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastnll  # noqa: E402
from helpers import axes_for, strided_layout  # noqa: E402
from reference import class_axis, ref_loss  # noqa: E402

# FASTNLL_HYPOTHESIS_EXAMPLES=2000 for a longer hunt; the default keeps the suite fast
SETTINGS = settings(max_examples=int(os.environ.get("FASTNLL_HYPOTHESIS_EXAMPLES", "60")),
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

FLOATS = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]


# ---------------------------------------------------------------------- comparison ----

def _tols(dtype):
    """(relative tolerance, absolute tolerance per unit of magnitude)."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)


def check(got, want, dtype, mag=1.0, what="", check_dtype=True):
    """|got - want| <= rtol |want| + atol * mag elementwise, where mag bounds the size of the
    terms that make up `want` (cancellation); nan and +-inf must match exactly."""
    dtype = np.dtype(dtype)
    g = np.asarray(got)
    if check_dtype:
        assert g.dtype == dtype, f"{what}: dtype {g.dtype}, expected {dtype}"
    g = g.astype(np.float64)
    w = np.asarray(want, dtype=np.float64)
    assert g.shape == w.shape, f"{what}: shape {g.shape}, expected {w.shape}"
    rtol, atol = _tols(dtype)
    m = np.broadcast_to(np.asarray(mag, dtype=np.float64), w.shape)
    with np.errstate(invalid="ignore"):
        bound = rtol * np.abs(w) + atol * np.where(np.isfinite(m), m, 0.0)
        ok = (g == w) | (np.isnan(g) & np.isnan(w)) | (np.abs(g - w) <= bound)
    if not np.all(ok):
        bad = np.argwhere(~ok)[:6] if w.ndim else [()]
        lines = [f"{what}: {int(np.sum(~ok))} of {w.size} entries differ"]
        for idx in bad:
            idx = tuple(int(i) for i in idx)
            lines.append(f"  at {idx}: got {g[idx]!r}, expected {w[idx]!r}, "
                         f"bound {bound[idx]!r}")
        raise AssertionError("\n".join(lines))


def reduce(rows, mag, reduction, divisor=None):
    """The reference reduction: (value, its magnitude, the gradient's scale)."""
    if reduction == "none":
        return rows, mag, 1.0
    total = math.fsum(rows.ravel()) if np.all(np.isfinite(rows)) else float(np.sum(rows))
    tmag = float(np.sum(mag)) + 1.0
    if reduction == "sum":
        return np.float64(total), tmag, 1.0
    div = rows.size if divisor is None else divisor
    if div == 0:
        return np.float64(np.nan), 1.0, 1.0
    return np.float64(total / div), tmag / div, 1.0 / div


def scalar_type_ok(loss, dtype, reduction):
    if reduction != "none":
        assert type(loss) is np.dtype(dtype).type, f"{type(loss)} is not {np.dtype(dtype)}"


# ---------------------------------------------------------------------- strategies ----

@st.composite
def shapes(draw, min_dims=0, max_dims=4, long_axis=True):
    """Shapes with 0-d, size-0 and size-1 dimensions, and sometimes one long axis (the
    kernels' chunked and multi-threaded paths)."""
    shape = list(draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0,
                                       max_side=5)))
    if long_axis and shape and draw(st.integers(0, 4)) == 0:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(30, 3000))
    return tuple(shape)


@st.composite
def broadcast_into(draw, shape):
    """A shape that broadcasts to `shape` without changing it: a trailing part of it with
    some sides replaced by 1."""
    k = draw(st.integers(0, len(shape)))
    return tuple(n if draw(st.booleans()) else 1 for n in shape[k:])


@st.composite
def layouts(draw, a):
    """The same values in a drawn memory layout: axis order, steps, reversals, read-only."""
    a = np.asarray(a)
    if a.ndim == 0 or not draw(st.booleans()):
        return a
    perm = draw(st.permutations(range(a.ndim)))
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in range(a.ndim)]
    out = strided_layout(a, perm, steps)
    if draw(st.booleans()):
        out.setflags(write=False)
    return out


def rng_for(data, label):
    return np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label=label))


def sprinkle(data, rng, a, values, label):
    """Put a few of `values` at random places of a."""
    if a.size and values:
        for _ in range(data.draw(st.integers(0, 3), label=label)):
            a.flat[rng.integers(a.size)] = data.draw(st.sampled_from(values), label=label)
    return a


def unchanged(arrays, before):
    for a, b in zip(arrays, before):
        if isinstance(a, np.ndarray):
            assert a.tobytes() == b.tobytes(), "an input array was written"


def _copies(arrays):
    return [a.copy() if isinstance(a, np.ndarray) else None for a in arrays]


def as_used(a, dtype):
    """The values the kernels see: an operand cast to the input's dtype, in float64."""
    return np.asarray(a).astype(dtype).astype(np.float64)


# ------------------------------------------------------------- binary cross-entropy ----

def ref_bce(x, y, w, pw):
    """-w [pw y log sigmoid(x) + (1 - y) log sigmoid(-x)] and its x-derivative
    w [(1 - y) sigmoid(x) - pw y sigmoid(-x)], with magnitudes."""
    with np.errstate(invalid="ignore", over="ignore"):
        ls_pos, ls_neg = sp.log_expit(x), sp.log_expit(-x)
        # 0 * log sigmoid(...) where a coefficient is 0: the term is absent, not 0 * inf
        pos = np.where(pw * y == 0, 0.0, pw * y * ls_pos)
        neg = np.where(1 - y == 0, 0.0, (1 - y) * ls_neg)
        loss = -w * (pos + neg)
        grad = w * ((1 - y) * sp.expit(x) - pw * y * sp.expit(-x))
    mag = w * (1 + pw) * (1 + np.abs(x))       # the stable form cancels up to |x| ulps
    gmag = w * (1 + pw)
    return loss, mag, grad, gmag


@SETTINGS
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS))
def test_binary_cross_entropy_with_logits(data, reduction):
    shape = data.draw(shapes(), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    scale = data.draw(st.sampled_from([0.5, 4.0, 40.0]), label="scale")
    x = sprinkle(data, rng, scale * rng.standard_normal(shape), [1e30, -1e30, 700.0, -700.0],
                 "x_special").astype(dtype)
    y = rng.uniform(0.0, 1.0, shape)
    y[rng.random(shape) < 0.3] = 0.0
    y[rng.random(shape) < 0.3] = 1.0
    y = y.astype(data.draw(st.sampled_from(FLOATS), label="y_dtype"))
    w = pw = None
    if data.draw(st.booleans(), label="weighted"):
        w = rng.uniform(0.0, 3.0, data.draw(broadcast_into(shape), label="w_shape"))
        w = w.astype(data.draw(st.sampled_from(FLOATS), label="w_dtype"))
    if data.draw(st.booleans(), label="pos_weighted"):
        pw = rng.uniform(0.0, 5.0, data.draw(broadcast_into(shape), label="pw_shape"))
        pw = pw.astype(dtype)
    args = [data.draw(layouts(a), label="layout") if a is not None else None
            for a in (x, y, w, pw)]
    before = _copies(args)

    loss, grad = fastnll.binary_cross_entropy_with_logits(
        args[0], args[1], weight=args[2], pos_weight=args[3], reduction=reduction,
        return_grad=True)
    plain = fastnll.binary_cross_entropy_with_logits(
        args[0], args[1], weight=args[2], pos_weight=args[3], reduction=reduction)

    x64, y64 = x.astype(np.float64), as_used(y, dtype)
    w64 = np.broadcast_to(1.0 if w is None else as_used(w, dtype), shape)
    pw64 = np.broadcast_to(1.0 if pw is None else as_used(pw, dtype), shape)
    rl, rm, rg, rgm = ref_bce(x64, y64, w64, pw64)
    want, wmag, gs = reduce(rl, rm, reduction)
    scalar_type_ok(loss, dtype, reduction)
    check(loss, want, dtype, wmag, "loss")
    check(plain, want, dtype, wmag, "loss without return_grad")
    check(grad, rg * gs, dtype, rgm * gs, "grad")
    unchanged(args, before)


# --------------------------------------------------------------------- Gaussian NLL ----

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def var_shape_for(kind, shape, i):
    return {"full": shape, "nolast": shape[:-1], "scalar": (),
            "one1": shape[:i] + (1,) + shape[i + 1:]}[kind]


@SETTINGS
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS), full=st.booleans())
def test_gaussian_nll_loss(data, reduction, full):
    shape = data.draw(shapes(), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    x = (rng.standard_normal(shape) * data.draw(st.sampled_from([0.1, 3.0, 100.0]))).astype(dtype)
    y = rng.standard_normal(data.draw(broadcast_into(shape), label="y_shape")) * 3
    y = y.astype(data.draw(st.sampled_from(FLOATS + [np.int64]), label="y_dtype"))
    kinds = ["full", "scalar", "float"] + (["nolast", "one1"] if shape else [])
    vkind = data.draw(st.sampled_from(kinds), label="var_kind")
    eps = data.draw(st.sampled_from([1e-6, 1e-3, 0.5]), label="eps")
    if vkind == "float":
        var = data.draw(st.floats(0.0, 10.0), label="var")
    else:
        i = data.draw(st.integers(0, max(len(shape) - 1, 0)), label="var_axis")
        var = rng.uniform(0.05, 3.0, var_shape_for(vkind, shape, i))
        var = sprinkle(data, rng, var, [0.0, 1e-9, eps], "var_small")
        var = var.astype(data.draw(st.sampled_from(FLOATS), label="var_dtype"))
        var = data.draw(layouts(var), label="var_layout")
    xl = data.draw(layouts(x), label="x_layout")
    yl = data.draw(layouts(y), label="y_layout")
    before = _copies([xl, yl, var])

    loss, (gx, gv) = fastnll.gaussian_nll_loss(xl, yl, var, full=full, eps=eps,
                                               reduction=reduction, return_grad=True)
    plain = fastnll.gaussian_nll_loss(xl, yl, var, full=full, eps=eps, reduction=reduction)

    # var as PyTorch reads it: one value per sample when it lacks the input's last axis
    v = as_used(var, dtype)
    if vkind == "nolast":
        v = v[..., None]
    v = np.broadcast_to(v, shape)
    vc = np.maximum(v, eps)
    d = x.astype(np.float64) - np.broadcast_to(as_used(y, dtype), shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        rl = 0.5 * np.log(vc) + 0.5 * (d / vc) * d + (HALF_LOG_2PI if full else 0.0)
        rm = 0.5 * (np.abs(np.log(vc)) + d * d / vc) + 1.0
        rgx = d / vc
        rgv = 0.5 / vc - 0.5 * (d / vc) ** 2     # through the clamp, as PyTorch
        rgvm = 0.5 / vc + 0.5 * (d / vc) ** 2
    want, wmag, gs = reduce(rl, rm, reduction)
    scalar_type_ok(loss, dtype, reduction)
    check(loss, want, dtype, wmag, "loss")
    check(plain, want, dtype, wmag, "loss without return_grad")
    check(gx, rgx * gs, dtype, (np.abs(rgx) + 1) * gs, "grad_input")
    # grad_var has var's own shape: the per-element gradient summed over broadcast axes
    vshape = np.shape(var)
    if vkind in ("float", "scalar"):
        gv_want, gv_mag = np.sum(rgv * gs), np.sum(rgvm * gs)
    elif vkind == "nolast":
        gv_want, gv_mag = np.sum(rgv * gs, axis=-1), np.sum(rgvm * gs, axis=-1)
    else:
        axes = tuple(j for j, (a, b) in enumerate(zip(shape, vshape)) if a != b)
        gv_want = np.sum(rgv * gs, axis=axes, keepdims=True)
        gv_mag = np.sum(rgvm * gs, axis=axes, keepdims=True)
    assert np.shape(gv) == vshape
    check(gv, gv_want, dtype, gv_mag + 1.0, "grad_var")
    unchanged([xl, yl, var], before)


# ---------------------------------------------------------------------- Poisson NLL ----

def ref_poisson(x, y, log_input, full, eps):
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
            stirling = np.where(y > 1, sp.xlogy(ys, ys) - ys + 0.5 * np.log(2 * np.pi * ys),
                                0.0)
            loss = loss + stirling
            mag = mag + np.where(y > 1, np.abs(sp.xlogy(ys, ys)) + ys + 1, 0.0)
    return loss, mag, grad, gmag


@SETTINGS
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS), log_input=st.booleans(),
       full=st.booleans())
def test_poisson_nll_loss(data, reduction, log_input, full):
    shape = data.draw(shapes(), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    if log_input:
        x = rng.normal(0.0, data.draw(st.sampled_from([0.5, 3.0, 10.0])), shape)
    else:
        x = rng.uniform(0.0, 20.0, shape)
        x[rng.random(shape) < 0.2] = 0.0
    x = x.astype(dtype)
    y = rng.poisson(data.draw(st.sampled_from([0.5, 3.0, 50.0])),
                    data.draw(broadcast_into(shape), label="y_shape")).astype(np.float64)
    if y.size and data.draw(st.booleans(), label="fractional_y"):
        y.flat[::3] += 0.5
    y = y.astype(data.draw(st.sampled_from(FLOATS + [np.int64]), label="y_dtype"))
    eps = data.draw(st.sampled_from([1e-8, 1e-3, 0.5]), label="eps")
    xl = data.draw(layouts(x), label="x_layout")
    yl = data.draw(layouts(y), label="y_layout")
    before = _copies([xl, yl])

    loss, grad = fastnll.poisson_nll_loss(xl, yl, log_input=log_input, full=full, eps=eps,
                                          reduction=reduction, return_grad=True)
    plain = fastnll.poisson_nll_loss(xl, yl, log_input=log_input, full=full, eps=eps,
                                     reduction=reduction)

    y64 = np.broadcast_to(as_used(y, dtype), shape)
    rl, rm, rg, rgm = ref_poisson(x.astype(np.float64), y64, log_input, full, eps)
    want, wmag, gs = reduce(rl, rm, reduction)
    scalar_type_ok(loss, dtype, reduction)
    check(loss, want, dtype, wmag, "loss")
    check(plain, want, dtype, wmag, "loss without return_grad")
    check(grad, rg * gs, dtype, rgm * gs, "grad")
    unchanged([xl, yl], before)


# ----------------------------------------------------------------------------- KL ----

KL_REDUCTIONS = ["none", "mean", "sum", "batchmean"]


@SETTINGS
@given(data=st.data(), reduction=st.sampled_from(KL_REDUCTIONS), log_target=st.booleans())
def test_kl_div(data, reduction, log_target):
    shape = data.draw(shapes(), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    x = np.log(rng.dirichlet(np.ones(5), size=shape)[..., 0] + 1e-12)   # log-probabilities
    x = sprinkle(data, rng, x, [-np.inf, -1e30, 0.0], "x_special").astype(dtype)
    yshape = data.draw(broadcast_into(shape), label="y_shape")
    p = rng.uniform(0.0, 1.0, yshape)
    p[rng.random(yshape) < 0.3] = 0.0
    with np.errstate(divide="ignore"):
        y = np.log(p) if log_target else p
    y = y.astype(data.draw(st.sampled_from(FLOATS), label="y_dtype"))
    xl = data.draw(layouts(x), label="x_layout")
    yl = data.draw(layouts(y), label="y_layout")
    before = _copies([xl, yl])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = fastnll.kl_div(xl, yl, reduction=reduction, log_target=log_target,
                                    return_grad=True)
        plain = fastnll.kl_div(xl, yl, reduction=reduction, log_target=log_target)

    x64 = x.astype(np.float64)
    y64 = np.broadcast_to(as_used(y, dtype), shape)
    # PyTorch's formulas, products taken literally (0 * inf = nan where x = -inf)
    with np.errstate(invalid="ignore", over="ignore"):
        if log_target:
            q = np.exp(y64)
            rl, rg = q * (y64 - x64), -q
            rm = q * (np.abs(y64) + np.abs(x64)) + 1
        else:
            rl, rg = sp.xlogy(y64, y64) - y64 * x64, -y64
            rm = np.abs(sp.xlogy(y64, y64)) + np.abs(y64 * x64) + 1
    divisor = (shape[0] if shape else 1) if reduction == "batchmean" else None
    want, wmag, gs = reduce(rl, rm, "mean" if reduction == "batchmean" else reduction,
                            divisor)
    scalar_type_ok(loss, dtype, reduction)
    check(loss, want, dtype, wmag, "loss")
    check(plain, want, dtype, wmag, "loss without return_grad")
    check(grad, rg * gs, dtype, (np.abs(rg) + 1) * gs, "grad")
    unchanged([xl, yl], before)


# ------------------------------------------------------------------------- entropy ----

def scipy_entropy(pk, qk, base, axis):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return scipy.stats.entropy(pk, qk, base=base, axis=axis)


@SETTINGS
@given(data=st.data(), base=st.sampled_from([None, 2.0, 10.0, 0.5, math.e]))
def test_entropy(data, base):
    shape = data.draw(shapes(min_dims=1), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    pk = rng.uniform(0.0, data.draw(st.sampled_from([1.0, 1e3])), shape)
    pk[rng.random(shape) < 0.3] = 0.0
    pk = pk.astype(dtype)
    qk = None
    if data.draw(st.booleans(), label="relative"):
        qshape = data.draw(broadcast_into(shape), label="q_shape")
        qk = rng.uniform(0.0, 5.0, qshape)
        qk[rng.random(qshape) < 0.1] = 0.0          # inf where pk > 0
        qk = qk.astype(data.draw(st.sampled_from([dtype, np.float64]), label="q_dtype"))
        if data.draw(st.booleans(), label="swap"):  # pk the operand that broadcasts
            pk, qk = qk.astype(dtype), pk
            if pk.ndim == 0:
                pk = pk.reshape(1)
    nd = max(pk.ndim, 0 if qk is None else qk.ndim)
    axis = data.draw(st.one_of(st.none(), st.integers(-nd, nd - 1)), label="axis")
    if axis is None and qk is not None:   # axis=None ravels each operand first: same shapes
        pk, qk = (np.array(a) for a in np.broadcast_arrays(pk, qk))
    pl = data.draw(layouts(pk), label="p_layout")
    ql = None if qk is None else data.draw(layouts(qk), label="q_layout")
    before = _copies([pl, ql])

    got = fastnll.entropy(pl, ql, base=base, axis=axis)

    out_dtype = dtype if qk is None or qk.dtype == dtype else np.dtype(np.float64)
    p64 = pk.astype(np.float64)
    q64 = None if qk is None else qk.astype(np.float64)
    if q64 is not None and axis is not None:
        p64, q64 = np.broadcast_arrays(p64, q64)     # SciPy broadcasts before normalising
    want = scipy_entropy(p64, q64, base, axis)
    assert np.shape(got) == np.shape(want)
    if np.ndim(want) == 0:
        assert type(got) is out_dtype.type
    # relative to the size of the terms: sum p log p over a slice (|log p| up to ~log n)
    mag = 10.0 * (1.0 + np.abs(np.where(np.isfinite(want), want, 0.0)))
    check(got, want, out_dtype, mag, "entropy")
    unchanged([pl, ql], before)


# ------------------------------------------- every other function on size-0 dimensions ----

@st.composite
def empty_shapes(draw):
    """Shapes with at least one side 0 (test_hypothesis.py draws only non-empty ones)."""
    shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4)))
    shape[draw(st.integers(0, len(shape) - 1))] = 0
    return tuple(shape)


def ref_lse(x, axes, keepdims=False):
    """SciPy's log-sum-exp, written out: stable for big values, -inf for an empty sum."""
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)




@SETTINGS
@given(data=st.data(), name=st.sampled_from(["logsumexp", "softmax", "log_softmax"]))
def test_softmax_family_size0(data, name):
    shape = data.draw(empty_shapes(), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    x = np.zeros(shape, dtype)
    axis = data.draw(axes_for(len(shape)), label="axis")
    axes = tuple(range(len(shape))) if axis is None else \
        tuple(sorted(a % len(shape) for a in np.atleast_1d(axis)))
    xl = data.draw(layouts(x), label="layout")
    if name == "logsumexp":
        keepdims = data.draw(st.booleans(), label="keepdims")
        with_b = data.draw(st.booleans(), label="with_b")
        if with_b:
            got, sgn = fastnll.logsumexp(xl, axis=axis, b=np.ones(shape[1:], dtype),
                                         keepdims=keepdims, return_sign=True)
        else:
            got = fastnll.logsumexp(xl, axis=axis, keepdims=keepdims)
        want = ref_lse(x.astype(np.float64), axes, keepdims)
        check(got, want, dtype, 1.0, "logsumexp")
        if with_b:   # the sign of an empty sum is 0
            check(sgn, np.where(np.isneginf(want), 0.0, 1.0), dtype, 1.0, "sign")
    else:
        got = getattr(fastnll, name)(xl, axis=axis)
        assert got.shape == shape and got.dtype == dtype    # an empty array, as x


@pytest.mark.parametrize("kind", ["nll", "ce", "prob"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 4))
@given(data=st.data())
def test_class_losses_size0(data, kind, reduction):
    shape = list(data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4),
                           label="shape"))
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)),
                     label="axis")
    ax = class_axis(len(shape), axis)
    # no classes, no samples, or both
    where = data.draw(st.sampled_from(["classes", "samples", "both"]), label="empty")
    if where != "samples" or len(shape) == 1:
        shape[ax] = 0
    if where != "classes" and len(shape) > 1:
        shape[data.draw(st.sampled_from([i for i in range(len(shape)) if i != ax]))] = 0
    shape = tuple(shape)
    C = shape[ax]
    rng = rng_for(data, "seed")
    x = rng.standard_normal(shape).astype(dtype)
    tshape = shape[:ax] + shape[ax + 1:]
    if kind == "prob":
        t = rng.uniform(0.0, 1.0, shape).astype(dtype)
    else:     # with no class, only ignored targets are valid
        t = rng.integers(0, C, tshape) if C else np.full(tshape, -100)
    weight = rng.uniform(0.1, 2.0, C).astype(dtype) if data.draw(st.booleans()) else None
    kw = dict(weight=weight, reduction=reduction, axis=axis)
    if kind != "nll":
        kw["label_smoothing"] = data.draw(st.sampled_from([0.0, 0.3]), label="eps")
    f = fastnll.nll_loss if kind == "nll" else fastnll.cross_entropy
    xl = data.draw(layouts(x), label="x_layout")
    tl = data.draw(layouts(t), label="t_layout")
    loss, grad = f(xl, tl, return_grad=True, **kw)
    want, want_grad = ref_loss("nll" if kind == "nll" else "ce", x, t, **kw)
    if kind == "prob" and reduction == "mean" and x.size == 0:
        want = np.float64(np.nan)     # PyTorch: the mean of no elements, also when C = 0
    scalar_type_ok(loss, dtype, reduction)
    check(loss, want, dtype, 1.0, "loss")
    check(grad, want_grad, dtype, 1.0, "grad")


# ------------------------------------------------------------------- thread counts ----

@settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 4))
@given(data=st.data(), name=st.sampled_from(["bce", "gaussian", "poisson", "kl", "entropy"]),
       reduction=st.sampled_from(REDUCTIONS))
def test_thread_count_does_not_change_results(data, name, reduction):
    """get_num_threads / threads(n): an input large enough for the kernels' threads gives the
    same bits with 1, 2 and 3 threads (fixed-order float64 reductions)."""
    n = data.draw(st.integers((1 << 15) + 64, 1 << 16), label="size")
    cols = data.draw(st.sampled_from([1, 7, 64]), label="cols")
    shape = (n // cols, cols)
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    x = data.draw(layouts(rng.standard_normal(shape).astype(dtype)), label="layout")
    y = rng.uniform(0.0, 1.0, shape).astype(dtype)
    calls = {
        "bce": lambda: fastnll.binary_cross_entropy_with_logits(
            x, y, pos_weight=np.full(cols, 2.0, dtype), reduction=reduction, return_grad=True),
        "gaussian": lambda: fastnll.gaussian_nll_loss(x, y, y[:, :1], reduction=reduction,
                                                      return_grad=True),
        "poisson": lambda: fastnll.poisson_nll_loss(x, y * 5, reduction=reduction,
                                                    return_grad=True),
        "kl": lambda: fastnll.kl_div(x, y, reduction=reduction, return_grad=True),
        "entropy": lambda: fastnll.entropy(y, x * x, axis=-1),
    }

    def flat(r):
        return [np.asarray(a) for a in (r if isinstance(r, tuple) else (r,))
                for a in (a if isinstance(a, tuple) else (a,))]

    results = []
    for k in (1, 2, 3):
        with fastnll.threads(k):
            assert fastnll.get_num_threads() == k
            results.append(flat(calls[name]()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), "results depend on the number of threads"
