# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
# fastnll's kernels compiled for one instruction-set level (x86_64_v4); see setup.py.
include "_kernels.pxi"
