"""nll_loss and cross_entropy on fixed cases: loss and gradient vs the reference and PyTorch."""
# The NumPy reference (extended precision, reference.ref_loss) always; PyTorch (float64
# autograd) when installed.
import numpy as np
import pytest

import fastnll
from helpers import LAYOUTS, assert_close, check_layout, make_layout
from reference import class_axis, ref_loss, torch_loss

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]

# (input shape, axis): 1-D, (N, C) with few and with many classes, (N, C, d1, d2), (B, T, V)
# with axis=-1, axis=0 of a C-ordered matrix and (N, C, d) with d > 64 (the two "columns"
# traversals).
SHAPES = [
    ((5,), None),
    ((6, 5), None),
    ((6, 40), None),          # more than 32 classes: one row at a time
    ((130, 7), None),         # few classes, rows in blocks of 64 and a partial block
    ((4, 5, 3, 2), None),
    ((3, 4, 6), -1),
    ((7, 4), 0),
    ((3, 5, 70), None),
]

# kind, label_smoothing
VARIANTS = [("nll", 0.0), ("ce", 0.0), ("ce", 0.1), ("ce", 1.0)]


def func(kind):
    return fastnll.nll_loss if kind == "nll" else fastnll.cross_entropy


def make_case(rng, shape, axis, dtype, ignore=True, prob=False, ignore_index=-100):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    ax = class_axis(len(shape), axis)
    C = shape[ax]
    tshape = shape[:ax] + shape[ax + 1:]
    if prob:
        t = rng.dirichlet(np.ones(C), size=tshape)
        t = np.moveaxis(t, -1, ax).astype(dtype)
    else:
        t = rng.integers(0, C, size=tshape)
        if ignore and t.size > 1:
            t.flat[:: 3] = ignore_index
            t.flat[1] = rng.integers(0, C)   # keep at least one target
    w = rng.uniform(0.2, 2.0, size=C).astype(dtype)
    return x, np.asarray(t), w


def run(kind, x, t, **kw):
    """fastnll loss, both without and with the gradient, plus result-type checks."""
    f = func(kind)
    dtype = np.float32 if np.asarray(x).dtype == np.float32 else np.float64
    loss_only = f(x, t, **kw)
    loss, grad = f(x, t, return_grad=True, **kw)
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype
    assert grad.shape == np.shape(x)
    if kw.get("reduction", "mean") == "none" and np.ndim(x) > 1:
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype
        assert isinstance(loss_only, np.ndarray) and loss_only.dtype == dtype
    else:
        assert np.ndim(loss) == 0
        assert type(loss) is np.dtype(dtype).type, type(loss)
        assert type(loss_only) is np.dtype(dtype).type, type(loss_only)
    return loss_only, loss, grad, dtype


def compare(kind, x, t, expected, **kw):
    loss_only, loss, grad, dtype = run(kind, x, t, **kw)
    exp_loss, exp_grad = expected
    assert_close(loss_only, exp_loss, dtype, err_msg="loss (no grad)")
    assert_close(loss, exp_loss, dtype, err_msg="loss")
    assert_close(grad, exp_grad, dtype, err_msg="grad")


def kwargs(kind, weight, reduction, eps, axis, **more):
    kw = dict(weight=weight, reduction=reduction, axis=axis, **more)
    if kind == "ce":
        kw["label_smoothing"] = eps
    return kw


# ------------------------------------------------------------ the main matrix ----

@pytest.mark.parametrize("use_weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,eps", VARIANTS, ids=str)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
@pytest.mark.parametrize("oracle", ["numpy", "torch"])
def test_class_targets(oracle, shape, axis, kind, eps, dtype, reduction, use_weight, rng,
                       request):
    x, t, w = make_case(rng, shape, axis, dtype)
    weight = w if use_weight else None
    kw = kwargs(kind, weight, reduction, eps, axis)
    if oracle == "torch":
        torch = request.getfixturevalue("torch")
        expected = torch_loss(torch, kind, x, t, **kw)
    else:
        expected = ref_loss(kind, x, t, **kw)
    compare(kind, x, t, expected, **kw)


@pytest.mark.parametrize("use_weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
@pytest.mark.parametrize("oracle", ["numpy", "torch"])
def test_probability_targets(oracle, shape, axis, eps, dtype, reduction, use_weight, rng,
                             request):
    x, t, w = make_case(rng, shape, axis, dtype, prob=True)
    weight = w if use_weight else None
    kw = kwargs("ce", weight, reduction, eps, axis)
    if oracle == "torch":
        torch = request.getfixturevalue("torch")
        expected = torch_loss(torch, "ce", x, t, **kw)
    else:
        expected = ref_loss("ce", x, t, **kw)
    compare("ce", x, t, expected, **kw)


# -------------------------------------------------------------- hand computations ----

def test_cross_entropy_by_hand():
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    t = np.array([0, 2])
    lse = np.log(np.exp(x).sum(axis=1))
    rows = lse - x[[0, 1], t]
    assert_close(fastnll.cross_entropy(x, t, reduction="none"), rows, np.float64)
    assert_close(fastnll.cross_entropy(x, t), rows.mean(), np.float64)
    assert_close(fastnll.cross_entropy(x, t, reduction="sum"), rows.sum(), np.float64)
    w = np.array([2.0, 0.5, 3.0])
    assert_close(fastnll.cross_entropy(x, t, weight=w),
                 (2.0 * rows[0] + 3.0 * rows[1]) / 5.0, np.float64)
    eps = 0.1
    sm = (1 - eps) * rows + eps / 3 * (3 * lse - x.sum(axis=1))
    assert_close(fastnll.cross_entropy(x, t, label_smoothing=eps, reduction="none"), sm,
                 np.float64)
    smw = (1 - eps) * w[t] * rows + eps / 3 * (w.sum() * lse - (w * x).sum(axis=1))
    assert_close(fastnll.cross_entropy(x, t, weight=w, label_smoothing=eps),
                 smw.sum() / 5.0, np.float64)
    p = np.exp(x - lse[:, None])
    g = p.copy()
    g[[0, 1], t] -= 1
    assert_close(fastnll.cross_entropy(x, t, return_grad=True)[1], g / 2, np.float64)
    assert_close(fastnll.cross_entropy(x, t, reduction="sum", return_grad=True)[1], g,
                 np.float64)


def test_nll_by_hand():
    x = np.array([[-1.0, -2.0, -3.0], [-0.5, -1.5, -0.25], [0.0, 1.0, 2.0]])
    t = np.array([1, -100, 2])
    w = np.array([1.0, 4.0, 0.5])
    assert_close(fastnll.nll_loss(x, t), (2.0 - 2.0) / 2, np.float64)
    assert_close(fastnll.nll_loss(x, t, weight=w), (4 * 2.0 - 0.5 * 2.0) / 4.5, np.float64)
    assert_close(fastnll.nll_loss(x, t, weight=w, reduction="none"), [8.0, 0.0, -1.0],
                 np.float64)
    _, g = fastnll.nll_loss(x, t, weight=w, return_grad=True)
    exp = np.zeros((3, 3))
    exp[0, 1] = -4 / 4.5
    exp[2, 2] = -0.5 / 4.5
    assert_close(g, exp, np.float64)


def test_probability_mean_divides_by_number_of_samples(rng):
    x = rng.standard_normal((3, 4, 2, 5))
    t = rng.dirichlet(np.ones(4), size=(3, 2, 5)).transpose(0, 3, 1, 2)
    w = rng.uniform(0.5, 2, 4)
    lsm = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    rows = -(w[None, :, None, None] * t * lsm).sum(axis=1)
    assert_close(fastnll.cross_entropy(x, t, weight=w, reduction="none"), rows, np.float64)
    assert_close(fastnll.cross_entropy(x, t, weight=w), rows.sum() / 30, np.float64)
    eps = 0.2
    ts = (1 - eps) * t + eps / 4
    rows = -(w[None, :, None, None] * ts * lsm).sum(axis=1)
    assert_close(fastnll.cross_entropy(x, t, weight=w, label_smoothing=eps), rows.sum() / 30,
                 np.float64)


# ------------------------------------------------------------------- dtypes, types ----

@pytest.mark.parametrize("tdtype", [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                    np.uint16, np.uint32, np.uint64, np.intp])
@pytest.mark.parametrize("kind", ["nll", "ce"])
def test_integer_target_dtypes(kind, tdtype, rng):
    x, t, w = make_case(rng, (6, 5, 3), None, np.float64, ignore=False)
    signed = np.dtype(tdtype).kind == "i"
    if signed:
        t[0, 0] = -100
    tt = t.astype(tdtype)
    for red in REDUCTIONS:
        kw = dict(weight=w, reduction=red)
        compare(kind, x, tt, ref_loss(kind, x, t, **kw), **kw)


def test_unsigned_target_with_ignore_index(rng):
    x, t, _ = make_case(rng, (8, 5), None, np.float64, ignore=False)
    t[[1, 4]] = 255
    for kind in ("nll", "ce"):
        got = func(kind)(x, t.astype(np.uint8), ignore_index=255, reduction="none")
        assert_close(got, ref_loss(kind, x, t, ignore_index=255, reduction="none")[0],
                     np.float64)
        assert got[1] == 0 and got[4] == 0


@pytest.mark.parametrize("ignore_index", [0, 2, -1, 7])
@pytest.mark.parametrize("kind,eps", VARIANTS, ids=str)
def test_custom_ignore_index(kind, eps, ignore_index, rng):
    x, t, w = make_case(rng, (9, 4), None, np.float64, ignore_index=ignore_index)
    for red in REDUCTIONS:
        kw = kwargs(kind, w, red, eps, None, ignore_index=ignore_index)
        compare(kind, x, t, ref_loss(kind, x, t, **kw), **kw)


@pytest.mark.parametrize("xdtype", [np.int32, np.int64, np.bool_, np.uint8])
@pytest.mark.parametrize("kind", ["nll", "ce"])
def test_integer_input_computes_in_float64(kind, xdtype, rng):
    x = rng.integers(-3, 4, size=(5, 4)).astype(xdtype)
    t = rng.integers(0, 4, size=5)
    for red in REDUCTIONS:
        compare(kind, x, t, ref_loss(kind, x, t, reduction=red), reduction=red)


def test_list_inputs():
    x = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [2, 0]
    for kind in ("nll", "ce"):
        compare(kind, x, t, ref_loss(kind, np.array(x), np.array(t)))
        compare(kind, x, t, ref_loss(kind, np.array(x), np.array(t), weight=[1.0, 2.0, 3.0]),
                weight=[1.0, 2.0, 3.0])
    p = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]
    compare("ce", x, p, ref_loss("ce", np.array(x), np.array(p)))


def test_float32_weight_and_float64_weight_with_float32_input(rng):
    x, t, w = make_case(rng, (6, 5), None, np.float32)
    for weight in (w, w.astype(np.float64), list(map(float, w))):
        compare("ce", x, t, ref_loss("ce", x, t, weight=w, label_smoothing=0.1), weight=weight,
                label_smoothing=0.1)


def test_one_dimensional_input_scalar_results(rng):
    x = rng.standard_normal(6)
    for kind in ("nll", "ce"):
        for red in REDUCTIONS:
            loss = func(kind)(x, np.int64(4), reduction=red)
            assert np.ndim(loss) == 0
            assert_close(loss, ref_loss(kind, x, np.array(4), reduction=red)[0], np.float64)
        loss = func(kind)(x, np.array(-100), reduction="mean")
        assert np.isnan(loss)


# ---------------------------------------------------------------- ignored, empty ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("kind,eps", VARIANTS, ids=str)
@pytest.mark.parametrize("shape,axis", [((6, 5), None), ((3, 5, 70), None), ((5,), None),
                                        ((7, 4), 0)], ids=str)
def test_all_targets_ignored(shape, axis, kind, eps, use_weight, dtype, rng):
    x, t, w = make_case(rng, shape, axis, dtype)
    t = np.full_like(t, -100)
    kw = kwargs(kind, w if use_weight else None, "mean", eps, axis)
    loss, grad = func(kind)(x, t, return_grad=True, **kw)
    assert np.isnan(loss) and type(loss) is np.dtype(dtype).type
    assert grad.dtype == dtype and np.all(grad == 0)
    kw["reduction"] = "sum"
    loss, grad = func(kind)(x, t, return_grad=True, **kw)
    assert loss == 0 and type(loss) is np.dtype(dtype).type
    assert np.all(grad == 0)
    kw["reduction"] = "none"
    loss, grad = func(kind)(x, t, return_grad=True, **kw)
    assert np.shape(loss) == t.shape and np.all(np.asarray(loss) == 0)
    assert np.all(grad == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["nll", "ce", "ce_prob"])
@pytest.mark.parametrize("shape,axis", [((0, 5), None), ((2, 5, 0), None), ((0, 3, 4), -1),
                                        ((0, 5, 2, 2), None)], ids=str)
def test_empty_batch(shape, axis, kind, dtype):
    x = np.zeros(shape, dtype)
    ax = class_axis(len(shape), axis)
    if kind == "ce_prob":
        t = np.zeros(shape, dtype)
        f = fastnll.cross_entropy
    else:
        t = np.zeros(shape[:ax] + shape[ax + 1:], np.int64)
        f = func(kind)
    loss, grad = f(x, t, axis=axis, return_grad=True)
    assert np.isnan(loss) and type(loss) is np.dtype(dtype).type
    assert grad.shape == shape and grad.dtype == dtype
    loss = f(x, t, axis=axis, reduction="sum")
    assert loss == 0 and type(loss) is np.dtype(dtype).type
    loss = f(x, t, axis=axis, reduction="none")
    assert isinstance(loss, np.ndarray) and loss.dtype == dtype
    assert loss.shape == shape[:ax] + shape[ax + 1:]


def test_empty_batch_against_torch(torch):
    x = np.zeros((0, 4))
    t = np.zeros(0, np.int64)
    for kind in ("nll", "ce"):
        for red in REDUCTIONS:
            exp_loss, exp_grad = torch_loss(torch, kind, x, t, reduction=red)
            loss, grad = func(kind)(x, t, reduction=red, return_grad=True)
            assert_close(loss, exp_loss, np.float64)
            assert_close(grad, exp_grad, np.float64)


# ---------------------------------------------------------------------- infinities ----

def _inf_cases():
    x = np.array([
        [1.0, -np.inf, 2.0, 0.5],    # -inf at a non-target class: finite
        [1.0, -np.inf, 2.0, 0.5],    # -inf at the target: inf
        [np.inf, 0.0, 1.0, 2.0],     # +inf: nan
        [0.0, 1.0, 1e30, -1e30],     # huge logits
        [-1e30, 1.0, 0.0, 2.0],
        [3.0, 1.0, 0.0, 2.0],
    ])
    t = np.array([0, 1, 2, 3, 0, 2])
    return x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arrangement", ["rows", "columns", "nchw"])
def test_infinite_logits(arrangement, dtype):
    x, t = _inf_cases()
    x = x.astype(dtype)
    got = fastnll.cross_entropy(x, t, reduction="none")
    assert np.isfinite(got[0]) and got[1] == np.inf and np.isnan(got[2])
    for eps in (0.0, 0.1):
        exp, exp_g = ref_loss("ce", x, t, reduction="none", label_smoothing=eps)
        if arrangement == "rows":
            loss, grad = fastnll.cross_entropy(x, t, reduction="none", label_smoothing=eps,
                                               return_grad=True)
        elif arrangement == "columns":
            loss, grad = fastnll.cross_entropy(np.ascontiguousarray(x.T), t, axis=0,
                                               reduction="none", label_smoothing=eps,
                                               return_grad=True)
            grad = grad.T
        else:
            x3 = np.ascontiguousarray(np.stack([x.T] * 3, axis=-1)[None])   # (1, C, R, 3)
            t3 = np.stack([t] * 3, axis=-1)[None]
            loss, grad = fastnll.cross_entropy(x3, t3, reduction="none", label_smoothing=eps,
                                               return_grad=True)
            loss = loss[0, :, 1]
            grad = grad[0, :, :, 1].T
        assert_close(loss, exp, dtype, err_msg=f"eps={eps}")
        finite = np.isfinite(exp)
        assert_close(grad[finite], exp_g[finite], dtype, err_msg=f"eps={eps}")
        if eps > 0:
            assert loss[0] == np.inf      # smoothing sees the -inf logit
        else:
            assert np.isfinite(loss[0])
    loss = fastnll.cross_entropy(x, t, reduction="sum")
    assert np.isnan(loss)


def test_infinite_logits_against_torch(torch):
    x, t = _inf_cases()
    for eps in (0.0, 0.1, 1.0):
        for red in REDUCTIONS:
            exp, exp_g = torch_loss(torch, "ce", x, t, reduction=red, label_smoothing=eps)
            loss, grad = fastnll.cross_entropy(x, t, reduction=red, label_smoothing=eps,
                                               return_grad=True)
            assert_close(loss, exp, np.float64, err_msg=f"{red} {eps}")
            if red == "none":
                ok = np.isfinite(exp)
                assert_close(grad[ok], exp_g[ok], np.float64)
    # a -inf logit at the target: inf loss, finite gradient (as PyTorch)
    x1 = np.array([[0.0, -np.inf, 1.0]])
    exp, exp_g = torch_loss(torch, "ce", x1, np.array([1]))
    loss, grad = fastnll.cross_entropy(x1, np.array([1]), return_grad=True)
    assert loss == np.inf == exp
    assert_close(grad, exp_g, np.float64)


# ------------------------------------------------------- layouts, read-only inputs ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axis", [((6, 5), None), ((7, 4), 0), ((4, 5, 3, 2), None),
                                        ((3, 4, 6), -1), ((2, 4, 70), None),
                                        ((2, 40, 70), None), ((70, 27), None)], ids=str)
def test_layouts(shape, axis, layout, dtype, rng):
    x, t, w = make_case(rng, shape, axis, dtype)
    _, p, _ = make_case(rng, shape, axis, dtype, prob=True)
    xl = make_layout(x, layout)
    check_layout(xl, x, layout)
    tl = make_layout(t, layout)
    pl = make_layout(p, layout)
    wl = make_layout(w, layout)
    copies = [a.copy() for a in (xl, tl, pl, wl)]
    for red in REDUCTIONS:
        for kind, eps in VARIANTS:
            kw = kwargs(kind, wl, red, eps, axis)
            compare(kind, xl, tl, ref_loss(kind, x, t, **dict(kw, weight=w)), **kw)
        kw = kwargs("ce", wl, red, 0.1, axis)
        compare("ce", xl, pl, ref_loss("ce", x, p, **dict(kw, weight=w)), **kw)
    for a, c in zip((xl, tl, pl, wl), copies):
        np.testing.assert_array_equal(a, c)


def test_read_only_everything(rng):
    x, t, w = make_case(rng, (6, 5, 3), None, np.float32)
    _, p, _ = make_case(rng, (6, 5, 3), None, np.float32, prob=True)
    for a in (x, t, w, p):
        a.setflags(write=False)
    for kind, eps in VARIANTS:
        kw = kwargs(kind, w, "mean", eps, None)
        compare(kind, x, t, ref_loss(kind, x, t, **kw), **kw)
    compare("ce", x, p, ref_loss("ce", x, p, weight=w), weight=w)


# ------------------------------------------------------------------- larger inputs ----

MEDIUM = [((64, 3000), None), ((3000, 64), 0), ((16, 300, 80), None), ((4, 64, 300), -1),
          ((20000, 5), None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", MEDIUM, ids=str)
@pytest.mark.parametrize("oracle", ["numpy", "torch"])
def test_medium(oracle, shape, axis, dtype, rng, request):
    x, t, w = make_case(rng, shape, axis, dtype)
    _, p, _ = make_case(rng, shape, axis, dtype, prob=True)
    torch = request.getfixturevalue("torch") if oracle == "torch" else None

    def expected(kind, target, **kw):
        if torch is not None:
            return torch_loss(torch, kind, x, target, axis=axis, **kw)
        return ref_loss(kind, x, target, axis=axis, **kw)

    for red in REDUCTIONS:
        compare("nll", x, t, expected("nll", t, reduction=red, weight=w), axis=axis,
                reduction=red, weight=w)
        compare("ce", x, t, expected("ce", t, reduction=red), axis=axis, reduction=red)
    compare("ce", x, t, expected("ce", t, weight=w, label_smoothing=0.1), axis=axis, weight=w,
            label_smoothing=0.1)
    compare("ce", x, p, expected("ce", p, weight=w, label_smoothing=0.1), axis=axis, weight=w,
            label_smoothing=0.1)
    compare("ce", x, p, expected("ce", p, reduction="none"), axis=axis, reduction="none")


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_offsets_and_ramps(dtype, rng):
    # large common offsets (cancellation in the smoothing sums) and maxima that grow from
    # chunk to chunk of a row / block of columns
    C = 2500
    x = (1e3 + rng.standard_normal((5, C)) + np.linspace(-20, 20, C)).astype(dtype)
    t = rng.integers(0, C, 5)
    w = rng.uniform(0.5, 1.5, C).astype(dtype)
    for eps in (0.0, 0.3):
        kw = dict(weight=w, label_smoothing=eps)
        compare("ce", x, t, ref_loss("ce", x, t, **kw), **kw)
        xt = np.ascontiguousarray(x.T)
        compare("ce", xt, t, ref_loss("ce", xt, t, axis=0, **kw), axis=0, **kw)
    x3 = (-500 + rng.standard_normal((2, 200, 70)) +
          np.linspace(-10, 10, 200)[None, :, None]).astype(dtype)
    t3 = rng.integers(0, 200, (2, 70))
    for eps in (0.0, 0.3):
        kw = dict(label_smoothing=eps, reduction="none")
        compare("ce", x3, t3, ref_loss("ce", x3, t3, **kw), **kw)


# ----------------------------------------- regressions (bugs these tests found) ----
# The label-smoothing and probability-target terms used to evaluate (log_sum + shift) - ref,
# rounding the small part of log-sum-exp away when the logits are large or the prediction
# confident.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arrangement", ["one_row", "rows", "columns", "nchw"])
@pytest.mark.parametrize("value", [1e30, -1e30, 1e17])
def test_equal_huge_logits_smoothing_and_probabilities(value, arrangement, dtype):
    # every log-probability of a row of equal logits is -log(C), however large they are
    # (PyTorch: cross_entropy([[1e30, 1e30]], [[.5, .5]]) = log 2)
    C = 2
    n = {"one_row": 1, "rows": 5, "columns": 5, "nchw": 5}[arrangement]
    x = np.full((n, C), value, dtype=dtype)
    t = np.zeros(n, np.int64)
    p = np.full((n, C), 0.5, dtype=dtype)
    if arrangement == "columns":
        x, p, kw = np.ascontiguousarray(x.T), np.ascontiguousarray(p.T), dict(axis=0)
    elif arrangement == "nchw":
        x, p, kw = np.ascontiguousarray(x.T[None]), np.ascontiguousarray(p.T[None]), {}
        t = t[None]
    else:
        kw = {}
    expected = np.full(t.shape, np.log(2.0))
    assert_close(fastnll.cross_entropy(x, t, label_smoothing=0.1, reduction="none", **kw),
                 expected, dtype)
    assert_close(fastnll.cross_entropy(x, p, reduction="none", **kw), expected, dtype)


@pytest.mark.parametrize("offset", [1e5, -1e6])
def test_large_offset_float64_precision(offset, rng):
    x = offset + rng.standard_normal((8, 5))
    t = rng.integers(0, 5, 8)
    p = rng.dirichlet(np.ones(5), 8)
    kw = dict(label_smoothing=0.1, reduction="none")
    assert_close(fastnll.cross_entropy(x, t, **kw), ref_loss("ce", x, t, **kw)[0],
                 np.float64)
    kw = dict(reduction="none")
    assert_close(fastnll.cross_entropy(x, p, **kw), ref_loss("ce", x, p, **kw)[0],
                 np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_prediction_probability_target(dtype):
    # loss = log1p(e^-30) ~ 9.4e-14: no cancellation against the logits' size
    x = np.array([[30.0, 0.0], [0.0, -30.0]], dtype=dtype)
    p = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    exp = np.log1p(np.exp(-30.0))
    assert_close(fastnll.cross_entropy(x, p, reduction="none"), [exp, exp], dtype, atol=0)
    assert_close(fastnll.cross_entropy(x.T.copy(), p.T.copy(), axis=0, reduction="none"),
                 [exp, exp], dtype, atol=0)


@pytest.mark.parametrize("arrangement", ["rows", "columns", "nchw"])
@pytest.mark.parametrize("C", [3, 40])
def test_ignored_row_with_nonfinite_logits_gradient(torch, arrangement, C):
    # PyTorch: log_softmax's backward computes g - exp(out) * sum(g), and exp(nan) * 0 is
    # nan, so an ignored row whose log-probabilities are nan gets a nan gradient.  Whatever
    # the choice, it must not depend on the memory layout.
    x = np.zeros((4, C))
    x[0, 0] = np.inf
    x[1, 1] = np.nan
    t = np.array([-100, -100, 1, 2])
    exp_loss, exp_grad = torch_loss(torch, "ce", x, t, reduction="sum")
    if arrangement == "rows":
        loss, grad = fastnll.cross_entropy(x, t, reduction="sum", return_grad=True)
    elif arrangement == "columns":
        loss, grad = fastnll.cross_entropy(np.ascontiguousarray(x.T), t, axis=0,
                                           reduction="sum", return_grad=True)
        grad = grad.T
    else:
        loss, grad = fastnll.cross_entropy(np.ascontiguousarray(x.T[None]), t[None],
                                           reduction="sum", return_grad=True)
        grad = grad[0].T
    assert_close(loss, exp_loss, np.float64)
    assert_close(grad, exp_grad, np.float64)


@pytest.mark.parametrize("kind", ["nll", "ce"])
def test_zero_total_weight_mean_gradient(torch, kind):
    # every kept target has weight 0: the mean is 0/0 = nan, and so is PyTorch's gradient
    x = np.random.default_rng(0).standard_normal((3, 4))
    t = np.array([0, 0, 0])
    w = np.array([0.0, 1.0, 1.0, 1.0])
    exp_loss, exp_grad = torch_loss(torch, kind, x, t, weight=w)
    loss, grad = func(kind)(x, t, weight=w, return_grad=True)
    assert np.isnan(loss) and np.isnan(exp_loss)
    assert_close(grad, exp_grad, np.float64)


# ------------------------------------------- odd strides, nan weights, no classes ----

def test_nll_loss_with_an_odd_target_stride():
    # a field of a structured array: int64 with a 12-byte stride
    rec = np.zeros(3, dtype=[("label", "<i8"), ("flag", "<i4")])
    rec["flag"][0] = 1
    rec["label"] = [1, 0, 1]
    x = np.log([[0.7, 0.3]] * 3)
    for f in (fastnll.nll_loss, fastnll.cross_entropy):
        got = f(x, rec["label"], reduction="none")
        np.testing.assert_array_equal(got, f(x, rec["label"].copy(), reduction="none"))


@pytest.mark.parametrize("layout", ["rows", "columns", "few classes"])
def test_negative_strides_everywhere(layout):
    rng = np.random.default_rng(0)
    shape = {"rows": (50, 700), "columns": (700, 50), "few classes": (900, 12)}[layout]
    x = rng.standard_normal(shape)[::-1, ::-1]
    axis = 0 if layout == "columns" else 1
    t = rng.integers(0, x.shape[axis], x.shape[1 - axis])[::-1]
    xc, tc = np.ascontiguousarray(x), np.ascontiguousarray(t)
    # a reversed class axis takes the strided loop (another summation order): 1 ulp apart
    np.testing.assert_allclose(fastnll.logsumexp(x, axis=axis),
                               fastnll.logsumexp(xc, axis=axis), rtol=1e-14)
    np.testing.assert_allclose(fastnll.softmax(x, axis=axis), fastnll.softmax(xc, axis=axis),
                               rtol=1e-13, atol=1e-300)
    a = fastnll.cross_entropy(x, t, axis=axis, label_smoothing=0.1, reduction="none",
                              return_grad=True)
    b = fastnll.cross_entropy(xc, tc, axis=axis, label_smoothing=0.1, reduction="none",
                              return_grad=True)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-16)


def test_nan_class_weight_is_accepted_as_in_pytorch():
    loss = fastnll.cross_entropy(np.zeros((2, 3)), [0, 1], weight=[np.nan, 1.0, 1.0],
                                 reduction="none")
    assert np.isnan(loss[0]) and loss[1] == pytest.approx(np.log(3))


def test_probability_targets_with_no_classes():
    loss = fastnll.cross_entropy(np.zeros((4, 0)), np.zeros((4, 0)), reduction="none")
    np.testing.assert_array_equal(loss, np.zeros(4))
