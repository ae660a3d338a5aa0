"""The forward pass of every loss allocates nothing of the input's size."""
# tracemalloc sees every NumPy allocation (NumPy reports them to it), so the peak it records
# during a call is what the wrapper allocated: conversions, copies, outputs.  The kernels' own
# scratch (a few bytes per block of rows) is not traced, and is far below the bound anyway.
import numpy as np
import pytest

import fastnll
from helpers import traced_peak

N, C = 2000, 500          # 4 MB of float32 logits


def _cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C), dtype=np.float32)
    t = rng.integers(0, C, N)
    p = rng.random((N, C), dtype=np.float32)
    p /= p.sum(axis=1, keepdims=True)
    y01 = rng.random((N, C), dtype=np.float32)
    var = rng.random((N, C), dtype=np.float32) + np.float32(0.5)
    x4 = rng.standard_normal((20, C, 10, 10), dtype=np.float32)
    t4 = rng.integers(0, C, (20, 10, 10))
    return {
        "cross_entropy": (lambda: fastnll.cross_entropy(x, t), x),
        "cross_entropy smoothing+weight": (
            lambda: fastnll.cross_entropy(x, t, weight=np.ones(C, np.float32),
                                          label_smoothing=0.1), x),
        "cross_entropy (N, C, d1, d2)": (lambda: fastnll.cross_entropy(x4, t4), x4),
        "cross_entropy transposed": (lambda: fastnll.cross_entropy(x.T, t, axis=0), x),
        "cross_entropy probabilities": (lambda: fastnll.cross_entropy(x, p), x),
        "nll_loss": (lambda: fastnll.nll_loss(x, t), x),
        "binary_cross_entropy_with_logits": (
            lambda: fastnll.binary_cross_entropy_with_logits(x, y01), x),
        "gaussian_nll_loss": (lambda: fastnll.gaussian_nll_loss(x, y01, var), x),
        "poisson_nll_loss": (lambda: fastnll.poisson_nll_loss(x, y01), x),
        "kl_div": (lambda: fastnll.kl_div(x, p, reduction="batchmean"), x),
        "logsumexp": (lambda: fastnll.logsumexp(x, axis=1), x),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_allocates_under_one_percent_of_the_input(name):
    fn, x = CASES[name]
    peak = traced_peak(fn)
    assert peak < 0.01 * x.nbytes, f"{name}: {peak} bytes traced for a {x.nbytes}-byte input"


def test_the_measure_sees_a_copy():
    # the bound above would catch a wrapper that copies its input
    _, x = CASES["cross_entropy"]
    assert traced_peak(lambda: np.ascontiguousarray(x.T)) >= x.nbytes


def test_elementwise_losses_with_unmergeable_broadcasts_do_not_copy():
    rng = np.random.default_rng(1)
    # 8 MB; broadcasts that leave 4 dimensions unmerged: handled as 8 groups of views (a
    # few hundred bytes of view objects each), where a copy would cost 1-3 times the input
    x = rng.standard_normal((8, 16, 32, 256))
    y = np.abs(rng.standard_normal((8, 1, 32, 1)))
    v = np.abs(rng.standard_normal((8, 16, 32, 1))) + 0.5
    for fn in (lambda: fastnll.poisson_nll_loss(x, y),
               lambda: fastnll.gaussian_nll_loss(x, y, v),
               lambda: fastnll.binary_cross_entropy_with_logits(x, x, weight=y)):
        peak = traced_peak(fn)
        assert peak < 0.01 * x.nbytes, f"{peak} bytes traced for a {x.nbytes}-byte input"
