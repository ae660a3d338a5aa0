"""NumPy 2's promotion of scalar arguments: a Python number is a weak scalar (it takes the
array's dtype), a NumPy scalar or a list is not; result dtypes as in SciPy."""
import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastnll

ARRAYS = [np.float32([2, 1, 0]), np.float64([2, 1, 0]), np.array([2, 1, 0]),
          np.array([True, False, True])]
B = [2.0, 2, True, np.float64(2.0), np.float32(2.0), np.int64(2), [2.0, 1.0, 1.0],
     np.float32([2, 1, 1])]


@pytest.mark.parametrize("a", ARRAYS, ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("b", B, ids=repr)
def test_logsumexp_b_promotes_as_scipy(a, b):
    want = scipy.special.logsumexp(a, b=b)
    got = fastnll.logsumexp(a, b=b)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got, sign = fastnll.logsumexp(a, b=b, return_sign=True)
    assert np.asarray(got).dtype == np.asarray(sign).dtype == np.asarray(want).dtype


@pytest.mark.parametrize("p", ARRAYS[:3], ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("q", [1.0, 2, np.float64(1.0), np.float32(1.0), [1.0, 2.0, 3.0]],
                         ids=repr)
def test_entropy_qk_promotes_as_scipy(p, q):
    p = np.abs(p) + 1
    want = scipy.stats.entropy(p, q)
    got = fastnll.entropy(p, q)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)
