#!/usr/bin/env python3
"""Bit-for-bit regression corpus of fastnll's public API, for behaviour-preserving refactors.

    python corpus.py record OUT.pkl [-k SUBSTRING]    (-k: only the keys containing it)
    python corpus.py compare A.pkl B.pkl [--show N]

record: a few thousand deterministic calls of the installed fastnll (data from default_rng,
seeded per case), each run in `with fastnll.threads(1)` and in `threads(2)` (the count ends
the key).  Results are pickled exactly: arrays and NumPy scalars as dtype, shape and raw bytes
(each distinct byte string stored once, under its BLAKE2 digest), Python floats as hex, tuples
such as (loss, grad), (res, sign), (loss, (gx, gv)) element by element, exceptions as type
name and message; also the warnings raised and which input arrays the call wrote to (all the
memory under each input is hashed before and after the call).
compare: matches two recordings key by key and prints the number of cases, how many are
bit-identical, and the first differing ones (elements differing, max |diff| and ulp, or the
two exceptions); exit status 0 only if all are identical and both hold the same keys.
A recording takes 5-15 s on 2 cores and about 200 MB; compare needs only NumPy.

Families (a generator each; a key starts with its family's name):
  sizes      (N, C), C around the kernels' boundaries (<= 32 classes: few-class column path;
             32-class chunks; 1024-element row chunks), N around the 64-row blocks
  inner      (N, C, d) PyTorch layout, d around the 64-column blocks
  layouts    C, Fortran, axes swapped, x[::2, ::3], negative strides, read-only, broadcast;
             class axis 0/1/-1/middle of 3-D and 4-D; above 32768 elements (only those use
             2 threads); target layouts and integer dtypes
  options    weights (with zeros), ignore_index in the targets, reductions, label smoothing
  values     +-inf, nan, all -inf rows, ties, 1e4 and 1e30 offsets, zero probabilities
  reduce     logsumexp axes, keepdims, b (> 0, mixed, zero, broadcast), return_sign; softmax
             and log_softmax over axis tuples, None, 1-D, 0-d
  promote    int64, bool, float16, mixed dtypes; empty arrays (0 rows, 0 classes)
  pointwise  the four elementwise losses: shapes, layouts, options, special values
  entropy; errors (bad calls of every function); torch (fastnll.torch: value and leaf.grad
             after backward; left out when torch does not import)

Old-vs-new wheels: the same NumPy and PyTorch on both sides (compare prints the versions),
run from outside the source tree (an unbuilt checkout does not import):

    python -m venv /tmp/old && /tmp/old/bin/pip install numpy torch OLD/fastnll-*.whl
    python -m venv /tmp/new && /tmp/new/bin/pip install numpy torch NEW/fastnll-*.whl
    cd /tmp
    for L in $(/tmp/old/bin/python -c "import fastnll._dispatch as d; print(*d.built_levels())")
    do
        FASTNLL_SIMD_LEVEL=$L /tmp/old/bin/python $REPO/.ci/corpus.py record old-$L.pkl
        FASTNLL_SIMD_LEVEL=$L /tmp/new/bin/python $REPO/.ci/corpus.py record new-$L.pkl
        python $REPO/.ci/corpus.py compare old-$L.pkl new-$L.pkl || echo "level $L DIFFERS"
    done

Results may differ in the last bits between SIMD levels, never between thread counts or
runs.  To extend the corpus, add rows to a call table or cases to a family (keys must stay
unique; record asserts it), then record the old side again with the new script.
"""
import argparse
import hashlib
import os
import pickle
import sys
import time
import warnings
import zlib
from functools import partial

import numpy as np

F = FT = torch = None          # fastnll, fastnll.torch and torch, imported by `record`
F16, F32, F64 = np.float16, np.float32, np.float64
DTYPES, THREADS, REDS = (F32, F64), (1, 2), ("mean", "sum", "none")
INF, NAN = np.inf, np.nan
OMIT = object()                # an option resolved to OMIT is left out of the call
BCE = "binary_cross_entropy_with_logits"

CLASSES = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 27, 31, 32, 33, 63, 64, 65, 100, 1000, 1023,
           1024, 1025, 2049)
ROWS = (1, 63, 64, 65, 127, 128, 129)
INNER_CLASSES = {1: (3, 1025), 2: (1, 1000), 15: (5, 65), 16: (32, 64), 17: (33, 1023),
                 63: (17, 63), 64: (2, 100), 65: (31, 64), 130: (16, 33)}   # d: class counts
# (shape, class axis) of the layout sweep; those above 32768 elements run on 2 threads
LAYOUT_SHAPES = (((129, 17), 1), ((65, 100), 1), ((33, 65), 0), ((600, 100), 1),
                 ((2000, 40), 1), ((70, 1000), 1), ((40000, 3), 1), ((4, 20, 700), 1),
                 ((50, 30, 27), -1), ((2, 5, 8, 8), 1), ((2, 7, 20, 130), 1), ((6, 9, 33, 2), 2))
LAYOUTS = ("C", "F", "T", "step", "neg", "ro", "bcast")
OPTION_SHAPES = (((129, 17), F32), ((129, 17), F64), ((65, 100), F64), ((600, 100), F32),
                 ((4, 20, 700), F32))
VALUE_SHAPES = (((65, 7), 1), ((65, 33), 1), ((64, 1025), 1), ((3, 5, 17), 1), ((11, 2), 1),
                ((12, 40, 3), -1), ((600, 100), 1), ((40000, 3), 1))
REDUCE_AXES = {(17,): (None, 0, ()), (1025,): (None, 0), (40000,): (None, 0),
               (65, 33): (None, 0, 1, (0, 1), ()), (129, 17): (None, 0, 1, (0, 1)),
               (600, 100): (None, 0, 1), (2, 3, 1025): (None, 0, -1, (0, 2), (1, 2)),
               (4, 20, 700): (None, 1, (0, 2), (1, 2)),
               (5, 6, 7, 8): (None, 1, -1, (1, 3), (0, 2))}
POINTWISE_SHAPES = ((1,), (17,), (64, 65), (3, 5, 130), (400, 100), (12000, 3), (3, 20, 600))
TORCH_SHAPES = (((65, 17), F32, "C"), ((65, 17), F64, "F"), ((129,), F32, "C"),
                ((600, 100), F32, "C"), ((600, 100), F64, "F"), ((4, 20, 700), F64, "C"),
                ((65, 17), F16, "C"))


def product(name, args, opts, **axes):
    """A call-table row for every combination of the option values listed in axes."""
    rows = [(name, args, dict(opts))]
    for k, values in axes.items():
        rows = [(n, a, dict(o, **{k: v})) for n, a, o in rows for v in values]
    return rows


# Call tables: (function, "comma,separated,data,names", options).  The names index a data
# bundle (class_data, pointwise_data); an option "$name" is the bundle's value as well.
# Class bundles: x logits, t targets (15% -100), t3 / t0 targets with 3 / 0 among them, p
# probabilities (p1: class 0 certain), w / w0 class weights (w0: every third 0), $ax the class
# axis, $lax the same for the losses (left out when 1, PyTorch's default: the fast path).
CLASS_CALLS = (("logsumexp", "x", {"axis": "$ax"}), ("log_softmax", "x", {"axis": "$ax"}),
               ("cross_entropy", "x,t", {"axis": "$lax", "return_grad": True}),
               ("nll_loss", "x,t", {"axis": "$lax", "reduction": "sum", "return_grad": True}))
CLASS_CALLS_ALL = CLASS_CALLS + (
    ("softmax", "x", {"axis": "$ax"}),
    ("cross_entropy", "x,p", {"axis": "$lax", "reduction": "none", "return_grad": True}))
SIZE_CALLS = CLASS_CALLS_ALL + (
    ("logsumexp", "x", {"axis": 0}), ("cross_entropy", "x,t", {}),
    ("cross_entropy", "x,t", {"reduction": "sum", "label_smoothing": 0.1, "return_grad": True}),
    ("cross_entropy", "xT,t", {"axis": 0, "reduction": "none", "return_grad": True}))
INNER_CALLS = CLASS_CALLS_ALL + (
    ("cross_entropy", "x,p", {"weight": "$w0", "return_grad": True}),
    ("nll_loss", "x,t0", {"weight": "$w", "ignore_index": 0, "return_grad": True}))
OPTION_CALLS = [row for t, w, ii in (("t", None, -100), ("t3", "$w", 3), ("t0", "$w0", 0))
                for name, ls in (("cross_entropy", (0.0, 0.1, 1.0)), ("nll_loss", None))
                for row in product(name, "x," + t, {"weight": w, "ignore_index": ii},
                                   reduction=REDS, return_grad=(False, True),
                                   **({"label_smoothing": ls} if ls else {}))] + [
    row for w, ls in ((None, 0.0), ("$w0", 0.1), ("$w", 1.0))
    for row in product("cross_entropy", "x,p", {"weight": w, "label_smoothing": ls},
                       reduction=REDS, return_grad=(False, True))]
VALUE_CALLS = CLASS_CALLS_ALL + (
    ("cross_entropy", "x,t", {"axis": "$lax", "reduction": "none", "label_smoothing": 0.1,
                              "return_grad": True}),
    ("cross_entropy", "x,p1", {"axis": "$lax", "label_smoothing": 0.1, "return_grad": True}),
    ("logsumexp", "x", {"axis": "$ax", "b": "$p", "return_sign": True}))
# Pointwise bundles: x logits (or means), y in {0, 0.25, 1}, w / pw weights of the last axis,
# g gaussian targets, var (10% zeros), var_last = var[..., 0], g1 / var1 / n1 / q1 the first
# row only (broadcast), n counts, rates = exp(x), logp = -|x|, q probabilities (with zeros),
# logq = log(q)
GRAD = {"return_grad": True}
POINTWISE_CALLS = (
    (BCE, "x,y", {}), (BCE, "x,y", {"weight": "$w", "pos_weight": "$pw", "reduction": "none",
                                    **GRAD}),
    (BCE, "x,y", {"pos_weight": "$pw", "reduction": "sum", **GRAD}),
    ("gaussian_nll_loss", "x,g,var", GRAD),
    ("gaussian_nll_loss", "x,g,var_last", {"full": True, "reduction": "sum", **GRAD}),
    ("gaussian_nll_loss", "x,g1,var1", {"reduction": "none", **GRAD}),
    ("gaussian_nll_loss", "x,g", {"var": 0.7, "eps": 0.5, **GRAD}),
    ("poisson_nll_loss", "x,n", GRAD), ("poisson_nll_loss", "x,n1", {"full": True}),
    ("poisson_nll_loss", "rates,n", {"log_input": False, "full": True, "reduction": "sum",
                                     **GRAD}),
    ("kl_div", "logp,q", {"reduction": "batchmean", **GRAD}),
    ("kl_div", "logp,logq", {"log_target": True, "reduction": "none", **GRAD}),
    ("kl_div", "logp,q1", {"reduction": "sum", **GRAD}))
POINTWISE_OPTION_CALLS = (
    product("kl_div", "logp,q", {}, reduction=REDS + ("batchmean",), log_target=(False, True),
            return_grad=(False, True))
    + product(BCE, "x,q", {"weight": "$w"}, reduction=REDS, return_grad=(False, True))
    + product("gaussian_nll_loss", "x,g,var", {"eps": 1e-3}, full=(False, True), reduction=REDS,
              return_grad=(False, True))
    + product("poisson_nll_loss", "q,n", {"eps": 1e-3}, log_input=(False, True),
              full=(False, True), reduction=REDS, return_grad=(False, True)))
# fastnll.torch ("torch." runs torch_loss on a leaf tensor), on class bundles plus: go / gy
# the incoming gradients of unreduced losses, y binary targets, bw (N, 1) weights, pw
# pos_weight, t_bad a target out of range (fastnll refuses it, PyTorch raises its own error)
TORCH_CALLS = [("torch.cross_entropy", "x,t_bad", {})] + [
    (f"torch.{n}", f"x,{t}" + ("" if r != "none" else ",gy" if n == BCE else ",go"),
     dict(opts, reduction=r)) for r in REDS for n, t, opts in (
        ("cross_entropy", "t", {}), ("nll_loss", "t", {}), ("cross_entropy", "p", {}),
        ("cross_entropy", "t3", {"weight": "$w0", "ignore_index": 3, "label_smoothing": 0.1}),
        ("nll_loss", "t3", {"weight": "$w0", "ignore_index": 3}),
        ("cross_entropy", "p", {"weight": "$w", "label_smoothing": 1.0}), (BCE, "y", {}),
        (BCE, "y", {"weight": "$bw", "pos_weight": "$pw"}))]


# ---------------------------------------------------------------- data
def rng_for(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def tag(a):
    a = np.asarray(a)
    return f"{a.dtype.kind}{a.dtype.itemsize * 8}{a.shape}".replace(" ", "").replace(",)", ")")


def logits(rng, shape, dt=F64):
    return (3.0 * rng.standard_normal(shape)).astype(dt)


def targets(rng, shape, C, ignore):
    t = np.asarray(rng.integers(0, max(C, 1), size=shape, dtype=np.int64))
    t[rng.random(shape) < 0.15] = ignore
    return t


def probs(rng, shape, axis):
    p = rng.random(shape)
    p[rng.random(shape) < 0.2] = 0.0                      # exact zeros
    s = p.sum(axis=axis, keepdims=True)
    return p / np.where(s > 0, s, 1.0)


def lay(v, how):
    """v in the memory layout `how`, same values (bcast repeats v[:1] along axis 0)."""
    if how == "step":                                     # v[::2, ::3, ::2, ...]; gaps: junk
        idx = tuple(slice(None, None, 2 + i % 2) for i in range(v.ndim))
        big = np.full([n * s.step for n, s in zip(v.shape, idx)],
                      NAN if v.dtype.kind == "f" else -7, dtype=v.dtype)
        big[idx] = v
        return big[idx]
    if how == "ro":
        v = v.copy()
        v.flags.writeable = False
        return v
    rev = (slice(None, None, -1),) * v.ndim
    return {"C": np.ascontiguousarray, "F": np.asfortranarray,
            "T": lambda v: np.ascontiguousarray(v.swapaxes(0, 1)).swapaxes(0, 1),
            "neg": lambda v: np.ascontiguousarray(v[rev])[rev],       # every axis reversed
            "bcast": lambda v: np.broadcast_to(v[:1], v.shape)}[how](v)


def with_specials(x, axis):
    """x with special rows along the class axis (spread out): +inf, -inf, nan, all -inf, a
    tie at the maximum, +1e4, *1e30, all +inf, +inf and -inf, nan and +inf, -1e30."""
    moved = np.moveaxis(x, axis, -1)
    r = moved.reshape(-1, x.shape[axis]).astype(F64)
    n, C = r.shape
    for k, i in enumerate(dict.fromkeys(k * 37 % n for k in range(11)) if C else ()):
        row, j, j2 = r[i], i % C, (i + C // 2 + 1) % C
        if k < 3:
            row[j] = (INF, -INF, NAN)[k]
        elif k in (3, 7):
            row[:] = -INF if k == 3 else INF
        elif k == 4:
            row[j] = row[j2] = row.max() + 1.0
        elif k in (8, 9):
            row[j], row[j2] = (INF, -INF) if k == 8 else (NAN, INF)
        else:
            row[:] = {5: row + 1e4, 6: row * 1e30, 10: row - 1e30}[k]
    return np.ascontiguousarray(np.moveaxis(r.astype(x.dtype).reshape(moved.shape), -1, axis))


def class_data(seed, shape, ax, dt, how="C"):
    """The bundle of the class-axis tables: logits of `shape` in layout how, classes on ax."""
    rng = rng_for(*seed)
    a0, C = ax % len(shape), shape[ax]
    tshape = shape[:a0] + shape[a0 + 1:]
    x, p = lay(logits(rng, shape).astype(dt), how), probs(rng, shape, a0)
    p1 = p.copy()
    np.moveaxis(p1, a0, -1)[..., 0] = 1.0
    w, w0 = (rng.random(C) + 0.5).astype(dt), (rng.random(C) * (np.arange(C) % 3 > 0)).astype(dt)
    return dict(x=x, p=lay(p.astype(dt), how), p1=p1.astype(dt), w=w, w0=w0, ax=ax,
                lax=OMIT if ax == 1 else ax, t=targets(rng, tshape, C, -100),
                t3=targets(rng, tshape, C, 3), t0=targets(rng, tshape, C, 0),
                desc=f"x={tag(x)}/{how}")


def pointwise_data(seed, shape, dt, how="C"):
    rng = rng_for(*seed)
    x, q = lay(logits(rng, shape).astype(dt), how), rng.random(shape).astype(dt)
    q[q < 0.2] = 0.0
    y = np.choose(rng.integers(0, 3, shape), [0.0, 0.25, 1.0]).astype(dt)
    var, n = (rng.random(shape) + 0.1).astype(dt), rng.poisson(3.0, shape).astype(dt)
    var[rng.random(shape) < 0.1] = 0.0                    # clamped to eps
    g = logits(rng, shape, dt)
    with np.errstate(divide="ignore"):
        logq = np.log(q)
    return dict(x=x, y=y, w=rng.random(shape[-1:]).astype(dt), g=g, g1=g[:1], var=var,
                pw=(3 * rng.random(shape[-1:])).astype(dt), var_last=var[..., 0],
                var1=var[:1], n=n, n1=n[:1], rates=np.exp(x), logp=-np.abs(x), q=q, q1=q[:1],
                logq=logq, desc=f"x={tag(x)}/{how}")


# ---------------------------------------------------------------- cases
def case(fn, desc, *args, **kw):
    """One call: its key (function, description of the data, options) and what to call."""
    shown = [f"{k}={f'<{tag(v)}>' if isinstance(v, np.ndarray) else repr(v)}"
             for k, v in kw.items()]
    return " ".join([fn.__name__] + [desc] * bool(desc) + shown), fn, args, kw


def calls(b, table):
    """The cases of a call table on bundle b (an array option shows its "$name" in the key)."""
    for name, args, opts in table:
        kw, shown = {}, []
        for k, v in opts.items():
            value = b[v[1:]] if isinstance(v, str) and v[:1] == "$" else v
            if value is not OMIT:
                kw[k] = value
                shown.append(f"{k}={v if isinstance(value, np.ndarray) else repr(value)}")
        fn = partial(torch_loss, name[6:]) if name[:6] == "torch." else getattr(F, name)
        yield " ".join([name, b["desc"], f"({args})"] + shown), fn, [b[a] for a in
                                                                    args.split(",")], kw


def fam_sizes():
    for i, C in enumerate(CLASSES):
        for dt in DTYPES:
            b = class_data(("sizes", C, dt.__name__), (ROWS[i % len(ROWS)], C), 1, dt)
            b["xT"] = np.ascontiguousarray(b["x"].T)       # (C, N): classes on axis 0
            yield from calls(b, SIZE_CALLS)


def fam_inner():
    for i, (d, Cs) in enumerate(INNER_CLASSES.items()):
        for C in Cs:
            for dt in DTYPES:
                yield from calls(class_data(("inner", C, d, dt.__name__), (2 + i % 2, C, d),
                                            1, dt), INNER_CALLS)


def fam_layouts():
    for shape, ax in LAYOUT_SHAPES:
        for i, how in enumerate(LAYOUTS):                 # the same values in every layout
            if how != "T" or len(shape) > 2:              # (2-D "T" is the same memory as "F")
                b = class_data(("layouts", shape), shape, ax, DTYPES[i % 2], how)
                yield from calls(b, CLASS_CALLS if b["x"].size > 32768 else CLASS_CALLS_ALL)
    for shape in ((129, 17), (600, 100), (4, 20, 700)):   # target layouts and dtypes
        b = class_data(("target layouts", shape), shape, 1, F32 if len(shape) == 2 else F64)
        t = b["t"]
        b.update(t_step=lay(t, "step"), t_neg=lay(t, "neg"), t_bcast=lay(t, "bcast"),
                 t_i32=t.astype(np.int32), t_u8=np.where(t < 0, 0, t).astype(np.uint8),
                 t_i16F=np.asfortranarray(t, np.int16), t_list=t.tolist())
        for name in ("step", "neg", "bcast", "i32", "u8", "i16F", "list"):
            yield from calls(b, (("cross_entropy", "x,t_" + name, {"return_grad": True}),
                                 ("nll_loss", "x,t_" + name, {"reduction": "none"})))


def fam_options():
    for shape, dt in OPTION_SHAPES:
        yield from calls(class_data(("options", shape, dt.__name__), shape, 1, dt), OPTION_CALLS)


def fam_values():
    for i, (shape, ax) in enumerate(VALUE_SHAPES):
        for dt in DTYPES:
            b = class_data(("values", shape, dt.__name__), shape, ax, dt)
            v = b["x"]
            b.update(x=with_specials(v, ax), desc=f"x={tag(v)}/specials")
            yield from calls(b, VALUE_CALLS)
            offsets = (("+1e4", v + dt(1e4)), ("*1e30", v * dt(1e30)), ("-1e30", v - dt(1e30)),
                       ("ties", np.round(v)))
            for name, x in offsets if dt is DTYPES[i % 2] else ():   # one dtype per shape
                b.update(x=x, desc=f"x={tag(v)}/{name}")
                yield from calls(b, CLASS_CALLS)


def fam_reduce():
    for i, (shape, axes) in enumerate(REDUCE_AXES.items()):
        for dt in DTYPES if len(shape) == 2 else DTYPES[i % 2:][:1]:
            rng = rng_for("reduce", shape, dt.__name__)
            a = logits(rng, shape, dt)
            b = {"a": a, "b+": (rng.random(shape) + 0.1).astype(dt), "b+-": logits(rng, shape, dt),
                 "b0": (rng.random(shape) < 0.5).astype(dt), "desc": f"a={tag(a)}",
                 "b1C": logits(rng, (1,) * (a.ndim - 1) + shape[-1:], dt),
                 "a_s": lay(a, "step" if a.ndim == 2 else "neg")}
            yield from calls(b, [row for fn in ("logsumexp", "softmax", "log_softmax")
                                 for row in product(fn, "a", {}, axis=axes)]
                             + product("logsumexp", "a", {"keepdims": True, "return_sign": True},
                                       axis=axes)
                             + [("logsumexp", "a", {"axis": axis, "b": "$" + bn,
                                                    "return_sign": k % 2 == 1, "keepdims": k > 1})
                                for k, bn in enumerate(("b+", "b+-", "b0", "b1C"))
                                for axis in (-1, axes[-1])]
                             + [("logsumexp", "a_s", {"axis": -1, "b": "$b+-",
                                                      "return_sign": True})])
    for dt in DTYPES:                                     # 0-d, and a broadcast against b
        s, rng = dt(1.5), rng_for("broadcast a", dt.__name__)
        for fn in (F.logsumexp, F.softmax, F.log_softmax):
            yield case(fn, f"a={tag(s)}", s)
            yield case(fn, f"a={tag(s)}", s, axis=0)
        yield case(F.logsumexp, f"a={tag(s)} b=-2", s, b=dt(-2), return_sign=True)
        row, b = logits(rng, (1, 33), dt), logits(rng, (65, 33), dt)
        yield case(F.logsumexp, f"a={tag(row)}", row, axis=1, b=b, return_sign=True)
        yield case(F.logsumexp, f"a={tag(row)}", row, b=b)


def fam_promote():
    rng = rng_for("promote")
    for x in (rng.integers(-5, 5, size=(65, 17)), rng.random((65, 17)) < 0.5,
              logits(rng, (129, 33), F16)):
        xd, t = f"x={tag(x)}", targets(rng, x.shape[0], x.shape[1], 0)
        for fn, args, kw in ((F.logsumexp, (x,), {"axis": 1}), (F.softmax, (x,), {"axis": 0}),
                             (F.log_softmax, (x,), {"axis": 1}), (F.entropy, (x * x,), {}),
                             (F.cross_entropy, (x, t), GRAD), (F.nll_loss, (x, t), {}),
                             (F.binary_cross_entropy_with_logits, (x, x > 0), {}),
                             (F.gaussian_nll_loss, (x, x[::-1], np.ones_like(x)), GRAD),
                             (F.poisson_nll_loss, (x, x * x), GRAD), (F.kl_div, (x, x * x), GRAD)):
            yield case(fn, xd, *args, **kw)
    x32, b64 = logits(rng, (129, 33), F32), rng.random((129, 33))
    yield case(F.logsumexp, "a=f32 b=f64", x32, axis=1, b=b64)
    yield case(F.entropy, "pk=f32 qk=f64", x32[0] ** 2, b64[0])
    yield case(F.logsumexp, "a=list", [[1, 2, 3], [4.5, -INF, 6]], axis=1)
    yield case(F.cross_entropy, "x,t=lists", [[1.0, 2.0], [3.0, 0.5]], [1, 0], return_grad=True)
    for i, shape in enumerate(((0,), (0, 5), (5, 0), (0, 0), (2, 0, 3), (2, 3, 0))):
        x = np.zeros(shape, DTYPES[i % 2])                # empty arrays
        t = np.full(shape[:1] + shape[2:] if len(shape) > 1 else (), -100, np.int64)
        C, xd = shape[1] if len(shape) > 1 else shape[0], f"x={tag(x)}"
        for axis in (None, -1):
            for fn in (F.logsumexp, F.softmax, F.log_softmax, F.entropy):
                yield case(fn, xd, x, axis=axis)
        for red in REDS:
            for fn, args in ((F.cross_entropy, (x, t)), (F.cross_entropy, (x, x)),
                             (F.nll_loss, (x, t)), (F.gaussian_nll_loss, (x, x, x + 1)),
                             (F.poisson_nll_loss, (x, x)), (F.kl_div, (x, x))):
                yield case(fn, xd + (" t=-100" if args[1] is t else ""), *args, reduction=red,
                           return_grad=True)
            yield case(F.binary_cross_entropy_with_logits, xd, x, x, reduction=red)
        yield case(F.kl_div, xd, x, x, reduction="batchmean")
        if C == 0 and t.size:                             # no classes, a target 0
            yield case(F.cross_entropy, xd + " t=0", x, np.zeros_like(t))


def fam_pointwise():
    for shape in POINTWISE_SHAPES:
        big = np.prod(shape) > 32768
        for i, how in enumerate(("C", "neg") if big else ("C", "F", "step", "neg", "ro", "bcast")):
            if how != "F" or len(shape) > 1:
                dt = DTYPES[i % 2]
                yield from calls(pointwise_data(("pointwise", shape, dt.__name__), shape, dt, how),
                                 POINTWISE_CALLS)
    for dt in DTYPES:
        yield from calls(pointwise_data(("pointwise options", dt.__name__), (64, 65), dt),
                         POINTWISE_OPTION_CALLS)
    # every special input value against every special target (or var) value
    xv = [INF, -INF, NAN, 1e30, -1e30, 1e4, -1e4, 100, -100, 20, -20, 1, 0, -0.0, 1e-30]
    tv = {"bce": [0, 1, 0.5, 0.25, NAN], "gauss": [0, 1, -1e30, INF, NAN],
          "var": [0, 1e-7, 1, 1e30, INF, NAN], "pois": [0, 1, 2.5, 1e4, INF, NAN],
          "kl": [0, 1, 0.5, 1e-30, INF, NAN], "logkl": [-INF, 0, -1, -1e30, INF, NAN]}
    for dt in DTYPES:
        for reps in ((1, 1), (60, 8)):
            g = {k: [np.tile(m.astype(dt), reps) for m in np.meshgrid(xv, v, indexing="ij")]
                 for k, v in tv.items()}
            (x, y), (xv_, v), sd = g["gauss"], g["var"], f"x={tag(g['bce'][0])}/specials"
            none = {"reduction": "none", "return_grad": True}
            yield case(F.binary_cross_entropy_with_logits, sd, *g["bce"], pos_weight=dt(2), **none)
            yield case(F.gaussian_nll_loss, sd, x, y, np.ones_like(x), **none)
            yield case(F.gaussian_nll_loss, sd + " var=specials", xv_, np.zeros_like(v), v,
                       **none)
            for log_input in (True, False):
                yield case(F.poisson_nll_loss, sd, *g["pois"], log_input=log_input, full=True,
                           **none)
            yield case(F.kl_div, sd, *g["kl"], **none)
            yield case(F.kl_div, sd, *g["logkl"], log_target=True, return_grad=True)


def fam_entropy():
    for shape in ((17,), (65, 33), (3, 5, 17), (2000, 40), (40, 2000), (129, 17)):
        for dt in DTYPES:
            rng = rng_for("entropy", shape, dt.__name__)
            pk, qk = probs(rng, shape, -1).astype(dt), rng.random(shape).astype(dt)
            qb = rng.random(shape[-1:]).astype(dt) * (np.arange(shape[-1]) > 0)  # 0: inf
            b = dict(pk=pk, qk=qk, qb=qb, pk_F=np.asfortranarray(pk), pk_neg=lay(pk, "neg"),
                     pk_bcast=lay(pk, "bcast"), desc=f"pk={tag(pk)}")
            yield from calls(b, [("entropy", "pk_bcast", {"axis": 0})] + [
                row for ax in (0, -1, None) for row in (
                    ("entropy", "pk", {"axis": ax}), ("entropy", "pk_F", {"base": 2, "axis": ax}),
                    ("entropy", "pk_neg,qk", {"axis": ax}),
                    ("entropy", "pk,qb", {"base": 10.0, "axis": ax}))])
    yield case(F.entropy, "counts", np.array([[10, 10, 10], [28, 1, 1], [0, 0, 0]]), axis=1)
    yield case(F.entropy, "inf nan", np.array([1.0, INF]), np.array([NAN, 1.0]), base=1)


def fam_errors():
    x, t, ones = logits(rng_for("errors"), (4, 3)), np.array([0, 1, 2, 1]), np.ones((4, 3))
    for fn in (F.nll_loss, F.cross_entropy):
        for d, a in (("t=3", [0, 1, 3, 1]), ("t=-1", np.array([0, -1, 2, 1])), ("t=bool", t > 0),
                     ("t=f32", t.astype(F32)), ("t=shape", t[:3]), ("t=2**70", [0, 1, 2, 2 ** 70]),
                     ("t=u64max", np.array([0, 1, 2, 2 ** 64 - 1], np.uint64)),
                     ("t=prob shape", x[:, :2] ** 2), ("t=ragged", [[0.5], [1.0, 2.0]])):
            yield case(fn, d, x, a)
        for d, a in (("x=0-d", np.float64(1.0)), ("x=str", np.full((4, 3), "a")),
                     ("x=complex", x + 1j)):
            yield case(fn, d, a, t)
        for kw in ({"reduction": "avg"}, {"reduction": None}, {"axis": 2}, {"axis": 1.0},
                   {"weight": ones[:, 0]}, {"weight": -ones[0]}, {"weight": ["a", "b", "c"]},
                   {"ignore_index": "a"}, {"ignore_index": True}, {"ignore_index": 2 ** 64},
                   {"return_grad": "yes"}):
            yield case(fn, "", x, t, **kw)
    for ls in (1.5, -0.1, NAN, "x", None):
        yield case(F.cross_entropy, "", x, t, label_smoothing=ls)
    for fn in (F.logsumexp, F.softmax, F.log_softmax):
        for axis in (2, (0, 0), 1.5, "0"):
            yield case(fn, "", x, axis=axis)
        for d, a in (("a=str", "abc"), ("a=complex", x + 1j), ("a=ragged", [[1.0], [1.0, 2.0]]),
                     ("a=object", np.array([None]))):
            yield case(fn, d, a)
    yield case(F.logsumexp, "", x, b=np.ones(5))
    bce, gauss, pois = F.binary_cross_entropy_with_logits, F.gaussian_nll_loss, F.poisson_nll_loss
    for fn, d, args, kw in (
            (bce, "y=shape", (x, x[:, :1]), {}), (bce, "y=str", (x, np.full((4, 3), "a")), {}),
            (bce, "", (x, ones), {"weight": -ones[0]}), (bce, "", (x, ones), {"pos_weight": x[0]}),
            (bce, "", (x, ones), {"pos_weight": np.ones(4)}),
            (bce, "", (x, ones), {"reduction": "batchmean"}), (gauss, "var<0", (x, x, -ones), {}),
            (gauss, "var=(4,2)", (x, x, ones[:, :2]), {}),
            (gauss, "var=(4,3,1)", (x, x, ones[..., None]), {}),
            (gauss, "y=shape", (x, x[:, :2], 1.0), {}),
            (gauss, "", (x, x, 1.0), {"eps": "x"}), (gauss, "", (x, x, 1.0), {"reduction": "b"}),
            (pois, "y=shape", (x, x[:2, :2]), {}), (pois, "", (x, x), {"reduction": "Mean"}),
            (pois, "", (x, x), {"eps": None}), (F.kl_div, "y=shape", (x, x[:, :2]), {}),
            (F.kl_div, "", (x, x), {"reduction": "b"}), (F.kl_div, "x=str", ("abc", x), {}),
            (F.entropy, "pk<0", (-x,), {}), (F.entropy, "qk<0", (ones, -ones), {}),
            (F.entropy, "", (ones,), {"base": 0}), (F.entropy, "", (ones,), {"base": -1}),
            (F.entropy, "", (ones,), {"base": "e"}), (F.entropy, "", (ones,), {"axis": 5}),
            (F.entropy, "shapes", (ones, np.ones((5, 3))), {}),
            (F.entropy, "complex", (x + 1j,), {})):
        yield case(fn, d, *args, **kw)


def torch_loss(name, x, target, grad_out=None, **kw):
    """fastnll.torch's `name` on a fresh leaf with x's values and strides: the loss and the
    leaf's gradient after backward (by grad_out for an unreduced loss)."""
    leaf = torch.from_numpy(x.copy(order="K")).requires_grad_()
    kw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    loss = getattr(FT, name)(leaf, torch.from_numpy(target), **kw)
    loss.backward(None if grad_out is None else torch.from_numpy(grad_out))
    return loss.detach(), leaf.grad


def fam_torch():
    for shape, dt, how in TORCH_SHAPES if FT is not None else ():
        ax = min(1, len(shape) - 1)
        b, rng = class_data(("torch", shape, dt.__name__), shape, ax, dt, how), rng_for(shape)
        b.update(y=(rng.random(shape) < 0.5).astype(dt), gy=rng.random(shape).astype(dt),
                 go=rng.random(b["t"].shape).astype(dt), pw=rng.random(shape[-1:]).astype(dt),
                 t_bad=np.where(b["t3"] == 3, shape[ax], b["t3"]))
        b["bw"] = b["gy"][..., :1].copy()
        yield from calls(b, TORCH_CALLS)


FAMILIES = (fam_sizes, fam_inner, fam_layouts, fam_options, fam_values, fam_reduce,
            fam_promote, fam_pointwise, fam_entropy, fam_errors, fam_torch)


# ---------------------------------------------------------------- recording
def fingerprint(a):
    """A hash of all the memory under a (its root base array), to see whether a call wrote it."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    if a.dtype.hasobject:
        return repr(a.tolist())
    return hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8).reshape(-1)).digest()


def encode(obj, blobs):
    """obj as plain, exactly comparable data; array bytes go to blobs, under their digest."""
    if torch is not None and isinstance(obj, torch.Tensor):
        return ("tensor",) + encode(obj.detach().numpy(), blobs)[1:]
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj)
        raw = a.tobytes()
        digest = hashlib.blake2b(raw, digest_size=20).hexdigest()
        blobs.setdefault(digest, raw)
        return ("array" if isinstance(obj, np.ndarray) else "scalar", a.dtype.str, a.shape, digest)
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(encode(o, blobs) for o in obj))
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return (type(obj).__name__, obj.hex() if type(obj) is float else repr(obj))
    raise TypeError(f"cannot encode {type(obj)}")


def run_case(fn, args, kw, blobs):
    inputs = [a for a in (*args, *kw.values()) if isinstance(a, np.ndarray)]
    before = [fingerprint(a) for a in inputs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = encode(fn(*args, **kw), blobs)
        except Exception as exc:                          # noqa: BLE001 (errors are results)
            result = ("error", type(exc).__name__, str(exc))
    return {"result": result, "warnings": tuple(sorted({f"{w.category.__name__}: {w.message}"
                                                        for w in caught})),
            "inputs_changed": tuple(i for i, (a, h) in enumerate(zip(inputs, before))
                                    if fingerprint(a) != h)}


def record(path, only=None):
    global F, FT, torch
    import fastnll
    F = fastnll
    try:
        import torch as _torch
        import fastnll.torch as _ft
        torch, FT = _torch, _ft
        torch.set_num_threads(1)         # PyTorch's own (fallback) kernels: one fixed order
    except ImportError:
        pass
    cases, blobs, start = {}, {}, time.perf_counter()
    for family in FAMILIES:
        for key, fn, args, kw in family():
            for n in THREADS:
                k = f"{family.__name__[4:]}: {key} threads={n}"
                assert k not in cases, f"duplicate key {k}"
                if not only or only in k:
                    with fastnll.threads(n):
                        cases[k] = run_case(fn, args, kw, blobs)
    meta = {"fastnll": fastnll.__version__, "level": fastnll._dispatch.level,
            "numpy": np.__version__, "torch": torch.__version__ if torch else None,
            "python": sys.version.split()[0], "env": os.environ.get("FASTNLL_SIMD_LEVEL"),
            "config": F.show_config(mode="dicts"), "seconds": time.perf_counter() - start}
    with open(path, "wb") as f:
        pickle.dump({"meta": meta, "cases": cases, "blobs": blobs}, f, protocol=4)
    changed = sum(1 for r in cases.values() if r["inputs_changed"])
    print(f"{len(cases)} cases in {meta['seconds']:.1f} s at {meta['level']} "
          f"({sum(map(len, blobs.values())) / 2 ** 20:.0f} MB of distinct results) -> {path}"
          + (f"; {changed} CALLS CHANGED THEIR INPUTS" if changed else ""))


# ---------------------------------------------------------------- comparing
def describe_array(dtype, shape, ra, rb):
    a, b = (np.frombuffer(r, dtype).reshape(shape) for r in (ra, rb))
    ne = a.view(f"u{a.itemsize}") != b.view(f"u{a.itemsize}")
    i = tuple(int(j) for j in np.argwhere(ne)[0]) if ne.ndim else ()
    out = f"{int(ne.sum())}/{a.size} elements differ, first at {i}: {a[i]!r} vs {b[i]!r}"
    if a.dtype.kind == "f":
        fa, fb = a[ne].astype(F64), b[ne].astype(F64)
        both = np.isfinite(fa) & np.isfinite(fb)
        out += f"; max |diff| {np.max(np.abs(fa - fb)[both]):.3g}" if both.any() else ""
        s = np.dtype(f"i{a.itemsize}")                    # floats as ordered integers: ulps
        ia, ib = (np.where(v < 0, np.iinfo(s).min - v, v).astype(np.int64)
                  for v in (a[ne].view(s), b[ne].view(s)))
        same = (ia >= 0) == (ib >= 0)
        out += f", max {int(np.max(np.abs(ia - ib)[same]))} ulp" if same.any() else ""
        nans = int((np.isnan(fa) != np.isnan(fb)).sum())
        out += f", {nans} nan mismatches" if nans else ""
    return out


def describe(ea, eb, blobs_a, blobs_b):
    def short(e):
        if e[0] == "error":
            return f"{e[1]}({e[2][:100]!r})"
        return f"{e[0]} {np.dtype(e[1])}{e[2]}" if len(e) == 4 else f"{e[0]} {e[1]!r}"[:100]
    if ea[0] in ("tuple", "list") and ea[0] == eb[0] and len(ea[1]) == len(eb[1]):
        return "; ".join(f"[{i}] {describe(x, y, blobs_a, blobs_b)}"
                         for i, (x, y) in enumerate(zip(ea[1], eb[1])) if x != y)
    if ea[0] != eb[0] or len(ea) != 4 or ea[1:3] != eb[1:3]:
        return f"{short(ea)} vs {short(eb)}"
    return describe_array(ea[1], ea[2], blobs_a[ea[3]], blobs_b[eb[3]])


def compare(path_a, path_b, show=20):
    runs = []
    for name, path in (("A", path_a), ("B", path_b)):
        with open(path, "rb") as f:
            runs.append(pickle.load(f))
        m = runs[-1]["meta"]
        print(f"{name} = {path}: {len(runs[-1]['cases'])} cases, fastnll {m['fastnll']} at "
              f"{m['level']}, numpy {m['numpy']}, torch {m['torch']}, python {m['python']}, "
              f"recorded in {m['seconds']:.1f} s")
    (ca, ba), (cb, bb) = ((r["cases"], r["blobs"]) for r in runs)
    common = [k for k in ca if k in cb]
    diffs = [k for k in common if ca[k] != cb[k]]
    only_a, only_b = [k for k in ca if k not in cb], [k for k in cb if k not in ca]
    print(f"cases: {len(common)} in both; bit-identical: {len(common) - len(diffs)}; "
          f"differing: {len(diffs)}; only in A: {len(only_a)}; only in B: {len(only_b)}")
    per = {}
    for k in diffs:
        per[k.split()[1]] = per.get(k.split()[1], 0) + 1
    if per:
        print("differing per function: " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))
    for k in diffs[:show]:
        ra, rb = ca[k], cb[k]
        what = [describe(ra["result"], rb["result"], ba, bb)] * (ra["result"] != rb["result"])
        what += [f"{f}: {ra[f]} vs {rb[f]}" for f in ("inputs_changed", "warnings")
                 if ra[f] != rb[f]]
        print(f"  DIFF {k}\n       " + "\n       ".join(what))
    for name, keys in (("A", only_a), ("B", only_b)):
        for k in keys[:10]:
            print(f"  only in {name}: {k}")
    for k in [k for k in common if ca[k]["inputs_changed"] or cb[k]["inputs_changed"]][:10]:
        print(f"  INPUT CHANGED by the call: {k}")
    return 0 if not diffs and not only_a and not only_b else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="run the corpus with the installed fastnll")
    r.add_argument("out")
    r.add_argument("-k", dest="only", help="only the keys containing this string")
    c = sub.add_parser("compare", help="compare two recordings case by case")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--show", type=int, default=20, help="how many differing cases to print")
    args = ap.parse_args(argv)
    if args.cmd == "record":
        return record(args.out, args.only) or 0
    return compare(args.a, args.b, args.show)


if __name__ == "__main__":
    sys.exit(main())
