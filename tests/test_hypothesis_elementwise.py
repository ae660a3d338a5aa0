"""Hypothesis: BCE, Gaussian, Poisson and KL against float64 references over drawn inputs."""
import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import example, given, strategies as st  # noqa: E402

import fastnll  # noqa: E402
from helpers import (  # noqa: E402
    ELEMENT_SETTINGS, FLOAT_DTYPES, SETTINGS, SMALL_SHAPES, assert_close, assert_loss_type,
    assert_unchanged, broadcast_into, float_arrays, layout_of, rng_for, shapes, snapshot,
    sprinkle,
)
from reference import (  # noqa: E402
    as_used, gauss_var_view, reduce_ref, ref_bce, ref_gauss, ref_kl, ref_poisson, var_reduce,
)

FLOATS = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
KL_REDUCTIONS = ["none", "mean", "sum", "batchmean"]

# Two kinds of suite per function: generated data (NumPy values from a drawn seed, with
# specials, size-0 dimensions, mixed operand dtypes and memory layouts), and drawn elements
# (hypothesis draws and shrinks every value; non-empty, contiguous, one dtype).


# ------------------------------------------------------------- binary cross-entropy ----

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
    args = [data.draw(layout_of(a), label="layout") if a is not None else None
            for a in (x, y, w, pw)]
    before = snapshot(args)

    loss, grad = fastnll.binary_cross_entropy_with_logits(
        args[0], args[1], weight=args[2], pos_weight=args[3], reduction=reduction,
        return_grad=True)
    plain = fastnll.binary_cross_entropy_with_logits(
        args[0], args[1], weight=args[2], pos_weight=args[3], reduction=reduction)

    x64, y64 = x.astype(np.float64), as_used(y, dtype)
    w64 = np.broadcast_to(1.0 if w is None else as_used(w, dtype), shape)
    pw64 = np.broadcast_to(1.0 if pw is None else as_used(pw, dtype), shape)
    rl, rm, rg, rgm = ref_bce(x64, y64, w64, pw64)
    want, wmag, gs = reduce_ref(rl, rm, reduction)
    assert_loss_type(loss, dtype, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")
    assert_close(plain, want, dtype, mag=wmag, err_msg="loss without return_grad")
    assert_close(grad, rg * gs, dtype, mag=rgm * gs, err_msg="grad")
    assert_unchanged(before)


@st.composite
def bce_cases(draw):
    dtype = draw(FLOAT_DTYPES)
    shape = draw(SMALL_SHAPES)
    x = draw(float_arrays(dtype, shape, -60, 60))
    y = draw(float_arrays(dtype, shape, 0, 1))
    w = pw = None
    if draw(st.booleans()):
        w = draw(float_arrays(dtype, draw(broadcast_into(shape)), 0, 5))
    if draw(st.booleans()):
        pw = draw(float_arrays(dtype, draw(broadcast_into(shape)), 0, 5))
    return dtype, x, y, w, pw


@ELEMENT_SETTINGS
@given(bce_cases())
# found in CI: the smallest normal weight makes the gradient subnormal, correctly rounded
@example((np.float32, np.full((2, 4, 5), -10, np.float32), np.zeros((2, 4, 5), np.float32),
          np.full((1, 1), np.finfo(np.float32).tiny, np.float32), None))
def test_bce_drawn_elements(case):
    dtype, x, y, w, pw = case
    rl, rm, rg, rgm = ref_bce(x, y, w, pw)
    for r in REDUCTIONS:
        loss, g = fastnll.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                                           reduction=r, return_grad=True)
        want, wmag, gs = reduce_ref(rl, rm, r)
        assert_close(loss, want, dtype, mag=wmag, err_msg=r)
        assert_close(g, rg * gs, dtype, mag=rgm * gs, err_msg=r + " grad")


# --------------------------------------------------------------------- Gaussian NLL ----

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
        var = data.draw(layout_of(var), label="var_layout")
    xl = data.draw(layout_of(x), label="x_layout")
    yl = data.draw(layout_of(y), label="y_layout")
    before = snapshot([xl, yl, var])

    loss, (gx, gv) = fastnll.gaussian_nll_loss(xl, yl, var, full=full, eps=eps,
                                               reduction=reduction, return_grad=True)
    plain = fastnll.gaussian_nll_loss(xl, yl, var, full=full, eps=eps, reduction=reduction)

    # var as PyTorch reads it: one value per sample when it lacks the input's last axis
    v = gauss_var_view(as_used(var, dtype), shape)
    rl, rm, rgx, rgxm, rgv, rgvm = ref_gauss(x.astype(np.float64), as_used(y, dtype), v, eps,
                                             full)
    want, wmag, gs = reduce_ref(rl, rm, reduction)
    assert_loss_type(loss, dtype, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")
    assert_close(plain, want, dtype, mag=wmag, err_msg="loss without return_grad")
    assert_close(gx, rgx * gs, dtype, mag=rgxm * gs, err_msg="grad_input")
    # grad_var has var's own shape: the per-element gradient summed over broadcast axes
    vshape = np.shape(var)
    gv_want = var_reduce(rgv * gs, vshape, shape)
    gv_mag = var_reduce(rgvm * gs, vshape, shape)
    assert np.shape(gv) == vshape
    assert_close(gv, gv_want, dtype, mag=gv_mag + 1.0, err_msg="grad_var")
    assert_unchanged(before)


@st.composite
def gauss_cases(draw):
    dtype = draw(FLOAT_DTYPES)
    shape = draw(SMALL_SHAPES)
    x = draw(float_arrays(dtype, shape, -100, 100))
    tshape = draw(broadcast_into(shape))
    y = draw(float_arrays(dtype, tshape, -100, 100))
    kinds = ["full", "float"] + (["nolast", "one1"] if len(shape) else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "float":
        var = draw(st.floats(0, 10))
    else:
        vshape = {"full": shape, "nolast": shape[:-1]}.get(kind)
        if kind == "one1":
            i = draw(st.integers(0, len(shape) - 1))
            vshape = shape[:i] + (1,) + shape[i + 1:]
        var = draw(float_arrays(dtype, vshape, 0, 10))
    eps = draw(st.sampled_from([1e-6, 1e-3, 0.5]))
    return dtype, x, y, var, eps, draw(st.booleans())


@ELEMENT_SETTINGS
@given(gauss_cases())
def test_gaussian_drawn_elements(case):
    dtype, x, y, var, eps, full = case
    shape = x.shape
    rl, rm, gx, gxm, gv, gvm = ref_gauss(x, y, gauss_var_view(var, shape), eps, full)
    vshape = None if isinstance(var, float) else np.shape(var)
    for r in REDUCTIONS:
        loss, (g1, g2) = fastnll.gaussian_nll_loss(x, y, var, full=full, eps=eps,
                                                   reduction=r, return_grad=True)
        want, wmag, gs = reduce_ref(rl, rm, r)
        assert_close(loss, want, dtype, mag=wmag, err_msg=r)
        assert_close(g1, gx * gs, dtype, mag=gxm * gs, err_msg=r + " grad_input")
        assert np.shape(g2) == (() if vshape is None else vshape)
        assert_close(g2, var_reduce(gv * gs, vshape, shape), dtype,
                     mag=var_reduce(gvm * gs, vshape, shape), err_msg=r + " grad_var")


# ---------------------------------------------------------------------- Poisson NLL ----

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
    xl = data.draw(layout_of(x), label="x_layout")
    yl = data.draw(layout_of(y), label="y_layout")
    before = snapshot([xl, yl])

    loss, grad = fastnll.poisson_nll_loss(xl, yl, log_input=log_input, full=full, eps=eps,
                                          reduction=reduction, return_grad=True)
    plain = fastnll.poisson_nll_loss(xl, yl, log_input=log_input, full=full, eps=eps,
                                     reduction=reduction)

    y64 = np.broadcast_to(as_used(y, dtype), shape)
    rl, rm, rg, rgm = ref_poisson(x.astype(np.float64), y64, log_input, full, eps)
    want, wmag, gs = reduce_ref(rl, rm, reduction)
    assert_loss_type(loss, dtype, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")
    assert_close(plain, want, dtype, mag=wmag, err_msg="loss without return_grad")
    assert_close(grad, rg * gs, dtype, mag=rgm * gs, err_msg="grad")
    assert_unchanged(before)


@st.composite
def poisson_cases(draw):
    dtype = draw(FLOAT_DTYPES)
    shape = draw(SMALL_SHAPES)
    log_input = draw(st.booleans())
    x = draw(float_arrays(dtype, shape, -20, 20) if log_input
             else float_arrays(dtype, shape, 0, 1000))
    y = draw(float_arrays(dtype, draw(broadcast_into(shape)), 0, 100))
    return dtype, x, y, log_input, draw(st.booleans())


@ELEMENT_SETTINGS
@given(poisson_cases())
def test_poisson_drawn_elements(case):
    dtype, x, y, log_input, full = case
    rl, rm, rg, rgm = ref_poisson(x, y, log_input, full, 1e-8)
    for r in REDUCTIONS:
        loss, g = fastnll.poisson_nll_loss(x, y, log_input=log_input, full=full, reduction=r,
                                           return_grad=True)
        want, wmag, gs = reduce_ref(rl, rm, r)
        assert_close(loss, want, dtype, mag=wmag, err_msg=r)
        assert_close(g, rg * gs, dtype, mag=rgm * gs, err_msg=r + " grad")


# ----------------------------------------------------------------------------- KL ----

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
    xl = data.draw(layout_of(x), label="x_layout")
    yl = data.draw(layout_of(y), label="y_layout")
    before = snapshot([xl, yl])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = fastnll.kl_div(xl, yl, reduction=reduction, log_target=log_target,
                                    return_grad=True)
        plain = fastnll.kl_div(xl, yl, reduction=reduction, log_target=log_target)

    y64 = np.broadcast_to(as_used(y, dtype), shape)
    rl, rm, rg, rgm = ref_kl(x.astype(np.float64), y64, log_target)
    divisor = (shape[0] if shape else 1) if reduction == "batchmean" else None
    want, wmag, gs = reduce_ref(rl, rm, "mean" if reduction == "batchmean" else reduction,
                                divisor)
    assert_loss_type(loss, dtype, reduction)
    assert_close(loss, want, dtype, mag=wmag, err_msg="loss")
    assert_close(plain, want, dtype, mag=wmag, err_msg="loss without return_grad")
    assert_close(grad, rg * gs, dtype, mag=rgm * gs, err_msg="grad")
    assert_unchanged(before)


@st.composite
def kl_cases(draw):
    dtype = draw(FLOAT_DTYPES)
    shape = draw(SMALL_SHAPES)
    log_target = draw(st.booleans())
    x = draw(float_arrays(dtype, shape, -40, 5))
    tshape = draw(broadcast_into(shape))
    y = draw(float_arrays(dtype, tshape, -40, 3) if log_target
             else float_arrays(dtype, tshape, 0, 1))
    return dtype, x, y, log_target


@ELEMENT_SETTINGS
@given(kl_cases())
def test_kl_drawn_elements(case):
    dtype, x, y, log_target = case
    rl, rm, rg, rgm = ref_kl(x, y, log_target)
    for r in KL_REDUCTIONS:
        loss, g = fastnll.kl_div(x, y, reduction=r, log_target=log_target, return_grad=True)
        div = (x.shape[0] if x.ndim else 1) if r == "batchmean" else None
        want, wmag, gs = reduce_ref(rl, rm, "mean" if r == "batchmean" else r, div)
        assert_close(loss, want, dtype, mag=wmag, err_msg=r)
        assert_close(g, rg * gs, dtype, mag=rgm * gs, err_msg=r + " grad")
