# Compiled calls: the common calls of every public function, recognised and run here without
# the Python layer.  Each public function first hands its own arguments, as they came, to its
# *_call below.  A call made of plain NumPy arrays (float32 or float64, and int32 or int64
# targets; native byte order, aligned, in a layout whose kernel view needs no copy) and of
# options given as Python numbers, bools, strings and None runs the same kernel core as the
# general path, on the same views, and returns what the function returns, bit for bit.  For
# any other call, invalid input included, a *_call returns None (having written nothing the
# caller holds) and the general path runs: every error message stays in the one Python
# checking module (_checks.py).
#
# The pieces all calls share: take_array (a plain array) and the option readers, class_view
# (ClassView's view of _layout.py) and the views of its companion arrays, the outputs
# (new_array, loss_result) and the thread count (threads_for).  A *_call is only these pieces
# and its kernel's core; the positional arguments are the public function's, in its order
# (parsing keywords would cost a measurable share of a microsecond call).
import contextvars

from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport PyObject
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void *data, cnp.dtype descr, object base)

_F32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT32)
_F64 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT64)
_I32 = cnp.PyArray_DescrFromType(cnp.NPY_INT32)
_I64 = cnp.PyArray_DescrFromType(cnp.NPY_INT64)

# Inside fastnll.dask's tasks (_layout.float64_sums) a "sum" reduction returns the float64 sum
# unrounded: the variable lives here so that the compiled calls can read it too.
FLOAT64_SUMS = contextvars.ContextVar("fastnll_float64_sums", default=False)

cdef enum:
    TAKE_FLOAT = 1      # float32 or float64
    TAKE_INT = 2        # int32 or int64
    MAX_NDIM = 8        # more dimensions: the general path
    BATCHMEAN = 3       # kl_div's reduction, beside the Reduction codes
    # inputs with fewer elements than this run on one thread (_threads.for_work)
    PARALLEL_MIN = 1 << 15

MIN_PARALLEL_ELEMENTS = PARALLEL_MIN

# the caller's out= that softmax writes with non-temporal stores (_caches.streams) goes the
# general way: larger than this many bytes (set_llc_bytes; 0 until then: no out= here)
cdef Py_ssize_t llc_bytes = 0


def set_llc_bytes(Py_ssize_t n):
    """The last-level cache size in bytes (_caches.LLC_BYTES), for softmax_call's out=."""
    global llc_bytes
    llc_bytes = n


# ------------------------------------------------------------ recognition ----

cdef struct Arr:
    # a plain ndarray as the kernels see it
    char *data
    int typ                         # NPY_FLOAT32, NPY_FLOAT64, NPY_INT32 or NPY_INT64
    int isz                         # its item size
    int ndim
    bint contiguous                 # C-contiguous (st then canonical)
    bint writeable
    Py_ssize_t size
    cnp.npy_intp shape[MAX_NDIM]
    Py_ssize_t st[MAX_NDIM]         # strides in elements


cdef bint take_array(object obj, Arr *a, int kinds):
    # obj as an Arr when it is an ndarray (not a subclass) of NumPy's own dtype (native byte
    # order, no metadata, which the general path would carry over to its outputs) of a kind
    # asked for, aligned, with strides that are multiples of its item size
    cdef cnp.ndarray arr
    cdef PyObject *descr
    cdef Py_ssize_t st
    cdef int i
    if type(obj) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>obj
    descr = <PyObject *>cnp.PyArray_DESCR(arr)
    if kinds & TAKE_FLOAT and descr == <PyObject *>_F32:
        a.typ, a.isz = cnp.NPY_FLOAT32, 4
    elif kinds & TAKE_FLOAT and descr == <PyObject *>_F64:
        a.typ, a.isz = cnp.NPY_FLOAT64, 8
    elif kinds & TAKE_INT and descr == <PyObject *>_I64:
        a.typ, a.isz = cnp.NPY_INT64, 8
    elif kinds & TAKE_INT and descr == <PyObject *>_I32:
        a.typ, a.isz = cnp.NPY_INT32, 4
    else:
        return False
    a.ndim = cnp.PyArray_NDIM(arr)
    if a.ndim > MAX_NDIM or not cnp.PyArray_ISALIGNED(arr):
        return False
    a.size = 1
    for i in range(a.ndim):
        st = cnp.PyArray_STRIDE(arr, i)
        if st % a.isz != 0:
            return False
        a.st[i] = st // a.isz
        a.shape[i] = cnp.PyArray_DIM(arr, i)
        a.size *= a.shape[i]
    # a C-contiguous array as NumPy's buffer protocol (and so every memoryview of the
    # general path) presents it: with the canonical stride on every axis, those of length 1
    # included, whatever they hold
    a.contiguous = cnp.PyArray_IS_C_CONTIGUOUS(arr)
    if a.contiguous:
        st = 1
        for i in range(a.ndim - 1, -1, -1):
            a.st[i] = st
            st *= a.shape[i]
    a.writeable = cnp.PyArray_ISWRITEABLE(arr)
    a.data = <char *>cnp.PyArray_DATA(arr)
    return True


cdef int take_axis(object axis, int ndim):
    # an exact Python int naming an axis of an ndim-array: its index, else -1
    cdef long long v
    cdef int overflow = 0
    if type(axis) is not int:
        return -1
    v = PyLong_AsLongLongAndOverflow(axis, &overflow)
    if overflow:
        return -1
    if v < 0:
        v += ndim
    return <int>v if 0 <= v < ndim else -1


cdef int take_bool(object value):
    # 1 or 0 for True or False, else -1
    if value is True:
        return 1
    if value is False:
        return 0
    return -1


cdef int take_reduction(object reduction, bint batchmean):
    # the Reduction code of "none", "mean" or "sum" (and BATCHMEAN for "batchmean" when
    # asked), else -1
    if type(reduction) is not str:
        return -1
    if reduction == "mean":
        return MEAN
    if reduction == "sum":
        return SUM
    if reduction == "none":
        return NONE
    if batchmean and reduction == "batchmean":
        return BATCHMEAN
    return -1


cdef bint take_float(object value, double *v):
    # an exact Python float (NumPy floats and ints go the general way)
    if type(value) is not float:
        return False
    v[0] = value
    return True


cdef bint take_index(object value, int64_t *v):
    # an exact Python int that fits int64 (ignore_index)
    cdef int overflow = 0
    if type(value) is not int:
        return False
    v[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return not overflow


cdef bint take_smoothing(object value, double *v):
    # a label smoothing in [0, 1]: an exact Python float, or the int 0 or 1
    if type(value) is float:
        v[0] = value
    elif type(value) is int and (value == 0 or value == 1):
        v[0] = value
    else:
        return False
    return 0.0 <= v[0] <= 1.0


cdef bint same_shape(const Arr *a, const Arr *b):
    cdef int i
    if a.ndim != b.ndim:
        return False
    for i in range(a.ndim):
        if a.shape[i] != b.shape[i]:
            return False
    return True


cdef bint same_layout(const Arr *a, const Arr *b):
    # the same shape and element strides
    cdef int i
    if not same_shape(a, b):
        return False
    for i in range(a.ndim):
        if a.st[i] != b.st[i]:
            return False
    return True


cdef void extent(const Arr *a, char **lo, char **hi) noexcept:
    # the bytes [lo, hi) that a's elements span (np.may_share_memory's bounds)
    cdef Py_ssize_t low = 0, high = 0
    cdef int i
    for i in range(a.ndim):
        if a.st[i] < 0:
            low += a.st[i] * (a.shape[i] - 1)
        else:
            high += a.st[i] * (a.shape[i] - 1)
    lo[0] = a.data + low * a.isz
    hi[0] = a.data + (high + 1) * a.isz


cdef bint overlap(const Arr *a, const Arr *b):
    cdef char *alo
    cdef char *ahi
    cdef char *blo
    cdef char *bhi
    extent(a, &alo, &ahi)
    extent(b, &blo, &bhi)
    return alo < bhi and blo < ahi


# ------------------------------------------------------------- class view ----

cdef struct Class3:
    # ClassView (_layout.py) of an input: the kernels' (outer, C, inner), swapped or not
    Py_ssize_t outer, C, inner
    View3 x
    bint swap


cdef bint class_view(const Arr *a, int axis, bint whole, Class3 *cv):
    # ClassView(a, axis) (whole: a flattened, the class axis all of it, as axis=None), when
    # NumPy's reshape makes it without a copy and its strides are plain to name here: a
    # C-contiguous array (any shape), or one of at most two axes each of length >= 2 (the
    # reshape adds an axis of length 1, whose stride no kernel reads: its index is always 0).
    cdef Py_ssize_t outer = 1, C, inner = 1, s0, s1, s2
    cdef int i
    if a.size == 0:
        return False
    if whole:
        C = a.size
    else:
        for i in range(axis):
            outer *= a.shape[i]
        C = a.shape[axis]
        for i in range(axis + 1, a.ndim):
            inner *= a.shape[i]
    if a.contiguous:
        s0, s1, s2 = C * inner, inner, 1
    elif a.ndim == 1:
        if a.shape[0] < 2:
            return False
        s0, s1, s2 = 0, a.st[0], 0
    elif a.ndim == 2 and not whole:
        if a.shape[0] < 2 or a.shape[1] < 2:
            return False
        if axis == 0:
            s0, s1, s2 = 0, a.st[0], a.st[1]
        else:
            s0, s1, s2 = a.st[0], a.st[1], 0
    else:
        return False
    cv.C = C
    cv.swap = is_swapped(outer, C, inner, s0, s1)
    if cv.swap:          # (inner, C, outer): inner is 1
        cv.outer, cv.inner = inner, outer
        cv.x = View3(a.data, s2, s1, s0)
    else:
        cv.outer, cv.inner = outer, inner
        cv.x = View3(a.data, s0, s1, s2)
    return True


cdef View3 view_like(const Class3 *cv, void *data):
    # ClassView.to3 of a C-contiguous array shaped like the input (fresh outputs)
    if cv.swap:
        return View3(data, 1, 1, cv.C)
    return View3(data, cv.C * cv.inner, cv.inner, 1)


cdef bint companion3(const Class3 *cv, const Arr *x, const Arr *a, View3 *v):
    # ClassView.to3 of an input a of x's shape: laid out as x, or C-contiguous
    if same_layout(a, x):
        v[0] = cv.x
        v.data = a.data
        return True
    if a.contiguous and same_shape(a, x):
        v[0] = view_like(cv, a.data)
        return True
    return False


cdef View2 rows_like(const Class3 *cv, void *data):
    # ClassView.to2 of a C-contiguous array shaped like the input without its class axis
    if cv.swap:
        return View2(data, 0, 1)
    return View2(data, cv.inner, 1)


cdef bint companion2(const Class3 *cv, const Arr *t, View2 *v):
    # ClassView.to2 of an input t shaped like the input without its class axis (the caller
    # has checked the shape): C-contiguous, or one axis (the rows, or the columns of axis=0)
    if t.contiguous:
        v[0] = rows_like(cv, t.data)
        return True
    if t.ndim != 1:
        return False
    if cv.swap or cv.inner > 1:
        v[0] = View2(t.data, 0, t.st[0])
    else:
        v[0] = View2(t.data, t.st[0], 0)
    return True


# ---------------------------------------------------------------- outputs ----

cdef object new_array(const Arr *like, bint zero, int skip_axis, bint keep):
    # a fresh C-ordered array of like's dtype and shape (without axis skip_axis, or with it of
    # length 1 when keep; skip_axis -1: all axes; -2: none)
    cdef cnp.npy_intp dims[MAX_NDIM]
    cdef int i, nd = 0
    for i in range(like.ndim):
        if skip_axis == -1 or i == skip_axis:
            if keep:
                dims[nd] = 1
                nd += 1
            continue
        dims[nd] = like.shape[i]
        nd += 1
    if zero:
        return cnp.PyArray_ZEROS(nd, dims, like.typ, 0)
    return cnp.PyArray_EMPTY(nd, dims, like.typ, 0)


cdef object real_scalar(double v, int typ):
    # a NumPy scalar of the float type typ
    cdef float f
    if typ == cnp.NPY_FLOAT32:
        f = <float>v
        return PyArray_Scalar(&f, <cnp.dtype>_F32, None)
    return PyArray_Scalar(&v, <cnp.dtype>_F64, None)


cdef object scalar_or_array(cnp.ndarray res):
    # _layout.scalar_or_array: a 0-d float result as a NumPy scalar, else the array
    if cnp.PyArray_NDIM(res) != 0:
        return res
    if cnp.PyArray_TYPE(res) == cnp.NPY_FLOAT32:
        return real_scalar((<float *>cnp.PyArray_DATA(res))[0], cnp.NPY_FLOAT32)
    return real_scalar((<double *>cnp.PyArray_DATA(res))[0], cnp.NPY_FLOAT64)


cdef object loss_result(int code, double total, double denom, object rows, int typ):
    # what a loss returns (_layout.finish_reduction): the per-row losses (NONE; a scalar when
    # 0-d), the sum, or the sum over denom (not 0: the callers leave that case to the
    # general path)
    if code == NONE:
        return scalar_or_array(rows)
    if code == SUM:
        if FLOAT64_SUMS.get():
            return real_scalar(total, cnp.NPY_FLOAT64)
        return real_scalar(total, typ)
    return real_scalar(total / denom, typ)


cdef int threads_for(Py_ssize_t n, object for_work) except -1:
    # _threads.for_work(n), without the call for the inputs that run on one thread anyway
    if n < PARALLEL_MIN:
        return 1
    return for_work(n)


# ------------------------------------------------- logsumexp and softmaxes ----

def logsumexp_call(a, axis, b, keepdims, return_sign, out, for_work):
    """logsumexp(a, axis, b, keepdims, return_sign, out=out) with b, out None and return_sign
    False, a float array, axis an int or None (a C-contiguous or 1-D a), or None."""
    cdef Arr x
    cdef Class3 cv
    cdef int ax = 0, keep = take_bool(keepdims)
    cdef bint whole = axis is None
    cdef View2 ov
    cdef int nthreads
    if b is not None or out is not None or return_sign is not False or keep < 0:
        return None
    if not take_array(a, &x, TAKE_FLOAT) or x.ndim == 0:
        return None
    if not whole:
        ax = take_axis(axis, x.ndim)
        if ax < 0:
            return None
    if not class_view(&x, ax, whole, &cv):
        return None
    res = new_array(&x, False, -1 if whole else ax, keep)
    ov = rows_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>res))
    nthreads = threads_for(x.size, for_work)
    if x.typ == cnp.NPY_FLOAT32:
        lse_core(<const float *>cv.x.data, cv.outer, cv.C, cv.inner, cv.x, <float *>ov.data,
                 ov.s0, ov.s1, nthreads)
    else:
        lse_core(<const double *>cv.x.data, cv.outer, cv.C, cv.inner, cv.x, <double *>ov.data,
                 ov.s0, ov.s1, nthreads)
    return scalar_or_array(res)


def softmax_call(x, axis, out, bint take_log, for_work):
    """softmax or log_softmax(x, axis, out=out): x a float array (at least 1-D), axis an int
    or None (a C-contiguous or 1-D x), out None or an array the kernel writes itself (x's
    dtype and shape, C-contiguous, writeable, no memory shared with x unless it is x)."""
    cdef Arr a, o
    cdef Class3 cv
    cdef int ax = 0
    cdef bint whole = axis is None
    cdef View3 ov
    cdef int nthreads
    if not take_array(x, &a, TAKE_FLOAT) or a.ndim == 0:
        return None
    if not whole:
        ax = take_axis(axis, a.ndim)
        if ax < 0:
            return None
    if not class_view(&a, ax, whole, &cv):
        return None
    if out is None:
        res = new_array(&a, False, -2, False)
    else:
        if not (take_array(out, &o, TAKE_FLOAT) and o.typ == a.typ and o.contiguous
                and o.writeable and same_shape(&o, &a) and o.size * o.isz <= llc_bytes):
            return None
        if overlap(&o, &a) and not (o.data == a.data and same_layout(&o, &a)):
            return None
        res = out
    ov = view_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>res))
    nthreads = threads_for(a.size, for_work)
    if a.typ == cnp.NPY_FLOAT32:
        softmax_core(<const float *>cv.x.data, <float *>ov.data, cv.outer, cv.C, cv.inner,
                     cv.x, ov, take_log, nthreads, False)
    else:
        softmax_core(<const double *>cv.x.data, <double *>ov.data, cv.outer, cv.C, cv.inner,
                     cv.x, ov, take_log, nthreads, False)
    return res


# ----------------------------------------------------------- class losses ----

cdef bint class_options(object input, object axis, Arr *x, Class3 *cv, int *ax):
    # a loss's input as a float array and its class axis (PyTorch's: 1, or 0 for a 1-D input,
    # when axis is None)
    if not take_array(input, x, TAKE_FLOAT) or x.ndim == 0:
        return False
    if axis is None:
        ax[0] = 0 if x.ndim == 1 else 1
    else:
        ax[0] = take_axis(axis, x.ndim)
        if ax[0] < 0:
            return False
    return class_view(x, ax[0], False, cv)


cdef bint class_weights(object weight, const Arr *x, Py_ssize_t C, const void **w,
                        Py_ssize_t *s_w):
    # class weights: None, or a 1-D array of the input's dtype and C entries
    cdef Arr a
    w[0] = NULL
    s_w[0] = 0
    if weight is None:
        return True
    if not (take_array(weight, &a, TAKE_FLOAT) and a.typ == x.typ and a.ndim == 1
            and a.shape[0] == C):
        return False
    w[0] = a.data
    s_w[0] = a.st[0]
    return True


cdef bint rows_shape(const Arr *t, const Arr *x, int ax):
    # t has x's shape without axis ax
    cdef int i, j = 0
    if t.ndim != x.ndim - 1:
        return False
    for i in range(x.ndim):
        if i == ax:
            continue
        if t.shape[j] != x.shape[i]:
            return False
        j += 1
    return True


def class_loss_call(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                    return_grad, bint is_nll, for_work):
    """nll_loss or cross_entropy (is_nll False) with the public function's arguments, in its
    order: input a float array, target int32 or int64 class indices (or, for cross_entropy,
    probabilities of the input's dtype and shape), weight None or a 1-D array of the input's
    dtype, ignore_index a Python int, reduction one of the three names, label_smoothing a
    Python float in [0, 1] (or the int 0 or 1), axis an int or None, return_grad a bool.

    Declines (None) also calls whose targets are out of range, and a "mean" whose kept
    weights sum to 0: the general path raises, or follows PyTorch's order of operations."""
    cdef Arr x, t
    cdef Class3 cv
    cdef int ax, want_grad = take_bool(return_grad)
    cdef int code = take_reduction(reduction, False)
    cdef int64_t ii
    cdef double eps = 0.0
    cdef const void *w
    cdef Py_ssize_t s_w, i, n
    cdef int64_t *wide = NULL
    cdef View2 t_view, rows_view = View2(NULL, 0, 0)
    cdef View3 grad_view = View3(NULL, 0, 0, 0), probs
    cdef ClassArgs args
    cdef BlockSum res
    cdef double total
    cdef int nthreads
    if want_grad < 0 or code < 0 or not take_index(ignore_index, &ii):
        return None
    if not is_nll and not take_smoothing(label_smoothing, &eps):
        return None
    if not class_options(input, axis, &x, &cv, &ax):
        return None
    if not class_weights(weight, &x, cv.C, &w, &s_w):
        return None
    if not take_array(target, &t, TAKE_INT | (0 if is_nll else TAKE_FLOAT)):
        return None
    rows = grad = None
    if t.typ == cnp.NPY_FLOAT32 or t.typ == cnp.NPY_FLOAT64:
        # class probabilities (PyTorch refuses them with a non-negative ignore_index)
        if t.typ != x.typ or ii >= 0 or not companion3(&cv, &x, &t, &probs):
            return None
        if code == NONE:
            rows = new_array(&x, False, ax, False)
            rows_view = rows_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>rows))
        if want_grad:
            grad = new_array(&x, False, -2, False)
            grad_view = view_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>grad))
        n = cv.outer * cv.inner
        nthreads = threads_for(x.size, for_work)
        if x.typ == cnp.NPY_FLOAT32:
            total = prob_core(<const float *>cv.x.data, cv.outer, cv.C, cv.inner, cv.x, probs,
                              <const float *>w, s_w, eps, 1.0 / n if code == MEAN else 1.0,
                              rows_view, grad_view, nthreads)
        else:
            total = prob_core(<const double *>cv.x.data, cv.outer, cv.C, cv.inner, cv.x,
                              probs, <const double *>w, s_w, eps,
                              1.0 / n if code == MEAN else 1.0, rows_view, grad_view, nthreads)
        loss = loss_result(code, total, n, rows, x.typ)
        return (loss, grad) if want_grad else loss
    if not rows_shape(&t, &x, ax) or not companion2(&cv, &t, &t_view):
        return None
    if t.typ == cnp.NPY_INT32:
        # the kernels read int64 indices: a copy of the (small or one-axis) targets
        if not (t.contiguous or t.ndim == 1):
            return None
        wide = <int64_t *>malloc(max(t.size, 1) * sizeof(int64_t))
        if wide == NULL:
            raise MemoryError()
        for i in range(t.size):
            wide[i] = (<int32_t *>t.data)[i if t.contiguous else i * t.st[0]]
        t_view = rows_like(&cv, wide)     # C-ordered, whatever t's layout
    try:
        if code == NONE:
            rows = new_array(&x, False, ax, False)
            rows_view = rows_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>rows))
        if want_grad:
            grad = new_array(&x, False, -2, False)
            grad_view = view_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>grad))
        args = class_args(cv.outer, cv.C, cv.inner, cv.x, t_view, w, s_w, ii, eps, is_nll,
                          rows_view, grad_view, want_grad)
        # nll_loss reads one logit a row (its work is the rows), but writes every entry of
        # its gradient
        nthreads = threads_for(cv.outer * cv.inner if is_nll and grad is None else x.size,
                               for_work)
        if x.typ == cnp.NPY_FLOAT32:
            run_class_loss(<const float *>args.x.data, &args, <Reduction>code, nthreads, &res)
        else:
            run_class_loss(<const double *>args.x.data, &args, <Reduction>code, nthreads, &res)
    finally:
        free(wide)
    if res.bad_row >= 0 or (code == MEAN and res.weight_sum == 0):
        return None
    loss = loss_result(code, res.loss_sum, res.weight_sum, rows, x.typ)
    return (loss, grad) if want_grad else loss


# ---------------------------------------------------------- elementwise losses ----

cdef bint elementwise_operand(object obj, const Arr *x, View3 *v):
    # an operand of an elementwise loss (target, weights, var): x's dtype and shape,
    # C-contiguous like x, which joint_3d (_layout.py) then views as (1, 1, size); None
    # gives a view with data NULL
    cdef Arr a
    if obj is None:
        v[0] = View3(NULL, 0, 0, 0)
        return True
    if not (take_array(obj, &a, TAKE_FLOAT) and a.typ == x.typ and a.contiguous
            and same_shape(&a, x)):
        return False
    v[0] = View3(a.data, 0, 0, 1)
    return True


def elementwise_call(Elementwise kind, input, target, a, b, eps, full, log_input, log_target,
                     reduction, return_grad, for_work):
    """binary_cross_entropy_with_logits (a, b: weight, pos_weight), gaussian_nll_loss (a: var),
    poisson_nll_loss or kl_div: input, target and a, b (None or arrays) C-contiguous arrays of
    one float dtype and shape, with at least one element; eps a Python float, full,
    log_input, log_target and return_grad bools, reduction one of the function's names.
    Returns what the function returns (the Gaussian's gradient is the pair (input, var));
    None for a var with a negative entry (the general path raises)."""
    cdef Arr x
    cdef View3 xv, yv, av, bv, rv = View3(NULL, 0, 0, 0), gv = View3(NULL, 0, 0, 0)
    cdef View3 gav = View3(NULL, 0, 0, 0)
    cdef int code = take_reduction(reduction, kind == KL)
    cdef int want_grad = take_bool(return_grad), flags = 0, f_full = take_bool(full)
    cdef int f_log_input = take_bool(log_input), f_log_target = take_bool(log_target)
    cdef double e, total, divisor, sigma
    cdef int nthreads, negative = 0
    if code < 0 or want_grad < 0 or f_full < 0 or f_log_input < 0 or f_log_target < 0:
        return None
    if not take_float(eps, &e):
        return None
    # (one element: joint_3d's view of it has no unit stride, and takes the scalar loop)
    if not (take_array(input, &x, TAKE_FLOAT) and x.contiguous and x.ndim > 0 and x.size > 1):
        return None
    if not (elementwise_operand(target, &x, &yv) and yv.data != NULL
            and elementwise_operand(a, &x, &av) and elementwise_operand(b, &x, &bv)):
        return None
    if kind == GAUSSIAN:
        if av.data == NULL:
            return None
        # a negative variance: the general path's error (fnl_sum_probs flags it, in one
        # vectorised pass; nan is not negative)
        if x.typ == cnp.NPY_FLOAT32:
            fnl_sum_probs(<const float *>av.data, x.size, &negative)
        else:
            fnl_sum_probs(<const double *>av.data, x.size, &negative)
        if negative:
            return None
    xv = View3(x.data, 0, 0, 1)
    flags = ((FLAG_FULL if f_full else 0) | (FLAG_LOG_INPUT if f_log_input else 0)
             | (FLAG_LOG_TARGET if f_log_target else 0))
    divisor = x.shape[0] if code == BATCHMEAN else x.size
    sigma = 1.0 / divisor if code == MEAN or code == BATCHMEAN else 1.0
    rows = grad = grad_a = None
    if code == NONE:
        rows = new_array(&x, False, -2, False)
        rv = View3(cnp.PyArray_DATA(<cnp.ndarray>rows), 0, 0, 1)
    if want_grad:
        grad = new_array(&x, False, -2, False)
        gv = View3(cnp.PyArray_DATA(<cnp.ndarray>grad), 0, 0, 1)
        if kind == GAUSSIAN:
            grad_a = new_array(&x, False, -2, False)
            gav = View3(cnp.PyArray_DATA(<cnp.ndarray>grad_a), 0, 0, 1)
    nthreads = threads_for(x.size, for_work)
    if x.typ == cnp.NPY_FLOAT32:
        total = elementwise_core(kind, <const float *>x.data, 1, 1, x.size, xv, yv, av, bv, e,
                                 flags, sigma, rv, gv, gav, nthreads)
    else:
        total = elementwise_core(kind, <const double *>x.data, 1, 1, x.size, xv, yv, av, bv, e,
                                 flags, sigma, rv, gv, gav, nthreads)
    loss = loss_result(MEAN if code == BATCHMEAN else code, total, divisor, rows, x.typ)
    if not want_grad:
        return loss
    return (loss, (grad, grad_a)) if kind == GAUSSIAN else (loss, grad)


# ---------------------------------------------------------------- entropy ----

cdef bint any_negative(const Arr *a):
    # an entry < 0 (nan is not), for the layouts entropy_core does not check
    cdef Py_ssize_t i
    cdef int d
    cdef Py_ssize_t rem, off
    for i in range(a.size):
        rem = i
        off = 0
        for d in range(a.ndim - 1, -1, -1):
            off += (rem % a.shape[d]) * a.st[d]
            rem //= a.shape[d]
        if (((<float *>a.data)[off] < 0) if a.typ == cnp.NPY_FLOAT32
                else ((<double *>a.data)[off] < 0)):
            return True
    return False


def entropy_call(pk, qk, base, axis, for_work):
    """entropy(pk, qk, base, axis) with base None: pk a float array (at least 1-D) and qk None
    or an array of its dtype and shape, axis an int or None (a C-contiguous or 1-D pk).
    None where an entry is negative (the general path raises)."""
    cdef Arr p, q
    cdef Class3 cv
    cdef View3 qv = View3(NULL, 0, 0, 0)
    cdef View2 ov
    cdef int ax = 0, negative
    cdef bint whole = axis is None
    cdef int nthreads
    if base is not None or not take_array(pk, &p, TAKE_FLOAT) or p.ndim == 0:
        return None
    if not whole:
        ax = take_axis(axis, p.ndim)
        if ax < 0:
            return None
    if not class_view(&p, ax, whole, &cv):
        return None
    if qk is not None:
        if not (take_array(qk, &q, TAKE_FLOAT) and q.typ == p.typ
                and companion3(&cv, &p, &q, &qv)):
            return None
    res = new_array(&p, False, -1 if whole else ax, False)
    ov = rows_like(&cv, cnp.PyArray_DATA(<cnp.ndarray>res))
    nthreads = threads_for(p.size, for_work)
    if p.typ == cnp.NPY_FLOAT32:
        negative = entropy_core(<const float *>cv.x.data, <const float *>qv.data,
                                <float *>ov.data, cv.outer, cv.C, cv.inner, cv.x, qv, ov, 1.0,
                                nthreads)
    else:
        negative = entropy_core(<const double *>cv.x.data, <const double *>qv.data,
                                <double *>ov.data, cv.outer, cv.C, cv.inner, cv.x, qv, ov, 1.0,
                                nthreads)
    if negative == 1 or (negative == -1 and (any_negative(&p)
                                             or (qk is not None and any_negative(&q)))):
        return None
    return scalar_or_array(res)


# ---------------------------------------------------------- linear_cross_entropy ----

def linear_call(input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
                label_smoothing, softcap, z_loss, return_grad, Py_ssize_t block_bytes):
    """linear_cross_entropy when its rows make one block (_linear.linear_blocks: N x V logits
    of at most block_bytes) and every target is kept: input (N, H) and linear_weight (V, H)
    C-contiguous float arrays of one dtype, linear_bias None or (V,) of it, target int32 or
    int64 of shape (N,) in range, no class weights, softcap None, z_loss 0.0, the other
    options as class_loss_call takes them.  The same products (np.matmul into the same
    arrays) and the same kernel call as linear_blocks' one block.  Returns (loss, gx, gW, gb)
    (the gradients None without return_grad; gb None without a bias) or None."""
    cdef Arr x, W, b, t
    cdef int want_grad = take_bool(return_grad), code = take_reduction(reduction, False)
    cdef int has_b = linear_bias is not None
    cdef int64_t ii, v
    cdef double eps = 0.0
    cdef Py_ssize_t N, V, H, i
    cdef int64_t *wide = NULL
    cdef const int64_t *tp
    cdef ClassArgs args
    cdef BlockSum res
    cdef View3 zv
    cdef cnp.npy_intp dims[2]
    if (weight is not None or softcap is not None or type(z_loss) is not float
            or z_loss != 0.0 or want_grad < 0 or code < 0
            or not take_index(ignore_index, &ii) or not take_smoothing(label_smoothing, &eps)):
        return None
    if not (take_array(input, &x, TAKE_FLOAT) and x.ndim == 2 and x.contiguous
            and take_array(linear_weight, &W, TAKE_FLOAT) and W.typ == x.typ and W.ndim == 2
            and W.contiguous and take_array(target, &t, TAKE_INT) and t.ndim == 1
            and t.contiguous):
        return None
    N, H, V = x.shape[0], x.shape[1], W.shape[0]
    if N == 0 or H == 0 or V == 0 or W.shape[1] != H or t.shape[0] != N:
        return None
    if has_b and not (take_array(linear_bias, &b, TAKE_FLOAT) and b.typ == x.typ
                      and b.ndim == 1 and b.contiguous and b.shape[0] == V):
        return None
    if N * V * x.isz > block_bytes:
        return None
    # every target kept and in range (else the general path drops rows, or raises)
    if t.typ == cnp.NPY_INT32:
        wide = <int64_t *>malloc(N * sizeof(int64_t))
        if wide == NULL:
            raise MemoryError()
        for i in range(N):
            wide[i] = (<int32_t *>t.data)[i]
        tp = wide
    else:
        tp = <const int64_t *>t.data
    try:
        for i in range(N):
            v = tp[i]
            if v == ii or v < 0 or v >= V:
                return None
        dims[0], dims[1] = N, V
        z = np.matmul(input, linear_weight.T, out=cnp.PyArray_EMPTY(2, dims, x.typ, 0))
        if has_b:
            np.add(z, linear_bias, out=z)
        rows = cnp.PyArray_EMPTY(1, dims, x.typ, 0) if code == NONE else None
        zv = View3(cnp.PyArray_DATA(<cnp.ndarray>z), V, 1, 1)
        args = class_args(N, V, 1, zv, View2(<void *>tp, 1, 0), NULL, 0, ii, eps, False,
                          View2(cnp.PyArray_DATA(<cnp.ndarray>rows), 1, 0) if rows is not None
                          else View2(NULL, 0, 0), zv if want_grad else View3(NULL, 0, 0, 0),
                          want_grad)
        args.sum_scale = 1.0 / N if code == MEAN else 1.0
        if x.typ == cnp.NPY_FLOAT32:
            run_class_loss(<const float *>zv.data, &args, NONE if code == NONE else SUM, 1,
                           &res)
        else:
            run_class_loss(<const double *>zv.data, &args, NONE if code == NONE else SUM, 1,
                           &res)
    finally:
        free(wide)
    loss = loss_result(code, res.loss_sum, N, rows, x.typ)
    if not want_grad:
        return loss, None, None, None
    dims[0], dims[1] = N, H
    gx = cnp.PyArray_ZEROS(2, dims, x.typ, 0)
    np.matmul(linear_weight.T, z.T, out=gx.T)
    dims[0] = V
    gW = np.matmul(z.T, input, out=cnp.PyArray_EMPTY(2, dims, x.typ, 0))
    gb = None
    if has_b:
        gb = np.zeros(V, dtype=np.float64)
        gb += z.sum(axis=0, dtype=np.float64)
        gb = gb.astype(input.dtype)
    return loss, gx, gW, gb
