"""linear_cross_entropy, and cross_entropy's softcap and z_loss, against PyTorch autograd in
float64 (the oracle composes F.linear, tanh, F.cross_entropy and logsumexp)."""
import numpy as np
import pytest

import fastnll
from fastnll import _linear
from helpers import traced_peak

N, H, V = 37, 6, 23
TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(params=["one block", "blocks of 5 rows", "vocabulary slices"])
def blocks(request, monkeypatch):
    """Run with the default block size, and with a budget of 5 rows of logits: every product
    is split, grad_linear_weight accumulated over blocks of 5 rows (through slices of 4
    classes), and the loss alone evaluated through slices of the vocabulary (blocks of 28
    float64 rows x 4 classes, 8 of 4 or 3 classes... with _MIN_SLICE 4; of 23 classes, 5
    rows a block, with the default _MIN_SLICE)."""
    if request.param != "one block":
        itemsize = 8
        monkeypatch.setattr(_linear, "_BLOCK_BYTES", 5 * V * itemsize)
        monkeypatch.setattr(_linear, "_L2_BYTES", 4 * 2 * H * itemsize)
    if request.param == "vocabulary slices":
        monkeypatch.setattr(_linear, "_MIN_SLICE", 4)
    return request.param


def rel_err(got, expected):
    """Relative error in the 2-norm (of a scalar: its relative error)."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    scale = np.linalg.norm(expected)
    return np.linalg.norm(got - expected) / (scale if scale else 1.0)


def reference(torch, x, W, target, bias=None, weight=None, ignore_index=-100,
              reduction="mean", label_smoothing=0.0, softcap=None, z_loss=0.0):
    """(loss, grad_input, grad_linear_weight, grad_linear_bias) by float64 autograd; the
    gradients are those of the sum of the losses for "none"."""
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    z = F.linear(xt, Wt, bt).reshape(-1, W.shape[0])
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    t = torch.tensor(np.asarray(target))
    prob = t.is_floating_point()
    t = t.double().reshape(-1, W.shape[0]) if prob else t.reshape(-1).long()
    wt = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    loss = F.cross_entropy(z, t, wt, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
    lse = torch.logsumexp(z, dim=-1)
    kept = torch.ones_like(lse, dtype=torch.bool) if prob else t != ignore_index
    rows = torch.where(kept, z_loss * lse.square(), torch.zeros_like(lse))
    if reduction == "mean":
        loss = loss + rows.sum() / kept.sum()
    elif reduction == "sum":
        loss = loss + rows.sum()
    else:
        loss = (loss + rows).reshape(x.shape[:-1])
    loss.sum().backward()
    return (loss.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(),
            None if bt is None else bt.grad.numpy())


def problem(dtype, *, seed=0, shape=(N,), prob=False, ignored=0.0, bias=False, weight=False,
            scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape + (H,)).astype(dtype)
    W = (scale * rng.standard_normal((V, H))).astype(dtype)
    b = rng.standard_normal(V).astype(dtype) if bias else None
    w = rng.uniform(0.2, 2.0, V).astype(dtype) if weight else None
    if prob:
        t = rng.dirichlet(np.ones(V), shape).astype(dtype)
    else:
        t = rng.integers(0, V, shape)
        t[rng.random(shape) < ignored] = -100
    return x, W, t, b, w


def check(torch, dtype, x, W, t, b=None, w=None, **options):
    loss, grads = fastnll.linear_cross_entropy(x, W, t, b, w, return_grad=True, **options)
    ref = reference(torch, x, W, t, b, w, **options)
    tol = TOL[dtype]
    assert np.asarray(loss).dtype == dtype
    assert np.asarray(loss).shape == np.shape(ref[0])
    assert rel_err(loss, ref[0]) <= tol
    assert grads.input.dtype == grads.linear_weight.dtype == dtype
    assert rel_err(grads.input, ref[1]) <= tol
    assert rel_err(grads.linear_weight, ref[2]) <= tol
    if b is None:
        assert grads.linear_bias is None
    else:
        assert grads.linear_bias.dtype == dtype
        assert rel_err(grads.linear_bias, ref[3]) <= tol
    # the loss alone: the same number while the logits fit one block (the same kernel
    # call), else through slices of the vocabulary (rounded differently)
    alone = fastnll.linear_cross_entropy(x, W, t, b, w, **options)
    assert np.asarray(alone).dtype == dtype
    assert np.shape(alone) == np.shape(ref[0])
    assert rel_err(alone, ref[0]) <= tol
    if x.size // H * V * x.itemsize <= _linear._BLOCK_BYTES:
        np.testing.assert_array_equal(alone, loss)


OPTIONS = [
    dict(),
    dict(label_smoothing=0.1),
    dict(softcap=2.5),
    dict(z_loss=1e-2),
    dict(softcap=4.0, z_loss=1e-3, label_smoothing=0.05),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("operands", ["-", "bias", "weight", "bias+weight"])
def test_against_autograd(torch, blocks, dtype, reduction, options, operands):
    x, W, t, b, w = problem(dtype, ignored=0.3, bias="bias" in operands,
                            weight="weight" in operands)
    check(torch, dtype, x, W, t, b, w, reduction=reduction, **options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_probability_targets(torch, blocks, dtype, reduction, options):
    x, W, t, b, w = problem(dtype, prob=True, bias=True, weight=True)
    check(torch, dtype, x, W, t, b, w, reduction=reduction, **options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (1,), (4, 5), (2, 3, 4)])
def test_any_leading_shape(torch, blocks, dtype, shape):
    """input (..., H) and target (...): 1-D input with a scalar target, and 3-D / 4-D
    (batch, time, features) inputs, classes last."""
    x, W, t, b, w = problem(dtype, shape=shape, ignored=0.2, bias=True)
    for reduction in ("mean", "none"):
        check(torch, dtype, x, W, t, b, w, reduction=reduction, z_loss=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_and_read_only_operands(torch, blocks, dtype):
    """Non-contiguous input, linear_weight stored transposed or with a step, a strided bias
    and target; all read-only and left unchanged."""
    x, W, t, b, w = problem(dtype, bias=True, weight=True, ignored=0.2)
    xs = np.repeat(x, 2, axis=1)[:, ::2]
    Ws = np.asfortranarray(W)
    Wstep = np.repeat(W, 3, axis=0)[::3]
    bs = np.repeat(b, 2)[::2]
    ts = np.repeat(t, 2)[::2]
    for arr in (xs, Ws, Wstep, bs, ts, w):
        arr.setflags(write=False)
    before = [a.copy() for a in (xs, Ws, Wstep, bs, ts, w)]
    for WW in (Ws, Wstep):
        check(torch, dtype, xs, WW, ts, bs, w, label_smoothing=0.1, softcap=3.0)
    for a, a0 in zip((xs, Ws, Wstep, bs, ts, w), before):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target_dtype", [np.int8, np.uint8, np.int32, np.uint64])
def test_target_dtypes(torch, dtype, target_dtype):
    x, W, t, b, w = problem(dtype)
    check(torch, dtype, x, W, t.astype(target_dtype), b, w)


def test_all_ignored(blocks):
    """Every target ignored: the mean is 0 / 0 = nan, as in PyTorch, the sum 0, and every
    gradient 0 (no product runs)."""
    x, W, t, b, w = problem(np.float64, bias=True)
    t[:] = -100
    loss, g = fastnll.linear_cross_entropy(x, W, t, b, return_grad=True, z_loss=0.1)
    assert np.isnan(loss)
    assert fastnll.linear_cross_entropy(x, W, t, b, reduction="sum") == 0
    np.testing.assert_array_equal(
        fastnll.linear_cross_entropy(x, W, t, b, reduction="none"), np.zeros(N))
    for grad in g:
        assert not grad.any()


def test_ignored_rows_are_not_read(blocks):
    """Rows whose target is ignored take no part in any product: nan features there change
    nothing (a product over them would spread the nan to every gradient)."""
    x, W, t, b, w = problem(np.float64, ignored=0.5, bias=True)
    poisoned = x.copy()
    poisoned[t == -100] = np.nan
    for reduction in ("mean", "sum", "none"):
        clean = fastnll.linear_cross_entropy(x, W, t, b, reduction=reduction,
                                             return_grad=True)
        got = fastnll.linear_cross_entropy(poisoned, W, t, b, reduction=reduction,
                                           return_grad=True)
        np.testing.assert_array_equal(got[0], clean[0])
        for a, c in zip(got[1], clean[1]):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("prob", [False, True], ids=["indices", "probabilities"])
def test_evaluation_forms_slices_of_the_vocabulary(monkeypatch, prob):
    """Without the gradient, logits beyond the budget are formed a slice of W's rows at a
    time (each slice read once per block of rows), and the loss is the formed logits' one;
    the ignored rows' features are still never read."""
    x, W, t, b, w = problem(np.float64, prob=prob, ignored=0.3, bias=True, weight=True)
    monkeypatch.setattr(_linear, "_BLOCK_BYTES", 5 * V * 8)
    monkeypatch.setattr(_linear, "_MIN_SLICE", 4)
    widths = []
    forward = _linear.NumpyProducts.forward

    def spy(self, xb, W_slice, out):
        widths.append(W_slice.shape[0])
        forward(self, xb, W_slice, out)
    monkeypatch.setattr(_linear.NumpyProducts, "forward", spy)
    poisoned = x.copy()
    if not prob:
        poisoned[t == -100] = np.nan
    logits = x @ W.T + b
    for options in OPTIONS:
        for reduction in ("mean", "sum", "none"):
            widths.clear()
            got = fastnll.linear_cross_entropy(poisoned, W, t, b, w, reduction=reduction,
                                               **options)
            assert max(widths) < V and sum(widths) % V == 0, widths
            want = fastnll.cross_entropy(logits, t, w, reduction=reduction, **options)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_matches_cross_entropy_on_formed_logits(blocks):
    """The value is cross_entropy's on the formed logits, with the same options."""
    x, W, t, b, w = problem(np.float64, ignored=0.2, bias=True, weight=True)
    logits = x @ W.T + b
    for options in OPTIONS:
        for reduction in ("mean", "sum", "none"):
            got = fastnll.linear_cross_entropy(x, W, t, b, w, reduction=reduction, **options)
            want = fastnll.cross_entropy(logits, t, w, reduction=reduction, **options)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_extreme_logits(torch):
    """Logits of +-1e4 (exp overflows without the shift) and a softcap that saturates."""
    x, W, t, b, w = problem(np.float64, scale=3000.0, bias=True)
    check(torch, np.float64, x, W, t, b, softcap=30.0)
    loss = fastnll.linear_cross_entropy(x, W, t, b, reduction="none")
    assert np.isfinite(loss).all()


# ------------------------------------------------------------ cross_entropy's options ----

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS[2:], ids=lambda o: ",".join(o))
@pytest.mark.parametrize("kind", ["index", "probabilities", "(N, C, d)"])
def test_cross_entropy_softcap_z_loss(torch, dtype, reduction, options, kind):
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    if kind == "(N, C, d)":
        x = rng.standard_normal((5, V, 3)).astype(dtype)
        t = rng.integers(0, V, (5, 3))
        t[0, 1] = -100
        axis_last = np.moveaxis(x, 1, -1)
    else:
        x = rng.standard_normal((N, V)).astype(dtype)
        t = (rng.dirichlet(np.ones(V), N).astype(dtype) if kind == "probabilities"
             else rng.integers(0, V, N))
        axis_last = x
    w = rng.uniform(0.5, 2, V).astype(dtype)
    loss, grad = fastnll.cross_entropy(x, t, w, reduction=reduction, return_grad=True,
                                       **options)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    z = xt if kind != "(N, C, d)" else xt.movedim(1, -1)
    z = z.reshape(-1, V)
    if "softcap" in options:
        c = options["softcap"]
        z = c * torch.tanh(z / c)
    tt = torch.tensor(t)
    tt = tt.double().reshape(-1, V) if kind == "probabilities" else tt.reshape(-1)
    ref = F.cross_entropy(z, tt, torch.tensor(w, dtype=torch.float64), reduction=reduction,
                          label_smoothing=options.get("label_smoothing", 0.0))
    lse = torch.logsumexp(z, -1)
    kept = tt != -100 if kind != "probabilities" else torch.ones_like(lse, dtype=torch.bool)
    rows = torch.where(kept, options.get("z_loss", 0.0) * lse.square(), torch.zeros_like(lse))
    ref = {"mean": ref + rows.sum() / kept.sum(), "sum": ref + rows.sum(),
           "none": ref + rows}[reduction]
    ref.sum().backward()
    want = ref.detach().numpy()
    if reduction == "none":
        want = want.reshape(axis_last.shape[:-1])
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype and grad.shape == x.shape
    assert rel_err(loss, want) <= TOL[dtype]
    assert rel_err(grad, xt.grad.numpy()) <= TOL[dtype]


def test_cross_entropy_defaults_unchanged():
    """softcap=None and z_loss=0 are the plain call, bit for bit."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 50)).astype(np.float32)
    t = rng.integers(0, 50, 64)
    for z0 in (0.0, 0):
        got = fastnll.cross_entropy(x, t, return_grad=True, softcap=None, z_loss=z0)
        want = fastnll.cross_entropy(x, t, return_grad=True)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# ---------------------------------------------------------------------------- errors ----

def _good():
    return problem(np.float32, bias=True, weight=True)


@pytest.mark.parametrize("change, error, words", [
    (dict(input=np.float32(1.0)), ValueError, "input must have at least one dimension"),
    (dict(linear_weight=np.zeros(H, np.float32)), ValueError, "linear_weight must be 2-D"),
    (dict(linear_weight=np.zeros((V, H + 1), np.float32)), ValueError,
     "but linear_weight has 7"),
    (dict(linear_weight=np.zeros((V, H))), TypeError,
     "linear_weight must have input's dtype float32, got float64"),
    (dict(input=np.zeros((N, H), np.float16)), TypeError,
     "linear_weight must have input's dtype float16, got float32"),
    (dict(input=np.zeros((N, H), np.int64)), TypeError,
     "input must be float16, bfloat16, float32 or float64, got dtype int64"),
    (dict(input=np.zeros((N, H), complex)), TypeError, "input must be a real numeric array"),
    (dict(linear_bias=np.zeros(V + 1, np.float32)), ValueError, "linear_bias has shape (24,)"),
    (dict(linear_bias=np.zeros(V)), TypeError, "linear_bias must have input's dtype"),
    (dict(target=np.zeros(N + 1, np.int64)), ValueError, "target has shape (38,)"),
    (dict(target=np.zeros((N, V + 1), np.float32)), ValueError,
     "probability targets must have the logits' shape"),
    (dict(target=np.zeros(N, bool)), TypeError, "target must hold integer class indices"),
    (dict(weight=np.ones(V - 1, np.float32)), ValueError, "weight has shape (22,)"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing must be in [0, 1], got 1.5"),
    (dict(softcap=0.0), ValueError, "softcap must be a positive finite number or None, got 0.0"),
    (dict(softcap=-1), ValueError, "softcap must be a positive finite number"),
    (dict(softcap=float("inf")), ValueError, "softcap must be a positive finite number"),
    (dict(softcap="2"), TypeError, "softcap must be a real number, got '2'"),
    (dict(z_loss=-0.1), ValueError, "z_loss must be a finite number >= 0, got -0.1"),
    (dict(z_loss=float("nan")), ValueError, "z_loss must be a finite number >= 0"),
    (dict(ignore_index=1.5), TypeError, "ignore_index must be an integer"),
], ids=lambda v: None)
def test_bad_arguments(change, error, words):
    x, W, t, b, w = _good()
    args = dict(input=x, linear_weight=W, target=t, linear_bias=b, weight=w)
    args.update(change)
    with pytest.raises(error) as info:
        fastnll.linear_cross_entropy(**args, return_grad=True)
    assert words in str(info.value)


def test_probability_targets_refuse_ignore_index():
    x, W, _, b, w = _good()
    p = np.full((N, V), 1.0 / V, np.float32)
    with pytest.raises(ValueError, match="ignore_index=0 is not supported"):
        fastnll.linear_cross_entropy(x, W, p, ignore_index=0)


@pytest.mark.parametrize("bad", [V, -1, 10 ** 6])
def test_out_of_range_target_before_any_block(monkeypatch, bad):
    """An invalid target is reported (IndexError naming it) before any block is computed."""
    x, W, t, b, w = _good()
    t[-1] = bad

    def no_block(*args):
        raise AssertionError("a block ran before the targets were checked")
    monkeypatch.setattr(_linear.BlockLoss, "__call__", no_block)
    with pytest.raises(IndexError, match=f"target {bad} is out of bounds for {V} classes"):
        fastnll.linear_cross_entropy(x, W, t, b, w, return_grad=True)


@pytest.mark.parametrize("change, words", [
    (dict(softcap=0), "softcap must be a positive finite number"),
    (dict(z_loss=-1.0), "z_loss must be a finite number >= 0"),
])
def test_cross_entropy_bad_options(change, words):
    with pytest.raises(ValueError, match=words):
        fastnll.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), **change)


# ---------------------------------------------------------------------------- memory ----

@pytest.mark.parametrize("rows", [4096, 16384])
def test_memory_does_not_grow_with_rows(rows):
    """A call's traced allocations beyond its returned gradients stay within 40 MB, with
    logits that would take 128 MB (and their gradient as much again) at 4096 rows and 512 MB
    at 16384; forming them once would exceed the bound."""
    rng = np.random.default_rng(5)
    Vb, Hb = 8192, 16
    x = rng.standard_normal((rows, Hb), dtype=np.float32)
    W = rng.standard_normal((Vb, Hb), dtype=np.float32)
    b = np.zeros(Vb, np.float32)
    t = rng.integers(0, Vb, rows)
    returned = x.nbytes + W.nbytes + b.nbytes
    peak = traced_peak(lambda: fastnll.linear_cross_entropy(x, W, t, b, return_grad=True))
    assert peak - returned <= 40 * 2 ** 20, peak
    assert traced_peak(lambda: fastnll.linear_cross_entropy(x, W, t, b)) <= 40 * 2 ** 20
    assert rows * Vb * 4 > 40 * 2 ** 20         # the logits would not fit


def test_block_rows():
    """The blocks of linear_cross_entropy's gradient path: never more rows than the budget
    allows; one block where the rows fit it; else about equal blocks, as few as the budget
    allows while it is small, and each a multiple of 16 rows from a budget of 64 rows on
    (the rows of the fewest equal blocks rounded up, or the budget rounded down)."""
    rb = _linear._block_rows
    assert rb(2048, 262) == 256 and rb(8192, 131) == 128 and rb(37, 5) == 5
    assert rb(0, 262) == 1 and rb(5, 0) == 1
    for n in list(range(0, 200)) + [257, 1000, 2047, 2048, 2049, 8191, 100003]:
        for most in (1, 2, 3, 5, 15, 16, 17, 63, 64, 65, 100, 262, 4096):
            rows = rb(n, most)
            fewest = -(-n // most)
            assert 1 <= rows <= max(most, 1), (n, most, rows)
            if n <= most:
                assert rows == max(n, 1)
                continue
            if most < 64:
                assert -(-n // rows) == fewest, (n, most, rows)
            else:
                even = -(-n // fewest)        # the rows of the fewest equal blocks
                assert rows % 16 == 0, (n, most, rows)
                assert min(even, most // 16 * 16) <= rows < even + 16, (n, most, rows)


@pytest.mark.parametrize("layout", ["ignored rows", "F-ordered input"])
def test_evaluation_memory_counts_gathered_rows(layout):
    """An evaluation's blocks of many rows gather them (ignored rows left out, or a strided
    input) within the same bound: 40 MB, where the logits would take 128 MB."""
    rng = np.random.default_rng(6)
    rows, Hb, Vb = 4096, 512, 8192
    x = rng.standard_normal((rows, Hb), dtype=np.float32)
    W = rng.standard_normal((Vb, Hb), dtype=np.float32) / np.float32(np.sqrt(Hb))
    t = rng.integers(0, Vb, rows)
    if layout == "ignored rows":
        t[::5] = -100
    else:
        x = np.asfortranarray(x)
    peak = traced_peak(lambda: fastnll.linear_cross_entropy(x, W, t, reduction="sum"))
    assert peak <= 40 * 2 ** 20, peak
    kept = t != -100
    logits = x[kept].astype(np.float64) @ W.T.astype(np.float64)
    want = (np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
            + logits.max(1) - logits[np.arange(len(logits)), t[kept]]).sum()
    got = fastnll.linear_cross_entropy(x, W, t, reduction="sum")
    assert abs(got - want) <= 1e-5 * abs(want)


# --------------------------------------------------------------------- fastnll.torch ----

@pytest.fixture(params=["numpy", "torch"])
def products(request, monkeypatch, torch):
    """fastnll.torch's block products on either BLAS (_products_default chooses one by the
    CPU and PyTorch's BLAS; FASTNLL_TORCH_PRODUCTS overrides it)."""
    import fastnll.torch as fnt
    monkeypatch.setattr(fnt, "_products", request.param)
    return request.param


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("operands", ["-", "bias", "bias+weight", "probabilities"])
def test_torch_matches_pytorch(torch, blocks, products, dtype, reduction, operands):
    import fastnll.torch as fnt
    F = torch.nn.functional
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(N, H, dtype=dt, generator=g, requires_grad=True)
    W = torch.randn(V, H, dtype=dt, generator=g, requires_grad=True)
    b = (torch.randn(V, dtype=dt, generator=g, requires_grad=True) if "bias" in operands
         else None)
    w = torch.rand(V, dtype=dt, generator=g) + 0.5 if "weight" in operands else None
    if operands == "probabilities":
        y = torch.softmax(torch.randn(N, V, dtype=dt, generator=g), dim=1)
    else:
        y = torch.randint(0, V, (N,), generator=g)
        y[::4] = -100
    kw = dict(linear_bias=b, weight=w, reduction=reduction, label_smoothing=0.1)
    loss = fnt.linear_cross_entropy(x, W, y, **kw)
    assert type(loss.grad_fn).__name__ == "_FastnllLinearBackward"
    ref = F.linear_cross_entropy(x, W, y, **kw)
    go = torch.rand_like(ref) + 0.5          # an incoming gradient of each loss
    params = [x, W] + ([b] if b is not None else [])
    got = torch.autograd.grad(loss, params, go)
    want = torch.autograd.grad(ref, params, go)
    tol = TOL[getattr(np, dtype)]
    assert loss.dtype == ref.dtype and loss.shape == ref.shape
    assert rel_err(loss.detach(), ref.detach()) <= tol
    for a, e in zip(got, want):
        assert rel_err(a, e) <= 2 * tol


def _spy_on_blocks(monkeypatch, index):
    """The list to which every call of _linear.linear_blocks from now on appends its
    positional argument `index`."""
    seen = []
    real = _linear.linear_blocks

    def spy(*args):
        seen.append(args[index])
        return real(*args)
    monkeypatch.setattr(_linear, "linear_blocks", spy)
    return seen


def test_torch_products_run_on_the_chosen_blas(torch, products, monkeypatch):
    """The products fastnll.torch passes to the blocks: PyTorch's matmul where "torch" is
    chosen, NumPy's (the default of linear_blocks) where "numpy" is."""
    import fastnll.torch as fnt
    seen = _spy_on_blocks(monkeypatch, 14)          # products
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    fnt.linear_cross_entropy(x, W, y).backward()
    assert seen == [fnt._TorchProducts if products == "torch" else None]
    want = torch.autograd.grad(torch.nn.functional.linear_cross_entropy(x, W, y), (x, W))
    assert rel_err(x.grad, want[0]) <= 1e-12 and rel_err(W.grad, want[1]) <= 1e-12


@pytest.mark.parametrize("cpu, mkl, chosen", [("intel", True, "torch"), ("amd", True, "numpy"),
                                              ("other", True, "numpy"),
                                              ("intel", False, "numpy")])
def test_torch_products_default(torch, monkeypatch, cpu, mkl, chosen):
    """PyTorch's BLAS for the products only where it is MKL on an Intel CPU."""
    import fastnll.torch as fnt
    monkeypatch.delenv(fnt.PRODUCTS_VAR, raising=False)
    monkeypatch.setattr(fnt._cpu, "vendor", lambda: cpu)
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    assert fnt._products_default() == chosen


@pytest.mark.parametrize("value, chosen", [("numpy", "numpy"), (" torch ", "torch"),
                                           ("cuBLAS", None), ("1", None)])
def test_torch_products_override(torch, tmp_path, value, chosen):
    """FASTNLL_TORCH_PRODUCTS=torch or numpy decides at import; another value is an
    ImportError that names it."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, FASTNLL_TORCH_PRODUCTS=value,
               PYTHONPATH=os.path.dirname(os.path.dirname(fastnll.__file__)))
    proc = subprocess.run([sys.executable, "-c", "import fastnll.torch as f; print(f._products)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if chosen is None:
        assert proc.returncode != 0
        assert f"FASTNLL_TORCH_PRODUCTS={value!r}" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [chosen]


def test_torch_gradcheck(torch):
    import fastnll.torch as fnt
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(9, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(9, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([0, 8, -100, 3, 3, 5])
    for reduction in ("mean", "sum", "none"):
        def fn(x, W, b, reduction=reduction):
            return fnt.linear_cross_entropy(x, W, y, linear_bias=b, reduction=reduction,
                                            label_smoothing=0.1, softcap=2.0, z_loss=0.1)
        assert torch.autograd.gradcheck(fn, (x, W, b))


def test_torch_frozen_operands_and_retained_graph(torch):
    """Only the operands that need a gradient get one; a retained graph's second backward
    gives the same gradients; no_grad returns a plain tensor."""
    import fastnll.torch as fnt
    F = torch.nn.functional
    g = torch.Generator().manual_seed(8)
    x = torch.randn(N, H, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(V, H, dtype=torch.float64, generator=g)          # frozen head
    y = torch.randint(0, V, (N,), generator=g)
    loss = fnt.linear_cross_entropy(x, W, y, z_loss=0.01)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad = None
    loss.backward()
    torch.testing.assert_close(x.grad, first, rtol=0, atol=0)
    ref_x = x.detach().requires_grad_()
    z = F.linear(ref_x, W)
    (F.cross_entropy(z, y) + 0.01 * torch.logsumexp(z, -1).square().mean()).backward()
    torch.testing.assert_close(x.grad, ref_x.grad)
    assert W.grad is None
    with torch.no_grad():
        out = fnt.linear_cross_entropy(x, W, y)
    assert out.grad_fn is None and out.dtype == torch.float64


def test_torch_fallbacks(torch):
    """What fastnll does not take goes to PyTorch: bfloat16, mixed dtypes, 3-D input
    (PyTorch's error); options is accepted; softcap and z_loss are composed there."""
    import fastnll.torch as fnt
    F = torch.nn.functional
    g = torch.Generator().manual_seed(9)
    x = torch.randn(N, H, generator=g)
    W = torch.randn(V, H, generator=g)
    y = torch.randint(0, V, (N,), generator=g)
    opts = torch.nn.LinearCrossEntropyOptions()
    torch.testing.assert_close(fnt.linear_cross_entropy(x, W, y, options=opts),
                               F.linear_cross_entropy(x, W, y))
    xb, Wb = x.bfloat16(), W.bfloat16()
    torch.testing.assert_close(fnt.linear_cross_entropy(xb, Wb, y),
                               F.linear_cross_entropy(xb, Wb, y))
    capped = fnt.linear_cross_entropy(xb, Wb, y, softcap=3.0, z_loss=0.01)
    z = F.linear(xb, Wb)
    z = 3.0 * torch.tanh(z / 3.0)
    want = F.cross_entropy(z, y) + 0.01 * torch.logsumexp(z, -1).square().mean()
    torch.testing.assert_close(capped, want)
    with pytest.raises(RuntimeError):
        fnt.linear_cross_entropy(x.reshape(1, N, H), W, y.reshape(1, N))
    with pytest.raises(RuntimeError):
        F.linear_cross_entropy(x.reshape(1, N, H), W, y.reshape(1, N))


@pytest.mark.parametrize("x_shape, W_shape, target", [
    ((3, 0), (4, 0), [0, 1, 2]),               # no features: every logit is the bias (0)
    ((0,), (4, 0), 2),                         # 1-D, no features
    ((3, 2), (0, 2), [-100, -100, -100]),      # no classes, every target ignored
    ((0, 2), (5, 2), []),                      # no rows
])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_dimensions(x_shape, W_shape, target, reduction):
    """Zero features, classes or rows: cross_entropy's values on the formed logits, and
    zero-sized or zero gradients."""
    x = np.ones(x_shape)
    W = np.ones(W_shape)
    t = np.array(target, dtype=np.int64)
    loss, g = fastnll.linear_cross_entropy(x, W, t, reduction=reduction, return_grad=True)
    want = fastnll.cross_entropy(x @ W.T, t, reduction=reduction, axis=-1)
    np.testing.assert_array_equal(loss, want)
    assert g.input.shape == x.shape and g.linear_weight.shape == W.shape
    assert not g.input.any() and not g.linear_weight.any()


def test_torch_in_place_modification_raises(torch):
    """An operand (or the target) changed in place between forward and backward raises
    PyTorch's error, as autograd's own functions do, rather than giving a wrong gradient."""
    import fastnll.torch as fnt
    for reduction in ("mean", "none"):
        for victim in ("W", "t"):
            x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
            W = torch.randn(5, 3, dtype=torch.float64)
            t = torch.tensor([0, 1, 2, 3])
            loss = fnt.linear_cross_entropy(x, W, t, reduction=reduction)
            (W.mul_(2) if victim == "W" else t.fill_(4))
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.sum().backward()


def test_torch_double_backward_raises(torch):
    """A gradient penalty would need second derivatives: differentiating fastnll's gradient
    raises instead of silently leaving them out."""
    import fastnll.torch as fnt
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3])
    loss = fnt.linear_cross_entropy(x, W, t)
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(loss + gx.pow(2).sum(), W)


def test_torch_refuses_what_pytorch_refuses(torch):
    """An explicit ignore_index with probability targets, and a 3-D input (also with softcap
    or z_loss, which PyTorch's function does not have), raise as PyTorch does."""
    import fastnll.torch as fnt
    F = torch.nn.functional
    x = torch.randn(4, 3, dtype=torch.float64)
    W = torch.randn(5, 3, dtype=torch.float64)
    p = torch.softmax(torch.randn(4, 5, dtype=torch.float64), 1)
    for fn in (F.linear_cross_entropy, fnt.linear_cross_entropy):
        with pytest.raises(RuntimeError, match="ignore_index"):
            fn(x, W, p, ignore_index=-100)
    x3 = torch.randn(2, 5, 3, dtype=torch.float64)
    t3 = torch.randint(0, 5, (2, 5))
    for kw in ({}, {"softcap": 5.0}, {"z_loss": 0.1}):
        with pytest.raises(RuntimeError, match="dimensionality 1 or 2"):
            fnt.linear_cross_entropy(x3, W, t3, **kw)


def test_torch_none_reduction_computes_gradients_once(torch, monkeypatch):
    """With reduction="none" the forward pass computes the losses alone; the backward pass
    computes the gradients (with each row's incoming gradient) once."""
    import fastnll.torch as fnt
    calls = _spy_on_blocks(monkeypatch, 11)         # return_grad
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    loss = fnt.linear_cross_entropy(x, W, torch.tensor([0, 1, 2, 3]), reduction="none")
    loss.sum().backward()
    assert calls == [False, True]


def test_without_numpys_blas_gemm(torch, monkeypatch):
    """Where NumPy's BLAS cannot be reached for C += A @ B, grad_linear_weight is summed
    through a product into a buffer and an addition: the same gradients."""
    x, W, t, b, w = problem(np.float32, ignored=0.3, bias=True, weight=True)
    monkeypatch.setattr(_linear, "_BLOCK_BYTES", 5 * V * 4)
    monkeypatch.setattr(_linear, "_L2_BYTES", 4 * 2 * H * 4)
    with_gemm = fastnll.linear_cross_entropy(x, W, t, b, w, return_grad=True)
    monkeypatch.setattr(_linear._blas, "add_product", lambda dtype: None)
    check(torch, np.float32, x, W, t, b, w, label_smoothing=0.1)
    without = fastnll.linear_cross_entropy(x, W, t, b, w, return_grad=True)
    np.testing.assert_array_equal(without[0], with_gemm[0])
    np.testing.assert_allclose(without[1].linear_weight, with_gemm[1].linear_weight,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [3, 5])
def test_products_in_pieces(torch, blocks, dtype, count, monkeypatch):
    """Where the logits take several blocks, every product split into `count` pieces (as on
    a BLAS of that many threads, with pieces of at least 2 rows or columns; grad_input over
    the vocabulary up to _MAX_TERMS pieces, else over W's columns): the same values.  One
    block: one piece (the compiled call's products)."""
    import contextlib
    calls = []
    in_pieces = _linear._blas.in_pieces

    def spy(fn, n, count):
        calls.append((n, count))
        in_pieces(fn, n, count)
    monkeypatch.setattr(_linear._blas, "_ALIGN", 2)
    monkeypatch.setattr(_linear._blas, "in_pieces", spy)
    monkeypatch.setattr(_linear._blas, "one_thread", lambda: contextlib.nullcontext(count))
    x, W, t, b, w = problem(dtype, ignored=0.3, bias=True, weight=True)
    for options in OPTIONS[:3]:
        calls.clear()
        check(torch, dtype, x, W, t, b, w, reduction="sum", **options)
        pieces = 1 if blocks == "one block" else count
        # the logits and grad_linear_weight over slices of the vocabulary, grad_input too or
        # over W's columns (and the evaluation's logits over its slices' own)
        assert {c for _, c in calls} == {pieces}
        if pieces <= _linear._MAX_TERMS:
            assert calls.count((V, pieces)) >= 3
        else:
            assert calls.count((V, pieces)) >= 2 and (H, pieces) in calls


def test_blas_thread_count_restored(monkeypatch):
    """Where the logits take several blocks, linear_cross_entropy sets NumPy's BLAS to one
    thread for its products and back, also when a product fails."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastnll import _blas
    if _blas._thread_count_api() is None:
        pytest.skip("NumPy's BLAS is not reachable here (the products run unsplit)")

    def count():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["filepath"] in _blas._loaded_libraries()]
    seen = []
    grad_input = _linear.NumpyProducts.grad_input

    def spy(self, g, W, out):
        seen.append(count())
        grad_input(self, g, W, out)
    monkeypatch.setattr(_linear.NumpyProducts, "grad_input", spy)
    monkeypatch.setattr(_linear, "_BLOCK_BYTES", 5 * V * 4)
    x, W, t, b, w = problem(np.float32)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert count() == [2]
        fastnll.linear_cross_entropy(x, W, t, return_grad=True)
        assert count() == [2] and seen and all(c == [1] for c in seen)

        def fails(self, g, W, out):
            raise RuntimeError("product")
        monkeypatch.setattr(_linear.NumpyProducts, "grad_input", fails)
        with pytest.raises(RuntimeError, match="product"):
            fastnll.linear_cross_entropy(x, W, t, return_grad=True)
        assert count() == [2]
