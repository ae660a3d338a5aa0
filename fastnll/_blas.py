"""NumPy's own BLAS, for the one product NumPy's API lacks: ``C += A @ B`` (a GEMM with
beta = 1), which linear_cross_entropy needs to sum grad_linear_weight over blocks of rows.

``numpy.matmul`` cannot add into its output; through it the sum costs a product into a
temporary and an addition, a second pass over ``C`` (65 MB at V=32000, H=512 float32) for
every block.  BLAS's GEMM does the addition in its own tiles.  NumPy's wheels from PyPI ship
OpenBLAS with 64-bit integers under the symbols ``scipy_cblas_sgemm64_``/``..._dgemm64_``;
this module finds that library among those loaded in the process (NumPy loaded it; only a
library in NumPy's own directories is taken) and calls its CBLAS GEMM through ctypes: the
same library and thread pool as ``numpy.matmul``, no new dependency, no GEMM of ours.  An
output that shares memory with an operand takes NumPy's way (the GEMM would read what it has
already written).

Only 64-bit-integer (ILP64) symbols are used, whose argument types their names fix; a library
that is not found (another platform, a NumPy built on another BLAS) or that fails a small
self-test leaves ``add_product`` None, and the caller keeps the product and the addition."""
import ctypes
import os
import sys

import numpy as np

# CBLAS enums
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_PREFIXES = ("scipy_", "")


def _loaded_libraries():
    """The paths of the BLAS libraries that NumPy's wheel bundles (in ``numpy.libs`` beside
    the package, or inside it) and that are mapped in this process (Linux: /proc/self/maps;
    elsewhere none).  A BLAS from anywhere else may be another library than NumPy's, with
    its own thread pool: it is not used."""
    if not sys.platform.startswith("linux"):
        return []
    package = os.path.realpath(os.path.dirname(np.__file__))
    roots = (package + os.sep, package + ".libs" + os.sep)
    try:
        with open("/proc/self/maps") as maps:
            paths = {os.path.realpath(line.split(None, 5)[5].strip()) for line in maps
                     if len(line.split(None, 5)) == 6}
    except OSError:
        return []
    return sorted(p for p in paths if "blas" in os.path.basename(p).lower()
                  and p.startswith(roots) and os.path.isfile(p))


def _gemm(letter):
    """The first ILP64 CBLAS ``?gemm`` (letter "s" or "d") of the loaded libraries, or None."""
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            fn = getattr(lib, f"{prefix}cblas_{letter}gemm64_", None)
            if fn is None:
                continue
            real = ctypes.c_float if letter == "s" else ctypes.c_double
            i64 = ctypes.c_int64
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real,
                           ctypes.c_void_p, i64, ctypes.c_void_p, i64, real, ctypes.c_void_p,
                           i64]
            return fn
    return None


def _make_add_product(dtype):
    """add_product(C, A, B) for dtype: C += A @ B, where C is C-contiguous of dtype and
    A and B are of dtype, each C-contiguous or the transpose of a C-contiguous array."""
    fn = _gemm("s" if dtype == np.float32 else "d")
    if fn is None:
        return None

    def operand(a):
        """(transpose flag, leading dimension) of a row-major operand, or None."""
        if a.flags.c_contiguous:
            return _NO_TRANS, max(a.shape[1], 1)
        if a.flags.f_contiguous:
            return _TRANS, max(a.shape[0], 1)
        return None

    def add_product(C, A, B):
        (m, k), n = A.shape, B.shape[1]
        ta, tb = operand(A), operand(B)
        if (ta is None or tb is None or not C.flags.c_contiguous or m * n * k == 0
                or not (A.dtype == B.dtype == C.dtype == dtype)
                or np.may_share_memory(C, A) or np.may_share_memory(C, B)):
            C += A @ B
            return
        fn(_ROW_MAJOR, ta[0], tb[0], m, n, k, 1.0, A.ctypes.data, ta[1], B.ctypes.data,
           tb[1], 1.0, C.ctypes.data, max(n, 1))

    # a self-test of every pair of layouts: a wrong library or convention must not go unseen
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 7)).astype(dtype)
    B = rng.standard_normal((7, 3)).astype(dtype)
    for a in (A, np.ascontiguousarray(A.T).T):
        for b in (B, np.ascontiguousarray(B.T).T):
            C = rng.standard_normal((5, 3)).astype(dtype)
            want = C + a @ b
            add_product(C, a, b)
            if not np.allclose(C, want, rtol=1e-4, atol=1e-5):
                return None
    return add_product


_cache = {}


def add_product(dtype):
    """A function computing C += A @ B on NumPy's BLAS for float32 or float64 dtype, or
    None where that BLAS cannot be reached (see the module's notes)."""
    dtype = np.dtype(dtype)
    if dtype not in _cache:
        _cache[dtype] = _make_add_product(dtype)
    return _cache[dtype]
