# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
# The class-axis kernels compiled for one instruction-set level (generic); see setup.py.
include "_kernels.pxi"
