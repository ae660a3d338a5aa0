"""`python -m fastnll demo`: every value it shows, against SciPy/NumPy."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import special, stats

import fastnll
from fastnll import _demo


@pytest.fixture(scope="module")
def values():
    return _demo.compute()


def test_likelihood_of_the_sample(values):
    for name, (mu, sd) in _demo.CANDIDATES.items():
        logpdf = stats.norm.logpdf(_demo.SAMPLE, mu, sd)
        assert values[f"nll {name}"] == pytest.approx(-logpdf.sum(), rel=1e-12)
        assert values[f"likelihood {name}"] == pytest.approx(
            np.prod(stats.norm.pdf(_demo.SAMPLE, mu, sd)), rel=1e-10)
    assert values["nll N(50, 5)"] < values["nll N(45, 8)"]


def test_gradient_descent_finds_the_closed_form_mle(values):
    assert values["mle mean"] == pytest.approx(np.mean(_demo.SAMPLE), rel=1e-9)
    assert values["mle std"] == pytest.approx(np.std(_demo.SAMPLE, ddof=0), rel=1e-9)
    # and that is where the NLL is smallest
    mle = -stats.norm.logpdf(_demo.SAMPLE, values["mle mean"], values["mle std"]).sum()
    for dm, ds in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        other = -stats.norm.logpdf(_demo.SAMPLE, values["mle mean"] + dm,
                                   values["mle std"] + ds).sum()
        assert mle < other


def test_why_logs(values):
    assert values["product of probabilities"] == pytest.approx(
        np.prod(_demo.SMALL_PROBS), rel=1e-12)
    assert values["sum of log-probabilities"] == pytest.approx(
        np.log(_demo.SMALL_PROBS).sum(), rel=1e-12)
    assert values["product of 400 probabilities 0.05"] == 0.0
    assert values["sum of 400 log-probabilities"] == pytest.approx(400 * math.log(0.05),
                                                                   rel=1e-12)


def test_entropy_cross_entropy_kl(values):
    for name, p in _demo.DICE.items():
        assert values[f"entropy {name}"] == pytest.approx(stats.entropy(p), rel=1e-12)
    assert values["entropy fair die"] == pytest.approx(math.log(6), rel=1e-12)
    observed = _demo.ROLLS / _demo.ROLLS.sum()
    h = stats.entropy(observed)
    assert values["entropy observed"] == pytest.approx(h, rel=1e-12)
    for name in ("fair die", "biased towards six"):
        q = _demo.DICE[name]
        ce = -(observed * np.log(q)).sum()
        assert values[f"cross-entropy vs {name}"] == pytest.approx(ce, rel=1e-12)
        assert values[f"kl vs {name}"] == pytest.approx(stats.entropy(observed, q), rel=1e-10)
        assert values[f"cross-entropy vs {name}"] == pytest.approx(
            values["entropy observed"] + values[f"kl vs {name}"], rel=1e-12)


def test_nll_equals_one_hot_cross_entropy(values):
    logp = special.log_softmax(_demo.LOGITS, axis=1)
    ref = -logp[np.arange(len(_demo.CLASSES)), _demo.CLASSES].mean()
    for key in ("cross-entropy class indices", "cross-entropy one-hot", "nll of log-softmax"):
        assert values[key] == pytest.approx(ref, rel=1e-12)


def test_demo_command_prints_the_story(tmp_path):
    env = dict(os.environ)
    # run the fastnll that this test imported (installed, or built in place)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnll.__file__))
    proc = subprocess.run([sys.executable, "-m", "fastnll", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"fitted mean = {np.mean(_demo.SAMPLE):.6f}" in out
    assert f"fitted std  = {np.std(_demo.SAMPLE):.6f}" in out
    assert "N(50, 5) fits the sample better" in out
    assert "underflows to 0.0" in out
