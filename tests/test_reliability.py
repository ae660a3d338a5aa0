"""Accuracy on extreme inputs, 64-bit indexing, memory and references over many calls."""
# Tests marked ``stress`` take a few seconds each; CI runs them once (at the default SIMD
# level).  The test marked ``bigmem`` needs about 10 GB of RAM and runs only with
# FASTNLL_BIGMEM=1:
#
#     FASTNLL_BIGMEM=1 pytest tests/test_reliability.py -k bigmem
#
# (Determinism across thread counts and Python threads: test_determinism.py.)
import gc
import os
import sys

import numpy as np
import pytest
import scipy.special

import fastnll
from helpers import assert_close
from reference import ref_log_softmax_last, ref_loss, torch_loss


# ------------------------------------------------------- accuracy under stress ----

def _stress_rows(dtype, C):
    """Rows of length C: magnitudes 1e30 and 1e-30, -inf mixed with finite values, all -inf,
    one finite value among -inf, +inf, nan."""
    rng = np.random.default_rng(C)
    rows = []
    r = rng.standard_normal(C) * 1e30
    rows.append(r)
    rows.append(rng.standard_normal(C) * 1e-30)
    r = rng.standard_normal(C) * 3
    r[::3] = -np.inf
    rows.append(r)
    r = rng.standard_normal(C) * 1e30
    r[1::2] = -np.inf
    rows.append(r)
    rows.append(np.full(C, -np.inf))
    r = np.full(C, -np.inf)
    r[C // 2] = 1e30
    rows.append(r)
    r = rng.standard_normal(C)
    r[C - 1] = np.inf
    rows.append(r)
    r = rng.standard_normal(C)
    r[0] = np.nan
    rows.append(r)
    return np.array(rows).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [5, 40, 1000])        # few classes, short rows, vector rows
@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
def test_extreme_logits_softmax_family(dtype, C, columns):
    x = _stress_rows(dtype, C)
    xin, ax = (np.ascontiguousarray(x.T), 0) if columns else (x, 1)
    ref = np.asarray(ref_log_softmax_last(x), np.float64)
    with np.errstate(all="ignore"):
        ref_lse = scipy.special.logsumexp(x.astype(np.float64), axis=1)
        ref_sm = scipy.special.softmax(x.astype(np.float64), axis=1)
    with np.errstate(all="ignore"):
        scipy_lsm = scipy.special.log_softmax(x.astype(np.float64), axis=1)
    # the extended-precision reference keeps SciPy's inf/nan pattern (-inf beside a +inf)
    np.testing.assert_array_equal(np.isfinite(ref), np.isfinite(scipy_lsm))
    lse = fastnll.logsumexp(xin, axis=ax)
    sm = fastnll.softmax(xin, axis=ax)
    lsm = fastnll.log_softmax(xin, axis=ax)
    if columns:
        sm, lsm = sm.T, lsm.T
    assert_close(lse, ref_lse, dtype)
    assert_close(sm, ref_sm, dtype)
    assert_close(lsm, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [5, 40, 1000])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_extreme_logits_cross_entropy(dtype, C, smoothing, torch):
    """Against PyTorch (float64 autograd) and the NumPy reference, including its inf/nan."""
    x = _stress_rows(dtype, C)
    t = np.array([0, 1, 0, 1, 2, C // 2, 1, 0]) % C    # targets at -inf, at the finite value...
    for red in ("none", "sum"):
        got = fastnll.cross_entropy(x, t, reduction=red, label_smoothing=smoothing,
                                    return_grad=True)
        exp = torch_loss(torch, "ce", x, t, reduction=red, label_smoothing=smoothing)
        ref = ref_loss("ce", x, t, reduction=red, label_smoothing=smoothing)
        assert_close(got[0], exp[0], dtype, err_msg=f"loss vs torch, {red}")
        assert_close(got[0], ref[0], dtype, err_msg=f"loss vs reference, {red}")
        assert_close(got[1], exp[1], dtype, err_msg=f"grad vs torch, {red}")


@pytest.mark.stress
def test_float32_mean_over_ten_million_rows():
    """No naive float32 accumulation: the mean over 1e7 rows is within 1e-6 (relative) of
    the float64 reference computed from the same float32 logits."""
    n, c = 10_000_000, 4
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c), dtype=np.float32)
    x[:, 0] += np.float32(2.0)                      # losses of different sizes
    t = rng.integers(0, c, n).astype(np.int32)
    got = fastnll.cross_entropy(x, t)
    total = 0.0
    for s in range(0, n, 1_000_000):                # float64 reference, chunked
        xs = x[s:s + 1_000_000].astype(np.float64)
        lse = scipy.special.logsumexp(xs, axis=1)
        total += np.sum(lse - np.take_along_axis(xs, t[s:s + 1_000_000, None], 1)[:, 0])
    ref = total / n
    assert got.dtype == np.float32
    assert abs(float(got) - ref) <= 1e-6 * abs(ref), (float(got), ref)
    # the float32 result is the correctly rounded reference, give or take one ulp
    assert abs(float(got) - ref) <= float(np.spacing(np.float32(ref)))


# ------------------------------------------------------------ 64-bit indexing ----

@pytest.mark.stress
def test_more_than_2_to_31_elements_broadcast_view():
    """2**31 + 2**19 elements (a zero-stride view of one row, no copy): the counts and the
    per-row work must not overflow 32-bit integers."""
    rows, c = 2 ** 16 + 16, 2 ** 15
    assert rows * c > 2 ** 31
    row = np.random.default_rng(3).standard_normal(c).astype(np.float32)
    x = np.broadcast_to(row, (rows, c))
    ref = scipy.special.logsumexp(row.astype(np.float64))
    per_row = fastnll.logsumexp(x, axis=1)
    assert per_row.shape == (rows,)
    assert_close(per_row, np.full(rows, ref), np.float32)
    assert_close(fastnll.logsumexp(x), ref + np.log(rows), np.float32)
    t = np.arange(rows) % c
    nll_rows = ref - row[t].astype(np.float64)
    assert_close(fastnll.cross_entropy(x, t, reduction="none"), nll_rows, np.float32)
    assert_close(fastnll.cross_entropy(x, t), nll_rows.mean(), np.float32)


@pytest.mark.skipif(os.environ.get("FASTNLL_BIGMEM", "") in ("", "0"),
                    reason="needs ~10 GB of RAM: run with FASTNLL_BIGMEM=1")
def test_bigmem_array_of_more_than_2_to_31_elements():
    """A real float32 array of 2**31 + 2**19 elements (8.6 GB): element offsets past 2**31.
    Row i is base[i % K] + shift[i], so every row differs and the references are cheap."""
    rows, c, K = 2 ** 16 + 16, 2 ** 15, 7
    rng = np.random.default_rng(11)
    base = rng.standard_normal((K, c)).astype(np.float32)
    shift = (np.arange(rows) % 1009).astype(np.float32) / np.float32(64)
    x = np.empty((rows, c), np.float32)
    for s in range(0, rows, 4096):
        e = min(s + 4096, rows)
        np.add(base[np.arange(s, e) % K], shift[s:e, None], out=x[s:e])
    t = (np.arange(rows) * 7919) % c
    lse_base = scipy.special.logsumexp(base.astype(np.float64), axis=1)
    i = np.arange(rows)
    # the rows' values are float32 sums, so compare against their own float64 values at the
    # targets; the log-sum-exp shifts exactly by the (float32-exact) shift
    xt = x[i, t].astype(np.float64)
    lse_ref = lse_base[i % K] + shift.astype(np.float64)
    assert_close(fastnll.logsumexp(x, axis=1), lse_ref, np.float32)
    assert_close(fastnll.cross_entropy(x, t, reduction="none"), lse_ref - xt, np.float32,
                 atol=1e-4)
    assert_close(fastnll.nll_loss(x, t, reduction="none"), -xt, np.float32)
    # the last row sits past element 2**31
    assert_close(fastnll.logsumexp(x[-1:], axis=1), lse_ref[-1:], np.float32)


# --------------------------------------------------- memory over many calls ----

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


SMALL = np.random.default_rng(9)
XS = SMALL.standard_normal((8, 5))
TS = SMALL.integers(0, 5, 8)
PS = SMALL.dirichlet(np.ones(5), size=8)
YS = SMALL.random((8, 5))
VS = YS + 0.5
WS = np.ones(5)
SMALL_CALLS = {
    "logsumexp": (lambda: fastnll.logsumexp(XS, axis=1, b=YS, return_sign=True), (XS, YS)),
    "softmax": (lambda: fastnll.softmax(XS, axis=0), (XS,)),
    "log_softmax": (lambda: fastnll.log_softmax(XS, axis=1), (XS,)),
    "nll_loss": (lambda: fastnll.nll_loss(XS, TS, weight=WS, return_grad=True), (XS, TS, WS)),
    "cross_entropy": (lambda: fastnll.cross_entropy(XS, TS, weight=WS, return_grad=True),
                      (XS, TS, WS)),
    "cross_entropy probs": (lambda: fastnll.cross_entropy(XS, PS, return_grad=True), (XS, PS)),
    "bce": (lambda: fastnll.binary_cross_entropy_with_logits(XS, YS, return_grad=True),
            (XS, YS)),
    "gaussian": (lambda: fastnll.gaussian_nll_loss(XS, YS, VS, return_grad=True),
                 (XS, YS, VS)),
    "poisson": (lambda: fastnll.poisson_nll_loss(XS, YS, return_grad=True), (XS, YS)),
    "kl_div": (lambda: fastnll.kl_div(XS, PS, return_grad=True), (XS, PS)),
    "entropy": (lambda: fastnll.entropy(PS, YS, axis=1), (PS, YS)),
    "errors": (None, (XS, TS)),
}


def _failing_call():
    try:
        fastnll.cross_entropy(XS, TS + 5)
    except IndexError:
        pass


@pytest.mark.stress
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("name", sorted(SMALL_CALLS))
def test_100k_calls_leak_no_memory_and_no_references(name):
    call, inputs = SMALL_CALLS[name]
    call = call or _failing_call            # the error path must not leak either
    for _ in range(2000):                   # warm up caches and allocator pools
        call()
    gc.collect()
    refs = [sys.getrefcount(a) for a in inputs]
    before = _rss_bytes()
    for _ in range(100_000):
        call()
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 4 * 2 ** 20, f"{name}: resident memory grew by {grown / 2 ** 20:.1f} MB"
    assert [sys.getrefcount(a) for a in inputs] == refs, f"{name}: input references changed"
