"""logsumexp, softmax and log_softmax on fixed cases against scipy.special (and PyTorch)."""
import numpy as np
import pytest
import scipy.special as sp

import fastnll
from helpers import LAYOUTS, assert_close, check_layout, make_layout
from reference import scipy_ref

DTYPES = [np.float32, np.float64]
FUNCS = ["logsumexp", "softmax", "log_softmax"]


def fn(name):
    return getattr(fastnll, name)


def result_dtype(a):
    return np.float32 if np.asarray(a).dtype == np.float32 else np.float64


def data(rng, shape, dtype=np.float64, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------ shapes and axes ----

SHAPE_AXES = [
    ((7,), None), ((7,), 0), ((7,), -1), ((1,), 0),
    ((5, 6), None), ((5, 6), 0), ((5, 6), 1), ((5, 6), -1), ((5, 6), -2), ((5, 6), (0, 1)),
    ((5, 6), (1, 0)), ((1, 6), 0), ((5, 1), 1),
    ((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), 2), ((3, 4, 5), (0, 2)), ((3, 4, 5), (2, 0)),
    ((3, 4, 5), (1, 2)), ((3, 4, 5), (0, 1)), ((3, 4, 5), (-1, -3)), ((3, 4, 5), None),
    ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), (2, 3)), ((2, 3, 4, 5), (0, 2)),
    ((2, 3, 4, 5), (1, 3)), ((2, 3, 4, 5), (0, 1, 3)), ((2, 3, 4, 5), None),
    ((2, 70, 3), 1), ((3, 2, 100), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", SHAPE_AXES, ids=str)
@pytest.mark.parametrize("name", FUNCS)
def test_matches_scipy(name, shape, axis, dtype, rng):
    a = data(rng, shape, dtype)
    got = fn(name)(a, axis=axis)
    assert_close(got, scipy_ref(name, a, axis=axis), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axes", [
    ((6, 7), (0, 1, None)),
    ((3, 4, 5), (0, 1, 2, (0, 2))),
    ((2, 3, 4, 5), (1, (2, 3))),
    ((2, 40, 70), (1,)),     # strided columns packed in two chunks of classes, partial block
    ((70, 27), (1,)),        # few classes: rows packed into unit-stride class rows
], ids=str)
@pytest.mark.parametrize("name", FUNCS)
def test_layouts(name, shape, axes, layout, dtype, rng):
    a = data(rng, shape, dtype)
    arr = make_layout(a, layout)
    check_layout(arr, a, layout)
    before = arr.copy()
    for axis in axes:
        got = fn(name)(arr, axis=axis)
        assert_close(got, scipy_ref(name, a, axis=axis), dtype, err_msg=f"axis={axis}")
    np.testing.assert_array_equal(arr, before)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_output_is_fresh_c_array_with_input_shape(name, rng):
    a = data(rng, (4, 5, 6)).transpose(2, 0, 1)[::-1]
    for axis in (0, 1, 2, (0, 2), None):
        out = fn(name)(a, axis=axis)
        assert out.shape == a.shape
        assert not np.shares_memory(out, a)
        assert_close(out, scipy_ref(name, a, axis=axis), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_sums_to_one(dtype, rng):
    a = data(rng, (4, 9, 5), dtype)
    for axis in (0, 1, 2, (0, 2)):
        s = fastnll.softmax(a, axis=axis).astype(np.float64).sum(axis=axis)
        np.testing.assert_allclose(s, 1.0, rtol=1e-5 if dtype == np.float32 else 1e-13)


# ------------------------------------------------------------------- dtypes, inputs ----

@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint16, np.bool_])
def test_integer_and_bool_input_computes_in_float64(name, dtype, rng):
    a = rng.integers(0, 5, size=(4, 6)).astype(dtype)
    for axis in (None, 0, 1):
        got = fn(name)(a, axis=axis)
        assert np.asarray(got).dtype == np.float64
        assert_close(got, scipy_ref(name, a, axis=axis), np.float64)


@pytest.mark.parametrize("name", FUNCS)
def test_list_input(name):
    a = [[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]]
    for axis in (None, 0, 1):
        got = fn(name)(a, axis=axis)
        assert_close(got, scipy_ref(name, np.array(a), axis=axis), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_result_types(dtype, rng):
    a = data(rng, (3, 4), dtype)
    r = fastnll.logsumexp(a)
    assert isinstance(r, np.floating) and np.asarray(r).dtype == dtype and np.ndim(r) == 0
    assert fastnll.logsumexp(a, axis=1).dtype == dtype
    assert fastnll.softmax(a, axis=1).dtype == dtype
    assert fastnll.log_softmax(a).dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [
    ((5, 6), None), ((5, 6), 0), ((5, 6), 1), ((3, 4, 5), (0, 2)), ((3, 4, 5), 1),
    ((2, 3, 4, 5), (1, 2)), ((7,), 0), ((7,), None),
], ids=str)
def test_keepdims(shape, axis, dtype, rng):
    a = data(rng, shape, dtype)
    got = fastnll.logsumexp(a, axis=axis, keepdims=True)
    exp = scipy_ref("logsumexp", a, axis=axis, keepdims=True)
    assert np.shape(got) == np.shape(exp)
    assert_close(got, exp, dtype)
    got_s, sgn = fastnll.logsumexp(a, axis=axis, keepdims=True, return_sign=True)
    assert np.shape(got_s) == np.shape(sgn) == np.shape(exp)


# ------------------------------------------------------------------------------- b ----

@pytest.mark.parametrize("return_sign", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_b_against_scipy(axis, return_sign, rng):
    a = data(rng, (5, 6))
    bs = {
        "ones": np.ones((5, 6)),
        "positive": rng.uniform(0.1, 3.0, (5, 6)),
        "zeros_some": np.where(rng.random((5, 6)) < 0.4, 0.0, 1.5),
        "all_zero": np.zeros((5, 6)),
        "negative": -rng.uniform(0.1, 3.0, (5, 6)),
        "mixed_sign": rng.uniform(-2, 2, (5, 6)),
        "row_C": rng.uniform(-1, 2, (6,)),            # (C,) broadcast against (N, C)
        "col": rng.uniform(0.5, 2, (5, 1)),
        "scalar": np.float64(2.5),
        "neg_scalar": -0.5,
    }
    for key, b in bs.items():
        got = fastnll.logsumexp(a, axis=axis, b=b, return_sign=return_sign)
        exp = scipy_ref("logsumexp", a, axis=axis, b=b, return_sign=return_sign)
        if return_sign:
            assert_close(got[0], exp[0], np.float64, err_msg=key)
            assert_close(got[1], exp[1], np.float64, err_msg=key)
        else:
            assert_close(got, exp, np.float64, err_msg=key)


def test_b_broadcasts_a():
    a = np.array([0.0, 1.0, 2.0])
    b = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 0.0], [1.0, -1.0, 0.5]])
    got, sgn = fastnll.logsumexp(a, b=b, axis=1, return_sign=True)
    exp, esgn = scipy_ref("logsumexp", a, b=b, axis=1, return_sign=True)
    assert got.shape == (3,)
    assert_close(got, exp, np.float64)
    assert_close(sgn, esgn, np.float64)


def test_b_zero_weight_drops_inf_and_nan():
    a = np.array([[np.inf, 1.0, np.nan, 2.0],
                  [-np.inf, np.nan, 0.0, np.inf],
                  [np.nan, np.inf, -np.inf, 3.0]])
    b = np.array([[0.0, 1.0, 0.0, 1.0],
                  [1.0, 0.0, 2.0, 0.0],
                  [0.0, 0.0, 0.0, -1.0]])
    got, sgn = fastnll.logsumexp(a, b=b, axis=1, return_sign=True)
    assert_close(got, [np.log(np.e + np.e ** 2), np.log(2.0), 3.0], np.float64)
    assert_close(sgn, [1.0, 1.0, -1.0], np.float64)
    exp, esgn = scipy_ref("logsumexp", a, b=b, axis=1, return_sign=True)
    assert_close(got, exp, np.float64)
    assert_close(sgn, esgn, np.float64)
    # without return_sign a negative sum is nan
    assert_close(fastnll.logsumexp(a, b=b, axis=1), [got[0], got[1], np.nan], np.float64)


def test_b_negative_sum_and_cancellation():
    a = np.log(np.array([[1.0, 2.0], [3.0, 1.0], [2.0, 2.0]]))
    b = np.array([[1.0, -1.0], [1.0, -1.0], [1.0, -1.0]])
    got, sgn = fastnll.logsumexp(a, b=b, axis=1, return_sign=True)
    assert_close(got, [0.0, np.log(2.0), -np.inf], np.float64)
    assert_close(sgn, [-1.0, 1.0, 0.0], np.float64)
    plain = fastnll.logsumexp(a, b=b, axis=1)
    assert np.isnan(plain[0]) and np.isfinite(plain[1])


def _step_layout(x):
    """x in a layout whose axes do not merge (every other entry of a larger array)."""
    big = np.zeros((2 * x.shape[0],) + x.shape[1:], x.dtype)
    big[::2] = x
    return big[::2]


@pytest.mark.parametrize("x,b", [
    # a row holding inf and -inf with nonzero weights: SciPy's sum is inf - inf = nan
    (np.float32([[[np.inf, -np.inf]], [[1000.064, 1000.0105]]]),
     np.float32([[0.7553551, -0.32030708]])),
    # two maxima of 1e30 whose weights nearly cancel in two separate rows: the one sum is
    # 1e30 + log(0.25), a sum of rounded per-row results would cancel to nan
    (np.float32([[1e30, 0.1], [1e30, 0.2], [0.3, 0.4]]),
     np.float32([[1.0, 0.5], [-0.75, 0.25], [0.5, -0.25]])),
])
def test_b_over_axes_that_do_not_merge(x, b):
    # regression: with weights over several axes of a strided (or broadcast) input,
    # logsumexp added per-row results weighted by their signs, in the input's precision
    # (found by test_hypothesis_softmax_family.py::test_logsumexp_with_b with more examples)
    xs = _step_layout(x)
    b_full = np.broadcast_to(b, x.shape)
    want = fastnll.logsumexp(np.ascontiguousarray(x), b=b_full, return_sign=True)
    got = fastnll.logsumexp(xs, b=b, return_sign=True)
    np.testing.assert_array_equal(got, want)
    x64 = np.where(b_full == 0, -np.inf, x.astype(np.float64))
    exp, esgn = scipy_ref("logsumexp", x64, b=b_full.astype(np.float64), return_sign=True)
    assert_close(got[0], exp, np.float32)
    assert_close(got[1], esgn, np.float32)


@pytest.mark.parametrize("adt,bdt,expected", [
    (np.float32, np.float32, np.float32),
    (np.float32, np.float64, np.float64),
    (np.float64, np.float32, np.float64),
    (np.float32, np.int64, np.float64),
    (np.int64, np.float32, np.float64),
    (np.int32, np.int32, np.float64),
])
def test_b_dtype_promotion(adt, bdt, expected, rng):
    a = rng.integers(-3, 4, size=(4, 5)).astype(adt)
    b = rng.integers(1, 4, size=(4, 5)).astype(bdt)
    for axis in (None, 1):
        got = fastnll.logsumexp(a, b=b, axis=axis)
        assert np.asarray(got).dtype == expected
        assert_close(got, scipy_ref("logsumexp", a, b=b, axis=axis), expected)


def test_b_float32_values(rng):
    a = data(rng, (6, 40), np.float32)
    b = rng.uniform(-0.2, 2, (6, 40)).astype(np.float32)
    got, sgn = fastnll.logsumexp(a, b=b, axis=1, return_sign=True)
    exp, esgn = scipy_ref("logsumexp", a, b=b, axis=1, return_sign=True)
    assert got.dtype == sgn.dtype == np.float32
    assert_close(got, exp, np.float32)
    assert_close(sgn, esgn, np.float32)


# ---------------------------------------------------------------------- return_sign ----

@pytest.mark.parametrize("dtype", DTYPES)
def test_return_sign_without_b(dtype):
    a = np.array([[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf], [np.nan, 1.0, 2.0],
                  [np.inf, 0.0, 1.0]], dtype=dtype)
    got, sgn = fastnll.logsumexp(a, axis=1, return_sign=True)
    exp, esgn = scipy_ref("logsumexp", a, axis=1, return_sign=True)
    assert sgn.dtype == dtype
    assert_close(got, exp, dtype)
    assert_close(sgn, esgn, dtype)
    assert_close(sgn, [1.0, 0.0, np.nan, 1.0], dtype)
    # column path: the same rows as columns of a C-ordered matrix
    got, sgn = fastnll.logsumexp(np.ascontiguousarray(a.T), axis=0, return_sign=True)
    assert_close(got, exp, dtype)
    assert_close(sgn, [1.0, 0.0, np.nan, 1.0], dtype)


# ----------------------------------------------------------------------- edge cases ----

EDGE_ROWS = np.array([
    [1.0, 2.0, 3.0, 4.0],
    [-np.inf, -np.inf, -np.inf, -np.inf],
    [np.inf, 1.0, 2.0, 3.0],
    [np.inf, np.inf, 1.0, 2.0],
    [np.inf, -np.inf, 0.0, 0.0],
    [np.nan, 1.0, 2.0, 3.0],
    [np.nan, np.inf, 0.0, 0.0],
    [np.nan, -np.inf, -np.inf, -np.inf],
    [-np.inf, 0.0, 1.0, -np.inf],
    [1e30, 0.0, -1e30, 5.0],
    [-1e30, -1e30, -1e30, -1e30],
    [-1e30, 0.0, 1.0, 2.0],
    [1e30, 1e30, 1e30, -1e30],
    [0.0, -40.0, -50.0, -60.0],
    [3.0, 3.0, 3.0, 3.0],
    [80.0, 79.0, 0.0, -100.0],
    [-100.0, -101.0, -105.0, -120.0],
])


def _edge_rows(dtype):
    a = EDGE_ROWS.astype(dtype)
    if dtype == np.float64:
        extra = np.array([[710.0, 709.0, 0.0, -745.0], [-745.0, -746.0, -750.0, -800.0]])
        a = np.concatenate([a, extra])
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arrangement", ["rows", "columns", "nchw"])
@pytest.mark.parametrize("name", FUNCS)
def test_edge_values(name, arrangement, dtype):
    rows = _edge_rows(dtype)
    exp = scipy_ref(name, rows, axis=1)
    if arrangement == "rows":
        got = fn(name)(rows, axis=1)
    elif arrangement == "columns":             # axis 0 of a C-ordered matrix
        got = fn(name)(np.ascontiguousarray(rows.T), axis=0)
        got = got.T
    else:                                      # (N, C, d) with d > 1
        x = np.ascontiguousarray(np.stack([rows, rows[::-1]], axis=-1))   # (R, C, 2)
        got3 = fn(name)(x, axis=1)
        exp3 = np.stack([exp, exp[::-1]], axis=-1)
        assert_close(got3, exp3, dtype)
        return
    assert_close(got, exp, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_values_by_hand(dtype):
    x = np.array([np.inf, 1.0], dtype=dtype)
    assert_close(fastnll.log_softmax(x), [np.nan, -np.inf], dtype)
    assert_close(fastnll.softmax(x), [np.nan, np.nan], dtype)
    assert_close(fastnll.logsumexp(x), np.inf, dtype)
    x = np.array([1e30, -1e30], dtype=dtype)
    assert_close(fastnll.softmax(x), [1.0, 0.0], dtype)
    assert_close(fastnll.log_softmax(x), [0.0, -2e30], dtype)
    assert_close(fastnll.logsumexp(x), 1e30, dtype)
    x = np.array([-1e30, -1e30], dtype=dtype)
    assert_close(fastnll.logsumexp(x), -1e30, dtype)
    assert_close(fastnll.softmax(x), [0.5, 0.5], dtype)
    x = np.full(3, -np.inf, dtype=dtype)
    assert_close(fastnll.logsumexp(x), -np.inf, dtype)
    assert_close(fastnll.softmax(x), [np.nan] * 3, dtype)


def test_small_results_keep_precision():
    # log(1 + e^-40) is about 4.25e-18: log(sum) would round it to 0, log1p does not
    for d in (40.0, 50.0, 700.0):
        x = np.array([0.0, -d])
        assert_close(fastnll.logsumexp(x), np.log1p(np.exp(-d)), np.float64, atol=0)
        assert_close(fastnll.logsumexp(x[None, :].repeat(3, 0), axis=1),
                     [np.log1p(np.exp(-d))] * 3, np.float64, atol=0)
        assert_close(fastnll.logsumexp(np.ascontiguousarray(x[:, None].repeat(3, 1)), axis=0),
                     [np.log1p(np.exp(-d))] * 3, np.float64, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_zero_dim_input(name, dtype):
    a = np.array(1.5, dtype=dtype)
    got = fn(name)(a)
    assert np.ndim(got) == 0
    assert_close(got, scipy_ref(name, a), dtype)
    assert_close(fn(name)(np.array(-np.inf, dtype=dtype)),
                 scipy_ref(name, np.array(-np.inf)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_logsumexp(dtype):
    assert_close(fastnll.logsumexp(np.zeros(0, dtype)), -np.inf, dtype)
    assert_close(fastnll.logsumexp(np.zeros((0, 3), dtype)), -np.inf, dtype)
    assert_close(fastnll.logsumexp(np.zeros((3, 0), dtype), axis=1), [-np.inf] * 3, dtype)
    assert_close(fastnll.logsumexp(np.zeros((0, 3), dtype), axis=0), [-np.inf] * 3, dtype)
    got = fastnll.logsumexp(np.zeros((0, 3), dtype), axis=1)
    assert got.shape == (0,) and got.dtype == dtype
    got = fastnll.logsumexp(np.zeros((2, 0, 3), dtype), axis=1, keepdims=True)
    assert_close(got, np.full((2, 1, 3), -np.inf), dtype)
    got = fastnll.logsumexp(np.zeros((3, 0), dtype), axis=1, b=np.zeros((3, 0), dtype))
    assert_close(got, [-np.inf] * 3, dtype)
    got, sgn = fastnll.logsumexp([], return_sign=True)
    assert got == -np.inf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((0,), None), ((0,), 0), ((0, 3), 1), ((0, 3), 0),
                                        ((3, 0), 1), ((3, 0), 0), ((3, 0), None),
                                        ((2, 0, 4), (0, 2))], ids=str)
def test_empty_softmax(name, shape, axis, dtype):
    got = fn(name)(np.zeros(shape, dtype), axis=axis)
    assert isinstance(got, np.ndarray)
    assert got.shape == shape and got.dtype == dtype


# ------------------------------------------------------------------- larger inputs ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [
    ((64, 3000), 1),          # rows longer than a chunk, multi-threaded
    ((3000, 64), 0),          # columns of a C-ordered matrix
    ((64, 3000), 0),
    ((16, 300, 80), 1),       # (N, C, d): column blocks of 64 and a partial one
    ((80, 300, 16), (0, 2)),
    ((20000, 5), 1),          # few classes: blocks of rows
    ((5, 20000), 0),
], ids=str)
@pytest.mark.parametrize("name", FUNCS)
def test_medium(name, shape, axis, dtype, rng):
    a = data(rng, shape, dtype)
    assert_close(fn(name)(a, axis=axis), scipy_ref(name, a, axis=axis), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_running_maximum_rescaled(name, dtype, rng):
    # the maximum grows from chunk to chunk (rows: 1024 elements; columns: 32 classes)
    C = 2500
    ramp = np.linspace(-30.0, 30.0, C)
    x = (ramp + rng.standard_normal((3, C))).astype(dtype)
    assert_close(fn(name)(x, axis=1), scipy_ref(name, x, axis=1), dtype)
    x = (ramp[::-1] + rng.standard_normal((3, C))).astype(dtype)
    assert_close(fn(name)(x, axis=1), scipy_ref(name, x, axis=1), dtype)
    ramp = np.linspace(-20.0, 20.0, 200)
    x3 = (ramp[None, :, None] + rng.standard_normal((2, 200, 70))).astype(dtype)
    assert_close(fn(name)(x3, axis=1), scipy_ref(name, x3, axis=1), dtype)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_one_exp_and_general_path_mixed(in_place, dtype, rng):
    # Rows with a finite maximum take the one-exp path (maximum, then exp(x - M) written and
    # summed, then scaled); rows with +inf, all -inf, or nan beside them take the general
    # one, row by row within one call, in place or not.
    C = 3000
    x = (rng.standard_normal((6, C)) * 4).astype(dtype)
    x[0, -1] = 40          # the maximum in the last 1024-element chunk
    x[1, 5] = np.inf
    x[2] = -np.inf
    x[3, 100] = np.nan
    x[4, ::2] = -np.inf    # half the terms exp(-inf) = 0
    expected = scipy_ref("softmax", x, axis=1)
    if in_place:
        got = x.copy()
        assert fastnll.softmax(got, axis=1, out=got) is not None
    else:
        got = fastnll.softmax(x, axis=1)
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [
    ((100, 1300), 0), ((33, 3000), 0), ((3, 70, 600), 1), ((2, 40, 257), 1),
], ids=str)
def test_logsumexp_column_strips(shape, axis, dtype, rng):
    # Contiguous columns of more than one 256-column block and more than 32 classes are read
    # by strips of blocks, chunk by chunk across the strip: each column must get the same
    # bits as when its block is reduced alone (one block: the plain column traversal), with 1
    # or 2 threads, and SciPy's value.
    x = data(rng, shape, dtype)
    x[(0,) * (len(shape) - 1) + (5,)] = np.inf
    x[(1,) * (len(shape) - 1) + (7,)] = np.nan
    x[(slice(None),) * (len(shape) - 1) + (9,)] = -np.inf
    with fastnll.threads(1):
        one = fastnll.logsumexp(x, axis=axis)
    with fastnll.threads(2):
        two = fastnll.logsumexp(x, axis=axis)
    np.testing.assert_array_equal(one, two)
    for k0 in range(0, shape[-1] - 1, 256):   # (one column alone is a row, summed otherwise)
        alone = fastnll.logsumexp(np.ascontiguousarray(x[..., k0:k0 + 256]), axis=axis)
        np.testing.assert_array_equal(one[..., k0:k0 + 256], alone)
    assert_close(one, scipy_ref("logsumexp", x, axis=axis), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_offsets(dtype, rng):
    x = (1e4 + rng.standard_normal((4, 50))).astype(dtype)
    for name in FUNCS:
        assert_close(fn(name)(x, axis=1), scipy_ref(name, x, axis=1), dtype)
        assert_close(fn(name)(np.ascontiguousarray(x.T), axis=0).T,
                     scipy_ref(name, x, axis=1), dtype)


# --------------------------------------------------------------------------- torch ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [
    ((9,), None), ((5, 6), 1), ((5, 6), 0), ((5, 6), None), ((2, 3, 4, 5), 1),
    ((2, 3, 4, 5), (1, 3)), ((2, 3, 4, 5), -1), ((4, 700), 1),
], ids=str)
def test_against_torch(torch, shape, axis, dtype, rng):
    a = data(rng, shape, dtype)
    t = torch.tensor(a.astype(np.float64))
    dims = tuple(range(a.ndim)) if axis is None else axis
    assert_close(fastnll.logsumexp(a, axis=axis), torch.logsumexp(t, dim=dims).numpy(), dtype)
    if isinstance(axis, tuple):
        return
    if axis is None:
        flat = t.reshape(-1)
        sm = torch.softmax(flat, 0).reshape(a.shape)
        lsm = torch.log_softmax(flat, 0).reshape(a.shape)
    else:
        sm = torch.softmax(t, axis)
        lsm = torch.log_softmax(t, axis)
    assert_close(fastnll.softmax(a, axis=axis), sm.numpy(), dtype)
    assert_close(fastnll.log_softmax(a, axis=axis), lsm.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_empty_axis_tuple(name, dtype, rng):
    # axis=() reduces over no axis: logsumexp is the identity, softmax 1, log_softmax 0
    a = data(rng, (3, 4), dtype)
    a[0, 0] = -np.inf
    got = fn(name)(a, axis=())
    assert got.shape == a.shape
    assert_close(got, scipy_ref(name, a, axis=()), dtype)
    got = fastnll.logsumexp(a, axis=(), keepdims=True)
    assert_close(got, a, dtype)


# ------------------------------------------------------------------- scalar input ----

def test_softmax_of_a_scalar_is_a_scalar_as_in_scipy():
    for f, ref in ((fastnll.softmax, sp.softmax), (fastnll.log_softmax, sp.log_softmax)):
        got, want = f(3.0), ref(3.0)
        assert np.ndim(got) == 0 and not isinstance(got, np.ndarray), type(got)
        assert float(got) == float(want)
