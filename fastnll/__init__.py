"""fastnll: fast, exact likelihood losses for NumPy.

Compiled (Cython + OpenMP) kernels for log-sum-exp, softmax, log-softmax, negative
log-likelihood and cross-entropy, with the semantics of scipy.special and
torch.nn.functional, for float32 and float64 arrays of any layout.
"""
from ._softmax import logsumexp, softmax, log_softmax
from ._losses import nll_loss, cross_entropy
from ._threads import get_num_threads, set_num_threads, threads

__version__ = "0.1.0"

__all__ = [
    "logsumexp", "softmax", "log_softmax", "nll_loss", "cross_entropy",
    "get_num_threads", "set_num_threads", "threads", "__version__",
]
