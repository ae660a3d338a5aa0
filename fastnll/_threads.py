"""Thread count for the kernels, resolved in Python at call time.

OpenMP's own default (omp_get_max_threads(), which follows OMP_NUM_THREADS and threadpoolctl)
applies unless set_num_threads() or the threads() context manager says otherwise.  Inputs
below MIN_PARALLEL_ELEMENTS run on one thread: starting a team costs more than it saves.
"""
import contextlib
import operator

from ._dispatch import kernels

MIN_PARALLEL_ELEMENTS = 1 << 15
_setting = None


def get_num_threads():
    """The number of threads the next large call will use."""
    if _setting is not None:
        return _setting
    return max(1, int(kernels.openmp_max_threads()))


def set_num_threads(n):
    """Use n threads from now on; None returns to OpenMP's default."""
    global _setting
    if n is None:
        _setting = None
        return
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"the number of threads must be an integer, got {n!r}") from None
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    _setting = n


@contextlib.contextmanager
def threads(n):
    """Context manager: use n threads inside the block, then restore the previous setting."""
    global _setting
    previous = _setting
    set_num_threads(n)
    try:
        yield
    finally:
        _setting = previous


def for_work(n_elements):
    return 1 if n_elements < MIN_PARALLEL_ELEMENTS else get_num_threads()
