# The integer codes that the Python wrappers pass to the kernels, defined once.  A cpdef enum
# is a C enum for the kernels and an IntEnum of the kernel module for Python
# (fastnll._dispatch.kernels.Reduction.MEAN); the wrappers take their codes from there, and
# tests/test_codes.py checks that every kernel module (every SIMD level) agrees.

cpdef enum Reduction:
    # what class_loss (nll_loss, cross_entropy with class indices) returns
    NONE = 0        # per-row losses, written into `rows`
    MEAN = 1        # the sum of the losses over the sum of the kept targets' weights
    SUM = 2         # the sum of the losses

cpdef enum Elementwise:
    # which loss elementwise_loss computes
    BCE = 0         # binary cross-entropy with logits; a = weight, b = pos_weight
    GAUSSIAN = 1    # Gaussian NLL; a = var
    POISSON = 2     # Poisson NLL
    KL = 3          # KL divergence
