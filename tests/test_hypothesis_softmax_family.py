"""Hypothesis: logsumexp, softmax and log_softmax against SciPy over drawn inputs and axes."""
import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import fastnll  # noqa: E402
from helpers import (  # noqa: E402
    SETTINGS, assert_close, axes_for, empty_shapes, layout_of, real_arrays,
)
from reference import ref_lse, scipy_ref  # noqa: E402

FLOATS = [np.float32, np.float64]


@SETTINGS
@given(data=st.data(), name=st.sampled_from(["logsumexp", "softmax", "log_softmax"]))
def test_softmax_family(data, name):
    x = data.draw(real_arrays(), label="x")
    axis = data.draw(axes_for(x.ndim), label="axis")
    xl = data.draw(layout_of(x), label="layout")
    before = xl.copy()
    kw = {}
    if name == "logsumexp":
        kw["keepdims"] = data.draw(st.booleans(), label="keepdims")
    got = getattr(fastnll, name)(xl, axis=axis, **kw)
    assert_close(got, scipy_ref(name, x, axis=axis, **kw), x.dtype)
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
    xl = data.draw(layout_of(x), label="layout")
    got = fastnll.logsumexp(xl, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
    dtype = np.float32 if (x.dtype == np.float32 and bdtype == np.float32) else np.float64
    # fastnll's documented semantics: a zero weight drops its term even where a is inf or
    # nan, and a negative sum is nan without return_sign.  SciPy agrees except where its
    # result is infinite (it then recomputes directly, with 0 * inf = nan), so hand it -inf
    # for the dropped terms, and apply the sign rule to its signed result.
    b64 = np.broadcast_to(b.astype(np.float64), x.shape)
    x64 = np.where(b64 == 0, -np.inf, x.astype(np.float64))
    res, sgn = scipy_ref("logsumexp", x64, axis=axis, b=b64, keepdims=keepdims,
                         return_sign=True)
    if return_sign:
        assert_close(got[0], res, dtype)
        assert_close(got[1], sgn, dtype)
    else:
        assert_close(got, np.where(sgn < 0, np.nan, res), dtype)


@SETTINGS
@given(data=st.data(), name=st.sampled_from(["logsumexp", "softmax", "log_softmax"]))
def test_softmax_family_size0(data, name):
    shape = data.draw(empty_shapes(), label="shape")
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    x = np.zeros(shape, dtype)
    axis = data.draw(axes_for(len(shape)), label="axis")
    axes = tuple(range(len(shape))) if axis is None else \
        tuple(sorted(a % len(shape) for a in np.atleast_1d(axis)))
    xl = data.draw(layout_of(x), label="layout")
    if name == "logsumexp":
        keepdims = data.draw(st.booleans(), label="keepdims")
        with_b = data.draw(st.booleans(), label="with_b")
        if with_b:
            got, sgn = fastnll.logsumexp(xl, axis=axis, b=np.ones(shape[1:], dtype),
                                         keepdims=keepdims, return_sign=True)
        else:
            got = fastnll.logsumexp(xl, axis=axis, keepdims=keepdims)
        want = ref_lse(x.astype(np.float64), axes, keepdims=keepdims)
        assert_close(got, want, dtype, mag=1.0, err_msg="logsumexp")
        if with_b:   # the sign of an empty sum is 0
            assert_close(sgn, np.where(np.isneginf(want), 0.0, 1.0), dtype, mag=1.0,
                         err_msg="sign")
    else:
        got = getattr(fastnll, name)(xl, axis=axis)
        assert got.shape == shape and got.dtype == dtype    # an empty array, as x
