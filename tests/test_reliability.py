"""Reliability: determinism across thread counts, thread settings interleaved between Python
threads, accuracy on extreme inputs, 64-bit indexing, and memory/refcount stability over many
calls.

Tests marked ``stress`` take a few seconds each; CI runs them once (at the default SIMD level).
The test marked ``bigmem`` needs about 10 GB of RAM and runs only with FASTNLL_BIGMEM=1:

    FASTNLL_BIGMEM=1 pytest tests/test_reliability.py -k bigmem
"""
import gc
import os
import sys
import threading

import numpy as np
import pytest
import scipy.special

import fastnll
from helpers import assert_bitwise_equal, assert_close
from reference import ref_log_softmax_last, ref_loss, torch_loss

RNG = np.random.default_rng(2026)
N, C = 400, 120                         # 48000 elements: every kernel uses its threads
X = RNG.standard_normal((N, C))
X32 = X.astype(np.float32)
T = RNG.integers(0, C, N)
T[::9] = -100
W = RNG.uniform(0.5, 2.0, C)
P = RNG.dirichlet(np.ones(C), size=N)
Y = RNG.random((N, C))
V = RNG.random((N, C)) + 0.25
COUNTS = RNG.poisson(2.0, (N, C)).astype(np.float64)
LOGP = np.log(P)

# every public function, with options that take each kernel's distinct paths
CALLS = {
    "logsumexp axis": lambda: fastnll.logsumexp(X32, axis=1),
    "logsumexp all": lambda: fastnll.logsumexp(X),
    "logsumexp b sign": lambda: fastnll.logsumexp(X, axis=0, b=Y - 0.3, return_sign=True),
    "softmax": lambda: fastnll.softmax(X32, axis=0),
    "log_softmax": lambda: fastnll.log_softmax(X, axis=1),
    "nll_loss": lambda: fastnll.nll_loss(LOGP, T, weight=W, return_grad=True),
    "cross_entropy": lambda: fastnll.cross_entropy(X32, T, weight=W, label_smoothing=0.1,
                                                   return_grad=True),
    "cross_entropy none": lambda: fastnll.cross_entropy(X, T, reduction="none",
                                                        return_grad=True),
    "cross_entropy columns": lambda: fastnll.cross_entropy(X.T, T, axis=0, return_grad=True),
    "cross_entropy probs": lambda: fastnll.cross_entropy(X, P, reduction="sum",
                                                         return_grad=True),
    "bce": lambda: fastnll.binary_cross_entropy_with_logits(
        X32, Y, pos_weight=W, return_grad=True),
    "gaussian": lambda: fastnll.gaussian_nll_loss(X, Y, V, full=True, return_grad=True),
    "poisson": lambda: fastnll.poisson_nll_loss(X, COUNTS, full=True, return_grad=True),
    "kl_div": lambda: fastnll.kl_div(LOGP.T, P.T, reduction="batchmean", return_grad=True),
    "entropy": lambda: fastnll.entropy(P, axis=1),
    "relative entropy": lambda: fastnll.entropy(P, Y, base=2, axis=0),
}


def _flat(result):
    if isinstance(result, tuple):
        return [a for r in result for a in _flat(r)]
    return [np.asarray(result)]


def _assert_same(a, b, name):
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb), name
    for u, v in zip(fa, fb):
        assert u.dtype == v.dtype and u.shape == v.shape, name
        assert u.tobytes() == v.tobytes(), f"{name}: results differ bit-wise"


# ------------------------------------------------------------ determinism ----

@pytest.mark.parametrize("name", sorted(CALLS))
def test_bit_identical_for_1_2_4_threads_and_repeated_calls(name):
    call = CALLS[name]
    results = {}
    try:
        for n in (1, 2, 4):
            fastnll.set_num_threads(n)
            assert fastnll.get_num_threads() == n
            results[n] = call()
            for _ in range(3):
                _assert_same(call(), results[n], f"{name}, {n} threads, repeated")
    finally:
        fastnll.set_num_threads(None)
    _assert_same(results[2], results[1], f"{name}: 2 threads vs 1")
    _assert_same(results[4], results[1], f"{name}: 4 threads vs 1")


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1000, 70), (300, 5), (7, 6, 50)],
                         ids=["rows", "few-classes", "inner"])
def test_loss_does_not_depend_on_asking_for_the_gradient(name, dtype, shape):
    # The same reduced loss, bit for bit, with and without the gradient; and "sum" is the
    # sum of the "none" losses to rounding (the kernels may add them in another order).
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    t.flat[::11] = -100
    w = rng.random(shape[1]).astype(dtype)
    f = getattr(fastnll, name)
    for kw in ({}, {"weight": w}):
        for reduction in ("mean", "sum"):
            alone = f(x, t, reduction=reduction, **kw)
            with_grad, _ = f(x, t, reduction=reduction, return_grad=True, **kw)
            _assert_same(alone, with_grad, f"{name} {reduction} {kw and 'weighted'}")
        rows = f(x, t, reduction="none", **kw).astype(np.float64)
        np.testing.assert_allclose(f(x, t, reduction="sum", **kw), rows.sum(),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_interleaved_thread_settings_from_several_python_threads():
    """Python threads each inside their own threads(k) block, while another thread keeps
    changing the process-wide setting: every call sees its own setting and every result is
    the sequential one."""
    names = sorted(CALLS)
    expected = {k: CALLS[k]() for k in names}
    failures, stop = [], threading.Event()
    barrier = threading.Barrier(7)

    def worker(tid):
        k = 1 + tid % 4
        barrier.wait()
        with fastnll.threads(k):
            for r in range(3):
                for i in range(len(names)):
                    name = names[(i + tid + r) % len(names)]
                    if fastnll.get_num_threads() != k:
                        failures.append((tid, "setting leaked", fastnll.get_num_threads()))
                    try:
                        _assert_same(CALLS[name](), expected[name], name)
                    except AssertionError as e:
                        failures.append((tid, name, str(e)))

    def toggler():
        barrier.wait()
        n = 0
        while not stop.is_set():
            fastnll.set_num_threads(1 + n % 3)
            n += 1
            # calls under the process-wide setting, changing as they run
            _assert_same(CALLS["cross_entropy"](), expected["cross_entropy"], "toggler")

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    tog = threading.Thread(target=toggler)
    try:
        tog.start()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        stop.set()
        tog.join()
        fastnll.set_num_threads(None)
    assert not failures, failures[:5]


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
