"""examples/char_lm.py: a short training run of the MLP model beats the bigram example."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import special

import fastnll

HERE = os.path.dirname(__file__)
EXAMPLE = os.path.join(HERE, "..", "examples", "char_lm.py")
BIGRAM = os.path.join(HERE, "..", "examples", "bigram.py")
LETTERS = set("abcdefghijklmnopqrstuvwxyz")


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def char_lm():
    return _load(EXAMPLE, "char_lm_example")


@pytest.fixture(scope="module")
def bigram():
    return _load(BIGRAM, "bigram_example")


@pytest.fixture(scope="module")
def names(char_lm):
    return char_lm.load_names()


@pytest.fixture(scope="module")
def trained(char_lm, names):
    """A short run: (params, losses)."""
    return char_lm.train(steps=1000, eval_every=100, names=names, log=None)


def _contexts(names, k):
    """The (contexts, targets) of ".name." built from strings, independently of the example."""
    alphabet = ".abcdefghijklmnopqrstuvwxyz"
    ctx, y = [], []
    for name in names:
        padded = "." * k + name + "."
        for i in range(k, len(padded)):
            ctx.append([alphabet.index(c) for c in padded[i - k:i]])
            y.append(alphabet.index(padded[i]))
    return np.array(ctx).reshape(-1, k), np.array(y)


def _logits64(params, ctx):
    """The head's logits in float64, formed with NumPy from the parameters."""
    p = {n: np.asarray(a, dtype=np.float64) for n, a in params.items()}
    x = p["E"][ctx].reshape(len(ctx), -1)
    return np.tanh(x @ p["W_h"] + p["b_h"]) @ p["W_out"].T + p["b_out"]


def _cross_entropy64(params, ctx, y):
    return -special.log_softmax(_logits64(params, ctx), axis=1)[np.arange(len(y)), y].mean()


@pytest.mark.parametrize("k", [1, 3])
def test_contexts(char_lm, bigram, names, k):
    ctx, y = char_lm.contexts(names, k)
    ctx_ref, y_ref = _contexts(names, k)
    np.testing.assert_array_equal(ctx, ctx_ref)
    np.testing.assert_array_equal(y, y_ref)
    xs, ys = bigram.bigrams(names)        # the same targets as the bigram model's
    np.testing.assert_array_equal(y, ys)
    np.testing.assert_array_equal(ctx[:, -1], xs)


def test_short_training_run_learns(trained):
    params, losses = trained
    assert len(losses) == 11
    assert losses[-1] < losses[0] - 0.5
    assert losses[-1] < np.log(27)
    assert all(a.dtype == np.float32 for a in params.values())


def test_beats_the_bigram_model(trained, bigram, names):
    _, losses = trained
    xs, ys = bigram.bigrams(names)
    W, _ = bigram.train(names=names, log=None)          # bigram.py's defaults (300 steps)
    bigram_ce = -special.log_softmax(W.astype(np.float64), axis=1)[xs, ys].mean()
    # the best any bigram model can do on these data: the empirical next-character frequencies
    counts = np.zeros((27, 27))
    np.add.at(counts, (xs, ys), 1)
    best_bigram_ce = -np.log(counts[xs, ys] / counts.sum(axis=1)[xs]).mean()
    assert best_bigram_ce <= bigram_ce
    assert losses[-1] < best_bigram_ce - 0.1


def test_reported_loss_is_the_cross_entropy(char_lm, trained, names):
    params, losses = trained
    ctx, y = _contexts(names, 3)
    assert losses[-1] == pytest.approx(_cross_entropy64(params, ctx, y), rel=1e-5)
    assert char_lm.evaluate(params, ctx, y) == losses[-1]


def test_training_is_deterministic(char_lm, names):
    p1, l1 = char_lm.train(steps=50, eval_every=25, names=names, log=None)
    p2, l2 = char_lm.train(steps=50, eval_every=25, names=names, log=None)
    assert l1 == l2
    for n in p1:
        np.testing.assert_array_equal(p1[n], p2[n])


def test_gradients(char_lm, names):
    """The gradients of a tiny float64 model on a tiny batch: the head's against the
    gradient of NumPy-formed logits, every parameter's against central differences."""
    rng = np.random.default_rng(3)
    params = char_lm.init_params(k=2, d=3, h=5, seed=1, dtype=np.float64)
    params["b_h"] += 0.3 * rng.standard_normal(params["b_h"].shape)
    params["W_out"] *= 20
    params["b_out"] += 0.3 * rng.standard_normal(params["b_out"].shape)
    ctx, y = _contexts(names[:2], 2)                     # with a repeated context row
    ctx, y = np.concatenate([ctx, ctx[:2]]), np.concatenate([y, y[:2]])
    loss, grads = char_lm.loss_and_grads(params, ctx, y)
    assert loss == pytest.approx(_cross_entropy64(params, ctx, y), rel=1e-12)
    assert set(grads) == set(params)

    # the head: dloss/dlogits = (softmax - onehot) / N, then the linear layer's chain rule
    x = params["E"][ctx].reshape(len(ctx), -1)
    hid = np.tanh(x @ params["W_h"] + params["b_h"])
    dz = special.softmax(_logits64(params, ctx), axis=1)
    dz[np.arange(len(y)), y] -= 1
    dz /= len(y)
    np.testing.assert_allclose(grads["W_out"], dz.T @ hid, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads["b_out"], dz.sum(axis=0), rtol=1e-10, atol=1e-14)

    eps = 1e-6
    for name, p in params.items():
        assert grads[name].shape == p.shape
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = _cross_entropy64(params, ctx, y)
            p[i] = old - eps
            down = _cross_entropy64(params, ctx, y)
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-9, err_msg=name)


def test_samples_are_names(char_lm, trained):
    params, _ = trained
    names = char_lm.sample(params, 5, seed=1)
    assert len(names) == 5
    assert all(isinstance(n, str) and set(n) <= LETTERS for n in names)
    assert any(names)
    assert char_lm.sample(params, 5, seed=1) == names


def test_script_runs(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnll.__file__))
    proc = subprocess.run([sys.executable, EXAMPLE, "--steps", "100", "--samples", "3",
                           "--hidden", "16"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "loss " in proc.stdout and "bigram" in proc.stdout and "samples:" in proc.stdout
