"""16-bit floats: NumPy's float16 and ml_dtypes' bfloat16.

The kernels read such arrays in place (as their uint16 bits, with the format's code) and
compute in float32 (_half_kernels.pxi); results come back in the input's dtype, as in SciPy
and PyTorch.  bfloat16 is recognised by its dtype's name, so ml_dtypes (an optional
dependency, which defines it) is never imported here: only a caller that has such an array
has it loaded.
"""
import numpy as np

F16, BF16 = 1, 2            # the kernels' codes of the formats (FNL_F16, FNL_BF16 in _half.h)


def half_kind(dtype):
    """F16 for float16, BF16 for ml_dtypes' bfloat16, 0 for every other dtype."""
    if dtype == np.float16:
        return F16
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16":
        return BF16
    return 0


def half_bits(arr):
    """The uint16 view of a 16-bit array that the kernels read (a copy only when its strides
    are not whole elements or it is misaligned, as kernel_ready does for other dtypes)."""
    if not arr.flags.aligned or any(s % 2 for s in arr.strides):
        arr = np.array(arr, order="C")
    return arr.view(np.uint16)
