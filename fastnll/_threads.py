"""Thread count for the kernels, resolved in Python at call time.

OpenMP's own default (omp_get_max_threads(), which follows OMP_NUM_THREADS and threadpoolctl)
applies unless set_num_threads() (process-wide) or the threads() context manager (for the
current thread or task only, so blocks in different Python threads do not interfere) says
otherwise.  Inputs below MIN_PARALLEL_ELEMENTS run on one thread: starting a team costs more
than it saves.
"""
import contextlib
import contextvars
import operator

import numpy as np

from ._dispatch import kernels

MIN_PARALLEL_ELEMENTS = 1 << 15
MAX_THREADS = 1 << 12
_setting = None                                          # set_num_threads, process-wide
_local = contextvars.ContextVar("fastnll_threads", default=None)   # threads(n) blocks


def _check(n):
    if isinstance(n, (bool, np.bool_)):
        raise TypeError(f"the number of threads must be an integer, got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"the number of threads must be an integer, got {n!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"the number of threads must be in [1, {MAX_THREADS}], got {n}")
    return n


def get_num_threads():
    """The number of threads the next large call (in this thread) will use."""
    n = _local.get()
    if n is None:
        n = _setting
    if n is None:
        n = max(1, int(kernels.openmp_max_threads()))
    return n


def set_num_threads(n):
    """Use n threads from now on, process-wide; None returns to OpenMP's default."""
    global _setting
    _setting = None if n is None else _check(n)


@contextlib.contextmanager
def threads(n):
    """Context manager: use n threads inside the block (in this thread only), then restore."""
    token = _local.set(_check(n))
    try:
        yield
    finally:
        _local.reset(token)


def for_work(n_elements):
    return 1 if n_elements < MIN_PARALLEL_ELEMENTS else get_num_threads()
