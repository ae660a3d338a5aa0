"""asv benchmarks for fastnll.

Every benchmark takes the implementation as its first parameter (fastnll, numpy, and scipy,
torch, jax, optax, sklearn when importable; `numpy-read` is `x.sum()`, the floor for one pass
over the data, and `numpy-copy` is `np.copyto`, the floor for functions that write an output;
`fastnll-out` writes into a preallocated array with out= or grad_out=; for 16-bit workloads
`fastnll-float32` is fastnll on the same values in float32), so the dashboard
draws them side by side.  The implementations are the ones `python -m fastnll bench`
times (fastnll._bench), so both report the same thing.  A combination whose implementation is
not installed is skipped (setup raises NotImplementedError).

Run offline against the current environment (fastnll must be installed in it):
    asv machine --yes && asv run --python=same --quick && asv publish
`.ci/run` runs `asv check` and one quick class of this suite, so that it cannot rot.
"""
import tracemalloc

from fastnll import _bench

IMPLS = ["fastnll", "fastnll-out", "numpy", "scipy", "torch", "jax", "optax", "sklearn",
         "numpy-read", "numpy-copy", "dask-numpy", "in-memory", "fastnll-float32"]
# the language-model head's implementations (fastnll._bench._linear_impls)
LINEAR_IMPLS = ["fastnll", "fastnll-half-ignored", "fastnll.torch", "numpy", "torch",
                "torch-chunked", "matmul-floor"]


def _key(workload):
    func, shape, dtype = workload
    return f"{dtype} {'x'.join(map(str, shape))}"


class _Suite:
    timeout = 600
    param_names = ["impl", "workload"]
    func = None

    def setup(self, impl, workload):
        dtype, shape = workload.split(" ")
        shape = tuple(int(v) for v in shape.split("x"))
        # find out on a tiny array whether impl exists here, before building the real one
        try:
            tiny = _bench.make_data((2, 3) if len(shape) == 2 else (2, 3, 4), dtype)
        except SystemExit as exc:           # bfloat16 without ml_dtypes
            raise NotImplementedError(str(exc)) from None
        if impl not in _bench.implementations(self.func, *tiny):
            raise NotImplementedError(f"{impl} is not available for {self.func}")
        self.x, self.t = _bench.make_data(shape, dtype)
        impls = _bench.implementations(self.func, self.x, self.t)
        if impl not in impls:
            raise NotImplementedError(f"{impl} is not available for {self.func}")
        self.call = impls[impl]
        # One untimed call first: a cold call pays one-time costs (the OpenMP thread team, a
        # jitted function's compilation, first-touch page faults of reused buffers) that
        # `asv run --quick`, which times a single call, would otherwise report as the
        # function's time (12-17 ms instead of 0.24 ms for fastnll's (512, 1000) workload).
        self.call()

    def time_call(self, impl, workload):
        self.call()

    def peakmem_call(self, impl, workload):
        self.call()

    def traced_peak(self):
        """Peak NumPy/Python allocation during one call, in bytes (memory NumPy and Python
        allocate; PyTorch's own allocator is not traced)."""
        tracemalloc.start()
        try:
            self.call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak

    def track_traced_allocation_fraction(self, impl, workload):
        """traced_peak as a fraction of the input's size."""
        return self.traced_peak() / self.x.nbytes

    track_traced_allocation_fraction.unit = "fraction of input"


ALL = _bench.DEFAULT_WORKLOADS + _bench.EXTRA_WORKLOADS


def _params(func):
    impls = LINEAR_IMPLS if func in _bench.LINEAR else IMPLS
    return [impls, [_key(w) for w in ALL if w[0] == func]]


class CrossEntropy(_Suite):
    func = "cross_entropy"
    params = _params(func)


class CrossEntropyGrad(_Suite):
    func = "cross_entropy_grad"
    params = _params(func)


class TorchCrossEntropyGrad(_Suite):
    """fastnll.torch.cross_entropy against torch's own, forward + backward on CPU tensors."""
    func = "torch_cross_entropy_grad"
    params = _params(func)


class NllLoss(_Suite):
    func = "nll_loss"
    params = _params(func)


class NllLossGrad(_Suite):
    func = "nll_loss_grad"
    params = _params(func)


class TorchNllLossGrad(_Suite):
    """fastnll.torch.nll_loss against torch's own, forward + backward on CPU tensors."""
    func = "torch_nll_loss_grad"
    params = _params(func)


class LogSumExpAxis1(_Suite):
    func = "logsumexp_axis1"
    params = _params(func)


class LogSumExpAxis0(_Suite):
    func = "logsumexp_axis0"
    params = _params(func)


class Softmax(_Suite):
    func = "softmax"
    params = _params(func)


class LogSoftmax(_Suite):
    func = "log_softmax"
    params = _params(func)


class BinaryCrossEntropyWithLogits(_Suite):
    func = "binary_cross_entropy_with_logits"
    params = _params(func)


class GaussianNllLoss(_Suite):
    func = "gaussian_nll_loss"
    params = _params(func)


class PoissonNllLoss(_Suite):
    func = "poisson_nll_loss"
    params = _params(func)


class KlDiv(_Suite):
    func = "kl_div"
    params = _params(func)


class Entropy(_Suite):
    func = "entropy"
    params = _params(func)


class DaskCrossEntropy(_Suite):
    """fastnll.dask against the dask.array NumPy expression on Dask's threaded scheduler,
    rows in 20 chunks (and in-memory fastnll on the same data)."""
    func = "dask_cross_entropy"
    params = _params(func)


class DaskCrossEntropyClasses(_Suite):
    """The same with the class axis in 4 chunks too."""
    func = "dask_cross_entropy_classes"
    params = _params(func)


class _LinearSuite(_Suite):
    """A language model's head, cross_entropy(x @ W.T, t) with shape (N, H, V): fastnll's
    blocks against the logits formed (NumPy, PyTorch), PyTorch's chunked
    F.linear_cross_entropy, fastnll.torch, and the matrix products alone (matmul-floor)."""

    def track_traced_allocation_fraction(self, impl, workload):
        """traced_peak as a fraction of the size of the logits (N x V) the call would form
        (peakmem_call measures every implementation, PyTorch's allocations included)."""
        logits = self.x.shape[0] * self.t.weight.shape[0] * self.x.itemsize
        return self.traced_peak() / logits

    track_traced_allocation_fraction.unit = "fraction of the logits"


class LinearCrossEntropy(_LinearSuite):
    """Forward only (evaluation)."""
    func = "linear_cross_entropy"
    params = _params(func)


class LinearCrossEntropyGrad(_LinearSuite):
    """Forward and backward: the loss and the gradients of x and W."""
    func = "linear_cross_entropy_grad"
    params = _params(func)


class SmallCalls:
    """Every function on (32, 10) float32 with its common options (microsecond calls),
    against PyTorch and SciPy: the rows of `python -m fastnll bench --small`."""
    timeout = 120
    param_names = ["impl", "call"]
    params = [["fastnll", "torch", "scipy"], _bench.SMALL_CALLS]

    def setup(self, impl, call):
        impls = dict(_bench.small_calls())[call]
        if impl not in impls:
            raise NotImplementedError(f"{impl} has no {call}")
        self.call = impls[impl]
        self.call()

    def time_call(self, impl, call):
        self.call()
