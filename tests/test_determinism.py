"""Bit-identical results across thread counts, repeated calls and concurrent Python threads."""
import numpy as np
import pytest

import fastnll
from helpers import assert_bitwise_equal

REDUCTIONS = ["none", "mean", "sum"]
FLOATS = [np.float32, np.float64]


# -------------------------------------------------------------- hypothesis: thread counts ----

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from helpers import SETTINGS, layout_of, rng_for  # noqa: E402


@settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 4))
@given(data=st.data(), name=st.sampled_from(["bce", "gaussian", "poisson", "kl", "entropy"]),
       reduction=st.sampled_from(REDUCTIONS))
def test_thread_count_does_not_change_results(data, name, reduction):
    """get_num_threads / threads(n): an input large enough for the kernels' threads gives the
    same bits with 1, 2 and 3 threads (fixed-order float64 reductions)."""
    n = data.draw(st.integers((1 << 15) + 64, 1 << 16), label="size")
    cols = data.draw(st.sampled_from([1, 7, 64]), label="cols")
    shape = (n // cols, cols)
    dtype = np.dtype(data.draw(st.sampled_from(FLOATS), label="dtype"))
    rng = rng_for(data, "seed")
    x = data.draw(layout_of(rng.standard_normal(shape).astype(dtype)), label="layout")
    y = rng.uniform(0.0, 1.0, shape).astype(dtype)
    calls = {
        "bce": lambda: fastnll.binary_cross_entropy_with_logits(
            x, y, pos_weight=np.full(cols, 2.0, dtype), reduction=reduction, return_grad=True),
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
