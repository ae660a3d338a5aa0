"""16-bit floats: NumPy's float16 and ml_dtypes' bfloat16.

The kernels read such arrays in place (as their uint16 bits, with the format's code; the
wrappers make them kernel-ready as any other dtype, _layout.kernel_ready) and
compute in float32 (_half_kernels.pxi); results come back in the input's dtype, as in SciPy
and PyTorch.  bfloat16 is recognised by its dtype's name, so ml_dtypes (an optional
dependency, which defines it) is never imported here: only a caller that has such an array
has it loaded.
"""
import numpy as np

F16, BF16 = 1, 2            # the kernels' codes of the formats (FNL_F16, FNL_BF16 in _portable.h)


def half_kind(dtype):
    """F16 for float16, BF16 for ml_dtypes' bfloat16, 0 for every other dtype."""
    if dtype == np.float16:
        return F16
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16":
        return BF16
    return 0


def rounded(value, dtype):
    """A result computed in float32 (a NumPy scalar or array) rounded to the 16-bit `dtype`:
    a scalar stays a scalar (np.asarray(...)[()]), an array an array; None stays None."""
    return None if value is None else np.asarray(value).astype(dtype)[()]
