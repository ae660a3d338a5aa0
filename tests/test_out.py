"""out= (softmax, log_softmax, logsumexp) and grad_out= (every function with return_grad).

With NumPy's rules for `out`: the result lands in the caller's array, which is returned; its
shape and writeability are checked and its dtype takes the result under casting="same_kind";
any layout works.  Every case is compared bit for bit with the same call without an output
array (cast to the output's dtype), the independent oracle of the values being the rest of
the suite.  An output of the result's dtype in a layout the kernel can write is written by
the kernel itself: no temporary of the input's size is allocated (tracemalloc).
"""
import numpy as np
import pytest

import fastnll
from helpers import assert_bitwise_equal, make_layout, traced_peak

F = fastnll
OUT_LAYOUTS = ["C", "F", "moved", "step", "negative", "negstep", "unaligned"]
DTYPES = [np.float32, np.float64]


def _rng():
    return np.random.default_rng(7)


def _garbage(shape, dtype, layout):
    """An output array of `layout` full of nan: nothing of it may survive the call."""
    if shape == ():
        return np.full((), np.nan, dtype=dtype)       # 0-d: one layout
    return make_layout(np.full(shape, np.nan, dtype=dtype), layout)


def _expect_in(out, expected):
    """`out` holds `expected` cast as NumPy's copyto would, bit for bit."""
    want = np.empty(out.shape, dtype=out.dtype)
    np.copyto(want, expected, casting="same_kind")
    assert_bitwise_equal(np.array(out), want)


# ------------------------------------------------------------------ the softmax family ----

SOFTMAX_CASES = [
    ((6, 40), 1), ((6, 40), 0), ((40, 5), 1), ((3, 7, 9), 1), ((3, 7, 9), (0, 2)),
    ((3, 7, 9), None), ((5,), 0), ((), None), ((0, 4), 1), ((4, 0), 1),
]


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES + [((30, 1000), 1), ((1000, 30), 0)])
@pytest.mark.parametrize("layout", OUT_LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_out(fn, shape, axis, layout, dtype):
    x = _rng().standard_normal(shape).astype(dtype) * 3
    expected = fn(x, axis=axis)
    out = _garbage(shape, dtype, layout)
    got = fn(x, axis=axis, out=out)
    assert got is out
    _expect_in(out, expected)


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("in_dtype,out_dtype", [(np.float32, np.float64),
                                                 (np.float64, np.float32),
                                                 (np.int64, np.float32),
                                                 (np.float16, np.float64)])
def test_softmax_out_other_dtype(fn, in_dtype, out_dtype):
    x = (_rng().standard_normal((5, 33)) * 4).astype(in_dtype)
    out = np.full((5, 33), np.nan, dtype=out_dtype)
    assert fn(x, axis=1, out=out) is out
    _expect_in(out, fn(x, axis=1))


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape,axis", [((6, 40), 1), ((6, 40), 0), ((40, 5), 1),
                                        ((200, 3), 1), ((3, 7, 9), 1), ((3, 7, 9), (1, 2)),
                                        ((8, 1000), 1)])
@pytest.mark.parametrize("layout", ["C", "F", "step", "negative"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_in_place(fn, shape, axis, layout, dtype):
    """out=x: every traversal (rows, packed column blocks, strided columns) reads a slice
    before it writes it."""
    x0 = _rng().standard_normal(shape).astype(dtype) * 5
    x0.flat[3] = -np.inf
    x = make_layout(x0, layout)
    expected = fn(x, axis=axis)      # the traversal follows the input's layout
    assert fn(x, axis=axis, out=x) is x
    _expect_in(x, expected)


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape", [(6, 40), (30, 1000), (4, 3001), (2, 7)])
@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_out_streamed(monkeypatch, fn, shape, offset, dtype):
    """An output larger than the last-level cache (here: any, with the size patched to 0) is
    written with non-temporal stores; from any element offset (vectors start at the first
    32- or 64-byte boundary), in place or not, rows with +inf or all -inf among the others:
    the same bits as the cached writes."""
    x = _rng().standard_normal(shape).astype(dtype) * 5
    x[0, 1] = np.inf
    x[-1] = -np.inf
    expected = fn(x, axis=1)
    monkeypatch.setattr(fastnll._caches, "LLC_BYTES", 0)
    size = int(np.prod(shape))
    out = np.full(size + offset, np.nan, dtype=dtype)[offset:].reshape(shape)
    assert fn(x, axis=1, out=out) is out
    _expect_in(out, expected)
    y = x.copy()
    assert fn(y, axis=1, out=y) is y
    _expect_in(y, expected)


def test_softmax_out_overlapping_the_input():
    """Memory shared with the input in another layout goes through a buffer."""
    base = _rng().standard_normal((6, 41)).astype(np.float32)
    expected = F.softmax(base[:, :40], axis=1)
    x = base[:, :40]
    out = base[:, 1:]                     # shifted by one element: overlaps every row
    assert F.softmax(x, axis=1, out=out) is out
    _expect_in(out, expected)
    y = _rng().standard_normal((5, 5)).astype(np.float64)
    expected = F.log_softmax(y, axis=0)
    assert F.log_softmax(y, axis=0, out=y.T) is not None      # out is x transposed
    _expect_in(y.T, expected)


@pytest.mark.parametrize("shape,axis,keepdims", [((6, 40), 1, False), ((6, 40), 0, True),
                                                 ((3, 7, 9), (0, 2), False),
                                                 ((3, 7, 9), None, False), ((3, 7, 9), None, True),
                                                 ((0, 4), 1, False), ((4, 0), 1, False)])
@pytest.mark.parametrize("with_b", [False, True])
@pytest.mark.parametrize("layout", ["C", "F", "step", "negative", "unaligned"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_out(shape, axis, keepdims, with_b, layout, dtype):
    rng = _rng()
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.uniform(-1, 2, shape).astype(dtype) if with_b else None
    expected = F.logsumexp(a, axis=axis, b=b, keepdims=keepdims)
    out = _garbage(np.shape(expected), dtype, layout)
    got = F.logsumexp(a, axis=axis, b=b, keepdims=keepdims, out=out)
    assert got is out
    _expect_in(out, expected)
    # with return_sign the value goes to out, the sign is returned as usual
    res, sgn = F.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=True)
    out2 = _garbage(np.shape(res), dtype, layout)
    got, got_sign = F.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=True,
                                out=out2)
    assert got is out2
    _expect_in(out2, res)
    assert_bitwise_equal(got_sign, sgn)


def test_logsumexp_out_is_a_0d_array_for_a_full_reduction():
    out = np.empty((), dtype=np.float64)
    got = F.logsumexp([1.0, 2.0, 3.0], out=out)
    assert got is out and got.shape == ()
    assert got[()] == F.logsumexp([1.0, 2.0, 3.0])


# ----------------------------------------------------------- gradients: grad_out= ----

def _class_case(dtype, kind):
    rng = _rng()
    x = rng.standard_normal((7, 6)).astype(dtype) * 2
    if kind == "prob":
        return x, rng.dirichlet(np.ones(6), 7).astype(dtype), {}
    t = rng.integers(0, 6, 7)
    t[2] = -100
    return x, t, {"weight": rng.uniform(0.5, 2, 6).astype(dtype)}


def _loss_calls(dtype):
    """(name, call(grad_out=..., **options), input shape) for every single-gradient loss."""
    rng = _rng()
    x, t, kw = _class_case(dtype, "index")
    xp, p, _ = _class_case(dtype, "prob")
    y = rng.uniform(0, 1, x.shape).astype(dtype)
    x3 = rng.standard_normal((3, 5, 4)).astype(dtype)
    t3 = rng.integers(0, 5, (3, 4))
    xw = rng.standard_normal((40, 300)).astype(dtype)      # the kernels' long-row loops
    tw = rng.integers(0, 300, 40)
    return {
        "nll_loss": (lambda **o: F.nll_loss(x, t, **kw, **o), x.shape),
        "nll_loss_3d": (lambda **o: F.nll_loss(x3, t3, **o), x3.shape),
        "cross_entropy": (lambda **o: F.cross_entropy(x, t, label_smoothing=0.1, **kw, **o),
                          x.shape),
        "cross_entropy_axis0": (lambda **o: F.cross_entropy(x.T, t, axis=0, **o), x.T.shape),
        "cross_entropy_wide": (lambda **o: F.cross_entropy(xw, tw, label_smoothing=0.1, **o),
                               xw.shape),
        "nll_loss_wide": (lambda **o: F.nll_loss(xw, tw, **o), xw.shape),
        "cross_entropy_3d": (lambda **o: F.cross_entropy(x3, t3, **o), x3.shape),
        "cross_entropy_prob": (lambda **o: F.cross_entropy(xp, p, **o), xp.shape),
        "cross_entropy_softcap": (lambda **o: F.cross_entropy(x, t, softcap=2.0, z_loss=0.1,
                                                              **o), x.shape),
        "cross_entropy_zero_weights": (
            lambda **o: F.cross_entropy(x, t, weight=np.zeros(6, dtype), label_smoothing=0.1,
                                        **o), x.shape),
        "bce": (lambda **o: F.binary_cross_entropy_with_logits(x, y, pos_weight=y[0], **o),
                x.shape),
        "poisson": (lambda **o: F.poisson_nll_loss(x, y * 3, **o), x.shape),
        "kl_div": (lambda **o: F.kl_div(x, y, **o), x.shape),
    }


@pytest.mark.parametrize("name", list(_loss_calls(np.float32)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", OUT_LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_out(name, reduction, layout, dtype):
    if name == "kl_div" and reduction == "mean":
        reduction = "batchmean"
    call, shape = _loss_calls(dtype)[name]
    loss, grad = call(reduction=reduction, return_grad=True)
    out = _garbage(shape, dtype, layout)
    got_loss, got = call(reduction=reduction, return_grad=True, grad_out=out)
    assert got is out
    assert_bitwise_equal(got_loss, loss)
    _expect_in(out, grad)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy", "bce", "kl_div"])
def test_grad_out_other_dtype(name):
    call, shape = _loss_calls(np.float32)[name]
    loss, grad = call(return_grad=True)
    out = np.full(shape, np.nan, dtype=np.float64)
    got_loss, got = call(return_grad=True, grad_out=out)
    assert got is out
    assert_bitwise_equal(got_loss, loss)
    _expect_in(out, grad)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy", "bce", "poisson"])
def test_grad_out_aliasing_the_input(name):
    """grad_out=input: the gradient replaces the input (through a buffer), the loss is that
    of the input as it was."""
    rng = _rng()
    x0 = rng.standard_normal((7, 6))
    t = rng.integers(0, 6, 7)
    y = rng.uniform(0, 1, x0.shape)
    fn = {"nll_loss": lambda x, **o: F.nll_loss(x, t, **o),
          "cross_entropy": lambda x, **o: F.cross_entropy(x, t, **o),
          "bce": lambda x, **o: F.binary_cross_entropy_with_logits(x, y, **o),
          "poisson": lambda x, **o: F.poisson_nll_loss(x, y, **o)}[name]
    loss, grad = fn(x0, return_grad=True)
    x = x0.copy()
    got_loss, got = fn(x, return_grad=True, grad_out=x)
    assert got is x
    assert_bitwise_equal(got_loss, loss)
    _expect_in(x, grad)


@pytest.mark.parametrize("var_shape", [(7, 6), (7, 1), ()])
@pytest.mark.parametrize("layout", ["C", "F", "step"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_grad_out(var_shape, layout, dtype):
    rng = _rng()
    x = rng.standard_normal((7, 6)).astype(dtype)
    y = rng.standard_normal((7, 6)).astype(dtype)
    var = rng.uniform(0.5, 2, var_shape).astype(dtype)
    loss, (gx, gv) = F.gaussian_nll_loss(x, y, var, full=True, return_grad=True)
    ox = _garbage(x.shape, dtype, layout)
    ov = _garbage(var_shape, dtype, layout)
    got_loss, (a, b) = F.gaussian_nll_loss(x, y, var, full=True, return_grad=True,
                                           grad_out=(ox, ov))
    assert a is ox and b is ov
    assert_bitwise_equal(got_loss, loss)
    _expect_in(ox, gx)
    _expect_in(ov, gv)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("ignored", [0, 3, 8])
@pytest.mark.parametrize("layout", ["C", "F", "step"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_grad_out(bias, ignored, layout, dtype):
    rng = _rng()
    h = rng.standard_normal((2, 4, 5)).astype(dtype)
    W = rng.standard_normal((9, 5)).astype(dtype)
    b = rng.standard_normal(9).astype(dtype) if bias else None
    y = rng.integers(0, 9, (2, 4))
    y.flat[:ignored] = -100
    loss, grads = F.linear_cross_entropy(h, W, y, linear_bias=b, label_smoothing=0.1,
                                         return_grad=True)
    outs = (_garbage(h.shape, dtype, layout), _garbage(W.shape, dtype, layout),
            _garbage((9,), dtype, layout) if bias else None)
    got_loss, got = F.linear_cross_entropy(h, W, y, linear_bias=b, label_smoothing=0.1,
                                           return_grad=True, grad_out=outs)
    assert_bitwise_equal(got_loss, loss)
    for g, o, want in zip(got, outs, grads):
        if o is None:
            assert g is None and want is None
        else:
            assert g is o
            _expect_in(o, want)
    # the gradients of one call as the outputs of the next
    again = F.linear_cross_entropy(h, W, y, linear_bias=b, label_smoothing=0.1,
                                   return_grad=True, grad_out=got)[1]
    for g, want in zip(again, grads):
        if g is not None:
            _expect_in(g, want)


# ---------------------------------------------------------- no input-sized temporary ----

@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "softmax_in_place", "cross_entropy",
                                "nll_loss", "bce", "linear_cross_entropy"])
def test_output_arrays_are_written_directly(fn):
    """An output of the result's dtype in a layout the kernel writes takes the result
    itself: the call allocates less than 1% of the input's size."""
    rng = _rng()
    x = rng.standard_normal((512, 1000)).astype(np.float32)
    t = rng.integers(0, 1000, 512)
    out = np.empty_like(x)
    if fn == "linear_cross_entropy":
        h = rng.standard_normal((512, 64)).astype(np.float32)
        W = rng.standard_normal((1000, 64)).astype(np.float32)
        outs = (np.empty_like(h), np.empty_like(W), None)
        size = h.nbytes + W.nbytes
        call = lambda: F.linear_cross_entropy(h, W, t, return_grad=True, grad_out=outs)  # noqa: E731
        # the block buffer of the logits is the function's own working memory (bounded)
        budget = 512 * 1000 * 4 + 0.01 * size
    else:
        size = x.nbytes
        budget = 0.01 * size
        call = {
            "softmax": lambda: F.softmax(x, axis=1, out=out),
            "log_softmax": lambda: F.log_softmax(x, axis=1, out=out),
            "softmax_in_place": lambda: F.softmax(out, axis=1, out=out),
            "cross_entropy": lambda: F.cross_entropy(x, t, return_grad=True, grad_out=out),
            "nll_loss": lambda: F.nll_loss(x, t, return_grad=True, grad_out=out),
            "bce": lambda: F.binary_cross_entropy_with_logits(x, x, return_grad=True,
                                                              grad_out=out),
        }[fn]
    peak = traced_peak(call)
    assert peak < budget, f"{fn} allocated {peak} bytes with an output array given"


# ------------------------------------------------------------------- refused outputs ----

def test_read_only_outputs_are_refused_and_untouched():
    x = np.ones((3, 4))
    t = np.array([0, 1, 2])
    ro = np.zeros((3, 4))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        F.softmax(x, axis=1, out=ro)
    with pytest.raises(ValueError, match="out is read-only"):
        F.logsumexp(x, axis=1, out=np.broadcast_to(np.zeros(1), (3,)))
    with pytest.raises(ValueError, match="grad_out is read-only"):
        F.cross_entropy(x, t, return_grad=True, grad_out=ro)
    with pytest.raises(ValueError, match=r"grad_out\[1\] is read-only"):
        F.gaussian_nll_loss(x, x, np.ones((3, 1)), return_grad=True,
                            grad_out=(np.zeros((3, 4)), _read_only((3, 1))))
    assert not ro.any()


def _read_only(shape):
    a = np.zeros(shape)
    a.setflags(write=False)
    return a


def test_errors_leave_the_output_untouched():
    """Every check runs before anything is written (nll_loss zero-fills its gradient)."""
    x = np.ones((3, 4))
    out = np.full((3, 4), 5.0)
    for fn in (F.cross_entropy, F.nll_loss):
        for bad in (9, -1):
            for kw in ({}, {"reduction": "none"}, {"weight": np.ones(4)}):
                with pytest.raises(IndexError):
                    fn(x, np.array([0, 1, bad]), return_grad=True, grad_out=out, **kw)
    with pytest.raises(IndexError):
        F.nll_loss(x.T, np.array([0, 1, 7]), axis=0, return_grad=True, grad_out=out.T)
    with pytest.raises(ValueError):
        F.softmax(x, axis=3, out=out)
    with pytest.raises(ValueError):
        F.nll_loss(x, np.array([0, 1, 2]), reduction="avg", return_grad=True, grad_out=out)
    assert (out == 5.0).all()


def test_grad_outputs_must_not_share_memory():
    x = np.ones((3, 4))
    g = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"grad_out\[0\] and grad_out\[1\] share memory"):
        F.gaussian_nll_loss(x, x, np.ones((3, 4)), return_grad=True, grad_out=(g, g))
    h = np.ones((4, 3))
    buf = np.zeros(12 + 15)
    with pytest.raises(ValueError, match=r"grad_out\[0\] and grad_out\[1\] share memory"):
        F.linear_cross_entropy(h, np.ones((5, 3)), np.zeros(4, int), return_grad=True,
                               grad_out=(buf[:12].reshape(4, 3), buf[10:25].reshape(5, 3),
                                         None))
    assert not g.any() and not buf.any()


@pytest.mark.parametrize("block_rows", [None, 1])
def test_linear_grad_out_sharing_memory_with_the_class_weights(monkeypatch, block_rows):
    """Class weights read block after block while the gradients are written: an output that
    shares their memory goes through a buffer."""
    import fastnll._linear as lin
    if block_rows is not None:
        monkeypatch.setattr(lin, "_BLOCK_BYTES", 5 * 8 * block_rows)   # one row a block
    rng = _rng()
    N, H, V = 4, 3, 5
    x, W, b = rng.standard_normal((N, H)), rng.standard_normal((V, H)), rng.standard_normal(V)
    t = np.array([0, 1, 4, 2])
    for k in (0, 1):
        shapes = [(N, H), (V, H)]
        buf = np.empty(N * H + V * H)
        w = buf[:V]
        w[:] = rng.random(V) + 0.5
        loss, grads = F.linear_cross_entropy(x, W, t, b, weight=w.copy(), return_grad=True)
        outs = [np.empty(s) for s in shapes] + [np.empty(V)]
        outs[k] = buf[:N * H].reshape(shapes[k]) if k == 0 else buf[:V * H].reshape(shapes[k])
        got_loss, got = F.linear_cross_entropy(x, W, t, b, weight=w, return_grad=True,
                                               grad_out=tuple(outs))
        assert_bitwise_equal(got_loss, loss)
        for g, want in zip(got, grads):
            _expect_in(g, want)


@pytest.mark.parametrize("shape,axis", [((300, 7), 1), ((7, 300), 0), ((5000, 3), 1),
                                        ((3, 5000), 0), ((4, 6, 50), 1), ((50, 4, 6), 2),
                                        ((40, 300), 1)])
@pytest.mark.parametrize("layout", OUT_LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_nll_grad_zero_fills_every_entry(shape, axis, layout, threads):
    """nll_loss's kernel zero-fills its gradient itself, block by block, in every view of the
    class axis (rows, swapped columns, inner axes): checked on a caller's array full of nan
    against the one-hot gradient -w_t / sum(w_t), built here with NumPy."""
    rng = _rng()
    x = rng.standard_normal(shape)
    C = shape[axis]
    t = rng.integers(0, C, shape[:axis] + shape[axis + 1:])
    t.flat[::7] = -100
    w = rng.uniform(0.5, 2.0, C)
    out = _garbage(shape, np.float64, layout)
    with fastnll.threads(threads):
        _, got = F.nll_loss(x, t, weight=w, axis=axis, return_grad=True, grad_out=out)
    kept = t != -100
    moved = np.zeros(t.shape + (C,))
    idx = np.nonzero(kept)
    moved[idx + (t[kept],)] = -w[t[kept]] / w[t[kept]].sum()
    want = np.moveaxis(moved, -1, axis)
    assert np.array_equal(got == 0, want == 0)            # exact zeros, no nan left
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
