"""Every public function against every kind of bad argument that applies to it, in one table.

`BAD` lists (function, arguments, expected exception, regex).  The regex must find both the
argument's name and the offending value (a dtype, a shape, an index, a string) in the message.
Each case runs with warnings turned into errors, and afterwards every array it passed in must be
byte for byte what it was before the call, and the thread setting what it was.

`ORACLE` lists inputs that look odd but are not errors: empty inputs and nan in the data.  Their
results come from SciPy / PyTorch / NumPy computed here, never from fastnll.

tests/test_errors.py and the error tests of tests/test_likelihood.py check some of these in more
shapes and layouts; this file is the one place where every function meets every kind.
"""
import copy
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastnll
from helpers import assert_close
from reference import torch_loss

F = fastnll


# ----------------------------------------------------------------------- good arguments ----
# Fresh arrays for each case (the table is built once; each test deep-copies its case).

def _x(shape=(4, 5)):
    return np.linspace(-2.0, 2.0, int(np.prod(shape))).reshape(shape)


def _t():
    return np.array([0, 4, 2, 1])                           # class indices for (4, 5)


def _p():
    return np.full((4, 5), 0.2)                             # class probabilities for (4, 5)


def _w(n=5):
    return np.linspace(0.5, 2.0, n)                         # class weights


def _pos(shape=(4, 5)):
    return np.linspace(0.0, 1.0, int(np.prod(shape))).reshape(shape)


# For each form of each function: the function, its good keyword arguments, and which of them
# are arrays (each gets every bad dtype).
FORMS = {
    "logsumexp": (F.logsumexp, lambda: dict(a=_x(), b=_pos(), axis=1), ["a", "b"]),
    "softmax": (F.softmax, lambda: dict(x=_x(), axis=1), ["x"]),
    "log_softmax": (F.log_softmax, lambda: dict(x=_x(), axis=1), ["x"]),
    "nll_loss": (F.nll_loss, lambda: dict(input=_x(), target=_t(), weight=_w()),
                 ["input", "target", "weight"]),
    "cross_entropy": (F.cross_entropy, lambda: dict(input=_x(), target=_t(), weight=_w()),
                      ["input", "target", "weight"]),
    "cross_entropy_prob": (F.cross_entropy, lambda: dict(input=_x(), target=_p(), weight=_w()),
                           ["input", "weight"]),
    "bce": (F.binary_cross_entropy_with_logits,
            lambda: dict(input=_x(), target=_pos(), weight=_w(), pos_weight=_w()),
            ["input", "target", "weight", "pos_weight"]),
    "gaussian": (F.gaussian_nll_loss, lambda: dict(input=_x(), target=_x(), var=_pos() + 0.5),
                 ["input", "target", "var"]),
    "poisson": (F.poisson_nll_loss, lambda: dict(input=_x(), target=_pos() * 3),
                ["input", "target"]),
    "kl_div": (F.kl_div, lambda: dict(input=_x() - 3, target=_p()), ["input", "target"]),
    "entropy": (F.entropy, lambda: dict(pk=_pos(), qk=_p(), axis=1), ["pk", "qk"]),
}
REDUCING = ["nll_loss", "cross_entropy", "cross_entropy_prob", "bce", "gaussian", "poisson",
            "kl_div"]
CLASS_FORMS = ["nll_loss", "cross_entropy", "cross_entropy_prob"]


def _enter_threads(n):
    with fastnll.threads(n):
        pass


@dataclass
class Bad:
    id: str
    fn: object
    kwargs: dict
    exc: type
    match: str


BAD = []


DROP = object()     # as a change: leave the argument out (None is passed as None)


def bad(id, form_or_fn, exc, match, **changes):
    """A case: the good arguments of `form_or_fn` (a FORMS key, or a function with no good
    arguments) with `changes`."""
    if isinstance(form_or_fn, str):
        fn, make, _ = FORMS[form_or_fn]
        kw = make()
        kw.update(changes)
    else:
        fn, kw = form_or_fn, dict(changes)
    kw = {k: v for k, v in kw.items() if v is not DROP}
    BAD.append(Bad(id, fn, kw, exc, match))


def esc(v):
    return re.escape(str(v))


# --- 1. non-numeric dtypes for every array argument --------------------------------------

def _bad_dtype_values(good):
    shape = np.shape(good)
    return {
        "object": np.asarray(good).astype(object),
        "string": np.full(shape, "a"),
        "bytes": np.full(shape, b"ab"),
        "complex": np.asarray(good).astype(np.complex128),
        "complex64": np.asarray(good).astype(np.complex64),
        "structured": np.zeros(shape, dtype=[("re", "<f8"), ("im", "<f8")]),
        "datetime": np.zeros(shape, dtype="datetime64[s]"),
    }


for form, (fn, make, arrays) in FORMS.items():
    for arg in arrays:
        for kind, value in _bad_dtype_values(make()[arg]).items():
            # the message names the argument and the dtype it got
            bad(f"{form}-{arg}-{kind}", form, TypeError,
                rf"\b{arg}\b.*{re.escape(str(value.dtype))}", **{arg: value})
        # a ragged nested list: not an array at all
        bad(f"{form}-{arg}-ragged", form, TypeError,
            rf"\b{arg}\b.*(inhomogeneous|dtype object)", **{arg: [[1, 2], [3]]})

# nll_loss takes class indices only
bad("nll_loss-float-target", "nll_loss", TypeError, r"\btarget\b.*float64",
    target=_t().astype(np.float64))
bad("nll_loss-probabilities", "nll_loss", TypeError, r"\btarget\b.*float64", target=_p())
bad("nll_loss-bool-target", "nll_loss", TypeError, r"\btarget\b.*bool",
    target=np.array([True, False, True, False]))

# --- 2. wrong number of dimensions --------------------------------------------------------

for form in CLASS_FORMS:
    bad(f"{form}-input-0d", form, ValueError, r"\binput\b.*scalar", input=np.float64(1.0),
        target=np.array(0) if form != "cross_entropy_prob" else np.array(1.0), weight=DROP)
    bad(f"{form}-weight-2d", form, ValueError, r"\bweight\b.*\(1, 5\)", weight=np.ones((1, 5)))
    bad(f"{form}-weight-0d", form, ValueError, r"\bweight\b.*\(\)", weight=np.float64(1.0))
for form in ["nll_loss", "cross_entropy"]:
    bad(f"{form}-target-3d", form, ValueError, r"\btarget\b.*\(4, 1\)",
        target=np.zeros((4, 1), np.int64))
    bad(f"{form}-target-0d", form, ValueError, r"\btarget\b.*\(\)", target=np.array(1))
    bad(f"{form}-target-3d-input", form, ValueError, r"\btarget\b.*\(2, 5\)",
        input=np.zeros((2, 5, 3)), target=np.zeros((2, 5), np.int64))
bad("cross_entropy_prob-target-3d", "cross_entropy_prob", ValueError,
    r"\btarget\b.*\(4, 5, 1\)", target=np.full((4, 5, 1), 0.2))
bad("bce-target-3d", "bce", ValueError, r"\btarget\b.*\(1, 4, 5\)", target=np.zeros((1, 4, 5)))
bad("bce-weight-3d", "bce", ValueError, r"(?<!pos_)weight\b.*\(2, 4, 5\)",
    weight=np.ones((2, 4, 5)))
bad("bce-pos_weight-3d", "bce", ValueError, r"\bpos_weight\b.*\(2, 4, 5\)",
    pos_weight=np.ones((2, 4, 5)))
bad("gaussian-target-3d", "gaussian", ValueError, r"\btarget\b.*\(2, 4, 5\)",
    target=np.zeros((2, 4, 5)))
bad("gaussian-var-3d", "gaussian", ValueError, r"\bvar\b.*\(4, 5, 1\)", var=np.ones((4, 5, 1)))
bad("gaussian-var-1d", "gaussian", ValueError, r"\bvar\b.*\(5,\)", var=np.ones(5))
for form in ["poisson", "kl_div"]:
    bad(f"{form}-target-3d", form, ValueError, r"\btarget\b.*\(2, 4, 5\)",
        target=np.zeros((2, 4, 5)))
# a 0-d array has axes 0 and -1 only (as in SciPy), and the message says it is 0-d
for form in ["logsumexp", "softmax", "log_softmax", "entropy"]:
    first = FORMS[form][2][0]
    for ax in (1, -2):
        bad(f"{form}-0d-axis{ax}", form, ValueError,
            rf"\baxis {ax}\b.*out of bounds.*dimension 0",
            **{first: np.float64(1.0), "axis": ax, **({"b": DROP} if form == "logsumexp" else
                                                      {"qk": DROP} if form == "entropy" else {})})

# --- 3. mismatched shapes -----------------------------------------------------------------

for form in ["nll_loss", "cross_entropy"]:
    for tshape in [(3,), (5,)]:
        bad(f"{form}-target-shape{tshape}", form, ValueError,
            rf"\btarget\b.*{esc(tshape)}.*\(4, 5\)", target=np.zeros(tshape, np.int64))
    bad(f"{form}-target-shape-axis0", form, ValueError, r"\btarget\b.*\(4,\).*axis 0",
        target=np.zeros(4, np.int64), axis=0, weight=DROP)
for form in CLASS_FORMS:
    for n in (4, 6, 0):
        bad(f"{form}-weight-len{n}", form, ValueError, rf"\bweight\b.*\({n},\)",
            weight=np.ones(n))
for tshape in [(4, 4), (5, 4), (4,), (20,)]:
    bad(f"cross_entropy_prob-target-shape{tshape}", "cross_entropy_prob", ValueError,
        rf"\btarget\b.*{esc(tshape)}.*\(4, 5\)", target=np.full(tshape, 0.2))
bad("cross_entropy_prob-target-axis0", "cross_entropy_prob", ValueError,
    r"\btarget\b.*\(5, 4\)", target=np.full((5, 4), 0.2), axis=0)
for bshape in [(3, 5), (4,)]:
    bad(f"logsumexp-b-shape{bshape}", "logsumexp", ValueError,
        rf"\bb\b.*{esc(bshape)}.*\(4, 5\)", b=np.ones(bshape))
for tshape in [(4,), (5,), (4, 1)]:     # the same shape, as in PyTorch (no broadcasting)
    bad(f"bce-target-shape{tshape}", "bce", ValueError, rf"\btarget\b.*{esc(tshape)}",
        target=np.zeros(tshape))
for name in ("weight", "pos_weight"):
    for wshape in [(4,), (3, 5)]:
        bad(f"bce-{name}-shape{wshape}", "bce", ValueError,
            rf"(?<!pos_){name}\b.*{esc(wshape)}", **{name: np.ones(wshape)})
for form in ["gaussian", "poisson", "kl_div"]:
    for tshape in [(4,), (3, 5)]:
        bad(f"{form}-target-shape{tshape}", form, ValueError,
            rf"\btarget\b.*{esc(tshape)}.*\(4, 5\)", target=np.zeros(tshape))
for vshape in [(3, 5), (4, 4), (4, 5, 2)]:
    bad(f"gaussian-var-shape{vshape}", "gaussian", ValueError, rf"\bvar\b.*{esc(vshape)}",
        var=np.ones(vshape))
for qshape in [(4,), (3, 5)]:
    bad(f"entropy-qk-shape{qshape}", "entropy", ValueError, rf"\bqk\b.*{esc(qshape)}",
        qk=np.ones(qshape))

# --- 4. class targets out of range ----------------------------------------------------------

U64_MAX = np.iinfo(np.uint64).max
TARGET_VALUES = [
    ("C", 5, np.int64), ("C+1", 6, np.int64), ("neg1", -1, np.int64),
    ("neg101", -101, np.int64), ("2pow40", 2 ** 40, np.int64), ("neg2pow40", -2 ** 40, np.int64),
    ("int64max", 2 ** 63 - 1, np.int64), ("int64min", -2 ** 63, np.int64),
    ("uint64max", U64_MAX, np.uint64), ("2pow63", 2 ** 63, np.uint64),
    ("uint8", 200, np.uint8), ("int8", -3, np.int8), ("uint32", 5, np.uint32),
    # Python ints in a list: beyond 64 bits NumPy stores them as float64 or object
    ("list-uint64max", U64_MAX, list), ("list-2pow70", 2 ** 70, list),
    ("list-neg2pow70", -2 ** 70, list), ("list-int64min-1", -2 ** 63 - 1, list),
]
for form in ["nll_loss", "cross_entropy"]:
    for label, v, dt in TARGET_VALUES:
        t = [0, 1, v, 2] if dt is list else np.array([0, 1, v, 2], dtype=dt)
        pattern = rf"\btarget {re.escape(str(v))} is out of bounds for 5 classes"
        bad(f"{form}-target-{label}", form, IndexError, pattern, target=t)
        if dt is not list:   # the (N, C, d) layout, no reduction, with the gradient
            t3 = np.zeros((2, 3), dtype=dt)
            t3[1, 2] = v
            bad(f"{form}-target-{label}-3d-none-grad", form, IndexError, pattern,
                input=np.zeros((2, 5, 3)), target=t3, reduction="none", return_grad=True)
    bad(f"{form}-target-minus100-not-ignored", form, IndexError,
        r"\btarget -100 is out of bounds.*ignore_index=3", target=np.array([0, -100, 1, 1]),
        ignore_index=3)
    bad(f"{form}-target-zero-classes", form, IndexError,
        r"\btarget 0 is out of bounds for 0 classes", input=np.zeros((2, 0)),
        target=np.zeros(2, np.int64), weight=DROP)

# --- 5. weights -----------------------------------------------------------------------------

for form in CLASS_FORMS:
    w = _w()
    w[2] = -2.5
    bad(f"{form}-weight-negative", form, ValueError, r"\bweight\b.*-2\.5", weight=w)
    w = _w()
    w[3] = -np.inf
    bad(f"{form}-weight-neginf", form, ValueError, r"\bweight\b.*-inf", weight=w)
    bad(f"{form}-weight-negative-list", form, ValueError, r"\bweight\b.*-0\.5",
        weight=[1.0, 1.0, 1.0, -0.5, 1.0])
# a negative weight of a class that no target uses
bad("nll_loss-weight-negative-unused", "nll_loss", ValueError, r"\bweight\b.*-1\.0",
    target=np.zeros(4, np.int64), weight=np.array([1.0, 1.0, -1.0, 1.0, 1.0]))
for name in ("weight", "pos_weight"):
    bad(f"bce-{name}-negative", "bce", ValueError, rf"(?<!pos_){name}\b.*-2\.5",
        **{name: np.array([1.0, 2.0, -2.5, 1.0, 1.0], np.float32)})

# --- 6. reductions --------------------------------------------------------------------------

for form in REDUCING:
    values = ["avg", "MEAN", "", None, 1, "elementwise_mean"]
    if form != "kl_div":
        values.append("batchmean")
    for r in values:
        bad(f"{form}-reduction-{r!r}", form, ValueError, rf"\breduction\b.*{re.escape(repr(r))}",
            reduction=r)
    bad(f"{form}-reduction-grad", form, ValueError, r"\breduction\b.*'sum '",
        reduction="sum ", return_grad=True)

# --- 7. axes --------------------------------------------------------------------------------

for form in ["logsumexp", "softmax", "log_softmax"]:
    for ax in (2, -3, 10):
        bad(f"{form}-axis{ax}", form, ValueError, rf"\baxis {ax} is out of bounds", axis=ax)
    bad(f"{form}-axis-in-tuple", form, ValueError, r"\baxis 2 is out of bounds", axis=(0, 2))
    for ax in [(0, 0), (1, -1), (0, 1, 0)]:
        bad(f"{form}-axis-dup{ax}", form, ValueError,
            rf"duplicate.*\baxis\b.*{re.escape(repr(ax))}", axis=ax)
    for ax in (1.5, "1", True):
        bad(f"{form}-axis-{ax!r}", form, TypeError, rf"\baxis\b.*{re.escape(repr(ax))}",
            axis=ax)
for form in CLASS_FORMS + ["entropy"]:
    for ax in (2, -3):
        bad(f"{form}-axis{ax}", form, ValueError, rf"\baxis {ax} is out of bounds", axis=ax)
    # the class axis is one axis: a tuple (repeated or not) is refused by type
    for ax in [(0, 1), (1, 1), 1.5, True]:
        bad(f"{form}-axis-{ax!r}", form, TypeError, rf"\baxis\b.*{re.escape(repr(ax))}",
            axis=ax)

# --- 8. options: label_smoothing, ignore_index, var, eps, entropy's pk/qk/base -----------------

for form in ["cross_entropy", "cross_entropy_prob"]:
    for eps in (-0.1, 1.5, -1e-12, 1.0000001, float("nan"), float("inf"), float("-inf")):
        bad(f"{form}-label_smoothing-{eps!r}", form, ValueError,
            rf"\blabel_smoothing\b.*{re.escape(repr(eps))}", label_smoothing=eps)
    for eps in ("0.1", None, True, [0.1]):
        bad(f"{form}-label_smoothing-{eps!r}", form, TypeError,
            rf"\blabel_smoothing\b.*{re.escape(repr(eps))}", label_smoothing=eps)
for form in CLASS_FORMS:
    for ii, exc in ((1.5, TypeError), (True, TypeError), ("x", TypeError), (None, TypeError),
                    (2 ** 64, ValueError), (-2 ** 63 - 1, ValueError)):
        bad(f"{form}-ignore_index-{ii!r}", form, exc,
            rf"\bignore_index\b.*{re.escape(repr(ii))}", ignore_index=ii)
for label, var, shown in (("scalar", -1.0, "-1.0"), ("tiny", -1e-300, "-1e-300"),
                          ("full", np.where(_pos() > 0.5, -0.5, 1.0), "-0.5"),
                          ("nolast-f32", np.array([1, 1, -0.25, 1], np.float32), "-0.25"),
                          ("neginf", np.full((4, 1), -np.inf), "-inf")):
    bad(f"gaussian-var-negative-{label}", "gaussian", ValueError,
        rf"\bvar\b.*{re.escape(shown)}", var=var)
for form in ["gaussian", "poisson"]:
    for e in ("a", None, [1e-6]):
        bad(f"{form}-eps-{e!r}", form, TypeError, rf"\beps\b.*{re.escape(repr(e))}", eps=e)
for name in ("pk", "qk"):
    neg = _p()
    neg[2, 3] = -0.375
    bad(f"entropy-{name}-negative", "entropy", ValueError, rf"\b{name}\b.*-0\.375",
        **{name: neg})
    bad(f"entropy-{name}-negative-axis0", "entropy", ValueError, rf"\b{name}\b.*-0\.375",
        axis=0, **{name: neg})
bad("entropy-pk-negative-alone", "entropy", ValueError, r"\bpk\b.*-1\.0", pk=[1.0, -1.0, 2.0],
    qk=DROP, axis=0)
for base in (0, -2, -0.5, float("nan")):
    bad(f"entropy-base-{base!r}", "entropy", ValueError, rf"\bbase\b.*{re.escape(repr(base))}",
        base=base)
for base in ("e", [2.0]):
    bad(f"entropy-base-{base!r}", "entropy", TypeError, rf"\bbase\b.*{re.escape(repr(base))}",
        base=base)

# --- 9. thread counts -----------------------------------------------------------------------

for fn in (fastnll.set_num_threads, _enter_threads):
    name = "set_num_threads" if fn is fastnll.set_num_threads else "threads"
    for n in (0, -1, 4097, 2 ** 70):
        bad(f"{name}-{n}", fn, ValueError, rf"\bthreads\b.*\bgot {n}\b", n=n)
    for n in (1.5, "2", True, np.bool_(True), [2]) + ((None,) if name == "threads" else ()):
        bad(f"{name}-{n!r}", fn, TypeError, rf"\bthreads\b.*{re.escape(repr(n))}", n=n)

for mode in ("json", "", None, 1):
    bad(f"show_config-{mode!r}", fastnll.show_config, ValueError,
        rf"\bmode\b.*{re.escape(repr(mode))}", mode=mode)


# ------------------------------------------------------------------------ the checks ----

def _arrays(obj):
    """Every ndarray inside obj (dicts, lists, tuples)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v)


def _snapshot(kwargs):
    return [(a, a.copy()) for a in _arrays(kwargs)], copy.deepcopy(
        {k: v for k, v in kwargs.items() if isinstance(v, list)})


def _assert_unchanged(kwargs, snap):
    arrays, lists = snap
    for a, before in arrays:
        assert a.dtype == before.dtype and a.shape == before.shape
        assert a.tobytes() == before.tobytes(), "an input array was written"
    for k, v in lists.items():
        assert kwargs[k] == v, f"the list passed as {k} was changed"


def test_every_function_and_argument_has_cases():
    ids = [c.id for c in BAD]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    public = {n for n in fastnll.__all__ if callable(getattr(fastnll, n))}
    covered = {c.fn.__name__ for c in BAD} - {"_enter_threads"}
    covered.add("threads")
    assert public - {"get_num_threads"} <= covered, public - covered   # it takes no argument
    for form, (_, _, arrays) in FORMS.items():
        for arg in arrays:
            assert f"{form}-{arg}-structured" in ids


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input(case):
    kwargs = copy.deepcopy(case.kwargs)
    snap = _snapshot(kwargs)
    threads_before = fastnll.get_num_threads()
    setting = fastnll._threads._setting
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # a clean error, not a numpy warning first
            with pytest.raises(case.exc) as info:
                case.fn(**kwargs)
    finally:
        fastnll._threads._setting = setting       # in case a bad count was accepted
    msg = str(info.value)
    assert re.search(case.match, msg), f"{msg!r} does not match {case.match!r}"
    _assert_unchanged(kwargs, snap)
    assert fastnll.get_num_threads() == threads_before


# ============================================================ not errors: oracle results ====
# Empty inputs give the SciPy / PyTorch result rather than an error, and nan in the data
# propagates as in PyTorch (nan in probability targets, class weights, variances: PyTorch
# returns nan, and so does fastnll; only arguments that are not data, such as label_smoothing,
# are refused when nan).

def _torch():
    return pytest.importorskip("torch")


def _tt(a):
    return _torch().tensor(np.asarray(a, dtype=np.float64))


def _np_lse(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b exp(a))) straight from the definition (fine for the small values here)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.ones_like(a) if b is None else np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore"):
        s = np.sum(b * np.exp(a), axis=axis, keepdims=keepdims)
        res = np.log(np.abs(s))
    return (res, np.sign(s)) if return_sign else np.where(s < 0, np.nan, res)


def _scipy_lse(**kw):
    kw = {k: np.asarray(v, np.float64) if k in "ab" else v for k, v in kw.items()}
    try:
        return scipy.special.logsumexp(**kw)
    except ValueError:
        if np.asarray(kw["a"]).size:
            raise
        return _np_lse(**kw)     # older SciPy raises on empty input instead of giving -inf


def _np_softmax(x, axis, log):
    x = np.asarray(x, dtype=np.float64)
    lse = _np_lse(x, axis=axis, keepdims=True) if x.size else np.zeros_like(x)
    return x - lse if log else np.exp(x - lse)


def _torch_softmax(x, axis, log):
    t = _tt(x)
    out = (_torch().log_softmax if log else _torch().softmax)(t, dim=axis)
    return out.numpy()


def _torch_class(kind):
    def oracle(input, target, reduction="mean", axis=None, weight=None, return_grad=True,
               **kw):
        return torch_loss(_torch(), kind, input, target, weight=weight, reduction=reduction,
                          axis=axis, **kw)
    return oracle


def _torch_elementwise(name):
    """(loss, grad) of torch.nn.functional.<name> with autograd (gaussian: (gx, gvar))."""
    def oracle(input, target, reduction="mean", return_grad=True, var=None, **kw):
        torch = _torch()
        fn = getattr(torch.nn.functional, name)
        x = _tt(input).requires_grad_(True)
        args = [x, _tt(target)]
        v = None
        if var is not None:
            v = _tt(var).requires_grad_(True)
            if np.ndim(var) == 0:                     # PyTorch wants a tensor of a fitting shape
                args.append(v.expand(x.shape))
            elif np.shape(var) == np.shape(input)[:-1]:
                args.append(v.unsqueeze(-1))
            else:
                args.append(v)
        kw = {k: (_tt(a) if isinstance(a, np.ndarray) else a) for k, a in kw.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")           # kl_div's note about "mean"
            loss = fn(*args, reduction=reduction, **kw)
        loss.sum().backward()
        gx = x.grad.numpy() if x.grad is not None else np.zeros(np.shape(input))
        if v is None:
            return loss.detach().numpy(), gx
        gv = v.grad.numpy() if v.grad is not None else np.zeros(np.shape(var))
        return loss.detach().numpy(), (gx, gv)
    return oracle


def _scipy_entropy(pk, qk=None, base=None, axis=0):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return scipy.stats.entropy(np.asarray(pk, np.float64),
                                   None if qk is None else np.asarray(qk, np.float64),
                                   base=base, axis=axis)


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
        _scipy_lse if ref == "scipy" else _np_lse))
    # with b and return_sign: the sign of an empty sum is 0 (SciPy 1.17 says -1 there, but 0
    # for a sum of zero-weighted terms, which is what the definition gives)
    ORACLE.append(Oracle(
        f"logsumexp-empty{shape}-axis{axis}-b-sign", F.logsumexp,
        lambda dt, shape=shape, axis=axis: dict(a=np.zeros(shape, dt), b=np.ones(shape, dt),
                                                axis=axis, return_sign=True),
        _np_lse))
for name in ("softmax", "log_softmax"):
    log = name == "log_softmax"
    for shape, axis in [((0,), None), ((0,), 0), ((3, 0), 1), ((3, 0), 0), ((0, 3), 1),
                        ((0, 3), None), ((2, 0, 3), 1), ((2, 0, 3), (0, 2)), ((2, 3, 0), -1)]:
        use_torch = isinstance(axis, int)
        ORACLE.append(Oracle(
            f"{name}-empty{shape}-axis{axis}", getattr(F, name),
            lambda dt, shape=shape, axis=axis: dict(x=np.zeros(shape, dt), axis=axis),
            (lambda x, axis, log=log: _torch_softmax(x, axis, log)) if use_torch else
            (lambda x, axis, log=log: _np_softmax(x, axis, log))))

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
                _torch_class(kind)))
for xshape, axis in [((0, 5), None), ((0, 5, 3), None), ((3, 0), None), ((0,), None),
                     ((2, 5, 0), None), ((4, 0, 5), -1)]:
    for red in ("mean", "sum", "none"):
        ORACLE.append(Oracle(
            f"cross_entropy_prob-empty{xshape}-{red}", F.cross_entropy,
            lambda dt, xshape=xshape, axis=axis, red=red: dict(
                input=np.zeros(xshape, dt), target=np.zeros(xshape, dt), axis=axis,
                reduction=red, return_grad=True),
            _torch_class("ce")))

# --- elementwise likelihoods --------------------------------------------------------------------
for shape in [(0,), (0, 3), (3, 0), (2, 0, 3)]:
    for red in ("mean", "sum", "none"):
        ORACLE.append(Oracle(
            f"bce-empty{shape}-{red}", F.binary_cross_entropy_with_logits,
            lambda dt, shape=shape, red=red: dict(
                input=np.zeros(shape, dt), target=np.zeros(shape, dt), weight=np.ones(shape, dt),
                pos_weight=np.ones(shape[-1:], dt), reduction=red, return_grad=True),
            _torch_elementwise("binary_cross_entropy_with_logits")))
        for vkind in ("full", "nolast", "scalar"):
            vshape = {"full": shape, "nolast": shape[:-1], "scalar": ()}[vkind]
            ORACLE.append(Oracle(
                f"gaussian-empty{shape}-var-{vkind}-{red}", F.gaussian_nll_loss,
                lambda dt, shape=shape, vshape=vshape, red=red: dict(
                    input=np.zeros(shape, dt), target=np.zeros(shape, dt),
                    var=np.ones(vshape, dt), full=True, reduction=red, return_grad=True),
                _torch_elementwise("gaussian_nll_loss")))
        for log_input in (True, False):
            ORACLE.append(Oracle(
                f"poisson-empty{shape}-log{log_input}-{red}", F.poisson_nll_loss,
                lambda dt, shape=shape, red=red, li=log_input: dict(
                    input=np.ones(shape, dt), target=np.ones(shape, dt), log_input=li,
                    full=True, reduction=red, return_grad=True),
                _torch_elementwise("poisson_nll_loss")))
    for red in ("mean", "sum", "none", "batchmean"):
        for log_target in (False, True):
            ORACLE.append(Oracle(
                f"kl_div-empty{shape}-logt{log_target}-{red}", F.kl_div,
                lambda dt, shape=shape, red=red, lt=log_target: dict(
                    input=np.zeros(shape, dt), target=np.zeros(shape, dt), log_target=lt,
                    reduction=red, return_grad=True),
                _torch_elementwise("kl_div")))

# --- entropy --------------------------------------------------------------------------------
for pshape, qshape, axis, base in [((0,), None, 0, None), ((0, 3), None, 0, None),
                                   ((0, 3), None, 1, None), ((2, 0), None, None, None),
                                   ((0,), (0,), 0, None), ((0, 3), (0, 3), 0, 2.0),
                                   ((3, 0), (3, 0), 1, 2.0), ((2, 0, 3), (0, 3), -2, None)]:
    ORACLE.append(Oracle(
        f"entropy-empty{pshape}-{qshape}-axis{axis}", F.entropy,
        lambda dt, p=pshape, q=qshape, axis=axis, base=base: dict(
            pk=np.ones(p, dt), qk=None if q is None else np.ones(q, dt), axis=axis, base=base),
        _scipy_entropy))

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
        _torch_class("ce")))
    ORACLE.append(Oracle(
        f"cross_entropy_prob-nan-weight-{red}", F.cross_entropy,
        lambda dt, red=red: dict(input=np.linspace(-1, 1, 12).reshape(3, 4).astype(dt),
                                 target=np.full((3, 4), 0.25, dt),
                                 weight=np.array([1.0, 2.0, np.nan, 1.0], dt),
                                 reduction=red, return_grad=True),
        _torch_class("ce")))
    for kind, name in (("nll", "nll_loss"), ("ce", "cross_entropy")):
        ORACLE.append(Oracle(
            f"{name}-nan-weight-{red}", getattr(F, name),
            lambda dt, red=red: dict(input=np.linspace(-2, 0, 12).reshape(3, 4).astype(dt),
                                     target=np.array([0, 2, 3]),
                                     weight=np.array([1.0, 2.0, np.nan, 1.0], dt),
                                     reduction=red, return_grad=True),
            _torch_class(kind)))
    ORACLE.append(Oracle(
        f"gaussian-nan-var-{red}", F.gaussian_nll_loss,
        lambda dt, red=red: dict(input=np.linspace(-1, 1, 6).reshape(2, 3).astype(dt),
                                 target=np.zeros((2, 3), dt),
                                 var=np.array([[1.0, np.nan, 2.0], [0.5, 1.0, 1.0]], dt),
                                 reduction=red, return_grad=True),
        _torch_elementwise("gaussian_nll_loss")))
ORACLE.append(Oracle(
    "entropy-nan-pk", F.entropy,
    lambda dt: dict(pk=np.array([[1.0, np.nan], [1.0, 3.0]], dt), axis=1), _scipy_entropy))


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
    snap = _snapshot(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = case.fn(**kwargs)
    want = case.oracle(**copy.deepcopy(kwargs))
    _compare(got, want, dtype, case.id)
    _assert_unchanged(kwargs, snap)


def test_oracle_ids_unique():
    ids = [c.id for c in ORACLE]
    assert len(ids) == len(set(ids))
