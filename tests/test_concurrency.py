"""Calls from several Python threads at once (the kernels release the GIL) give bit-identical
results to the same calls made one after another."""
import threading

import numpy as np

import fastnll

RNG = np.random.default_rng(7)
X = RNG.standard_normal((300, 150))                 # 45000 elements: kernels use threads
X32 = X.astype(np.float32)
T = RNG.integers(0, 150, 300)
P = RNG.random((300, 150))
P /= P.sum(axis=1, keepdims=True)
Y = RNG.random((300, 150))
V = RNG.random((300, 150)) + 0.5

CALLS = [
    lambda: fastnll.logsumexp(X, axis=1),
    lambda: fastnll.logsumexp(X32, axis=0),
    lambda: fastnll.softmax(X32, axis=1),
    lambda: fastnll.log_softmax(X, axis=0),
    lambda: fastnll.cross_entropy(X32, T, label_smoothing=0.1, return_grad=True),
    lambda: fastnll.cross_entropy(X, P, reduction="none", return_grad=True),
    lambda: fastnll.nll_loss(X, T, reduction="sum", return_grad=True),
    lambda: fastnll.binary_cross_entropy_with_logits(X, Y, return_grad=True),
    lambda: fastnll.gaussian_nll_loss(X, Y, V, return_grad=True),
    lambda: fastnll.poisson_nll_loss(X32, Y, reduction="none"),
    lambda: fastnll.kl_div(X, P, reduction="batchmean", return_grad=True),
    lambda: fastnll.entropy(P, Y, axis=1),
]


def _flat(result):
    if isinstance(result, tuple):
        return [a for r in result for a in _flat(r)]
    return [np.asarray(result)]


def _same(a, b):
    return all(x.dtype == y.dtype and x.shape == y.shape
               and np.array_equal(x, y, equal_nan=True) for x, y in zip(_flat(a), _flat(b)))


def test_eight_threads_at_once_match_sequential_calls():
    expected = [call() for call in CALLS]
    n_threads, rounds = 8, 6
    failures = []
    barrier = threading.Barrier(n_threads)

    def worker(tid):
        barrier.wait()
        for r in range(rounds):
            for i in range(len(CALLS)):
                k = (i + tid + r) % len(CALLS)      # threads run different calls at once
                if not _same(CALLS[k](), expected[k]):
                    failures.append((tid, r, k))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, f"results differed from sequential calls: {failures[:5]}"
