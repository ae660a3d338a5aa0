"""show_config(): how this fastnll was built and what it will do on this machine."""
import os
import platform
import sys

import numpy as np

from . import _cpu, _dispatch, _threads


def _build_info():
    try:
        from ._build_config import BUILD
    except ImportError:          # built by something other than this setup.py
        return {}
    return dict(BUILD)


def _thread_source():
    if _threads._local.get() is not None:
        return "fastnll.threads() block"
    if _threads._setting is not None:
        return "fastnll.set_num_threads()"
    if not _dispatch.kernels.built_with_openmp():
        return "serial build"
    env = os.environ.get("OMP_NUM_THREADS")
    return (f"OpenMP default (OMP_NUM_THREADS={env}, or threadpoolctl)" if env
            else "OpenMP default (all cores, or threadpoolctl)")


def config():
    """The information show_config() prints, as a dict."""
    from . import __version__
    build = _build_info()
    return {
        "fastnll": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "build": {
            "compiler": build.get("compiler", "unknown"),
            "common_flags": build.get("common_flags", []),
            "level_flags": build.get("levels", {}),
            "openmp": bool(_dispatch.kernels.built_with_openmp()),
            "sanitize": build.get("sanitize"),
        },
        "simd": {
            "levels_built": _dispatch.built_levels(),
            "cpu_supports": _cpu.supported_levels(),
            "in_use": _dispatch.level,
            "forced_by": (f"{_dispatch.ENV_VAR}={os.environ[_dispatch.ENV_VAR]}"
                          if os.environ.get(_dispatch.ENV_VAR, "").strip() else None),
            "cpu_vendor": _cpu.vendor(),
            "row_prefetch": bool(_dispatch.kernels.row_prefetch()),
        },
        "threads": {
            "num_threads": _threads.get_num_threads(),
            "source": _thread_source(),
            "openmp_max_threads": int(_dispatch.kernels.openmp_max_threads()),
            "min_parallel_elements": _threads.MIN_PARALLEL_ELEMENTS,
        },
    }


def show_config(mode="stdout"):
    """Print (or return) the build and runtime configuration of fastnll.

    Reports the version, the compiler and flags the kernels were built with, whether OpenMP
    is on, the SIMD levels built, supported by this CPU and in use, the CPU's vendor and
    whether the row loops prefetch in software (chosen at import, ``FASTNLL_ROW_PREFETCH``),
    and the thread count the next large call will use.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        ``"stdout"`` prints a report; ``"dicts"`` returns it as a dict instead.

    Returns
    -------
    dict or None
        The configuration with ``mode="dicts"``, else None.

    Raises
    ------
    ValueError
        ``mode`` is not ``"stdout"`` or ``"dicts"``.

    See Also
    --------
    numpy.show_config : The same report for NumPy.
    get_num_threads : The thread count alone.

    Examples
    --------
    >>> import fastnll
    >>> cfg = fastnll.show_config(mode="dicts")
    >>> cfg["simd"]["in_use"] in cfg["simd"]["levels_built"]
    True
    >>> cfg["threads"]["num_threads"] == fastnll.get_num_threads()
    True
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    cfg = config()
    if mode == "dicts":
        return cfg
    b, s, t = cfg["build"], cfg["simd"], cfg["threads"]
    lines = [
        f"fastnll {cfg['fastnll']} (Python {cfg['python']}, NumPy {cfg['numpy']})",
        f"  platform:     {cfg['platform']}",
        f"  compiler:     {b['compiler']}",
        f"  flags:        {' '.join(b['common_flags'])}",
    ]
    for level, flags in b["level_flags"].items():
        lines.append(f"    {level + ':':<12}{' '.join(flags)}")
    lines += [
        f"  OpenMP:       {'on' if b['openmp'] else 'off (serial kernels)'}",
    ]
    if b["sanitize"]:
        lines.append(f"  sanitizers:   {b['sanitize']} (a test build, not for use)")
    lines += [
        f"  SIMD levels:  built {', '.join(s['levels_built'])}; "
        f"CPU supports {', '.join(s['cpu_supports'])}",
        f"  in use:       {s['in_use']}" + (f" ({s['forced_by']})" if s["forced_by"] else ""),
        f"  CPU vendor:   {s['cpu_vendor']}; row prefetch "
        f"{'on' if s['row_prefetch'] else 'off'}"
        + (f" ({_dispatch.ROW_PREFETCH_VAR}={_dispatch.row_prefetch_forced})"
           if _dispatch.row_prefetch_forced else ""),
        f"  threads:      {t['num_threads']} (from {t['source']}); inputs under "
        f"{t['min_parallel_elements']} elements run on one",
    ]
    print("\n".join(lines))
    return None
