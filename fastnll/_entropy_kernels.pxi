# entropy's kernels: Shannon entropy and relative entropy of distributions along the class
# axis (scipy.stats.entropy), over the class-axis view of _class_axis.pxi, and the check for
# negative probabilities that its wrapper runs first.
from fastnll._loops cimport (
    fnl_entr_cols, fnl_entr_sum, fnl_log_f64, fnl_rel_entr_sum, fnl_sum_probs,
)

cdef extern from "_loops.h" nogil:
    enum: FNL_ENTR_COLS     # the rows fnl_entr_cols takes at once


@cython.boundscheck(False)
@cython.wraparound(False)
def first_negative(const floating[:, :, :] p not None):
    """(True, value) for the first negative entry of p in index order, else (False, 0)."""
    cdef Py_ssize_t i, c, k
    cdef bint found = False
    cdef double v = 0
    with nogil:
        for i in range(p.shape[0]):
            for c in range(p.shape[1]):
                for k in range(p.shape[2]):
                    if p[i, c, k] < 0:
                        found = True
                        v = p[i, c, k]
                        break
                if found:
                    break
            if found:
                break
    return found, v


cdef struct EntropyRow:
    double s            # the row's sum of entr (q NULL) or rel_entr terms
    int negative        # 1 when an entry of p or q is negative


cdef inline EntropyRow entropy_row(const floating *p, const floating *q,
                                   Py_ssize_t C) noexcept nogil:
    # One unit-stride row of entropy's vectorised path (q NULL: Shannon entropy).  Returned by
    # value, as row_stats: inside prange, a variable written only through a pointer would be
    # shared by the threads.
    cdef EntropyRow row
    cdef int neg_q = 0
    cdef double sp = fnl_sum_probs(p, C, &row.negative), sq
    if q == NULL:
        row.s = fnl_entr_sum(p, C, sp)
        return row
    sq = fnl_sum_probs(q, C, &neg_q)
    row.negative = row.negative | neg_q
    row.s = fnl_rel_entr_sum(p, q, C, sp, sq, False)
    if row.s == INFINITY:   # perhaps v / w overflowed: see fnl_rel_entr_sum
        row.s = fnl_rel_entr_sum(p, q, C, sp, sq, True)
    return row


cdef inline int entropy_group(const floating *p0, Py_ssize_t ps0, Py_ssize_t ps2,
                              const floating *q0, Py_ssize_t qs0, Py_ssize_t qs2, Py_ssize_t C,
                              Py_ssize_t inner, Py_ssize_t nb, Py_ssize_t b, double *sums,
                              floating *out0, Py_ssize_t os0, Py_ssize_t os1,
                              double scale) noexcept nogil:
    # entropy_core's few-class path, group b of FNL_ENTR_COLS rows (the last group of an outer
    # index may be shorter: its rows one at a time); sums: the thread's FNL_ENTR_COLS doubles.
    # Returns the number of negative flags raised.
    cdef Py_ssize_t o = b // nb, k0 = (b - b // nb * nb) * FNL_ENTR_COLS, j, k
    cdef int negative = 0
    cdef EntropyRow row
    if k0 + FNL_ENTR_COLS <= inner:
        negative = fnl_entr_cols(p0 + o * ps0 + k0 * ps2, ps2,
                                 NULL if q0 == NULL else q0 + o * qs0 + k0 * qs2, qs2, C, sums)
        for j in range(FNL_ENTR_COLS):
            if sums[j] == INFINITY and q0 != NULL:     # see entropy_row
                sums[j] = entropy_row(p0 + o * ps0 + (k0 + j) * ps2,
                                      q0 + o * qs0 + (k0 + j) * qs2, C).s
            out0[o * os0 + (k0 + j) * os1] = <floating>(sums[j] * scale)
        return negative
    for k in range(k0, inner):
        row = entropy_row(p0 + o * ps0 + k * ps2, NULL if q0 == NULL else q0 + o * qs0 + k * qs2,
                          C)
        negative += row.negative
        out0[o * os0 + k * os1] = <floating>(row.s * scale)
    return negative


@cython.boundscheck(False)
@cython.wraparound(False)
def entropy(const floating[:, :, :] p not None, const floating[:, :, :] q, double scale,
            floating[:, :] out not None, int nthreads):
    """out[o, k] = scale * H(p[o, :, k]), or scale * D(p || q) when q is not None, both
    normalised along the middle axis first (SciPy's scipy.stats.entropy).

    Returns 1 when an entry of p or q is negative (the results are then meaningless: the
    caller raises), 0 when none is, -1 when this layout was not checked (the caller checks
    with first_negative).  Unit-stride rows take vectorised loops (the sums in float64, in
    an order of their own); other layouts a scalar loop."""
    cdef View3 pv = view3(p), qv = view3(q) if q is not None else View3(NULL, 0, 0, 0)
    cdef View2 ov = view2(out)
    return entropy_core(<const floating *>pv.data, <const floating *>qv.data,
                        <floating *>ov.data, p.shape[0], p.shape[1], p.shape[2], pv, qv, ov,
                        scale, nthreads)


cdef int entropy_core(const floating *p0, const floating *q0, floating *out0, Py_ssize_t outer,
                      Py_ssize_t C, Py_ssize_t inner, View3 pv, View3 qv, View2 ov,
                      double scale, int nthreads) except -2:
    # entropy on raw views (p0, q0 and out0 are pv.data, qv.data (NULL: no q) and ov.data,
    # typed): the def above and the compiled calls (_compiled_calls.pxi) both run it
    cdef Py_ssize_t r, o, k, c, b, nb
    cdef double *all_sums
    cdef bint has_q = q0 != NULL
    cdef RowIndex ri
    cdef double sp, sq, s, pe, qe
    cdef int negative = 0
    cdef EntropyRow row
    cdef Py_ssize_t ps0 = pv.s0, ps1 = pv.s1, ps2 = pv.s2
    cdef Py_ssize_t qs0 = qv.s0, qs1 = qv.s1, qs2 = qv.s2
    cdef Py_ssize_t os0 = ov.s0, os1 = ov.s1
    if outer == 0 or inner == 0:
        return 0
    if (C > 0 and ps1 == 1 and (not has_q or qs1 == 1) and C <= SMALL_C
            and inner >= FNL_ENTR_COLS):
        # few classes (a swapped view's rows, contiguous): FNL_ENTR_COLS rows at a time, the
        # vector lanes across the rows; the last few rows one at a time
        nb = ceil_div(inner, FNL_ENTR_COLS)
        # each thread's row sums (an array of the function would be shared by the threads)
        all_sums = <double *>malloc((nthreads if nthreads > 0 else 1) * FNL_ENTR_COLS
                                    * sizeof(double))
        if all_sums == NULL:
            raise MemoryError()
        with nogil:
            if nthreads <= 1 or outer * nb == 1:  # no parallel region (a team of one costs)
                for b in range(outer * nb):
                    negative += entropy_group(p0, ps0, ps2, q0, qs0, qs2, C, inner, nb, b,
                                              all_sums, out0, os0, os1, scale)
            else:
                for b in prange(outer * nb, schedule='static', num_threads=nthreads):
                    negative += entropy_group(p0, ps0, ps2, q0, qs0, qs2, C, inner, nb, b,
                                              all_sums + threadid() * FNL_ENTR_COLS, out0, os0,
                                              os1, scale)
        free(all_sums)
        return 1 if negative > 0 else 0
    if C > 0 and ps1 == 1 and (not has_q or qs1 == 1):
        # unit-stride rows
        with nogil:
            if nthreads <= 1 or outer * inner == 1:
                for r in range(outer * inner):
                    ri = row_index(r, inner)
                    row = entropy_row(p0 + ri.o * ps0 + ri.k * ps2,
                                      NULL if q0 == NULL else q0 + ri.o * qs0 + ri.k * qs2, C)
                    negative += row.negative
                    out0[ri.o * os0 + ri.k * os1] = <floating>(row.s * scale)
            else:
                for r in prange(outer * inner, schedule='static', num_threads=nthreads):
                    ri = row_index(r, inner)
                    row = entropy_row(p0 + ri.o * ps0 + ri.k * ps2,
                                      NULL if q0 == NULL else q0 + ri.o * qs0 + ri.k * qs2, C)
                    negative += row.negative    # a reduction (prange)
                    out0[ri.o * os0 + ri.k * os1] = <floating>(row.s * scale)
        return 1 if negative > 0 else 0
    with nogil:
        for r in prange(outer * inner, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            o = ri.o
            k = ri.k
            sp = 0
            sq = 0
            for c in range(C):
                sp = sp + p0[o * ps0 + c * ps1 + k * ps2]
                if has_q:
                    sq = sq + q0[o * qs0 + c * qs1 + k * qs2]
            s = 0
            for c in range(C):
                pe = p0[o * ps0 + c * ps1 + k * ps2] / sp
                if has_q:
                    qe = q0[o * qs0 + c * qs1 + k * qs2] / sq
                    # rel_entr: p log(p/q) for p > 0, q > 0; 0 for p == 0, q >= 0; inf else
                    if pe > 0 and qe > 0:
                        # log(pe / qe), or where the ratio overflows (qe subnormal) the
                        # difference of the logs, as SciPy's value
                        if pe / qe < INFINITY:
                            s = s + pe * fnl_log_f64(pe / qe)
                        else:
                            s = s + pe * (fnl_log_f64(pe) - fnl_log_f64(qe))
                    elif pe == 0 and qe >= 0:
                        pass
                    elif pe != pe or qe != qe:
                        s = s + pe + qe
                    else:
                        s = s + INFINITY
                else:
                    # entr: -p log p for p > 0, 0 at 0
                    if pe > 0:
                        s = s - pe * fnl_log_f64(pe)
                    elif pe != 0:
                        s = s + pe   # nan propagates (negatives were refused)
            out0[o * os0 + k * os1] = <floating>(s * scale)
    return -1
