# The softmax family's kernels: logsumexp (plain and SciPy's weighted form), softmax and
# log_softmax, over the class-axis view of _class_axis.pxi.
from fastnll._lse cimport ROW_CHUNK, RowStats, row_lse
from libc.stdint cimport uint16_t
from fastnll._loops cimport (
    FNL_HALF_COLS_DIRECT, fnl_half_load_chunk_f32,
    fnl_colsoftmax, fnl_exp_f64, fnl_expsum_unit, fnl_max, fnl_prefetch_after,
    fnl_scale_stream, fnl_scale_unit, fnl_softmax, fnl_stream_fence, fnl_sub2_stream, fnl_unpack,
)

# The log-sum-exp kernels write their results as the input's type or as float64 (whatever the
# output array is): float64 results of float32 rows are the partial statistics that
# fastnll.dask combines across chunks without a second rounding.
ctypedef fused result_t:
    float
    double


@cython.boundscheck(False)
@cython.wraparound(False)
def logsumexp(const floating[:, :, :] x not None, result_t[:, :] out not None, int nthreads):
    """out[o, k] = log sum_c exp(x[o, c, k])."""
    cdef Py_ssize_t isz = sizeof(result_t)
    cdef View3 xv = view3(x)
    cdef result_t *o0 = &out[0, 0] if out.shape[0] > 0 and out.shape[1] > 0 else NULL
    lse_core(<const floating *>xv.data, x.shape[0], x.shape[1], x.shape[2], xv, o0,
             out.strides[0] // isz, out.strides[1] // isz, nthreads)


cdef int lse_core(const floating *x0, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                  View3 xv, result_t *out, Py_ssize_t os0, Py_ssize_t os1,
                  int nthreads) except -1:
    # logsumexp on raw views (x0 is xv.data, typed; out[o * os0 + k * os1]): the def above and
    # the compiled calls (_compiled_calls.pxi) both run it
    cdef Py_ssize_t s0 = xv.s0, s1 = xv.s1, s2 = xv.s2
    cdef Py_ssize_t r, k, it, n
    cdef ColBlocks blocks
    cdef RowIndex ri
    cdef RowStats stats
    cdef void *ws = NULL
    if outer == 0 or inner == 0:
        return 0
    if C == 0:
        for r in range(outer):
            for k in range(inner):
                out[r * os0 + k * os1] = -INFINITY
        return 0
    if not use_columns(inner, C, s1, s2):
        n = outer * inner
        with nogil:
            if nthreads <= 1 or n == 1:      # no parallel region (a team of one costs time)
                for r in range(n):
                    ri = row_index(r, inner)
                    stats = row_lse(x0 + ri.o * s0 + ri.k * s2, C, s1, SUMS_LSE, NULL, 0, NULL,
                                    0, 0, 0)
                    out[ri.o * os0 + ri.k * os1] = <result_t>(stats.shift + stats.log_sum)
            else:
                for r in prange(n, schedule='static', num_threads=nthreads):
                    ri = row_index(r, inner)
                    stats = row_lse(x0 + ri.o * s0 + ri.k * s2, C, s1, SUMS_LSE, NULL, 0, NULL,
                                    0, 0, 0)
                    out[ri.o * os0 + ri.k * os1] = <result_t>(stats.shift + stats.log_sum)
        return 0
    blocks = col_blocks(inner, s2)
    if s2 == 1 and C > COL_CHUNK and blocks.per_outer > 1:
        logsumexp_strips(x0, <const uint16_t *>NULL, 0, out, os0, os1, outer, C, inner, s0,
                         s1, 1, nthreads)
        return 0
    n = outer * blocks.per_outer
    ws = col_workspace(nthreads if nthreads > 1 and n > 1 else 1)
    with nogil:
        if nthreads <= 1 or n == 1:
            for it in range(n):
                lse_cols(x0, out, C, inner, s0, s1, s2, os0, os1, blocks, ws, it, 0)
        else:
            for it in prange(n, schedule='static', num_threads=nthreads):
                lse_cols(x0, out, C, inner, s0, s1, s2, os0, os1, blocks, ws, it, threadid())
    free(ws)
    return 0


cdef inline void lse_cols(const floating *x0, result_t *out, Py_ssize_t C, Py_ssize_t inner,
                          Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, Py_ssize_t os0,
                          Py_ssize_t os1, ColBlocks blocks, void *ws, Py_ssize_t it,
                          int tid) noexcept nogil:
    # lse_core's column path, column block it, in thread tid's workspace
    cdef ColRange cr = col_range(it, blocks, inner)
    cdef floating *shift
    cdef double *log_sum_d
    cdef Py_ssize_t k
    col_lse(x0 + cr.o * s0 + cr.k0 * s2, C, s1, cr.ncols, s2, SUMS_LSE, NULL, 0, ws, tid,
            <floating *>pack_buffer(ws, s2, tid), cr.k0 + cr.ncols < inner, NULL, 0)
    shift = <floating *>col_slot(ws, tid, SLOT_SHIFT)
    log_sum_d = <double *>col_slot(ws, tid, SLOT_LOG_SUM_D)
    for k in range(cr.ncols):
        out[cr.o * os0 + (cr.k0 + k) * os1] = <result_t>(shift[k] + log_sum_d[k])


cdef enum:
    # Column blocks per strip in logsumexp_strips: 8 blocks of COL_WIDE contiguous columns
    # are 8 KiB of each float32 row, and their running state (8 workspaces) stays in L2.
    STRIP_BLOCKS = 8


# The 16-bit log-sum-exps are taken again with float32's exp where their result is closer to 0
# than this (half_logsumexp's rows, logsumexp_strips's column blocks): there the short exp's
# absolute error (up to 3.2e-6) could pass 1 unit of float16 (2^-11 of the result) or bfloat16
# (2^-8)
cdef double LSE_NEAR_ZERO = 0.0078125


cdef inline float *thread_buf(float *buf, int tid) noexcept nogil:
    # thread tid's COL_CHUNK x COL_WIDE floats of logsumexp_strips's buffer (NULL: none)
    return buf + tid * COL_CHUNK * COL_WIDE if buf != NULL else NULL


cdef inline void strip_chunk(const floating *x0, const uint16_t *h0, int kind, bint direct,
                             float *buf, Py_ssize_t at, Py_ssize_t j0, Py_ssize_t nclass,
                             Py_ssize_t ncols, Py_ssize_t s1, Py_ssize_t s2, void *ws,
                             int wid) noexcept nogil:
    # One chunk of logsumexp_strips: the nclass classes j0, ... of the column block whose
    # class row j0 starts at value `at` of the input, added to workspace wid's state.  Float
    # input (h0 NULL): read in place (s2 == 1).  16-bit input: read in place and converted in
    # registers (direct: FNL_HALF_COLS_DIRECT, s2 == 1; the sums then take the short exp),
    # else converted into buf, the thread's COL_CHUNK x COL_WIDE floats (in L1), for the
    # float32 column loops.
    cdef const floating *chunk = NULL
    cdef Py_ssize_t s_chunk = s1
    if h0 == NULL:
        chunk = x0 + at
    elif not direct:
        if floating is float:
            fnl_half_load_chunk_f32(h0 + at, nclass, s1, ncols, s2, kind, COL_CHUNK, COL_WIDE,
                                    buf)
            chunk, s_chunk = buf, COL_WIDE
    col_lse_chunk(chunk, j0, nclass, s_chunk, ncols, 1, SUMS_LSE, NULL, 0, ws, wid, NULL, False,
                  h0 + at if direct else NULL, kind)


cdef int logsumexp_strips(const floating *x0, const uint16_t *h0, int kind, result_t *out,
                          Py_ssize_t os0, Py_ssize_t os1, Py_ssize_t outer, Py_ssize_t C,
                          Py_ssize_t inner, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2,
                          int nthreads) except -1:
    # The column traversal of logsumexp by strips of STRIP_BLOCKS column blocks of COL_WIDE
    # columns: each chunk of COL_CHUNK classes is taken for every block of the strip before
    # the next chunk, so that each class row is read in pieces of a strip, front to back,
    # instead of one block's piece a whole column block apart (logsumexp(axis=0) of
    # (4096, 32000) float32 reads rows 128 KiB apart).  Each block keeps its own workspace
    # (thread tid's blocks are tid * STRIP_BLOCKS + b) and sees the same chunks in the same
    # order as col_lse: the same results.
    # Float input (h0 NULL): contiguous columns (s2 == 1), read in place.  16-bit input (h0,
    # format kind; x0 NULL names float): any strides, read as strip_chunk says.  Unit-stride
    # columns at x86-64-v4 are read in place, with the short exp (as the 16-bit rows are), and
    # a block with a result closer to 0 than LSE_NEAR_ZERO is summed again through the float32
    # copy; the others, and those blocks, give the float32 results of the same values, rounded
    # once.
    cdef ColBlocks blocks = col_blocks(inner, 1)
    # strips narrower than STRIP_BLOCKS when there are few blocks, so that every thread gets
    # one (the results do not depend on the strip width)
    cdef Py_ssize_t width = min(<Py_ssize_t>STRIP_BLOCKS,
                                max(1, ceil_div(outer * blocks.per_outer, nthreads)))
    cdef Py_ssize_t nstrip = ceil_div(blocks.per_outer, width)
    cdef Py_ssize_t it, o, b0, nb, b, j0, nclass, k
    cdef int tid, wid
    cdef bint redo
    cdef ColRange cr
    cdef floating *shift
    cdef double *log_sum_d
    cdef float *buf = NULL
    cdef bint direct = h0 != NULL and FNL_HALF_COLS_DIRECT and s2 == 1
    cdef void *ws = col_workspace(nthreads * STRIP_BLOCKS)
    if h0 != NULL:
        buf = <float *>malloc(<size_t>nthreads * COL_CHUNK * COL_WIDE * sizeof(float))
        if buf == NULL:
            free(ws)
            raise MemoryError()
    with nogil:
        for it in prange(outer * nstrip, schedule='static', num_threads=nthreads):
            tid = threadid()
            o = it // nstrip
            b0 = (it - o * nstrip) * width
            nb = blocks.per_outer - b0
            if nb > width:
                nb = width
            for b in range(nb):
                cr = col_range(o * blocks.per_outer + b0 + b, blocks, inner)
                col_lse_start(x0, cr.ncols, ws, tid * STRIP_BLOCKS + <int>b)
            j0 = 0
            while j0 < C:
                nclass = C - j0
                if nclass > COL_CHUNK:
                    nclass = COL_CHUNK
                for b in range(nb):
                    cr = col_range(o * blocks.per_outer + b0 + b, blocks, inner)
                    strip_chunk(x0, h0, kind, direct, thread_buf(buf, tid),
                                o * s0 + j0 * s1 + cr.k0 * s2, j0, nclass, cr.ncols, s1, s2,
                                ws, tid * STRIP_BLOCKS + <int>b)
                j0 = j0 + nclass
            for b in range(nb):
                cr = col_range(o * blocks.per_outer + b0 + b, blocks, inner)
                wid = tid * STRIP_BLOCKS + <int>b
                col_lse_finish(x0, cr.ncols, ws, wid)
                shift = <floating *>col_slot(ws, wid, SLOT_SHIFT)
                log_sum_d = <double *>col_slot(ws, wid, SLOT_LOG_SUM_D)
                redo = False
                if direct:
                    for k in range(cr.ncols):
                        redo = redo or fabs(shift[k] + log_sum_d[k]) < LSE_NEAR_ZERO
                if redo:    # with float32's exp (as half_logsumexp does a row: see there)
                    col_lse_start(x0, cr.ncols, ws, wid)
                    j0 = 0
                    while j0 < C:
                        nclass = C - j0
                        if nclass > COL_CHUNK:
                            nclass = COL_CHUNK
                        strip_chunk(x0, h0, kind, False, thread_buf(buf, tid),
                                    o * s0 + j0 * s1 + cr.k0 * s2, j0, nclass, cr.ncols, s1, s2,
                                    ws, wid)
                        j0 = j0 + nclass
                    col_lse_finish(x0, cr.ncols, ws, wid)
                for k in range(cr.ncols):
                    out[o * os0 + (cr.k0 + k) * os1] = <result_t>(shift[k] + log_sum_d[k])
    free(buf)
    free(ws)
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def logsumexp_b(const floating[:, :, :] x not None, const floating[:, :, :] b not None,
                result_t[:, :] out not None, result_t[:, :] sign not None, int nthreads):
    """SciPy's weighted logsumexp: out = log|sum_c b exp(x)|, sign its sign.

    Terms with b == 0 are dropped even where x is inf or nan.  Scalar two-pass code: this path
    is for correctness, not speed."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t r, o, k, c
    cdef RowIndex ri
    cdef double maximum, m, s, v, bv, res, sg, direct
    if outer == 0 or inner == 0:
        return
    with nogil:
        for r in prange(outer * inner, schedule='static', num_threads=nthreads):
            ri = row_index(r, inner)
            o = ri.o
            k = ri.k
            maximum = -INFINITY
            for c in range(C):
                if b[o, c, k] != 0 and x[o, c, k] > maximum:
                    maximum = x[o, c, k]
            m = 0
            s = 0
            direct = 0
            for c in range(C):
                bv = b[o, c, k]
                if bv == 0:
                    continue
                v = x[o, c, k]
                if isfinite(maximum):
                    if v == maximum:
                        m = m + bv
                    else:
                        s = s + bv * fnl_exp_f64(v - maximum)
                direct = direct + bv * fnl_exp_f64(v)
            res = NAN
            sg = NAN
            if isfinite(maximum):
                if s != 0:
                    s = s / m
                sg = (1.0 if s + 1 > 0 else (-1.0 if s + 1 < 0 else 0.0)) * \
                     (1.0 if m > 0 else (-1.0 if m < 0 else 0.0))
                if s < -1:
                    s = -s - 2
                res = log1p(s) + log(fabs(m)) + maximum
            if not isfinite(res):
                # SciPy hands non-finite results to the direct formula.
                sg = 1.0 if direct > 0 else (-1.0 if direct < 0 else (0.0 if direct == 0 else NAN))
                res = log(fabs(direct))
            out[o, k] = <result_t>res
            sign[o, k] = <result_t>sg


cdef inline bint row_softmax_unit(const floating *x, Py_ssize_t n, floating *out,
                                  floating *scratch) noexcept nogil:
    # softmax of a unit-stride row into a unit-stride out (which may be x) with one exp per
    # element, PyTorch's exp(x - M) / S: the maximum M in one read of the row from memory
    # (chunks prefetched as row_stats does), then exp(x - M) written and summed per chunk in
    # float64 (the row is in L2 by now), then scaled by 1/S.  The exps go to out, scaled in
    # place; or, with a scratch row (n elements, the thread's own), to scratch, scaled into
    # out with non-temporal stores (an output larger than the last-level cache: see
    # softmax's `stream`).  Returns False, having written nothing, when M is not finite
    # (rows that are empty, all -inf or contain +inf take the general path).
    cdef Py_ssize_t c0 = 0, cn
    cdef floating maximum = -INFINITY, chunk_max
    cdef floating *e = out if scratch == NULL else scratch
    cdef double total = 0
    while c0 < n:
        cn = n - c0 if n - c0 < ROW_CHUNK else ROW_CHUNK
        fnl_prefetch_after(x + c0 + cn, cn * sizeof(floating))
        chunk_max = fnl_max(x + c0, cn, 1)
        if chunk_max > maximum:
            maximum = chunk_max
        c0 += cn
    if not isfinite(maximum):
        return False
    c0 = 0
    while c0 < n:
        cn = n - c0 if n - c0 < ROW_CHUNK else ROW_CHUNK
        total += fnl_expsum_unit(x + c0, cn, maximum, e + c0)
        c0 += cn
    if scratch == NULL:
        fnl_scale_unit(out, n, <floating>(1.0 / total))
    else:
        fnl_scale_stream(scratch, n, <floating>(1.0 / total), out)
        fnl_stream_fence()
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
def softmax(const floating[:, :, :] x not None, floating[:, :, :] out not None, bint take_log,
            int nthreads, bint stream=False):
    """out = softmax(x) or log_softmax(x) along the middle axis.

    stream: write unit-stride rows with non-temporal stores (for a caller's output larger
    than the last-level cache, already in memory: it is then not read into the cache before
    being overwritten; a fresh output is better written through the cache, where the
    kernel's zeroed pages already are)."""
    cdef View3 xv = view3(x), ov = view3(out)
    softmax_core(<const floating *>xv.data, <floating *>ov.data, x.shape[0], x.shape[1],
                 x.shape[2], xv, ov, take_log, nthreads, stream)


cdef inline void softmax_row(const floating *x, floating *y, Py_ssize_t C, Py_ssize_t s1,
                             Py_ssize_t os1, bint take_log, bint stream,
                             floating *scratch) noexcept nogil:
    # softmax_core's row path, one row (scratch: the thread's row of scratch space, or NULL)
    cdef RowStats stats
    cdef floating log_sum
    if (not take_log and s1 == 1 and os1 == 1
            and row_softmax_unit(x, C, y, scratch)):
        return
    stats = row_lse(x, C, s1, SUMS_LSE, NULL, 0, NULL, 0, 0, 0)
    log_sum = <floating>stats.log_sum
    if not take_log and stats.maximum == INFINITY:
        log_sum = NAN   # SciPy: exp(inf - inf) poisons the whole row
    if take_log and stream:
        fnl_sub2_stream(x, C, <floating>stats.shift, log_sum, y)
        fnl_stream_fence()
    else:
        fnl_softmax(x, C, s1, <floating>stats.shift, log_sum, y, os1, take_log)


cdef inline void softmax_cols(const floating *x0, floating *y0, Py_ssize_t C, Py_ssize_t inner,
                              Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, Py_ssize_t os0,
                              Py_ssize_t os1, Py_ssize_t os2, ColBlocks blocks, void *ws,
                              bint take_log, Py_ssize_t it, int tid) noexcept nogil:
    # softmax_core's column path, column block it, in thread tid's workspace
    cdef ColRange cr = col_range(it, blocks, inner)
    cdef floating *packed = <floating *>pack_buffer(ws, s2, tid)
    cdef bint packed_whole = col_lse(x0 + cr.o * s0 + cr.k0 * s2, C, s1, cr.ncols, s2, SUMS_LSE,
                                     NULL, 0, ws, tid, packed, cr.k0 + cr.ncols < inner,
                                     NULL, 0)
    cdef floating *shift = <floating *>col_slot(ws, tid, SLOT_SHIFT)
    cdef floating *log_sums = <floating *>col_slot(ws, tid, SLOT_LOG_SUM)
    cdef floating *maximum = <floating *>col_slot(ws, tid, SLOT_MAX)
    cdef Py_ssize_t k, j
    if not take_log:
        for k in range(cr.ncols):
            if maximum[k] == INFINITY:
                log_sums[k] = NAN
    if packed_whole:    # the softmax in place in the packed block, then scattered
        for j in range(C):
            fnl_colsoftmax(packed + j * COL_BLOCK, cr.ncols, 1, shift, log_sums,
                           packed + j * COL_BLOCK, 1, take_log)
        fnl_unpack(packed, COL_BLOCK, C, cr.ncols, y0 + cr.o * os0 + cr.k0 * os2, os1, os2)
    else:
        for j in range(C):
            fnl_colsoftmax(x0 + cr.o * s0 + j * s1 + cr.k0 * s2, cr.ncols, s2, shift,
                           log_sums, y0 + cr.o * os0 + j * os1 + cr.k0 * os2, os2, take_log)


cdef int softmax_core(const floating *x0, floating *y0, Py_ssize_t outer, Py_ssize_t C,
                      Py_ssize_t inner, View3 xv, View3 ov, bint take_log, int nthreads,
                      bint stream) except -1:
    # softmax on raw views (x0 and y0 are xv.data and ov.data, typed): the def above and the
    # compiled calls (_compiled_calls.pxi) both run it.  With one thread (or one row or
    # block) no parallel region: a team of one costs a few hundred ns.
    cdef Py_ssize_t s0 = xv.s0, s1 = xv.s1, s2 = xv.s2
    cdef Py_ssize_t os0 = ov.s0, os1 = ov.s1, os2 = ov.s2
    cdef Py_ssize_t r, it, n
    cdef ColBlocks blocks
    cdef RowIndex ri
    cdef void *ws = NULL
    cdef floating *scratch = NULL
    if x0 == NULL:
        return 0
    if not use_columns(inner, C, s1, s2):
        stream = stream and s1 == 1 and os1 == 1
        if stream and not take_log:
            scratch = <floating *>malloc(<size_t>(nthreads if nthreads > 0 else 1) * C
                                         * sizeof(floating))
            if scratch == NULL:
                raise MemoryError()
        n = outer * inner
        with nogil:
            if nthreads <= 1 or n == 1:
                for r in range(n):
                    ri = row_index(r, inner)
                    softmax_row(x0 + ri.o * s0 + ri.k * s2, y0 + ri.o * os0 + ri.k * os2, C,
                                s1, os1, take_log, stream, scratch)
            else:
                for r in prange(n, schedule='static', num_threads=nthreads):
                    ri = row_index(r, inner)
                    softmax_row(x0 + ri.o * s0 + ri.k * s2, y0 + ri.o * os0 + ri.k * os2, C,
                                s1, os1, take_log, stream,
                                NULL if scratch == NULL else scratch + threadid() * C)
        free(scratch)
        return 0
    blocks = col_blocks(inner, s2)
    n = outer * blocks.per_outer
    ws = col_workspace(nthreads if nthreads > 1 and n > 1 else 1)
    with nogil:
        if nthreads <= 1 or n == 1:
            for it in range(n):
                softmax_cols(x0, y0, C, inner, s0, s1, s2, os0, os1, os2, blocks, ws, take_log,
                             it, 0)
        else:
            for it in prange(n, schedule='static', num_threads=nthreads):
                softmax_cols(x0, y0, C, inner, s0, s1, s2, os0, os1, os2, blocks, ws, take_log,
                             it, threadid())
    free(ws)
    return 0
