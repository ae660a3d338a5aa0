"""examples/bigram.py: a short training run lowers the loss below the uniform baseline."""
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import special

import fastnll

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "bigram.py")


@pytest.fixture(scope="module")
def bigram():
    spec = importlib.util.spec_from_file_location("bigram_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_names_ship_with_the_package(bigram):
    names = bigram.load_names()
    assert len(names) >= 2000
    assert all(n.isalpha() and n.islower() for n in names)


def test_short_training_run_learns(bigram):
    W, losses = bigram.train(steps=40, log=None)
    assert losses[-1] < losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses[5:], losses[6:]))   # settles monotonically
    assert losses[-1] < math.log(27)
    # the reported objective, recomputed independently for the returned weights
    xs, ys = bigram.bigrams(bigram.load_names())
    logp = special.log_softmax(W.astype(np.float64), axis=1)[xs, ys]
    objective = -logp.mean() + 0.01 * np.mean(W.astype(np.float64) ** 2)
    assert losses[-1] == pytest.approx(objective, rel=1e-5)


def test_samples_are_names(bigram):
    W, _ = bigram.train(steps=40, log=None)
    names = bigram.sample(W, 5, seed=1)
    assert len(names) == 5
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz") for n in names)


def test_script_runs(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnll.__file__))
    proc = subprocess.run([sys.executable, EXAMPLE, "--steps", "20", "--samples", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "samples:" in proc.stdout
