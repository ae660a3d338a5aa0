"""Argument errors (type and message) and the guarantee that inputs are never written."""
import re

import numpy as np
import pytest

import fastnll

X = np.arange(20, dtype=np.float64).reshape(4, 5) / 7.0
T = np.array([0, 4, 2, 1])
LOSSES = [fastnll.nll_loss, fastnll.cross_entropy]
SOFTMAX_FAMILY = [fastnll.logsumexp, fastnll.softmax, fastnll.log_softmax]


def ids(f):
    return f.__name__


# ------------------------------------------------------------------- bad targets ----

@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("bad", [5, 17, -1, -7, 99])
@pytest.mark.parametrize("shape,axis", [((4, 5), None), ((5, 4), 0), ((4, 5, 3), None),
                                        ((4, 5, 70), None), ((5,), None)], ids=str)
def test_target_out_of_range(loss, bad, shape, axis):
    x = np.zeros(shape)
    ax = 0 if len(shape) == 1 else 1 if axis is None else axis
    t = np.zeros(shape[:ax] + shape[ax + 1:], np.int64)
    t.flat[-1] = bad
    with pytest.raises(IndexError, match=rf"(?<![\d-]){bad}(?!\d)"):
        loss(x, t, axis=axis)
    with pytest.raises(IndexError, match=rf"(?<![\d-]){bad}(?!\d)"):
        loss(x, t, axis=axis, return_grad=True, reduction="none")


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
def test_target_out_of_range_other_dtypes(loss):
    with pytest.raises(IndexError, match="200"):
        loss(X, np.array([0, 200, 1, 1], np.uint8))
    with pytest.raises(IndexError, match="-3"):
        loss(X, np.array([0, 1, -3, 1], np.int8))
    big = 2 ** 63 + 5
    with pytest.raises(IndexError, match=str(big)):
        loss(X, np.array([0, big, 1, 1], np.uint64))
    # -100 is only accepted while it is the ignore_index
    with pytest.raises(IndexError, match="-100"):
        loss(X, np.array([0, -100, 1, 1]), ignore_index=3)


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
def test_nonint_target(loss):
    if loss is fastnll.nll_loss:
        with pytest.raises(TypeError):
            loss(X, T.astype(np.float64))
        with pytest.raises(TypeError):
            loss(X, X)                      # probabilities are for cross_entropy only
    else:
        # a float target shaped like the target of class indices: shape error
        with pytest.raises(ValueError, match=re.escape("(4,)")):
            loss(X, T.astype(np.float64))
        with pytest.raises(ValueError):
            loss(X, T.astype(np.float32), reduction="none")
    with pytest.raises(TypeError):
        loss(X, np.array(["a", "b", "c", "d"]))
    with pytest.raises(TypeError):
        loss(X, T.astype(object))


# --------------------------------------------------------------------------- shapes ----

@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("xshape,tshape,axis", [
    ((4, 5), (3,), None),
    ((4, 5), (4, 1), None),
    ((4, 5), (5,), None),
    ((4, 5, 3), (4, 5), None),
    ((4, 5, 3), (3, 4), None),
    ((2, 3, 6), (2, 6), -1),
    ((6,), (1,), None),
    ((4, 5), (), None),
], ids=str)
def test_class_target_shape_mismatch(loss, xshape, tshape, axis):
    x = np.zeros(xshape)
    t = np.zeros(tshape, np.int64)
    with pytest.raises(ValueError) as info:
        loss(x, t, axis=axis)
    msg = str(info.value)
    assert str(tuple(xshape)) in msg and str(tuple(tshape)) in msg, msg


@pytest.mark.parametrize("tshape", [(4, 4), (5, 4), (4, 5, 1), (20,)], ids=str)
def test_probability_target_shape_mismatch(tshape):
    with pytest.raises(ValueError) as info:
        fastnll.cross_entropy(X, np.full(tshape, 0.2))
    msg = str(info.value)
    assert "(4, 5)" in msg and str(tshape) in msg, msg


def test_logsumexp_b_shape_mismatch():
    with pytest.raises(ValueError) as info:
        fastnll.logsumexp(X, b=np.ones((3, 5)))
    msg = str(info.value)
    assert "(4, 5)" in msg and "(3, 5)" in msg, msg
    with pytest.raises(ValueError):
        fastnll.logsumexp(X, b=np.ones(4), axis=1)


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
def test_scalar_input(loss):
    with pytest.raises(ValueError):
        loss(np.float64(1.0), np.array(0))


# ---------------------------------------------------------------------- reduction ----

@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, "elementwise_mean", 1])
def test_unknown_reduction(loss, reduction):
    with pytest.raises(ValueError):
        loss(X, T, reduction=reduction)
    with pytest.raises(ValueError):
        loss(X, T, reduction=reduction, return_grad=True)


def test_unknown_reduction_probability_targets():
    with pytest.raises(ValueError):
        fastnll.cross_entropy(X, np.full((4, 5), 0.2), reduction="batchmean")


# --------------------------------------------------------------------------- axes ----

@pytest.mark.parametrize("f", SOFTMAX_FAMILY, ids=ids)
@pytest.mark.parametrize("axis", [2, -3, 10, (0, 2), (-3,)], ids=str)
def test_axis_out_of_range_softmax_family(f, axis):
    with pytest.raises(ValueError):
        f(X, axis=axis)


@pytest.mark.parametrize("f", SOFTMAX_FAMILY, ids=ids)
@pytest.mark.parametrize("axis", [(0, 0), (1, -1), (0, 1, 0)], ids=str)
def test_duplicate_axis(f, axis):
    with pytest.raises(ValueError):
        f(X, axis=axis)
    with pytest.raises(ValueError):
        f(np.zeros((2, 3, 4)), axis=(2, -1))


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("axis", [2, -3, 5])
def test_axis_out_of_range_losses(loss, axis):
    with pytest.raises(ValueError):
        loss(X, T, axis=axis)
    with pytest.raises(ValueError):
        fastnll.cross_entropy(X, np.full((4, 5), 0.2), axis=axis)


# ------------------------------------------------------------------ non-numeric ----

BAD_INPUTS = {
    "strings": np.array([["a", "b"], ["c", "d"]]),
    "string_list": [["a", "b"], ["c", "d"]],
    "objects": np.array([[object(), object()], [object(), object()]], dtype=object),
    "complex": np.array([[1 + 2j, 0j], [1j, 2.0 + 0j]]),
    "complex64": np.array([[1 + 2j, 0j], [1j, 2.0 + 0j]], dtype=np.complex64),
    "none": None,
    "datetime": np.array([["2020-01-01", "2020-01-02"]] * 2, dtype="datetime64[D]"),
}


@pytest.mark.parametrize("f", SOFTMAX_FAMILY, ids=ids)
@pytest.mark.parametrize("key", BAD_INPUTS)
def test_non_numeric_softmax_family(f, key):
    with pytest.raises(TypeError):
        f(BAD_INPUTS[key], axis=1 if key != "none" else None)


@pytest.mark.parametrize("key", ["strings", "objects", "complex"])
def test_non_numeric_b(key):
    with pytest.raises(TypeError):
        fastnll.logsumexp(np.zeros((2, 2)), b=BAD_INPUTS[key])


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("key", BAD_INPUTS)
def test_non_numeric_loss_input(loss, key):
    with pytest.raises(TypeError):
        loss(BAD_INPUTS[key], np.array([0, 1]))


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("key", ["strings", "objects", "complex"])
def test_non_numeric_weight(loss, key):
    with pytest.raises(TypeError):
        loss(np.zeros((2, 2)), np.array([0, 1]), weight=BAD_INPUTS[key][0])


def test_complex_probability_target():
    with pytest.raises((TypeError, ValueError)):
        fastnll.cross_entropy(np.zeros((2, 2)), BAD_INPUTS["complex"])


# --------------------------------------------------------- label smoothing, weight ----

@pytest.mark.parametrize("eps", [-0.1, 1.5, -1e-12, 1.0000001, float("nan"), float("inf")])
def test_label_smoothing_out_of_range(eps):
    with pytest.raises(ValueError):
        fastnll.cross_entropy(X, T, label_smoothing=eps)
    with pytest.raises(ValueError):
        fastnll.cross_entropy(X, np.full((4, 5), 0.2), label_smoothing=eps)


@pytest.mark.parametrize("eps", [0, 0.0, 1, 1.0, 0.5, np.float32(0.25)])
def test_label_smoothing_bounds_accepted(eps):
    loss = fastnll.cross_entropy(X, T, label_smoothing=eps)
    assert np.isfinite(loss)


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
@pytest.mark.parametrize("w", [np.ones(4), np.ones(6), np.ones(0), np.ones((5, 1)),
                               np.ones((1, 5)), np.float64(1.0)], ids=lambda w: str(np.shape(w)))
def test_weight_wrong_length(loss, w):
    with pytest.raises(ValueError):
        loss(X, T, weight=w)


def test_weight_wrong_length_probability_targets():
    with pytest.raises(ValueError):
        fastnll.cross_entropy(X, np.full((4, 5), 0.2), weight=np.ones(4))


@pytest.mark.parametrize("loss", LOSSES, ids=ids)
def test_negative_weight(loss):
    w = np.array([1.0, 2.0, -0.5, 1.0, 1.0])
    with pytest.raises(ValueError):
        loss(X, T, weight=w)
    with pytest.raises(ValueError):
        loss(X, T, weight=w.astype(np.float32).tolist())
    # even for a class that no target uses
    with pytest.raises(ValueError):
        loss(X, np.array([0, 0, 0, 0]), weight=w)
    with pytest.raises(ValueError):
        fastnll.cross_entropy(X, np.full((4, 5), 0.2), weight=w)


# --------------------------------------------------------------- inputs unchanged ----

def _layouts(a):
    """A few writable views of `a` that the kernels could be tempted to write through."""
    c = np.array(a)
    f = np.asfortranarray(a)
    big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
    big[::2] = a
    neg = np.ascontiguousarray(a[::-1])[::-1]
    return {"C": c, "F": f, "step": big[::2], "negative": neg}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_unchanged(dtype, rng):
    x = rng.standard_normal((6, 5, 3)).astype(dtype)
    t = rng.integers(0, 5, (6, 3))
    t[0, 0] = -100
    p = rng.dirichlet(np.ones(5), size=(6, 3)).transpose(0, 2, 1).astype(dtype)
    w = rng.uniform(0.5, 2, 5).astype(dtype)
    for name, xl in _layouts(x).items():
        for tl, pl in zip(_layouts(t).values(), _layouts(p).values()):
            args = [xl, tl, pl, w]
            before = [a.copy() for a in args]
            for red in ("mean", "sum", "none"):
                fastnll.nll_loss(xl, tl, weight=w, reduction=red, return_grad=True)
                fastnll.cross_entropy(xl, tl, weight=w, reduction=red, label_smoothing=0.1,
                                      return_grad=True)
                fastnll.cross_entropy(xl, pl, weight=w, reduction=red, label_smoothing=0.1,
                                      return_grad=True)
            for axis in (None, 0, 1, 2, (0, 2)):
                fastnll.softmax(xl, axis=axis)
                fastnll.log_softmax(xl, axis=axis)
                fastnll.logsumexp(xl, axis=axis)
                fastnll.logsumexp(xl, axis=axis, b=pl, return_sign=True)
            for a, b in zip(args, before):
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_inputs_unchanged_medium(rng):
    # the multi-threaded paths
    x = rng.standard_normal((64, 3000)).astype(np.float32)
    t = rng.integers(0, 3000, 64)
    xc, tc = x.copy(), t.copy()
    fastnll.cross_entropy(x, t, label_smoothing=0.1, return_grad=True)
    fastnll.cross_entropy(x.T, t, axis=0, return_grad=True)
    fastnll.softmax(x, axis=1)
    fastnll.log_softmax(x, axis=0)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(t, tc)


def test_list_inputs_accepted_everywhere():
    xs = [[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]]
    assert np.isfinite(fastnll.logsumexp(xs, b=[1.0, 2.0, 0.5]))
    assert fastnll.softmax(xs, axis=1).shape == (2, 3)
    assert np.isfinite(fastnll.nll_loss(xs, [0, 2], weight=[1, 2, 3]))
    assert np.isfinite(fastnll.cross_entropy(xs, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
