"""fastnll against the live SciPy oracle, on the cases of SciPy's own test suites.

The inputs below are taken from scipy/special/tests/test_logsumexp.py and
scipy/stats/tests/test_entropy.py (plus the `entropy` registrations in
scipy/stats/tests/test_axis_nan_policy.py). Every case calls SciPy and fastnll on the
same input and requires the same result type, dtype and shape, the same NaN/inf
positions, values within rtol 1e-6 (float32) or 1e-12 (float64), and the same
exception type where SciPy raises.

Not ported, because they do not apply to fastnll's real-input NumPy API:
- array-API backends, devices and `xp` fixtures (fastnll takes NumPy input only);
- complex input (test_wrap_radians, test_logsumexp_complex_sign, test_gh21610,
  test_gh21709_small_imaginary, the complex entries of test_gh22601, the complex dtypes
  of test_dtypes_a/test_dtypes_ab, the 1j case of test_device): TypeError by design;
- float16 dtype expectations: none of the ported cases use float16 (float32 by design);
- differential_entropy (not provided by fastnll);
- nan_policy='omit'/'raise' and keepdims of stats.entropy (fastnll.entropy has no
  such parameters).
"""
import math
import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastnll

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ---------------------------------------------------------------- comparison helpers

def _rtol(dtype):
    return 1e-6 if dtype == np.float32 else 1e-12


def _compare_one(res, ref):
    assert res is not None and ref is not None
    assert type(res) is type(ref), f"result type {type(res)} != SciPy's {type(ref)}"
    res_a, ref_a = np.asarray(res), np.asarray(ref)
    assert res_a.dtype == ref_a.dtype, f"dtype {res_a.dtype} != SciPy's {ref_a.dtype}"
    assert res_a.shape == ref_a.shape, f"shape {res_a.shape} != SciPy's {ref_a.shape}"
    assert ref_a.dtype.kind == "f"
    np.testing.assert_array_equal(np.isnan(res_a), np.isnan(ref_a))
    np.testing.assert_array_equal(np.isposinf(res_a), np.isposinf(ref_a))
    np.testing.assert_array_equal(np.isneginf(res_a), np.isneginf(ref_a))
    np.testing.assert_allclose(res_a, ref_a, rtol=_rtol(ref_a.dtype), atol=0)


def _scipy(fn, args, kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def check(name, *args, **kwargs):
    """Call fastnll.<name> and SciPy's <name> on the same input and compare them.

    Returns SciPy's result, so that a caller can also pin it to the literal that
    SciPy's own test expects (guarding against a broken oracle)."""
    ref_fn = {"logsumexp": scipy.special.logsumexp,
              "softmax": scipy.special.softmax,
              "log_softmax": scipy.special.log_softmax,
              "entropy": scipy.stats.entropy}[name]
    ref = _scipy(ref_fn, args, kwargs)
    with np.errstate(all="ignore"):
        res = getattr(fastnll, name)(*args, **kwargs)
    if isinstance(ref, tuple):
        assert isinstance(res, tuple) and len(res) == len(ref)
        for r, e in zip(res, ref):
            _compare_one(r, e)
    else:
        _compare_one(res, ref)
    return ref


def check_raises(name, *args, **kwargs):
    """SciPy must raise on this input, and fastnll must raise the same type."""
    ref_fn = {"logsumexp": scipy.special.logsumexp,
              "entropy": scipy.stats.entropy}[name]
    with pytest.raises(Exception) as ref_info:
        _scipy(ref_fn, args, kwargs)
    with pytest.raises(Exception) as res_info:
        getattr(fastnll, name)(*args, **kwargs)
    assert type(res_info.value) is type(ref_info.value), (
        f"fastnll raised {type(res_info.value).__name__}: {res_info.value}; "
        f"SciPy raised {type(ref_info.value).__name__}: {ref_info.value}")


def test_harness_is_not_vacuous():
    # the functions under test are fastnll's own, not SciPy's
    for name, ref in [("logsumexp", scipy.special.logsumexp),
                      ("softmax", scipy.special.softmax),
                      ("log_softmax", scipy.special.log_softmax),
                      ("entropy", scipy.stats.entropy)]:
        assert getattr(fastnll, name) is not ref
    # the comparison catches a value, dtype, shape, type or nan-position difference
    x = np.array([1.0, 2.0])
    with pytest.raises(AssertionError):
        _compare_one(x * (1 + 1e-10), x)
    with pytest.raises(AssertionError):
        _compare_one(x.astype(np.float32), x)
    with pytest.raises(AssertionError):
        _compare_one(x[:, None], x)
    with pytest.raises(AssertionError):
        _compare_one(np.float64(1.0), np.array(1.0))
    with pytest.raises(AssertionError):
        _compare_one(np.array([np.nan, 1.0]), np.array([np.inf, 1.0]))
    with pytest.raises(pytest.fail.Exception):
        check_raises("entropy", np.ones(3))  # SciPy does not raise here


# ---------------------------------------------------------------- logsumexp

class TestLogSumExp:
    def test_empty(self):
        ref = check("logsumexp", np.asarray([]))
        assert ref == -np.inf

    def test_large_inputs(self):
        check("logsumexp", np.arange(200.0))
        ref = check("logsumexp", np.asarray([1000.0, 1000.0]))
        assert math.isclose(ref, 1000.0 + math.log(2.0), rel_tol=1e-15)
        ref = check("logsumexp", np.full((1000,), 10000))
        assert math.isclose(ref, 10000.0 + math.log(1000), rel_tol=1e-15)

    @pytest.mark.parametrize("axis", [None, 0, 1])
    def test_tiny_values_stacked(self, axis):
        logx = np.log(np.full(1000000, 1e-40))
        check("logsumexp", np.stack([logx, logx]), axis=axis)

    @pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
    def test_special_value(self, value):
        check("logsumexp", np.asarray([value]))

    def test_all_minus_inf(self):
        check("logsumexp", np.asarray([-np.inf, -np.inf]))

    @pytest.mark.parametrize("kwargs", [dict(axis=-1), dict(axis=-1, keepdims=True),
                                        dict(axis=(-1, -2))])
    def test_mixed_magnitudes(self, kwargs):
        a = np.asarray([[1e10, 1e-10], [-1e10, -np.inf]])
        check("logsumexp", a, **kwargs)

    def test_b(self):
        check("logsumexp", np.arange(200.0), b=np.arange(200.0, 0.0, -1.0))

    def test_b_int_a(self):
        ref = check("logsumexp", np.asarray([1000, 1000]), b=np.asarray([1.2, 1.2]))
        assert math.isclose(ref, 1000 + math.log(2 * 1.2), rel_tol=1e-15)

    @pytest.mark.parametrize("axis", [None, 0, 1])
    def test_b_tiny_values_stacked(self, axis):
        logx = np.log(np.full(100000, 1e-40))
        b = np.linspace(1, 1000, 100000)
        check("logsumexp", np.stack((logx, logx)), b=np.stack((b, b)), axis=axis)

    def test_sign(self):
        r, s = check("logsumexp", np.asarray([1, 1, 1]), b=np.asarray([1, -1, -1]),
                     return_sign=True)
        assert s == -1.0

    def test_sign_zero(self):
        r, s = check("logsumexp", np.asarray([1, 1]), b=np.asarray([1, -1]),
                     return_sign=True)
        assert r == -np.inf and s == 0

    @pytest.mark.parametrize("axis", [2, (1, 3)])
    @pytest.mark.parametrize("return_sign", [False, True])
    def test_shape(self, axis, return_sign):
        a = np.ones((1, 2, 3, 4))
        check("logsumexp", a, axis=axis, b=np.ones_like(a), return_sign=return_sign)

    def test_b_zero(self):
        ref = check("logsumexp", np.asarray([1, 10000]), b=np.asarray([1, 0]))
        assert math.isclose(ref, 1.0, rel_tol=1e-15)

    def test_b_broadcast_shape(self):
        check("logsumexp", np.zeros((4, 1, 2, 1)), b=np.ones((3, 1, 5)))

    @pytest.mark.parametrize("arg", [1, [1, 2, 3]])
    def test_scalar_and_list(self, arg):
        check("logsumexp", arg)

    def test_array_like(self):
        check("logsumexp", [1000, 1000])

    @pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
    def test_dtype_a(self, dtype):
        check("logsumexp", np.asarray([1000.0, 1000.0], dtype=dtype))

    @pytest.mark.parametrize("dtype_a", ["float32", "float64", "int32", "int64"])
    @pytest.mark.parametrize("dtype_b", ["float32", "float64", "int32", "int64"])
    def test_dtypes_ab(self, dtype_a, dtype_b):
        check("logsumexp", np.asarray([2, 1], dtype=dtype_a),
              b=np.asarray([1, -1], dtype=dtype_b))

    def test_gh18295_precision(self):
        check("logsumexp", np.asarray([0.0, -40.0]))

    # real-valued pairs only: the complex infinities of this SciPy case do not apply
    @pytest.mark.parametrize("x", [-np.inf, np.inf])
    @pytest.mark.parametrize("y", [-np.inf, np.inf])
    def test_gh22601_infinite_elements(self, x, y):
        check("logsumexp", np.asarray([x, y]))

    def test_no_writeback(self):
        a = np.asarray([5.0, 4.0])
        b = np.asarray([3.0, 2.0])
        fastnll.logsumexp(a)
        fastnll.logsumexp(a, b=b)
        np.testing.assert_array_equal(a, [5.0, 4.0])
        np.testing.assert_array_equal(b, [3.0, 2.0])

    @pytest.mark.parametrize("return_sign", [False, True])
    def test_gh22903_negative_weight_on_max(self, return_sign):
        a = np.asarray([3.06409428, 0.37251854, 3.87471931])
        check("logsumexp", a, b=np.asarray([1.88190708, 2.84174795, -0.85016884]),
              return_sign=return_sign)

    @pytest.mark.parametrize("return_sign", [False, True])
    def test_gh22903_negative_total(self, return_sign):
        a = np.asarray([3.06409428, 0.37251854, 3.87471931])
        check("logsumexp", a, b=np.asarray([1.88190708, 2.84174795, -3.85016884]),
              return_sign=return_sign)

    @pytest.mark.parametrize("b", [None, [-1.0]])
    def test_gh23548_infinite_sign(self, b):
        check("logsumexp", np.asarray([np.inf]),
              b=None if b is None else np.asarray(b), return_sign=True)


# ---------------------------------------------------------------- softmax

class TestSoftmax:
    @pytest.mark.parametrize("x", [[1000.0, 0.0, 0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    def test_fixtures(self, x):
        check("softmax", np.asarray(x))

    @pytest.mark.parametrize("offset", [0, 100])
    def test_arange_translation(self, offset):
        ref = check("softmax", np.arange(4, dtype=np.float64) + offset)
        np.testing.assert_allclose(ref, [0.03205860328008499, 0.08714431874203256,
                                         0.23688281808991013, 0.6439142598879722],
                                   rtol=1e-13)

    def test_axis_none_keeps_shape(self):
        check("softmax", np.arange(4, dtype=np.float64).reshape(2, 2))

    @pytest.mark.parametrize("axis", [0, 1])
    def test_two_rows(self, axis):
        check("softmax", np.asarray([[1000.0, 0.0], [1000.0, 0.0]]), axis=axis)

    _X = np.asarray([[-25.0, 0.0, 25.0, 50.0], [1.0, 325.0, 749.0, 750.0]])

    def test_multi_axes_axis1(self):
        check("softmax", self._X, axis=1)

    def test_multi_axes_transposed_axis0(self):
        check("softmax", self._X.T, axis=0)

    def test_multi_axes_3d_tuple(self):
        check("softmax", self._X.reshape(2, 2, 2), axis=(1, 2))

    def test_int_array(self):
        check("softmax", np.asarray([1000, 0, 0, 0]))

    def test_scalar(self):
        check("softmax", 1000)

    def test_array_like(self):
        check("softmax", [1000, 0, 0, 0])


# ---------------------------------------------------------------- log_softmax

class TestLogSoftmax:
    def test_basic(self):
        check("log_softmax", np.asarray([1000.0, 1.0]))

    def test_int_array(self):
        check("log_softmax", np.asarray([1000, 1]))

    def test_scalar(self):
        check("log_softmax", 1.0)

    def test_array_like(self):
        check("log_softmax", [1000, 1])

    @pytest.mark.parametrize("offset", [0, 100])
    def test_translation(self, offset):
        ref = check("log_softmax", np.arange(4, dtype=np.float64) + offset)
        np.testing.assert_allclose(ref, np.arange(4) - 3.4401896985611953, rtol=1e-13)

    def test_axis_none_keeps_shape(self):
        check("log_softmax", np.arange(4, dtype=np.float64).reshape(2, 2))

    @pytest.mark.parametrize("axis", [0, 1])
    def test_axes(self, axis):
        check("log_softmax", np.asarray([[1000.0, 1.0], [1000.0, 1.0]]), axis=axis)

    def test_2d_axis1(self):
        check("log_softmax", np.arange(8, dtype=np.float64).reshape(2, 4), axis=1)

    def test_2d_transposed_axis0(self):
        check("log_softmax", np.arange(8, dtype=np.float64).reshape(2, 4).T, axis=0)

    def test_3d_tuple_axis(self):
        check("log_softmax", np.arange(8, dtype=np.float64).reshape(2, 2, 2),
              axis=(1, 2))


# ---------------------------------------------------------------- entropy

_PK = np.asarray([[0.1, 0.2], [0.6, 0.3], [0.3, 0.5]])
_QK = np.asarray([[0.2, 0.1], [0.3, 0.6], [0.5, 0.3]])


class TestEntropy:
    def test_self_is_zero(self):
        pk = np.asarray([0.5, 0.2, 0.3])
        ref = check("entropy", pk, pk)
        assert ref == 0.0

    def test_relative_positive(self):
        ref = check("entropy", np.asarray([0.5, 0.2, 0.3]), np.asarray([0.1, 0.25, 0.65]))
        assert ref > 0

    def test_base2_uniform(self):
        ref = check("entropy", np.ones(16), base=2.0)
        assert abs(ref - 4.0) < 1e-5

    @pytest.mark.parametrize("base", [None, 2.0])
    def test_relative_base(self, base):
        qk = np.where(np.arange(16) < 8, 2.0, 1.0)
        check("entropy", np.ones(16), qk, base=base)

    def test_zero_probability(self):
        ref = check("entropy", np.asarray([0.0, 1.0, 2.0]))
        assert math.isclose(ref, 0.63651416829481278, rel_tol=1e-12)

    def test_2d(self):
        check("entropy", _PK, _QK)

    def test_2d_zero_in_qk(self):
        qk = np.asarray([[0.0, 0.1], [0.3, 0.6], [0.5, 0.3]])
        check("entropy", _PK, qk)

    def test_2d_zero_in_pk_and_qk(self):
        pk = np.asarray([[0.0, 0.2], [0.6, 0.3], [0.3, 0.5]])
        qk = np.asarray([[0.0, 0.1], [0.3, 0.6], [0.5, 0.3]])
        check("entropy", pk, qk)

    @pytest.mark.parametrize("axis", [0, 1])
    def test_2d_axis(self, axis):
        check("entropy", _PK, axis=axis)

    @pytest.mark.parametrize("axis", [0, 1])
    def test_2d_relative_axis(self, axis):
        check("entropy", _PK, _QK, axis=axis)

    def test_transposed(self):
        check("entropy", _PK.T)

    def test_transposed_relative(self):
        check("entropy", _PK.T, _QK.T)

    def test_broadcasting(self):
        rng = np.random.default_rng(74187315492831452)
        x = rng.random(3)
        y = rng.random((2, 1))
        check("entropy", x, y, axis=-1)
        check("entropy", x, y[0, ...])
        check("entropy", x, y[1, ...])

    def test_incompatible_shapes_raise(self):
        check_raises("entropy", _PK, np.asarray([[0.1, 0.2], [0.6, 0.3]]))

    def test_shape_mismatch_raises(self):
        check_raises("entropy", np.ones((10, 1, 12)), np.ones((11, 2)))

    def test_negative_base_raises(self):
        check_raises("entropy", np.ones(10), base=-2)

    # from the entropy registrations of test_axis_nan_policy.py (default nan_policy,
    # 'propagate'; and the empty / too-small special cases of entropy)
    def test_nan_propagates(self):
        check("entropy", np.asarray([np.nan, 1.0, 2.0]))
        check("entropy", np.asarray([0.5, 0.5]), np.asarray([np.nan, 1.0]))

    def test_nan_propagates_per_slice(self):
        pk = np.arange(1.0, 13.0).reshape(3, 4)
        pk[1, 2] = np.nan
        check("entropy", pk, axis=1)
        check("entropy", pk, pk[::-1], axis=1)

    def test_empty(self):
        check("entropy", np.asarray([]))
        check("entropy", np.asarray([]), np.asarray([]))

    def test_single_element(self):
        check("entropy", np.asarray([5.0]))
        check("entropy", np.asarray([5.0]), np.asarray([2.0]))
