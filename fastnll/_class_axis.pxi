# The class-axis view and its two traversals, shared by the class-axis kernels (softmax family,
# class losses, entropy).
#
# Design
# (a) Every array arrives as a 3-D view (outer, C, inner), the class axis in the middle, with
#     arbitrary element strides (s0, s1, s2), already validated and typed by the Python wrapper
#     (ClassView in _layout.py).  Per-row results are (outer, inner) views; gradients and
#     softmax outputs have the input's (outer, C, inner) shape.
# (b) Two traversals.  Rows: when inner == 1 or the class stride is the smaller one, each row
#     of C classes is reduced on its own (row_lse / row_stats in _lse.pxd), rows spread over
#     threads in fixed blocks (row_index splits a flat row index).  Columns: when the inner
#     axis has the smaller stride (PyTorch's (N, C, d1, ...) layout, axis=0 of a C-ordered
#     matrix), blocks of columns are reduced together so that the vector lanes run along the
#     inner axis (col_lse below; col_blocks chooses their width, col_range names a block).  Few
#     classes (C <= SMALL_C) also take the column traversal, over the transposed view the wrapper
#     passes (is_swapped), so a short row costs a few vector lanes instead of a whole row setup.
# (c) Per-row results never depend on the thread count; sums over rows are taken per fixed
#     block in float64 and the block partials added in block order (sum_partials).

from fastnll._lse cimport (
    COL_BLOCK, COL_CHUNK, COL_WIDE, RowSums, SUMS_LSE, SUMS_WX, SUMS_WTX, finish_logs_many,
    rescale,
)
from libc.stdint cimport uint16_t
from fastnll._loops cimport (
    FNL_HALF_COLS_DIRECT, FNL_RESCALE_LISTED, FNL_SHORT_HI, fnl_colmax_rows,
    fnl_colsumexp_rows, fnl_colsumdiff,
    fnl_half_colmax_rows_f32, fnl_half_colsumexp_lazy_f32, fnl_half_colsumexp_rows_f32,
    fnl_half_load_chunk_f32, fnl_pack,
)

cdef enum:
    # Few classes: at most this many, rows are reduced in blocks of columns with the vector
    # lanes across rows (the column traversal over a transposed view), not one short row at a
    # time.
    SMALL_C = 32
    # Columns whose rising maxima col_lse_chunk lists at a time (its stack array)
    RISE_PIECE = 64


cdef inline bint is_swapped(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, Py_ssize_t s0,
                            Py_ssize_t s1) noexcept nogil:
    # The rows of a contiguous-rows view (inner == 1) are taken as columns when there are
    # few classes, or when the class stride is the larger one (axis=1 of a transposed
    # matrix), so that the vector lanes run along the contiguous axis.
    return (inner == 1 and outer > 1 and C > 1
            and (C <= SMALL_C or (s0 if s0 >= 0 else -s0) < (s1 if s1 >= 0 else -s1)))


def swap_classes(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, Py_ssize_t s0,
                 Py_ssize_t s1):
    """Whether the (outer, C, inner) view of a class-axis call is taken transposed, as
    (inner, C, outer) (ClassView in _layout.py asks here)."""
    return is_swapped(outer, C, inner, s0, s1)


cdef inline bint use_columns(Py_ssize_t inner, Py_ssize_t C, Py_ssize_t s1,
                             Py_ssize_t s2) noexcept nogil:
    # the column traversal (else the row traversal) for a view with these strides
    return inner > 1 and ((s2 if s2 >= 0 else -s2) < (s1 if s1 >= 0 else -s1)
                          or C <= SMALL_C)


# ------------------------------------------------------------------ column blocks ----

cdef struct ColBlocks:
    # how the column traversal splits the inner axis: blocks of `width` columns, COL_WIDE when
    # the columns are contiguous and COL_BLOCK when they are strided (and then packed; 16-bit
    # columns, converted into the packing buffer, are asked for with s_col 0)
    Py_ssize_t width
    Py_ssize_t per_outer    # blocks per outer index, ceil(inner / width)


cdef inline ColBlocks col_blocks(Py_ssize_t inner, Py_ssize_t s_col) noexcept nogil:
    cdef ColBlocks cb
    cb.width = COL_WIDE if s_col == 1 else COL_BLOCK
    cb.per_outer = ceil_div(inner, cb.width)
    return cb


cdef struct ColRange:
    # column block `it` of the column traversal: columns [k0, k0 + ncols) of outer index o
    Py_ssize_t o
    Py_ssize_t k0
    Py_ssize_t ncols


cdef inline ColRange col_range(Py_ssize_t it, ColBlocks cb, Py_ssize_t inner) noexcept nogil:
    # returned by value (prange-safe)
    cdef ColRange cr
    cr.o = it // cb.per_outer
    cr.k0 = (it - cr.o * cb.per_outer) * cb.width
    cr.ncols = inner - cr.k0
    if cr.ncols > cb.width:
        cr.ncols = cb.width
    return cr


cdef enum ColSlot:
    # A thread's workspace in the column traversal, as named slots (col_slot gives one's
    # address).  Each slot but the last holds COL_WIDE entries, one per column of the block,
    # with room for double; the `floating` slots use the first half of theirs for float.
    SLOT_SHIFT = 0          # floating: the shift of each column's sums
    SLOT_LOG_SUM = 1        # floating: log of the column's sum (lse = shift + log_sum)
    SLOT_REF = 2            # floating: the reference of x_sum (the first chunk's shift)
    SLOT_MAX = 3            # floating: the running maximum
    SLOT_CHUNK_MAX = 4      # floating: one chunk of class rows' maximum, ...
    SLOT_CHUNK_REST = 5     # ... its sums of exp below the maximum, ...
    SLOT_CHUNK_AT_MAX = 6   # ... at the maximum, ...
    SLOT_CHUNK_X_SUM = 7    # ... and of w (x - ref)
    SLOT_SCALE_P = 8        # floating: the gradient's coefficients (cols_block)
    SLOT_SCALE_W = 9
    SLOT_LOG_SUM_D = 10     # double: log of the sum, before its rounding to floating
    SLOT_X_SUM_D = 11       # double: sum of w (x - ref) over the classes (SUMS_WX)
    SLOT_REST_D = 12        # double: the running sums
    SLOT_AT_MAX_D = 13
    SLOT_PACKED = 14        # floating: the packed block, COL_CHUNK class rows of COL_BLOCK

cdef enum:
    SLOT_BYTES = COL_WIDE * 8                                              # one slot
    COL_WORK_BYTES = SLOT_PACKED * SLOT_BYTES + COL_CHUNK * COL_BLOCK * 8   # one thread's


cdef inline void *col_slot(void *ws, int tid, ColSlot slot) noexcept nogil:
    # slot `slot` of thread tid's column workspace (ws from col_workspace)
    return <char *>ws + tid * COL_WORK_BYTES + slot * SLOT_BYTES


cdef inline void *pack_buffer(void *ws, Py_ssize_t s_col, int tid) noexcept nogil:
    # Thread tid's packing buffer when the columns are strided (s_col != 1), else NULL
    # (cross-entropy's 16-bit columns take it directly: see cols_block).
    if s_col == 1:
        return NULL
    return col_slot(ws, tid, SLOT_PACKED)


cdef void *col_workspace(int nthreads) except NULL:
    # Per-thread workspaces for the column traversal, allocated with the GIL before the
    # parallel region (so a failure raises MemoryError) and indexed by threadid() inside it.
    cdef void *ws = malloc(<size_t>(nthreads if nthreads > 0 else 1) * COL_WORK_BYTES)
    if ws == NULL:
        raise MemoryError()
    return ws


cdef inline void col_lse_start(const floating *x, Py_ssize_t ncols, void *ws,
                               int tid) noexcept nogil:
    # the running state of col_lse for ncols columns, in thread tid's workspace (x only
    # names the type)
    cdef floating *shift = <floating *>col_slot(ws, tid, SLOT_SHIFT)
    cdef floating *maximum = <floating *>col_slot(ws, tid, SLOT_MAX)
    cdef double *x_sum = <double *>col_slot(ws, tid, SLOT_X_SUM_D)
    cdef double *rest = <double *>col_slot(ws, tid, SLOT_REST_D)
    cdef double *at_max = <double *>col_slot(ws, tid, SLOT_AT_MAX_D)
    cdef Py_ssize_t k
    for k in range(ncols):
        maximum[k] = -INFINITY
        shift[k] = 0
        rest[k] = 0
        at_max[k] = 0
        x_sum[k] = 0


cdef inline void col_lse_chunk(const floating *x, Py_ssize_t j0, Py_ssize_t nclass,
                               Py_ssize_t s_class, Py_ssize_t ncols, Py_ssize_t s_col,
                               RowSums sums, const floating *w, Py_ssize_t s_w, void *ws,
                               int tid, floating *packed, bint tail_ok, const uint16_t *h,
                               int kind) noexcept nogil:
    # One chunk of col_lse: the nclass (<= COL_CHUNK) classes j0, j0 + 1, ... whose rows
    # start at x, added to the running state (col_lse_start) in thread tid's workspace.
    # While this chunk is summed, the next chunk's pieces of these columns are asked for:
    # every caller reads chunk after chunk down the same columns.
    # h (float only; else NULL): the rows are 16-bit ones of the format kind, starting at h
    # (x is not read), converted into packed (not NULL, ncols <= COL_BLOCK) instead of
    # copied, or, with packed NULL (FNL_HALF_COLS_DIRECT, s_col == 1 and SUMS_LSE only), read
    # in place and converted in registers: the results are those of the float32 rows of the
    # same values.
    cdef floating *shift = <floating *>col_slot(ws, tid, SLOT_SHIFT)
    cdef floating *ref = <floating *>col_slot(ws, tid, SLOT_REF)
    cdef floating *maximum = <floating *>col_slot(ws, tid, SLOT_MAX)
    cdef floating *chunk_max = <floating *>col_slot(ws, tid, SLOT_CHUNK_MAX)
    cdef floating *chunk_rest = <floating *>col_slot(ws, tid, SLOT_CHUNK_REST)
    cdef floating *chunk_at_max = <floating *>col_slot(ws, tid, SLOT_CHUNK_AT_MAX)
    cdef floating *chunk_x_sum = <floating *>col_slot(ws, tid, SLOT_CHUNK_X_SUM)
    cdef double *x_sum = <double *>col_slot(ws, tid, SLOT_X_SUM_D)
    cdef double *rest = <double *>col_slot(ws, tid, SLOT_REST_D)
    cdef double *at_max = <double *>col_slot(ws, tid, SLOT_AT_MAX_D)
    cdef const floating *xc = NULL
    cdef Py_ssize_t s_xc_class = 0, s_xc_col = 0, j, k
    cdef bint direct = (floating is float and FNL_HALF_COLS_DIRECT and h != NULL
                        and packed == NULL and s_col == 1 and sums == SUMS_LSE)
    cdef bint lazy = direct and j0 > 0
    cdef bint wx = sums == SUMS_WX     # (chunk_x_sum and x_sum: SUMS_WX's alone)
    cdef Py_ssize_t rises[RISE_PIECE]
    cdef Py_ssize_t k0, k1, n_rises, i
    for k in range(ncols):
        chunk_max[k] = -INFINITY
        chunk_rest[k] = 0
        chunk_at_max[k] = 0
        lazy = lazy and isfinite(maximum[k])
    if wx:
        for k in range(ncols):
            chunk_x_sum[k] = 0
    if lazy:
        # 16-bit columns in place, every running maximum finite: one pass at the running
        # shifts (fnl_half_colsumexp_lazy_f32), kept unless a term lies more than
        # FNL_SHORT_HI above its shift (then the two passes below, after a rescale)
        fnl_half_colsumexp_lazy_f32(h, kind, nclass, s_class, ncols, <float *>shift,
                                    <float *>chunk_rest, <float *>chunk_max)
        for k in range(ncols):
            lazy = lazy and chunk_max[k] <= shift[k] + FNL_SHORT_HI
        if lazy:
            for k in range(ncols):
                if chunk_max[k] > maximum[k]:
                    maximum[k] = chunk_max[k]
                rest[k] += chunk_rest[k]
            return
        for k in range(ncols):
            chunk_max[k] = -INFINITY
            chunk_rest[k] = 0
    if direct:
        fnl_half_colmax_rows_f32(h, kind, nclass, s_class, ncols, <float *>chunk_max)
    elif floating is float and h != NULL:
        fnl_half_load_chunk_f32(h, nclass, s_class, ncols, s_col, kind, COL_CHUNK, COL_BLOCK,
                                packed)
        xc, s_xc_class, s_xc_col = packed, COL_BLOCK, 1
    elif packed != NULL:
        fnl_pack(x, nclass, s_class, ncols, s_col, packed, COL_BLOCK, tail_ok)
        xc, s_xc_class, s_xc_col = packed, COL_BLOCK, 1
    else:
        xc, s_xc_class, s_xc_col = x, s_class, s_col
    if not direct:
        fnl_colmax_rows(xc, nclass, s_xc_class, ncols, s_xc_col, chunk_max)
    if j0 == 0:     # the first chunk: nothing to rescale yet (a loop that vectorises)
        for k in range(ncols):
            maximum[k] = chunk_max[k]
            shift[k] = chunk_max[k] if isfinite(chunk_max[k]) else 0
            ref[k] = shift[k]
    else:
        # (FNL_RESCALE_LISTED) The columns whose maximum this chunk raises, listed first
        # (branch-free), then rescaled one by one: each column's maximum rises in few
        # chunks (about ln(chunks) of them for values in random order), while the loop of
        # `if ...: rescale(...)` over the columns is vectorised by the compiler with the
        # branch turned into masks, and takes rescale's exp for every column of every chunk
        # (a tenth of logsumexp(axis=0)'s time at x86-64-v3).  That loop is kept for pieces
        # where many maxima rise (columns sorted in rising order: 13% slower one by one),
        # and at x86-64-v4.  Either way the same rescales, with the same bits.
        k0 = 0
        while k0 < ncols:
            k1 = min(k0 + <Py_ssize_t>RISE_PIECE, ncols)
            n_rises = k1 - k0
            if FNL_RESCALE_LISTED:
                n_rises = 0
                for k in range(k0, k1):
                    rises[n_rises] = k
                    n_rises = n_rises + (chunk_max[k] > maximum[k])
            if 4 * n_rises > k1 - k0:
                for k in range(k0, k1):
                    if chunk_max[k] > maximum[k]:
                        rescale(chunk_max[k], &maximum[k], &shift[k], &rest[k], &at_max[k])
            else:
                for i in range(n_rises):
                    k = rises[i]
                    rescale(chunk_max[k], &maximum[k], &shift[k], &rest[k], &at_max[k])
            k0 = k1
    # chunk_at_max starts at 0 (fnl_colsumexp_rows counts the maximal terms)
    if direct:
        fnl_half_colsumexp_rows_f32(h, kind, nclass, s_class, ncols, <float *>maximum,
                                    <float *>shift, <float *>chunk_rest, <float *>chunk_at_max)
    else:
        fnl_colsumexp_rows(xc, nclass, s_xc_class, ncols, s_xc_col, maximum, shift, chunk_rest,
                           chunk_at_max)
    if wx:
        for j in range(nclass):
            fnl_colsumdiff(xc + j * s_xc_class, ncols, s_xc_col,
                           1 if w == NULL else w[(j0 + j) * s_w], ref, chunk_x_sum)
        for k in range(ncols):
            x_sum[k] += chunk_x_sum[k]
    for k in range(ncols):
        rest[k] += chunk_rest[k]
        at_max[k] += chunk_at_max[k]


cdef inline void col_lse_finish(const floating *x, Py_ssize_t ncols, void *ws,
                                int tid) noexcept nogil:
    # the logs of the sums of col_lse's state (x only names the type)
    cdef floating *log_sum = <floating *>col_slot(ws, tid, SLOT_LOG_SUM)
    cdef floating *maximum = <floating *>col_slot(ws, tid, SLOT_MAX)
    cdef double *log_sum_d = <double *>col_slot(ws, tid, SLOT_LOG_SUM_D)
    cdef double *rest = <double *>col_slot(ws, tid, SLOT_REST_D)
    cdef double *at_max = <double *>col_slot(ws, tid, SLOT_AT_MAX_D)
    cdef Py_ssize_t k
    finish_logs_many(maximum, rest, at_max, log_sum_d, ncols)
    for k in range(ncols):
        log_sum[k] = <floating>log_sum_d[k]


cdef inline bint col_lse(const floating *x, Py_ssize_t C, Py_ssize_t s_class, Py_ssize_t ncols,
                         Py_ssize_t s_col, RowSums sums, const floating *w, Py_ssize_t s_w,
                         void *ws, int tid, floating *packed, bint tail_ok, const uint16_t *h,
                         int kind) noexcept nogil:
    # Online log-sum-exp of ncols columns at once (each column a run of C classes, stride
    # s_class; the columns at stride s_col), in thread tid's workspace ws.  sums is SUMS_LSE
    # or SUMS_WX (with class weights w, stride s_w).
    # packed (or NULL): the SLOT_PACKED buffer; each chunk of classes is first packed there as
    # unit-stride rows (strided columns, e.g. few classes over contiguous rows, then cost one
    # strided read instead of one per pass); with C <= COL_CHUNK the whole block is left in
    # packed, class j at packed + j*COL_BLOCK, for the caller's output pass, and the return
    # value says so (True: the block is packed whole).  tail_ok: more columns follow these
    # ncols (the pack may then read a little past a row, see fnl_pack).  h, kind: 16-bit
    # rows instead of x (see col_lse_chunk; packed then not NULL).
    # Results, per column, in the slots SLOT_SHIFT, SLOT_LOG_SUM, SLOT_REF, SLOT_MAX,
    # SLOT_LOG_SUM_D and (SUMS_WX) SLOT_X_SUM_D.  The work is col_lse_start, col_lse_chunk
    # per chunk of COL_CHUNK classes, col_lse_finish: a caller may interleave the chunks of
    # several blocks (in workspaces of their own) and get the same results.
    cdef Py_ssize_t j0, nclass
    col_lse_start(x, ncols, ws, tid)
    j0 = 0
    while j0 < C:
        nclass = C - j0
        if nclass > COL_CHUNK:
            nclass = COL_CHUNK
        col_lse_chunk(x + j0 * s_class if h == NULL else x, j0, nclass, s_class, ncols, s_col,
                      sums, w, s_w, ws, tid, packed, tail_ok,
                      NULL if h == NULL else h + j0 * s_class, kind)
        j0 += nclass
    col_lse_finish(x, ncols, ws, tid)
    return packed != NULL and C <= COL_CHUNK


# ------------------------------------------------------------------- array views ----

cdef struct View3:
    # an (outer, C, inner) array: the address of its first element (NULL when it is empty or
    # not asked for) and its strides in elements; the shape is the caller's
    void *data
    Py_ssize_t s0
    Py_ssize_t s1
    Py_ssize_t s2


cdef struct View2:
    # an (outer, inner) array, shaped like the input without its class axis (targets, per-row
    # results)
    void *data
    Py_ssize_t s0
    Py_ssize_t s1


cdef inline View3 view3(const floating[:, :, :] v) noexcept nogil:
    return View3(first_element(v), v.strides[0] // <Py_ssize_t>sizeof(floating),
                 v.strides[1] // <Py_ssize_t>sizeof(floating),
                 v.strides[2] // <Py_ssize_t>sizeof(floating))


cdef inline View2 view2(const floating[:, :] v) noexcept nogil:
    cdef void *data = NULL
    if v.shape[0] > 0 and v.shape[1] > 0:
        data = <void *>&v[0, 0]
    return View2(data, v.strides[0] // <Py_ssize_t>sizeof(floating),
                 v.strides[1] // <Py_ssize_t>sizeof(floating))


cdef inline View2 target_view(const int64_t[:, :] t) noexcept nogil:
    cdef void *data = NULL
    if t.shape[0] > 0 and t.shape[1] > 0:
        data = <void *>&t[0, 0]
    return View2(data, t.strides[0] // 8, t.strides[1] // 8)
