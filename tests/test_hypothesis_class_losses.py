"""Hypothesis: nll_loss and cross_entropy against the reference over drawn inputs and options."""
import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastnll  # noqa: E402
from helpers import (  # noqa: E402
    EPS, SETTINGS, assert_close, assert_loss_type, layout_of, real_arrays, rng_for, tolerances,
)
from reference import class_axis, ref_loss  # noqa: E402

FLOATS = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
              np.uint64]


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["nll", "ce"]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_class_target_losses(data, kind, reduction):
    # no +-1e30 here: sums of +-1e30 cancel to rounding noise (see test_class_losses.py for
    # huge logits)
    x = data.draw(real_arrays(specials=[np.inf, -np.inf, np.nan] if kind == "ce" else
                              [-np.inf, np.inf]), label="x")
    axis = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)), label="axis")
    ax = class_axis(x.ndim, axis)
    C = x.shape[ax]
    tshape = x.shape[:ax] + x.shape[ax + 1:]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="t_seed"))
    tdtype = data.draw(st.sampled_from(INT_DTYPES), label="t_dtype")
    if np.iinfo(tdtype).max < C + 1:
        tdtype = np.int64
    if np.dtype(tdtype).kind == "u":
        ignore_index = data.draw(st.sampled_from([C, C + 1, 0]), label="ignore_index")
    else:
        ignore_index = data.draw(st.sampled_from([-100, -1, C, 0]), label="ignore_index")
    t = rng.integers(0, C, tshape)
    t = np.where(rng.random(tshape) < data.draw(st.sampled_from([0.0, 0.3, 1.0])),
                 ignore_index, t)
    weight = None
    if data.draw(st.booleans(), label="weighted"):
        weight = rng.uniform(0.1, 2.0, C).astype(x.dtype)
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction, axis=axis)
    if kind == "ce":
        kw["label_smoothing"] = data.draw(EPS, label="eps")
    xl = data.draw(layout_of(x), label="layout")
    tl = data.draw(layout_of(t.astype(tdtype)), label="t_layout")
    f = fastnll.nll_loss if kind == "nll" else fastnll.cross_entropy
    loss, grad = f(xl, tl, return_grad=True, **kw)
    exp_loss, exp_grad, terms = ref_loss(kind, x, t, with_terms=True, **kw)
    assert_close(loss, exp_loss, x.dtype)
    assert_close(grad, exp_grad, x.dtype, min_atol=tolerances(x.dtype)[0] * terms)
    assert_close(f(xl, tl, **kw), exp_loss, x.dtype)


@SETTINGS
@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_probability_target_losses(data, reduction):
    x = data.draw(real_arrays(specials=[np.inf, -np.inf, np.nan]), label="x")
    axis = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)), label="axis")
    ax = class_axis(x.ndim, axis)
    C = x.shape[ax]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="t_seed"))
    tshape = x.shape[:ax] + x.shape[ax + 1:]
    if data.draw(st.booleans(), label="normalised"):
        t = np.moveaxis(rng.dirichlet(np.ones(C), size=tshape), -1, ax)
    else:
        t = rng.uniform(0.0, 1.0, x.shape)       # PyTorch does not require a distribution
    t = t.astype(data.draw(st.sampled_from([x.dtype, np.float64, np.float32])))
    weight = None
    if data.draw(st.booleans(), label="weighted"):
        weight = rng.uniform(0.1, 2.0, C)
    eps = data.draw(EPS, label="eps")
    kw = dict(weight=weight, reduction=reduction, axis=axis, label_smoothing=eps)
    xl = data.draw(layout_of(x), label="layout")
    tl = data.draw(layout_of(t), label="t_layout")
    loss, grad = fastnll.cross_entropy(xl, tl, return_grad=True, **kw)
    # the reference sees the target in the input's precision, as fastnll does
    t_used = t.astype(x.dtype)
    w_used = None if weight is None else weight.astype(x.dtype)
    exp_loss, exp_grad, terms = ref_loss("ce", x, t_used, with_terms=True,
                                         **dict(kw, weight=w_used))
    assert_close(loss, exp_loss, x.dtype)
    assert_close(grad, exp_grad, x.dtype, min_atol=tolerances(x.dtype)[0] * terms)


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
    xl = data.draw(layout_of(x), label="x_layout")
    tl = data.draw(layout_of(t), label="t_layout")
    loss, grad = f(xl, tl, return_grad=True, **kw)
    want, want_grad = ref_loss("nll" if kind == "nll" else "ce", x, t, **kw)
    if kind == "prob" and reduction == "mean" and x.size == 0:
        want = np.float64(np.nan)     # PyTorch: the mean of no elements, also when C = 0
    assert_loss_type(loss, dtype, reduction)
    assert_close(loss, want, dtype, mag=1.0, err_msg="loss")
    assert_close(grad, want_grad, dtype, mag=1.0, err_msg="grad")
