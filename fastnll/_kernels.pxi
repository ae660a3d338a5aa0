# The files of fastnll's kernels, in the order every level compiles them: each
# _kern_<level>.pyx includes this file (setup.py compiles those once per instruction-set
# level).  A new family of kernels is one more line here.
include "_codes.pxi"                # the integer codes the Python wrappers pass
include "_kernel_common.pxi"        # OpenMP shim, row index split, fixed-order block sums
include "_class_axis.pxi"           # the (outer, C, inner) view, its traversals, col_lse
include "_softmax_kernels.pxi"      # logsumexp, softmax, log_softmax
include "_partial_kernels.pxi"      # rows' partial statistics, for fastnll.dask
include "_class_loss_kernels.pxi"   # nll_loss, cross_entropy
include "_entropy_kernels.pxi"      # entropy
include "_elementwise_kernels.pxi"  # binary cross-entropy, Gaussian, Poisson, KL
include "_half_kernels.pxi"         # float16 and bfloat16 input, converted chunk by chunk
include "_compiled_calls.pxi"       # every function's common calls, recognised and run here
