"""Shared helpers for the fastnll test suite.

Everything here is independent of fastnll: the references are written with NumPy (in extended
precision where the platform has it) and SciPy, and PyTorch serves as an optional oracle.
Test modules import the helpers with ``from conftest import ...`` (pytest puts this directory
on sys.path because tests/ has no __init__.py).
"""
import numpy as np
import pytest

# --------------------------------------------------------------------------- tolerances ----

F64_RTOL, F64_ATOL = 1e-12, 1e-14
F32_RTOL, F32_ATOL = 2e-5, 1e-6

# Extended precision for the references (80-bit long double on x86-64 Linux; plain float64
# elsewhere, which is still accurate enough for the tolerances above).
REF = np.longdouble


def tolerances(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return F32_RTOL, F32_ATOL
    return F64_RTOL, F64_ATOL


def assert_close(got, expected, dtype, *, rtol=None, atol=None, scale=None, min_atol=0.0,
                 check_dtype=True, err_msg=""):
    """Compare a fastnll result (of dtype `dtype`) with a float64 reference.

    The absolute tolerance is scaled by the largest finite reference magnitude (capped at 1),
    so that small quantities such as gradients divided by the batch size are still checked
    tightly; `scale` raises that magnitude to a known floor.  `min_atol` is a floor for the
    absolute tolerance (a number or an array shaped like `expected`).  nan and inf must
    match in position (and sign for inf)."""
    dtype = np.dtype(dtype)
    got_arr = np.asarray(got)
    if check_dtype:
        assert got_arr.dtype == dtype, f"dtype {got_arr.dtype} != {dtype}. {err_msg}"
    exp = np.asarray(expected, dtype=np.float64)
    assert got_arr.shape == exp.shape, f"shape {got_arr.shape} != {exp.shape}. {err_msg}"
    r, a = tolerances(dtype)
    rtol = r if rtol is None else rtol
    if atol is None:
        finite = np.abs(exp[np.isfinite(exp)])
        own = float(finite.max()) if finite.size else 0.0
        scale = own if scale is None else max(scale, own)
        # an all-zero reference (e.g. gradients with a single class) has no scale of its
        # own: allow rounding noise of order `a`
        atol = a * (min(scale, 1.0) if scale > 0 else 1.0)
    atol = np.maximum(atol, min_atol)
    g = got_arr.astype(np.float64)
    # isclose: |g - e| <= atol + rtol |e|, inf only equal to the same inf, nan to nan
    ok = np.isclose(g, exp, rtol=rtol, atol=atol, equal_nan=True)
    if not np.all(ok):
        bad = np.argwhere(~ok) if exp.ndim else [()]
        lines = [f"{int(np.sum(~ok))} of {exp.size} entries differ (rtol={rtol:g}, "
                 f"atol={float(np.max(atol)):g} at most). {err_msg}"]
        at = np.broadcast_to(atol, exp.shape)
        for idx in bad[:8]:
            idx = tuple(int(i) for i in idx)
            lines.append(f"  at {idx}: got {g[idx]!r}, expected {exp[idx]!r}, "
                         f"atol {float(at[idx]):g}")
        raise AssertionError("\n".join(lines))


def assert_bitwise_equal(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), "results differ bit-wise"


# ---------------------------------------------------------------------------- layouts ----

LAYOUTS = ("C", "F", "moved", "step", "negative", "negstep", "readonly", "unaligned")


def _sentinel(dtype):
    kind = np.dtype(dtype).kind
    return 777 if kind == "f" else 77 if kind in "iu" else True


def make_layout(a, name):
    """The same logical array as `a`, stored in layout `name` (see LAYOUTS)."""
    a = np.asarray(a)
    rev = (slice(None, None, -1),) * a.ndim
    if name == "C":
        return np.ascontiguousarray(a)
    if name == "F":
        return np.asfortranarray(a)
    if name == "moved":
        # axis 0 stored last: a view that is neither C- nor F-ordered for ndim >= 3
        if a.ndim < 2:
            return a.copy()
        store = np.ascontiguousarray(np.moveaxis(a, 0, -1))
        return np.moveaxis(store, -1, 0)
    if name == "step":
        big = np.full(tuple(2 * n + 1 for n in a.shape), _sentinel(a.dtype), dtype=a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if name == "negative":
        return np.ascontiguousarray(a[rev])[rev]
    if name == "negstep":
        big = np.full(tuple(2 * n + 1 for n in a.shape), _sentinel(a.dtype), dtype=a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a[rev]
        return view[rev]
    if name == "readonly":
        c = a.copy()
        c.setflags(write=False)
        return c
    if name == "unaligned":
        buf = np.zeros(a.nbytes + a.itemsize + 1, dtype=np.uint8)
        arr = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        arr[...] = a
        return arr
    raise AssertionError(name)


def strided_layout(a, perm, steps):
    """`a` stored with axis order `perm` (perm[0] outermost) and read with step steps[i]
    (negative: reversed) along axis i, out of a larger buffer."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a.copy()
    store = np.full(tuple(a.shape[p] * abs(steps[p]) for p in perm), _sentinel(a.dtype),
                    dtype=a.dtype)
    logical = store.transpose(np.argsort(perm))
    view = logical[tuple(slice(None, None, s) for s in steps)]
    view[...] = a
    return view


def check_layout(arr, a, name):
    """Sanity check of the helper itself: same values, and the intended storage."""
    np.testing.assert_array_equal(arr, a)
    if name == "readonly":
        assert not arr.flags.writeable
    if name in ("negative", "negstep") and a.size > 1:
        assert any(s < 0 for s, n in zip(arr.strides, arr.shape) if n > 1)
    if name == "unaligned" and a.size and a.itemsize > 1:
        assert not arr.flags.aligned


# ------------------------------------------------------------------------ references ----

def class_axis(ndim, axis):
    if axis is None:
        return 0 if ndim == 1 else 1
    return axis % ndim


def ref_log_softmax_last(x):
    """log_softmax over the last axis in extended precision.

    SciPy's shift (a non-finite maximum is replaced by 0), with the log-sum-exp taken as
    log(count of maxima) + log1p(rest / count) for a finite maximum, so that a tiny
    log-probability such as -log1p(e^-35) keeps its relative precision."""
    x = np.asarray(x, dtype=REF)
    if x.shape[-1] == 0:
        return x.copy()
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        finite = np.isfinite(m)
        tmp = x - np.where(finite, m, 0)
        e = np.exp(tmp)
        top = (x == m) & finite
        count = np.sum(top, axis=-1, keepdims=True)
        rest = np.sum(np.where(top, 0, e), axis=-1, keepdims=True)
        logs = np.where(finite, np.log1p(rest / np.maximum(count, 1)) + np.log(
            np.maximum(count, 1).astype(REF)), np.log(np.sum(e, axis=-1, keepdims=True)))
        return tmp - logs


def ref_loss(kind, x, target, weight=None, ignore_index=-100, reduction="mean",
             label_smoothing=0.0, axis=None, with_terms=False):
    """NumPy reference for nll_loss (kind="nll") and cross_entropy (kind="ce").

    Returns (loss, grad) in float64; grad is d loss / d x (of the sum for reduction="none").
    PyTorch semantics: a row with +inf (or with every logit -inf) has nan log-probabilities.

    With `with_terms`, also returns the elementwise sum of the magnitudes of the terms that
    make up each gradient entry (e.g. |p| + 1 at a target): entries such as p_t - 1 with
    p_t close to 1 come out of a cancellation, so their rounding error is relative to this,
    not to their value."""
    x = np.asarray(x)
    ax = class_axis(x.ndim, axis)
    xm = np.moveaxis(x.astype(REF), ax, -1)
    C = xm.shape[-1]
    w = np.ones(C, REF) if weight is None else np.asarray(weight).astype(REF)
    W = w.sum()
    eps = REF(label_smoothing)
    target = np.asarray(target)
    prob = target.dtype.kind == "f"
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if kind == "nll":
            logp = xm
        else:
            logp = ref_log_softmax_last(xm)
            bad = np.any(xm == np.inf, axis=-1, keepdims=True)
            logp = np.where(bad, np.nan, logp)
        p = np.exp(logp)
        if prob:
            tm = np.moveaxis(target.astype(REF), ax, -1)
            tp = (1 - eps) * tm + eps / C
            wt = w * tp
            rows = -np.sum(wt * logp, axis=-1)
            g = np.sum(wt, axis=-1, keepdims=True) * p - wt
            mag = np.abs(np.sum(wt, axis=-1, keepdims=True) * p) + np.abs(wt)
            denom = REF(rows.size)
        else:
            t = target.astype(np.int64)
            keep = t != ignore_index
            ts = np.where(keep, t, 0)
            wt = np.where(keep, w[ts] if C else 0, 0)
            onehot = np.zeros(xm.shape, REF)
            if C:
                np.put_along_axis(onehot, ts[..., None], keep[..., None].astype(REF), axis=-1)
            logp_t = np.take_along_axis(logp, ts[..., None], axis=-1)[..., 0] if C else \
                np.zeros(t.shape, REF)
            nll_rows = np.where(keep, -wt * logp_t, 0)
            if kind == "nll":
                rows = nll_rows
                g = -wt[..., None] * onehot
                mag = np.abs(g)
            else:
                smooth = np.where(keep, -np.sum(w * logp, axis=-1), 0)
                rows = (1 - eps) * nll_rows
                if eps > 0 and C:
                    rows = rows + eps / C * smooth
                # an ignored row gets no gradient, except that autograd through
                # log_softmax turns 0 into nan where the log-probabilities are nan
                g = np.where(keep[..., None],
                             (1 - eps) * wt[..., None] * (p - onehot)
                             + (eps / C if C else 0) * (W * p - w),
                             np.where(np.isnan(logp), np.nan, 0))
                mag = np.where(keep[..., None],
                               (1 - eps) * wt[..., None] * (p + onehot)
                               + (eps / C if C else 0) * (W * p + w), 0)
            denom = wt.sum()
        if reduction == "none":
            loss = rows
        elif reduction == "sum":
            loss = rows.sum()
        else:
            loss = rows.sum() / denom
            # (gradients are finite or nan, so scaling by 0 keeps exactly the nans)
            g = g * (1 / denom if denom != 0 else 0)
            mag = mag * (1 / denom if denom != 0 else 0)
    grad = np.moveaxis(g, -1, ax)
    out = np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)
    if with_terms:
        mag = np.nan_to_num(np.asarray(np.moveaxis(mag, -1, ax), dtype=np.float64),
                            nan=0.0, posinf=0.0)
        return out + (mag,)
    return out


def torch_loss(torch, kind, x, target, weight=None, ignore_index=-100, reduction="mean",
               label_smoothing=0.0, axis=None):
    """PyTorch float64 oracle: (loss, grad) as float64 NumPy arrays."""
    F = torch.nn.functional
    x = np.asarray(x)
    ax = class_axis(x.ndim, axis)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    xin = torch.movedim(xt, ax, 1) if x.ndim >= 2 else xt
    target = np.asarray(target)
    if target.dtype.kind == "f":
        tt = torch.tensor(target.astype(np.float64))
        if x.ndim >= 2:
            tt = torch.movedim(tt, ax, 1)
    else:
        tt = torch.tensor(target.astype(np.int64))
    w = None if weight is None else torch.tensor(np.asarray(weight, dtype=np.float64))
    if kind == "nll":
        loss = F.nll_loss(xin, tt, weight=w, ignore_index=ignore_index, reduction=reduction)
    else:
        loss = F.cross_entropy(xin, tt, weight=w, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    loss.sum().backward()
    grad = xt.grad
    grad = np.zeros(x.shape) if grad is None else grad.numpy()
    return loss.detach().numpy().astype(np.float64), grad


# --------------------------------------------------------------------------- fixtures ----

@pytest.fixture
def torch():
    """PyTorch, or skip the test when it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import fastnll
    import fastnll._dispatch as dispatch
    return (f"fastnll {fastnll.__version__} from {fastnll.__file__}; kernels "
            f"{dispatch.level}, OpenMP {dispatch.kernels.built_with_openmp()}, "
            f"{fastnll.get_num_threads()} threads")
