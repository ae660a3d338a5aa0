# The compiled shortcut for the commonest small call of nll_loss and cross_entropy: it
# recognises the call from the public function's own arguments, reads the arrays through the
# NumPy C API (no memoryviews, no Python-level conversions), fills the same ClassArgs as
# class_loss (class_args) and runs the same blocks.  It only recognises: every error message
# stays in the Python checking module (_checks.py), so any call it does not take, invalid
# input included, goes back to the general path.
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport PyObject
cimport numpy as cnp
import numpy as np

cnp.import_array()

_F32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT32)
_F64 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT64)
_I64 = cnp.PyArray_DescrFromType(cnp.NPY_INT64)


@cython.boundscheck(False)
@cython.wraparound(False)
def class_loss_fast(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                    return_grad, bint is_nll, for_work):
    """nll_loss or cross_entropy for their common call, without the general path's
    conversions and views: input a 2-D ndarray of NumPy's float32 or float64 dtype (native
    byte order, no metadata, aligned) with the classes on axis 1, target an ndarray of
    np.int64 of shape (N,) (np.longlong, a distinct dtype, goes the general way), no weights,
    ignore_index a Python int, reduction one of the three names, label_smoothing a Python
    float in [0, 1] (or the int 0 or 1), return_grad a bool, N and C not 0.

    The arguments are the public function's, in its order (positional: this call is on the
    path of microsecond calls, where parsing keywords would cost a measurable share).
    Returns what the public function returns, or None for any other call, and for calls
    whose targets are invalid or (mean) all ignored: the caller then takes the general path,
    which converts, checks and raises.  for_work(n) gives the thread count for n elements
    (_threads.for_work)."""
    cdef cnp.ndarray x, t, rows = None, grad = None
    cdef PyObject *descr
    cdef int typ, nthreads, overflow = 0
    cdef Reduction code
    cdef Py_ssize_t N, C, isz, xs0, xs1, ts
    cdef long long ii
    cdef double eps = 0.0, v
    cdef bint want_grad
    cdef cnp.npy_intp dims[2]
    cdef View3 x_view, grad_view
    cdef View2 t_view, rows_view
    cdef ClassArgs args
    cdef BlockSum res
    if weight is not None or type(input) is not cnp.ndarray or type(target) is not cnp.ndarray:
        return None
    if not (axis is None or (type(axis) is int and (axis == 1 or axis == -1))):
        return None
    if return_grad is True:
        want_grad = True
    elif return_grad is False:
        want_grad = False
    else:
        return None
    if type(reduction) is not str:
        return None
    if reduction == "mean":
        code = MEAN
    elif reduction == "sum":
        code = SUM
    elif reduction == "none":
        code = NONE
    else:
        return None
    if type(ignore_index) is not int:
        return None
    ii = PyLong_AsLongLongAndOverflow(ignore_index, &overflow)
    if overflow:
        return None
    if not is_nll:
        if type(label_smoothing) is float:
            eps = label_smoothing
        elif type(label_smoothing) is int and (label_smoothing == 0 or label_smoothing == 1):
            eps = label_smoothing
        else:
            return None
        if not 0.0 <= eps <= 1.0:
            return None
    x = input
    t = target
    if cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_NDIM(t) != 1:
        return None
    # NumPy's own float32 / float64 / int64 dtypes (native byte order, no metadata, which
    # the general path would carry over to the outputs)
    descr = <PyObject *>cnp.PyArray_DESCR(x)
    if descr == <PyObject *>_F32:
        typ, isz = cnp.NPY_FLOAT32, 4
    elif descr == <PyObject *>_F64:
        typ, isz = cnp.NPY_FLOAT64, 8
    else:
        return None
    if <PyObject *>cnp.PyArray_DESCR(t) != <PyObject *>_I64:
        return None
    if not (cnp.PyArray_ISALIGNED(x) and cnp.PyArray_ISALIGNED(t)):
        return None
    N = cnp.PyArray_DIM(x, 0)
    C = cnp.PyArray_DIM(x, 1)
    if N == 0 or C == 0 or cnp.PyArray_DIM(t, 0) != N:
        return None
    xs0 = cnp.PyArray_STRIDE(x, 0)
    xs1 = cnp.PyArray_STRIDE(x, 1)
    ts = cnp.PyArray_STRIDE(t, 0)
    if xs0 % isz != 0 or xs1 % isz != 0 or ts % 8 != 0:
        return None
    xs0 //= isz
    xs1 //= isz
    ts //= 8
    dims[0] = N
    dims[1] = C
    if code == NONE:
        rows = cnp.PyArray_EMPTY(1, dims, typ, 0)
    if want_grad:
        grad = (cnp.PyArray_ZEROS(2, dims, typ, 0) if is_nll
                else cnp.PyArray_EMPTY(2, dims, typ, 0))
    # the views ClassView (_layout.py) would make of the (N, C) arrays and their (N,)
    # companions: (1, C, N) when is_swapped says so, else (N, C, 1)
    x_view = View3(NULL, 0, 0, 0)
    t_view = View2(NULL, 0, 0)
    rows_view = View2(NULL, 0, 0)
    grad_view = View3(NULL, 0, 0, 0)
    x_view.data = cnp.PyArray_DATA(x)
    t_view.data = cnp.PyArray_DATA(t)
    if code == NONE:
        rows_view.data = cnp.PyArray_DATA(rows)
    if want_grad:
        grad_view.data = cnp.PyArray_DATA(grad)
    if is_swapped(N, C, 1, xs0, xs1):
        x_view.s1, x_view.s2 = xs1, xs0
        t_view.s1 = ts
        rows_view.s1 = 1
        grad_view.s1, grad_view.s2 = 1, C
        args = class_args(1, C, N, x_view, t_view, NULL, 0, ii, eps, is_nll, rows_view, grad_view,
                          want_grad)
    else:
        x_view.s0, x_view.s1 = xs0, xs1
        t_view.s0 = ts
        rows_view.s0 = 1
        grad_view.s0, grad_view.s1 = C, 1
        args = class_args(N, C, 1, x_view, t_view, NULL, 0, ii, eps, is_nll, rows_view, grad_view,
                          want_grad)
    # nll_loss reads one logit a row: its work is the N rows, not the N x C logits
    nthreads = for_work(N if is_nll else N * C)
    if typ == cnp.NPY_FLOAT32:
        run_class_loss(<const float *>args.x.data, &args, code, nthreads, &res)
    else:
        run_class_loss(<const double *>args.x.data, &args, code, nthreads, &res)
    if res.bad_row >= 0 or (code == MEAN and res.weight_sum == 0):
        return None
    if code == NONE:
        loss = rows
    else:
        v = res.loss_sum if code == SUM else res.loss_sum / res.weight_sum
        loss = np.float32(v) if typ == cnp.NPY_FLOAT32 else np.float64(v)
    return (loss, grad) if want_grad else loss
