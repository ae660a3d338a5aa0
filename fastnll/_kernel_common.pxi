# What every kernel file uses: the OpenMP shim, the split of a flat row index into
# (outer, inner), and the fixed-order block sums.  Included first by every _kern_*.pyx.
cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.math cimport isfinite, log, log1p, fabs, INFINITY, NAN

from fastnll._loops cimport fnl_get_row_prefetch, fnl_set_row_prefetch

cdef extern from "_omp_shim.h" nogil:
    int fnl_omp_max_threads()
    int fnl_have_openmp()

cdef enum:
    # Rows per block in the row traversals: the unit of work handed to a thread and of the
    # fixed-order summation (block sums are added in block order, whatever the threads).
    ROW_BLOCK = 64


def openmp_max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS, threadpoolctl), 1 without OpenMP."""
    return fnl_omp_max_threads()


def built_with_openmp():
    return bool(fnl_have_openmp())


def set_row_prefetch(bint on):
    """Turn the row traversals' software prefetch on or off (fnl_row_prefetch in _portable.h;
    set once at import by fastnll._dispatch, results are the same either way)."""
    fnl_set_row_prefetch(on)


def row_prefetch():
    """Whether the row traversals ask for the chunk after the next in software."""
    return bool(fnl_get_row_prefetch())


cdef struct RowIndex:
    # a flat row index r of an (outer, inner) grid of rows, split: r = o * inner + k
    Py_ssize_t o
    Py_ssize_t k


cdef inline RowIndex row_index(Py_ssize_t r, Py_ssize_t inner) noexcept nogil:
    # Returned by value, so that it works inside prange (Cython makes a variable
    # thread-private only when the loop body assigns it: never return through a pointer).
    cdef RowIndex ri
    if inner == 1:   # no 64-bit division in the common case
        ri.o = r
        ri.k = 0
    else:
        ri.o = r // inner
        ri.k = r - ri.o * inner
    return ri


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline double sum_partials(double *partials, Py_ssize_t n) noexcept nogil:
    # the block partials added in block order: the same total for any thread count
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(n):
        total += partials[i]
    return total


cdef inline floating *first_element(const floating[:, :, :] x) noexcept nogil:
    # the address of x[0, 0, 0], or NULL for an empty view
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        return NULL
    return <floating *>&x[0, 0, 0]
