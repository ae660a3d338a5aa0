"""Regressions for problems an independent review found (each failed before its fix)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnll


def test_nll_loss_with_an_odd_target_stride():
    # a field of a structured array: int64 with a 12-byte stride
    rec = np.zeros(3, dtype=[("label", "<i8"), ("flag", "<i4")])
    rec["flag"][0] = 1
    rec["label"] = [1, 0, 1]
    x = np.log([[0.7, 0.3]] * 3)
    for f in (fastnll.nll_loss, fastnll.cross_entropy):
        got = f(x, rec["label"], reduction="none")
        np.testing.assert_array_equal(got, f(x, rec["label"].copy(), reduction="none"))


def test_gaussian_nan_var_gives_nan_as_pytorch():
    loss, (gx, gv) = fastnll.gaussian_nll_loss(np.array([0.5, 1.0]), np.zeros(2),
                                               np.array([np.nan, 1.0]), reduction="none",
                                               return_grad=True)
    assert np.isnan(loss[0]) and np.isnan(gx[0]) and np.isnan(gv[0])
    assert loss[1] == pytest.approx(0.5) and gx[1] == 1.0
    assert np.isnan(fastnll.gaussian_nll_loss(np.ones(3), np.zeros(3), float("nan")))


@pytest.mark.parametrize("layout", ["rows", "columns", "few classes"])
def test_negative_strides_everywhere(layout):
    rng = np.random.default_rng(0)
    shape = {"rows": (50, 700), "columns": (700, 50), "few classes": (900, 12)}[layout]
    x = rng.standard_normal(shape)[::-1, ::-1]
    axis = 0 if layout == "columns" else 1
    t = rng.integers(0, x.shape[axis], x.shape[1 - axis])[::-1]
    xc, tc = np.ascontiguousarray(x), np.ascontiguousarray(t)
    # a reversed class axis takes the strided loop (another summation order): 1 ulp apart
    np.testing.assert_allclose(fastnll.logsumexp(x, axis=axis),
                               fastnll.logsumexp(xc, axis=axis), rtol=1e-14)
    np.testing.assert_allclose(fastnll.softmax(x, axis=axis), fastnll.softmax(xc, axis=axis),
                               rtol=1e-13, atol=1e-300)
    a = fastnll.cross_entropy(x, t, axis=axis, label_smoothing=0.1, reduction="none",
                              return_grad=True)
    b = fastnll.cross_entropy(xc, tc, axis=axis, label_smoothing=0.1, reduction="none",
                              return_grad=True)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-16)


def test_nan_class_weight_is_accepted_as_in_pytorch():
    loss = fastnll.cross_entropy(np.zeros((2, 3)), [0, 1], weight=[np.nan, 1.0, 1.0],
                                 reduction="none")
    assert np.isnan(loss[0]) and loss[1] == pytest.approx(np.log(3))


def test_probability_targets_with_no_classes():
    loss = fastnll.cross_entropy(np.zeros((4, 0)), np.zeros((4, 0)), reduction="none")
    np.testing.assert_array_equal(loss, np.zeros(4))


def test_unknown_simd_level_is_named_as_such(tmp_path):
    env = dict(os.environ, FASTNLL_SIMD_LEVEL="junk",
               PYTHONPATH=os.path.dirname(os.path.dirname(fastnll.__file__)))
    proc = subprocess.run([sys.executable, "-c", "import fastnll"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "not a kernel level" in proc.stderr and "x86-64-v3" in proc.stderr


def test_softmax_of_a_scalar_is_a_scalar_as_in_scipy():
    import scipy.special
    for f, ref in ((fastnll.softmax, scipy.special.softmax),
                   (fastnll.log_softmax, scipy.special.log_softmax)):
        got, want = f(3.0), ref(3.0)
        assert np.ndim(got) == 0 and not isinstance(got, np.ndarray), type(got)
        assert float(got) == float(want)
