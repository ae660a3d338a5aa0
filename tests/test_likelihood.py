"""Tests of fastnll's elementwise likelihoods (binary_cross_entropy_with_logits,
gaussian_nll_loss, poisson_nll_loss, kl_div) and of entropy.

Self-contained: the float64 references below are written with NumPy/SciPy in this file (they
use independent formulas where possible, e.g. BCE as w[(1-y) softplus(x) + pw y softplus(-x)]),
scipy.stats.entropy is the reference for entropy, and PyTorch (float64, autograd) is an
optional oracle: every test that needs it skips cleanly without it.
"""
import math
import warnings

import numpy as np
import pytest
import scipy.special as sps
import scipy.stats

import fastnll

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
KL_REDUCTIONS = ["none", "mean", "sum", "batchmean"]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- helpers ----

def tols(dtype):
    """(rtol, atol per unit of magnitude) for a result of `dtype`."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-12)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def assert_close(got, want, dtype, mag=1.0, what=""):
    """|got - want| <= rtol |want| + atol * mag elementwise (mag: the magnitude of the terms
    that make up `want`, to allow for cancellation); nan/inf must match exactly."""
    rtol, atol = tols(dtype)
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    with np.errstate(invalid="ignore"):
        err = np.abs(g - w)
        bound = rtol * np.abs(w) + atol * np.asarray(mag, dtype=np.float64)
        ok = (g == w) | (np.isnan(g) & np.isnan(w)) | (err <= bound)
    if not np.all(ok):
        idx = np.argwhere(~np.asarray(ok))[:5] if g.ndim else "scalar"
        raise AssertionError(
            f"{what}: mismatch at {idx}; got {g[~ok][:5] if g.ndim else g}, "
            f"want {w[~ok][:5] if w.ndim else w}, max err {np.nanmax(np.where(ok, 0, err))}"
        )


def assert_bitwise(a, b, what=""):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: results differ bit-wise"


def check_loss_type(loss, dtype, reduction, shape):
    dtype = np.dtype(dtype)
    if reduction == "none":
        arr = np.asarray(loss)
        assert arr.dtype == dtype, f"'none' result dtype {arr.dtype} != {dtype}"
        assert arr.shape == tuple(shape)
        if shape != ():
            assert isinstance(loss, np.ndarray)
    else:
        assert type(loss) is dtype.type, f"scalar loss type {type(loss)} != {dtype.type}"


def reduce_ref(loss, mag, reduction, divisor=None):
    """Reference reduction with math.fsum; returns (value, magnitude, grad scale)."""
    if reduction == "none":
        return loss, mag, 1.0
    total = math.fsum(loss.ravel())
    mtot = math.fsum(np.asarray(mag, dtype=np.float64).ravel()) + 1.0
    if reduction == "sum":
        return np.float64(total), mtot, 1.0
    div = loss.size if divisor is None else divisor
    if div == 0:
        return np.float64(np.nan), 1.0, 1.0
    return np.float64(total / div), mtot / div, 1.0 / div


# ----------------------------------------------------------------------- references ----

def ref_bce(x, y, w=None, pw=None):
    """Per-element loss, magnitude, d/dx and its magnitude (float64)."""
    x, y = f64(x), f64(y)
    w = np.ones_like(x) if w is None else np.broadcast_to(f64(w), x.shape)
    pw = np.ones_like(x) if pw is None else np.broadcast_to(f64(pw), x.shape)
    # -w [pw y log sigmoid(x) + (1-y) log(1 - sigmoid(x))]
    loss = w * ((1 - y) * np.logaddexp(0.0, x) + pw * y * np.logaddexp(0.0, -x))
    grad = w * ((1 - y) * sps.expit(x) - pw * y * sps.expit(-x))
    # the stable form (1-y)x + lw softplus(-x) cancels up to |x| ulps
    mag = w * (1 + pw) * (1 + np.abs(x))
    gmag = w * (1 + pw)
    return loss, mag, grad, gmag


def ref_gauss(x, y, var, eps, full):
    x = f64(x)
    y = np.broadcast_to(f64(y), x.shape)
    v = np.broadcast_to(f64(var), x.shape)
    vc = np.maximum(v, eps)
    d = x - y
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
    """var as PyTorch sees it, broadcast to the input's shape."""
    v = f64(var)
    if v.ndim and v.shape != tuple(x_shape) and v.shape == tuple(x_shape[:-1]):
        v = v[..., None]
    return np.broadcast_to(v, x_shape)


def ref_poisson(x, y, log_input, full, eps):
    x = f64(x)
    y = np.broadcast_to(f64(y), x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_input:
            e = np.exp(x)
            loss = e - y * x
            grad = e - y
            mag = e + np.abs(y * x) + 1
            gmag = e + np.abs(y) + 1
        else:
            lx = np.log(x + eps)
            loss = x - y * lx
            grad = 1 - y / (x + eps)
            mag = np.abs(x) + np.abs(y * lx) + 1
            gmag = 1 + np.abs(y / (x + eps))
        if full:
            big = y > 1
            ys = np.where(big, y, 2.0)
            stir = ys * np.log(ys) - ys + 0.5 * np.log(2 * math.pi * ys)
            loss = loss + np.where(big, stir, 0.0)
            mag = mag + np.where(big, np.abs(ys * np.log(ys)) + ys + 1, 0.0)
    return loss, mag, grad, gmag


def ref_kl(x, y, log_target):
    x = f64(x)
    y = np.broadcast_to(f64(y), x.shape)
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


def ref_entropy(pk, qk=None, base=None, axis=0):
    """scipy.stats.entropy on float64 copies (warnings silenced)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        pk = f64(pk)
        if qk is not None:
            qk = f64(qk)
            # SciPy 1.17 (and fastnll) broadcasts pk with qk before
            # normalising; with axis=None it ravels each first (so different shapes fail
            # there, in fastnll as in scipy).  SciPy 1.13 normalised first: broadcast here.
            if axis is None:
                pk, qk = pk.ravel(), qk.ravel()
            pk, qk = np.broadcast_arrays(pk, qk)
        return scipy.stats.entropy(pk, qk, base=base, axis=axis)


# ---------------------------------------------------------------------- data makers ----

def bce_data(rng, shape, dtype):
    x = rng.normal(0, 3, shape)
    y = rng.uniform(0, 1, shape)
    flat = y.reshape(-1)
    flat[::5] = 0.0
    flat[1::7] = 1.0
    return x.astype(dtype), y.astype(dtype)


def gauss_data(rng, shape, dtype):
    x = rng.normal(0, 2, shape)
    y = rng.normal(0, 2, shape)
    return x.astype(dtype), y.astype(dtype)


def poisson_data(rng, shape, dtype, log_input):
    x = rng.normal(0, 1, shape) if log_input else rng.uniform(0, 4, shape)
    if not log_input:
        x.reshape(-1)[::6] = 0.0
    y = rng.poisson(2.0, shape).astype(np.float64)
    y.reshape(-1)[::9] = 1.5
    return x.astype(dtype), y.astype(dtype)


def kl_data(rng, shape, dtype, log_target):
    x = sps.log_softmax(rng.normal(0, 1, shape), axis=-1)
    p = sps.softmax(rng.normal(0, 1, shape), axis=-1)
    p.reshape(-1)[::4] = 0.0
    y = np.log(np.maximum(p, 1e-3)) if log_target else p
    return x.astype(dtype), y.astype(dtype)


def var_for(kind, rng, shape, dtype):
    """var of one of the accepted shapes, values in (0.05, 2) and a few below eps."""
    if kind == "float":
        return 0.7
    if kind == "0d":
        return np.asarray(0.7, dtype=dtype)
    vshape = {
        "full": shape,
        "nolast": shape[:-1],
        "last1": shape[:-1] + (1,),
        "mid1": shape[:1] + (1,) + shape[2:],
        "first1": (1,) + shape[1:],
    }[kind]
    v = rng.uniform(0.05, 2, vshape)
    v.reshape(-1)[::5] = 1e-9        # clamped to eps
    v.reshape(-1)[1::11] = 0.0       # zero is allowed, clamped too
    return v.astype(dtype)


VAR_KINDS = ["full", "nolast", "last1", "mid1", "first1", "float", "0d"]


# =============================================================================== BCE ====

def weight_for(kind, rng, shape, dtype, low=0.0, high=2.0):
    if kind is None:
        return None
    wshape = {"full": shape, "class": shape[-1:], "column": shape[:-1] + (1,), "scalar": ()}[kind]
    return rng.uniform(low, high, wshape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("wkind", [None, "full", "class", "column", "scalar"])
@pytest.mark.parametrize("pwkind", [None, "class", "full"])
def test_bce_matches_reference(dtype, reduction, wkind, pwkind):
    rng = np.random.default_rng(1)
    shape = (6, 5)
    x, y = bce_data(rng, shape, dtype)
    w = weight_for(wkind, rng, shape, dtype)
    pw = weight_for(pwkind, rng, shape, dtype, 0.0, 4.0)
    loss = fastnll.binary_cross_entropy_with_logits(x, y, weight=w, reduction=reduction,
                                                    pos_weight=pw)
    check_loss_type(loss, dtype, reduction, shape)
    rl, rm, rg, rgm = ref_bce(x, y, w, pw)
    want, wmag, gscale = reduce_ref(rl, rm, reduction)
    assert_close(loss, want, dtype, wmag, "loss")

    loss2, grad = fastnll.binary_cross_entropy_with_logits(
        x, y, weight=w, reduction=reduction, pos_weight=pw, return_grad=True)
    assert_bitwise(loss2, loss, "loss with return_grad")
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    assert_close(grad, rg * gscale, dtype, rgm * gscale, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("wkind,pwkind", [(None, None), ("full", "class"), ("column", "full"),
                                          ("scalar", None), (None, "class")])
def test_bce_matches_torch(dtype, reduction, wkind, pwkind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    shape = (7, 4)
    x, y = bce_data(rng, shape, dtype)
    w = weight_for(wkind, rng, shape, dtype)
    pw = weight_for(pwkind, rng, shape, dtype, 0.0, 4.0)
    xt = torch.tensor(f64(x), requires_grad=True)
    out = F.binary_cross_entropy_with_logits(
        xt, torch.tensor(f64(y)), weight=None if w is None else torch.tensor(f64(w)),
        reduction=reduction, pos_weight=None if pw is None else torch.tensor(f64(pw)))
    (out.sum() if reduction == "none" else out).backward()
    loss, grad = fastnll.binary_cross_entropy_with_logits(
        x, y, weight=w, reduction=reduction, pos_weight=pw, return_grad=True)
    rl, rm, _, rgm = ref_bce(x, y, w, pw)
    _, wmag, gscale = reduce_ref(rl, rm, reduction)
    check_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, wmag, "loss vs torch")
    assert_close(grad, xt.grad.numpy(), dtype, rgm * gscale, "grad vs torch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_huge_logits_are_stable(dtype):
    x = np.array([1e30, -1e30, 1e30], dtype=dtype)
    y = np.array([1, 0, 0], dtype=dtype)
    with np.errstate(all="raise"):
        rows = fastnll.binary_cross_entropy_with_logits(x, y, reduction="none")
        s = fastnll.binary_cross_entropy_with_logits(x, y, reduction="sum")
        m, g = fastnll.binary_cross_entropy_with_logits(x, y, return_grad=True)
    assert rows.dtype == dtype
    np.testing.assert_array_equal(rows, np.array([0, 0, 1e30], dtype=dtype))
    assert s == dtype(1e30) and type(s) is np.dtype(dtype).type
    np.testing.assert_allclose(f64(m), f64(dtype(1e30)) / 3, rtol=tols(dtype)[0])
    np.testing.assert_allclose(f64(g), [0, 0, 1 / 3], rtol=tols(dtype)[0], atol=0)
    # y=1 at a hugely negative logit costs pos_weight * |x|; weights scale it
    rows = fastnll.binary_cross_entropy_with_logits(
        np.array([-1e30, 1e30], dtype=dtype), np.array([1, 1], dtype=dtype),
        weight=np.array([0.5, 3.0]), pos_weight=np.array([2.0]), reduction="none")
    np.testing.assert_allclose(f64(rows), [1e30, 0.0], rtol=tols(dtype)[0], atol=0)


def test_bce_huge_logits_match_torch():
    torch = pytest.importorskip("torch")
    x = np.array([1e30, -1e30, 1e30, -1e30])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    xt = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(y),
                                                               reduction="sum")
    out.backward()
    loss, g = fastnll.binary_cross_entropy_with_logits(x, y, reduction="sum", return_grad=True)
    assert loss == out.item() == 2e30
    np.testing.assert_array_equal(g, xt.grad.numpy())


def test_bce_known_values():
    # log(2) at x=0 for any target; weight multiplies; pos_weight multiplies the y-part
    x = np.zeros(3)
    y = np.array([0.0, 1.0, 0.25])
    rows = fastnll.binary_cross_entropy_with_logits(x, y, weight=np.array([1.0, 2.0, 1.0]),
                                                    pos_weight=np.array([1.0, 1.0, 3.0]),
                                                    reduction="none")
    ln2 = math.log(2)
    np.testing.assert_allclose(rows, [ln2, 2 * ln2, 0.75 * ln2 + 3 * 0.25 * ln2], rtol=1e-14)


# ========================================================================== Gaussian ====

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("vkind", VAR_KINDS)
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_matches_reference(dtype, reduction, vkind, full):
    rng = np.random.default_rng(3)
    shape = (3, 4, 5)
    x, y = gauss_data(rng, shape, dtype)
    var = var_for(vkind, rng, shape, dtype)
    eps = 1e-6
    loss = fastnll.gaussian_nll_loss(x, y, var, full=full, reduction=reduction)
    check_loss_type(loss, dtype, reduction, shape)
    rl, rm, gx, gxm, gv, gvm = ref_gauss(x, y, gauss_var_view(var, shape), eps, full)
    want, wmag, gscale = reduce_ref(rl, rm, reduction)
    assert_close(loss, want, dtype, wmag, "loss")

    loss2, grads = fastnll.gaussian_nll_loss(x, y, var, full=full, reduction=reduction,
                                             return_grad=True)
    assert_bitwise(loss2, loss, "loss with return_grad")
    grad_x, grad_v = grads
    assert isinstance(grad_x, np.ndarray) and grad_x.dtype == dtype and grad_x.shape == shape
    assert_close(grad_x, gx * gscale, dtype, gxm * gscale, "grad_input")
    vshape = None if vkind == "float" else np.shape(var)
    want_v = var_reduce(gv * gscale, vshape, shape)
    mag_v = var_reduce(gvm * gscale, vshape, shape)
    if vkind == "float":
        assert np.ndim(grad_v) == 0
    else:
        assert np.shape(grad_v) == np.shape(var), (np.shape(grad_v), np.shape(var))
    assert np.asarray(grad_v).dtype == dtype
    assert_close(grad_v, want_v, dtype, mag_v, "grad_var")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("vkind", VAR_KINDS)
def test_gaussian_matches_torch(dtype, reduction, vkind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    shape = (3, 4, 5)
    full = vkind in ("mid1", "float")
    eps = 1e-3   # a non-default eps, so that more variances are clamped
    x, y = gauss_data(rng, shape, dtype)
    var = var_for(vkind, rng, shape, dtype)
    xt = torch.tensor(f64(x), requires_grad=True)
    if vkind in ("float", "0d"):
        # torch takes no gradient of a float var and refuses a 0-d var for a 3-D input:
        # feed the broadcast value and sum its gradient
        vt = torch.tensor(np.full(shape, float(var)), requires_grad=True)
    else:
        vt = torch.tensor(f64(var), requires_grad=True)
    out = F.gaussian_nll_loss(xt, torch.tensor(f64(y)), vt, full=full, eps=eps,
                              reduction=reduction)
    (out.sum() if reduction == "none" else out).backward()
    loss, (gx, gv) = fastnll.gaussian_nll_loss(x, y, var, full=full, eps=eps,
                                               reduction=reduction, return_grad=True)
    rl, rm, _, gxm, _, gvm = ref_gauss(x, y, gauss_var_view(var, shape), eps, full)
    _, wmag, gscale = reduce_ref(rl, rm, reduction)
    check_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, wmag, "loss vs torch")
    assert_close(gx, xt.grad.numpy(), dtype, gxm * gscale, "grad_input vs torch")
    tgv = vt.grad.numpy()
    vshape = None if vkind == "float" else np.shape(var)
    if vkind in ("float", "0d"):
        tgv = tgv.sum()
    assert_close(gv, tgv, dtype, var_reduce(gvm * gscale, vshape, shape), "grad_var vs torch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_tiny_var_clamped_by_eps(dtype):
    x = np.array([1.0, 2.0, -1.0, 0.5], dtype=dtype)
    y = np.array([1.5, 2.0, 0.0, 0.5], dtype=dtype)
    var = np.array([0.0, 1e-9, 1e-5, 2.0], dtype=dtype)
    eps = 1e-4
    rows = fastnll.gaussian_nll_loss(x, y, var, eps=eps, reduction="none")
    v = np.maximum(f64(var), eps)
    d = f64(x) - f64(y)
    assert_close(rows, 0.5 * (np.log(v) + d * d / v), dtype, 1 + d * d / v, "rows")
    _, (gx, gv) = fastnll.gaussian_nll_loss(x, y, var, eps=eps, reduction="sum",
                                            return_grad=True)
    # the var gradient is taken at the clamped value (and flows through the clamp)
    want_gv = 0.5 * (1 / v - d * d / (v * v))
    assert_close(gv, want_gv, dtype, 0.5 * (1 / v + d * d / (v * v)), "grad_var")
    assert_close(gx, d / v, dtype, 1 + np.abs(d / v), "grad_input")
    # the default eps is 1e-6
    r0 = fastnll.gaussian_nll_loss(np.array([1.0]), np.array([0.0]), np.array([0.0]),
                                   reduction="sum")
    assert r0 == pytest.approx(0.5 * (math.log(1e-6) + 1 / 1e-6), rel=1e-13)


def test_gaussian_full_adds_constant():
    rng = np.random.default_rng(5)
    x, y = gauss_data(rng, (4, 3), np.float64)
    var = rng.uniform(0.5, 2, (4, 1))
    a = fastnll.gaussian_nll_loss(x, y, var, full=False, reduction="none")
    b = fastnll.gaussian_nll_loss(x, y, var, full=True, reduction="none")
    np.testing.assert_allclose(b - a, HALF_LOG_2PI, rtol=1e-12)


@pytest.mark.parametrize("tshape", [(4, 5), (5,), (1, 5), (4, 1), ()])
def test_gaussian_target_broadcasts(tshape):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 4, 5))
    y = rng.normal(size=tshape)
    var = rng.uniform(0.5, 2, (3, 4, 5))
    rows = fastnll.gaussian_nll_loss(x, y, var, reduction="none")
    assert rows.shape == (3, 4, 5)
    rl, rm, *_ = ref_gauss(x, y, var, 1e-6, False)
    assert_close(rows, rl, np.float64, rm)


# =========================================================================== Poisson ====

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_matches_reference(dtype, reduction, log_input, full):
    rng = np.random.default_rng(7)
    shape = (5, 6)
    x, y = poisson_data(rng, shape, dtype, log_input)
    eps = 1e-8 if full else 1e-3
    loss = fastnll.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps,
                                    reduction=reduction)
    check_loss_type(loss, dtype, reduction, shape)
    rl, rm, rg, rgm = ref_poisson(x, y, log_input, full, eps)
    want, wmag, gscale = reduce_ref(rl, rm, reduction)
    assert_close(loss, want, dtype, wmag, "loss")
    loss2, grad = fastnll.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps,
                                           reduction=reduction, return_grad=True)
    assert_bitwise(loss2, loss, "loss with return_grad")
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    assert_close(grad, rg * gscale, dtype, rgm * gscale, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_matches_torch(dtype, reduction, log_input, full):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(8)
    shape = (4, 7)
    x, y = poisson_data(rng, shape, dtype, log_input)
    eps = 1e-8
    xt = torch.tensor(f64(x), requires_grad=True)
    out = F.poisson_nll_loss(xt, torch.tensor(f64(y)), log_input=log_input, full=full,
                             eps=eps, reduction=reduction)
    (out.sum() if reduction == "none" else out).backward()
    loss, grad = fastnll.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps,
                                          reduction=reduction, return_grad=True)
    rl, rm, _, rgm = ref_poisson(x, y, log_input, full, eps)
    _, wmag, gscale = reduce_ref(rl, rm, reduction)
    check_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, wmag, "loss vs torch")
    assert_close(grad, xt.grad.numpy(), dtype, rgm * gscale, "grad vs torch")


def test_poisson_stirling_only_where_target_above_one():
    y = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 10.0])
    x = np.full(6, 0.3)
    plain = fastnll.poisson_nll_loss(x, y, full=False, reduction="none")
    full = fastnll.poisson_nll_loss(x, y, full=True, reduction="none")
    # untouched where target <= 1
    np.testing.assert_array_equal(full[:3], plain[:3])
    yy = y[3:]
    stir = yy * np.log(yy) - yy + 0.5 * np.log(2 * math.pi * yy)
    np.testing.assert_allclose(full[3:] - plain[3:], stir, rtol=1e-12, atol=1e-14)
    # full does not change the gradient
    _, g1 = fastnll.poisson_nll_loss(x, y, full=False, return_grad=True)
    _, g2 = fastnll.poisson_nll_loss(x, y, full=True, return_grad=True)
    np.testing.assert_array_equal(g1, g2)


def test_poisson_eps_used_without_log_input():
    rows = fastnll.poisson_nll_loss(np.array([0.0, 0.0]), np.array([2.0, 0.0]),
                                    log_input=False, eps=1e-4, reduction="none")
    np.testing.assert_allclose(rows, [-2 * math.log(1e-4), 0.0], rtol=1e-14, atol=0)
    _, g = fastnll.poisson_nll_loss(np.array([0.0]), np.array([2.0]), log_input=False,
                                    eps=1e-4, reduction="sum", return_grad=True)
    np.testing.assert_allclose(g, [1 - 2 / 1e-4], rtol=1e-13)


@pytest.mark.parametrize("tshape", [(6,), (1, 6), (5, 1), ()])
def test_poisson_target_broadcasts(tshape):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(5, 6))
    y = rng.poisson(3.0, tshape).astype(float)
    rows = fastnll.poisson_nll_loss(x, y, full=True, reduction="none")
    assert rows.shape == (5, 6)
    rl, rm, *_ = ref_poisson(x, y, True, True, 1e-8)
    assert_close(rows, rl, np.float64, rm)


# ================================================================================ KL ====

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_matches_reference(dtype, reduction, log_target):
    rng = np.random.default_rng(10)
    shape = (4, 3, 5)
    x, y = kl_data(rng, shape, dtype, log_target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # no warning, not even for "mean"
        loss = fastnll.kl_div(x, y, reduction=reduction, log_target=log_target)
    check_loss_type(loss, dtype, reduction, shape)
    rl, rm, rg, rgm = ref_kl(x, y, log_target)
    divisor = shape[0] if reduction == "batchmean" else None
    want, wmag, gscale = reduce_ref(rl, rm, reduction, divisor)
    assert_close(loss, want, dtype, wmag, "loss")
    loss2, grad = fastnll.kl_div(x, y, reduction=reduction, log_target=log_target,
                                 return_grad=True)
    assert_bitwise(loss2, loss, "loss with return_grad")
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    assert_close(grad, rg * gscale, dtype, rgm * gscale, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_matches_torch(dtype, reduction, log_target):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    shape = (6, 5)
    x, y = kl_data(rng, shape, dtype, log_target)
    xt = torch.tensor(f64(x), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = F.kl_div(xt, torch.tensor(f64(y)), reduction=reduction, log_target=log_target)
    (out.sum() if reduction == "none" else out).backward()
    loss, grad = fastnll.kl_div(x, y, reduction=reduction, log_target=log_target,
                                return_grad=True)
    rl, rm, _, rgm = ref_kl(x, y, log_target)
    _, wmag, gscale = reduce_ref(rl, rm, reduction,
                                 shape[0] if reduction == "batchmean" else None)
    check_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, wmag, "loss vs torch")
    assert_close(grad, xt.grad.numpy(), dtype, rgm * gscale, "grad vs torch")


def test_kl_divisors_and_zero_targets():
    x = np.log(np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))
    y = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    rows = fastnll.kl_div(x, y, reduction="none")
    want = np.array([[0.0, 0.5 * math.log(0.5 / 0.3), 0.5 * math.log(1.0)],
                     [math.log(1 / 0.1), 0.0, 0.0]])
    np.testing.assert_allclose(rows, want, rtol=1e-14, atol=1e-16)
    assert rows[0, 0] == 0.0 and rows[1, 1] == 0.0 and rows[1, 2] == 0.0
    total = want.sum()
    assert fastnll.kl_div(x, y, reduction="sum") == pytest.approx(total, rel=1e-14)
    assert fastnll.kl_div(x, y, reduction="batchmean") == pytest.approx(total / 2, rel=1e-14)
    assert fastnll.kl_div(x, y, reduction="mean") == pytest.approx(total / 6, rel=1e-14)
    _, g = fastnll.kl_div(x, y, reduction="batchmean", return_grad=True)
    np.testing.assert_array_equal(g, -y / 2)
    # zero target with a very negative log-probability still contributes exactly 0
    assert fastnll.kl_div(np.array([-1e300]), np.array([0.0]), reduction="sum") == 0.0


def test_kl_log_target_known_values():
    x = np.log(np.array([0.25, 0.75]))
    t = np.array([0.5, 0.5])
    rows = fastnll.kl_div(x, np.log(t), reduction="none", log_target=True)
    np.testing.assert_allclose(rows, t * (np.log(t) - x), rtol=1e-14)


@pytest.mark.parametrize("tshape", [(5,), (1, 5), (4, 1), ()])
def test_kl_target_broadcasts(tshape):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(4, 5))
    y = rng.uniform(0, 1, tshape)
    rows = fastnll.kl_div(x, y, reduction="none")
    assert rows.shape == (4, 5)
    rl, rm, *_ = ref_kl(x, y, False)
    assert_close(rows, rl, np.float64, rm)
    assert fastnll.kl_div(x, y, reduction="batchmean") == pytest.approx(rl.sum() / 4,
                                                                          rel=1e-12)


# =========================================================================== entropy ====

ENTROPY_CASES = [
    # pk shape, qk shape, axis
    ((6,), None, 0),
    ((6,), (6,), 0),
    ((6,), (6,), -1),
    ((4, 5), None, 0),
    ((4, 5), None, 1),
    ((4, 5), None, -1),
    ((4, 5), (4, 5), -2),
    ((2, 3, 4), None, 1),
    ((2, 3, 4), (2, 3, 4), 2),
    ((2, 3, 4), (3, 4), 0),
    ((2, 3), (3,), 1),
    ((3,), (2, 3), 1),
    ((2, 1), (2, 3), 1),
    ((2, 3), (2, 1), 0),
    ((2, 3, 4), None, None),
    ((3, 4), (2, 3, 4), None),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pshape,qshape,axis", ENTROPY_CASES)
@pytest.mark.parametrize("base", [None, 2, 0.5])
def test_entropy_matches_scipy(dtype, pshape, qshape, axis, base):
    rng = np.random.default_rng(13)
    pk = rng.uniform(0, 3, pshape)
    pk.reshape(-1)[::4] = 0.0
    pk = pk.astype(dtype)
    qk = None if qshape is None else rng.uniform(0.1, 3, qshape).astype(dtype)
    try:
        want = ref_entropy(pk, qk, base=base, axis=axis)
    except ValueError:                       # shapes scipy cannot broadcast
        with pytest.raises(ValueError, match="broadcast"):
            fastnll.entropy(pk, qk, base=base, axis=axis)
        return
    got = fastnll.entropy(pk, qk, base=base, axis=axis)
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == dtype
    if np.ndim(want) == 0:
        assert type(got) is np.dtype(dtype).type
    assert_close(got, want, dtype, 1.0 + np.abs(want), "entropy")


def test_entropy_special_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fastnll.entropy([]) == 0.0
        assert np.isnan(fastnll.entropy([0, 0]))
        assert fastnll.entropy(3.0) == 0.0
        assert fastnll.entropy([1, 0, 1], [1, 0, 1]) == 0.0
        assert fastnll.entropy([1, 1], [1, 0]) == np.inf                      # q = 0 < p
        assert fastnll.entropy([1, 0], [1, 1]) == pytest.approx(math.log(2), rel=1e-15)
        assert fastnll.entropy([0, 1, 0, 1]) == pytest.approx(math.log(2), rel=1e-15)
        assert fastnll.entropy([1, 1, 1, 1], base=2) == pytest.approx(2.0, rel=1e-15)
    # nan/inf along one row only
    got = fastnll.entropy(np.array([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]), axis=1)
    np.testing.assert_allclose(got, [math.log(2), np.nan, 0.0], equal_nan=True, rtol=1e-15)
    got = fastnll.entropy(np.array([[1.0, 1.0], [1.0, 1.0]]),
                          np.array([[1.0, 0.0], [1.0, 3.0]]), axis=1)
    assert got[0] == np.inf
    assert got[1] == pytest.approx(ref_entropy([1, 1], [1, 3]), rel=1e-14)


def test_entropy_base_one_follows_scipy():
    """base=1 is positive, so scipy's result is expected: S / log(1) = inf."""
    want = ref_entropy([1.0, 2.0, 3.0], base=1)
    assert want == np.inf
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fastnll.entropy([1.0, 2.0, 3.0], base=1)
    assert got == want


@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_empty_axis_and_empty_outer(dtype):
    p = np.ones((2, 0, 3), dtype=dtype)
    got = fastnll.entropy(p, axis=1)
    assert got.shape == (2, 3) and got.dtype == dtype
    np.testing.assert_array_equal(got, np.zeros((2, 3)))
    got = fastnll.entropy(np.ones((2, 3, 0), dtype=dtype), axis=1)
    assert got.shape == (2, 0) and got.dtype == dtype


def test_entropy_dtypes():
    assert type(fastnll.entropy(np.array([1, 2, 3]))) is np.float64
    assert type(fastnll.entropy(np.array([1, 2, 3], dtype=np.float32))) is np.float32
    r = fastnll.entropy(np.ones((3, 2), np.float32), np.ones((3, 2), np.float32))
    assert r.dtype == np.float32
    assert fastnll.entropy([1, 2, 3]) == pytest.approx(ref_entropy([1, 2, 3]), rel=1e-14)


# ======================================================== dtypes, empty, 0-d inputs ====

def call(name, x, y, reduction, return_grad=False):
    """Call one of the four losses with defaults that fit any x, y."""
    if name == "bce":
        return fastnll.binary_cross_entropy_with_logits(x, y, reduction=reduction,
                                                        return_grad=return_grad)
    if name == "gauss":
        return fastnll.gaussian_nll_loss(x, y, 0.5, reduction=reduction,
                                         return_grad=return_grad)
    if name == "poisson":
        return fastnll.poisson_nll_loss(x, y, reduction=reduction, return_grad=return_grad)
    return fastnll.kl_div(x, y, reduction=reduction, return_grad=return_grad)


def ref_rows(name, x, y):
    if name == "bce":
        return ref_bce(x, y)[:2]
    if name == "gauss":
        return ref_gauss(x, y, 0.5, 1e-6, False)[:2]
    if name == "poisson":
        return ref_poisson(x, y, True, False, 1e-8)[:2]
    return ref_kl(x, y, False)[:2]


LOSSES = ["bce", "gauss", "poisson", "kl"]


@pytest.mark.parametrize("name", LOSSES)
def test_integer_inputs_compute_in_float64(name):
    x = np.array([[0, 1, -2], [3, 0, 1]], dtype=np.int64)
    y = np.array([[0, 1, 1], [0, 1, 0]], dtype=np.int32)
    for reduction in REDUCTIONS:
        loss = call(name, x, y, reduction)
        check_loss_type(loss, np.float64, reduction, x.shape)
        rl, rm = ref_rows(name, x, y)
        want, wmag, _ = reduce_ref(rl, rm, reduction)
        assert_close(loss, want, np.float64, wmag, f"{name} {reduction}")
    _, g = call(name, x, y, "mean", return_grad=True)
    assert (g[0] if name == "gauss" else g).dtype == np.float64


@pytest.mark.parametrize("name", LOSSES)
def test_float32_input_with_float64_target_stays_float32(name):
    x = np.array([0.1, -0.3, 0.2], dtype=np.float32)
    y = np.array([0.0, 1.0, 0.5], dtype=np.float64)
    loss, g = call(name, x, y, "sum", return_grad=True)
    assert type(loss) is np.float32
    assert (g[0] if name == "gauss" else g).dtype == np.float32
    rl, rm = ref_rows(name, x, y.astype(np.float32))
    assert_close(loss, math.fsum(rl), np.float32, rm.sum())


@pytest.mark.parametrize("name", LOSSES + ["kl_batchmean"])
@pytest.mark.parametrize("shape", [(0,), (1, 0), (0, 3), (3, 0), (2, 0, 3)])
def test_empty_inputs(name, shape):
    for dtype in DTYPES:
        x = np.zeros(shape, dtype=dtype)
        y = np.zeros(shape, dtype=dtype)
        if name == "kl_batchmean":
            # the sum (0) divided by shape[0]: nan only when shape[0] == 0
            loss, g = fastnll.kl_div(x, y, reduction="batchmean", return_grad=True)
            assert type(loss) is np.dtype(dtype).type
            if shape[0] == 0:
                assert np.isnan(loss)
            else:
                assert loss == 0
            assert g.shape == shape and g.dtype == dtype
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m, g = call(name, x, y, "mean", return_grad=True)
            s = call(name, x, y, "sum")
            n = call(name, x, y, "none")
        assert type(m) is np.dtype(dtype).type and np.isnan(m)
        assert type(s) is np.dtype(dtype).type and s == 0
        assert isinstance(n, np.ndarray) and n.shape == shape and n.dtype == dtype
        gx = g[0] if name == "gauss" else g
        assert gx.shape == shape and gx.dtype == dtype


@pytest.mark.parametrize("name", LOSSES)
def test_zero_dimensional_input(name):
    x, y = np.float64(0.3), np.float64(0.6)
    rl, _ = ref_rows(name, np.array(x), np.array(y))
    for reduction in REDUCTIONS:
        loss = call(name, x, y, reduction)
        assert np.ndim(loss) == 0
        assert float(loss) == pytest.approx(float(rl), rel=1e-13)


# ========================================================== layouts, read-only, lists ====

def strided_views():
    """name -> maker(array_fn) giving a non-contiguous view of shape (4, 5)."""
    return {
        "transposed": lambda a: np.ascontiguousarray(a(5, 4)).T,
        "step": lambda a: a(8, 15)[::2, ::3],
        "negative": lambda a: a(4, 10)[::-1, ::-2],
        "fortran": lambda a: np.asfortranarray(a(4, 5)),
        "mixed": lambda a: a(12, 5)[::-3, :][:, [4, 3, 2, 1, 0]][:, ::-1].T.T,
    }


@pytest.mark.parametrize("layout", ["transposed", "step", "negative", "fortran", "mixed"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(layout, dtype):
    rng = np.random.default_rng(14)
    make = strided_views()[layout]

    def normal(*s):
        return rng.normal(size=s).astype(dtype)

    def unif(*s):
        return rng.uniform(0.05, 1, size=s).astype(dtype)

    x, y, w, v, lx = make(normal), make(unif), make(unif), make(unif), make(normal)
    assert x.shape == (4, 5)
    cases = {
        "bce": (lambda a, b, c, r: fastnll.binary_cross_entropy_with_logits(
            a, b, weight=c, pos_weight=c, reduction=r), lambda: ref_bce(x, y, w, w)[:2]),
        "gauss": (lambda a, b, c, r: fastnll.gaussian_nll_loss(a, b, c, reduction=r),
                  lambda: ref_gauss(x, y, v, 1e-6, False)[:2]),
        "poisson": (lambda a, b, c, r: fastnll.poisson_nll_loss(a, b, full=True, reduction=r),
                    lambda: ref_poisson(x, y * 4, True, True, 1e-8)[:2]),
        "kl": (lambda a, b, c, r: fastnll.kl_div(a, b, reduction=r),
               lambda: ref_kl(lx, y, False)[:2]),
    }
    for name, (fn, ref) in cases.items():
        xa = lx if name == "kl" else x
        ya = y * 4 if name == "poisson" else y
        c = v if name == "gauss" else w
        rows = fn(xa, ya, c, "none")
        contiguous = fn(np.ascontiguousarray(xa), np.ascontiguousarray(ya),
                        np.ascontiguousarray(c), "none")
        assert_bitwise(rows, contiguous, f"{name} {layout}")
        rl, rm = ref()
        assert_close(rows, rl, dtype, rm, f"{name} rows")
        assert_close(fn(xa, ya, c, "sum"), math.fsum(rl.ravel()), dtype, rm.sum(),
                     f"{name} sum")


@pytest.mark.parametrize("dtype", DTYPES)
def test_four_dimensional_unmergeable_layout(dtype):
    rng = np.random.default_rng(15)
    base = rng.normal(size=(4, 6, 5, 8)).astype(dtype)
    x = base[:, ::2, :, ::-2].transpose(3, 1, 0, 2)         # (4, 3, 4, 5), strided
    y = rng.uniform(0, 1, (5, 4, 3, 4)).astype(dtype).transpose(3, 2, 1, 0)
    w = rng.uniform(0, 1, (4, 1, 4, 1)).astype(dtype)
    rows, g = fastnll.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none",
                                                       return_grad=True)
    rl, rm, rg, rgm = ref_bce(x, y, w)
    assert_close(rows, rl, dtype, rm, "rows")
    assert_close(g, rg, dtype, rgm, "grad")
    v = rng.uniform(0.1, 1, (4, 3, 1, 5)).astype(dtype)
    rows, (gx, gv) = fastnll.gaussian_nll_loss(x, y, v, reduction="none", return_grad=True)
    rl, rm, rgx, rgxm, rgv, rgvm = ref_gauss(x, y, v, 1e-6, False)
    assert_close(rows, rl, dtype, rm, "gauss rows")
    assert_close(gv, rgv.sum(axis=2, keepdims=True), dtype,
                 rgvm.sum(axis=2, keepdims=True), "gauss grad_var")


def test_broadcast_view_as_input():
    x = np.broadcast_to(np.array([0.5, -1.0, 2.0]), (4, 3))      # zero strides, read-only
    y = np.broadcast_to(np.array([[0.0], [1.0], [0.3], [1.0]]), (4, 3))
    rows, g = fastnll.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    rl, rm, rg, rgm = ref_bce(x, y)
    assert_close(rows, rl, np.float64, rm)
    assert_close(g, rg, np.float64, rgm)
    assert g.flags.writeable and rows.flags.writeable


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_inputs_and_no_mutation(dtype):
    rng = np.random.default_rng(16)
    x = rng.normal(size=(5, 4)).astype(dtype)
    y = rng.uniform(0, 1, (5, 4)).astype(dtype)
    w = rng.uniform(0, 1, (4,)).astype(dtype)
    v = rng.uniform(0, 1, (5, 1)).astype(dtype)
    p = rng.uniform(0, 1, (5, 4)).astype(dtype)
    arrays = [x, y, w, v, p]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.setflags(write=False)
    fastnll.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=w, return_grad=True)
    for r in REDUCTIONS:
        fastnll.gaussian_nll_loss(x, y, v, reduction=r, return_grad=True)
        fastnll.poisson_nll_loss(x, y, full=True, reduction=r, return_grad=True)
        fastnll.poisson_nll_loss(y, x, log_input=False, reduction=r, return_grad=True)
    for r in KL_REDUCTIONS:
        fastnll.kl_div(x, y, reduction=r, return_grad=True)
        fastnll.kl_div(x, y, reduction=r, log_target=True, return_grad=True)
    fastnll.entropy(p, y, axis=1)
    fastnll.entropy(p, base=2, axis=None)
    for a, c in zip(arrays, copies):
        assert_bitwise(a, c, "input modified")
    # read-only gives the same numbers as writable copies
    assert_bitwise(fastnll.kl_div(x, y, reduction="none"),
                   fastnll.kl_div(x.copy(), y.copy(), reduction="none"))
    assert_bitwise(fastnll.entropy(p, axis=1), fastnll.entropy(p.copy(), axis=1))


def test_lists_accepted():
    x = [[0.5, -1.0], [2.0, 0.0]]
    y = [[1.0, 0.0], [0.0, 1.0]]
    rl, rm, *_ = ref_bce(x, y, [1.0, 2.0], None)
    assert_close(fastnll.binary_cross_entropy_with_logits(x, y, weight=[1.0, 2.0],
                                                          reduction="none"), rl, np.float64, rm)
    rl, rm, *_ = ref_gauss(x, y, np.array([0.5, 2.0])[:, None], 1e-6, True)
    assert_close(fastnll.gaussian_nll_loss(x, y, [0.5, 2.0], full=True, reduction="none"),
                 rl, np.float64, rm)
    rl, rm, *_ = ref_poisson(x, y, True, False, 1e-8)
    assert_close(fastnll.poisson_nll_loss(x, y, reduction="none"), rl, np.float64, rm)
    rl, rm, *_ = ref_kl(x, y, False)
    assert_close(fastnll.kl_div(x, y, reduction="none"), rl, np.float64, rm)
    assert fastnll.entropy([1, 2, 3], [3, 2, 1]) == pytest.approx(
        ref_entropy([1, 2, 3], [3, 2, 1]), rel=1e-13)
