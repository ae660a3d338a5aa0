"""How arrays go into the kernels and how results come back.

Dtypes (compute_dtype, kernel_ready), the class-axis view (ClassView, group_axes), the joint
3-D views of the elementwise losses (joint_3d), and the results: the reduction of a loss
(finish_reduction), 0-d unwrapping (scalar_or_array) and the (loss, grad) pair
(with_grad).  Nothing here checks arguments (that is _checks.py).
"""
import contextlib
import math

import numpy as np

from ._dispatch import kernels
from ._half import half_kind

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


# ------------------------------------------------------------------- dtypes ----

def compute_dtype(*arrays):
    """float32 for float32 (and float16, bfloat16) inputs, float64 for everything else, after
    NumPy's promotion of the given arrays."""
    if len(arrays) == 1 and arrays[0].dtype in (_F32, _F64):
        return arrays[0].dtype
    dt = np.result_type(*[a.dtype for a in arrays])
    if (dt.kind == "f" and dt.itemsize <= 4) or half_kind(dt):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def is_weak_scalar(obj):
    """A Python number: a weak scalar under NumPy 2's promotion, which takes the array's dtype
    (float32 data with b=2.0 stays float32, as in SciPy), unlike a NumPy scalar or a list."""
    return type(obj) in (bool, int, float)


def kernel_ready(arr, dtype):
    """arr as dtype with element-multiple strides (a view when possible, else one copy)."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    arr = arr.astype(dtype, copy=False)
    if not arr.flags.aligned or any(s % arr.itemsize for s in arr.strides):
        arr = np.array(arr, dtype=dtype, order="C")
    return arr


# --------------------------------------------------------------- class axis ----

class ClassView:
    """The (outer, C, inner) view of arrays around one class axis, or around a group of
    reduced axes moved together (group_axes).

    `x3`/`to3` give 3-D views (outer, C, inner); `to2` gives the 2-D (outer, inner) view of an
    array shaped like the input without the class axis.  When the class axis is the
    contiguous-most one in a layout where each "row" is strided (for example axis=1 of a
    transposed matrix), outer and inner are swapped in every view, so the kernels run
    vector lanes along the contiguous axis.  Views need no copy except where the strides
    cannot be merged (NumPy's reshape decides), and then only once, for the input.  With few
    classes the views are swapped too: the kernels then reduce blocks of rows with their
    vector lanes across rows.  The rule is the kernels' (is_swapped in _class_axis.pxi).
    """

    def __init__(self, x, axis):
        shape = x.shape
        C = shape[axis]
        outer = math.prod(shape[:axis])
        inner = math.prod(shape[axis + 1:])
        self.outer, self.C, self.inner = outer, C, inner
        x3 = x.reshape(outer, C, inner)
        s0, s1, _ = x3.strides
        self.swap = kernels.swap_classes(outer, C, inner, s0, s1)
        self.x3 = x3.transpose(2, 1, 0) if self.swap else x3

    def to3(self, arr):
        v = arr.reshape(self.outer, self.C, self.inner)
        return v.transpose(2, 1, 0) if self.swap else v

    def to2(self, arr):
        if self.swap:       # inner == 1: the (1, outer) view
            return arr.reshape(1, self.outer)
        return arr.reshape(self.outer, self.inner)


def group_axes(a, axes):
    """Bring the reduced axes together: returns (array, first_axis, count, perm).

    Consecutive axes need no change (perm is None); others are moved to the end by the
    transpose perm (the reshape that follows then copies once)."""
    if axes == tuple(range(axes[0], axes[0] + len(axes))):
        return a, axes[0], len(axes), None
    perm = [i for i in range(a.ndim) if i not in axes] + list(axes)
    return a.transpose(perm), a.ndim - len(axes), len(axes), perm


def merge_axes(a, first, count):
    """Reshape so that axes [first, first+count) become one axis (a view when possible)."""
    shape = a.shape
    return a.reshape(shape[:first] + (math.prod(shape[first:first + count]),)
                     + shape[first + count:])


def mergeable(a, first, count):
    """Whether axes [first, first+count) of a merge into one axis without a copy."""
    dims = [(n, s) for n, s in zip(a.shape[first:first + count], a.strides[first:first + count])
            if n != 1]
    return all(s_out == n_in * s_in for (_, s_out), (n_in, s_in) in zip(dims, dims[1:]))


# ---------------------------------------------------------- elementwise views ----

def joint_3d(shape, arrays):
    """Groups of 3-D views (n0, n1, n2) of arrays that all have `shape` (broadcast views
    allowed), merging adjacent dimensions wherever every array's strides allow it, so that an
    elementwise kernel walks each group with one loop nest.  When the strides leave more than
    three dimensions, the first axis is split off and each of its slices handled the same way:
    the result is a list of groups (usually one), all views, never copies."""
    dims = []
    for i, n in enumerate(shape):
        if n == 1:
            continue
        strides = [a.strides[i] for a in arrays]
        if dims and all(ps == s * n for ps, s in zip(dims[-1][1], strides)):
            dims[-1] = (dims[-1][0] * n, strides)
        else:
            dims.append((n, strides))
    if len(dims) > 3:
        first = next(i for i, n in enumerate(shape) if n != 1)
        groups = []
        for j in range(shape[first]):
            index = (slice(None),) * first + (j,)
            groups += joint_3d(shape[first + 1:], [a[index] for a in arrays])
        return groups
    dims = [(1, [0] * len(arrays))] * (3 - len(dims)) + dims
    new_shape = tuple(n for n, _ in dims)
    return [[_view(a, new_shape, tuple(st[k] for _, st in dims))
             for k, a in enumerate(arrays)]]


def _view(a, shape, strides):
    # The merged dimensions have consistent strides in every array, so a reshape is a view;
    # copy=False makes NumPy refuse rather than copy (a copied output would lose its writes).
    try:
        return a.reshape(shape, copy=False)
    except TypeError:    # NumPy < 2.1 has no copy= in reshape
        return np.lib.stride_tricks.as_strided(a, shape=shape, strides=strides,
                                               writeable=a.flags.writeable)


# ------------------------------------------------------------------ outputs ----
# A caller's out= (softmax, log_softmax, logsumexp) or grad_out= (every return_grad) array,
# checked by _checks.check_out, is written by the kernel itself where it is what the
# function would allocate (the compute dtype, C-contiguous: the kernels' loops, and so the
# roundings of a few of them, follow the output's strides too, and a result must not depend
# on where it is written) and it shares no memory with an input; otherwise the result goes
# through a fresh array that deliver() copies into it, as NumPy does for overlapping
# operands.

def same_memory(a, b):
    """Whether a and b are the same elements in the same layout (an in-place call)."""
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def kernel_writable(out, dtype, inputs=()):
    """Whether a caller's out array can be a kernel's output itself: the compute dtype,
    C-contiguous and aligned, and no memory shared with any of `inputs`."""
    return (out is not None and out.dtype == dtype and out.flags.c_contiguous
            and out.flags.aligned
            and not any(a is not None and np.may_share_memory(out, a) for a in inputs))


def output_array(out, shape, dtype, inputs=(), zero=False):
    """The array a kernel writes: the caller's `out` itself where kernel_writable allows,
    else a fresh one; zero-filled with zero=True."""
    if kernel_writable(out, dtype, inputs):
        if zero:
            out.fill(0)
        return out
    return np.zeros(shape, dtype=dtype) if zero else np.empty(shape, dtype=dtype)


def deliver(out, result):
    """`result`, or with a caller's `out`, `out` holding it (NumPy's casting="same_kind";
    nothing to copy where the kernel wrote `out` itself)."""
    if out is None:
        return result
    if result is not out:
        np.copyto(out, result, casting="same_kind")
    return out


# ------------------------------------------------------------------ results ----

def scalar_or_array(arr):
    """A 0-d result as a NumPy scalar (as SciPy and NumPy return them), else the array."""
    return arr[()] if arr.ndim == 0 else arr


_float64_sums = kernels.FLOAT64_SUMS    # the compiled calls read it too


@contextlib.contextmanager
def float64_sums():
    """Inside this block (in this thread only) a "sum" reduction returns the kernels' float64
    sum unrounded: the partial sums of chunks that fastnll.dask adds up."""
    token = _float64_sums.set(True)
    try:
        yield
    finally:
        _float64_sums.reset(token)


def finish_reduction(reduction, total, denom, rows, dtype):
    """What a loss returns: the per-element losses ("none"), their float64 sum ("sum"), or
    the sum divided by denom ("mean", "batchmean"), as a scalar of dtype.  The division is
    IEEE's, as PyTorch's: nan for 0 / 0, and +-inf for a nonzero sum over a zero denominator
    (class weights of any sign can sum to 0)."""
    if reduction == "none":
        return scalar_or_array(rows)
    if reduction == "sum" and _float64_sums.get():
        return np.float64(total)
    if denom == 0 or dtype.itemsize == 2:
        # (np.errstate costs a microsecond: only here) a 16-bit loss overflows to inf, as in
        # PyTorch, without NumPy's warning of the cast
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if reduction == "sum":
                return dtype.type(total)
            return dtype.type(np.float64(total) / np.float64(denom))
    if reduction == "sum":
        return dtype.type(total)
    return dtype.type(total / denom)


def with_grad(loss, grad, return_grad, grad_out=None):
    """What a loss with `return_grad` returns: (loss, grad), or the loss alone; with a
    caller's grad_out, the gradient delivered into it."""
    return (loss, deliver(grad_out, grad)) if return_grad else loss
