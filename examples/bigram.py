"""A character-level bigram language model
=======================================

A character-level bigram language model, trained in pure NumPy with fastnll as the loss.

The model is one 27 x 27 weight matrix W (26 letters and a boundary token "."): the logits for
the character after `c` are one_hot(c) @ W, i.e. row c of W.  Training minimises the
cross-entropy of the next character (fastnll.cross_entropy, gradient from return_grad=True)
plus a small L2 penalty, by plain gradient descent.  Softmax of row c is then the model's
distribution of what follows c, and sampling from it makes up new names.

    python examples/bigram.py [--steps 300] [--lr 50] [--samples 10]

The names are fastnll/data/names.txt (synthetic, made by examples/make_names.py).
"""
import argparse
import importlib.resources
import math
import string

import numpy as np

import fastnll

CHARS = "." + string.ascii_lowercase          # index 0 is the boundary token
INDEX = {c: i for i, c in enumerate(CHARS)}
V = len(CHARS)                                # 27


def load_names():
    text = (importlib.resources.files("fastnll") / "data" / "names.txt").read_text()
    return text.split()


def bigrams(names):
    """(previous, next) character indices over ".name." for every name."""
    xs, ys = [], []
    for name in names:
        seq = [0] + [INDEX[c] for c in name] + [0]
        xs += seq[:-1]
        ys += seq[1:]
    return np.array(xs), np.array(ys)


def train(steps=300, lr=50.0, l2=0.01, seed=0, log_every=25, names=None, log=print):
    """Gradient descent on mean cross-entropy + l2 * mean(W^2).  Returns (W, losses)."""
    xs, ys = bigrams(load_names() if names is None else names)
    onehot = np.eye(V, dtype=np.float32)[xs]                  # (n, 27)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((V, V)).astype(np.float32)
    losses = []
    for step in range(steps + 1):
        logits = onehot @ W                                    # (n, 27)
        nll, dlogits = fastnll.cross_entropy(logits, ys, return_grad=True)
        loss = float(nll) + l2 * float(np.mean(W * W))
        losses.append(loss)
        if log is not None and step % log_every == 0:
            log(f"step {step:4d}   loss {loss:.4f}   (cross-entropy {float(nll):.4f})")
        if step == steps:
            break
        grad = onehot.T @ dlogits + (2 * l2 / W.size) * W      # chain rule through the matmul
        W -= lr * grad
    return W, losses


def sample(W, n, seed=0, max_len=20):
    """Draw n names from the model: start at ".", follow softmax(W[c]) until "."."""
    rng = np.random.default_rng(seed)
    probs = fastnll.softmax(W.astype(np.float64), axis=1)
    names = []
    for _ in range(n):
        c, out = 0, []
        while len(out) < max_len:
            c = rng.choice(V, p=probs[c])
            if c == 0:
                break
            out.append(CHARS[c])
        names.append("".join(out))
    return names


def main():
    p = argparse.ArgumentParser(
        description="A character-level bigram language model, with fastnll as the loss.")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=50.0)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    names = load_names()
    xs, _ = bigrams(names)
    print(f"{len(names)} names, {len(xs)} bigrams; uniform baseline log(27) = {math.log(V):.4f}")
    W, losses = train(args.steps, args.lr, seed=args.seed, names=names)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print("samples:", ", ".join(sample(W, args.samples, seed=args.seed)))


if __name__ == "__main__":
    main()
