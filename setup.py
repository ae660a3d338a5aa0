"""Build fastnll's Cython kernels.

The kernels (the fastnll/*.pxi files that fastnll/_kern_*.pyx include) are compiled once per
x86-64 instruction-set level into separate extension modules (_kern_x86_64, _kern_x86_64_v3,
_kern_x86_64_v4); fastnll picks the best one the CPU supports at import.  Other architectures
get one generic module.  Before Cython runs, the Tempita templates fastnll/*.tp are rendered
next to themselves (fastnll/_loops.pxd.tp -> fastnll/_loops.pxd: generated, not in git).  OpenMP is
used when the compiler accepts it (set FASTNLL_NO_OPENMP=1 to build without); the kernels run
serially otherwise.  -march=native is never used: the build must run on any CPU of its level.
FASTNLL_SANITIZE=address (or any -fsanitize= list, e.g. address,undefined) builds instrumented
kernels for the memory-safety run in .ci/asan; never for a release.
The extension modules compile in parallel, as many at once as there are CPUs (`build_ext -j N`
or FASTNLL_BUILD_JOBS=N to choose).  FASTNLL_LEVELS="x86-64 x86-64-v4" builds only the x86-64
levels it names, and always the baseline (the package must import on any CPU): for quicker
development and sanitizer builds, never for a release.
"""
import glob
import os
import platform
import pprint
import shutil
import subprocess
import sys
import tempfile

import numpy

from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

X86 = platform.machine().lower() in ("x86_64", "amd64", "x64")
X86_LEVELS = ["x86_64", "x86_64_v3", "x86_64_v4"]     # the kernel modules' levels, baseline first

# Per-level target flags for gcc/clang, with an explicit feature list for compilers that do not
# know the x86-64-vN names.
LEVELS = {
    "x86_64": (["-march=x86-64", "-mtune=generic"], ["-march=x86-64", "-mtune=generic"]),
    "x86_64_v3": (["-march=x86-64-v3"],
                  ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt",
                   "-mmovbe", "-mpopcnt", "-msse4.2"]),
    "x86_64_v4": (["-march=x86-64-v4", "-mprefer-vector-width=512"],
                  ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt",
                   "-mmovbe", "-mpopcnt", "-msse4.2", "-mavx512f", "-mavx512bw",
                   "-mavx512dq", "-mavx512vl", "-mavx512cd", "-mprefer-vector-width=512"]),
}
# -fno-trapping-math lets gcc vectorise the branch-free exp; it does not change results.
# -fopenmp-simd honours `#pragma omp simd` even without OpenMP.  No -ffast-math, ever.
COMMON_UNIX = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp-simd"]


def render_templates(folder="fastnll"):
    """Render each Tempita template folder/NAME.tp into folder/NAME, rewriting NAME only when
    its text changes (so that an unchanged template does not force a rebuild)."""
    for template in sorted(glob.glob(os.path.join(folder, "*.tp"))):
        target = template[:-len(".tp")]
        with open(template) as f:
            text = Tempita.Template(f.read(), name=template).substitute()
        text = (f"# Generated from {os.path.basename(template)} by setup.py: do not edit.\n"
                + text)
        if os.path.exists(target):
            with open(target) as f:
                if f.read() == text:
                    continue
        with open(target, "w") as f:
            f.write(text)


def _compiles(compiler, flags, link_flags=(), code="int main(void){return 0;}\n"):
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=list(flags))
        compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                 extra_postargs=list(link_flags))
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OMP_PROBE = """#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
n += 1;
return n > 0 ? 0 : 1; }
"""


def _compiler_version(compiler):
    cmd = getattr(compiler, "compiler_so", None) or getattr(compiler, "compiler", None)
    if not cmd:
        return compiler.compiler_type
    try:
        out = subprocess.run([cmd[0], "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return cmd[0]


class BuildExt(build_ext):
    def finalize_options(self):
        # pip runs build_ext without -j (nor `build -j`, which finalize_options copies in):
        # the three kernel levels would compile one after the other
        super().finalize_options()
        if not self.parallel:
            jobs = os.environ.get("FASTNLL_BUILD_JOBS", "").strip()
            if jobs and not (jobs.isdigit() and int(jobs) > 0):
                sys.exit(f"FASTNLL_BUILD_JOBS must be a positive integer, got {jobs!r}")
            cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count())
            self.parallel = int(jobs) if jobs else (cpus or 1)

    def _write_build_config(self, info):
        """fastnll/_build_config.py beside the built modules: what show_config() reports."""
        target = os.path.join(os.path.dirname(self.get_ext_fullpath("fastnll._cpu")),
                              "_build_config.py")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write('"""Written by setup.py at build time (not in git)."""\n')
            f.write(f"BUILD = {pprint.pformat(info, width=96)}\n")

    def run(self):
        super().run()
        if self.inplace:     # setuptools builds in build_lib, then copies the modules over
            built = os.path.join(self.build_lib, "fastnll", "_build_config.py")
            pkg = self.get_finalized_command("build_py").get_package_dir("fastnll")
            self.copy_file(built, os.path.join(pkg, "_build_config.py"))
            # a build of some levels only (FASTNLL_LEVELS) must not leave the modules of the
            # others, from an earlier build, to be imported in their place
            for lv in set(X86_LEVELS) - set(levels):
                for stale in glob.glob(os.path.join(pkg, f"_kern_{lv}.*")):
                    if stale.endswith((".so", ".pyd")):
                        print(f"removing {stale}: FASTNLL_LEVELS leaves out its level")
                        os.remove(stale)

    def build_extensions(self):
        cc = self.compiler
        msvc = cc.compiler_type == "msvc"
        if msvc:
            common, omp_c, omp_l = ["/O2"], ["/openmp"], []
        else:
            common, omp_c, omp_l = COMMON_UNIX, ["-fopenmp"], ["-fopenmp"]
        use_omp = os.environ.get("FASTNLL_NO_OPENMP", "") in ("", "0")
        if use_omp and not _compiles(cc, omp_c, omp_l, OMP_PROBE):
            print("fastnll: the compiler does not accept OpenMP; building serial kernels")
            use_omp = False
        if not msvc and not _compiles(cc, ["-fopenmp-simd"]):
            common = [f for f in common if f != "-fopenmp-simd"]
        sanitize = os.environ.get("FASTNLL_SANITIZE", "").strip()
        san_c, san_l = [], []
        if sanitize:
            san_c = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
            san_l = [f"-fsanitize={sanitize}"]
            if "undefined" in sanitize:
                san_c.append("-fno-sanitize-recover=undefined")
        info = {"compiler": _compiler_version(cc), "compiler_type": cc.compiler_type,
                "platform": platform.platform(), "machine": platform.machine(),
                "python": sys.version.split()[0], "openmp": use_omp,
                "sanitize": sanitize or None, "common_flags": list(common), "levels": {}}
        for ext in self.extensions:
            level = ext.name.rsplit("_kern_", 1)[-1] if "_kern_" in ext.name else None
            flags = list(common)
            if level in LEVELS and not msvc:
                named, explicit = LEVELS[level]
                flags += named if _compiles(cc, named) else explicit
            if use_omp:
                flags += omp_c
                ext.extra_link_args = list(ext.extra_link_args) + omp_l
            ext.extra_compile_args = flags + san_c
            ext.extra_link_args = list(ext.extra_link_args) + san_l
            if level is not None:
                info["levels"][level.replace("_", "-")] = ext.extra_compile_args[len(common):]
        self._write_build_config(info)
        super().build_extensions()


if not X86:
    levels = ["generic"]
elif sys.platform == "win32":    # MSVC: no run-time level check in _cpu.pyx, baseline only
    levels = ["x86_64"]
else:
    levels = X86_LEVELS
    wanted = os.environ.get("FASTNLL_LEVELS", "").replace(",", " ").split()
    if wanted:
        unknown = [w for w in wanted if w.replace("-", "_") not in levels]
        if unknown:
            names = [lv.replace("_", "-") for lv in X86_LEVELS]
            sys.exit(f"FASTNLL_LEVELS: unknown level(s) {unknown}; the levels are "
                     f"{', '.join(names[:-1])} and {names[-1]}")
        wanted = {w.replace("-", "_") for w in wanted} | {X86_LEVELS[0]}
        levels = [lv for lv in X86_LEVELS if lv in wanted]
extensions = [Extension("fastnll._cpu", ["fastnll/_cpu.pyx"])]
extensions += [
    Extension(f"fastnll._kern_{lv}", [f"fastnll/_kern_{lv}.pyx"],
              include_dirs=["fastnll", numpy.get_include()],
              # the NumPy C API of the oldest NumPy fastnll supports (pyproject: numpy>=1.23)
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                             ("NPY_TARGET_VERSION", "NPY_1_23_API_VERSION")])
    for lv in levels
]

render_templates()
setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3},
        nthreads=int(os.environ.get("FASTNLL_CYTHON_JOBS", "0")) or None,
    ),
    cmdclass={"build_ext": BuildExt},
)
