"""Choose the kernel module for this CPU.

The kernels are compiled once per x86-64 level (baseline, x86-64-v3 with AVX2/FMA, x86-64-v4
with AVX-512).  At import fastnll takes the best level the CPU supports, or the level named by
the environment variable FASTNLL_SIMD_LEVEL (x86-64, x86-64-v3, x86-64-v4, or generic on other
architectures); a level the CPU cannot run is refused with an ImportError instead of crashing
on an illegal instruction.  It also sets whether the chosen module's row traversals prefetch
in software (_row_prefetch_default: on for Intel CPUs, off for others, FASTNLL_ROW_PREFETCH
overrides).
"""
import importlib
import os

from . import _cpu

ENV_VAR = "FASTNLL_SIMD_LEVEL"
_ALIASES = {"baseline": "x86-64", "sse2": "x86-64", "avx2": "x86-64-v3", "avx512": "x86-64-v4"}


def _module_name(level):
    return "fastnll._kern_" + level.replace("-", "_")


def built_levels():
    """Levels whose kernel module is installed and that this CPU can run, best last."""
    found = []
    for level in _cpu.supported_levels():
        try:
            importlib.import_module(_module_name(level))
        except ImportError:
            continue
        found.append(level)
    return found


def _select():
    supported = _cpu.supported_levels()
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        level = _ALIASES.get(forced, forced)
        known = ["x86-64", "x86-64-v3", "x86-64-v4", "generic"] + sorted(_ALIASES)
        if level not in known:
            raise ImportError(f"{ENV_VAR}={forced!r} is not a kernel level; use one of "
                              f"{', '.join(known)}")
        if level not in supported:
            raise ImportError(
                f"{ENV_VAR}={forced!r}: this CPU (or build) supports only "
                f"{', '.join(supported)}"
            )
        return level, importlib.import_module(_module_name(level))
    for level in reversed(supported):
        try:
            return level, importlib.import_module(_module_name(level))
        except ImportError:
            continue
    raise ImportError("no fastnll kernel module could be imported; is the build complete?")


ROW_PREFETCH_VAR = "FASTNLL_ROW_PREFETCH"
row_prefetch_forced = None      # the value of FASTNLL_ROW_PREFETCH read at import, if any


def _row_prefetch_default():
    """Whether the row traversals prefetch in software on this CPU.

    Measured both ways: on an Intel Xeon, when it was added (2026-12-05, one chunk ahead; the
    chunk after the next was then compared with one ahead only), the prefetch sped the row
    loops up (cross_entropy (4096, 32000) float32 49 -> 44 ms at x86-64-v3, 36 -> 29 ms at
    x86-64-v4); on an AMD EPYC (Zen 4) it slowed them by a third (without it 38 -> 28 ms at
    v3, 27 -> 18 ms at v4), the hardware prefetchers following the rows on their own.  No
    other CPU was measured (Hygon, other vendors, aarch64, builds without gcc or clang's
    vendor check); they get what AMD's get.  FASTNLL_ROW_PREFETCH=1 or 0
    overrides the choice (the results are the same either way).
    """
    global row_prefetch_forced
    forced = os.environ.get(ROW_PREFETCH_VAR, "").strip()
    if forced in ("0", "1"):
        row_prefetch_forced = forced
        return forced == "1"
    if forced:
        raise ImportError(f"{ROW_PREFETCH_VAR}={forced!r}: use 0 (off) or 1 (on), or leave it "
                          "unset (on for Intel CPUs only)")
    return _cpu.vendor() == "intel"


level, kernels = _select()
kernels.set_row_prefetch(_row_prefetch_default())
