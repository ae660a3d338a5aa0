"""Class weights, `weight` and `pos_weight` of any sign, against PyTorch (the oracle).

PyTorch accepts negative weights (Monte Carlo event weights are negative for some events), and
so does fastnll.  The mean's denominator, the kept targets' summed class weights, can then be
zero or negative: the result is whatever PyTorch returns, +-inf and nan included.
"""
import itertools

import numpy as np
import pytest

import fastnll

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = [np.float64, np.float32]


def _same(got, want, dtype, what):
    """Equal within the dtype's tolerance, with the same +-inf and nan entries."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=what)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=what)
    fin = np.isfinite(want)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    scale = max(1.0, float(np.abs(want[fin]).max())) if fin.any() else 1.0
    np.testing.assert_allclose(got[fin], want[fin], rtol=tol, atol=tol * scale, err_msg=what)


def _weights(rng, C, t, kind):
    if kind == "mixed":
        return rng.standard_normal(C)
    if kind == "negative":
        return -rng.uniform(0.1, 2.0, C)
    # the kept targets' weights sum to exactly 0 (small integers)
    k = np.count_nonzero(t == t[0])
    w = (rng.integers(1, 4, C) * k).astype(np.float64)
    w[t[0]] = -w[t[t != t[0]]].sum() / k     # a whole number
    assert w[t].sum() == 0
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["mixed", "negative", "zero_sum"])
@pytest.mark.parametrize("shape", [(7, 5), (40, 50), (3, 6, 4)])
def test_class_losses_with_weights_of_any_sign(shape, kind, dtype, rng):
    C = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.integers(0, C, shape[:1] + shape[2:])
    t.flat[0] = t.flat[1]       # a repeated target, so that zero_sum can cancel
    w = _weights(rng, C, t.ravel(), kind).astype(dtype)
    for fn, reduction, eps, ignore in itertools.product(
            ["nll", "ce"], ["mean", "sum", "none"], [0.0, 0.25], [-100, "first"]):
        if fn == "nll" and eps:
            continue
        ii = int(t.flat[2]) if ignore == "first" else -100
        if kind == "zero_sum" and ignore == "first":
            continue    # ignoring a target undoes the cancellation
        kw = dict(weight=w, ignore_index=ii, reduction=reduction)
        if fn == "ce":
            kw["label_smoothing"] = eps
        xt = torch.tensor(x, requires_grad=True)
        tf = F.cross_entropy if fn == "ce" else F.nll_loss
        want = tf(xt, torch.tensor(t), **dict(kw, weight=torch.tensor(w)))
        want.sum().backward()
        f = fastnll.cross_entropy if fn == "ce" else fastnll.nll_loss
        loss, grad = f(x, t, return_grad=True, **kw)
        what = f"{fn} {kind} {reduction} eps={eps} ignore={ii}"
        _same(loss, want.detach().numpy(), dtype, what + " loss")
        _same(grad, xt.grad.numpy(), dtype, what + " grad")
        assert np.asarray(loss).dtype == dtype and grad.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_targets_with_negative_weights(reduction, dtype, rng):
    x = rng.standard_normal((9, 6)).astype(dtype)
    p = rng.random((9, 6))
    p = (p / p.sum(1, keepdims=True)).astype(dtype)
    w = rng.standard_normal(6).astype(dtype)
    for eps in (0.0, 0.3):
        xt = torch.tensor(x, requires_grad=True)
        want = F.cross_entropy(xt, torch.tensor(p), weight=torch.tensor(w), reduction=reduction,
                               label_smoothing=eps)
        want.sum().backward()
        loss, grad = fastnll.cross_entropy(x, p, weight=w, reduction=reduction,
                                           label_smoothing=eps, return_grad=True)
        _same(loss, want.detach().numpy(), dtype, f"prob eps={eps} loss")
        _same(grad, xt.grad.numpy(), dtype, f"prob eps={eps} grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", [None, "negative"])
@pytest.mark.parametrize("pos_weight", [None, "negative", "zero"])
def test_bce_with_negative_weight_and_pos_weight(weight, pos_weight, dtype, rng):
    x = (rng.standard_normal((4, 9)) * 3).astype(dtype)
    y = rng.random((4, 9)).astype(dtype)
    w = None if weight is None else rng.standard_normal((4, 9)).astype(dtype)
    pw = {None: None, "negative": -rng.uniform(0.1, 3.0, 9),
          "zero": np.zeros(9)}[pos_weight]
    pw = None if pw is None else pw.astype(dtype)
    for reduction in ("mean", "sum", "none"):
        xt = torch.tensor(x, requires_grad=True)
        want = F.binary_cross_entropy_with_logits(
            xt, torch.tensor(y), weight=None if w is None else torch.tensor(w),
            pos_weight=None if pw is None else torch.tensor(pw), reduction=reduction)
        want.sum().backward()
        loss, grad = fastnll.binary_cross_entropy_with_logits(
            x, y, weight=w, pos_weight=pw, reduction=reduction, return_grad=True)
        _same(loss, want.detach().numpy(), dtype, f"bce {reduction} loss")
        _same(grad, xt.grad.numpy(), dtype, f"bce {reduction} grad")


def test_torch_backend_with_negative_class_weights(rng):
    # fastnll.torch now takes these calls itself (they used to fall back to PyTorch)
    import fastnll.torch as fnt
    x = rng.standard_normal((12, 7))
    t = rng.integers(0, 7, 12)
    for w in (rng.standard_normal(7), _weights(rng, 7, t, "zero_sum")):
        for eps in (0.0, 0.2):
            got_x = torch.tensor(x, requires_grad=True)
            want_x = torch.tensor(x, requires_grad=True)
            got = fnt.cross_entropy(got_x, torch.tensor(t), weight=torch.tensor(w),
                                    label_smoothing=eps)
            want = F.cross_entropy(want_x, torch.tensor(t), weight=torch.tensor(w),
                                   label_smoothing=eps)
            got.backward()
            want.backward()
            _same(got.detach().numpy(), want.detach().numpy(), np.float64, "torch loss")
            _same(got_x.grad.numpy(), want_x.grad.numpy(), np.float64, "torch grad")


INF = float("inf")
# rows holding +inf, only -inf or nan, with the kept targets' weights summing to 0 (or all
# targets ignored): PyTorch's nan and +-inf entries, position by position
SPECIAL = [
    ([[INF, 1.0], [0.2, 0.1]], [1, 1], [0.3, 0.0]),
    ([[-INF, -INF], [0.2, 0.1]], [1, 1], [0.3, 0.0]),
    ([[INF, -0.0132]], [-100], [0.3, 0.3]),
    ([[1.0, 2.0], [0.2, 0.1]], [0, 1], [1.0, -1.0]),
    ([[INF, 2.0], [0.2, 0.1]], [0, 1], [1.0, -1.0]),
    ([[np.nan, 2.0], [0.2, 0.1]], [0, 1], [1.0, -1.0]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("case", SPECIAL, ids=str)
def test_zero_weight_sum_with_special_values(case, eps, dtype):
    xs, ts, ws = case
    x = np.array(xs, dtype=dtype)
    w = np.array(ws, dtype=dtype)
    xt = torch.tensor(x, requires_grad=True)
    want = F.cross_entropy(xt, torch.tensor(ts), weight=torch.tensor(w), label_smoothing=eps)
    want.backward()
    loss, grad = fastnll.cross_entropy(x, np.array(ts), weight=w, label_smoothing=eps,
                                       return_grad=True)
    _same(loss, want.detach().numpy(), dtype, "loss")
    _same(grad, xt.grad.numpy(), dtype, "grad")
