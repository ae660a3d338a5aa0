# Shared inline maths for every kernel: the C inner loops of _simd.h, typed for Cython's fused
# `floating`, and the online log-sum-exp combine over chunks of a row or a block of columns.
#
# The combine: a row is read in chunks that fit in L1.  For each chunk we take its maximum, and
# if it beats the running maximum M we rescale the running sums once (one scalar exp per
# chunk), then add the chunk's sum of exp(x - shift) (one vector exp per element).  shift is M
# when M is finite and 0 otherwise, which gives SciPy's results for rows that are all -inf,
# contain +inf, or contain nan.  Terms equal to M are summed apart from the rest, so that
# log(sum) = log(eq) + log1p(rest / eq) keeps the precision of small results (SciPy's trick).
from cython cimport floating
from libc.stdint cimport int64_t
from libc.math cimport isfinite, log, log1p, INFINITY

cdef extern from "_simd.h" nogil:
    double fnl_log_ge1_f64(double x)
    double fnl_log_f64(double x)
    double fnl_log1p_pos_f64(double u)
    double fnl_sum_f64(const double *v, Py_ssize_t n)
    void fnl_colfinish(const double *lo, const double *eq, double *logs, Py_ssize_t nk)
    float fnl_exp_f32(float x)
    double fnl_exp_f64(double x)
    float fnl_max_f32(const float *x, Py_ssize_t n, Py_ssize_t s)
    double fnl_max_f64(const double *x, Py_ssize_t n, Py_ssize_t s)
    float fnl_sumexp_f32(const float *x, Py_ssize_t n, Py_ssize_t s, float M, float shift,
                         float *eq)
    double fnl_sumexp_f64(const double *x, Py_ssize_t n, Py_ssize_t s, double M,
                          double shift, double *eq)
    float fnl_sumdiff_f32(const float *x, Py_ssize_t n, Py_ssize_t s, const float *w,
                          Py_ssize_t sw, float ref)
    double fnl_sumdiff_f64(const double *x, Py_ssize_t n, Py_ssize_t s, const double *w,
                           Py_ssize_t sw, double ref)
    float fnl_tsum_f32(const float *x, Py_ssize_t n, Py_ssize_t s, const float *t,
                       Py_ssize_t st, const float *w, Py_ssize_t sw, float a, float b,
                       float ref, float *tw)
    double fnl_tsum_f64(const double *x, Py_ssize_t n, Py_ssize_t s, const double *t,
                        Py_ssize_t st, const double *w, Py_ssize_t sw, double a, double b,
                        double ref, double *tw)
    void fnl_softmax_f32(const float *x, Py_ssize_t n, Py_ssize_t s, float shift, float logs,
                         float *out, Py_ssize_t so)
    void fnl_softmax_f64(const double *x, Py_ssize_t n, Py_ssize_t s, double shift,
                         double logs, double *out, Py_ssize_t so)
    void fnl_logsoftmax_f32(const float *x, Py_ssize_t n, Py_ssize_t s, float shift,
                            float logs, float *out, Py_ssize_t so)
    void fnl_logsoftmax_f64(const double *x, Py_ssize_t n, Py_ssize_t s, double shift,
                            double logs, double *out, Py_ssize_t so)
    void fnl_grad_f32(const float *x, Py_ssize_t n, Py_ssize_t s, float shift, float logs,
                      float A, float B, const float *w, Py_ssize_t sw, float *g, Py_ssize_t sg)
    void fnl_grad_f64(const double *x, Py_ssize_t n, Py_ssize_t s, double shift, double logs,
                      double A, double B, const double *w, Py_ssize_t sw, double *g,
                      Py_ssize_t sg)
    void fnl_gradprob_f32(const float *x, Py_ssize_t n, Py_ssize_t s, float shift, float logs,
                          float A, float S, const float *t, Py_ssize_t st, const float *w,
                          Py_ssize_t sw, float a, float b, float *g, Py_ssize_t sg)
    void fnl_gradprob_f64(const double *x, Py_ssize_t n, Py_ssize_t s, double shift,
                          double logs, double A, double S, const double *t, Py_ssize_t st,
                          const double *w, Py_ssize_t sw, double a, double b, double *g,
                          Py_ssize_t sg)
    void fnl_pack_f32(const float *x, Py_ssize_t jn, Py_ssize_t s1, Py_ssize_t nk,
                      Py_ssize_t sk, float *buf, Py_ssize_t B, int tail_ok)
    void fnl_pack_f64(const double *x, Py_ssize_t jn, Py_ssize_t s1, Py_ssize_t nk,
                      Py_ssize_t sk, double *buf, Py_ssize_t B, int tail_ok)
    void fnl_unpack_f32(const float *buf, Py_ssize_t B, Py_ssize_t jn, Py_ssize_t nk,
                        float *y, Py_ssize_t s1, Py_ssize_t sk)
    void fnl_unpack_f64(const double *buf, Py_ssize_t B, Py_ssize_t jn, Py_ssize_t nk,
                        double *y, Py_ssize_t s1, Py_ssize_t sk)
    Py_ssize_t fnl_nll_rows_f32(const float *x, Py_ssize_t s0, Py_ssize_t s1,
                                const int64_t *tg, Py_ssize_t st, Py_ssize_t n, int64_t C,
                                int64_t ignore, const float *w, Py_ssize_t sw, double *acc,
                                double *den)
    Py_ssize_t fnl_nll_rows_f64(const double *x, Py_ssize_t s0, Py_ssize_t s1,
                                const int64_t *tg, Py_ssize_t st, Py_ssize_t n, int64_t C,
                                int64_t ignore, const double *w, Py_ssize_t sw, double *acc,
                                double *den)
    void fnl_colmax_rows_f32(const float *x, Py_ssize_t jn, Py_ssize_t c1, Py_ssize_t nk,
                             float *m)
    void fnl_colsumexp_rows_f32(const float *x, Py_ssize_t jn, Py_ssize_t c1, Py_ssize_t nk,
                                const float *M, const float *shift, float *lo, float *hi)
    void fnl_colmax_f32(const float *x, Py_ssize_t nk, Py_ssize_t sk, float *m)
    void fnl_colmax_f64(const double *x, Py_ssize_t nk, Py_ssize_t sk, double *m)
    void fnl_colsumexp_f32(const float *x, Py_ssize_t nk, Py_ssize_t sk, const float *M,
                           const float *shift, float *lo, float *hi)
    void fnl_colsumexp_f64(const double *x, Py_ssize_t nk, Py_ssize_t sk, const double *M,
                           const double *shift, double *lo, double *hi)
    void fnl_colsumdiff_f32(const float *x, Py_ssize_t nk, Py_ssize_t sk, float wj,
                            const float *ref, float *acc)
    void fnl_colsumdiff_f64(const double *x, Py_ssize_t nk, Py_ssize_t sk, double wj,
                            const double *ref, double *acc)
    void fnl_colsoftmax_f32(const float *x, Py_ssize_t nk, Py_ssize_t sk, const float *shift,
                            const float *logs, float *out, Py_ssize_t so, int take_log)
    void fnl_colsoftmax_f64(const double *x, Py_ssize_t nk, Py_ssize_t sk,
                            const double *shift, const double *logs, double *out,
                            Py_ssize_t so, int take_log)
    void fnl_colgrad_f32(const float *x, Py_ssize_t nk, Py_ssize_t sk, const float *shift,
                         const float *logs, const float *A, const float *B, float wj,
                         float *g, Py_ssize_t sg)
    void fnl_colgrad_f64(const double *x, Py_ssize_t nk, Py_ssize_t sk, const double *shift,
                         const double *logs, const double *A, const double *B, double wj,
                         double *g, Py_ssize_t sg)

# Elements per chunk of a row, and class rows per chunk / columns per block in the column
# layout.  A row chunk is 4 KiB of float32; a column chunk 8 KiB.
cdef enum:
    ROW_CHUNK = 1024
    COL_CHUNK = 32
    COL_BLOCK = 64

# What one pass over a row leaves behind.  lse = shift + logs.  acc and tw are the optional
# extra sums of the same pass (see row_lse's mode).
cdef struct RowStats:
    double top      # the maximum M (nan ignored)
    double shift
    double logs
    double ref      # reference subtracted in acc (the shift after the first chunk)
    double acc
    double tw
    double lo       # the sum of exp(x - shift) over the non-maximal terms ...
    double eq       # ... and over the maximal ones (their count when the maximum is finite)


cdef inline double fexp(double v) noexcept nogil:
    return fnl_exp_f64(v)


cdef inline floating vmax(const floating *x, Py_ssize_t n, Py_ssize_t s) noexcept nogil:
    if floating is float:
        return fnl_max_f32(x, n, s)
    else:
        return fnl_max_f64(x, n, s)


cdef inline floating vsumexp(const floating *x, Py_ssize_t n, Py_ssize_t s, floating M,
                             floating shift, floating *eq) noexcept nogil:
    if floating is float:
        return fnl_sumexp_f32(x, n, s, M, shift, eq)
    else:
        return fnl_sumexp_f64(x, n, s, M, shift, eq)


cdef inline floating vsumdiff(const floating *x, Py_ssize_t n, Py_ssize_t s,
                              const floating *w, Py_ssize_t sw, floating ref) noexcept nogil:
    if floating is float:
        return fnl_sumdiff_f32(x, n, s, w, sw, ref)
    else:
        return fnl_sumdiff_f64(x, n, s, w, sw, ref)


cdef inline floating vtsum(const floating *x, Py_ssize_t n, Py_ssize_t s, const floating *t,
                           Py_ssize_t st, const floating *w, Py_ssize_t sw, floating a,
                           floating b, floating ref, floating *tw) noexcept nogil:
    if floating is float:
        return fnl_tsum_f32(x, n, s, t, st, w, sw, a, b, ref, tw)
    else:
        return fnl_tsum_f64(x, n, s, t, st, w, sw, a, b, ref, tw)


cdef inline void vsoftmax(const floating *x, Py_ssize_t n, Py_ssize_t s, floating shift,
                          floating logs, floating *out, Py_ssize_t so,
                          bint take_log) noexcept nogil:
    if floating is float:
        if take_log:
            fnl_logsoftmax_f32(x, n, s, shift, logs, out, so)
        else:
            fnl_softmax_f32(x, n, s, shift, logs, out, so)
    else:
        if take_log:
            fnl_logsoftmax_f64(x, n, s, shift, logs, out, so)
        else:
            fnl_softmax_f64(x, n, s, shift, logs, out, so)


cdef inline void vgrad(const floating *x, Py_ssize_t n, Py_ssize_t s, floating shift,
                       floating logs, floating A, floating B, const floating *w, Py_ssize_t sw,
                       floating *g, Py_ssize_t sg) noexcept nogil:
    if floating is float:
        fnl_grad_f32(x, n, s, shift, logs, A, B, w, sw, g, sg)
    else:
        fnl_grad_f64(x, n, s, shift, logs, A, B, w, sw, g, sg)


cdef inline void vgradprob(const floating *x, Py_ssize_t n, Py_ssize_t s, floating shift,
                           floating logs, floating A, floating S, const floating *t,
                           Py_ssize_t st, const floating *w, Py_ssize_t sw, floating a,
                           floating b, floating *g, Py_ssize_t sg) noexcept nogil:
    if floating is float:
        fnl_gradprob_f32(x, n, s, shift, logs, A, S, t, st, w, sw, a, b, g, sg)
    else:
        fnl_gradprob_f64(x, n, s, shift, logs, A, S, t, st, w, sw, a, b, g, sg)


cdef inline void vpack(const floating *x, Py_ssize_t jn, Py_ssize_t s1, Py_ssize_t nk,
                       Py_ssize_t sk, floating *buf, Py_ssize_t B, bint tail_ok) noexcept nogil:
    if floating is float:
        fnl_pack_f32(x, jn, s1, nk, sk, buf, B, tail_ok)
    else:
        fnl_pack_f64(x, jn, s1, nk, sk, buf, B, tail_ok)


cdef inline Py_ssize_t vnll_rows(const floating *x, Py_ssize_t s0, Py_ssize_t s1,
                                  const int64_t *tg, Py_ssize_t st, Py_ssize_t n, int64_t C,
                                  int64_t ignore, const floating *w, Py_ssize_t sw,
                                  double *acc, double *den) noexcept nogil:
    if floating is float:
        return fnl_nll_rows_f32(x, s0, s1, tg, st, n, C, ignore, w, sw, acc, den)
    else:
        return fnl_nll_rows_f64(x, s0, s1, tg, st, n, C, ignore, w, sw, acc, den)


cdef inline void vunpack(const floating *buf, Py_ssize_t B, Py_ssize_t jn, Py_ssize_t nk,
                         floating *y, Py_ssize_t s1, Py_ssize_t sk) noexcept nogil:
    if floating is float:
        fnl_unpack_f32(buf, B, jn, nk, y, s1, sk)
    else:
        fnl_unpack_f64(buf, B, jn, nk, y, s1, sk)


cdef inline void vcolmax(const floating *x, Py_ssize_t nk, Py_ssize_t sk,
                         floating *m) noexcept nogil:
    if floating is float:
        fnl_colmax_f32(x, nk, sk, m)
    else:
        fnl_colmax_f64(x, nk, sk, m)


cdef inline void vcolsumexp(const floating *x, Py_ssize_t nk, Py_ssize_t sk, const floating *M,
                            const floating *shift, floating *lo, floating *hi) noexcept nogil:
    if floating is float:
        fnl_colsumexp_f32(x, nk, sk, M, shift, lo, hi)
    else:
        fnl_colsumexp_f64(x, nk, sk, M, shift, lo, hi)


cdef inline void vcolmax_rows(const floating *x, Py_ssize_t jn, Py_ssize_t c1,
                              Py_ssize_t nk, Py_ssize_t sk, floating *m) noexcept nogil:
    # vcolmax over jn class rows, row j at x + j * c1 (float unit stride: one call that keeps
    # the maxima in registers; the same results)
    cdef Py_ssize_t j
    if floating is float and sk == 1:
        fnl_colmax_rows_f32(x, jn, c1, nk, m)
    else:
        for j in range(jn):
            vcolmax(x + j * c1, nk, sk, m)


cdef inline void vcolsumexp_rows(const floating *x, Py_ssize_t jn, Py_ssize_t c1,
                                 Py_ssize_t nk, Py_ssize_t sk, const floating *M,
                                 const floating *shift, floating *lo,
                                 floating *hi) noexcept nogil:
    # vcolsumexp over jn class rows, as vcolmax_rows (hi must hold whole numbers: see
    # fnl_colsumexp_rows_f32)
    cdef Py_ssize_t j
    if floating is float and sk == 1:
        fnl_colsumexp_rows_f32(x, jn, c1, nk, M, shift, lo, hi)
    else:
        for j in range(jn):
            vcolsumexp(x + j * c1, nk, sk, M, shift, lo, hi)


cdef inline void vcolsumdiff(const floating *x, Py_ssize_t nk, Py_ssize_t sk, floating wj,
                             const floating *ref, floating *acc) noexcept nogil:
    if floating is float:
        fnl_colsumdiff_f32(x, nk, sk, wj, ref, acc)
    else:
        fnl_colsumdiff_f64(x, nk, sk, wj, ref, acc)


cdef inline void vcolsoftmax(const floating *x, Py_ssize_t nk, Py_ssize_t sk,
                             const floating *shift, const floating *logs, floating *out,
                             Py_ssize_t so, bint take_log) noexcept nogil:
    if floating is float:
        fnl_colsoftmax_f32(x, nk, sk, shift, logs, out, so, take_log)
    else:
        fnl_colsoftmax_f64(x, nk, sk, shift, logs, out, so, take_log)


cdef inline void vcolgrad(const floating *x, Py_ssize_t nk, Py_ssize_t sk,
                          const floating *shift, const floating *logs, const floating *A,
                          const floating *B, floating wj, floating *g,
                          Py_ssize_t sg) noexcept nogil:
    if floating is float:
        fnl_colgrad_f32(x, nk, sk, shift, logs, A, B, wj, g, sg)
    else:
        fnl_colgrad_f64(x, nk, sk, shift, logs, A, B, wj, g, sg)


cdef inline double finish_logs(double top, double lo, double eq) noexcept nogil:
    # log of the whole sum; with a finite maximum eq counts the maximal terms (>= 1).
    if isfinite(top):
        if eq == 1:
            return log1p(lo)
        return log1p(lo / eq) + log(eq)
    return log(lo + eq)


cdef inline void finish_logs_many(const floating *top, const double *lo, const double *eq,
                                  double *logs, Py_ssize_t n) noexcept nogil:
    # finish_logs of n sums at once: the vectorised one-log form (fnl_colfinish) where the
    # maximum and the sum are finite, finish_logs for the others
    cdef Py_ssize_t k
    fnl_colfinish(lo, eq, logs, n)
    for k in range(n):
        if not (isfinite(top[k]) and isfinite(lo[k])):
            logs[k] = finish_logs(top[k], lo[k], eq[k])


cdef inline void rescale(floating newtop, floating *top, floating *shift, double *lo,
                         double *eq) noexcept nogil:
    # A new running maximum: fold the old sums into `lo` at the new shift.
    cdef floating newshift = newtop if isfinite(newtop) else 0
    cdef double tot = lo[0] + eq[0]
    if tot != 0:
        lo[0] = tot * fexp(<double>shift[0] - <double>newshift)
    eq[0] = 0
    top[0] = newtop
    shift[0] = newshift


cdef inline RowStats row_stats(const floating *x, Py_ssize_t n, Py_ssize_t s, int mode,
                               const floating *t, Py_ssize_t st, const floating *w,
                               Py_ssize_t sw, floating a, floating b) noexcept nogil:
    # One pass over a row of n elements with stride s, up to the log of the sum (logs is
    # left 0; row_lse takes it, and callers that finish several rows at once use lo, eq).
    # mode 0: log-sum-exp only.
    # mode 1: also acc = sum_j w_j (x_j - ref)                    (w NULL means 1)
    # mode 2: also acc = sum_j w_j t'_j (x_j - ref), tw = sum_j w_j t'_j, t' = a t + b
    # Returned by value: inside prange, Cython makes a variable thread-private only when the
    # loop body assigns it, so results must never come back through a pointer.
    cdef RowStats out
    cdef Py_ssize_t c0, cn
    cdef floating top = -INFINITY, shift = 0, ref = 0, mc, eqc, twc
    cdef double lo = 0, eq = 0, acc = 0, tw = 0
    c0 = 0
    while c0 < n:
        cn = n - c0
        if cn > ROW_CHUNK:
            cn = ROW_CHUNK
        mc = vmax(x + c0 * s, cn, s)
        if mc > top:
            rescale(mc, &top, &shift, &lo, &eq)
        if c0 == 0:
            ref = shift
        lo += vsumexp(x + c0 * s, cn, s, top, shift, &eqc)
        eq += eqc
        if mode == 1:
            acc += vsumdiff(x + c0 * s, cn, s, NULL if w == NULL else w + c0 * sw, sw, ref)
        elif mode == 2:
            acc += vtsum(x + c0 * s, cn, s, t + c0 * st, st,
                         NULL if w == NULL else w + c0 * sw, sw, a, b, ref, &twc)
            tw += twc
        c0 += cn
    out.top = top
    out.shift = shift
    out.logs = 0
    out.ref = ref
    out.acc = acc
    out.tw = tw
    out.lo = lo
    out.eq = eq
    return out


cdef inline RowStats row_lse(const floating *x, Py_ssize_t n, Py_ssize_t s, int mode,
                             const floating *t, Py_ssize_t st, const floating *w,
                             Py_ssize_t sw, floating a, floating b) noexcept nogil:
    # row_stats with its log: the row's log-sum-exp is shift + logs.
    cdef RowStats out = row_stats(x, n, s, mode, t, st, w, sw, a, b)
    out.logs = finish_logs(out.top, out.lo, out.eq)
    return out
