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


def blas_threads():
    """The thread count of NumPy's BLAS as threadpoolctl reads it (None: not found)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for info in threadpoolctl.threadpool_info():
        if info["user_api"] == "blas" and info["filepath"] in _blas._loaded_libraries():
            return info["num_threads"]
    return None


@pytest.mark.parametrize("n", [0, 1, 15, 31, 32, 33, 100, 512, 32000])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_in_pieces_covers_the_range(n, count):
    """Contiguous pieces, about equal, starting at multiples of 16, each run once: the first
    on the calling thread, the others on worker threads."""
    import threading
    seen, lock = [], threading.Lock()

    def fn(a, b):
        with lock:
            seen.append((a, b, threading.get_ident()))
    _blas.in_pieces(fn, n, count)
    pieces = sorted((a, b) for a, b, _ in seen)
    want = max(1, min(count, n // 16))
    assert len(pieces) == want
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    assert all(p[1] == q[0] for p, q in zip(pieces, pieces[1:]))
    assert all(a % 16 == 0 and a < b for a, b in pieces[1:])
    if want > 1:
        assert max(b - a for a, b in pieces) - min(b - a for a, b in pieces) <= 16
        on = {a: ident for a, _, ident in seen}
        assert on[0] == threading.get_ident()     # the first here, the others on workers
        assert all(on[a] != on[0] for a, _ in pieces[1:])


def test_in_pieces_reraises_after_every_piece_is_done():
    """An error of a piece (on a worker or on the calling thread) reaches the caller, and
    only once every other piece has finished (they write into the caller's arrays)."""
    import time
    done = []

    def worker_fails(a, b):
        if a:
            raise KeyError("piece")
        time.sleep(0.05)
        done.append(a)
    with pytest.raises(KeyError, match="piece"):
        _blas.in_pieces(worker_fails, 64, 2)
    assert done == [0]

    def caller_fails(a, b):
        if a == 0:
            raise KeyError("first")
        time.sleep(0.05)
        done.append(a)
    with pytest.raises(KeyError, match="first"):
        _blas.in_pieces(caller_fails, 64, 2)
    assert done == [0, 32]


def test_one_thread_sets_and_restores_the_count():
    """Inside (nested) blocks the BLAS runs on one thread; the count outside is what the
    blocks bind, and it comes back when the last block closes, also on an exception."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if blas_threads() is None or _blas._thread_count_api() is None:
        pytest.skip("NumPy's BLAS is not reachable here (the products run unsplit)")
    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        with _blas.one_thread() as outer:
            assert outer == 3 and blas_threads() == 1
            with _blas.one_thread() as inner:
                assert inner == 3 and blas_threads() == 1
            assert blas_threads() == 1
        assert blas_threads() == 3
        with pytest.raises(KeyError):
            with _blas.one_thread():
                raise KeyError("inside")
        assert blas_threads() == 3
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        with _blas.one_thread() as count:     # a limit of the user's: one piece
            assert count == 1
    with threadpoolctl.threadpool_limits(3, user_api="blas"):
        with _blas.one_thread():
            # a count set meanwhile (by a threadpoolctl block in another thread) is kept
            threadpoolctl.threadpool_limits(2, user_api="blas")
        assert blas_threads() == 2


def test_in_pieces_from_several_threads_at_once():
    """Calls from several Python threads with different piece counts (the worker pool grows
    under the others' calls) all run every piece."""
    import threading
    errors, totals = [], []

    def caller(count):
        try:
            for _ in range(50):
                hits = np.zeros(64 * count, dtype=np.int64)

                def mark(a, b, hits=hits):
                    hits[a:b] += 1
                _blas.in_pieces(mark, hits.size, count)
                totals.append(bool(np.all(hits == 1)))
        except Exception as e:                      # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=caller, args=(c,)) for c in (2, 3, 4, 5, 6, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(totals) == 300 and all(totals)


def _pieces_in_child(n):
    seen = []
    _blas.in_pieces(lambda a, b: seen.append((a, b)), n, 2)
    return sorted(seen)


def test_in_pieces_after_fork():
    """A forked child (multiprocessing's default on Linux) has no copy of the parent's
    worker threads: it makes its own."""
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    import warnings
    _blas.in_pieces(lambda a, b: None, 64, 2)          # the parent's workers exist
    with warnings.catch_warnings():     # forking a process that has threads (Python 3.12,
        warnings.simplefilter("ignore")  # and JAX, imported by other tests)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.apply_async(_pieces_in_child, (64,)).get(timeout=60) == [(0, 32),
                                                                               (32, 64)]


def _count_in_child():
    return _blas._thread_count_api()[0](), _blas._inside


def test_fork_inside_one_thread():
    """A child forked inside a one_thread block, where no thread will close it, gets the
    count from outside the block back."""
    import multiprocessing
    import warnings
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    if blas_threads() is None or _blas._thread_count_api() is None:
        pytest.skip("NumPy's BLAS is not reachable here (the products run unsplit)")
    with threadpoolctl.threadpool_limits(3, user_api="blas"), _blas.one_thread():
        with warnings.catch_warnings():     # (as in test_in_pieces_after_fork)
            warnings.simplefilter("ignore")
            with multiprocessing.get_context("fork").Pool(1) as pool:
                assert pool.apply_async(_count_in_child).get(timeout=60) == (3, 0)
        assert blas_threads() == 1
