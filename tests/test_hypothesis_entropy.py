"""Hypothesis: entropy and relative entropy against scipy.stats.entropy over drawn inputs."""
import math

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastnll  # noqa: E402
from helpers import (  # noqa: E402
    ELEMENT_SETTINGS, FLOAT_DTYPES, SETTINGS, assert_close, assert_unchanged, broadcast_into,
    float_arrays, layout_of, rng_for, shapes, snapshot,
)
from reference import ref_entropy  # noqa: E402

FLOATS = [np.float32, np.float64]


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
    pl = data.draw(layout_of(pk), label="p_layout")
    ql = None if qk is None else data.draw(layout_of(qk), label="q_layout")
    before = snapshot([pl, ql])

    got = fastnll.entropy(pl, ql, base=base, axis=axis)

    out_dtype = dtype if qk is None or qk.dtype == dtype else np.dtype(np.float64)
    # SciPy broadcasts before normalising (ref_entropy does it for older SciPy too)
    want = ref_entropy(pk, qk, base=base, axis=axis)
    assert np.shape(got) == np.shape(want)
    if np.ndim(want) == 0:
        assert type(got) is out_dtype.type
    # relative to the size of the terms: sum p log p over a slice (|log p| up to ~log n)
    mag = 10.0 * (1.0 + np.abs(np.where(np.isfinite(want), want, 0.0)))
    assert_close(got, want, out_dtype, mag=mag, err_msg="entropy")
    assert_unchanged(before)


@st.composite
def entropy_cases(draw):
    dtype = draw(FLOAT_DTYPES)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    pk = draw(float_arrays(dtype, shape, 0, 100))
    qk = None
    if draw(st.booleans()):
        qshape = draw(broadcast_into(shape))
        qk = draw(float_arrays(dtype, qshape, 0, 100))
        if draw(st.booleans()):      # swap: pk the smaller operand
            pk, qk = qk, pk
            if pk.ndim == 0:
                pk = pk.reshape(1)
    nd = max(pk.ndim, 0 if qk is None else qk.ndim)
    axis = draw(st.one_of(st.none(), st.integers(-nd, nd - 1)))
    base = draw(st.sampled_from([None, 2.0, 10.0, 0.3]))
    return dtype, pk, qk, axis, base


@ELEMENT_SETTINGS
@given(entropy_cases())
def test_entropy_drawn_elements(case):
    dtype, pk, qk, axis, base = case
    try:
        want = ref_entropy(pk, qk, base=base, axis=axis)
    except ValueError:
        with pytest.raises(ValueError, match="broadcast"):
            fastnll.entropy(pk, qk, base=base, axis=axis)
        return
    got = fastnll.entropy(pk, qk, base=base, axis=axis)
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == dtype
    mag = 1.0 + np.abs(np.where(np.isfinite(want), want, 0))
    assert_close(got, want, dtype, mag=10 * mag, err_msg="entropy")
