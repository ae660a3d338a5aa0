"""entropy and relative entropy on fixed cases against scipy.stats.entropy."""
import math
import warnings

import numpy as np
import pytest

import fastnll
from helpers import assert_close
from reference import ref_entropy

DTYPES = [np.float32, np.float64]


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
    # few classes and at least 8 rows: the rows taken 8 at a time (fnl_entr_cols)
    ((40, 10), None, 1),
    ((40, 10), (40, 10), 1),
    ((40, 10), (10,), 1),
    ((3, 20, 5), (3, 20, 5), 2),
    ((13, 3), (1, 3), -1),
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
    assert_close(got, want, dtype, mag=1.0 + np.abs(want), err_msg="entropy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_few_classes_with_operands_in_other_layouts(dtype):
    # p and q of one shape but different strides (reversed rows, Fortran order, a step)
    rng = np.random.default_rng(21)
    p = rng.uniform(0, 3, (37, 6)).astype(dtype)
    q = rng.uniform(0.1, 3, (37, 6)).astype(dtype)
    for pk, qk in [(p, q[::-1]), (np.asfortranarray(p), q), (p, np.repeat(q, 2, axis=0)[::2]),
                   (p[::-1], q[::-1])]:
        want = ref_entropy(pk, qk, axis=1)
        assert_close(fastnll.entropy(pk, qk, axis=1), want, dtype, mag=1.0 + np.abs(want),
                     err_msg="entropy")
        want = ref_entropy(pk, None, axis=1)
        assert_close(fastnll.entropy(pk, axis=1), want, dtype, mag=1.0 + np.abs(want),
                     err_msg="entropy")


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


@pytest.mark.parametrize("which", ["pk", "qk"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_entry_refused_with_two_threads(which, dtype):
    # The row loops flag negative entries per row, with two threads: each thread's flag must
    # be its own (a shared one let 10-20% of these calls return a number).  Few classes take
    # the loop over groups of rows (fnl_entr_cols), whose row sums are each thread's own too.
    rng = np.random.default_rng(3)
    for shape in ((64, 1000), (8192, 10)):
        good = rng.random(shape).astype(dtype)
        bad = good.copy()
        bad[37, 5] = -0.5
        args = {"pk": bad, "qk": good} if which == "pk" else {"pk": good, "qk": bad}
        with fastnll.threads(2):
            for _ in range(60):
                with pytest.raises(ValueError, match=rf"\b{which}\b.*-0\.5"):
                    fastnll.entropy(axis=1, **args)
            two = fastnll.entropy(good, good[::-1], axis=1)
        with fastnll.threads(1):
            one = fastnll.entropy(good, good[::-1], axis=1)
        np.testing.assert_array_equal(one, two)


def test_negative_entry_named_in_index_order_with_few_classes():
    # Few classes take a transposed view; the error still names the first negative entry in
    # the array's own (C) index order.
    p = np.random.default_rng(4).random((30, 5))
    p[3, 2] = -0.25
    p[20, 1] = -0.75
    with pytest.raises(ValueError, match=r"\bpk\b.*-0\.25"):
        fastnll.entropy(p, axis=1)
    with pytest.raises(ValueError, match=r"\bqk\b.*-0\.25"):
        fastnll.entropy(np.ones((30, 5)), p, axis=1)


@pytest.mark.parametrize("pk,qk", [
    ([0.5, 0.5], [1.0, 1e-320]),            # v / w overflows: log v - log w
    ([1e-300, 1.0, 0.0], [1.0, 1e-10, 0.0]),
    ([0.5, 0.5], [1.0, 0.0]),               # a genuine inf
    ([1.0, 2.0, 3.0], [3.0, 5e-324, 1.0]),
])
def test_relative_entropy_with_subnormal_reference(pk, qk):
    expected = scipy_stats_entropy(pk, qk)
    got = fastnll.entropy(np.array([pk, pk]), np.array([qk, qk]), axis=1)
    np.testing.assert_allclose(got, [expected, expected], rtol=1e-13)


def scipy_stats_entropy(pk, qk):
    from scipy.stats import entropy
    return entropy(pk, qk)
