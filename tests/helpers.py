"""Test helpers shared by the suite: the assertion family, memory layouts, hypothesis strategies."""
# Imported as `from helpers import ...`: pytest puts this directory on sys.path because tests/
# has no __init__.py (it must not have one: the suite runs against the installed fastnll, and a
# package would put the source tree first on sys.path).  conftest.py keeps only fixtures and
# hooks.  Nothing here depends on fastnll.
import copy
import os
import tracemalloc

import numpy as np

# ------------------------------------------------------------------------- tolerances ----
# Two error models, one per way of knowing how large a result's rounding error can be:
#
# "scaled" (the default): |got - expected| <= atol + rtol |expected|, with atol relative to the
#     largest finite reference magnitude (capped at 1).
# "per term" (assert_close(..., mag=m)): |got - expected| <= rtol |expected| + atol * m
#     elementwise, where m bounds the size of the terms `expected` is made of, so that a result
#     that comes out of a cancellation is judged against its terms, not its value.

F64_RTOL, F64_ATOL = 1e-12, 1e-14
F32_RTOL, F32_ATOL = 2e-5, 1e-6
PER_TERM_TOLS = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-13)}


def tolerances(dtype, *, per_term=False):
    """(rtol, atol) for results of `dtype` in the scaled model, or with `per_term` the
    per-term model (atol per unit of term magnitude)."""
    dtype = np.dtype(dtype)
    if per_term:
        return PER_TERM_TOLS["float32" if dtype == np.float32 else "float64"]
    if dtype == np.float32:
        return F32_RTOL, F32_ATOL
    return F64_RTOL, F64_ATOL


# ---------------------------------------------------------------------- the assertions ----

def assert_close(got, expected, dtype, *, mag=None, rtol=None, atol=None, scale=None,
                 min_atol=0.0, check_dtype=True, err_msg=""):
    """Compare a fastnll result (of dtype `dtype`) with a float64 reference.

    Without `mag` (the scaled model): the absolute tolerance is scaled by the largest finite
    reference magnitude (capped at 1), so that small quantities such as gradients divided by
    the batch size are still checked tightly; `scale` raises that magnitude to a known floor,
    `atol` replaces the scaled value, and `min_atol` is a floor for it (a number or an array
    shaped like `expected`).

    With `mag` (the per-term model): |got - expected| <= rtol |expected| + atol * mag
    elementwise, `mag` (broadcast to `expected`; non-finite entries count as 0) bounding the
    size of the terms that make up `expected`; `rtol` and `atol` default to
    tolerances(dtype, per_term=True).

    In both, nan must match nan and an infinity the same infinity, position by position."""
    dtype = np.dtype(dtype)
    got_arr = np.asarray(got)
    if check_dtype:
        assert got_arr.dtype == dtype, f"dtype {got_arr.dtype} != {dtype}. {err_msg}"
    exp = np.asarray(expected, dtype=np.float64)
    assert got_arr.shape == exp.shape, f"shape {got_arr.shape} != {exp.shape}. {err_msg}"
    g = got_arr.astype(np.float64)
    if mag is None:
        r, a = tolerances(dtype)
        rtol = r if rtol is None else rtol
        if atol is None:
            finite = np.abs(exp[np.isfinite(exp)])
            own = float(finite.max()) if finite.size else 0.0
            scale = own if scale is None else max(scale, own)
            # an all-zero reference (e.g. gradients with a single class) has no scale of its
            # own: allow rounding noise of order `a`
            atol = a * (min(scale, 1.0) if scale > 0 else 1.0)
        atol = np.maximum(atol, min_atol)
        # isclose: |g - e| <= atol + rtol |e|, inf only equal to the same inf, nan to nan
        ok = np.isclose(g, exp, rtol=rtol, atol=atol, equal_nan=True)
        bound = np.broadcast_to(atol + rtol * np.abs(exp), exp.shape)
    else:
        assert scale is None and np.all(min_atol == 0), "scale, min_atol: the scaled model only"
        r, a = tolerances(dtype, per_term=True)
        rtol = r if rtol is None else rtol
        atol = a if atol is None else atol
        m = np.broadcast_to(np.asarray(mag, dtype=np.float64), exp.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            bound = rtol * np.abs(exp) + atol * np.where(np.isfinite(m), m, 0.0)
            # and the spacing of `dtype` at the result: a subnormal result is no closer than
            # its own rounding (float32 9.52 * 2**-149 is 10 * 2**-149, 5% off)
            bound = np.maximum(bound, np.spacing(np.abs(exp).astype(dtype)).astype(np.float64))
            ok = ((g == exp) | (np.isnan(g) & np.isnan(exp))
                  | (np.isfinite(exp) & (np.abs(g - exp) <= bound)))
    if not np.all(ok):
        bad = np.argwhere(~ok) if exp.ndim else [()]
        lines = [f"{int(np.sum(~ok))} of {exp.size} entries differ "
                 f"({'per-term' if mag is not None else 'scaled'} model, rtol={rtol:g}). "
                 f"{err_msg}"]
        for idx in bad[:8]:
            idx = tuple(int(i) for i in idx)
            lines.append(f"  at {idx}: got {g[idx]!r}, expected {exp[idx]!r}, "
                         f"allowed error {float(bound[idx]):g}")
        raise AssertionError("\n".join(lines))


def assert_bitwise_equal(got, expected, err_msg=""):
    """The same results bit for bit: the same types, dtypes (metadata included), shapes and
    bytes.  Tuples (a loss and its gradients) are compared element by element, recursively."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), \
            f"{err_msg}: {type(got)} of length {len(got) if isinstance(got, tuple) else '-'}, " \
            f"expected a tuple of length {len(expected)}"
        for i, (u, v) in enumerate(zip(got, expected)):
            assert_bitwise_equal(u, v, f"{err_msg}[{i}]")
        return
    assert type(got) is type(expected), f"{err_msg}: type {type(got)} != {type(expected)}"
    a, b = np.asarray(got), np.asarray(expected)
    da, db = getattr(got, "dtype", a.dtype), getattr(expected, "dtype", b.dtype)
    assert da == db and a.shape == b.shape, f"{err_msg}: {da}{a.shape} != {db}{b.shape}"
    assert da.metadata == db.metadata, f"{err_msg}: dtype metadata differs"
    assert a.tobytes() == b.tobytes(), f"{err_msg}: results differ bit-wise"


def assert_loss_type(loss, dtype, reduction, shape=None):
    """A reduced loss is a NumPy scalar of `dtype`; with `shape`, reduction="none" gives an
    array (a scalar for shape ()) of `dtype` and that shape."""
    dtype = np.dtype(dtype)
    if reduction != "none":
        assert type(loss) is dtype.type, f"scalar loss type {type(loss)} != {dtype.type}"
    elif shape is not None:
        arr = np.asarray(loss)
        assert arr.dtype == dtype, f"'none' result dtype {arr.dtype} != {dtype}"
        assert arr.shape == tuple(shape)
        if tuple(shape) != ():
            assert isinstance(loss, np.ndarray)


def _arrays(obj):
    """Every ndarray inside obj (dicts, lists, tuples)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v)


def snapshot(obj):
    """Copies of every array inside `obj` (a dict of keyword arguments, or a list of
    arguments; None entries are skipped) and, for a dict, of its list-valued entries."""
    lists = {}
    if isinstance(obj, dict):
        lists = {k: (v, copy.deepcopy(v)) for k, v in obj.items() if isinstance(v, list)}
    return [(a, a.copy()) for a in _arrays(obj)], lists


def assert_unchanged(snap, err_msg=""):
    """Every array and list recorded by snapshot() is what it was, byte for byte."""
    arrays, lists = snap
    for a, before in arrays:
        assert a.dtype == before.dtype and a.shape == before.shape, err_msg
        assert a.tobytes() == before.tobytes(), f"an input array was written. {err_msg}"
    for k, (now, before) in lists.items():
        assert now == before, f"the list passed as {k} was changed. {err_msg}"


# ---------------------------------------------------------------------------- layouts ----

LAYOUTS = ("C", "F", "moved", "step", "negative", "negstep", "readonly", "unaligned")


def _sentinel(dtype):
    kind = np.dtype(dtype).kind
    return 777 if kind == "f" else 77 if kind in "iu" else True


def make_layout(a, name):
    """The same logical array as `a`, stored in layout `name` (see LAYOUTS)."""
    a = np.asarray(a)
    rev = (slice(None, None, -1),) * a.ndim
    if name == "C":
        return np.ascontiguousarray(a)
    if name == "F":
        return np.asfortranarray(a)
    if name == "moved":
        # axis 0 stored last: a view that is neither C- nor F-ordered for ndim >= 3
        if a.ndim < 2:
            return a.copy()
        store = np.ascontiguousarray(np.moveaxis(a, 0, -1))
        return np.moveaxis(store, -1, 0)
    if name == "step":
        big = np.full(tuple(2 * n + 1 for n in a.shape), _sentinel(a.dtype), dtype=a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if name == "negative":
        return np.ascontiguousarray(a[rev])[rev]
    if name == "negstep":
        big = np.full(tuple(2 * n + 1 for n in a.shape), _sentinel(a.dtype), dtype=a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a[rev]
        return view[rev]
    if name == "readonly":
        c = a.copy()
        c.setflags(write=False)
        return c
    if name == "unaligned":
        buf = np.zeros(a.nbytes + a.itemsize + 1, dtype=np.uint8)
        arr = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        arr[...] = a
        return arr
    raise AssertionError(name)


def strided_layout(a, perm, steps):
    """`a` stored with axis order `perm` (perm[0] outermost) and read with step steps[i]
    (negative: reversed) along axis i, out of a larger buffer."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a.copy()
    store = np.full(tuple(a.shape[p] * abs(steps[p]) for p in perm), _sentinel(a.dtype),
                    dtype=a.dtype)
    logical = store.transpose(np.argsort(perm))
    view = logical[tuple(slice(None, None, s) for s in steps)]
    view[...] = a
    return view


def check_layout(arr, a, name):
    """Sanity check of make_layout itself: same values, and the intended storage."""
    np.testing.assert_array_equal(arr, a)
    if name == "readonly":
        assert not arr.flags.writeable
    if name in ("negative", "negstep") and a.size > 1:
        assert any(s < 0 for s, n in zip(arr.strides, arr.shape) if n > 1)
    if name == "unaligned" and a.size and a.itemsize > 1:
        assert not arr.flags.aligned


def writable_views(a):
    """A few writable copies of `a` the kernels could be tempted to write through: C, F,
    every other row of a larger array, reversed."""
    c = np.array(a)
    f = np.asfortranarray(a)
    big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
    big[::2] = a
    neg = np.ascontiguousarray(a[::-1])[::-1]
    return {"C": c, "F": f, "step": big[::2], "negative": neg}


def strided_views():
    """name -> maker(array_fn) giving a non-contiguous view of shape (4, 5)."""
    return {
        "transposed": lambda a: np.ascontiguousarray(a(5, 4)).T,
        "step": lambda a: a(8, 15)[::2, ::3],
        "negative": lambda a: a(4, 10)[::-1, ::-2],
        "fortran": lambda a: np.asfortranarray(a(4, 5)),
        "mixed": lambda a: a(12, 5)[::-3, :][:, [4, 3, 2, 1, 0]][:, ::-1].T.T,
    }


# -------------------------------------------------------------- hypothesis strategies ----
# Defined only when hypothesis is installed; the hypothesis suites importorskip it first.

try:
    from hypothesis import HealthCheck, settings, strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:       # pragma: no cover
    st = None

if st is not None:
    # FASTNLL_HYPOTHESIS_EXAMPLES=2000 for a longer hunt; the default keeps the suite fast
    SETTINGS = settings(max_examples=int(os.environ.get("FASTNLL_HYPOTHESIS_EXAMPLES", "60")),
                        deadline=None, database=None,
                        suppress_health_check=[HealthCheck.too_slow,
                                               HealthCheck.data_too_large])
    # the suites that draw every element (hnp.arrays of st.floats): fewer, costlier examples
    ELEMENT_SETTINGS = settings(max_examples=40, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])

    SPECIALS = [np.inf, -np.inf, np.nan, 1e30, -1e30]
    # label smoothing: the bounds, or anything between (not subnormal: eps / C would underflow
    # to 0 in float64, where the extended-precision reference keeps it)
    EPS = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0, allow_subnormal=False))
    FLOAT_DTYPES = st.sampled_from([np.float32, np.float64])
    # non-empty shapes of up to 3 dimensions (the element-drawing suites)
    SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5)

    @st.composite
    def real_arrays(draw, max_dims=4, max_side=5, specials=SPECIALS, long_axis=True,
                    offsets=(0.0, 0.0, -50.0, 1e3)):
        """Non-empty float32/float64 arrays of normal values (scaled, offset), sometimes one
        long axis, with a few of `specials` sprinkled in."""
        shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1,
                                           max_side=max_side)))
        if long_axis and draw(st.booleans()):
            # one longer axis: several row chunks / column blocks, and the threads' paths
            i = draw(st.integers(0, len(shape) - 1))
            shape[i] = draw(st.integers(30, 1100))
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
        x = draw(st.sampled_from(offsets)) + scale * rng.standard_normal(shape)
        if specials:
            for _ in range(draw(st.integers(0, 3))):
                idx = tuple(draw(st.integers(0, n - 1)) for n in shape)
                x[idx] = draw(st.sampled_from(specials))
        return x.astype(dtype)

    @st.composite
    def layout_of(draw, a):
        """The same values in a drawn memory layout: axis order, steps, reversals,
        read-only."""
        a = np.asarray(a)
        if not draw(st.booleans()):
            return a
        perm = draw(st.permutations(range(a.ndim)))
        steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in range(a.ndim)]
        out = strided_layout(a, perm, steps)
        if draw(st.booleans()):
            out.setflags(write=False)
        return out

    @st.composite
    def axes_for(draw, ndim):
        """None, one axis, or a tuple of distinct axes (each maybe negative)."""
        kind = draw(st.sampled_from(["none", "int", "tuple"]))
        if kind == "none":
            return None
        if kind == "int":
            return draw(st.integers(-ndim, ndim - 1))
        ax = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        return tuple(a - ndim if draw(st.booleans()) else a for a in ax)

    @st.composite
    def shapes(draw, min_dims=0, max_dims=4, long_axis=True):
        """Shapes with 0-d, size-0 and size-1 dimensions, and sometimes one long axis (the
        kernels' chunked and multi-threaded paths)."""
        shape = list(draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0,
                                           max_side=5)))
        if long_axis and shape and draw(st.integers(0, 4)) == 0:
            shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(30, 3000))
        return tuple(shape)

    @st.composite
    def empty_shapes(draw):
        """Shapes with at least one side 0."""
        shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4)))
        shape[draw(st.integers(0, len(shape) - 1))] = 0
        return tuple(shape)

    @st.composite
    def broadcast_into(draw, shape):
        """A shape that broadcasts to `shape` without changing it: a trailing part of it with
        some sides replaced by 1."""
        k = draw(st.integers(0, len(shape)))
        return tuple(n if draw(st.booleans()) else 1 for n in shape[k:])

    def float_arrays(dtype, shape, lo, hi):
        """Arrays whose every element hypothesis draws: floats in [lo, hi] (float32-exact,
        not subnormal)."""
        return hnp.arrays(dtype, shape, elements=st.floats(lo, hi, width=32,
                                                           allow_subnormal=False))

    def rng_for(data, label):
        """A NumPy generator seeded by hypothesis."""
        return np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label=label))

    def sprinkle(data, rng, a, values, label):
        """Put a few of `values` at random places of a."""
        if a.size and values:
            for _ in range(data.draw(st.integers(0, 3), label=label)):
                a.flat[rng.integers(a.size)] = data.draw(st.sampled_from(values), label=label)
        return a


# ---------------------------------------------------------------------------- memory ----

def traced_peak(fn):
    """The peak of traced allocations (NumPy reports its allocations to tracemalloc) during
    one call of fn, after a warm-up call (first-call caches are not the call's cost)."""
    fn()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
