# 16-bit input: float16 and bfloat16 (the codes FNL_F16, FNL_BF16 of _half.h), read in place.
#
# The Python layer hands the kernels the arrays' bits as uint16 views with the format's code.
# Each row (all C classes of one (outer, inner) position, at any stride) is converted to
# float32 in its thread's buffer, which stays in L2, and the float32 row code runs on it:
# the same arithmetic as for float32 data, with the same float64 sums, so a 16-bit input
# gives the float32 results of its values.  Outputs are computed in float32 and rounded
# once to the 16-bit format (softmax, the gradient); reductions come back as float32 or
# float64 and the Python layer rounds them.  Always the row traversal: the column traversal
# packs float32 blocks of its own, which a 16-bit input would need in another layout.
from libc.stdint cimport uint16_t
from fastnll._loops cimport fnl_f32_to_half, fnl_half_load_f32, fnl_half_store_f32, fnl_half_to_f32


cdef inline View3 view3_half(const uint16_t[:, :, :] v) noexcept nogil:
    cdef void *data = NULL
    if v.shape[0] > 0 and v.shape[1] > 0 and v.shape[2] > 0:
        data = <void *>&v[0, 0, 0]
    return View3(data, v.strides[0] // 2, v.strides[1] // 2, v.strides[2] // 2)


cdef float *half_rows(int nthreads, Py_ssize_t C, int per_thread) except? NULL:
    # per_thread float32 rows of C elements for each of nthreads threads (NULL when C is 0)
    cdef size_t n = <size_t>(nthreads if nthreads > 0 else 1) * per_thread * C
    cdef float *buf
    if n == 0:
        return NULL
    buf = <float *>malloc(n * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    return buf


@cython.boundscheck(False)
@cython.wraparound(False)
def half_load(const uint16_t[:] h not None, int kind, float[:] out not None):
    """out = the float32 values of the 16-bit floats h (bits of the format `kind`)."""
    if h.shape[0]:
        fnl_half_load_f32(&h[0], h.shape[0], h.strides[0] // 2, kind, &out[0])


@cython.boundscheck(False)
@cython.wraparound(False)
def half_store(const float[:] v not None, int kind, uint16_t[:] out not None):
    """out = v rounded to the 16-bit format `kind` (to nearest, ties to even)."""
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
    cdef float *buf
    cdef float *row
    cdef RowIndex ri
    cdef RowStats stats
    if n == 0:
        return
    o0 = &out[0, 0]
    if C == 0:
        for r in range(n):
            ri = row_index(r, inner)
            o0[ri.o * os0 + ri.k * os1] = -INFINITY
        return
    nthreads = nthreads if nthreads > 1 and n > 1 else 1
    buf = half_rows(nthreads, C, 1)
    with nogil:
        for r in prange(n, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            row = buf + threadid() * C
            fnl_half_load_f32(x0 + ri.o * xv.s0 + ri.k * xv.s2, C, xv.s1, kind, row)
            stats = row_lse(row, C, 1, SUMS_LSE, NULL, 0, NULL, 0, 0, 0)
            o0[ri.o * os0 + ri.k * os1] = <float>(stats.shift + stats.log_sum)
    free(buf)


@cython.boundscheck(False)
@cython.wraparound(False)
def half_softmax(const uint16_t[:, :, :] x not None, int kind, uint16_t[:, :, :] out not None,
                 bint take_log, int nthreads):
    """out = softmax(x) or log_softmax(x) along the middle axis, 16-bit in and out (out may
    be x itself: each row is read whole before it is written)."""
    cdef View3 xv = view3_half(x), ov = view3_half(out)
    cdef const uint16_t *x0 = <const uint16_t *>xv.data
    cdef uint16_t *y0 = <uint16_t *>ov.data
    cdef Py_ssize_t C = x.shape[1], inner = x.shape[2], n = x.shape[0] * x.shape[2], r
    cdef float *buf
    cdef float *row
    cdef RowIndex ri
    if x0 == NULL:
        return
    nthreads = nthreads if nthreads > 1 and n > 1 else 1
    buf = half_rows(nthreads, C, 2)
    with nogil:
        for r in prange(n, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            row = buf + threadid() * 2 * C
            fnl_half_load_f32(x0 + ri.o * xv.s0 + ri.k * xv.s2, C, xv.s1, kind, row)
            softmax_row(row, row + C, C, 1, 1, take_log, False, NULL)
            fnl_half_store_f32(row + C, C, kind, y0 + ri.o * ov.s0 + ri.k * ov.s2, ov.s1)
    free(buf)


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
    if not is_nll:
        args.half_rows = half_rows(nthreads, x.shape[1], 2)
    try:
        run_class_loss(<const float *>args.x.data, &args, reduction, nthreads, &res)
    finally:
        free(args.half_rows)
    if res.bad_row >= 0:
        return res.bad_row, res.bad_value, 0.0, 0.0
    return -1, 0, res.loss_sum, res.weight_sum


cdef BlockSum half_block(const ClassArgs *args, Py_ssize_t blk, int tid) noexcept nogil:
    # class_block for 16-bit x: block blk of ROW_BLOCK rows, by thread tid
    cdef Py_ssize_t C = args.C, inner = args.inner, r, c
    cdef Py_ssize_t r0 = blk * ROW_BLOCK, r1 = min(r0 + ROW_BLOCK, args.outer * inner)
    cdef const uint16_t *x0 = <const uint16_t *>args.x.data
    cdef uint16_t *g0 = <uint16_t *>args.grad.data
    cdef const int64_t *targets = <const int64_t *>args.targets.data
    cdef float *rows = <float *>args.rows.data
    cdef const float *w = <const float *>args.w
    cdef float *xb = NULL
    cdef ClassArgs one = args[0]
    cdef RowIndex ri
    cdef BlockSum block, bs
    cdef int64_t t
    cdef double w_t, loss
    cdef uint16_t *g
    block.loss_sum = 0
    block.weight_sum = 0
    block.bad_row = -1
    block.bad_value = 0
    # rows_block on one row at a time: the float32 row xb (and its gradient, xb + C)
    if args.half_rows != NULL:
        xb = args.half_rows + tid * 2 * C
    one.outer = 1
    one.inner = 1
    one.half = 0
    one.x = View3(xb, C, 1, 1)
    one.grad = View3(NULL, C, 1, 1)
    if args.want_grad and xb != NULL:
        one.grad.data = <void *>(xb + C)
    for r in range(r0, r1):
        ri = row_index(r, inner)
        t = targets[ri.o * args.targets.s0 + ri.k * args.targets.s1]
        g = NULL if g0 == NULL else g0 + ri.o * args.grad.s0 + ri.k * args.grad.s2
        if args.is_nll:
            # a gather: only the target's entry is read (and written, into a zeroed row)
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
            continue
        one.targets = View2(<void *>(targets + ri.o * args.targets.s0
                                     + ri.k * args.targets.s1), 0, 0)
        if rows != NULL:
            one.rows = View2(<void *>(rows + ri.o * args.rows.s0 + ri.k * args.rows.s1), 0, 0)
        if t != args.ignore_index or args.want_grad:
            fnl_half_load_f32(x0 + ri.o * args.x.s0 + ri.k * args.x.s2, C, args.x.s1,
                              args.half, xb)
        bs = rows_block(xb, one, 0)
        if bs.bad_row >= 0:
            block.bad_row = r
            block.bad_value = bs.bad_value
            return block
        block.loss_sum = block.loss_sum + bs.loss_sum
        block.weight_sum = block.weight_sum + bs.weight_sum
        if g != NULL:
            fnl_half_store_f32(xb + C, C, args.half, g, args.grad.s1)
    return block
