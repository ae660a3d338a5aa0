"""The compiled shortcut of nll_loss / cross_entropy: the general path's results bit for bit."""
# The common nll_loss / cross_entropy call takes a compiled shortcut (class_loss_fast in
# _call_shortcut.pxi) past the general path's conversions.  It must give the general path's
# results bit for bit (values, dtypes, shapes, types), take exactly the calls it can, and leave
# every other call, errors included, to the general path (its invalid targets: the "shortcut"
# rows of test_errors.py).
#
# A NumPy integer as ``ignore_index`` means the same as the Python int but is not taken by the
# shortcut, so it forces the general path for the comparison.
import numpy as np
import pytest

import fastnll
from fastnll import _threads
from fastnll._dispatch import kernels
from helpers import LAYOUTS, assert_bitwise_equal, make_layout


def _shortcut(name, x, t, **kw):
    args = dict(weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                axis=None, return_grad=False)
    args.update(kw)
    if name == "nll_loss":
        args["label_smoothing"] = 0.0
    return kernels.class_loss_fast(x, t, args["weight"], args["ignore_index"],
                                   args["reduction"], args["label_smoothing"], args["axis"],
                                   args["return_grad"], name == "nll_loss", _threads.for_work)


def _problem(rng, N, C, dtype, ignore_index):
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    x.flat[::17] = (rng.standard_normal(x.size) * 30).astype(dtype).flat[::17]
    if N >= 8:      # rows with +inf, all -inf, nan, a -inf entry, and ties at the maximum
        x[1, C // 2] = np.inf
        x[2] = -np.inf
        x[3, C - 1] = np.nan
        x[4, 0] = -np.inf
        x[5] = 7
    t = rng.integers(0, C, N)
    t[::5] = ignore_index
    return x, t


SHAPES = [(1, 1), (1, 7), (2, 1), (5, 2), (33, 10), (64, 32), (65, 33), (3, 1000),
          (200, 200)]      # (200, 200) has 40000 elements: threads with the default count


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_shortcut_matches_the_general_path(name, dtype, layout):
    rng = np.random.default_rng(11)
    f = getattr(fastnll, name)
    smoothings = [0.0] if name == "nll_loss" else [0.0, 0.25, 1]
    for N, C in SHAPES:
        for ignore_index in (-100, min(3, C - 1)):
            x0, t = _problem(rng, N, C, dtype, ignore_index)
            x = make_layout(x0, layout)
            before = x.copy()
            for reduction in ("mean", "sum", "none"):
                for return_grad in (False, True):
                    for eps in smoothings:
                        kw = dict(reduction=reduction, return_grad=return_grad)
                        if name == "cross_entropy":
                            kw["label_smoothing"] = eps
                        what = f"{name} {np.dtype(dtype)} {layout} {(N, C)} {kw} {ignore_index}"
                        taken = _shortcut(name, x, t, ignore_index=ignore_index, **kw)
                        if layout == "unaligned" and np.dtype(dtype).itemsize > 1:
                            assert taken is None, what
                        elif reduction == "mean" and np.all(t == ignore_index):
                            assert taken is None, what   # 0 / 0: the general path's nan
                        else:
                            assert taken is not None, what
                        fast = f(x, t, ignore_index=ignore_index, **kw)
                        general = f(x, t, ignore_index=np.int64(ignore_index), **kw)
                        assert_bitwise_equal(fast, general, what)
            np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [7, 300])
def test_shortcut_with_broadcast_arrays_extreme_ignore_index_and_threads(name, dtype, C):
    # zero strides in the input or the target, ignore_index at the ends of int64, and the
    # same bits with 1 and 2 threads (300 x C elements: threads for C = 300)
    rng = np.random.default_rng(7)
    f = getattr(fastnll, name)
    N = 300
    x = (rng.standard_normal((N, C)) * 4).astype(dtype)
    t = rng.integers(0, C, N)
    inputs = {"plain": x, "rows broadcast": np.broadcast_to(x[3], (N, C)),
              "classes broadcast": np.broadcast_to(x[:, :1], (N, C))}
    targets = {"plain": t, "broadcast": np.broadcast_to(t[:1], (N,))}
    for ignore_index in (-2 ** 63, 2 ** 63 - 1):
        tt = t.copy()
        tt[::4] = ignore_index
        targets[f"ignore {ignore_index}"] = tt
    for xname, xv in inputs.items():
        for tname, tv in targets.items():
            t_before = np.array(tv)
            ignore_index = -100
            if tname.startswith("ignore"):
                ignore_index = int(tname.split()[1])
            for kw in ({}, {"reduction": "none"}, {"return_grad": True},
                       {"reduction": "sum", "return_grad": True}):
                what = f"{name} {np.dtype(dtype)} C={C} {xname} / {tname} {kw}"
                assert _shortcut(name, xv, tv, ignore_index=ignore_index, **kw) is not None
                with fastnll.threads(1):
                    one = f(xv, tv, ignore_index=ignore_index, **kw)
                with fastnll.threads(2):
                    two = f(xv, tv, ignore_index=ignore_index, **kw)
                general = f(xv, tv, ignore_index=np.int64(ignore_index), **kw)
                assert_bitwise_equal(one, general, what)
                assert_bitwise_equal(two, general, what + ", 2 threads")
            np.testing.assert_array_equal(tv, t_before)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
def test_shortcut_agrees_with_a_float64_reference(name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 12)).astype(np.float32)
    t = rng.integers(0, 12, 40)
    t[7] = -100
    x64 = x.astype(np.float64)
    logp = x64 - x64.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    inp = logp.astype(np.float32) if name == "nll_loss" else x
    base = logp if name == "cross_entropy" else inp.astype(np.float64)
    kept = t != -100
    rows = np.where(kept, -base[np.arange(40), np.where(kept, t, 0)], 0.0)
    f = getattr(fastnll, name)
    assert _shortcut(name, inp, t) is not None
    loss, grad = f(inp, t, return_grad=True)
    assert isinstance(loss, np.float32) and grad.dtype == np.float32
    np.testing.assert_allclose(loss, rows.sum() / kept.sum(), rtol=2e-6)
    np.testing.assert_allclose(f(inp, t, reduction="none"), rows, rtol=2e-6, atol=1e-7)
    onehot = np.zeros((40, 12))
    onehot[np.arange(40)[kept], t[kept]] = 1
    ref_grad = -onehot / kept.sum()
    if name == "cross_entropy":
        ref_grad += np.exp(logp) * kept[:, None] / kept.sum()
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-8)


def _declined():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    t = rng.integers(0, 4, 6)
    swapped = x.astype(x.dtype.newbyteorder())
    cases = {
        "weight": (x, t, dict(weight=np.ones(4, np.float32))),
        "float16 input": (x.astype(np.float16), t, {}),
        "int input": (np.ones((6, 4), np.int64), t, {}),
        "int32 target": (x, t.astype(np.int32), {}),
        "uint8 target": (x, t.astype(np.uint8), {}),
        "float target": (x, rng.random((6, 4)).astype(np.float32), {}),
        "list input": (x.tolist(), t, {}),
        "list target": (x, t.tolist(), {}),
        "3-D input": (x.reshape(6, 4, 1), t.reshape(6, 1), {}),
        "1-D input": (x[0], t[0], {}),
        "subclass": (x.view(np.matrix), t, {}),
        "byte-swapped input": (swapped, t, {}),
        "byte-swapped target": (x, t.astype(t.dtype.newbyteorder()), {}),
        "dtype with metadata": (x.astype(np.dtype(np.float32, metadata={"unit": "nats"})), t,
                                {}),
        "axis 0": (x, rng.integers(0, 6, 4), dict(axis=0)),
        "NumPy axis": (x, t, dict(axis=np.int64(1))),
        "NumPy reduction": (x, t, dict(reduction=np.str_("mean"))),
        "unknown reduction": (x, t, dict(reduction="MEAN")),
        "bool ignore_index": (x, t, dict(ignore_index=True)),
        "65-bit ignore_index": (x, t, dict(ignore_index=2 ** 64)),
        "int return_grad": (x, t, dict(return_grad=1)),
        "NumPy label_smoothing": (x, t, dict(label_smoothing=np.float64(0.1))),
        "label_smoothing 1.5": (x, t, dict(label_smoothing=1.5)),
        "label_smoothing nan": (x, t, dict(label_smoothing=float("nan"))),
        "label_smoothing 2": (x, t, dict(label_smoothing=2)),
        "no rows": (x[:0], t[:0], {}),
        "no classes": (x[:, :0], np.full(6, -100), {}),
        "target too short": (x, t[:5], {}),
        "target out of range": (x, np.array([0, 1, 2, 3, 4, 0]), {}),
        "negative target": (x, np.array([0, 1, -1, 3, 0, 0]), {}),
        "all ignored, mean": (x, np.full(6, -100), {}),
    }
    if np.dtype(np.longlong).num != np.dtype(np.int64).num:    # Linux: a distinct dtype
        cases["longlong target"] = (x, t.astype(np.longlong), {})
    return cases


@pytest.mark.parametrize("case", sorted(_declined()))
def test_shortcut_declines_other_calls(case):
    x, t, kw = _declined()[case]
    assert _shortcut("cross_entropy", x, t, **kw) is None
    if "label_smoothing" not in kw:
        assert _shortcut("nll_loss", x, t, **kw) is None


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("return_grad", [False, True])
def test_all_ignored_targets_in_a_shortcut_shaped_call(name, return_grad):
    # (invalid targets in such calls raise: the "shortcut" rows of test_errors.py)
    x = np.zeros((40, 5), np.float32)
    f = getattr(fastnll, name)
    assert np.isnan(f(x, np.full(40, -100), return_grad=return_grad)
                    if not return_grad else f(x, np.full(40, -100), return_grad=True)[0])
