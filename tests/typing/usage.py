"""Typical use of fastnll, type-checked with `mypy --strict` by tests/test_typing.py."""
from typing import Any

import numpy as np
import numpy.typing as npt

import fastnll

Array = npt.NDArray[np.floating[Any]]

rng = np.random.default_rng(0)
x: Array = rng.standard_normal((8, 5))
t: npt.NDArray[np.int64] = rng.integers(0, 5, 8)

lse = fastnll.logsumexp(x, axis=1)
value, sign = fastnll.logsumexp(x, axis=(0, 1), b=x, return_sign=True)
probs = fastnll.softmax(x, axis=1)
logp = fastnll.log_softmax(x, axis=-1)

loss = fastnll.cross_entropy(x, t, label_smoothing=0.1)
total: float = float(loss)
loss2, grad = fastnll.cross_entropy(x, t, weight=np.ones(5), return_grad=True)
step: Array = x - 0.1 * grad
nll, g = fastnll.nll_loss(logp, t, None, -100, "sum", None, True)    # positional flag
rows = fastnll.nll_loss(logp, t, reduction="none")

bce, gb = fastnll.binary_cross_entropy_with_logits(x, (x > 0).astype(float), return_grad=True)
gauss, (g_mu, g_var) = fastnll.gaussian_nll_loss(x, x, np.ones_like(x), return_grad=True)
var_step: Array = g_var
poisson = fastnll.poisson_nll_loss(x, np.abs(x), log_input=True, full=True)
kl = fastnll.kl_div(logp, probs, reduction="batchmean")
h = fastnll.entropy([0.5, 0.5], base=2)


def maybe_grad(flag: bool) -> object:
    return fastnll.cross_entropy(x, t, return_grad=flag)     # a plain bool: either result


with fastnll.threads(2):
    n: int = fastnll.get_num_threads()
fastnll.set_num_threads(None)
config: dict[str, Any] = fastnll.show_config(mode="dicts")
fastnll.show_config()
version: str = fastnll.__version__


def linear_head() -> float:
    h = np.zeros((4, 3), dtype=np.float32)
    W = np.zeros((5, 3), dtype=np.float32)
    y = np.array([0, 1, 2, -100])
    loss, grads = fastnll.linear_cross_entropy(h, W, y, softcap=30.0, return_grad=True)
    g_input: npt.NDArray[np.floating[Any]] = grads.input
    assert grads.linear_bias is None
    return float(loss) + float(g_input.sum())


def preallocated() -> float:
    """out= and grad_out=: one buffer reused across calls."""
    x = np.zeros((4, 3), dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    buf = np.empty_like(x)
    s = fastnll.softmax(x, axis=1, out=buf)
    lse = fastnll.logsumexp(x, axis=1, out=np.empty(4, dtype=np.float32))
    loss, grad = fastnll.cross_entropy(x, y, return_grad=True, grad_out=buf)
    v, (g_mean, g_var) = fastnll.gaussian_nll_loss(
        x, x, np.ones(4, dtype=np.float32)[:, None], return_grad=True,
        grad_out=(np.empty_like(x), np.empty((4, 1), dtype=np.float32)))
    return float(loss) + float(np.sum(s)) + float(np.sum(lse)) + float(grad.sum()) + float(v)
