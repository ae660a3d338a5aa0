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
self-test leaves ``add_product`` None, and the caller keeps the product and the addition.

The same library's thread count can be read and set (``one_thread``), so that a caller can
split its products into pieces and run them on threads of its own, one single-threaded GEMM
a thread (``in_pieces``), as scikit-learn's k-means runs single-threaded BLAS in its OpenMP
loops.  linear_cross_entropy does so because OpenBLAS's own threads wait for each other many
times a product: on a machine whose cores another process also uses, they wait for a thread
that is not running.  On a 2-core AMD EPYC VM with one busy process beside it, the products of
(2048, 512, 32000) float32 blocks of 256 rows took 1.8-2.7x (``G @ W``) the time of the same
products unblocked on OpenBLAS's threads, and 1.2x in pieces on threads of ours; without the
busy process both ways took the same time."""
import concurrent.futures
import contextlib
import ctypes
import os
import sys
import threading

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


def _symbols(*names):
    """The functions ``{prefix}{name}`` for the names, from the first loaded library that has
    them all under one prefix, or None."""
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            fns = [getattr(lib, prefix + name, None) for name in names]
            if all(fn is not None for fn in fns):
                return fns
    return None


def _gemm(letter):
    """The first ILP64 CBLAS ``?gemm`` (letter "s" or "d") of the loaded libraries, or None."""
    fns = _symbols(f"cblas_{letter}gemm64_")
    fn = None if fns is None else fns[0]
    if fn is not None:
        real = ctypes.c_float if letter == "s" else ctypes.c_double
        i64 = ctypes.c_int64
        fn.restype = None
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real,
                       ctypes.c_void_p, i64, ctypes.c_void_p, i64, real, ctypes.c_void_p, i64]
    return fn


def _make_add_product(dtype):
    """add_product(C, A, B) for dtype: C += A @ B, where C is C-contiguous of dtype and
    A and B are of dtype, each C-contiguous or the transpose of a C-contiguous array."""
    fn = _gemm("s" if dtype == np.float32 else "d")
    if fn is None:
        return None

    def operand(a):
        """(transpose flag, leading dimension) of a row-major operand, or None: its rows (or
        its columns, transposed) contiguous, and apart by a whole number of elements at
        least their length (a block of a larger matrix, or its transpose)."""
        (m, k), (s0, s1), size = a.shape, a.strides, a.itemsize
        if (s1 == size or k == 1) and s0 % size == 0 and s0 >= max(k, 1) * size:
            return _NO_TRANS, max(s0 // size, 1)
        if (s0 == size or m == 1) and s1 % size == 0 and s1 >= max(m, 1) * size:
            return _TRANS, max(s1 // size, 1)
        return None     # (C- and F-contiguous operands are the cases above with ld k or m)

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
    a_wide, b_wide = np.zeros((9, 9), dtype), np.zeros((9, 9), dtype)
    a_wide[2:7, 1:8], b_wide[1:8, 3:6] = A, B
    for a in (A, np.ascontiguousarray(A.T).T, a_wide[2:7, 1:8], a_wide.T[1:8, 2:7].T):
        for b in (B, np.ascontiguousarray(B.T).T, b_wide[1:8, 3:6]):
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


# --------------------------------------------------------- thread count and pieces ----

_count_lock = threading.Lock()
_count_api = []         # [(get, set) or None], found at the first call
_inside = 0             # one_thread blocks open (over all Python threads)
_outside = 1            # the thread count when the first of them opened


def _thread_count_api():
    """(get, set) of the BLAS's thread count, in the library whose GEMM add_product calls,
    or None.  Under _count_lock."""
    if not _count_api:
        fns = _symbols("cblas_sgemm64_", "openblas_get_num_threads64_",
                       "openblas_set_num_threads64_")
        if fns is None:
            _count_api.append(None)
        else:
            _, get, set_ = fns
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            _count_api.append((get, set_))
    return _count_api[0]


@contextlib.contextmanager
def one_thread():
    """Context manager: NumPy's BLAS runs on one thread inside the block (in every Python
    thread: the count is the library's own) and on its previous count again when the last
    block open in the process closes, unless something else (a ``threadpoolctl`` limit in
    another thread) has set another count meanwhile, which is then kept.  ``as`` binds the
    count outside the blocks: how many threads the BLAS would have taken, and so how many
    pieces the caller may run at once; 1 where the count cannot be read or set (then
    nothing is changed)."""
    global _inside, _outside
    with _count_lock:
        api = _thread_count_api()
        if api is not None:
            if _inside == 0:
                _outside = max(1, int(api[0]()))
                api[1](1)
            _inside += 1
        count = 1 if api is None else _outside
    try:
        yield count
    finally:
        if api is not None:
            with _count_lock:
                _inside -= 1
                if _inside == 0 and api[0]() == 1:
                    api[1](_outside)


def _after_fork_in_child():
    """A child forked inside one_thread blocks has none of the threads that would close
    them: the BLAS's count back to the one outside them, and a fresh lock (the parent's may
    have been held)."""
    global _inside, _count_lock
    _count_lock = threading.Lock()
    if _inside and _count_api and _count_api[0] is not None:
        _count_api[0][1](_outside)
    _inside = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_ALIGN = 16             # pieces start at multiples of this many elements (a cache line)
_pool = [None, 0, None]     # [executor, its workers, the process it belongs to]


def _workers(n):
    """An executor of at least n threads, made anew in a forked child (whose copy of the
    parent's has no threads).  A smaller one is dropped, not shut down: a call in another
    thread may still be submitting to it (its threads end once it is unreferenced)."""
    with _count_lock:
        pool, size, pid = _pool
        if pool is None or size < n or pid != os.getpid():
            pool = concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="fastnll-blas")
            _pool[:] = [pool, n, os.getpid()]
        return pool


def in_pieces(fn, n, count):
    """fn(a, b) for `count` contiguous pieces [a, b) of range(n), about equal and starting at
    multiples of _ALIGN, all at once: the first on the calling thread, the others on worker
    threads (fn calls a single-threaded BLAS, see one_thread).  Returns when every piece is
    done, re-raising the first error."""
    count = max(1, min(count, n // _ALIGN))
    cuts = [0] + [(n * i // count) // _ALIGN * _ALIGN for i in range(1, count)] + [n]
    if count == 1:
        fn(0, n)
        return
    pool = _workers(count - 1)
    futures = []
    try:
        for i in range(1, count):
            futures.append(pool.submit(fn, cuts[i], cuts[i + 1]))
        fn(cuts[0], cuts[1])
    finally:
        concurrent.futures.wait(futures)
    for f in futures:
        f.result()
