/*
 * fastnll/_generic_loops_T.h -- the inner loops of the kernels, written once for an element
 * type T.  No include guard: _loops.h includes this file twice, with T float and then T
 * double, and FNL_FN(fnl_max) names fnl_max_f32 or fnl_max_f64.  The Cython side calls
 * them through the fused wrappers of _loops.pxd (fnl_max(x, ...) on `floating` data).
 *
 * Why C: Cython cannot emit `#pragma omp simd reduction(...)`, and gcc will not vectorise a
 * float sum or max under strict IEEE rules without it.  So every reduction over a run of
 * elements and every elementwise writer lives here, as small inline functions.
 *
 * Row helpers work on n elements x[0], x[s], x[2s], ...; stride 1 takes the vector loop,
 * anything else a plain loop (a branch per call, never per element).  Column helpers work on
 * one class row of a (C, inner) block: ncols elements along the inner axis with stride
 * s_col, combined with per-column accumulators (contiguous arrays of length ncols owned by
 * the caller).  The other strides are named after what they step through (s_w weights, s_t
 * targets, s_out, s_g gradient).  Vocabulary, as in _lse.pxd:
 *   M        the maximum of the run (nan ignored), or larger
 *   shift    what is subtracted before exp: M when M is finite, else 0
 *   rest     the sum of exp(x - shift) over the terms below the maximum
 *   at_max   the same over the terms equal to M: exactly their count when M is finite.
 *            Keeping them apart lets the caller take log(at_max + rest) with log1p
 *            precision, as SciPy does.
 *   log_sum  log(at_max + rest); the log-sum-exp is shift + log_sum
 *   keep, spread   label smoothing of probability targets: t' = keep * t + spread
 *
 * At x86-64-v4 and v3 the float unit-stride loops that evaluate exp hand their work to the
 * versions written with intrinsics, in _avx512_loops.h and _avx2_loops.h (FNL_INTRINSICS is 1
 * only in the float copy of those builds; FNL_VEC(fnl_sumexp_unit) names
 * fnl_sumexp_unit_avx512_f32 or fnl_sumexp_unit_avx2_f32).
 */

/* ------------------------------------------------------- unit-stride exp loops ---- */

/* *rest, *at_max = the row's sums of exp(x - shift), split at M */
FNL_INLINE void FNL_FN(fnl_sumexp_unit)(const T *x, ptrdiff_t n, T M, T shift, T *rest,
                                        T *at_max)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_sumexp_unit)(x, n, M, shift, rest, at_max);
#else
    T l = 0, h = 0;
    FNL_SIMD_SUM2(l, h)
    for (ptrdiff_t i = 0; i < n; i++) {
        T e = FNL_FN(fnl_exp)(x[i] - shift);
        int top = x[i] == M;
        l += top ? (T)0 : e;
        h += top ? e : (T)0;
    }
    *rest = l;
    *at_max = h;
#endif
}

/* rest[k], at_max[k] += the same split sums, for one class row of ncols columns */
FNL_INLINE void FNL_FN(fnl_colsumexp_unit)(const T *x, ptrdiff_t ncols, const T *M,
                                           const T *shift, T *rest, T *at_max)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_colsumexp_unit)(x, ncols, M, shift, rest, at_max);
#else
    FNL_SIMD
    for (ptrdiff_t k = 0; k < ncols; k++) {
        T e = FNL_FN(fnl_exp)(x[k] - shift[k]);
        int top = x[k] == M[k];
        rest[k] += top ? (T)0 : e;
        at_max[k] += top ? e : (T)0;
    }
#endif
}

/* out = exp(x - M) for a run whose maximum M is finite (nan stays nan); returns the sum of
 * the terms */
FNL_INLINE T FNL_FN(fnl_expsum_unit)(const T *x, ptrdiff_t n, T M, T *out)
{
#if FNL_INTRINSICS
    return FNL_VEC(fnl_expsum_unit)(x, n, M, out);
#else
    T acc = 0;
    FNL_SIMD_SUM(acc)
    for (ptrdiff_t i = 0; i < n; i++) {
        T e = FNL_FN(fnl_exp)(x[i] - M);
        out[i] = e;
        acc += e;
    }
    return acc;
#endif
}

/* out *= c */
FNL_INLINE void FNL_FN(fnl_scale_unit)(T *out, ptrdiff_t n, T c)
{
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] *= c;
}

/* out = e * c and out = (x - shift) - log_sum over unit-stride runs, with non-temporal stores
 * where the build has the loops written with intrinsics (for an output larger than the
 * last-level cache); plain stores elsewhere.  The same values either way. */
FNL_INLINE void FNL_FN(fnl_scale_stream)(const T *e, ptrdiff_t n, T c, T *out)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_scale_stream)(e, n, c, out);
#else
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = e[i] * c;
#endif
}

FNL_INLINE void FNL_FN(fnl_sub2_stream)(const T *x, ptrdiff_t n, T shift, T log_sum, T *out)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_sub2_stream)(x, n, shift, log_sum, out);
#else
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = (x[i] - shift) - log_sum;
#endif
}

/* out = exp((x - shift) - log_sum) */
FNL_INLINE void FNL_FN(fnl_softmax_unit)(const T *x, ptrdiff_t n, T shift, T log_sum, T *out)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_softmax_unit)(x, n, shift, log_sum, out);
#else
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = FNL_FN(fnl_exp)((x[i] - shift) - log_sum);
#endif
}

/* g = scale_p exp((x - shift) - log_sum) - scale_w */
FNL_INLINE void FNL_FN(fnl_grad_unit)(const T *x, ptrdiff_t n, T shift, T log_sum, T scale_p,
                                      T scale_w, T *g)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_grad_unit)(x, n, shift, log_sum, scale_p, scale_w, g);
#else
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++)
        g[i] = scale_p * FNL_FN(fnl_exp)((x[i] - shift) - log_sum) - scale_w;
#endif
}

/* out[k] = exp((x[k] - shift[k]) - log_sum[k]) */
FNL_INLINE void FNL_FN(fnl_colsoftmax_unit)(const T *x, ptrdiff_t ncols, const T *shift,
                                            const T *log_sum, T *out)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_colsoftmax_unit)(x, ncols, shift, log_sum, out);
#else
    FNL_SIMD
    for (ptrdiff_t k = 0; k < ncols; k++)
        out[k] = FNL_FN(fnl_exp)((x[k] - shift[k]) - log_sum[k]);
#endif
}

/* g[k] = scale_p[k] exp((x[k] - shift[k]) - log_sum[k]) - scale_w[k] w_j */
FNL_INLINE void FNL_FN(fnl_colgrad_unit)(const T *x, ptrdiff_t ncols, const T *shift,
                                         const T *log_sum, const T *scale_p,
                                         const T *scale_w, T w_j, T *g)
{
#if FNL_INTRINSICS
    FNL_VEC(fnl_colgrad_unit)(x, ncols, shift, log_sum, scale_p, scale_w, w_j, g);
#else
    FNL_SIMD
    for (ptrdiff_t k = 0; k < ncols; k++)
        g[k] = scale_p[k] * FNL_FN(fnl_exp)((x[k] - shift[k]) - log_sum[k]) - scale_w[k] * w_j;
#endif
}

/* ------------------------------------------------------------------ row helpers ---- */

/* the maximum of the run, ignoring nan (x > m ? x : m) */
FNL_INLINE T FNL_FN(fnl_max)(const T *x, ptrdiff_t n, ptrdiff_t s)
{
    T m = -INFINITY;
    if (s == 1) {
#if FNL_INTRINSICS
        m = FNL_VEC(fnl_max_unit)(x, n);
#else
        FNL_SIMD_MAX(m)
        for (ptrdiff_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
#endif
    } else {
        for (ptrdiff_t i = 0; i < n; i++) m = x[i * s] > m ? x[i * s] : m;
    }
    return m;
}

/* the sum of exp(x - shift) over the terms below M; the terms equal to M go to *at_max */
FNL_INLINE T FNL_FN(fnl_sumexp)(const T *x, ptrdiff_t n, ptrdiff_t s, T M, T shift, T *at_max)
{
    T sum_rest = 0, sum_at_max = 0;
    if (s == 1) {
        FNL_FN(fnl_sumexp_unit)(x, n, M, shift, &sum_rest, &sum_at_max);
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            T e = FNL_FN(fnl_exp)(x[i * s] - shift);
            int top = x[i * s] == M;
            sum_rest += top ? (T)0 : e;
            sum_at_max += top ? e : (T)0;
        }
    }
    *at_max = sum_at_max;
    return sum_rest;
}

/* fnl_sumexp of a run whose terms all lie below M == shift, a finite maximum of earlier
 * terms (the row traversal knows it from the run's maximum): the same sum, at_max being 0.
 * The loops written with intrinsics then skip the comparison with M. */
FNL_INLINE T FNL_FN(fnl_sumexp_below)(const T *x, ptrdiff_t n, ptrdiff_t s, T shift)
{
    T at_max;
#if FNL_INTRINSICS
    if (s == 1) return FNL_VEC(fnl_sumexp_below_unit)(x, n, shift);
#endif
    return FNL_FN(fnl_sumexp)(x, n, s, shift, shift, &at_max);
}

/* sum of w * (x - ref)   (w NULL: w = 1) */
FNL_INLINE T FNL_FN(fnl_sumdiff)(const T *x, ptrdiff_t n, ptrdiff_t s, const T *w,
                                 ptrdiff_t s_w, T ref)
{
    T acc = 0;
    if (w == NULL) {
        if (s == 1) {
            FNL_SIMD_SUM(acc)
            for (ptrdiff_t i = 0; i < n; i++) acc += x[i] - ref;
        } else {
            for (ptrdiff_t i = 0; i < n; i++) acc += x[i * s] - ref;
        }
    } else if (s == 1 && s_w == 1) {
        FNL_SIMD_SUM(acc)
        for (ptrdiff_t i = 0; i < n; i++) acc += w[i] * (x[i] - ref);
    } else {
        for (ptrdiff_t i = 0; i < n; i++) acc += w[i * s_w] * (x[i * s] - ref);
    }
    return acc;
}

/* sum of w t' (x - ref) with t' = keep t + spread (smoothed probability targets);
 * *wt_sum = sum of w t'   (w NULL: w = 1) */
FNL_INLINE T FNL_FN(fnl_tsum)(const T *x, ptrdiff_t n, ptrdiff_t s, const T *t, ptrdiff_t s_t,
                              const T *w, ptrdiff_t s_w, T keep, T spread, T ref, T *wt_sum)
{
    T acc = 0, tot = 0;
    if (s == 1 && s_t == 1 && (w == NULL || s_w == 1)) {
        if (w == NULL) {
            FNL_SIMD_SUM2(acc, tot)
            for (ptrdiff_t i = 0; i < n; i++) {
                T tt = keep * t[i] + spread;
                acc += tt * (x[i] - ref);
                tot += tt;
            }
        } else {
            FNL_SIMD_SUM2(acc, tot)
            for (ptrdiff_t i = 0; i < n; i++) {
                T tt = w[i] * (keep * t[i] + spread);
                acc += tt * (x[i] - ref);
                tot += tt;
            }
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            T tt = (w == NULL ? (T)1 : w[i * s_w]) * (keep * t[i * s_t] + spread);
            acc += tt * (x[i * s] - ref);
            tot += tt;
        }
    }
    *wt_sum = tot;
    return acc;
}

/* out = exp((x - shift) - log_sum), or without the exp when take_log (log_softmax) */
FNL_INLINE void FNL_FN(fnl_softmax)(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T log_sum,
                                    T *out, ptrdiff_t s_out, int take_log)
{
    if (take_log) {
        if (s == 1 && s_out == 1) {
            FNL_SIMD
            for (ptrdiff_t i = 0; i < n; i++) out[i] = (x[i] - shift) - log_sum;
        } else {
            for (ptrdiff_t i = 0; i < n; i++) out[i * s_out] = (x[i * s] - shift) - log_sum;
        }
    } else if (s == 1 && s_out == 1) {
        FNL_FN(fnl_softmax_unit)(x, n, shift, log_sum, out);
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            out[i * s_out] = FNL_FN(fnl_exp)((x[i * s] - shift) - log_sum);
    }
}

/* g = scale_p exp((x - shift) - log_sum) - scale_w w   (w NULL: w = 1) */
FNL_INLINE void FNL_FN(fnl_grad)(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T log_sum,
                                 T scale_p, T scale_w, const T *w, ptrdiff_t s_w, T *g,
                                 ptrdiff_t s_g)
{
    if (s == 1 && s_g == 1 && w == NULL) {
        FNL_FN(fnl_grad_unit)(x, n, shift, log_sum, scale_p, scale_w, g);
    } else if (s == 1 && s_g == 1 && s_w == 1) {
        FNL_SIMD
        for (ptrdiff_t i = 0; i < n; i++)
            g[i] = scale_p * FNL_FN(fnl_exp)((x[i] - shift) - log_sum) - scale_w * w[i];
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            g[i * s_g] = scale_p * FNL_FN(fnl_exp)((x[i * s] - shift) - log_sum)
                         - scale_w * (w == NULL ? (T)1 : w[i * s_w]);
    }
}

/* g = scale_p exp((x - shift) - log_sum) - scale_t w (keep t + spread)   (w NULL: w = 1) */
FNL_INLINE void FNL_FN(fnl_gradprob)(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T log_sum,
                                     T scale_p, T scale_t, const T *t, ptrdiff_t s_t,
                                     const T *w, ptrdiff_t s_w, T keep, T spread, T *g,
                                     ptrdiff_t s_g)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        T tt = (w == NULL ? (T)1 : w[i * s_w]) * (keep * t[i * s_t] + spread);
        g[i * s_g] = scale_p * FNL_FN(fnl_exp)((x[i * s] - shift) - log_sum) - scale_t * tt;
    }
}

/* --------------------------------------------------------------- column helpers ---- */

/* m[k] = max(m[k], x[k]), ignoring nan */
FNL_INLINE void FNL_FN(fnl_colmax)(const T *x, ptrdiff_t ncols, ptrdiff_t s_col, T *m)
{
    if (s_col == 1) {
        FNL_SIMD
        for (ptrdiff_t k = 0; k < ncols; k++) m[k] = x[k] > m[k] ? x[k] : m[k];
    } else {
        for (ptrdiff_t k = 0; k < ncols; k++)
            m[k] = x[k * s_col] > m[k] ? x[k * s_col] : m[k];
    }
}

/* rest[k], at_max[k] += the split sums of exp(x[k] - shift[k]) */
FNL_INLINE void FNL_FN(fnl_colsumexp)(const T *x, ptrdiff_t ncols, ptrdiff_t s_col,
                                      const T *M, const T *shift, T *rest, T *at_max)
{
    if (s_col == 1) {
        FNL_FN(fnl_colsumexp_unit)(x, ncols, M, shift, rest, at_max);
    } else {
        for (ptrdiff_t k = 0; k < ncols; k++) {
            T e = FNL_FN(fnl_exp)(x[k * s_col] - shift[k]);
            int top = x[k * s_col] == M[k];
            rest[k] += top ? (T)0 : e;
            at_max[k] += top ? e : (T)0;
        }
    }
}

/* fnl_colmax over nclass class rows, row j at x + j * s_class */
FNL_INLINE void FNL_FN(fnl_colmax_rows)(const T *x, ptrdiff_t nclass, ptrdiff_t s_class,
                                        ptrdiff_t ncols, ptrdiff_t s_col, T *m)
{
#if FNL_INTRINSICS
    if (s_col == 1) {   /* the maxima kept in registers across the rows: the same results */
        FNL_VEC(fnl_colmax_rows)(x, nclass, s_class, ncols, m);
        return;
    }
#endif
    for (ptrdiff_t j = 0; j < nclass; j++) FNL_FN(fnl_colmax)(x + j * s_class, ncols, s_col, m);
}

/* fnl_colsumexp over nclass class rows, row j at x + j * s_class (at_max must hold whole
 * numbers: see fnl_colsumexp_rows_avx512_f32).  The loops written with intrinsics also ask
 * for the same pieces nclass rows on (the next chunk's: every caller reads chunk after chunk
 * down the same columns), spread over the exps of this pass.  Bunched in the
 * maximum's pass they seemed to hold up its loads (a profile's samples sat on them): on a
 * Zen 4, 2 threads, cross_entropy of (32, 1000, 1024) float32 took 11.7 ms with them there
 * and 9.4 ms here, and logsumexp(axis=0) of (4096, 32000), which had none, went from 1.49x
 * axis=1 to 0.90x at x86-64-v4 in one interleaved run (1.13x in a bench run) */
FNL_INLINE void FNL_FN(fnl_colsumexp_rows)(const T *x, ptrdiff_t nclass, ptrdiff_t s_class,
                                           ptrdiff_t ncols, ptrdiff_t s_col, const T *M,
                                           const T *shift, T *rest, T *at_max)
{
#if FNL_INTRINSICS
    if (s_col == 1) {
        FNL_VEC(fnl_colsumexp_rows)(x, nclass, s_class, ncols, M, shift, rest, at_max);
        return;
    }
#endif
    for (ptrdiff_t j = 0; j < nclass; j++)
        FNL_FN(fnl_colsumexp)(x + j * s_class, ncols, s_col, M, shift, rest, at_max);
}

/* acc[k] += w_j (x[k] - ref[k]) */
FNL_INLINE void FNL_FN(fnl_colsumdiff)(const T *x, ptrdiff_t ncols, ptrdiff_t s_col, T w_j,
                                       const T *ref, T *acc)
{
    if (s_col == 1) {
        FNL_SIMD
        for (ptrdiff_t k = 0; k < ncols; k++) acc[k] += w_j * (x[k] - ref[k]);
    } else {
        for (ptrdiff_t k = 0; k < ncols; k++) acc[k] += w_j * (x[k * s_col] - ref[k]);
    }
}

/* out[k] = exp((x[k] - shift[k]) - log_sum[k]), or without the exp when take_log */
FNL_INLINE void FNL_FN(fnl_colsoftmax)(const T *x, ptrdiff_t ncols, ptrdiff_t s_col,
                                       const T *shift, const T *log_sum, T *out,
                                       ptrdiff_t s_out, int take_log)
{
    if (s_col == 1 && s_out == 1) {
        if (take_log) {
            FNL_SIMD
            for (ptrdiff_t k = 0; k < ncols; k++) out[k] = (x[k] - shift[k]) - log_sum[k];
        } else {
            FNL_FN(fnl_colsoftmax_unit)(x, ncols, shift, log_sum, out);
        }
    } else {
        for (ptrdiff_t k = 0; k < ncols; k++) {
            T v = (x[k * s_col] - shift[k]) - log_sum[k];
            out[k * s_out] = take_log ? v : FNL_FN(fnl_exp)(v);
        }
    }
}

/* g[k] = scale_p[k] exp((x[k] - shift[k]) - log_sum[k]) - scale_w[k] w_j */
FNL_INLINE void FNL_FN(fnl_colgrad)(const T *x, ptrdiff_t ncols, ptrdiff_t s_col,
                                    const T *shift, const T *log_sum, const T *scale_p,
                                    const T *scale_w, T w_j, T *g, ptrdiff_t s_g)
{
    if (s_col == 1 && s_g == 1) {
        FNL_FN(fnl_colgrad_unit)(x, ncols, shift, log_sum, scale_p, scale_w, w_j, g);
    } else {
        for (ptrdiff_t k = 0; k < ncols; k++)
            g[k * s_g] = scale_p[k] * FNL_FN(fnl_exp)((x[k * s_col] - shift[k]) - log_sum[k])
                         - scale_w[k] * w_j;
    }
}

/* ---------------------------------------------------------------------- entropy ---- */

/* The sum, in float64, of a unit-stride run of probabilities; *negative is set to 1 when one
 * of them is below 0 (nan is not). */
FNL_INLINE double FNL_FN(fnl_sum_probs)(const T *p, ptrdiff_t n, int *negative)
{
    double s = 0;
    T lo = 0;
    FNL_PRAGMA(omp simd reduction(+ : s) reduction(min : lo))
    for (ptrdiff_t i = 0; i < n; i++) {
        s += (double)p[i];
        lo = p[i] < lo ? p[i] : lo;
    }
    *negative = lo < 0;
    return s;
}

/* sum of entr(p / sp) over a unit-stride run, in float64, as scipy.special.entr: -v log v for
 * v > 0, 0 for v == 0, nan for nan (v < 0 never arrives: the caller refuses it) */
FNL_INLINE double FNL_FN(fnl_entr_sum)(const T *p, ptrdiff_t n, double sp)
{
    double s = 0;
    FNL_SIMD_SUM(s)
    for (ptrdiff_t i = 0; i < n; i++) {
        double v = (double)p[i] / sp;
        double term = -v * fnl_log_f64(v);     /* used only for v > 0 (guarding the
                                                  * argument instead was 6x slower) */
        s += v > 0 ? term : (v == 0 ? 0.0 : v);
    }
    return s;
}

/* sum of rel_entr(p / sp, q / sq) over unit-stride runs, in float64, as
 * scipy.special.rel_entr: v log(v / w) for v > 0 and w > 0, 0 for v == 0 and w >= 0, nan
 * when either is nan, inf otherwise.  v / w overflows only for a subnormal w (the sum is then
 * inf): careful takes log v - log w there, as SciPy's value, in a plain loop (the caller
 * passes it only for a row whose sum came out inf: a select between the two logs in the
 * vector loop made it 5x slower). */
FNL_INLINE double FNL_FN(fnl_rel_entr_sum)(const T *p, const T *q, ptrdiff_t n, double sp,
                                           double sq, int careful)
{
    double s = 0;
#define FNL_REL_ENTR_TERM(lr)                                                               \
    (both ? v * (lr) : ((v == 0 && w >= 0) ? 0.0 : ((v != v || w != w) ? v + w : INFINITY)))
    if (!careful) {
        FNL_SIMD_SUM(s)
        for (ptrdiff_t i = 0; i < n; i++) {
            double v = (double)p[i] / sp, w = (double)q[i] / sq;
            int both = v > 0 && w > 0;
            double lr = fnl_log_f64(v / w);   /* computed for every term (the log inside the
                                               * select was 3x slower), used only when both */
            s += FNL_REL_ENTR_TERM(lr);
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            double v = (double)p[i] / sp, w = (double)q[i] / sq, r = v / w;
            int both = v > 0 && w > 0;
            s += FNL_REL_ENTR_TERM(r < INFINITY ? fnl_log_f64(r)
                                                : fnl_log_f64(v) - fnl_log_f64(w));
        }
    }
#undef FNL_REL_ENTR_TERM
    return s;
}

/* The sums of FNL_ENTR_COLS rows at once, vectorised across the rows, for rows too short to
 * fill a vector on their own (few classes, where the row loops above spent most of their time
 * outside their vector bodies): row j has its n probabilities at p[j * s_row + i] (unit
 * stride along the row) and q[j * s_qrow + i] (q NULL: Shannon entropy).  s[j] gets the
 * row's sum of entr (or rel_entr) terms, as fnl_entr_sum (fnl_rel_entr_sum, not careful: an
 * inf sum may need the careful loop) would, summed in class order.  Returns 1 when an entry
 * of p or q is negative (nan is not), else 0. */
#ifndef FNL_ENTR_COLS
#define FNL_ENTR_COLS 8
#endif
FNL_INLINE int FNL_FN(fnl_entr_cols)(const T *p, ptrdiff_t s_row, const T *q, ptrdiff_t s_qrow,
                                     ptrdiff_t n, double *s)
{
    double sp[FNL_ENTR_COLS], sq[FNL_ENTR_COLS], acc[FNL_ENTR_COLS];
    T lo = 0;
    for (int j = 0; j < FNL_ENTR_COLS; j++)
        sp[j] = sq[j] = acc[j] = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        FNL_PRAGMA(omp simd reduction(min : lo))
        for (int j = 0; j < FNL_ENTR_COLS; j++) {
            T v = p[j * s_row + i];
            sp[j] += (double)v;
            lo = v < lo ? v : lo;
        }
    }
    if (q) {
        for (ptrdiff_t i = 0; i < n; i++) {
            FNL_PRAGMA(omp simd reduction(min : lo))
            for (int j = 0; j < FNL_ENTR_COLS; j++) {
                T w = q[j * s_qrow + i];
                sq[j] += (double)w;
                lo = w < lo ? w : lo;
            }
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            FNL_PRAGMA(omp simd)
            for (int j = 0; j < FNL_ENTR_COLS; j++) {
                double v = (double)p[j * s_row + i] / sp[j];
                double w = (double)q[j * s_qrow + i] / sq[j];
                int both = v > 0 && w > 0;
                double lr = fnl_log_f64(v / w);
                acc[j] += both ? v * lr
                               : ((v == 0 && w >= 0) ? 0.0 : ((v != v || w != w) ? v + w : INFINITY));
            }
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            FNL_PRAGMA(omp simd)
            for (int j = 0; j < FNL_ENTR_COLS; j++) {
                double v = (double)p[j * s_row + i] / sp[j];
                double term = -v * fnl_log_f64(v);
                acc[j] += v > 0 ? term : (v == 0 ? 0.0 : v);
            }
        }
    }
    for (int j = 0; j < FNL_ENTR_COLS; j++)
        s[j] = acc[j];
    return lo < 0;
}

/* ------------------------------------------------------------------- NLL gather ---- */

/* Row r (r < n) has target t = targets[r * s_t] and log-probabilities x[r * s_row + j * s_class].
 * Rows with t == ignore_index add nothing; the others add -w[t] x[r * s_row + t s_class] to
 * *loss_sum and w[t] to *weight_sum (w NULL: weight 1).  Returns the first row whose target is
 * outside [0, C) and not ignore_index (the sums are then incomplete), or -1.  Four partial
 * sums in a fixed order (so the result does not depend on threads) keep the additions off
 * the critical path: the loop is bound by how many of its scattered loads are in flight, not
 * by one chain of dependent adds. */
/* The common case of fnl_nll_rows, unit class stride and no weights: the row and target
 * pointers advance by additions, and the element needs no multiplication (1.4x faster on
 * (4096, 32000) float32 at x86-64-v3).  The same sums in the same order. */
FNL_INLINE ptrdiff_t FNL_FN(fnl_nll_rows_plain)(const T *x, ptrdiff_t s_row,
                                                const int64_t *targets, ptrdiff_t s_t,
                                                ptrdiff_t n, int64_t C, int64_t ignore_index,
                                                double *loss_sum, double *weight_sum)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    ptrdiff_t r = 0;
    const T *xr = x;
    const int64_t *tr = targets;
#define FNL_NLL_STEP(j)                                                                     \
    {                                                                                       \
        int64_t t = tr[j * s_t];                                                            \
        if (t != ignore_index) {                                                            \
            if ((uint64_t)t >= (uint64_t)C) return r + j;                                   \
            a##j -= (double)xr[j * s_row + t];                                              \
            d##j += 1.0;                                                                    \
        }                                                                                   \
    }
    for (; r + 4 <= n; r += 4, xr += 4 * s_row, tr += 4 * s_t) {
        FNL_NLL_STEP(0) FNL_NLL_STEP(1) FNL_NLL_STEP(2) FNL_NLL_STEP(3)
    }
    for (; r < n; r++, xr += s_row, tr += s_t) FNL_NLL_STEP(0)
#undef FNL_NLL_STEP
    *loss_sum += (a0 + a1) + (a2 + a3);
    *weight_sum += (d0 + d1) + (d2 + d3);
    return -1;
}

FNL_INLINE ptrdiff_t FNL_FN(fnl_nll_rows)(const T *x, ptrdiff_t s_row, ptrdiff_t s_class,
                                          const int64_t *targets, ptrdiff_t s_t, ptrdiff_t n,
                                          int64_t C, int64_t ignore_index, const T *w,
                                          ptrdiff_t s_w, double *loss_sum, double *weight_sum)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    ptrdiff_t r = 0;
/* row r + j into the partial sums a<j>, d<j>; an invalid target ends the call */
#define FNL_NLL_STEP(j)                                                                     \
    {                                                                                       \
        int64_t t = targets[(r + j) * s_t];                                                 \
        if (t != ignore_index) {                                                            \
            if ((uint64_t)t >= (uint64_t)C) return r + j;                                   \
            double wt = w ? (double)w[t * s_w] : 1.0;                                       \
            a##j -= wt * (double)x[(r + j) * s_row + t * s_class];                          \
            d##j += wt;                                                                     \
        }                                                                                   \
    }
    for (; r + 4 <= n; r += 4) {
        FNL_NLL_STEP(0) FNL_NLL_STEP(1) FNL_NLL_STEP(2) FNL_NLL_STEP(3)
    }
    for (; r < n; r++) FNL_NLL_STEP(0)
#undef FNL_NLL_STEP
    *loss_sum += (a0 + a1) + (a2 + a3);
    *weight_sum += (d0 + d1) + (d2 + d3);
    return -1;
}
