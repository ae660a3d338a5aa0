# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
# fastnll's kernels compiled for one instruction-set level (generic); see setup.py.
include "_kernels.pxi"
