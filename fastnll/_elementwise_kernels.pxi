# The elementwise likelihoods' kernel: binary cross-entropy with logits, Gaussian NLL,
# Poisson NLL, KL divergence.
#
# Design
# (a) Operands arrive as 3-D views of one common shape (the wrapper broadcasts them, with zero
#     strides where an operand is broadcast, and merges dimensions jointly: joint_3d in
#     _layout.py), so the kernel has one loop: the flattened n0*n1*n2 elements cut into fixed
#     blocks of EW_BLOCK elements, blocks spread over threads, each block walked as runs along
#     the last axis.
# (b) Per-element maths lives in small `cdef inline` functions (loss and derivatives in double,
#     closs_*), selected by the `kind` (an Elementwise code); the loss formulas are PyTorch's
#     numerically stable ones.  When every operand has unit stride along the last axis, a
#     run is cut into chunks of EW_CHUNK and each kind gets its own branch-free loop.
# (c) Sums are taken per block in float64 and the block partials added in block order, so
#     mean and sum do not depend on the thread count.
from libc.math cimport M_PI
from fastnll._loops cimport (
    FNL_BCE_F32_MAX, fnl_bce_f32, fnl_bce_f32_takes, fnl_bce_unit_f32, fnl_exp_f64, fnl_log_f64,
    fnl_log1p_pos_f64, fnl_loss_dx, fnl_sum_f64,
)

cdef enum:
    EW_BLOCK = 4096     # elements per block (the unit of threads and of the fixed-order sum)
    EW_CHUNK = 256      # elements per chunk of the unit-stride path

cdef enum ElementwiseFlag:
    # elementwise_loss's options as bits, for the nogil loops
    FLAG_FULL = 1           # Gaussian, Poisson: add the constant terms
    FLAG_LOG_INPUT = 2      # Poisson: the input holds log-rates
    FLAG_LOG_TARGET = 4     # KL: the target holds log-probabilities

# What one element gives: its loss and the derivatives with respect to x and to a (var).
# Returned by value, never through pointers: inside prange only assigned variables are private.
cdef struct ElementLoss:
    double loss
    double dx
    double da


cdef inline ElementLoss closs_bce(double x, double y, double w, double pw) noexcept nogil:
    # (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y; softplus(-x) = log1p(e^-|x|) + max(-x, 0).
    # A finite negative x (y and pw finite) takes the same without cancellation, as
    # fnl_bce_f32 does: lw log1p(e) - pw y x, and the derivative lw sigmoid(x) - pw y.
    cdef double lw = 1 + (pw - 1) * y
    cdef double e = fnl_exp_f64(-fabs(x))
    cdef double lp = fnl_log1p_pos_f64(e)
    cdef bint tail = x < 0 and x > -INFINITY and isfinite(y) and isfinite(pw)
    cdef double sp = lp if tail else lp + (-x if x < 0 else 0.0)
    cdef double a = -pw * y if tail else 1 - y
    cdef double sig = (e / (1 + e)) if x >= 0 or tail else (1 / (1 + e))
    cdef ElementLoss r
    r.loss = w * (a * x + lw * sp)
    r.dx = w * (a + lw * (sig if tail else -sig))
    r.da = 0
    return r


cdef inline ElementLoss closs_bce_t(floating x, floating y, floating w,
                                    floating pw) noexcept nogil:
    # closs_bce of an element of type floating: float elements of |x| <= FNL_BCE_F32_MAX take
    # fnl_bce_f32 (its transcendental parts in float), as the unit-stride loop of float runs
    # does; others (nan, infinities, larger logits) the double loss
    cdef fnl_loss_dx p
    cdef ElementLoss r
    if floating is float:
        if fabs(x) <= FNL_BCE_F32_MAX:
            p = fnl_bce_f32(x, y, w, pw)
            r.loss = p.loss
            r.dx = p.dx
            r.da = 0
            return r
    return closs_bce(x, y, w, pw)


cdef inline ElementLoss closs_gauss(double x, double y, double var, double eps,
                                    bint full) noexcept nogil:
    # var is clamped to eps, and the derivative taken at the clamped value (PyTorch clamps a
    # copy of var under no_grad, so the gradient flows through the clamp unchanged).
    cdef double v = eps if var < eps else var   # nan stays nan, as in PyTorch
    cdef double d = x - y
    cdef ElementLoss r
    r.loss = 0.5 * (fnl_log_f64(v) + d * d / v)
    if full:
        r.loss += 0.5 * fnl_log_f64(2 * M_PI)
    r.dx = d / v
    r.da = 0.5 * (1 / v - d * d / (v * v))
    return r


cdef inline ElementLoss closs_poisson(double x, double y, double eps, int flags) noexcept nogil:
    cdef double e
    cdef ElementLoss r
    r.da = 0
    if flags & FLAG_LOG_INPUT:
        e = fnl_exp_f64(x)
        r.loss = e - y * x
        r.dx = e - y
    else:
        r.loss = x - y * fnl_log_f64(x + eps)
        r.dx = 1 - y / (x + eps)
    if (flags & FLAG_FULL) and y > 1:
        # Stirling's approximation of log(y!)
        r.loss += y * fnl_log_f64(y) - y + 0.5 * fnl_log_f64(2 * M_PI * y)
    return r


cdef inline ElementLoss closs_kl(double x, double y, int flags) noexcept nogil:
    cdef double e
    cdef ElementLoss r
    r.da = 0
    if flags & FLAG_LOG_TARGET:
        e = fnl_exp_f64(y)
        r.loss = e * (y - x)
        r.dx = -e
    else:
        # xlogy(y, y) - y x: a zero target contributes nothing
        r.loss = (0.0 if y == 0 else y * fnl_log_f64(y)) - y * x
        r.dx = -y
    return r


cdef double unit_run(Elementwise kind, int flags, double eps, double sigma, Py_ssize_t n,
                     const floating *x, const floating *y, const floating *a,
                     const floating *b, const floating *ones, floating *rows, floating *g,
                     floating *g_a, double *buf) noexcept nogil:
    # n elements, every operand with unit stride (a, b NULL when absent; rows, g, g_a NULL
    # when not asked), in chunks of EW_CHUNK: one branch-free loop per kind fills buf (losses,
    # then d/dx, then d/da), the vector sum and the output copies follow.  Returns the sum of
    # the losses.
    cdef Py_ssize_t c0 = 0, cn, j
    cdef double acc = 0, e
    cdef bint full = flags & FLAG_FULL
    cdef const floating *xc
    cdef const floating *yc
    cdef const floating *ac
    cdef const floating *bc
    cdef ElementLoss r
    while c0 < n:
        cn = n - c0
        if cn > EW_CHUNK:
            cn = EW_CHUNK
        xc = x + c0
        yc = y + c0
        ac = ones if a == NULL else a + c0
        bc = ones if b == NULL else b + c0
        if kind == BCE:
            if floating is float and fnl_bce_f32_takes(xc, cn):
                fnl_bce_unit_f32(xc, yc, ac, bc, cn, buf, buf + EW_CHUNK)
            else:           # (a chunk with a large or special logit: element by element)
                for j in range(cn):
                    r = closs_bce_t(xc[j], yc[j], ac[j], bc[j])
                    buf[j] = r.loss
                    buf[EW_CHUNK + j] = r.dx
        elif kind == GAUSSIAN:
            for j in range(cn):
                r = closs_gauss(xc[j], yc[j], ac[j], eps, full)
                buf[j] = r.loss
                buf[EW_CHUNK + j] = r.dx
                buf[2 * EW_CHUNK + j] = r.da
        elif kind == POISSON and flags & FLAG_LOG_INPUT and not full:
            for j in range(cn):          # the common case, as a straight loop
                e = fnl_exp_f64(xc[j])
                buf[j] = e - yc[j] * <double>xc[j]
                buf[EW_CHUNK + j] = e - yc[j]
        elif kind == POISSON:
            for j in range(cn):
                r = closs_poisson(xc[j], yc[j], eps, flags)
                buf[j] = r.loss
                buf[EW_CHUNK + j] = r.dx
        elif not flags & FLAG_LOG_TARGET:
            for j in range(cn):          # xlogy(y, y) - y x, as a straight loop
                e = yc[j]
                buf[j] = (0.0 if e == 0 else e * fnl_log_f64(e)) - e * <double>xc[j]
                buf[EW_CHUNK + j] = -e
        else:
            for j in range(cn):
                r = closs_kl(xc[j], yc[j], flags)
                buf[j] = r.loss
                buf[EW_CHUNK + j] = r.dx
        acc += fnl_sum_f64(buf, cn)
        if rows != NULL:
            for j in range(cn):
                rows[c0 + j] = <floating>buf[j]
        if g != NULL:
            for j in range(cn):
                g[c0 + j] = <floating>(sigma * buf[EW_CHUNK + j])
        if g_a != NULL:
            for j in range(cn):
                g_a[c0 + j] = <floating>(sigma * buf[2 * EW_CHUNK + j])
        c0 += cn
    return acc


@cython.boundscheck(False)
@cython.wraparound(False)
def elementwise_loss(Elementwise kind, const floating[:, :, :] x not None,
                     const floating[:, :, :] y not None,
                     const floating[:, :, :] a, const floating[:, :, :] b, double eps,
                     bint full, bint log_input, bint log_target, double sigma,
                     floating[:, :, :] rows, floating[:, :, :] grad,
                     floating[:, :, :] grad_a, int nthreads):
    """Elementwise loss of one kind over a common 3-D shape.

    a (BCE's weight, the Gaussian's var) and b (BCE's pos_weight) may be None.  Writes
    per-element losses into rows, sigma-scaled derivatives with respect to x into grad, and
    (Gaussian) with respect to a into grad_a, each when not None; returns the float64 sum of
    the losses in a fixed order."""
    cdef View3 none = View3(NULL, 0, 0, 0)
    cdef View3 xv = view3(x)
    cdef int flags = ((FLAG_FULL if full else 0) | (FLAG_LOG_INPUT if log_input else 0)
                      | (FLAG_LOG_TARGET if log_target else 0))
    if kind == GAUSSIAN and a is None:
        raise ValueError("elementwise_loss: the Gaussian needs a (its var)")
    return elementwise_core(kind, <const floating *>xv.data, x.shape[0], x.shape[1], x.shape[2],
                            xv, view3(y), view3(a) if a is not None else none,
                            view3(b) if b is not None else none, eps, flags, sigma,
                            view3(rows) if rows is not None else none,
                            view3(grad) if grad is not None else none,
                            view3(grad_a) if grad_a is not None else none, nthreads)


cdef inline floating *at3(View3 v, floating *typed, Py_ssize_t i0, Py_ssize_t i1,
                          Py_ssize_t i2) noexcept nogil:
    # the address of element (i0, i1, i2) of v (typed: only its type matters), NULL without v
    if v.data == NULL:
        return NULL
    return <floating *>v.data + i0 * v.s0 + i1 * v.s1 + i2 * v.s2


cdef struct EwCall:
    # one elementwise_core call, for ew_block (the floating arrays' type is x0's)
    Elementwise kind
    int flags
    double eps, sigma
    Py_ssize_t n1, n2, total_n
    View3 x, y, a, b, rows, grad, grad_a
    bint unit
    void *ones
    # FNL_F16 or FNL_BF16 (else 0): x, y, a, b, rows and grad hold 16-bit floats, grad_a
    # float32 (half_elementwise_loss)
    int half


cdef double ew_block(const floating *x0, const EwCall *e, Py_ssize_t blk,
                     double *buf) noexcept nogil:
    # elementwise_core's block blk of EW_BLOCK elements: the sum of their losses (their
    # outputs written); buf: the thread's unit_run buffer (unit path)
    cdef Elementwise kind = e.kind
    cdef int flags = e.flags
    cdef double eps = e.eps, sigma = e.sigma, acc = 0
    cdef Py_ssize_t n1 = e.n1, n2 = e.n2
    cdef View3 x = e.x, y = e.y, a = e.a, b = e.b, rows = e.rows, grad = e.grad
    cdef View3 grad_a = e.grad_a
    cdef bint full = (flags & FLAG_FULL) != 0
    cdef bint has_a = a.data != NULL, has_b = b.data != NULL
    cdef bint want_rows = rows.data != NULL, want_grad = grad.data != NULL
    cdef bint want_grad_a = grad_a.data != NULL
    cdef const floating *xp = x0
    cdef const floating *yp = <const floating *>y.data
    cdef const floating *ap = <const floating *>a.data
    cdef const floating *bp = <const floating *>b.data
    cdef floating *rp = <floating *>rows.data
    cdef floating *gp = <floating *>grad.data
    cdef floating *gap = <floating *>grad_a.data
    cdef Py_ssize_t f = blk * EW_BLOCK, f1 = f + EW_BLOCK, r, i0, i1, i2, run, j
    cdef ElementLoss res
    if floating is float:
        if e.half:
            return half_ew_block(e, blk, buf)
    if f1 > e.total_n:
        f1 = e.total_n
    while f < f1:
        r = f // n2
        i2 = f - r * n2
        i0 = r // n1
        i1 = r - i0 * n1
        run = n2 - i2
        if run > f1 - f:
            run = f1 - f
        if e.unit:
            acc = acc + unit_run(
                kind, flags, eps, sigma, run, at3(x, rp, i0, i1, i2),
                at3(y, rp, i0, i1, i2), at3(a, rp, i0, i1, i2), at3(b, rp, i0, i1, i2),
                <const floating *>e.ones, at3(rows, rp, i0, i1, i2), at3(grad, rp, i0, i1, i2),
                at3(grad_a, rp, i0, i1, i2), buf)
            f = f + run
            continue
        for j in range(i2, i2 + run):
            if kind == BCE:
                res = closs_bce_t(xp[i0 * x.s0 + i1 * x.s1 + j * x.s2],
                                  yp[i0 * y.s0 + i1 * y.s1 + j * y.s2],
                                  ap[i0 * a.s0 + i1 * a.s1 + j * a.s2] if has_a else 1,
                                  bp[i0 * b.s0 + i1 * b.s1 + j * b.s2] if has_b else 1)
            elif kind == GAUSSIAN:
                res = closs_gauss(xp[i0 * x.s0 + i1 * x.s1 + j * x.s2],
                                  yp[i0 * y.s0 + i1 * y.s1 + j * y.s2],
                                  ap[i0 * a.s0 + i1 * a.s1 + j * a.s2], eps, full)
            elif kind == POISSON:
                res = closs_poisson(xp[i0 * x.s0 + i1 * x.s1 + j * x.s2],
                                    yp[i0 * y.s0 + i1 * y.s1 + j * y.s2], eps, flags)
            else:
                res = closs_kl(xp[i0 * x.s0 + i1 * x.s1 + j * x.s2],
                               yp[i0 * y.s0 + i1 * y.s1 + j * y.s2], flags)
            if want_rows:
                rp[i0 * rows.s0 + i1 * rows.s1 + j * rows.s2] = <floating>res.loss
            if want_grad:
                gp[i0 * grad.s0 + i1 * grad.s1 + j * grad.s2] = <floating>(sigma * res.dx)
            if want_grad_a:
                gap[i0 * grad_a.s0 + i1 * grad_a.s1 + j * grad_a.s2] = \
                    <floating>(sigma * res.da)
            acc = acc + res.loss
        f = f + run
    return acc


cdef double elementwise_core(Elementwise kind, const floating *x0, Py_ssize_t n0, Py_ssize_t n1,
                             Py_ssize_t n2, View3 x, View3 y, View3 a, View3 b, double eps,
                             int flags, double sigma, View3 rows, View3 grad, View3 grad_a,
                             int nthreads, int half=0) except? -1:
    # elementwise_loss on raw views (x0 is x.data, typed; a, b, rows, grad and grad_a have data
    # NULL when absent, and the Gaussian has a): the def above and the compiled calls
    # (_compiled_calls.pxi) both run it
    cdef EwCall e
    cdef Py_ssize_t nblocks, blk, j
    cdef double total
    cdef double *partials
    cdef floating *ones = NULL
    cdef double *bufs = NULL
    e.kind, e.flags, e.eps, e.sigma = kind, flags, eps, sigma
    e.n1, e.n2, e.total_n = n1, n2, n0 * n1 * n2
    e.x, e.y, e.a, e.b, e.rows, e.grad, e.grad_a = x, y, a, b, rows, grad, grad_a
    e.half = half
    # the unit-stride path: every operand read or written is contiguous along the last axis
    e.unit = (x.s2 == 1 and y.s2 == 1 and (a.data == NULL or a.s2 == 1)
              and (b.data == NULL or b.s2 == 1) and (rows.data == NULL or rows.s2 == 1)
              and (grad.data == NULL or grad.s2 == 1)
              and (grad_a.data == NULL or grad_a.s2 == 1)) or half != 0
    if e.total_n == 0:
        return 0.0
    nblocks = ceil_div(e.total_n, EW_BLOCK)
    partials = <double *>malloc(nblocks * sizeof(double))
    if e.unit:
        ones = <floating *>malloc(EW_CHUNK * sizeof(floating))
        bufs = <double *>malloc((nthreads if nthreads > 0 else 1) * 3 * EW_CHUNK * sizeof(double))
    if partials == NULL or (e.unit and (ones == NULL or bufs == NULL)):
        free(partials)
        free(ones)
        free(bufs)
        raise MemoryError()
    if e.unit:
        for j in range(EW_CHUNK):
            ones[j] = 1
    e.ones = ones
    with nogil:
        if nthreads <= 1 or nblocks == 1:
            # no parallel region (a team of one costs a few hundred ns): the same blocks
            for blk in range(nblocks):
                partials[blk] = ew_block(x0, &e, blk, bufs)
        else:
            for blk in prange(nblocks, schedule='static', num_threads=nthreads):
                partials[blk] = ew_block(x0, &e, blk,
                                         NULL if bufs == NULL else bufs + threadid() * 3 * EW_CHUNK)
    total = sum_partials(partials, nblocks)
    free(partials)
    free(ones)
    free(bufs)
    return total
