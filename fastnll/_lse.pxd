# The online log-sum-exp over a row, shared by every class-axis kernel (the column version,
# col_lse, is in _class_axis.pxi).
#
# A row is read in chunks of ROW_CHUNK elements, which fit in L1.  For each chunk we take its
# maximum, and if it beats the running maximum we rescale the running sums once (one scalar
# exp per chunk), then add the chunk's sums of exp(x - shift) (one vector exp per element).
# shift is the maximum when it is finite and 0 otherwise, which gives SciPy's results for rows
# that are all -inf, contain +inf, or contain nan.  Terms equal to the maximum are summed
# apart from the rest (at_max, their count when the maximum is finite), so that
# log(sum) = log(at_max) + log1p(rest / at_max) keeps the precision of small results (SciPy's
# trick).  The vocabulary (maximum, shift, rest, at_max, log_sum) is the C loops' one, see
# _generic_loops_T.h.
from cython cimport floating
from libc.math cimport isfinite, log, log1p, INFINITY
from libc.stdint cimport uint16_t

from fastnll._loops cimport (
    FNL_F32_INTRINSICS, FNL_HALF_DIRECT, FNL_SRC_F32, fnl_exp_f64, fnl_half_load_max_f32,
    fnl_half_max16_f32, fnl_half_sumexp_f32, fnl_log_sums, fnl_max,
    fnl_prefetch_after,
    fnl_sumexp, fnl_sumexp_below, fnl_sumdiff, fnl_tsum,
)

cdef enum:
    ROW_CHUNK = 1024    # elements per chunk of a row (4 KiB of float32)
    COL_CHUNK = 32      # class rows per chunk of a column block (a multiple of the widest
                        # transpose tile, 16: fnl_pack's last tile fills whole rows of it)
    COL_BLOCK = 64      # columns per column block when they are packed (a chunk of them:
                        # 8 KiB of float64 in the packing buffer)
    COL_WIDE = 256      # columns per column block when they are contiguous (not packed): rows
                        # far apart are then read in pieces of 1 KiB of float32, which the
                        # memory system streams better than the 256 bytes of 64 columns
                        # (logsumexp(axis=0) of (4096, 32000) float32: 1.25x axis=1 instead
                        # of 1.4x at x86-64-v4)

# What one pass over a row sums besides its log-sum-exp (row_stats' `sums`).
cdef enum RowSums:
    SUMS_LSE = 0        # nothing else
    SUMS_WX = 1         # x_sum = sum_j w_j (x_j - ref)                   (w NULL means 1)
    SUMS_WTX = 2        # x_sum = sum_j w_j t'_j (x_j - ref), wt_sum = sum_j w_j t'_j,
                        # t' = keep t + spread (smoothed probability targets)

# What one pass over a row leaves behind.  The log-sum-exp is shift + log_sum.
cdef struct RowStats:
    double maximum      # nan ignored
    double shift
    double log_sum
    double ref          # the reference subtracted in x_sum (the shift after the first chunk)
    double x_sum        # the extra sums, see RowSums
    double wt_sum
    double rest         # the sum of exp(x - shift) over the terms below the maximum ...
    double at_max       # ... and over the maximal ones (their count when the maximum is finite)


cdef inline double finish_logs(double maximum, double rest, double at_max) noexcept nogil:
    # log of the whole sum, log(rest + at_max); with a finite maximum at_max counts the
    # maximal terms (>= 1), or is 0 where rest holds them too (the one-pass column sums of
    # 16-bit input, whose at_max may also hold terms exp(M - shift) >= 1 of float32's exp)
    if isfinite(maximum):
        if at_max == 1:
            return log1p(rest)
        if at_max == 0:
            return log(rest)
        return log1p(rest / at_max) + log(at_max)
    return log(rest + at_max)


cdef inline void finish_logs_many(const floating *maximum, const double *rest,
                                  const double *at_max, double *log_sum,
                                  Py_ssize_t n) noexcept nogil:
    # finish_logs of n sums at once: the vectorised one-log form (fnl_log_sums) where the
    # maximum and the sum are finite, finish_logs for the others
    cdef Py_ssize_t k
    fnl_log_sums(rest, at_max, log_sum, n)
    for k in range(n):
        if not (isfinite(maximum[k]) and isfinite(rest[k])):
            log_sum[k] = finish_logs(maximum[k], rest[k], at_max[k])


cdef inline void rescale(floating new_maximum, floating *maximum, floating *shift, double *rest,
                         double *at_max) noexcept nogil:
    # A new running maximum: fold the old sums into `rest` at the new shift.
    cdef floating new_shift = new_maximum if isfinite(new_maximum) else 0
    cdef double total = rest[0] + at_max[0]
    if total != 0:
        rest[0] = total * fnl_exp_f64(<double>shift[0] - <double>new_shift)
    at_max[0] = 0
    maximum[0] = new_maximum
    shift[0] = new_shift


cdef inline RowStats row_stats(const floating *x, Py_ssize_t n, Py_ssize_t s, RowSums sums,
                               const floating *t, Py_ssize_t s_t, const floating *w,
                               Py_ssize_t s_w, floating keep, floating spread) noexcept nogil:
    # One pass over a row of n elements with stride s, up to the log of the sum (log_sum is
    # left 0; row_lse takes it, and callers that finish several rows at once use rest, at_max).
    # t (stride s_t) are probability targets (SUMS_WTX), w (stride s_w) class weights.
    # Returned by value: inside prange, Cython makes a variable thread-private only when the
    # loop body assigns it, so results must never come back through a pointer.
    return row_stats_from(x, NULL, 0, n, s, sums, t, s_t, w, s_w, keep, spread, False)


cdef inline RowStats row_stats_from(const floating *x, const uint16_t *h, int kind,
                                    Py_ssize_t n, Py_ssize_t s, RowSums sums,
                                    const floating *t, Py_ssize_t s_t, const floating *w,
                                    Py_ssize_t s_w, floating keep, floating spread,
                                    bint exact) noexcept nogil:
    # row_stats of the row x, or (float only, h not NULL) of the 16-bit row h of the format
    # `kind` (FNL_F16, FNL_BF16).  A 16-bit row's sums of exp take the short exp of _half.h
    # (fnl_half_sumexp_f32) while the maximum is finite, unless `exact`; a unit-stride row
    # whose log-sum-exp is all that is asked for is then read in place (FNL_HALF_DIRECT), any
    # other 16-bit row through a float32 copy of each chunk in L1 (hbuf).  With `exact`, a
    # 16-bit row is summed as its float32 copy would be (float32's exp, the same bits).
    cdef RowStats out
    cdef Py_ssize_t c0, cn, sc
    cdef const floating *xc
    cdef float hbuf[ROW_CHUNK]      # (unused, and dropped by the compiler, for double)
    cdef floating maximum = -INFINITY, shift = 0, ref = 0, chunk_at_max, chunk_wt
    cdef floating chunk_max = -INFINITY
    cdef float h_at_max, h_max, h_part
    cdef double rest = 0, at_max = 0, x_sum = 0, wt_sum = 0
    c0 = 0
    while c0 < n:
        cn = n - c0
        if cn > ROW_CHUNK:
            cn = ROW_CHUNK
        if floating is float:
            if h != NULL:
                if s == 1:
                    fnl_prefetch_after(h + c0 + cn, cn * sizeof(uint16_t))
                if FNL_HALF_DIRECT and s == 1 and sums == SUMS_LSE and not exact:
                    # read in place, converted in registers
                    if c0 > 0 and isfinite(maximum):
                        # one pass for the sum below the running maximum and the chunk's
                        # maximum, kept when no term reaches that maximum (most chunks: the
                        # same sum as the second pass below would give)
                        h_part = fnl_half_sumexp_f32(h + c0, cn, kind, maximum, 0, &h_at_max,
                                                     &h_max)
                        if h_max < maximum:
                            rest += h_part
                            c0 += cn
                            continue
                    else:
                        h_max = fnl_half_max16_f32(h + c0, cn, kind)
                    chunk_max = h_max
                    if chunk_max > maximum:
                        rescale(chunk_max, &maximum, &shift, &rest, &at_max)
                    if c0 == 0:
                        ref = shift
                    if isfinite(maximum):
                        rest += fnl_half_sumexp_f32(h + c0, cn, kind, maximum,
                                                    chunk_max == maximum, &h_at_max, NULL)
                        at_max += h_at_max
                        c0 += cn
                        continue
                    # an infinite maximum: the float32 copy and the full exp, as below
                # converted and its maximum taken in one pass
                chunk_max = fnl_half_load_max_f32(h + c0 * s, cn, s, kind, hbuf)
                xc, sc = hbuf, 1
        if h == NULL:
            xc, sc = x + c0 * s, s
            if s == 1:
                # the chunk after the next (or the next row's start) arrives while this one
                # and the next are summed: one chunk ahead was measurably slower at
                # x86-64-v3 (the hardware prefetchers stop at 4 KiB pages).  Only on CPUs
                # where fnl_row_prefetch is on (_portable.h: Intel's)
                fnl_prefetch_after(x + c0 + cn, cn * sizeof(floating))
            chunk_max = fnl_max(xc, cn, sc)
        if chunk_max > maximum:
            rescale(chunk_max, &maximum, &shift, &rest, &at_max)
        if c0 == 0:
            ref = shift
        if floating is float and h != NULL and isfinite(maximum) and not exact:
            # a 16-bit row in the usual case (a finite maximum, which is the shift)
            rest += fnl_half_sumexp_f32(xc, cn, FNL_SRC_F32, maximum, chunk_max == maximum,
                                        &h_at_max, NULL)
            at_max += h_at_max
        elif (floating is float and FNL_F32_INTRINSICS and sc == 1 and chunk_max < maximum
                and isfinite(maximum)):
            # no term of this chunk is maximal (most chunks of a long row): the same sum
            # without comparing each term with the maximum, which the loops written with
            # intrinsics then skip (float32 at x86-64-v3 and v4, the same bits)
            rest += fnl_sumexp_below(xc, cn, sc, shift)
        else:
            rest += fnl_sumexp(xc, cn, sc, maximum, shift, &chunk_at_max)
            at_max += chunk_at_max
        if sums == SUMS_WX:
            x_sum += fnl_sumdiff(xc, cn, sc, NULL if w == NULL else w + c0 * s_w, s_w, ref)
        elif sums == SUMS_WTX:
            x_sum += fnl_tsum(xc, cn, sc, t + c0 * s_t, s_t,
                              NULL if w == NULL else w + c0 * s_w, s_w, keep, spread, ref,
                              &chunk_wt)
            wt_sum += chunk_wt
        c0 += cn
    out.maximum = maximum
    out.shift = shift
    out.log_sum = 0
    out.ref = ref
    out.x_sum = x_sum
    out.wt_sum = wt_sum
    out.rest = rest
    out.at_max = at_max
    return out


cdef inline RowStats row_lse(const floating *x, Py_ssize_t n, Py_ssize_t s, RowSums sums,
                             const floating *t, Py_ssize_t s_t, const floating *w,
                             Py_ssize_t s_w, floating keep, floating spread) noexcept nogil:
    # row_stats with its log: the row's log-sum-exp is shift + log_sum.
    cdef RowStats out = row_stats(x, n, s, sums, t, s_t, w, s_w, keep, spread)
    out.log_sum = finish_logs(out.maximum, out.rest, out.at_max)
    return out
