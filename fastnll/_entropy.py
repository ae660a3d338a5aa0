"""entropy with scipy.stats.entropy's semantics."""
import numpy as np

from . import _threads
from ._checks import (
    as_real_array, broadcast_pk_qk, check_base, check_probabilities, normalize_axis,
)
from ._dispatch import kernels
from ._layout import ClassView, compute_dtype, is_weak_scalar, kernel_ready, scalar_or_array


def entropy(pk, qk=None, base=None, axis=0):
    """Shannon entropy of distributions along ``axis``, or their relative entropy to ``qk``.

    A drop-in for ``scipy.stats.entropy``: ``-sum(p log p)``, or ``sum(p log(p / q))`` when
    ``qk`` is given (the Kullback-Leibler divergence ``D(pk || qk)``).  ``pk`` and ``qk`` are
    normalised to sum to 1 along ``axis`` first, so counts can be passed as they are.

    Parameters
    ----------
    pk : array_like
        Non-negative (unnormalised) probabilities.  Any real dtype and strides.
    qk : array_like, optional
        Non-negative (unnormalised) probabilities of the reference distribution, broadcast
        against ``pk``.  None (the default) computes the Shannon entropy of ``pk``.
    base : float, optional
        Base of the logarithm, e.g. 2 for bits.  None (the default) is the natural logarithm:
        nats.
    axis : int or None, default 0
        The axis along which each distribution lies; None flattens the inputs first.

    Returns
    -------
    S : NumPy scalar or ndarray
        The (relative) entropy of each distribution: shaped like ``pk`` (broadcast with
        ``qk``) without ``axis``, a NumPy scalar for 1-D input or ``axis=None``.  float32 when
        ``pk`` (promoted with ``qk`` by NumPy's rules) is float32 or float16, float64
        otherwise.

    Raises
    ------
    ValueError
        A negative entry in ``pk`` or ``qk`` (SciPy returns -inf or nan instead); a ``base``
        that is not a positive number (0, negative, nan); ``pk`` and ``qk`` do not broadcast
        together; ``axis`` out of range.
    TypeError
        ``pk`` or ``qk`` is not a real numeric array; ``base`` is not a real number; ``axis``
        is not an integer or None.

    See Also
    --------
    scipy.stats.entropy : The SciPy function mirrored here.
    kl_div : The KL divergence as a loss on log-probabilities, as in PyTorch.
    cross_entropy : The cross-entropy of logits against class targets.

    Notes
    -----
    Zero probabilities contribute nothing; a zero in ``qk`` where ``pk`` is positive gives
    inf.  ``pk`` and ``qk`` broadcast against each other, after flattening with
    ``axis=None``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnll
    >>> print(f"{fastnll.entropy([0.5, 0.5], base=2):.4f}")     # a fair coin: one bit
    1.0000
    >>> counts = np.array([[10, 10, 10], [28, 1, 1]])
    >>> np.round(fastnll.entropy(counts, axis=1), 4)             # nats, per row
    array([1.0986, 0.2911])
    >>> from scipy.stats import entropy as sp_entropy
    >>> np.allclose(fastnll.entropy(counts, axis=1), sp_entropy(counts, axis=1))
    True

    Relative entropy (KL divergence) against a reference distribution:

    >>> print(f"{fastnll.entropy([0.5, 0.25, 0.25], [1/3, 1/3, 1/3]):.4f}")
    0.0589
    >>> float(fastnll.entropy([1, 0], [0, 1]))
    inf
    """
    fast = kernels.entropy_call(pk, qk, base, axis, _threads.for_work)
    if fast is not None:
        return fast
    p = as_real_array(pk, "pk")
    q = None if qk is None else as_real_array(qk, "qk")
    check_base(base)
    dtype = compute_dtype(p) if q is None or is_weak_scalar(qk) else compute_dtype(p, q)
    if axis is None:      # SciPy flattens each array first, then broadcasts
        p = p.reshape(-1)
        q = None if q is None else q.reshape(-1)
        axis = 0
    if q is not None:
        p, q = broadcast_pk_qk(p, q)
    ax = normalize_axis(axis, p.ndim)
    if p.ndim == 0:
        p = p.reshape(1)
        q = None if q is None else q.reshape(1)
    p = kernel_ready(p, dtype)
    q = kernel_ready(q, dtype) if q is not None else None
    view = ClassView(p, ax)
    q3 = view.to3(q) if q is not None else None
    out = np.empty(view.outer * view.inner, dtype=dtype)
    # the kernel reports negative entries where its loops saw them (1), else (-1) they are
    # looked for here; either way the error names the first one in the arrays' own index
    # order (the kernel's view may be transposed), and nothing the caller holds is written
    negative = kernels.entropy(p=view.x3, q=q3, scale=log_base_scale(base), out=view.to2(out),
                               nthreads=_threads.for_work(p.size))
    if negative:
        for name, a in (("pk", p), ("qk", q)):
            if a is not None:
                check_probabilities(name, *kernels.first_negative(p=a.reshape(1, -1, 1)))
    return scalar_or_array(out.reshape(p.shape[:ax] + p.shape[ax + 1:]))


def log_base_scale(base):
    """1 / log(base), the factor from nats to the base's units (1 for None; base 1: inf, as
    SciPy)."""
    if base is None:
        return 1.0
    with np.errstate(divide="ignore"):
        return float(np.float64(1.0) / np.log(np.float64(base)))
