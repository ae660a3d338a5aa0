"""Bit-identical results across thread counts, repeated calls and concurrent Python threads."""
import math
import threading
from functools import partial

import numpy as np
import pytest

import fastnll
from helpers import assert_bitwise_equal, assert_close
from reference import ref_bce, ref_entropy, ref_kl, ref_loss

REDUCTIONS = ["none", "mean", "sum"]
KL_REDUCTIONS = ["none", "mean", "sum", "batchmean"]
FLOATS = [np.float32, np.float64]

# Every input below has more than 32768 elements, so that the kernels use their threads.


def one_and_two_threads(f):
    """f() with 1 and with 2 threads: the same bits.  Returns the 1-thread result as a
    tuple."""
    with fastnll.threads(1):
        assert fastnll.get_num_threads() == 1
        one = f()
    with fastnll.threads(2):
        assert fastnll.get_num_threads() == 2
        two = f()
    one = one if isinstance(one, tuple) else (one,)
    two = two if isinstance(two, tuple) else (two,)
    assert_bitwise_equal(two, one, "2 threads vs 1")
    return one


# ---------------------------------------------------------------- class-target losses ----

CASES = [
    ((64, 3000), None),       # rows
    ((3000, 64), 0),          # columns of a C-ordered matrix
    ((16, 300, 80), None),    # (N, C, d)
    ((4, 70, 300), -1),       # explicit class axis
    ((20000, 5), None),       # few classes: blocks of rows
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
def test_losses_thread_independent(shape, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    ax = 1 if axis is None else axis % len(shape)
    C = shape[ax]
    tshape = shape[:ax] + shape[ax + 1:]
    t = rng.integers(0, C, tshape)
    t.flat[::7] = -100
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    p = np.moveaxis(rng.dirichlet(np.ones(C), size=tshape), -1, ax).astype(dtype)
    for red in ["mean", "sum", "none"]:
        one_and_two_threads(partial(fastnll.nll_loss, x, t, weight=w, reduction=red, axis=axis,
                                    return_grad=True))
        for eps in (0.0, 0.2):
            out = one_and_two_threads(partial(
                fastnll.cross_entropy, x, t, weight=w, reduction=red, axis=axis,
                label_smoothing=eps, return_grad=True))
        one_and_two_threads(partial(
            fastnll.cross_entropy, x, p, weight=w, reduction=red, axis=axis, label_smoothing=0.1,
            return_grad=True))
        one_and_two_threads(partial(fastnll.cross_entropy, x, t, reduction=red, axis=axis))
    # and the multi-threaded result is the right one
    exp = ref_loss("ce", x, t, weight=w, reduction="none", label_smoothing=0.2, axis=axis)
    assert_close(out[0], exp[0], dtype)
    assert_close(out[1], exp[1], dtype)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize("dtype", FLOATS)
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
            assert_bitwise_equal(alone, with_grad, f"{name} {reduction} {kw and 'weighted'}")
        rows = f(x, t, reduction="none", **kw).astype(np.float64)
        np.testing.assert_allclose(f(x, t, reduction="sum", **kw), rows.sum(),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12)


# ------------------------------------------------------------------- softmax family ----

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", CASES + [((64, 3000), (0, 1)), ((16, 300, 80), (0, 2))],
                         ids=str)
def test_softmax_family_thread_independent(shape, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    ax = 1 if axis is None else axis
    one_and_two_threads(lambda: fastnll.softmax(x, axis=ax))
    one_and_two_threads(lambda: fastnll.log_softmax(x, axis=ax))
    one_and_two_threads(lambda: fastnll.logsumexp(x, axis=ax))
    one_and_two_threads(lambda: fastnll.logsumexp(x, axis=ax, b=np.abs(x) - 0.5,
                                                  return_sign=True))
    one_and_two_threads(lambda: fastnll.logsumexp(x))


# -------------------------------------------------- elementwise likelihoods and entropy ----

def _run_all(x, y, v, p, q):
    out = []
    for r in REDUCTIONS:
        out.append(fastnll.binary_cross_entropy_with_logits(x, y, weight=v, pos_weight=v[0],
                                                            reduction=r, return_grad=True))
        loss, (gx, gv) = fastnll.gaussian_nll_loss(x, y, v, reduction=r, return_grad=True)
        out.append((loss, gx, gv))
        out.append(fastnll.poisson_nll_loss(x, y, full=True, reduction=r, return_grad=True))
    for r in KL_REDUCTIONS:
        out.append(fastnll.kl_div(x, y, reduction=r, return_grad=True))
    out.append((fastnll.entropy(p, q, axis=0), fastnll.entropy(p, axis=1),
                fastnll.entropy(p, q, base=2, axis=None)))
    return tuple(out)


@pytest.mark.parametrize("dtype", FLOATS)
def test_elementwise_threads_bit_identical(dtype):
    rng = np.random.default_rng(17)
    shape = (400, 500)                     # 200_000 elements: the kernels use threads
    x = rng.normal(size=shape).astype(dtype)
    y = rng.uniform(0, 1, shape).astype(dtype)
    v = rng.uniform(0.1, 2, shape).astype(dtype)
    p = rng.uniform(0, 1, shape).astype(dtype)
    q = rng.uniform(0.1, 1, shape).astype(dtype)
    one_and_two_threads(lambda: _run_all(x, y, v, p, q))
    # and the multi-block, multi-thread sums are right
    rl, rm, *_ = ref_bce(x, y, v, v[0])
    with fastnll.threads(2):
        s = fastnll.binary_cross_entropy_with_logits(x, y, weight=v, pos_weight=v[0],
                                                     reduction="sum")
        m = fastnll.kl_div(x, y, reduction="batchmean")
        e = fastnll.entropy(p, q, axis=0)
    assert_close(s, math.fsum(rl.ravel()), dtype, mag=rm.sum(), err_msg="bce sum")
    kl, km, *_ = ref_kl(x, y, False)
    assert_close(m, math.fsum(kl.ravel()) / 400, dtype, mag=km.sum() / 400,
                 err_msg="kl batchmean")
    assert_close(e, ref_entropy(p, q, axis=0), dtype, mag=1.0, err_msg="entropy")


# ------------------------------------------------------- every function, 1, 2, 4 threads ----

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
                assert_bitwise_equal(call(), results[n], f"{name}, {n} threads, repeated")
    finally:
        fastnll.set_num_threads(None)
    assert_bitwise_equal(results[2], results[1], f"{name}: 2 threads vs 1")
    assert_bitwise_equal(results[4], results[1], f"{name}: 4 threads vs 1")


# ------------------------------------------------------------ several Python threads ----

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
                        assert_bitwise_equal(CALLS[name](), expected[name], name)
                    except AssertionError as e:
                        failures.append((tid, name, str(e)))

    def toggler():
        barrier.wait()
        n = 0
        while not stop.is_set():
            fastnll.set_num_threads(1 + n % 3)
            n += 1
            # calls under the process-wide setting, changing as they run
            assert_bitwise_equal(CALLS["cross_entropy"](), expected["cross_entropy"], "toggler")

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


CRNG = np.random.default_rng(7)
CX = CRNG.standard_normal((300, 150))                 # 45000 elements: kernels use threads
CX32 = CX.astype(np.float32)
CT = CRNG.integers(0, 150, 300)
CP = CRNG.random((300, 150))
CP /= CP.sum(axis=1, keepdims=True)
CY = CRNG.random((300, 150))
CV = CRNG.random((300, 150)) + 0.5

CONCURRENT_CALLS = [
    lambda: fastnll.logsumexp(CX, axis=1),
    lambda: fastnll.logsumexp(CX32, axis=0),
    lambda: fastnll.softmax(CX32, axis=1),
    lambda: fastnll.log_softmax(CX, axis=0),
    lambda: fastnll.cross_entropy(CX32, CT, label_smoothing=0.1, return_grad=True),
    lambda: fastnll.cross_entropy(CX, CP, reduction="none", return_grad=True),
    lambda: fastnll.nll_loss(CX, CT, reduction="sum", return_grad=True),
    lambda: fastnll.binary_cross_entropy_with_logits(CX, CY, return_grad=True),
    lambda: fastnll.gaussian_nll_loss(CX, CY, CV, return_grad=True),
    lambda: fastnll.poisson_nll_loss(CX32, CY, reduction="none"),
    lambda: fastnll.kl_div(CX, CP, reduction="batchmean", return_grad=True),
    lambda: fastnll.entropy(CP, CY, axis=1),
]


def test_eight_threads_at_once_match_sequential_calls():
    """Calls from several Python threads at once (the kernels release the GIL) give the
    results of the same calls made one after another, bit for bit."""
    expected = [call() for call in CONCURRENT_CALLS]
    n_threads, rounds = 8, 6
    failures = []
    barrier = threading.Barrier(n_threads)

    def worker(tid):
        barrier.wait()
        for r in range(rounds):
            for i in range(len(CONCURRENT_CALLS)):
                k = (i + tid + r) % len(CONCURRENT_CALLS)   # threads run different calls at once
                try:
                    assert_bitwise_equal(CONCURRENT_CALLS[k](), expected[k], f"call {k}")
                except AssertionError:
                    failures.append((tid, r, k))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, f"results differed from sequential calls: {failures[:5]}"


# -------------------------------------------------------------- hypothesis: thread counts ----

try:
    from hypothesis import given, settings, strategies as st
except ImportError:       # pragma: no cover
    st = None

if st is not None:
    from helpers import SETTINGS, layout_of, rng_for

    @settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 4))
    @given(data=st.data(),
           name=st.sampled_from(["bce", "gaussian", "poisson", "kl", "entropy"]),
           reduction=st.sampled_from(REDUCTIONS))
    def test_thread_count_does_not_change_results(data, name, reduction):
        """get_num_threads / threads(n): an input large enough for the kernels' threads
        gives the same bits with 1, 2 and 3 threads (fixed-order float64 reductions)."""
        n = data.draw(st.integers((1 << 15) + 64, 1 << 16), label="size")
        cols = data.draw(st.sampled_from([1, 7, 64]), label="cols")
        shape = (n // cols, cols)
        dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
        rng = rng_for(data, "seed")
        x = data.draw(layout_of(rng.standard_normal(shape).astype(dtype)), label="layout")
        y = rng.uniform(0.0, 1.0, shape).astype(dtype)
        calls = {
            "bce": lambda: fastnll.binary_cross_entropy_with_logits(
                x, y, pos_weight=np.full(cols, 2.0, dtype), reduction=reduction,
                return_grad=True),
            "gaussian": lambda: fastnll.gaussian_nll_loss(x, y, y[:, :1], reduction=reduction,
                                                          return_grad=True),
            "poisson": lambda: fastnll.poisson_nll_loss(x, y * 5, reduction=reduction,
                                                        return_grad=True),
            "kl": lambda: fastnll.kl_div(x, y, reduction=reduction, return_grad=True),
            "entropy": lambda: fastnll.entropy(y, x * x, axis=-1),
        }
        results = []
        for k in (1, 2, 3):
            with fastnll.threads(k):
                assert fastnll.get_num_threads() == k
                results.append(calls[name]())
        for k, other in zip((2, 3), results[1:]):
            assert_bitwise_equal(other, results[0], f"{name}: {k} threads vs 1")
else:       # pragma: no cover
    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_thread_count_does_not_change_results():
        pass


# ------------------------------------------------------------ the row prefetch switch ----

@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_row_prefetch_changes_no_bit(dtype, rng):
    # FASTNLL_ROW_PREFETCH (set at import from the CPU's vendor) only decides which lines the
    # row traversals ask for early: the same bits with it on and off, on rows of several
    # chunks (ROW_CHUNK = 1024) and rows shorter than one chunk
    from fastnll import _dispatch
    kern = _dispatch.kernels
    was = kern.row_prefetch()
    x = (3 * rng.standard_normal((48, 5000))).astype(dtype)
    xs = (3 * rng.standard_normal((4000, 300))).astype(dtype)
    y = rng.integers(0, 5000, 48)
    ys = rng.integers(0, 300, 4000)

    def calls():
        out = []
        for a, t in ((x, y), (xs, ys)):
            out += [fastnll.logsumexp(a, axis=1), fastnll.softmax(a, axis=1),
                    fastnll.log_softmax(a, axis=1),
                    *fastnll.cross_entropy(a, t, reduction="none", label_smoothing=0.1,
                                           return_grad=True)]
        return tuple(out)

    try:
        results = []
        for on in (True, False):
            kern.set_row_prefetch(on)
            assert kern.row_prefetch() is on
            results.append(calls())
    finally:
        kern.set_row_prefetch(was)
    assert kern.row_prefetch() is was
    assert_bitwise_equal(results[1], results[0], "row prefetch off vs on")
