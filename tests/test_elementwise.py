"""BCE, Gaussian, Poisson and KL losses on fixed grids: float64 references and PyTorch."""
# The references (reference.py) use independent formulas where possible, e.g. BCE as
# w[(1-y) softplus(x) + pw y softplus(-x)]; PyTorch (float64, autograd) is an optional oracle:
# every test that needs it skips cleanly without it.  Comparisons use the per-term model of
# helpers.assert_close (mag=...).
import math
import warnings

import numpy as np
import pytest
import scipy.special as sps

import fastnll
from helpers import (
    assert_bitwise_equal, assert_close, assert_loss_type, strided_views, tolerances,
)
from reference import (
    HALF_LOG_2PI, gauss_var_view, reduce_ref, ref_bce, ref_entropy, ref_gauss, ref_kl,
    ref_poisson, var_reduce,
)

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
KL_REDUCTIONS = ["none", "mean", "sum", "batchmean"]


# ---------------------------------------------------------------------- data makers ----

def f64(a):
    return np.asarray(a, dtype=np.float64)


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
    assert_loss_type(loss, dtype, reduction, shape)
    rl, rm, rg, rgm = ref_bce(x, y, w, pw)
    want, wmag, gscale = reduce_ref(rl, rm, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")

    loss2, grad = fastnll.binary_cross_entropy_with_logits(
        x, y, weight=w, reduction=reduction, pos_weight=pw, return_grad=True)
    assert_bitwise_equal(loss2, loss, "loss with return_grad")
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    assert_close(grad, rg * gscale, dtype, mag=rgm * gscale, err_msg="grad")


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
    assert_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, mag=wmag, err_msg="loss vs torch")
    assert_close(grad, xt.grad.numpy(), dtype, mag=rgm * gscale, err_msg="grad vs torch")


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
    rtol = tolerances(dtype, per_term=True)[0]
    np.testing.assert_allclose(f64(m), f64(dtype(1e30)) / 3, rtol=rtol)
    np.testing.assert_allclose(f64(g), [0, 0, 1 / 3], rtol=rtol, atol=0)
    # y=1 at a hugely negative logit costs pos_weight * |x|; weights scale it
    rows = fastnll.binary_cross_entropy_with_logits(
        np.array([-1e30, 1e30], dtype=dtype), np.array([1, 1], dtype=dtype),
        weight=np.array([0.5, 3.0]), pos_weight=np.array([2.0]), reduction="none")
    np.testing.assert_allclose(f64(rows), [1e30, 0.0], rtol=rtol, atol=0)


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
    assert_loss_type(loss, dtype, reduction, shape)
    rl, rm, gx, gxm, gv, gvm = ref_gauss(x, y, gauss_var_view(var, shape), eps, full)
    want, wmag, gscale = reduce_ref(rl, rm, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")

    loss2, grads = fastnll.gaussian_nll_loss(x, y, var, full=full, reduction=reduction,
                                             return_grad=True)
    assert_bitwise_equal(loss2, loss, "loss with return_grad")
    grad_x, grad_v = grads
    assert isinstance(grad_x, np.ndarray) and grad_x.dtype == dtype and grad_x.shape == shape
    assert_close(grad_x, gx * gscale, dtype, mag=gxm * gscale, err_msg="grad_input")
    vshape = None if vkind == "float" else np.shape(var)
    want_v = var_reduce(gv * gscale, vshape, shape)
    mag_v = var_reduce(gvm * gscale, vshape, shape)
    if vkind == "float":
        assert np.ndim(grad_v) == 0
    else:
        assert np.shape(grad_v) == np.shape(var), (np.shape(grad_v), np.shape(var))
    assert np.asarray(grad_v).dtype == dtype
    assert_close(grad_v, want_v, dtype, mag=mag_v, err_msg="grad_var")


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
    assert_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, mag=wmag, err_msg="loss vs torch")
    assert_close(gx, xt.grad.numpy(), dtype, mag=gxm * gscale, err_msg="grad_input vs torch")
    tgv = vt.grad.numpy()
    vshape = None if vkind == "float" else np.shape(var)
    if vkind in ("float", "0d"):
        tgv = tgv.sum()
    assert_close(gv, tgv, dtype, mag=var_reduce(gvm * gscale, vshape, shape),
                 err_msg="grad_var vs torch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_tiny_var_clamped_by_eps(dtype):
    x = np.array([1.0, 2.0, -1.0, 0.5], dtype=dtype)
    y = np.array([1.5, 2.0, 0.0, 0.5], dtype=dtype)
    var = np.array([0.0, 1e-9, 1e-5, 2.0], dtype=dtype)
    eps = 1e-4
    rows = fastnll.gaussian_nll_loss(x, y, var, eps=eps, reduction="none")
    v = np.maximum(f64(var), eps)
    d = f64(x) - f64(y)
    assert_close(rows, 0.5 * (np.log(v) + d * d / v), dtype, mag=1 + d * d / v, err_msg="rows")
    _, (gx, gv) = fastnll.gaussian_nll_loss(x, y, var, eps=eps, reduction="sum",
                                            return_grad=True)
    # the var gradient is taken at the clamped value (and flows through the clamp)
    want_gv = 0.5 * (1 / v - d * d / (v * v))
    assert_close(gv, want_gv, dtype, mag=0.5 * (1 / v + d * d / (v * v)), err_msg="grad_var")
    assert_close(gx, d / v, dtype, mag=1 + np.abs(d / v), err_msg="grad_input")
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
    assert_close(rows, rl, np.float64, mag=rm)


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
    assert_loss_type(loss, dtype, reduction, shape)
    rl, rm, rg, rgm = ref_poisson(x, y, log_input, full, eps)
    want, wmag, gscale = reduce_ref(rl, rm, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")
    loss2, grad = fastnll.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps,
                                           reduction=reduction, return_grad=True)
    assert_bitwise_equal(loss2, loss, "loss with return_grad")
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    assert_close(grad, rg * gscale, dtype, mag=rgm * gscale, err_msg="grad")


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
    assert_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, mag=wmag, err_msg="loss vs torch")
    assert_close(grad, xt.grad.numpy(), dtype, mag=rgm * gscale, err_msg="grad vs torch")


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
    assert_close(rows, rl, np.float64, mag=rm)


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
    assert_loss_type(loss, dtype, reduction, shape)
    rl, rm, rg, rgm = ref_kl(x, y, log_target)
    divisor = shape[0] if reduction == "batchmean" else None
    want, wmag, gscale = reduce_ref(rl, rm, reduction, divisor)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")
    loss2, grad = fastnll.kl_div(x, y, reduction=reduction, log_target=log_target,
                                 return_grad=True)
    assert_bitwise_equal(loss2, loss, "loss with return_grad")
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    assert_close(grad, rg * gscale, dtype, mag=rgm * gscale, err_msg="grad")


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
    assert_loss_type(loss, dtype, reduction, shape)
    assert_close(loss, out.detach().numpy(), dtype, mag=wmag, err_msg="loss vs torch")
    assert_close(grad, xt.grad.numpy(), dtype, mag=rgm * gscale, err_msg="grad vs torch")


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
    assert_close(rows, rl, np.float64, mag=rm)
    assert fastnll.kl_div(x, y, reduction="batchmean") == pytest.approx(rl.sum() / 4,
                                                                          rel=1e-12)


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
        assert_loss_type(loss, np.float64, reduction, x.shape)
        rl, rm = ref_rows(name, x, y)
        want, wmag, _ = reduce_ref(rl, rm, reduction)
        assert_close(loss, want, np.float64, mag=wmag, err_msg=f"{name} {reduction}")
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
    assert_close(loss, math.fsum(rl), np.float32, mag=rm.sum())


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
        assert_bitwise_equal(rows, contiguous, f"{name} {layout}")
        rl, rm = ref()
        assert_close(rows, rl, dtype, mag=rm, err_msg=f"{name} rows")
        assert_close(fn(xa, ya, c, "sum"), math.fsum(rl.ravel()), dtype, mag=rm.sum(),
                     err_msg=f"{name} sum")


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
    assert_close(rows, rl, dtype, mag=rm, err_msg="rows")
    assert_close(g, rg, dtype, mag=rgm, err_msg="grad")
    v = rng.uniform(0.1, 1, (4, 3, 1, 5)).astype(dtype)
    rows, (gx, gv) = fastnll.gaussian_nll_loss(x, y, v, reduction="none", return_grad=True)
    rl, rm, rgx, rgxm, rgv, rgvm = ref_gauss(x, y, v, 1e-6, False)
    assert_close(rows, rl, dtype, mag=rm, err_msg="gauss rows")
    assert_close(gv, rgv.sum(axis=2, keepdims=True), dtype,
                 mag=rgvm.sum(axis=2, keepdims=True), err_msg="gauss grad_var")


def test_broadcast_view_as_input():
    x = np.broadcast_to(np.array([0.5, -1.0, 2.0]), (4, 3))      # zero strides, read-only
    y = np.broadcast_to(np.array([[0.0], [1.0], [0.3], [1.0]]), (4, 3))
    rows, g = fastnll.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    rl, rm, rg, rgm = ref_bce(x, y)
    assert_close(rows, rl, np.float64, mag=rm)
    assert_close(g, rg, np.float64, mag=rgm)
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
        assert_bitwise_equal(a, c, "input modified")
    # read-only gives the same numbers as writable copies
    assert_bitwise_equal(fastnll.kl_div(x, y, reduction="none"),
                         fastnll.kl_div(x.copy(), y.copy(), reduction="none"))
    assert_bitwise_equal(fastnll.entropy(p, axis=1), fastnll.entropy(p.copy(), axis=1))


def test_lists_accepted():
    x = [[0.5, -1.0], [2.0, 0.0]]
    y = [[1.0, 0.0], [0.0, 1.0]]
    rl, rm, *_ = ref_bce(x, y, [1.0, 2.0], None)
    assert_close(fastnll.binary_cross_entropy_with_logits(x, y, weight=[1.0, 2.0],
                                                          reduction="none"),
                 rl, np.float64, mag=rm)
    rl, rm, *_ = ref_gauss(x, y, np.array([0.5, 2.0])[:, None], 1e-6, True)
    assert_close(fastnll.gaussian_nll_loss(x, y, [0.5, 2.0], full=True, reduction="none"),
                 rl, np.float64, mag=rm)
    rl, rm, *_ = ref_poisson(x, y, True, False, 1e-8)
    assert_close(fastnll.poisson_nll_loss(x, y, reduction="none"), rl, np.float64, mag=rm)
    rl, rm, *_ = ref_kl(x, y, False)
    assert_close(fastnll.kl_div(x, y, reduction="none"), rl, np.float64, mag=rm)
    assert fastnll.entropy([1, 2, 3], [3, 2, 1]) == pytest.approx(
        ref_entropy([1, 2, 3], [3, 2, 1]), rel=1e-13)


# ------------------------------------------------------------------------ nan data ----

def test_gaussian_nan_var_gives_nan_as_pytorch():
    loss, (gx, gv) = fastnll.gaussian_nll_loss(np.array([0.5, 1.0]), np.zeros(2),
                                               np.array([np.nan, 1.0]), reduction="none",
                                               return_grad=True)
    assert np.isnan(loss[0]) and np.isnan(gx[0]) and np.isnan(gv[0])
    assert loss[1] == pytest.approx(0.5) and gx[1] == 1.0
    assert np.isnan(fastnll.gaussian_nll_loss(np.ones(3), np.zeros(3), float("nan")))


@pytest.mark.parametrize("pos_weight", [1.0, 3.0, 0.25])
def test_bce_float32_accurate_in_both_tails(pos_weight):
    """float32 binary_cross_entropy_with_logits (its exp and log1p in float) against float64
    written without cancellation: within a few float32 ulp for every logit, the confident
    predictions included, whose tiny losses and gradients (1e-35 at |x| = 80) the textbook
    form (1 - y) x + softplus(-x) loses entirely (the float path ends at |x| = 80, the
    float64 one takes over); strided operands give the same bits."""
    x = np.linspace(-110, 110, 22001, dtype=np.float32)
    for yv in (0.0, 1.0, 0.3):
        y = np.full_like(x, yv)
        pw = np.float32([pos_weight])
        rows = fastnll.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
        _, g = fastnll.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="sum",
                                                        return_grad=True)
        xd = x.astype(np.float64)
        e = np.exp(-np.abs(xd))
        lw = 1 + (pos_weight - 1) * yv
        want = np.where(xd < 0, lw * np.log1p(e) - pos_weight * yv * xd,
                        (1 - yv) * xd + lw * np.log1p(e))
        want_g = np.where(xd < 0, lw * e / (1 + e) - pos_weight * yv,
                          (1 - yv) - lw * e / (1 + e))
        np.testing.assert_allclose(rows, want, rtol=6e-7, atol=1e-44)     # (subnormals)
        # (a soft target's gradient crosses 0: there the error is relative to the terms)
        np.testing.assert_allclose(g, want_g, rtol=6e-7,
                                   atol=3e-7 if yv not in (0, 1) else 1e-44)
        # a large weight scales the tiny tails up: they keep their digits (exp(-|x|) does
        # not underflow early)
        big = fastnll.binary_cross_entropy_with_logits(x, y, weight=np.float32([1e30]),
                                                       pos_weight=pw, reduction="none")
        np.testing.assert_allclose(big, np.float32(1e30).astype(np.float64) * want,
                                   rtol=6e-7, atol=0)
        wide = np.zeros(2 * x.size, np.float32)
        wide[::2] = x
        strided = fastnll.binary_cross_entropy_with_logits(wide[::2], y, pos_weight=pw,
                                                           reduction="none")
        assert_bitwise_equal(strided, rows, "strided")
