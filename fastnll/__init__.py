"""fastnll: fast, exact likelihood losses for NumPy.

Compiled (Cython + OpenMP) kernels for log-sum-exp, softmax, log-softmax, negative
log-likelihood and cross-entropy, with the semantics of scipy.special and
torch.nn.functional, for float32 and float64 arrays of any layout.
"""
try:
    from . import _cpu  # noqa: F401  (compiled: fails in an unbuilt source tree)
except ImportError as exc:  # pragma: no cover
    import os as _os
    if _os.path.exists(_os.path.join(_os.path.dirname(__file__), "..", "setup.py")):
        raise ImportError(
            "fastnll is being imported from its source tree, where the compiled kernels are "
            "not built. Run from another directory to use the installed fastnll, or build in "
            "place with `python setup.py build_ext --inplace`."
        ) from exc
    raise

from ._softmax import logsumexp, softmax, log_softmax
from ._class_losses import nll_loss, cross_entropy
from ._linear import linear_cross_entropy
from ._elementwise import (
    binary_cross_entropy_with_logits, gaussian_nll_loss, poisson_nll_loss, kl_div,
)
from ._entropy import entropy
from ._threads import get_num_threads, set_num_threads, threads
from ._config import show_config

__version__ = "0.1.0"

__all__ = [
    "logsumexp", "softmax", "log_softmax", "nll_loss", "cross_entropy", "linear_cross_entropy",
    "binary_cross_entropy_with_logits", "gaussian_nll_loss", "poisson_nll_loss", "kl_div",
    "entropy",
    "get_num_threads", "set_num_threads", "threads", "show_config", "__version__",
]
