# entropy's kernels: Shannon entropy and relative entropy of distributions along the class
# axis (scipy.stats.entropy), over the class-axis view of _class_axis.pxi, and the check for
# negative probabilities that its wrapper runs first.
from fastnll._loops cimport fnl_entr_sum, fnl_log_f64, fnl_rel_entr_sum, fnl_sum_probs


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
    cdef Py_ssize_t outer = p.shape[0], C = p.shape[1], inner = p.shape[2]
    cdef Py_ssize_t r, o, k, c
    cdef bint has_q = q is not None
    cdef RowIndex ri
    cdef double sp, sq, s, pv, qv
    cdef int negative = 0
    cdef EntropyRow row
    cdef const floating *p0
    cdef const floating *q0 = NULL
    cdef Py_ssize_t ps0, qs0 = 0
    if outer == 0 or inner == 0:
        return 0
    if inner == 1 and C > 0 and p.strides[1] == sizeof(floating) and (
            not has_q or q.strides[1] == sizeof(floating)):
        p0 = &p[0, 0, 0]
        ps0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
        if has_q:
            q0 = &q[0, 0, 0]
            qs0 = q.strides[0] // <Py_ssize_t>sizeof(floating)
        with nogil:
            for o in prange(outer, schedule='static', num_threads=nthreads):
                row = entropy_row(p0 + o * ps0, NULL if q0 == NULL else q0 + o * qs0, C)
                negative += row.negative    # a reduction (prange)
                out[o, 0] = <floating>(row.s * scale)
        return 1 if negative > 0 else 0
    with nogil:
        for r in prange(outer * inner, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            o = ri.o
            k = ri.k
            sp = 0
            sq = 0
            for c in range(C):
                sp = sp + p[o, c, k]
                if has_q:
                    sq = sq + q[o, c, k]
            s = 0
            for c in range(C):
                pv = p[o, c, k] / sp
                if has_q:
                    qv = q[o, c, k] / sq
                    # rel_entr: p log(p/q) for p > 0, q > 0; 0 for p == 0, q >= 0; inf else
                    if pv > 0 and qv > 0:
                        # log(pv / qv), or where the ratio overflows (qv subnormal) the
                        # difference of the logs, as SciPy's value
                        if pv / qv < INFINITY:
                            s = s + pv * fnl_log_f64(pv / qv)
                        else:
                            s = s + pv * (fnl_log_f64(pv) - fnl_log_f64(qv))
                    elif pv == 0 and qv >= 0:
                        pass
                    elif pv != pv or qv != qv:
                        s = s + pv + qv
                    else:
                        s = s + INFINITY
                else:
                    # entr: -p log p for p > 0, 0 at 0
                    if pv > 0:
                        s = s - pv * fnl_log_f64(pv)
                    elif pv != 0:
                        s = s + pv   # nan propagates (negatives were refused)
            out[o, k] = <floating>(s * scale)
    return -1
