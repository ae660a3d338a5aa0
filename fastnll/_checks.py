"""Argument checking shared by every public function.

Every public function reports the same mistake with the same words, because the words live
here: each helper converts or checks one argument and raises a ValueError, IndexError or
TypeError that names it and the offending value.  Nothing in this module computes a result;
views and results are _layout.py's, whose kernel_ready gives class targets and class weights
their kernel dtype here, before the checks that report their values.
"""
import math
import operator

import numpy as np

from ._half import half_kind
from ._layout import kernel_ready

REDUCTIONS = ("none", "mean", "sum")
_I64 = np.dtype(np.int64)
_I64_MIN, _I64_END = -(2 ** 63), 2 ** 63


# ------------------------------------------------------------------- scalars ----

def integer(value, name):
    """value as a Python int, refusing bools and anything that is not an integer (floats,
    strings, None) with a TypeError naming it."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def real_number(value, name):
    """value as a float, refusing strings, bools and non-numbers with a TypeError naming it."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def check_reduction(reduction, allowed=REDUCTIONS):
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(
            f"reduction must be one of {', '.join(repr(r) for r in allowed)}, "
            f"got {reduction!r}"
        )
    return reduction


def check_label_smoothing(label_smoothing):
    eps = real_number(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps


def check_softcap(softcap):
    """None, or the positive finite cap c of c * tanh(logits / c)."""
    if softcap is None:
        return None
    c = real_number(softcap, "softcap")
    if not (c > 0 and math.isfinite(c)):
        raise ValueError(f"softcap must be a positive finite number or None, got {softcap!r}")
    return c


def check_z_loss(z_loss):
    """The z-loss coefficient: a finite number >= 0."""
    z = real_number(z_loss, "z_loss")
    if not (z >= 0 and math.isfinite(z)):
        raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
    return z


def check_ignore_index(ignore_index):
    """ignore_index as an int that fits in int64."""
    if type(ignore_index) is int and _I64_MIN <= ignore_index < _I64_END:
        return ignore_index
    value = integer(ignore_index, "ignore_index")
    if not _I64_MIN <= value < _I64_END:
        raise ValueError(f"ignore_index must fit in 64 bits, got {value}")
    return value


def check_thread_count(n, maximum):
    """n as an int in [1, maximum]."""
    n = integer(n, "the number of threads")
    if not 1 <= n <= maximum:
        raise ValueError(f"the number of threads must be in [1, {maximum}], got {n}")
    return n


def check_base(base):
    """entropy's base: None or a positive number."""
    if base is not None:
        if not real_number(base, "base") > 0:
            raise ValueError(f"base must be a positive number or None, got {base!r}")
    return base


# -------------------------------------------------------------------- axes ----

def normalize_axis(axis, ndim, name="axis"):
    """axis in [0, ndim).  A 0-d array takes axis 0 or -1, as in SciPy (the caller works on
    its 1-element reshape), and the error names its true dimension."""
    ax = integer(axis, name)
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


def class_axis(ndim, axis):
    """The class axis of a loss's input: PyTorch's convention (1, or 0 for a 1-D input) when
    axis is None."""
    if ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis), got a scalar")
    if axis is None:
        return 0 if ndim == 1 else 1
    return normalize_axis(axis, ndim)


# ------------------------------------------------------------------ arrays ----

def as_real_array(value, name):
    """np.asarray(value), refusing anything that is not a real number array."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a real numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf" and not half_kind(arr.dtype):
        raise TypeError(
            f"{name} must be a real numeric array, got dtype {arr.dtype!s}"
            + (" (complex input is not supported)" if arr.dtype.kind == "c" else "")
        )
    return arr


def check_shape(name, shape, expected, what):
    if tuple(shape) != tuple(expected):
        raise ValueError(
            f"{name} has shape {tuple(shape)} but {what} {tuple(expected)}"
        )


def check_out(out, name, shape, dtype, what="result"):
    """A caller's output array, with NumPy's rules for `out=`: an ndarray of the result's
    shape, writeable, of a dtype that the result casts to under casting="same_kind"."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    check_shape(name, out.shape, shape, f"the {what} has shape")
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise TypeError(f"{name} has dtype {out.dtype!s}, which cannot hold the {dtype!s} "
                        f"{what} (casting='same_kind')")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def check_grad_out(grad_out, return_grad, shapes, dtype, names=("grad_out",)):
    """grad_out= of a function with return_grad: None, or (with return_grad=True) one array
    shaped like the gradient, or for a function that returns several gradients a tuple of
    them (None where that gradient is None).  Returns the arrays as a tuple."""
    if grad_out is None:
        return (None,) * len(shapes)
    if not return_grad:
        raise ValueError("grad_out is given but return_grad is False: the gradient is only "
                         "computed with return_grad=True")
    if len(shapes) == 1:
        return (check_out(grad_out, names[0], shapes[0], dtype, "gradient"),)
    if not isinstance(grad_out, tuple) or len(grad_out) != len(shapes):
        raise TypeError(f"grad_out must be a tuple of {len(shapes)} arrays "
                        f"({', '.join(names)}), got {type(grad_out).__name__}")
    outs = []
    for out, shape, name in zip(grad_out, shapes, names):
        if shape is None:
            if out is not None:
                raise ValueError(f"{name} must be None: there is no such gradient")
            outs.append(None)
        else:
            outs.append(check_out(out, name, shape, dtype, "gradient"))
    for i, a in enumerate(outs):
        for j in range(i + 1, len(outs)):
            if a is not None and outs[j] is not None and np.may_share_memory(a, outs[j]):
                raise ValueError(f"{names[i]} and {names[j]} share memory: each gradient "
                                 f"needs its own array")
    return tuple(outs)


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


def broadcast_b(a, b):
    """logsumexp's a and b broadcast against each other (views)."""
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"b with shape {b.shape} cannot be broadcast against a with shape {a.shape}"
        ) from None
    return np.broadcast_to(a, shape), np.broadcast_to(b, shape)


def broadcast_pk_qk(p, q):
    """entropy's pk and qk broadcast against each other (views)."""
    try:
        return np.broadcast_arrays(p, q)
    except ValueError:
        raise ValueError(
            f"pk with shape {p.shape} and qk with shape {q.shape} cannot be broadcast "
            "together"
        ) from None


def check_nonnegative(name, arr):
    """Refuse negative entries (nan passes, as in PyTorch, also beside a negative one).  A
    reduction, not a mask, so that the check allocates nothing of the array's size; fmin
    skips nan (min would return nan, hiding a negative entry)."""
    if arr.size and np.fmin.reduce(arr, axis=None) < 0:
        raise ValueError(f"{name} must be non-negative, got {arr[arr < 0].flat[0]!r}")


def check_probabilities(name, found, value):
    """entropy's refusal of a negative probability (found by the kernels' first_negative)."""
    if found:
        raise ValueError(f"{name} must hold non-negative probabilities, got {value!r}")


def check_gaussian_var_shape(var_shape, x_shape):
    """gaussian_nll_loss's var (not a scalar) must have one of PyTorch's shapes: the input's
    shape, the input's shape without its last axis, or the input's shape with exactly one
    axis of size 1."""
    if tuple(var_shape) in (tuple(x_shape), tuple(x_shape[:-1])):
        return
    if not (len(var_shape) == len(x_shape)
            and sum(1 for a, b in zip(x_shape, var_shape) if a != b) == 1
            and all(b == 1 for a, b in zip(x_shape, var_shape) if a != b)):
        raise ValueError(
            f"var has shape {tuple(var_shape)}, which does not fit input shape "
            f"{tuple(x_shape)}: expected the input's shape, the input's shape without its "
            "last axis, or the input's shape with one axis of size 1"
        )


# --------------------------------------------------------- class-index targets ----

def out_of_bounds(value, C, ignore_index):
    """The IndexError of a class target outside [0, C) that is not ignore_index."""
    valid = f"0..{C - 1} or " if C else ""
    return IndexError(f"target {value} is out of bounds for {C} classes "
                      f"(valid targets are {valid}ignore_index={ignore_index})")


def target_array(target, what):
    """np.asarray(target), with errors that name the target: a ragged nested list is a
    TypeError, and a list of Python ints that do not all fit in int64 (which NumPy stores as
    float64 or object) comes back as an object array, for class_targets to report the value
    (rather than being taken for probabilities)."""
    try:
        t = np.asarray(target)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"target must be an array of {what}: {exc}") from None
    if t.dtype.kind == "f" and t.size and not isinstance(target, np.ndarray):
        obj = np.asarray(target, dtype=object)
        if obj.shape == t.shape and all(type(v) is int for v in obj.flat):
            return obj
    return t


def check_class_target_dtype(dtype):
    """Class-index targets must be integers (floats and bools are refused)."""
    if dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {dtype!s}")


def check_class_target_shape(t_shape, x_shape, axis):
    """Class-index targets are shaped like the input without its class axis."""
    check_shape("target", t_shape, x_shape[:axis] + x_shape[axis + 1:],
                f"input has shape {tuple(x_shape)} with classes on axis {axis}; expected")


def check_known_shape(name, shape):
    """A Dask array's shape must be known (not nan, as after boolean indexing)."""
    if any(isinstance(n, float) and math.isnan(n) for n in shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {tuple(shape)}): call "
                         f"{name}.compute_chunk_sizes() first")


def class_targets(target, x_shape, axis, C, ignore_index):
    """Class-index targets as an int64 array shaped like the input without its class axis
    (the values are checked against [0, C) by the kernels, which report the first invalid
    one for out_of_bounds)."""
    t = target_array(target, "integer class indices")
    if t.dtype != _I64:
        if t.dtype.kind not in "iu":
            if t.dtype.kind == "O":      # Python ints beyond 64 bits
                for v in t.flat:
                    if type(v) is int and not -(2 ** 63) <= v < 2 ** 63:
                        raise out_of_bounds(v, C, ignore_index)
            check_class_target_dtype(t.dtype)
        if t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max:
            raise out_of_bounds(int(t.max()), C, ignore_index)
    t = kernel_ready(t, _I64)          # also aligns e.g. a field of a structured array
    if t.shape != x_shape[:axis] + x_shape[axis + 1:]:
        check_class_target_shape(t.shape, x_shape, axis)
    return t


def check_class_range(t, C, ignore_index):
    """Every class-index target in [0, C) or ignore_index: the IndexError of the first other
    (for callers that check the targets before any kernel runs; the kernels check on the
    fly and report the same error)."""
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        raise out_of_bounds(int(t[bad].flat[0]), C, ignore_index)


def check_probability_ignore_index(ignore_index):
    """PyTorch: "ignore_index is not supported for floating point target" (a negative one, the
    default -100 included, is accepted and unused)."""
    if ignore_index >= 0:
        raise ValueError(f"ignore_index={ignore_index} is not supported with class-probability "
                         "targets (a float target); only a negative ignore_index is accepted, "
                         "as in PyTorch")


def class_weight(weight, C, dtype):
    """Class weights as a kernel-ready array of shape (C,), or None."""
    if weight is None:
        return None
    w = as_real_array(weight, "weight")
    check_shape("weight", w.shape, (C,), "the input has C classes; expected shape")
    # any sign, as in PyTorch (negative weights are real: Monte Carlo event weights)
    return kernel_ready(w, dtype)
