"""Argument errors of every public function in one table: call, argument, exception, message."""
# `BAD` lists Bad(id, function, keyword arguments, expected exception, regex).  The regex is
# searched for in the message (for the systematic sections it finds both the argument's name
# and the offending value: a dtype, a shape, an index, a string).  Each case runs with warnings
# turned into errors, and afterwards every array it passed in must be byte for byte what it
# was before the call, and the thread setting what it was.  Inputs that look odd but are not
# errors (empty arrays, nan in the data) are in test_edge_inputs.py.
import copy
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import fastnll
from helpers import assert_unchanged, snapshot

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
    "linear_cross_entropy": (
        F.linear_cross_entropy,
        lambda: dict(input=_x((4, 3)), linear_weight=_x((5, 3)), target=_t(),
                     linear_bias=_w(), weight=_w()),
        ["input", "linear_weight", "linear_bias", "target", "weight"]),
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


for form, (_fn, make, arrays) in FORMS.items():
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

# Weights of any sign are accepted, as in PyTorch (test_negative_weights.py checks their
# values against it); only their shape can be wrong.

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
                          ("neginf", np.full((4, 1), -np.inf), "-inf"),
                          # (a nan beside it: min() alone returned nan and let it through)
                          ("with-nan", np.array([np.nan, -2.0, 1.0, 1.0]), "-2.0")):
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


# The threads() call checks its argument when called, before any `with`
bad("threads-call-0", fastnll.threads, ValueError, r"got 0", n=0)
bad("threads-call-'2'", fastnll.threads, TypeError, r"\bthreads\b.*'2'", n="2")


def contains_all(*parts):
    """A regex that finds every one of `parts` (literally, in any order)."""
    return "(?s)" + "".join(f"(?=.*{re.escape(str(p))})" for p in parts)


# --- 10. class-target losses: targets, shapes, weights, options in more layouts -------------

X = np.arange(20, dtype=np.float64).reshape(4, 5) / 7.0
T = np.array([0, 4, 2, 1])
P = np.full((4, 5), 0.2)
CLASS_LOSSES = {"nll_loss": F.nll_loss, "cross_entropy": F.cross_entropy}

for name, fn in CLASS_LOSSES.items():
    # an out-of-range target in every arrangement, without and with the per-row gradient
    for v in (5, 17, -1, -7, 99):
        for shape, axis in [((4, 5), None), ((5, 4), 0), ((4, 5, 3), None), ((4, 5, 70), None),
                            ((5,), None)]:
            ax = 0 if len(shape) == 1 else 1 if axis is None else axis
            t = np.zeros(shape[:ax] + shape[ax + 1:], np.int64)
            t.flat[-1] = v
            for extra, kw in (("", {}), ("-none-grad", dict(return_grad=True, reduction="none"))):
                bad(f"{name}-target{v}-{shape}-axis{axis}{extra}", fn, IndexError,
                    rf"\btarget (?<![\d-]){v}(?!\d)", input=np.zeros(shape), target=t,
                    axis=axis, **kw)
    # other target dtypes; -100 only while it is the ignore_index
    for label, t, shown in (("uint8", np.array([0, 200, 1, 1], np.uint8), "200"),
                            ("int8", np.array([0, 1, -3, 1], np.int8), "-3"),
                            ("uint64", np.array([0, 2 ** 63 + 5, 1, 1], np.uint64),
                             str(2 ** 63 + 5)),
                            ("minus100-ignore3", np.array([0, -100, 1, 1]), "-100")):
        bad(f"{name}-X-target-{label}", fn, IndexError, rf"\btarget {re.escape(shown)}\b",
            input=X, target=t, **(dict(ignore_index=3) if label.endswith("3") else {}))
    # non-integer targets
    if name == "nll_loss":
        bad(f"{name}-X-float-target", fn, TypeError, r"\btarget\b.*float64", input=X,
            target=T.astype(np.float64))
        bad(f"{name}-X-probabilities", fn, TypeError, r"\btarget\b.*float64", input=X, target=X)
    else:   # a float target shaped like the class indices: a shape error
        bad(f"{name}-X-float-target", fn, ValueError, r"\btarget\b.*" + re.escape("(4,)"),
            input=X, target=T.astype(np.float64))
        bad(f"{name}-X-float32-target-none", fn, ValueError, r"\btarget\b.*\(4,\)", input=X,
            target=T.astype(np.float32), reduction="none")
    bad(f"{name}-X-string-target", fn, TypeError, r"\btarget\b",
        input=X, target=np.array(["a", "b", "c", "d"]))
    bad(f"{name}-X-object-target", fn, TypeError, r"\btarget\b", input=X, target=T.astype(object))
    # target shapes that do not fit the input: the message shows both
    for xshape, tshape, axis in [((4, 5), (3,), None), ((4, 5), (4, 1), None),
                                 ((4, 5), (5,), None), ((4, 5, 3), (4, 5), None),
                                 ((4, 5, 3), (3, 4), None), ((2, 3, 6), (2, 6), -1),
                                 ((6,), (1,), None), ((4, 5), (), None)]:
        bad(f"{name}-shapes-{xshape}-{tshape}-axis{axis}", fn, ValueError,
            contains_all("target", xshape, tshape), input=np.zeros(xshape),
            target=np.zeros(tshape, np.int64), axis=axis)
    bad(f"{name}-scalar-input", fn, ValueError, r"\binput\b.*scalar", input=np.float64(1.0),
        target=np.array(0))
    for r in ("avg", "MEAN", "", None, "elementwise_mean", 1):
        for extra, kw in (("", {}), ("-grad", dict(return_grad=True))):
            bad(f"{name}-X-reduction-{r!r}{extra}", fn, ValueError,
                rf"\breduction\b.*{re.escape(repr(r))}", input=X, target=T, reduction=r, **kw)
    for ax in (2, -3, 5):
        bad(f"{name}-X-axis{ax}", fn, ValueError, rf"\baxis {ax} is out of bounds", input=X,
            target=T, axis=ax)
    for w in (np.ones(4), np.ones(6), np.ones(0), np.ones((5, 1)), np.ones((1, 5)),
              np.float64(1.0)):
        bad(f"{name}-X-weight-shape{np.shape(w)}", fn, ValueError,
            rf"\bweight\b.*{re.escape(str(np.shape(w)))}", input=X, target=T, weight=w)

# probability targets
for tshape in [(4, 4), (5, 4), (4, 5, 1), (20,)]:
    bad(f"cross_entropy-X-prob-target-shape{tshape}", F.cross_entropy, ValueError,
        contains_all("target", "(4, 5)", tshape), input=X, target=np.full(tshape, 0.2))
bad("cross_entropy-X-prob-reduction-batchmean", F.cross_entropy, ValueError,
    r"\breduction\b.*'batchmean'", input=X, target=P, reduction="batchmean")
for ax in (2, -3, 5):
    bad(f"cross_entropy-X-prob-axis{ax}", F.cross_entropy, ValueError,
        rf"\baxis {ax} is out of bounds", input=X, target=P, axis=ax)
for eps in (-0.1, 1.5, -1e-12, 1.0000001, float("nan"), float("inf")):
    for label, t in (("", T), ("-prob", P)):
        bad(f"cross_entropy-X{label}-label_smoothing-{eps!r}", F.cross_entropy, ValueError,
            rf"\blabel_smoothing\b.*{re.escape(repr(eps))}", input=X, target=t,
            label_smoothing=eps)
# PyTorch: "ignore_index is not supported for floating point target" (negative ones pass)
for ii in (0, 3, 7):
    bad(f"cross_entropy-X-prob-ignore_index-{ii}", F.cross_entropy, ValueError,
        contains_all("ignore_index", str(ii), "probability"), input=X, target=P,
        ignore_index=ii)
bad("cross_entropy-X-prob-weight-len4", F.cross_entropy, ValueError, r"\bweight\b.*\(4,\)",
    input=X, target=P, weight=np.ones(4))
bad("cross_entropy-complex-prob-target", F.cross_entropy, (TypeError, ValueError),
    r"\btarget\b", input=np.zeros((2, 2)), target=np.array([[1 + 2j, 0j], [1j, 2.0 + 0j]]))

# the compiled shortcut's calls (2-D float32, int64 targets) raise like the general path
for name, fn in CLASS_LOSSES.items():
    for return_grad in (False, True):
        t = np.zeros(40, np.int64)
        t[17] = 5
        bad(f"{name}-shortcut-target5-grad{return_grad}", fn, IndexError,
            r"target 5 is out of bounds for 5 classes", input=np.zeros((40, 5), np.float32),
            target=t, return_grad=return_grad)
        t = t.copy()
        t[17] = -3
        bad(f"{name}-shortcut-target-3-none-grad{return_grad}", fn, IndexError,
            r"target -3 is out of bounds", input=np.zeros((40, 5), np.float32), target=t,
            reduction="none", return_grad=return_grad)

# --- 11. softmax family: axes, b -------------------------------------------------------------

for name in ("logsumexp", "softmax", "log_softmax"):
    fn = getattr(F, name)
    first = FORMS[name][2][0]
    for ax in (2, -3, 10, (0, 2), (-3,)):
        bad(f"{name}-X-axis{ax}", fn, ValueError,
            rf"\baxis {re.escape(str(np.atleast_1d(ax)[-1]))} is out of bounds",
            **{first: X, "axis": ax})
    for ax in ((0, 0), (1, -1), (0, 1, 0)):
        bad(f"{name}-X-axis-dup{ax}", fn, ValueError,
            rf"duplicate.*\baxis\b.*{re.escape(repr(ax))}", **{first: X, "axis": ax})
    bad(f"{name}-3d-axis-dup(2, -1)", fn, ValueError, r"duplicate.*\baxis\b.*\(2, -1\)",
        **{first: np.zeros((2, 3, 4)), "axis": (2, -1)})
bad("logsumexp-X-b-shape(3, 5)", F.logsumexp, ValueError, contains_all("b", "(4, 5)", "(3, 5)"),
    a=X, b=np.ones((3, 5)))
bad("logsumexp-X-b-shape(4,)-axis1", F.logsumexp, ValueError, contains_all("b", "(4,)"), a=X,
    b=np.ones(4), axis=1)

# --- 12. non-numeric values (and None) as every array argument, in other shapes --------------

NON_NUMERIC = {
    "strings": np.array([["a", "b"], ["c", "d"]]),
    "string_list": [["a", "b"], ["c", "d"]],
    "objects": np.array([[object(), object()], [object(), object()]], dtype=object),
    "complex": np.array([[1 + 2j, 0j], [1j, 2.0 + 0j]]),
    "complex64": np.array([[1 + 2j, 0j], [1j, 2.0 + 0j]], dtype=np.complex64),
    "none": None,
    "datetime": np.array([["2020-01-01", "2020-01-02"]] * 2, dtype="datetime64[D]"),
}
for key, v in NON_NUMERIC.items():
    for name in ("logsumexp", "softmax", "log_softmax"):
        first = FORMS[name][2][0]
        bad(f"{name}-non-numeric-{key}", getattr(F, name), TypeError, rf"\b{first}\b",
            **{first: v, "axis": 1 if key != "none" else None})
    for name, fn in CLASS_LOSSES.items():
        bad(f"{name}-non-numeric-input-{key}", fn, TypeError, r"\binput\b", input=v,
            target=np.array([0, 1]))
for key in ("strings", "objects", "complex"):
    bad(f"logsumexp-non-numeric-b-{key}", F.logsumexp, TypeError, r"\bb\b",
        a=np.zeros((2, 2)), b=NON_NUMERIC[key])
    for name, fn in CLASS_LOSSES.items():
        bad(f"{name}-non-numeric-weight-{key}", fn, TypeError, r"\bweight\b",
            input=np.zeros((2, 2)), target=np.array([0, 1]), weight=NON_NUMERIC[key][0])

OK3 = np.ones(3)
ELEMENTWISE_ARGS = {
    "bce_input": (F.binary_cross_entropy_with_logits, "input", dict(target=OK3)),
    "bce_target": (F.binary_cross_entropy_with_logits, "target", dict(input=OK3)),
    "bce_weight": (F.binary_cross_entropy_with_logits, "weight", dict(input=OK3, target=OK3)),
    "bce_pos_weight": (F.binary_cross_entropy_with_logits, "pos_weight",
                       dict(input=OK3, target=OK3)),
    "gauss_input": (F.gaussian_nll_loss, "input", dict(target=OK3, var=OK3)),
    "gauss_target": (F.gaussian_nll_loss, "target", dict(input=OK3, var=OK3)),
    "gauss_var": (F.gaussian_nll_loss, "var", dict(input=OK3, target=OK3)),
    "poisson_input": (F.poisson_nll_loss, "input", dict(target=OK3)),
    "poisson_target": (F.poisson_nll_loss, "target", dict(input=OK3)),
    "kl_input": (F.kl_div, "input", dict(target=OK3)),
    "kl_target": (F.kl_div, "target", dict(input=OK3)),
    "entropy_pk": (F.entropy, "pk", {}),
    "entropy_qk": (F.entropy, "qk", dict(pk=OK3)),
}
for where, (fn, arg, good) in ELEMENTWISE_ARGS.items():
    for label, v in (("string", "abc"), ("strings", ["a", "b", "c"]),
                     ("object", np.array([1.0, None, 2.0], dtype=object)),
                     ("complex", np.ones(3, dtype=complex)), ("ragged", [[1.0, 2.0], [3.0]])):
        bad(f"{where}-non-numeric-{label}", fn, TypeError,
            r"(?<!pos_)" + rf"\b{arg}\b" if arg == "weight" else rf"\b{arg}\b",
            **good, **{arg: v})

# --- 13. elementwise likelihoods and entropy: shapes, values, options -------------------------

X23 = np.zeros((2, 3))
ELEMENTWISE = {
    "bce": (F.binary_cross_entropy_with_logits, {}),
    "gauss": (F.gaussian_nll_loss, dict(var=1.0)),
    "poisson": (F.poisson_nll_loss, {}),
    "kl": (F.kl_div, {}),
}
for name, (fn, more) in ELEMENTWISE.items():
    for r in ("bogus", "Mean", "", None, 1):
        bad(f"{name}-X23-reduction-{r!r}", fn, ValueError, contains_all("reduction", repr(r)),
            input=X23, target=X23, reduction=r, **more)
    if name != "kl":
        bad(f"{name}-X23-reduction-batchmean", fn, ValueError, r"batchmean", input=X23,
            target=X23, reduction="batchmean", **more)
for tshape in [(3,), (2, 1), (1, 2, 3), (3, 2), (2, 4)]:
    bad(f"bce-X23-target-shape{tshape}", F.binary_cross_entropy_with_logits, ValueError,
        contains_all("target", (2, 3), tshape), input=X23, target=np.zeros(tshape))
for name in ("weight", "pos_weight"):
    for wshape in [(2,), (4,), (1, 2, 3), (3, 3), (2, 1, 1)]:
        bad(f"bce-X23-{name}-shape{wshape}", F.binary_cross_entropy_with_logits, ValueError,
            contains_all(name, (2, 3), wshape), input=X23, target=X23, **{name: np.ones(wshape)})
for name, (fn, more) in ELEMENTWISE.items():
    if name == "bce":
        continue
    for tshape in [(2,), (4,), (1, 2, 3), (3, 3), (2, 3, 1)]:
        bad(f"{name}-X23-target-shape{tshape}", fn, ValueError,
            contains_all("target", (2, 3), tshape), input=X23, target=np.zeros(tshape), **more)
for vshape in [(2, 1, 1), (1, 3, 1), (3, 4), (4,), (2, 3, 5), (2, 3, 4, 1), (3,), (2, 2, 4),
               (1, 1, 1)]:
    bad(f"gauss-X234-var-shape{vshape}", F.gaussian_nll_loss, ValueError,
        contains_all("var", (2, 3, 4), vshape), input=np.zeros((2, 3, 4)),
        target=np.zeros((2, 3, 4)), var=np.ones(vshape))
for label, var in (("-1.0", -1.0), ("-1e-300", -1e-300), ("col", np.array([[0.5], [-2.0]])),
                   ("float32", np.array([1.0, 2.0, -3.0], dtype=np.float32))):
    shown = repr(float(np.min(var))).rstrip("0").rstrip(".")
    bad(f"gauss-X23-var-negative-{label}", F.gaussian_nll_loss, ValueError,
        contains_all("var", shown), input=X23, target=X23, var=var)
for which in ("pk", "qk"):
    good = np.array([[0.5, 0.2], [0.3, 0.1]])
    neg = np.array([[0.5, 0.2], [-0.375, 0.1]])
    bad(f"entropy-2x2-{which}-negative", F.entropy, ValueError, contains_all(which, "-0.375"),
        pk=neg if which == "pk" else good, qk=good if which == "pk" else neg, axis=1)
for base in (0, -2, -0.5, 0.0, float("nan")):
    bad(f"entropy-list-base-{base!r}", F.entropy, ValueError, contains_all("base", repr(base)),
        pk=[1.0, 2.0], base=base)
bad("entropy-qk-shape(4,)-of-(2, 3)", F.entropy, ValueError, contains_all("qk", (2, 3), (4,)),
    pk=np.ones((2, 3)), qk=np.ones((4,)))
for ax in (2, -3):
    bad(f"entropy-alone-axis{ax}", F.entropy, ValueError, rf"\baxis {ax} is out of bounds",
        pk=np.ones((2, 3)), axis=ax)
bad("entropy-alone-axis1.5", F.entropy, TypeError, r"\baxis\b.*1\.5", pk=np.ones((2, 3)),
    axis=1.5)

# --- 14. each message names its argument (found by a review) ---------------------------------

for id, fn, kw, exc, words in [
        ("cross_entropy-ignore_index-1.7", F.cross_entropy, dict(ignore_index=1.7), TypeError,
         "ignore_index"),
        ("cross_entropy-ignore_index-'1'", F.cross_entropy, dict(ignore_index="1"), TypeError,
         "ignore_index"),
        ("nll_loss-ignore_index-2**70", F.nll_loss, dict(ignore_index=2 ** 70), ValueError,
         "ignore_index"),
        ("cross_entropy-label_smoothing-'0.5'", F.cross_entropy, dict(label_smoothing="0.5"),
         TypeError, "label_smoothing")]:
    bad(f"named-{id}", fn, exc, words, input=np.zeros((2, 3)), target=[0, 1], **kw)
bad("named-set_num_threads-2**40", F.set_num_threads, ValueError, "threads", n=2 ** 40)
bad("named-softmax-axis-True", F.softmax, TypeError, "axis", x=np.zeros((2, 3)), axis=True)
bad("named-gaussian-eps-'a'", F.gaussian_nll_loss, TypeError, "eps", input=np.zeros(3),
    target=np.zeros(3), var=np.ones(3), eps="a")
bad("named-poisson-eps-'a'", F.poisson_nll_loss, TypeError, "eps", input=np.zeros(3),
    target=np.zeros(3), eps="a")
bad("named-entropy-base-'e'", F.entropy, TypeError, "base", pk=[1, 2], base="e")
bad("named-entropy-axisNone-broadcast", F.entropy, ValueError, "broadcast", pk=np.ones(5),
    qk=np.ones((4, 5)), axis=None)


# --- 15. output arrays: out= and grad_out= (NumPy's rules for out) --------------------------

for form in ["softmax", "log_softmax", "logsumexp"]:
    shape = (4, 5) if form != "logsumexp" else (4,)
    bad(f"{form}-out-list", form, TypeError, "out must be a NumPy array, got list",
        out=[0.0] * 4)
    bad(f"{form}-out-shape", form, ValueError,
        esc(f"out has shape (5, 4) but the result has shape {shape}"), out=np.zeros((5, 4)))
    bad(f"{form}-out-int", form, TypeError, "out has dtype int64, which cannot hold the float64",
        out=np.zeros(shape, dtype=np.int64))
    bad(f"{form}-out-bool", form, TypeError, "out has dtype bool", out=np.zeros(shape, bool))
bad("logsumexp-out-0d-for-a-vector", F.logsumexp, ValueError,
    esc("out has shape () but the result has shape (4,)"), a=_x(), axis=1,
    out=np.zeros(()))
for form in REDUCING + ["linear_cross_entropy"]:
    kw_shape = (4, 3) if form == "linear_cross_entropy" else (4, 5)
    single = form not in ("gaussian", "linear_cross_entropy")
    bad(f"{form}-grad_out-without-return_grad", form, ValueError,
        "grad_out is given but return_grad is False", grad_out=np.zeros(kw_shape))
    if single:
        bad(f"{form}-grad_out-shape", form, ValueError,
            esc("grad_out has shape (5, 4) but the gradient has shape (4, 5)"),
            return_grad=True, grad_out=np.zeros((5, 4)))
        bad(f"{form}-grad_out-int", form, TypeError, "grad_out has dtype int32",
            return_grad=True, grad_out=np.zeros(kw_shape, dtype=np.int32))
        bad(f"{form}-grad_out-list", form, TypeError, "grad_out must be a NumPy array",
            return_grad=True, grad_out=np.zeros(kw_shape).tolist())
    else:
        bad(f"{form}-grad_out-one-array", form, TypeError, "grad_out must be a tuple of",
            return_grad=True, grad_out=np.zeros(kw_shape))
bad("gaussian-grad_out-var-shape", "gaussian", ValueError,
    esc("grad_out[1] has shape (4, 1) but the gradient has shape (4, 5)"), return_grad=True,
    grad_out=(np.zeros((4, 5)), np.zeros((4, 1))))
bad("gaussian-grad_out-three", "gaussian", TypeError, "grad_out must be a tuple of 2 arrays",
    return_grad=True, grad_out=(np.zeros((4, 5)),) * 3)
bad("linear-grad_out-weight-dtype", "linear_cross_entropy", TypeError,
    esc("grad_out[1] has dtype int64"), return_grad=True,
    grad_out=(np.zeros((4, 3)), np.zeros((5, 3), np.int64), np.zeros(5)))
bad("linear-grad_out-no-bias", "linear_cross_entropy", ValueError,
    esc("grad_out[2] must be None"), linear_bias=None, return_grad=True,
    grad_out=(np.zeros((4, 3)), np.zeros((5, 3)), np.zeros(5)))
bad("linear-grad_out-input-shape", "linear_cross_entropy", ValueError,
    esc("grad_out[0] has shape (3, 4) but the gradient has shape (4, 3)"), return_grad=True,
    grad_out=(np.zeros((3, 4)), np.zeros((5, 3)), np.zeros(5)))
bad("cross_entropy-grad_out-bad-target-first", "cross_entropy", IndexError, "9",
    target=np.array([0, 9, 2, 1]), return_grad=True, grad_out=np.zeros((4, 5)))


# ------------------------------------------------------------------------ the checks ----

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
def test_argument_error(case):
    kwargs = copy.deepcopy(case.kwargs)
    snap = snapshot(kwargs)
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
    assert_unchanged(snap)
    assert fastnll.get_num_threads() == threads_before
