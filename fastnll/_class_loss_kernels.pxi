# The class-target losses' kernels: nll_loss and cross_entropy with class-index targets
# (class_loss), and cross_entropy with class-probability targets (prob_loss), forward and
# fused backward, over the class-axis view of _class_axis.pxi.
#
# Design
# (a) class_loss runs in fixed blocks (ROW_BLOCK rows, or one column block), each a function
#     over one ClassArgs struct of raw pointers and strides (class_args fills it, on this
#     file's entry path and on the compiled calls', _compiled_calls.pxi): nll_block (a
#     gather), rows_block and cols_block (cross-entropy in the two traversals).  With one
#     thread, or one block, the blocks run without an OpenMP region, in the same order, so
#     the sums are the same.
# (b) Targets are checked on the fly, each block keeping its first invalid one; only the
#     gradient of the mean needs its scale first and takes a serial pre-pass over the targets.
# (c) The loss forward allocates nothing of the input's size.  The fused forward+backward
#     reads a row twice (once for its log-sum-exp, once to write the gradient) and writes it
#     once.
# (d) Per class-target row, with p = softmax(x), w the class weights (1 without weights), W
#     their sum, t the target, eps the label smoothing and sigma the reduction scale:
#       loss = (1-eps) w_t (lse - x_t) + eps/C (W lse - sum_j w_j x_j)   (PyTorch's formula)
#       grad = sigma [ ((1-eps) w_t + eps W / C) p - eps/C w - (1-eps) w_t e_t ]
#     For probability targets t (smoothed to t' = (1-eps) t + eps/C):
#       loss = sum_j w_j t'_j (lse - x_j),  grad = sigma [ (sum_j w_j t'_j) p - w t' ].
#     Sums of x are taken relative to a reference inside the row (the first chunk's shift), so
#     float32 rows with large offsets do not lose the answer to cancellation.
# (e) Where gcc forms fused multiply-adds, and which operand of a nan sum it keeps, depends on
#     the shape of the surrounding code (at x86-64-v3 and v4): moving a loop into a helper or
#     reading strides from a struct inside prange can change the last bit of a loss.  Check a
#     refactor of these kernels with .ci/corpus.py (bit for bit against the previous build).
from libc.stdint cimport uint16_t
from libc.string cimport memset

from fastnll._lse cimport RowStats, finish_logs, row_stats, row_stats_from, row_lse
from fastnll._loops cimport (
    fnl_colgrad, fnl_grad, fnl_gradprob, fnl_nll_rows, fnl_nll_rows_plain, fnl_unpack,
)


cdef struct TargetCheck:
    Py_ssize_t bad        # flat index of the first invalid target, -1 if none
    int64_t bad_value
    double weight_sum     # sum of w[t] over the kept targets (their count without weights)


cdef TargetCheck check_targets(const int64_t *targets, Py_ssize_t outer, Py_ssize_t inner,
                               Py_ssize_t s_t0, Py_ssize_t s_t1, Py_ssize_t C,
                               int64_t ignore_index, const floating *w,
                               Py_ssize_t s_w) noexcept nogil:
    # One serial pass over the (outer, inner) targets: the first one outside [0, C) that is
    # not ignore_index, and the weight total of the kept ones (w NULL: no weights), summed in
    # a fixed order.
    cdef Py_ssize_t i, j
    cdef int64_t t
    cdef TargetCheck r
    r.bad = -1
    r.bad_value = 0
    r.weight_sum = 0
    for i in range(outer):
        for j in range(inner):
            t = targets[i * s_t0 + j * s_t1]
            if t == ignore_index:
                continue
            if t < 0 or t >= C:
                r.bad = i * inner + j
                r.bad_value = t
                return r
            r.weight_sum += 1.0 if w == NULL else w[t * s_w]
    return r


cdef struct BlockSum:
    double loss_sum       # sum of the block's losses
    double weight_sum     # sum of its kept targets' weights
    int64_t bad_row       # its first invalid target's row (-1: none) ...
    int64_t bad_value     # ... and value


cdef struct ClassArgs:
    # One class_loss call as raw pointers and element strides, for the block functions below.
    # The floating arrays are void pointers (a struct cannot be fused); each block function
    # casts them to the type of its x0.  Filled by class_args.
    Py_ssize_t outer, C, inner
    View3 x                    # logits (cross-entropy) or log-probabilities (NLL)
    View2 targets              # int64 class indices
    const void *w              # class weights (stride s_w), NULL without
    Py_ssize_t s_w
    int64_t ignore_index
    double eps                 # label smoothing
    bint is_nll
    View2 rows                 # per-row losses (reduction NONE); data NULL when not asked
    View3 grad                 # the gradient; data NULL when not asked (or empty)
    bint want_grad
    double sum_scale           # the gradient's scale for SUM and NONE (1 from class_args)
    # FNL_F16 or FNL_BF16 (0 from class_args): x and grad hold 16-bit floats, rows float32
    # (half_class_loss)
    int half
    # set by run_class_loss
    RowSums row_sums           # SUMS_WX with label smoothing (the rows also sum w (x - ref))
    bint plain                 # no weights, smoothing, gradient or per-row output
    bint columns               # the column traversal
    ColBlocks blocks              # the column blocks
    double W                   # the summed class weights
    double sigma               # the gradient's scale
    void *ws                   # the column traversal's per-thread workspace


cdef inline ClassArgs class_args(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, View3 x,
                                 View2 targets, const void *w, Py_ssize_t s_w,
                                 int64_t ignore_index, double eps, bint is_nll, View2 rows,
                                 View3 grad, bint want_grad) noexcept nogil:
    # the arguments of one call; run_class_loss sets the rest
    cdef ClassArgs args
    args.outer, args.C, args.inner = outer, C, inner
    args.x = x
    args.targets = targets
    args.w = w
    args.s_w = s_w
    args.ignore_index = ignore_index
    args.eps = eps
    args.is_nll = is_nll
    args.rows = rows
    args.grad = grad
    args.want_grad = want_grad
    args.sum_scale = 1.0
    args.half = 0
    return args


cdef struct RowRun:
    # rows [r, r + n) of the (outer, inner) grid that are one stride apart: the rest of row r's
    # outer index (or of the block when inner == 1: then rows are outer indices), from (o, k)
    Py_ssize_t o
    Py_ssize_t k
    Py_ssize_t n


cdef inline RowRun row_run(Py_ssize_t r, Py_ssize_t r1, Py_ssize_t inner) noexcept nogil:
    # the run that starts at row r and ends by row r1
    cdef RowRun run
    if inner == 1:
        run.o = r
        run.k = 0
        run.n = r1 - r
    else:
        run.o = r // inner
        run.k = r - run.o * inner
        run.n = min(inner - run.k, r1 - r)
    return run


cdef inline void row_index_to(Py_ssize_t r, Py_ssize_t inner, Py_ssize_t *o,
                              Py_ssize_t *k) noexcept nogil:
    # row_index into two variables (outside prange only: see nll_block)
    cdef RowIndex ri = row_index(r, inner)
    o[0] = ri.o
    k[0] = ri.k


cdef void zero_rows(floating *g, Py_ssize_t g0, Py_ssize_t g1, Py_ssize_t g2, Py_ssize_t C,
                    Py_ssize_t inner, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    # every class's entry of rows [r0, r1) of the gradient g set to 0, a run of rows at a
    # time (memset where the run is contiguous)
    cdef Py_ssize_t r = r0, i, c
    cdef RowRun run
    cdef floating *p
    while r < r1:
        run = row_run(r, r1, inner)
        if g1 == 1 and (g0 if inner == 1 else g2) == C:
            # run.n whole rows, one after the other (a swapped view's too: classes in
            # place, rows along the inner axis)
            memset(g + run.o * g0 + run.k * g2, 0, run.n * C * sizeof(floating))
        elif inner == 1:        # run.n rows (outer indices) of C classes
            for i in range(run.n):
                p = g + (run.o + i) * g0
                if g1 == 1:
                    memset(p, 0, C * sizeof(floating))
                else:
                    for c in range(C):
                        p[c * g1] = 0
        else:                   # in each class, run.n neighbours along the inner axis
            for c in range(C):
                p = g + run.o * g0 + c * g1 + run.k * g2
                if g2 == 1:
                    memset(p, 0, run.n * sizeof(floating))
                else:
                    for i in range(run.n):
                        p[i * g2] = 0
        r += run.n


cdef BlockSum nll_block(const floating *x0, const ClassArgs *args, Py_ssize_t r0,
                        Py_ssize_t r1) noexcept nogil:
    # NLL over rows [r0, r1): a gather.  The sums (and the first invalid target) come from
    # fnl_nll_rows, in runs of rows with one stride (row_run); so the loss is the same number
    # whether or not per-row losses or the gradient are asked for.  Those are written
    # afterwards, in a second pass over the block's (now valid) targets, whose entries are
    # still in cache.  The gradient must arrive zero-filled (class_block does it, block by
    # block: zero_rows).
    # The arguments are copied to locals, and the second pass takes its (o, k) through
    # row_index_to: in the other shapes tried, gcc vectorised the gather's partial sums
    # differently, measurably slower and with other last bits (see (e) above).
    cdef Py_ssize_t inner = args.inner, C = args.C, s0 = args.x.s0, s1 = args.x.s1, s2 = args.x.s2
    cdef const int64_t *targets = <const int64_t *>args.targets.data
    cdef Py_ssize_t s_t0 = args.targets.s0, s_t1 = args.targets.s1
    cdef const floating *w = <const floating *>args.w
    cdef Py_ssize_t s_w = args.s_w
    cdef int64_t ignore_index = args.ignore_index
    cdef floating *rows = <floating *>args.rows.data
    cdef Py_ssize_t s_rows0 = args.rows.s0, s_rows1 = args.rows.s1
    cdef floating *g = <floating *>args.grad.data
    cdef Py_ssize_t g0 = args.grad.s0, g1 = args.grad.s1, g2 = args.grad.s2
    cdef double sigma = args.sigma
    cdef Py_ssize_t r, o, k, bad
    cdef int64_t t
    cdef double w_t, loss
    cdef RowRun run
    cdef BlockSum block
    block.loss_sum = 0
    block.weight_sum = 0
    block.bad_row = -1
    block.bad_value = 0
    r = r0
    while r < r1:
        run = row_run(r, r1, inner)
        if s1 == 1 and w == NULL:   # the common case, with fewer instructions a row
            bad = fnl_nll_rows_plain(x0 + run.o * s0 + run.k * s2, s0 if inner == 1 else s2,
                                     targets + run.o * s_t0 + run.k * s_t1,
                                     s_t0 if inner == 1 else s_t1, run.n, C, ignore_index,
                                     &block.loss_sum, &block.weight_sum)
        else:
            bad = fnl_nll_rows(x0 + run.o * s0 + run.k * s2, s0 if inner == 1 else s2, s1,
                               targets + run.o * s_t0 + run.k * s_t1,
                               s_t0 if inner == 1 else s_t1, run.n, C, ignore_index, w, s_w,
                               &block.loss_sum, &block.weight_sum)
        if bad >= 0:
            block.bad_row = r + bad
            block.bad_value = (targets[run.o * s_t0 + (run.k + bad) * s_t1] if inner > 1
                               else targets[(run.o + bad) * s_t0])
            return block
        r += run.n
    if rows == NULL and g == NULL:
        return block
    for r in range(r0, r1):
        row_index_to(r, inner, &o, &k)
        t = targets[o * s_t0 + k * s_t1]
        loss = 0
        # checked in the first pass, checked again: the caller's array could change between
        # the passes (another Python thread; the GIL is released), and must not send a write
        # out of bounds
        if t != ignore_index and 0 <= t < C:
            w_t = 1.0 if w == NULL else w[t * s_w]
            loss = -w_t * x0[o * s0 + t * s1 + k * s2]
            if g != NULL:
                g[o * g0 + t * g1 + k * g2] = <floating>(-sigma * w_t)
        if rows != NULL:
            rows[o * s_rows0 + k * s_rows1] = <floating>loss
    return block


cdef inline void row_grad(const floating *x0, const uint16_t *h, int kind, Py_ssize_t at,
                          Py_ssize_t C, Py_ssize_t s1, floating shift, floating log_sum,
                          floating scale_p, floating scale_w, const floating *w,
                          Py_ssize_t s_w, void *g, Py_ssize_t g_at, Py_ssize_t g1,
                          int64_t t, floating t_delta) noexcept nogil:
    # One row's cross-entropy gradient (fnl_grad) at x0 + at into g + g_at (of x0's type),
    # minus t_delta at class t (t < 0: none); or with h (float only) for the 16-bit row
    # h + at and gradient: by chunks converted to float32 and rounded once (half_grad_row).
    if floating is float:
        if h != NULL:
            half_grad_row(h + at, C, s1, kind, shift, log_sum, scale_p, scale_w, w, s_w,
                          <uint16_t *>g + g_at, g1, t, t_delta)
            return
    fnl_grad(x0 + at, C, s1, shift, log_sum, scale_p, scale_w, w, s_w, <floating *>g + g_at,
             g1)
    if t >= 0:
        (<floating *>g)[g_at + t * g1] -= t_delta


cdef BlockSum rows_block(const floating *x0, ClassArgs args, Py_ssize_t blk) noexcept nogil:
    # Cross-entropy over the rows of block blk of the row traversal, in three passes: the
    # rows' statistics (and the targets' check), the logs of all their sums at once (one
    # vectorised pass, finish_logs_many, instead of a scalar log1p per row), then losses and
    # gradient.
    cdef Py_ssize_t C = args.C, inner = args.inner, s0 = args.x.s0, s1 = args.x.s1, s2 = args.x.s2
    cdef Py_ssize_t r0 = blk * ROW_BLOCK, r1 = min(r0 + ROW_BLOCK, args.outer * inner), i
    cdef const int64_t *targets = <const int64_t *>args.targets.data
    cdef const floating *w = <const floating *>args.w
    # without smoothing the other classes' weights take no part in the gradient (a nan weight
    # must not reach rows whose target has a finite one: 0 * nan is nan)
    cdef const floating *grad_w = w if args.row_sums == SUMS_WX else NULL
    cdef void *g = args.grad.data
    cdef Py_ssize_t g0 = args.grad.s0, g1 = args.grad.s1, g2 = args.grad.s2
    cdef floating *rows = <floating *>args.rows.data
    # a 16-bit x (args.half; the float instance only): read through h, converted by chunks
    cdef const uint16_t *h = <const uint16_t *>args.x.data if args.half else NULL
    cdef double eps = args.eps, sigma = args.sigma, W = args.W, loss, w_t, x_t
    cdef int64_t t
    cdef RowIndex ri
    cdef RowStats stats
    cdef RowStats block_stats[ROW_BLOCK]
    cdef floating maxima[ROW_BLOCK]
    cdef double rests[ROW_BLOCK]
    cdef double at_maxes[ROW_BLOCK]
    cdef double log_sums[ROW_BLOCK]
    cdef int64_t targets_read[ROW_BLOCK]    # as read once (the caller's array may change)
    cdef BlockSum block
    block.loss_sum = 0
    block.weight_sum = 0
    block.bad_row = -1
    block.bad_value = 0
    for i in range(r1 - r0):
        ri = row_index(r0 + i, inner)
        t = targets[ri.o * args.targets.s0 + ri.k * args.targets.s1]
        targets_read[i] = t
        maxima[i] = 0   # rows without statistics: a sum of 1 (no nan from the shared log)
        rests[i] = 0
        at_maxes[i] = 1
        if t != args.ignore_index and (t < 0 or t >= C):
            if block.bad_row < 0:
                block.bad_row = r0 + i
                block.bad_value = t
        elif t != args.ignore_index or args.want_grad:
            block_stats[i] = row_stats_from(
                NULL if h != NULL else x0 + ri.o * s0 + ri.k * s2,
                NULL if h == NULL else h + ri.o * s0 + ri.k * s2, args.half, C, s1,
                SUMS_LSE if t == args.ignore_index else args.row_sums, NULL, 0, w, args.s_w,
                0, 0, False)
            maxima[i] = <floating>block_stats[i].maximum
            rests[i] = block_stats[i].rest
            at_maxes[i] = block_stats[i].at_max
    finish_logs_many(maxima, rests, at_maxes, log_sums, r1 - r0)
    for i in range(r1 - r0):
        ri = row_index(r0 + i, inner)
        t = targets_read[i]
        loss = 0
        if t != args.ignore_index and (t < 0 or t >= C):
            continue
        if t != args.ignore_index or args.want_grad:
            stats = block_stats[i]
            stats.log_sum = log_sums[i]
            if stats.maximum == INFINITY:
                stats.log_sum = NAN   # PyTorch: log_softmax of a row with +inf is nan
        if t == args.ignore_index:
            if args.want_grad:
                # 0 * softmax, as PyTorch's backward: nan where the row is
                row_grad(x0, h, args.half, ri.o * s0 + ri.k * s2, C, s1, <floating>stats.shift,
                         <floating>stats.log_sum, 0, 0, NULL, 0, g, ri.o * g0 + ri.k * g2, g1,
                         -1, 0)
        else:
            w_t = 1.0 if w == NULL else w[t * args.s_w]
            block.weight_sum = block.weight_sum + w_t
            x_t = (x0[ri.o * s0 + t * s1 + ri.k * s2] if h == NULL else
                   fnl_half_to_f32(h[ri.o * s0 + t * s1 + ri.k * s2], args.half))
            loss = (1 - eps) * w_t * (stats.log_sum + (stats.shift - x_t))
            if args.row_sums == SUMS_WX:
                loss = loss + eps / C * (W * (stats.log_sum + (stats.shift - stats.ref))
                                         - stats.x_sum)
            if args.want_grad:
                row_grad(x0, h, args.half, ri.o * s0 + ri.k * s2, C, s1, <floating>stats.shift,
                         <floating>stats.log_sum,
                         <floating>(sigma * ((1 - eps) * w_t
                                             + (eps * W / C if args.row_sums == SUMS_WX else 0.0))),
                         <floating>(sigma * eps / C), grad_w, args.s_w, g, ri.o * g0 + ri.k * g2,
                         g1, t, <floating>(sigma * (1 - eps) * w_t))
        if rows != NULL:
            rows[ri.o * args.rows.s0 + ri.k * args.rows.s1] = <floating>loss
        block.loss_sum = block.loss_sum + loss
    return block


cdef inline floating col_entry(const floating *x, const uint16_t *h, int kind,
                               Py_ssize_t i) noexcept nogil:
    # entry i of a column block: of x, or of the 16-bit h (format kind) when it is not NULL
    if h != NULL:
        return <floating>fnl_half_to_f32(h[i], kind)
    return x[i]


cdef inline void half_cols_grad(const uint16_t *h, int kind, Py_ssize_t C, Py_ssize_t s1,
                                Py_ssize_t s2, Py_ssize_t ncols, float *packed,
                                bint packed_whole, const float *shift, const float *log_sum,
                                const float *scale_p, const float *scale_w,
                                const float *grad_w, Py_ssize_t s_w, const int64_t *targets,
                                Py_ssize_t s_t, int64_t ignore_index, const float *w,
                                double scale_t, uint16_t *g, Py_ssize_t g1,
                                Py_ssize_t g2) noexcept nogil:
    # cols_block's gradient for a 16-bit x (h, this block's first column) into the 16-bit g:
    # by chunks of COL_CHUNK classes converted into packed (already there when
    # packed_whole), fnl_colgrad in place, the target's term taken off there in float32
    # (scale_t * w_t, as the float32 path takes it off g), then rounded once into g
    cdef Py_ssize_t j0 = 0, j, k, nclass
    cdef int64_t t
    while j0 < C:
        nclass = min(C - j0, <Py_ssize_t>COL_CHUNK)
        if not packed_whole:
            fnl_half_load_chunk_f32(h + j0 * s1, nclass, s1, ncols, s2, kind, COL_CHUNK,
                                    COL_BLOCK, packed)
        for j in range(nclass):
            fnl_colgrad(packed + j * COL_BLOCK, ncols, 1, shift, log_sum, scale_p, scale_w,
                        1 if grad_w == NULL else grad_w[(j0 + j) * s_w], packed + j * COL_BLOCK,
                        1)
        for k in range(ncols):
            t = targets[k * s_t]
            if t != ignore_index and j0 <= t < j0 + nclass:
                packed[(t - j0) * COL_BLOCK + k] -= <float>(scale_t * (1.0 if w == NULL
                                                                       else w[t * s_w]))
        for j in range(nclass):
            fnl_half_store_f32(packed + j * COL_BLOCK, ncols, kind, g + (j0 + j) * g1, g2)
        j0 += nclass


cdef BlockSum cols_block(const floating *x0, ClassArgs args, Py_ssize_t it,
                         int tid) noexcept nogil:
    # Cross-entropy over column block it of the column traversal, by thread tid (which picks
    # its workspace).
    cdef Py_ssize_t C = args.C, inner = args.inner, s0 = args.x.s0, s1 = args.x.s1, s2 = args.x.s2
    cdef Py_ssize_t k, j
    cdef ColRange cr = col_range(it, args.blocks, inner)
    cdef Py_ssize_t o = cr.o, k0 = cr.k0, ncols = cr.ncols
    cdef floating *packed = <floating *>pack_buffer(args.ws, s2, tid)
    cdef floating *shift = <floating *>col_slot(args.ws, tid, SLOT_SHIFT)
    cdef floating *log_sum = <floating *>col_slot(args.ws, tid, SLOT_LOG_SUM)
    cdef floating *ref = <floating *>col_slot(args.ws, tid, SLOT_REF)
    cdef floating *maximum = <floating *>col_slot(args.ws, tid, SLOT_MAX)
    cdef floating *scale_p = <floating *>col_slot(args.ws, tid, SLOT_SCALE_P)
    cdef floating *scale_w = <floating *>col_slot(args.ws, tid, SLOT_SCALE_W)
    cdef double *log_sum_d = <double *>col_slot(args.ws, tid, SLOT_LOG_SUM_D)
    cdef double *x_sum = <double *>col_slot(args.ws, tid, SLOT_X_SUM_D)
    cdef const floating *w = <const floating *>args.w
    cdef const floating *grad_w = w if args.row_sums == SUMS_WX else NULL
    cdef floating *g = <floating *>args.grad.data
    cdef Py_ssize_t g0 = args.grad.s0, g1 = args.grad.s1, g2 = args.grad.s2
    cdef floating *rows = <floating *>args.rows.data
    # this block's targets, at stride s_t
    cdef const int64_t *targets = (<const int64_t *>args.targets.data + o * args.targets.s0
                                   + k0 * args.targets.s1)
    cdef Py_ssize_t s_t = args.targets.s1
    cdef double eps = args.eps, sigma = args.sigma, W = args.W, loss, w_t
    cdef int64_t t
    cdef bint packed_whole
    cdef BlockSum block
    # a 16-bit x (args.half; the float instance only): converted by chunks into packed
    cdef const uint16_t *h = NULL
    if args.half:
        if floating is float:
            h = <const uint16_t *>args.x.data + o * s0 + k0 * s2
            packed = <floating *>col_slot(args.ws, tid, SLOT_PACKED)
        x0 = NULL
    else:
        x0 = x0 + o * s0 + k0 * s2      # this block's first column
    packed_whole = col_lse(x0, C, s1, ncols, s2, args.row_sums, w, args.s_w, args.ws, tid,
                           packed, k0 + ncols < inner, h, args.half)
    for k in range(ncols):
        if maximum[k] == INFINITY:
            log_sum[k] = NAN
            log_sum_d[k] = NAN
    block.loss_sum = 0
    block.weight_sum = 0
    block.bad_row = -1
    block.bad_value = 0
    if args.plain:       # the common case, with the branches that cannot fire removed
        for k in range(ncols):
            t = targets[k * s_t]
            if t == args.ignore_index:
                continue
            if t < 0 or t >= C:
                if block.bad_row < 0:
                    block.bad_row = o * inner + k0 + k
                    block.bad_value = t
                continue
            block.weight_sum = block.weight_sum + 1
            block.loss_sum = block.loss_sum + (log_sum_d[k] + (shift[k] - col_entry(
                x0, h, args.half, t * s1 + k * s2)))
        return block
    for k in range(ncols):
        t = targets[k * s_t]
        loss = 0
        scale_p[k] = 0
        scale_w[k] = 0
        if t != args.ignore_index and (t < 0 or t >= C):
            if block.bad_row < 0:
                block.bad_row = o * inner + k0 + k
                block.bad_value = t
        elif t != args.ignore_index:
            w_t = 1.0 if w == NULL else w[t * args.s_w]
            block.weight_sum = block.weight_sum + w_t
            loss = (1 - eps) * w_t * (log_sum_d[k]
                                      + (shift[k] - col_entry(x0, h, args.half, t * s1 + k * s2)))
            if args.row_sums == SUMS_WX:
                loss = loss + eps / C * (W * (log_sum_d[k] + (shift[k] - ref[k])) - x_sum[k])
            scale_p[k] = <floating>(sigma * ((1 - eps) * w_t
                                             + (eps * W / C if args.row_sums == SUMS_WX else 0.0)))
            scale_w[k] = <floating>(sigma * eps / C)
        if rows != NULL:
            rows[o * args.rows.s0 + (k0 + k) * args.rows.s1] = <floating>loss
        block.loss_sum = block.loss_sum + loss
    if args.want_grad and block.bad_row < 0 and h != NULL:
        if floating is float:
            half_cols_grad(h, args.half, C, s1, s2, ncols, packed, packed_whole, shift,
                           log_sum, scale_p, scale_w, grad_w, args.s_w, targets, s_t,
                           args.ignore_index, w, sigma * (1 - eps),
                           <uint16_t *>args.grad.data + o * g0 + k0 * g2, g1, g2)
    elif args.want_grad and block.bad_row < 0:
        if packed_whole:
            for j in range(C):      # the gradient in place in the packed block
                fnl_colgrad(packed + j * COL_BLOCK, ncols, 1, shift, log_sum, scale_p, scale_w,
                            1 if grad_w == NULL else grad_w[j * args.s_w],
                            packed + j * COL_BLOCK, 1)
            fnl_unpack(packed, COL_BLOCK, C, ncols, g + o * g0 + k0 * g2, g1, g2)
        else:
            for j in range(C):
                fnl_colgrad(x0 + j * s1, ncols, s2, shift, log_sum, scale_p,
                            scale_w, 1 if grad_w == NULL else grad_w[j * args.s_w],
                            g + o * g0 + j * g1 + k0 * g2, g2)
        for k in range(ncols):
            t = targets[k * s_t]
            if t != args.ignore_index and t >= 0 and t < C:
                w_t = 1.0 if w == NULL else w[t * args.s_w]
                g[o * g0 + t * g1 + (k0 + k) * g2] -= <floating>(sigma * (1 - eps) * w_t)
    return block


cdef inline BlockSum class_block(const floating *x0, const ClassArgs *args, Py_ssize_t blk,
                                 int tid) noexcept nogil:
    cdef Py_ssize_t r0, r1
    if args.half and args.is_nll:
        return half_nll_block(args, blk)
    if args.is_nll:
        r0, r1 = blk * ROW_BLOCK, min((blk + 1) * ROW_BLOCK, args.outer * args.inner)
        if args.grad.data != NULL:
            # the block's rows zero-filled by the block's thread (rather than by the caller,
            # serially, before the kernel); nll_block then writes the target entries
            zero_rows(<floating *>args.grad.data, args.grad.s0, args.grad.s1, args.grad.s2,
                      args.C, args.inner, r0, r1)
        return nll_block(x0, args, r0, r1)
    if args.columns:
        return cols_block(x0, args[0], blk, tid)
    return rows_block(x0, args[0], blk)


cdef int run_class_loss(const floating *x0, ClassArgs *args, Reduction reduction, int nthreads,
                        BlockSum *res) except -1:
    # The whole class_loss computation on ClassArgs from class_args (x0 is args.x.data, typed).
    # Sets *res: bad_row >= 0 is the flat index of the first invalid target (with its value
    # in bad_value; the outputs are then meaningless), else loss_sum is the float64 sum of the
    # per-row losses in block order and weight_sum the summed weights of the kept targets.
    cdef Py_ssize_t nrows = args.outer * args.inner, nblocks, blk, j
    cdef const floating *w = <const floating *>args.w
    cdef double *partials
    cdef int64_t *bads
    cdef TargetCheck check
    cdef BlockSum bs
    res.loss_sum = 0
    res.weight_sum = 0
    res.bad_row = -1
    res.bad_value = 0
    args.row_sums = SUMS_WX if (args.eps > 0 and not args.is_nll) else SUMS_LSE
    # no weights, smoothing, gradient or per-row output: the column path's per-row loop is
    # then a plain sum of lse - x[target] (the general loop gives the same values)
    args.plain = (args.row_sums == SUMS_LSE and w == NULL and not args.want_grad
                  and args.rows.data == NULL)
    args.W = args.C
    args.sigma = args.sum_scale
    args.ws = NULL
    if (args.want_grad and reduction == MEAN) or nrows == 0:
        # only the gradient of the mean needs its scale first: a serial pre-pass
        with nogil:
            check = check_targets(<const int64_t *>args.targets.data, args.outer, args.inner,
                                  args.targets.s0, args.targets.s1, args.C, args.ignore_index,
                                  w, args.s_w)
        if check.bad >= 0:
            res.bad_row = check.bad
            res.bad_value = check.bad_value
            return 0
        if nrows == 0:
            res.weight_sum = check.weight_sum
            return 0
        # With no weight kept, PyTorch's gradient is 0 / 0 = nan on kept rows; ignored rows
        # get 0 * softmax.
        args.sigma = 1.0 / check.weight_sum if check.weight_sum != 0 else INFINITY
    if w != NULL:
        args.W = 0
        for j in range(args.C):
            args.W += w[j * args.s_w]
    args.columns = use_columns(args.inner, args.C, args.x.s1, args.x.s2) and not args.is_nll
    if args.columns:
        # 16-bit columns are converted into the packing buffer: its width, COL_BLOCK
        args.blocks = col_blocks(args.inner, 0 if args.half else args.x.s2)
        nblocks = args.outer * args.blocks.per_outer
        args.ws = col_workspace(nthreads if nblocks > 1 else 1)
    else:
        nblocks = ceil_div(nrows, ROW_BLOCK)
    if nthreads <= 1 or nblocks <= 1:
        # no parallel region (even a team of one has a measurable start-up cost); the same
        # blocks, summed in the same order, so the same result
        with nogil:
            for blk in range(nblocks):
                bs = class_block(x0, args, blk, 0)
                if bs.bad_row >= 0:
                    res.bad_row = bs.bad_row
                    res.bad_value = bs.bad_value
                    break
                res.loss_sum += bs.loss_sum
                res.weight_sum += bs.weight_sum
        free(args.ws)
        return 0
    # per block: (sum of losses, sum of kept weights) and (first invalid row, its target)
    partials = <double *>malloc(2 * nblocks * sizeof(double))
    bads = <int64_t *>malloc(2 * nblocks * sizeof(int64_t))
    if partials == NULL or bads == NULL:
        free(partials)
        free(bads)
        free(args.ws)
        raise MemoryError()
    with nogil:
        for blk in prange(nblocks, schedule='static', num_threads=nthreads):
            bs = class_block(x0, args, blk, threadid())
            partials[2 * blk] = bs.loss_sum
            partials[2 * blk + 1] = bs.weight_sum
            bads[2 * blk] = bs.bad_row
            bads[2 * blk + 1] = bs.bad_value
    free(args.ws)
    for blk in range(nblocks):
        if bads[2 * blk] >= 0:
            res.bad_row = bads[2 * blk]
            res.bad_value = bads[2 * blk + 1]
            break
        res.loss_sum += partials[2 * blk]
        res.weight_sum += partials[2 * blk + 1]
    free(partials)
    free(bads)
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def class_loss(const floating[:, :, :] x not None, const int64_t[:, :] targets not None,
               const floating[:] weight, int64_t ignore_index, double label_smoothing,
               bint is_nll, Reduction reduction, floating[:, :] rows,
               floating[:, :, :] grad, int nthreads, double sum_scale=1.0):
    """Cross-entropy (or NLL when is_nll) with class-index targets, in one call.

    weight: class weights or None.  reduction: a Reduction; with NONE the per-row losses go
    into rows (else None).  grad (or None): d(loss)/dx, of the mean for MEAN and of the sum
    otherwise, times sum_scale for SUM and NONE (a caller's own divisor, as of the rows of a
    larger batch); for NLL it must arrive zero-filled.  With inner = 1 (the row traversal) grad
    may be x itself: each row is read whole before its gradient is written.  Returns (bad,
    bad_value, total, weight_sum): bad >= 0 is the flat index of the first invalid target (the
    outputs are then meaningless); total is the float64 sum of the per-row losses in a fixed
    order; weight_sum the summed weights of the kept targets."""
    cdef ClassArgs args
    cdef BlockSum res
    cdef const void *w = NULL
    cdef Py_ssize_t s_w = 0
    if weight is not None:
        s_w = weight.strides[0] // <Py_ssize_t>sizeof(floating)
        if weight.shape[0] > 0:
            w = &weight[0]
    args = class_args(x.shape[0], x.shape[1], x.shape[2], view3(x), target_view(targets), w, s_w,
                      ignore_index, label_smoothing, is_nll,
                      view2(rows) if rows is not None and reduction == NONE else View2(NULL, 0, 0),
                      view3(grad) if grad is not None else View3(NULL, 0, 0, 0), grad is not None)
    args.sum_scale = sum_scale
    run_class_loss(<const floating *>args.x.data, &args, reduction, nthreads, &res)
    if res.bad_row >= 0:
        return res.bad_row, res.bad_value, 0.0, 0.0
    return -1, 0, res.loss_sum, res.weight_sum


@cython.boundscheck(False)
@cython.wraparound(False)
def prob_loss(const floating[:, :, :] x not None, const floating[:, :, :] targets not None,
              const floating[:] weight, double label_smoothing, double sigma,
              floating[:, :] rows, floating[:, :, :] grad, int nthreads):
    """Cross-entropy against class probabilities `targets` (the same 3-D view as x).

    weight: class weights or None; rows (or None): per-row losses; grad (or None):
    sigma * d(loss)/dx.  Returns the float64 sum of the per-row losses in a fixed order."""
    cdef View3 xv = view3(x)
    cdef Py_ssize_t s_w = (weight.strides[0] // <Py_ssize_t>sizeof(floating)
                           if weight is not None else 0)
    cdef const floating *w = &weight[0] if weight is not None and weight.shape[0] > 0 else NULL
    return prob_core(<const floating *>xv.data, x.shape[0], x.shape[1], x.shape[2], xv,
                     view3(targets), w, s_w, label_smoothing, sigma,
                     view2(rows) if rows is not None else View2(NULL, 0, 0),
                     view3(grad) if grad is not None else View3(NULL, 0, 0, 0), nthreads)


cdef inline double prob_block(const floating *x0, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2,
                              Py_ssize_t C, Py_ssize_t inner, const floating *probs,
                              Py_ssize_t ts0, Py_ssize_t ts1, Py_ssize_t ts2,
                              const floating *w, Py_ssize_t s_w, floating keep, floating spread,
                              double sigma, bint want_grad, floating *g, Py_ssize_t g0,
                              Py_ssize_t g1, Py_ssize_t g2, bint want_rows, floating *rows,
                              Py_ssize_t rs0, Py_ssize_t rs1, Py_ssize_t blk,
                              Py_ssize_t nrows) noexcept nogil:
    # prob_core's block blk of ROW_BLOCK rows: their summed losses (rows and gradient written)
    cdef double acc = 0, loss
    cdef Py_ssize_t r, r1 = (blk + 1) * ROW_BLOCK
    cdef RowIndex ri
    cdef RowStats stats
    if r1 > nrows:
        r1 = nrows
    for r in range(blk * ROW_BLOCK, r1):
        ri = row_index(r, inner)
        stats = row_lse(x0 + ri.o * s0 + ri.k * s2, C, s1, SUMS_WTX,
                        probs + ri.o * ts0 + ri.k * ts2, ts1, w, s_w, keep, spread)
        if stats.maximum == INFINITY:
            stats.log_sum = NAN
        # sum_j w t' (lse - x_j) = wt_sum (log_sum + shift - ref) - sum_j w t' (x_j - ref)
        loss = (stats.wt_sum * (stats.log_sum + (stats.shift - stats.ref)) - stats.x_sum
                if C > 0 else 0.0)
        if want_grad:
            fnl_gradprob(x0 + ri.o * s0 + ri.k * s2, C, s1, <floating>stats.shift,
                         <floating>stats.log_sum, <floating>(sigma * stats.wt_sum),
                         <floating>sigma, probs + ri.o * ts0 + ri.k * ts2, ts1, w, s_w,
                         keep, spread, g + ri.o * g0 + ri.k * g2, g1)
        if want_rows:
            rows[ri.o * rs0 + ri.k * rs1] = <floating>loss
        acc = acc + loss
    return acc


cdef double prob_core(const floating *x0, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                      View3 x_view, View3 t_view, const floating *w, Py_ssize_t s_w,
                      double label_smoothing, double sigma, View2 rows_view, View3 grad_view,
                      int nthreads) except? -1:
    # prob_loss on raw views (x0 is x_view.data, typed; w NULL without weights; rows_view and
    # grad_view have data NULL when not asked): the def above and the compiled calls
    # (_compiled_calls.pxi) both run it
    cdef Py_ssize_t s0 = x_view.s0, s1 = x_view.s1, s2 = x_view.s2
    cdef Py_ssize_t ts0 = t_view.s0, ts1 = t_view.s1, ts2 = t_view.s2
    cdef Py_ssize_t g0 = grad_view.s0, g1 = grad_view.s1, g2 = grad_view.s2
    cdef Py_ssize_t rs0 = rows_view.s0, rs1 = rows_view.s1
    cdef bint want_rows = rows_view.data != NULL, want_grad = grad_view.data != NULL
    cdef const floating *probs = <const floating *>t_view.data
    cdef floating *g = <floating *>grad_view.data
    cdef floating *rows = <floating *>rows_view.data
    cdef Py_ssize_t nrows = outer * inner, nblocks, blk
    cdef double *partials
    cdef double total
    # the smoothed targets t' = keep t + spread
    cdef floating keep = <floating>(1 - label_smoothing)
    cdef floating spread = <floating>(label_smoothing / C) if C > 0 else 0
    if nrows == 0:
        return 0.0
    nblocks = ceil_div(nrows, ROW_BLOCK)
    partials = <double *>malloc(nblocks * sizeof(double))
    if partials == NULL:
        raise MemoryError()
    with nogil:
        if nthreads <= 1 or nblocks == 1:
            # no parallel region (a team of one costs a few hundred ns): the same blocks
            for blk in range(nblocks):
                partials[blk] = prob_block(x0, s0, s1, s2, C, inner, probs, ts0, ts1, ts2, w,
                                           s_w, keep, spread, sigma, want_grad, g, g0, g1, g2,
                                           want_rows, rows, rs0, rs1, blk, nrows)
        else:
            for blk in prange(nblocks, schedule='static', num_threads=nthreads):
                partials[blk] = prob_block(x0, s0, s1, s2, C, inner, probs, ts0, ts1, ts2, w,
                                           s_w, keep, spread, sigma, want_grad, g, g0, g1, g2,
                                           want_rows, rows, rs0, rs1, blk, nrows)
    total = sum_partials(partials, nblocks)
    free(partials)
    return total
