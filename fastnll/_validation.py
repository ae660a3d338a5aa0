"""Argument checking and class-axis handling shared by every public function.

Every public function reports the same mistake with the same words, because the words live
here.  Nothing in this module computes a result: it converts, checks and reshapes.
"""
import math
import operator

import numpy as np

from ._dispatch import kernels

REDUCTIONS = ("none", "mean", "sum")


def as_real_array(value, name):
    """np.asarray(value), refusing anything that is not a real number array."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a real numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be a real numeric array, got dtype {arr.dtype!s}"
            + (" (complex input is not supported)" if arr.dtype.kind == "c" else "")
        )
    return arr


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def compute_dtype(*arrays):
    """float32 for float32 (and float16) inputs, float64 for everything else, after NumPy's
    promotion of the given arrays."""
    if len(arrays) == 1 and arrays[0].dtype in (_F32, _F64):
        return arrays[0].dtype
    dt = np.result_type(*[a.dtype for a in arrays])
    if dt.kind == "f" and dt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def kernel_ready(arr, dtype):
    """arr as dtype with element-multiple strides (a view when possible, else one copy)."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    arr = arr.astype(dtype, copy=False)
    if not arr.flags.aligned or any(s % arr.itemsize for s in arr.strides):
        arr = np.array(arr, dtype=dtype, order="C")
    return arr


_EMPTY = {(dt, nd): np.empty((0,) * nd, dtype=dt) for dt in (_F32, _F64) for nd in (1, 2, 3)}


def empty_out(dtype, ndim):
    """A shared empty array standing in for an output a kernel is told not to write."""
    return _EMPTY[dtype, ndim]


def finish_reduction(reduction, total, denom, rows, dtype):
    """What a loss returns: the per-element losses ("none"), their float64 sum ("sum"), or
    the sum divided by denom ("mean", "batchmean"; nan for 0 / 0), as a scalar of dtype."""
    if reduction == "none":
        return rows[()] if rows.ndim == 0 else rows
    if reduction == "sum":
        return dtype.type(total)
    if denom == 0:
        return dtype.type(np.nan)
    return dtype.type(total / denom)


def check_reduction(reduction, allowed=REDUCTIONS):
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(
            f"reduction must be one of {', '.join(repr(r) for r in allowed)}, "
            f"got {reduction!r}"
        )
    return reduction


def normalize_axis(axis, ndim, name="axis"):
    """axis in [0, ndim).  A 0-d array takes axis 0 or -1, as in SciPy (the caller works on
    its 1-element reshape), and the error names its true dimension."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {axis!r}")
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {axis!r}") from None
    if not -max(ndim, 1) <= ax < max(ndim, 1):
        raise ValueError(
            f"{name} {ax} is out of bounds for an array of dimension {ndim}"
        )
    return ax % max(ndim, 1)


def normalize_axes(axis, ndim, name="axis"):
    """None -> every axis; an int or a tuple of ints -> a sorted tuple of distinct axes.
    (For a 0-d array, ndim=0: the axes of its 1-element reshape.)"""
    if axis is None:
        return tuple(range(max(ndim, 1)))
    if isinstance(axis, (tuple, list)):
        axes = [normalize_axis(a, ndim, name) for a in axis]
    else:
        axes = [normalize_axis(axis, ndim, name)]
    if len(set(axes)) != len(axes):
        raise ValueError(f"duplicate value in {name}: {axis!r}")
    return tuple(sorted(axes))


def real_number(value, name):
    """value as a float, refusing strings, bools and non-numbers with a TypeError naming it."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def check_label_smoothing(label_smoothing):
    eps = real_number(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps


def check_shape(name, shape, expected, what):
    if tuple(shape) != tuple(expected):
        raise ValueError(
            f"{name} has shape {tuple(shape)} but {what} {tuple(expected)}"
        )


class ClassView:
    """The (outer, C, inner) view of arrays around one class axis, or around a group of
    reduced axes moved together.

    `x3`/`to3` give 3-D views (outer, C, inner); `to2` gives the 2-D (outer, inner) view of an
    array shaped like the input without the class axis.  When the class axis is the
    contiguous-most one in a layout where each "row" is strided (for example axis=1 of a
    transposed matrix), outer and inner are swapped in every view, so the kernels run
    vector lanes along the contiguous axis.  Views need no copy except where the strides
    cannot be merged (NumPy's reshape decides), and then only once, for the input.  With few
    classes the views are swapped too: the kernels then reduce blocks of rows with their
    vector lanes across rows.
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


def check_broadcast(name, arr, shape, ref_name="input"):
    """arr broadcast (as a view) to `shape`, which must stay the shape of the result."""
    if arr.shape == tuple(shape):
        return arr
    try:
        out_shape = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        out_shape = None
    if out_shape != tuple(shape):
        raise ValueError(
            f"{name} with shape {arr.shape} cannot be broadcast to the shape of {ref_name} "
            f"{tuple(shape)}"
        )
    return np.broadcast_to(arr, shape)


def check_nonnegative(name, arr):
    """Refuse negative entries (nan passes, as in PyTorch).  A reduction, not a mask, so that
    the check allocates nothing of the array's size."""
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative, got {arr[arr < 0].flat[0]!r}")


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
