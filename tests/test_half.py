"""float16 and bfloat16 input: the conversions, and the functions the kernels run on 16-bit
data in place (cross_entropy and nll_loss with class-index targets, softmax, log_softmax,
logsumexp without weights, the four elementwise losses), against float64 references on the
16-bit values."""
import tracemalloc

import numpy as np
import pytest

import fastnll
from fastnll._dispatch import kernels
from fastnll._half import BF16, F16, half_kind

from helpers import assert_unchanged, snapshot
from reference import (
    ref_bce, ref_gauss, ref_kl, ref_loss, ref_lse, ref_poisson, ref_softmax, var_reduce,
)

ml_dtypes = pytest.importorskip("ml_dtypes")
BF = np.dtype(ml_dtypes.bfloat16)
F16_DT = np.dtype(np.float16)
HALVES = [pytest.param(F16_DT, id="float16"), pytest.param(BF, id="bfloat16")]
KIND = {F16_DT: F16, BF: BF16}
LEVEL = fastnll.show_config(mode="dicts")["simd"]["in_use"]


def ulps(a, b):
    """The distance of two 16-bit arrays of one dtype in units in the last place (0 between
    +0 and -0, and between two nans; a nan against a number is a large distance)."""
    ia, ib = (np.asarray(v).reshape(-1).view(np.uint16).astype(np.int64) for v in (a, b))
    sa = np.where(ia & 0x8000, -(ia & 0x7FFF), ia)
    sb = np.where(ib & 0x8000, -(ib & 0x7FFF), ib)
    na = np.isnan(np.asarray(a, dtype=np.float32).reshape(-1))
    nb = np.isnan(np.asarray(b, dtype=np.float32).reshape(-1))
    d = np.abs(sa - sb)
    d[na & nb] = 0
    d[na ^ nb] = 1 << 20
    return d


def assert_ulps(got, ref64, dtype, n=2):
    """got (16-bit) within n units of ref64 (float64) rounded once to dtype."""
    got = np.asarray(got)
    assert got.dtype == dtype
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.asarray(ref64, dtype=np.float64).astype(dtype)
    d = ulps(got, expected)
    assert d.max(initial=0) <= n, (d.max(), got.reshape(-1)[d.argmax()],
                                   expected.reshape(-1)[d.argmax()])


# ------------------------------------------------------------------ conversions ----

@pytest.mark.parametrize("dtype", HALVES)
def test_load_every_16_bit_value(dtype):
    bits = np.arange(1 << 16, dtype=np.uint16)
    ref = bits.view(dtype).astype(np.float32)
    for step in (1, 3):
        got = np.empty(ref.size, np.float32)
        src = np.repeat(bits, step)[::step]
        kernels.half_load(src, KIND[dtype], got)
        nan = np.isnan(ref)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(got.view(np.uint32)[~nan], ref.view(np.uint32)[~nan])


@pytest.mark.parametrize("dtype", HALVES)
def test_store_rounds_as_numpy_and_ml_dtypes(dtype):
    """Every 16-bit value, every midpoint between neighbours (the ties), one float32 ulp on
    either side of each, the overflow thresholds and a million random floats: rounded as
    NumPy (float16) and ml_dtypes (bfloat16) round them."""
    v = np.arange(1 << 16, dtype=np.uint16).view(dtype).astype(np.float32)
    finite = np.unique(v[np.isfinite(v)])
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    u = mids.view(np.uint32)
    rng = np.random.default_rng(0)
    x = np.concatenate([
        v, mids, (u + 1).view(np.float32), (u - 1).view(np.float32),
        rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32),
        np.float32([np.inf, -np.inf, np.nan, 65519.996, 65520, -65520, 3e38, -3e38, 1e-8, 0]),
    ])
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(dtype)
    for step in (1, 2):
        out = np.zeros(x.size * step, np.uint16)
        kernels.half_store(x, KIND[dtype], out[::step])
        assert ulps(out[::step].view(dtype), ref).max() == 0


def test_conversion_arguments_are_checked():
    with pytest.raises(ValueError, match="out has 3 elements"):
        kernels.half_load(np.zeros(4, np.uint16), F16, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="out has 5 elements"):
        kernels.half_store(np.zeros(4, np.float32), BF16, np.zeros(5, np.uint16))


def test_half_kind():
    assert half_kind(F16_DT) == F16 and half_kind(BF) == BF16
    for other in (np.float32, np.float64, np.int16, np.uint16, "V2", "S2"):
        assert half_kind(np.dtype(other)) == 0


# ------------------------------------------------------------------ functions ----

def _logits(dtype, shape, scale=4.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _hard_rows(dtype):
    """Rows with the format's extremes: its largest finite value, subnormals, +-inf, nan."""
    big = float(np.finfo(np.float16).max) if dtype == F16_DT else 3.0e38
    tiny = 6e-8 if dtype == F16_DT else 1e-39
    rows = np.array([[big, -big, 0.0, 1.0, 2.0],
                     [tiny, -tiny, 0.0, tiny, 5.0],
                     [-np.inf, 0.0, 1.0, -np.inf, 2.0],
                     [np.inf, 0.0, 1.0, 2.0, 3.0],
                     [np.nan, 0.0, 1.0, 2.0, 3.0],
                     [-np.inf] * 5], dtype=np.float64)
    return rows.astype(dtype)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("kind", ["ce", "nll"])
@pytest.mark.parametrize("options", [
    {}, {"weight": True}, {"label_smoothing": 0.1}, {"reduction": "none"},
    {"reduction": "sum", "weight": True, "label_smoothing": 0.3}, {"ignore_index": 2},
])
@pytest.mark.parametrize("layout", ["C", "transposed", "strided", "3-D"])
def test_class_losses(dtype, kind, options, layout):
    if kind == "nll":    # nll_loss has no label smoothing
        options = {k: v for k, v in options.items() if k != "label_smoothing"}
    rng = np.random.default_rng(1)
    C = 300
    x = _logits(dtype, (70, C))
    if kind == "nll":
        x = fastnll.log_softmax(x, axis=1)
    axis = 1
    if layout == "transposed":
        x, axis = np.ascontiguousarray(x.T).T, 1
    elif layout == "strided":
        x = np.repeat(x, 2, axis=1)[:, ::2]
    elif layout == "3-D":
        x, axis = np.ascontiguousarray(x.reshape(10, 7, C).transpose(0, 2, 1)), 1
    t = rng.integers(0, C, x.shape[:axis] + x.shape[axis + 1:])
    t.reshape(-1)[::9] = options.get("ignore_index", -100)
    kw = dict(options)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(C).astype(np.float32)
    x.setflags(write=False)
    snap = snapshot((x, t))
    fn = fastnll.cross_entropy if kind == "ce" else fastnll.nll_loss
    loss, grad = fn(x, t, axis=axis, return_grad=True, **kw)
    assert_unchanged(snap)
    ref, ref_grad = ref_loss(kind, x.astype(np.float64), t, weight=kw.get("weight"),
                             ignore_index=kw.get("ignore_index", -100),
                             reduction=kw.get("reduction", "mean"),
                             label_smoothing=kw.get("label_smoothing", 0.0), axis=axis)
    assert grad.dtype == dtype and grad.shape == x.shape
    assert_ulps(loss, ref, dtype)
    # the gradient of the mean is the float32 one of 16-bit values; of the sum likewise,
    # rounded once: within 2 ulp (tiny entries: an absolute 2 ** -24 of the largest)
    g, r = grad.astype(np.float64), np.asarray(ref_grad, np.float64)
    close = np.abs(g - r) <= 2 ** -22 * np.abs(r).max() + 0 * r
    if not close.all():
        assert_ulps(grad[~close], r[~close], dtype)
    # the same loss without the gradient
    assert ulps(fn(x, t, axis=axis, **kw), loss).max() == 0


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("C", [10, 300])
@pytest.mark.parametrize("layout", ["(N, C, d)", "transposed", "strided columns",
                                    "few classes"])
@pytest.mark.parametrize("options", [{}, {"weight": True, "ignore_index": 3},
                                     {"label_smoothing": 0.2, "weight": True}])
def test_cross_entropy_columns(dtype, C, layout, options):
    """cross_entropy along a class axis that is not the contiguous one takes the column
    traversal over float32 pieces converted from the 16-bit input (a chunk of classes at a
    time; the whole block at once for C <= 32): per-row losses and the gradient are the
    float32 ones of the same values, rounded once."""
    rng = np.random.default_rng(5)
    x = {"(N, C, d)": _logits(dtype, (6, C, 777)),
         "transposed": _logits(dtype, (C, 4000)).T,
         "strided columns": _logits(dtype, (6, C, 1554))[:, :, ::2],
         # at most 32 classes, each row contiguous: converted a block at a time and transposed
         "few classes": _logits(dtype, (4000, min(C, 27)))}[layout]
    C = x.shape[1]
    t = rng.integers(0, C, x.shape[:1] + x.shape[2:])
    kw = dict(options)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(C).astype(np.float32)
    if "ignore_index" in kw:
        t.reshape(-1)[::5] = kw["ignore_index"]
    x.setflags(write=False)
    rows, grad = fastnll.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
    rows32, grad32 = fastnll.cross_entropy(x.astype(np.float32), t, reduction="none",
                                           return_grad=True, **kw)
    assert rows.dtype == grad.dtype == dtype
    assert ulps(rows, rows32.astype(dtype)).max() == 0
    assert ulps(grad, grad32.astype(dtype)).max() == 0
    with fastnll.threads(1):
        rows1, grad1 = fastnll.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
    assert ulps(rows1, rows).max() == 0 and ulps(grad1, grad).max() == 0
    ref, _ = ref_loss("ce", x.astype(np.float64), t, weight=kw.get("weight"),
                      ignore_index=kw.get("ignore_index", -100), reduction="none",
                      label_smoothing=kw.get("label_smoothing", 0.0))
    assert_ulps(rows, ref, dtype)
    mean = fastnll.cross_entropy(x, t, **kw)
    assert ulps(mean, fastnll.cross_entropy(x.astype(np.float32), t, **kw).astype(dtype)) <= 1


@pytest.mark.parametrize("dtype", HALVES)
def test_class_losses_hard_rows(dtype):
    x = _hard_rows(dtype)
    t = np.array([0, 4, 2, 1, 1, -100])
    loss, grad = fastnll.cross_entropy(x, t, reduction="none", return_grad=True)
    ref, ref_grad = ref_loss("ce", x.astype(np.float64), t, reduction="none")
    assert_ulps(loss, ref, dtype)
    with np.errstate(invalid="ignore"):
        assert_ulps(grad, ref_grad, dtype)


def test_out_of_range_target_names_it():
    x = _logits(F16_DT, (4, 6))
    with pytest.raises(IndexError, match="7"):
        fastnll.cross_entropy(x, np.array([0, 7, 1, 2]))
    with pytest.raises(IndexError, match="-3"):
        fastnll.nll_loss(x.astype(BF), np.array([0, 1, -3, 2]), return_grad=True)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("shape,axis", [((40, 300), 1), ((40, 300), 0), ((6, 7, 50), (1, 2)),
                                        ((300,), None), ((5, 0), 1), ((0, 5), 1)])
def test_softmax_family(dtype, fn, shape, axis):
    x = _logits(dtype, shape)
    x.setflags(write=False)
    got = getattr(fastnll, fn)(x, axis=axis)
    x64 = x.astype(np.float64)
    if fn == "logsumexp":
        ref = ref_lse(x64, axis=axis)
    else:
        ref = ref_softmax(x64, axis, fn == "log_softmax")
    assert np.asarray(got).dtype == dtype
    assert_ulps(got, ref, dtype)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_hard_rows(dtype, fn):
    """The extremes give the float32 results of the same values (whose semantics for inf and
    nan, SciPy's, the float32 tests check against SciPy itself), rounded once."""
    x = _hard_rows(dtype)
    got = getattr(fastnll, fn)(x, axis=1)
    ref = getattr(fastnll, fn)(x.astype(np.float32), axis=1)
    assert_ulps(got, ref, dtype, n=1)


def _multi_chunk_rows(dtype):
    """Rows of 5000 elements (five chunks of the kernels' 1024) whose maxima arrive in every
    order: a new maximum in each chunk, a later chunk tying the running maximum exactly,
    +inf, nan or a lone finite value among -inf in a later chunk, a maximum at the very end."""
    rng = np.random.default_rng(7)
    n = 5000
    rows = [rng.standard_normal(n) * 3 for _ in range(9)]
    rows[0] += np.arange(n) * 0.002                     # a new maximum in every chunk
    rows[1][10], rows[1][4000] = 9.0, 9.0                # ties with the running maximum
    rows[1][2500] = 9.0
    rows[2][3100] = np.inf
    rows[3][2047] = np.nan
    rows[4][:] = -np.inf
    rows[4][3333] = 1.5                                  # one finite value, late
    rows[5][:] = -np.inf
    rows[6][-1] = 20.0                                   # the maximum is the last element
    rows[7][:1024] = -30.0                               # a low first chunk, then larger
    rows[8][:] = 0.25                                    # every term maximal
    return np.array(rows).astype(dtype)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_multi_chunk_rows(dtype, layout):
    """The 16-bit row sums read contiguous rows in place, taking a chunk below the running
    maximum in one pass and again when it reaches that maximum; strided rows go through a
    float32 copy.  Both against float64 on the 16-bit values (and SciPy's inf and nan
    semantics, through the float32 results of the same values)."""
    x = _multi_chunk_rows(dtype)
    if layout == "strided":
        x = np.repeat(x, 2, axis=1)[:, ::2]
    x64 = x.astype(np.float64)
    finite = np.isfinite(x64).all(axis=1) | (np.isneginf(x64) | np.isfinite(x64)).all(axis=1)
    got = fastnll.logsumexp(x, axis=1)
    assert got.dtype == dtype
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_ulps(got[finite], ref_lse(x64[finite], axis=1), dtype)
    assert_ulps(got, fastnll.logsumexp(x.astype(np.float32), axis=1), dtype, n=1)
    t = np.array([0, 4000, 3100, 1, 3333, 0, 4999, 1500, 17])
    loss = fastnll.cross_entropy(x, t, reduction="none")
    with np.errstate(invalid="ignore", divide="ignore"):
        ref, _ = ref_loss("ce", x64, t, reduction="none")
        assert_ulps(loss, ref, dtype)
        assert_ulps(fastnll.softmax(x, axis=1)[finite], ref_softmax(x64[finite], 1, False),
                    dtype)


def _late_maxima(dtype):
    """(300, 700) logits whose columns (10 chunks of classes, column blocks of 256) change
    their maximum after the first chunk.  Block 0: by a little, by 190 (past the one-pass
    sums' bound: exp(190) overflows float32), to the format's largest value, and a first
    chunk of -inf only.  Block 1: a nan in a chunk that keeps its one-pass sums.  Block 2: a
    +inf, and a column of -inf only."""
    x = _logits(dtype, (300, 700), seed=2).astype(np.float64)
    x[100, 0:50] += 10
    x[150:152, 50:100] = 200
    x[250, 160:180] = float(np.finfo(np.float16).max) if dtype == F16_DT else 3.0e38
    x[:40, 140:160] = -np.inf
    x[210, 300:320] = np.nan
    x[200, 520:540] = np.inf
    x[:, 600:610] = -np.inf
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("fn", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("case", ["axis 0", "axis 0, strided", "axis 0, many strips",
                                  "few classes", "(N, C, d)", "transposed", "hard columns",
                                  "late maxima"])
def test_columns(dtype, fn, case):
    """Where the class axis is not the contiguous one (axis 0 of a C-ordered matrix, PyTorch's
    (N, C, d) layout, few classes), logsumexp, softmax and log_softmax take the column
    traversal over float32 pieces converted from the 16-bit input: the float32 results of the
    same values, rounded once, against float64 too.  logsumexp of unit-stride columns (axis 0
    of a C-ordered matrix, the (N, C, d) layout) reads them in place at x86-64-v4, with the
    short exp of the 16-bit sums: there within a unit of the float32 result."""
    x, axis = {
        "axis 0": (_logits(dtype, (300, 700)), 0),            # 10 chunks of classes, 3 blocks
        "axis 0, strided": (_logits(dtype, (300, 1400))[::2, ::2], 0),
        "axis 0, many strips": (_logits(dtype, (70, 4700), seed=1), 0),
        "few classes": (_logits(dtype, (2000, 27)), 1),
        "(N, C, d)": (_logits(dtype, (5, 40, 333)), 1),
        "transposed": (_logits(dtype, (300, 150)).T, 1),
        "hard columns": (np.tile(_hard_rows(dtype).T, (1, 40)), 0),
        "late maxima": (_late_maxima(dtype), 0),
    }[case]
    x.setflags(write=False)
    before = x.copy()
    got = getattr(fastnll, fn)(x, axis=axis)
    assert got.dtype == dtype
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
    with np.errstate(over="ignore"):    # log_softmax's -65504 - 2.1 is -inf in float16
        expected = getattr(fastnll, fn)(x.astype(np.float32), axis=axis).astype(dtype)
    in_place = (fn == "logsumexp" and LEVEL == "x86-64-v4"
                and case not in ("axis 0, strided", "few classes", "transposed", "hard columns"))
    assert ulps(got, expected).max() <= (1 if in_place else 0)
    for n in (1, 3):        # the same bits whatever the thread count
        with fastnll.threads(n):
            assert ulps(getattr(fastnll, fn)(x, axis=axis), got).max() == 0
    x64 = x.astype(np.float64)
    finite = np.isfinite(x64).all(axis=axis)
    assert finite.any()
    if fn == "logsumexp":
        assert_ulps(got[finite], ref_lse(x64, axis=axis)[finite], dtype)
    else:
        with np.errstate(invalid="ignore"):     # the columns with inf or nan, left out
            ref = ref_softmax(x64, axis, fn == "log_softmax")
        keep = np.expand_dims(finite, axis) & np.ones(x.shape, bool)
        assert_ulps(got[keep], ref[keep], dtype)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("C", [40, 3000])
@pytest.mark.parametrize("axis", [1, 0])
def test_logsumexp_of_log_probabilities(dtype, C, axis):
    """Rows (axis 1) or unit-stride columns (axis 0, several column blocks, one of them with
    ordinary logits too) of log-probabilities: their log-sum-exp is near 0, where the
    absolute error of the 16-bit sums' short exp (3.2e-6) could pass 2 units of the result;
    those rows, or column blocks, are summed again with float32's exp, and give the float32
    result of their values, rounded once (whose own absolute error, that of float32 sums, the
    docs state)."""
    x = np.random.default_rng(3).standard_normal((64 if axis else 700, C)) * 2.0
    logp = x - ref_lse(x, axis=1, keepdims=True)
    if axis == 0:
        logp[512:] = x[512:]    # columns 512-699 (the last column block) are not near 0
        logp = np.ascontiguousarray(logp.T)
    logp = logp.astype(dtype)
    got = fastnll.logsumexp(logp, axis=axis)
    near = np.abs(ref_lse(logp.astype(np.float64), axis=axis)) < 2 ** -7
    assert near[:512].all() and not near[512:].any()                           # the case
    expected = fastnll.logsumexp(logp.astype(np.float32), axis=axis).astype(dtype)
    assert ulps(got[near], expected[near]).max() == 0
    assert ulps(got, expected).max() <= 1


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(6, 40), (30, 1000), (4, 3001), (2, 7)])
@pytest.mark.parametrize("offset", [0, 1, 3, 9])
def test_softmax_written_in_one_pass(monkeypatch, dtype, fn, shape, offset):
    """Contiguous 16-bit rows are written in one pass converting in registers (x86-64-v3
    and v4), with non-temporal stores for an output larger than the last-level cache (here
    any: the size patched to 0) from its first aligned block: the bits of the chunked path,
    which a strided output takes; rows with +inf or all -inf among the others; in place too."""
    f = getattr(fastnll, fn)
    x = _logits(dtype, shape)
    x[0, 1] = np.inf
    x[-1] = -np.inf
    strided = np.empty(shape + (2,), dtype)[..., 0]
    assert f(x, axis=1, out=strided) is strided      # the chunked path
    expected = f(x, axis=1)                           # one pass, cached stores
    assert ulps(expected, strided).max() == 0
    monkeypatch.setattr(fastnll._caches, "LLC_BYTES", 0)
    out = np.full(x.size + offset, np.nan, dtype)[offset:].reshape(shape)
    assert f(x, axis=1, out=out) is out
    assert ulps(out, expected).max() == 0
    y = x.copy()
    assert f(y, axis=1, out=y) is y
    assert ulps(y, expected).max() == 0


@pytest.mark.parametrize("C", [2, 40, 3000])
def test_bfloat16_softmax_keeps_tiny_outputs(C):
    """bfloat16 has float32's exponent range: softmax outputs down to its subnormals (2^-133,
    exp(-92.2)) are kept, below the short exp's range (exp(-86.5)) too."""
    x = np.zeros((4, C))
    x[:, 1] = [-87.0, -90.0, -92.0, -100.0]
    x = x.astype(BF)
    for out in (None, np.empty_like(x)):
        got = fastnll.softmax(x, axis=1, out=out)
        ref = ref_softmax(x.astype(np.float64), 1, False)
        assert_ulps(got, ref, BF)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_of_one_long_row(dtype, fn):
    """axis=None of a large array: one row longer than the kernels convert whole (the
    two-exp formula by chunks, no float32 copy of the row)."""
    x = _logits(dtype, (300_001,), scale=3.0)
    got = getattr(fastnll, fn)(x)
    ref = ref_softmax(x.astype(np.float64), None, fn == "log_softmax")
    assert_ulps(got, ref, dtype)


@pytest.mark.parametrize("dtype", HALVES)
def test_capped_cross_entropy_keeps_the_dtype(dtype):
    """softcap and z_loss: computed from a float32 copy, results of the input's dtype."""
    x = _logits(dtype, (16, 40))
    t = np.arange(16) % 40
    loss, grad = fastnll.cross_entropy(x, t, softcap=5.0, z_loss=1e-3, return_grad=True)
    ref, ref_grad = fastnll.cross_entropy(x.astype(np.float32), t, softcap=5.0, z_loss=1e-3,
                                          return_grad=True)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert_ulps(loss, ref, dtype, n=1)
    assert_ulps(grad, ref_grad, dtype, n=1)


def _ref_linear(x, W, b, t, reduction, ignore_index=-100):
    """linear_cross_entropy's loss and gradients in float64 from the 16-bit values, through
    the formed logits and the float64 cross-entropy reference."""
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    z = x64 @ W64.T + (0 if b is None else b.astype(np.float64))
    t64 = t.astype(np.float64) if t.dtype.kind != "i" else t
    loss, g = ref_loss("ce", z, t64, reduction=reduction, ignore_index=ignore_index, axis=1)
    return loss, (g @ W64, g.T @ x64, None if b is None else g.sum(axis=0))


def _assert_close_16(got, ref, dtype):
    """got (16-bit) within 2 ulp of ref, or 2 ulp of the largest |ref| for entries that come
    out of sums that cancel (the products' entries)"""
    got = np.asarray(got)
    assert got.dtype == dtype
    eps = 2.0 ** -7 if dtype == BF else 2.0 ** -10
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=eps,
                               atol=eps * np.abs(ref).max(initial=0))


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy(dtype, reduction, bias):
    """16-bit operands: converted once to float32 for the products, loss and gradients of
    the input's dtype, against float64 on the 16-bit values; the operands untouched."""
    rng = np.random.default_rng(11)
    N, H, V = 37, 16, 300
    x = (rng.standard_normal((N, H)) * 2).astype(dtype)
    W = (rng.standard_normal((V, H)) * 0.5).astype(dtype)
    b = (rng.standard_normal(V)).astype(dtype) if bias else None
    t = rng.integers(0, V, N)
    t[3] = -100
    before = snapshot([x, W, b, t])
    loss, grads = fastnll.linear_cross_entropy(x, W, t, linear_bias=b, reduction=reduction,
                                               return_grad=True)
    assert_unchanged(before)
    ref, ref_grads = _ref_linear(x, W, b, t, reduction)
    assert_ulps(loss, ref, dtype)
    assert np.asarray(loss).shape == np.shape(ref)
    for got, r in zip(grads, ref_grads):
        if r is None:
            assert got is None
        else:
            _assert_close_16(got, r, dtype)
    assert_ulps(fastnll.linear_cross_entropy(x, W, t, linear_bias=b, reduction=reduction),
                ref, dtype)


@pytest.mark.parametrize("dtype", HALVES)
def test_linear_cross_entropy_probabilities_and_grad_out(dtype):
    rng = np.random.default_rng(12)
    N, H, V = 20, 8, 50
    x = rng.standard_normal((N, H)).astype(dtype)
    W = rng.standard_normal((V, H)).astype(dtype)
    p = fastnll.softmax(rng.standard_normal((N, V)).astype(dtype), axis=1)
    loss, grads = fastnll.linear_cross_entropy(x, W, p, return_grad=True)
    ref, ref_grads = _ref_linear(x, W, None, p, "mean")
    assert_ulps(loss, ref, dtype)
    _assert_close_16(grads.input, ref_grads[0], dtype)
    _assert_close_16(grads.linear_weight, ref_grads[1], dtype)
    # the caller's arrays receive the 16-bit gradients (or, of float32, their values)
    gx, gW = np.empty_like(x), np.empty((V, H), np.float32)
    loss2, grads2 = fastnll.linear_cross_entropy(x, W, p, return_grad=True,
                                                 grad_out=(gx, gW, None))
    assert grads2.input is gx and grads2.linear_weight is gW
    np.testing.assert_array_equal(gx.view(np.uint16), grads.input.view(np.uint16))
    np.testing.assert_array_equal(gW, grads.linear_weight.astype(np.float32))
    assert loss2 == loss
    with pytest.raises(TypeError, match="linear_weight must have input's dtype"):
        fastnll.linear_cross_entropy(x, W.astype(np.float32), p)


@pytest.mark.parametrize("dtype", HALVES)
def test_dask_computes_16_bit_chunks_as_float32(dtype):
    """fastnll.dask's graphs declare float32 for 16-bit input and their chunks are float32."""
    da = pytest.importorskip("dask.array")
    import fastnll.dask as fd
    x = _logits(dtype, (40, 30))
    t = np.arange(40) % 30
    dx = da.from_array(x, chunks=(10, 30))
    x32 = x.astype(np.float32)
    for lazy, ref in ((fd.softmax(dx, axis=1), fastnll.softmax(x32, axis=1)),
                      (fd.cross_entropy(dx, t, reduction="none"),
                       fastnll.cross_entropy(x32, t, reduction="none")),
                      (fd.logsumexp(dx, axis=1), fastnll.logsumexp(x32, axis=1))):
        got = lazy.compute()
        assert lazy.dtype == np.float32 and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", HALVES)
def test_softmax_out_and_in_place(dtype):
    x = _logits(dtype, (30, 200))
    expected = fastnll.softmax(x, axis=1)
    buf = np.empty_like(x)
    assert fastnll.log_softmax(x, axis=1, out=buf) is buf
    assert ulps(buf, fastnll.log_softmax(x, axis=1)).max() == 0
    y = x.copy()
    assert fastnll.softmax(y, axis=1, out=y) is y
    assert ulps(y, expected).max() == 0
    out32 = np.empty((30, 200), np.float32)   # a wider out: NumPy's same_kind cast
    fastnll.softmax(x, axis=1, out=out32)
    np.testing.assert_array_equal(out32, expected.astype(np.float32))
    with pytest.raises(TypeError, match="out"):
        fastnll.softmax(x, axis=1, out=np.empty((30, 200), np.int16))


@pytest.mark.parametrize("dtype", HALVES)
def test_forward_allocates_less_than_one_percent_of_the_input(dtype):
    x = _logits(dtype, (512, 4096))
    t = np.random.default_rng(0).integers(0, 4096, 512)
    for call in (lambda: fastnll.cross_entropy(x, t), lambda: fastnll.logsumexp(x, axis=1),
                 lambda: fastnll.nll_loss(x, t)):
        call()
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 0.01 * x.nbytes, peak


@pytest.mark.parametrize("dtype", HALVES)
def test_probability_targets_and_weighted_logsumexp_keep_the_dtype(dtype):
    """Computed from a float32 copy (not read in place yet), rounded to the input's dtype as
    PyTorch and SciPy return it."""
    rng = np.random.default_rng(5)
    x = _logits(dtype, (20, 30))
    p = fastnll.softmax((rng.standard_normal((20, 30)) * 2).astype(dtype), axis=1)
    loss, grad = fastnll.cross_entropy(x, p, label_smoothing=0.1, return_grad=True)
    ref, ref_grad = ref_loss("ce", x.astype(np.float64), p.astype(np.float64),
                             label_smoothing=0.1)
    assert_ulps(loss, ref, dtype)
    assert_ulps(grad, ref_grad, dtype)
    b = (rng.random(30) - 0.3).astype(dtype)
    res, sgn = fastnll.logsumexp(x, axis=1, b=b, return_sign=True)
    ref_res, ref_sgn = ref_lse(x.astype(np.float64), axis=1, b=b.astype(np.float64),
                               return_sign=True)
    assert_ulps(res, ref_res, dtype)
    assert_ulps(sgn, ref_sgn, dtype, n=0)
    assert fastnll.logsumexp(x, axis=1, b=2.0).dtype == dtype       # a weak Python scalar


def test_mixed_dtypes_promote():
    """A 16-bit input with float32 class weights keeps its dtype (the weights are class
    weights, as in PyTorch); a float16 input with a float64 weight in logsumexp promotes."""
    x = _logits(F16_DT, (8, 5))
    t = np.arange(8) % 5
    assert fastnll.cross_entropy(x, t, weight=np.ones(5)).dtype == F16_DT
    assert fastnll.logsumexp(x, axis=1, b=np.ones(5)).dtype == np.float64


# ------------------------------------------------------------- elementwise losses ----

def _elementwise_case(name, dtype, shape, rng):
    """(fastnll's function, its arguments, the float64 reference's (loss, grad) per element
    on the 16-bit values, and the var gradient's reduction for the Gaussian)."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)

    def f64(a):
        return np.asarray(a).astype(np.float64)

    if name == "bce":
        y = rng.random(shape).astype(dtype)
        w = (rng.random(shape[-1]) + 0.5).astype(dtype)
        pw = (rng.random(shape[-1]) * 2).astype(dtype)
        loss, _, grad, _ = ref_bce(f64(x), f64(y), f64(w), f64(pw))
        return (fastnll.binary_cross_entropy_with_logits, (x, y),
                dict(weight=w, pos_weight=pw), loss, grad)
    if name == "gaussian":
        y = rng.standard_normal(shape).astype(dtype)
        var = (rng.random(shape[:-1] + (1,)) + 0.5).astype(dtype)
        loss, _, gx, _, gv, _ = ref_gauss(f64(x), f64(y), f64(var), 1e-6, False)
        return fastnll.gaussian_nll_loss, (x, y, var), {}, loss, (gx, gv)
    if name == "poisson":
        y = rng.poisson(2.0, shape).astype(dtype)
        loss, _, grad, _ = ref_poisson(f64(x), f64(y), True, False, 1e-8)
        return fastnll.poisson_nll_loss, (x, y), {}, loss, grad
    lp = fastnll.log_softmax(x, axis=-1)
    y = fastnll.softmax((rng.standard_normal(shape) * 2).astype(dtype), axis=-1)
    loss, _, grad, _ = ref_kl(f64(lp), f64(y), False)
    return fastnll.kl_div, (lp, y), {}, loss, grad


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("name", ["bce", "gaussian", "poisson", "kl_div"])
@pytest.mark.parametrize("layout", ["C", "transposed"])
def test_elementwise_losses(dtype, name, layout):
    rng = np.random.default_rng(3)
    fn, args, kw, ref, ref_grad = _elementwise_case(name, dtype, (60, 70), rng)
    if layout == "transposed":     # every operand strided the same way (a view, no copy)
        args = tuple(np.asfortranarray(a) if a.shape == args[0].shape else a for a in args)
    snap = snapshot(args)
    rows = fn(*args, reduction="none", **kw)
    loss, grad = fn(*args, reduction="sum", return_grad=True, **kw)
    assert_unchanged(snap)
    assert_ulps(rows, ref, dtype)
    assert_ulps(loss, np.sum(ref), dtype)
    if name == "gaussian":
        (gx, gv), (rx, rv) = grad, ref_grad
        assert_ulps(gx, rx, dtype)
        rv = var_reduce(rv, args[2].shape, args[0].shape)
        assert gv.shape == args[2].shape
        assert_ulps(gv, rv, dtype)
    else:
        assert_ulps(grad, ref_grad, dtype)
    mean = fn(*args, return_grad=False, **kw)
    assert_ulps(mean, np.mean(ref), dtype)


# ---------------------------------------------------------------- fastnll.torch ----

@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss",
                                  "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("tdtype", ["float16", "bfloat16"])
def test_torch_16_bit_through_the_kernels(name, reduction, tdtype):
    torch = pytest.importorskip("torch")
    import fastnll.torch as fnt
    dtype = getattr(torch, tdtype)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 500, generator=gen) * 3).to(dtype)
    if name == "nll_loss":
        x = torch.log_softmax(x.float(), 1).to(dtype)
    if name == "binary_cross_entropy_with_logits":
        t = torch.rand(64, 500, generator=gen).to(dtype)
    else:
        t = torch.randint(0, 500, (64,), generator=gen)
        t[::7] = -100
    a = x.clone().requires_grad_()
    loss = getattr(fnt, name)(a, t, reduction=reduction)
    assert "Fastnll" in type(loss.grad_fn).__name__
    loss.sum().backward()
    b = x.double().requires_grad_()
    ref = getattr(torch.nn.functional, name)(b, t.double() if t.is_floating_point() else t,
                                             reduction=reduction)
    ref.sum().backward()
    assert loss.dtype == dtype and a.grad.dtype == dtype
    npdt = F16_DT if tdtype == "float16" else BF

    def as_np(v):
        return v.detach().view(torch.int16).numpy().view(npdt)

    assert_ulps(as_np(loss), ref.detach().numpy(), npdt)
    g, r = a.grad.double().numpy(), b.grad.numpy()
    close = np.abs(g - r) <= 2 ** -22 * np.abs(r).max()
    assert_ulps(as_np(a.grad)[~close], r[~close], npdt)
