"""A next-character language model with a fused output head
========================================================

A character-level MLP language model in NumPy, with fastnll.linear_cross_entropy as its head.

The model (after Bengio et al., 2003) predicts the next character of a name from the k
characters before it (k = 3 by default; the start of a name is padded with the boundary
token ".", which also ends it):

    x      = concat(E[c1], ..., E[ck])             E: the V x d embedding table      (N, k d)
    hidden = tanh(x @ W_h + b_h)                   W_h: (k d, h)                      (N, h)
    loss   = cross_entropy(hidden @ W_out.T + b_out, next character)   W_out: (V, h), V = 27

The output layer and the loss are one call, fastnll.linear_cross_entropy(hidden, W_out,
targets, linear_bias=b_out, return_grad=True), which returns the loss and its gradients with
respect to hidden, W_out and b_out; the caller never forms the logits.  The function forms
them one block of rows at a time within a fixed memory budget, so the N x V logits of a
large vocabulary (32k to 256k tokens) and their gradient never exist at once.  Here V = 27
and every row fits in one block: this demonstrates the API, the memory it saves is for large
vocabularies.  The gradient of hidden is carried back by hand through tanh, the hidden layer
and the embedding table (np.add.at), and minibatch Adam (float32, seeded, the learning rate
decayed linearly to a tenth) updates the parameters.  Sampling forms one context's logits
with NumPy and draws from fastnll.softmax of them.

The loss reported is the mean next-character cross-entropy in nats on the whole training set
(every character of every name: there is no held-out split), the quantity that the script
also computes for examples/bigram.py trained with its defaults, and prints for comparison.
With about 4k parameters for about 24k targets the model overfits somewhat: on names held
out of training its cross-entropy is higher than on the training set, though still below
the bigram model's on the same held-out names.

    python examples/char_lm.py [--steps 4000] [--batch 64] [--lr 0.01] [--context 3]
                               [--embed 10] [--hidden 64] [--samples 10]

The names are fastnll/data/names.txt (synthetic, made by examples/make_names.py).
"""
import argparse
import importlib.resources
import importlib.util
import math
import os
import string
import time

import numpy as np

import fastnll

CHARS = "." + string.ascii_lowercase          # index 0 is the boundary token
INDEX = {c: i for i, c in enumerate(CHARS)}
V = len(CHARS)                                # 27
PARAMS = ("E", "W_h", "b_h", "W_out", "b_out")


def load_names():
    text = (importlib.resources.files("fastnll") / "data" / "names.txt").read_text()
    return text.split()


def contexts(names, k=3):
    """(contexts, targets) over ".name." for every name: each character after the first "."
    (the final "." included) with the k characters before it, padded on the left with ".".
    contexts: int (n, k); targets: int (n,) -- the same n targets as bigram.py's bigrams."""
    xs, ys = [], []
    for name in names:
        seq = [0] * k + [INDEX[c] for c in name] + [0]
        for i in range(k, len(seq)):
            xs.append(seq[i - k:i])
            ys.append(seq[i])
    return np.array(xs, dtype=np.intp).reshape(-1, k), np.array(ys, dtype=np.intp)


def init_params(k=3, d=10, h=64, seed=0, dtype=np.float32):
    """The parameters, a dict of arrays named as in PARAMS (the head's W_out is (V, h))."""
    rng = np.random.default_rng(seed)
    params = {
        "E": rng.standard_normal((V, d)),
        "W_h": rng.standard_normal((k * d, h)) / math.sqrt(k * d),
        "b_h": np.zeros(h),
        "W_out": 0.1 * rng.standard_normal((V, h)) / math.sqrt(h),   # start near uniform
        "b_out": np.zeros(V),
    }
    return {name: a.astype(dtype) for name, a in params.items()}


def forward(params, ctx):
    """(x, hidden): the concatenated embeddings of the contexts ctx (n, k) and the hidden layer."""
    x = params["E"][ctx].reshape(len(ctx), -1)
    return x, np.tanh(x @ params["W_h"] + params["b_h"])


def logits(params, ctx):
    """The head's logits for the contexts ctx, formed with NumPy (for sampling and checks)."""
    return forward(params, ctx)[1] @ params["W_out"].T + params["b_out"]


def loss_and_grads(params, ctx, y):
    """The mean cross-entropy of the targets y after the contexts ctx, and its gradients
    (a dict keyed like params), in the parameters' dtype."""
    E, W_h = params["E"], params["W_h"]
    x, hid = forward(params, ctx)
    loss, g = fastnll.linear_cross_entropy(hid, params["W_out"], y, linear_bias=params["b_out"],
                                           return_grad=True)
    dpre = g.input * (1 - hid * hid)                        # through tanh
    dE = np.zeros_like(E)
    np.add.at(dE, ctx, (dpre @ W_h.T).reshape(len(ctx), -1, E.shape[1]))   # through E[ctx]
    grads = {"E": dE, "W_h": x.T @ dpre, "b_h": dpre.sum(axis=0),
             "W_out": g.linear_weight, "b_out": g.linear_bias}
    return float(loss), grads


def evaluate(params, ctx, y):
    """The mean cross-entropy (nats) of the targets y after the contexts ctx."""
    hid = forward(params, ctx)[1]
    return float(fastnll.linear_cross_entropy(hid, params["W_out"], y,
                                              linear_bias=params["b_out"]))


def train(steps=4000, batch=64, lr=0.01, k=3, d=10, h=64, seed=0, eval_every=500, names=None,
          log=print):
    """Minibatch Adam on the mean cross-entropy.  Returns (params, losses): losses are the
    cross-entropy on the whole training set at steps 0, eval_every, 2 eval_every, ... and
    steps (the last one of the returned params)."""
    ctx, y = contexts(load_names() if names is None else names, k)
    params = init_params(k, d, h, seed)
    rng = np.random.default_rng(seed)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = {n: np.zeros_like(a) for n, a in params.items()}
    v = {n: np.zeros_like(a) for n, a in params.items()}
    losses = []
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            losses.append(evaluate(params, ctx, y))
            if log is not None:
                log(f"step {step:5d}   cross-entropy {losses[-1]:.4f}")
        if step == steps:
            break
        rows = rng.integers(0, len(y), size=batch)
        _, grads = loss_and_grads(params, ctx[rows], y[rows])
        t = step + 1
        rate = lr * (1 - 0.9 * step / steps)                # linear decay to lr / 10
        rate *= math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)  # Adam's bias corrections
        for n, p in params.items():
            g = grads[n]
            m[n] *= beta1
            m[n] += (1 - beta1) * g
            v[n] *= beta2
            v[n] += (1 - beta2) * (g * g)
            p -= (rate * m[n]) / (np.sqrt(v[n]) + eps)
    return params, losses


def sample(params, n, seed=0, max_len=20):
    """Draw n names: start from k "."s, draw from softmax(logits) until "."."""
    rng = np.random.default_rng(seed)
    k = params["W_h"].shape[0] // params["E"].shape[1]
    names = []
    for _ in range(n):
        ctx, out = [0] * k, []
        while len(out) < max_len:
            z = logits(params, np.array([ctx])).astype(np.float64)
            c = rng.choice(V, p=fastnll.softmax(z, axis=1)[0])
            if c == 0:
                break
            out.append(CHARS[c])
            ctx = ctx[1:] + [c]
        names.append("".join(out))
    return names


def bigram_cross_entropy(steps=300, names=None):
    """The cross-entropy on the same data of examples/bigram.py's model trained with its
    defaults (its reported loss adds an L2 term; this is the cross-entropy alone)."""
    # this file's directory (the documentation's gallery runs the examples from their own
    # directory, without a __file__)
    here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else "."
    path = os.path.join(here, "bigram.py")
    spec = importlib.util.spec_from_file_location("bigram_example", path)
    bigram = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bigram)
    names = load_names() if names is None else names
    W, _ = bigram.train(steps, names=names, log=None)
    xs, ys = bigram.bigrams(names)
    return float(fastnll.cross_entropy(W.astype(np.float64)[xs], ys))


def main():
    p = argparse.ArgumentParser(
        description="A character-level MLP language model, with linear_cross_entropy as its head.")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--context", type=int, default=3, help="characters of context (k)")
    p.add_argument("--embed", type=int, default=10, help="embedding size (d)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (h)")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    names = load_names()
    _, y = contexts(names, args.context)
    print(f"{len(names)} names, {len(y)} next-character targets; "
          f"uniform baseline log(27) = {math.log(V):.4f}")
    start = time.perf_counter()
    params, losses = train(args.steps, args.batch, args.lr, args.context, args.embed,
                           args.hidden, seed=args.seed, eval_every=max(1, args.steps // 8),
                           names=names)
    seconds = time.perf_counter() - start
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}   (cross-entropy on the whole training "
          f"set; {args.steps} steps in {seconds:.1f} s)")
    print(f"bigram example, bigram.train() defaults: cross-entropy "
          f"{bigram_cross_entropy(names=names):.4f}")
    print("samples:", ", ".join(sample(params, args.samples, seed=args.seed)))


if __name__ == "__main__":
    main()
