"""Few classes over many rows (packed into class rows), and blocks of contiguous columns,
against NumPy references."""
# The kernels copy blocks of rows into class rows before reducing them (with AVX2 / AVX-512,
# whole tiles of 8 / 16 floats or 4 / 8 doubles at a time, reading a little past a row's
# classes when more rows follow).  These cases put rows inside wider rows (a slice of a wider
# array, so that the bytes past a row's classes are other numbers), row counts that are not
# multiples of a block or a tile, and class counts around the tile widths, and compare with
# float64 references written with NumPy.
import numpy as np
import pytest
import scipy.special

import fastnll
from helpers import assert_close

DTYPES = [np.float32, np.float64]


def _sliced_rows(rng, n, C, dtype, spare=13):
    """An (n, C) view whose rows are the first C entries of wider rows full of large values."""
    wide = rng.standard_normal((n, C + spare)) * 3
    wide[:, C:] = 1e6          # would dominate any log-sum-exp it leaked into
    return wide.astype(dtype)[:, :C]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [3, 4, 5, 7, 8, 9, 16, 17, 24, 27, 32])
@pytest.mark.parametrize("n", [1, 15, 64, 65, 1000])
def test_sliced_rows_against_numpy(n, C, dtype, rng):
    x = _sliced_rows(rng, n, C, dtype)
    assert not x.flags.c_contiguous or n == 1
    x64 = x.astype(np.float64)
    before = x.copy()
    lse = scipy.special.logsumexp(x64, axis=1)
    assert_close(fastnll.logsumexp(x, axis=1), lse, dtype)
    assert_close(fastnll.softmax(x, axis=1), np.exp(x64 - lse[:, None]), dtype)
    assert_close(fastnll.log_softmax(x, axis=1), x64 - lse[:, None], dtype)
    t = rng.integers(0, C, n)
    rows = lse - x64[np.arange(n), t]
    loss, grad = fastnll.cross_entropy(x, t, reduction="none", return_grad=True)
    assert_close(loss, rows, dtype)
    expected_grad = np.exp(x64 - lse[:, None])
    expected_grad[np.arange(n), t] -= 1
    assert_close(grad, expected_grad, dtype)
    assert_close(fastnll.cross_entropy(x, t), rows.mean(), dtype)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_last_rows_of_an_exact_allocation(dtype, rng):
    # the array ends right after its last row: nothing may be read past it (the sanitizer
    # run catches a stray read; the values catch a stray write)
    for n in (16, 64, 80, 1000):
        x = (rng.standard_normal((n, 27)) * 3).astype(dtype)
        x64 = x.astype(np.float64)
        lse = scipy.special.logsumexp(x64, axis=1)
        assert_close(fastnll.logsumexp(x, axis=1), lse, dtype)
        t = rng.integers(0, 27, n)
        assert_close(fastnll.cross_entropy(x, t, reduction="none"),
                     lse - x64[np.arange(n), t], dtype)


# Contiguous columns (the class axis with the larger stride: axis 0 of a C-ordered matrix,
# PyTorch's (N, C, d) layout) are reduced in blocks of 256 columns, and with AVX2 / AVX-512 in
# register groups of 32 / 64 columns: inner sizes around those widths, several outer indices,
# and inputs whose exp arguments leave the range of the short exp at x86-64-v3 (below -87).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inner", [1, 31, 33, 255, 256, 257, 600])
@pytest.mark.parametrize("spread", [3, 60])
def test_contiguous_column_blocks(inner, spread, dtype, rng):
    N, C = 3, 70
    x = (rng.standard_normal((N, C, inner)) * spread).astype(dtype)
    x[0, 5, :: 7] = -np.inf
    x64 = x.astype(np.float64)
    lse = scipy.special.logsumexp(x64, axis=1)
    # log-softmax as (x - max) - log(sum exp(x - max)), which keeps the reference's own
    # cancellation small where the logits are large
    z = x64 - x64.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    before = x.copy()
    assert_close(fastnll.logsumexp(x, axis=1), lse, dtype)
    assert_close(fastnll.softmax(x, axis=1), np.exp(log_p), dtype)
    assert_close(fastnll.log_softmax(x, axis=1), log_p, dtype)
    t = rng.integers(0, C, (N, inner))
    loss, grad = fastnll.cross_entropy(x, t, reduction="none", return_grad=True)
    assert_close(loss, -np.take_along_axis(log_p, t[:, None], axis=1)[:, 0], dtype)
    expected_grad = np.exp(log_p)
    np.put_along_axis(expected_grad, t[:, None],
                      np.take_along_axis(expected_grad, t[:, None], axis=1) - 1, axis=1)
    assert_close(grad, expected_grad, dtype)
    # axis 0 of a C-ordered matrix takes the same traversal
    m = x[1]
    assert_close(fastnll.logsumexp(m, axis=0), lse[1], dtype)
    np.testing.assert_array_equal(x, before)
    with fastnll.threads(1):
        one = fastnll.cross_entropy(x, t, return_grad=True)
    with fastnll.threads(2):
        two = fastnll.cross_entropy(x, t, return_grad=True)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_columns_whose_maxima_rise_in_some_chunks(dtype, rng):
    """The running maxima of contiguous columns rise in every chunk of classes for some
    columns (a ramp), at a few chunks for others (jumps), and at the first chunks only for the
    rest: col_lse_chunk rescales each piece of 64 columns one column at a time or all at
    once, depending on how many rise; against SciPy, and the same bits on 1 and 2 threads."""
    C, inner = 300, 700
    x64 = rng.standard_normal((C, inner)) * 2
    # (rises by more than float32's exp reaches, 88, unless each is rescaled)
    x64[:, 100:300] += np.linspace(-200.0, 200.0, C)[:, None]
    x64[::37, 400:430:10] += np.arange(0.0, 1000.0, 112.0)[:, None]
    x64[250:, 500] = 160.0
    x = x64.astype(dtype)
    x64 = x.astype(np.float64)
    lse = scipy.special.logsumexp(x64, axis=0)
    assert_close(fastnll.logsumexp(x, axis=0), lse, dtype)
    assert_close(fastnll.softmax(x, axis=0), np.exp(x64 - lse), dtype)
    t = rng.integers(0, C, inner)
    loss = fastnll.cross_entropy(x[None], t[None], reduction="none")[0]
    assert_close(loss, lse - x64[t, np.arange(inner)], dtype)
    with fastnll.threads(1):
        one = fastnll.logsumexp(x, axis=0)
    with fastnll.threads(2):
        two = fastnll.logsumexp(x, axis=0)
    np.testing.assert_array_equal(one, two)
