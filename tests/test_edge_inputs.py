"""Odd inputs that are not errors (empty, nan, lists, bounds): oracle results; inputs unwritten."""
# `ORACLE` lists such calls with their expected results, which come from SciPy / PyTorch /
# NumPy (reference.py), never from fastnll.  Empty inputs give the SciPy / PyTorch result
# rather than an error, and nan in the data propagates as in PyTorch (nan in probability
# targets, class weights, variances: PyTorch returns nan, and so does fastnll; only arguments
# that are not data, such as label_smoothing, are refused when nan: test_errors.py).
import copy
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import fastnll
from helpers import assert_close, assert_unchanged, snapshot, writable_views
from reference import (
    ref_entropy, ref_lse, ref_softmax, scipy_lse, torch_class_oracle, torch_elementwise_oracle,
    torch_softmax,
)

F = fastnll


@dataclass
class Oracle:
    id: str
    fn: object
    make: object        # dtype -> keyword arguments
    oracle: object      # the same keyword arguments -> expected result


ORACLE = []


# --- softmax family -------------------------------------------------------------------------
for shape, axis, keep, ref in [
        ((0,), None, False, "scipy"), ((0,), 0, True, "scipy"), ((3, 0), 1, False, "scipy"),
        ((2, 0, 3), 1, True, "scipy"), ((0, 3), 1, False, "scipy"), ((3, 0), 0, False, "scipy"),
        # SciPy 1.17 raises IndexError for these: the definition is the oracle
        ((0, 3), None, False, "numpy"), ((2, 0, 3), (0, 2), False, "numpy")]:
    ORACLE.append(Oracle(
        f"logsumexp-empty{shape}-axis{axis}-keep{keep}", F.logsumexp,
        lambda dt, shape=shape, axis=axis, keep=keep: dict(a=np.zeros(shape, dt), axis=axis,
                                                          keepdims=keep),
        scipy_lse if ref == "scipy" else ref_lse))
    # with b and return_sign: the sign of an empty sum is 0 (SciPy 1.17 says -1 there, but 0
    # for a sum of zero-weighted terms, which is what the definition gives)
    ORACLE.append(Oracle(
        f"logsumexp-empty{shape}-axis{axis}-b-sign", F.logsumexp,
        lambda dt, shape=shape, axis=axis: dict(a=np.zeros(shape, dt), b=np.ones(shape, dt),
                                                axis=axis, return_sign=True),
        ref_lse))
for name in ("softmax", "log_softmax"):
    log = name == "log_softmax"
    for shape, axis in [((0,), None), ((0,), 0), ((3, 0), 1), ((3, 0), 0), ((0, 3), 1),
                        ((0, 3), None), ((2, 0, 3), 1), ((2, 0, 3), (0, 2)), ((2, 3, 0), -1)]:
        use_torch = isinstance(axis, int)
        ORACLE.append(Oracle(
            f"{name}-empty{shape}-axis{axis}", getattr(F, name),
            lambda dt, shape=shape, axis=axis: dict(x=np.zeros(shape, dt), axis=axis),
            (lambda x, axis, log=log: torch_softmax(x, axis, log)) if use_torch else
            (lambda x, axis, log=log: ref_softmax(x, axis, log))))

# --- class-target losses ----------------------------------------------------------------------
for kind, name in (("nll", "nll_loss"), ("ce", "cross_entropy")):
    for xshape, tshape, axis in [((0, 5), (0,), None), ((0, 5, 3), (0, 3), None),
                                 ((2, 5, 0), (2, 0), None), ((0,), (), None),
                                 ((3, 0), (3,), None), ((4, 0, 5), (4, 0), -1)]:
        for red in ("mean", "sum", "none"):
            ORACLE.append(Oracle(
                f"{name}-empty{xshape}-{red}", getattr(F, name),
                lambda dt, xshape=xshape, tshape=tshape, axis=axis, red=red: dict(
                    input=np.zeros(xshape, dt), target=np.full(tshape, -100, np.int64),
                    axis=axis, reduction=red, return_grad=True),
                torch_class_oracle(kind)))
for xshape, axis in [((0, 5), None), ((0, 5, 3), None), ((3, 0), None), ((0,), None),
                     ((2, 5, 0), None), ((4, 0, 5), -1)]:
    for red in ("mean", "sum", "none"):
        ORACLE.append(Oracle(
            f"cross_entropy_prob-empty{xshape}-{red}", F.cross_entropy,
            lambda dt, xshape=xshape, axis=axis, red=red: dict(
                input=np.zeros(xshape, dt), target=np.zeros(xshape, dt), axis=axis,
                reduction=red, return_grad=True),
            torch_class_oracle("ce")))

# --- elementwise likelihoods --------------------------------------------------------------------
for shape in [(0,), (0, 3), (3, 0), (2, 0, 3)]:
    for red in ("mean", "sum", "none"):
        ORACLE.append(Oracle(
            f"bce-empty{shape}-{red}", F.binary_cross_entropy_with_logits,
            lambda dt, shape=shape, red=red: dict(
                input=np.zeros(shape, dt), target=np.zeros(shape, dt), weight=np.ones(shape, dt),
                pos_weight=np.ones(shape[-1:], dt), reduction=red, return_grad=True),
            torch_elementwise_oracle("binary_cross_entropy_with_logits")))
        for vkind in ("full", "nolast", "scalar"):
            vshape = {"full": shape, "nolast": shape[:-1], "scalar": ()}[vkind]
            ORACLE.append(Oracle(
                f"gaussian-empty{shape}-var-{vkind}-{red}", F.gaussian_nll_loss,
                lambda dt, shape=shape, vshape=vshape, red=red: dict(
                    input=np.zeros(shape, dt), target=np.zeros(shape, dt),
                    var=np.ones(vshape, dt), full=True, reduction=red, return_grad=True),
                torch_elementwise_oracle("gaussian_nll_loss")))
        for log_input in (True, False):
            ORACLE.append(Oracle(
                f"poisson-empty{shape}-log{log_input}-{red}", F.poisson_nll_loss,
                lambda dt, shape=shape, red=red, li=log_input: dict(
                    input=np.ones(shape, dt), target=np.ones(shape, dt), log_input=li,
                    full=True, reduction=red, return_grad=True),
                torch_elementwise_oracle("poisson_nll_loss")))
    for red in ("mean", "sum", "none", "batchmean"):
        for log_target in (False, True):
            ORACLE.append(Oracle(
                f"kl_div-empty{shape}-logt{log_target}-{red}", F.kl_div,
                lambda dt, shape=shape, red=red, lt=log_target: dict(
                    input=np.zeros(shape, dt), target=np.zeros(shape, dt), log_target=lt,
                    reduction=red, return_grad=True),
                torch_elementwise_oracle("kl_div")))

# --- entropy --------------------------------------------------------------------------------
for pshape, qshape, axis, base in [((0,), None, 0, None), ((0, 3), None, 0, None),
                                   ((0, 3), None, 1, None), ((2, 0), None, None, None),
                                   ((0,), (0,), 0, None), ((0, 3), (0, 3), 0, 2.0),
                                   ((3, 0), (3, 0), 1, 2.0), ((2, 0, 3), (0, 3), -2, None)]:
    ORACLE.append(Oracle(
        f"entropy-empty{pshape}-{qshape}-axis{axis}", F.entropy,
        lambda dt, p=pshape, q=qshape, axis=axis, base=base: dict(
            pk=np.ones(p, dt), qk=None if q is None else np.ones(q, dt), axis=axis, base=base),
        ref_entropy))

# --- nan in the data ------------------------------------------------------------------------
def _nan_prob(dt):
    p = np.full((3, 4), 0.25, dt)
    p[1, 2] = np.nan
    return p


for red in ("mean", "sum", "none"):
    ORACLE.append(Oracle(
        f"cross_entropy_prob-nan-target-{red}", F.cross_entropy,
        lambda dt, red=red: dict(input=np.linspace(-1, 1, 12).reshape(3, 4).astype(dt),
                                 target=_nan_prob(dt), reduction=red, return_grad=True),
        torch_class_oracle("ce")))
    ORACLE.append(Oracle(
        f"cross_entropy_prob-nan-weight-{red}", F.cross_entropy,
        lambda dt, red=red: dict(input=np.linspace(-1, 1, 12).reshape(3, 4).astype(dt),
                                 target=np.full((3, 4), 0.25, dt),
                                 weight=np.array([1.0, 2.0, np.nan, 1.0], dt),
                                 reduction=red, return_grad=True),
        torch_class_oracle("ce")))
    for kind, name in (("nll", "nll_loss"), ("ce", "cross_entropy")):
        ORACLE.append(Oracle(
            f"{name}-nan-weight-{red}", getattr(F, name),
            lambda dt, red=red: dict(input=np.linspace(-2, 0, 12).reshape(3, 4).astype(dt),
                                     target=np.array([0, 2, 3]),
                                     weight=np.array([1.0, 2.0, np.nan, 1.0], dt),
                                     reduction=red, return_grad=True),
            torch_class_oracle(kind)))
    ORACLE.append(Oracle(
        f"gaussian-nan-var-{red}", F.gaussian_nll_loss,
        lambda dt, red=red: dict(input=np.linspace(-1, 1, 6).reshape(2, 3).astype(dt),
                                 target=np.zeros((2, 3), dt),
                                 var=np.array([[1.0, np.nan, 2.0], [0.5, 1.0, 1.0]], dt),
                                 reduction=red, return_grad=True),
        torch_elementwise_oracle("gaussian_nll_loss")))
ORACLE.append(Oracle(
    "entropy-nan-pk", F.entropy,
    lambda dt: dict(pk=np.array([[1.0, np.nan], [1.0, 3.0]], dt), axis=1), ref_entropy))


def _compare(got, want, dtype, what):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, dtype, f"{what}[{i}]")
        return
    assert_close(got, want, dtype, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ORACLE, ids=lambda c: c.id)
def test_not_an_error(case, dtype):
    kwargs = case.make(np.dtype(dtype))
    snap = snapshot(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = case.fn(**kwargs)
    want = case.oracle(**copy.deepcopy(kwargs))
    _compare(got, want, dtype, case.id)
    assert_unchanged(snap)


def test_oracle_ids_unique():
    ids = [c.id for c in ORACLE]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------- options at their bounds ----

X = np.arange(20, dtype=np.float64).reshape(4, 5) / 7.0
T = np.array([0, 4, 2, 1])


@pytest.mark.parametrize("eps", [0, 0.0, 1, 1.0, 0.5, np.float32(0.25)])
def test_label_smoothing_bounds_accepted(eps):
    loss = fastnll.cross_entropy(X, T, label_smoothing=eps)
    assert np.isfinite(loss)


def test_list_inputs_accepted_everywhere():
    xs = [[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]]
    assert np.isfinite(fastnll.logsumexp(xs, b=[1.0, 2.0, 0.5]))
    assert fastnll.softmax(xs, axis=1).shape == (2, 3)
    assert np.isfinite(fastnll.nll_loss(xs, [0, 2], weight=[1, 2, 3]))
    assert np.isfinite(fastnll.cross_entropy(xs, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


# --------------------------------------------------------------- inputs never written ----

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_unchanged(dtype, rng):
    x = rng.standard_normal((6, 5, 3)).astype(dtype)
    t = rng.integers(0, 5, (6, 3))
    t[0, 0] = -100
    p = rng.dirichlet(np.ones(5), size=(6, 3)).transpose(0, 2, 1).astype(dtype)
    w = rng.uniform(0.5, 2, 5).astype(dtype)
    for name, xl in writable_views(x).items():
        for tl, pl in zip(writable_views(t).values(), writable_views(p).values()):
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
