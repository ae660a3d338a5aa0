"""The benchmark's implementations compute what fastnll computes.

`python -m fastnll bench` and the asv suite time every installed implementation of each
workload side by side (NumPy, SciPy, PyTorch, JAX, Optax, scikit-learn, Dask); a ratio means
something only if each computes the same quantity, so each is run here on a small array of
every workload and its value (the loss, or the first of its results) compared with fastnll's.
The floors (one read, one copy, the matrix products alone) and the variants that compute on
other data (half the targets ignored) are left out.
"""
import sys

import numpy as np
import pytest

from fastnll import _bench

NOT_THE_SAME_QUANTITY = {"numpy-read", "numpy-copy", "matmul-floor", "fastnll-half-ignored"}


def _small(ndim):
    return (48, 16, 40) if ndim == 3 else (64, 50)     # (N, H, V) or (N, C)


def _value(result):
    while isinstance(result, (tuple, list)):
        result = result[0]
    if hasattr(result, "detach"):                   # a torch tensor (of any float dtype)
        result = result.detach().double().numpy()
    if hasattr(result, "compute"):                  # a dask array
        result = result.compute()
    return np.asarray(result, dtype=np.float64)


WORKLOADS = sorted({(f, len(s), d) for f, s, d in
                    _bench.DEFAULT_WORKLOADS + _bench.EXTRA_WORKLOADS})


@pytest.mark.parametrize("func,ndim,dtype", WORKLOADS)
def test_every_implementation_computes_the_same_quantity(func, ndim, dtype):
    if dtype in _bench.HALF:
        return test_16_bit_implementations_compute_the_same_quantity(func, ndim, dtype)
    _check_workload(func, ndim, dtype, rtol=2e-4 if dtype == "float32" else 1e-9, atol=1e-6)


# `bench --dtype float16|bfloat16`: the default workloads that take 16-bit data
HALF_WORKLOADS = sorted({(f, len(s)) for f, s, _ in _bench.DEFAULT_WORKLOADS
                         if f not in _bench.LINEAR + _bench.NEEDS_DASK})


@pytest.mark.parametrize("dtype", _bench.HALF)
@pytest.mark.parametrize("func,ndim", HALF_WORKLOADS)
def test_16_bit_implementations_compute_the_same_quantity(func, ndim, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    # each peer rounds its 16-bit results (and PyTorch some intermediate ones) its own way
    _check_workload(func, ndim, dtype, rtol=2e-2, atol=2e-3)


def _check_workload(func, ndim, dtype, rtol, atol):
    x, t = _bench.make_data(_small(ndim), dtype)
    assert x.dtype == _bench.np_dtype(dtype)
    impls = _bench.implementations(func, x, t)
    if "fastnll" not in impls:
        pytest.skip(f"{func}: its implementations need a package that is not installed")
    expected = _value(impls["fastnll"]())
    compared = []
    for name, call in impls.items():
        if name == "fastnll" or name in NOT_THE_SAME_QUANTITY:
            continue
        got = _value(call())
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol,
                                   err_msg=f"{func} {dtype}: {name}")
        compared.append(name)
    assert compared, f"{func}: nothing to compare with"
    if dtype in _bench.HALF:
        # fastnll's float32 call is timed right after fastnll's, closest in time to it
        assert list(impls)[:2] == ["fastnll", "fastnll-float32"]


def test_small_call_labels():
    # SMALL_CALLS (the asv parameters) names small_calls()'s rows, in order (the torch_*
    # rows only when PyTorch is installed)
    labels = [label for label, _ in _bench.small_calls()]
    assert labels == _bench.SMALL_CALLS[:len(labels)]
    assert len(labels) in (len(_bench.SMALL_CALLS), len(_bench.SMALL_CALLS) - 3)


@pytest.mark.parametrize("label", [label for label, _ in _bench.small_calls()])
def test_small_calls_compute_the_same_quantity(label):
    # the rows of `bench --small`: each peer's call against fastnll's (the torch_* rows,
    # forward and backward of fastnll.torch and of PyTorch, return nothing to compare)
    impls = dict(_bench.small_calls())[label]
    results = {name: call() for name, call in impls.items()}
    if label.startswith("torch_"):
        assert set(results) == {"fastnll", "torch"}
        return
    expected = _value(results["fastnll"])
    for name, got in results.items():
        np.testing.assert_allclose(_value(got), expected, rtol=2e-5, atol=1e-6,
                                   err_msg=f"{label}: {name}")
    if label.startswith("cross_entropy_grad") and "torch" in results:
        np.testing.assert_allclose(results["torch"][1].numpy(), results["fastnll"][1],
                                   rtol=1e-5, atol=1e-7)


def test_each_sample_follows_an_untimed_call_of_its_own(monkeypatch):
    # time_impls: per round, each implementation's timed calls come right after an untimed
    # call of its own (the steady state of a loop), never right after another implementation;
    # one, where the calls take their usual time (here: whatever their time, as a pause of
    # the process must not add a call to the log)
    monkeypatch.setattr(_bench, "WARM_FLOOR", float("inf"))
    log = []
    impls = {name: (lambda name=name: log.append(name)) for name in ("a", "b", "c")}
    medians = _bench.time_impls(impls, repeat=3, min_time=0.0)
    assert set(medians) == {"a", "b", "c"}
    # first two calls each to size the samples (min_time 0: one call a sample), then per
    # round, for each implementation in turn: the untimed call, the timed one
    sizing = ["a", "a", "b", "b", "c", "c"]
    assert log == sizing + ["a", "a", "b", "b", "c", "c"] * 3


def test_time_impls_keeps_one_sample_a_round_in_samples():
    impls = {name: (lambda: None) for name in ("fastnll", "peer")}
    samples = {}
    medians = _bench.time_impls(impls, repeat=4, min_time=0.0, samples=samples)
    assert set(samples) == {"fastnll", "peer"}
    assert [len(v) for v in samples.values()] == [4, 4]
    assert medians["peer"] == np.median(samples["peer"])


def test_ratios_are_paired_within_a_round():
    # the machine twice as slow in the second round and four times in the third: "other"
    # takes three times fastnll's time but in the second round, which the paired ratio
    # keeps (3) and the ratio of the medians (3 / 2 = 1.5) does not
    samples = {"fastnll": [1.0, 2.0, 4.0], "peer": [2.0, 4.0, 8.0], "other": [3.0, 2.0, 12.0]}
    ratios = _bench.paired_ratios(samples)
    assert ratios == {"fastnll": 1.0, "peer": 2.0, "other": 3.0}
    assert np.median(samples["other"]) / np.median(samples["fastnll"]) == 1.5


def test_the_table_shows_the_paired_ratios_in_their_order():
    wl = ("softmax", (8, 3), "float32")
    # the medians in another order than the ratios (and the ratios given out of order)
    medians = {"slow": 1e-3, "fastnll": 3e-3, "peer": 2e-3}
    table = _bench.format_table([(wl, medians, {"slow": 4.0, "fastnll": 1.0, "peer": 2.5})])
    rows = [r.split() for r in table.splitlines()[2:5]]
    assert [r[-4] for r in rows] == ["fastnll", "peer", "slow"]   # name, median, unit
    assert [r[-1] for r in rows] == ["1.00x", "2.50x", "4.00x"]


@pytest.mark.parametrize("times,calls", [
    ([0.09, 0.06, 0.008, 0.008], 3),    # slow after an idle spell, then back to the usual
    ([0.014, 0.5], 1),                  # a slow spell (under 2x the fastest): one call
    ([0.008, 0.5], 1),                  # the usual time at once: one call, as always
    ([0.09] * 9, _bench.WARM_CALLS),    # never back: at most WARM_CALLS
    ([0.0009, 0.0009], 1),              # under WARM_FLOOR: one call
    ([0.005, 0.5], 1),                  # faster than the fastest so far: one, the new best
])
def test_warm_up_calls_until_the_usual_time(monkeypatch, times, calls):
    made = []
    script = iter(times)

    def time_once(fn):
        fn()
        return next(script)

    monkeypatch.setattr(_bench, "_time_once", time_once)
    best = _bench._warm_up(lambda: made.append(1), 0.0075 if times[0] > 1e-3 else 1e-5)
    assert len(made) == calls
    assert best == min([0.0075 if times[0] > 1e-3 else 1e-5] + times[:calls])


def test_time_impls_carries_the_fastest_call_from_round_to_round(monkeypatch):
    # the warm-up's reference is the fastest of every call timed so far, the samples'
    # included: after a sample of 4 ms, a call of 9 ms (over 2 x 4 ms) gets a second one
    times = iter([0.01,                 # sizing (the call after the first)
                  0.01,                 # round 1's warm-up: within 2 x 0.01
                  0.009, 0.004])        # round 2's warm-up: over 2 x 0.004, then within
    clock = iter([0.0, 0.004, 1.0, 1.0 + 0.004])    # the two samples' start and end

    def time_once(fn):
        fn()
        return next(times)

    class Clock:
        perf_counter = staticmethod(lambda: next(clock))
        sleep = staticmethod(lambda seconds: None)

    monkeypatch.setattr(_bench, "_time_once", time_once)
    monkeypatch.setattr(_bench, "time", Clock)
    calls = []
    samples = {}
    _bench.time_impls({"fastnll": lambda: calls.append(1)}, repeat=2, min_time=0.0,
                      samples=samples)
    assert samples["fastnll"] == pytest.approx([0.004, 0.004])
    # the first call and the sizing one; round 1: a warm-up call and the sample; round 2: two
    # warm-up calls and the sample
    assert len(calls) == 2 + 2 + 3


def test_plot_without_matplotlib_stops_before_the_run(monkeypatch):
    # --plot needs matplotlib: said at once, not after a run of many minutes
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    monkeypatch.setattr(_bench, "run_workload", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(SystemExit, match="--plot needs matplotlib: pip install matplotlib"):
        _bench.main(["--function", "entropy", "--plot", "x.png"])
