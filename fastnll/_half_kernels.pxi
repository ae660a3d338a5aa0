# 16-bit input: float16 and bfloat16 (the codes FNL_F16, FNL_BF16 of _portable.h), read in
# place.
#
# The Python layer hands the kernels the arrays' bits as uint16 views with the format's code.
# A row (all C classes of one (outer, inner) position, at any stride) is read by chunks of
# ROW_CHUNK elements, each converted to float32 (in registers, or in L1 for the float32
# loops): the arithmetic of float32 data, with the same float64 sums, but for the rows' sums
# of exp, which take the short exp of _half.h (relative error 3.2e-6, which 16-bit results
# cannot show but in a log-sum-exp near 0: half_logsumexp takes those rows again with
# float32's exp) (row_stats_from in _lse.pxd, row_grad in _class_loss_kernels.pxi:
# cross-entropy runs the float32 rows_block).  Outputs are computed
# in float32 and rounded once to the 16-bit format (softmax, the gradient); reductions come
# back as float32 or float64 and the Python layer rounds them.  Along a class axis that is
# not the contiguous one, float32's column traversal, over float32 pieces converted in L1
# (logsumexp_strips, half_softmax_cols, and col_lse's 16-bit rows for cross-entropy's
# cols_block): there the float32 exp, and the float32 results of the same values; but
# logsumexp's unit-stride columns at x86-64-v4 are read in place, with the short exp (and
# the column blocks with a result near 0 taken again through float32 pieces: see
# logsumexp_strips).
from libc.math cimport fabs
from libc.stdint cimport uint16_t
from fastnll._loops cimport (
    FNL_HALF_DIRECT, fnl_f32_to_half, fnl_half_load_chunk_f32, fnl_half_load_f32,
    fnl_half_softmax_f32, fnl_half_store_f32, fnl_half_to_f32, fnl_half_write16_f32,
    fnl_stream_fence,
)


cdef inline View3 view3_half(const uint16_t[:, :, :] v) noexcept nogil:
    cdef void *data = NULL
    if v.shape[0] > 0 and v.shape[1] > 0 and v.shape[2] > 0:
        data = <void *>&v[0, 0, 0]
    return View3(data, v.strides[0] // 2, v.strides[1] // 2, v.strides[2] // 2)


@cython.boundscheck(False)
@cython.wraparound(False)
def half_load(const uint16_t[:] h not None, int kind, float[::1] out not None):
    """out = the float32 values of the 16-bit floats h (bits of the format `kind`)."""
    if out.shape[0] != h.shape[0]:
        raise ValueError(f"half_load: out has {out.shape[0]} elements, h {h.shape[0]}")
    if h.shape[0]:
        fnl_half_load_f32(&h[0], h.shape[0], h.strides[0] // 2, kind, &out[0])


@cython.boundscheck(False)
@cython.wraparound(False)
def half_store(const float[::1] v not None, int kind, uint16_t[:] out not None):
    """out = v rounded to the 16-bit format `kind` (to nearest, ties to even)."""
    if out.shape[0] != v.shape[0]:
        raise ValueError(f"half_store: out has {out.shape[0]} elements, v {v.shape[0]}")
    if v.shape[0]:
        fnl_half_store_f32(&v[0], v.shape[0], kind, &out[0], out.strides[0] // 2)


@cython.boundscheck(False)
@cython.wraparound(False)
def half_logsumexp(const uint16_t[:, :, :] x not None, int kind, float[:, :] out not None,
                   int nthreads):
    """out[o, k] = log sum_c exp(x[o, c, k]) for 16-bit x."""
    cdef View3 xv = view3_half(x)
    cdef const uint16_t *x0 = <const uint16_t *>xv.data
    cdef Py_ssize_t C = x.shape[1], inner = x.shape[2], n = x.shape[0] * x.shape[2], r
    cdef Py_ssize_t os0 = out.strides[0] // 4, os1 = out.strides[1] // 4
    cdef float *o0
    cdef RowIndex ri
    cdef RowStats stats
    cdef double lse
    if n == 0:
        return
    o0 = &out[0, 0]
    if C > 0 and use_columns(inner, C, xv.s1, xv.s2):
        # the column traversal (logsumexp_strips)
        logsumexp_strips(<const float *>NULL, x0, kind, o0, os0, os1, x.shape[0], C, inner,
                         xv.s0, xv.s1, xv.s2, nthreads if n > 1 else 1)
        return
    with nogil:
        for r in prange(n, schedule='static', num_threads=nthreads if n > 1 else 1):
            ri = row_index(r, inner)
            stats = row_stats_from(<const float *>NULL, x0 + ri.o * xv.s0 + ri.k * xv.s2, kind,
                                   C, xv.s1, SUMS_LSE, NULL, 0, NULL, 0, 0, 0, False)
            lse = stats.shift + finish_logs(stats.maximum, stats.rest, stats.at_max)
            if fabs(lse) < LSE_NEAR_ZERO:
                # The short exp's absolute error in the log of the sum (up to 3.2e-6, see
                # _half.h) can show in a result this close to 0 (a maximum below 0 and a
                # log of the sum that cancels it, as for rows of log-probabilities): the row
                # again, with float32's exp.  Losses and softmax outputs add terms of one
                # sign and keep the short exp's relative error.
                stats = row_stats_from(<const float *>NULL, x0 + ri.o * xv.s0 + ri.k * xv.s2,
                                       kind, C, xv.s1, SUMS_LSE, NULL, 0, NULL, 0, 0, 0, True)
                lse = stats.shift + finish_logs(stats.maximum, stats.rest, stats.at_max)
            o0[ri.o * os0 + ri.k * os1] = <float>lse


@cython.boundscheck(False)
@cython.wraparound(False)
def half_softmax(const uint16_t[:, :, :] x not None, int kind, uint16_t[:, :, :] out not None,
                 bint take_log, int nthreads, bint stream=False):
    """out = softmax(x) or log_softmax(x) along the middle axis, 16-bit in and out (out may
    be x itself: each row is read whole before it is written).  stream: write unit-stride
    rows with non-temporal stores (for a caller's output larger than the last-level cache)."""
    cdef View3 xv = view3_half(x), ov = view3_half(out)
    cdef const uint16_t *x0 = <const uint16_t *>xv.data
    cdef uint16_t *y0 = <uint16_t *>ov.data
    cdef Py_ssize_t C = x.shape[1], inner = x.shape[2], n = x.shape[0] * x.shape[2], r
    cdef RowIndex ri
    if x0 == NULL:
        return
    nthreads = nthreads if n > 1 else 1
    if use_columns(inner, C, xv.s1, xv.s2):
        half_softmax_cols(x0, y0, kind, x.shape[0], C, inner, xv, ov, take_log, nthreads)
        return
    with nogil:
        for r in prange(n, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            half_softmax_row(x0 + ri.o * xv.s0 + ri.k * xv.s2, C, xv.s1, kind,
                             y0 + ri.o * ov.s0 + ri.k * ov.s2, ov.s1, take_log, stream)


cdef int half_softmax_cols(const uint16_t *x0, uint16_t *y0, int kind, Py_ssize_t outer,
                           Py_ssize_t C, Py_ssize_t inner, View3 xv, View3 ov, bint take_log,
                           int nthreads) except -1:
    # half_softmax where the class axis is not the contiguous one: float32's column
    # traversal, block by block of COL_WIDE columns (half_softmax_block), with a thread's
    # buffer of COL_CHUNK x COL_WIDE floats (32 KiB) and column workspace.  With one thread
    # (or one block) no parallel region.
    cdef ColBlocks blocks = col_blocks(inner, 1)
    cdef Py_ssize_t n = outer * blocks.per_outer, it
    cdef int nt = nthreads if nthreads > 1 and n > 1 else 1
    cdef void *ws = col_workspace(nt)
    cdef float *buf = <float *>malloc(<size_t>nt * COL_CHUNK * COL_WIDE * sizeof(float))
    if buf == NULL:
        free(ws)
        raise MemoryError()
    with nogil:
        if nt == 1:
            for it in range(n):
                half_softmax_block(x0, y0, kind, C, col_range(it, blocks, inner), xv, ov,
                                   take_log, ws, buf, 0)
        else:
            for it in prange(n, schedule='static', num_threads=nt):
                half_softmax_block(x0, y0, kind, C, col_range(it, blocks, inner), xv, ov,
                                   take_log, ws, buf, threadid())
    free(buf)
    free(ws)
    return 0


cdef inline void half_softmax_block(const uint16_t *x0, uint16_t *y0, int kind, Py_ssize_t C,
                                    ColRange cr, View3 xv, View3 ov, bint take_log, void *ws,
                                    float *buf, int tid) noexcept nogil:
    # half_softmax_cols' block cr, by thread tid: float32 pieces of COL_CHUNK classes
    # converted into the thread's buffer, col_lse's pass over them, then each chunk converted
    # again (unless the block's classes fit in one chunk, still in the buffer), fnl_colsoftmax
    # in place there and rounded once into y.  The float32 results of the same values,
    # rounded once.
    cdef float *chunk = buf + tid * COL_CHUNK * COL_WIDE
    cdef const uint16_t *xb = x0 + cr.o * xv.s0 + cr.k0 * xv.s2
    cdef uint16_t *yb = y0 + cr.o * ov.s0 + cr.k0 * ov.s2
    cdef float *shift = <float *>col_slot(ws, tid, SLOT_SHIFT)
    cdef float *log_sums = <float *>col_slot(ws, tid, SLOT_LOG_SUM)
    cdef float *maximum = <float *>col_slot(ws, tid, SLOT_MAX)
    cdef Py_ssize_t j0 = 0, j, k, nclass
    col_lse_start(<const float *>NULL, cr.ncols, ws, tid)
    while j0 < C:
        nclass = min(C - j0, <Py_ssize_t>COL_CHUNK)
        fnl_half_load_chunk_f32(xb + j0 * xv.s1, nclass, xv.s1, cr.ncols, xv.s2, kind,
                                COL_CHUNK, COL_WIDE, chunk)
        col_lse_chunk(<const float *>chunk, j0, nclass, COL_WIDE, cr.ncols, 1, SUMS_LSE, NULL,
                      0, ws, tid, NULL, False, NULL, 0)
        j0 += nclass
    col_lse_finish(<const float *>NULL, cr.ncols, ws, tid)
    if not take_log:
        for k in range(cr.ncols):
            if maximum[k] == INFINITY:
                log_sums[k] = NAN   # SciPy: exp(inf - inf) poisons the column
    j0 = 0
    while j0 < C:
        nclass = min(C - j0, <Py_ssize_t>COL_CHUNK)
        if C > COL_CHUNK:
            fnl_half_load_chunk_f32(xb + j0 * xv.s1, nclass, xv.s1, cr.ncols, xv.s2, kind,
                                    COL_CHUNK, COL_WIDE, chunk)
        for j in range(nclass):
            fnl_colsoftmax(<const float *>(chunk + j * COL_WIDE), cr.ncols, 1, shift, log_sums,
                           chunk + j * COL_WIDE, 1, take_log)
            fnl_half_store_f32(chunk + j * COL_WIDE, cr.ncols, kind, yb + (j0 + j) * ov.s1,
                               ov.s2)
        j0 += nclass


cdef inline void half_softmax_row(const uint16_t *x, Py_ssize_t C, Py_ssize_t s, int kind,
                                  uint16_t *y, Py_ssize_t s_y, bint take_log,
                                  bint stream) noexcept nogil:
    # One row of half_softmax: the row's statistics (row_stats_from: the short exp's sums,
    # read in place where the row is contiguous), then x - shift - log_sum, or its exp, rounded
    # once: in one pass converting in registers where both rows are contiguous
    # (fnl_half_write16_f32, FNL_HALF_DIRECT), else by chunks converted to float32 in L1.
    # softmax's exp is the short one when the maximum and the sum are finite; other rows take
    # the general formula, as for float32.
    cdef float chunk[ROW_CHUNK]
    cdef Py_ssize_t c0, cn
    cdef float shift, log_sum
    cdef bint short_exp
    cdef RowStats stats
    stats = row_stats_from(<const float *>NULL, x, kind, C, s, SUMS_LSE, NULL, 0, NULL, 0, 0,
                           0, False)
    shift = <float>stats.shift
    log_sum = <float>finish_logs(stats.maximum, stats.rest, stats.at_max)
    if not take_log and stats.maximum == INFINITY:
        log_sum = NAN   # SciPy: exp(inf - inf) poisons the whole row
    short_exp = not take_log and isfinite(stats.maximum) and isfinite(log_sum)
    if FNL_HALF_DIRECT and s == 1 and s_y == 1 and (take_log or short_exp):
        fnl_half_write16_f32(x, y, C, kind, shift, log_sum, take_log, stream)
        if stream:
            fnl_stream_fence()
        return
    c0 = 0
    while c0 < C:
        cn = min(C - c0, <Py_ssize_t>ROW_CHUNK)
        fnl_half_load_f32(x + c0 * s, cn, s, kind, chunk)
        if short_exp:
            fnl_half_softmax_f32(chunk, cn, shift, log_sum, chunk)
        else:
            fnl_softmax(chunk, cn, 1, shift, log_sum, chunk, 1, take_log)
        fnl_half_store_f32(chunk, cn, kind, y + c0 * s_y, s_y)
        c0 += cn


cdef inline void half_grad_row(const uint16_t *x, Py_ssize_t C, Py_ssize_t s, int kind,
                               float shift, float log_sum, float scale_p, float scale_w,
                               const float *w, Py_ssize_t s_w, uint16_t *g, Py_ssize_t s_g,
                               int64_t t, float t_delta) noexcept nogil:
    # fnl_grad of the 16-bit row x into the 16-bit row g, minus t_delta at class t (t < 0:
    # none), by chunks converted to float32 in L1 and rounded once (row_grad's 16-bit side)
    cdef float chunk[ROW_CHUNK]
    cdef float gchunk[ROW_CHUNK]
    cdef Py_ssize_t c0 = 0, cn
    while c0 < C:
        cn = min(C - c0, <Py_ssize_t>ROW_CHUNK)
        if s == 1:
            fnl_prefetch_after(x + c0 + cn, cn * sizeof(uint16_t))
        fnl_half_load_f32(x + c0 * s, cn, s, kind, chunk)
        fnl_grad(chunk, cn, 1, shift, log_sum, scale_p, scale_w,
                 NULL if w == NULL else w + c0 * s_w, s_w, gchunk, 1)
        if c0 <= t < c0 + cn:
            gchunk[t - c0] -= t_delta
        fnl_half_store_f32(gchunk, cn, kind, g + c0 * s_g, s_g)
        c0 += cn


@cython.boundscheck(False)
@cython.wraparound(False)
def half_class_loss(const uint16_t[:, :, :] x not None, int kind,
                    const int64_t[:, :] targets not None, const float[:] weight,
                    int64_t ignore_index, double label_smoothing, bint is_nll,
                    Reduction reduction, float[:, :] rows, uint16_t[:, :, :] grad,
                    int nthreads, double sum_scale=1.0):
    """class_loss for 16-bit x (and gradient), float32 weights and per-row losses: the same
    arguments and results."""
    cdef ClassArgs args
    cdef BlockSum res
    cdef const void *w = NULL
    cdef Py_ssize_t s_w = 0
    if weight is not None:
        s_w = weight.strides[0] // 4
        if weight.shape[0] > 0:
            w = &weight[0]
    args = class_args(x.shape[0], x.shape[1], x.shape[2], view3_half(x), target_view(targets),
                      w, s_w, ignore_index, label_smoothing, is_nll,
                      view2(rows) if rows is not None and reduction == NONE else View2(NULL, 0, 0),
                      view3_half(grad) if grad is not None else View3(NULL, 0, 0, 0),
                      grad is not None)
    args.sum_scale = sum_scale
    args.half = kind
    run_class_loss(<const float *>args.x.data, &args, reduction, nthreads, &res)
    if res.bad_row >= 0:
        return res.bad_row, res.bad_value, 0.0, 0.0
    return -1, 0, res.loss_sum, res.weight_sum


cdef BlockSum half_nll_block(const ClassArgs *args, Py_ssize_t blk) noexcept nogil:
    # class_block of NLL for 16-bit x: block blk of ROW_BLOCK rows, a gather (only the
    # target's entry is read, and written into a zeroed gradient row)
    cdef Py_ssize_t C = args.C, inner = args.inner, r, c
    cdef Py_ssize_t r0 = blk * ROW_BLOCK, r1 = min(r0 + ROW_BLOCK, args.outer * inner)
    cdef const uint16_t *x0 = <const uint16_t *>args.x.data
    cdef uint16_t *g0 = <uint16_t *>args.grad.data
    cdef const int64_t *targets = <const int64_t *>args.targets.data
    cdef float *rows = <float *>args.rows.data
    cdef const float *w = <const float *>args.w
    cdef RowIndex ri
    cdef BlockSum block
    cdef int64_t t
    cdef double w_t, loss
    cdef uint16_t *g
    block.loss_sum = 0
    block.weight_sum = 0
    block.bad_row = -1
    block.bad_value = 0
    for r in range(r0, r1):
        ri = row_index(r, inner)
        t = targets[ri.o * args.targets.s0 + ri.k * args.targets.s1]
        g = NULL if g0 == NULL else g0 + ri.o * args.grad.s0 + ri.k * args.grad.s2
        if g != NULL:
            for c in range(C):
                g[c * args.grad.s1] = 0
        loss = 0
        if t != args.ignore_index:
            if t < 0 or t >= C:
                block.bad_row = r
                block.bad_value = t
                return block
            w_t = 1.0 if w == NULL else w[t * args.s_w]
            loss = -w_t * fnl_half_to_f32(x0[ri.o * args.x.s0 + t * args.x.s1
                                             + ri.k * args.x.s2], args.half)
            block.weight_sum = block.weight_sum + w_t
            if g != NULL:
                g[t * args.grad.s1] = fnl_f32_to_half(<float>(-args.sigma * w_t), args.half)
        if rows != NULL:
            rows[ri.o * args.rows.s0 + ri.k * args.rows.s1] = <float>loss
        block.loss_sum = block.loss_sum + loss
    return block


@cython.boundscheck(False)
@cython.wraparound(False)
def half_elementwise_loss(Elementwise kind, int half, const uint16_t[:, :, :] x not None,
                          const uint16_t[:, :, :] y not None, const uint16_t[:, :, :] a,
                          const uint16_t[:, :, :] b, double eps, bint full, bint log_input,
                          bint log_target, double sigma, uint16_t[:, :, :] rows,
                          uint16_t[:, :, :] grad, float[:, :, :] grad_a, int nthreads):
    """elementwise_loss for 16-bit operands of the format `half` (grad_a: float32, summed
    over var's broadcast axes by the caller before it is rounded)."""
    cdef View3 none = View3(NULL, 0, 0, 0)
    cdef View3 xv = view3_half(x)
    cdef int flags = ((FLAG_FULL if full else 0) | (FLAG_LOG_INPUT if log_input else 0)
                      | (FLAG_LOG_TARGET if log_target else 0))
    if kind == GAUSSIAN and a is None:
        raise ValueError("half_elementwise_loss: the Gaussian needs a (its var)")
    return elementwise_core(kind, <const float *>xv.data, x.shape[0], x.shape[1], x.shape[2],
                            xv, view3_half(y), view3_half(a) if a is not None else none,
                            view3_half(b) if b is not None else none, eps, flags, sigma,
                            view3_half(rows) if rows is not None else none,
                            view3_half(grad) if grad is not None else none,
                            view3(grad_a) if grad_a is not None else none, nthreads, half)


cdef inline const uint16_t *at16(View3 v, Py_ssize_t i0, Py_ssize_t i1,
                                 Py_ssize_t i2) noexcept nogil:
    return <const uint16_t *>v.data + i0 * v.s0 + i1 * v.s1 + i2 * v.s2


cdef double half_ew_block(const EwCall *e, Py_ssize_t blk, double *buf) noexcept nogil:
    # ew_block for 16-bit operands: each run along the last axis by chunks of EW_CHUNK,
    # converted to float32 and handed to the float32 unit_run, whose per-element results
    # are rounded once to the 16-bit outputs (grad_a is float32)
    cdef float xb[EW_CHUNK]
    cdef float yb[EW_CHUNK]
    cdef float ab[EW_CHUNK]
    cdef float bb[EW_CHUNK]
    cdef float rb[EW_CHUNK]
    cdef float gb[EW_CHUNK]
    cdef float gab[EW_CHUNK]
    cdef int kind = e.half
    cdef Py_ssize_t f = blk * EW_BLOCK, f1 = min(f + EW_BLOCK, e.total_n)
    cdef Py_ssize_t r, i0, i1, i2, run, c0, cn, j, k
    cdef double acc = 0
    while f < f1:
        r = f // e.n2
        i2 = f - r * e.n2
        i0 = r // e.n1
        i1 = r - i0 * e.n1
        run = min(e.n2 - i2, f1 - f)
        c0 = 0
        while c0 < run:
            cn = min(run - c0, <Py_ssize_t>EW_CHUNK)
            j = i2 + c0
            fnl_half_load_f32(at16(e.x, i0, i1, j), cn, e.x.s2, kind, xb)
            fnl_half_load_f32(at16(e.y, i0, i1, j), cn, e.y.s2, kind, yb)
            if e.a.data != NULL:
                fnl_half_load_f32(at16(e.a, i0, i1, j), cn, e.a.s2, kind, ab)
            if e.b.data != NULL:
                fnl_half_load_f32(at16(e.b, i0, i1, j), cn, e.b.s2, kind, bb)
            acc = acc + unit_run(
                e.kind, e.flags, e.eps, e.sigma, cn, xb, yb,
                ab if e.a.data != NULL else NULL, bb if e.b.data != NULL else NULL,
                <const float *>e.ones, rb if e.rows.data != NULL else NULL,
                gb if e.grad.data != NULL else NULL, gab if e.grad_a.data != NULL else NULL,
                buf)
            if e.rows.data != NULL:
                fnl_half_store_f32(rb, cn, kind, <uint16_t *>at16(e.rows, i0, i1, j),
                                   e.rows.s2)
            if e.grad.data != NULL:
                fnl_half_store_f32(gb, cn, kind, <uint16_t *>at16(e.grad, i0, i1, j),
                                   e.grad.s2)
            if e.grad_a.data != NULL:
                for k in range(cn):
                    (<float *>e.grad_a.data)[i0 * e.grad_a.s0 + i1 * e.grad_a.s1
                                             + (j + k) * e.grad_a.s2] = gab[k]
            c0 = c0 + cn
        f = f + run
    return acc
