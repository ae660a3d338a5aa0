"""fastnll._blas: C += A @ B on NumPy's own BLAS (a GEMM with beta = 1), against float64
NumPy products, for every operand layout it takes and the ones it hands to NumPy."""
import glob
import os

import numpy as np
import pytest

from fastnll import _blas


def bundled_openblas64():
    """NumPy's wheels from PyPI bundle an ILP64 OpenBLAS next to the package."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    return bool(glob.glob(os.path.join(libs, "libscipy_openblas64_*")))


@pytest.mark.skipif(not bundled_openblas64(), reason="NumPy without its bundled OpenBLAS")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_found_with_numpys_wheel(dtype):
    assert _blas.add_product(dtype) is not None


def layouts(a):
    """a as C-contiguous, as the transpose of a C-contiguous array, and strided."""
    yield "C", a.copy()
    yield "transposed", np.ascontiguousarray(a.T).T
    wide = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
    wide[:, ::2] = a
    yield "strided", wide[:, ::2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5, 3), (1, 9, 4), (64, 33, 17), (3, 0, 2), (0, 4, 5)])
def test_add_product(dtype, shape):
    add = _blas.add_product(dtype)
    if add is None:
        pytest.skip("NumPy's BLAS is not reachable here (the caller adds a product)")
    m, k, n = shape
    rng = np.random.default_rng(m * 100 + k)
    A0 = rng.standard_normal((m, k)).astype(dtype)
    B0 = rng.standard_normal((k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    want = C0.astype(np.float64) + A0.astype(np.float64) @ B0.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for la, A in layouts(A0):
        for lb, B in layouts(B0):
            A.flags.writeable = B.flags.writeable = False
            C = C0.copy()
            add(C, A, B)
            np.testing.assert_allclose(C, want, rtol=tol, atol=tol * max(k, 1), err_msg=la + lb)
            np.testing.assert_array_equal(A, A0)
            np.testing.assert_array_equal(B, B0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_overlapping_an_operand(dtype):
    """C += C @ B: the GEMM would read what it has written; NumPy's product is taken."""
    add = _blas.add_product(dtype)
    if add is None:
        pytest.skip("NumPy's BLAS is not reachable here (the caller adds a product)")
    rng = np.random.default_rng(3)
    C0 = rng.standard_normal((64, 64)).astype(dtype)
    B = rng.standard_normal((64, 64)).astype(dtype)
    want = C0.astype(np.float64) + C0.astype(np.float64) @ B.astype(np.float64)
    C = C0.copy()
    add(C, C, B)
    np.testing.assert_allclose(C, want, rtol=1e-4, atol=1e-3)
    C = C0.copy()
    add(C, B, C)
    np.testing.assert_allclose(C, C0.astype(np.float64) + B.astype(np.float64) @ C0,
                               rtol=1e-4, atol=1e-3)
