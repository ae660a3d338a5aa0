"""show_config(), the version, and the FASTNLL_SIMD_LEVEL and FASTNLL_ROW_PREFETCH overrides."""
import os
import re
import subprocess
import sys

import pytest

import fastnll
from fastnll import _cpu, _dispatch


def test_version_single_source():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", fastnll.__version__)
    try:
        from importlib.metadata import PackageNotFoundError, version
        installed = version("fastnll")
    except (ImportError, PackageNotFoundError):
        pytest.skip("fastnll is not installed (built in place)")
    assert installed == fastnll.__version__


def test_show_config_prints_the_facts(capsys):
    assert fastnll.show_config() is None
    text = capsys.readouterr().out
    assert f"fastnll {fastnll.__version__}" in text
    assert f"in use:       {_dispatch.level}" in text
    for level in _dispatch.built_levels():
        assert level in text
    assert ("OpenMP:       on" if _dispatch.kernels.built_with_openmp()
            else "OpenMP:       off") in text
    assert f"threads:      {fastnll.get_num_threads()} " in text
    assert "compiler:" in text and "flags:" in text


def test_show_config_dicts_follow_the_settings():
    cfg = fastnll.show_config(mode="dicts")
    assert cfg["fastnll"] == fastnll.__version__
    assert cfg["simd"]["in_use"] == _dispatch.level
    assert cfg["simd"]["cpu_supports"] == _cpu.supported_levels()
    assert cfg["simd"]["row_prefetch"] == _dispatch.kernels.row_prefetch()
    assert cfg["build"]["openmp"] == _dispatch.kernels.built_with_openmp()
    assert cfg["build"]["compiler"] != "unknown"     # recorded by setup.py at build time
    if sys.platform.startswith("linux") and cfg["build"]["level_flags"]:
        assert "-march=native" not in str(cfg["build"])
    with fastnll.threads(3):
        cfg = fastnll.show_config(mode="dicts")
        assert cfg["threads"]["num_threads"] == 3
        assert "threads()" in cfg["threads"]["source"]
    try:
        fastnll.set_num_threads(2)
        assert fastnll.show_config(mode="dicts")["threads"]["num_threads"] == 2
    finally:
        fastnll.set_num_threads(None)


def test_show_config_reports_a_forced_level():
    level = _dispatch.built_levels()[0]
    env = dict(os.environ, FASTNLL_SIMD_LEVEL=level,
               PYTHONPATH=os.path.dirname(os.path.dirname(fastnll.__file__)))
    out = subprocess.run([sys.executable, "-c", "import fastnll; fastnll.show_config()"],
                         env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(__file__)).stdout
    assert f"in use:       {level} (FASTNLL_SIMD_LEVEL={level})" in out


# ------------------------------------------------------------ FASTNLL_SIMD_LEVEL ----

def test_unknown_simd_level_is_named_as_such(tmp_path):
    env = dict(os.environ, FASTNLL_SIMD_LEVEL="junk",
               PYTHONPATH=os.path.dirname(os.path.dirname(fastnll.__file__)))
    proc = subprocess.run([sys.executable, "-c", "import fastnll"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "not a kernel level" in proc.stderr and "x86-64-v3" in proc.stderr


@pytest.mark.parametrize("which", ["first", "last", "last, level already set"])
def test_bench_simd_level_runs_that_level(which, tmp_path):
    # `python -m fastnll bench --simd-level LEVEL` reruns itself with the kernels of LEVEL and
    # PyTorch held to the same instruction set, and says so in its header line (also when
    # FASTNLL_SIMD_LEVEL already names the level)
    levels = _dispatch.built_levels()
    level = levels[0] if which == "first" else levels[-1]
    env = {k: v for k, v in os.environ.items()
           if k not in (_dispatch.ENV_VAR, "ATEN_CPU_CAPABILITY")}
    if which.endswith("already set"):
        env[_dispatch.ENV_VAR] = level
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnll.__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "fastnll", "bench", "--function", "logsumexp_axis1",
         "--shape", "8,16", "--repeat", "1", "--simd-level", level],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert f"| kernels {level} |" in header
    capability = {"x86-64": "default", "x86-64-v3": "avx2", "x86-64-v4": "avx512"}.get(level)
    if capability:
        assert f"ATEN_CPU_CAPABILITY={capability}" in header
    assert "logsumexp_axis1 float32 (8, 16)" in proc.stdout


# ---------------------------------------------------------- FASTNLL_ROW_PREFETCH ----

def _import_fastnll_with(tmp_path, **env_vars):
    env = {k: v for k, v in os.environ.items() if k != _dispatch.ROW_PREFETCH_VAR}
    env.update(env_vars, PYTHONPATH=os.path.dirname(os.path.dirname(fastnll.__file__)))
    code = ("import fastnll; c = fastnll.show_config(mode='dicts')['simd']; "
            "print(c['cpu_vendor'], c['row_prefetch']); fastnll.show_config()")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def _vendor_from_proc():
    # the kernel's word for the CPU's vendor, an oracle independent of _cpu.vendor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    vendor_id = line.split(":", 1)[1].strip()
                    return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor_id,
                                                                                "other")
    except OSError:
        pass
    return None


def test_row_prefetch_default_follows_the_vendor(tmp_path):
    proc = _import_fastnll_with(tmp_path)
    assert proc.returncode == 0, proc.stderr
    vendor, on = proc.stdout.splitlines()[0].split()
    expected = _vendor_from_proc()
    if expected is not None and _cpu.supported_levels() != ["generic"]:
        assert vendor == expected
    assert vendor in ("intel", "amd", "other")
    assert on == str(vendor == "intel")
    assert f"row prefetch {'on' if vendor == 'intel' else 'off'}\n" in proc.stdout


@pytest.mark.parametrize("value, on", [("0", False), ("1", True), (" 1 ", True)])
def test_row_prefetch_override(tmp_path, value, on):
    proc = _import_fastnll_with(tmp_path, FASTNLL_ROW_PREFETCH=value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[1] == str(on)
    assert f"row prefetch {'on' if on else 'off'} (FASTNLL_ROW_PREFETCH={value.strip()})" \
        in proc.stdout


@pytest.mark.parametrize("value", ["yes", "2", "off"])
def test_row_prefetch_refuses_other_values(tmp_path, value):
    proc = _import_fastnll_with(tmp_path, FASTNLL_ROW_PREFETCH=value)
    assert proc.returncode != 0
    assert f"FASTNLL_ROW_PREFETCH={value!r}" in proc.stderr and "use 0 (off) or 1" in proc.stderr
