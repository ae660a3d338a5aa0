# fastnll kernels for the class-axis family: logsumexp, softmax, log_softmax, nll_loss and
# cross_entropy (class-index and class-probability targets), forward and fused backward.
#
# This file is included by one thin .pyx per instruction-set level (_kern_*.pyx), so the same
# source is compiled once per level and the package picks the best one at import.
#
# Design
# (a) Every array arrives as a 3-D view (outer, C, inner), the class axis in the middle, with
#     arbitrary element strides (s0, s1, s2), already validated and typed by the Python wrapper.
#     Outputs (per-row results as (outer, inner), gradients and softmax as (outer, C, inner))
#     are buffers the wrapper allocated; targets are int64 (outer, inner).
# (b) Two traversals.  Rows: when inner == 1 or the class stride is the smaller one, each row
#     of C classes is reduced on its own (row_lse / row_stats in _lse.pxd; the class losses
#     finish a block's logs together), rows spread over threads in fixed blocks.  Columns:
#     when the inner axis has the smaller stride (PyTorch's (N, C, d1, ...) layout, axis=0
#     of a C-ordered matrix), blocks of COL_BLOCK columns are reduced together so that the
#     vector lanes run along the inner axis.  Few classes (C <= SMALL_CLASSES) also take the
#     column traversal, over the transposed view the wrapper passes, so a short row costs a
#     few vector lanes instead of a whole row setup.
# (c) Per-row results never depend on the thread count.  Sums over rows (mean, sum) are taken
#     per fixed block in float64, then the block partials are added in block order: the same
#     input gives bit-identical results with any number of threads.
# (d) The loss forward allocates nothing of the input's size.  The fused forward+backward reads
#     a row twice (once for its log-sum-exp, once to write the gradient) and writes it once.
# (e) Per class-target row, with p = softmax(x), w the class weights (1 without weights), W
#     their sum, t the target, eps the label smoothing and sigma the reduction scale:
#       loss = (1-eps) w_t (lse - x_t) + eps/C (W lse - sum_j w_j x_j)   (PyTorch's formula)
#       grad = sigma [ ((1-eps) w_t + eps W / C) p - eps/C w - (1-eps) w_t e_t ]
#     For probability targets t (smoothed to t' = (1-eps) t + eps/C):
#       loss = sum_j w_j t'_j (lse - x_j),  grad = sigma [ (sum_j w_j t'_j) p - w t' ].
#     Sums of x are taken relative to a reference inside the row (the first chunk's shift), so
#     float32 rows with large offsets do not lose the answer to cancellation.
cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.math cimport isfinite, log, log1p, fabs, INFINITY, NAN
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport PyObject
cimport numpy as cnp
import numpy as np

from fastnll._lse cimport (
    RowStats, COL_CHUNK, COL_BLOCK, row_lse, row_stats, finish_logs, finish_logs_many,
    rescale, fexp, vsoftmax, vgrad, vgradprob, vcolmax_rows, vcolsumexp_rows, vcolsumdiff,
    vcolsoftmax, vcolgrad, vpack, vunpack, vnll_rows,
)

cnp.import_array()

cdef extern from "_omp_shim.h" nogil:
    int fnl_omp_max_threads()
    int fnl_have_openmp()

# Rows per block in the row traversal: the unit of work handed to a thread and of the
# fixed-order summation.
cdef enum:
    ROW_BLOCK = 64
    # per-thread scratch of the column traversal: 10 floating arrays (sized as double) and
    # 4 double arrays of COL_BLOCK entries, then the packed block (COL_CHUNK x COL_BLOCK)
    WS_PACK = 14 * COL_BLOCK * 8
    WS_BYTES = WS_PACK + COL_CHUNK * COL_BLOCK * 8


def openmp_max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS, threadpoolctl), 1 without OpenMP."""
    return fnl_omp_max_threads()


def built_with_openmp():
    return bool(fnl_have_openmp())


# Few classes: below this many, rows are reduced in blocks of COL_BLOCK with the vector lanes
# across rows (the column traversal over a transposed view, see ClassView), not one short row
# at a time.
cdef enum:
    SMALL_C = 32
SMALL_CLASSES = SMALL_C


cdef inline bint is_swapped(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, Py_ssize_t s0,
                            Py_ssize_t s1) noexcept nogil:
    # The rows of a contiguous-rows view (inner == 1) are taken as columns when there are
    # few classes, or when the class stride is the larger one (axis=1 of a transposed
    # matrix), so that the vector lanes run along the contiguous axis.
    return (inner == 1 and outer > 1 and C > 1
            and (C <= SMALL_C or (s0 if s0 >= 0 else -s0) < (s1 if s1 >= 0 else -s1)))


cdef inline bint use_columns(Py_ssize_t inner, Py_ssize_t C, Py_ssize_t s1,
                             Py_ssize_t s2) noexcept nogil:
    return inner > 1 and ((s2 if s2 >= 0 else -s2) < (s1 if s1 >= 0 else -s1)
                          or C <= SMALL_C)


cdef inline void row_offsets(Py_ssize_t r, Py_ssize_t inner, Py_ssize_t *o,
                             Py_ssize_t *k) noexcept nogil:
    # row r of the (outer, inner) grid of rows as (o, k)
    if inner == 1:   # no 64-bit division in the common case
        o[0] = r
        k[0] = 0
    else:
        o[0] = r // inner
        k[0] = r - o[0] * inner


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline double sum_partials(double *partials, Py_ssize_t n) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(n):
        total += partials[i]
    return total


# --------------------------------------------------------------- column statistics ----

cdef inline void *pack_buffer(void *ws, Py_ssize_t sk, int tid) noexcept nogil:
    # Thread tid's packing buffer when the columns are strided (sk != 1), else NULL.
    if sk == 1:
        return NULL
    return <char *>ws + tid * WS_BYTES + WS_PACK


cdef inline bint col_lse(const floating *x, Py_ssize_t C, Py_ssize_t s1, Py_ssize_t nk,
                         Py_ssize_t sk, int mode, const floating *w, Py_ssize_t sw,
                         floating *fws, double *dws, floating *tb,
                         bint tail_ok) noexcept nogil:
    # Online log-sum-exp of nk columns at once (each column a run of C classes).
    # Workspace in:   fws 8*COL_BLOCK floating, dws 4*COL_BLOCK double.
    # tb (or NULL): COL_CHUNK*COL_BLOCK floating; each chunk of classes is first packed there
    # as unit-stride rows (strided columns, e.g. few classes over contiguous rows, then cost
    # one strided read instead of one per pass); with C <= COL_CHUNK the whole block is left
    # in tb, class j at tb + j*COL_BLOCK, for the caller's output pass, and the return value
    # says so (True: the block is packed whole).  tail_ok: more
    # columns follow these nk (the pack may then read a little past a row, see fnl_pack).
    # Results left in: shift = fws[0:], logs (floating) = fws[B:], ref = fws[2B:],
    #                  logs (double) = dws[0:], acc (double) = dws[B:]   (mode 1: sum w (x-ref))
    cdef Py_ssize_t B = COL_BLOCK, j, j0, jn, k
    cdef floating *shift = fws
    cdef floating *flogs = fws + B
    cdef floating *ref = fws + 2 * B
    cdef floating *top = fws + 3 * B
    cdef floating *cm = fws + 4 * B
    cdef floating *clo = fws + 5 * B
    cdef floating *chi = fws + 6 * B
    cdef floating *cacc = fws + 7 * B
    cdef double *dlogs = dws
    cdef double *acc = dws + B
    cdef double *lo = dws + 2 * B
    cdef double *eq = dws + 3 * B
    cdef const floating *xc
    cdef Py_ssize_t c1, ck
    for k in range(nk):
        top[k] = -INFINITY
        shift[k] = 0
        lo[k] = 0
        eq[k] = 0
        acc[k] = 0
    j0 = 0
    while j0 < C:
        jn = C - j0
        if jn > COL_CHUNK:
            jn = COL_CHUNK
        for k in range(nk):
            cm[k] = -INFINITY
            clo[k] = 0
            chi[k] = 0
            cacc[k] = 0
        if tb != NULL:
            vpack(x + j0 * s1, jn, s1, nk, sk, tb, B, tail_ok)
            xc, c1, ck = tb, B, 1
        else:
            xc, c1, ck = x + j0 * s1, s1, sk
        vcolmax_rows(xc, jn, c1, nk, ck, cm)
        if j0 == 0:     # the first chunk: nothing to rescale yet (a loop that vectorises)
            for k in range(nk):
                top[k] = cm[k]
                shift[k] = cm[k] if isfinite(cm[k]) else 0
                ref[k] = shift[k]
        else:
            for k in range(nk):
                if cm[k] > top[k]:
                    rescale(cm[k], &top[k], &shift[k], &lo[k], &eq[k])
        vcolsumexp_rows(xc, jn, c1, nk, ck, top, shift, clo, chi)     # chi starts at 0
        if mode == 1:
            for j in range(jn):
                vcolsumdiff(xc + j * c1, nk, ck, 1 if w == NULL else w[(j0 + j) * sw], ref,
                            cacc)
        for k in range(nk):
            lo[k] += clo[k]
            eq[k] += chi[k]
            acc[k] += cacc[k]
        j0 += jn
    finish_logs_many(top, lo, eq, dlogs, nk)
    for k in range(nk):
        flogs[k] = <floating>dlogs[k]
    return tb != NULL and C <= COL_CHUNK


cdef void *workspace(int nthreads, size_t per_thread) except NULL:
    # Per-thread scratch for the column traversal, allocated with the GIL before the parallel
    # region (so a failure raises MemoryError) and indexed by threadid() inside it.
    cdef void *ws = malloc(<size_t>(nthreads if nthreads > 0 else 1) * per_thread)
    if ws == NULL:
        raise MemoryError()
    return ws


cdef inline floating *x_ptr(const floating[:, :, :] x) noexcept nogil:
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        return NULL
    return <floating *>&x[0, 0, 0]


# ------------------------------------------------------------------------- logsumexp ----

@cython.boundscheck(False)
@cython.wraparound(False)
def logsumexp(const floating[:, :, :] x, floating[:, :] out, int nthreads):
    """out[o, k] = log sum_c exp(x[o, c, k])."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t s0 = x.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s2 = x.strides[2] // <Py_ssize_t>sizeof(floating)
    cdef const floating *x0 = x_ptr(x)
    cdef Py_ssize_t r, o, k, it, nkb, k0, nk
    cdef RowStats st
    cdef floating *fws = NULL
    cdef double *dws = NULL
    cdef void *ws = NULL
    if outer == 0 or inner == 0:
        return
    if C == 0:
        out[:, :] = -INFINITY
        return
    if not use_columns(inner, C, s1, s2):
        with nogil:
            for r in prange(outer * inner, schedule='static', num_threads=nthreads):
                if inner == 1:   # no 64-bit division in the common case
                    o = r
                    k = 0
                else:
                    o = r // inner
                    k = r - o * inner
                st = row_lse(x0 + o * s0 + k * s2, C, s1, 0, NULL, 0, NULL, 0, 0, 0)
                out[o, k] = <floating>(st.shift + st.logs)
        return
    nkb = ceil_div(inner, COL_BLOCK)
    ws = workspace(nthreads, WS_BYTES)
    with nogil:
        for it in prange(outer * nkb, schedule='static', num_threads=nthreads):
            fws = <floating *>(<char *>ws + threadid() * WS_BYTES)
            dws = <double *>(<char *>ws + threadid() * WS_BYTES + 10 * COL_BLOCK * sizeof(double))
            o = it // nkb
            k0 = (it - o * nkb) * COL_BLOCK
            nk = inner - k0
            if nk > COL_BLOCK:
                nk = COL_BLOCK
            col_lse(x0 + o * s0 + k0 * s2, C, s1, nk, s2, 0, NULL, 0, fws, dws,
                    <floating *>pack_buffer(ws, s2, threadid()), k0 + nk < inner)
            for k in range(nk):
                out[o, k0 + k] = <floating>(fws[k] + dws[k])
    free(ws)


@cython.boundscheck(False)
@cython.wraparound(False)
def logsumexp_b(const floating[:, :, :] x, const floating[:, :, :] b, floating[:, :] out,
                floating[:, :] sgn, int nthreads):
    """SciPy's weighted logsumexp: out = log|sum_c b exp(x)|, sgn its sign.

    Terms with b == 0 are dropped even where x is inf or nan.  Scalar two-pass code: this path
    is for correctness, not speed."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t r, o, k, c
    cdef double top, m, s, v, bv, res, sg, direct
    if outer == 0 or inner == 0:
        return
    with nogil:
        for r in prange(outer * inner, schedule='static', num_threads=nthreads):
            if inner == 1:   # no 64-bit division in the common case
                o = r
                k = 0
            else:
                o = r // inner
                k = r - o * inner
            top = -INFINITY
            for c in range(C):
                if b[o, c, k] != 0 and x[o, c, k] > top:
                    top = x[o, c, k]
            m = 0
            s = 0
            direct = 0
            for c in range(C):
                bv = b[o, c, k]
                if bv == 0:
                    continue
                v = x[o, c, k]
                if isfinite(top):
                    if v == top:
                        m = m + bv
                    else:
                        s = s + bv * fexp(v - top)
                direct = direct + bv * fexp(v)
            res = NAN
            sg = NAN
            if isfinite(top):
                if s != 0:
                    s = s / m
                sg = (1.0 if s + 1 > 0 else (-1.0 if s + 1 < 0 else 0.0)) * \
                     (1.0 if m > 0 else (-1.0 if m < 0 else 0.0))
                if s < -1:
                    s = -s - 2
                res = log1p(s) + log(fabs(m)) + top
            if not isfinite(res):
                # SciPy hands non-finite results to the direct formula.
                sg = 1.0 if direct > 0 else (-1.0 if direct < 0 else (0.0 if direct == 0 else NAN))
                res = log(fabs(direct))
            out[o, k] = <floating>res
            sgn[o, k] = <floating>sg


# --------------------------------------------------------------- softmax, log_softmax ----

@cython.boundscheck(False)
@cython.wraparound(False)
def softmax(const floating[:, :, :] x, floating[:, :, :] out, bint take_log, int nthreads):
    """out = softmax(x) or log_softmax(x) along the middle axis."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t s0 = x.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s2 = x.strides[2] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t o0 = out.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t o1 = out.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t o2 = out.strides[2] // <Py_ssize_t>sizeof(floating)
    cdef const floating *x0 = x_ptr(x)
    cdef floating *y0 = x_ptr(out)
    cdef Py_ssize_t r, o, k, j, it, nkb, k0, nk
    cdef RowStats st
    cdef floating logs
    cdef floating *fws = NULL
    cdef floating *tb = NULL
    cdef bint packed = False
    cdef double *dws = NULL
    cdef void *ws = NULL
    if x0 == NULL:
        return
    if not use_columns(inner, C, s1, s2):
        with nogil:
            for r in prange(outer * inner, schedule='static', num_threads=nthreads):
                if inner == 1:   # no 64-bit division in the common case
                    o = r
                    k = 0
                else:
                    o = r // inner
                    k = r - o * inner
                st = row_lse(x0 + o * s0 + k * s2, C, s1, 0, NULL, 0, NULL, 0, 0, 0)
                logs = <floating>st.logs
                if not take_log and st.top == INFINITY:
                    logs = NAN   # SciPy: exp(inf - inf) poisons the whole row
                vsoftmax(x0 + o * s0 + k * s2, C, s1, <floating>st.shift, logs,
                         y0 + o * o0 + k * o2, o1, take_log)
        return
    nkb = ceil_div(inner, COL_BLOCK)
    ws = workspace(nthreads, WS_BYTES)
    with nogil:
        for it in prange(outer * nkb, schedule='static', num_threads=nthreads):
            fws = <floating *>(<char *>ws + threadid() * WS_BYTES)
            dws = <double *>(<char *>ws + threadid() * WS_BYTES + 10 * COL_BLOCK * sizeof(double))
            o = it // nkb
            k0 = (it - o * nkb) * COL_BLOCK
            nk = inner - k0
            if nk > COL_BLOCK:
                nk = COL_BLOCK
            tb = <floating *>pack_buffer(ws, s2, threadid())
            packed = col_lse(x0 + o * s0 + k0 * s2, C, s1, nk, s2, 0, NULL, 0, fws, dws, tb,
                             k0 + nk < inner)
            if not take_log:
                for k in range(nk):
                    if fws[3 * COL_BLOCK + k] == INFINITY:
                        fws[COL_BLOCK + k] = NAN
            if packed:      # write the softmax in place in the packed block, then scatter it
                for j in range(C):
                    vcolsoftmax(tb + j * COL_BLOCK, nk, 1, fws, fws + COL_BLOCK,
                                tb + j * COL_BLOCK, 1, take_log)
                vunpack(tb, COL_BLOCK, C, nk, y0 + o * o0 + k0 * o2, o1, o2)
                continue
            for j in range(C):
                vcolsoftmax(x0 + o * s0 + j * s1 + k0 * s2, nk, s2, fws, fws + COL_BLOCK,
                            y0 + o * o0 + j * o1 + k0 * o2, o2, take_log)
    free(ws)


# ----------------------------------------------------------------- class targets ----

cdef struct TargetCheck:
    Py_ssize_t bad        # flat index of the first invalid target, -1 if none
    int64_t bad_value
    double denom          # sum of w[t] over kept targets (their count without weights)


cdef TargetCheck check_targets(const int64_t *t, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t ts0,
                               Py_ssize_t ts1, Py_ssize_t C, int64_t ignore_index,
                               const floating *w, Py_ssize_t sw) noexcept nogil:
    # One serial pass over the (n0, n1) targets: the first one outside [0, C) that is not
    # ignore_index, and the weight totals of the kept ones (w NULL: no weights), summed in a
    # fixed order.
    cdef Py_ssize_t i, j
    cdef int64_t v
    cdef TargetCheck r
    r.bad = -1
    r.bad_value = 0
    r.denom = 0
    for i in range(n0):
        for j in range(n1):
            v = t[i * ts0 + j * ts1]
            if v == ignore_index:
                continue
            if v < 0 or v >= C:
                r.bad = i * n1 + j
                r.bad_value = v
                return r
            r.denom += 1.0 if w == NULL else w[v * sw]
    return r


cdef struct BlockSum:
    double acc        # sum of the block's losses
    double den        # sum of its kept targets' weights
    int64_t brow      # its first invalid target's row (-1: none) ...
    int64_t bval      # ... and value


cdef BlockSum nll_block(const floating *x0, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2,
                        const int64_t *t0, Py_ssize_t ts0, Py_ssize_t ts1,
                        const floating *wp, Py_ssize_t sw, int64_t ignore_index,
                        Py_ssize_t C, Py_ssize_t inner, Py_ssize_t r0, Py_ssize_t r1,
                        floating *op, Py_ssize_t os0, Py_ssize_t os1, floating *gp,
                        Py_ssize_t g0, Py_ssize_t g1, Py_ssize_t g2,
                        double sigma) noexcept nogil:
    # NLL over rows [r0, r1): a gather.  The sums (and the first invalid target) come from
    # vnll_rows, in runs of rows with one stride: the whole block when inner == 1, else the
    # part of the block within each outer index; so the loss is the same number whether or
    # not per-row losses or the gradient are asked for.  Those are written afterwards, in a
    # second pass over the block's (now valid) targets, whose entries are still in cache.
    cdef BlockSum b
    cdef Py_ssize_t r, o, k, n, bad
    cdef int64_t tv
    cdef double wt, loss
    b.acc = 0
    b.den = 0
    b.brow = -1
    b.bval = 0
    r = r0
    while r < r1:
        if inner == 1:
            o = r
            k = 0
            n = r1 - r
        else:
            o = r // inner
            k = r - o * inner
            n = min(inner - k, r1 - r)
        bad = vnll_rows(x0 + o * s0 + k * s2, s0 if inner == 1 else s2, s1,
                        t0 + o * ts0 + k * ts1, ts0 if inner == 1 else ts1, n, C,
                        ignore_index, wp, sw, &b.acc, &b.den)
        if bad >= 0:
            b.brow = r + bad
            b.bval = t0[o * ts0 + (k + bad) * ts1] if inner > 1 else t0[(o + bad) * ts0]
            return b
        r += n
    if op == NULL and gp == NULL:
        return b
    for r in range(r0, r1):
        row_offsets(r, inner, &o, &k)
        tv = t0[o * ts0 + k * ts1]
        loss = 0
        # checked in the first pass, checked again: the caller's array could change between
        # the passes (another Python thread; the GIL is released), and must not send a write
        # out of bounds
        if tv != ignore_index and 0 <= tv < C:
            wt = 1.0 if wp == NULL else wp[tv * sw]
            loss = -wt * x0[o * s0 + tv * s1 + k * s2]
            if gp != NULL:
                gp[o * g0 + tv * g1 + k * g2] = <floating>(-sigma * wt)
        if op != NULL:
            op[o * os0 + k * os1] = <floating>loss
    return b


cdef struct ClassArgs:
    # One class_loss call as raw pointers and element strides, for the block functions below.
    # The floating arrays are void pointers (a struct cannot be fused); each block function
    # casts them to the type of its x0.
    const void *x
    Py_ssize_t outer, C, inner, s0, s1, s2
    const int64_t *t
    Py_ssize_t ts0, ts1
    const void *w              # class weights, NULL without
    Py_ssize_t sw
    int64_t ignore_index
    double eps
    bint is_nll, want_grad
    void *out                  # per-row losses (reduction "none"), NULL when not asked
    Py_ssize_t os0, os1
    void *grad                 # the gradient, NULL when not asked
    Py_ssize_t g0, g1, g2
    # set by run_class_loss
    int mode                   # 1: label smoothing (the row statistics include sum w (x - ref))
    bint plain                 # no weights, smoothing, gradient or per-row output
    bint columns               # the column traversal
    Py_ssize_t nkb             # column blocks per outer index
    double W, sigma            # summed class weights; the gradient's scale
    void *ws                   # the column traversal's per-thread workspace


cdef BlockSum rows_block(const floating *x0, ClassArgs a, Py_ssize_t blk) noexcept nogil:
    # Cross-entropy over the rows of block blk of the row traversal, in three passes: the
    # rows' statistics (and the targets' check), the logs of all their sums at once (one
    # vectorised pass, finish_logs_many, instead of a scalar log1p per row), then losses and
    # gradient.
    cdef Py_ssize_t C = a.C, inner = a.inner, s0 = a.s0, s1 = a.s1, s2 = a.s2
    cdef Py_ssize_t r0 = blk * ROW_BLOCK, r1 = min(r0 + ROW_BLOCK, a.outer * inner), i, o, k
    cdef const floating *wp = <const floating *>a.w
    # without smoothing the other classes' weights take no part in the gradient (a nan weight
    # must not reach rows whose target has a finite one: 0 * nan is nan)
    cdef const floating *gwp = wp if a.mode == 1 else NULL
    cdef floating *gp = <floating *>a.grad
    cdef floating *op = <floating *>a.out
    cdef double eps = a.eps, sigma = a.sigma, W = a.W, loss, wt
    cdef int64_t tv
    cdef RowStats st
    cdef RowStats sts[ROW_BLOCK]
    cdef floating top[ROW_BLOCK]
    cdef double lo[ROW_BLOCK]
    cdef double eq[ROW_BLOCK]
    cdef double logs[ROW_BLOCK]
    cdef int64_t tvs[ROW_BLOCK]     # the targets as read once (the caller's array may change)
    cdef BlockSum b
    b.acc = 0
    b.den = 0
    b.brow = -1
    b.bval = 0
    for i in range(r1 - r0):
        row_offsets(r0 + i, inner, &o, &k)
        tv = a.t[o * a.ts0 + k * a.ts1]
        tvs[i] = tv
        top[i] = 0      # rows without statistics: a sum of 1 (no nan from the shared log)
        lo[i] = 0
        eq[i] = 1
        if tv != a.ignore_index and (tv < 0 or tv >= C):
            if b.brow < 0:
                b.brow = r0 + i
                b.bval = tv
        elif tv != a.ignore_index or a.want_grad:
            sts[i] = row_stats(x0 + o * s0 + k * s2, C, s1,
                               0 if tv == a.ignore_index else a.mode, NULL, 0, wp, a.sw, 0, 0)
            top[i] = <floating>sts[i].top
            lo[i] = sts[i].lo
            eq[i] = sts[i].eq
    finish_logs_many(top, lo, eq, logs, r1 - r0)
    for i in range(r1 - r0):
        row_offsets(r0 + i, inner, &o, &k)
        tv = tvs[i]
        loss = 0
        if tv != a.ignore_index and (tv < 0 or tv >= C):
            continue
        if tv != a.ignore_index or a.want_grad:
            st = sts[i]
            st.logs = logs[i]
            if st.top == INFINITY:
                st.logs = NAN   # PyTorch: log_softmax of a row with +inf is nan
        if tv == a.ignore_index:
            if a.want_grad:
                # 0 * softmax, as PyTorch's backward: nan where the row is
                vgrad(x0 + o * s0 + k * s2, C, s1, <floating>st.shift, <floating>st.logs, 0, 0,
                      NULL, 0, gp + o * a.g0 + k * a.g2, a.g1)
        else:
            wt = 1.0 if wp == NULL else wp[tv * a.sw]
            b.den = b.den + wt
            loss = (1 - eps) * wt * (st.logs + (st.shift - x0[o * s0 + tv * s1 + k * s2]))
            if a.mode == 1:
                loss = loss + eps / C * (W * (st.logs + (st.shift - st.ref)) - st.acc)
            if a.want_grad:
                vgrad(x0 + o * s0 + k * s2, C, s1, <floating>st.shift, <floating>st.logs,
                      <floating>(sigma * ((1 - eps) * wt + (eps * W / C if a.mode == 1 else 0.0))),
                      <floating>(sigma * eps / C), gwp, a.sw, gp + o * a.g0 + k * a.g2, a.g1)
                gp[o * a.g0 + tv * a.g1 + k * a.g2] -= <floating>(sigma * (1 - eps) * wt)
        if op != NULL:
            op[o * a.os0 + k * a.os1] = <floating>loss
        b.acc = b.acc + loss
    return b


cdef BlockSum cols_block(const floating *x0, ClassArgs a, Py_ssize_t it,
                         int tid) noexcept nogil:
    # Cross-entropy over column block it of the column traversal, by thread tid (which picks
    # its workspace).
    cdef Py_ssize_t C = a.C, inner = a.inner, s0 = a.s0, s1 = a.s1, s2 = a.s2
    cdef Py_ssize_t o, k0, nk, k, j
    cdef floating *fws = <floating *>(<char *>a.ws + tid * WS_BYTES)
    cdef double *dws = <double *>(<char *>a.ws + tid * WS_BYTES + 10 * COL_BLOCK * sizeof(double))
    cdef floating *A = fws + 8 * COL_BLOCK
    cdef floating *Bv = fws + 9 * COL_BLOCK
    cdef floating *tb = <floating *>pack_buffer(a.ws, s2, tid)
    cdef const floating *wp = <const floating *>a.w
    cdef const floating *gwp = wp if a.mode == 1 else NULL
    cdef floating *gp = <floating *>a.grad
    cdef floating *op = <floating *>a.out
    cdef const int64_t *tr
    cdef double eps = a.eps, sigma = a.sigma, W = a.W, loss, wt
    cdef int64_t tv
    cdef bint packed
    cdef BlockSum b
    o = it // a.nkb
    k0 = (it - o * a.nkb) * COL_BLOCK
    nk = inner - k0
    if nk > COL_BLOCK:
        nk = COL_BLOCK
    tr = a.t + o * a.ts0 + k0 * a.ts1     # this block's targets, at stride a.ts1
    packed = col_lse(x0 + o * s0 + k0 * s2, C, s1, nk, s2, a.mode, wp, a.sw, fws, dws, tb,
                     k0 + nk < inner)
    for k in range(nk):
        if fws[3 * COL_BLOCK + k] == INFINITY:
            fws[COL_BLOCK + k] = NAN
            dws[k] = NAN
    b.acc = 0
    b.den = 0
    b.brow = -1
    b.bval = 0
    if a.plain:       # the common case, with the branches that cannot fire removed
        for k in range(nk):
            tv = tr[k * a.ts1]
            if tv == a.ignore_index:
                continue
            if tv < 0 or tv >= C:
                if b.brow < 0:
                    b.brow = o * inner + k0 + k
                    b.bval = tv
                continue
            b.den = b.den + 1
            b.acc = b.acc + (dws[k] + (fws[k] - x0[o * s0 + tv * s1 + (k0 + k) * s2]))
        return b
    for k in range(nk):
        tv = tr[k * a.ts1]
        loss = 0
        A[k] = 0
        Bv[k] = 0
        if tv != a.ignore_index and (tv < 0 or tv >= C):
            if b.brow < 0:
                b.brow = o * inner + k0 + k
                b.bval = tv
        elif tv != a.ignore_index:
            wt = 1.0 if wp == NULL else wp[tv * a.sw]
            b.den = b.den + wt
            loss = (1 - eps) * wt * (dws[k] + (fws[k] - x0[o * s0 + tv * s1 + (k0 + k) * s2]))
            if a.mode == 1:
                loss = loss + eps / C * (W * (dws[k] + (fws[k] - fws[2 * COL_BLOCK + k])) - dws[COL_BLOCK + k])
            A[k] = <floating>(sigma * ((1 - eps) * wt + (eps * W / C if a.mode == 1 else 0.0)))
            Bv[k] = <floating>(sigma * eps / C)
        if op != NULL:
            op[o * a.os0 + (k0 + k) * a.os1] = <floating>loss
        b.acc = b.acc + loss
    if a.want_grad and b.brow < 0:
        if packed:
            for j in range(C):      # the gradient in place in the packed block
                vcolgrad(tb + j * COL_BLOCK, nk, 1, fws, fws + COL_BLOCK, A, Bv,
                         1 if gwp == NULL else gwp[j * a.sw], tb + j * COL_BLOCK, 1)
            vunpack(tb, COL_BLOCK, C, nk, gp + o * a.g0 + k0 * a.g2, a.g1, a.g2)
        else:
            for j in range(C):
                vcolgrad(x0 + o * s0 + j * s1 + k0 * s2, nk, s2, fws, fws + COL_BLOCK, A, Bv,
                         1 if gwp == NULL else gwp[j * a.sw], gp + o * a.g0 + j * a.g1 + k0 * a.g2,
                         a.g2)
        for k in range(nk):
            tv = tr[k * a.ts1]
            if tv != a.ignore_index and tv >= 0 and tv < C:
                wt = 1.0 if wp == NULL else wp[tv * a.sw]
                gp[o * a.g0 + tv * a.g1 + (k0 + k) * a.g2] -= <floating>(sigma * (1 - eps) * wt)
    return b


cdef inline BlockSum class_block(const floating *x0, ClassArgs a, Py_ssize_t blk,
                                 int tid) noexcept nogil:
    if a.is_nll:
        return nll_block(x0, a.s0, a.s1, a.s2, a.t, a.ts0, a.ts1, <const floating *>a.w, a.sw,
                         a.ignore_index, a.C, a.inner, blk * ROW_BLOCK,
                         min((blk + 1) * ROW_BLOCK, a.outer * a.inner),
                         <floating *>a.out, a.os0, a.os1, <floating *>a.grad, a.g0, a.g1, a.g2,
                         a.sigma)
    if a.columns:
        return cols_block(x0, a, blk, tid)
    return rows_block(x0, a, blk)


cdef int run_class_loss(const floating *x0, ClassArgs *a, int reduction, int nthreads,
                        BlockSum *res) except -1:
    # The whole class_loss computation on a filled-in ClassArgs (x0 is a.x, typed).  Sets
    # *res: brow >= 0 is the flat index of the first invalid target (with its value in bval;
    # the outputs are then meaningless), else acc is the float64 sum of the per-row losses in
    # block order and den the summed weights of the kept targets.
    cdef Py_ssize_t nrows = a.outer * a.inner, nblocks, blk, j
    cdef const floating *wp = <const floating *>a.w
    cdef double *partials
    cdef int64_t *bads
    cdef TargetCheck chk
    cdef BlockSum bs
    res.acc = 0
    res.den = 0
    res.brow = -1
    res.bval = 0
    a.mode = 1 if (a.eps > 0 and not a.is_nll) else 0
    # no weights, smoothing, gradient or per-row output: the column path's per-row loop is
    # then a plain sum of lse - x[target] (the general loop gives the same values)
    a.plain = a.mode == 0 and wp == NULL and not a.want_grad and a.out == NULL
    a.W = a.C
    a.sigma = 1.0
    a.ws = NULL
    if (a.want_grad and reduction == 1) or nrows == 0:
        # only the gradient of the mean needs its scale first: a serial pre-pass
        with nogil:
            chk = check_targets(a.t, a.outer, a.inner, a.ts0, a.ts1, a.C, a.ignore_index, wp,
                                a.sw)
        if chk.bad >= 0:
            res.brow = chk.bad
            res.bval = chk.bad_value
            return 0
        if nrows == 0:
            res.den = chk.denom
            return 0
        # With no weight kept, PyTorch's gradient is 0 / 0 = nan on kept rows; ignored rows
        # get 0 * softmax.
        a.sigma = 1.0 / chk.denom if chk.denom != 0 else INFINITY
    if wp != NULL:
        a.W = 0
        for j in range(a.C):
            a.W += wp[j * a.sw]
    a.columns = use_columns(a.inner, a.C, a.s1, a.s2) and not a.is_nll
    if a.columns:
        a.nkb = ceil_div(a.inner, COL_BLOCK)
        nblocks = a.outer * a.nkb
        a.ws = workspace(nthreads if nblocks > 1 else 1, WS_BYTES)
    else:
        nblocks = ceil_div(nrows, ROW_BLOCK)
    if nthreads <= 1 or nblocks <= 1:
        # no parallel region (even a team of one costs about half a microsecond); the same
        # blocks, summed in the same order, so the same result
        with nogil:
            for blk in range(nblocks):
                bs = class_block(x0, a[0], blk, 0)
                if bs.brow >= 0:
                    res.brow = bs.brow
                    res.bval = bs.bval
                    break
                res.acc += bs.acc
                res.den += bs.den
        free(a.ws)
        return 0
    # per block: (sum of losses, sum of kept weights) and (first invalid row, its target)
    partials = <double *>malloc(2 * nblocks * sizeof(double))
    bads = <int64_t *>malloc(2 * nblocks * sizeof(int64_t))
    if partials == NULL or bads == NULL:
        free(partials)
        free(bads)
        free(a.ws)
        raise MemoryError()
    with nogil:
        for blk in prange(nblocks, schedule='static', num_threads=nthreads):
            bs = class_block(x0, a[0], blk, threadid())
            partials[2 * blk] = bs.acc
            partials[2 * blk + 1] = bs.den
            bads[2 * blk] = bs.brow
            bads[2 * blk + 1] = bs.bval
    free(a.ws)
    for blk in range(nblocks):
        if bads[2 * blk] >= 0:
            res.brow = bads[2 * blk]
            res.bval = bads[2 * blk + 1]
            break
        res.acc += partials[2 * blk]
        res.den += partials[2 * blk + 1]
    free(partials)
    free(bads)
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def class_loss(const floating[:, :, :] x, const int64_t[:, :] t, const floating[:] w,
               bint has_w, int64_t ignore_index, double eps, bint is_nll, int reduction,
               floating[:, :] out, floating[:, :, :] grad, bint want_grad, int nthreads):
    """Cross-entropy (or NLL when is_nll) with class-index targets, in one call.

    Targets are checked on the fly in the main pass (each block keeps its first invalid one,
    and blocks are read in order, so the report does not depend on threads); only the
    gradient of the mean needs its scale first and takes a serial pre-pass over the targets.

    reduction: 0 none (per-row losses into out), 1 mean, 2 sum.  The gradient, of the mean
    for reduction 1 and of the sum otherwise, goes into grad when want_grad (for NLL grad
    must arrive zero-filled).  Returns (bad, bad_value, total, denom): bad >= 0 is the flat
    index of the first invalid target (outputs are then meaningless); total is the float64
    sum of the per-row losses in a fixed order; denom the summed weights of the kept
    targets."""
    cdef ClassArgs a
    cdef BlockSum res
    a.x = x_ptr(x)
    a.outer, a.C, a.inner = x.shape[0], x.shape[1], x.shape[2]
    a.s0 = x.strides[0] // <Py_ssize_t>sizeof(floating)
    a.s1 = x.strides[1] // <Py_ssize_t>sizeof(floating)
    a.s2 = x.strides[2] // <Py_ssize_t>sizeof(floating)
    a.t = &t[0, 0] if t.shape[0] > 0 and t.shape[1] > 0 else NULL
    a.ts0 = t.strides[0] // 8
    a.ts1 = t.strides[1] // 8
    a.w = &w[0] if has_w and w.shape[0] > 0 else NULL
    a.sw = w.strides[0] // <Py_ssize_t>sizeof(floating) if has_w else 0
    a.ignore_index = ignore_index
    a.eps = eps
    a.is_nll = is_nll
    a.out = NULL
    a.os0 = a.os1 = 0
    if reduction == 0 and out.shape[0] > 0 and out.shape[1] > 0:
        a.out = &out[0, 0]
        a.os0 = out.strides[0] // <Py_ssize_t>sizeof(floating)
        a.os1 = out.strides[1] // <Py_ssize_t>sizeof(floating)
    a.want_grad = want_grad
    a.grad = NULL
    a.g0 = a.g1 = a.g2 = 0
    if want_grad:
        a.grad = x_ptr(grad)
        a.g0 = grad.strides[0] // <Py_ssize_t>sizeof(floating)
        a.g1 = grad.strides[1] // <Py_ssize_t>sizeof(floating)
        a.g2 = grad.strides[2] // <Py_ssize_t>sizeof(floating)
    run_class_loss(<const floating *>a.x, &a, reduction, nthreads, &res)
    if res.brow >= 0:
        return res.brow, res.bval, 0.0, 0.0
    return -1, 0, res.acc, res.den


def swap_classes(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, Py_ssize_t s0,
                 Py_ssize_t s1):
    """Whether the (outer, C, inner) view of a class-axis call is taken transposed, as
    (inner, C, outer) (see ClassView in _validation.py, which asks here)."""
    return is_swapped(outer, C, inner, s0, s1)


_F32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT32)
_F64 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT64)
_I64 = cnp.PyArray_DescrFromType(cnp.NPY_INT64)


@cython.boundscheck(False)
@cython.wraparound(False)
def class_loss_fast(input, target, weight, ignore_index, reduction, label_smoothing, axis,
                    return_grad, bint is_nll, for_work):
    """nll_loss or cross_entropy for their common call, without the general path's
    conversions and views: input a 2-D ndarray of NumPy's float32 or float64 dtype (native
    byte order, no metadata, aligned) with the classes on axis 1, target an ndarray of
    np.int64 of shape (N,) (np.longlong, a distinct dtype, goes the general way), no weights,
    ignore_index a Python int, reduction one of the three names, label_smoothing a Python
    float in [0, 1] (or the int 0 or 1), return_grad a bool, N and C not 0.

    Returns what the public function returns, or None for any other call, and for calls
    whose targets are invalid or (mean) all ignored: the caller then takes the general path,
    which converts, checks and raises.  This function reports no error itself (argument
    checking stays in _losses.py); it only recognises the call and computes it with the
    same kernels, in the same order, as the general path.  for_work(n) gives the thread
    count for n elements (_threads.for_work)."""
    cdef cnp.ndarray x, t, rows = None, grad = None
    cdef PyObject *descr
    cdef int typ, code, nthreads, overflow = 0
    cdef Py_ssize_t N, C, isz, xs0, xs1, ts
    cdef long long ii
    cdef double eps = 0.0, v
    cdef bint want_grad
    cdef cnp.npy_intp dims[2]
    cdef ClassArgs a
    cdef BlockSum res
    if weight is not None or type(input) is not cnp.ndarray or type(target) is not cnp.ndarray:
        return None
    if not (axis is None or (type(axis) is int and (axis == 1 or axis == -1))):
        return None
    if return_grad is True:
        want_grad = True
    elif return_grad is False:
        want_grad = False
    else:
        return None
    if type(reduction) is not str:
        return None
    if reduction == "mean":
        code = 1
    elif reduction == "sum":
        code = 2
    elif reduction == "none":
        code = 0
    else:
        return None
    if type(ignore_index) is not int:
        return None
    ii = PyLong_AsLongLongAndOverflow(ignore_index, &overflow)
    if overflow:
        return None
    if not is_nll:
        if type(label_smoothing) is float:
            eps = label_smoothing
        elif type(label_smoothing) is int and (label_smoothing == 0 or label_smoothing == 1):
            eps = label_smoothing
        else:
            return None
        if not 0.0 <= eps <= 1.0:
            return None
    x = input
    t = target
    if cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_NDIM(t) != 1:
        return None
    # NumPy's own float32 / float64 / int64 dtypes (native byte order, no metadata, which
    # the general path would carry over to the outputs)
    descr = <PyObject *>cnp.PyArray_DESCR(x)
    if descr == <PyObject *>_F32:
        typ, isz = cnp.NPY_FLOAT32, 4
    elif descr == <PyObject *>_F64:
        typ, isz = cnp.NPY_FLOAT64, 8
    else:
        return None
    if <PyObject *>cnp.PyArray_DESCR(t) != <PyObject *>_I64:
        return None
    if not (cnp.PyArray_ISALIGNED(x) and cnp.PyArray_ISALIGNED(t)):
        return None
    N = cnp.PyArray_DIM(x, 0)
    C = cnp.PyArray_DIM(x, 1)
    if N == 0 or C == 0 or cnp.PyArray_DIM(t, 0) != N:
        return None
    xs0 = cnp.PyArray_STRIDE(x, 0)
    xs1 = cnp.PyArray_STRIDE(x, 1)
    ts = cnp.PyArray_STRIDE(t, 0)
    if xs0 % isz != 0 or xs1 % isz != 0 or ts % 8 != 0:
        return None
    xs0 //= isz
    xs1 //= isz
    ts //= 8
    dims[0] = N
    dims[1] = C
    if code == 0:
        rows = cnp.PyArray_EMPTY(1, dims, typ, 0)
    if want_grad:
        grad = (cnp.PyArray_ZEROS(2, dims, typ, 0) if is_nll
                else cnp.PyArray_EMPTY(2, dims, typ, 0))
    # the views ClassView would make of (N, C) arrays and their (N,) companions
    a.C = C
    if is_swapped(N, C, 1, xs0, xs1):
        a.outer, a.inner, a.s0, a.s1, a.s2 = 1, N, 0, xs1, xs0
        a.ts0, a.ts1, a.os0, a.os1, a.g0, a.g1, a.g2 = 0, ts, 0, 1, 0, 1, C
    else:
        a.outer, a.inner, a.s0, a.s1, a.s2 = N, 1, xs0, xs1, 0
        a.ts0, a.ts1, a.os0, a.os1, a.g0, a.g1, a.g2 = ts, 0, 1, 0, C, 1, 0
    a.x = cnp.PyArray_DATA(x)
    a.t = <const int64_t *>cnp.PyArray_DATA(t)
    a.w = NULL
    a.sw = 0
    a.ignore_index = ii
    a.eps = eps
    a.is_nll = is_nll
    a.out = cnp.PyArray_DATA(rows) if code == 0 else NULL
    a.want_grad = want_grad
    a.grad = cnp.PyArray_DATA(grad) if want_grad else NULL
    nthreads = for_work(N * C)
    if typ == cnp.NPY_FLOAT32:
        run_class_loss(<const float *>a.x, &a, code, nthreads, &res)
    else:
        run_class_loss(<const double *>a.x, &a, code, nthreads, &res)
    if res.brow >= 0 or (code == 1 and res.den == 0):
        return None
    if code == 0:
        loss = rows
    else:
        v = res.acc if code == 2 else res.acc / res.den
        loss = np.float32(v) if typ == cnp.NPY_FLOAT32 else np.float64(v)
    return (loss, grad) if want_grad else loss


# ----------------------------------------------------------- probability targets ----

@cython.boundscheck(False)
@cython.wraparound(False)
def prob_loss(const floating[:, :, :] x, const floating[:, :, :] t, const floating[:] w,
              bint has_w, double eps, double sigma, floating[:, :] out, bint want_rows,
              floating[:, :, :] grad, bint want_grad, int nthreads):
    """Cross-entropy against class probabilities t (same 3-D view as x).

    Returns the float64 sum of per-row losses in a fixed order; see class_loss for out/grad."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t s0 = x.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s2 = x.strides[2] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t t0 = t.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t t1 = t.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t t2 = t.strides[2] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t g0 = 0, g1 = 0, g2 = 0
    cdef Py_ssize_t sw = w.strides[0] // <Py_ssize_t>sizeof(floating) if has_w else 0
    cdef const floating *x0 = x_ptr(x)
    cdef const floating *tp = x_ptr(t)
    cdef floating *gp = NULL
    cdef const floating *wp = &w[0] if has_w and w.shape[0] > 0 else NULL
    cdef Py_ssize_t nrows = outer * inner, nblocks, blk, r, r1, o, k
    cdef double *partials
    cdef double total, acc, loss
    cdef floating a = <floating>(1 - eps), b = <floating>(eps / C) if C > 0 else 0
    cdef RowStats st
    if nrows == 0:
        return 0.0
    if want_grad:
        g0 = grad.strides[0] // <Py_ssize_t>sizeof(floating)
        g1 = grad.strides[1] // <Py_ssize_t>sizeof(floating)
        g2 = grad.strides[2] // <Py_ssize_t>sizeof(floating)
        gp = x_ptr(grad)
    nblocks = ceil_div(nrows, ROW_BLOCK)
    partials = <double *>malloc(nblocks * sizeof(double))
    if partials == NULL:
        raise MemoryError()
    with nogil:
        for blk in prange(nblocks, schedule='static', num_threads=nthreads):
            acc = 0
            r1 = (blk + 1) * ROW_BLOCK
            if r1 > nrows:
                r1 = nrows
            for r in range(blk * ROW_BLOCK, r1):
                if inner == 1:   # no 64-bit division in the common case
                    o = r
                    k = 0
                else:
                    o = r // inner
                    k = r - o * inner
                st = row_lse(x0 + o * s0 + k * s2, C, s1, 2, tp + o * t0 + k * t2, t1, wp, sw,
                        a, b)
                if st.top == INFINITY:
                    st.logs = NAN
                # sum_j w t' (lse - x_j) = tw (logs + shift - ref) - sum_j w t' (x_j - ref)
                loss = st.tw * (st.logs + (st.shift - st.ref)) - st.acc if C > 0 else 0.0
                if want_grad:
                    vgradprob(x0 + o * s0 + k * s2, C, s1, <floating>st.shift,
                              <floating>st.logs, <floating>(sigma * st.tw), <floating>sigma,
                              tp + o * t0 + k * t2, t1, wp, sw, a, b,
                              gp + o * g0 + k * g2, g1)
                if want_rows:
                    out[o, k] = <floating>loss
                acc = acc + loss
            partials[blk] = acc
    total = sum_partials(partials, nblocks)
    free(partials)
    return total
