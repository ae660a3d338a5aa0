"""`python -m fastnll bench`: time fastnll against NumPy and whatever peers are installed.

Each workload is one public function on one array; each implementation computes the same
quantity.  Calls are interleaved (one sample of each implementation per round) so that a drift
in the machine's speed hits all of them alike, and each sample follows one or more untimed
calls of the same implementation, so that it times what a loop calling that function sees
(see time_impls); the table shows each implementation's median time, and its time as a
multiple of fastnll's: the median over the rounds of the two samples' ratio within each round
(a paired ratio, which a change in the machine's speed from one round to the next moves less
than it moves a ratio of the two medians; a change within a round still moves it).
"""
import argparse
import collections
import platform
import statistics
import time

import numpy as np

import fastnll


# ------------------------------------------------------------------ implementations ----

HALF = ("float16", "bfloat16")      # the 16-bit dtypes of --dtype


def np_dtype(name):
    """NumPy's dtype of a --dtype name (bfloat16 is ml_dtypes', imported only for it)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise SystemExit("--dtype bfloat16 needs ml_dtypes: pip install ml_dtypes") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _tensor(torch, a):
    """A tensor on an array's memory (a bfloat16 array through its bits: NumPy's bfloat16
    is ml_dtypes', which PyTorch does not know)."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _np_log_softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _np_cross_entropy(x, t):
    m = np.max(x, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(x - m), axis=1)) + m[:, 0]
    return np.mean(lse - x[np.arange(x.shape[0]), t])


def _np_cross_entropy_grad(x, t):
    m = np.max(x, axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[np.arange(n), t])
    g = e / s
    g[np.arange(n), t] -= 1
    g /= n
    return loss, g


def _np_nll_loss_grad(x, t):
    n = x.shape[0]
    g = np.zeros_like(x)
    g[np.arange(n), t] = -1.0 / n
    return -np.mean(x[np.arange(n), t]), g


def _torch_fwd_bwd(torch, loss_fn, x, t):
    """A call of loss_fn forward and backward on a fresh leaf tensor over x's memory:
    (loss, the input's gradient)."""
    tt = torch.from_numpy(t)

    def run():
        xt = _tensor(torch, x).requires_grad_(True)
        loss = loss_fn(xt, tt)
        loss.backward()
        return loss, xt.grad
    return run


def _torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None, None
    return torch, F


def _jax():
    """(jax, optax or None), or (None, None) without JAX.  x64 is switched on so that the
    float64 workloads run in float64 (JAX computes float32 otherwise, silently); float32
    arrays stay float32."""
    try:
        import jax
    except ImportError:
        return None, None
    jax.config.update("jax_enable_x64", True)
    try:
        import optax
    except ImportError:
        optax = None
    return jax, optax


def _jitted(jax, f, *args):
    """A zero-argument call of jax.jit(f) on device copies of args, waiting for the result
    (JAX dispatches asynchronously); compiled by a first call here, not in the timing."""
    compiled = jax.jit(f)
    dev = [jax.device_put(a) for a in args]
    run = lambda: jax.block_until_ready(compiled(*dev))  # noqa: E731
    run()
    return run


def _jax_impls(func, x, t, impls):
    """JAX (jitted, on device arrays) and Optax's losses, where installed, for the class-axis
    workloads."""
    jax, optax = _jax()
    if jax is None:
        return
    jnp, nn = jax.numpy, jax.nn

    def ce(z, y):
        return -jnp.mean(jnp.take_along_axis(nn.log_softmax(z, axis=1), y[:, None], axis=1))

    if func == "cross_entropy":
        impls["jax"] = _jitted(jax, ce, x, t)
        if optax is not None:
            impls["optax"] = _jitted(
                jax, lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean(),
                x, t)
    elif func == "cross_entropy_grad":
        impls["jax"] = _jitted(jax, jax.value_and_grad(ce), x, t)
        if optax is not None:
            impls["optax"] = _jitted(jax, jax.value_and_grad(
                lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()), x, t)
    elif func in ("nll_loss", "nll_loss_grad"):
        def nll(z, y):
            return -jnp.mean(jnp.take_along_axis(z, y[:, None], axis=1))
        impls["jax"] = _jitted(jax, nll if func == "nll_loss" else jax.value_and_grad(nll),
                               x, t)
    elif func.startswith("logsumexp"):
        axis = 0 if func.endswith("axis0") else 1
        impls["jax"] = _jitted(jax, lambda z: jax.scipy.special.logsumexp(z, axis=axis), x)
    elif func in ("softmax", "log_softmax"):
        impls["jax"] = _jitted(jax, lambda z: getattr(nn, func)(z, axis=1), x)


def _scipy_special():
    try:
        import scipy.special
    except ImportError:
        return None
    return scipy.special


def implementations(func, x, t):
    """{name: zero-argument callable} for one workload (for the linear_* workloads, x is the
    features and t a LinearHead, as make_data builds them)."""
    impls = {}
    torch, F = _torch()
    sp = _scipy_special()
    if func in LINEAR:
        _linear_impls(func, x, t, impls, torch, F)
        return impls
    if func == "cross_entropy":
        impls["fastnll"] = lambda: fastnll.cross_entropy(x, t)
        impls["numpy"] = lambda: _np_cross_entropy(x, t)
        if sp is not None:
            impls["scipy"] = lambda: -np.mean(
                np.take_along_axis(sp.log_softmax(x, axis=1), t[:, None], axis=1))
        if torch is not None:
            xt, tt = _tensor(torch, x), torch.from_numpy(t)
            impls["torch"] = lambda: F.cross_entropy(xt, tt)
    elif func in ("cross_entropy_grad", "nll_loss_grad"):
        name = func[:-len("_grad")]
        loss_fn = getattr(fastnll, name)
        impls["fastnll"] = lambda: loss_fn(x, t, return_grad=True)
        grad_buf = np.empty_like(x)
        # the training-loop form: the gradient written into one reused array
        impls["fastnll-out"] = lambda: loss_fn(x, t, return_grad=True, grad_out=grad_buf)
        np_fn = _np_cross_entropy_grad if name == "cross_entropy" else _np_nll_loss_grad
        impls["numpy"] = lambda: np_fn(x, t)
        if torch is not None:
            impls["torch"] = _torch_fwd_bwd(torch, getattr(F, name), x, t)
    elif func in ("torch_cross_entropy_grad", "torch_nll_loss_grad"):
        # fastnll.torch against PyTorch's own loss: forward + backward on a CPU tensor
        if torch is not None:
            import fastnll.torch as fnt
            name = func[len("torch_"):-len("_grad")]
            impls["fastnll"] = _torch_fwd_bwd(torch, getattr(fnt, name), x, t)
            impls["torch"] = _torch_fwd_bwd(torch, getattr(F, name), x, t)
    elif func == "nll_loss":
        impls["fastnll"] = lambda: fastnll.nll_loss(x, t)
        impls["numpy"] = lambda: -np.mean(x[np.arange(x.shape[0]), t])
        if torch is not None:
            xt, tt = _tensor(torch, x), torch.from_numpy(t)
            impls["torch"] = lambda: F.nll_loss(xt, tt)
    elif func.startswith("logsumexp"):
        axis = 0 if func.endswith("axis0") else 1
        impls["fastnll"] = lambda: fastnll.logsumexp(x, axis=axis)
        impls["numpy"] = lambda: (lambda m: np.log(np.sum(np.exp(x - m), axis=axis))
                                  + np.squeeze(m, axis))(np.max(x, axis=axis, keepdims=True))
        if sp is not None:
            impls["scipy"] = lambda: sp.logsumexp(x, axis=axis)
        if torch is not None:
            xt = _tensor(torch, x)
            impls["torch"] = lambda: torch.logsumexp(xt, dim=axis)
    elif func in ("softmax", "log_softmax"):
        impls["fastnll"] = lambda: getattr(fastnll, func)(x, axis=1)
        buf = np.empty_like(x)
        # into a preallocated output: the same floor as numpy-copy, no page faults of a
        # fresh array
        impls["fastnll-out"] = lambda: getattr(fastnll, func)(x, axis=1, out=buf)
        if func == "softmax":
            impls["numpy"] = lambda: (lambda e: e / e.sum(axis=1, keepdims=True))(
                np.exp(x - x.max(axis=1, keepdims=True)))
        else:
            impls["numpy"] = lambda: _np_log_softmax(x, 1)
        if sp is not None:
            impls["scipy"] = lambda: getattr(sp, func)(x, axis=1)
        if torch is not None:
            xt = _tensor(torch, x)
            impls["torch"] = lambda: getattr(torch, func)(xt, dim=1)
        out = np.empty_like(x)
        impls["numpy-copy"] = lambda: np.copyto(out, x)
    elif func in _ELEMENTWISE:
        _elementwise_impls(func, x, impls, torch, F)
    elif func in NEEDS_DASK:
        _dask_impls(func, x, t, impls)
    elif func == "entropy":
        p = np.abs(x) + np.asarray(0.01, dtype=x.dtype)
        impls["fastnll"] = lambda: fastnll.entropy(p, axis=1)
        impls["numpy"] = lambda: (lambda q: -np.sum(q * np.log(q), axis=1))(
            p / p.sum(axis=1, keepdims=True))
        try:
            import scipy.stats
            impls["scipy"] = lambda: scipy.stats.entropy(p, axis=1)
        except ImportError:
            pass
    else:
        raise ValueError(f"unknown function {func!r}")
    half = x.dtype.name in HALF
    if func == "cross_entropy" and not half:
        _sklearn_impl(x, t, impls)
    if half and "fastnll" in impls:
        # fastnll on the same values in float32, in the same run: the 16-bit path's ratio to
        # it is its gain from reading half the bytes.  Timed right after fastnll in each
        # round, so that the pair's samples are the closest in time.
        f32 = implementations(func, x.astype(np.float32), t)["fastnll"]
        impls = {"fastnll": impls.pop("fastnll"), "fastnll-float32": f32, **impls}
    _jax_impls(func, x, t, impls)
    if x.dtype.name == "bfloat16":
        # NumPy has no bfloat16 of its own (ml_dtypes' loops are scalar) and SciPy refuses it
        for name in [n for n in impls if n.startswith(("numpy", "scipy"))]:
            del impls[name]
    # the floor: one pass over the data (for 16-bit data a maximum of its bits: NumPy sums
    # float16 through float32 conversions, slower than memory)
    impls["numpy-read"] = (lambda: x.view(np.uint16).max()) if half else (lambda: x.sum())
    return impls


_ELEMENTWISE = ("binary_cross_entropy_with_logits", "gaussian_nll_loss", "poisson_nll_loss",
                "kl_div")


def _elementwise_impls(func, x, impls, torch, F):
    """Elementwise losses on x (inputs) and a target derived from it, mean reduction."""
    rng = np.random.default_rng(1)
    if func == "binary_cross_entropy_with_logits":
        y = rng.random(x.shape, dtype=np.float32).astype(x.dtype)
        impls["fastnll"] = lambda: fastnll.binary_cross_entropy_with_logits(x, y)
        impls["numpy"] = lambda: np.mean(
            (1 - y) * x + np.logaddexp(0, -x))
        tor = (lambda: F.binary_cross_entropy_with_logits(xt, yt)) if torch else None
    elif func == "gaussian_nll_loss":
        y = rng.standard_normal(x.shape, dtype=np.float32).astype(x.dtype)
        v = (rng.random(x.shape, dtype=np.float32) + 0.5).astype(x.dtype)
        impls["fastnll"] = lambda: fastnll.gaussian_nll_loss(x, y, v)
        impls["numpy"] = lambda: np.mean(0.5 * (np.log(v) + (x - y) ** 2 / v))
        tor = (lambda: F.gaussian_nll_loss(xt, yt, vt)) if torch else None
    elif func == "poisson_nll_loss":
        y = rng.poisson(2.0, x.shape).astype(x.dtype)
        impls["fastnll"] = lambda: fastnll.poisson_nll_loss(x, y)
        impls["numpy"] = lambda: np.mean(np.exp(x) - y * x)
        tor = (lambda: F.poisson_nll_loss(xt, yt)) if torch else None
    else:
        lp = x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))
        y = np.exp(lp[::-1].copy())
        impls["fastnll"] = lambda: fastnll.kl_div(lp, y, reduction="batchmean")
        impls["numpy"] = lambda: np.sum(np.where(y > 0, y * (np.log(y) - lp), 0)) / len(y)
        tor = (lambda: F.kl_div(lpt, yt, reduction="batchmean")) if torch else None
    _jax_elementwise(func, x, y, v if func == "gaussian_nll_loss" else None,
                     lp if func == "kl_div" else None, impls)
    if tor is not None:
        xt, yt = _tensor(torch, x), _tensor(torch, y)
        if func == "gaussian_nll_loss":
            vt = _tensor(torch, v)
        if func == "kl_div":
            lpt = _tensor(torch, lp)
        impls["torch"] = tor


def _jax_elementwise(func, x, y, v, lp, impls):
    jax, optax = _jax()
    if jax is None:
        return
    jnp = jax.numpy
    if func == "binary_cross_entropy_with_logits":
        impls["jax"] = _jitted(jax, lambda z, w: jnp.mean((1 - w) * z + jnp.logaddexp(0, -z)),
                               x, y)
        if optax is not None:
            impls["optax"] = _jitted(
                jax, lambda z, w: optax.sigmoid_binary_cross_entropy(z, w).mean(), x, y)
    elif func == "gaussian_nll_loss":
        impls["jax"] = _jitted(
            jax, lambda z, w, s: jnp.mean(0.5 * (jnp.log(s) + (z - w) ** 2 / s)), x, y, v)
    elif func == "poisson_nll_loss":
        impls["jax"] = _jitted(jax, lambda z, w: jnp.mean(jnp.exp(z) - w * z), x, y)
    elif func == "kl_div":
        impls["jax"] = _jitted(
            jax, lambda q, w: jnp.sum(jax.scipy.special.xlogy(w, w) - w * q) / len(w), lp, y)
        if optax is not None:
            impls["optax"] = _jitted(
                jax, lambda q, w: optax.kl_divergence(q, w).sum() / len(w), lp, y)


def _dask():
    try:
        import dask.array as da
        import fastnll.dask as fd
    except ImportError:
        return None, None
    return da, fd


def _dask_np_cross_entropy(da, x, t):
    """The mean cross-entropy as a dask.array expression of NumPy operations, as a user
    would write it (the target's logit gathered chunk by chunk of classes)."""
    m = x.max(axis=1, keepdims=True)
    lse = da.log(da.exp(x - m).sum(axis=1)) + m[:, 0]
    classes = da.arange(x.shape[1], chunks=x.chunks[1])
    xt = da.blockwise(_gather_target, "ij", x, "ij", t, "i", classes, "j",
                      adjust_chunks={"j": 1}, dtype=x.dtype).sum(axis=1)
    return (lse - xt).mean()


def _gather_target(xb, tb, cb):
    j = tb - cb[0]
    inside = (j >= 0) & (j < xb.shape[1])
    xt = np.take_along_axis(xb, np.where(inside, j, 0)[:, None], axis=1)[:, 0]
    return np.where(inside, xt, 0)[:, None]


# --dask-cluster: the distributed.Client the Dask rows run on (None: the threaded scheduler)
DASK_CLIENT = None


def _dask_impls(func, x, t, impls):
    """fastnll.dask against the dask.array NumPy expression, and in-memory fastnll on the
    same data: rows in 20 chunks, and with dask_cross_entropy_classes the class axis in 4
    chunks too.  On Dask's threaded scheduler (as many workers as fastnll's threads), the
    chunks made contiguous and kept in memory, as data loaded by chunks is; with
    --dask-cluster, on a LocalCluster's worker processes, the chunks kept in their memory."""
    da, fd = _dask()
    if da is None:
        return
    rows = max(1, x.shape[0] // 20)
    cols = x.shape[1] if func == "dask_cross_entropy" else -(-x.shape[1] // 4)
    X = da.from_array(x, chunks=(rows, cols)).map_blocks(np.ascontiguousarray)
    T = da.from_array(t, chunks=rows)
    if DASK_CLIENT is None:
        run = {"scheduler": "threads", "num_workers": fastnll.get_num_threads()}
        X, T = X.persist(**run), T.persist(**run)
    else:
        from distributed import futures_of, wait
        run = {"scheduler": DASK_CLIENT.get}
        X, T = DASK_CLIENT.persist([X, T])
        wait([X, T])
        DASK_CLIENT.rebalance(futures_of(X) + futures_of(T))   # the chunks spread evenly
        # Chunks that arrived from another process can sit at unaligned addresses, which
        # the kernels copy first (as any chunk a task receives from another worker): copied
        # once here on their worker, they are what data loaded or made by the workers is.
        X, T = DASK_CLIENT.persist([X.map_blocks(np.array), T.map_blocks(np.array)])
        wait([X, T])
    impls["fastnll"] = lambda: fd.cross_entropy(X, T).compute(**run)
    impls["dask-numpy"] = lambda: _dask_np_cross_entropy(da, X, T).compute(**run)
    impls["in-memory"] = lambda: fastnll.cross_entropy(x, t)


# ------------------------------------------------------------- language-model heads ----

LINEAR = ("linear_cross_entropy", "linear_cross_entropy_grad")
LinearHead = collections.namedtuple("LinearHead", ["weight", "target", "half_ignored"])


def _np_linear_cross_entropy_grad(x, W, t):
    """What a NumPy user writes: the logits, the loss and its gradient, two more products."""
    loss, g = _np_cross_entropy_grad(x @ W.T, t)
    return loss, g @ W, g.T @ x


def _linear_impls(func, x, head, impls, torch, F):
    """The head of a language model, cross_entropy(x @ W.T, t) (mean): fastnll's blocks,
    NumPy (the logits formed), PyTorch plain (the logits formed, autograd) and chunked
    (F.linear_cross_entropy with LinearCrossEntropyOptions), fastnll.torch, and the floor:
    the matrix products alone in NumPy's BLAS (forward: x @ W.T; with the gradient also
    G @ W and G.T @ x).  fastnll-half-ignored: half the targets are ignore_index."""
    W, t, t_half = head
    grad = func.endswith("_grad")
    impls["fastnll"] = lambda: fastnll.linear_cross_entropy(x, W, t, return_grad=grad)
    impls["fastnll-half-ignored"] = lambda: fastnll.linear_cross_entropy(
        x, W, t_half, return_grad=grad)
    if grad:
        impls["numpy"] = lambda: _np_linear_cross_entropy_grad(x, W, t)
        out = np.empty((x.shape[0], W.shape[0]), dtype=x.dtype)

        def floor():
            np.matmul(x, W.T, out=out)
            return out @ W, out.T @ x
        impls["matmul-floor"] = floor
    else:
        impls["numpy"] = lambda: _np_cross_entropy(x @ W.T, t)
        impls["matmul-floor"] = lambda: x @ W.T
    if torch is None:
        return
    import fastnll.torch as fnt
    xt, Wt, tt = torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(t)
    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    peers = {"fastnll.torch": fnt.linear_cross_entropy,
             "torch": lambda a, b, c: F.cross_entropy(a @ b.T, c)}
    if options is not None:
        peers["torch-chunked"] = lambda a, b, c: F.linear_cross_entropy(a, b, c,
                                                                         options=options())
    for name, fn in peers.items():
        if grad:
            def run(fn=fn):
                a = xt.detach().requires_grad_(True)
                b = Wt.detach().requires_grad_(True)
                loss = fn(a, b, tt)
                loss.backward()
                return loss, a.grad, b.grad
        else:
            def run(fn=fn):
                with torch.no_grad():
                    return fn(xt, Wt, tt)
        impls[name] = run


def peak_rss_growth(fn):
    """How far one call of fn raises the process's peak resident memory, in bytes (Linux:
    the peak is reset through /proc/self/clear_refs first), or None elsewhere.  Results the
    call returns are included; malloc is told to map large blocks itself (_map_large_blocks),
    so a block freed earlier is not reused unseen."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status("VmHWM")
        fn()
        return _proc_status("VmHWM") - before
    except OSError:
        return None


def _proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _map_large_blocks():
    """glibc: allocations from 128 KiB up are mapped and unmapped on their own (no dynamic
    threshold), so that peak_rss_growth sees every large block a call allocates."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        M_MMAP_THRESHOLD = -3
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


def _sklearn_impl(x, t, impls):
    try:
        from sklearn._loss.loss import HalfMultinomialLoss
    except ImportError:
        return
    loss = HalfMultinomialLoss(n_classes=x.shape[1])
    yt = t.astype(x.dtype)
    impls["sklearn"] = lambda: loss(y_true=yt, raw_prediction=x)


# ---------------------------------------------------------------------- workloads ----

DEFAULT_WORKLOADS = [
    ("cross_entropy", (4096, 32000), "float32"),
    ("cross_entropy_grad", (4096, 32000), "float32"),
    ("cross_entropy", (4096, 32000), "float64"),
    ("cross_entropy", (228146, 27), "float32"),
    ("cross_entropy", (512, 1000), "float32"),
    ("cross_entropy", (32, 10), "float32"),
    ("logsumexp_axis1", (4096, 32000), "float32"),
    ("logsumexp_axis0", (4096, 32000), "float32"),
    ("softmax", (4096, 32000), "float32"),
    ("log_softmax", (4096, 32000), "float32"),
    ("nll_loss", (4096, 32000), "float32"),
    ("torch_cross_entropy_grad", (4096, 32000), "float32"),   # needs PyTorch
    ("dask_cross_entropy", (400000, 1000), "float32"),         # needs Dask
    ("dask_cross_entropy_classes", (400000, 1000), "float32"),
    ("linear_cross_entropy", (2048, 512, 32000), "float32"),        # (N, H, V)
    ("linear_cross_entropy_grad", (2048, 512, 32000), "float32"),
]
NEEDS_TORCH = ("torch_cross_entropy_grad", "torch_nll_loss_grad")
NEEDS_DASK = ("dask_cross_entropy", "dask_cross_entropy_classes")
# Not in the default table (run with --function), but in the asv suite.
EXTRA_WORKLOADS = [
    ("binary_cross_entropy_with_logits", (4096, 1000), "float32"),
    ("gaussian_nll_loss", (4096, 1000), "float32"),
    ("poisson_nll_loss", (4096, 1000), "float32"),
    ("kl_div", (4096, 1000), "float32"),
    ("entropy", (4096, 1000), "float32"),
    ("nll_loss_grad", (4096, 1000), "float32"),
    ("torch_nll_loss_grad", (4096, 1000), "float32"),        # needs PyTorch
    # 16-bit input (bfloat16 needs ml_dtypes): `bench --dtype float16|bfloat16` runs the
    # default workloads in these dtypes
    ("cross_entropy", (4096, 32000), "float16"),
    ("cross_entropy", (4096, 32000), "bfloat16"),
    ("cross_entropy_grad", (4096, 32000), "bfloat16"),
    ("torch_cross_entropy_grad", (4096, 32000), "bfloat16"),
    ("softmax", (4096, 32000), "float16"),
    ("log_softmax", (4096, 32000), "float16"),
    ("logsumexp_axis1", (4096, 32000), "float16"),
]
FUNCTIONS = sorted({w[0] for w in DEFAULT_WORKLOADS + EXTRA_WORKLOADS})


def make_data(shape, dtype, seed=0):
    """(x, t): logits (N, C) and class targets; for a linear_* shape (N, H, V), features
    (N, H) and a LinearHead (weight (V, H), targets, the targets with half ignored)."""
    rng = np.random.default_rng(seed)
    dtype = np_dtype(dtype)
    if len(shape) == 3:
        N, H, V = shape
        x = rng.standard_normal((N, H), dtype=np.float32).astype(dtype, copy=False)
        W = (rng.standard_normal((V, H), dtype=np.float32) / np.float32(np.sqrt(H))).astype(
            dtype, copy=False)
        t = rng.integers(0, V, size=N, dtype=np.int64)
        half = t.copy()
        half[rng.permutation(N)[:N // 2]] = -100
        return x, LinearHead(W, t, half)
    x = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    t = rng.integers(0, shape[1], size=shape[0], dtype=np.int64)
    return x, t


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_workload(func, shape, dtype, repeat, min_time=0.05):
    """(medians, ratios) of one workload: time_impls' medians, and paired_ratios of its
    samples."""
    x, t = make_data(shape, dtype)
    impls = implementations(func, x, t)
    samples = {}
    medians = time_impls(impls, repeat, min_time, pause=0.25 if func in LINEAR else 0.1,
                         samples=samples)
    if func in LINEAR:
        PEAKS[(func, shape, dtype)] = {name: peak_rss_growth(fn) for name, fn in impls.items()}
    return medians, paired_ratios(samples)


def paired_ratios(samples, base="fastnll"):
    """{name: median over the rounds of samples[name][i] / samples[base][i]}: each
    implementation's time as a multiple of `base`'s, from the pairs of samples of one round.
    On a machine whose speed drifts between rounds (a virtual machine's neighbours, the
    memory the host reclaims), the ratio within a round keeps what a ratio of the two
    medians, taken from different rounds, can lose."""
    ref = samples[base]
    assert all(len(v) == len(ref) for v in samples.values()), "one sample a round each"
    return {name: statistics.median(a / max(b, 1e-12) for a, b in zip(v, ref))
            for name, v in samples.items()}


def time_impls(impls, repeat, min_time=0.05, pause=0, samples=None):
    """{name: median seconds a call}, the implementations timed in interleaved rounds (with
    samples, a dict, also {name: [seconds a call, one a round]} there, for paired_ratios);
    pause: seconds of sleep before each sample (run_workload: 0.1 s, 0.25 s for the
    linear_* rows).  A peer's threads can keep spinning on the cores after its last call
    (JAX's for tens of milliseconds, OpenBLAS's up to about 0.1 s), and without the pause
    the implementation timed next paid for it: in one run of (4096, 32000) float16
    logsumexp(axis=0), fastnll timed right after JAX took 20.8 ms a call, 12.2 ms when
    timed after fastnll's float32 call instead, and 13.1-13.6 ms with a pause of 0.1 s or
    more (0.02 s and 0.05 s did not help).

    Each sample follows untimed calls of the same implementation, one or, until the calls
    are back to their usual time, a few (_warm_up): the sample times the steady state of a
    loop that calls the function again and again, not the aftermath of the implementations
    timed before it.  Without them, a call that returns a fresh result array
    paid for memory that had lain free for the rest of the round: on a virtual machine whose
    kernel reports free memory to the host (virtio-balloon free page reporting), such memory
    is backed again page by page on first touch.  In a run that timed each sample both ways,
    fastnll's cross_entropy with the gradient of (4096, 32000) bfloat16 took 408 ms a sample
    that way against 88 ms after an untimed call (70 ms into a reused grad_out), while
    PyTorch's took 368 ms and 357 ms.  The price: a workload whose single call lasts min_time
    or more takes at least twice as long to time."""
    # Calls per sample so that one sample lasts at least min_time (small inputs).
    inner, best = {}, {}
    for name, fn in impls.items():
        fn()
        best[name] = once = max(_time_once(fn), 1e-7)
        inner[name] = max(1, int(min_time / once))
    if samples is None:
        samples = {}
    samples.clear()
    samples.update({name: [] for name in impls})
    for _ in range(repeat):
        for name, fn in impls.items():
            n = inner[name]
            if pause:
                # the previous implementation's threads (JAX's, BLAS's, OpenMP's) keep
                # spinning for a while after its last call: let them go to sleep before
                # this implementation's calls start
                time.sleep(pause)
            best[name] = _warm_up(fn, best[name])
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
            best[name] = min(best[name], samples[name][-1])
    return {name: statistics.median(v) for name, v in samples.items()}


# The untimed calls before a sample (_warm_up): until one lasts no more than WARM_TOLERANCE
# times the implementation's fastest call so far (or under WARM_FLOOR seconds), at most
# WARM_CALLS of them.  The tolerance lies between the machine's slow and fast spells (up to
# 1.5x apart) and the fresh memory's 10x: a slow spell does not make the bench wait for a
# fast one, which would bias the samples towards it.
WARM_TOLERANCE = 2.0
WARM_FLOOR = 1e-3
WARM_CALLS = 5


def _warm_up(fn, best):
    """Call fn, untimed as far as the sample goes, until the loop is in its steady state: a
    call no slower than WARM_TOLERANCE times `best` (the fastest call seen so far), or under
    WARM_FLOOR; at most WARM_CALLS calls, at least one.  Returns the new fastest time.

    On a virtual machine whose kernel reports free memory to the host, memory that lay free
    for a second or two is backed again page by page when next touched, and a call returning
    a fresh input-sized array can then take ten times its usual time, for up to three calls
    in a row: (1024, 32000) float16 softmax, calls of 84, 62, 55 ms, then 7.4 ms, in a fresh
    process, and 90 ms then 8 ms after a sleep of 3 s.  One untimed call did not always
    absorb it, and whichever implementation came after the slowest peers (NumPy's and SciPy's
    seconds-long calls) paid it in every round: fastnll's float16 softmax at 32.7 ms a call
    in one run where its float32 call, timed right after it, took 10.9 ms."""
    for _ in range(WARM_CALLS):
        once = _time_once(fn)
        best = min(best, once)
        if once <= WARM_TOLERANCE * best or once < WARM_FLOOR:
            break
    return best


# ------------------------------------------------------------------- small calls ----

SMALL_SHAPE = (32, 10)
# the rows of small_calls(), in its order (the asv suite's parameters, known without building
# the calls or importing the peers)
SMALL_CALLS = [
    "softmax axis=1", "log_softmax axis=1", "logsumexp axis=1", "cross_entropy int64",
    "cross_entropy int32", "cross_entropy weight", "cross_entropy smoothing",
    "cross_entropy probabilities", "cross_entropy_grad", "nll_loss int64",
    "nll_loss int32 weight", "bce_with_logits", "bce_with_logits weight", "gaussian_nll_loss",
    "poisson_nll_loss", "kl_div batchmean", "entropy axis=1", "linear_cross_entropy H=16",
    "torch_cross_entropy_grad", "torch_nll_loss_grad", "torch_bce_with_logits_grad",
]


def small_calls():
    """[(row label, {name: zero-argument callable})]: every public function on (32, 10)
    float32 with its common options (`--small`), against PyTorch's function (a composition
    of its ops where it has none), and SciPy's where SciPy has the function; "fastnll" is
    the fastnll.torch function in the torch_* rows (forward and backward)."""
    N, C = SMALL_SHAPE
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C), dtype=np.float32)
    t = rng.integers(0, C, N)
    t32 = t.astype(np.int32)
    w = (rng.random(C, dtype=np.float32) + 0.5)
    y = rng.random((N, C), dtype=np.float32)
    p = y + np.float32(0.1)
    logp = (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(np.float32)
    var = y + np.float32(0.5)
    h = rng.standard_normal((N, 16), dtype=np.float32)
    W = rng.standard_normal((C, 16), dtype=np.float32)
    f = fastnll
    rows = [
        ("softmax axis=1", {"fastnll": lambda: f.softmax(x, axis=1)}),
        ("log_softmax axis=1", {"fastnll": lambda: f.log_softmax(x, axis=1)}),
        ("logsumexp axis=1", {"fastnll": lambda: f.logsumexp(x, axis=1)}),
        ("cross_entropy int64", {"fastnll": lambda: f.cross_entropy(x, t)}),
        ("cross_entropy int32", {"fastnll": lambda: f.cross_entropy(x, t32)}),
        ("cross_entropy weight", {"fastnll": lambda: f.cross_entropy(x, t, weight=w)}),
        ("cross_entropy smoothing", {"fastnll": lambda: f.cross_entropy(x, t,
                                                                      label_smoothing=0.1)}),
        ("cross_entropy probabilities", {"fastnll": lambda: f.cross_entropy(x, y)}),
        ("cross_entropy_grad", {"fastnll": lambda: f.cross_entropy(x, t, return_grad=True)}),
        ("nll_loss int64", {"fastnll": lambda: f.nll_loss(logp, t)}),
        ("nll_loss int32 weight", {"fastnll": lambda: f.nll_loss(logp, t32, weight=w)}),
        ("bce_with_logits", {"fastnll": lambda: f.binary_cross_entropy_with_logits(x, y)}),
        ("bce_with_logits weight", {"fastnll": lambda: f.binary_cross_entropy_with_logits(
            x, y, weight=var)}),
        ("gaussian_nll_loss", {"fastnll": lambda: f.gaussian_nll_loss(x, y, var)}),
        ("poisson_nll_loss", {"fastnll": lambda: f.poisson_nll_loss(x, y)}),
        ("kl_div batchmean", {"fastnll": lambda: f.kl_div(logp, y, reduction="batchmean")}),
        ("entropy axis=1", {"fastnll": lambda: f.entropy(p, axis=1)}),
        ("linear_cross_entropy H=16", {"fastnll": lambda: f.linear_cross_entropy(h, W, t)}),
    ]
    impls = dict(rows)
    sp = _scipy_special()
    if sp is not None:
        import scipy.stats
        impls["softmax axis=1"]["scipy"] = lambda: sp.softmax(x, axis=1)
        impls["log_softmax axis=1"]["scipy"] = lambda: sp.log_softmax(x, axis=1)
        impls["logsumexp axis=1"]["scipy"] = lambda: sp.logsumexp(x, axis=1)
        impls["entropy axis=1"]["scipy"] = lambda: scipy.stats.entropy(p, axis=1)
    torch, F = _torch()
    if torch is not None:
        import fastnll.torch as fnt
        X, T, T32, Wt, Y, P = (torch.from_numpy(a) for a in (x, t, t32, w, y, p))
        LP, V, Hh, WW = (torch.from_numpy(a) for a in (logp, var, h, W))
        ops = {
            "softmax axis=1": lambda: F.softmax(X, dim=1),
            "log_softmax axis=1": lambda: F.log_softmax(X, dim=1),
            "logsumexp axis=1": lambda: torch.logsumexp(X, dim=1),
            "cross_entropy int64": lambda: F.cross_entropy(X, T),
            # (PyTorch takes no int32 class indices: its int64 call)
            "cross_entropy int32": lambda: F.cross_entropy(X, T),
            "cross_entropy weight": lambda: F.cross_entropy(X, T, weight=Wt),
            "cross_entropy smoothing": lambda: F.cross_entropy(X, T, label_smoothing=0.1),
            "cross_entropy probabilities": lambda: F.cross_entropy(X, Y),
            "nll_loss int64": lambda: F.nll_loss(LP, T),
            "nll_loss int32 weight": lambda: F.nll_loss(LP, T, weight=Wt),
            "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(X, Y),
            "bce_with_logits weight": lambda: F.binary_cross_entropy_with_logits(X, Y,
                                                                                 weight=V),
            "gaussian_nll_loss": lambda: F.gaussian_nll_loss(X, Y, V),
            "poisson_nll_loss": lambda: F.poisson_nll_loss(X, Y),
            "kl_div batchmean": lambda: F.kl_div(LP, Y, reduction="batchmean"),
            # (no entropy function: its ops)
            "entropy axis=1": lambda: torch.special.entr(P / P.sum(1, keepdim=True)).sum(1),
            "linear_cross_entropy H=16": lambda: F.cross_entropy(Hh @ WW.T, T),
        }
        for label, op in ops.items():
            impls[label]["torch"] = op

        def fwd_bwd(loss_fn, target):
            xt = torch.from_numpy(x.copy()).requires_grad_(True)

            def run():
                xt.grad = None
                loss_fn(xt, target).backward()
            return run

        def torch_grad():
            xt = X.clone().requires_grad_(True)
            loss = F.cross_entropy(xt, T)
            loss.backward()
            return loss, xt.grad
        impls["cross_entropy_grad"]["torch"] = torch_grad
        for name, ours, theirs, target in (
                ("torch_cross_entropy_grad", fnt.cross_entropy, F.cross_entropy, T),
                ("torch_nll_loss_grad", fnt.nll_loss, F.nll_loss, T),
                ("torch_bce_with_logits_grad", fnt.binary_cross_entropy_with_logits,
                 F.binary_cross_entropy_with_logits, Y)):
            impls[name] = {"fastnll": fwd_bwd(ours, target), "torch": fwd_bwd(theirs, target)}
    return list(impls.items())


# (func, shape, dtype) -> {implementation: peak memory growth of one call, bytes}: the
# linear_* rows, where memory is the point (format_table adds the column)
PEAKS = {}


def _fmt_time(sec):
    if sec >= 1e-1:
        return f"{sec * 1e3:9.0f} ms"
    if sec >= 1e-3:
        return f"{sec * 1e3:9.2f} ms"
    return f"{sec * 1e6:9.2f} us"


def format_table(results, footnotes=True):
    """The table of results, [(workload, medians, ratios)] (run_workload's (medians,
    ratios) with the workload): each implementation's median, and its paired ratio to
    fastnll (`x fastnll`), in the order of the ratios; the column's explanations below it
    unless footnotes is False."""
    peaks = any(wl in PEAKS for wl, _, _ in results)
    lines = [f"{'workload':<46} {'implementation':<20} {'median':>12} {'x fastnll':>10}"
             + (f" {'peak MB':>8}" if peaks else "")]
    lines.append("-" * len(lines[0]))
    for wl, medians, ratios in results:
        func, shape, dtype = wl
        label = f"{func} {dtype} {shape}"
        for name, ratio in sorted(ratios.items(), key=lambda kv: kv[1]):
            line = f"{label:<46} {name:<20} {_fmt_time(medians[name]):>12} {ratio:>9.2f}x"
            peak = PEAKS.get(wl, {}).get(name)
            if peak is not None:
                line += f" {peak / 2 ** 20:8.0f}"
            lines.append(line)
            label = ""
    if not footnotes:
        return "\n".join(lines)
    lines.append("x fastnll: the median over the rounds of the implementation's time over "
                 "fastnll's in the same round")
    if peaks:
        lines.append("peak MB: how far one call raised the peak resident memory (results "
                     "included)")
    return "\n".join(lines)


def machine_line(threads):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from . import _dispatch
    import os
    torch_isa = os.environ.get("ATEN_CPU_CAPABILITY")
    held = f" | ATEN_CPU_CAPABILITY={torch_isa}" if torch_isa else ""
    prefetch = "on" if _dispatch.kernels.row_prefetch() else "off"
    return (f"fastnll {fastnll.__version__} | kernels {_dispatch.level} | "
            f"row prefetch {prefetch} | {threads} threads | "
            f"{cpu}, {os.cpu_count()} CPUs | numpy {np.__version__}{held}")


def plot(results, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{f}\n{d} {'x'.join(map(str, s))}" for (f, s, d), _, _ in results]
    names = sorted({n for _, _, r in results for n in r if n != "fastnll"})
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(results)), 5))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = [r.get(name, np.nan) for _, _, r in results]
        ax.bar(np.arange(len(results)) + i * width, vals, width, label=name)
    ax.axhline(1.0, color="black", lw=1, label="fastnll")
    ax.set_yscale("log")
    ax.set_ylabel("time / fastnll time (higher: fastnll faster)")
    ax.set_xticks(np.arange(len(results)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --simd-level: fastnll's level and the matching PyTorch CPU capability (ATEN_CPU_CAPABILITY)
# (none for the one generic build of other architectures)
SIMD_LEVELS = {"x86-64": "default", "x86-64-v3": "avx2", "x86-64-v4": "avx512", "generic": None}


def _rerun_at_level(level, argv):
    """Run this command again with the kernels of `level` (they are chosen once, when fastnll
    is imported) and PyTorch held to the same instruction set, unless this process already
    runs that way: the process is replaced (os.execve), so called from Python, `main` with
    --simd-level does not return."""
    import os
    import sys
    from . import _dispatch
    torch_held = SIMD_LEVELS[level] is None or "ATEN_CPU_CAPABILITY" in os.environ
    if _dispatch.level == level and os.environ.get(_dispatch.ENV_VAR) == level and torch_held:
        return
    if level not in _dispatch.built_levels():
        raise SystemExit(f"--simd-level {level}: this CPU (or build) supports only "
                         f"{', '.join(_dispatch.built_levels())}")
    env = dict(os.environ)
    env[_dispatch.ENV_VAR] = level
    if SIMD_LEVELS[level]:
        env.setdefault("ATEN_CPU_CAPABILITY", SIMD_LEVELS[level])
    # the arguments main() parsed: its own, or the command line's after `bench` when it was
    # called without (as argparse takes them)
    args = [sys.executable, "-m", "fastnll", "bench"] + list(sys.argv[1:] if argv is None
                                                              else argv)
    sys.stdout.flush()
    os.execve(sys.executable, args, env)


def main(argv=None):
    global DASK_CLIENT
    p = argparse.ArgumentParser(prog="python -m fastnll bench",
                                description="Time fastnll against NumPy and installed peers.")
    p.add_argument("--function", choices=FUNCTIONS,
                   help="one function (with --shape/--dtype) instead of the default workloads")
    p.add_argument("--shape", help="N,C (default 4096,32000); N,H,V for linear_* (default "
                                   "2048,512,32000)")
    p.add_argument("--dtype", choices=["float32", "float64"] + list(HALF),
                   help="the dtype of --function (default float32); a 16-bit one also "
                        "runs every default workload that takes it (not the linear_* and "
                        "dask_* ones), with the peers that accept it")
    p.add_argument("--repeat", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for fastnll and torch (default: fastnll's default)")
    p.add_argument("--small", action="store_true",
                   help="instead: every function on (32, 10) float32 with its common options "
                        "(microsecond calls), against PyTorch and SciPy")
    p.add_argument("--quick", action="store_true",
                   help="small shapes and 3 rounds: a smoke run of every workload")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the ratios (needs matplotlib)")
    p.add_argument("--dask-cluster", action="store_true",
                   help="run the Dask rows on a distributed.LocalCluster (a worker process of "
                        "one thread per thread) instead of the threaded scheduler")
    p.add_argument("--simd-level", choices=SIMD_LEVELS,
                   help="run fastnll's kernels of this level (what a CPU without AVX-512 gets "
                        "with x86-64-v3), and hold PyTorch to the same instruction set; the "
                        "same as setting FASTNLL_SIMD_LEVEL and ATEN_CPU_CAPABILITY")
    args = p.parse_args(argv)
    if args.plot:
        try:                            # before the run, not after it
            import matplotlib.pyplot    # noqa: F401
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    if args.simd_level:
        _rerun_at_level(args.simd_level, argv)   # returns only if already at that level

    if args.small:
        return _small_main(args)
    if args.function:
        default = "2048,512,32000" if args.function in LINEAR else "4096,32000"
        shape = tuple(int(v) for v in (args.shape or default).split(","))
        workloads = [(args.function, shape, args.dtype or "float32")]
    elif args.dtype in HALF:
        skipped = sorted({f for f, _, _ in DEFAULT_WORKLOADS if f in LINEAR + NEEDS_DASK})
        print(f"skipping {', '.join(skipped)}: float32 and float64 only")
        workloads = list(dict.fromkeys((f, s, args.dtype) for f, s, _ in DEFAULT_WORKLOADS
                                       if f not in LINEAR + NEEDS_DASK))
    else:
        workloads = DEFAULT_WORKLOADS
    repeat = args.repeat
    if args.quick:
        workloads = [(f, (min(s[0], 256),) + tuple(min(n, 1000) for n in s[1:]), d)
                     for f, s, d in workloads]
        repeat = min(repeat, 3)
    if any(w[0] in LINEAR for w in workloads):
        _map_large_blocks()

    threads = args.threads or fastnll.get_num_threads()
    torch, _ = _torch()
    if torch is None:
        skipped = [w for w in workloads if w[0] in NEEDS_TORCH]
        workloads = [w for w in workloads if w[0] not in NEEDS_TORCH]
        if skipped:
            print(f"skipping {', '.join(sorted({w[0] for w in skipped}))}: needs PyTorch")
        if not workloads:
            return 1
    if _dask()[0] is None:
        skipped = [w for w in workloads if w[0] in NEEDS_DASK]
        workloads = [w for w in workloads if w[0] not in NEEDS_DASK]
        if skipped:
            print(f"skipping {', '.join(sorted({w[0] for w in skipped}))}: needs Dask "
                  "(pip install 'fastnll[dask]')")
        if not workloads:
            return 1
    if torch is not None:
        torch.set_num_threads(threads)
    header = machine_line(threads)
    cluster = None
    if args.dask_cluster and any(w[0] in NEEDS_DASK for w in workloads):
        try:
            import distributed
        except ImportError:
            raise SystemExit(
                "--dask-cluster needs distributed: pip install 'fastnll[dask]'") from None
        cluster = distributed.LocalCluster(n_workers=threads, threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
        DASK_CLIENT = distributed.Client(cluster)
        header += f" | Dask rows: LocalCluster, {threads} worker processes x 1 thread"
    print(header, flush=True)
    results = []
    try:
        with fastnll.threads(threads):
            for wl in workloads:
                medians, ratios = run_workload(*wl, repeat=repeat)
                results.append((wl, medians, ratios))
                if len(workloads) > 1:   # progress; the whole table follows
                    print(format_table(results[-1:], footnotes=False).split("\n", 2)[2],
                          flush=True)
    finally:
        if cluster is not None:
            DASK_CLIENT.close()
            cluster.close()
            DASK_CLIENT = None
    print()
    print(format_table(results))
    if args.plot:
        plot(results, args.plot, header)
        print(f"plot written to {args.plot}")
    return 0


def _small_main(args):
    """`--small`: the small-call table."""
    threads = args.threads or fastnll.get_num_threads()
    torch, _ = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
    print(machine_line(threads), flush=True)
    results = []
    with fastnll.threads(threads):
        for label, impls in small_calls():
            samples = {}
            medians = time_impls(impls, args.repeat, samples=samples)
            results.append(((label, SMALL_SHAPE, "float32"), medians,
                            paired_ratios(samples)))
    print()
    print(format_table(results))
    if args.plot:
        plot(results, args.plot, machine_line(threads))
        print(f"plot written to {args.plot}")
    return 0
