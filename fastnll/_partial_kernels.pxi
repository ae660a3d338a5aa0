# The partial statistics of rows cut into pieces along the class axis: what fastnll.dask
# computes for each chunk of a class axis split across chunks, and combines across chunks (in
# float64) into each whole row's log-sum-exp and sums, exactly as one pass would have.
from fastnll._lse cimport RowStats, RowSums, row_stats

cdef enum:
    # the fields of each row's statistics, out[:, o, k] of row_partials
    # (in this order so that a prefix serves: the log-sum-exp, then the target's logit, then
    # the sums for label smoothing and probability targets; fastnll.dask sends no more)
    PART_MAXIMUM = 0    # the row's maximum (nan ignored)
    PART_REST = 1       # sum of exp(x - shift) over the terms below the maximum ...
    PART_AT_MAX = 2     # ... and over the maximal ones (shift: the maximum if finite, else 0)
    PART_X_T = 3        # the target's logit (class-index targets)
    PART_REF = 4        # the reference of x_sum
    PART_X_SUM = 5      # sum_j w_j (x_j - ref), or sum_j w_j t'_j (x_j - ref) with targets
    PART_WT_SUM = 6     # sum_j w_j t'_j (with targets)
    PART_W_CHUNK = 7    # the weight of the piece's classes, which re-centres x_sum (filled
                        # in by the caller: sum w_j, or wt_sum with targets)
    PART_FIELDS = 8


@cython.boundscheck(False)
@cython.wraparound(False)
def row_partials(const floating[:, :, :] x not None, const floating[:, :, :] targets,
                 const int64_t[:, :] classes, int64_t first_class, int64_t ignore_index,
                 const floating[:] weight, bint x_sums, double keep, double spread,
                 double[:, :, :] out not None, int nthreads):
    """out[:, o, k] = the statistics of row x[o, :, k] (the PART_ fields but PART_W_CHUNK,
    in float64; one field after the other, as fastnll.dask combines them).

    x_sums: also the weighted sums of x (PART_X_SUM), against the smoothed probability
    targets t' = keep * targets + spread when targets is not None (and then PART_WT_SUM).
    classes (or None): class-index targets (outer, inner) of rows whose classes start at
    first_class: PART_X_T is the target's logit where the target is a class of the piece
    (not ignore_index), else 0.  weight: class weights or None.  Rows are read with any
    stride (the row traversal)."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef View3 x_view = view3(x)
    cdef View3 t_view = view3(targets) if targets is not None else View3(NULL, 0, 0, 0)
    cdef Py_ssize_t s0 = x_view.s0, s1 = x_view.s1, s2 = x_view.s2
    cdef Py_ssize_t ts0 = t_view.s0, ts1 = t_view.s1, ts2 = t_view.s2
    cdef Py_ssize_t s_w = (weight.strides[0] // <Py_ssize_t>sizeof(floating)
                           if weight is not None else 0)
    cdef const floating *x0 = <const floating *>x_view.data
    cdef const floating *t0 = <const floating *>t_view.data
    cdef const floating *w = &weight[0] if weight is not None and weight.shape[0] > 0 else NULL
    cdef RowSums sums = (SUMS_LSE if not x_sums else
                         (SUMS_WTX if targets is not None else SUMS_WX))
    cdef bint gather = classes is not None
    cdef int64_t c
    cdef Py_ssize_t r
    cdef RowIndex ri
    cdef RowStats stats
    if outer * inner == 0:
        return
    with nogil:
        for r in prange(outer * inner, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            stats = row_stats(x0 + ri.o * s0 + ri.k * s2, C, s1, sums,
                              t0 + ri.o * ts0 + ri.k * ts2 if t0 != NULL else NULL, ts1,
                              w, s_w, <floating>keep, <floating>spread)
            out[PART_MAXIMUM, ri.o, ri.k] = stats.maximum
            out[PART_REST, ri.o, ri.k] = stats.rest
            out[PART_AT_MAX, ri.o, ri.k] = stats.at_max
            out[PART_REF, ri.o, ri.k] = stats.ref
            out[PART_X_SUM, ri.o, ri.k] = stats.x_sum
            out[PART_WT_SUM, ri.o, ri.k] = stats.wt_sum
            if gather:
                c = classes[ri.o, ri.k] - first_class
                out[PART_X_T, ri.o, ri.k] = (
                    x0[ri.o * s0 + c * s1 + ri.k * s2]
                    if classes[ri.o, ri.k] != ignore_index and 0 <= c < C else 0.0)


@cython.boundscheck(False)
@cython.wraparound(False)
def combine_partials(const double[:, :, :] parts not None, double[:, :] out not None):
    """out[:, r] = the statistics of row r whole, from those of its pieces parts[:, r, :]
    (PART_FIELDS fields first): what one pass over the row gives (row_stats' rescale).

    The pieces' sums of exp(x - shift_j) are brought to the common shift (the maximum when it
    is finite, else 0), the sums at that maximum kept apart (log1p keeps small results exact),
    the weighted sums of x re-centred on it: x_sum is relative to ref, and ref becomes the
    shift."""
    cdef Py_ssize_t R = parts.shape[1], K = parts.shape[2], r, j
    cdef double top, shift, m, total, rest, at_max, x_sum, wt_sum, x_t, w_chunk
    with nogil:
        for r in range(R):
            top = -INFINITY
            for j in range(K):
                if parts[PART_MAXIMUM, r, j] > top:
                    top = parts[PART_MAXIMUM, r, j]
            shift = top if isfinite(top) else 0
            rest = 0
            at_max = 0
            x_sum = 0
            wt_sum = 0
            x_t = 0
            w_chunk = 0
            for j in range(K):
                m = parts[PART_MAXIMUM, r, j]
                if isfinite(top) and m == top:
                    rest = rest + parts[PART_REST, r, j]
                    at_max = at_max + parts[PART_AT_MAX, r, j]
                else:
                    total = parts[PART_REST, r, j] + parts[PART_AT_MAX, r, j]
                    if total != 0:
                        rest = rest + total * fnl_exp_f64((m if isfinite(m) else 0) - shift)
                x_sum = x_sum + (parts[PART_X_SUM, r, j]
                                 + (parts[PART_REF, r, j] - shift) * parts[PART_W_CHUNK, r, j])
                wt_sum = wt_sum + parts[PART_WT_SUM, r, j]
                x_t = x_t + parts[PART_X_T, r, j]
                w_chunk = w_chunk + parts[PART_W_CHUNK, r, j]
            out[PART_MAXIMUM, r] = top
            out[PART_REST, r] = rest
            out[PART_AT_MAX, r] = at_max
            out[PART_REF, r] = shift
            out[PART_X_SUM, r] = x_sum
            out[PART_WT_SUM, r] = wt_sum
            out[PART_X_T, r] = x_t
            out[PART_W_CHUNK, r] = w_chunk


# the names of the fields, in their order, for the Python side (fastnll/dask.py); row_partials
# fills in all but the last
ROW_PARTIAL_FIELDS = ("maximum", "rest", "at_max", "x_t", "ref", "x_sum", "wt_sum", "w_chunk")
