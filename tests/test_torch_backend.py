"""fastnll.torch: autograd losses on CPU tensors against torch.nn.functional, and fallbacks."""
# Values, gradients, gradcheck, a training run, and every fallback to PyTorch.
import doctest
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastnll  # noqa: E402
import fastnll.torch as fnt  # noqa: E402
from fastnll import _class_losses, _elementwise  # noqa: E402

F = torch.nn.functional

DTYPES = (torch.float32, torch.float64)
SHAPES = ((5,), (6, 5), (3, 4, 2, 3))      # 1-D, (N, C), (N, C, d1, d2)
REDUCTIONS = ("mean", "sum", "none")


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10,
                                                                          atol=1e-12)


def class_axis(ndim):
    return 1 if ndim >= 2 else 0


def logits(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def class_target(shape, seed=1, ignore_index=None):
    g = torch.Generator().manual_seed(seed)
    ax = class_axis(len(shape))
    C = shape[ax]
    tshape = shape[:ax] + shape[ax + 1:]
    t = torch.randint(0, C, tshape, generator=g)
    if ignore_index is not None and t.numel() > 1:
        t.view(-1)[::3] = ignore_index
    return t


def prob_target(shape, dtype, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    return torch.softmax(x, dim=class_axis(len(shape))).to(dtype)


def compare(ours, theirs, x, args, kwargs, *, scale=1.0, grad_seed=3):
    """Run both losses on copies of x, backpropagate the same incoming gradient (ones times
    `scale` for a scalar, random for reduction="none"), compare values and gradients."""
    a = x.detach().clone().requires_grad_(True)
    b = x.detach().clone().requires_grad_(True)
    la = ours(a, *args, **kwargs)
    lb = theirs(b, *args, **kwargs)
    assert la.dtype == lb.dtype and la.shape == lb.shape
    assert la.grad_fn is not None
    torch.testing.assert_close(la, lb, **tol(x.dtype), equal_nan=True)
    if lb.dim() == 0:
        go = torch.tensor(scale, dtype=lb.dtype)
    else:
        go = torch.randn(lb.shape, generator=torch.Generator().manual_seed(grad_seed),
                         dtype=lb.dtype)
    la.backward(go)
    lb.backward(go)
    torch.testing.assert_close(a.grad, b.grad, **tol(x.dtype), equal_nan=True)
    return la, a.grad


# --------------------------------------------------------------------------- import ----

def test_importing_fastnll_does_not_import_torch(tmp_path):
    root = os.path.dirname(os.path.dirname(fastnll.__file__))
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run(
        [sys.executable, "-c",
         "import fastnll, sys; print(fastnll.__file__); print('torch' in sys.modules)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    path, flag = out.stdout.split()
    assert os.path.dirname(path) == os.path.dirname(fastnll.__file__)
    assert flag == "False"
    assert "torch" not in fastnll.__all__


def test_signatures_match_torch():
    """PyTorch's parameters, in order, with its defaults; fastnll's extensions (keyword-only,
    after them) are listed here."""
    import inspect
    extensions = {"linear_cross_entropy": ["softcap", "z_loss"]}
    for name in fnt.__all__:
        ours = inspect.signature(getattr(fnt, name))
        theirs = inspect.signature(getattr(F, name))
        assert list(ours.parameters) == list(theirs.parameters) + extensions.get(name, [])
        for extra in extensions.get(name, []):
            assert ours.parameters[extra].kind is inspect.Parameter.KEYWORD_ONLY
        for p in theirs.parameters.values():
            assert ours.parameters[p.name].default == p.default, (name, p.name)


def test_docstring_examples():
    result = doctest.testmod(fnt, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0


# ------------------------------------------------------------- values and gradients ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_targets(dtype, shape, reduction, weighted, smoothing):
    x = logits(shape, dtype)
    C = shape[class_axis(len(shape))]
    t = class_target(shape, ignore_index=-100)
    w = torch.linspace(0.5, 2.0, C, dtype=dtype) if weighted else None
    compare(fnt.cross_entropy, F.cross_entropy, x, (t,),
            dict(weight=w, reduction=reduction, label_smoothing=smoothing), scale=2.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets(dtype, shape, reduction, weighted, smoothing):
    x = logits(shape, dtype)
    C = shape[class_axis(len(shape))]
    w = torch.linspace(0.5, 2.0, C, dtype=dtype) if weighted else None
    compare(fnt.cross_entropy, F.cross_entropy, x, (prob_target(shape, dtype),),
            dict(weight=w, reduction=reduction, label_smoothing=smoothing))


def test_cross_entropy_ignore_index_and_uint8_targets():
    x = logits((8, 4), torch.float64)
    t = torch.tensor([0, 3, 1, 1, 2, 3, 0, 2])
    compare(fnt.cross_entropy, F.cross_entropy, x, (t,), dict(ignore_index=1))
    compare(fnt.cross_entropy, F.cross_entropy, x, (t,), dict(ignore_index=1,
                                                             reduction="none"))
    compare(fnt.cross_entropy, F.cross_entropy, x, (t.to(torch.uint8),), {})
    # every target ignored: nan loss, zero gradient, as in PyTorch
    loss, grad = compare(fnt.cross_entropy, F.cross_entropy, x, (torch.full((8,), -100),), {})
    assert torch.isnan(loss) and not grad.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(dtype, shape, reduction, weighted):
    x = torch.log_softmax(logits(shape, torch.float64), dim=class_axis(len(shape))).to(dtype)
    C = shape[class_axis(len(shape))]
    w = torch.linspace(0.5, 2.0, C, dtype=dtype) if weighted else None
    compare(fnt.nll_loss, F.nll_loss, x, (class_target(shape, ignore_index=-1),),
            dict(weight=w, reduction=reduction, ignore_index=-1), scale=0.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (6, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "weight", "pos_weight", "both"])
def test_binary_cross_entropy_with_logits(dtype, shape, reduction, weights):
    x = logits(shape, dtype)
    g = torch.Generator().manual_seed(4)
    y = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    kw = dict(reduction=reduction)
    if weights in ("weight", "both"):
        kw["weight"] = torch.rand(shape[-1:], generator=g, dtype=torch.float64).to(dtype) + .5
    if weights in ("pos_weight", "both"):
        kw["pos_weight"] = torch.linspace(0.5, 3.0, shape[-1], dtype=dtype)
    compare(fnt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, x,
            (y,), kw, scale=-1.5)


def test_large_logits_do_not_overflow():
    x = torch.tensor([[1e30, -1e30, 0.0], [-1e30, 1e30, 3.0]], dtype=torch.float64)
    compare(fnt.cross_entropy, F.cross_entropy, x, (torch.tensor([1, 1]),), {})
    compare(fnt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, x,
            (torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]], dtype=torch.float64),), {})


def test_empty_batch():
    x = torch.zeros((0, 4), dtype=torch.float64)
    t = torch.zeros(0, dtype=torch.long)
    for reduction in REDUCTIONS:
        compare(fnt.cross_entropy, F.cross_entropy, x, (t,), dict(reduction=reduction))


# ------------------------------------------------------------------------- layouts ----

def noncontiguous(x, how):
    """The same values as x, stored transposed, sliced, or with permuted dims."""
    if how == "transposed":           # stored (C, N), viewed (N, C)
        return x.t().contiguous().t()
    if how == "sliced":               # every other element of a wider tensor
        wide = torch.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if how == "permuted":             # 4-D, class dim stored last (channels_last)
        return x.contiguous(memory_format=torch.channels_last)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["transposed", "sliced", "permuted"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_inputs(how, dtype):
    shape = (3, 4, 2, 5) if how == "permuted" else (6, 5)
    base = logits(shape, dtype)
    x = noncontiguous(base, how)
    assert not x.is_contiguous() and torch.equal(x, base)
    t = class_target(shape)
    y = torch.rand(shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    for reduction in REDUCTIONS:
        for ours, theirs, target in (
                (fnt.cross_entropy, F.cross_entropy, t),
                (fnt.nll_loss, F.nll_loss, t),
                (fnt.binary_cross_entropy_with_logits,
                 F.binary_cross_entropy_with_logits, y)):
            a = x.detach().requires_grad_(True)       # a view: same strides as x
            b = base.detach().clone().requires_grad_(True)
            la = ours(a, target, reduction=reduction)
            lb = theirs(b, target, reduction=reduction)
            torch.testing.assert_close(la, lb, **tol(dtype))
            la.sum().backward()
            lb.sum().backward()
            torch.testing.assert_close(a.grad, b.grad, **tol(dtype))
            assert torch.equal(x, base)


def test_inputs_are_not_modified():
    x = logits((5, 4), torch.float64).requires_grad_(True)
    t = class_target((5, 4))
    p = prob_target((5, 4), torch.float64)
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    saved = [v.detach().clone() for v in (x, t, p, w)]
    for loss in (fnt.cross_entropy(x, t, w, label_smoothing=0.1),
                 fnt.cross_entropy(x, p, w, reduction="none"),
                 fnt.nll_loss(x, t, w, reduction="sum"),
                 fnt.binary_cross_entropy_with_logits(x, p, w, pos_weight=w)):
        loss.sum().backward()
    for v, s in zip((x, t, p, w), saved):
        assert torch.equal(v.detach(), s)


def test_zero_copy(monkeypatch):
    """fastnll receives views of the tensors' memory, and its results become the tensors
    returned, without copies."""
    seen = {}
    real_ce = _class_losses.cross_entropy
    real_bce = _elementwise.binary_cross_entropy_with_logits

    def spy(real, key):
        def wrapped(x, t, *args):
            out = real(x, t, *args)
            seen[key] = (x, t, out)
            return out
        return wrapped
    monkeypatch.setattr(_class_losses, "cross_entropy", spy(real_ce, "ce"))
    monkeypatch.setattr(_elementwise, "binary_cross_entropy_with_logits", spy(real_bce, "bce"))

    x = noncontiguous(logits((6, 5), torch.float32), "transposed").requires_grad_(True)
    t = class_target((6, 5))
    loss = fnt.cross_entropy(x, t, reduction="none")
    xa, ta, (rows, grad) = seen["ce"]
    assert isinstance(xa, np.ndarray) and np.shares_memory(xa, x.detach().numpy())
    assert xa.strides == x.detach().numpy().strides
    assert np.shares_memory(ta, t.numpy())
    assert np.shares_memory(loss.detach().numpy(), rows)
    loss.backward(torch.ones_like(loss))
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-6)

    y = torch.rand(6, 5)
    with torch.no_grad():
        out = fnt.binary_cross_entropy_with_logits(x, y, reduction="none")
    xa, ya, res = seen["bce"]
    assert np.shares_memory(xa, x.detach().numpy()) and np.shares_memory(ya, y.numpy())
    assert out.grad_fn is None and np.shares_memory(out.numpy(), res)


def test_scalar_backward_hands_its_buffer_to_autograd(monkeypatch):
    """After loss.backward() the leaf's .grad is fastnll's gradient array itself."""
    seen = {}
    real = _class_losses.cross_entropy

    def spy(*args):
        out = real(*args)
        seen["grad"] = out[1]
        return out
    monkeypatch.setattr(_class_losses, "cross_entropy", spy)
    x = logits((6, 5), torch.float32).requires_grad_(True)
    fnt.cross_entropy(x, class_target((6, 5))).backward()
    assert np.shares_memory(x.grad.numpy(), seen["grad"])


# ---------------------------------------------------------------- autograd details ----

def test_no_grad_paths_return_plain_tensors():
    x = logits((4, 3), torch.float64)
    t = class_target((4, 3))
    out = fnt.cross_entropy(x, t)
    assert out.grad_fn is None and not out.requires_grad and out.dtype == torch.float64
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        out = fnt.cross_entropy(xg, t)
    assert out.grad_fn is None
    torch.testing.assert_close(out, F.cross_entropy(x, t), rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", ["ce", "ce-none-4d", "ce-prob-smooth", "ce-weight-ignore",
                                  "nll", "nll-none", "bce", "bce-none-pos"])
def test_gradcheck(case):
    g = torch.Generator().manual_seed(7)

    def x_of(shape):
        return torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    if case.startswith("ce"):
        shape = (2, 3, 2, 2) if "4d" in case else (4, 3)
        x = x_of(shape)
        if "prob" in case:
            target = prob_target(shape, torch.float64)
        else:
            target = class_target(shape, ignore_index=-100 if "ignore" in case else None)
        kw = dict(reduction="none" if "none" in case else "mean")
        if "smooth" in case:
            kw["label_smoothing"] = 0.25
        if "weight" in case:
            kw["weight"] = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)

        def fn(v):
            return fnt.cross_entropy(v, target, **kw)
    elif case.startswith("nll"):
        x = x_of((5, 4))
        target = class_target((5, 4))
        red = "none" if "none" in case else "sum"

        def fn(v):
            return fnt.nll_loss(v, target, reduction=red,
                                weight=torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=torch.float64))
    else:
        x = x_of((3, 4))
        y = torch.rand((3, 4), generator=g, dtype=torch.float64)
        kw = dict(reduction="none" if "none" in case else "mean")
        if "pos" in case:
            kw["pos_weight"] = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)

        def fn(v):
            return fnt.binary_cross_entropy_with_logits(v, y, **kw)
    assert fn(x).grad_fn is not None and "Fastnll" in type(fn(x).grad_fn).__name__
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_retain_graph_second_backward():
    x = logits((5, 4), torch.float64).requires_grad_(True)
    t = class_target((5, 4))
    loss = fnt.cross_entropy(x, t, label_smoothing=0.1) * 3.0
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first, rtol=1e-12, atol=0)
    ref = x.detach().clone().requires_grad_(True)
    (F.cross_entropy(ref, t, label_smoothing=0.1) * 3.0).backward()
    torch.testing.assert_close(first, ref.grad, rtol=1e-10, atol=1e-12)


def test_second_backward_sees_in_place_changes():
    x = logits((5, 4), torch.float64)
    leaf = x.clone().requires_grad_(True)
    h = leaf * 1.0
    loss = fnt.cross_entropy(h, class_target((5, 4)))
    loss.backward(retain_graph=True)
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_double_backward_raises():
    x = logits((4, 3), torch.float64).requires_grad_(True)
    loss = fnt.cross_entropy(x, class_target((4, 3)))
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_through_a_model_matches_torch():
    """Gradients of the parameters of a model (non-leaf logits), 3-D input."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(4, 6, 3, dtype=torch.float64)
    x = torch.randn(2, 4, 9, dtype=torch.float64)
    t = torch.randint(0, 6, (2, 7))
    grads = []
    for loss_fn in (fnt.cross_entropy, F.cross_entropy):
        conv.zero_grad()
        loss_fn(conv(x), t, label_smoothing=0.1).backward()
        grads.append([p.grad.clone() for p in conv.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_follows_torch_loss_curve(dtype):
    """A linear classifier, 50 SGD steps, trained with either loss: the same curve."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 10, generator=g, dtype=dtype)
    y = (X @ torch.randn(10, 4, generator=g, dtype=dtype)).argmax(dim=1)   # learnable
    curves = []
    for loss_fn in (fnt.cross_entropy, F.cross_entropy):
        torch.manual_seed(1)
        model = torch.nn.Linear(10, 4, dtype=dtype)
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        curve = []
        for _ in range(50):
            opt.zero_grad()
            loss = loss_fn(model(X), y, label_smoothing=0.05)
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(np.array(curve))
    ours, theirs = curves
    assert theirs[-1] < 0.6 * theirs[0]            # it learned something
    rtol = 1e-4 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(ours, theirs, rtol=rtol)


# ----------------------------------------------------------------------- fallbacks ----

def _has_ml_dtypes():
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_falls_back_to_torch(dtype):
    """16-bit inputs run through the kernels for the class losses with class-index targets
    and for binary_cross_entropy_with_logits (tests/test_half.py) and go to PyTorch
    elsewhere: small calls, and the losses that would compute them as float32."""
    x = logits((6, 5), dtype)
    t = class_target((6, 5))
    assert not fnt._fastnll_can_run(x, (), t)
    assert fnt._fastnll_can_run(logits((200, 100), dtype), (), class_target((200, 100)),
                                half=True) == (dtype == torch.float16 or _has_ml_dtypes())
    for ours, theirs, target in ((fnt.cross_entropy, F.cross_entropy,
                                  torch.rand(6, 5).to(dtype)),):
        a = x.clone().requires_grad_(True)
        b = x.clone().requires_grad_(True)
        la, lb = ours(a, target), theirs(b, target)
        assert la.dtype == dtype and torch.equal(la, lb)
        assert "Fastnll" not in type(la.grad_fn).__name__
        la.backward()
        lb.backward()
        assert torch.equal(a.grad, b.grad)


def test_meta_device_falls_back_to_torch():
    x = torch.empty((6, 5), device="meta", requires_grad=True)
    t = torch.empty(6, dtype=torch.long, device="meta")
    assert not fnt._fastnll_can_run(x, (), t)
    assert not fnt._fastnll_can_run(logits((6, 5), torch.float32), (), t)   # target on meta
    out = fnt.cross_entropy(x, t)
    assert out.device.type == "meta" and out.shape == ()
    assert fnt.nll_loss(x, t, reduction="none").shape == (6,)
    out = fnt.binary_cross_entropy_with_logits(x, torch.empty((6, 5), device="meta"))
    assert out.device.type == "meta"


def test_dispatch_predicate():
    x = logits((6, 5), torch.float32)
    t = class_target((6, 5))
    p = prob_target((6, 5), torch.float32)
    assert fnt._fastnll_can_run(x, (), t)
    assert fnt._fastnll_can_run(x, (p, None))
    assert fnt._fastnll_can_run(x, (), t.to(torch.uint8))
    assert not fnt._fastnll_can_run(x, (), t.to(torch.int32))     # PyTorch refuses it
    assert not fnt._fastnll_can_run(x, (p.double(),))              # PyTorch promotes
    assert not fnt._fastnll_can_run(x.to(torch.int64), (), t)
    assert not fnt._fastnll_can_run(x.numpy(), (), t)               # not a tensor
    assert not fnt._fastnll_can_run(x, (), t.numpy())
    assert not fnt._fastnll_can_run(x.to_sparse(), (), t)
    pg = p.clone().requires_grad_(True)
    assert not fnt._fastnll_can_run(x, (pg,))                       # needs a gradient
    with torch.no_grad():
        assert fnt._fastnll_can_run(x, (pg,))                       # ... unless grad is off

    class Sub(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return super().__torch_function__(func, types, args, kwargs or {})
    assert not fnt._fastnll_can_run(x.as_subclass(Sub), (), t)
    assert fnt._fastnll_can_run(torch.nn.Parameter(x), (), t)


def test_mixed_dtypes_follow_torch():
    x = logits((4, 3), torch.float32)
    p = prob_target((4, 3), torch.float64)
    torch.testing.assert_close(fnt.cross_entropy(x, p), F.cross_entropy(x, p))
    assert fnt.cross_entropy(x, p).dtype == F.cross_entropy(x, p).dtype
    w = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        F.cross_entropy(x, class_target((4, 3)), weight=w)
    with pytest.raises(RuntimeError):
        fnt.cross_entropy(x, class_target((4, 3)), weight=w)
    with pytest.raises(RuntimeError, match="Long or Byte"):
        fnt.cross_entropy(x, class_target((4, 3)).to(torch.int32))


def test_gradients_for_target_and_weight_come_from_torch():
    x = logits((4, 3), torch.float64)
    for make in (lambda: prob_target((4, 3), torch.float64),):
        results = []
        for fn in (fnt.cross_entropy, F.cross_entropy):
            a = x.clone().requires_grad_(True)
            p = make().requires_grad_(True)
            w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
            fn(a, p, w, label_smoothing=0.1).backward()
            results.append((a.grad, p.grad, w.grad))
        for u, v in zip(*results):
            assert u is not None
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-14)
    results = []
    for fn in (fnt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
        a = x.clone().requires_grad_(True)
        y = torch.linspace(0, 1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_(True)
        w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)   # PyTorch: not differentiable
        fn(a, y, w, pos_weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).backward()
        results.append((a.grad, y.grad))
    for u, v in zip(*results):
        assert u is not None
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-14)


def test_arguments_fastnll_refuses_go_to_torch():
    x = logits((4, 3), torch.float64)
    t = class_target((4, 3))
    neg = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(fnt.cross_entropy(x, t, neg), F.cross_entropy(x, t, neg))
    torch.testing.assert_close(fnt.nll_loss(x, t, neg, reduction="sum"),
                               F.nll_loss(x, t, neg, reduction="sum"))
    torch.testing.assert_close(fnt.cross_entropy(x, t, label_smoothing=-0.1),
                               F.cross_entropy(x, t, label_smoothing=-0.1))
    y = torch.rand(4, 3, dtype=torch.float64)
    torch.testing.assert_close(fnt.binary_cross_entropy_with_logits(x, y, pos_weight=neg),
                               F.binary_cross_entropy_with_logits(x, y, pos_weight=neg))
    # and PyTorch's own errors
    with pytest.raises(IndexError, match="out of bounds"):
        fnt.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        fnt.cross_entropy(x.requires_grad_(True), t, reduction="avg")
    with pytest.raises(ValueError):
        fnt.binary_cross_entropy_with_logits(x, y[:2])
    with pytest.raises(RuntimeError, match="label_smoothing"):
        fnt.cross_entropy(x, t, label_smoothing=1.5)


def test_legacy_size_average_and_reduce_go_to_torch():
    x = logits((4, 3), torch.float64)
    t = class_target((4, 3))
    for kw in (dict(size_average=False), dict(reduce=False),
               dict(size_average=True, reduce=True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = fnt.cross_entropy(x, t, **kw)
        assert any("deprecated" in str(w.message) for w in caught)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.testing.assert_close(ours, F.cross_entropy(x, t, **kw))
            torch.testing.assert_close(fnt.nll_loss(x, t, **kw), F.nll_loss(x, t, **kw))
            y = torch.rand(4, 3, dtype=torch.float64)
            torch.testing.assert_close(fnt.binary_cross_entropy_with_logits(x, y, **kw),
                                       F.binary_cross_entropy_with_logits(x, y, **kw))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torch_func_transforms_fall_back():
    x = logits((4, 3), torch.float64)
    t = class_target((4, 3))
    ours = torch.func.grad(lambda v: fnt.cross_entropy(v, t, label_smoothing=0.1))(x)
    theirs = torch.func.grad(lambda v: F.cross_entropy(v, t, label_smoothing=0.1))(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    batched = torch.func.vmap(lambda v, u: fnt.cross_entropy(v, u))(x[None].expand(2, 4, 3),
                                                                      t[None].expand(2, 4))
    torch.testing.assert_close(batched, F.cross_entropy(x, t).expand(2))
    # forward-mode AD
    tangent = torch.ones_like(x)
    _, jv = torch.func.jvp(lambda v: fnt.cross_entropy(v, t), (x,), (tangent,))
    _, jv_ref = torch.func.jvp(lambda v: F.cross_entropy(v, t), (x,), (tangent,))
    torch.testing.assert_close(jv, jv_ref)


def test_torch_compile_falls_back():
    x = logits((4, 3), torch.float32)
    t = class_target((4, 3))

    @torch.compile(backend="eager", fullgraph=True)
    def f(v):
        return fnt.cross_entropy(v, t, label_smoothing=0.1)
    torch.testing.assert_close(f(x), F.cross_entropy(x, t, label_smoothing=0.1))


def test_forward_mode_ad_falls_back():
    import torch.autograd.forward_ad as fwAD
    x = logits((4, 3), torch.float64)
    t = class_target((4, 3))
    tangent = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    jvps = []
    for fn in (fnt.cross_entropy, F.cross_entropy):
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(x, tangent), t, reduction="none")
            jvps.append(fwAD.unpack_dual(out).tangent)
    torch.testing.assert_close(jvps[0], jvps[1])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_jit_trace_records_torch_ops():
    x = logits((4, 3), torch.float32)
    t = class_target((4, 3))
    traced = torch.jit.trace(lambda v: fnt.cross_entropy(v, t, label_smoothing=0.1), (x,))
    x2 = logits((4, 3), torch.float32, seed=9)
    torch.testing.assert_close(traced(x2), F.cross_entropy(x2, t, label_smoothing=0.1))


def test_probability_targets_with_ignore_index_as_pytorch(rng):
    # PyTorch refuses a non-negative ignore_index with float (probability) targets and accepts
    # a negative one; fastnll.torch behaves exactly so, and fastnll raises ValueError
    F = torch.nn.functional
    x = torch.tensor(rng.standard_normal((5, 4)))
    p = torch.softmax(torch.tensor(rng.standard_normal((5, 4))), 1)
    for ii in (0, 2, 4):
        with pytest.raises(RuntimeError) as want:
            F.cross_entropy(x, p, ignore_index=ii)
        with pytest.raises(RuntimeError) as got:
            fnt.cross_entropy(x, p, ignore_index=ii)
        assert str(got.value) == str(want.value)
        with pytest.raises(ValueError, match=rf"ignore_index={ii}\b"):
            fastnll.cross_entropy(x.numpy(), p.numpy(), ignore_index=ii)
    for ii in (-1, -100):
        want = F.cross_entropy(x, p, ignore_index=ii)
        got = fnt.cross_entropy(x, p, ignore_index=ii)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
        np.testing.assert_allclose(fastnll.cross_entropy(x.numpy(), p.numpy(), ignore_index=ii),
                                   want.numpy(), rtol=1e-12)


@pytest.mark.small_goes_to_torch
def test_small_inputs_go_to_pytorchs_own_functions(monkeypatch):
    """Below MIN_ELEMENTS elements (of the logits, for linear_cross_entropy) the call is
    PyTorch's own, bit for bit; from MIN_ELEMENTS on, fastnll's kernels run."""
    calls = []
    for module, name in ((_class_losses, "cross_entropy"), (_class_losses, "nll_loss"),
                         (_elementwise, "binary_cross_entropy_with_logits")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    n_small = fnt.MIN_ELEMENTS // 10 - 1
    for N, expect in ((n_small, False), (fnt.MIN_ELEMENTS // 10 + 1, True)):
        calls.clear()
        x = logits((N, 10), torch.float32).requires_grad_(True)
        ref = x.detach().clone().requires_grad_(True)
        t = class_target((N, 10))
        y = torch.rand(N, 10)
        for ours, theirs in ((fnt.cross_entropy, F.cross_entropy), (fnt.nll_loss, F.nll_loss),
                             (fnt.binary_cross_entropy_with_logits,
                              F.binary_cross_entropy_with_logits)):
            other = y if ours is fnt.binary_cross_entropy_with_logits else t
            x.grad = ref.grad = None
            a = ours(x, other)
            b = theirs(ref, other)
            a.backward()
            b.backward()
            if not expect:
                assert torch.equal(a, b) and torch.equal(x.grad, ref.grad)
            else:
                torch.testing.assert_close(a, b)
                torch.testing.assert_close(x.grad, ref.grad)
        assert (len(calls) == 3) == expect, (N, calls)
    # linear_cross_entropy counts the logits, N x V
    calls.clear()
    h = torch.randn(8, 4, requires_grad=True)
    W = torch.randn(10, 4, requires_grad=True)
    t = torch.randint(0, 10, (8,))
    loss = fnt.linear_cross_entropy(h, W, t)
    assert torch.equal(loss, F.linear_cross_entropy(h, W, t))
