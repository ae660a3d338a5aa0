# fastnll kernels for the elementwise likelihoods (binary cross-entropy with logits, Gaussian
# NLL, Poisson NLL, KL divergence) and for entropy.  Included by every _kern_*.pyx after
# _kernels.pxi.
#
# Design
# (a) Operands arrive as 3-D views of one common shape (the wrapper broadcasts them, with zero
#     strides where an operand is broadcast, and merges dimensions jointly), so the kernel has
#     one loop: the flattened n0*n1*n2 elements cut into fixed blocks of PW_BLOCK elements,
#     blocks spread over threads, each block walked as runs along the last axis.
# (b) Per-element maths lives in small `cdef inline` functions (loss and derivatives in double),
#     selected by a `kind` code; the loss formulas are PyTorch's numerically stable ones.
# (c) Sums are taken per block in float64 and the block partials added in block order, so
#     mean and sum do not depend on the thread count.
from libc.math cimport fabs, M_PI
from fastnll._lse cimport fnl_log_f64 as flog, fnl_log1p_pos_f64, fnl_sum_f64   # no libm

cdef enum:
    PW_BLOCK = 4096
    PW_CHUNK = 256     # elements per chunk of the unit-stride path

cdef enum:
    KIND_BCE = 0       # a = weight, b = pos_weight
    KIND_GAUSS = 1     # a = var; p0 = eps; flag 1 = full
    KIND_POISSON = 2   # p0 = eps; flag 1 = full, flag 2 = log_input
    KIND_KL = 3        # flag 4 = log_target

# What one element gives: its loss and the derivatives with respect to x and to a (var).
# Returned by value, never through pointers: inside prange only assigned variables are private.
cdef struct PwOut:
    double loss
    double dx
    double da

cdef enum:
    FLAG_FULL = 1
    FLAG_LOG_INPUT = 2
    FLAG_LOG_TARGET = 4
    FLAG_HAS_A = 8        # a is a real operand (else it is all ones, never read)
    FLAG_HAS_B = 16


cdef inline PwOut closs_bce(double x, double y, double w, double pw) noexcept nogil:
    # (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y; softplus(-x) = log1p(e^-|x|) + max(-x, 0)
    cdef double lw = 1 + (pw - 1) * y
    cdef double e = fexp(-fabs(x))
    cdef double sp = fnl_log1p_pos_f64(e) + (-x if x < 0 else 0.0)
    cdef double sig_neg = (e / (1 + e)) if x >= 0 else (1 / (1 + e))   # sigmoid(-x)
    cdef PwOut r
    r.loss = w * ((1 - y) * x + lw * sp)
    r.dx = w * ((1 - y) - lw * sig_neg)
    r.da = 0
    return r


cdef inline PwOut closs_gauss(double x, double y, double var, double eps,
                              bint full) noexcept nogil:
    # var is clamped to eps, and the derivative taken at the clamped value (PyTorch clamps a
    # copy of var under no_grad, so the gradient flows through the clamp unchanged).
    cdef double v = eps if var < eps else var   # nan stays nan, as in PyTorch
    cdef double d = x - y
    cdef PwOut r
    r.loss = 0.5 * (flog(v) + d * d / v)
    if full:
        r.loss += 0.5 * flog(2 * M_PI)
    r.dx = d / v
    r.da = 0.5 * (1 / v - d * d / (v * v))
    return r


cdef inline PwOut closs_poisson(double x, double y, double eps, int flags) noexcept nogil:
    cdef double e
    cdef PwOut r
    r.da = 0
    if flags & FLAG_LOG_INPUT:
        e = fexp(x)
        r.loss = e - y * x
        r.dx = e - y
    else:
        r.loss = x - y * flog(x + eps)
        r.dx = 1 - y / (x + eps)
    if (flags & FLAG_FULL) and y > 1:
        # Stirling's approximation of log(y!)
        r.loss += y * flog(y) - y + 0.5 * flog(2 * M_PI * y)
    return r


cdef inline PwOut closs_kl(double x, double y, int flags) noexcept nogil:
    cdef double e
    cdef PwOut r
    r.da = 0
    if flags & FLAG_LOG_TARGET:
        e = fexp(y)
        r.loss = e * (y - x)
        r.dx = -e
    else:
        # xlogy(y, y) - y x: a zero target contributes nothing
        r.loss = (0.0 if y == 0 else y * flog(y)) - y * x
        r.dx = -y
    return r


cdef double unit_run(int kind, int flags, double p0, double sigma, Py_ssize_t n,
                     const floating *xp, const floating *yp, const floating *ap,
                     const floating *bp, const floating *ones, floating *op, floating *gp,
                     floating *gap, double *buf) noexcept nogil:
    # n elements, every operand with unit stride (ap/bp NULL when absent), in chunks of
    # PW_CHUNK: one branch-free loop per kind fills buf (losses, then d/dx, then d/da), the
    # vector sum and the output copies follow.  Returns the sum of the losses.
    cdef Py_ssize_t c0 = 0, cn, j
    cdef double acc = 0, e
    cdef bint full = flags & FLAG_FULL
    cdef const floating *xa
    cdef const floating *ya
    cdef const floating *aa
    cdef const floating *ba
    cdef PwOut r
    while c0 < n:
        cn = n - c0
        if cn > PW_CHUNK:
            cn = PW_CHUNK
        xa = xp + c0
        ya = yp + c0
        aa = ones if ap == NULL else ap + c0
        ba = ones if bp == NULL else bp + c0
        if kind == KIND_BCE:
            for j in range(cn):
                r = closs_bce(xa[j], ya[j], aa[j], ba[j])
                buf[j] = r.loss
                buf[PW_CHUNK + j] = r.dx
        elif kind == KIND_GAUSS:
            for j in range(cn):
                r = closs_gauss(xa[j], ya[j], aa[j], p0, full)
                buf[j] = r.loss
                buf[PW_CHUNK + j] = r.dx
                buf[2 * PW_CHUNK + j] = r.da
        elif kind == KIND_POISSON and flags & FLAG_LOG_INPUT and not full:
            for j in range(cn):          # the common case, as a straight loop
                e = fexp(xa[j])
                buf[j] = e - ya[j] * <double>xa[j]
                buf[PW_CHUNK + j] = e - ya[j]
        elif kind == KIND_POISSON:
            for j in range(cn):
                r = closs_poisson(xa[j], ya[j], p0, flags)
                buf[j] = r.loss
                buf[PW_CHUNK + j] = r.dx
        elif not flags & FLAG_LOG_TARGET:
            for j in range(cn):          # xlogy(y, y) - y x, as a straight loop
                e = ya[j]
                buf[j] = (0.0 if e == 0 else e * flog(e)) - e * <double>xa[j]
                buf[PW_CHUNK + j] = -e
        else:
            for j in range(cn):
                r = closs_kl(xa[j], ya[j], flags)
                buf[j] = r.loss
                buf[PW_CHUNK + j] = r.dx
        acc += fnl_sum_f64(buf, cn)
        if op != NULL:
            for j in range(cn):
                op[c0 + j] = <floating>buf[j]
        if gp != NULL:
            for j in range(cn):
                gp[c0 + j] = <floating>(sigma * buf[PW_CHUNK + j])
        if gap != NULL:
            for j in range(cn):
                gap[c0 + j] = <floating>(sigma * buf[2 * PW_CHUNK + j])
        c0 += cn
    return acc


@cython.boundscheck(False)
@cython.wraparound(False)
def pointwise_loss(int kind, const floating[:, :, :] x, const floating[:, :, :] y,
                   const floating[:, :, :] a, const floating[:, :, :] b, double p0, int flags,
                   double sigma, floating[:, :, :] out, bint want_rows,
                   floating[:, :, :] gx, floating[:, :, :] ga, bint want_grad, int nthreads):
    """Elementwise loss of one kind over a common 3-D shape.

    Writes per-element losses into out when want_rows, sigma-scaled derivatives with respect
    to x (and to a for the Gaussian's var, into ga) when want_grad, and returns the float64
    sum of the losses in a fixed order."""
    cdef Py_ssize_t n0 = x.shape[0], n1 = x.shape[1], n2 = x.shape[2]
    cdef Py_ssize_t total_n = n0 * n1 * n2
    cdef Py_ssize_t nblocks = ceil_div(total_n, PW_BLOCK), blk, f, f1, r, i0, i1, i2, run, j
    cdef double acc, total
    cdef PwOut res
    cdef double *partials
    cdef bint full = flags & FLAG_FULL
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint has_a = flags & FLAG_HAS_A, has_b = flags & FLAG_HAS_B
    # the unit-stride path: every operand read or written is contiguous along the last axis
    cdef bint unit = (x.strides[2] == isz and y.strides[2] == isz
                      and (not has_a or a.strides[2] == isz)
                      and (not has_b or b.strides[2] == isz)
                      and (not want_rows or out.strides[2] == isz)
                      and (not want_grad or gx.strides[2] == isz)
                      and (not (want_grad and kind == KIND_GAUSS) or ga.strides[2] == isz))
    cdef floating *ones = NULL
    cdef double *bufs = NULL
    cdef double *buf
    if total_n == 0:
        return 0.0
    partials = <double *>malloc(nblocks * sizeof(double))
    if unit:
        ones = <floating *>malloc(PW_CHUNK * sizeof(floating))
        bufs = <double *>malloc((nthreads if nthreads > 0 else 1) * 3 * PW_CHUNK * sizeof(double))
    if partials == NULL or (unit and (ones == NULL or bufs == NULL)):
        free(partials)
        free(ones)
        free(bufs)
        raise MemoryError()
    if unit:
        for j in range(PW_CHUNK):
            ones[j] = 1
    with nogil:
        for blk in prange(nblocks, schedule='static', num_threads=nthreads):
            acc = 0
            buf = NULL
            if unit:
                buf = bufs + threadid() * 3 * PW_CHUNK
            f = blk * PW_BLOCK
            f1 = f + PW_BLOCK
            if f1 > total_n:
                f1 = total_n
            while f < f1:
                r = f // n2
                i2 = f - r * n2
                i0 = r // n1
                i1 = r - i0 * n1
                run = n2 - i2
                if run > f1 - f:
                    run = f1 - f
                if unit:
                    acc = acc + unit_run(
                        kind, flags, p0, sigma, run, &x[i0, i1, i2], &y[i0, i1, i2],
                        &a[i0, i1, i2] if has_a else NULL, &b[i0, i1, i2] if has_b else NULL,
                        ones, &out[i0, i1, i2] if want_rows else NULL,
                        &gx[i0, i1, i2] if want_grad else NULL,
                        &ga[i0, i1, i2] if (want_grad and kind == KIND_GAUSS) else NULL, buf)
                    f = f + run
                    continue
                for j in range(i2, i2 + run):
                    if kind == KIND_BCE:
                        res = closs_bce(x[i0, i1, j], y[i0, i1, j],
                                        a[i0, i1, j] if has_a else 1.0,
                                        b[i0, i1, j] if has_b else 1.0)
                    elif kind == KIND_GAUSS:
                        res = closs_gauss(x[i0, i1, j], y[i0, i1, j], a[i0, i1, j], p0, full)
                    elif kind == KIND_POISSON:
                        res = closs_poisson(x[i0, i1, j], y[i0, i1, j], p0, flags)
                    else:
                        res = closs_kl(x[i0, i1, j], y[i0, i1, j], flags)
                    if want_rows:
                        out[i0, i1, j] = <floating>res.loss
                    if want_grad:
                        gx[i0, i1, j] = <floating>(sigma * res.dx)
                        if kind == KIND_GAUSS:
                            ga[i0, i1, j] = <floating>(sigma * res.da)
                    acc = acc + res.loss
                f = f + run
            partials[blk] = acc
    total = sum_partials(partials, nblocks)
    free(partials)
    free(ones)
    free(bufs)
    return total


# ------------------------------------------------------------------------- entropy ----

@cython.boundscheck(False)
@cython.wraparound(False)
def first_negative(const floating[:, :, :] p):
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


@cython.boundscheck(False)
@cython.wraparound(False)
def entropy(const floating[:, :, :] p, const floating[:, :, :] q, bint has_q, double scale,
            floating[:, :] out, int nthreads):
    """out[o, k] = scale * H(p[o, :, k]) or scale * D(p || q), both normalised along the middle
    axis first (SciPy's scipy.stats.entropy)."""
    cdef Py_ssize_t outer = p.shape[0], C = p.shape[1], inner = p.shape[2]
    cdef Py_ssize_t r, o, k, c
    cdef double sp, sq, s, pv, qv
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
                        s = s + pv * flog(pv / qv)
                    elif pv == 0 and qv >= 0:
                        pass
                    elif pv != pv or qv != qv:
                        s = s + pv + qv
                    else:
                        s = s + INFINITY
                else:
                    # entr: -p log p for p > 0, 0 at 0
                    if pv > 0:
                        s = s - pv * flog(pv)
                    elif pv != 0:
                        s = s + pv   # nan propagates (negatives were refused)
            out[o, k] = <floating>(s * scale)
