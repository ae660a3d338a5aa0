"""fastnll.dask against in-memory fastnll (the oracle here: its own tests check it against
SciPy and PyTorch), for every function and option, over chunkings that keep rows whole, split
the class (or reduced) axis, or split everything; on the threaded scheduler, and on a real
distributed.LocalCluster with worker processes."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402
from dask.callbacks import Callback  # noqa: E402

import fastnll  # noqa: E402
import fastnll.dask as fd  # noqa: E402

SHAPE2, SHAPE3 = (60, 40), (12, 10, 6)
CHUNKS2 = {"rows": (15, 40), "classes": (60, (13, 13, 1, 13)), "both": (25, 9),
           "empty-chunks": ((30, 0, 30), (0, 20, 0, 20))}
CHUNKS3 = {"rows": (5, 10, 6), "classes": (12, 4, 6), "all": (5, 3, 2)}


@pytest.fixture(autouse=True)
def threads_scheduler():
    with dask.config.set(scheduler="threads"):
        yield


def ulps(actual, expected):
    """Largest distance in ulp of expected's dtype (nan patterns must agree)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    same = (actual == expected) | np.isnan(expected)
    if same.all():
        return 0.0
    a, e = actual[~same].astype(np.float64), expected[~same]
    return float(np.max(np.abs(a - e) / np.spacing(np.abs(e)).astype(np.float64)))


def assert_close(actual, expected, maxulp=4):
    """Within maxulp of the in-memory result for float32 output.  float64 output: the same
    float64 sums added in another order (per chunk, then across chunks) differ by a few
    roundings of the largest partial sum: within 1e-13 relative (about 450 ulp)."""
    if np.asarray(expected).dtype == np.float64:
        actual, expected = np.asarray(actual), np.asarray(expected)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=0)
    else:
        assert ulps(actual, expected) <= maxulp


def assert_grad_close(actual, expected):
    """Gradients differ by roundings of terms as large as the array's largest entry (a
    softmax minus a one-hot cancels): |a - e| <= 8 eps max|e|."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    if ok.any():
        scale = np.max(np.abs(expected[ok]))
        tol = 8 * np.finfo(expected.dtype).eps * (scale if np.isfinite(scale) else 1.0)
        np.testing.assert_array_less(np.abs(actual[ok].astype(np.float64) - expected[ok]),
                                     tol + np.finfo(np.float64).tiny)


def logits(rng, shape, dtype, special=False):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if special:           # a row of -inf, a +inf, a nan (class axis 1)
        x[1, :] = -np.inf
        x[2, 3] = np.inf
        x[4, 0] = np.nan
    return x


# ------------------------------------------------------------- class losses ----

CLASS_OPTIONS = {
    "plain": {},
    "weights": {"weight": "w"},
    "signed-weights": {"weight": "signed"},
    "ignore-0": {"ignore_index": 0},
    "smoothing": {"label_smoothing": 0.2, "weight": "w"},
    "probabilities": {"prob": True},
    "probabilities-smoothing": {"prob": True, "label_smoothing": 0.1, "weight": "w"},
}


def class_case(rng, shape, dtype, options, axis=1, target_dtype=np.int64):
    C = shape[axis]
    rows = shape[:axis] + shape[axis + 1:]
    x = logits(rng, shape, dtype)
    kw = {k: v for k, v in options.items() if k != "prob"}
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(C).astype(dtype) + 0.1
    elif kw.get("weight") == "signed":
        kw["weight"] = (rng.random(C) - 0.3).astype(dtype)
    if options.get("prob"):
        t = rng.random(shape).astype(dtype)
        t /= t.sum(axis=axis, keepdims=True)
    else:
        t = rng.integers(0, C, rows).astype(target_dtype)
        t.flat[::5] = kw.get("ignore_index", -100) if target_dtype != np.uint8 else 0
    return x, t, kw


@pytest.mark.parametrize("return_grad", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("option", list(CLASS_OPTIONS))
@pytest.mark.parametrize("chunking", list(CHUNKS2))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy(rng, dtype, chunking, option, reduction, return_grad):
    x, t, kw = class_case(rng, SHAPE2, dtype, CLASS_OPTIONS[option])
    X = da.from_array(x, chunks=CHUNKS2[chunking])
    got = fd.cross_entropy(X, t, reduction=reduction, return_grad=return_grad, **kw)
    want = fastnll.cross_entropy(x, t, reduction=reduction, return_grad=return_grad, **kw)
    assert_loss_close(got, want, return_grad)


def assert_loss_close(got, want, return_grad):
    """A lazy loss (and gradient) against the in-memory one."""
    if return_grad:
        (loss, grad), (want_loss, want_grad) = dask.compute(*got), want
        assert_close(loss, want_loss)
        assert_grad_close(grad, want_grad)
    else:
        assert isinstance(got, da.Array)
        assert_close(got.compute(), want)


@pytest.mark.parametrize("return_grad", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("option", ["plain", "weights", "signed-weights", "ignore-0"])
@pytest.mark.parametrize("chunking", list(CHUNKS2))
def test_nll_loss(rng, chunking, option, reduction, return_grad):
    x, t, kw = class_case(rng, SHAPE2, np.float32, CLASS_OPTIONS[option])
    x = fastnll.log_softmax(x, axis=1)
    got = fd.nll_loss(da.from_array(x, chunks=CHUNKS2[chunking]), da.from_array(t, chunks=7),
                      reduction=reduction, return_grad=return_grad, **kw)
    want = fastnll.nll_loss(x, t, reduction=reduction, return_grad=return_grad, **kw)
    assert_loss_close(got, want, return_grad)


@pytest.mark.parametrize("chunking", list(CHUNKS3))
@pytest.mark.parametrize("axis", [None, -1])
@pytest.mark.parametrize("option", ["plain", "smoothing", "probabilities"])
def test_cross_entropy_3d(rng, chunking, axis, option):
    """PyTorch's (N, C, d) layout (classes on axis 1) and classes on the last axis."""
    ax = 1 if axis is None else 2
    x, t, kw = class_case(rng, SHAPE3, np.float32, CLASS_OPTIONS[option], axis=ax)
    X = da.from_array(x, chunks=CHUNKS3[chunking])
    for reduction in ("mean", "none"):
        loss, grad = dask.compute(*fd.cross_entropy(X, t, reduction=reduction, axis=axis,
                                                     return_grad=True, **kw))
        want_loss, want_grad = fastnll.cross_entropy(x, t, reduction=reduction, axis=axis,
                                                     return_grad=True, **kw)
        assert_close(loss, want_loss)
        assert_grad_close(grad, want_grad)


@pytest.mark.parametrize("chunking", list(CHUNKS2))
def test_class_losses_special_rows(rng, chunking):
    """Rows of -inf, with +inf, with nan: PyTorch's nan rows, on every path."""
    x = logits(rng, SHAPE2, np.float32, special=True)
    t = rng.integers(0, SHAPE2[1], SHAPE2[0])
    t[2] = 3                                  # the +inf is the target's logit
    X = da.from_array(x, chunks=CHUNKS2[chunking])
    for kw in ({}, {"label_smoothing": 0.3}):
        for reduction in ("none", "sum"):
            loss, grad = dask.compute(*fd.cross_entropy(X, t, reduction=reduction,
                                                         return_grad=True, **kw))
            want_loss, want_grad = fastnll.cross_entropy(x, t, reduction=reduction,
                                                         return_grad=True, **kw)
            assert_close(loss, want_loss)
            assert_grad_close(grad, want_grad)


@pytest.mark.parametrize("target_dtype", [np.int32, np.uint8, np.int16])
def test_integer_target_dtypes(rng, target_dtype):
    x, t, kw = class_case(rng, SHAPE2, np.float32, {}, target_dtype=target_dtype)
    for chunks in CHUNKS2.values():
        got = fd.cross_entropy(da.from_array(x, chunks=chunks), da.from_array(t, chunks=11))
        assert_close(got.compute(), fastnll.cross_entropy(x, t))


def test_all_ignored_and_empty(rng):
    x = logits(rng, SHAPE2, np.float32)
    t = np.full(SHAPE2[0], -100)
    for chunks in CHUNKS2.values():
        X = da.from_array(x, chunks=chunks)
        assert np.isnan(fd.cross_entropy(X, t).compute())        # 0 / 0, as in PyTorch
        loss, grad = dask.compute(*fd.cross_entropy(X, t, return_grad=True))
        assert np.isnan(loss) and not grad.any()
    empty = np.zeros((0, 5), np.float32)
    for chunks in ((0, 5), (0, (2, 3))):                  # the class axis split too
        for fn in (fd.cross_entropy, fd.nll_loss):
            for reduction in ("mean", "sum", "none"):
                got = fn(da.from_array(empty, chunks=chunks), np.zeros(0, np.int64),
                         reduction=reduction, return_grad=True)
                want = getattr(fastnll, fn.__name__)(empty, np.zeros(0, np.int64),
                                                     reduction=reduction, return_grad=True)
                loss, grad = dask.compute(*got)
                assert_close(loss, want[0])
                assert grad.shape == want[1].shape and grad.dtype == want[1].dtype
        for name in ("softmax", "log_softmax", "logsumexp"):
            assert_close(getattr(fd, name)(da.from_array(empty, chunks=chunks), axis=1).compute(),
                         getattr(fastnll, name)(empty, axis=1))
        for axis in (0, 1, None):
            assert_close(fd.entropy(da.from_array(empty, chunks=chunks), axis=axis).compute(),
                         fastnll.entropy(empty, axis=axis))


def test_one_dimensional_input(rng):
    x = logits(rng, (40,), np.float64)
    got = fd.cross_entropy(da.from_array(x, chunks=9), np.int64(7), return_grad=True)
    want = fastnll.cross_entropy(x, np.int64(7), return_grad=True)
    loss, grad = dask.compute(*got)
    assert_close(loss, want[0])
    assert_grad_close(grad, want[1])


# ----------------------------------------------------------- softmax family ----

AXES = [None, 0, 1, 2, (0, 2), (1, 2), ()]


@pytest.mark.parametrize("chunking", list(CHUNKS3))
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp(rng, dtype, chunking, axis):
    x = logits(rng, SHAPE3, dtype)
    x[1, :, :] = -np.inf
    x[2, 4, 1] = np.inf
    x[3, 2, 2] = np.nan
    X = da.from_array(x, chunks=CHUNKS3[chunking])
    b = rng.standard_normal(SHAPE3[1:]).astype(dtype)      # weights of both signs
    for keepdims in (False, True):
        assert_close(fd.logsumexp(X, axis=axis, keepdims=keepdims).compute(),
                     fastnll.logsumexp(x, axis=axis, keepdims=keepdims))
        res, sgn = dask.compute(*fd.logsumexp(X, axis=axis, b=b, keepdims=keepdims,
                                              return_sign=True))
        want_res, want_sgn = fastnll.logsumexp(x, axis=axis, b=b, keepdims=keepdims,
                                               return_sign=True)
        assert_close(res, want_res)
        np.testing.assert_array_equal(sgn, want_sgn)
        assert_close(fd.logsumexp(X, axis=axis, b=b).compute(),
                     fastnll.logsumexp(x, axis=axis, b=b))


def test_logsumexp_weak_scalar():
    X = da.from_array(np.float32([2, 1, 0]), chunks=2)
    assert fd.logsumexp(X, b=2.0).dtype == np.float32
    assert_close(fd.logsumexp(X, b=2.0).compute(), fastnll.logsumexp(np.float32([2, 1, 0]),
                                                                      b=2.0))


@pytest.mark.parametrize("chunking", list(CHUNKS3))
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("take_log", [False, True])
def test_softmax(rng, chunking, axis, take_log):
    """Whole rows in a chunk: the in-memory kernels' bits.  A split axis: float64 from the
    combined statistics, rounded once, within 1.5 ulp of the exact value (the float32 kernel's
    error grows with |x - max|, as SciPy's in float32), and the in-memory nan pattern."""
    scipy_special = pytest.importorskip("scipy.special")
    x = logits(rng, SHAPE3, np.float32)
    X = da.from_array(x, chunks=CHUNKS3[chunking])
    name = "log_softmax" if take_log else "softmax"
    got = getattr(fd, name)(X, axis=axis).compute()
    want = getattr(fastnll, name)(x, axis=axis)
    axes = range(3) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    if all(X.numblocks[a] == 1 for a in axes):
        np.testing.assert_array_equal(got, want)
    else:
        exact = getattr(scipy_special, name)(x.astype(np.float64), axis=axis)
        assert got.dtype == want.dtype and got.shape == want.shape
        # as accurate as the in-memory kernel, or within 2 ulp of the exact value
        in_memory_error = ulps(want, exact.astype(np.float32))
        assert ulps(got, exact.astype(np.float32)) <= max(2.0, in_memory_error)
    x[2, 4, 1], x[3, 2, 2] = np.inf, np.nan
    got = getattr(fd, name)(da.from_array(x, chunks=CHUNKS3[chunking]), axis=axis).compute()
    np.testing.assert_array_equal(np.isnan(got),
                                  np.isnan(getattr(fastnll, name)(x, axis=axis)))


# ------------------------------------------------------- elementwise losses ----

def elementwise_cases(rng, dtype):
    x = logits(rng, SHAPE2, dtype)
    y = (rng.random(SHAPE2) > 0.5).astype(dtype)
    counts = rng.poisson(2.0, SHAPE2).astype(dtype)
    var = (rng.random(SHAPE2) + 0.1).astype(dtype)
    n_classes = SHAPE2[1]
    return x, [
        ("binary_cross_entropy_with_logits", (y,), {}),
        ("binary_cross_entropy_with_logits", (y,), {
            "weight": rng.standard_normal(n_classes).astype(dtype),
            "pos_weight": (rng.random(n_classes) * 3).astype(dtype)}),
        ("poisson_nll_loss", (counts,), {}),
        ("poisson_nll_loss", (counts,), {"log_input": False, "full": True}),
        ("kl_div", (np.log(var),), {"log_target": True}),
        ("kl_div", (var,), {}),
        ("gaussian_nll_loss", (counts, var), {}),
        ("gaussian_nll_loss", (counts, var[:, 0]), {}),
        ("gaussian_nll_loss", (counts, var[:, :1]), {"full": True}),
        ("gaussian_nll_loss", (counts, var[:1, :]), {}),
        ("gaussian_nll_loss", (counts, 1.5), {}),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("chunking", list(CHUNKS2))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise(rng, dtype, chunking, reduction):
    x, cases = elementwise_cases(rng, dtype)
    X = da.from_array(x, chunks=CHUNKS2[chunking])
    for name, args, kw in cases:
        if reduction == "batchmean" and name != "kl_div":
            continue
        assert_close(getattr(fd, name)(X, *args, reduction=reduction, **kw).compute(),
                     getattr(fastnll, name)(x, *args, reduction=reduction, **kw))
        got = dask.compute(*getattr(fd, name)(X, *args, reduction=reduction, return_grad=True,
                                              **kw))
        want = getattr(fastnll, name)(x, *args, reduction=reduction, return_grad=True, **kw)
        assert_close(got[0], want[0])
        if name == "gaussian_nll_loss":
            got_grads = dask.compute(*got[1])
            assert_grad_close(got_grads[0], want[1][0])
            assert_close(got_grads[1], want[1][1], maxulp=8)     # a sum of many terms
        else:
            assert_grad_close(got[1], want[1])


# ------------------------------------------------------------------ entropy ----

@pytest.mark.parametrize("chunking", list(CHUNKS2))
@pytest.mark.parametrize("axis", [0, 1, -1, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropy(rng, dtype, chunking, axis):
    p = rng.random(SHAPE2).astype(dtype)
    p[0, :7] = 0
    q = rng.random(SHAPE2).astype(dtype)
    P = da.from_array(p, chunks=CHUNKS2[chunking])
    for qk in (None, q, q[0]):
        for base in (None, 2):
            if axis is None and qk is not None and qk.ndim == 1:
                continue        # flattened first, then broadcast: an error (test_errors)
            assert_close(fd.entropy(P, qk, base=base, axis=axis).compute(),
                         fastnll.entropy(p, qk, base=base, axis=axis), maxulp=8)


# ------------------------------------------------------------------- errors ----

@pytest.mark.parametrize("case", [
    ("cross_entropy", lambda x, t: ((x, t[:-1]), {})),
    ("cross_entropy", lambda x, t: ((x, t), {"reduction": "avg"})),
    ("cross_entropy", lambda x, t: ((x, t), {"label_smoothing": 1.5})),
    ("cross_entropy", lambda x, t: ((x, t), {"weight": np.ones(3)})),
    ("cross_entropy", lambda x, t: ((x, t), {"axis": 2})),
    ("cross_entropy", lambda x, t: ((x, np.where(np.arange(60) == 33, 40, t)), {})),
    ("cross_entropy", lambda x, t: ((x, x), {"ignore_index": 1})),
    ("cross_entropy", lambda x, t: ((x.astype(complex), t), {})),
    ("nll_loss", lambda x, t: ((x, t.astype(np.float32)), {})),
    ("nll_loss", lambda x, t: ((x, np.where(np.arange(60) == 33, -1, t)), {})),
    ("logsumexp", lambda x, t: ((x,), {"axis": 3})),
    ("logsumexp", lambda x, t: ((x,), {"b": np.ones(3)})),
    ("softmax", lambda x, t: ((x,), {"axis": (0, 0)})),
    ("binary_cross_entropy_with_logits", lambda x, t: ((x, x[:, :3]), {})),
    ("gaussian_nll_loss", lambda x, t: ((x, x, np.ones((2, 2))), {})),
    ("gaussian_nll_loss", lambda x, t: ((x, x, -np.ones_like(x)), {})),
    ("kl_div", lambda x, t: ((x, x), {"reduction": "batch"})),
    ("entropy", lambda x, t: ((x,), {"base": -1})),
    ("entropy", lambda x, t: ((x,), {})),                       # negative probabilities
    ("entropy", lambda x, t: ((abs(x), abs(x)[0]), {"axis": None})),
], ids=lambda case: case[0])
def test_errors(rng, case):
    name, make = case
    x = logits(rng, SHAPE2, np.float32)
    t = rng.integers(0, SHAPE2[1], SHAPE2[0])
    args, kw = make(x, t)
    for chunks in CHUNKS2.values():
        dargs = tuple(da.from_array(a, chunks=chunks[:a.ndim]) if a is x else a for a in args)
        # in-memory fastnll's exception and message, when the graph is built (or computed,
        # for a value only the data show)
        with pytest.raises(Exception) as want:
            getattr(fastnll, name)(*args, **kw)
        message = str(want.value)
        if message.startswith("pk must hold non-negative probabilities, got"):
            message = message[:message.index("got")]      # the first negative of a chunk
        with pytest.raises(want.type, match=re.escape(message)):
            dask.compute(getattr(fd, name)(*dargs, **kw))


def test_shape_errors_before_compute(rng):
    """What the shapes show is refused when the graph is built, not when it runs."""
    X = da.from_array(logits(rng, SHAPE2, np.float32), chunks=(15, 40))
    with pytest.raises(ValueError, match="target has shape"):
        fd.cross_entropy(X, np.zeros(59, np.int64))
    with pytest.raises(ValueError, match="weight has shape"):
        fd.cross_entropy(X, np.zeros(60, np.int64), weight=np.ones(3))
    with pytest.raises(TypeError, match="integer class indices"):
        fd.nll_loss(X, da.zeros(60, dtype=np.float32))


# ------------------------------------------------------------------ layering ----

def test_import_fastnll_does_not_import_dask():
    code = "import sys, fastnll; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(__file__))


class _LargestIntermediate(Callback):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def _posttask(self, key, result, dsk, state, worker_id):
        if "finalize" in str(key):          # the result handed to the caller
            return
        for r in (result if isinstance(result, (tuple, list)) else (result,)):
            if isinstance(r, np.ndarray):
                self.shapes.append(r.shape)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss", "log_softmax", "logsumexp"])
def test_split_class_axis_is_never_concatenated(rng, fn):
    """No task ever holds a whole row of a class axis split across chunks: no intermediate
    has C entries along any axis (the result handed back aside)."""
    N, C = 16, 1000
    x = logits(rng, (N, C), np.float32)
    t = rng.integers(0, C, N)
    X = da.from_array(x, chunks=(8, 250))
    args = (X, t) if fn in ("cross_entropy", "nll_loss") else (X,)
    kw = {"axis": 1} if fn in ("log_softmax", "logsumexp") else {"return_grad": True}
    watch = _LargestIntermediate()
    with watch:
        dask.compute(getattr(fd, fn)(*args, **kw))
    assert watch.shapes and max(max(s, default=0) for s in watch.shapes) < C


def _unaligned(a):
    """A copy of a at an address that is not a multiple of its itemsize (as chunks that
    Dask received from another worker can be)."""
    raw = np.empty(a.nbytes + 1, dtype=np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("chunking", list(CHUNKS2))
def test_unaligned_chunks(rng, chunking):
    x, t, kw = class_case(rng, SHAPE2, np.float32, CLASS_OPTIONS["smoothing"])
    X = da.from_array(_unaligned(x), chunks=CHUNKS2[chunking])
    T = da.from_array(_unaligned(t), chunks=CHUNKS2[chunking][0])
    loss, grad = dask.compute(*fd.cross_entropy(X, T, return_grad=True,
                                                 **dict(kw, weight=_unaligned(kw["weight"]))))
    want_loss, want_grad = fastnll.cross_entropy(x, t, return_grad=True, **kw)
    assert_close(loss, want_loss)
    assert_grad_close(grad, want_grad)
    assert_close(fd.log_softmax(X, axis=1).compute(), fastnll.log_softmax(x, axis=1), 8)
    assert_close(fd.logsumexp(X, axis=1).compute(), fastnll.logsumexp(x, axis=1))


def test_numpy_inputs_are_wrapped(rng):
    x, t, _ = class_case(rng, SHAPE2, np.float32, {})
    got = fd.cross_entropy(x, t)
    assert isinstance(got, da.Array) and got.ndim == 0
    assert_close(got.compute(), fastnll.cross_entropy(x, t))
    assert_close(fd.logsumexp(x.tolist(), axis=1).compute(),
                 fastnll.logsumexp(x.tolist(), axis=1))


def test_from_npy(tmp_path, rng):
    x = logits(rng, SHAPE2, np.float32)
    np.save(tmp_path / "x.npy", x)
    X = fd.from_npy(tmp_path / "x.npy", chunks=(7, 40))
    assert X.chunks[0][:2] == (7, 7) and X.dtype == np.float32
    np.testing.assert_array_equal(X.compute(), x)
    assert_close(fd.logsumexp(X, axis=1).compute(), fastnll.logsumexp(x, axis=1))
    # the same file in other chunks is another graph (its keys name the chunks)
    Y = fd.from_npy(tmp_path / "x.npy", chunks=(5, 40))
    assert X.name != Y.name and not (X - Y).compute().any()


def test_unknown_chunk_sizes_are_refused(rng):
    X = da.from_array(logits(rng, SHAPE2, np.float32), chunks=(15, 40))
    unknown = X[X[:, 0] > 0]                      # boolean indexing: nan chunk sizes
    for call in (lambda: fd.poisson_nll_loss(unknown, unknown),
                 lambda: fd.cross_entropy(unknown, np.zeros(3, np.int64)),
                 lambda: fd.cross_entropy(X, da.zeros(60, dtype=int)[X[:, 0] > 0]),
                 lambda: fd.logsumexp(unknown, axis=1)):
        with pytest.raises(ValueError, match="unknown chunk sizes .*compute_chunk_sizes"):
            call()
    known = unknown.compute_chunk_sizes()
    assert_close(fd.logsumexp(known, axis=1).compute(),
                 fastnll.logsumexp(known.compute(), axis=1))


def test_numpy_inputs_keep_the_class_axis_whole():
    """A wrapped NumPy array gets Dask's automatic chunks, but for the class (or reduced)
    axis, which stays in one chunk so that whole rows take the in-memory kernels."""
    big = np.zeros((4096, 32000), np.float32)
    assert da.from_array(big).numblocks[1] > 1                   # what "auto" alone gives
    X = fd.log_softmax(big, axis=1)
    assert X.numblocks[1] == 1 and X.numblocks[0] > 1
    assert fd.softmax(big, axis=0).numblocks[0] == 1
    assert fd.entropy(big, axis=0).numblocks[0] > 1


@pytest.mark.parametrize("scale", [10.0, 40.0])
def test_split_rows_near_zero(rng, scale):
    """On a split class axis each row's loss and log-softmax come from the combined
    statistics (float32 exponentials, float64 sums, the sums at the maximum kept apart), so
    values near 0 keep their relative precision: confident rows, whose loss is
    log1p(sum_j exp(x_j - max)), against that formula in float64."""
    x = (rng.standard_normal(SHAPE2) * scale).astype(np.float32)
    t = x.argmax(axis=1)                           # confident rows: losses near 0
    X = da.from_array(x, chunks=CHUNKS2["classes"])
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    log_sum = np.log1p(np.where(z == 0, 0.0, np.exp(z)).sum(axis=1))
    got = fd.cross_entropy(X, t, reduction="none").compute()
    assert ulps(got, log_sum.astype(np.float32)) <= 4
    assert ulps(fd.log_softmax(X, axis=1).compute(),
                (z - log_sum[:, None]).astype(np.float32)) <= 4


# ---------------------------------------------------------- a real cluster ----

@pytest.fixture(scope="module")
def client():
    """A distributed.LocalCluster with 2 worker processes of 1 thread each."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("chunking", list(CHUNKS2))
def test_cluster_gives_the_threaded_value(client, rng, chunking):
    """The same graph on worker processes: bit-identical to the threaded scheduler."""
    x, t, kw = class_case(rng, SHAPE2, np.float32, CLASS_OPTIONS["smoothing"])
    X = da.from_array(x, chunks=CHUNKS2[chunking])
    graphs = [fd.cross_entropy(X, t, return_grad=True, **kw),
              fd.logsumexp(X, axis=1), fd.entropy(abs(X), axis=0),
              fd.binary_cross_entropy_with_logits(X, (x > 0).astype(np.float32))]
    for graph in graphs:
        on_cluster = dask.compute(graph, scheduler=client.get)[0]
        threaded = dask.compute(graph, scheduler="threads")[0]
        for a, b in zip(np.atleast_1d(on_cluster) if not isinstance(graph, tuple)
                        else on_cluster, np.atleast_1d(threaded) if not isinstance(graph, tuple)
                        else threaded):
            np.testing.assert_array_equal(a, b)


def test_cluster_out_of_range_target(client, rng):
    x = logits(rng, SHAPE2, np.float32)
    t = rng.integers(0, SHAPE2[1], SHAPE2[0])
    t[33] = 99
    with pytest.raises(IndexError, match="target 99 is out of bounds for 40 classes"):
        fd.cross_entropy(da.from_array(x, chunks=(15, 13)), t).compute(scheduler=client.get)


def _slowly(block):
    time.sleep(0.05)
    return block


@pytest.mark.stress
def test_worker_killed_during_a_reduction(client, rng):
    """A worker process killed (by its pid) while a reduction runs: Dask recomputes the lost
    pieces, and the result is the same."""
    import distributed
    X = da.random.default_rng(7).standard_normal((96_000, 250), chunks=(1000, 125),
                                                  dtype=np.float32)
    T = da.random.default_rng(8).integers(0, 250, 96_000, chunks=1000)
    graph = fd.cross_entropy(X.map_blocks(_slowly), T, label_smoothing=0.1)
    # (the threaded scheduler gives the cluster's bits: test_cluster_gives_the_threaded_value;
    # a first run on the cluster could leave the result's key there for the second one)
    want = graph.compute(scheduler="threads")
    future = client.compute(graph)          # 96 chunks x 50 ms on 2 workers: >= 2.4 s
    time.sleep(0.8)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    assert not future.done(), "the reduction ended before a worker could be killed"
    os.kill(pids[victim], signal.SIGKILL)
    assert future.result(timeout=120) == want
    distributed.wait(future)


@pytest.mark.stress
def test_out_of_core_with_a_memory_limit(tmp_path):
    """Workers whose memory limit is well below the data's size finish a reduction over
    logits memory-mapped from a .npy file (1.2 GB; 2 workers x 350 MB)."""
    distributed = pytest.importorskip("distributed")
    N, C = 300_000, 1000
    path = tmp_path / "logits.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N, C))
    rng = np.random.default_rng(3)
    for i in range(0, N, 50_000):
        x[i:i + 50_000] = rng.standard_normal((50_000, C), dtype=np.float32)
    x.flush()
    del x
    t = rng.integers(0, C, N)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit="350MB", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        workers = set(c.scheduler_info()["workers"])
        X = fd.from_npy(path, chunks=(10_000, C))
        got = fd.cross_entropy(X, da.from_array(t, chunks=10_000)).compute(scheduler=c.get)
        assert set(c.scheduler_info()["workers"]) == workers     # none killed or restarted
    assert_close(got, fastnll.cross_entropy(np.load(path, mmap_mode="r"), t))


def test_perplexity_example():
    """examples/perplexity_dask.py, small: a LocalCluster, a memory-mapped file, and a
    perplexity well below the vocabulary's size."""
    pytest.importorskip("distributed")
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "perplexity_dask.py")
    # (no memory limit: the limits are test_out_of_core_with_a_memory_limit's, and a
    # sanitized worker's own footprint, over 400 MB, would pause it at any small limit)
    out = subprocess.run([sys.executable, example, "--rows", "5000", "--classes", "200",
                          "--chunk-rows", "1000", "--memory-limit", "0"],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    match = re.search(r"perplexity ([0-9.]+) \(uniform: 200; model's mean entropy ([0-9.]+)",
                      out)
    assert match, out
    perplexity, entropy = float(match.group(1)), float(match.group(2))
    assert 1 < perplexity < 200
    # targets drawn from the model: the cross-entropy estimates the model's entropy
    assert abs(np.log(perplexity) - entropy) < 0.05
