"""The compiled calls (_compiled_calls.pxi): the general path's results bit for bit."""
# Every public function first offers its arguments to a compiled call, which recognises the
# common calls (plain float32/float64 arrays, int32/int64 targets, options as Python numbers
# and strings) and runs the same kernel core on the same views.  Here each call is made twice,
# once as it comes and once with every compiled call switched off (the general path), and the
# two results must agree bit for bit (values, dtypes, shapes, types), with the inputs left
# untouched.  The calls that must be recognised are checked to be, and the ones that must not
# (unusual dtypes, layouts that need a copy, NumPy scalars as options, invalid input) to go the
# general way.  Invalid input raises from the general path: test_errors.py has the "shortcut"
# rows.
import contextlib

import numpy as np
import pytest

import fastnll
from fastnll import _layout, _threads
from fastnll._dispatch import kernels
from helpers import LAYOUTS, assert_bitwise_equal, make_layout

CALLS = ("logsumexp_call", "softmax_call", "class_loss_call", "elementwise_call",
         "entropy_call", "linear_call")


@contextlib.contextmanager
def _patched(make):
    saved = {name: getattr(kernels, name) for name in CALLS}
    try:
        for name, f in saved.items():
            setattr(kernels, name, make(name, f))
        yield
    finally:
        for name, f in saved.items():
            setattr(kernels, name, f)


def general_path():
    """Every compiled call declines: the functions run their Python path."""
    return _patched(lambda name, f: lambda *args: None)


def run_both(fn, *args, **kw):
    """(fast result, general result, whether the function's compiled call took the call: the
    first one made); the arguments must be left as they were by both."""
    taken = []

    def spy(name, f):
        def call(*a):
            r = f(*a)
            taken.append(r is not None)
            return r
        return call

    arrays = [a for a in list(args) + list(kw.values()) if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    with _patched(spy):
        fast = fn(*args, **kw)
    with general_path():
        general = fn(*args, **kw)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
    return fast, general, bool(taken) and taken[0]


def check(fn, *args, expect=None, what="", **kw):
    fast, general, taken = run_both(fn, *args, **kw)
    assert_bitwise_equal(fast, general, what)
    if expect is not None:
        assert taken == expect, f"{what}: taken {taken}, expected {expect}"
    return taken


def _logits(rng, shape, dtype, specials=True):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if specials and x.size >= 12:
        flat = x.reshape(-1)
        flat[1] = np.inf
        flat[5] = -np.inf
        flat[7] = np.nan
        flat[10] = 1e30 if dtype == np.float32 else 1e300
    return x


def _plain(layout, ndim, shape):
    # the layouts the compiled calls take: C-ordered (canonical strides), or strided with
    # at most two axes each of length >= 2; never unaligned
    if layout in ("C", "readonly"):
        return True
    if layout == "unaligned":
        return False
    if ndim == 1:
        return shape[0] >= 2 or layout not in ("step", "negstep", "negative")
    return ndim == 2 and min(shape) >= 2


SOFTMAX_SHAPES = [(1,), (7,), (5, 2), (2, 1), (33, 10), (64, 32), (65, 33), (3, 1000),
                  (4, 5, 6), (2, 3, 4, 5), (200, 200)]


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax_family_matches_the_general_path(name, dtype, layout):
    rng = np.random.default_rng(5)
    f = getattr(fastnll, name)
    for shape in SOFTMAX_SHAPES:
        x = make_layout(_logits(rng, shape, dtype), layout)
        for axis in [None] + list(range(-1, len(shape))):
            kws = [{}]
            if name == "logsumexp":
                kws = [{}, {"keepdims": True}]
            for kw in kws:
                what = f"{name} {np.dtype(dtype)} {layout} {shape} axis={axis} {kw}"
                taken = check(f, x, axis=axis, what=what, **kw)
                plain = _plain(layout, len(shape), shape) and x.size > 0
                if plain and (axis is not None or layout in ("C", "readonly")
                              or len(shape) == 1):
                    assert taken, what


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_out_matches_the_general_path(name, dtype):
    rng = np.random.default_rng(2)
    f = getattr(fastnll, name)
    x0 = _logits(rng, (33, 10), dtype)
    # a fresh buffer, the input itself (in place), a buffer overlapping the input, another
    # dtype, a strided buffer
    def setup(case):
        buf = np.concatenate([x0.reshape(-1), x0.reshape(-1)])
        x = buf[:x0.size].reshape(x0.shape)
        out = {"fresh": lambda: np.empty_like(x0), "in place": lambda: x,
               "overlap": lambda: buf[3:3 + x0.size].reshape(x0.shape),
               "dtype": lambda: np.empty(x0.shape, np.float64 if dtype == np.float32
                                         else np.float32),
               "strided": lambda: np.empty((33, 20), dtype)[:, ::2]}[case]()
        return x, out

    for case in ("fresh", "in place", "overlap", "dtype", "strided"):
        xa, oa = setup(case)
        xb, ob = setup(case)
        ra = f(xa, axis=1, out=oa)
        with general_path():
            rb = f(xb, axis=1, out=ob)
        assert ra is oa and rb is ob
        assert_bitwise_equal(ra, rb, f"{name} {case}")
    # the call is taken for a plain buffer and in place
    x = x0.copy()
    assert kernels.softmax_call(x, 1, np.empty_like(x), name == "log_softmax",
                                _threads.for_work) is not None
    assert kernels.softmax_call(x, 1, x, name == "log_softmax", _threads.for_work) is x
    ro = np.empty_like(x)
    ro.setflags(write=False)
    assert kernels.softmax_call(x, 1, ro, False, _threads.for_work) is None
    with pytest.raises(ValueError, match="out"):
        f(x, axis=1, out=ro)


def _class_problem(rng, shape, ax, dtype, ignore_index):
    x = _logits(rng, shape, dtype, specials=False)
    C = shape[ax]
    if x.ndim == 2 and shape[0] >= 8 and ax == 1:
        x[1, C // 2] = np.inf
        x[2] = -np.inf
        x[3, C - 1] = np.nan
        x[4, 0] = -np.inf
        x[5] = 7
    tshape = shape[:ax] + shape[ax + 1:]
    t = rng.integers(0, C, tshape)
    t.reshape(-1)[::5] = ignore_index
    return x, t


CLASS_CASES = [((1, 1), 1), ((1, 7), 1), ((2, 1), 1), ((5, 2), 1), ((33, 10), 1),
               ((64, 32), 1), ((65, 33), 1), ((3, 1000), 1), ((200, 200), 1), ((10, 33), 0),
               ((7,), 0), ((4, 5, 6), 1), ((4, 5, 6), 2), ((2, 3, 4, 5), 1)]


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_class_losses_match_the_general_path(name, dtype, layout):
    rng = np.random.default_rng(11)
    f = getattr(fastnll, name)
    smoothings = [0.0] if name == "nll_loss" else [0.0, 0.25, 1]
    for shape, ax in CLASS_CASES:
        C = shape[ax]
        axis = None if ax == (0 if len(shape) == 1 else 1) else ax
        for ignore_index in (-100, min(3, C - 1)):
            x0, t = _class_problem(rng, shape, ax, dtype, ignore_index)
            x = make_layout(x0, layout)
            targets = {"int64": t, "int32": t.astype(np.int32)}
            w = (rng.random(C) + 0.5).astype(dtype)
            weights = {"no weight": None, "weight": w, "strided weight": np.repeat(w, 2)[::2]}
            for tname, tt in targets.items():
                for wname, ww in weights.items():
                    for reduction in ("mean", "sum", "none"):
                        for return_grad in (False, True):
                            for eps in smoothings:
                                kw = dict(reduction=reduction, return_grad=return_grad,
                                          weight=ww, ignore_index=ignore_index, axis=axis)
                                if name == "cross_entropy":
                                    kw["label_smoothing"] = eps
                                what = (f"{name} {np.dtype(dtype)} {layout} {shape} ax={ax} "
                                        f"{tname} {wname} {reduction} grad={return_grad} "
                                        f"eps={eps} ignore={ignore_index}")
                                taken = check(f, x, tt, what=what, **kw)
                                all_ignored = np.all(tt == ignore_index)
                                if (_plain(layout, x.ndim, shape)
                                        and not (reduction == "mean" and all_ignored)):
                                    assert taken, what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "step", "negative", "unaligned"])
def test_probability_targets_match_the_general_path(dtype, layout):
    rng = np.random.default_rng(4)
    for shape, ax in [((5, 2), 1), ((33, 10), 1), ((3, 1000), 1), ((4, 5, 6), 1), ((7,), 0),
                      ((10, 33), 0)]:
        x = make_layout(_logits(rng, shape, dtype), layout)
        p = rng.random(shape).astype(dtype)
        p /= p.sum(axis=ax, keepdims=True)
        C = shape[ax]
        axis = None if ax == (0 if len(shape) == 1 else 1) else ax
        for t in (p, make_layout(p, layout)):
            for weight in (None, (rng.random(C) + 0.5).astype(dtype)):
                for reduction in ("mean", "sum", "none"):
                    for return_grad in (False, True):
                        for eps in (0.0, 0.3):
                            what = f"{np.dtype(dtype)} {layout} {shape} {reduction} {eps}"
                            taken = check(fastnll.cross_entropy, x, t, weight=weight,
                                          reduction=reduction, label_smoothing=eps, axis=axis,
                                          return_grad=return_grad, what=what)
                            if _plain(layout, x.ndim, shape) and layout == "C":
                                assert taken, what
        # a non-negative ignore_index: PyTorch's error, from the general path
        with pytest.raises(ValueError, match="ignore_index"):
            fastnll.cross_entropy(x, p, ignore_index=0, axis=axis)


def _elementwise_cases(rng, shape, dtype):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.random(shape).astype(dtype)
    counts = rng.poisson(3.0, shape).astype(dtype)
    var = (rng.random(shape) + 0.1).astype(dtype)
    lp = np.log(y / y.sum()).astype(dtype)
    w = (rng.random(shape) - 0.3).astype(dtype)            # any sign, as in PyTorch
    if x.size >= 8:
        x.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, 1e30]
        var.reshape(-1)[5] = 0.0
        y.reshape(-1)[6] = 0.0
    f = fastnll
    bce, gauss, pois, kl = (f.binary_cross_entropy_with_logits, f.gaussian_nll_loss,
                            f.poisson_nll_loss, f.kl_div)
    return [
        ("bce", bce, (x, y), {}),
        ("bce weight", bce, (x, y), {"weight": w}),
        ("bce pos_weight", bce, (x, y), {"weight": w, "pos_weight": var}),
        ("gaussian", gauss, (x, y, var), {}),
        ("gaussian full", gauss, (x, y, var), {"full": True, "eps": 1e-3}),
        ("poisson", pois, (x, counts), {}),
        ("poisson rates", pois, (np.abs(x), counts), {"log_input": False, "full": True}),
        ("kl", kl, (lp, y), {}),
        ("kl log_target", kl, (lp, lp), {"log_target": True}),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (2,), (5, 3), (33, 10), (3, 4, 5), (300, 200)])
def test_elementwise_losses_match_the_general_path(dtype, shape):
    rng = np.random.default_rng(8)
    for label, fn, args, kw in _elementwise_cases(rng, shape, dtype):
        reductions = ["none", "mean", "sum"] + (["batchmean"] if label.startswith("kl") else [])
        for reduction in reductions:
            for return_grad in (False, True):
                what = f"{label} {np.dtype(dtype)} {shape} {reduction} grad={return_grad}"
                taken = check(fn, *args, reduction=reduction, return_grad=return_grad,
                              what=what, **kw)
                assert taken == (len(args[0].reshape(-1)) > 1), what
        # other layouts go the general way, with the same results as a C-ordered call
        for layout in ("F", "step", "unaligned"):
            moved = tuple(make_layout(a, layout) for a in args)
            taken = check(fn, *moved, what=f"{label} {layout}", **kw)
            assert taken == (layout == "F" and moved[0].flags.c_contiguous
                             and all(a.flags.c_contiguous for a in moved)
                             and args[0].size > 1), f"{label} {layout}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "step", "negative", "readonly", "unaligned"])
def test_entropy_matches_the_general_path(dtype, layout):
    rng = np.random.default_rng(6)
    for shape in [(1,), (7,), (5, 2), (33, 10), (3, 1000), (4, 5, 6), (300, 200)]:
        p = make_layout(rng.random(shape).astype(dtype), layout)
        q = make_layout((rng.random(shape) + 0.01).astype(dtype), layout)
        if p.size >= 6 and p.flags.writeable:
            p[(0,) * p.ndim] = 0.0      # a zero probability
        for axis in [None] + list(range(-1, len(shape))):
            for qk in (None, q):
                what = f"{np.dtype(dtype)} {layout} {shape} axis={axis} q={qk is not None}"
                taken = check(fastnll.entropy, p, qk, axis=axis, what=what)
                if layout in ("C", "readonly") and axis is not None:
                    assert taken, what
        check(fastnll.entropy, p, None, base=2.0, what="base 2", expect=False)


def test_entropy_with_a_negative_entry_raises_from_the_general_path():
    for p in (np.array([0.5, -0.1, 0.6], np.float32), np.array([[0.2, 0.3], [0.1, -1.0]])):
        assert kernels.entropy_call(p, None, None, -1, _threads.for_work) is None
        with pytest.raises(ValueError, match="pk"):
            fastnll.entropy(p, axis=-1)
        q = np.abs(p)
        assert kernels.entropy_call(q, p, None, -1, _threads.for_work) is None
        with pytest.raises(ValueError, match="qk"):
            fastnll.entropy(q, p, axis=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_cross_entropy_matches_the_general_path(dtype):
    rng = np.random.default_rng(9)
    for N, H, V in [(1, 1, 1), (5, 3, 2), (32, 16, 10), (64, 8, 40), (7, 33, 300)]:
        x = rng.standard_normal((N, H)).astype(dtype)
        W = rng.standard_normal((V, H)).astype(dtype)
        b = rng.standard_normal(V).astype(dtype)
        t = rng.integers(0, V, N)
        for bias in (None, b):
            for tt in (t, t.astype(np.int32)):
                for reduction in ("mean", "sum", "none"):
                    for return_grad in (False, True):
                        for eps in (0.0, 0.2):
                            what = f"{(N, H, V)} bias={bias is not None} {tt.dtype} " \
                                   f"{reduction} grad={return_grad} eps={eps}"
                            check(fastnll.linear_cross_entropy, x, W, tt, bias,
                                  reduction=reduction, return_grad=return_grad,
                                  label_smoothing=eps, what=what, expect=True)
        # an ignored target (rows dropped), class weights, softcap, z_loss, a transposed
        # weight, 3-D input: the general path
        t2 = t.copy()
        t2[0] = -100
        for args, kw in [((x, W, t2), {}), ((x, W, t), {"weight": np.ones(V, dtype)}),
                         ((x, W, t), {"softcap": 5.0}), ((x, W, t), {"z_loss": 1e-3}),
                         ((x, np.asfortranarray(W), t), {}),
                         ((x[None], W, t[None]), {})]:
            plain = args[1].flags.c_contiguous and args[0].ndim == 2 and not kw and \
                np.all(args[2] != -100)      # a Fortran-ordered (1, 1) is C-ordered too
            check(fastnll.linear_cross_entropy, *args, return_grad=True, expect=plain, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_give_the_same_bits(dtype):
    # 300 x 200 = 60000 elements: above MIN_PARALLEL_ELEMENTS, so the compiled calls ask
    # for_work for the count
    rng = np.random.default_rng(1)
    x = _logits(rng, (300, 200), dtype)
    t = rng.integers(0, 200, 300)
    y = rng.random((300, 200)).astype(dtype)
    calls = [
        lambda: fastnll.softmax(x, axis=1), lambda: fastnll.log_softmax(x, axis=0),
        lambda: fastnll.logsumexp(x, axis=1), lambda: fastnll.logsumexp(x, axis=0),
        lambda: fastnll.cross_entropy(x, t, return_grad=True, label_smoothing=0.1),
        lambda: fastnll.nll_loss(x, t.astype(np.int32), reduction="none"),
        lambda: fastnll.cross_entropy(x, y, return_grad=True),
        lambda: fastnll.binary_cross_entropy_with_logits(x, y, return_grad=True),
        lambda: fastnll.entropy(y, axis=1),
        lambda: fastnll.entropy(y.reshape(6000, 10), y.reshape(6000, 10)[::-1], axis=1),
    ]
    for i, call in enumerate(calls):
        with fastnll.threads(1):
            one = call()
        with fastnll.threads(2):
            two = call()
        with general_path():
            general = call()
        assert_bitwise_equal(one, general, f"call {i}")
        assert_bitwise_equal(two, general, f"call {i}, 2 threads")


def test_float64_sums_inside_dask_tasks():
    # fastnll.dask's tasks ask for unrounded float64 "sum" reductions: the compiled calls too
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 0, 1])
    for call in (lambda: fastnll.cross_entropy(x, t, reduction="sum"),
                 lambda: fastnll.binary_cross_entropy_with_logits(x, np.abs(x) / 4,
                                                                  reduction="sum")):
        with _layout.float64_sums():
            fast, general, taken = run_both(call)
        assert taken
        assert type(fast) is np.float64
        assert_bitwise_equal(fast, general)
        assert type(call()) is np.float32


def test_class_loss_agrees_with_a_float64_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 12)).astype(np.float32)
    t = rng.integers(0, 12, 40).astype(np.int32)
    t[7] = -100
    x64 = x.astype(np.float64)
    logp = x64 - x64.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    kept = t != -100
    rows = np.where(kept, -logp[np.arange(40), np.where(kept, t, 0)], 0.0)
    assert kernels.class_loss_call(x, t, None, -100, "mean", 0.0, None, True, False,
                                   _threads.for_work) is not None
    loss, grad = fastnll.cross_entropy(x, t, return_grad=True)
    assert isinstance(loss, np.float32) and grad.dtype == np.float32
    np.testing.assert_allclose(loss, rows.sum() / kept.sum(), rtol=2e-6)
    onehot = np.zeros((40, 12))
    onehot[np.arange(40)[kept], t[kept]] = 1
    ref_grad = (np.exp(logp) * kept[:, None] - onehot) / kept.sum()
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-8)


def _declined():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    t = rng.integers(0, 4, 6)
    swapped = x.astype(x.dtype.newbyteorder())
    cases = {
        "float64 weight on float32": (x, t, dict(weight=np.ones(4))),
        "list weight": (x, t, dict(weight=[1.0] * 4)),
        "float16 input": (x.astype(np.float16), t, {}),
        "int input": (np.ones((6, 4), np.int64), t, {}),
        "uint8 target": (x, t.astype(np.uint8), {}),
        "int16 target": (x, t.astype(np.int16), {}),
        "float64 probabilities on float32": (x, rng.random((6, 4)), {}),
        "list input": (x.tolist(), t, {}),
        "list target": (x, t.tolist(), {}),
        "3-D strided input": (np.zeros((6, 4, 3), np.float32)[:, :, ::2], t.reshape(6, 1)
                              .repeat(2, 1), {}),
        "subclass": (x.view(np.matrix), t, {}),
        "byte-swapped input": (swapped, t, {}),
        "byte-swapped target": (x, t.astype(t.dtype.newbyteorder()), {}),
        "dtype with metadata": (x.astype(np.dtype(np.float32, metadata={"unit": "nats"})), t,
                                {}),
        "NumPy axis": (x, t, dict(axis=np.int64(1))),
        "axis out of range": (x, t, dict(axis=2)),
        "NumPy reduction": (x, t, dict(reduction=np.str_("mean"))),
        "unknown reduction": (x, t, dict(reduction="MEAN")),
        "bool ignore_index": (x, t, dict(ignore_index=True)),
        "NumPy ignore_index": (x, t, dict(ignore_index=np.int64(-100))),
        "65-bit ignore_index": (x, t, dict(ignore_index=2 ** 64)),
        "int return_grad": (x, t, dict(return_grad=1)),
        "NumPy label_smoothing": (x, t, dict(label_smoothing=np.float64(0.1))),
        "label_smoothing 1.5": (x, t, dict(label_smoothing=1.5)),
        "label_smoothing nan": (x, t, dict(label_smoothing=float("nan"))),
        "label_smoothing 2": (x, t, dict(label_smoothing=2)),
        "no rows": (x[:0], t[:0], {}),
        "no classes": (x[:, :0], np.full(6, -100), {}),
        "target too short": (x, t[:5], {}),
        "target of the wrong shape": (x, t.reshape(2, 3), {}),
        "target out of range": (x, np.array([0, 1, 2, 3, 4, 0]), {}),
        "negative target": (x, np.array([0, 1, -1, 3, 0, 0]), {}),
        "all ignored, mean": (x, np.full(6, -100), {}),
        "weights summing to 0, mean": (x, t, dict(weight=np.array([1, -1, 1, -1], np.float32))),
        "weight of the wrong length": (x, t, dict(weight=np.ones(5, np.float32))),
    }
    if np.dtype(np.longlong).num != np.dtype(np.int64).num:    # Linux: a distinct dtype
        cases["longlong target"] = (x, t.astype(np.longlong), {})
    return cases


def _class_call(name, x, t, **kw):
    args = dict(weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                axis=None, return_grad=False)
    args.update(kw)
    return kernels.class_loss_call(x, t, args["weight"], args["ignore_index"],
                                   args["reduction"], args["label_smoothing"], args["axis"],
                                   args["return_grad"], name == "nll_loss", _threads.for_work)


@pytest.mark.parametrize("case", sorted(_declined()))
def test_class_loss_call_declines_other_calls(case):
    x, t, kw = _declined()[case]
    if case == "weights summing to 0, mean":
        t = np.array([0, 1, 2, 3, 0, 1])
    assert _class_call("cross_entropy", x, t, **kw) is None
    if "label_smoothing" not in kw:
        assert _class_call("nll_loss", x, t, **kw) is None


def test_other_calls_decline_what_they_do_not_recognise():
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y = np.abs(x) / 5
    fw = _threads.for_work
    K = kernels.Elementwise
    # softmax / log_softmax / logsumexp
    for args in [(x.tolist(), 1, None), (x.astype(np.float16), 1, None), (x, np.int64(1), None),
                 (x, 2, None), (x, (0, 1), None), (np.float32(3.0), None, None),
                 (np.zeros((4, 5, 6), np.float32)[:, ::2], 1, None),
                 (np.zeros((4, 5, 6), np.float32)[:, ::2], None, None),
                 (x, 1, np.empty((6, 4))), (x, 1, np.empty((4, 6), np.float32).T),
                 (x, 1, [[0.0] * 4] * 6)]:
        assert kernels.softmax_call(*args, False, fw) is None, args
    for args in [(x, 1, 2.0, False, False, None), (x, 1, None, False, True, None),
                 (x, 1, None, 1, False, None), (x, 1, None, False, False, np.empty(6, np.float32)),
                 (x, (0, 1), None, False, False, None)]:
        assert kernels.logsumexp_call(*args, fw) is None, args
    # elementwise: broadcast operands, NumPy options, other dtypes, a negative var
    bad = [(K.BCE, x, y[0], None, None, 0.0, False, False, False, "mean", False),
           (K.BCE, x, y, np.ones(4, np.float32), None, 0.0, False, False, False, "mean", False),
           (K.BCE, x, y.astype(np.float64), None, None, 0.0, False, False, False, "mean", False),
           (K.BCE, x, y, None, None, 0.0, False, False, False, "batchmean", False),
           (K.KL, x, y, None, None, 0.0, False, False, 1, "mean", False),
           (K.POISSON, x, y, None, None, np.float64(1e-8), False, True, False, "mean", False),
           (K.POISSON, x, y, None, None, 1, False, True, False, "mean", False),
           (K.GAUSSIAN, x, y, -y, None, 1e-6, False, False, False, "mean", False),
           (K.GAUSSIAN, x, y, 1.0, None, 1e-6, False, False, False, "mean", False),
           (K.GAUSSIAN, x, y, None, None, 1e-6, False, False, False, "mean", False),
           (K.BCE, x.T, y.T, None, None, 0.0, False, False, False, "mean", False)]
    for args in bad:
        assert kernels.elementwise_call(*args, fw) is None, args[0]
    with pytest.raises(ValueError, match="var"):
        fastnll.gaussian_nll_loss(x, y, -y)
    # entropy
    for args in [(x.tolist(), None, None, 0), (y, None, 2.0, 0), (y, y[0], None, 0),
                 (y, y.astype(np.float64), None, 0), (y, None, None, np.int64(0))]:
        assert kernels.entropy_call(*args, fw) is None, args


def test_errors_keep_their_messages():
    # invalid calls of the shapes the compiled calls take raise the general path's errors
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(IndexError, match="target 5 is out of bounds"):
        fastnll.cross_entropy(x, np.array([0, 1, 5, 2], np.int32))
    with pytest.raises(IndexError, match="target -3"):
        fastnll.nll_loss(x, np.array([0, 1, -3, 2]), weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="axis"):
        fastnll.softmax(x, axis=2)
    with pytest.raises(ValueError, match="reduction"):
        fastnll.poisson_nll_loss(x, x, reduction="avg")
