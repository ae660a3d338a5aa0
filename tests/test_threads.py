"""Results do not depend on the number of threads (bit for bit), and the thread controls."""
import numpy as np
import pytest

import fastnll
from helpers import assert_bitwise_equal, assert_close
from reference import ref_loss

REDUCTIONS = ["mean", "sum", "none"]


def both(f):
    with fastnll.threads(1):
        assert fastnll.get_num_threads() == 1
        one = f()
    with fastnll.threads(2):
        assert fastnll.get_num_threads() == 2
        two = f()
    one = one if isinstance(one, tuple) else (one,)
    two = two if isinstance(two, tuple) else (two,)
    assert len(one) == len(two)
    for a, b in zip(one, two):
        assert_bitwise_equal(a, b)
    return one


# every input has more than 32768 elements, so that the kernels use their threads
CASES = [
    ((64, 3000), None),       # rows
    ((3000, 64), 0),          # columns of a C-ordered matrix
    ((16, 300, 80), None),    # (N, C, d)
    ((4, 70, 300), -1),       # explicit class axis
    ((20000, 5), None),       # few classes: blocks of rows
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
def test_losses_thread_independent(shape, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    ax = 1 if axis is None else axis % len(shape)
    C = shape[ax]
    tshape = shape[:ax] + shape[ax + 1:]
    t = rng.integers(0, C, tshape)
    t.flat[::7] = -100
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    p = np.moveaxis(rng.dirichlet(np.ones(C), size=tshape), -1, ax).astype(dtype)
    for red in REDUCTIONS:
        both(lambda: fastnll.nll_loss(x, t, weight=w, reduction=red, axis=axis,
                                      return_grad=True))
        for eps in (0.0, 0.2):
            out = both(lambda: fastnll.cross_entropy(x, t, weight=w, reduction=red, axis=axis,
                                                     label_smoothing=eps, return_grad=True))
        both(lambda: fastnll.cross_entropy(x, p, weight=w, reduction=red, axis=axis,
                                           label_smoothing=0.1, return_grad=True))
        both(lambda: fastnll.cross_entropy(x, t, reduction=red, axis=axis))
    # and the multi-threaded result is the right one
    exp = ref_loss("ce", x, t, weight=w, reduction="none", label_smoothing=0.2, axis=axis)
    assert_close(out[0], exp[0], dtype)
    assert_close(out[1], exp[1], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES + [((64, 3000), (0, 1)), ((16, 300, 80), (0, 2))],
                         ids=str)
def test_softmax_family_thread_independent(shape, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    ax = 1 if axis is None else axis
    both(lambda: fastnll.softmax(x, axis=ax))
    both(lambda: fastnll.log_softmax(x, axis=ax))
    both(lambda: fastnll.logsumexp(x, axis=ax))
    both(lambda: fastnll.logsumexp(x, axis=ax, b=np.abs(x) - 0.5, return_sign=True))
    both(lambda: fastnll.logsumexp(x))


def test_thread_controls():
    before = fastnll.get_num_threads()
    assert isinstance(before, int) and before >= 1
    with fastnll.threads(3):
        assert fastnll.get_num_threads() == 3
        with fastnll.threads(1):
            assert fastnll.get_num_threads() == 1
        assert fastnll.get_num_threads() == 3
    assert fastnll.get_num_threads() == before
    try:
        fastnll.set_num_threads(2)
        assert fastnll.get_num_threads() == 2
    finally:
        fastnll.set_num_threads(None)
    assert fastnll.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with fastnll.threads(2):
            raise RuntimeError("boom")
    assert fastnll.get_num_threads() == before
