"""Randomised differential tests: fastnll against SciPy and the NumPy float64 references, over
shapes, axes, dtypes, memory layouts and options drawn by hypothesis."""
import os
import warnings

import numpy as np
import pytest
import scipy.special as sp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastnll  # noqa: E402
from helpers import assert_close, strided_layout, tolerances  # noqa: E402
from reference import class_axis, ref_loss  # noqa: E402

# FASTNLL_HYPOTHESIS_EXAMPLES=2000 for a longer hunt; the default keeps the suite fast
SETTINGS = settings(max_examples=int(os.environ.get("FASTNLL_HYPOTHESIS_EXAMPLES", "60")),
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

SPECIALS = [np.inf, -np.inf, np.nan, 1e30, -1e30]
# label smoothing: the bounds, or anything between (not subnormal: eps / C would underflow to
# 0 in float64, where the extended-precision reference keeps it)
EPS = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0, allow_subnormal=False))


# --------------------------------------------------------------------- strategies ----

@st.composite
def real_arrays(draw, max_dims=4, max_side=5, specials=SPECIALS, long_axis=True,
                offsets=(0.0, 0.0, -50.0, 1e3)):
    shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1,
                                       max_side=max_side)))
    if long_axis and draw(st.booleans()):
        # one longer axis: several row chunks / column blocks, and the threads' paths
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.integers(30, 1100))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    x = draw(st.sampled_from(offsets)) + scale * rng.standard_normal(shape)
    if specials:
        for _ in range(draw(st.integers(0, 3))):
            idx = tuple(draw(st.integers(0, n - 1)) for n in shape)
            x[idx] = draw(st.sampled_from(specials))
    return x.astype(dtype)


@st.composite
def layouts(draw, a):
    """The same values in a drawn memory layout (axis order, steps, reversals)."""
    if not draw(st.booleans()):
        return a
    perm = draw(st.permutations(range(a.ndim)))
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in range(a.ndim)]
    out = strided_layout(a, perm, steps)
    if draw(st.booleans()):
        out.setflags(write=False)
    return out


@st.composite
def axes_for(draw, ndim):
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    ax = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in ax)


def scipy_call(name, a, **kw):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return getattr(sp, name)(np.asarray(a, dtype=np.float64), **kw)


# -------------------------------------------------------- softmax family vs SciPy ----

@SETTINGS
@given(data=st.data(), name=st.sampled_from(["logsumexp", "softmax", "log_softmax"]))
def test_softmax_family(data, name):
    x = data.draw(real_arrays(), label="x")
    axis = data.draw(axes_for(x.ndim), label="axis")
    xl = data.draw(layouts(x), label="layout")
    before = xl.copy()
    kw = {}
    if name == "logsumexp":
        kw["keepdims"] = data.draw(st.booleans(), label="keepdims")
    got = getattr(fastnll, name)(xl, axis=axis, **kw)
    assert_close(got, scipy_call(name, x, axis=axis, **kw), x.dtype)
    np.testing.assert_array_equal(xl, before)


@SETTINGS
@given(data=st.data())
def test_logsumexp_with_b(data):
    x = data.draw(real_arrays(max_dims=3), label="x")
    axis = data.draw(axes_for(x.ndim), label="axis")
    # b of the full shape or of a trailing part of it (broadcast), float32 or float64
    k = data.draw(st.integers(0, x.ndim), label="b_dims")
    bshape = x.shape[k:]
    bdtype = data.draw(st.sampled_from([np.float32, np.float64]), label="b_dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="b_seed"))
    b = rng.uniform(-1.0, 2.0, bshape)
    b[rng.random(bshape) < 0.25] = 0.0
    b = b.astype(bdtype)
    keepdims = data.draw(st.booleans(), label="keepdims")
    return_sign = data.draw(st.booleans(), label="return_sign")
    xl = data.draw(layouts(x), label="layout")
    got = fastnll.logsumexp(xl, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
    dtype = np.float32 if (x.dtype == np.float32 and bdtype == np.float32) else np.float64
    # fastnll's documented semantics: a zero weight drops its term even where a is inf or
    # nan, and a negative sum is nan without return_sign.  SciPy agrees except where its
    # result is infinite (it then recomputes directly, with 0 * inf = nan), so hand it -inf
    # for the dropped terms, and apply the sign rule to its signed result.
    b64 = np.broadcast_to(b.astype(np.float64), x.shape)
    x64 = np.where(b64 == 0, -np.inf, x.astype(np.float64))
    res, sgn = scipy_call("logsumexp", x64, axis=axis, b=b64, keepdims=keepdims,
                          return_sign=True)
    if return_sign:
        assert_close(got[0], res, dtype)
        assert_close(got[1], sgn, dtype)
    else:
        assert_close(got, np.where(sgn < 0, np.nan, res), dtype)


# ------------------------------------------------------------ losses vs reference ----

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
              np.uint64]


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["nll", "ce"]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_class_target_losses(data, kind, reduction):
    # no +-1e30 here: sums of +-1e30 cancel to rounding noise (see test_losses.py for
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
    xl = data.draw(layouts(x), label="layout")
    tl = data.draw(layouts(t.astype(tdtype)), label="t_layout")
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
    xl = data.draw(layouts(x), label="layout")
    tl = data.draw(layouts(t), label="t_layout")
    loss, grad = fastnll.cross_entropy(xl, tl, return_grad=True, **kw)
    # the reference sees the target in the input's precision, as fastnll does
    t_used = t.astype(x.dtype)
    w_used = None if weight is None else weight.astype(x.dtype)
    exp_loss, exp_grad, terms = ref_loss("ce", x, t_used, with_terms=True,
                                         **dict(kw, weight=w_used))
    assert_close(loss, exp_loss, x.dtype)
    assert_close(grad, exp_grad, x.dtype, min_atol=tolerances(x.dtype)[0] * terms)
