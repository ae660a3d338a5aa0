"""The integer codes the wrappers pass to the kernels: one definition, and both sides agree."""
# The codes are cpdef enums of the kernel modules (fastnll/_codes.pxi): the wrappers take
# their values from the module in use, so the two sides cannot drift apart by hand; these
# tests check that every kernel module (every SIMD level) defines the same codes, that the
# wrappers map names to them, and that each code makes the kernels compute what the wrapper
# means by it.
import importlib

import numpy as np
import pytest

import fastnll
from fastnll import _checks, _class_losses, _dispatch, _elementwise
from fastnll._dispatch import kernels

ENUMS = ("Reduction", "Elementwise")


def _members(module, name):
    return {m.name: int(m) for m in getattr(module, name)}


@pytest.mark.parametrize("level", _dispatch.built_levels())
def test_every_level_has_the_same_codes(level):
    module = importlib.import_module("fastnll._kern_" + level.replace("-", "_"))
    for name in ENUMS:
        assert _members(module, name) == _members(kernels, name), (level, name)


def test_the_codes_are_distinct():
    for name in ENUMS:
        values = list(_members(kernels, name).values())
        assert len(set(values)) == len(values), name


def test_the_wrappers_take_the_kernels_codes():
    assert set(_class_losses._REDUCTION_CODES) == set(_checks.REDUCTIONS)
    for name, code in _class_losses._REDUCTION_CODES.items():
        assert code is kernels.Reduction[name.upper()]
    assert _elementwise._KIND is kernels.Elementwise
    assert {m.name for m in kernels.Elementwise} == {"BCE", "GAUSSIAN", "POISSON", "KL"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_reduction_code_means_its_name(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)).astype(dtype)
    t = np.array([0, 4, -100, 2, 2, 1])
    rows = np.empty(6, dtype)
    bad, _, total, weight_sum = kernels.class_loss(
        x=x[:, :, None], targets=t[:, None], weight=None, ignore_index=-100,
        label_smoothing=0.0, is_nll=False, reduction=kernels.Reduction.NONE,
        rows=rows[:, None], grad=None, nthreads=1)
    assert bad == -1 and weight_sum == 5
    np.testing.assert_array_equal(rows, fastnll.cross_entropy(x, t, reduction="none"))
    for name in ("mean", "sum"):
        _, _, total, weight_sum = kernels.class_loss(
            x=x[:, :, None], targets=t[:, None], weight=None, ignore_index=-100,
            label_smoothing=0.0, is_nll=False, reduction=kernels.Reduction[name.upper()],
            rows=None, grad=None, nthreads=1)
        want = fastnll.cross_entropy(x, t, reduction=name)
        assert dtype(total / weight_sum if name == "mean" else total) == want, name


@pytest.mark.parametrize("kind, call", [
    ("BCE", lambda x, y: fastnll.binary_cross_entropy_with_logits(x, y, reduction="sum")),
    ("GAUSSIAN", lambda x, y: fastnll.gaussian_nll_loss(x, y, np.ones_like(x), reduction="sum")),
    ("POISSON", lambda x, y: fastnll.poisson_nll_loss(x, y, reduction="sum")),
    ("KL", lambda x, y: fastnll.kl_div(x, y, reduction="sum")),
])
def test_each_elementwise_code_means_its_loss(kind, call):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, 60))     # the 3-D view the wrapper passes for 60 elements
    y = rng.random((1, 1, 60))
    a = np.ones_like(x) if kind == "GAUSSIAN" else None      # var = 1
    total = kernels.elementwise_loss(
        kind=kernels.Elementwise[kind], x=x, y=y, a=a, b=None, eps=1e-6 if a is not None
        else 1e-8, full=False, log_input=True, log_target=False, sigma=1.0, rows=None,
        grad=None, grad_a=None, nthreads=1)
    assert total == call(x, y)
