"""Thread count for the kernels, resolved in Python at call time.

OpenMP's own default (omp_get_max_threads(), which follows OMP_NUM_THREADS and threadpoolctl)
applies unless set_num_threads() (process-wide) or the threads() context manager (for the
current thread or task only, so blocks in different Python threads do not interfere) says
otherwise.  Inputs below MIN_PARALLEL_ELEMENTS run on one thread: starting a team costs more
than it saves.
"""
import contextlib
import contextvars

from ._checks import check_thread_count
from ._dispatch import kernels

MIN_PARALLEL_ELEMENTS = kernels.MIN_PARALLEL_ELEMENTS    # 1 << 15, the compiled calls' too
MAX_THREADS = 1 << 12
_setting = None                                          # set_num_threads, process-wide
_local = contextvars.ContextVar("fastnll_threads", default=None)   # threads(n) blocks


def get_num_threads():
    """The number of threads the next large fastnll call in this thread will use.

    The first that applies of: the count of the enclosing `threads` block (in this thread),
    the process-wide `set_num_threads` setting, and OpenMP's default
    (``omp_get_max_threads()``, which follows ``OMP_NUM_THREADS`` and
    ``threadpoolctl.threadpool_limits``).  Inputs under 32768 elements run on one thread
    whatever the count.

    Returns
    -------
    int
        The thread count, at least 1.

    See Also
    --------
    torch.get_num_threads : The PyTorch counterpart.
    set_num_threads : Set the count for the whole process.
    threads : Set the count inside a ``with`` block.
    show_config : The count and where it comes from, with the build information.

    Examples
    --------
    >>> import fastnll
    >>> fastnll.get_num_threads() >= 1
    True
    >>> with fastnll.threads(1):
    ...     fastnll.get_num_threads()
    1
    """
    n = _local.get()
    if n is None:
        n = _setting
    if n is None:
        n = max(1, int(kernels.openmp_max_threads()))
    return n


def set_num_threads(n):
    """Use ``n`` threads from now on, process-wide; None returns to OpenMP's default.

    The setting applies to every Python thread, except inside a `threads` block, which takes
    precedence.  Results are bit-identical for any thread count.

    Parameters
    ----------
    n : int or None
        The number of threads, from 1 to 4096; None returns to OpenMP's default
        (``OMP_NUM_THREADS``, or a ``threadpoolctl.threadpool_limits`` block).

    Returns
    -------
    None

    Raises
    ------
    TypeError
        ``n`` is not an integer or None (bools, floats and strings are refused).
    ValueError
        ``n`` is outside ``[1, 4096]``.

    See Also
    --------
    torch.set_num_threads : The PyTorch counterpart.
    threads : The same for one ``with`` block, in this thread only.
    get_num_threads : The count in effect.

    Examples
    --------
    >>> import fastnll
    >>> fastnll.set_num_threads(1)
    >>> fastnll.get_num_threads()
    1
    >>> fastnll.set_num_threads(None)     # back to OpenMP's default
    """
    global _setting
    _setting = None if n is None else check_thread_count(n, MAX_THREADS)


def threads(n):
    """Context manager: use ``n`` threads inside the block (in this thread only), then restore.

    The count applies to the current Python thread (or asyncio task) only, so blocks in
    different threads do not interfere; it takes precedence over `set_num_threads`, and the
    previous count comes back on leaving the block, also on an exception.  Results are
    bit-identical for any thread count.

    Parameters
    ----------
    n : int
        The number of threads, from 1 to 4096.

    Returns
    -------
    contextlib.AbstractContextManager
        A context manager for a ``with`` statement (``as`` binds None).

    Raises
    ------
    TypeError
        ``n`` is not an integer (None, bools, floats and strings are refused).
    ValueError
        ``n`` is outside ``[1, 4096]``.

    See Also
    --------
    threadpoolctl.threadpool_limits : The corresponding context manager for OpenMP and BLAS
        libraries (fastnll follows its ``user_api="openmp"`` limit when no fastnll setting
        applies).
    set_num_threads : The process-wide setting.
    get_num_threads : The count in effect.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> x = np.random.default_rng(0).standard_normal((300, 200))   # big enough for threads
    >>> with fastnll.threads(1):
    ...     serial = fastnll.logsumexp(x, axis=1)
    >>> np.array_equal(serial, fastnll.logsumexp(x, axis=1))       # bit-identical
    True
    """
    return _block(check_thread_count(n, MAX_THREADS))   # checked now, not on entering


@contextlib.contextmanager
def _block(n):
    token = _local.set(n)
    try:
        yield
    finally:
        _local.reset(token)


def for_work(n_elements):
    return 1 if n_elements < MIN_PARALLEL_ELEMENTS else get_num_threads()
